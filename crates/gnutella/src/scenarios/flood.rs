//! `servent sim run gnutella-flood`: the lecture's claim "the network gets flooded",
//! measured. Real [`Servent`] cores on a random graph (degree at most 5), one rare file
//! (0.1% of the nodes hold it) and one popular file (5%); queries from random nodes with TTL
//! 1..7, one at a time, so each query's cost is counted alone: success rate (at least one
//! hit), descriptors sent per query (Query and QueryHit, all nodes), and nodes reached.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{Instant, Rng};
use servent_sim::{
    Dist, NodeId, NodeOpts, Plot, Report, Scenario, ScenarioOpts, Series, Sim, SimConfig, SimError,
    Table,
};

use crate::core::library::SharedFile;
use crate::core::{Command, Config, Event, Servent};
use crate::wire::Guid;

/// Parameters of one flood run.
#[derive(Clone, Debug)]
pub struct FloodParams {
    /// Servents.
    pub nodes: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Most connections per servent.
    pub max_degree: usize,
    /// Each servent tries to reach at least this many connections.
    pub min_degree: usize,
    /// Fraction of servents holding the rare file.
    pub rare: f64,
    /// Fraction of servents holding the popular file.
    pub popular: f64,
    /// Queries per (TTL, file) point.
    pub queries: usize,
    /// Highest TTL measured (from 1).
    pub max_ttl: u8,
}

impl FloodParams {
    /// The scenario's defaults for `nodes` servents.
    pub fn new(nodes: usize, seed: u64) -> FloodParams {
        FloodParams {
            nodes,
            seed,
            max_degree: 5,
            min_degree: 3,
            rare: 0.001,
            popular: 0.05,
            queries: 50,
            max_ttl: 7,
        }
    }
}

/// Figures for one (TTL, file) point.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodPoint {
    /// TTL of the queries.
    pub ttl: u8,
    /// `rare` or `popular`.
    pub file: &'static str,
    /// Queries sent.
    pub queries: usize,
    /// Queries with at least one hit.
    pub successes: usize,
    /// Descriptors sent by all servents, summed over the queries.
    pub msgs: u64,
    /// Servents that received each query, summed.
    pub reached: u64,
    /// Hits received, summed.
    pub hits: u64,
    /// Hops of all hits, summed (for the mean).
    pub hit_hops: u64,
    /// Descriptors sent plus received by the busiest servent over the point's queries.
    pub busiest: u64,
}

impl FloodPoint {
    /// Share of queries with a hit.
    pub fn success_rate(&self) -> f64 {
        self.successes as f64 / self.queries.max(1) as f64
    }
    /// Descriptors per query.
    pub fn msgs_per_query(&self) -> f64 {
        self.msgs as f64 / self.queries.max(1) as f64
    }
    /// Servents reached per query.
    pub fn reached_per_query(&self) -> f64 {
        self.reached as f64 / self.queries.max(1) as f64
    }
    /// Mean hops of the hits (0 without hits).
    pub fn mean_hops(&self) -> f64 {
        if self.hits == 0 {
            0.0
        } else {
            self.hit_hops as f64 / self.hits as f64
        }
    }
    /// Descriptors the busiest servent handled per query.
    pub fn busiest_per_query(&self) -> f64 {
        self.busiest as f64 / self.queries.max(1) as f64
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct FloodRun {
    /// Servents.
    pub nodes: usize,
    /// Edges of the graph.
    pub edges: usize,
    /// Connections whose handshake completed (both ends count once).
    pub edges_up: usize,
    /// Holders of the rare and the popular file.
    pub holders: (usize, usize),
    /// One entry per (TTL, file).
    pub points: Vec<FloodPoint>,
    /// Engine events.
    pub events: u64,
    /// Hash of the run's trace (equal for equal seeds).
    pub trace_hash: u64,
}

impl FloodRun {
    /// The point for `ttl` and `file`.
    pub fn point(&self, ttl: u8, file: &str) -> Option<&FloodPoint> {
        self.points.iter().find(|p| p.ttl == ttl && p.file == file)
    }
}

pub(crate) const PORT: u16 = 6346;
pub(crate) const RARE: &str = "rare - debaser demo.mp3";
pub(crate) const POPULAR: &str = "popular - hit single.mp3";
/// The queries for the two files.
pub(crate) const FILES: [(&str, &str); 2] = [("rare", "debaser demo"), ("popular", "hit single")];

/// The population both Gnutella scenarios share for a seed: which servents hold the rare
/// and the popular file, drawn from a stream of its own (independent of the topology).
pub fn population(seed: u64, nodes: usize, rare: f64, popular: f64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed).fork(0x706f_7075);
    let k_rare = ((nodes as f64 * rare).round() as usize).max(1);
    let k_pop = ((nodes as f64 * popular).round() as usize).max(1);
    let rare_holders = pick_distinct(&mut rng, nodes, k_rare);
    let pop_holders = pick_distinct(&mut rng, nodes, k_pop);
    (rare_holders, pop_holders)
}

/// The servents that send the `queries` queries for a file (none holds it), the same for
/// every TTL and in both Gnutella scenarios for a seed.
pub fn query_origins(
    seed: u64,
    nodes: usize,
    holders: &[usize],
    queries: usize,
    salt: u64,
) -> Vec<usize> {
    let mut rng = Rng::new(seed).fork(0x7175_6572 ^ salt);
    (0..queries)
        .map(|_| {
            loop {
                let o = rng.below(nodes as u64) as usize;
                if !holders.contains(&o) || holders.len() >= nodes {
                    break o;
                }
            }
        })
        .collect()
}

/// Per-servent message counters summed (sent + received descriptors, QRP excluded).
pub(crate) fn load_of(s: &crate::core::Stats) -> u64 {
    s.tx.iter().sum::<u64>() + s.rx.iter().sum::<u64>()
}

fn pick_distinct(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut all);
    all.truncate(k.min(n));
    all
}

/// A random graph: every node gets at least `min` edges where possible, none more than
/// `max`.
pub fn random_graph(rng: &mut Rng, n: usize, min: usize, max: usize) -> Vec<(usize, usize)> {
    let mut deg = vec![0usize; n];
    let mut set = BTreeSet::new();
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    for &i in &order {
        let mut tries = 0;
        while deg[i] < min && tries < 64 && n > 1 {
            tries += 1;
            let j = rng.below(n as u64) as usize;
            let key = (i.min(j), i.max(j));
            if j == i || deg[j] >= max || set.contains(&key) {
                continue;
            }
            set.insert(key);
            deg[i] += 1;
            deg[j] += 1;
        }
    }
    set.into_iter().collect()
}

/// Runs the flood measurement.
pub fn run(p: &FloodParams) -> Result<FloodRun, SimError> {
    if p.nodes < 2 {
        return Err(SimError::BadParams(
            "gnutella-flood needs 2 nodes or more".into(),
        ));
    }
    let mut sim: Sim<Servent> = Sim::new(SimConfig {
        seed: p.seed,
        latency_ms: Dist::lognormal_median(40.0, 0.5),
        trace: true,
        ..SimConfig::default()
    });
    let mut rng = Rng::new(p.seed).fork(0x676e_7574);
    for i in 0..p.nodes {
        let ip = Ipv4Addr::from(0x7f00_0001 + i as u32);
        let mut cfg = Config::new(Guid::random(&mut rng), SocketAddrV4::new(ip, PORT));
        cfg.max_conns = p.max_degree;
        cfg.want_conns = 0;
        cfg.ping_ttl = 0;
        cfg.max_ttl = p.max_ttl.max(1);
        cfg.tick = Duration::from_secs(60);
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
    let edges = random_graph(&mut rng, p.nodes, p.min_degree, p.max_degree);
    for (k, &(a, b)) in edges.iter().enumerate() {
        let at = Instant::from_micros(rng.below(1_000_000));
        let addr = sim.addr(node(b));
        sim.command_at(at, node(a), Command::Connect { id: k as u64, addr });
    }
    sim.run_for(Duration::from_secs(15));
    let edges_up = sim
        .take_events()
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::PeerUp { cmd: Some(_), .. }))
        .count();

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
    sim.run_for(Duration::from_millis(10));
    sim.take_events();

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
    let mut points = Vec::new();
    let mut search_id = 0u64;
    let mut load = vec![0u64; p.nodes];
    let loads = |sim: &Sim<Servent>, out: &mut Vec<u64>| {
        for (i, l) in out.iter_mut().enumerate() {
            *l = sim.core(node(i)).map_or(0, |c| load_of(c.stats()));
        }
    };
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
    Ok(FloodRun {
        nodes: p.nodes,
        edges: edges.len(),
        edges_up,
        holders: (rare_holders.len(), pop_holders.len()),
        points,
        events: sim.stats().events,
        trace_hash: sim.trace_hash(),
    })
}

/// The `gnutella-flood` scenario (default 10 000 servents).
#[derive(Debug, Clone, Copy)]
pub struct FloodScenario;

impl Scenario for FloodScenario {
    fn name(&self) -> &'static str {
        "gnutella-flood"
    }

    fn about(&self) -> &'static str {
        "Gnutella 0.4 flooding on 10 000 servents (degree <= 5): success, messages per query and reach vs TTL 1..7 for a rare and a popular file"
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        opts.check_params(self.params())?;
        let params = FloodParams::new(opts.nodes.unwrap_or(10_000), opts.seed);
        #[allow(clippy::disallowed_methods)] // wall time of the whole run, outside the cores
        let t0 = std::time::Instant::now();
        let r = run(&params)?;
        let wall = t0.elapsed().as_secs_f64();
        let mut rep = Report::new(self.name());
        rep.line(format!(
            "{} servents, {} edges ({} up), degree <= {}; rare file on {} servents, popular on {}; {} queries per point",
            r.nodes, r.edges, r.edges_up, params.max_degree, r.holders.0, r.holders.1, params.queries
        ));
        let run = ScenarioRun {
            points: &r.points,
            nodes: r.nodes,
            events: r.events,
            trace_hash: r.trace_hash,
            wall,
        };
        report_points(&mut rep, &run, ("gnutella-flood", ""), params.max_ttl, true);
        Ok(rep)
    }
}

/// What both Gnutella scenarios report from their measured points.
pub(crate) struct ScenarioRun<'a> {
    pub(crate) points: &'a [FloodPoint],
    pub(crate) nodes: usize,
    pub(crate) events: u64,
    pub(crate) trace_hash: u64,
    /// Wall-clock seconds the run took.
    pub(crate) wall: f64,
}

/// The per-TTL table, lines, plots and headline keys of `gnutella-flood` and
/// `gnutella-hybrid`: one function, so both end with the same keys. `name` is the scenario's
/// (table and plot names); `note` is appended to plot titles; `headline_ttl` picks the
/// point the headline reports; `reach` adds the servents-reached plot.
pub(crate) fn report_points(
    rep: &mut Report,
    run: &ScenarioRun<'_>,
    (name, note): (&str, &str),
    headline_ttl: u8,
    reach_plot: bool,
) {
    let mut table = Table::new(
        name,
        &[
            "ttl",
            "file",
            "queries",
            "success_rate",
            "msgs_per_query",
            "nodes_reached",
            "hits_per_query",
            "mean_hit_hops",
            "busiest_node_msgs_per_query",
        ],
    );
    let mut success = vec![Vec::new(), Vec::new()];
    let mut msgs = vec![Vec::new(), Vec::new()];
    let mut reach = vec![Vec::new(), Vec::new()];
    for pt in run.points {
        let k = usize::from(pt.file == "popular");
        let x = f64::from(pt.ttl);
        success[k].push((x, pt.success_rate()));
        msgs[k].push((x, pt.msgs_per_query()));
        reach[k].push((x, pt.reached_per_query()));
        let hits_per_query = pt.hits as f64 / pt.queries.max(1) as f64;
        table.push_text(vec![
            pt.ttl.to_string(),
            pt.file.to_string(),
            pt.queries.to_string(),
            format!("{:.3}", pt.success_rate()),
            format!("{:.1}", pt.msgs_per_query()),
            format!("{:.1}", pt.reached_per_query()),
            format!("{hits_per_query:.2}"),
            format!("{:.2}", pt.mean_hops()),
            format!("{:.1}", pt.busiest_per_query()),
        ]);
        rep.line(format!(
            "ttl={} file={:<7} success={:.2} msgs/query={:>9.1} reached={:>8.1} hits/query={:.2} mean_hops={:.2} busiest={:.1}",
            pt.ttl,
            pt.file,
            pt.success_rate(),
            pt.msgs_per_query(),
            pt.reached_per_query(),
            hits_per_query,
            pt.mean_hops(),
            pt.busiest_per_query()
        ));
    }
    rep.tables.push(table);
    let series = |v: &[Vec<(f64, f64)>]| {
        vec![
            Series {
                name: "rare (0.1%)".into(),
                points: v[0].clone(),
            },
            Series {
                name: "popular (5%)".into(),
                points: v[1].clone(),
            },
        ]
    };
    let mut plots = vec![
        ("success", "Query success vs TTL", "success rate", &success),
        (
            "msgs",
            "Messages per query vs TTL",
            "descriptors sent",
            &msgs,
        ),
    ];
    if reach_plot {
        plots.push(("reach", "Servents reached vs TTL", "servents", &reach));
    }
    for (suffix, title, y, data) in plots {
        rep.plots.push(Plot {
            name: format!("{name}-{suffix}"),
            title: format!("{title}{note}"),
            x_label: "TTL".into(),
            y_label: y.into(),
            log_x: false,
            series: series(data),
        });
    }
    rep.line(format!(
        "{} engine events in {:.1} s wall ({:.0} events/s); trace hash {:016x}",
        run.events,
        run.wall,
        run.events as f64 / run.wall.max(1e-9),
        run.trace_hash
    ));
    let point = |file: &str| {
        run.points
            .iter()
            .find(|p| p.ttl == headline_ttl && p.file == file)
    };
    let rare = point("rare");
    rep.kv("nodes", run.nodes);
    rep.kv("ttl", headline_ttl);
    rep.kv(
        "success",
        format!("{:.3}", rare.map_or(0.0, FloodPoint::success_rate)),
    );
    rep.kv(
        "msgs_per_query",
        format!("{:.0}", rare.map_or(0.0, FloodPoint::msgs_per_query)),
    );
    rep.kv(
        "reached",
        format!("{:.0}", rare.map_or(0.0, FloodPoint::reached_per_query)),
    );
    rep.kv(
        "mean_hops",
        format!("{:.2}", rare.map_or(0.0, FloodPoint::mean_hops)),
    );
    rep.kv(
        "busiest",
        format!("{:.1}", rare.map_or(0.0, FloodPoint::busiest_per_query)),
    );
    rep.kv(
        "popular_success",
        format!(
            "{:.3}",
            point("popular").map_or(0.0, FloodPoint::success_rate)
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_respects_the_degree_bound() {
        let mut rng = Rng::new(3);
        let e = random_graph(&mut rng, 500, 3, 5);
        let mut deg = vec![0; 500];
        for (a, b) in &e {
            assert_ne!(a, b);
            deg[*a] += 1;
            deg[*b] += 1;
        }
        assert!(deg.iter().all(|&d| d <= 5));
        assert!(deg.iter().filter(|&&d| d >= 3).count() > 490);
    }

    #[test]
    fn small_flood_reaches_more_with_higher_ttl_and_is_deterministic() {
        let mut p = FloodParams::new(300, 11);
        p.queries = 4;
        p.max_ttl = 4;
        p.popular = 0.1;
        let r = run(&p).unwrap();
        assert_eq!(r.edges_up, r.edges);
        let reach: Vec<f64> = (1..=4)
            .map(|t| r.point(t, "popular").unwrap().reached_per_query())
            .collect();
        // TTL 1 reaches exactly the querier's neighbours (3..=5 of them).
        assert!((3.0..=5.0).contains(&reach[0]), "{reach:?}");
        assert!(reach.windows(2).all(|w| w[1] > w[0]), "{reach:?}");
        let pop = r.point(4, "popular").unwrap();
        assert_eq!(pop.success_rate(), 1.0);
        assert!(pop.msgs_per_query() > r.point(1, "popular").unwrap().msgs_per_query());
        let again = run(&p).unwrap();
        assert_eq!(again.trace_hash, r.trace_hash);
        assert_eq!(again.points, r.points);
    }
}
