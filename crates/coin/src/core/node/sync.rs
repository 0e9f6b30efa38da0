//! Headers-first sync: headers into the tree, blocks asked from peers within the in-flight
//! windows, held until their parent is stored, handed to the store, and what its answer does
//! to the active chain, the mempool and the peers.
use servent_core::ConnId;

use super::*;

impl Node {
    pub(super) fn on_headers(&mut self, conn: ConnId, hs: Vec<BlockHeader>) {
        let Some(first) = hs.first() else {
            return;
        };
        if self.headers.get(&first.prev).is_none() {
            let Some(p) = self.peers.get_mut(&conn) else {
                return;
            };
            p.unconnecting_headers += 1;
            let n = p.unconnecting_headers;
            self.ask_headers(conn);
            if n % MAX_UNCONNECTING_HEADERS == 0 {
                self.misbehave(conn, 20, "headers that do not connect");
            }
            return;
        }
        for w in hs.windows(2) {
            if w[1].prev != w[0].hash() {
                self.misbehave(conn, 20, "non-continuous headers sequence");
                return;
            }
        }
        let unix = self.unix();
        let mut last = None;
        for h in &hs {
            match self.headers.accept(h, unix) {
                Ok(_) => last = Some(h.hash()),
                Err(e @ HeaderError::Full) => {
                    let _ = e;
                    break;
                }
                Err(e) => {
                    let reason = format!("invalid header {}: {e}", h.hash_hex());
                    let score = e.score();
                    self.misbehave(conn, score, &reason);
                    return;
                }
            }
        }
        if let Some(p) = self.peers.get_mut(&conn) {
            p.unconnecting_headers = 0;
            if let Some(last) = last {
                p.mark_known(last);
                let better = match p.best_known.and_then(|b| self.headers.get(&b)) {
                    Some(b) => self.headers.get(&last).is_some_and(|l| l.work > b.work),
                    None => true,
                };
                if better {
                    p.best_known = Some(last);
                }
            }
        }
        if hs.len() == MAX_HEADERS {
            if let Some(l) = hs.last() {
                let locator = self.headers.locator(&l.hash());
                self.send(
                    conn,
                    &Message::GetHeaders(GetHeaders {
                        version: PROTOCOL_VERSION as u32,
                        locator,
                        stop: [0; 32],
                    }),
                );
            }
        }
        self.schedule_downloads();
    }

    /// Ask peers for the blocks of the best header chain we miss, within the windows.
    pub(super) fn schedule_downloads(&mut self) {
        let room = self
            .cfg
            .max_blocks_in_flight
            .saturating_sub(self.in_flight.len() + self.held.len());
        if room == 0 {
            return;
        }
        let missing = self.headers.missing_blocks(room, |h| {
            self.in_flight.contains_key(h)
                || self.held.contains_key(h)
                || self.submitting.contains(h)
        });
        if missing.is_empty() {
            return;
        }
        let best = self.headers.best().header.hash();
        let mut asks: BTreeMap<ConnId, Vec<Inv>> = BTreeMap::new();
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        let start = self.rng.below(conns.len().max(1) as u64) as usize;
        for hash in missing {
            let Some(height) = self.headers.get(&hash).map(|e| e.height) else {
                continue;
            };
            for k in 0..conns.len() {
                let c = conns[(start + k) % conns.len()];
                let Some(p) = self.peers.get(&c) else {
                    continue;
                };
                if !p.ready() || p.blocks_in_flight.len() >= self.cfg.blocks_per_peer {
                    continue;
                }
                // The missing blocks lie on the path to the best header: a peer whose best is
                // that header has them all (the usual case; no walk back).
                let has = p.best_known.is_some_and(|b| {
                    b == best
                        || self.headers.ancestor(&b, height).map(|a| a.header.hash()) == Some(hash)
                });
                if !has {
                    continue;
                }
                if let Some(p) = self.peers.get_mut(&c) {
                    p.blocks_in_flight.insert(hash);
                }
                self.in_flight.insert(hash, (c, self.now));
                asks.entry(c).or_default().push(Inv {
                    kind: INV_BLOCK,
                    hash,
                });
                break;
            }
        }
        for (c, inv) in asks {
            self.send(c, &Message::GetData(inv));
        }
    }

    pub(super) fn on_block(&mut self, conn: ConnId, b: Block) {
        let hash = b.header.hash();
        if let Some(p) = self.peers.get_mut(&conn) {
            p.blocks_in_flight.remove(&hash);
            p.mark_known(hash);
        }
        if self.in_flight.get(&hash).is_some_and(|(c, _)| *c == conn) {
            self.in_flight.remove(&hash);
        }
        self.take_block(b, Origin::Peer(conn));
        self.schedule_downloads();
    }

    /// A block from a peer or the user: header into the tree, then hold it for the store.
    pub(super) fn take_block(&mut self, b: Block, origin: Origin) {
        let hash = b.header.hash();
        if self.held.contains_key(&hash) || self.submitting.contains(&hash) {
            return self.local_result(origin, Err("duplicate: block is being processed".into()));
        }
        match self.headers.get(&hash) {
            Some(e) if e.invalid => {
                if let Origin::Peer(c) = origin {
                    self.misbehave(c, BAN_SCORE, "block known to be invalid");
                }
                return self.local_result(origin, Err("invalid: block known to be invalid".into()));
            }
            Some(e) if e.have_block => return self.local_result(origin, Err("duplicate".into())),
            Some(_) => {}
            None => {
                let unix = self.unix();
                match self.headers.accept(&b.header, unix) {
                    Ok(_) => {}
                    Err(HeaderError::Unconnected) => {
                        if let Origin::Peer(c) = origin {
                            self.ask_headers(c);
                        }
                        return self.local_result(
                            origin,
                            Err("inconclusive: previous block unknown".into()),
                        );
                    }
                    Err(e) => {
                        let reason = format!("invalid: {e}");
                        if let Origin::Peer(c) = origin {
                            let s = e.score();
                            self.misbehave(c, s, &reason);
                        }
                        return self.local_result(origin, Err(reason));
                    }
                }
            }
        }
        // A block we did not ask for is kept only if it would extend the chain we build on.
        if let Origin::Peer(_) = origin {
            if self.held.len() >= self.cfg.max_blocks_in_flight {
                return;
            }
        }
        self.held.insert(hash, (b, origin, self.now));
        self.submit_ready();
    }

    pub(super) fn local_result(&mut self, origin: Origin, result: Result<(), String>) {
        if let Origin::Local(id) = origin {
            self.events.push_back(Event::BlockResult { id, result });
        }
    }

    /// Send to the store every held block whose parent is stored or on its way there.
    pub(super) fn submit_ready(&mut self) {
        loop {
            let ready: Vec<[u8; 32]> = self
                .held
                .iter()
                .filter(|(_, (b, _, _))| {
                    self.submitting.contains(&b.header.prev)
                        || self
                            .headers
                            .get(&b.header.prev)
                            .is_some_and(|e| e.have_block)
                })
                .map(|(h, _)| *h)
                .collect();
            if ready.is_empty() {
                return;
            }
            for h in ready {
                if let Some((block, origin, _)) = self.held.remove(&h) {
                    self.submitting.insert(h);
                    self.events
                        .push_back(Event::Store(Request::AcceptBlock { origin, block }));
                }
            }
        }
    }

    pub(super) fn on_block_done(
        &mut self,
        origin: Origin,
        hash: [u8; 32],
        result: Result<Applied, BlockFailure>,
    ) {
        self.submitting.remove(&hash);
        match result {
            Ok(applied) => {
                self.headers.set_have_block(&hash);
                if !applied.connected.is_empty() || !applied.disconnected.is_empty() {
                    let hs: Vec<BlockHeader> =
                        applied.connected.iter().map(|b| b.header.clone()).collect();
                    self.headers.set_active(applied.disconnected.len(), &hs);
                    for b in &applied.connected {
                        self.mempool.remove_for_block(&b.txs);
                    }
                    self.rejects.clear();
                    // A parent may have come in a block.
                    let orphans: Vec<[u8; 32]> = self.orphans.keys().copied().collect();
                    self.retry_orphans(&orphans);
                    for b in applied.disconnected.iter().rev() {
                        for tx in b.txs.iter().skip(1) {
                            self.take_tx(tx.clone(), Origin::Readd);
                        }
                    }
                    let tip = self.tip();
                    self.events.push_back(Event::Tip {
                        height: self.height(),
                        hash: tip,
                    });
                    if self.headers.best().header.hash() == tip {
                        self.relay(INV_BLOCK, tip, origin);
                    }
                }
                self.local_result(origin, Ok(()));
            }
            Err(BlockFailure::Invalid(reason)) => {
                self.headers.mark_invalid(&hash);
                let bad: Vec<[u8; 32]> = self
                    .held
                    .keys()
                    .filter(|h| self.headers.get(h).is_some_and(|e| e.invalid))
                    .copied()
                    .collect();
                for h in bad {
                    self.held.remove(&h);
                }
                if let Origin::Peer(c) = origin {
                    self.misbehave(c, BAN_SCORE, &format!("invalid block: {reason}"));
                }
                self.local_result(origin, Err(format!("invalid: {reason}")));
            }
            Err(BlockFailure::Other(reason)) => self.local_result(origin, Err(reason)),
        }
        self.submit_ready();
        self.schedule_downloads();
    }
}
