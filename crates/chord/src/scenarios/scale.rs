//! `chord-scale`: the real Chord cores at 10^5 nodes — joins, stabilization, finger repair,
//! lookups, a mass failure and churn — with the wall time, events per second and memory of
//! each phase (issue 16; PeerSim needed 4 h 36 min and 16.5 GB for a comparable run).

use std::time::Duration;

use servent_core::{Id, Instant, Ring, Rng};
use servent_sim::{
    Dist, NodeId, NodeOpts, Report, Scenario, ScenarioOpts, Sim, SimConfig, SimError, Table,
};

use super::{HOP_RULE, live_members, log2, sim_addr, sim_lookups, wall_clock};
use crate::core::{ChordNode, Command, Config, node_id};
use crate::wire::NodeRef;

/// Memory per simulated node, measured (`/usr/bin/time -v`, max RSS): 2 221 MiB for 10^5
/// nodes with r = 34 (docs/chord.md), rounded up.
pub const BYTES_PER_NODE: u64 = 24 * 1024;

/// The memory a run of `nodes` nodes needs, in bytes (per node, plus 64 MiB).
pub fn memory_estimate(nodes: usize) -> u64 {
    (nodes as u64).saturating_mul(BYTES_PER_NODE) + (64 << 20)
}

/// Memory this host can give a run, in MiB: `--param memory_mib`, else the kernel's
/// MemAvailable (the scenario runner's check of its host, not part of any core).
#[allow(clippy::disallowed_methods)]
fn available_mib(opts: &ScenarioOpts) -> Result<Option<u64>, SimError> {
    if opts.params.contains_key("memory_mib") {
        return Ok(Some(opts.param("memory_mib", 0)?));
    }
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return Ok(None);
    };
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib / 1024))
}

/// Refuses a run of `nodes` nodes whose memory estimate exceeds what is available.
pub fn check_memory(nodes: usize, opts: &ScenarioOpts) -> Result<(), SimError> {
    let Some(avail) = available_mib(opts)? else {
        return Ok(());
    };
    let need = memory_estimate(nodes) >> 20;
    if need > avail {
        let fit = ((avail << 20).saturating_sub(64 << 20)) / BYTES_PER_NODE;
        return Err(SimError::BadParams(format!(
            "{nodes} nodes need about {need} MiB ({} KiB per node, measured), more than the \
             {avail} MiB available; {fit} nodes would fit",
            BYTES_PER_NODE / 1024
        )));
    }
    Ok(())
}

/// This process's peak resident memory in MiB (0 where /proc is absent).
#[allow(clippy::disallowed_methods)]
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// `chord-scale`.
#[derive(Debug, Clone, Copy)]
pub struct Scale;

const PARAMS: &[(&str, &str)] = &[
    (
        "joins",
        "fraction of the nodes that join by the protocol (through a random member) instead of starting from the stabilized state (default 0.01)",
    ),
    (
        "fail",
        "fraction of the nodes that crash at once in the failure phase (default 0.1)",
    ),
    (
        "churn",
        "joins and crashes per second each during the churn phase (default N / 5000)",
    ),
    ("phase_s", "simulated seconds of each phase (default 20)"),
    ("stabilize_ms", "period of stabilize in ms (default 1000)"),
    (
        "fix_fingers_ms",
        "period of fix_fingers in ms, one finger per period (default 1000)",
    ),
    (
        "lookups",
        "lookups measured after each phase (default 2000)",
    ),
    (
        "memory_mib",
        "memory the run may use; a larger estimate is refused (default: the host's MemAvailable)",
    ),
];

impl Scenario for Scale {
    fn name(&self) -> &'static str {
        "chord-scale"
    }

    fn about(&self) -> &'static str {
        "Chord's real cores at scale (default 10^5 nodes): protocol joins, stabilization, finger repair, lookups, 10% crashing at once, churn; wall time, events/s and memory per phase"
    }

    fn params(&self) -> &'static [(&'static str, &'static str)] {
        PARAMS
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        opts.check_params(self.params())?;
        let n = opts.nodes.unwrap_or(100_000);
        if !(64..=1_000_000).contains(&n) {
            return Err(SimError::BadParams(
                "chord-scale: --nodes from 64 to 1000000".into(),
            ));
        }
        check_memory(n, opts)?;
        let frac = |k: &str, d: f64| -> Result<f64, SimError> {
            let v: f64 = opts.param(k, d)?;
            if !(0.0..=0.9).contains(&v) {
                return Err(SimError::BadParams(format!("--param {k}={v}: 0 to 0.9")));
            }
            Ok(v)
        };
        let joins = frac("joins", 0.01)?;
        let fail = frac("fail", 0.1)?;
        let churn: f64 = opts.param("churn", n as f64 / 5000.0)?;
        let phase_s: u64 = opts.param("phase_s", 20u64)?.clamp(1, 3600);
        let stab = Duration::from_millis(opts.param("stabilize_ms", 1000u64)?.max(10));
        let fix = Duration::from_millis(opts.param("fix_fingers_ms", 1000u64)?.max(10));
        let lookups: usize = opts.param("lookups", 2000usize)?.clamp(1, 1_000_000);
        let r = (2.0 * log2(n)).ceil() as usize;
        let ring = Ring::FULL;
        let cfg_for = |id: Id, addr| {
            let mut c = Config::new(ring, id, addr);
            c.succ_list_len = r;
            c.stabilize_every = stab;
            c.fix_fingers_every = fix;
            c.check_pred_every = 2 * stab;
            c.replicate_every = Duration::from_secs(60);
            c.rpc_timeout = Duration::from_millis(500);
            c.rpc_retries = 1;
            // Memory: a simulated node remembers its 128 most recent verified peers
            // (every neighbour re-verifies with each answer).
            c.max_verified = 128;
            c
        };

        let mut rep = Report::new(self.name());
        let mut table = Table::new(
            "chord-scale",
            &[
                "phase",
                "wall_s",
                "events",
                "events_per_s",
                "peak_rss_mib",
                "live",
                "lookups_failed",
                "mean_hops",
            ],
        );
        let t_all = wall_clock();
        let mut t = wall_clock();
        let mut sim = Sim::new(SimConfig {
            seed: opts.seed,
            latency_ms: Dist::lognormal_median(40.0, 0.5),
            collect_events: true,
            ..SimConfig::default()
        });
        let n_joiners = (joins * n as f64).round() as usize;
        let n_ideal = n - n_joiners;
        let members: Vec<NodeRef> = (0..n_ideal)
            .map(|i| NodeRef {
                id: node_id(ring, sim_addr(i)),
                addr: sim_addr(i),
            })
            .collect();
        let mut sorted = members.clone();
        sorted.sort();
        sorted.dedup_by_key(|m| m.id);
        let base = Rng::new(opts.seed);
        for (i, m) in members.iter().enumerate() {
            let node = ChordNode::with_ideal_state_sorted(
                cfg_for(m.id, m.addr),
                base.fork(i as u64),
                sim.now(),
                &sorted,
            );
            sim.add_node(node, NodeOpts::default());
        }
        drop(sorted);
        let mut rng = Rng::new(opts.seed ^ 0x5ca1e);
        let mut cmd = 1u64;
        let mut add_joiner = |sim: &mut Sim<ChordNode>, rng: &mut Rng, at: Instant| {
            let i = sim.len();
            let addr = sim_addr(i);
            let node = ChordNode::new(cfg_for(node_id(ring, addr), addr), base.fork(i as u64));
            let id = sim.add_node(node, NodeOpts::default());
            let via = NodeId(rng.below(n_ideal as u64) as u32);
            let via = sim.addr(via);
            sim.command_at(at, id, Command::Join { id: cmd, via });
            cmd += 1;
        };
        let t0 = sim.now();
        for _ in 0..n_joiners {
            let at = t0 + Duration::from_micros(rng.below(10_000_000));
            add_joiner(&mut sim, &mut rng, at);
        }
        let build_s = t.elapsed().as_secs_f64();
        rep.line(format!(
            "N = {n} real cores, r = {r}; {n_ideal} start as stabilization leaves them, {n_joiners} join by the protocol during the first 10 s; stabilize every {stab:?}, fix_fingers every {fix:?}; built in {build_s:.1} s"
        ));
        let mut ev0 = sim.stats().events;
        let mut phase = |name: &str,
                         k: f64,
                         sim: &mut Sim<ChordNode>,
                         t: &mut std::time::Instant,
                         rep: &mut Report,
                         table: &mut Table,
                         id_base: u64| {
            let (hops, bad) = sim_lookups(sim, lookups, id_base);
            let wall = t.elapsed().as_secs_f64();
            let ev = sim.stats().events - ev0;
            ev0 = sim.stats().events;
            let live = live_members(sim).len();
            let mean = hops.iter().sum::<f64>() / hops.len().max(1) as f64;
            let rss = peak_rss_mib();
            table.push(&[
                k,
                wall,
                ev as f64,
                ev as f64 / wall.max(1e-9),
                rss as f64,
                live as f64,
                bad as f64 / lookups as f64,
                mean,
            ]);
            rep.line(format!(
                "{name}: {wall:.1} s wall, {ev} events ({:.0}/s), peak RSS {rss} MiB; {live} live members; {bad} of {lookups} lookups failed or ended at the wrong node; mean path {mean:.2} hops (½·log2 N = {:.2})",
                ev as f64 / wall.max(1e-9),
                0.5 * log2(live.max(1))
            ));
            *t = wall_clock();
            (bad as f64 / lookups as f64, mean, live)
        };
        // 1. Joins and stabilization.
        sim.run_for(Duration::from_secs(phase_s.max(12)));
        let joined = (n_ideal..sim.len())
            .filter(|&i| sim.core(NodeId(i as u32)).is_some_and(|c| c.is_member()))
            .count();
        rep.line(format!("{joined} of {n_joiners} protocol joins completed"));
        let (f1, h1, _) = phase(
            "joins + stabilization",
            1.0,
            &mut sim,
            &mut t,
            &mut rep,
            &mut table,
            1 << 32,
        );
        // 2. A mass failure.
        let mut order: Vec<usize> = (0..sim.len()).collect();
        rng.shuffle(&mut order);
        let victims = (fail * sim.len() as f64).round() as usize;
        for &v in order.iter().take(victims) {
            sim.kill(NodeId(v as u32));
        }
        let (f2, _, _) = phase(
            "right after the failures",
            2.0,
            &mut sim,
            &mut t,
            &mut rep,
            &mut table,
            2 << 32,
        );
        sim.run_for(Duration::from_secs(phase_s));
        let (f3, h3, live3) = phase(
            "after stabilizing",
            3.0,
            &mut sim,
            &mut t,
            &mut rep,
            &mut table,
            3 << 32,
        );
        // 3. Churn: joins and crashes, each Poisson at `churn` per second.
        let start = sim.now();
        let end = start + Duration::from_secs(phase_s);
        let gap = |rng: &mut Rng| Duration::from_secs_f64(-rng.unit().max(1e-12).ln() / churn);
        if churn > 0.0 {
            let mut at = start + gap(&mut rng);
            while at < end {
                add_joiner(&mut sim, &mut rng, at);
                at += gap(&mut rng);
            }
            let mut at = start + gap(&mut rng);
            while at < end {
                sim.run_until(at);
                let v = NodeId(rng.below(sim.len() as u64) as u32);
                sim.kill(v);
                at += gap(&mut rng);
            }
        }
        sim.run_until(end);
        let (f4, _, _) = phase(
            &format!("after {phase_s} s of churn at {churn:.1} joins and crashes per second"),
            4.0,
            &mut sim,
            &mut t,
            &mut rep,
            &mut table,
            4 << 32,
        );
        let total = t_all.elapsed().as_secs_f64();
        rep.line(format!(
            "total {total:.1} s wall, {} events, peak RSS {} MiB; phases: 1 joins, 2 after the crash, 3 stabilized, 4 churn",
            sim.stats().events,
            peak_rss_mib()
        ));
        rep.line(format!("hop counting: {HOP_RULE}"));
        rep.tables.push(table);
        rep.kv("n", n);
        rep.kv("joined", joined);
        rep.kv("joiners", n_joiners);
        rep.kv("failed_after_joins", format!("{f1:.4}"));
        rep.kv("mean_hops_after_joins", format!("{h1:.3}"));
        rep.kv("failed_right_after_crash", format!("{f2:.4}"));
        rep.kv("failed_after_stabilizing", format!("{f3:.4}"));
        rep.kv("mean_hops_after_stabilizing", format!("{h3:.3}"));
        rep.kv("half_log2_live", format!("{:.3}", 0.5 * log2(live3.max(1))));
        rep.kv("failed_under_churn", format!("{f4:.4}"));
        rep.kv("wall_s", format!("{total:.1}"));
        rep.kv("peak_rss_mib", peak_rss_mib());
        Ok(rep)
    }
}
