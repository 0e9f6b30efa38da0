//! Requesting and serving: which blocks to ask each peer for (rarest first, end game), rate limits, and serving the blocks peers ask us for.
//! Part of the client core ([`super::Client`]): an `impl` block over its state.

use super::*;

impl<S: Storage> Client<S> {
    // ---------------------------------------------------------------------------------
    // Requesting and serving.

    pub(super) fn queue_depth(&self, p: &Peer) -> usize {
        // Enough requests to cover the peer's rate for QUEUE_TIME: the bandwidth-delay product
        // with a generous delay (libtorrent's request_queue_time). Sizing by the measured
        // latency instead feeds the sender's queue (its latency includes our own backlog).
        let delay = QUEUE_TIME.as_secs_f64();
        let by_rate = (p.down_rate * delay / f64::from(BLOCK_LEN)) as usize;
        by_rate.clamp(MIN_REQUESTS, self.cfg.max_requests.max(MIN_REQUESTS))
    }

    pub(super) fn fill_requests(&mut self, now: Instant, conn: ConnId) {
        if self.is_complete() || self.stopped || self.disk_full() {
            return;
        }
        let Some(p) = self.peers.get(&conn) else {
            return;
        };
        if p.handshake.is_none() || !p.am_interested {
            return;
        }
        let choked = p.peer_choking;
        if choked && (!p.fast || p.allowed_fast.is_empty()) {
            return;
        }
        let depth = self.queue_depth(p);
        if p.inflight.len() >= depth {
            return;
        }
        let mut want = depth - p.inflight.len();
        if self.cfg.download_limit.is_some() {
            want = want.min((self.down_tokens / f64::from(BLOCK_LEN)).max(0.0) as usize);
            if want == 0 {
                return;
            }
        }
        let inflight: Vec<BlockRef> = p.inflight.iter().map(|(r, _)| *r).collect();
        let allowed = choked.then(|| p.allowed_fast.clone());
        let has = p.has.clone();
        let budget = self.new_piece_budget();
        self.picker.set_new_piece_budget(budget);
        let picks = self
            .picker
            .pick(&has, want, &inflight, allowed.as_deref(), &mut self.rng);
        if picks.is_empty() {
            return;
        }
        if self.cfg.download_limit.is_some() {
            self.down_tokens -= picks.iter().map(|r| f64::from(r.length)).sum::<f64>();
        }
        let mut data = Vec::with_capacity(picks.len() * 17);
        for r in &picks {
            Message::Request(*r).encode_into(&mut data);
        }
        if let Some(p) = self.peers.get_mut(&conn) {
            p.inflight.extend(picks.iter().map(|r| (*r, now)));
            p.last_send = now;
        }
        self.send_peer(conn, data);
    }

    pub(super) fn serve(&mut self, now: Instant, conn: ConnId) {
        loop {
            if self.disk_full() {
                return;
            }
            let Some(p) = self.peers.get_mut(&conn) else {
                return;
            };
            let Some(r) = p.requests.front().copied() else {
                return;
            };
            if self.cfg.upload_limit.is_some() && self.up_tokens < f64::from(r.length) {
                return;
            }
            p.requests.pop_front();
            if self.cfg.upload_limit.is_some() {
                self.up_tokens -= f64::from(r.length);
            }
            let offset = u64::from(r.index) * self.piece_length + u64::from(r.begin);
            self.submit(
                now,
                Pending::Read { conn, block: r },
                DiskJob::Read {
                    offset,
                    len: r.length,
                },
            );
        }
    }

    /// A block read for `conn` came back from the disk: send it (unless the peer is gone).
    pub(super) fn send_block(&mut self, now: Instant, conn: ConnId, r: BlockRef, block: &[u8]) {
        let len = u64::from(r.length);
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        p.up_total += len;
        p.up_round += len;
        self.uploaded += len;
        self.up_tick += len;
        self.send_msg(
            conn,
            &Message::Piece {
                index: r.index,
                begin: r.begin,
                data: block,
            },
            now,
        );
    }
}
