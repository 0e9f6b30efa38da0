//! BitTorrent in the simulator: a node type that is either the tracker or a peer, a swarm
//! runner shared by the tests and the `bittorrent-swarm` scenario, and the scenario itself.
//!
//! The scenario is the lecture's point: one seeder with upload `u_s`, N leechers with upload
//! `u` and download `d`, content of F bytes. Client–server distribution needs `N·F/u_s`; the
//! fluid lower bound for peer-to-peer is `max(F/u_s, F/d, N·F/(u_s + N·u))`, nearly flat in N.

use std::time::Duration;

use servent_core::{Core, Input, Instant, Rng, Transmit};
use servent_sim::{
    Dist, NodeId, NodeOpts, Plot, Report, Scenario, ScenarioOpts, Series, Sim, SimConfig, SimError,
    Table,
};
use sha1::{Digest, Sha1};

use crate::client::{
    Client, ClientCommand, ClientConfig, ClientEvent, TrackerEndpoint, TrackerKind, make_peer_id,
};
use crate::metainfo::{Metainfo, MetainfoBuilder};
use crate::picker::Bitfield;
use crate::storage::{SyntheticStorage, synthetic_bytes};
use crate::tracker_server::{Tracker, TrackerCommand, TrackerConfig, TrackerEvent};

/// A simulated node: the tracker or a peer.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum SwarmNode {
    /// The tracker.
    Tracker(Tracker),
    /// A peer (seeder or leecher) on synthetic content.
    Peer(Client<SyntheticStorage>),
}

/// A command to a [`SwarmNode`].
#[derive(Debug, Clone)]
pub enum SwarmCommand {
    /// For the tracker.
    Tracker(TrackerCommand),
    /// For a peer.
    Peer(ClientCommand),
}

/// An event from a [`SwarmNode`].
#[derive(Debug, Clone)]
pub enum SwarmEvent {
    /// From the tracker.
    Tracker(TrackerEvent),
    /// From a peer.
    Peer(ClientEvent),
}

impl Core for SwarmNode {
    type Command = SwarmCommand;
    type Event = SwarmEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, SwarmCommand>) {
        match self {
            SwarmNode::Tracker(t) => {
                if let Some(i) = servent_core::harness::map_input(input, |c| match c {
                    SwarmCommand::Tracker(c) => Some(c),
                    SwarmCommand::Peer(_) => None,
                }) {
                    t.handle_input(now, i);
                }
            }
            SwarmNode::Peer(p) => {
                if let Some(i) = servent_core::harness::map_input(input, |c| match c {
                    SwarmCommand::Peer(c) => Some(c),
                    SwarmCommand::Tracker(_) => None,
                }) {
                    p.handle_input(now, i);
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            SwarmNode::Tracker(t) => t.handle_timeout(now),
            SwarmNode::Peer(p) => p.handle_timeout(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            SwarmNode::Tracker(t) => t.poll_transmit(),
            SwarmNode::Peer(p) => p.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<SwarmEvent> {
        match self {
            SwarmNode::Tracker(t) => t.poll_event().map(SwarmEvent::Tracker),
            SwarmNode::Peer(p) => p.poll_event().map(SwarmEvent::Peer),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            SwarmNode::Tracker(t) => t.poll_timeout(),
            SwarmNode::Peer(p) => p.poll_timeout(),
        }
    }
}

/// A torrent over synthetic content (seeded by `content_seed`), with real piece hashes.
pub fn synthetic_torrent(
    content_seed: u64,
    len: u64,
    piece_length: u64,
    tracker: &str,
) -> Metainfo {
    let mut hashes = Vec::new();
    let mut buf = vec![0u8; piece_length as usize];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(piece_length) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        synthetic_bytes(content_seed, off, chunk);
        hashes.push(Sha1::digest(&*chunk).into());
        off += n as u64;
    }
    let b = MetainfoBuilder {
        name: "image.bin".into(),
        files: vec![(Vec::new(), len)],
        piece_length,
        trackers: vec![vec![tracker.to_string()]],
        ..Default::default()
    };
    match b.build(&hashes) {
        Ok((_, m)) => m,
        Err(e) => panic!("a synthetic torrent is always valid: {e}"),
    }
}

/// Parameters of one swarm run.
#[derive(Clone, Debug)]
pub struct SwarmParams {
    /// Leechers.
    pub leechers: usize,
    /// Content size F in bytes.
    pub content: u64,
    /// Piece length.
    pub piece_length: u64,
    /// Seeder upload u_s, bytes per second.
    pub seeder_up: u64,
    /// Leecher upload u.
    pub leecher_up: u64,
    /// Leecher download d.
    pub leecher_down: u64,
    /// Seed of the run.
    pub seed: u64,
    /// Give up after this much simulated time.
    pub limit: Duration,
    /// Leechers that send garbage for every block they upload (to test banning).
    pub liars: usize,
    /// The seeder super-seeds ([`crate::client::ClientConfig::super_seed`]).
    pub super_seed: bool,
}

/// What one swarm run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmRun {
    /// Completion time of each leecher that completed, seconds.
    pub completions: Vec<f64>,
    /// Leechers.
    pub leechers: usize,
    /// Bytes the seeder uploaded.
    pub seeder_uploaded: u64,
    /// Every completed leecher's content hashes to the torrent's pieces (re-checked at the end).
    pub all_verified: bool,
    /// Pieces that failed verification anywhere.
    pub failed_pieces: u64,
    /// Peers banned anywhere.
    pub bans: u64,
    /// Hash of the simulator's trace.
    pub trace_hash: u64,
    /// The fluid lower bound, seconds.
    pub bound: f64,
    /// Client–server time N·F/u_s, seconds.
    pub client_server: f64,
}

impl SwarmRun {
    /// The last completion, seconds (infinite when someone did not finish).
    pub fn last(&self) -> f64 {
        if self.completions.len() < self.leechers {
            return f64::INFINITY;
        }
        self.completions.iter().copied().fold(0.0, f64::max)
    }
}

/// The fluid lower bound `max(F/u_s, F/d, N·F/(u_s + N·u))` in seconds.
pub fn fluid_bound(n: usize, f: u64, us: u64, u: u64, d: u64) -> f64 {
    let (n, f, us, u, d) = (n as f64, f as f64, us as f64, u as f64, d as f64);
    (f / us).max(f / d).max(n * f / (us + n * u))
}

/// Runs one swarm: a tracker, one seeder, `leechers` leechers joining in the first second.
pub fn run_swarm(p: &SwarmParams) -> SwarmRun {
    let mut sim: Sim<SwarmNode> = Sim::new(SimConfig {
        seed: p.seed,
        latency_ms: Dist::lognormal_median(20.0, 0.4),
        trace: true,
        ..SimConfig::default()
    });
    let mut rng = Rng::new(p.seed).fork(77);
    let tracker = sim.add_node(
        SwarmNode::Tracker(Tracker::new(
            TrackerConfig {
                interval: Duration::from_secs(120),
                ..TrackerConfig::default()
            },
            rng.fork(1),
        )),
        NodeOpts {
            port: 6969,
            ..NodeOpts::default()
        },
    );
    let taddr = sim.addr(tracker);
    let url = format!("http://{taddr}/announce");
    let meta = synthetic_torrent(p.seed, p.content, p.piece_length, &url);
    let endpoint = TrackerEndpoint {
        url: url.clone(),
        addr: taddr,
        kind: TrackerKind::Http {
            host: taddr.to_string(),
            path: "/announce".into(),
        },
    };
    let n_pieces = meta.piece_count() as u32;
    let mk = |rng: &mut Rng, complete: bool, liar: bool| {
        let mut cfg = ClientConfig::new(make_peer_id(rng), 6881);
        cfg.trackers = vec![vec![endpoint.clone()]];
        cfg.super_seed = complete && !liar && p.super_seed;
        let have = if complete {
            Bitfield::full(n_pieces)
        } else {
            Bitfield::new(n_pieces)
        };
        // A liar's storage stands for different content: everything it uploads is wrong.
        let content_seed = if liar { p.seed ^ 0xBAD } else { p.seed };
        let have = if liar { Bitfield::full(n_pieces) } else { have };
        SwarmNode::Peer(Client::new(
            cfg,
            &meta,
            SyntheticStorage::new(content_seed, p.content),
            have,
            rng.fork(9),
        ))
    };
    let seeder = sim.add_node(
        mk(&mut rng, true, false),
        NodeOpts {
            up_bps: Some(p.seeder_up),
            down_bps: Some(p.seeder_up.max(p.leecher_down)),
            port: 6881,
            ..NodeOpts::default()
        },
    );
    let mut leechers: Vec<NodeId> = Vec::new();
    for i in 0..p.leechers + p.liars {
        let liar = i >= p.leechers;
        let n = sim.add_node(
            mk(&mut rng, false, liar),
            NodeOpts {
                up_bps: Some(p.leecher_up),
                down_bps: Some(p.leecher_down),
                port: 6881,
                ..NodeOpts::default()
            },
        );
        if !liar {
            leechers.push(n);
        }
    }
    // Start each node (its first timer announces) at a random moment in the first second.
    let everyone: Vec<NodeId> = std::iter::once(seeder)
        .chain((0..p.leechers + p.liars).map(|i| NodeId(seeder.0 + 1 + i as u32)))
        .collect();
    for n in everyone {
        let at = Instant::from_micros(sim.rng().below(1_000_000));
        sim.command_at(at, n, SwarmCommand::Peer(ClientCommand::Stats { id: 0 }));
    }
    let mut completions = Vec::new();
    let mut failed = 0;
    let mut bans = 0;
    let limit = Instant::ZERO + p.limit;
    let mut step = Instant::ZERO;
    while step < limit {
        step += Duration::from_millis(500);
        sim.run_until(step);
        for (t, node, e) in sim.take_events() {
            match e {
                SwarmEvent::Peer(ClientEvent::Completed) if leechers.contains(&node) => {
                    completions.push(t.as_secs_f64());
                }
                SwarmEvent::Peer(ClientEvent::PieceFailed { .. }) => failed += 1,
                SwarmEvent::Peer(ClientEvent::PeerBanned { .. }) => bans += 1,
                _ => {}
            }
        }
        if completions.len() >= p.leechers {
            break;
        }
    }
    let mut all_verified = true;
    for n in &leechers {
        if let Some(SwarmNode::Peer(c)) = sim.core_mut(*n) {
            if c.is_complete() {
                let mut s = c.storage().clone();
                let ok = crate::storage::recheck(&meta, &mut s)
                    .map(|g| g.iter().all(|x| *x))
                    .unwrap_or(false);
                all_verified &= ok;
            }
        }
    }
    let seeder_uploaded = match sim.core(seeder) {
        Some(SwarmNode::Peer(c)) => c.stats().uploaded,
        _ => 0,
    };
    SwarmRun {
        completions,
        leechers: p.leechers,
        seeder_uploaded,
        all_verified,
        failed_pieces: failed,
        bans,
        trace_hash: sim.trace_hash(),
        bound: fluid_bound(
            p.leechers,
            p.content,
            p.seeder_up,
            p.leecher_up,
            p.leecher_down,
        ),
        client_server: p.leechers as f64 * p.content as f64 / p.seeder_up as f64,
    }
}

/// `bittorrent-swarm`: completion time against N, with the fluid bound and client–server.
#[derive(Debug, Clone, Copy)]
pub struct SwarmScenario;

impl Scenario for SwarmScenario {
    fn name(&self) -> &'static str {
        "bittorrent-swarm"
    }

    fn about(&self) -> &'static str {
        "1 seeder, N leechers (N = 10.. --nodes, default 300): last completion vs the fluid bound and client-server N*F/u_s"
    }

    fn params(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "super_seed",
            "on/off: the seeder super-seeds (BEP 16), revealing pieces one at a time (default off)",
        )]
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        opts.check_params(self.params())?;
        let super_seed = opts.param_bool("super_seed", false)?;
        let max_n = opts.nodes.unwrap_or(300);
        if max_n < 1 {
            return Err(SimError::BadParams("--nodes must be at least 1".into()));
        }
        let mut ns: Vec<usize> = [10usize, 30, 100, 300, 1000, 3000, 10_000]
            .into_iter()
            .filter(|n| *n <= max_n)
            .collect();
        if ns.last() != Some(&max_n) {
            ns.push(max_n);
        }
        let mut table = Table::new(
            "bittorrent_swarm",
            &[
                "n",
                "last_completion_s",
                "median_completion_s",
                "fluid_bound_s",
                "ratio_to_bound",
                "client_server_s",
                "seeder_copies",
                "all_verified",
            ],
        );
        let mut bt = Vec::new();
        let mut bound = Vec::new();
        let mut cs = Vec::new();
        let mut report = Report::new(self.name());
        let mut worst_ratio: f64 = 0.0;
        let mut worst_copies: f64 = 0.0;
        for &n in &ns {
            let p = SwarmParams {
                leechers: n,
                content: 8 << 20,
                piece_length: 256 << 10,
                seeder_up: 1_000_000,
                leecher_up: 250_000,
                leecher_down: 1_000_000,
                seed: opts.seed,
                limit: Duration::from_secs(3600),
                liars: 0,
                super_seed,
            };
            let r = run_swarm(&p);
            let mut sorted = r.completions.clone();
            sorted.sort_by(f64::total_cmp);
            let median = servent_sim::percentile(&sorted, 50.0);
            let copies = r.seeder_uploaded as f64 / p.content as f64;
            let last = r.last();
            let ratio = last / r.bound;
            worst_ratio = worst_ratio.max(ratio);
            worst_copies = worst_copies.max(copies);
            table.push_text(vec![
                n.to_string(),
                format!("{last:.2}"),
                format!("{median:.2}"),
                format!("{:.2}", r.bound),
                format!("{ratio:.3}"),
                format!("{:.1}", r.client_server),
                format!("{copies:.3}"),
                r.all_verified.to_string(),
            ]);
            report.line(format!(
                "N={n}: last completion {last:.1}s (fluid bound {:.1}s, {ratio:.2}x; client-server {:.0}s); seeder sent {copies:.2} copies; all verified: {}",
                r.bound, r.client_server, r.all_verified
            ));
            bt.push((n as f64, last));
            bound.push((n as f64, r.bound));
            cs.push((n as f64, r.client_server));
            if !r.all_verified || !last.is_finite() {
                return Err(SimError::Failed(format!(
                    "N={n}: {} of {n} leechers completed, verified={}",
                    r.completions.len(),
                    r.all_verified
                )));
            }
        }
        report.tables.push(table);
        report.plots.push(Plot {
            name: "bittorrent_swarm".into(),
            title: "Distributing 8 MiB: BitTorrent vs client-server".into(),
            x_label: "leechers N".into(),
            y_label: "time until the last copy (s)".into(),
            log_x: true,
            series: vec![
                Series {
                    name: "BitTorrent (servent)".into(),
                    points: bt,
                },
                Series {
                    name: "fluid lower bound".into(),
                    points: bound,
                },
                Series {
                    name: "client-server N*F/u_s".into(),
                    points: cs,
                },
            ],
        });
        report.kv("max_n", max_n);
        report.kv("worst_ratio_to_bound", format!("{worst_ratio:.3}"));
        report.kv("worst_seeder_copies", format!("{worst_copies:.3}"));
        Ok(report)
    }
}

/// The simulator scenarios of this crate.
pub fn scenarios() -> Vec<Box<dyn Scenario>> {
    vec![Box::new(SwarmScenario)]
}
