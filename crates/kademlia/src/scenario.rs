//! Simulator scenarios: the DHT at 10^3..10^5 nodes, with loss and churn.
//!
//! Network model: one-way latency log-normal with a 25 ms median (so a 50 ms median RTT),
//! optional datagram loss. Start: every node's routing table is filled as a converged
//! network would have it (for each bucket, up to k random nodes of the range it covers),
//! so that 10^5 nodes do not need 10^5 bootstraps before measuring. Churn: each node
//! leaves after an exponential session (mean chosen for the churn rate) and comes back
//! after an exponential downtime (mean 10 min) as a fresh node with a new id that joins
//! by a real bootstrap through a random live node; the others learn about its departure
//! only through timeouts.
//!
//! Workload: find_node for random targets from random live nodes, and announce/get_peers
//! pairs. A find_node succeeds when the closest node it returns is at least as close to
//! the target as the closest node that is alive and has been up for two minutes (a node
//! that joined seconds ago may not be known yet; finding it anyway also counts). A
//! get_peers succeeds when it finds the peer announced for that info-hash.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::Duration;

use servent_core::{Id, Instant, Rng};
use servent_sim::{
    Dist, NodeId, NodeOpts, Plot, Report, Scenario, ScenarioOpts, Series, Sim, SimConfig, SimError,
    Table, percentile,
};

use crate::krpc::NodeInfo;
use crate::node::{Command, Config, Dht, Event};

/// Parameters of one measured run.
#[derive(Clone, Debug)]
pub struct LookupRun {
    /// Nodes.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Datagram loss probability.
    pub loss: f64,
    /// One-way latency in ms.
    pub latency_ms: Dist,
    /// Fraction of nodes leaving per hour (0 for none).
    pub churn_per_hour: f64,
    /// find_node lookups.
    pub lookups: usize,
    /// info-hashes announced (each is then looked up with get_peers).
    pub announces: usize,
    /// Time over which lookups are spread.
    pub window: Duration,
    /// The nodes' settings.
    pub config: Config,
}

impl LookupRun {
    /// Defaults for `nodes` nodes: 50 ms median RTT, no loss, 20 % churn per hour.
    pub fn new(nodes: usize, seed: u64) -> LookupRun {
        LookupRun {
            nodes,
            seed,
            loss: 0.0,
            latency_ms: Dist::lognormal_median(25.0, 0.6),
            churn_per_hour: 0.2,
            lookups: 1000,
            announces: 100,
            window: Duration::from_secs(600),
            config: Config::default(),
        }
    }
}

/// The `--param` keys of the `kademlia` scenario.
pub const PARAMS: &[(&str, &str)] = &[
    ("loss", "datagram loss probability, 0..1 (default 0)"),
    ("churn", "fraction of nodes leaving per hour (default 0.2)"),
    ("lookups", "find_node lookups per run (default 1000)"),
    (
        "announces",
        "info-hashes announced and looked up (default 100)",
    ),
    (
        "retries",
        "tries of a lookup query after the first (default 3)",
    ),
    ("timeout_ms", "hard query timeout in ms (default 1000)"),
    (
        "min_timeout_ms",
        "floor of the adaptive timeout in ms (default 100; 1000 = fixed timeout, the reference run)",
    ),
    (
        "memory_mib",
        "memory the run may use; a larger estimate is refused (the CLI passes the machine's available memory)",
    ),
];

/// Memory per simulated node, measured: 776 MiB of RSS for 10^5 nodes with their routing
/// tables, pending queries and the engine's queues (docs/kademlia.md).
pub const BYTES_PER_NODE: u64 = 8 * 1024;

/// The memory a run of `nodes` nodes needs, in bytes (per node, plus 64 MiB).
pub fn memory_estimate(nodes: usize) -> u64 {
    (nodes as u64).saturating_mul(BYTES_PER_NODE) + (64 << 20)
}

impl LookupRun {
    /// The run for `nodes` nodes with the scenario's `--param`s applied.
    pub fn from_params(nodes: usize, opts: &ScenarioOpts) -> Result<LookupRun, SimError> {
        let mut p = LookupRun::new(nodes, opts.seed);
        p.loss = opts.param("loss", p.loss)?;
        if !(0.0..=1.0).contains(&p.loss) {
            return Err(SimError::BadParams(format!(
                "--param loss={}: must be between 0 and 1",
                p.loss
            )));
        }
        p.churn_per_hour = opts.param("churn", p.churn_per_hour)?;
        if !(0.0..=100.0).contains(&p.churn_per_hour) {
            return Err(SimError::BadParams(format!(
                "--param churn={}: must be between 0 and 100 per hour",
                p.churn_per_hour
            )));
        }
        p.lookups = opts.param("lookups", p.lookups)?;
        p.announces = opts.param("announces", p.announces)?;
        p.config.retries = opts.param("retries", p.config.retries)?;
        let ms = |d: Duration| d.as_millis() as u64;
        p.config.query_timeout =
            Duration::from_millis(opts.param("timeout_ms", ms(p.config.query_timeout))?.max(1));
        p.config.min_query_timeout = Duration::from_millis(
            opts.param("min_timeout_ms", ms(p.config.min_query_timeout))?
                .max(1),
        );
        Ok(p)
    }
}

/// Refuses a run of `nodes` nodes whose memory estimate exceeds `--param memory_mib`.
pub fn check_memory(nodes: usize, opts: &ScenarioOpts) -> Result<(), SimError> {
    if !opts.params.contains_key("memory_mib") {
        return Ok(());
    }
    let avail: u64 = opts.param("memory_mib", 0)?;
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

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct LookupResults {
    /// find_node lookups that finished.
    pub find_total: usize,
    /// ... and succeeded.
    pub find_ok: usize,
    /// get_peers lookups that finished.
    pub get_total: usize,
    /// ... and found the announced peer.
    pub get_ok: usize,
    /// Nodes that stored each announce.
    pub stored_at: Vec<f64>,
    /// Hops per find_node.
    pub hops: Vec<f64>,
    /// Queries sent per find_node.
    pub rpcs: Vec<f64>,
    /// find_node latency in ms.
    pub latency_ms: Vec<f64>,
    /// Nodes that left / joined.
    pub leaves: usize,
    /// Joins (fresh nodes bootstrapping).
    pub joins: usize,
    /// Joins whose bootstrap ended with a non-empty table.
    pub joins_ok: usize,
    /// Engine events processed.
    pub sim_events: u64,
    /// Datagrams sent.
    pub datagrams: u64,
}

impl LookupResults {
    /// find_node success rate.
    pub fn find_success(&self) -> f64 {
        self.find_ok as f64 / self.find_total.max(1) as f64
    }
    /// get_peers success rate.
    pub fn get_success(&self) -> f64 {
        self.get_ok as f64 / self.get_total.max(1) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Lookup { node: u32, target: Id },
    Announce { node: u32, hash: u32 },
    GetPeers { node: u32, hash: u32 },
    Leave { node: u32 },
    Join { node: u32 },
}

#[derive(Clone, Copy, Debug)]
enum Issued {
    Find { target: Id, at: Instant, by: u32 },
    Announce,
    Get { hash: u32 },
    Join,
}

fn prefix_range(x: &Id, bits: usize, flip: bool) -> (Id, Id) {
    let mut lo = [0u8; 20];
    let mut hi = [0xffu8; 20];
    for i in 0..bits.min(160) {
        let mut b = x.bit(i);
        if flip && i + 1 == bits {
            b = !b;
        }
        let (byte, mask) = (i / 8, 0x80u8 >> (i % 8));
        if b {
            lo[byte] |= mask;
        } else {
            hi[byte] &= !mask;
        }
    }
    (Id(lo), Id(hi))
}

/// Fills `dht`'s table as a converged network would: for every bucket depth, up to k
/// random nodes among those sharing exactly that prefix with it. `sorted` holds
/// (id, slot) sorted by id.
fn warm_table(
    dht: &mut Dht,
    sorted: &[(Id, u32)],
    addr: &dyn Fn(u32) -> SocketAddr,
    rng: &mut Rng,
    k: usize,
) {
    let own = dht.id();
    for depth in 0..160usize {
        // nodes sharing exactly `depth` bits: prefix of depth+1 bits with the last flipped
        let (lo, hi) = prefix_range(&own, depth + 1, true);
        let a = sorted.partition_point(|(id, _)| *id < lo);
        let b = sorted.partition_point(|(id, _)| *id <= hi);
        let n = b.saturating_sub(a);
        let picks: Vec<usize> = if n <= k {
            (a..b).collect()
        } else {
            let mut v = Vec::with_capacity(k);
            while v.len() < k {
                let i = a + rng.below(n as u64) as usize;
                if !v.contains(&i) {
                    v.push(i);
                }
            }
            v
        };
        for i in picks {
            if let Some((id, slot)) = sorted.get(i) {
                if let SocketAddr::V4(a) = addr(*slot) {
                    dht.add_node(NodeInfo { id: *id, addr: a }, Instant::ZERO);
                }
            }
        }
        // stop once no other node shares depth+1 bits with us
        let (lo, hi) = prefix_range(&own, depth + 1, false);
        let a = sorted.partition_point(|(id, _)| *id < lo);
        let b = sorted.partition_point(|(id, _)| *id <= hi);
        if b - a <= 1 {
            break;
        }
    }
}

/// Runs one measured simulation.
pub fn run_lookups(p: &LookupRun) -> LookupResults {
    let cfg = p.config.clone();
    let k = cfg.k;
    let mut sim: Sim<Dht> = Sim::new(SimConfig {
        seed: p.seed,
        latency_ms: p.latency_ms.clone(),
        loss: p.loss,
        collect_events: true,
        ..SimConfig::default()
    });
    let mut rng = Rng::new(p.seed).fork(7);
    let mut ids: Vec<Id> = Vec::with_capacity(p.nodes);
    for i in 0..p.nodes {
        let id = Id::random(&mut rng);
        ids.push(id);
        sim.add_node(
            Dht::new(id, cfg.clone(), rng.fork(i as u64 + 1)),
            NodeOpts::default(),
        );
    }
    let addrs: Vec<SocketAddr> = (0..p.nodes).map(|i| sim.addr(NodeId(i as u32))).collect();
    let mut sorted: Vec<(Id, u32)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect();
    sorted.sort();
    let addr_of = |s: u32| addrs[s as usize];
    for i in 0..p.nodes {
        if let Some(core) = sim.core_mut(NodeId(i as u32)) {
            warm_table(core, &sorted, &addr_of, &mut rng, k);
        }
    }
    drop(sorted);

    // the schedule
    let start = Instant::from_secs(30);
    let end = start + p.window;
    let mut heap: BinaryHeap<Reverse<(Instant, u64, Action)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push =
        |heap: &mut BinaryHeap<Reverse<(Instant, u64, Action)>>, at: Instant, a: Action| {
            seq += 1;
            heap.push(Reverse((at, seq, a)));
        };
    let window_us = p.window.as_micros() as u64;
    let n = p.nodes as u64;
    for _ in 0..p.lookups {
        let at = start + Duration::from_micros(rng.below(window_us));
        let node = rng.below(n) as u32;
        push(
            &mut heap,
            at,
            Action::Lookup {
                node,
                target: Id::random(&mut rng),
            },
        );
    }
    for h in 0..p.announces as u32 {
        let at = start + Duration::from_micros(rng.below(window_us / 2));
        let node = rng.below(n) as u32;
        push(&mut heap, at, Action::Announce { node, hash: h });
        let later = at + Duration::from_secs(30) + Duration::from_micros(rng.below(window_us / 2));
        let other = rng.below(n) as u32;
        push(
            &mut heap,
            later,
            Action::GetPeers {
                node: other,
                hash: h,
            },
        );
    }
    let session = (p.churn_per_hour > 0.0).then(|| Dist::Exponential(3600.0 / p.churn_per_hour));
    let downtime = Dist::Exponential(600.0);
    if let Some(s) = &session {
        for i in 0..p.nodes as u32 {
            let t = Instant::ZERO + Duration::from_secs_f64(s.sample(&mut rng));
            if t < end {
                push(&mut heap, t, Action::Leave { node: i });
            }
        }
    }

    let hashes: Vec<Id> = (0..p.announces).map(|_| Id::random(&mut rng)).collect();
    let mut up_since: Vec<Option<Instant>> = vec![Some(Instant::ZERO); p.nodes];
    let mut announcer: BTreeMap<u32, SocketAddr> = BTreeMap::new();
    let mut issued: BTreeMap<u64, Issued> = BTreeMap::new();
    let mut next_cmd = 1u64;
    let mut res = LookupResults::default();
    let settled = Duration::from_secs(120);

    let process = |sim: &mut Sim<Dht>,
                   res: &mut LookupResults,
                   issued: &mut BTreeMap<u64, Issued>,
                   ids: &[Id],
                   up_since: &[Option<Instant>],
                   announcer: &BTreeMap<u32, SocketAddr>| {
        let now = sim.now();
        for (_, _, ev) in sim.take_events() {
            match ev {
                Event::LookupDone {
                    id, closest, stats, ..
                } => match issued.remove(&id) {
                    Some(Issued::Find { target, at, by }) => {
                        res.find_total += 1;
                        let best = (0..ids.len())
                            .filter(|&i| {
                                up_since[i].is_some_and(|t| t + settled <= at || t == Instant::ZERO)
                            })
                            .map(|i| ids[i].distance(&target))
                            .min();
                        // the issuer never lists itself: it counts as found
                        let own = ids.get(by as usize).map(|id| id.distance(&target));
                        let got = match (closest.first().map(|c| c.id.distance(&target)), own) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        if let (Some(g), Some(b)) = (got, best) {
                            if g <= b {
                                res.find_ok += 1;
                            }
                        }
                        res.hops.push(f64::from(stats.hops));
                        res.rpcs.push(f64::from(stats.rpcs));
                        res.latency_ms.push(stats.duration.as_secs_f64() * 1e3);
                    }
                    Some(Issued::Get { hash }) => {
                        res.get_total += 1;
                        let _ = hash;
                    }
                    other => {
                        if let Some(o) = other {
                            issued.insert(id, o);
                        }
                    }
                },
                Event::Peers { id, peers } => {
                    if let Some(Issued::Get { hash }) = issued.get(&id) {
                        if let Some(SocketAddr::V4(a)) = announcer.get(hash) {
                            let want = std::net::SocketAddrV4::new(*a.ip(), 6881);
                            if peers.contains(&want) {
                                res.get_ok += 1;
                                // count once: the LookupDone still counts the total
                                issued.insert(id, Issued::Get { hash: u32::MAX });
                            }
                        }
                    }
                }
                Event::Announced { id, stored_at, .. } => {
                    if let Some(Issued::Announce) = issued.remove(&id) {
                        res.stored_at.push(stored_at as f64);
                    }
                }
                Event::Bootstrapped { id, nodes } => {
                    if let Some(Issued::Join) = issued.remove(&id) {
                        if nodes > 0 {
                            res.joins_ok += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        let _ = now;
    };

    while let Some(Reverse((at, _, action))) = heap.pop() {
        sim.run_until(at);
        process(&mut sim, &mut res, &mut issued, &ids, &up_since, &announcer);
        let cmd = next_cmd;
        next_cmd += 1;
        match action {
            Action::Lookup { node, target } => {
                // a dead node's lookup is issued by the next live one
                let Some(node) = live_from(&up_since, node) else {
                    continue;
                };
                issued.insert(
                    cmd,
                    Issued::Find {
                        target,
                        at,
                        by: node,
                    },
                );
                sim.command(NodeId(node), Command::FindNode { id: cmd, target });
            }
            Action::Announce { node, hash } => {
                let Some(node) = live_from(&up_since, node) else {
                    continue;
                };
                announcer.insert(hash, addrs[node as usize]);
                issued.insert(cmd, Issued::Announce);
                let info_hash = hashes[hash as usize];
                sim.command(
                    NodeId(node),
                    Command::Announce {
                        id: cmd,
                        info_hash,
                        port: 6881,
                        implied_port: false,
                    },
                );
            }
            Action::GetPeers { node, hash } => {
                let Some(node) = live_from(&up_since, node) else {
                    continue;
                };
                if !announcer.contains_key(&hash) {
                    continue;
                }
                issued.insert(cmd, Issued::Get { hash });
                sim.command(
                    NodeId(node),
                    Command::GetPeers {
                        id: cmd,
                        info_hash: hashes[hash as usize],
                    },
                );
            }
            Action::Leave { node } => {
                sim.kill(NodeId(node));
                up_since[node as usize] = None;
                res.leaves += 1;
                let back = at + Duration::from_secs_f64(downtime.sample(&mut rng));
                if back < end {
                    heap.push(Reverse((back, u64::MAX - cmd, Action::Join { node })));
                }
            }
            Action::Join { node } => {
                let Some(via) = live_from(&up_since, rng.below(n) as u32) else {
                    continue;
                };
                let id = Id::random(&mut rng);
                ids[node as usize] = id;
                sim.revive(NodeId(node), Dht::new(id, cfg.clone(), rng.fork(cmd)));
                up_since[node as usize] = Some(at);
                res.joins += 1;
                issued.insert(cmd, Issued::Join);
                sim.command(
                    NodeId(node),
                    Command::Bootstrap {
                        id: cmd,
                        nodes: vec![addrs[via as usize]],
                    },
                );
                if let Some(s) = &session {
                    let t = at + Duration::from_secs_f64(s.sample(&mut rng));
                    if t < end {
                        heap.push(Reverse((t, u64::MAX / 2 + cmd, Action::Leave { node })));
                    }
                }
            }
        }
    }
    sim.run_until(end + Duration::from_secs(60));
    process(&mut sim, &mut res, &mut issued, &ids, &up_since, &announcer);
    let st = sim.stats();
    res.sim_events = st.events;
    res.datagrams = st.datagrams;
    res
}

fn live_from(up: &[Option<Instant>], start: u32) -> Option<u32> {
    let n = up.len();
    (0..n)
        .map(|d| (start as usize + d) % n)
        .find(|&i| up[i].is_some())
        .map(|i| i as u32)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// `kademlia`: lookups at several network sizes under churn, plotted against log N.
#[derive(Debug)]
pub struct KademliaScenario;

impl Scenario for KademliaScenario {
    fn name(&self) -> &'static str {
        "kademlia"
    }

    fn about(&self) -> &'static str {
        "BEP 5 DHT: find_node/get_peers hops, RPCs, latency and success vs N (50 ms median RTT, 20%/h churn)"
    }

    fn params(&self) -> &'static [(&'static str, &'static str)] {
        PARAMS
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        opts.check_params(PARAMS)?;
        let sizes: Vec<usize> = match opts.nodes {
            Some(n) if n >= 16 => vec![n],
            Some(n) => return Err(SimError::BadParams(format!("{n} nodes: need at least 16"))),
            None => vec![1_000, 10_000, 100_000],
        };
        for &n in &sizes {
            check_memory(n, opts)?;
            LookupRun::from_params(n, opts)?;
        }
        let mut report = Report::new("kademlia");
        let mut table = Table::new(
            "kademlia_lookups",
            &[
                "nodes",
                "find_success",
                "get_success",
                "hops_mean",
                "rpcs_mean",
                "latency_ms_p50",
                "latency_ms_p90",
                "stored_at_mean",
                "leaves",
                "joins",
                "joins_ok",
                "wall_s",
            ],
        );
        let mut hops_s = Vec::new();
        let mut rpcs_s = Vec::new();
        let mut lat_s = Vec::new();
        let mut succ_s = Vec::new();
        let mut last = None;
        for &n in &sizes {
            #[allow(clippy::disallowed_methods)] // wall time of a run, measured outside the cores
            let wall = std::time::Instant::now();
            let r = run_lookups(&LookupRun::from_params(n, opts)?);
            let wall = wall.elapsed().as_secs_f64();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let lat = sorted(r.latency_ms.clone());
            let (p50, p90) = (percentile(&lat, 50.0), percentile(&lat, 90.0));
            table.push(&[
                n as f64,
                r.find_success(),
                r.get_success(),
                mean(&r.hops),
                mean(&r.rpcs),
                p50,
                p90,
                mean(&r.stored_at),
                r.leaves as f64,
                r.joins as f64,
                r.joins_ok as f64,
                wall,
            ]);
            report.line(format!(
                "N={n}: find_node success {:.4} ({}/{}), get_peers success {:.4} ({}/{}), hops {:.2}, rpcs {:.1}, latency p50 {:.0} ms p90 {:.0} ms, {} left, {} joined ({} bootstrapped), {} datagrams, {:.1} s wall",
                r.find_success(), r.find_ok, r.find_total, r.get_success(), r.get_ok, r.get_total,
                mean(&r.hops), mean(&r.rpcs), p50, p90, r.leaves, r.joins, r.joins_ok, r.datagrams, wall
            ));
            let x = n as f64;
            hops_s.push((x, mean(&r.hops)));
            rpcs_s.push((x, mean(&r.rpcs)));
            lat_s.push((x, p50));
            succ_s.push((x, r.find_success() * 100.0));
            last = Some((n, r, p50, wall));
        }
        if let Some((n, r, p50, wall)) = last {
            report.kv("nodes", n);
            report.kv("find_success", format!("{:.4}", r.find_success()));
            report.kv("get_success", format!("{:.4}", r.get_success()));
            report.kv("latency_p50_ms", format!("{p50:.0}"));
            report.kv("wall_s", format!("{wall:.1}"));
        }
        if let Some(rss) = servent_sim::rss_bytes() {
            report.kv("rss_mib", rss / (1 << 20));
        }
        report.tables.push(table);
        // success and latency under heavier churn, at 10 000 nodes (default run only)
        if opts.nodes.is_none() {
            let mut churn = Table::new(
                "kademlia_churn",
                &[
                    "churn_per_hour",
                    "find_success",
                    "get_success",
                    "latency_ms_p50",
                    "latency_ms_p90",
                    "leaves",
                ],
            );
            let mut succ = Vec::new();
            let mut p90s = Vec::new();
            for rate in [0.2, 1.0, 5.0] {
                let mut p = LookupRun::from_params(10_000, opts)?;
                p.churn_per_hour = rate;
                let r = run_lookups(&p);
                let lat = sorted(r.latency_ms.clone());
                let (p50, p90) = (percentile(&lat, 50.0), percentile(&lat, 90.0));
                churn.push(&[
                    rate * 100.0,
                    r.find_success(),
                    r.get_success(),
                    p50,
                    p90,
                    r.leaves as f64,
                ]);
                report.line(format!(
                    "N=10000, churn {:.0}%/h: find_node success {:.4}, get_peers success {:.4}, latency p50 {p50:.0} ms p90 {p90:.0} ms",
                    rate * 100.0, r.find_success(), r.get_success()
                ));
                succ.push((rate * 100.0, r.find_success() * 100.0));
                p90s.push((rate * 100.0, p90));
            }
            report.tables.push(churn);
            let churn_plot = |name: &str, title: &str, y: &str, pts: Vec<(f64, f64)>| Plot {
                name: name.into(),
                title: title.into(),
                x_label: "churn (% of nodes leaving per hour, log scale)".into(),
                y_label: y.into(),
                log_x: true,
                series: vec![Series {
                    name: y.into(),
                    points: pts,
                }],
            };
            report.plots.push(churn_plot(
                "kademlia_churn_success",
                "find_node success vs churn (N = 10 000)",
                "%",
                succ,
            ));
            report.plots.push(churn_plot(
                "kademlia_churn_p90",
                "90th percentile lookup latency vs churn (N = 10 000)",
                "ms",
                p90s,
            ));
        }
        let plot = |name: &str, title: &str, y: &str, pts: Vec<(f64, f64)>| Plot {
            name: name.into(),
            title: title.into(),
            x_label: "nodes (log scale)".into(),
            y_label: y.into(),
            log_x: true,
            series: vec![Series {
                name: y.into(),
                points: pts,
            }],
        };
        report.plots.push(plot(
            "kademlia_hops",
            "Hops per lookup vs N",
            "hops",
            hops_s,
        ));
        report.plots.push(plot(
            "kademlia_rpcs",
            "Queries per lookup vs N",
            "RPCs",
            rpcs_s,
        ));
        report.plots.push(plot(
            "kademlia_latency",
            "Median lookup latency vs N (50 ms median RTT)",
            "ms",
            lat_s,
        ));
        report.plots.push(plot(
            "kademlia_success",
            "find_node success vs N (20%/h churn)",
            "%",
            succ_s,
        ));
        Ok(report)
    }
}

pub(crate) fn all() -> Vec<Box<dyn Scenario>> {
    vec![Box::new(KademliaScenario)]
}
