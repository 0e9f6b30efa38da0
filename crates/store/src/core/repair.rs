//! Lazy repair. A segment is left alone while at least `threshold` of its n shards are
//! healthy (k ≤ threshold ≤ n); below that, all missing shards are rebuilt at once from k
//! healthy ones and placed on nodes that hold none of the segment. Rebuilding costs k
//! shard downloads for however many shards are missing, so waiting until several are gone
//! spreads that cost: with m missing, the traffic per repaired shard is (k + m)/m shard
//! sizes (k down, m up).

/// What to do with one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Enough healthy shards.
    Healthy,
    /// Rebuild these shard indices.
    Repair(Vec<usize>),
    /// Fewer than k healthy: the segment is lost.
    Lost,
}

/// The repair policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// k.
    pub k: usize,
    /// n.
    pub n: usize,
    /// Repair when fewer than this many shards are healthy.
    pub threshold: usize,
}

impl Policy {
    /// The default threshold: repair once half of the redundancy is gone,
    /// `k + ceil((n − k) / 2)`, clamped to k..=n.
    pub fn new(k: usize, n: usize) -> Policy {
        let threshold = (k + (n - k).div_ceil(2)).clamp(k, n);
        Policy { k, n, threshold }
    }

    /// With an explicit threshold (clamped to k..=n).
    pub fn with_threshold(k: usize, n: usize, threshold: usize) -> Policy {
        Policy {
            k,
            n,
            threshold: threshold.clamp(k, n),
        }
    }

    /// The decision for a segment whose shard `i` is healthy iff `healthy[i]`.
    pub fn decide(&self, healthy: &[bool]) -> Decision {
        let good = healthy.iter().filter(|&&h| h).count();
        if good < self.k {
            Decision::Lost
        } else if good >= self.threshold {
            Decision::Healthy
        } else {
            Decision::Repair(
                healthy
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| !**h)
                    .map(|(i, _)| i)
                    .collect(),
            )
        }
    }

    /// Traffic of repairing `missing` shards, in shard sizes: k downloaded, `missing`
    /// uploaded.
    pub fn traffic(&self, missing: usize) -> usize {
        self.k + missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_lazily_between_k_and_n() {
        let p = Policy::new(4, 8);
        assert_eq!(p.threshold, 6);
        let mut h = [true; 8];
        assert_eq!(p.decide(&h), Decision::Healthy);
        h[0] = false;
        h[1] = false;
        assert_eq!(p.decide(&h), Decision::Healthy);
        h[2] = false;
        assert_eq!(p.decide(&h), Decision::Repair(vec![0, 1, 2]));
        h[3] = false;
        h[4] = false;
        assert_eq!(p.decide(&h), Decision::Lost);
        assert_eq!(Policy::with_threshold(4, 8, 99).threshold, 8);
        assert_eq!(Policy::with_threshold(4, 8, 1).threshold, 4);
    }
}
