//! `servent chord`: run a Chord node, and talk to any node of a ring (lookup with the route
//! hop by hop, finger tables as the lecture prints them, put/get/delete, the ring).
//!
//! The protocol lives in `servent-chord` (a sans-IO core); this module parses arguments and
//! prints, and runs the core under the tokio driver (`servent_chord::driver`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_chord::driver::{Client, Member, MemberOpts, fmt_id, start_member};
use servent_core::{Id, Ring};
use servent_sim::{Scenario, ScenarioOpts};

use crate::demo::DemoSection;

/// Chord: a distributed lookup service and a replicated key-value store.
#[derive(Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Run a ring member until Ctrl-C (then it hands its keys over and leaves).
    Run {
        /// UDP address to listen on.
        #[arg(long, default_value = "127.0.0.1:4000")]
        listen: SocketAddr,
        /// Any member of the ring to join; without it, a new ring is created.
        #[arg(long)]
        join: Option<SocketAddr>,
        /// Identifier bits m, 1..=160 (the lecture uses 5; 160 = SHA-1). Every node of a
        /// ring must use the same m.
        #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(1..=160))]
        bits: u32,
        /// The node's id, 0..2^m (decimal, or 40 hex digits); default: SHA-1 of "ip:port"
        /// mod 2^m. An id outside the ring is an error, never reduced.
        #[arg(long)]
        id: Option<String>,
        /// Successor list length r (also the number of copies of each key).
        #[arg(long, default_value_t = 8)]
        successors: usize,
    },
    /// Look a key up, starting at --node: prints the route hop by hop and the responsible node.
    Lookup {
        /// The key: a decimal number or 40 hex digits is taken as an identifier as is (as in
        /// the lecture's "key 3"); anything else is hashed with SHA-1.
        key: String,
        /// The node to start at.
        #[arg(long)]
        node: SocketAddr,
        /// Hash the key with SHA-1 even if it looks like a number.
        #[arg(long)]
        hash: bool,
    },
    /// Print a node's finger table as the lecture does (Entry | Start | Node).
    Fingers {
        /// The node.
        #[arg(long)]
        node: SocketAddr,
    },
    /// Store a value under a key (on the key's successor and its replicas).
    Put {
        /// The key (hashed with SHA-1).
        key: String,
        /// The value.
        value: String,
        /// Any ring member.
        #[arg(long)]
        node: SocketAddr,
    },
    /// Fetch the value under a key.
    Get {
        /// The key.
        key: String,
        /// Any ring member.
        #[arg(long)]
        node: SocketAddr,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
        /// Any ring member.
        #[arg(long)]
        node: SocketAddr,
    },
    /// List the ring, walking successors from --node.
    Ring {
        /// Any ring member.
        #[arg(long)]
        node: SocketAddr,
        /// Stop after this many nodes.
        #[arg(long, default_value_t = 4096)]
        max: usize,
    },
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

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.action {
        Action::Run {
            listen,
            join,
            bits,
            id,
            successors,
        } => run_member(listen, join, bits, id, successors).await,
        Action::Lookup { key, node, hash } => {
            let mut c = Client::new(node).await?;
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
                "path length: {} hops (counted to the key's predecessor, as the paper does)",
                r.route.len().saturating_sub(1)
            );
            c.close().await?;
            Ok(())
        }
        Action::Fingers { node } => {
            let mut c = Client::new(node).await?;
            let t = c
                .fingers(node)
                .await
                .with_context(|| format!("asking {node} for its finger table"))?;
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
            c.close().await?;
            Ok(())
        }
        Action::Put { key, value, node } => {
            let mut c = Client::new(node).await?;
            let at = c
                .put(node, key.as_bytes(), value.as_bytes())
                .await
                .with_context(|| format!("storing {key}"))?;
            let bits = ring_bits(&mut c, node).await?;
            println!(
                "stored {key} on node {} ({})",
                fmt_id(bits, &at.id),
                at.addr
            );
            c.close().await?;
            Ok(())
        }
        Action::Get { key, node } => {
            let mut c = Client::new(node).await?;
            let (v, at) = c
                .get(node, key.as_bytes())
                .await
                .with_context(|| format!("fetching {key}"))?;
            c.close().await?;
            match v {
                Some(v) => {
                    println!("{}", String::from_utf8_lossy(&v));
                    tracing::info!(node = %at.addr, "answered by");
                    Ok(())
                }
                None => bail!("no value under {key}"),
            }
        }
        Action::Delete { key, node } => {
            let mut c = Client::new(node).await?;
            let existed = c
                .delete(node, key.as_bytes())
                .await
                .with_context(|| format!("deleting {key}"))?;
            c.close().await?;
            println!("{}", if existed { "deleted" } else { "no such key" });
            Ok(())
        }
        Action::Ring { node, max } => {
            let mut c = Client::new(node).await?;
            let bits = ring_bits(&mut c, node).await?;
            let ring = c.ring(node, max).await.context("walking the ring")?;
            println!("{} nodes, m = {bits}, clockwise from {node}:", ring.len());
            for n in &ring {
                println!("  {}  {}", fmt_id(bits, &n.id), n.addr);
            }
            c.close().await?;
            Ok(())
        }
    }
}

async fn run_member(
    listen: SocketAddr,
    join: Option<SocketAddr>,
    bits: u32,
    id: Option<String>,
    successors: usize,
) -> Result<()> {
    let mut o = MemberOpts::new(listen);
    o.join = join;
    o.bits = bits;
    o.succ_list_len = successors;
    if let Some(s) = id {
        o.id = Some(parse_ring_id("--id", &s, bits)?);
    }
    let mut m = start_member(o).await.with_context(|| match join {
        Some(j) => format!("joining the ring through {j}"),
        None => format!("starting a ring on {listen}"),
    })?;
    println!(
        "chord node {} listening on {} (m = {bits}); {}; Ctrl-C leaves the ring",
        fmt_id(bits, &m.me.id),
        m.me.addr,
        match join {
            Some(j) => format!("joined through {j}"),
            None => "new ring".to_string(),
        }
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            e = m.handle.next_event() => match e {
                Some(e) => tracing::info!(event = ?e, "chord"),
                None => bail!("the node stopped"),
            },
        }
    }
    println!("leaving: handing keys to the successor");
    m.leave().await?;
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
    for k in 0..64u64 {
        let mut o = fast_opts(160, 6, 7000 + k);
        o.join = big.first().map(|m: &Member| m.me.addr);
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

fn fast_opts(bits: u32, r: usize, seed: u64) -> MemberOpts {
    let mut o = MemberOpts::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    o.bits = bits;
    o.succ_list_len = r;
    o.stabilize_every = Duration::from_millis(50);
    o.fix_fingers_every = Duration::from_millis(10);
    o.seed = seed;
    o
}

async fn lecture_ring(ids: &[u64], bits: u32) -> Result<Vec<Member>> {
    let ring = Ring::new(bits).context("ring bits")?;
    let mut v: Vec<Member> = Vec::new();
    for &id in ids {
        let mut o = fast_opts(bits, 3, id);
        o.id = Some(ring.id(id));
        o.join = v.first().map(|m| m.me.addr);
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
