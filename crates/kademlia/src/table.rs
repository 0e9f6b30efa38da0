//! The routing table of BEP 5: k-buckets over the XOR metric.
//!
//! Bucket `i` (for `i` below the last) holds nodes whose id shares exactly `i` leading bits
//! with ours; the last bucket holds every node sharing at least `len − 1` bits, so it is the
//! one "containing our own id", and it is the only one that splits when full. A table thus
//! starts with one bucket covering the whole space and grows detailed towards our id.
//!
//! Node states (BEP 5): **good** — answered one of our queries within the last 15 minutes,
//! or answered once and queried us within 15 minutes; **bad** — failed to answer
//! [`BAD_AFTER`] queries in a row; **questionable** — everything else (including nodes that
//! only ever queried us). A full bucket takes a newcomer in place of a bad node; otherwise
//! the newcomer waits in the bucket's replacement cache (at most k), and the caller pings
//! the bucket's least recently seen questionable node: if that fails, [`RoutingTable::failed`]
//! promotes the newest replacement.
//!
//! The table never reads a clock: every call takes `now`.

use std::collections::VecDeque;
use std::time::Duration;

use servent_core::{Id, Instant, Rng};

use crate::krpc::NodeInfo;

/// Consecutive unanswered queries after which a node is bad.
pub const BAD_AFTER: u8 = 2;
/// How long a node stays good without news, and how long a bucket may go unchanged
/// before it is refreshed.
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);

/// A node's standing (BEP 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Recently heard from and known to answer.
    Good,
    /// Not heard from for a while, or never answered.
    Questionable,
    /// Failed several queries in a row.
    Bad,
}

/// One node in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Who and where.
    pub info: NodeInfo,
    /// Last time we heard anything from it (query or response).
    pub last_seen: Instant,
    /// Last time it answered one of our queries.
    pub last_response: Option<Instant>,
    /// Unanswered queries in a row.
    pub failures: u8,
    /// Smoothed round-trip time of its answers in milliseconds (0: no answer timed yet);
    /// two bytes so that a million simulated tables stay small.
    pub srtt_ms: u16,
}

impl Entry {
    /// Its state at `now`.
    pub fn state(&self, now: Instant) -> NodeState {
        if self.failures >= BAD_AFTER {
            NodeState::Bad
        } else if self.last_response.is_some()
            && now.saturating_duration_since(self.last_seen) < GOOD_FOR
        {
            NodeState::Good
        } else {
            NodeState::Questionable
        }
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    nodes: Vec<Entry>,
    replacements: VecDeque<Entry>,
    last_changed: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::new(),
            replacements: VecDeque::new(),
            last_changed: now,
        }
    }
}

/// What [`RoutingTable::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new node in a bucket with room.
    Added,
    /// A node we already had; its times were updated.
    Updated,
    /// A new node took the place of a bad one.
    Replaced,
    /// The bucket is full of good or questionable nodes: the newcomer waits in the
    /// replacement cache. `ping` is the bucket's least recently seen questionable node, if
    /// any: ping it and report failure with [`RoutingTable::failed`].
    Cached {
        /// The node to check.
        ping: Option<NodeInfo>,
    },
    /// Our own id, or a known id at another address (not taken: it could be a spoof).
    Ignored,
}

/// The routing table.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    own: Id,
    k: usize,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table for node `own` with buckets of `k`.
    pub fn new(own: Id, k: usize, now: Instant) -> RoutingTable {
        RoutingTable {
            own,
            k: k.max(1),
            buckets: vec![Bucket::new(now)],
        }
    }

    /// Our id.
    pub fn own_id(&self) -> Id {
        self.own
    }

    /// The bucket size.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of nodes in buckets (not counting replacement caches).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// Whether no bucket holds a node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Nodes per bucket, bucket 0 (farthest half of the space) first.
    pub fn bucket_sizes(&self) -> Vec<usize> {
        self.buckets.iter().map(|b| b.nodes.len()).collect()
    }

    /// Every node in the buckets.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// The bucket that covers `id` (`None` for our own id).
    pub fn bucket_of(&self, id: &Id) -> Option<usize> {
        let cpl = self.own.bucket_index(id)?;
        Some(cpl.min(self.buckets.len() - 1))
    }

    /// The entry for `id`.
    pub fn get(&self, id: &Id) -> Option<&Entry> {
        let b = self.buckets.get(self.bucket_of(id)?)?;
        b.nodes.iter().find(|e| e.info.id == *id)
    }

    /// Records that we heard from `info` at `now`: `responded` when it answered one of our
    /// queries, otherwise it queried us.
    pub fn insert(&mut self, info: NodeInfo, now: Instant, responded: bool) -> Inserted {
        loop {
            let Some(idx) = self.bucket_of(&info.id) else {
                return Inserted::Ignored;
            };
            let last = self.buckets.len() - 1;
            let k = self.k;
            let Some(bucket) = self.buckets.get_mut(idx) else {
                return Inserted::Ignored;
            };
            if let Some(e) = bucket.nodes.iter_mut().find(|e| e.info.id == info.id) {
                if e.info.addr != info.addr {
                    return Inserted::Ignored;
                }
                e.last_seen = now;
                if responded {
                    e.last_response = Some(now);
                    e.failures = 0;
                }
                bucket.last_changed = now;
                return Inserted::Updated;
            }
            let fresh = Entry {
                info,
                last_seen: now,
                last_response: responded.then_some(now),
                failures: 0,
                srtt_ms: 0,
            };
            if bucket.nodes.len() < k {
                bucket.replacements.retain(|e| e.info.id != info.id);
                bucket.nodes.push(fresh);
                bucket.last_changed = now;
                return Inserted::Added;
            }
            if let Some(bad) = bucket
                .nodes
                .iter_mut()
                .find(|e| e.state(now) == NodeState::Bad)
            {
                *bad = fresh;
                bucket.replacements.retain(|e| e.info.id != info.id);
                bucket.last_changed = now;
                return Inserted::Replaced;
            }
            if idx == last && last + 1 < servent_core::ID_BITS as usize {
                self.split();
                continue;
            }
            // Full: cache the newcomer (newest last) and name a node to check.
            if let Some(pos) = bucket
                .replacements
                .iter()
                .position(|e| e.info.id == info.id)
            {
                bucket.replacements.remove(pos);
            }
            if bucket.replacements.len() >= k {
                bucket.replacements.pop_front();
            }
            bucket.replacements.push_back(fresh);
            let ping = bucket
                .nodes
                .iter()
                .filter(|e| e.state(now) == NodeState::Questionable)
                .min_by_key(|e| e.last_seen)
                .map(|e| e.info);
            return Inserted::Cached { ping };
        }
    }

    /// Splits the last bucket: nodes sharing one more bit with us move to a new last bucket.
    fn split(&mut self) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let Some(old) = self.buckets.last_mut() else {
            return;
        };
        let mut new = Bucket::new(old.last_changed);
        let deeper = |e: &Entry| own.bucket_index(&e.info.id).is_some_and(|c| c > depth);
        let (moved, kept): (Vec<Entry>, Vec<Entry>) = old.nodes.drain(..).partition(deeper);
        old.nodes = kept;
        new.nodes = moved;
        let (moved, kept): (VecDeque<Entry>, VecDeque<Entry>) =
            old.replacements.drain(..).partition(deeper);
        old.replacements = kept;
        new.replacements = moved;
        self.buckets.push(new);
    }

    /// Records that `id` did not answer a query. When that makes it bad and its bucket has
    /// a replacement waiting, the newest replacement takes its place (returned).
    pub fn failed(&mut self, id: &Id, now: Instant) -> Option<NodeInfo> {
        let idx = self.bucket_of(id)?;
        let bucket = self.buckets.get_mut(idx)?;
        let pos = bucket.nodes.iter().position(|e| e.info.id == *id)?;
        let e = bucket.nodes.get_mut(pos)?;
        e.failures = e.failures.saturating_add(1);
        if e.state(now) != NodeState::Bad {
            return None;
        }
        let r = bucket.replacements.pop_back()?;
        bucket.nodes.remove(pos);
        bucket.nodes.push(r);
        bucket.last_changed = now;
        Some(r.info)
    }

    /// Records a round-trip time measured on an answer of `id` (smoothed 7/8 old, 1/8
    /// new, as TCP's SRTT).
    pub fn record_rtt(&mut self, id: &Id, rtt: Duration) {
        let Some(b) = self.bucket_of(id).and_then(|i| self.buckets.get_mut(i)) else {
            return;
        };
        let Some(e) = b.nodes.iter_mut().find(|e| e.info.id == *id) else {
            return;
        };
        let sample = rtt.as_millis().clamp(1, u128::from(u16::MAX)) as u32;
        e.srtt_ms = if e.srtt_ms == 0 {
            sample as u16
        } else {
            ((u32::from(e.srtt_ms) * 7 + sample).div_ceil(8)) as u16
        };
    }

    /// The smoothed round-trip time of `id`, if it is in the table and an answer was timed.
    pub fn rtt(&self, id: &Id) -> Option<Duration> {
        self.get(id)
            .filter(|e| e.srtt_ms > 0)
            .map(|e| Duration::from_millis(u64::from(e.srtt_ms)))
    }

    /// Removes `id` from the table.
    pub fn remove(&mut self, id: &Id) -> bool {
        let Some(b) = self.bucket_of(id).and_then(|i| self.buckets.get_mut(i)) else {
            return false;
        };
        let before = b.nodes.len();
        b.nodes.retain(|e| e.info.id != *id);
        before != b.nodes.len()
    }

    /// The `n` nodes closest to `target` by XOR distance, closest first, bad nodes left out.
    pub fn closest(&self, target: &Id, n: usize, now: Instant) -> Vec<NodeInfo> {
        let mut all: Vec<(Id, NodeInfo)> = self
            .entries()
            .filter(|e| e.state(now) != NodeState::Bad)
            .map(|e| (e.info.id.distance(target), e.info))
            .collect();
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
        }
        all.truncate(n);
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().map(|(_, i)| i).collect()
    }

    /// The `n` closest nodes that have answered one of our queries and are not bad: the
    /// only ones we hand out to others (a node that only ever queried us may be a forged
    /// address or a short-lived client).
    pub fn closest_verified(&self, target: &Id, n: usize, now: Instant) -> Vec<NodeInfo> {
        let mut all: Vec<(Id, NodeInfo)> = self
            .entries()
            .filter(|e| e.last_response.is_some() && e.state(now) != NodeState::Bad)
            .map(|e| (e.info.id.distance(target), e.info))
            .collect();
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
        }
        all.truncate(n);
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().map(|(_, i)| i).collect()
    }

    /// Whether a new node `id` answering now would enter a bucket (room, a bad node to
    /// replace, or a split) rather than only the replacement cache.
    pub fn would_take(&self, id: &Id, now: Instant) -> bool {
        let Some(idx) = self.bucket_of(id) else {
            return false;
        };
        let Some(b) = self.buckets.get(idx) else {
            return false;
        };
        b.nodes.len() < self.k
            || b.nodes.iter().any(|e| e.state(now) == NodeState::Bad)
            || (idx + 1 == self.buckets.len() && idx + 1 < servent_core::ID_BITS as usize)
    }

    /// The first bucket not changed for [`GOOD_FOR`], with a random id inside it to look up;
    /// marks it changed so it is not picked again at once.
    pub fn refresh_due(&mut self, now: Instant, rng: &mut Rng) -> Option<Id> {
        let last = self.buckets.len() - 1;
        let idx = self
            .buckets
            .iter()
            .position(|b| now.saturating_duration_since(b.last_changed) >= GOOD_FOR)?;
        if let Some(b) = self.buckets.get_mut(idx) {
            b.last_changed = now;
        }
        Some(random_in_bucket(&self.own, idx, idx == last, rng))
    }
}

/// A random id that shares exactly `cpl` leading bits with `own` (or at least `cpl` when
/// `at_least`).
pub fn random_in_bucket(own: &Id, cpl: usize, at_least: bool, rng: &mut Rng) -> Id {
    let r = Id::random(rng);
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        for bit in 0..8 {
            let pos = i * 8 + bit;
            let v = if pos < cpl {
                own.bit(pos)
            } else if pos == cpl && !at_least {
                !own.bit(pos)
            } else {
                r.bit(pos)
            };
            if v {
                *o |= 0x80 >> bit;
            }
        }
    }
    Id(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn node(id: Id, n: u32) -> NodeInfo {
        NodeInfo {
            id,
            addr: SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + n), 6881),
        }
    }

    fn check_invariants(t: &RoutingTable) {
        let last = t.buckets.len() - 1;
        let mut seen = std::collections::BTreeSet::new();
        for (i, b) in t.buckets.iter().enumerate() {
            assert!(b.nodes.len() <= t.k, "bucket {i} over k");
            assert!(b.replacements.len() <= t.k, "cache {i} over k");
            for e in &b.nodes {
                let cpl = t.own.bucket_index(&e.info.id).unwrap();
                if i == last {
                    assert!(cpl >= i);
                } else {
                    assert_eq!(cpl, i, "node in the wrong bucket");
                }
                assert!(seen.insert(e.info.id), "duplicate node");
            }
        }
    }

    #[test]
    fn only_the_bucket_with_our_id_splits() {
        let own = Id::ZERO;
        let mut t = RoutingTable::new(own, 8, Instant::ZERO);
        // 20 nodes in the far half (top bit set): one bucket, never split further.
        for n in 0..20u32 {
            let mut id = Id::from_u64(u64::from(n) + 1);
            id.0[0] = 0x80;
            t.insert(node(id, n), Instant::ZERO, true);
        }
        assert_eq!(t.bucket_sizes(), vec![8, 0]);
        // near nodes make the table deeper
        for n in 0..40u32 {
            let id = Id::from_u64(u64::from(n) + 1);
            t.insert(node(id, 100 + n), Instant::ZERO, true);
        }
        check_invariants(&t);
        assert!(t.bucket_count() > 2);
        assert_eq!(t.bucket_sizes()[0], 8);
    }

    #[test]
    fn bad_node_is_replaced_from_cache() {
        let own = Id::ZERO;
        let mut t = RoutingTable::new(own, 2, Instant::ZERO);
        let far = |n: u8| {
            let mut id = Id([n; 20]);
            id.0[0] = 0x80 | n;
            id
        };
        // fill bucket 0 (after one split) with two nodes
        t.insert(node(far(1), 1), Instant::ZERO, true);
        t.insert(node(far(2), 2), Instant::ZERO, true);
        t.insert(node(Id::from_u64(1), 9), Instant::ZERO, true); // forces the split
        let later = Instant::from_secs(16 * 60);
        // both far nodes are questionable now; a newcomer is cached, the oldest is named
        let r = t.insert(node(far(3), 3), later, true);
        assert!(matches!(r, Inserted::Cached { ping: Some(_) }));
        assert_eq!(t.failed(&far(1), later), None); // one failure: not yet bad
        assert_eq!(t.failed(&far(1), later), Some(node(far(3), 3)));
        assert!(t.get(&far(1)).is_none());
        assert!(t.get(&far(3)).is_some());
        check_invariants(&t);
    }

    #[test]
    fn known_id_at_another_address_is_ignored() {
        let mut t = RoutingTable::new(Id::ZERO, 8, Instant::ZERO);
        let id = Id([7; 20]);
        assert_eq!(t.insert(node(id, 1), Instant::ZERO, true), Inserted::Added);
        assert_eq!(
            t.insert(node(id, 2), Instant::ZERO, true),
            Inserted::Ignored
        );
        assert_eq!(t.get(&id).unwrap().info.addr, node(id, 1).addr);
    }

    #[test]
    fn states_follow_bep5() {
        let mut t = RoutingTable::new(Id::ZERO, 8, Instant::ZERO);
        let id = Id([7; 20]);
        t.insert(node(id, 1), Instant::ZERO, false);
        assert_eq!(
            t.get(&id).unwrap().state(Instant::ZERO),
            NodeState::Questionable
        );
        t.insert(node(id, 1), Instant::ZERO, true);
        assert_eq!(t.get(&id).unwrap().state(Instant::ZERO), NodeState::Good);
        let later = Instant::from_secs(15 * 60);
        assert_eq!(t.get(&id).unwrap().state(later), NodeState::Questionable);
        t.failed(&id, later);
        t.failed(&id, later);
        assert_eq!(t.get(&id).unwrap().state(later), NodeState::Bad);
        assert!(t.closest(&id, 8, later).is_empty());
    }

    #[test]
    fn unchanged_bucket_is_refreshed_after_15_minutes() {
        let own = Id([0x55; 20]);
        let mut t = RoutingTable::new(own, 8, Instant::ZERO);
        let mut rng = servent_core::Rng::new(1);
        assert_eq!(t.refresh_due(Instant::from_secs(60), &mut rng), None);
        let target = t
            .refresh_due(Instant::from_secs(15 * 60), &mut rng)
            .unwrap();
        assert_eq!(t.bucket_of(&target), Some(0));
        assert_eq!(
            t.refresh_due(Instant::from_secs(15 * 60 + 1), &mut rng),
            None
        );
    }

    #[test]
    fn random_in_bucket_lands_in_that_bucket() {
        let own = Id([0xa5; 20]);
        let mut rng = servent_core::Rng::new(3);
        for cpl in [0usize, 1, 7, 8, 50, 159] {
            let id = random_in_bucket(&own, cpl, false, &mut rng);
            assert_eq!(own.bucket_index(&id), Some(cpl));
        }
    }

    proptest! {
        #[test]
        fn table_invariants_and_closest_match_brute_force(
            own in any::<[u8; 20]>(),
            ids in proptest::collection::vec(any::<[u8; 20]>(), 1..300),
            near in proptest::collection::vec((any::<u8>(), 0usize..40), 0..100),
            target in any::<[u8; 20]>(),
        ) {
            let own = Id(own);
            let mut t = RoutingTable::new(own, 8, Instant::ZERO);
            let mut inserted = std::collections::BTreeSet::new();
            for (n, id) in ids.iter().enumerate() {
                let id = Id(*id);
                if id != own { inserted.insert(id); }
                t.insert(node(id, n as u32), Instant::ZERO, true);
            }
            // ids sharing long prefixes with ours exercise deep splits
            for (n, (b, cpl)) in near.iter().enumerate() {
                let mut r = servent_core::Rng::new(u64::from(*b) * 1000 + *cpl as u64);
                let id = random_in_bucket(&own, *cpl, false, &mut r);
                inserted.insert(id);
                t.insert(node(id, 10_000 + n as u32), Instant::ZERO, true);
            }
            check_invariants(&t);
            prop_assert!(t.len() >= inserted.len().min(8));
            let target = Id(target);
            let got = t.closest(&target, 8, Instant::ZERO);
            let mut brute: Vec<Id> = t.entries().map(|e| e.info.id).collect();
            brute.sort_by_key(|id| id.distance(&target));
            brute.truncate(8);
            prop_assert_eq!(got.iter().map(|n| n.id).collect::<Vec<_>>(), brute);
            // every bucket that is not full holds every inserted node it covers
            let sizes = t.bucket_sizes();
            for (i, &s) in sizes.iter().enumerate() {
                if s < 8 {
                    let covered = inserted.iter().filter(|id| t.bucket_of(id) == Some(i)).count();
                    prop_assert_eq!(s, covered);
                }
            }
        }
    }
}
