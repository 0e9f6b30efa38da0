//! The DHT over a real UDP socket (feature `runtime`): the [`Dht`] core under the tokio
//! driver of `servent-runtime`, with the routing table saved to a state file and loaded on
//! the next start, and awaitable lookups for other crates (the torrent client's trackerless
//! peer source):
//!
//! ```no_run
//! # async fn f() -> Result<(), servent_kademlia::client::ClientError> {
//! use servent_kademlia::client::{DhtClient, ClientOpts};
//! let mut dht = DhtClient::start(ClientOpts::new("127.0.0.1:0".parse().unwrap(), 42)).await?;
//! dht.bootstrap(vec!["127.0.0.1:6881".parse().unwrap()]).await?;
//! let info_hash = servent_core::Id([0xab; 20]);
//! let peers = dht.get_peers(info_hash).await?;
//! let stored_at = dht.announce(info_hash, 6881, false).await?;
//! dht.shutdown().await?;
//! # Ok(()) }
//! ```

use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use servent_bencode::{self as bencode, Limits, OwnedValue};
use servent_core::{Id, Rng};
use servent_runtime::driver::{self, DriverError, NodeConfig, NodeHandle};

use crate::bep44::Item;
use crate::krpc::{self, COMPACT_NODE, NodeInfo};
use crate::node::{Command, Config, Dht, Event, LookupStats, MutableKey, NodeStats};

/// The largest state file we read.
const MAX_STATE: u64 = 1 << 20;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket or the node task.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Reading or writing the state file.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is not one we wrote.
    #[error("state file {0}: not a servent DHT state file")]
    BadState(PathBuf),
    /// The node refused the command.
    #[error("refused: {0}")]
    Refused(&'static str),
    /// No answer in time.
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// The node answered with a KRPC error.
    #[error("the node answered: {0}")]
    Answer(String),
}

/// How to start a node.
#[derive(Clone, Debug)]
pub struct ClientOpts {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// The RNG seed (node id unless one is saved or given, transaction ids, tokens), used
    /// when `rng` is `None` (tests, demos, the simulator's reproducible runs).
    pub seed: u64,
    /// The node's generator; real runs pass `servent_runtime::os_rng()` so that ids, token
    /// secrets and transaction ids cannot be predicted.
    pub rng: Option<Rng>,
    /// Our node id (default: from the state file, else random).
    pub id: Option<Id>,
    /// Load the routing table from here on start and save it on shutdown.
    pub state: Option<PathBuf>,
    /// Node settings.
    pub config: Config,
    /// How long a command may take.
    pub timeout: Duration,
}

impl ClientOpts {
    /// Defaults with the node's generator `rng` (OS-seeded in real runs).
    pub fn with_rng(listen: SocketAddr, rng: Rng) -> ClientOpts {
        let mut o = ClientOpts::new(listen, 0);
        o.rng = Some(rng);
        o
    }

    /// A short-lived client (a one-shot lookup, announce, get or put): BEP 43 read-only, so
    /// that no node keeps it in its routing table after it exits.
    pub fn read_only(mut self) -> ClientOpts {
        self.config.read_only = true;
        self
    }

    /// Defaults: no state file, BEP 5 settings, 60 s per command.
    pub fn new(listen: SocketAddr, seed: u64) -> ClientOpts {
        ClientOpts {
            listen,
            seed,
            rng: None,
            id: None,
            state: None,
            config: Config::default(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A saved routing table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedState {
    /// Our id.
    pub id: Id,
    /// The nodes of the table.
    pub nodes: Vec<NodeInfo>,
    /// The node's counters when it was saved (name, value).
    pub stats: Vec<(String, i64)>,
    /// Bucket sizes.
    pub buckets: Vec<usize>,
}

impl SavedState {
    /// The bencoded form.
    pub fn encode(&self) -> Vec<u8> {
        let mut nodes = Vec::with_capacity(self.nodes.len() * COMPACT_NODE);
        for n in &self.nodes {
            nodes.extend_from_slice(&krpc::encode_node(n));
        }
        let mut stats = OwnedValue::dict();
        for (k, v) in &self.stats {
            stats = stats.with(k, OwnedValue::Int(*v));
        }
        OwnedValue::dict()
            .with("id", OwnedValue::bytes(self.id.as_bytes()))
            .with("nodes", OwnedValue::Bytes(nodes))
            .with("stats", stats)
            .with(
                "buckets",
                OwnedValue::List(
                    self.buckets
                        .iter()
                        .map(|b| OwnedValue::Int(i64::try_from(*b).unwrap_or(i64::MAX)))
                        .collect(),
                ),
            )
            .encode()
    }

    /// Parses a state file's bytes.
    pub fn decode(b: &[u8]) -> Option<SavedState> {
        let v = bencode::decode(b, &Limits::strict()).ok()?;
        let d = v.as_dict()?;
        let id = Id::from_slice(d.bytes(b"id")?).ok()?;
        let nodes = krpc::decode_nodes(d.bytes(b"nodes")?)?;
        let stats = d
            .dict(b"stats")
            .map(|s| {
                s.iter()
                    .filter_map(|(k, v)| {
                        Some((String::from_utf8_lossy(k).into_owned(), v.as_int()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let buckets = d
            .list(b"buckets")
            .map(|l| {
                l.iter()
                    .filter_map(|v| usize::try_from(v.as_int()?).ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(SavedState {
            id,
            nodes,
            stats,
            buckets,
        })
    }

    /// Reads a state file; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<SavedState>, ClientError> {
        use std::io::Read;
        let io = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut b = Vec::new();
        f.take(MAX_STATE).read_to_end(&mut b).map_err(io)?;
        SavedState::decode(&b)
            .map(Some)
            .ok_or_else(|| ClientError::BadState(path.to_path_buf()))
    }

    /// Writes a state file crash-safely (a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        use std::io::Write;
        let io = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&self.encode()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)?;
        // the rename itself survives a crash only once the directory is on disk
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    /// The state of a node.
    pub fn of(dht: &Dht) -> SavedState {
        let (hashes, peers) = dht.stored();
        SavedState::from_parts(
            dht.id(),
            dht.table().entries().map(|e| e.info).collect(),
            dht.table().bucket_sizes(),
            dht.stats(),
            (hashes, peers),
        )
    }

    /// A state from a node's parts (as [`Event::Snapshot`] reports them).
    pub fn from_parts(
        id: Id,
        nodes: Vec<NodeInfo>,
        buckets: Vec<usize>,
        s: NodeStats,
        (hashes, peers): (usize, usize),
    ) -> SavedState {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut stats = s.pairs();
        stats.push(("stored_hashes".into(), n(hashes as u64)));
        stats.push(("stored_peers".into(), n(peers as u64)));
        // the file keeps them sorted by name (a bencoded dictionary)
        stats.sort();
        SavedState {
            id,
            nodes,
            stats,
            buckets,
        }
    }
}

/// What a running node said about itself (`sv_stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// Its id.
    pub id: Id,
    /// Its counters (name, value), sorted by name.
    pub counters: Vec<(String, i64)>,
    /// Nodes per bucket.
    pub buckets: Vec<i64>,
    /// Round trip of the query.
    pub rtt: Duration,
}

/// Asks the running node at `node` for its counters with one `sv_stats` query from a
/// loopback socket (the node answers it to loopback sources only).
pub async fn query_stats(node: SocketAddr, limit: Duration) -> Result<NodeReport, ClientError> {
    let local: SocketAddr = if node.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .map_err(|_| ClientError::Refused("no loopback address"))?;
    let sock = tokio::net::UdpSocket::bind(local).await.map_err(|source| {
        ClientError::Driver(DriverError::Bind {
            addr: local,
            source,
        })
    })?;
    let io = |source| ClientError::Io {
        path: PathBuf::from(node.to_string()),
        source,
    };
    let tid = b"st";
    let mut q = krpc::Message::query(tid, krpc::Query::Stats { id: Id::ZERO });
    // a one-shot socket: not a node anyone should ping or keep
    q.read_only = true;
    #[allow(clippy::disallowed_methods)] // the driver's clock
    let sent = std::time::Instant::now();
    sock.send_to(&q.encode(), node).await.map_err(io)?;
    let fut = async {
        let mut buf = vec![0u8; krpc::MAX_DATAGRAM];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.map_err(io)?;
            if from != node {
                continue;
            }
            let Ok(m) = krpc::decode(buf.get(..n).unwrap_or_default()) else {
                continue;
            };
            if m.tid != tid {
                continue;
            }
            return match m.body {
                krpc::Body::Response(r) => Ok(NodeReport {
                    id: r.id,
                    counters: r.stats.unwrap_or_default(),
                    buckets: r.buckets,
                    rtt: sent.elapsed(),
                }),
                krpc::Body::Error { message, .. } => Err(ClientError::Answer(message)),
                krpc::Body::Query(_) => continue,
            };
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ClientError::Timeout(limit))?
}

/// A DHT node on a UDP socket, driven by its own task.
#[derive(Debug)]
pub struct DhtClient {
    handle: NodeHandle<Dht>,
    next: u64,
    timeout: Duration,
    state: Option<PathBuf>,
    saved_nodes: Vec<SocketAddr>,
    /// Our id.
    pub id: Id,
    /// The bound UDP address.
    pub local: SocketAddr,
    /// Peers announced to us since the last [`DhtClient::take_announced`].
    announced: Vec<(Id, SocketAddrV4)>,
}

/// The outcome of a get_peers lookup.
#[derive(Clone, Debug, Default)]
pub struct PeersFound {
    /// Distinct peers, in the order found.
    pub peers: Vec<SocketAddrV4>,
    /// The closest nodes that answered.
    pub closest: Vec<NodeInfo>,
    /// Counters.
    pub stats: LookupStats,
}

impl DhtClient {
    /// Binds the socket, loads the state file if there is one, and starts the node.
    pub async fn start(opts: ClientOpts) -> Result<DhtClient, ClientError> {
        let saved = match &opts.state {
            Some(p) => SavedState::load(p)?,
            None => None,
        };
        let mut rng = opts.rng.clone().unwrap_or_else(|| Rng::new(opts.seed));
        let id = opts
            .id
            .or(saved.as_ref().map(|s| s.id))
            .unwrap_or_else(|| Id::random(&mut rng));
        let saved_nodes: Vec<SocketAddr> = saved
            .map(|s| {
                s.nodes
                    .into_iter()
                    .map(|n| SocketAddr::V4(n.addr))
                    .collect()
            })
            .unwrap_or_default();
        let cfg = opts.config.clone();
        let handle = driver::spawn(
            NodeConfig {
                udp: Some(opts.listen),
                ..NodeConfig::default()
            },
            move |_| Dht::new(id, cfg, rng.fork(1)),
        )
        .await?;
        let local = handle.local.udp.unwrap_or(opts.listen);
        Ok(DhtClient {
            handle,
            next: 1,
            timeout: opts.timeout,
            state: opts.state,
            saved_nodes,
            id,
            local,
            announced: Vec::new(),
        })
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Waits for the event that ends command `id`, collecting peers on the way.
    async fn wait(&mut self, id: u64, peers: &mut Vec<SocketAddrV4>) -> Result<Event, ClientError> {
        let limit = self.timeout;
        let fut = async {
            while let Some(ev) = self.handle.next_event().await {
                match ev {
                    Event::Peers { id: i, peers: p } if i == id => {
                        for x in p {
                            if !peers.contains(&x) {
                                peers.push(x);
                            }
                        }
                    }
                    Event::PeerAnnounced { info_hash, peer } if self.announced.len() < 4096 => {
                        self.announced.push((info_hash, peer));
                    }
                    Event::IdChanged { new, .. } => self.id = new,
                    Event::Refused { id: i, reason } if i == id => {
                        return Err(ClientError::Refused(reason));
                    }
                    Event::Bootstrapped { id: i, .. }
                    | Event::LookupDone { id: i, .. }
                    | Event::Announced { id: i, .. }
                    | Event::Pong { id: i, .. }
                    | Event::Unreachable { id: i }
                    | Event::Snapshot { id: i, .. }
                    | Event::Got { id: i, .. }
                    | Event::Stored { id: i, .. }
                        if i == id =>
                    {
                        return Ok(ev);
                    }
                    _ => {}
                }
            }
            Err(ClientError::Driver(DriverError::Stopped))
        };
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    /// Joins through `nodes` (and the nodes of the loaded state file); returns the number of
    /// nodes in the routing table afterwards.
    pub async fn bootstrap(&mut self, nodes: Vec<SocketAddr>) -> Result<usize, ClientError> {
        let id = self.id();
        let mut all = nodes;
        all.extend(
            self.saved_nodes
                .iter()
                .take(32usize.saturating_sub(all.len())),
        );
        self.handle
            .command(Command::Bootstrap { id, nodes: all })
            .await?;
        match self.wait(id, &mut Vec::new()).await? {
            Event::Bootstrapped { nodes, .. } => Ok(nodes),
            _ => Ok(0),
        }
    }

    /// Peers for `info_hash`.
    pub async fn get_peers(&mut self, info_hash: Id) -> Result<PeersFound, ClientError> {
        let id = self.id();
        self.handle
            .command(Command::GetPeers { id, info_hash })
            .await?;
        let mut peers = Vec::new();
        match self.wait(id, &mut peers).await? {
            Event::LookupDone { closest, stats, .. } => Ok(PeersFound {
                peers,
                closest,
                stats,
            }),
            _ => Ok(PeersFound::default()),
        }
    }

    /// The k closest nodes to `target`.
    pub async fn find_node(
        &mut self,
        target: Id,
    ) -> Result<(Vec<NodeInfo>, LookupStats), ClientError> {
        let id = self.id();
        self.handle
            .command(Command::FindNode { id, target })
            .await?;
        match self.wait(id, &mut Vec::new()).await? {
            Event::LookupDone { closest, stats, .. } => Ok((closest, stats)),
            _ => Ok((Vec::new(), LookupStats::default())),
        }
    }

    /// Announces that we download `info_hash` on TCP `port` (or our UDP port with
    /// `implied_port`); returns how many of the closest nodes stored it and the peers
    /// found on the way.
    pub async fn announce(
        &mut self,
        info_hash: Id,
        port: u16,
        implied_port: bool,
    ) -> Result<(usize, Vec<SocketAddrV4>), ClientError> {
        let id = self.id();
        self.handle
            .command(Command::Announce {
                id,
                info_hash,
                port,
                implied_port,
            })
            .await?;
        let mut peers = Vec::new();
        match self.wait(id, &mut peers).await? {
            Event::Announced { stored_at, .. } => Ok((stored_at, peers)),
            _ => Ok((0, peers)),
        }
    }

    /// BEP 44 get: the item under `target` (`salt` for a mutable item; `seq`: only newer
    /// ones), checked (hash or signature); `None` when no node had a valid one.
    pub async fn get_item(
        &mut self,
        target: Id,
        salt: Vec<u8>,
        seq: Option<i64>,
    ) -> Result<(Option<Item>, LookupStats), ClientError> {
        let id = self.id();
        self.handle
            .command(Command::Get {
                id,
                target,
                salt,
                seq,
            })
            .await?;
        match self.wait(id, &mut Vec::new()).await? {
            Event::Got { item, stats, .. } => Ok((item, stats)),
            _ => Ok((None, LookupStats::default())),
        }
    }

    /// BEP 44 put of `value` (one canonical bencoded value, ≤ 1000 bytes): immutable without
    /// `key`, else signed. Returns the target, the seq used (mutable) and how many of the
    /// closest nodes stored it.
    pub async fn put_item(
        &mut self,
        value: Vec<u8>,
        key: Option<MutableKey>,
    ) -> Result<(Id, Option<i64>, usize), ClientError> {
        let id = self.id();
        self.handle.command(Command::Put { id, value, key }).await?;
        match self.wait(id, &mut Vec::new()).await? {
            Event::Stored {
                target,
                seq,
                stored_at,
                ..
            } => Ok((target, seq, stored_at)),
            _ => Err(ClientError::Refused("no put result")),
        }
    }

    /// The node's routing table and counters now; also written to the state file, if any.
    pub async fn snapshot(&mut self) -> Result<SavedState, ClientError> {
        let id = self.id();
        self.handle.command(Command::Snapshot { id }).await?;
        match self.wait(id, &mut Vec::new()).await? {
            Event::Snapshot {
                node,
                nodes,
                buckets,
                stats,
                stored_hashes,
                stored_peers,
                ..
            } => {
                let s = SavedState::from_parts(
                    node,
                    nodes,
                    buckets,
                    stats,
                    (stored_hashes, stored_peers),
                );
                if let Some(p) = &self.state {
                    s.save(p)?;
                }
                Ok(s)
            }
            _ => Err(ClientError::Refused("no snapshot")),
        }
    }

    /// The next event of the node (for a long-running node that reports what happens).
    pub async fn next_event(&mut self) -> Option<Event> {
        let ev = self.handle.next_event().await;
        if let Some(Event::IdChanged { new, .. }) = &ev {
            self.id = *new;
        }
        ev
    }

    /// Peers that announced themselves to us while a command was running.
    pub fn take_announced(&mut self) -> Vec<(Id, SocketAddrV4)> {
        std::mem::take(&mut self.announced)
    }

    /// Stops the node and saves its routing table (when a state file was given).
    pub async fn shutdown(self) -> Result<(SavedState, NodeStats), ClientError> {
        let dht = self.handle.shutdown().await?;
        let saved = SavedState::of(&dht);
        if let Some(p) = &self.state {
            saved.save(p)?;
        }
        Ok((saved, dht.stats()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrips_and_garbage_is_refused() {
        let s = SavedState {
            id: Id([3; 20]),
            nodes: vec![NodeInfo {
                id: Id([4; 20]),
                addr: "127.0.0.1:6881".parse().unwrap(),
            }],
            stats: vec![("queries_in".into(), 5)],
            buckets: vec![1, 0],
        };
        assert_eq!(SavedState::decode(&s.encode()), Some(s));
        assert_eq!(SavedState::decode(b"d2:id3:abce"), None);
        assert_eq!(SavedState::decode(b"\xff"), None);
    }
}
