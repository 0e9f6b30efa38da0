//! `servent gnutella`: a Gnutella 0.4 servent, or with `run --role` a Gnutella 0.6 leaf,
//! ultrapeer, or a servent that elects itself (`auto`).
//!
//! - `run` starts a long-running servent with a local control API;
//! - `search`, `get`, `peers`, `stats` talk to it, or — with `--connect HOST:PORT` — join the
//!   network through that peer themselves, act, and leave (one-shot forms for scripts).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use servent_gnutella::Hit;
use servent_gnutella::control::{self, DEFAULT_CONTROL};
use servent_gnutella::node::{Node, NodeOptions, Progress};
use servent_gnutella::servent::Role;
use tokio::sync::mpsc;

/// Gnutella 0.4 (flood search over a pure peer-to-peer overlay) and 0.6 (`--role`:
/// ultrapeers, leaves, Query Routing Protocol), HTTP transfers, Push.
#[derive(Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Run a servent until Ctrl-C: share a folder, join through known peers, answer queries.
    #[command(after_help = RUN_HELP)]
    Run {
        /// Address for the overlay and HTTP transfers (one port for both).
        #[arg(long, default_value = "127.0.0.1:6346")]
        listen: SocketAddr,
        /// Folder whose files (not subfolders, not symlinks) are shared.
        #[arg(long)]
        share: Option<PathBuf>,
        /// A servent to dial, HOST:PORT (repeatable).
        #[arg(long = "peer", alias = "connect", value_name = "ADDR")]
        peers: Vec<String>,
        /// Servents to join through: an address, or a file of addresses one per line
        /// (`#` comments); repeatable. For 0.6 roles they seed the ultrapeer cache.
        #[arg(long, value_name = "ADDR|FILE")]
        bootstrap: Vec<String>,
        /// Address of the control API that search/get/peers/stats use (--node; it answers
        /// local clients only). Default: 127.0.0.1 (the --listen IP if that is a loopback
        /// one) with the --listen port + 10000 (127.0.0.1:16346 for the default --listen);
        /// port 0 picks a free one. Printed at start and written to <data>/control.addr.
        #[arg(long)]
        control: Option<SocketAddr>,
        /// Folder for state: control.addr (the control API's address) is written there.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Most overlay connections (1-1000).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_conns: u32,
        /// Highest TTL sent or forwarded (1-16).
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(1..=16))]
        max_ttl: u8,
        /// Refuse every inbound connection (as behind a firewall): uploads go through Push.
        #[arg(long)]
        firewalled: bool,
        /// Speak Gnutella 0.6 as a leaf, an ultrapeer, or start as a leaf and become an
        /// ultrapeer when capable and asked (auto). Without it: a Gnutella 0.4 servent.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// A leaf's most ultrapeer connections (1-32).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
        max_ultrapeers: u32,
        /// Compression of 0.6 links: deflate (offered and accepted, as deployed servents
        /// do) or off (plain links, readable in a capture).
        #[arg(long, value_enum, default_value = "deflate")]
        compression: Compression,
        /// A handshake (or HTTP request head) not finished within this time is dropped.
        #[arg(long, default_value = "15s", value_parser = crate::common::parse_duration)]
        handshake_timeout: Duration,
        /// Most inbound connections in their handshake at once (1-100000); more are closed
        /// on arrival.
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_pending: u32,
        /// Most of those from one IP address (1-100000).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_pending_per_ip: u32,
        /// Largest descriptor payload in bytes (1024-1048576); a peer sending a larger one
        /// is disconnected.
        #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
        max_descriptor: u32,
        /// Pings one link may send per second (1-10000); the excess is dropped and counted,
        /// and a link sending 10 times this is closed as a flooder.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        max_pings_per_sec: u32,
        /// Queries one link may send per second (1-100000), with the same rule.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_queries_per_sec: u32,
        /// How long the address of a link closed as a flooder is refused, e.g. 60s, 10m.
        #[arg(long, default_value = "60s", value_parser = crate::common::parse_duration)]
        flood_ban: Duration,
    },
    /// Search: print one hit per line (id, name, size, host). Exit 3 when nothing is found.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Search {
        /// Search words (`*` wildcards).
        query: String,
        /// How long to collect hits, e.g. 5s, 1500ms.
        #[arg(long, default_value = "5s", value_parser = crate::common::parse_duration)]
        wait: Duration,
        /// TTL of the query (1-16; default: the servent's maximum, 7).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
        ttl: Option<u8>,
        /// One-shot: join through this servent (repeatable) instead of asking a running one.
        #[arg(long = "peer", alias = "connect", value_name = "ADDR")]
        peers: Vec<String>,
        /// The running servent's control API.
        #[arg(long, alias = "control", value_name = "ADDR", default_value = DEFAULT_CONTROL)]
        node: SocketAddr,
        /// One JSON object per hit.
        #[arg(long)]
        json: bool,
    },
    /// Download: a hit id from `search` (running servent), or with --peer the first hit
    /// of a query (through Push when the holder is firewalled).
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Get {
        /// Hit id (from `servent gnutella search`), or the query with --peer.
        target: String,
        /// Folder to download into.
        #[arg(
            short = 'o',
            long = "output",
            alias = "out",
            value_name = "DIR",
            default_value = "."
        )]
        output: PathBuf,
        /// One-shot: join through this servent (repeatable), search for TARGET, get the
        /// first hit.
        #[arg(long = "peer", alias = "connect", value_name = "ADDR")]
        peers: Vec<String>,
        /// How long the one-shot form collects hits.
        #[arg(long, default_value = "3s", value_parser = crate::common::parse_duration)]
        wait: Duration,
        /// The running servent's control API.
        #[arg(long, alias = "control", value_name = "ADDR", default_value = DEFAULT_CONTROL)]
        node: SocketAddr,
    },
    /// List the running servent's overlay connections.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Peers {
        /// The running servent's control API.
        #[arg(long, alias = "control", value_name = "ADDR", default_value = DEFAULT_CONTROL)]
        node: SocketAddr,
        /// One JSON object per peer.
        #[arg(long)]
        json: bool,
    },
    /// Print the running servent's message counters.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Stats {
        /// The running servent's control API.
        #[arg(long, alias = "control", value_name = "ADDR", default_value = DEFAULT_CONTROL)]
        node: SocketAddr,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

const RUN_HELP: &str = "The control API defaults to 127.0.0.1 with the --listen port + 10000, so \
several servents run on one host with no extra flags; `servent gnutella search --node ADDR` \
talks to one of them (default 127.0.0.1:16346, the default servent's).\n\n\
Exit codes: 0 success (also Ctrl-C or SIGTERM, which prints a summary), 1 failure, 2 usage.";

/// `run --compression`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    /// Plain 0.6 links.
    Off,
    /// Offer and accept deflate on 0.6 links.
    Deflate,
}

/// The roles of `run --role`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RoleArg {
    /// Start as a leaf; become an ultrapeer when capable and asked.
    Auto,
    /// At most 3 ultrapeer connections; routes nothing.
    Leaf,
    /// Up to 16 ultrapeer and 16 leaf connections; QRP, pong caching.
    Ultrapeer,
}

async fn resolve(peers: &[String]) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for p in peers {
        let addr = tokio::net::lookup_host(p.as_str())
            .await
            .with_context(|| format!("resolving {p} (expected HOST:PORT)"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| anyhow!("{p} has no IPv4 address (Gnutella 0.4 is IPv4 only)"))?;
        out.push(addr);
    }
    Ok(out)
}

/// Runs `servent gnutella ...`.
pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.cmd {
        Sub::Run {
            listen,
            share,
            peers,
            bootstrap,
            control,
            data,
            max_conns,
            max_ttl,
            firewalled,
            role,
            max_ultrapeers,
            compression,
            handshake_timeout,
            max_pending,
            max_pending_per_ip,
            max_descriptor,
            max_pings_per_sec,
            max_queries_per_sec,
            flood_ban,
        } => {
            let mut dial = resolve(&peers).await?;
            dial.extend(
                crate::common::bootstrap_addrs(&bootstrap)?
                    .into_iter()
                    .filter(SocketAddr::is_ipv4),
            );
            let mut o = NodeOptions::new(listen);
            o.share = share;
            o.connect = dial;
            o.max_conns = max_conns as usize;
            o.want_conns = o.max_conns.min(3);
            o.max_ttl = max_ttl;
            o.firewalled = firewalled;
            o.role = match role {
                None => Role::Flat04,
                Some(RoleArg::Auto) => Role::Auto,
                Some(RoleArg::Leaf) => Role::Leaf,
                Some(RoleArg::Ultrapeer) => Role::Ultrapeer,
            };
            o.leaf_ultrapeers = max_ultrapeers as usize;
            o.deflate = compression == Compression::Deflate;
            o.handshake_timeout = handshake_timeout;
            o.max_pending = max_pending as usize;
            o.max_pending_per_ip = max_pending_per_ip as usize;
            o.max_payload = max_descriptor as usize;
            o.max_pings_per_sec = max_pings_per_sec;
            o.max_queries_per_sec = max_queries_per_sec;
            o.flood_ban = flood_ban;
            if o.role.is_06() {
                o.want_conns = 3;
            }
            let started = std::time::Instant::now();
            let node = Arc::new(Node::start(o).await?);
            let control = control.unwrap_or_else(|| control::control_for(node.local));
            let ctl = tokio::net::TcpListener::bind(control)
                .await
                .with_context(|| {
                    format!("binding the control API on {control} (choose another with --control, or port 0)")
                })?;
            let ctl_addr = ctl.local_addr().unwrap_or(control);
            if let Some(dir) = &data {
                crate::common::write_state_file(
                    &dir.join("control.addr"),
                    &format!("{ctl_addr}\n"),
                )?;
            }
            println!(
                "gnutella servent {} ({}) listening on {}, control API on {}",
                node.servent_id,
                match role {
                    None => "0.4".to_string(),
                    Some(r) => format!("0.6 {r:?}").to_lowercase(),
                },
                node.local,
                ctl_addr
            );
            let server = tokio::spawn(control::serve(node.clone(), ctl));
            crate::common::stop_signal().await;
            server.abort();
            let peers = node.peers().await.map(|p| p.len()).unwrap_or(0);
            let st = node.stats().await.ok();
            println!(
                "stopped after {}: {peers} peers, {} queries seen, {} answered, {} in, {} out",
                crate::common::fmt_duration(started.elapsed()),
                st.as_ref().map_or(0, |s| s.queries_seen),
                st.as_ref().map_or(0, |s| s.queries_answered),
                crate::common::fmt_bytes(st.as_ref().map_or(0, |s| s.bytes_in)),
                crate::common::fmt_bytes(st.as_ref().map_or(0, |s| s.bytes_out)),
            );
            Ok(())
        }
        Sub::Search {
            query,
            wait,
            ttl,
            peers,
            node,
            json,
        } => {
            let not_found = || crate::common::NotFound(format!("no hits for {query:?}"));
            if peers.is_empty() {
                let path = format!(
                    "/search?q={}&wait={}{}",
                    control::encode_param(&query),
                    wait.as_millis(),
                    ttl.map(|t| format!("&ttl={t}")).unwrap_or_default()
                );
                let mut n = 0;
                let mut err = None;
                control::request(node, &path, |v| {
                    if let Some(e) = v.get("error") {
                        err = Some(e.to_string());
                    }
                    for h in v["hits"].as_array().into_iter().flatten() {
                        n += 1;
                        if json {
                            crate::common::print_json(h);
                            continue;
                        }
                        println!(
                            "{}\t{}\t{}\t{}{}",
                            h["id"],
                            h["name"].as_str().unwrap_or_default(),
                            h["size"],
                            h["host"].as_str().unwrap_or_default(),
                            if h["push"].as_bool() == Some(true) {
                                "\t(push)"
                            } else {
                                ""
                            }
                        );
                    }
                })
                .await
                .with_context(|| format!("asking the servent at {node} (is `servent gnutella run` running? see --node)"))?;
                if let Some(e) = err {
                    bail!("search failed: {e}");
                }
                if n == 0 {
                    return Err(not_found().into());
                }
                return Ok(());
            }
            let one = join(&peers).await?;
            let hits = one.search(&query, ttl, wait).await?;
            for h in &hits {
                if json {
                    crate::common::print_json(&serde_json::json!({
                        "name": h.name,
                        "size": h.size,
                        "host": h.addr.to_string(),
                        "push": h.push,
                        "sha1": h.sha1.map(|x| servent_gnutella::library::sha1_urn(&x)),
                    }));
                } else {
                    println!("{}\t{}\t{}", h.name, h.size, h.addr);
                }
            }
            one.shutdown().await;
            if hits.is_empty() {
                return Err(not_found().into());
            }
            Ok(())
        }
        Sub::Get {
            target,
            output,
            peers,
            wait,
            node,
        } => {
            let out = absolute(&output)?;
            if peers.is_empty() {
                let id: u64 = target.parse().with_context(|| {
                    format!("{target:?} is not a hit id; use `servent gnutella search` first, or --peer HOST:PORT QUERY")
                })?;
                let path = format!(
                    "/get?hit={id}&out={}",
                    control::encode_param(&out.display().to_string())
                );
                let bar = bar();
                let mut result: Option<Result<String, String>> = None;
                control::request(node, &path, |v| {
                    if let (Some(d), Some(t)) = (v["done"].as_u64(), v["total"].as_u64()) {
                        bar.set_length(t);
                        bar.set_position(d);
                    } else if let Some(p) = v["path"].as_str() {
                        result = Some(Ok(p.to_string()));
                    } else if let Some(e) = v["error"].as_str() {
                        result = Some(Err(e.to_string()));
                    }
                })
                .await
                .with_context(|| format!("asking the servent at {node} (is `servent gnutella run` running? see --node)"))?;
                bar.finish_and_clear();
                return match result {
                    Some(Ok(p)) => {
                        println!("{p}");
                        Ok(())
                    }
                    Some(Err(e)) => bail!("download failed: {e}"),
                    None => bail!("the servent ended the download without a result"),
                };
            }
            let one = join(&peers).await?;
            let hits = one.search(&target, None, wait).await?;
            let Some(hit) = hits.first() else {
                one.shutdown().await;
                return Err(crate::common::NotFound(format!("no hits for {target:?}")).into());
            };
            let r = download_with_bar(&one, hit, &out).await;
            one.shutdown().await;
            let path = r?;
            println!("{}", path.display());
            Ok(())
        }
        Sub::Peers { node, json } => {
            // One peer per line: address, then (0.6) its role and the fill of the QRP table
            // it sent us.
            control::request(node, "/peers", |v| {
                let details = v["details"].as_array().cloned().unwrap_or_default();
                for p in v["peers"].as_array().into_iter().flatten() {
                    let addr = p.as_str().unwrap_or_default();
                    let d = details.iter().find(|d| d["addr"].as_str() == Some(addr));
                    if json {
                        let mut rec = serde_json::json!({ "addr": addr });
                        if let Some(d) = d {
                            rec["role"] = d["role"].clone();
                            rec["qrp_fill"] = d["qrp_fill"].clone();
                        }
                        crate::common::print_json(&rec);
                        continue;
                    }
                    match d {
                        Some(d) if v["role"].as_str() != Some("flat04") => {
                            let fill = d["qrp_fill"]
                                .as_f64()
                                .map(|f| format!("qrp {:.2}%", f * 100.0))
                                .unwrap_or_else(|| "qrp -".to_string());
                            println!("{addr}\t{}\t{fill}", d["role"].as_str().unwrap_or_default());
                        }
                        _ => println!("{addr}"),
                    }
                }
            })
            .await
            .with_context(|| format!("asking the servent at {node} (see --node)"))?;
            Ok(())
        }
        Sub::Stats { node, json } => {
            control::request(node, "/stats", |v| {
                if json {
                    crate::common::print_json(&v);
                    return;
                }
                match v.as_object() {
                    Some(m) => {
                        for (k, x) in m {
                            println!("{k}\t{x}");
                        }
                    }
                    None => println!("{v}"),
                }
            })
            .await
            .with_context(|| format!("asking the servent at {node} (see --node)"))?;
            Ok(())
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("reading the current folder")?
        .join(p))
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A one-shot servent: listens on an ephemeral loopback port (for GIV after a Push), joins
/// through `connect`, and waits for the first connection.
async fn join(connect: &[String]) -> Result<Node> {
    let peers = resolve(connect).await?;
    let mut o = NodeOptions::new("127.0.0.1:0".parse()?);
    o.connect = peers.clone();
    o.want_conns = 0;
    let node = Node::start(o).await?;
    if node.wait_peers(1, Duration::from_secs(5)).await? == 0 {
        node.shutdown().await;
        bail!(
            "could not join the network through {} (is a servent running there?)",
            connect.join(", ")
        );
    }
    Ok(node)
}

async fn download_with_bar(node: &Node, hit: &Hit, out: &Path) -> Result<PathBuf> {
    let bar = bar();
    bar.set_length(u64::from(hit.size));
    let (tx, mut rx) = mpsc::channel::<Progress>(64);
    let b2 = bar.clone();
    let ui = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            b2.set_position(p.done);
        }
    });
    let r = node.download(hit, out, Some(tx)).await;
    let _ = ui.await;
    bar.finish_and_clear();
    Ok(r?)
}

/// The demo's Gnutella section: 24 servents on 127.0.0.1 in a random graph; one shares a
/// file that another finds and downloads directly; a firewalled one is reached via Push.
/// Then a Gnutella 0.6 network (ultrapeers, leaves, QRP) finds the same file for far fewer
/// messages, and both simulation scenarios run at 1 000 servents for the report's curves.
pub async fn demo(out: &Path) -> Result<crate::demo::DemoSection> {
    use servent_core::Rng;
    let mut sec = crate::demo::DemoSection::new("gnutella 0.4 / 0.6");
    let dir = out.join("gnutella");
    let shares = dir.join("shares");
    let downloads = dir.join("downloads");
    let _ = std::fs::remove_dir_all(&downloads);
    std::fs::create_dir_all(&downloads).context("creating the demo download folder")?;
    const N: usize = 24;
    let open_holder = 17;
    let walled_holder = 9;
    let mut rng = Rng::new(2026);
    let data: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let walled: Vec<u8> = data.iter().rev().copied().collect();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..N {
        let share = shares.join(format!("n{i}"));
        std::fs::create_dir_all(&share)?;
        if i == open_holder {
            std::fs::write(share.join("Pixies - Debaser.mp3"), &data)?;
        }
        if i == walled_holder {
            std::fs::write(share.join("Behind The Wall.ogg"), &walled)?;
        }
        std::fs::write(
            share.join(format!("notes-{i}.txt")),
            format!("servent {i}\n"),
        )?;
        let mut o = NodeOptions::new("127.0.0.1:0".parse()?);
        o.share = Some(share);
        o.want_conns = 0;
        o.seed = Some(1000 + i as u64);
        o.firewalled = i == walled_holder;
        // Each new servent joins through up to 2 random earlier ones (degree stays small).
        if i > 0 {
            for _ in 0..2.min(i) {
                let j = rng.below(i as u64) as usize;
                let a = nodes[j].local;
                if !o.connect.contains(&a) {
                    o.connect.push(a);
                }
            }
        }
        nodes.push(Node::start(o).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut links = 0;
    for n in &nodes {
        links += n.peers().await?.len();
    }
    sec.row(
        format!("{N} servents on 127.0.0.1 join a random graph (each through 1-2 earlier ones)"),
        format!(
            "{} connections up, mean degree {:.1}",
            links / 2,
            links as f64 / N as f64
        ),
        links >= 2 * (N - 1),
    );
    let seeker = 3;
    let before = total_tx(&nodes).await?;
    let hits = nodes[seeker]
        .search("debaser", None, Duration::from_millis(1500))
        .await?;
    let after = total_tx(&nodes).await?;
    let msgs_04 = after - before;
    let reached = queries_seen(&nodes).await?;
    let hit = hits.first();
    sec.row(
        format!(
            "servent {seeker} searches \"debaser\" (TTL 7), file held by servent {open_holder}"
        ),
        format!(
            "{} hit(s), {} hops, {} messages sent for the query, {} servents reached",
            hits.len(),
            hit.map_or(0, |h| h.hops),
            after - before,
            reached
        ),
        hits.len() == 1,
    );
    if let Some(h) = hit {
        let t0 = tokio::time::Instant::now();
        let p = nodes[seeker].download(h, &downloads, None).await?;
        let secs = t0.elapsed().as_secs_f64();
        let ok = std::fs::read(&p)? == data;
        sec.row(
            "direct HTTP download (GET /get/<index>/<name>/)",
            format!(
                "{} bytes in {:.0} ms ({:.1} MB/s), content {}",
                data.len(),
                secs * 1e3,
                data.len() as f64 / secs.max(1e-9) / 1e6,
                if ok { "identical" } else { "DIFFERENT" }
            ),
            ok,
        );
    }
    let seeker2 = 20;
    let hits = nodes[seeker2]
        .search("wall", None, Duration::from_millis(1500))
        .await?;
    let hit = hits.first().cloned();
    sec.row(
        format!("servent {seeker2} searches \"wall\": holder {walled_holder} refuses inbound connections"),
        format!(
            "{} hit(s), push flag {}",
            hits.len(),
            hit.as_ref().is_some_and(|h| h.push)
        ),
        hit.as_ref().is_some_and(|h| h.push),
    );
    if let Some(h) = hit {
        let t0 = tokio::time::Instant::now();
        let r = nodes[seeker2].download(&h, &downloads, None).await;
        let secs = t0.elapsed().as_secs_f64();
        let (res, ok) = match r {
            Ok(p) => {
                let ok = std::fs::read(&p)? == walled;
                (
                    format!(
                        "{} bytes via Push + GIV in {:.0} ms, content {}",
                        walled.len(),
                        secs * 1e3,
                        if ok { "identical" } else { "DIFFERENT" }
                    ),
                    ok,
                )
            }
            Err(e) => (format!("{e}"), false),
        };
        sec.row(
            "download through Push (holder connects out, sends GIV)",
            res,
            ok,
        );
    }
    let mut dups = 0;
    for n in &nodes {
        dups += n.stats().await?.duplicates;
    }
    sec.notes.push(format!(
        "Flooding costs: the two queries made the {N} servents send the messages counted above; \
         {dups} duplicate descriptors were dropped by loop detection. `servent sim run \
         gnutella-flood` measures the same at 10 000 servents and TTL 1..7."
    ));
    for n in nodes {
        n.shutdown().await;
    }
    demo_06(&mut sec, &shares, &data, msgs_04).await?;
    demo_curves(&mut sec).await?;
    Ok(sec)
}

/// The 0.6 part of the demo: 6 ultrapeers in a full mesh, 40 leaves on 2 of them each; a
/// leaf holds the 0.4 part's file, another leaf finds it; messages per query compared.
async fn demo_06(
    sec: &mut crate::demo::DemoSection,
    shares: &Path,
    data: &[u8],
    msgs_04: u64,
) -> Result<()> {
    use servent_gnutella::servent::PeerRole;
    const UPS: usize = 6;
    const LEAVES: usize = 40;
    let holder = 23;
    let seeker = 5;
    let mut ups: Vec<Node> = Vec::new();
    for i in 0..UPS {
        let mut o = NodeOptions::new("127.0.0.1:0".parse()?);
        o.role = Role::Ultrapeer;
        o.want_conns = 0;
        o.seed = Some(2000 + i as u64);
        o.connect = ups.iter().map(|u| u.local).collect();
        ups.push(Node::start(o).await?);
    }
    let mut leaves: Vec<Node> = Vec::new();
    for i in 0..LEAVES {
        let share = shares.join(format!("leaf{i}"));
        std::fs::create_dir_all(&share)?;
        if i == holder {
            std::fs::write(share.join("Pixies - Debaser.mp3"), data)?;
        }
        std::fs::write(
            share.join(format!("leaf notes {i}.txt")),
            format!("leaf {i}\n"),
        )?;
        let mut o = NodeOptions::new("127.0.0.1:0".parse()?);
        o.role = Role::Leaf;
        o.share = Some(share);
        o.want_conns = 0;
        o.seed = Some(3000 + i as u64);
        // Spread evenly (13 or 14 leaves per ultrapeer, within its 16 leaf slots).
        let a = i % UPS;
        let b = (a + 1 + (i / UPS) % (UPS - 1)) % UPS;
        o.connect = vec![ups[a].local, ups[b].local];
        leaves.push(Node::start(o).await?);
    }
    let mut up_links = 0;
    let mut leaf_links = 0;
    let mut fills = Vec::new();
    // All 40 leaves dial within a millisecond from one address, as hosts behind one NAT
    // starting together would: an ultrapeer takes 16 handshakes at once per address and
    // closes the rest, whose leaves dial again a few seconds later.
    for _ in 0..300 {
        up_links = 0;
        leaf_links = 0;
        fills.clear();
        for u in &ups {
            let (_, infos) = u.peer_infos().await?;
            up_links += infos
                .iter()
                .filter(|p| p.role == PeerRole::Ultrapeer)
                .count();
            for p in infos.iter().filter(|p| p.role == PeerRole::Leaf) {
                leaf_links += 1;
                fills.extend(p.qrp_fill);
            }
        }
        if up_links == UPS * (UPS - 1) && leaf_links == 2 * LEAVES && fills.len() == leaf_links {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let max_fill = fills.iter().copied().fold(0.0f64, f64::max);
    sec.row(
        format!("0.6: {UPS} ultrapeers (full mesh) and {LEAVES} leaves on 2 ultrapeers each, deflated links"),
        format!(
            "{} mesh links, {} leaf links, {} QRP tables at the ultrapeers (fullest {:.3}% of 65 536 slots)",
            up_links / 2,
            leaf_links,
            fills.len(),
            max_fill * 100.0
        ),
        up_links == UPS * (UPS - 1) && leaf_links == 2 * LEAVES && fills.len() == leaf_links,
    );
    let before = total_tx(&ups).await? + total_tx(&leaves).await?;
    let hits = leaves[seeker]
        .search("debaser", None, Duration::from_millis(1500))
        .await?;
    let msgs_06 = total_tx(&ups).await? + total_tx(&leaves).await? - before;
    let mut seen = 0;
    for l in &leaves {
        seen += l.stats().await?.queries_seen;
    }
    let hit = hits.first();
    sec.row(
        format!("leaf {seeker} searches \"debaser\" (held by leaf {holder}): the same file as in 0.4"),
        format!(
            "{} hit(s), {} hops, {} messages sent for the query (0.4: {}), {} of {LEAVES} leaves saw it (QRP)",
            hits.len(),
            hit.map_or(0, |h| h.hops),
            msgs_06,
            msgs_04,
            seen
        ),
        hits.len() == 1 && msgs_06 < msgs_04 && seen == 1,
    );
    if let Some(h) = hit {
        let urn = h.sha1.map(|s| servent_gnutella::library::sha1_urn(&s));
        let body = match &urn {
            Some(u) => n2r(h.addr, u).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let ok = body == data;
        sec.row(
            "download by hash: GET /uri-res/N2R?<urn:sha1 from the QueryHit>",
            format!(
                "{}: {} bytes, content {}",
                urn.as_deref().unwrap_or("no urn in the hit"),
                body.len(),
                if ok { "identical" } else { "DIFFERENT" }
            ),
            ok,
        );
    }
    for n in ups.into_iter().chain(leaves) {
        n.shutdown().await;
    }
    Ok(())
}

/// Fetches `GET /uri-res/N2R?<urn>` and returns the body.
async fn n2r(addr: std::net::SocketAddrV4, urn: &str) -> Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(SocketAddr::V4(addr)),
    )
    .await??;
    s.write_all(format!("GET /uri-res/N2R?{urn} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await??;
    let start = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(all.len(), |p| p + 4);
    Ok(all.split_off(start))
}

/// Runs gnutella-flood and gnutella-hybrid on the same 1 000 servents and queries and adds
/// their rare-file curves to the section.
async fn demo_curves(sec: &mut crate::demo::DemoSection) -> Result<()> {
    use servent_gnutella::{flood, hybrid};
    use servent_sim::{Plot, Series};
    let (f, h) = tokio::task::spawn_blocking(|| {
        let mut fp = flood::FloodParams::new(1000, 1);
        fp.queries = 20;
        fp.rare = 0.005;
        let mut hp = hybrid::HybridParams::new(1000, 1);
        hp.queries = 20;
        hp.rare = 0.005;
        hp.qrp_slots = 1 << 11;
        (flood::run(&fp), hybrid::run(&hp))
    })
    .await?;
    let (f, h) = (f?, h?);
    let curve = |pts: &[flood::FloodPoint], y: fn(&flood::FloodPoint) -> f64| {
        pts.iter()
            .filter(|p| p.file == "rare")
            .map(|p| (f64::from(p.ttl), y(p)))
            .collect::<Vec<_>>()
    };
    for (name, title, ylab, y) in [
        (
            "gnutella-success-flood-vs-hybrid",
            "Rare file (0.5%): success vs TTL, 1 000 servents",
            "success rate",
            flood::FloodPoint::success_rate as fn(&flood::FloodPoint) -> f64,
        ),
        (
            "gnutella-msgs-flood-vs-hybrid",
            "Rare file (0.5%): messages per query vs TTL, 1 000 servents",
            "descriptors sent",
            flood::FloodPoint::msgs_per_query,
        ),
    ] {
        sec.plots.push(Plot {
            name: name.into(),
            title: title.into(),
            x_label: "TTL".into(),
            y_label: ylab.into(),
            log_x: false,
            series: vec![
                Series {
                    name: "0.4 flooding".into(),
                    points: curve(&f.points, y),
                },
                Series {
                    name: "0.6 ultrapeers + QRP".into(),
                    points: curve(&h.points, y),
                },
            ],
        });
    }
    let fl = f.point(7, "rare");
    let hy = h.point(3, "rare");
    let (fs, fm) = fl.map_or((0.0, 0.0), |p| (p.success_rate(), p.msgs_per_query()));
    let (hs, hm) = hy.map_or((0.0, 0.0), |p| (p.success_rate(), p.msgs_per_query()));
    sec.row(
        "simulated, 1 000 servents, same holders and queries: flood TTL 7 vs hybrid TTL 3 (rare file)",
        format!(
            "success {fs:.2} vs {hs:.2}; {fm:.0} vs {hm:.0} messages per query ({:.0}x fewer)",
            fm / hm.max(1e-9)
        ),
        hs >= fs && hm * 10.0 <= fm,
    );
    sec.notes.push(
        "Gnutella 0.6: a leaf's query goes to its ultrapeers only; an ultrapeer passes it to a \
         leaf only when the leaf's QRP table has every keyword, and to a neighbouring \
         ultrapeer on the last hop only when that ultrapeer's merged table does. `servent sim \
         run gnutella-hybrid` vs `gnutella-flood` measures it at 10 000 servents."
            .into(),
    );
    Ok(())
}

async fn total_tx(nodes: &[Node]) -> Result<u64> {
    let mut t = 0;
    for n in nodes {
        t += n.stats().await?.tx_total();
    }
    Ok(t)
}

async fn queries_seen(nodes: &[Node]) -> Result<u64> {
    let mut t = 0;
    for n in nodes {
        t += n.stats().await?.queries_seen;
    }
    Ok(t)
}
