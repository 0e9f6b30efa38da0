//! `servent chord`: run a Chord node, and talk to any node of a ring (lookup with the route
//! hop by hop, finger tables as the lecture prints them, put/get/delete, the ring, stats).
//!
//! The protocol lives in `servent-chord` (a sans-IO core); this module parses arguments and
//! prints, and runs the core under the tokio driver (`servent_chord::driver`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_chord::Limits;
use servent_chord::driver::{Client, Member, MemberOpts, fmt_id, start_member};
use servent_core::{Id, Ring};
use servent_sim::{Scenario, ScenarioOpts};

use crate::common::{self, EXIT_CODES_HELP, NotFound, parse_duration, print_json};
use crate::demo::DemoSection;

/// Chord: a distributed lookup service and a replicated key-value store.
#[derive(Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

/// The running node a client command asks, and how long it waits.
#[derive(Args, Debug)]
struct Target {
    /// The running ring member to ask (its `--listen` address).
    #[arg(long, value_name = "ADDR")]
    node: SocketAddr,
    /// How long to wait for each answer (e.g. 500ms, 3s).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
}

impl Target {
    async fn client(&self) -> Result<Client> {
        let mut c = Client::new(self.node)
            .await
            .context("opening a client socket")?;
        c.set_timeout(self.timeout);
        Ok(c)
    }
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Run a ring member until Ctrl-C or SIGTERM (then it hands its keys over, leaves and
    /// prints a summary).
    #[command(after_help = EXIT_CODES_HELP)]
    Run(RunArgs),
    /// Look a key up, starting at --node: prints the route hop by hop and the responsible node.
    #[command(after_help = EXIT_CODES_HELP)]
    Lookup {
        /// The key: a decimal number (0..2^m) or 40 hex digits is taken as an identifier as
        /// is (as in the lecture's "key 3"); anything else is hashed with SHA-1.
        key: String,
        #[command(flatten)]
        target: Target,
        /// Hash the key with SHA-1 even if it looks like a number.
        #[arg(long)]
        hash: bool,
        /// One JSON object: key, route, responsible, hops.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's finger table as the lecture does (Entry | Start | Node).
    #[command(after_help = EXIT_CODES_HELP)]
    Fingers {
        #[command(flatten)]
        target: Target,
        /// One JSON object per entry.
        #[arg(long)]
        json: bool,
    },
    /// Store a value under a key (on the key's successor and its replicas).
    #[command(after_help = EXIT_CODES_HELP)]
    Put {
        /// The key (hashed with SHA-1).
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Fetch the value under a key (exit 3 when no replica has it).
    #[command(after_help = EXIT_CODES_HELP)]
    Get {
        /// The key.
        key: String,
        #[command(flatten)]
        target: Target,
        /// One JSON object: key, value, node.
        #[arg(long)]
        json: bool,
    },
    /// Delete a key (exit 3 when it did not exist).
    #[command(after_help = EXIT_CODES_HELP)]
    Delete {
        /// The key.
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the ring, walking successors from --node.
    #[command(after_help = EXIT_CODES_HELP)]
    Ring {
        #[command(flatten)]
        target: Target,
        /// Stop after this many nodes.
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max: u32,
        /// One JSON object per node.
        #[arg(long)]
        json: bool,
    },
    /// A running node's counters: neighbours, keys held, requests served, datagrams dropped
    /// and why.
    #[command(after_help = EXIT_CODES_HELP)]
    Stats {
        #[command(flatten)]
        target: Target,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:4000", value_name = "ADDR")]
    listen: SocketAddr,
    /// A ring member to join through, or a file of addresses one per line (repeatable;
    /// tried in order). Without it, a new ring is created. `--join` is the old spelling.
    #[arg(long, alias = "join", value_name = "ADDR|FILE")]
    bootstrap: Vec<String>,
    /// Identifier bits m, 1..=160 (the lecture uses 5; 160 = SHA-1). Every node of a
    /// ring must use the same m.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(1..=160))]
    bits: u32,
    /// The node's id, 0..2^m (decimal, or 40 hex digits); default: SHA-1 of "ip:port"
    /// mod 2^m. An id outside the ring is an error, never reduced.
    #[arg(long)]
    id: Option<String>,
    /// Successor list length r, 1..=64 (also the number of copies of each key).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    successors: u32,
    /// Period of stabilize (e.g. 500ms, 2s).
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    stabilize: Duration,
    /// Period of fix_fingers (one finger refreshed per period).
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    fix_fingers: Duration,
    /// Folder for the node's state: `node.addr` (its address, for scripts) is written at
    /// start.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Largest datagram accepted, in bytes, 64..=16384.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(64..=16384))]
    max_datagram: u32,
    /// Requests one source IP may send per second on average, 1..=1000000 (loopback is
    /// exempt); over it they are dropped.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate_per_ip: u32,
    /// Requests one source IP may send at once, 1..=1000000.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    burst_per_ip: u32,
    /// Most key-value pairs stored (primary and replica copies), 1..=100000000.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    max_items: u32,
    /// Most bytes of keys and values stored, in MiB, 1..=65536.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_store_mib: u32,
    /// Most requests of ours in flight, 16..=4096.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=4096))]
    max_pending: u32,
}

/// Parses an id given as decimal or as 40 hex digits.
fn parse_id(s: &str) -> Option<Id> {
    if let Ok(v) = s.parse::<u64>() {
        return Some(Id::from_u64(v));
    }
    if s.len() == 40 {
        return s.parse::<Id>().ok();
    }
    None
}

/// Parses `s` as an id of the ring with `bits` bits: an id ≥ 2^m is an error naming the
/// range, never silently reduced.
fn parse_ring_id(what: &str, s: &str, bits: u32) -> Result<Id> {
    let id =
        parse_id(s).with_context(|| format!("{what} {s}: a decimal number or 40 hex digits"))?;
    let ring = Ring::new(bits).context("ring bits")?;
    if ring.reduce(&id) != id {
        bail!(
            "{what} {s} is outside the ring: with m = {bits} ids are 0..={}",
            ring_max(bits)
        );
    }
    Ok(id)
}

/// 2^m − 1, as the user would write it.
fn ring_max(bits: u32) -> String {
    if bits < 128 {
        ((1u128 << bits) - 1).to_string()
    } else {
        format!("2^{bits}-1")
    }
}

/// m of the ring `node` belongs to (from its finger table).
async fn ring_bits(c: &mut Client, node: SocketAddr) -> Result<u32> {
    Ok(c.fingers(node)
        .await
        .with_context(|| {
            format!("asking {node} for its finger table (is a chord node running there?)")
        })?
        .bits)
}

fn node_json(bits: u32, n: &servent_chord::NodeRef) -> serde_json::Value {
    serde_json::json!({ "id": fmt_id(bits, &n.id), "addr": n.addr.to_string() })
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.action {
        Action::Run(a) => run_member(a).await,
        Action::Lookup {
            key,
            target,
            hash,
            json,
        } => {
            let node = target.node;
            let mut c = target.client().await?;
            let bits = ring_bits(&mut c, node).await?;
            let id = match (hash, parse_id(&key)) {
                (false, Some(_)) => parse_ring_id("key", &key, bits)
                    .context("(use --hash to hash it with SHA-1 instead)")?,
                _ => Id::hash(key.as_bytes()),
            };
            let r = c
                .lookup(node, id)
                .await
                .with_context(|| format!("looking up {key} from {node}"))?;
            c.close().await?;
            let hops = r.route.len().saturating_sub(1);
            if json {
                print_json(&serde_json::json!({
                    "key": key,
                    "id": fmt_id(bits, &r.key),
                    "bits": bits,
                    "start": node.to_string(),
                    "route": r.route.iter().map(|h| fmt_id(bits, h)).collect::<Vec<_>>(),
                    "responsible": node_json(bits, &r.responsible),
                    "hops": hops,
                }));
                return Ok(());
            }
            println!(
                "lookup of key {key} (id {}) starting at {node}, m = {bits}",
                fmt_id(bits, &r.key)
            );
            for (i, hop) in r.route.iter().enumerate() {
                println!("  hop {i}: node {}", fmt_id(bits, hop));
            }
            println!(
                "responsible: node {} ({})",
                fmt_id(bits, &r.responsible.id),
                r.responsible.addr
            );
            println!(
                "path length: {hops} hops (counted to the key's predecessor, as the paper does)"
            );
            Ok(())
        }
        Action::Fingers { target, json } => {
            let node = target.node;
            let mut c = target.client().await?;
            let t = c
                .fingers(node)
                .await
                .with_context(|| format!("asking {node} for its finger table"))?;
            c.close().await?;
            if json {
                for (i, start, n) in &t.rows {
                    print_json(&serde_json::json!({
                        "entry": i,
                        "start": fmt_id(t.bits, start),
                        "node": n.map(|n| node_json(t.bits, &n)),
                    }));
                }
                return Ok(());
            }
            println!(
                "finger table of node {} ({}), m = {}",
                fmt_id(t.bits, &t.node.id),
                t.node.addr,
                t.bits
            );
            let w = if t.bits <= 64 { 6 } else { 40 };
            println!("{:>5} | {:>w$} | {:>w$}", "Entry", "Start", "Node");
            for (i, start, n) in &t.rows {
                let node = n.map_or("-".to_string(), |n| fmt_id(t.bits, &n.id));
                println!("{i:>5} | {:>w$} | {node:>w$}", fmt_id(t.bits, start));
            }
            Ok(())
        }
        Action::Put { key, value, target } => {
            let node = target.node;
            let mut c = target.client().await?;
            let at = c
                .put(node, key.as_bytes(), value.as_bytes())
                .await
                .with_context(|| format!("storing {key}"))?;
            let bits = ring_bits(&mut c, node).await?;
            c.close().await?;
            println!(
                "stored {key} on node {} ({})",
                fmt_id(bits, &at.id),
                at.addr
            );
            Ok(())
        }
        Action::Get { key, target, json } => {
            let node = target.node;
            let mut c = target.client().await?;
            let (v, at) = c
                .get(node, key.as_bytes())
                .await
                .with_context(|| format!("fetching {key}"))?;
            c.close().await?;
            let Some(v) = v else {
                return Err(NotFound(format!("no value under {key:?}")).into());
            };
            if json {
                print_json(&serde_json::json!({
                    "key": key,
                    "value": String::from_utf8_lossy(&v),
                    "node": at.addr.to_string(),
                }));
            } else {
                println!("{}", String::from_utf8_lossy(&v));
                tracing::info!(node = %at.addr, "answered by");
            }
            Ok(())
        }
        Action::Delete { key, target } => {
            let node = target.node;
            let mut c = target.client().await?;
            let existed = c
                .delete(node, key.as_bytes())
                .await
                .with_context(|| format!("deleting {key}"))?;
            c.close().await?;
            if !existed {
                return Err(NotFound(format!("no key {key:?} to delete")).into());
            }
            println!("deleted {key}");
            Ok(())
        }
        Action::Ring { target, max, json } => {
            let node = target.node;
            let mut c = target.client().await?;
            let bits = ring_bits(&mut c, node).await?;
            let ring = c
                .ring(node, max as usize)
                .await
                .context("walking the ring")?;
            c.close().await?;
            if json {
                for n in &ring {
                    print_json(&node_json(bits, n));
                }
                return Ok(());
            }
            println!("{} nodes, m = {bits}, clockwise from {node}:", ring.len());
            for n in &ring {
                println!("  {}  {}", fmt_id(bits, &n.id), n.addr);
            }
            Ok(())
        }
        Action::Stats { target, json } => {
            let node = target.node;
            let mut c = target.client().await?;
            let s = c
                .stats(node)
                .await
                .with_context(|| format!("asking {node} for its counters"))?;
            c.close().await?;
            if json {
                let mut o = serde_json::Map::new();
                o.insert("node".into(), node_json(s.bits, &s.node));
                o.insert("bits".into(), s.bits.into());
                o.insert(
                    "predecessor".into(),
                    s.pred.map(|p| node_json(s.bits, &p)).into(),
                );
                for (k, v) in &s.values {
                    o.insert((*k).into(), (*v).into());
                }
                print_json(&serde_json::Value::Object(o));
                return Ok(());
            }
            println!(
                "node {} ({}), m = {}, predecessor {}",
                fmt_id(s.bits, &s.node.id),
                s.node.addr,
                s.bits,
                s.pred
                    .map_or("unknown".to_string(), |p| fmt_id(s.bits, &p.id))
            );
            for (k, v) in &s.values {
                println!("  {k:<20} {v}");
            }
            Ok(())
        }
    }
}

async fn run_member(a: RunArgs) -> Result<()> {
    let bits = a.bits;
    let mut o = MemberOpts::new(a.listen);
    o.bits = bits;
    o.succ_list_len = a.successors as usize;
    o.stabilize_every = a.stabilize;
    o.fix_fingers_every = a.fix_fingers;
    o.limits = Limits {
        max_datagram: a.max_datagram as usize,
        max_pending: a.max_pending as usize,
        rate_per_ip: f64::from(a.rate_per_ip),
        burst_per_ip: f64::from(a.burst_per_ip),
        max_items: a.max_items as usize,
        max_bytes: (a.max_store_mib as usize) << 20,
    };
    if let Some(s) = &a.id {
        o.id = Some(parse_ring_id("--id", s, bits)?);
    }
    let bootstrap = common::bootstrap_addrs(&a.bootstrap)?;
    if !a.bootstrap.is_empty() && bootstrap.is_empty() {
        bail!("--bootstrap gave no addresses");
    }
    o.bootstrap = bootstrap.clone();
    let started = std::time::Instant::now();
    let mut m = start_member(o)
        .await
        .with_context(|| match bootstrap.as_slice() {
            [] => format!("starting a ring on {}", a.listen),
            [one] => format!("joining the ring through {one}"),
            many => format!("joining the ring through any of {} nodes", many.len()),
        })?;
    if let Some(dir) = &a.data {
        common::write_state_file(&dir.join("node.addr"), &format!("{}\n", m.me.addr))?;
    }
    println!(
        "chord node {} listening on {} (m = {bits}); {}; Ctrl-C leaves the ring",
        fmt_id(bits, &m.me.id),
        m.me.addr,
        match m.joined_via {
            Some(j) => format!("joined through {j}"),
            None => "new ring".to_string(),
        }
    );
    let stop = common::stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            e = m.handle.next_event() => match e {
                Some(e) => tracing::info!(event = ?e, "chord"),
                None => bail!("the node stopped"),
            },
        }
    }
    let node = m.leave().await?;
    let s = node.stats();
    println!(
        "left the ring after {}: handed {} keys to the successor; served {} requests, \
         dropped {} malformed, {} oversized, {} over the rate limit, {} from other rings",
        common::fmt_duration(started.elapsed()),
        node.stored(),
        s.requests_in,
        s.malformed,
        s.oversized,
        s.rate_limited,
        s.wrong_ring
    );
    Ok(())
}

/// The demo's Chord section: the lecture's rings on 127.0.0.1, a 64-node ring with lookups
/// and a failure, and the path-length simulation.
pub async fn demo(out: &Path) -> Result<DemoSection> {
    let mut sec = DemoSection::new("Chord");

    // 1. The lecture's first ring, nodes joining one by one.
    let a = lecture_ring(&[1, 4, 8, 11, 14, 17], 5).await?;
    let n8 = addr_of(&a, 8)?;
    let mut c = Client::new(n8).await?;
    let want: Vec<(u64, u64)> = vec![(9, 11), (10, 11), (12, 14), (16, 17), (24, 1)];
    let mut got = Vec::new();
    for _ in 0..100 {
        got = c
            .fingers(n8)
            .await
            .map(|t| {
                t.rows
                    .iter()
                    .map(|(_, s, n)| (s.low_u64(), n.map_or(99, |n| n.id.low_u64())))
                    .collect()
            })
            .unwrap_or_default();
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sec.row(
        "m = 5, nodes {1,4,8,11,14,17} join one by one: node 8's fingers",
        got.iter()
            .map(|(s, n)| format!("{s}→{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        got == want,
    );
    let (r3, resp) = route(&mut c, n8, 3).await;
    sec.row(
        "lookup of key 3 at node 8",
        format!("route {r3:?}, answer {resp}"),
        r3 == [8, 1] && resp == 4,
    );
    c.close().await?;
    for m in a {
        m.kill().await?;
    }

    // 2. The second ring.
    let b = lecture_ring(&[1, 4, 9, 11, 14, 18, 20, 21, 28], 5).await?;
    let (n1, n28) = (addr_of(&b, 1)?, addr_of(&b, 28)?);
    let mut c = Client::new(n1).await?;
    let mut r26 = (Vec::new(), 0);
    let mut r12 = (Vec::new(), 0);
    for _ in 0..100 {
        r26 = route(&mut c, n1, 26).await;
        r12 = route(&mut c, n28, 12).await;
        if r26 == (vec![1, 18, 20, 21], 28) && r12 == (vec![28, 4, 9, 11], 14) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sec.row(
        "m = 5, nodes {1,4,9,11,14,18,20,21,28}: key 26 at node 1",
        format!("route {:?}, answer {}", r26.0, r26.1),
        r26 == (vec![1, 18, 20, 21], 28),
    );
    sec.row(
        "same ring: key 12 at node 28",
        format!("route {:?}, answer {}", r12.0, r12.1),
        r12 == (vec![28, 4, 9, 11], 14),
    );
    c.close().await?;
    for m in b {
        m.kill().await?;
    }

    // 3. 64 nodes, m = 160: keys, lookups, a failure.
    let mut big = Vec::new();
    for _ in 0..64u64 {
        let mut o = fast_opts(160, 6);
        o.bootstrap = big
            .first()
            .map(|m: &Member| m.me.addr)
            .into_iter()
            .collect();
        big.push(start_member(o).await.context("starting a 64-node ring")?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let entry = big.first().map(|m| m.me.addr).context("empty ring")?;
    let mut c = Client::new(entry).await?;
    for k in 0..100 {
        c.put(
            entry,
            format!("key-{k}").as_bytes(),
            format!("value-{k}").as_bytes(),
        )
        .await
        .context("put")?;
    }
    let started = std::time::Instant::now();
    let mut hops = 0usize;
    let lookups = 300;
    for k in 0..lookups {
        let r = c
            .lookup(entry, Id::hash(format!("probe-{k}").as_bytes()))
            .await?;
        hops += r.route.len().saturating_sub(1);
    }
    let secs = started.elapsed().as_secs_f64();
    sec.row(
        "64-node ring on 127.0.0.1 (m = 160): 300 sequential lookups from a client",
        format!(
            "{:.0} lookups/s, mean path {:.2} hops from the entry node (½·log2 64 = 3)",
            lookups as f64 / secs.max(1e-9),
            hops as f64 / lookups as f64
        ),
        true,
    );
    let victim = big.remove(17);
    let victim_id = victim.me.id;
    victim.kill().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut found = 0;
    for k in 0..100 {
        if let Ok((Some(v), _)) = c.get(entry, format!("key-{k}").as_bytes()).await {
            if v == format!("value-{k}").into_bytes() {
                found += 1;
            }
        }
    }
    sec.row(
        format!(
            "kill node {:.8}… without warning, then get all 100 keys",
            victim_id.to_string()
        ),
        format!("{found}/100 found (r = 6 replicas)"),
        found == 100,
    );
    c.close().await?;
    for m in big {
        m.kill().await?;
    }

    // 4. The simulator: path length up to 2^14 nodes.
    let opts = ScenarioOpts {
        params: Default::default(),
        nodes: Some(1 << 14),
        seed: 1,
        out: out.join("chord-pathlen"),
    };
    let rep = tokio::task::block_in_place(|| servent_chord::scenarios::PathLen.run(&opts))?;
    rep.write(&opts.out)?;
    let dev = rep
        .get("worst_dev_from_half_log2n_n_ge_1024")
        .unwrap_or_default()
        .to_string();
    sec.row(
        "simulator: path length for N = 2^4..2^14 vs the paper's ½·log2 N",
        format!("worst deviation for N ≥ 1024: {dev}"),
        dev.parse::<f64>().is_ok_and(|d| d < 0.05),
    );
    sec.plots.extend(rep.plots);
    sec.notes.push(
        "Hops are counted as the paper counts them: forwarding hops from the start node to \
         the key's predecessor; the final hop to the successor adds one."
            .into(),
    );
    Ok(sec)
}

fn fast_opts(bits: u32, r: usize) -> MemberOpts {
    let mut o = MemberOpts::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    o.bits = bits;
    o.succ_list_len = r;
    o.stabilize_every = Duration::from_millis(50);
    o.fix_fingers_every = Duration::from_millis(10);
    o
}

async fn lecture_ring(ids: &[u64], bits: u32) -> Result<Vec<Member>> {
    let ring = Ring::new(bits).context("ring bits")?;
    let mut v: Vec<Member> = Vec::new();
    for &id in ids {
        let mut o = fast_opts(bits, 3);
        o.id = Some(ring.id(id));
        o.bootstrap = v.first().map(|m| m.me.addr).into_iter().collect();
        v.push(
            start_member(o)
                .await
                .with_context(|| format!("starting node {id}"))?,
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    Ok(v)
}

fn addr_of(v: &[Member], id: u64) -> Result<SocketAddr> {
    v.iter()
        .find(|m| m.me.id == Id::from_u64(id))
        .map(|m| m.me.addr)
        .with_context(|| format!("no node {id}"))
}

async fn route(c: &mut Client, at: SocketAddr, key: u64) -> (Vec<u64>, u64) {
    match c.lookup(at, Id::from_u64(key)).await {
        Ok(r) => (
            r.route.iter().map(|i| i.low_u64()).collect(),
            r.responsible.id.low_u64(),
        ),
        Err(_) => (Vec::new(), 0),
    }
}
