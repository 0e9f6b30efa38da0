//! Placement: the n shards of a segment go to n distinct nodes, the ones closest by XOR
//! distance to the segment's key among the candidates the DHT found (shard i to the i-th
//! closest). A node that fails a put is excluded and the shard moves to the next closest
//! node not already holding a shard of the segment.

use servent_core::Id;

/// A storage node as the DHT names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its DHT id.
    pub id: Id,
    /// Its address (the same port for UDP DHT and TCP shards).
    pub addr: String,
}

/// Candidates sorted by XOR distance to `target`, closest first (ties by address, so the
/// order is total).
pub fn by_distance(target: &Id, cands: &[Candidate]) -> Vec<Candidate> {
    let mut v = cands.to_vec();
    v.sort_by(|a, b| {
        a.id.distance(target)
            .cmp(&b.id.distance(target))
            .then_with(|| a.addr.cmp(&b.addr))
    });
    v.dedup_by(|a, b| a.id == b.id || a.addr == b.addr);
    v
}

/// n distinct nodes for a segment keyed `target`, skipping `excluded` addresses; `None`
/// when fewer than n distinct candidates remain.
pub fn place(
    target: &Id,
    n: usize,
    cands: &[Candidate],
    excluded: &[String],
) -> Option<Vec<Candidate>> {
    let v: Vec<Candidate> = by_distance(target, cands)
        .into_iter()
        .filter(|c| !excluded.contains(&c.addr))
        .take(n)
        .collect();
    (v.len() == n).then_some(v)
}

/// The next node for a shard whose holder failed: the closest candidate that is neither
/// excluded nor already used by the segment.
pub fn replacement(
    target: &Id,
    cands: &[Candidate],
    used: &[String],
    excluded: &[String],
) -> Option<Candidate> {
    by_distance(target, cands)
        .into_iter()
        .find(|c| !used.contains(&c.addr) && !excluded.contains(&c.addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(n: u8) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                id: Id([i; 20]),
                addr: format!("127.0.0.1:{}", 5000 + u16::from(i)),
            })
            .collect()
    }

    #[test]
    fn places_on_distinct_nodes_closest_first() {
        let c = cands(12);
        let p = place(&Id([3; 20]), 8, &c, &[]).unwrap();
        assert_eq!(p[0].id, Id([3; 20]));
        let mut addrs: Vec<_> = p.iter().map(|c| c.addr.clone()).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 8);
        assert!(place(&Id([3; 20]), 13, &c, &[]).is_none());
        let ex = vec![p[0].addr.clone()];
        let q = place(&Id([3; 20]), 8, &c, &ex).unwrap();
        assert!(!q.iter().any(|c| c.addr == ex[0]));
        let used: Vec<String> = p.iter().map(|c| c.addr.clone()).collect();
        let r = replacement(&Id([3; 20]), &c, &used, &[]).unwrap();
        assert!(!used.contains(&r.addr));
    }
}
