//! Requests and their transactions: random ids, retries and timeouts, the answers to
//! unproven sources (amplification limits and challenges), error answers.

use super::*;

impl ChordNode {
    pub(super) fn send_raw(&mut self, to: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() < MAX_TRANSMITS && data.len() <= MAX_DATAGRAM {
            self.transmits.push_back(Transmit::Datagram { to, data });
        }
    }

    pub(super) fn send_oneway(&mut self, to: SocketAddr, body: Body) {
        let msg = Message {
            bits: self.bits_byte(),
            txid: self.rng.next_u64(),
            body,
        };
        self.send_raw(to, msg.encode());
    }

    pub(super) fn reply(&mut self, to: SocketAddr, txid: u64, body: Body) {
        let msg = Message {
            bits: self.bits_byte(),
            txid,
            body,
        };
        self.send_raw(to, msg.encode());
    }

    /// Whether `addr` answered one of our requests within [`VERIFIED_TTL`].
    pub fn is_verified(&self, now: Instant, addr: SocketAddr) -> bool {
        self.verified.get(&addr).is_some_and(|exp| *exp > now)
    }

    pub(super) fn mark_verified(&mut self, now: Instant, addr: SocketAddr) {
        let exp = now + VERIFIED_TTL;
        if let Some(e) = self.verified.get_mut(&addr) {
            *e = exp;
            return;
        }
        if self.verified.len() >= self.cfg.max_verified.clamp(1, MAX_VERIFIED) {
            if let Some(old) = self.verified_order.pop_front() {
                self.verified.remove(&old);
            }
        }
        self.verified.insert(addr, exp);
        self.verified_order.push_back(addr);
    }

    /// Answers `request` (from `from`) with `body` when the answer is small enough for an
    /// unverified source or `from` is verified; otherwise holds the request and challenges
    /// `from` with a Ping (see docs/chord.md, "Amplification").
    pub(super) fn answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        txid: u64,
        body: Body,
        request: &[u8],
    ) {
        let data = Message {
            bits: self.bits_byte(),
            txid,
            body,
        }
        .encode();
        if data.len() <= unverified_budget(request.len()) || self.is_verified(now, from) {
            self.send_raw(from, data);
        } else {
            self.challenge(now, from, from, request);
        }
    }

    /// Holds `request` (received from `from`) until `addr` answers a Ping.
    pub(super) fn challenge(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        from: SocketAddr,
        request: &[u8],
    ) {
        if let Some(list) = self.held.get_mut(&addr) {
            // A challenge is already in flight: no second Ping.
            if list.len() < MAX_HELD_PER_ADDR {
                list.push((from, request.to_vec()));
            }
            return;
        }
        self.stats.challenged += 1;
        if self.held.len() < MAX_CHALLENGES
            && self.request(now, addr, Body::Ping, Purpose::Challenge(addr))
        {
            self.held.insert(addr, vec![(from, request.to_vec())]);
            return;
        }
        // Out of room for held requests (a flood from forged sources fills it): a stateless
        // challenge instead. The Ping's transaction id is a keyed MAC of the address and the
        // time; a Pong echoing it verifies the address without any state kept here, and the
        // requester's own retry is then answered in full.
        let txid = self.cookie(addr, now, 0);
        self.reply(addr, txid, Body::Ping);
    }

    /// The stateless challenge's transaction id for `addr`, `back` 10-second epochs ago.
    pub(super) fn cookie(&self, addr: SocketAddr, now: Instant, back: u64) -> u64 {
        use std::hash::BuildHasher as _;
        let epoch = (now.as_secs_f64() / 10.0) as u64;
        self.cookie_key.hash_one((addr, epoch.wrapping_sub(back)))
    }

    /// Whether `txid` from `from` is the answer to a stateless challenge of ours.
    pub(super) fn is_cookie(&self, from: SocketAddr, now: Instant, txid: u64) -> bool {
        txid == self.cookie(from, now, 0) || txid == self.cookie(from, now, 1)
    }

    /// Sends a request and remembers it; `false` when too many are in flight.
    pub(super) fn request(
        &mut self,
        now: Instant,
        to: SocketAddr,
        body: Body,
        purpose: Purpose,
    ) -> bool {
        self.request_with_txid(now, to, body, purpose, None)
    }

    pub(super) fn request_with_txid(
        &mut self,
        now: Instant,
        to: SocketAddr,
        body: Body,
        purpose: Purpose,
        txid: Option<u64>,
    ) -> bool {
        if self.pending.len() >= self.cfg.max_pending.min(MAX_PENDING) {
            return false;
        }
        let mut txid = txid.unwrap_or_else(|| self.rng.next_u64());
        while self.pending.contains_key(&txid) {
            txid = self.rng.next_u64();
        }
        let msg = Message {
            bits: self.bits_byte(),
            txid,
            body,
        };
        let deadline = now + self.cfg.rpc_timeout;
        self.send_raw(to, msg.encode());
        self.deadlines.insert((deadline, txid));
        self.pending.insert(
            txid,
            Rpc {
                to,
                msg,
                deadline,
                tries_left: self.cfg.rpc_retries,
                purpose,
            },
        );
        true
    }

    pub(super) fn local_id(&mut self) -> u64 {
        let id = self.next_local;
        self.next_local += 1;
        id
    }

    /// A peer answered one of our requests with an error: the request's purpose fails
    /// with `reason` (maintenance simply stops waiting).
    pub(super) fn refused(&mut self, now: Instant, purpose: Purpose, reason: FailReason) {
        match purpose {
            Purpose::Step(lid) | Purpose::Verify(lid) | Purpose::Fallback(lid) => {
                self.finish_lookup_failed(now, lid, reason)
            }
            Purpose::Rec(id)
            | Purpose::RemoteFingers(id)
            | Purpose::RemoteStats(id)
            | Purpose::RemoteNeighbors(id) => self.emit(Event::Failed { id, reason }),
            Purpose::OpRequest(op) => {
                if let Some(op) = self.ops.remove(&op) {
                    self.emit(Event::Failed { id: op.cmd, reason });
                }
            }
            Purpose::Stabilize => self.stabilize_in_flight = false,
            Purpose::FixCheck(_) => self.fix_in_flight = false,
            Purpose::LeaveTransfer(id) => self.leave_transfer_done(id),
            Purpose::Challenge(addr) => {
                self.held.remove(&addr);
            }
            Purpose::CheckPred | Purpose::JoinFingers(_) | Purpose::Transfer => {}
        }
    }

    pub(super) fn rpc_timeout(&mut self, now: Instant, txid: u64) {
        let Some(mut rpc) = self.pending.remove(&txid) else {
            return;
        };
        if rpc.tries_left > 0 {
            rpc.tries_left -= 1;
            rpc.deadline = now + self.cfg.rpc_timeout;
            self.send_raw(rpc.to, rpc.msg.encode());
            self.deadlines.insert((rpc.deadline, txid));
            self.pending.insert(txid, rpc);
            return;
        }
        let dead = rpc.to;
        match rpc.purpose {
            Purpose::Step(lid) => self.step_timed_out(now, lid, dead),
            Purpose::Verify(lid) => self.verify_timed_out(now, lid, dead),
            Purpose::Fallback(lid) => {
                self.forget(dead);
                self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            }
            Purpose::Rec(id) => {
                self.forget(dead);
                self.emit(Event::Failed {
                    id,
                    reason: FailReason::Unreachable,
                });
            }
            Purpose::Stabilize => {
                self.stabilize_in_flight = false;
                self.forget(dead);
            }
            Purpose::FixCheck(_) => {
                // The finger died: forgotten now, looked up afresh in its next round.
                self.fix_in_flight = false;
                self.forget(dead);
            }
            Purpose::CheckPred | Purpose::Transfer | Purpose::JoinFingers(_) => self.forget(dead),
            Purpose::OpRequest(op) => {
                self.forget(dead);
                self.op_next(now, op);
            }
            Purpose::RemoteFingers(id)
            | Purpose::RemoteStats(id)
            | Purpose::RemoteNeighbors(id) => self.emit(Event::Failed {
                id,
                reason: FailReason::Unreachable,
            }),
            Purpose::LeaveTransfer(id) => self.leave_transfer_done(id),
            Purpose::Challenge(addr) => {
                self.held.remove(&addr);
            }
        }
    }
}

/// The key of a recursive lookup's request.
pub(super) fn rec_key(msg: &Message) -> Id {
    match msg.body {
        Body::FindRec { key, .. } => key,
        _ => Id::ZERO,
    }
}
