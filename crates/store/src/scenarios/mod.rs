//! `store-durability`: thousands of storage nodes, objects of one or more segments with n
//! shards each on n distinct random nodes, churn (independent failures and correlated
//! "rack" failures) and lazy repair with [`crate::core::repair::Policy`]. Three parts:
//!
//! 1. n−k holders of every segment killed: the count of lost objects must be zero;
//! 2. a fraction f of all nodes killed at once, no repair: lost segments against the
//!    binomial model P(Bin(n, f) > n−k), with a 3σ bound;
//! 3. rounds of churn with lazy repair: lost objects and repair traffic (shard sizes moved
//!    per repaired shard, k down and m up for m missing).
//!
//! The holders are placed at random, not by XOR distance: with uniformly random node ids
//! the closest-n sets are as good as random sets for counting losses.

use servent_core::Rng;
use servent_sim::{Report, Scenario, ScenarioOpts, SimError, Table};

use crate::core::repair::{Decision, Policy};

/// All scenarios of this crate.
pub fn all() -> Vec<Box<dyn Scenario>> {
    vec![Box::new(Durability)]
}

/// The durability scenario.
#[derive(Debug)]
pub struct Durability;

fn pick_distinct(rng: &mut Rng, alive: &[usize], n: usize, avoid: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    let mut tries = 0;
    while out.len() < n && tries < 100 * n + 1000 {
        tries += 1;
        if let Some(&x) = rng.pick(alive) {
            if !out.contains(&x) && !avoid.contains(&x) {
                out.push(x);
            }
        }
    }
    out
}

/// P(Bin(n, p) > t).
pub fn binomial_tail(n: usize, p: f64, t: usize) -> f64 {
    let mut total = 0.0;
    for i in (t + 1)..=n {
        let mut c = 1.0f64;
        for j in 0..i {
            c = c * (n - j) as f64 / (j + 1) as f64;
        }
        total += c * p.powi(i as i32) * (1.0 - p).powi((n - i) as i32);
    }
    total
}

impl Scenario for Durability {
    fn name(&self) -> &'static str {
        "store-durability"
    }
    fn about(&self) -> &'static str {
        "storage nodes with churn and lazy repair: lost objects against the binomial model, repair traffic"
    }
    fn params(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("k", "shards needed (default 4)"),
            ("n", "shards per segment (default 8)"),
            ("objects", "objects (default 5000)"),
            ("segments", "segments per object (default 2)"),
            (
                "fail",
                "fraction of nodes killed at once in part 2 (default 0.3)",
            ),
            ("rounds", "churn rounds in part 3 (default 50)"),
            (
                "churn",
                "per-round failure probability of a node (default 0.02)",
            ),
            (
                "rack",
                "per-round probability of a correlated failure of 2% of the nodes (default 0.1)",
            ),
            (
                "threshold",
                "repair below this many healthy shards (default k + ceil((n-k)/2))",
            ),
        ]
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        let nodes = opts.nodes.unwrap_or(2000);
        let k: usize = opts.param("k", 4)?;
        let n: usize = opts.param("n", 8)?;
        let objects: usize = opts.param("objects", 5000)?;
        let segs: usize = opts.param("segments", 2)?;
        let fail: f64 = opts.param("fail", 0.3)?;
        let rounds: usize = opts.param("rounds", 50)?;
        let churn: f64 = opts.param("churn", 0.02)?;
        let rack: f64 = opts.param("rack", 0.1)?;
        if k == 0 || n < k || n > nodes || nodes > 1_000_000 || objects * segs > 10_000_000 {
            return Err(SimError::BadParams("need 1 <= k <= n <= nodes".into()));
        }
        let policy = match opts.params.get("threshold") {
            Some(_) => Policy::with_threshold(k, n, opts.param("threshold", n)?),
            None => Policy::new(k, n),
        };
        let mut rng = Rng::new(opts.seed);
        let all: Vec<usize> = (0..nodes).collect();
        let mut rep = Report::new(self.name());
        rep.lines.push(format!(
            "{nodes} nodes, {objects} objects x {segs} segments, {k}-of-{n}, repair below {} healthy, seed {}",
            policy.threshold, opts.seed
        ));

        // part 1: n-k holders of every segment killed
        let mut lost1 = 0;
        for _ in 0..objects {
            let mut ok = true;
            for _ in 0..segs {
                let holders = pick_distinct(&mut rng, &all, n, &[]);
                let mut healthy = vec![true; holders.len()];
                let mut idx: Vec<usize> = (0..holders.len()).collect();
                rng.shuffle(&mut idx);
                for &i in idx.iter().take(n - k) {
                    healthy[i] = false;
                }
                if policy.decide(&healthy) == Decision::Lost {
                    ok = false;
                }
            }
            lost1 += usize::from(!ok);
        }
        rep.lines.push(format!(
            "part 1: n-k = {} holders of every segment killed: {lost1} objects lost",
            n - k
        ));

        // part 2: a fraction of all nodes killed, no repair
        let mut dead = vec![false; nodes];
        for d in dead.iter_mut() {
            *d = rng.chance(fail);
        }
        let f_real = dead.iter().filter(|&&d| d).count() as f64 / nodes as f64;
        let mut lost_segs = 0usize;
        for _ in 0..objects * segs {
            let holders = pick_distinct(&mut rng, &all, n, &[]);
            let gone = holders.iter().filter(|&&h| dead[h]).count();
            lost_segs += usize::from(gone > n - k);
        }
        let p = binomial_tail(n, f_real, n - k);
        let total = (objects * segs) as f64;
        let expect = total * p;
        let sigma = (total * p * (1.0 - p)).sqrt();
        let within = (lost_segs as f64 - expect).abs() <= 3.0 * sigma + 1.0;
        rep.lines.push(format!(
            "part 2: {:.1}% of nodes killed: {lost_segs} of {} segments lost, binomial model {expect:.1} ± {:.1} (3σ): {}",
            f_real * 100.0,
            objects * segs,
            3.0 * sigma,
            if within { "within" } else { "OUTSIDE" }
        ));

        // part 3: churn with lazy repair
        let mut alive = vec![true; nodes];
        let mut placement: Vec<Vec<usize>> = (0..objects * segs)
            .map(|_| pick_distinct(&mut rng, &all, n, &[]))
            .collect();
        let mut lost_seg = vec![false; placement.len()];
        let (mut repaired, mut traffic, mut repairs) = (0usize, 0usize, 0usize);
        let mut table = Table::new(
            "store_durability_rounds",
            &[
                "round",
                "failed_nodes",
                "repaired_shards",
                "traffic_shards",
                "lost_segments",
            ],
        );
        for round in 0..rounds {
            let mut failed = 0;
            for a in alive.iter_mut() {
                if *a && rng.chance(churn) {
                    *a = false;
                    failed += 1;
                }
            }
            if rng.chance(rack) {
                let width = (nodes / 50).max(1);
                let start = rng.below(nodes as u64) as usize;
                for i in 0..width {
                    if let Some(a) = alive.get_mut((start + i) % nodes) {
                        if *a {
                            *a = false;
                            failed += 1;
                        }
                    }
                }
            }
            let live: Vec<usize> = (0..nodes).filter(|&i| alive[i]).collect();
            let (mut r_round, mut t_round) = (0, 0);
            for (si, holders) in placement.iter_mut().enumerate() {
                if lost_seg[si] {
                    continue;
                }
                let healthy: Vec<bool> = holders.iter().map(|&h| alive[h]).collect();
                match policy.decide(&healthy) {
                    Decision::Healthy => {}
                    Decision::Lost => lost_seg[si] = true,
                    Decision::Repair(missing) => {
                        let fresh = pick_distinct(&mut rng, &live, missing.len(), holders);
                        for (&i, &h) in missing.iter().zip(&fresh) {
                            if let Some(x) = holders.get_mut(i) {
                                *x = h;
                            }
                        }
                        r_round += fresh.len();
                        t_round += policy.traffic(fresh.len());
                        repairs += 1;
                    }
                }
            }
            repaired += r_round;
            traffic += t_round;
            // the failed nodes come back empty (new nodes with the same slots)
            for a in alive.iter_mut() {
                *a = true;
            }
            let lost_now = lost_seg.iter().filter(|&&l| l).count();
            table.push(&[
                round as f64,
                failed as f64,
                r_round as f64,
                t_round as f64,
                lost_now as f64,
            ]);
        }
        let lost3_segs = lost_seg.iter().filter(|&&l| l).count();
        let lost3 = lost_seg
            .chunks(segs.max(1))
            .filter(|c| c.iter().any(|&l| l))
            .count();
        let per_shard = if repaired > 0 {
            traffic as f64 / repaired as f64
        } else {
            0.0
        };
        rep.lines.push(format!(
            "part 3: {rounds} rounds of churn ({:.1}%/round, racks {:.0}%/round): {lost3} objects ({lost3_segs} segments) lost, {repairs} repairs, {repaired} shards rebuilt, {per_shard:.2} shard-sizes of traffic per repaired shard",
            churn * 100.0,
            rack * 100.0
        ));
        rep.tables.push(table);
        rep.kv("lost_at_n_minus_k", lost1);
        rep.kv("lost_segments", lost_segs);
        rep.kv("binomial_expected", format!("{expect:.1}"));
        rep.kv("binomial_within_3sigma", within);
        rep.kv("churn_lost_objects", lost3);
        rep.kv("repair_traffic_per_shard", format!("{per_shard:.2}"));
        if lost1 != 0 {
            return Err(SimError::Failed(format!(
                "{lost1} objects lost with only n-k holders gone"
            )));
        }
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_matches_the_binomial_model_and_loses_nothing_at_n_minus_k() {
        let o = ScenarioOpts::new(Some(1000), 7, std::path::PathBuf::from("sim-out"))
            .with_param("objects", 2000)
            .with_param("rounds", 10)
            .with_param("fail", 0.4);
        let r = Durability.run(&o).unwrap();
        let h = |k: &str| {
            r.headline
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(h("lost_at_n_minus_k"), "0");
        assert_eq!(h("binomial_within_3sigma"), "true");
    }

    #[test]
    fn binomial_tail_is_right() {
        assert!((binomial_tail(8, 0.5, 4) - 93.0 / 256.0).abs() < 1e-12);
        assert_eq!(binomial_tail(8, 0.0, 4), 0.0);
    }
}
