//! `tv-mesh`: the same broadcaster, tracker and viewer cores in the simulator, for growing
//! audiences with heterogeneous upload (a share of supernodes, the rest at 0.5–2× the
//! bitrate), a source limited to 2× the bitrate, and churn (a share of the viewers leaves
//! abruptly mid-run, and as many newcomers join). It reports startup, lag and continuity
//! against audience size next to what client-server unicast would cost the source.
//!
//! To fit 10^4 viewers in memory the simulated stream is 128 kbit/s (chunks of 16 TS packets,
//! 190 ms), with every bandwidth scaled to it: the figures depend on the ratios, not on the
//! absolute rate. Signature checks are off in the simulator (every chunk is signed by the
//! broadcaster as in real runs; the unit tests cover verification): one ed25519 check per
//! chunk per viewer would dominate the run time.

use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use servent_core::{Instant, Rng};
use servent_sim::{
    Dist, NodeId, NodeOpts, Plot, Report, Scenario, ScenarioOpts, Series, Sim, SimConfig, SimError,
    Table, percentile,
};

use crate::core::{ChunkerConfig, Node, NodeCommand, NodeConfig, Tracker};
use crate::harness::Station;
use crate::wire::ts::TS_PACKET;

/// Every scenario of this crate.
pub fn scenarios() -> Vec<Box<dyn Scenario>> {
    vec![Box::new(TvMesh)]
}

/// The simulated stream's bitrate, bit/s.
const BITRATE: u64 = 128_000;
const PACKETS_PER_SEC: u64 = BITRATE / 8 / TS_PACKET as u64;

/// `tv-mesh` (see the module documentation).
#[derive(Debug)]
pub struct TvMesh;

const PARAMS: &[(&str, &str)] = &[
    ("secs", "seconds of stream (default 30)"),
    (
        "supernodes",
        "share of viewers that are supernodes at 10x the bitrate (default 0.1)",
    ),
    (
        "churn",
        "share of viewers that leave abruptly mid-run, replaced by newcomers (default 0.3)",
    ),
    (
        "steps",
        "audience sizes, comma-separated (default 100,1000,NODES)",
    ),
];

/// One audience size's figures.
#[derive(Debug, Clone, Default)]
pub struct MeshRun {
    /// Viewers that stayed to the end.
    pub viewers: usize,
    /// Startup delays, seconds, sorted.
    pub startup_s: Vec<f64>,
    /// Each staying viewer's median lag, seconds, sorted.
    pub lag_s: Vec<f64>,
    /// Each staying viewer's continuity, sorted.
    pub continuity: Vec<f64>,
    /// Source upload ÷ bitrate.
    pub source_ratio: f64,
    /// Control bytes ÷ video bytes over all viewers.
    pub control_overhead: f64,
    /// Achieved rate ÷ the fluid bound min(u_s, (u_s + Σu_i)/N), both per viewer.
    pub fluid_ratio: f64,
}

/// A synthetic live TS for the simulator: one video PID, a random access point every second.
fn stream_piece(n0: u64, packets: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity((packets as usize) * TS_PACKET);
    for i in n0..n0 + packets {
        let mut p = [0xffu8; TS_PACKET];
        p[0] = 0x47;
        p[1] = 0x01;
        p[2] = 0x00;
        p[3] = 0x30 | (i as u8 & 0x0f);
        p[4] = 1;
        p[5] = if i % PACKETS_PER_SEC == 0 { 0x40 } else { 0 };
        v.extend_from_slice(&p);
    }
    v
}

/// Runs one audience size.
pub fn run_mesh(
    viewers: usize,
    seed: u64,
    secs: u64,
    supernodes: f64,
    churn: f64,
) -> Result<MeshRun, SimError> {
    let mut sim: Sim<Station> = Sim::new(SimConfig {
        seed,
        latency_ms: Dist::lognormal_median(30.0, 0.4),
        collect_events: false,
        ..SimConfig::default()
    });
    let bps = BITRATE / 8;
    let tracker = sim.add_node(
        Station::Tracker(Tracker::new(Rng::new(seed).fork(1))),
        NodeOpts {
            port: 7700,
            ..NodeOpts::default()
        },
    );
    let taddr = sim.addr(tracker);
    let mut seed_bytes = [0u8; 32];
    Rng::new(seed).fork(2).fill(&mut seed_bytes);
    let key = SigningKey::from_bytes(&seed_bytes);
    let src_up = 2 * bps;
    let src_opts = NodeOpts {
        up_bps: Some(src_up + src_up / 4),
        port: 7000,
        ..NodeOpts::default()
    };
    // The address is known only once added: configure with a placeholder, then fix.
    let placeholder: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 7000));
    let mut scfg = NodeConfig::viewer([0; 32], placeholder, Some(taddr));
    scfg.up_kbps = (src_up * 8 / 1000) as u32;
    scfg.max_partners = 64;
    scfg.verify = false;
    scfg.window = 24;
    let chunking = ChunkerConfig {
        max_packets: 16,
        max_age: Duration::from_millis(250),
    };
    let mut rng = Rng::new(seed).fork(3);
    let source_id = NodeId(sim.len() as u32);
    let source_addr = SocketAddr::new(sim_ip(&sim, source_id), 7000);
    scfg.listen = source_addr;
    let source = sim.add_node(
        Station::Node(Node::broadcaster(scfg, key.clone(), chunking, rng.fork(4))),
        src_opts,
    );
    let channel = key.verifying_key().to_bytes();
    let mut ups: Vec<u64> = Vec::new();
    let mut ids: Vec<NodeId> = Vec::new();
    let make = |sim: &mut Sim<Station>, rng: &mut Rng, ups: &mut Vec<u64>| -> NodeId {
        let id = NodeId(sim.len() as u32);
        let a = SocketAddr::new(sim_ip(sim, id), 7000);
        let supern = rng.chance(supernodes);
        let up = if supern {
            10 * bps
        } else {
            (bps as f64 * (0.5 + 1.5 * rng.unit())) as u64
        };
        let mut cfg = NodeConfig::viewer(channel, a, Some(taddr));
        cfg.up_kbps = (up * 8 / 1000) as u32;
        cfg.supernode = supern;
        cfg.verify = false;
        cfg.window = 24;
        if supern {
            cfg.max_partners = 64;
        }
        ups.push(up);
        sim.add_node(
            Station::Node(Node::new(cfg, rng.fork(id.0 as u64))),
            NodeOpts {
                up_bps: Some(up + up / 4),
                port: 7000,
                ..NodeOpts::default()
            },
        )
    };
    for _ in 0..viewers {
        let id = make(&mut sim, &mut rng, &mut ups);
        ids.push(id);
    }
    sim.run_for(Duration::from_secs(3));
    let start = sim.now();
    let step = Duration::from_millis(50);
    let per_step = PACKETS_PER_SEC * 50 / 1000;
    let mut n = 0u64;
    let mut left: Vec<NodeId> = Vec::new();
    let churn_at = start + Duration::from_secs(secs / 2);
    let mut churned = false;
    let steps = secs * 1000 / 50;
    for _ in 0..steps {
        sim.command(source, NodeCommand::Ingest(stream_piece(n, per_step)));
        n += per_step;
        sim.run_for(step);
        if !churned && sim.now() >= churn_at {
            churned = true;
            let k = (viewers as f64 * churn) as usize;
            for &id in ids
                .iter()
                .step_by((1.0 / churn.max(1e-9)).max(1.0) as usize)
                .take(k)
            {
                sim.kill(id);
                left.push(id);
            }
            for _ in 0..left.len() {
                let id = make(&mut sim, &mut rng, &mut ups);
                ids.push(id);
            }
        }
    }
    sim.command(source, NodeCommand::EndOfInput);
    sim.run_for(Duration::from_secs(4));
    let end = sim.now();
    let mut r = MeshRun::default();
    let mut control = 0u64;
    let mut video = 0u64;
    let mut down = 0u64;
    let mut stay_time = 0.0f64;
    for &id in &ids {
        if left.contains(&id) {
            continue;
        }
        let Some(node) = sim.core(id).and_then(Station::node) else {
            continue;
        };
        let st = node.stats();
        r.viewers += 1;
        if let Some(s) = st.startup {
            r.startup_s.push(s.as_secs_f64());
        }
        if let Some(l) = st.lag_percentile(50.0) {
            r.lag_s.push(l);
        }
        r.continuity.push(st.continuity());
        control += st.control_up + st.control_down;
        video += st.video_up + st.video_down;
        down += st.video_down;
        let joined = st.joined_at.unwrap_or(start).max(start);
        stay_time += end.saturating_duration_since(joined).as_secs_f64();
    }
    let src = sim
        .core(source)
        .and_then(Station::node)
        .map(|n| n.stats().clone())
        .unwrap_or_default();
    let dur = end.saturating_duration_since(start).as_secs_f64().max(1e-9);
    r.source_ratio = src.video_up as f64 / (bps as f64 * dur);
    r.control_overhead = control as f64 / video.max(1) as f64;
    // The fluid bound per viewer (bytes/s) over the live population.
    let nview = viewers as f64;
    let sum_up: f64 = ups.iter().take(viewers).map(|u| *u as f64).sum();
    let bound = (src_up as f64).min((src_up as f64 + sum_up) / nview);
    let achieved = down as f64 / stay_time.max(1e-9);
    r.fluid_ratio = achieved / bound.min(bps as f64).max(1e-9);
    r.startup_s.sort_by(f64::total_cmp);
    r.lag_s.sort_by(f64::total_cmp);
    r.continuity.sort_by(f64::total_cmp);
    let _ = Instant::ZERO;
    Ok(r)
}

fn sim_ip(sim: &Sim<Station>, id: NodeId) -> std::net::IpAddr {
    // The engine numbers nodes from 127.0.0.1 in the order they are added.
    let _ = sim;
    std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0001u32 + id.0))
}

impl Scenario for TvMesh {
    fn name(&self) -> &'static str {
        "tv-mesh"
    }

    fn about(&self) -> &'static str {
        "P2P TV mesh: continuity, lag and startup against audience size, with supernodes and churn (default 10000 viewers)"
    }

    fn params(&self) -> &'static [(&'static str, &'static str)] {
        PARAMS
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        opts.check_params(PARAMS)?;
        let max = opts.nodes.unwrap_or(10_000);
        if max < 2 {
            return Err(SimError::BadParams(
                "tv-mesh needs at least 2 viewers".into(),
            ));
        }
        let secs: u64 = opts.param("secs", 30)?;
        let supernodes: f64 = opts.param("supernodes", 0.1)?;
        let churn: f64 = opts.param("churn", 0.3)?;
        if !(0.0..=1.0).contains(&supernodes) || !(0.0..0.9).contains(&churn) || secs < 4 {
            return Err(SimError::BadParams(
                "supernodes in 0..=1, churn in 0..0.9, secs >= 4".into(),
            ));
        }
        let steps: Vec<usize> = match opts.params.get("steps") {
            Some(s) => s
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<usize>()
                        .map_err(|e| SimError::BadParams(format!("steps: {e}")))
                })
                .collect::<Result<_, _>>()?,
            None => [100, 1000, max].into_iter().filter(|&n| n <= max).collect(),
        };
        let mut steps = steps;
        steps.sort_unstable();
        steps.dedup();
        let mut rep = Report::new(self.name());
        rep.line(format!(
            "stream {} kbit/s; source upload 2x; {:.0}% supernodes at 10x, the rest 0.5-2x; {:.0}% of viewers leave abruptly at half time and as many join; {secs} s",
            BITRATE / 1000,
            supernodes * 100.0,
            churn * 100.0
        ));
        let mut t = Table::new(
            "tv-mesh",
            &[
                "viewers",
                "startup_p50_s",
                "startup_p95_s",
                "lag_p50_s",
                "lag_p95_s",
                "continuity_mean",
                "continuity_p5",
                "source_upload_ratio",
                "client_server_upload_ratio",
                "control_overhead",
                "fluid_ratio",
            ],
        );
        let mut cont = Series {
            name: "continuity (mean)".into(),
            points: vec![],
        };
        let mut lag = Series {
            name: "lag p95 (s)".into(),
            points: vec![],
        };
        let mut src = Series {
            name: "P2P source upload / bitrate".into(),
            points: vec![],
        };
        let mut cs = Series {
            name: "client-server upload / bitrate".into(),
            points: vec![],
        };
        let mut last = MeshRun::default();
        for &n in &steps {
            let r = run_mesh(n, opts.seed, secs, supernodes, churn)?;
            let mean_c = r.continuity.iter().sum::<f64>() / r.continuity.len().max(1) as f64;
            t.push(&[
                n as f64,
                percentile(&r.startup_s, 50.0),
                percentile(&r.startup_s, 95.0),
                percentile(&r.lag_s, 50.0),
                percentile(&r.lag_s, 95.0),
                mean_c,
                percentile(&r.continuity, 5.0),
                r.source_ratio,
                n as f64,
                r.control_overhead,
                r.fluid_ratio,
            ]);
            rep.line(format!(
                "{n} viewers: startup p50 {:.2} s p95 {:.2} s; lag p50 {:.2} s p95 {:.2} s; continuity mean {:.4} p5 {:.4}; source upload {:.2}x the bitrate (client-server: {n}x); control overhead {:.2}%; achieved/fluid bound {:.3}",
                percentile(&r.startup_s, 50.0),
                percentile(&r.startup_s, 95.0),
                percentile(&r.lag_s, 50.0),
                percentile(&r.lag_s, 95.0),
                mean_c,
                percentile(&r.continuity, 5.0),
                r.source_ratio,
                100.0 * r.control_overhead,
                r.fluid_ratio
            ));
            cont.points.push((n as f64, mean_c));
            lag.points.push((n as f64, percentile(&r.lag_s, 95.0)));
            src.points.push((n as f64, r.source_ratio));
            cs.points.push((n as f64, n as f64));
            last = r;
        }
        rep.tables.push(t);
        rep.plots.push(Plot {
            name: "tv-mesh-continuity-lag".into(),
            title: "P2P TV: continuity and lag vs audience".into(),
            x_label: "viewers".into(),
            y_label: "continuity / lag (s)".into(),
            log_x: true,
            series: vec![cont, lag],
        });
        rep.plots.push(Plot {
            name: "tv-mesh-source-cost".into(),
            title: "Source upload vs client-server".into(),
            x_label: "viewers".into(),
            y_label: "upload / bitrate".into(),
            log_x: true,
            series: vec![src, cs],
        });
        let mean_c = last.continuity.iter().sum::<f64>() / last.continuity.len().max(1) as f64;
        rep.kv("viewers", steps.last().copied().unwrap_or(0));
        rep.kv("continuity", format!("{mean_c:.4}"));
        rep.kv("lag_p95_s", format!("{:.2}", percentile(&last.lag_s, 95.0)));
        rep.kv(
            "startup_p95_s",
            format!("{:.2}", percentile(&last.startup_s, 95.0)),
        );
        rep.kv("source_ratio", format!("{:.2}", last.source_ratio));
        rep.kv("control_overhead", format!("{:.4}", last.control_overhead));
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_mesh_with_churn_keeps_playing() {
        let r = run_mesh(60, 7, 12, 0.1, 0.3).unwrap();
        assert!(r.viewers >= 55, "{}", r.viewers);
        let mean = r.continuity.iter().sum::<f64>() / r.continuity.len() as f64;
        // Measured 0.52 with seed 7 (the mesh does not yet keep up at 0.5-2x the bitrate in
        // the simulator's bandwidth model: see docs/tv.md); this guards against regressions.
        assert!(mean > 0.3, "continuity {mean}");
        assert!(
            r.source_ratio <= 2.6,
            "the source stays within its limit: {}",
            r.source_ratio
        );
    }
}
