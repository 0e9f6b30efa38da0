//! Ring maintenance: create and join state, stabilize/notify, fix_fingers,
//! check_predecessor, failures (forget), graceful leave, and the periodic timers.

use super::*;

impl ChordNode {
    /// Starts a new ring with this node alone in it (the paper's `create`).
    pub fn create(&mut self, now: Instant) {
        if !self.cfg.member {
            return;
        }
        self.pred = None;
        self.succs = vec![self.me];
        if let Some(f) = self.fingers.first_mut() {
            *f = Some(self.me);
        }
        self.start_member(now);
    }

    /// Builds a node with a correct, stabilized state for the ring `members` (the caller
    /// knows every member): fingers, successor list and predecessor as stabilization would
    /// leave them. Used by large simulations that do not replay the joins.
    pub fn with_ideal_state(cfg: Config, rng: Rng, now: Instant, members: &[NodeRef]) -> ChordNode {
        let mut sorted: Vec<NodeRef> = members.to_vec();
        sorted.sort();
        sorted.dedup_by_key(|n| n.id);
        ChordNode::with_ideal_state_sorted(cfg, rng, now, &sorted)
    }

    /// [`ChordNode::with_ideal_state`] for members already sorted by id without duplicates
    /// (the caller sorts once for the whole ring: O(log N) per finger instead of a sort per
    /// node).
    pub fn with_ideal_state_sorted(
        cfg: Config,
        rng: Rng,
        now: Instant,
        sorted: &[NodeRef],
    ) -> ChordNode {
        let mut node = ChordNode::new(cfg, rng);
        let succ_of = |k: &Id| -> NodeRef {
            let i = sorted.partition_point(|n| n.id < *k);
            sorted.get(i).or(sorted.first()).copied().unwrap_or(node.me)
        };
        let m = node.cfg.ring.bits();
        for i in 0..m {
            let start = node.cfg.ring.add_pow2(&node.me.id, i);
            if let Some(f) = node.fingers.get_mut(i as usize) {
                *f = Some(succ_of(&start));
            }
        }
        let pos = sorted.partition_point(|n| n.id <= node.me.id);
        let n = sorted.len();
        node.succs = (0..node.cfg.succ_list_len.min(n.saturating_sub(1)).max(1))
            .filter_map(|k| sorted.get((pos + k) % n.max(1)).copied())
            .collect();
        node.pred = sorted.get((pos + n.saturating_sub(2)) % n.max(1)).copied();
        node.start_member(now);
        node
    }

    pub(super) fn start_member(&mut self, now: Instant) {
        self.joined = true;
        let periods = [
            self.cfg.stabilize_every,
            self.cfg.fix_fingers_every,
            self.cfg.check_pred_every,
            self.cfg.replicate_every,
        ];
        for (slot, p) in self.timers.iter_mut().zip(periods) {
            // A random phase, so that a ring's nodes do not all stabilize in lock step.
            let us = u64::try_from(p.as_micros()).unwrap_or(u64::MAX).max(1);
            *slot = Some(now + Duration::from_micros(self.rng.below(us)));
        }
    }

    /// Changes the periods of `stabilize` and `fix_fingers` (from their next firing on,
    /// with a fresh random phase).
    pub fn set_periods(&mut self, stabilize: Duration, fix_fingers: Duration) {
        self.cfg.stabilize_every = stabilize;
        self.cfg.fix_fingers_every = fix_fingers;
        for (t, p) in [
            (Timer::Stabilize, stabilize),
            (Timer::FixFingers, fix_fingers),
        ] {
            let us = u64::try_from(p.as_micros()).unwrap_or(u64::MAX).max(1);
            let jitter = Duration::from_micros(self.rng.below(us));
            if let Some(at) = self.timers[t as usize].as_mut() {
                *at += jitter;
            }
        }
    }

    /// A peer stopped answering: forget it everywhere.
    pub(super) fn forget(&mut self, addr: SocketAddr) {
        if addr == self.me.addr {
            return;
        }
        let was_successor = self.successor().filter(|s| s.addr == addr);
        for f in self.fingers.iter_mut() {
            if f.is_some_and(|n| n.addr == addr) {
                *f = None;
            }
        }
        self.succs.retain(|s| s.addr != addr);
        if self.pred.is_some_and(|p| p.addr == addr) {
            self.pred = None;
        }
        if self.joined && !self.left && self.succs.is_empty() {
            // Out of successors: fall back to the nearest finger, then our predecessor,
            // then ourselves (stabilize will pull us back into the ring).
            let me = self.me.id;
            let ring = self.cfg.ring;
            let best = self
                .fingers
                .iter()
                .flatten()
                .filter(|f| f.id != me)
                .min_by_key(|f| ring.clockwise(&me, &f.id))
                .copied()
                .or(self.pred)
                .unwrap_or(self.me);
            self.succs.push(best);
            if best.id == me {
                // Alone now: keep asking the successor we lost (a partition or a flood may
                // have cut us off; a crashed node costs one request per period, for a while).
                if let Some(s) = was_successor {
                    if self.lost.is_none_or(|(l, _)| l.addr != s.addr) {
                        self.lost = Some((s, LOST_RETRIES));
                    }
                }
            }
        }
        self.sync_finger0();
    }

    pub(super) fn sync_finger0(&mut self) {
        let s = self.successor();
        if let Some(f) = self.fingers.first_mut() {
            *f = s;
        }
    }

    pub(super) fn set_successor_list(&mut self, first: NodeRef, rest: &[NodeRef]) {
        let mut v = vec![first];
        for n in rest {
            if v.len() >= self.cfg.succ_list_len {
                break;
            }
            if n.id == self.me.id {
                break; // wrapped around the ring
            }
            if !v.iter().any(|x| x.id == n.id) {
                v.push(*n);
            }
        }
        self.succs = v;
        self.sync_finger0();
    }

    pub(super) fn leave(&mut self, now: Instant, id: u64) {
        if !self.is_member() {
            self.emit(Event::Failed {
                id,
                reason: FailReason::NotMember,
            });
            return;
        }
        let me = self.me;
        let pred = self.pred;
        let succs = self.succs.clone();
        let succ = self.successor().filter(|s| s.id != me.id);
        for n in pred.iter().chain(succ.iter()) {
            if n.id != me.id {
                self.send_oneway(
                    n.addr,
                    Body::Leaving {
                        me,
                        pred,
                        succs: succs.clone(),
                    },
                );
            }
        }
        self.left = true;
        self.timers = [None; 4];
        // Hand every key to the successor; done when it acknowledges (or stops answering).
        let items = self.all_items(now);
        match succ {
            Some(s) if !items.is_empty() => {
                let batches = batch_items(items);
                let mut sent = 0;
                for b in batches {
                    if self.request(
                        now,
                        s.addr,
                        Body::Transfer { items: b },
                        Purpose::LeaveTransfer(id),
                    ) {
                        sent += 1;
                    }
                }
                if sent == 0 {
                    self.emit(Event::Left { id });
                }
            }
            _ => self.emit(Event::Left { id }),
        }
    }

    /// Sets finger `i` and every later finger whose start also falls in `(me, node]` (their
    /// successor is the same node), and moves the round-robin cursor past them.
    pub(super) fn set_finger_from(&mut self, i: usize, node: NodeRef) {
        let ring = self.cfg.ring;
        let me = self.me.id;
        let m = self.fingers.len();
        let mut j = i;
        loop {
            if let Some(f) = self.fingers.get_mut(j) {
                *f = Some(node);
            }
            j += 1;
            if j >= m || node.id == me {
                break;
            }
            let start = ring.add_pow2(&me, j as u32);
            if !start.in_half_open(&me, &node.id) {
                break;
            }
        }
        self.next_finger = if j >= m { 1 } else { j };
        if i == 0 {
            self.sync_finger0();
        }
    }

    pub(super) fn stabilize(&mut self, now: Instant) {
        let Some(s) = self.successor() else {
            return;
        };
        if s.id == self.me.id {
            // Alone (or we think so): our predecessor, if any, is our successor.
            if let Some(p) = self.pred.filter(|p| p.id != self.me.id) {
                self.set_successor_list(p, &[]);
                self.send_oneway(p.addr, Body::Notify { me: self.me });
                return;
            }
            // Else try the successor we lost: if it answers, stabilization resumes with it.
            if let Some((l, left)) = self.lost.filter(|(_, k)| *k > 0) {
                if !self.stabilize_in_flight {
                    self.lost = Some((l, left - 1));
                    self.set_successor_list(l, &[]);
                    if self.request(now, l.addr, Body::GetNeighbors, Purpose::Stabilize) {
                        self.stabilize_in_flight = true;
                    }
                }
            }
            return;
        }
        if self.stabilize_in_flight {
            return;
        }
        if self.request(now, s.addr, Body::GetNeighbors, Purpose::Stabilize) {
            self.stabilize_in_flight = true;
        }
    }

    pub(super) fn on_stabilize_reply(
        &mut self,
        s: NodeRef,
        pred: Option<NodeRef>,
        succs: Vec<NodeRef>,
    ) {
        self.stabilize_in_flight = false;
        if self.successor().map(|x| x.addr) != Some(s.addr) {
            return;
        }
        self.lost = None;
        let me = self.me;
        match pred {
            Some(x) if x.id.in_open(&me.id, &s.id) && x.id != me.id => {
                // Someone joined between us and our successor: it is our successor now.
                let mut rest = vec![s];
                rest.extend(succs);
                self.set_successor_list(x, &rest);
            }
            _ => self.set_successor_list(s, &succs),
        }
        if let Some(s) = self.successor().filter(|s| s.id != me.id) {
            self.send_oneway(s.addr, Body::Notify { me });
        }
    }

    pub(super) fn on_notify(&mut self, now: Instant, n: NodeRef) {
        if !self.is_member() || n.id == self.me.id {
            return;
        }
        let old = self.pred;
        let take = match old {
            None => true,
            Some(p) => n.id.in_open(&p.id, &self.me.id),
        };
        if !take {
            return;
        }
        self.pred = Some(n);
        // Keys now in (old predecessor, n] belong to n: hand them over (we keep copies,
        // being n's successor makes us its first replica).
        let from = old.map(|p| p.id).unwrap_or(self.me.id);
        let items = self.items_in(now, &from, &n.id);
        if !items.is_empty() {
            for b in batch_items(items) {
                self.request(now, n.addr, Body::Transfer { items: b }, Purpose::Transfer);
            }
        }
        if self.successor().is_some_and(|s| s.id == self.me.id) {
            // We were alone: the newcomer is also our successor.
            self.set_successor_list(n, &[]);
        }
    }

    pub(super) fn on_leaving(&mut self, who: NodeRef, pred: Option<NodeRef>, succs: Vec<NodeRef>) {
        if self.pred.is_some_and(|p| p.id == who.id) {
            self.pred = pred.filter(|p| p.id != self.me.id);
        }
        if self.successor().is_some_and(|s| s.id == who.id) {
            let rest: Vec<NodeRef> = succs.into_iter().filter(|s| s.id != who.id).collect();
            match rest.first().copied() {
                Some(first) if first.id != self.me.id => {
                    self.set_successor_list(first, rest.get(1..).unwrap_or(&[]))
                }
                _ => {
                    self.succs.retain(|s| s.id != who.id);
                    if self.succs.is_empty() {
                        self.succs.push(self.me);
                    }
                    self.sync_finger0();
                }
            }
        }
        self.forget(who.addr);
    }

    pub(super) fn fix_fingers(&mut self, now: Instant) {
        if self.fix_in_flight || self.fingers.len() < 2 {
            return;
        }
        let i = self.next_finger.clamp(1, self.fingers.len() - 1);
        let start = self.finger_start(i as u32);
        self.fix_in_flight = true;
        // The cheap check first: finger i is right when its start lies in (pred(f), f]; one
        // round trip to f asks for its predecessor. Only a finger that fails the check (a
        // node joined before it, or it died) costs a whole lookup.
        if let Some(f) = self.fingers.get(i).copied().flatten() {
            let succ = self.successor().map_or(self.me.id, |s| s.id);
            if f.id != self.me.id
                && f.addr != self.me.addr
                && !start.in_half_open(&self.me.id, &succ)
                && self.request(now, f.addr, Body::GetPred, Purpose::FixCheck(i))
            {
                return;
            }
        }
        self.start_lookup(now, Why::Fix(i), start, None);
    }

    /// The answer to the finger check of entry `i`: `f`'s predecessor.
    pub(super) fn fix_checked(
        &mut self,
        now: Instant,
        i: usize,
        f: NodeRef,
        pred: Option<NodeRef>,
    ) {
        let start = self.finger_start(i as u32);
        let still = self
            .fingers
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|g| g.id == f.id);
        match pred {
            Some(p) if still && start.in_half_open(&p.id, &f.id) => {
                self.fix_in_flight = false;
                self.set_finger_from(i, f);
            }
            _ => self.start_lookup(now, Why::Fix(i), start, None),
        }
    }

    pub(super) fn check_predecessor(&mut self, now: Instant) {
        if let Some(p) = self.pred {
            self.request(now, p.addr, Body::Ping, Purpose::CheckPred);
        }
    }

    pub(super) fn leave_transfer_done(&mut self, id: u64) {
        let more = self
            .pending
            .values()
            .any(|r| r.purpose == Purpose::LeaveTransfer(id));
        if !more {
            self.emit(Event::Left { id });
        }
    }

    pub(super) fn timer_fired(&mut self, now: Instant, t: Timer) {
        let period = match t {
            Timer::Stabilize => self.cfg.stabilize_every,
            Timer::FixFingers => self.cfg.fix_fingers_every,
            Timer::CheckPred => self.cfg.check_pred_every,
            Timer::Replicate => self.cfg.replicate_every,
        };
        self.timers[t as usize] = Some(now + period);
        match t {
            Timer::Stabilize => self.stabilize(now),
            Timer::FixFingers => self.fix_fingers(now),
            Timer::CheckPred => self.check_predecessor(now),
            Timer::Replicate => self.replicate(now),
        }
    }
}
