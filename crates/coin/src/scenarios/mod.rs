//! Simulator scenarios of the coin node: `coin-propagation`, how long a block takes to reach
//! every node of a random network of real [`Node`] cores (each with a chain store in memory,
//! its requests completed within [`STORE_STEP`]) over the simulator's latencies.
#![allow(clippy::disallowed_methods)] // wall time of a run, measured outside the cores

use std::time::Duration;

use servent_core::{Instant, Rng};
use servent_sim::{
    Dist, NodeId, NodeOpts, Plot, Report, Scenario, ScenarioOpts, Series, Sim, SimConfig, SimError,
    Table, percentile,
};

use crate::Params;
use crate::core::node::{Command, Event, Node, NodeConfig};
use crate::store::Store;
use crate::store::node::{active_headers, serve};
use crate::wire::Block;

/// Store requests are completed at most this long after the node made them.
pub const STORE_STEP: Duration = Duration::from_millis(2);

/// All coin scenarios.
pub fn scenarios() -> Vec<Box<dyn Scenario>> {
    vec![Box::new(Propagation)]
}

const PARAMS: &[(&str, &str)] = &[
    (
        "blocks",
        "blocks mined, one every `interval_s` by a random node (default 20)",
    ),
    ("interval_s", "seconds between blocks (default 10)"),
    ("outbound", "peers each node dials (default 8)"),
];

/// `coin-propagation`.
#[derive(Debug)]
pub struct Propagation;

/// Mine the block node `core` would build next, paying to `OP_TRUE`.
fn mine_on(core: &Node) -> Result<Block, SimError> {
    let (mut t, _) = core
        .block_template(&[0x51])
        .map_err(|e| SimError::BadParams(format!("template: {e}")))?;
    for extra in 0..u64::MAX {
        t.set_extra_nonce(extra);
        if let Some(n) = crate::mine::search(&t.header, 0..u32::MAX) {
            t.header.nonce = n;
            return Ok(t.block());
        }
    }
    Err(SimError::BadParams("no nonce found".into()))
}

struct Net {
    sim: Sim<Node>,
    stores: Vec<Store>,
    ids: Vec<NodeId>,
    unix_at_zero: i64,
}

impl Net {
    /// Complete every store request made so far; return the tips reached, in order.
    fn settle(&mut self, tips: &mut Vec<(Instant, usize, [u8; 32])>) {
        loop {
            let events = self.sim.take_events();
            if events.is_empty() {
                return;
            }
            for (at, n, e) in events {
                let i = n.index();
                match e {
                    Event::Store(req) => {
                        let unix =
                            self.unix_at_zero + (self.sim.now().as_micros() / 1_000_000) as i64;
                        let reply = serve(&mut self.stores[i], req, unix);
                        self.sim.command(n, Command::StoreDone(reply));
                    }
                    Event::Tip { hash, .. } => tips.push((at, i, hash)),
                    _ => {}
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration, tips: &mut Vec<(Instant, usize, [u8; 32])>) {
        let end = self.sim.now() + d;
        while self.sim.now() < end {
            self.sim.run_for(STORE_STEP);
            self.settle(tips);
        }
    }
}

impl Scenario for Propagation {
    fn name(&self) -> &'static str {
        "coin-propagation"
    }
    fn about(&self) -> &'static str {
        "coin: time for a block to reach every node (headers-first relay, real node cores and stores)"
    }
    fn params(&self) -> &'static [(&'static str, &'static str)] {
        PARAMS
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        opts.check_params(PARAMS)?;
        let n = opts.nodes.unwrap_or(100).max(2);
        let blocks: usize = opts.param("blocks", 20)?;
        let interval = Duration::from_secs(opts.param("interval_s", 10u64)?);
        let outbound: usize = opts.param("outbound", 8)?;
        let params = Params::regtest();
        let unix_at_zero = NodeConfig::default().unix_at_zero;
        let mut sim = Sim::new(SimConfig {
            seed: opts.seed,
            latency_ms: Dist::lognormal_median(40.0, 0.5),
            collect_events: true,
            ..SimConfig::default()
        });
        let mut rng = Rng::new(opts.seed ^ 0xc0_1a);
        let mut stores = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let store = Store::open(":memory:", params.clone())
                .map_err(|e| SimError::BadParams(format!("store: {e}")))?;
            let headers =
                active_headers(&store).map_err(|e| SimError::BadParams(format!("store: {e}")))?;
            let cfg = NodeConfig {
                unix_at_zero,
                max_outbound: outbound,
                ..NodeConfig::default()
            };
            let core = Node::new(cfg, params.clone(), &headers, rng.fork(i as u64))
                .ok_or_else(|| SimError::BadParams("genesis".into()))?;
            ids.push(sim.add_node(
                core,
                NodeOpts {
                    port: 18444,
                    ..NodeOpts::default()
                },
            ));
            stores.push(store);
        }
        let mut net = Net {
            sim,
            stores,
            ids,
            unix_at_zero,
        };
        for i in 0..n {
            for _ in 0..outbound {
                let j = rng.below(n as u64) as usize;
                if j != i {
                    let to = net.sim.addr(net.ids[j]);
                    net.sim.command(net.ids[i], Command::Connect(to));
                }
            }
        }
        let mut tips = Vec::new();
        net.run_for(Duration::from_secs(5), &mut tips);
        let mut table = Table::new(
            "coin-propagation",
            &["block", "nodes_reached", "p50_ms", "p90_ms", "max_ms"],
        );
        let mut medians = Vec::new();
        let mut worst = Vec::new();
        let mut complete = 0usize;
        for b in 0..blocks {
            let m = rng.below(n as u64) as usize;
            let core = net
                .sim
                .core(net.ids[m])
                .ok_or_else(|| SimError::BadParams("node gone".into()))?;
            let block = mine_on(core)?;
            let hash = block.header.hash();
            let t0 = net.sim.now();
            tips.clear();
            net.sim.command(
                net.ids[m],
                Command::SubmitBlock {
                    id: b as u64,
                    block,
                },
            );
            net.settle(&mut tips);
            net.run_for(interval, &mut tips);
            let mut first: Vec<Option<f64>> = vec![None; n];
            for (at, i, h) in &tips {
                if *h == hash && first[*i].is_none() {
                    first[*i] = Some(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
                }
            }
            let mut d: Vec<f64> = first.iter().flatten().copied().collect();
            d.sort_by(f64::total_cmp);
            if d.len() == n {
                complete += 1;
            }
            let (p50, p90, max) = (
                percentile(&d, 50.0),
                percentile(&d, 90.0),
                d.last().copied().unwrap_or(f64::NAN),
            );
            table.push(&[b as f64, d.len() as f64, p50, p90, max]);
            medians.push((b as f64, p50));
            worst.push((b as f64, max));
        }
        let mut r = Report::new("coin-propagation");
        r.line(format!(
            "{n} nodes, {outbound} outbound each, lognormal latency (median 40 ms), {blocks} blocks every {} s",
            interval.as_secs()
        ));
        let mut all_p50: Vec<f64> = medians.iter().map(|(_, v)| *v).collect();
        all_p50.sort_by(f64::total_cmp);
        let mut all_max: Vec<f64> = worst.iter().map(|(_, v)| *v).collect();
        all_max.sort_by(f64::total_cmp);
        r.kv("nodes", n);
        r.kv("blocks_everywhere", format!("{complete}/{blocks}"));
        r.kv(
            "median_p50_ms",
            format!("{:.0}", percentile(&all_p50, 50.0)),
        );
        r.kv(
            "median_max_ms",
            format!("{:.0}", percentile(&all_max, 50.0)),
        );
        r.tables.push(table);
        r.plots.push(Plot {
            name: "coin-propagation".into(),
            title: "Block propagation".into(),
            x_label: "block".into(),
            y_label: "ms after mining".into(),
            log_x: false,
            series: vec![
                Series {
                    name: "median node".into(),
                    points: medians,
                },
                Series {
                    name: "last node".into(),
                    points: worst,
                },
            ],
        });
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default run (100 nodes, 20 blocks): every block everywhere; prints the figures.
    #[test]
    fn a_hundred_node_network_gets_every_block() {
        let opts = ScenarioOpts::new(None, 1, std::path::PathBuf::from("/nonexistent"));
        let r = Propagation.run(&opts).expect("run");
        eprintln!("{}", r.headline_line());
        assert_eq!(r.get("blocks_everywhere"), Some("20/20"));
    }

    #[test]
    fn every_block_reaches_every_node_of_a_small_network() {
        let opts = ScenarioOpts::new(Some(20), 3, std::path::PathBuf::from("/nonexistent"))
            .with_param("blocks", 4)
            .with_param("interval_s", 5);
        let r = Propagation.run(&opts).expect("run");
        eprintln!("{}", r.headline_line());
        assert_eq!(r.get("blocks_everywhere"), Some("4/4"), "{:?}", r.headline);
        let p50: f64 = r
            .get("median_p50_ms")
            .and_then(|v| v.parse().ok())
            .expect("p50");
        assert!(p50 > 0.0 && p50 < 5000.0, "{p50}");
    }
}
