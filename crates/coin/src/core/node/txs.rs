//! Transactions: intake (bounded coin lookups at the store), mempool admission and relay of
//! blocks and transactions to the peers that do not know them.
use servent_core::ConnId;

use super::*;

impl Node {
    pub(super) fn on_tx(&mut self, conn: ConnId, tx: Transaction) {
        let txid = tx.txid();
        if let Some(p) = self.peers.get_mut(&conn) {
            p.txs_requested.remove(&txid);
            p.mark_known(txid);
        }
        if self.tx_requested.get(&txid).map(|(c, _)| *c) == Some(conn) {
            self.tx_requested.remove(&txid);
        }
        self.take_tx(tx, Origin::Peer(conn));
    }

    pub(super) fn take_tx(&mut self, tx: Transaction, origin: Origin) {
        let txid = tx.txid();
        let refuse = if self.mempool.contains(&txid) {
            Some("txn-already-in-mempool")
        } else if self.tx_pending.contains(&txid) {
            Some("txn-already-known")
        } else if origin != Origin::Readd && self.rejects.contains(&txid) {
            Some("txn-already-rejected")
        } else {
            None
        };
        if let Some(r) = refuse {
            if let Origin::Local(id) = origin {
                self.events.push_back(Event::TxResult {
                    id,
                    result: Err(r.into()),
                });
            }
            return;
        }
        if self.coins_out < MAX_COINS_OUT {
            self.tx_pending.insert(txid);
            self.coins_out += 1;
            self.events
                .push_back(Event::Store(Request::Coins { origin, tx }));
        } else if self.coins_waiting.len() < MAX_COINS_WAITING {
            self.tx_pending.insert(txid);
            self.coins_waiting.push_back((origin, tx));
        } else if let Origin::Local(id) = origin {
            // The store is this far behind: say so instead of queueing without end.
            self.events.push_back(Event::TxResult {
                id,
                result: Err("mempool busy: too many transactions waiting, try again".into()),
            });
        }
        // A peer's transaction beyond both bounds is not kept; it may be announced again.
    }

    /// The store answered a coin lookup: hand it the next waiting one.
    pub(super) fn next_coins(&mut self) {
        self.coins_out = self.coins_out.saturating_sub(1);
        while self.coins_out < MAX_COINS_OUT {
            let Some((origin, tx)) = self.coins_waiting.pop_front() else {
                return;
            };
            self.coins_out += 1;
            self.events
                .push_back(Event::Store(Request::Coins { origin, tx }));
        }
    }

    pub(super) fn on_coins(&mut self, origin: Origin, tx: Transaction, view: UtxoView) {
        let txid = tx.txid();
        self.tx_pending.remove(&txid);
        self.next_coins();
        let tip = self.tip();
        let mtp = self.headers.median_time_past(&tip);
        let tx_for_orphan = tx.clone();
        let now_for_orphan = self.now;
        let r = self
            .mempool
            .accept(tx, &view, self.height(), mtp, &self.secp);
        let result = match r {
            Ok(_evicted) => {
                self.relay(INV_TX, txid, origin);
                // Orphans waiting for this parent try again.
                let kids: Vec<[u8; 32]> = self
                    .orphans
                    .iter()
                    .filter(|(_, (t, _))| t.inputs.iter().any(|i| i.prevout.txid == txid))
                    .map(|(k, _)| *k)
                    .collect();
                self.retry_orphans(&kids);
                Ok(txid)
            }
            Err(MempoolError::MissingInput(n)) if !matches!(origin, Origin::Local(_)) => {
                self.keep_orphan(tx_for_orphan, now_for_orphan);
                Err(MempoolError::MissingInput(n).to_string())
            }
            Err(e) => {
                if self.rejects.len() >= RECENT_REJECTS {
                    self.rejects.clear();
                }
                if !matches!(e, MempoolError::MissingInput(_)) {
                    self.rejects.insert(txid);
                }
                if let (Origin::Peer(c), MempoolError::Invalid(_)) = (origin, &e) {
                    self.misbehave(c, BAN_SCORE, "invalid transaction");
                }
                Err(e.to_string())
            }
        };
        if let Origin::Local(id) = origin {
            self.events.push_back(Event::TxResult { id, result });
        }
    }

    /// Keep a transaction whose parent we do not have yet (Core's orphan pool): bounded, the
    /// oldest makes room.
    fn keep_orphan(&mut self, tx: Transaction, now: Instant) {
        let txid = tx.txid();
        if self.orphans.len() >= MAX_ORPHANS && !self.orphans.contains_key(&txid) {
            let oldest = self
                .orphans
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.orphans.remove(&k);
            }
        }
        self.orphans.insert(txid, (tx, now));
    }

    /// Offer orphans `txids` to the pool again.
    pub(super) fn retry_orphans(&mut self, txids: &[[u8; 32]]) {
        for t in txids {
            if let Some((tx, _)) = self.orphans.remove(t) {
                self.take_tx(tx, Origin::Readd);
            }
        }
    }

    /// Announce `hash` to every ready peer that does not know it (not back to `origin`).
    pub(super) fn relay(&mut self, kind: u32, hash: [u8; 32], origin: Origin) {
        let header = (kind == INV_BLOCK)
            .then(|| self.headers.get(&hash).map(|e| e.header.clone()))
            .flatten();
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for c in conns {
            if origin == Origin::Peer(c) {
                continue;
            }
            let Some(p) = self.peers.get_mut(&c) else {
                continue;
            };
            if !p.ready() || p.knows(&hash) {
                continue;
            }
            p.mark_known(hash);
            let m = match (&header, p.send_headers) {
                (Some(h), true) => Message::Headers(vec![h.clone()]),
                _ => Message::Inv(vec![Inv { kind, hash }]),
            };
            self.send(c, &m);
        }
    }
}
