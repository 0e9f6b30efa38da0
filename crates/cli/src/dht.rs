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
use servent_bittorrent::bencode::{self, OwnedValue};
use servent_core::Id;
use servent_kademlia::bep44;
use servent_kademlia::client::{ClientOpts, DhtClient, SavedState};
use servent_kademlia::{Event, MutableKey};

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
    /// Store a value in the DHT (BEP 44) at the 8 closest nodes; prints its target.
    /// Immutable (target = SHA-1 of the value) unless --key is given.
    Put {
        /// The value (stored as a bencoded string; at most ~990 bytes).
        value: String,
        /// A node to join through (HOST:PORT; repeatable).
        #[arg(long, required = true)]
        bootstrap: Vec<String>,
        /// Mutable item: the ed25519 seed file (64 hex digits), created (mode 0600) when
        /// missing. The target is SHA-1(public key ‖ salt); each put raises the seq.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Mutable item: salt (at most 64 bytes), so one key can hold several items.
        #[arg(long, default_value = "", requires = "key")]
        salt: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Fetch a value from the DHT (BEP 44) and print it; exits non-zero when not found.
    Get {
        /// The target (40 hex digits, as printed by `servent dht put`).
        target: Id,
        /// A node to join through (HOST:PORT; repeatable).
        #[arg(long, required = true)]
        bootstrap: Vec<String>,
        /// The salt of a mutable item.
        #[arg(long, default_value = "")]
        salt: String,
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
                        Some(Event::IdChanged { new, external, .. }) => {
                            println!("external address {external}: new BEP 42 node id {}", hex_id(&new));
                        }
                        Some(Event::ItemStored { target, seq }) => match seq {
                            Some(seq) => println!("put {} seq {seq}", hex_id(&target)),
                            None => println!("put {}", hex_id(&target)),
                        },
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
        Action::Put {
            value,
            bootstrap,
            key,
            salt,
            timeout,
        } => {
            let v = OwnedValue::bytes(value.as_bytes()).encode();
            if v.len() > bep44::MAX_VALUE {
                bail!(
                    "the value is {} bytes bencoded; BEP 44 allows {}",
                    v.len(),
                    bep44::MAX_VALUE
                );
            }
            if salt.len() > bep44::MAX_SALT {
                bail!("the salt is longer than {} bytes", bep44::MAX_SALT);
            }
            let key = match &key {
                Some(path) => Some(MutableKey {
                    seed: load_or_create_seed(path)?,
                    salt: salt.into_bytes(),
                    seq: None,
                }),
                None => None,
            };
            let mut c = one_shot(&bootstrap, timeout).await?;
            let (target, seq, stored) = c.put_item(v, key).await?;
            c.shutdown().await?;
            println!("{}", hex_id(&target));
            match seq {
                Some(seq) => eprintln!("stored at {stored} nodes (seq {seq})"),
                None => eprintln!("stored at {stored} nodes"),
            }
            if stored == 0 {
                bail!("no node stored the item");
            }
            Ok(())
        }
        Action::Get {
            target,
            bootstrap,
            salt,
            timeout,
        } => {
            let mut c = one_shot(&bootstrap, timeout).await?;
            let (item, stats) = c.get_item(target, salt.into_bytes(), None).await?;
            c.shutdown().await?;
            let Some(item) = item else {
                bail!(
                    "no item under {} ({} queries, {} nodes answered)",
                    hex_id(&target),
                    stats.rpcs,
                    stats.responses
                );
            };
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // a string value prints as itself, anything else as its bencoding
            match bencode::decode(&item.v, &bencode::Limits::strict()) {
                Ok(bencode::Value::Bytes(b)) => out.write_all(b)?,
                _ => out.write_all(&item.v)?,
            }
            out.write_all(b"\n")?;
            if let Some(m) = &item.mutable {
                eprintln!("seq {} key {}", m.seq, to_hex(&m.k));
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

/// The ed25519 seed in `path` (64 hex digits); a fresh random one is written there, readable
/// by the owner only, when the file does not exist.
fn load_or_create_seed(path: &Path) -> Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes =
                from_hex(text.trim()).with_context(|| format!("{}: not hex", path.display()))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("{}: not a 32-byte ed25519 seed", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::{Read, Write};
            let mut seed = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut seed))
                .context("reading /dev/urandom for a new key")?;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            let mut f = o
                .open(path)
                .with_context(|| format!("creating key file {}", path.display()))?;
            writeln!(f, "{}", to_hex(&seed))?;
            eprintln!(
                "new key {} (public {})",
                path.display(),
                to_hex(&bep44::public_key(&seed))
            );
            Ok(seed)
        }
        Err(e) => Err(e).with_context(|| format!("reading key file {}", path.display())),
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
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
/// and found by another node, BEP 44 items are put and fetched, over real UDP sockets.
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
    // BEP 44: an immutable and a mutable item put by one node and fetched by another
    let value = OwnedValue::bytes("servent demo item").encode();
    let (target, _, stored) = nodes[5].put_item(value.clone(), None).await?;
    let (item, stats) = nodes[45].get_item(target, Vec::new(), None).await?;
    sec.rows.push(DemoRow {
        check: "BEP 44 immutable put, get by another node".into(),
        result: format!(
            "stored at {stored} nodes; found: {} ({} queries)",
            item.as_ref().is_some_and(|i| i.v == value),
            stats.rpcs
        ),
        ok: stored >= 6 && item.is_some_and(|i| i.v == value),
    });
    let key = MutableKey {
        seed: [0x5e; 32],
        salt: b"demo".to_vec(),
        seq: None,
    };
    let mut last = (target, None, 0);
    for v in ["first", "second"] {
        last = nodes[20]
            .put_item(OwnedValue::bytes(v).encode(), Some(key.clone()))
            .await?;
    }
    let (target, seq, stored) = last;
    let (item, _) = nodes[33].get_item(target, b"demo".to_vec(), None).await?;
    let want = OwnedValue::bytes("second").encode();
    let got_seq = item
        .as_ref()
        .and_then(|i| i.mutable.as_ref())
        .map(|m| m.seq);
    sec.rows.push(DemoRow {
        check: "BEP 44 mutable item updated (seq 2), newest found by another node".into(),
        result: format!("stored at {stored} nodes, put seq {seq:?}, found seq {got_seq:?}"),
        ok: stored >= 6 && got_seq == Some(2) && item.is_some_and(|i| i.v == want),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_section_checks_all_hold_on_loopback() {
        let dir = std::env::temp_dir();
        let sec = demo(&dir).await.unwrap();
        for r in &sec.rows {
            assert!(r.ok, "{}: {}", r.check, r.result);
        }
        assert_eq!(sec.rows.len(), 5);
    }

    #[test]
    fn hex_helpers_roundtrip_and_reject_odd_or_non_hex() {
        assert_eq!(
            from_hex(&to_hex(&[0, 0xab, 0xff])),
            Some(vec![0, 0xab, 0xff])
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
