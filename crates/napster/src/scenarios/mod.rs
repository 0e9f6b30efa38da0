//! Napster in the simulator: one index server and thousands of clients on a virtual
//! network (`servent sim run napster`).
//!
//! Every client logs in, uploads its share list, searches for a file another client holds
//! and asks for a download; then a tenth of the clients die and the survivors search again,
//! which shows whether the dead clients' shares left the index. The report gives search
//! latency (virtual time, including the server's uplink queue), hits per search, download
//! brokering outcomes (direct, pushed, refused because both sides are firewalled), stale
//! hits after the deaths (must be 0), and the server's memory per indexed file.

use std::collections::BTreeMap;
use std::time::Duration;

use servent_core::{Core, Input, Instant, Rng, Transmit};
use servent_sim::{
    Dist, NodeOpts, Plot, Report, Scenario, ScenarioOpts, Series, Sim, SimConfig, SimError, Table,
    percentile,
};

use crate::client::{Client, ClientCommand, ClientConfig, ClientEvent};
use crate::harness::{Peer, PeerCommand, PeerEvent, settle};
use crate::server::{Server, ServerConfig, Volatile};
use crate::wire::{FileInfo, LinkType, SearchQuery};

/// A node of the simulation: the harness's [`Peer`], whose server completes its jobs
/// (password hashing, account writes) inline after every input, in no virtual time (the
/// argon2 cost of the scenario's config is cheap), as [`settle`] does in the harness.
#[derive(Debug)]
pub struct NapNode(pub Peer);

impl NapNode {
    fn settle(&mut self, now: Instant) {
        if let Peer::Server(s) = &mut self.0 {
            settle(s, now, &mut Volatile);
        }
    }
}

impl Core for NapNode {
    type Command = PeerCommand;
    type Event = PeerEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, PeerCommand>) {
        self.0.handle_input(now, input);
        self.settle(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
        self.settle(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.0.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<PeerEvent> {
        self.0.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
}

/// Files each client shares.
pub const FILES_PER_CLIENT: usize = 20;
const VOCABULARY: usize = 5000;
const SERVER_PORT: u16 = 8888;

/// Results of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct NapsterRun {
    /// Clients started.
    pub clients: usize,
    /// Clients that logged in.
    pub logged_in: usize,
    /// Files in the index when the first searches ran.
    pub files_indexed: u64,
    /// Search latencies (virtual ms) of the first round, sorted.
    pub search_ms: Vec<f64>,
    /// Hits per search of the first round.
    pub hits: Vec<usize>,
    /// Searches of the first round that found the file they looked for.
    pub found: usize,
    /// Download requests answered with an address (direct).
    pub direct: usize,
    /// Download requests turned into push requests (firewalled holder).
    pub pushed: usize,
    /// Download requests that failed (both firewalled, or holder gone).
    pub failed: usize,
    /// Clients killed before the second round.
    pub killed: usize,
    /// Hits of the second round naming a killed client (must be 0).
    pub stale_hits: usize,
    /// Searches in the second round.
    pub second_round: usize,
    /// Bytes the server sent.
    pub server_bytes_sent: u64,
    /// Engine events.
    pub events: u64,
    /// Hash of the trace (determinism).
    pub trace_hash: u64,
}

fn zipf(rng: &mut Rng, n: usize) -> usize {
    // Inverse-CDF of a 1/x density on [1, n]: popular words are shared by many files.
    let u = rng.unit();
    let x = (n as f64).powf(u);
    (x as usize).clamp(1, n) - 1
}

fn word(i: usize) -> String {
    // Pronounceable, distinct words: w0 = "ba", w1 = "be", …
    const C: &[u8] = b"bdfgklmnprstvz";
    const V: &[u8] = b"aeiou";
    let mut s = String::new();
    let mut n = i + 1;
    while n > 0 {
        let k = n % (C.len() * V.len());
        s.push(char::from(C[k / V.len()]));
        s.push(char::from(V[k % V.len()]));
        n /= C.len() * V.len();
    }
    s
}

fn file_name(rng: &mut Rng, owner: usize, k: usize) -> String {
    format!(
        "{} {} - {} {} ({owner}-{k}).mp3",
        word(zipf(rng, VOCABULARY)),
        word(zipf(rng, VOCABULARY)),
        word(zipf(rng, VOCABULARY)),
        word(zipf(rng, VOCABULARY)),
    )
}

/// Runs the scenario with `clients` clients; `firewalled` is the share of clients behind a
/// firewall.
pub fn run(clients: usize, seed: u64, firewalled: f64, trace: bool) -> NapsterRun {
    let mut sim: Sim<NapNode> = Sim::new(SimConfig {
        seed,
        latency_ms: Dist::lognormal_median(40.0, 0.5),
        trace,
        ..SimConfig::default()
    });
    let mut scfg = ServerConfig::for_tests();
    scfg.max_connections = clients + 16;
    let server = sim.add_node(
        NapNode(Peer::Server(Box::new(Server::new(
            scfg,
            Rng::new(seed).fork(1),
        )))),
        NodeOpts {
            up_bps: Some(12_500_000),
            down_bps: Some(12_500_000),
            port: SERVER_PORT,
            ..NodeOpts::default()
        },
    );
    let server_addr = sim.addr(server);
    let mut rng = Rng::new(seed).fork(2);
    let mut nodes = Vec::with_capacity(clients);
    let mut walled = Vec::with_capacity(clients);
    let mut names: Vec<Vec<String>> = Vec::with_capacity(clients);
    for i in 0..clients {
        let fw = rng.chance(firewalled);
        let mut cfg = ClientConfig::new(server_addr, &format!("user{i}"), "pw");
        cfg.data_port = if fw { 0 } else { 6699 };
        cfg.link = LinkType::new((i % 10) as u8 + 1).unwrap_or_default();
        let n = sim.add_node(
            NapNode(Peer::Client(Box::new(Client::new(cfg)))),
            NodeOpts {
                up_bps: Some(128_000),
                down_bps: Some(1_000_000),
                firewalled: fw,
                port: 6699,
            },
        );
        nodes.push(n);
        walled.push(fw);
        let files: Vec<String> = (0..FILES_PER_CLIENT)
            .map(|k| file_name(&mut rng, i, k))
            .collect();
        let infos = files
            .iter()
            .map(|name| FileInfo {
                name: name.clone(),
                md5: "00000000000000000000000000000000".into(),
                size: 3_000_000 + rng.below(4_000_000),
                bitrate: 128,
                freq: 44100,
                secs: 200,
            })
            .collect();
        let at = Instant::from_micros(1_000_000 + rng.below(4_000_000));
        sim.command_at(
            at,
            n,
            PeerCommand::Client(ClientCommand::Share {
                id: 1,
                files: infos,
            }),
        );
        names.push(files);
    }

    // Round 1, from 10 s to 30 s: each client looks for a file another client holds, by two
    // of its words, then asks for it.
    let mut asked: BTreeMap<(u32, u64), (Instant, String)> = BTreeMap::new();
    for (i, &n) in nodes.iter().enumerate() {
        let other = (i + 1 + rng.below(clients.max(2) as u64 - 1) as usize) % clients;
        let Some(target) = names[other].get(rng.below(FILES_PER_CLIENT as u64) as usize) else {
            continue;
        };
        let words: Vec<&str> = target.split(' ').collect();
        let query = format!(
            "{} {}",
            words.first().copied().unwrap_or(""),
            words.get(3).copied().unwrap_or("")
        );
        let at = Instant::from_micros(10_000_000 + rng.below(20_000_000));
        sim.command_at(
            at,
            n,
            PeerCommand::Client(ClientCommand::Search {
                id: 100,
                query: SearchQuery {
                    contains: vec![query],
                    max_results: Some(50),
                    ..Default::default()
                },
            }),
        );
        asked.insert((n.0, 100), (at, target.clone()));
    }

    let mut run = NapsterRun {
        clients,
        logged_in: 0,
        files_indexed: 0,
        search_ms: Vec::new(),
        hits: Vec::new(),
        found: 0,
        direct: 0,
        pushed: 0,
        failed: 0,
        killed: 0,
        stale_hits: 0,
        second_round: 0,
        server_bytes_sent: 0,
        events: 0,
        trace_hash: 0,
    };
    let mut downloads = 0u64;
    let mut second: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut dead: Vec<bool> = vec![false; clients];
    let mut phase = 0;
    // Bounded: the run ends at 90 s of virtual time.
    while sim.now() < Instant::from_secs(90) {
        sim.run_for(Duration::from_millis(500));
        if phase == 0 && sim.now() >= Instant::from_secs(9) {
            phase = 1;
            if let Some(NapNode(Peer::Server(s))) = sim.core(server) {
                run.files_indexed = s.stats().files;
            }
        }
        if phase == 1 && sim.now() >= Instant::from_secs(45) {
            // A tenth of the clients die; the survivors search again.
            phase = 2;
            for (i, &n) in nodes.iter().enumerate() {
                if i % 10 == 3 {
                    sim.kill(n);
                    dead[i] = true;
                    run.killed += 1;
                }
            }
            for (i, &n) in nodes.iter().enumerate() {
                if dead[i] {
                    continue;
                }
                let victim = (rng.below(clients.div_ceil(10) as u64) as usize) * 10 + 3;
                let Some(target) = names.get(victim).and_then(|v| v.first()) else {
                    continue;
                };
                let at = sim.now() + Duration::from_millis(5000 + rng.below(10_000));
                let w: Vec<&str> = target.split(' ').collect();
                sim.command_at(
                    at,
                    n,
                    PeerCommand::Client(ClientCommand::Search {
                        id: 200,
                        query: SearchQuery {
                            contains: vec![format!(
                                "{} {}",
                                w.first().copied().unwrap_or(""),
                                w.get(1).copied().unwrap_or("")
                            )],
                            max_results: Some(100),
                            ..Default::default()
                        },
                    }),
                );
                second.insert(n.0, at);
                run.second_round += 1;
            }
        }
        for (t, node, e) in sim.take_events() {
            let PeerEvent::Client(e) = e else { continue };
            match e {
                ClientEvent::LoggedIn { .. } => run.logged_in += 1,
                ClientEvent::SearchDone { id: 100, hits } => {
                    let Some((at, target)) = asked.remove(&(node.0, 100)) else {
                        continue;
                    };
                    run.search_ms.push((t - at).as_secs_f64() * 1000.0);
                    run.hits.push(hits.len());
                    if let Some(h) = hits.iter().find(|h| h.file.name == target) {
                        run.found += 1;
                        downloads += 1;
                        sim.command(
                            node,
                            PeerCommand::Client(ClientCommand::Download {
                                id: 300 + downloads,
                                nick: h.nick.clone(),
                                file: h.file.name.clone(),
                            }),
                        );
                    }
                }
                ClientEvent::SearchDone { id: 200, hits } => {
                    second.remove(&node.0);
                    run.stale_hits += hits
                        .iter()
                        .filter(|h| {
                            h.nick
                                .strip_prefix("user")
                                .and_then(|n| n.parse::<usize>().ok())
                                .is_some_and(|i| dead.get(i).copied().unwrap_or(false))
                        })
                        .count();
                }
                ClientEvent::DownloadReady { .. } => run.direct += 1,
                ClientEvent::PushExpected { .. } => run.pushed += 1,
                ClientEvent::DownloadFailed { .. } => run.failed += 1,
                _ => {}
            }
        }
    }
    run.search_ms.sort_by(f64::total_cmp);
    run.server_bytes_sent = sim.node_stats(server).bytes_sent;
    run.events = sim.stats().events;
    run.trace_hash = sim.trace_hash();
    let _ = walled;
    run
}

/// `napster`: the central index with N clients (default 10 000).
#[derive(Debug, Clone, Copy)]
pub struct NapsterScenario;

impl Scenario for NapsterScenario {
    fn name(&self) -> &'static str {
        "napster"
    }

    fn about(&self) -> &'static str {
        "central index: N clients log in, share 20 files each, search, ask for downloads (30% firewalled); 10% die and their shares must vanish"
    }

    fn run(&self, opts: &ScenarioOpts) -> Result<Report, SimError> {
        let clients = opts.nodes.unwrap_or(10_000);
        if clients < 2 {
            return Err(SimError::BadParams(
                "napster needs at least 2 clients".into(),
            ));
        }
        #[allow(clippy::disallowed_methods)] // wall time of the run, measured outside the cores
        let t0 = std::time::Instant::now();
        let r = run(clients, opts.seed, 0.3, false);
        let wall = t0.elapsed().as_secs_f64();
        if r.stale_hits > 0 {
            return Err(SimError::Failed(format!(
                "{} search hits named clients that had died",
                r.stale_hits
            )));
        }
        let mut rep = Report::new(self.name());
        let searches = r.search_ms.len();
        let mean_hits = r.hits.iter().sum::<usize>() as f64 / searches.max(1) as f64;
        rep.line(format!(
            "{} clients ({} logged in), {} files indexed, {} searches: {} found their file, {:.1} hits per search",
            r.clients, r.logged_in, r.files_indexed, searches, r.found, mean_hits
        ));
        rep.line(format!(
            "search latency (virtual, incl. server uplink): p50 {:.1} ms, p99 {:.1} ms; downloads: {} direct, {} pushed, {} refused",
            percentile(&r.search_ms, 50.0),
            percentile(&r.search_ms, 99.0),
            r.direct,
            r.pushed,
            r.failed
        ));
        rep.line(format!(
            "{} clients killed; {} searches afterwards returned {} hits naming them",
            r.killed, r.second_round, r.stale_hits
        ));
        let mut t = Table::new("napster-search-latency", &["percentile", "latency_ms"]);
        let mut s = Series {
            name: "search latency".into(),
            points: Vec::new(),
        };
        for p in [1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 100.0] {
            let v = percentile(&r.search_ms, p);
            t.push(&[p, v]);
            s.points.push((p, v));
        }
        rep.tables.push(t);
        rep.plots.push(Plot {
            name: "napster-search-latency".into(),
            title: format!("Napster search latency, {} clients", r.clients),
            x_label: "percentile".into(),
            y_label: "latency (ms, virtual)".into(),
            log_x: false,
            series: vec![s],
        });
        rep.kv("clients", r.clients);
        rep.kv("files", r.files_indexed);
        rep.kv(
            "search_p50_ms",
            format!("{:.1}", percentile(&r.search_ms, 50.0)),
        );
        rep.kv(
            "search_p99_ms",
            format!("{:.1}", percentile(&r.search_ms, 99.0)),
        );
        rep.kv(
            "found",
            format!("{:.4}", r.found as f64 / searches.max(1) as f64),
        );
        rep.kv("direct", r.direct);
        rep.kv("pushed", r.pushed);
        rep.kv("refused", r.failed);
        rep.kv("stale_hits", r.stale_hits);
        rep.kv("server_mb_sent", r.server_bytes_sent / 1_000_000);
        rep.kv("events", r.events);
        rep.kv("wall_s", format!("{wall:.2}"));
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_finds_files_brokers_downloads_and_forgets_the_dead() {
        let r = run(60, 3, 0.3, true);
        assert_eq!(r.logged_in, 60);
        assert_eq!(r.files_indexed, 60 * FILES_PER_CLIENT as u64);
        assert_eq!(r.search_ms.len(), 60);
        assert_eq!(r.found, 60, "every target file is found");
        assert_eq!(r.direct + r.pushed + r.failed, 60);
        assert!(r.direct > 0 && r.pushed > 0);
        assert_eq!(r.killed, 6);
        assert!(r.second_round > 0);
        assert_eq!(r.stale_hits, 0);
    }

    #[test]
    fn the_scenario_is_deterministic() {
        let a = run(30, 9, 0.3, true);
        let b = run(30, 9, 0.3, true);
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a, b);
    }
}
