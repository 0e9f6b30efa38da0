//! find_successor: closest_preceding_finger, iterative steps with alternates and
//! fallbacks along successor lists, verification of the answer, recursive lookups.

use super::*;

impl ChordNode {
    /// Whether `key ∈ (me, successor]`: then the successor is responsible for it.
    pub(super) fn owned_by_successor(&self, key: &Id) -> Option<NodeRef> {
        let s = self.successor()?;
        key.in_half_open(&self.me.id, &s.id).then_some(s)
    }

    /// The paper's `closest_preceding_finger(key)`: the finger table searched from the last
    /// entry to the first, the first node in `(me, key)` wins. Then, as alternates should it
    /// be dead, the other distinct fingers and successors in `(me, key)`, closest to the key
    /// first.
    pub(super) fn closest_preceding(&self, key: &Id) -> Vec<NodeRef> {
        let mut out: Vec<NodeRef> = Vec::with_capacity(MAX_CANDIDATES);
        // Fingers are in clockwise order, so equal ones are neighbours: comparing with the
        // last one taken dedups (a finger table of 160 entries has ~log2 N distinct nodes).
        for f in self.fingers.iter().rev().flatten() {
            if out.len() >= MAX_CANDIDATES {
                break;
            }
            if out.last().is_none_or(|o| o.id != f.id) && f.id.in_open(&self.me.id, key) {
                out.push(*f);
            }
        }
        let ring = self.cfg.ring;
        let mut extra: Vec<NodeRef> = self
            .succs
            .iter()
            .filter(|s| s.id.in_open(&self.me.id, key) && !out.iter().any(|o| o.id == s.id))
            .copied()
            .collect();
        // Closest to the key first: largest clockwise distance from us.
        extra.sort_by_key(|s| std::cmp::Reverse(ring.clockwise(&self.me.id, &s.id)));
        extra.dedup_by_key(|s| s.id);
        if out.is_empty() {
            out = extra;
        } else {
            out.extend(extra);
        }
        out.truncate(MAX_CANDIDATES);
        out
    }

    /// One step of find_successor evaluated here.
    pub(super) fn step(&self, key: &Id) -> (bool, Vec<NodeRef>) {
        if *key == self.me.id && self.joined && !self.left {
            // Our own id is ours: we are its successor (then our successors, should we
            // have died by the time the asker checks). No finger is strictly closer.
            let mut v = Vec::with_capacity(self.succs.len() + 1);
            v.push(self.me);
            v.extend(self.succs.iter().filter(|s| s.id != self.me.id));
            v.truncate(MAX_NODES);
            return (true, v);
        }
        if let Some(_s) = self.owned_by_successor(key) {
            let mut v = self.succs.clone();
            v.truncate(MAX_NODES);
            return (true, v);
        }
        let c = self.closest_preceding(key);
        if c.is_empty() {
            // No finger precedes the key: our successor is the best answer we have.
            return (true, self.succs.clone());
        }
        (false, c)
    }

    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        why: Why,
        key: Id,
        start: Option<SocketAddr>,
    ) {
        let lid = self.local_id();
        let mut lk = Lookup {
            why,
            key,
            route: Vec::new(),
            current: None,
            alternates: Vec::new(),
            timeouts: 0,
            finals: Vec::new(),
            from: None,
            ring: self.cfg.ring,
            dead: Vec::new(),
            fallbacks: 0,
        };
        match start {
            Some(addr) => {
                lk.current = Some(addr);
                self.lookups.insert(lid, lk);
                self.ask_step(now, lid);
            }
            None => {
                // The first step is evaluated here, without a message.
                lk.route.push(self.me.id);
                let (done, nodes) = self.step(&key);
                self.lookups.insert(lid, lk);
                self.step_result(now, lid, self.me, 0, done, nodes);
            }
        }
    }

    pub(super) fn ask_step(&mut self, now: Instant, lid: u64) {
        let Some(lk) = self.lookups.get(&lid) else {
            return;
        };
        let (Some(to), key) = (lk.current, lk.key) else {
            return;
        };
        if to == self.me.addr && self.is_member() {
            // Our own entry came back as a candidate: evaluate locally.
            let (done, nodes) = self.step(&key);
            if let Some(lk) = self.lookups.get_mut(&lid) {
                lk.route.push(self.me.id);
            }
            self.step_result(now, lid, self.me, 0, done, nodes);
            return;
        }
        if !self.request(now, to, Body::FindStep { key }, Purpose::Step(lid)) {
            self.finish_lookup_failed(now, lid, FailReason::Busy);
        }
    }

    /// A step's answer from `from` (whose ring has `bits` bits; 0 means ours).
    pub(super) fn step_result(
        &mut self,
        now: Instant,
        lid: u64,
        from: NodeRef,
        bits: u8,
        done: bool,
        nodes: Vec<NodeRef>,
    ) {
        // A client learns m from the answers; a member uses its own ring.
        let ring = if self.cfg.member || bits == 0 {
            self.cfg.ring
        } else {
            Ring::new(u32::from(bits)).unwrap_or(self.cfg.ring)
        };
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        lk.ring = ring;
        lk.key = ring.reduce(&lk.key);
        if lk.route.last() != Some(&from.id) {
            lk.route.push(from.id);
        }
        if done {
            lk.finals = nodes;
            self.verify_next(now, lid);
            return;
        }
        if lk.route.len() > MAX_PATH {
            self.finish_lookup_failed(now, lid, FailReason::TooManyHops);
            return;
        }
        // Only candidates strictly closer to the key than `from` make progress.
        let key = lk.key;
        let dist_from = ring.clockwise(&from.id, &key);
        let mut c: Vec<NodeRef> = nodes
            .into_iter()
            .filter(|n| ring.clockwise(&n.id, &key) < dist_from)
            .collect();
        if c.is_empty() {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            return;
        }
        let next = c.remove(0);
        lk.current = Some(next.addr);
        lk.alternates = c;
        lk.from = Some(from);
        self.ask_step(now, lid);
    }

    /// Every next hop `from` offered is dead: fall back on `from`'s successor list. Its
    /// first live entry either still precedes the key (continue there) or is the key's
    /// successor.
    pub(super) fn fallback(&mut self, now: Instant, lid: u64) {
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        let Some(from) = lk.from else {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            return;
        };
        lk.fallbacks += 1;
        if lk.fallbacks > 3 {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            return;
        }
        if from.addr == self.me.addr && self.is_member() {
            let succs = self.succs.clone();
            self.fallback_succs(now, lid, from, succs);
        } else if !self.request(now, from.addr, Body::GetNeighbors, Purpose::Fallback(lid)) {
            self.finish_lookup_failed(now, lid, FailReason::Busy);
        }
    }

    pub(super) fn fallback_succs(
        &mut self,
        now: Instant,
        lid: u64,
        from: NodeRef,
        succs: Vec<NodeRef>,
    ) {
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        let live: Vec<NodeRef> = succs
            .into_iter()
            .filter(|s| !lk.dead.contains(&s.addr) && s.id != from.id)
            .collect();
        let key = lk.key;
        let before: Vec<NodeRef> = live
            .iter()
            .filter(|s| s.id.in_open(&from.id, &key))
            .copied()
            .collect();
        if let Some((closest, rest)) = before.split_last() {
            lk.current = Some(closest.addr);
            lk.alternates = rest.iter().rev().copied().collect();
            self.ask_step(now, lid);
        } else if live.is_empty() {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
        } else {
            lk.finals = live;
            self.verify_next(now, lid);
        }
    }

    /// The key's successor as its predecessor sees it may have died unnoticed: check that
    /// it answers, falling back along the predecessor's successor list.
    pub(super) fn verify_next(&mut self, now: Instant, lid: u64) {
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        let dead = std::mem::take(&mut lk.dead);
        lk.finals.retain(|f| !dead.contains(&f.addr));
        lk.dead = dead;
        let Some(first) = lk.finals.first().copied() else {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            return;
        };
        let answered_just_now = lk.route.last() == Some(&first.id);
        // A finger repair takes the answer as is: a dead finger is found by the next lookup
        // through it and repaired in the next round (the paper's fix_fingers verifies
        // nothing either); user lookups and joins check the successor is alive.
        let fix = matches!(lk.why, Why::Fix(_));
        if (first.addr == self.me.addr && self.is_member()) || answered_just_now || fix {
            self.verified(now, lid);
            return;
        }
        if !self.request(now, first.addr, Body::Ping, Purpose::Verify(lid)) {
            self.finish_lookup_failed(now, lid, FailReason::Busy);
        }
    }

    pub(super) fn verified(&mut self, now: Instant, lid: u64) {
        let Some(lk) = self.lookups.remove(&lid) else {
            return;
        };
        match lk.finals.first().copied() {
            Some(resp) => {
                let finals = lk.finals.clone();
                self.lookup_done(now, lk, resp, finals);
            }
            None => self.fail_why(now, lk.why, FailReason::Unreachable),
        }
    }

    pub(super) fn verify_timed_out(&mut self, now: Instant, lid: u64, dead: SocketAddr) {
        self.forget(dead);
        if let Some(lk) = self.lookups.get_mut(&lid) {
            lk.timeouts += 1;
            if lk.dead.len() < MAX_PATH {
                lk.dead.push(dead);
            }
            if !lk.finals.is_empty() {
                lk.finals.remove(0);
            }
        }
        self.verify_next(now, lid);
    }

    pub(super) fn step_timed_out(&mut self, now: Instant, lid: u64, dead: SocketAddr) {
        self.forget(dead);
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        lk.timeouts += 1;
        if lk.dead.len() < MAX_PATH {
            lk.dead.push(dead);
        }
        if lk.alternates.is_empty() {
            self.fallback(now, lid);
            return;
        }
        let next = lk.alternates.remove(0);
        lk.current = Some(next.addr);
        self.ask_step(now, lid);
    }

    pub(super) fn finish_lookup_failed(&mut self, now: Instant, lid: u64, reason: FailReason) {
        if let Some(lk) = self.lookups.remove(&lid) {
            self.fail_why(now, lk.why, reason);
        }
    }

    pub(super) fn fail_why(&mut self, _now: Instant, why: Why, reason: FailReason) {
        match why {
            Why::User(id) => self.emit(Event::Failed { id, reason }),
            Why::Join(id) => self.emit(Event::Failed { id, reason }),
            Why::Fix(_) => self.fix_in_flight = false,
            Why::Op(op) => {
                if let Some(op) = self.ops.remove(&op) {
                    self.emit(Event::Failed { id: op.cmd, reason });
                }
            }
        }
    }

    pub(super) fn lookup_done(
        &mut self,
        now: Instant,
        lk: Lookup,
        resp: NodeRef,
        succs: Vec<NodeRef>,
    ) {
        match lk.why {
            Why::User(id) => self.emit(Event::LookupDone {
                id,
                key: lk.key,
                route: lk.route,
                responsible: resp,
                timeouts: lk.timeouts,
            }),
            Why::Join(id) => {
                if resp.id == self.me.id {
                    self.emit(Event::Failed {
                        id,
                        reason: FailReason::IdTaken,
                    });
                    return;
                }
                self.pred = None;
                self.set_successor_list(resp, &succs[1.min(succs.len())..]);
                self.start_member(now);
                // The lecture's shortcut: start from a copy of the successor's fingers.
                self.request(now, resp.addr, Body::GetFingers, Purpose::JoinFingers(id));
                self.emit(Event::Joined {
                    id,
                    successor: resp,
                });
                // Stabilize right away rather than after a period.
                self.timers[Timer::Stabilize as usize] = Some(now);
            }
            Why::Fix(i) => {
                self.fix_in_flight = false;
                self.set_finger_from(i, resp);
            }
            Why::Op(op_id) => {
                let Some(op) = self.ops.get_mut(&op_id) else {
                    return;
                };
                op.targets = succs
                    .into_iter()
                    .take(self.cfg.succ_list_len.max(1))
                    .collect();
                self.op_next(now, op_id);
            }
        }
    }

    pub(super) fn start_recursive(&mut self, now: Instant, id: u64, key: Id) {
        let (done, nodes) = self.step(&key);
        if done {
            if let Some(r) = nodes.first() {
                self.emit(Event::LookupDone {
                    id,
                    key,
                    route: vec![self.me.id],
                    responsible: *r,
                    timeouts: 0,
                });
                return;
            }
        }
        let Some(next) = nodes.first().copied() else {
            self.emit(Event::Failed {
                id,
                reason: FailReason::Unreachable,
            });
            return;
        };
        let body = Body::FindRec {
            key,
            origin: self.me.addr,
            path: vec![self.me.id],
        };
        // The whole query is retried end to end; hop-by-hop losses show up as a timeout.
        if !self.request(now, next.addr, body, Purpose::Rec(id)) {
            self.emit(Event::Failed {
                id,
                reason: FailReason::Busy,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_find_rec(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &[u8],
        txid: u64,
        key: Id,
        origin: SocketAddr,
        mut path: Vec<Id>,
    ) {
        let key = self.cfg.ring.reduce(&key);
        path.push(self.me.id);
        let (done, nodes) = self.step(&key);
        if done {
            let body = Body::RecDone { path, succs: nodes };
            if origin == from {
                self.answer(now, from, txid, body, request);
            } else if self.is_verified(now, origin) {
                // Only to an origin that proved it receives at its address: a FindRec
                // naming someone else's address draws nothing but a 13-byte Ping.
                self.reply(origin, txid, body);
            } else {
                self.challenge(now, origin, from, request);
            }
            return;
        }
        if path.len() >= MAX_PATH {
            return; // a loop through stale tables: the originator times out
        }
        if let Some(next) = nodes.first() {
            let msg = Message {
                bits: self.bits_byte(),
                txid,
                body: Body::FindRec { key, origin, path },
            };
            self.send_raw(next.addr, msg.encode());
        }
    }
}
