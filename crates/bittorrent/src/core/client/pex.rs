//! Peer exchange (BEP 11 ut_pex): the periodic added/dropped message to each peer.
//! Part of the client core ([`super::Client`]): an `impl` block over its state.

use super::*;

impl<S: Storage> Client<S> {
    // ---------------------------------------------------------------------------------
    // Peer exchange.

    pub(super) fn pex_round(&mut self, now: Instant) {
        if self.private {
            return;
        }
        let current: BTreeSet<SocketAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.handshake.is_some())
            .filter_map(|(c, p)| {
                if c.is_inbound() {
                    p.ext
                        .as_ref()?
                        .port
                        .map(|port| SocketAddr::new(p.addr.ip(), port))
                } else {
                    Some(p.addr)
                }
            })
            .collect();
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for c in conns {
            let Some(p) = self.peers.get_mut(&c) else {
                continue;
            };
            let Some(id) = p.ext.as_ref().and_then(|e| e.ut_pex) else {
                continue;
            };
            let me = p.addr;
            let added: Vec<SocketAddr> = current
                .iter()
                .filter(|a| **a != me && !p.pex_sent.contains(a))
                .take(50)
                .copied()
                .collect();
            let dropped: Vec<SocketAddr> = p
                .pex_sent
                .iter()
                .filter(|a| !current.contains(a))
                .take(50)
                .copied()
                .collect();
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            for a in &added {
                p.pex_sent.insert(*a);
            }
            for a in &dropped {
                p.pex_sent.remove(a);
            }
            let payload = Pex { added, dropped }.encode();
            self.send_msg(
                c,
                &Message::Extended {
                    id,
                    payload: &payload,
                },
                now,
            );
        }
    }
}
