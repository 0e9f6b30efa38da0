//! The example protocol at scale: `servent sim run pingpong`.
//!
//! Every node pings random others over datagrams and over stream connections, with loss and
//! a few dead nodes. The run reports success rates, round-trip times, the engine's speed
//! (events per second of wall time) and memory per node.

use std::time::Duration;

use servent_core::Instant;
use servent_core::pingpong::{Ping, PingEvent, PingPong, Transport};

use crate::scenario::{Plot, Report, Scenario, ScenarioOpts, Series, SimError, Table};
use crate::{Dist, NodeId, NodeOpts, Sim, SimConfig, percentile, rss_bytes};

/// `pingpong`: the example protocol on N nodes (default 10 000).
#[derive(Debug, Clone, Copy)]
pub struct PingPongScenario;

/// Pings each node sends over datagrams.
pub const DATAGRAM_PINGS: u64 = 8;

/// Results of one run, for tests and the scenario's report.
#[derive(Debug, Clone, PartialEq)]
pub struct PingPongRun {
    /// Nodes.
    pub nodes: usize,
    /// Pings answered / sent.
    pub pongs: u64,
    /// Pings sent.
    pub pings: u64,
    /// Pings that timed out or failed.
    pub lost: u64,
    /// Engine events processed.
    pub events: u64,
    /// Hash of the event trace.
    pub trace_hash: u64,
    /// Sorted RTTs in milliseconds.
    pub rtts_ms: Vec<f64>,
}

/// Runs the example protocol: `nodes` nodes, 1% loss, 1% of nodes dead; each node sends
/// [`DATAGRAM_PINGS`] datagram pings and one stream ping to random nodes in the first second.
pub fn run(nodes: usize, seed: u64, trace: bool) -> PingPongRun {
    let mut sim = Sim::new(SimConfig {
        seed,
        latency_ms: Dist::lognormal_median(50.0, 0.6),
        loss: 0.01,
        trace,
        ..SimConfig::default()
    });
    for _ in 0..nodes {
        sim.add_node(PingPong::new(Duration::from_secs(2)), NodeOpts::default());
    }
    let dead = nodes / 100;
    for i in 0..dead {
        sim.kill(NodeId(i as u32));
    }
    let mut pings = 0;
    for i in dead..nodes {
        for k in 0..=DATAGRAM_PINGS {
            let at = Instant::from_micros(sim.rng().below(1_000_000));
            let to = NodeId(sim.rng().below(nodes as u64) as u32);
            let to = sim.addr(to);
            let transport = if k == DATAGRAM_PINGS {
                Transport::Stream
            } else {
                Transport::Datagram
            };
            sim.command_at(
                at,
                NodeId(i as u32),
                Ping {
                    id: k,
                    to,
                    transport,
                },
            );
            pings += 1;
        }
    }
    let mut pongs = 0;
    let mut lost = 0;
    let mut rtts_ms = Vec::new();
    // Bounded: every ping ends within its 2 s timeout.
    while !sim.run_until_idle(sim.now() + Duration::from_secs(1)) || sim.pending() > 0 {
        for (_, _, e) in sim.take_events() {
            match e {
                PingEvent::Pong { rtt, .. } => {
                    pongs += 1;
                    rtts_ms.push(rtt.as_secs_f64() * 1000.0);
                }
                PingEvent::Timeout { .. }
                | PingEvent::Failed { .. }
                | PingEvent::Refused { .. } => lost += 1,
                PingEvent::Pinged { .. } => {}
            }
        }
        if sim.now() > Instant::from_secs(60) {
            break;
        }
    }
    for (_, _, e) in sim.take_events() {
        match e {
            PingEvent::Pong { rtt, .. } => {
                pongs += 1;
                rtts_ms.push(rtt.as_secs_f64() * 1000.0);
            }
            PingEvent::Timeout { .. } | PingEvent::Failed { .. } | PingEvent::Refused { .. } => {
                lost += 1
            }
            PingEvent::Pinged { .. } => {}
        }
    }
    rtts_ms.sort_by(f64::total_cmp);
    PingPongRun {
        nodes,
        pongs,
        pings,
        lost,
        events: sim.stats().events,
        trace_hash: sim.trace_hash(),
        rtts_ms,
    }
}

impl Scenario for PingPongScenario {
    fn name(&self) -> &'static str {
        "pingpong"
    }

    fn about(&self) -> &'static str {
        "the example protocol: N nodes ping each other over UDP and TCP with loss (engine speed, memory per node)"
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        let nodes = opts.nodes.unwrap_or(10_000);
        if nodes < 2 {
            return Err(SimError::BadParams(
                "pingpong needs at least 2 nodes".into(),
            ));
        }
        let rss0 = rss_bytes().unwrap_or(0);
        #[allow(clippy::disallowed_methods)] // wall time of the run, measured outside the cores
        let t0 = std::time::Instant::now();
        let r = run(nodes, opts.seed, false);
        let wall = t0.elapsed().as_secs_f64();
        let rss1 = rss_bytes().unwrap_or(0);
        let mut rep = Report::new(self.name());
        let eps = r.events as f64 / wall.max(1e-9);
        rep.line(format!(
            "{} nodes, {} pings, {} answered, {} lost (1% loss, 1% dead nodes), {} events in {:.2} s of wall time",
            r.nodes, r.pings, r.pongs, r.lost, r.events, wall
        ));
        rep.line(format!(
            "RTT p50 {:.1} ms, p99 {:.1} ms (latency: log-normal, median 50 ms one way)",
            percentile(&r.rtts_ms, 50.0),
            percentile(&r.rtts_ms, 99.0)
        ));
        let mut t = Table::new("pingpong-rtt", &["percentile", "rtt_ms"]);
        let mut s = Series {
            name: "RTT".into(),
            points: Vec::new(),
        };
        for p in [1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 100.0] {
            let v = percentile(&r.rtts_ms, p);
            t.push(&[p, v]);
            s.points.push((p, v));
        }
        rep.tables.push(t);
        rep.plots.push(Plot {
            name: "pingpong-rtt".into(),
            title: format!("ping/pong RTT percentiles, {} nodes", r.nodes),
            x_label: "percentile".into(),
            y_label: "RTT (ms)".into(),
            log_x: false,
            series: vec![s],
        });
        rep.kv("nodes", r.nodes);
        rep.kv(
            "success",
            format!("{:.4}", r.pongs as f64 / r.pings.max(1) as f64),
        );
        rep.kv("events", r.events);
        rep.kv("events_per_sec", format!("{eps:.0}"));
        rep.kv("wall_s", format!("{wall:.2}"));
        rep.kv("bytes_per_node", (rss1.saturating_sub(rss0)) / nodes as u64);
        Ok(rep)
    }
}
