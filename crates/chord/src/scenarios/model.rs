//! A compact model of a stabilized Chord ring for path-length and load experiments at
//! 10^5–10^6 nodes: only the sorted ids are stored, and each finger `successor(n + 2^i)` is
//! found by binary search when a lookup needs it. That is exactly the table a fully
//! stabilized node holds (see `model_routes_match_the_core` in the tests), at 8 bytes per
//! node instead of m entries.
//!
//! Ids are at most 64 bits here (m ≤ 64); path lengths depend on N, not on m, once
//! 2^m ≫ N.

/// A stabilized ring of distinct ids mod 2^m.
#[derive(Clone, Debug)]
pub struct IdealRing {
    bits: u32,
    mask: u64,
    ids: Vec<u64>,
}

/// The outcome of one modelled lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Forwarding hops from the start to the key's predecessor (the paper's count; the
    /// core's `route.len() - 1`).
    pub hops: u32,
    /// Index of the node responsible for the key.
    pub responsible: usize,
    /// Dead nodes tried on the way (each one a timeout).
    pub timeouts: u32,
    /// Whether the lookup ended at the key's true live successor.
    pub correct: bool,
}

impl IdealRing {
    /// A ring of `ids` (deduplicated and sorted) on m = `bits` bits (1..=64).
    pub fn new(bits: u32, mut ids: Vec<u64>) -> IdealRing {
        let bits = bits.clamp(1, 64);
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        for id in ids.iter_mut() {
            *id &= mask;
        }
        ids.sort_unstable();
        ids.dedup();
        IdealRing { bits, mask, ids }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The sorted ids.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// m.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Index of successor(k): the first id ≥ k, clockwise.
    pub fn successor_of(&self, k: u64) -> usize {
        let i = self.ids.partition_point(|&x| x < (k & self.mask));
        if i == self.ids.len() { 0 } else { i }
    }

    fn dist(&self, a: u64, b: u64) -> u64 {
        b.wrapping_sub(a) & self.mask
    }

    /// Finger `i` (0-based) of node index `n`: successor(n + 2^i).
    pub fn finger(&self, n: usize, i: u32) -> usize {
        let id = self.ids.get(n).copied().unwrap_or(0);
        self.successor_of(id.wrapping_add(1u64 << i) & self.mask)
    }

    /// closest_preceding_finger(key) at node `n`, scanning from the last entry down; the
    /// scan starts at the highest entry whose start precedes the key (the ones above cannot
    /// qualify). Entries for which `skip` holds are passed over and counted.
    fn cpf(
        &self,
        n: usize,
        key: u64,
        skip: &dyn Fn(usize) -> bool,
        skipped: &mut u32,
    ) -> Option<usize> {
        let nid = self.ids.get(n).copied()?;
        let d = self.dist(nid, key);
        if d <= 1 {
            return None;
        }
        let top = 63 - (d - 1).leading_zeros(); // highest i with 2^i < d
        let mut last = usize::MAX;
        for i in (0..=top.min(self.bits - 1)).rev() {
            let f = self.finger(n, i);
            if f == last {
                continue;
            }
            last = f;
            let fid = self.ids.get(f).copied().unwrap_or(nid);
            let df = self.dist(nid, fid);
            if df > 0 && df < d {
                if skip(f) {
                    *skipped += 1;
                    continue;
                }
                return Some(f);
            }
        }
        None
    }

    /// `find_successor(key)` started at node index `start` on a fully stabilized ring.
    pub fn lookup(&self, start: usize, key: u64) -> Route {
        self.lookup_with_failures(start, key, &[], 0)
    }

    /// The same walk after the nodes with `dead[i]` crashed and before any repair: each node
    /// still holds its old fingers and its old successor list of length `r`; a dead entry is
    /// found out by a timeout and the next candidate is tried.
    pub fn lookup_with_failures(&self, start: usize, key: u64, dead: &[bool], r: usize) -> Route {
        let key = key & self.mask;
        let n_nodes = self.ids.len();
        let is_dead = |i: usize| dead.get(i).copied().unwrap_or(false);
        let truth = {
            let mut s = self.successor_of(key);
            let mut k = 0;
            while is_dead(s) && k < n_nodes {
                s = (s + 1) % n_nodes.max(1);
                k += 1;
            }
            s
        };
        let mut n = start;
        let mut hops = 0;
        let mut timeouts = 0;
        let limit = 4 * self.bits + 8;
        loop {
            // The first live entry of n's successor list (r = 0: no list, only finger 1).
            let span = r.max(1);
            let mut live_succ = None;
            for k in 1..=span.min(n_nodes) {
                let s = (n + k) % n_nodes;
                if is_dead(s) {
                    timeouts += 1;
                } else {
                    live_succ = Some(s);
                    break;
                }
            }
            let Some(s) = live_succ else {
                return Route {
                    hops,
                    responsible: n,
                    timeouts,
                    correct: false,
                };
            };
            let nid = self.ids.get(n).copied().unwrap_or(0);
            let sid = self.ids.get(s).copied().unwrap_or(0);
            let dk = self.dist(nid, key);
            if dk > 0 && dk <= self.dist(nid, sid) || nid == sid {
                return Route {
                    hops,
                    responsible: s,
                    timeouts,
                    correct: s == truth,
                };
            }
            let next = self.cpf(n, key, &is_dead, &mut timeouts).unwrap_or(s);
            n = next;
            hops += 1;
            if hops > limit {
                return Route {
                    hops,
                    responsible: n,
                    timeouts,
                    correct: false,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lecture_routes_in_the_model() {
        let ring = IdealRing::new(5, vec![1, 4, 9, 11, 14, 18, 20, 21, 28]);
        let at = |id: u64| ring.ids().iter().position(|&x| x == id).unwrap_or(0);
        let r = ring.lookup(at(1), 26);
        assert_eq!((r.hops, ring.ids()[r.responsible]), (3, 28));
        let r = ring.lookup(at(28), 12);
        assert_eq!((r.hops, ring.ids()[r.responsible]), (3, 14));
        let ring = IdealRing::new(5, vec![1, 4, 8, 11, 14, 17]);
        let r = ring.lookup(2, 3);
        assert_eq!((r.hops, ring.ids()[r.responsible]), (1, 4));
    }

    #[test]
    fn a_lookup_survives_dead_fingers_through_the_successor_list() {
        let ids: Vec<u64> = (0..64).map(|i| i * 1000 + 7).collect();
        let ring = IdealRing::new(20, ids);
        let mut dead = vec![false; 64];
        for d in [10, 11, 20, 33, 40, 41, 42] {
            dead[d] = true;
        }
        for start in [0usize, 5, 50] {
            for key in [10_500u64, 20_007, 41_000, 63_999] {
                if dead[start] {
                    continue;
                }
                let r = ring.lookup_with_failures(start, key, &dead, 6);
                assert!(r.correct, "start {start} key {key}: {r:?}");
            }
        }
    }
}
