//! `servent dht`: the mainline DHT (BEP 5). Run a long-lived node, look peers up for an
//! info-hash, announce one, show a node's routing table and counters.
//!
//! The protocol lives in `servent-kademlia` (a sans-IO core); this module parses
//! arguments, resolves bootstrap hosts and prints.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_core::Id;
use servent_kademlia::Event;
use servent_kademlia::client::{ClientOpts, DhtClient, SavedState};

use crate::demo::{DemoRow, DemoSection};

/// Mainline DHT (BEP 5): every BitTorrent client a lightweight tracker.
#[derive(Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Run a DHT node until Ctrl-C; its routing table is saved on exit and every 30 s.
    Run {
        /// UDP address to listen on.
        #[arg(long, default_value = "127.0.0.1:6881")]
        listen: SocketAddr,
        /// A node to join through (HOST:PORT; repeatable). Without one, the saved table is
        /// used, or the node waits to be contacted.
        #[arg(long)]
        bootstrap: Vec<String>,
        /// State file (routing table, id, counters); default `dht-IP-PORT.state` here.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Node id (40 hex digits); default: the saved one, else random.
        #[arg(long)]
        id: Option<Id>,
    },
    /// Find peers for an info-hash; prints one ip:port per line, exits non-zero when none.
    Lookup {
        /// The info-hash (40 hex digits).
        info_hash: Id,
        /// A node to join through (HOST:PORT; repeatable).
        #[arg(long, required = true)]
        bootstrap: Vec<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Announce that a BitTorrent peer on --port has the torrent (to the 8 closest nodes).
    Announce {
        /// The info-hash (40 hex digits).
        info_hash: Id,
        /// The peer's TCP port.
        #[arg(long)]
        port: u16,
        /// A node to join through (HOST:PORT; repeatable).
        #[arg(long, required = true)]
        bootstrap: Vec<String>,
        /// Ask nodes to use this command's UDP source port instead of --port.
        #[arg(long)]
        implied_port: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Show a node's routing table and counters from its state file.
    Stats {
        /// The state file of the node (`servent dht run --state`).
        #[arg(long)]
        state: Option<PathBuf>,
        /// ... or the node's --listen address, to find its default state file.
        #[arg(long, default_value = "127.0.0.1:6881")]
        listen: SocketAddr,
    },
}

fn default_state(listen: SocketAddr) -> PathBuf {
    PathBuf::from(format!("dht-{}-{}.state", listen.ip(), listen.port()))
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    servent_core::rng::seed_from_env(t ^ u64::from(std::process::id()).rotate_left(32))
}

async fn resolve(hosts: &[String]) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for h in hosts {
        let addrs = tokio::net::lookup_host(h.as_str())
            .await
            .with_context(|| format!("resolving bootstrap node {h} (give HOST:PORT)"))?;
        out.extend(addrs.filter(SocketAddr::is_ipv4).take(4));
    }
    if out.is_empty() && !hosts.is_empty() {
        bail!("no IPv4 address for the bootstrap nodes {hosts:?} (the DHT speaks IPv4 only)");
    }
    Ok(out)
}

/// A one-shot node: on loopback when every bootstrap node is, else on all interfaces.
async fn one_shot(bootstrap: &[String], timeout: u64) -> Result<DhtClient> {
    let nodes = resolve(bootstrap).await?;
    let ip = if nodes.iter().all(|a| a.ip().is_loopback()) {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let mut o = ClientOpts::new(format!("{ip}:0").parse()?, seed());
    o.timeout = Duration::from_secs(timeout.max(1));
    let mut c = DhtClient::start(o).await.context("starting the DHT node")?;
    let n = c.bootstrap(nodes).await.context("bootstrapping")?;
    if n == 0 {
        bail!("no DHT node answered: is a node running at {bootstrap:?}?");
    }
    Ok(c)
}

/// Runs `servent dht ...`.
pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.action {
        Action::Run {
            listen,
            bootstrap,
            state,
            id,
        } => {
            let state = state.unwrap_or_else(|| default_state(listen));
            let nodes = resolve(&bootstrap).await?;
            let mut o = ClientOpts::new(listen, seed());
            o.state = Some(state.clone());
            o.id = id;
            let mut c = DhtClient::start(o)
                .await
                .with_context(|| format!("starting the DHT node on {listen}"))?;
            println!("dht node {} listening on udp {}", hex_id(&c.id), c.local);
            let n = c.bootstrap(nodes).await.unwrap_or(0);
            println!("routing table: {n} nodes; state file {}", state.display());
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = tick.tick() => {
                        let s = c.snapshot().await?;
                        tracing::info!(nodes = s.nodes.len(), "state saved");
                        for (h, p) in c.take_announced() {
                            println!("announce {} {p}", hex_id(&h));
                        }
                    }
                    ev = c.next_event() => match ev {
                        Some(Event::PeerAnnounced { info_hash, peer }) => {
                            println!("announce {} {peer}", hex_id(&info_hash));
                        }
                        Some(_) => {}
                        None => bail!("the DHT node stopped"),
                    },
                }
            }
            let (saved, _) = c.shutdown().await?;
            println!("saved {} nodes to {}", saved.nodes.len(), state.display());
            Ok(())
        }
        Action::Lookup {
            info_hash,
            bootstrap,
            timeout,
        } => {
            let mut c = one_shot(&bootstrap, timeout).await?;
            let found = c.get_peers(info_hash).await?;
            c.shutdown().await?;
            for p in &found.peers {
                println!("{p}");
            }
            if found.peers.is_empty() {
                bail!(
                    "no peers for {} ({} queries, {} nodes answered)",
                    hex_id(&info_hash),
                    found.stats.rpcs,
                    found.stats.responses
                );
            }
            Ok(())
        }
        Action::Announce {
            info_hash,
            port,
            bootstrap,
            implied_port,
            timeout,
        } => {
            let mut c = one_shot(&bootstrap, timeout).await?;
            let (stored, _) = c.announce(info_hash, port, implied_port).await?;
            c.shutdown().await?;
            println!(
                "announced {} port {port} to {stored} nodes",
                hex_id(&info_hash)
            );
            if stored == 0 {
                bail!("no node accepted the announce");
            }
            Ok(())
        }
        Action::Stats { state, listen } => {
            let path = state.unwrap_or_else(|| default_state(listen));
            let s = SavedState::load(&path)?.with_context(|| {
                format!(
                    "no state file {} (run `servent dht run` first)",
                    path.display()
                )
            })?;
            print_stats(&path, &s);
            Ok(())
        }
    }
}

fn hex_id(id: &Id) -> String {
    id.to_string()
}

fn print_stats(path: &Path, s: &SavedState) {
    println!("node      {}", hex_id(&s.id));
    println!("state     {}", path.display());
    println!("nodes     {}", s.nodes.len());
    println!("buckets   {} {:?}", s.buckets.len(), s.buckets);
    for (k, v) in &s.stats {
        println!("{k:<15} {v}");
    }
}

/// The demo's DHT section: 50 nodes on 127.0.0.1 join through one, a peer is announced
/// and found by another node, over real UDP sockets.
pub async fn demo(out: &Path) -> Result<DemoSection> {
    let _ = out;
    let mut sec = DemoSection::new("Kademlia DHT (BEP 5)");
    let mk = |seed: u64| {
        let mut o = ClientOpts::new(SocketAddr::from(([127, 0, 0, 1], 0)), seed);
        o.timeout = Duration::from_secs(20);
        o
    };
    let first = DhtClient::start(mk(1)).await?;
    let mut nodes = Vec::new();
    let mut joined = 0;
    for i in 0..50u64 {
        let mut c = DhtClient::start(mk(100 + i)).await?;
        if c.bootstrap(vec![first.local]).await.unwrap_or(0) > 0 {
            joined += 1;
        }
        nodes.push(c);
    }
    sec.rows.push(DemoRow {
        check: "50 nodes join through one bootstrap node".into(),
        result: format!("{joined}/50 bootstrapped"),
        ok: joined == 50,
    });
    let hash = Id::hash(b"servent demo torrent");
    let (stored, _) = nodes[10].announce(hash, 6881, false).await?;
    sec.rows.push(DemoRow {
        check: "announce_peer to the 8 closest nodes".into(),
        result: format!("stored at {stored} nodes"),
        ok: stored >= 6,
    });
    let found = nodes[40].get_peers(hash).await?;
    let want: std::net::SocketAddrV4 = "127.0.0.1:6881".parse()?;
    sec.rows.push(DemoRow {
        check: "another node finds the peer with get_peers".into(),
        result: format!(
            "{} peers, {} queries, {} hops, {:.0} ms",
            found.peers.len(),
            found.stats.rpcs,
            found.stats.hops,
            found.stats.duration.as_secs_f64() * 1e3
        ),
        ok: found.peers.contains(&want),
    });
    for n in nodes {
        n.shutdown().await?;
    }
    first.shutdown().await?;
    sec.notes.push(
        "Every node is a servent-kademlia core under the tokio driver on its own UDP socket; \
         `servent sim run kademlia` measures the same code at 10^3..10^5 nodes with churn."
            .into(),
    );
    Ok(sec)
}
