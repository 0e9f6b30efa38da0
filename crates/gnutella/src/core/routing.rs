//! Bounded routing memory with expiry: "which connection did descriptor X come from?"
//!
//! Gnutella routes replies backwards along the path their request took, so every servent
//! remembers, for a while, where each Ping, Query and QueryHit (by servent id) came from.
//! The same memory detects loops: a request whose id is remembered is a duplicate.
//! Entries expire after a fixed time and the table never holds more than its capacity:
//! when full, the oldest entry goes first.
//!
//! The keys (descriptor GUIDs, servent ids) are chosen by peers, so the map is a
//! [`KeyedMap`] under a secret key: nobody can send ids that pile into one bucket.

use std::collections::VecDeque;
use std::hash::Hash;
use std::time::Duration;

use servent_core::{Instant, KeyedMap, Rng, keyed_map};

/// A map from `K` to `V` whose entries expire `ttl` after their last insertion and which
/// holds at most `cap` entries (the oldest are evicted first).
#[derive(Debug)]
pub struct RouteTable<K, V> {
    map: KeyedMap<K, (V, Instant)>,
    /// Insertion order; an entry re-inserted later appears twice and the stale copy is
    /// skipped (its instant no longer matches the map's).
    order: VecDeque<(Instant, K)>,
    cap: usize,
    ttl: Duration,
}

impl<K: Hash + Eq + Copy, V: Copy> RouteTable<K, V> {
    /// An empty table; its hash key is drawn from `rng`.
    pub fn new(cap: usize, ttl: Duration, rng: &mut Rng) -> Self {
        RouteTable {
            map: keyed_map(rng),
            order: VecDeque::new(),
            cap: cap.max(1),
            ttl,
        }
    }

    /// Entries held (some may have expired but not yet been swept).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value for `k`, if present and not expired at `now`.
    pub fn get(&self, now: Instant, k: &K) -> Option<V> {
        self.map
            .get(k)
            .filter(|(_, t)| now.saturating_duration_since(*t) < self.ttl)
            .map(|(v, _)| *v)
    }

    /// Inserts `k` unless a live entry exists: `true` when inserted (a new descriptor),
    /// `false` for a duplicate.
    pub fn insert_new(&mut self, now: Instant, k: K, v: V) -> bool {
        if self.get(now, &k).is_some() {
            return false;
        }
        self.put(now, k, v);
        true
    }

    /// Inserts or replaces `k`, restarting its expiry.
    pub fn put(&mut self, now: Instant, k: K, v: V) {
        self.expire(now);
        while self.map.len() >= self.cap && !self.map.contains_key(&k) {
            if !self.evict_oldest() {
                break;
            }
        }
        self.map.insert(k, (v, now));
        self.order.push_back((now, k));
        // The order queue holds at most one stale copy per live entry plus the live ones.
        if self.order.len() > self.cap.saturating_mul(2) {
            self.compact();
        }
    }

    /// Drops entries that expired at `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(t, k)) = self.order.front() {
            if now.saturating_duration_since(t) < self.ttl {
                break;
            }
            self.order.pop_front();
            if self.map.get(&k).is_some_and(|(_, at)| *at == t) {
                self.map.remove(&k);
            }
        }
    }

    /// When the oldest entry expires, if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(t, _)| *t + self.ttl)
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((t, k)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|(_, at)| *at == t) {
                self.map.remove(&k);
                return true;
            }
        }
        false
    }

    fn compact(&mut self) {
        let map = &self.map;
        self.order
            .retain(|(t, k)| map.get(k).is_some_and(|(_, at)| at == t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_detected_until_expiry() {
        let mut t = RouteTable::new(10, Duration::from_secs(60), &mut Rng::new(1));
        assert!(t.insert_new(Instant::ZERO, 1u32, 'a'));
        assert!(!t.insert_new(Instant::from_secs(59), 1, 'b'));
        assert_eq!(t.get(Instant::from_secs(59), &1), Some('a'));
        assert_eq!(t.get(Instant::from_secs(60), &1), None);
        assert!(t.insert_new(Instant::from_secs(60), 1, 'c'));
        assert_eq!(t.get(Instant::from_secs(61), &1), Some('c'));
    }

    #[test]
    fn capacity_evicts_the_oldest_first() {
        let mut t = RouteTable::new(3, Duration::from_secs(60), &mut Rng::new(1));
        for k in 0..5u32 {
            t.put(Instant::from_secs(u64::from(k)), k, k);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(Instant::from_secs(5), &0), None);
        assert_eq!(t.get(Instant::from_secs(5), &1), None);
        assert_eq!(t.get(Instant::from_secs(5), &4), Some(4));
    }

    #[test]
    fn reinsertion_restarts_expiry_and_memory_stays_bounded() {
        let mut t = RouteTable::new(4, Duration::from_secs(10), &mut Rng::new(1));
        for i in 0..1000u64 {
            t.put(Instant::from_secs(i), 7u8, i);
            assert!(t.order.len() <= 8);
        }
        assert_eq!(t.get(Instant::from_secs(1005), &7), Some(999));
        t.expire(Instant::from_secs(1010));
        assert!(t.is_empty());
    }

    /// GUIDs whose FxHash (as `Guid`'s derived `Hash` feeds it: the length 16, then the
    /// bytes) is the same for all: what a peer would send against an unkeyed table.
    fn fx_colliding_guids(n: usize) -> Vec<crate::wire::Guid> {
        const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        // `fx_colliding_words` solves from a zero state; the length prefix leaves
        // 16 * SEED, which XOR-ing rotl(16 * SEED, 5) into the first word cancels.
        let prefix = 16u64.wrapping_mul(FX_SEED).rotate_left(5);
        servent_core::keyed::fx_colliding_words(n, 0x00c0_ffee)
            .into_iter()
            .map(|mut w| {
                let a = u64::from_le_bytes(w[..8].try_into().unwrap()) ^ prefix;
                w[..8].copy_from_slice(&a.to_le_bytes());
                crate::wire::Guid(w)
            })
            .collect()
    }

    #[test]
    fn colliding_guids_spread_in_the_keyed_route_table() {
        use std::hash::BuildHasher;
        let ids = fx_colliding_guids(20_000);
        // The attack is real: an unkeyed FxHash map would put all of them in one chain.
        let fx = std::hash::BuildHasherDefault::<servent_core::FxHasher>::default();
        let fx_hashes: std::collections::BTreeSet<u64> =
            ids.iter().map(|g| fx.hash_one(g)).collect();
        assert_eq!(fx_hashes.len(), 1);
        let mut t = RouteTable::new(100_000, Duration::from_secs(60), &mut Rng::new(5));
        for (i, g) in ids.iter().enumerate() {
            assert!(t.insert_new(Instant::ZERO, *g, i));
        }
        assert_eq!(t.len(), 20_000);
        assert_eq!(t.get(Instant::from_secs(1), &ids[12_345]), Some(12_345));
        // Counted, not timed: under the table's key every one of them hashes apart, so
        // each insert and lookup probes a chain of about one.
        let keyed: std::collections::BTreeSet<u64> =
            ids.iter().map(|g| t.map.hasher().hash_one(g)).collect();
        assert_eq!(keyed.len(), 20_000);
    }
}
