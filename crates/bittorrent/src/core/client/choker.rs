//! Choking: the choke round (tit-for-tat by rate, the optimistic unchoke, seeding by upload rate; super-seeding reveals).
//! Part of the client core ([`super::Client`]): an `impl` block over its state.

use super::*;

impl<S: Storage> Client<S> {
    // ---------------------------------------------------------------------------------
    // Choking.

    pub(super) fn choke_round(&mut self, now: Instant) {
        self.choke_round += 1;
        let seeding = self.is_complete();
        let mut interested: Vec<(u64, ConnId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.handshake.is_some() && p.peer_interested)
            .map(|(c, p)| {
                // Leeching: tit-for-tat, those who gave us most. Seeding: those we gave least
                // so far, so the seeder's upload spreads over the swarm in rotation.
                let score = if seeding {
                    u64::MAX - p.up_total
                } else {
                    p.down_round
                };
                (score, *c)
            })
            .collect();
        // Highest score first; ties (all zero at the start) in random order.
        self.rng.shuffle(&mut interested);
        interested.sort_by_key(|e| std::cmp::Reverse(e.0));
        let regular = self.cfg.upload_slots.saturating_sub(1).max(1);
        let mut unchoke: BTreeSet<ConnId> =
            interested.iter().take(regular).map(|(_, c)| *c).collect();
        let rotate = self.choke_round % self.cfg.optimistic_rounds.max(1) == 1
            || self.optimistic.is_none_or(|c| !self.peers.contains_key(&c));
        if rotate {
            let rest: Vec<ConnId> = interested
                .iter()
                .map(|(_, c)| *c)
                .filter(|c| !unchoke.contains(c))
                .collect();
            self.optimistic = self.rng.pick(&rest).copied();
        }
        if let Some(o) = self.optimistic {
            unchoke.insert(o);
        }
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.handshake.is_some())
            .map(|(c, _)| *c)
            .collect();
        for c in conns {
            let Some(p) = self.peers.get_mut(&c) else {
                continue;
            };
            p.down_round = 0;
            p.up_round = 0;
            let should_choke = !unchoke.contains(&c);
            if should_choke != p.am_choking {
                p.am_choking = should_choke;
                if should_choke {
                    let dropped: Vec<BlockRef> = p.requests.drain(..).collect();
                    let fast = p.fast;
                    let given = p.given_fast.clone();
                    self.send_msg(c, &Message::Choke, now);
                    for r in dropped {
                        if given.contains(&r.index) {
                            if let Some(p) = self.peers.get_mut(&c) {
                                p.requests.push_back(r);
                            }
                        } else if fast {
                            self.send_msg(c, &Message::Reject(r), now);
                        }
                    }
                } else {
                    self.send_msg(c, &Message::Unchoke, now);
                }
            }
        }
    }
}
