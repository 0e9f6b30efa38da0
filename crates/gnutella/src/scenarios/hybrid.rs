//! `servent sim run gnutella-hybrid`: the lecture's hybrid P2P (Gnutella 0.6 ultrapeers and
//! leaves with the Query Routing Protocol) against `gnutella-flood` on the same population
//! (the same servents hold the rare and the popular file) and the same queries (the same
//! servents ask, for every TTL). Real [`Servent`] cores: a share of the servents are
//! ultrapeers in a random mesh, every other one is a leaf of a few ultrapeers and sends them
//! its QRP table; queries go TTL 1..mesh TTL. Figures per (TTL, file): success rate,
//! descriptors per query (Query and QueryHit sent by all servents; QRP table traffic is
//! counted apart, as a one-time cost), mean hops of the hits, and the busiest servent's
//! load.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{Instant, Rng};
use servent_sim::{
    Dist, NodeId, NodeOpts, Report, Scenario, ScenarioOpts, Sim, SimConfig, SimError,
};

use crate::core::library::SharedFile;
use crate::core::{Command, Config, Event, Role, Servent};
use crate::scenarios::flood::{
    FILES, FloodPoint, POPULAR, PORT, RARE, ScenarioRun, load_of, population, query_origins,
    random_graph, report_points,
};
use crate::wire::Guid;

/// Parameters of one hybrid run.
#[derive(Clone, Debug)]
pub struct HybridParams {
    /// Servents.
    pub nodes: usize,
    /// Seed of the run (the same seed gives `gnutella-flood` the same population and queries).
    pub seed: u64,
    /// Share of the servents that are ultrapeers.
    pub ultrapeers: f64,
    /// Ultrapeer connections each leaf opens (at most its slots, 3).
    pub leaf_conns: usize,
    /// Mesh degree: every ultrapeer gets at least `mesh_min` ultrapeer neighbours, none more
    /// than `mesh_max` (at most the 16 slots).
    pub mesh_min: usize,
    /// See `mesh_min`.
    pub mesh_max: usize,
    /// Fraction of servents holding the rare file (as gnutella-flood).
    pub rare: f64,
    /// Fraction holding the popular file.
    pub popular: f64,
    /// Queries per (TTL, file) point.
    pub queries: usize,
    /// Highest TTL measured (from 1), the mesh TTL.
    pub max_ttl: u8,
    /// The TTL whose figures are the headline.
    pub headline_ttl: u8,
    /// QRP table slots (smaller than the 65 536 default, to keep 10^4 servents in memory).
    pub qrp_slots: u32,
    /// Ultrapeers run dynamic queries (the default; off: one copy per connection at the
    /// query's TTL, the reference).
    pub dynamic_query: bool,
    /// Dynamic querying's wait per TTL hop (the simulated mesh's round trips are ~80 ms
    /// per hop, so 250 ms here stands for LimeWire's 2.4 s on the real network).
    pub dq_hop_wait: Duration,
    /// Dynamic querying's lifetime, shorter than the 10 s each query is given so its
    /// messages are counted for it.
    pub dq_lifetime: Duration,
}

impl HybridParams {
    /// The scenario's defaults for `nodes` servents.
    pub fn new(nodes: usize, seed: u64) -> HybridParams {
        HybridParams {
            nodes,
            seed,
            ultrapeers: 0.16,
            leaf_conns: 3,
            mesh_min: 10,
            mesh_max: 16,
            rare: 0.001,
            popular: 0.05,
            queries: 50,
            max_ttl: 4,
            headline_ttl: 3,
            qrp_slots: 1 << 13,
            dynamic_query: true,
            dq_hop_wait: Duration::from_millis(250),
            dq_lifetime: Duration::from_secs(8),
        }
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct HybridRun {
    /// Servents.
    pub nodes: usize,
    /// Ultrapeers.
    pub ultrapeers: usize,
    /// Mesh edges (ultrapeer to ultrapeer).
    pub mesh_edges: usize,
    /// Leaf connections asked for.
    pub leaf_edges: usize,
    /// Connections whose handshake completed (both ends count once).
    pub edges_up: usize,
    /// Holders of the rare and the popular file.
    pub holders: (usize, usize),
    /// ROUTE_TABLE_UPDATE messages sent while the network formed.
    pub qrp_msgs: u64,
    /// One entry per (TTL, file), figures as in gnutella-flood.
    pub points: Vec<FloodPoint>,
    /// Engine events.
    pub events: u64,
    /// Hash of the run's trace (equal for equal seeds).
    pub trace_hash: u64,
}

impl HybridRun {
    /// The point for `ttl` and `file`.
    pub fn point(&self, ttl: u8, file: &str) -> Option<&FloodPoint> {
        self.points.iter().find(|p| p.ttl == ttl && p.file == file)
    }
}

/// Runs the hybrid measurement.
pub fn run(p: &HybridParams) -> Result<HybridRun, SimError> {
    let n_up = ((p.nodes as f64 * p.ultrapeers).round() as usize).clamp(1, p.nodes);
    if p.nodes < 2 || n_up >= p.nodes {
        return Err(SimError::BadParams(
            "gnutella-hybrid needs 2 servents or more and at least one leaf".into(),
        ));
    }
    let mut sim: Sim<Servent> = Sim::new(SimConfig {
        seed: p.seed,
        latency_ms: Dist::lognormal_median(40.0, 0.5),
        trace: true,
        ..SimConfig::default()
    });
    let mut rng = Rng::new(p.seed).fork(0x6879_6272);
    // Which servents are ultrapeers: a random set, from the topology's own stream.
    let mut order: Vec<usize> = (0..p.nodes).collect();
    rng.shuffle(&mut order);
    let mut is_up = vec![false; p.nodes];
    for &i in order.iter().take(n_up) {
        is_up[i] = true;
    }
    let ups: Vec<usize> = (0..p.nodes).filter(|i| is_up[*i]).collect();
    for (i, &up) in is_up.iter().enumerate() {
        let ip = Ipv4Addr::from(0x7f00_0001 + i as u32);
        let mut cfg = Config::new(Guid::random(&mut rng), SocketAddrV4::new(ip, PORT));
        cfg.role = if up { Role::Ultrapeer } else { Role::Leaf };
        cfg.want_conns = 0;
        cfg.ping_ttl = 0;
        cfg.max_ttl = p.max_ttl.max(1);
        cfg.mesh_ttl = p.max_ttl.max(1);
        cfg.qrp_slots = p.qrp_slots;
        cfg.tick = Duration::from_secs(5);
        cfg.leaf_ultrapeers = p.leaf_conns.max(1);
        cfg.dynamic_query = p.dynamic_query;
        cfg.dq_hop_wait = p.dq_hop_wait;
        cfg.dq_lifetime = p.dq_lifetime;
        // The simulation counts messages, not bytes: no deflate (a zlib state per
        // connection end would cost gigabytes at 10^4 servents).
        cfg.deflate = false;
        let id = sim.add_node(
            Servent::new(cfg, rng.fork(i as u64)),
            NodeOpts {
                port: PORT,
                ..NodeOpts::default()
            },
        );
        if sim.addr(id) != SocketAddr::V4(SocketAddrV4::new(ip, PORT)) {
            return Err(SimError::Failed(
                "simulator addresses differ from the advertised ones".into(),
            ));
        }
    }
    let node = |i: usize| NodeId(i as u32);

    // Shares first, so each leaf's table goes out with its handshake.
    let (rare_holders, pop_holders) = population(p.seed, p.nodes, p.rare, p.popular);
    let mut files: Vec<Vec<SharedFile>> = vec![Vec::new(); p.nodes];
    for &h in &rare_holders {
        files[h].push(SharedFile {
            index: 1,
            name: RARE.into(),
            size: 4_000_000,
            sha1: None,
        });
    }
    for &h in &pop_holders {
        files[h].push(SharedFile {
            index: 2,
            name: POPULAR.into(),
            size: 5_000_000,
            sha1: None,
        });
    }
    for (i, f) in files.into_iter().enumerate() {
        if !f.is_empty() {
            sim.command(node(i), Command::Share { id: 0, files: f });
        }
    }

    // The mesh, then every leaf to `leaf_conns` ultrapeers with a free slot.
    let mesh = random_graph(&mut rng, ups.len(), p.mesh_min, p.mesh_max.min(16));
    let mut k = 0u64;
    for &(a, b) in &mesh {
        let at = Instant::from_micros(rng.below(1_000_000));
        let addr = sim.addr(node(ups[b]));
        sim.command_at(at, node(ups[a]), Command::Connect { id: k, addr });
        k += 1;
    }
    let slots = Config::new(Guid([0; 16]), SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT)).up_leaves;
    let mut free = vec![slots; ups.len()];
    let mut leaf_edges = 0;
    for i in (0..p.nodes).filter(|i| !is_up[*i]) {
        let mut chosen: Vec<usize> = Vec::new();
        for _ in 0..64 {
            if chosen.len() >= p.leaf_conns {
                break;
            }
            let u = rng.below(ups.len() as u64) as usize;
            if free[u] == 0 || chosen.contains(&u) {
                continue;
            }
            free[u] -= 1;
            chosen.push(u);
        }
        for u in chosen {
            let at = Instant::from_micros(1_000_000 + rng.below(2_000_000));
            let addr = sim.addr(node(ups[u]));
            sim.command_at(at, node(i), Command::Connect { id: k, addr });
            k += 1;
            leaf_edges += 1;
        }
    }
    // Handshakes, leaf tables, then the ultrapeers' merged tables on their 5 s tick.
    sim.run_for(Duration::from_secs(20));
    let edges_up = sim
        .take_events()
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::PeerUp { cmd: Some(_), .. }))
        .count();
    let qrp_msgs: u64 = (0..p.nodes)
        .filter_map(|i| sim.core(node(i)))
        .map(|c| c.stats().qrp_tx)
        .sum();

    let totals = |sim: &Sim<Servent>| -> (u64, u64) {
        (0..p.nodes).fold((0, 0), |(m, r), i| match sim.core(node(i)) {
            Some(c) => (m + c.stats().tx_total(), r + c.stats().queries_seen),
            None => (m, r),
        })
    };
    let origins = [
        query_origins(p.seed, p.nodes, &rare_holders, p.queries, 0),
        query_origins(p.seed, p.nodes, &pop_holders, p.queries, 1),
    ];
    let mut load = vec![0u64; p.nodes];
    let loads = |sim: &Sim<Servent>, out: &mut Vec<u64>| {
        for (i, l) in out.iter_mut().enumerate() {
            *l = sim.core(node(i)).map_or(0, |c| load_of(c.stats()));
        }
    };
    let mut points = Vec::new();
    let mut search_id = 0u64;
    for ttl in 1..=p.max_ttl.max(1) {
        for (k, (file, query)) in FILES.into_iter().enumerate() {
            let mut pt = FloodPoint {
                ttl,
                file,
                queries: p.queries,
                successes: 0,
                msgs: 0,
                reached: 0,
                hits: 0,
                hit_hops: 0,
                busiest: 0,
            };
            loads(&sim, &mut load);
            let before = load.clone();
            for &origin in &origins[k] {
                search_id += 1;
                let (m0, r0) = totals(&sim);
                sim.command(
                    node(origin),
                    Command::Search {
                        id: search_id,
                        query: query.into(),
                        ttl: Some(ttl),
                    },
                );
                sim.run_for(Duration::from_secs(10));
                let (m1, r1) = totals(&sim);
                pt.msgs += m1 - m0;
                pt.reached += r1 - r0;
                let mut hit = false;
                for (_, n, e) in sim.take_events() {
                    if let Event::Hit { search, hit: h } = e {
                        if n == node(origin) && search == search_id {
                            hit = true;
                            pt.hits += 1;
                            pt.hit_hops += u64::from(h.hops);
                        }
                    }
                }
                pt.successes += usize::from(hit);
            }
            loads(&sim, &mut load);
            pt.busiest = load
                .iter()
                .zip(&before)
                .map(|(a, b)| a - b)
                .max()
                .unwrap_or(0);
            points.push(pt);
        }
    }
    Ok(HybridRun {
        nodes: p.nodes,
        ultrapeers: ups.len(),
        mesh_edges: mesh.len(),
        leaf_edges,
        edges_up,
        holders: (rare_holders.len(), pop_holders.len()),
        qrp_msgs,
        points,
        events: sim.stats().events,
        trace_hash: sim.trace_hash(),
    })
}

/// The `gnutella-hybrid` scenario (default 10 000 servents).
#[derive(Debug, Clone, Copy)]
pub struct HybridScenario;

impl Scenario for HybridScenario {
    fn name(&self) -> &'static str {
        "gnutella-hybrid"
    }

    fn about(&self) -> &'static str {
        "Gnutella 0.6 on 10 000 servents (16% ultrapeers, QRP): success, messages per query, hops and busiest-node load vs TTL 1..4, on gnutella-flood's population and queries"
    }

    fn params(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "dq",
            "dynamic querying by ultrapeers, on|off (default on; off: one copy per connection at the query's TTL, the reference)",
        )]
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        opts.check_params(self.params())?;
        let mut params = HybridParams::new(opts.nodes.unwrap_or(10_000), opts.seed);
        params.dynamic_query = opts.param_bool("dq", true)?;
        #[allow(clippy::disallowed_methods)] // wall time of the whole run, outside the cores
        let t0 = std::time::Instant::now();
        let r = run(&params)?;
        let wall = t0.elapsed().as_secs_f64();
        let mut rep = Report::new(self.name());
        rep.line(format!(
            "{} servents: {} ultrapeers (mesh degree {}..{}, {} edges), {} leaves with {} ultrapeers each ({} leaf links); {} connections up; rare file on {} servents, popular on {}; {} queries per point",
            r.nodes,
            r.ultrapeers,
            params.mesh_min,
            params.mesh_max,
            r.mesh_edges,
            r.nodes - r.ultrapeers,
            params.leaf_conns,
            r.leaf_edges,
            r.edges_up,
            r.holders.0,
            r.holders.1,
            params.queries
        ));
        rep.line(format!(
            "QRP tables while the network formed: {} ROUTE_TABLE_UPDATE messages ({:.2} per servent), not counted per query",
            r.qrp_msgs,
            r.qrp_msgs as f64 / r.nodes.max(1) as f64
        ));
        rep.line(if params.dynamic_query {
            format!(
                "dynamic querying: on (ultrapeers probe, then widen one connection per round, {} ms per TTL hop, {} s lifetime; leaf queries aim at {} results, own searches at {}; the TTL asked caps every copy)",
                params.dq_hop_wait.as_millis(),
                params.dq_lifetime.as_secs(),
                Config::new(Guid([0; 16]), SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT)).dq_leaf_results,
                Config::new(Guid([0; 16]), SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT)).dq_local_results,
            )
        } else {
            "dynamic querying: off (--param dq=off: one copy per connection at the query's TTL)".to_string()
        });
        let run = ScenarioRun {
            points: &r.points,
            nodes: r.nodes,
            events: r.events,
            trace_hash: r.trace_hash,
            wall,
        };
        report_points(
            &mut rep,
            &run,
            ("gnutella-hybrid", " (ultrapeers + QRP)"),
            params.headline_ttl,
            false,
        );
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests may use a temp dir
    use super::*;

    #[test]
    fn both_gnutella_scenarios_end_with_the_same_headline_keys() {
        let opts = ScenarioOpts {
            params: Default::default(),
            nodes: Some(100),
            seed: 5,
            out: std::env::temp_dir(),
        };
        let keys = |r: &Report| {
            r.headline
                .iter()
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        let f = crate::scenarios::flood::FloodScenario.run(&opts).unwrap();
        let h = HybridScenario.run(&opts).unwrap();
        assert_eq!(keys(&f), keys(&h));
        for k in ["success", "msgs_per_query", "mean_hops", "busiest"] {
            assert!(h.get(k).is_some() && f.get(k).is_some(), "{k}");
        }
        assert_eq!(h.plots.len(), 2);
    }

    #[test]
    fn dynamic_querying_is_a_scenario_param_and_unknown_params_are_refused() {
        let opts = |k: &str, v: &str| {
            ScenarioOpts::new(Some(100), 5, std::env::temp_dir()).with_param(k, v)
        };
        let off = HybridScenario.run(&opts("dq", "off")).unwrap();
        assert!(
            off.lines
                .iter()
                .any(|l| l.starts_with("dynamic querying: off")),
            "{:?}",
            off.lines
        );
        let on = HybridScenario.run(&opts("dq", "on")).unwrap();
        assert!(
            on.lines
                .iter()
                .any(|l| l.starts_with("dynamic querying: on")),
            "{:?}",
            on.lines
        );
        assert!(HybridScenario.run(&opts("dq", "maybe")).is_err());
        assert!(HybridScenario.run(&opts("ttl", "3")).is_err());
        assert!(
            crate::scenarios::flood::FloodScenario
                .run(&opts("dq", "off"))
                .is_err()
        );
    }

    #[test]
    fn small_hybrid_network_finds_files_with_few_messages_and_is_deterministic() {
        let mut p = HybridParams::new(600, 3);
        p.queries = 8;
        p.rare = 0.01;
        p.mesh_min = 4;
        p.mesh_max = 8;
        p.qrp_slots = 1 << 10;
        let a = run(&p).unwrap();
        let b = run(&p).unwrap();
        assert_eq!(a.trace_hash, b.trace_hash);
        assert!(a.qrp_msgs > 0);
        let rare = a.point(3, "rare").unwrap();
        assert!(rare.success_rate() >= 0.75, "{rare:?}");
        // Far fewer messages than servents: leaves that share nothing never see it.
        assert!(rare.msgs_per_query() < 150.0, "{rare:?}");
        assert!(rare.reached_per_query() < 120.0, "{rare:?}");
    }
}
