//! Iterative lookups (find_node, get_peers, announce, BEP 44 get/put, bootstrap, refresh):
//! candidates sorted by XOR distance, at most α queries in flight, done when the k closest
//! that did not fail have answered; then announce_peer/put to them.

use super::*;

impl Dht {
    pub(super) fn new_lookup(
        &mut self,
        now: Instant,
        cmd: u64,
        kind: Kind,
        target: Id,
    ) -> Option<u64> {
        if self.lookups.len() >= self.cfg.max_lookups {
            if kind != Kind::Refresh {
                self.emit(Event::Refused {
                    id: cmd,
                    reason: "too many lookups running",
                });
            }
            return None;
        }
        let key = self.next_key;
        self.next_key += 1;
        self.lookups.insert(
            key,
            Lookup {
                cmd,
                kind,
                target,
                cands: BTreeMap::new(),
                inflight: 0,
                peers: KeyedSet::with_hasher(self.keyed.clone()),
                started: now,
                stats: LookupStats::default(),
                phase: Phase::Searching,
                item: None,
            },
        );
        Some(key)
    }

    pub(super) fn add_cand(&mut self, key: u64, info: NodeInfo, depth: u32) {
        let own = self.id;
        let max = self.cfg.max_candidates;
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if info.id == own {
            return;
        }
        let dist = info.id.distance(&l.target);
        if l.cands.contains_key(&dist) {
            return;
        }
        if l.cands.len() >= max {
            match l.cands.last_key_value() {
                Some((far, _)) if *far > dist => {
                    let far = *far;
                    l.cands.remove(&far);
                }
                _ => return,
            }
        }
        l.cands.insert(
            dist,
            Cand {
                info,
                state: CandState::Fresh,
                tries: 0,
                outstanding: 0,
                token: None,
                depth,
            },
        );
    }

    pub(super) fn begin_search(&mut self, now: Instant, key: u64) {
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        l.phase = Phase::Searching;
        let target = l.target;
        let seeds = self
            .table
            .closest(&target, self.cfg.max_candidates.min(self.cfg.k * 4), now);
        for s in seeds {
            self.add_cand(key, s, 0);
        }
        self.step(now, key);
    }

    /// Sends queries or finishes lookup `key`.
    pub(super) fn step(&mut self, now: Instant, key: u64) {
        let (k, alpha) = (self.cfg.k, self.cfg.alpha);
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if l.phase != Phase::Searching {
            return;
        }
        let mut considered = 0;
        let mut all_done = true;
        let mut to_send = Vec::new();
        for (dist, c) in &l.cands {
            if considered >= k {
                break;
            }
            match c.state {
                CandState::Failed => continue,
                CandState::Done => considered += 1,
                CandState::InFlight => {
                    considered += 1;
                    all_done = false;
                }
                CandState::Fresh => {
                    considered += 1;
                    all_done = false;
                    if l.inflight + to_send.len() < alpha {
                        to_send.push(*dist);
                    }
                }
            }
        }
        if all_done {
            self.finish_search(now, key);
            return;
        }
        let (target, kind) = (l.target, l.kind);
        let tried = !to_send.is_empty();
        for dist in to_send {
            let Some(l) = self.lookups.get_mut(&key) else {
                return;
            };
            let Some(c) = l.cands.get_mut(&dist) else {
                continue;
            };
            c.state = CandState::InFlight;
            c.tries += 1;
            c.outstanding += 1;
            let info = c.info;
            let q = match kind {
                Kind::GetPeers | Kind::Announce { .. } => Query::GetPeers {
                    id: self.id,
                    info_hash: target,
                },
                Kind::Get | Kind::Put => Query::Get {
                    id: self.id,
                    target,
                    seq: l.item.as_ref().and_then(|i| i.want_seq),
                },
                _ => Query::FindNode {
                    id: self.id,
                    target,
                },
            };
            l.inflight += 1;
            l.stats.rpcs += 1;
            let purpose = Purpose::Lookup { key, node: info.id };
            if !self.query(now, info.addr, Some(info.id), q, purpose) {
                if let Some(l) = self.lookups.get_mut(&key) {
                    l.inflight -= 1;
                    if let Some(c) = l.cands.get_mut(&dist) {
                        c.outstanding -= 1;
                        c.state = CandState::Failed;
                    }
                }
            }
        }
        // Sending may have failed for every candidate: look again (terminates: each pass
        // moves at least one candidate out of Fresh).
        let stalled = self
            .lookups
            .get(&key)
            .is_some_and(|l| tried && l.inflight == 0 && l.phase == Phase::Searching);
        if stalled {
            self.step(now, key);
        }
    }

    pub(super) fn closest_done(l: &Lookup, k: usize) -> Vec<&Cand> {
        l.cands
            .values()
            .filter(|c| c.state == CandState::Done)
            .take(k)
            .collect()
    }

    pub(super) fn finish_search(&mut self, now: Instant, key: u64) {
        let k = self.cfg.k;
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        l.stats.duration = now.saturating_duration_since(l.started);
        l.stats.hops = Self::closest_done(l, 1).first().map_or(0, |c| c.depth + 1);
        match l.kind {
            Kind::Announce { port, implied_port } => {
                let targets: Vec<(NodeInfo, Vec<u8>)> = Self::closest_done(l, k)
                    .into_iter()
                    .filter_map(|c| c.token.clone().map(|t| (c.info, t)))
                    .collect();
                let info_hash = l.target;
                let mut sent = 0;
                for (info, token) in targets {
                    let q = Query::AnnouncePeer {
                        id: self.id,
                        info_hash,
                        port,
                        token,
                        implied_port,
                    };
                    if self.query(
                        now,
                        info.addr,
                        Some(info.id),
                        q,
                        Purpose::AnnounceTo { key },
                    ) {
                        sent += 1;
                    }
                }
                if let Some(l) = self.lookups.get_mut(&key) {
                    l.phase = Phase::Announcing {
                        outstanding: sent,
                        ok: 0,
                    };
                }
                if sent == 0 {
                    self.finish_announce(key);
                }
            }
            Kind::Put => {
                let targets: Vec<(NodeInfo, Vec<u8>)> = Self::closest_done(l, k)
                    .into_iter()
                    .filter_map(|c| c.token.clone().map(|t| (c.info, t)))
                    .collect();
                let Some(il) = l.item.as_mut() else {
                    return self.finish_announce(key);
                };
                let Some((value, mk)) = il.put.take() else {
                    return self.finish_announce(key);
                };
                let found = il
                    .best
                    .as_ref()
                    .and_then(|b| b.mutable.as_ref().map(|m| m.seq));
                let (item, cas) = match &mk {
                    None => (Item::immutable(value), None),
                    Some(mk) => {
                        let (seq, cas) = match mk.seq {
                            Some(s) => (s, None),
                            None => (found.map_or(1, |f| f.saturating_add(1)), found),
                        };
                        il.seq_used = Some(seq);
                        let signed = bep44::sign(&mk.seed, &mk.salt, seq, &value);
                        (
                            Item {
                                v: value,
                                mutable: Some(signed),
                            },
                            cas,
                        )
                    }
                };
                let mut sent = 0;
                for (info, token) in targets {
                    let q = Query::Put {
                        id: self.id,
                        token,
                        item: item.clone(),
                        cas,
                    };
                    if self.query(
                        now,
                        info.addr,
                        Some(info.id),
                        q,
                        Purpose::AnnounceTo { key },
                    ) {
                        sent += 1;
                    }
                }
                if let Some(l) = self.lookups.get_mut(&key) {
                    l.phase = Phase::Announcing {
                        outstanding: sent,
                        ok: 0,
                    };
                }
                if sent == 0 {
                    self.finish_announce(key);
                }
            }
            _ => {
                let Some(l) = self.lookups.remove(&key) else {
                    return;
                };
                let ev = match l.kind {
                    Kind::Bootstrap => Some(Event::Bootstrapped {
                        id: l.cmd,
                        nodes: self.table.len(),
                    }),
                    Kind::Refresh => None,
                    Kind::Get => Some(Event::Got {
                        id: l.cmd,
                        target: l.target,
                        item: l.item.and_then(|i| i.best),
                        stats: l.stats,
                    }),
                    _ => Some(Event::LookupDone {
                        id: l.cmd,
                        closest: Self::closest_done(&l, k).iter().map(|c| c.info).collect(),
                        peers: l.peers.len(),
                        stats: l.stats,
                    }),
                };
                if let Some(ev) = ev {
                    self.emit(ev);
                }
            }
        }
    }

    pub(super) fn finish_announce(&mut self, key: u64) {
        if let Some(l) = self.lookups.remove(&key) {
            let ok = match l.phase {
                Phase::Announcing { ok, .. } => ok,
                _ => 0,
            };
            if l.kind == Kind::Put {
                self.emit(Event::Stored {
                    id: l.cmd,
                    target: l.target,
                    seq: l.item.and_then(|i| i.seq_used),
                    stored_at: ok,
                    stats: l.stats,
                });
                return;
            }
            self.emit(Event::Announced {
                id: l.cmd,
                stored_at: ok,
                peers: l.peers.len(),
                stats: l.stats,
            });
        }
    }

    /// Checks an item in a `get` answer against the lookup; keeps it if valid and newer.
    /// Returns whether it was a valid immutable item.
    pub(super) fn take_item(il: &mut ItemLookup, target: &Id, r: &Response) -> bool {
        let Some(v) = &r.v else {
            return false;
        };
        match (r.k, r.sig, r.seq) {
            (Some(k), Some(sig), Some(seq)) => {
                let newer = il
                    .best
                    .as_ref()
                    .and_then(|b| b.mutable.as_ref())
                    .is_none_or(|b| seq > b.seq);
                let wanted = il.want_seq.is_none_or(|w| seq > w);
                if newer
                    && wanted
                    && bep44::mutable_target(&k, &il.salt) == *target
                    && bep44::verify(&k, &sig, &il.salt, seq, v)
                {
                    il.best = Some(Item {
                        v: v.clone(),
                        mutable: Some(bep44::Signed {
                            k,
                            sig,
                            seq,
                            salt: il.salt.clone(),
                        }),
                    });
                }
                false
            }
            _ if bep44::immutable_target(v) == *target => {
                il.best = Some(Item::immutable(v.clone()));
                true
            }
            _ => false,
        }
    }

    pub(super) fn seeded(&mut self, now: Instant, key: u64) {
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if let Phase::Seeding(n) = &mut l.phase {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.begin_search(now, key);
            }
        }
    }

    pub(super) fn announce_answered(&mut self, key: u64, ok: bool) {
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if let Phase::Announcing { outstanding, ok: n } = &mut l.phase {
            *outstanding = outstanding.saturating_sub(1);
            if ok {
                *n += 1;
            }
            if *outstanding == 0 {
                self.finish_announce(key);
            }
        }
    }

    /// A lookup query outlived its adaptive timeout: it frees its α slot and its candidate
    /// is retried (or given up once out of tries); an answer is still taken until the
    /// hard deadline.
    pub(super) fn late(&mut self, now: Instant, tid: u16) {
        let retries = self.cfg.retries;
        let Some(p) = self.pending.get_mut(&tid) else {
            return;
        };
        p.soft = None;
        let had_slot = std::mem::replace(&mut p.slot, false);
        let Purpose::Lookup { key, node } = p.purpose else {
            return;
        };
        self.stats.late += 1;
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if had_slot {
            l.inflight = l.inflight.saturating_sub(1);
        }
        l.stats.timeouts += 1;
        let dist = node.distance(&l.target);
        if let Some(c) = l.cands.get_mut(&dist) {
            if c.state == CandState::InFlight {
                c.state = if c.tries <= retries {
                    CandState::Fresh
                } else {
                    CandState::Failed
                };
            }
        }
        self.step(now, key);
    }
}
