//! The key-value store: put/get/delete operations, versions and tombstones, replication
//! on the r successors, hand-over of ranges.

use super::*;

impl ChordNode {
    pub(super) fn start_op(
        &mut self,
        now: Instant,
        id: u64,
        kind: OpKind,
        key: Vec<u8>,
        value: Vec<u8>,
        start: Option<SocketAddr>,
    ) {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            self.emit(Event::Failed {
                id,
                reason: FailReason::TooLarge,
            });
            return;
        }
        if !self.can_start(id, start) {
            return;
        }
        let op_id = self.local_id();
        // Keys are hashed with the full SHA-1; whoever evaluates a step reduces it mod 2^m,
        // so a client need not know m.
        let kid = if self.cfg.member {
            key_id(self.cfg.ring, &key)
        } else {
            Id::hash(&key)
        };
        self.ops.insert(
            op_id,
            Op {
                cmd: id,
                kind,
                key,
                value,
                targets: VecDeque::new(),
            },
        );
        self.start_lookup(now, Why::Op(op_id), kid, start);
    }

    pub(super) fn op_next(&mut self, now: Instant, op_id: u64) {
        let Some(op) = self.ops.get_mut(&op_id) else {
            return;
        };
        let Some(t) = op.targets.pop_front() else {
            let op = self.ops.remove(&op_id);
            if let Some(op) = op {
                match op.kind {
                    OpKind::Get => self.emit(Event::Got {
                        id: op.cmd,
                        value: None,
                        node: self.me,
                    }),
                    _ => self.emit(Event::Failed {
                        id: op.cmd,
                        reason: FailReason::Unreachable,
                    }),
                }
            }
            return;
        };
        let body = match op.kind {
            OpKind::Put => Body::Put {
                key: op.key.clone(),
                value: op.value.clone(),
            },
            OpKind::Get => Body::Get {
                key: op.key.clone(),
            },
            OpKind::Delete => Body::Delete {
                key: op.key.clone(),
                propagate: true,
            },
        };
        if t.addr == self.me.addr && self.is_member() {
            let resp = self.serve(now, body);
            self.op_response(now, op_id, resp);
        } else if !self.request(now, t.addr, body, Purpose::OpRequest(op_id)) {
            if let Some(op) = self.ops.remove(&op_id) {
                self.emit(Event::Failed {
                    id: op.cmd,
                    reason: FailReason::Busy,
                });
            }
        }
    }

    pub(super) fn op_response(&mut self, now: Instant, op_id: u64, body: Option<Body>) {
        let Some(op) = self.ops.get(&op_id) else {
            return;
        };
        let cmd = op.cmd;
        match body {
            Some(Body::PutAck { me, stored }) => {
                self.ops.remove(&op_id);
                if stored {
                    self.emit(Event::Stored { id: cmd, node: me });
                } else {
                    self.emit(Event::Failed {
                        id: cmd,
                        reason: FailReason::Refused,
                    });
                }
            }
            Some(Body::Value { me, value }) => {
                if value.is_none() && !op.targets.is_empty() {
                    // A replica may have it (the primary may be new to the range).
                    self.op_next(now, op_id);
                } else {
                    self.ops.remove(&op_id);
                    self.emit(Event::Got {
                        id: cmd,
                        value,
                        node: me,
                    });
                }
            }
            Some(Body::Deleted { existed, .. }) => {
                self.ops.remove(&op_id);
                self.emit(Event::Deleted { id: cmd, existed });
            }
            _ => self.op_next(now, op_id),
        }
    }

    /// Answers a key-value request locally (also used when we are the target ourselves).
    pub(super) fn serve(&mut self, now: Instant, body: Body) -> Option<Body> {
        let ring = self.cfg.ring;
        match body {
            Body::Put { key, value } => {
                let k = (key_id(ring, &key), key);
                let version = self.next_version(now, &k);
                let stored = self.store_item(now, k.clone(), value.clone(), version);
                if stored {
                    self.tombs.remove(&k);
                    let item = Item {
                        key: k.1,
                        version,
                        value: Some(value),
                    };
                    self.replicate_items(now, vec![item]);
                }
                Some(Body::PutAck {
                    me: self.me,
                    stored,
                })
            }
            Body::Get { key } => {
                let kid = key_id(ring, &key);
                Some(Body::Value {
                    me: self.me,
                    value: self.store.get(&(kid, key)).map(|s| s.value.clone()),
                })
            }
            Body::Delete { key, propagate } => {
                // A tombstone one version above what we knew; the replicas get it as an
                // acknowledged (resent) Transfer, and again every replication period while
                // it lives, so one that missed it catches up.
                let k = (key_id(ring, &key), key);
                let version = self.next_version(now, &k);
                let existed = self.remove_item(&k);
                self.add_tomb(now, k.clone(), version);
                if propagate {
                    let item = Item {
                        key: k.1,
                        version,
                        value: None,
                    };
                    self.replicate_items(now, vec![item]);
                }
                Some(Body::Deleted {
                    me: self.me,
                    existed,
                })
            }
            _ => None,
        }
    }

    pub(super) fn store_item(
        &mut self,
        now: Instant,
        k: StoreKey,
        value: Vec<u8>,
        version: u64,
    ) -> bool {
        let add = k.1.len() + value.len();
        let old = self.store.get(&k).map(|v| k.1.len() + v.value.len());
        let after = self.store_bytes.saturating_sub(old.unwrap_or(0)) + add;
        if (old.is_none() && self.store.len() >= self.cfg.max_store)
            || after > self.cfg.max_store_bytes
        {
            return false;
        }
        let s = Stored {
            value,
            version,
            refreshed: now,
        };
        self.store.insert(k, s);
        self.store_bytes = after;
        true
    }

    pub(super) fn remove_item(&mut self, k: &StoreKey) -> bool {
        match self.store.remove(k) {
            Some(v) => {
                self.store_bytes = self.store_bytes.saturating_sub(k.1.len() + v.value.len());
                true
            }
            None => false,
        }
    }

    /// The version of a live tombstone for `k`.
    pub(super) fn tomb_version(&self, now: Instant, k: &StoreKey) -> Option<u64> {
        self.tombs
            .get(k)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| *v)
    }

    /// One more than the highest version we know for `k` (value or tombstone).
    pub(super) fn next_version(&self, now: Instant, k: &StoreKey) -> u64 {
        let v = self.store.get(k).map_or(0, |s| s.version);
        v.max(self.tomb_version(now, k).unwrap_or(0))
            .saturating_add(1)
    }

    pub(super) fn add_tomb(&mut self, now: Instant, k: StoreKey, version: u64) {
        let exp = now + self.cfg.tombstone_ttl;
        self.tombs.insert(k.clone(), (version, exp));
        self.tomb_order.push_back((exp, k));
        self.prune_tombs(now);
    }

    /// Drops expired tombstones, and the oldest ones beyond `max_tombstones`.
    pub(super) fn prune_tombs(&mut self, now: Instant) {
        let max = self.cfg.max_tombstones;
        while let Some((exp, _)) = self.tomb_order.front() {
            let over = self.tombs.len() > max || self.tomb_order.len() > 2 * max.max(1);
            if *exp > now && !over {
                break;
            }
            if let Some((exp, k)) = self.tomb_order.pop_front() {
                // A later delete of the same key re-queued it with a later expiry.
                if self.tombs.get(&k).is_some_and(|(_, e)| *e == exp) {
                    self.tombs.remove(&k);
                }
            }
        }
    }

    /// Takes a pushed item (replication, hand-over, delete) unless we know a newer version:
    /// a value loses to a tombstone of the same or a later version, so a copy that missed a
    /// delete cannot bring the key back while the tombstone lives.
    pub(super) fn apply_item(&mut self, now: Instant, item: Item) {
        let k = (key_id(self.cfg.ring, &item.key), item.key);
        let have = self.store.get(&k).map(|s| s.version);
        let tomb = self.tomb_version(now, &k);
        match item.value {
            Some(v) => {
                if tomb.is_some_and(|t| item.version <= t) {
                    return;
                }
                match have {
                    Some(h) if item.version < h => {}
                    Some(h) if item.version == h => {
                        if let Some(s) = self.store.get_mut(&k) {
                            s.refreshed = now; // the responsible node still wants our copy
                        }
                    }
                    _ => {
                        if self.store_item(now, k.clone(), v, item.version) {
                            self.tombs.remove(&k);
                        }
                    }
                }
            }
            None => {
                if have.is_some_and(|h| h > item.version) {
                    return; // put again after that delete
                }
                self.remove_item(&k);
                if tomb.is_none_or(|t| t < item.version) {
                    self.add_tomb(now, k, item.version);
                }
            }
        }
    }

    /// Sends copies to the r − 1 successors.
    pub(super) fn replicate_items(&mut self, now: Instant, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let me = self.me.id;
        let reps: Vec<NodeRef> = self
            .succs
            .iter()
            .filter(|s| s.id != me)
            .take(self.cfg.succ_list_len.saturating_sub(1))
            .copied()
            .collect();
        let batches = batch_items(items);
        for r in reps {
            for b in &batches {
                self.request(
                    now,
                    r.addr,
                    Body::Transfer { items: b.clone() },
                    Purpose::Transfer,
                );
            }
        }
    }

    /// Pairs and live tombstones whose key lies in `(from, to]`.
    pub(super) fn items_in(&self, now: Instant, from: &Id, to: &Id) -> Vec<Item> {
        self.items_where(now, |kid| kid.in_half_open(from, to))
    }

    /// Every pair and live tombstone.
    pub(super) fn all_items(&self, now: Instant) -> Vec<Item> {
        self.items_where(now, |_| true)
    }

    pub(super) fn items_where(&self, now: Instant, keep: impl Fn(&Id) -> bool) -> Vec<Item> {
        let values = self
            .store
            .iter()
            .filter(|((kid, _), _)| keep(kid))
            .map(|((_, k), s)| Item {
                key: k.clone(),
                version: s.version,
                value: Some(s.value.clone()),
            });
        let tombs = self
            .tombs
            .iter()
            .filter(|((kid, _), (_, exp))| keep(kid) && *exp > now)
            .map(|((_, k), (version, _))| Item {
                key: k.clone(),
                version: *version,
                value: None,
            });
        values.chain(tombs).collect()
    }

    /// Pushes our primary range (values and tombstones) to the r − 1 next successors, and
    /// drops copies outside it that their responsible node stopped pushing to us.
    pub(super) fn replicate(&mut self, now: Instant) {
        self.prune_tombs(now);
        let Some(p) = self.pred else {
            return; // without a predecessor we cannot tell our range: drop nothing
        };
        let me = self.me.id;
        let lease = self
            .cfg
            .replicate_every
            .saturating_mul(self.cfg.replica_lease_periods.max(1));
        let stale: Vec<StoreKey> = self
            .store
            .iter()
            .filter(|((kid, _), s)| !kid.in_half_open(&p.id, &me) && s.refreshed + lease <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            self.remove_item(k);
        }
        let items = self.items_in(now, &p.id, &me);
        self.replicate_items(now, items);
    }
}

/// Splits items into batches that each fit in one datagram.
pub(super) fn batch_items(items: Vec<Item>) -> Vec<Vec<Item>> {
    const BUDGET: usize = MAX_DATAGRAM - 64;
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0;
    for it in items {
        let n = 2 + it.key.len() + 8 + 1 + 2 + it.value.as_ref().map_or(0, Vec::len);
        if !cur.is_empty() && (size + n > BUDGET || cur.len() >= usize::from(u8::MAX)) {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += n;
        cur.push(it);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
