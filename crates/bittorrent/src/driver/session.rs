//! One torrent under the tokio driver: open its files, start its client core on the peer
//! port, complete the core's disk jobs on the [`DiskPool`], feed it the web seeds and the
//! DHT, sample its counters, and stop it politely.
//!
//! A [`Session`] is what `servent torrent seed|get|share` and the demo run; the binary only
//! parses arguments, calls [`open_download`] / [`open_seed`], [`Session::start`], then prints
//! what [`Session::next`] reports until it says [`Update::Finished`] (or the user stops), and
//! calls [`Session::stop`]. A magnet link first runs a [`MetadataFetch`] (a metadata-only
//! core, BEP 9), whose [`MetadataFetch::finish`] gives the [`Metainfo`] and the peers it knew.
//!
//! ```no_run
//! # async fn f(meta: servent_bittorrent::metainfo::Metainfo) -> Result<(), Box<dyn std::error::Error>> {
//! use servent_bittorrent::driver::session::{open_download, Session, SessionConfig, Update};
//! let (storage, have) = open_download(&meta, "downloads".as_ref(), false).await?;
//! let mut s = Session::start(&meta, storage, have, &SessionConfig::default(), None).await?;
//! let outcome = loop {
//!     match s.next().await {
//!         Update::Stats(st) => println!("{} of {} pieces", st.pieces_have, st.pieces_total),
//!         Update::Finished(o) => break o,
//!         _ => {} // the core's other events
//!     }
//! };
//! let core = s.stop().await?;
//! println!("{outcome:?}, complete: {}", core.is_complete());
//! # Ok(()) }
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use servent_runtime::{DriverError, NodeConfig, NodeHandle, spawn};
use thiserror::Error;
use tokio::task::JoinHandle;

use crate::client::{
    Client, ClientCommand, ClientConfig, ClientEvent, ClientStats, Encryption, TrackerEndpoint,
    make_peer_id,
};
use crate::core::storage::{MemStorage, Storage, StorageError, recheck};
use crate::driver::dht::DhtPeerSource;
use crate::driver::disk::{DiskPool, SharedStorage};
use crate::driver::storage::FileStorage;
use crate::magnet::{Magnet, PeerAddr};
use crate::metainfo::{InfoHash, Metainfo};
use crate::picker::Bitfield;

/// The client core of a session, over the shared files.
pub type SessionClient = Client<SharedStorage>;

/// How long [`Session::stop`] lets the core finish its resume flush.
const STOP_FLUSH: Duration = Duration::from_secs(30);
/// How long [`Session::stop`] waits for the trackers' answer to `stopped` once flushed.
const STOP_TRACKERS: Duration = Duration::from_secs(2);
/// The id of the stop command.
const STOP_ID: u64 = u64::MAX;

/// Why a session could not open, start or stop.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The download folder or the content could not be opened.
    #[error("opening {path}: {source}")]
    Open {
        /// The folder or file.
        path: PathBuf,
        /// The error.
        source: StorageError,
    },
    /// Checking the pieces on disk failed.
    #[error("checking the data: {0}")]
    Check(StorageError),
    /// Saving the resume data after a check failed.
    #[error("saving the resume data: {0}")]
    Flush(StorageError),
    /// Seeding data that does not match the torrent.
    #[error("the data does not match the torrent: {good} of {total} pieces are good")]
    Mismatch {
        /// Pieces that hashed right.
        good: u32,
        /// All pieces.
        total: u32,
    },
    /// The disk threads could not start.
    #[error("disk threads: {0}")]
    DiskThreads(std::io::Error),
    /// The peer port could not be bound.
    #[error("listening on {listen}: {source}")]
    Listen {
        /// The address asked for.
        listen: SocketAddr,
        /// The error.
        source: DriverError,
    },
    /// The OS gave no randomness for the peer id.
    #[error("no OS randomness: {0}")]
    Random(String),
    /// A magnet link with nowhere to find peers.
    #[error(
        "magnet {0}: no trackers, no x.pe peers, no --peer and no DHT (--bootstrap): nowhere to find peers"
    )]
    NoPeerSource(InfoHash),
    /// The metadata received is not a valid info dictionary.
    #[error("{name}: the metadata is not a valid info dictionary: {reason}")]
    BadMetadata {
        /// The torrent's name or info-hash.
        name: String,
        /// Why.
        reason: String,
    },
    /// The client's task stopped before it was asked to.
    #[error("the client stopped unexpectedly")]
    Gone,
    /// A blocking task panicked or was cancelled.
    #[error("a blocking task failed: {0}")]
    Join(String),
}

/// Limits of the peer port against floods and hostile peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Most peer connections, handshaking ones included.
    pub max_peers: usize,
    /// Most connections from one IP address.
    pub max_peers_per_ip: usize,
    /// A connection without a finished handshake this long after connecting is closed.
    pub handshake_timeout: Duration,
    /// A peer that sends nothing at all this long is closed.
    pub idle_timeout: Duration,
}

impl Default for PeerLimits {
    fn default() -> PeerLimits {
        PeerLimits {
            max_peers: 60,
            max_peers_per_ip: 16,
            handshake_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(180),
        }
    }
}

impl PeerLimits {
    /// Sets these limits in a client's configuration.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.max_peers = self.max_peers;
        c.max_peers_per_ip = self.max_peers_per_ip;
        c.handshake_timeout = self.handshake_timeout;
        c.idle_timeout = self.idle_timeout;
    }
}

/// How to run one torrent.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The peer port (TCP; the UDP tracker socket takes any port on its IP).
    pub listen: SocketAddr,
    /// Peers to connect to at once.
    pub peers: Vec<SocketAddr>,
    /// Keep seeding after the download completes (else [`Update::Finished`] follows
    /// [`ClientEvent::Completed`]).
    pub seed: bool,
    /// Stop seeding at this upload/size ratio.
    pub seed_ratio: Option<f64>,
    /// Stop seeding after this long.
    pub seed_time: Option<Duration>,
    /// Upload limit, bytes per second.
    pub upload_limit: Option<u64>,
    /// Download limit, bytes per second.
    pub download_limit: Option<u64>,
    /// Message Stream Encryption policy.
    pub encryption: Encryption,
    /// Super-seeding (BEP 16).
    pub super_seed: bool,
    /// Peer-port limits.
    pub limits: PeerLimits,
    /// Threads for the core's disk jobs; 0: the core does its disk work inline.
    pub disk_threads: usize,
    /// Fetch from the torrent's `http://` web seeds (BEP 19) while pieces are missing.
    pub web_seeds: bool,
    /// The `User-Agent` of web-seed requests.
    pub user_agent: String,
    /// How often [`Session::next`] samples the core's counters ([`Update::Stats`]).
    pub stats_every: Duration,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: Vec::new(),
            seed: false,
            seed_ratio: None,
            seed_time: None,
            upload_limit: None,
            download_limit: None,
            encryption: Encryption::Prefer,
            super_seed: false,
            limits: PeerLimits::default(),
            disk_threads: 0,
            web_seeds: true,
            user_agent: concat!("servent ", env!("CARGO_PKG_VERSION")).into(),
            stats_every: Duration::from_millis(500),
        }
    }
}

impl SessionConfig {
    /// The client core's configuration for peer port `port`, with `trackers`.
    fn client_config(
        &self,
        peer_id: [u8; 20],
        port: u16,
        trackers: Vec<Vec<TrackerEndpoint>>,
    ) -> ClientConfig {
        let mut c = ClientConfig::new(peer_id, port);
        c.trackers = trackers;
        c.seed = self.seed;
        c.seed_ratio = self.seed_ratio;
        c.seed_time = self.seed_time;
        c.upload_limit = self.upload_limit;
        c.download_limit = self.download_limit;
        c.encryption = self.encryption;
        c.super_seed = self.super_seed;
        self.limits.apply(&mut c);
        c.disk_jobs = self.disk_threads > 0;
        c
    }

    fn node_config(&self) -> NodeConfig {
        NodeConfig {
            udp: Some(SocketAddr::new(self.listen.ip(), 0)),
            tcp: Some(self.listen),
            ..NodeConfig::default()
        }
    }
}

/// Resolves a tracker's host (IPv4 first).
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    let all: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
}

/// The tiers of trackers we can reach (http:// and udp://, names resolved); the others are
/// skipped with a warning, and tiers left empty are dropped.
pub fn tracker_endpoints(trackers: &[Vec<String>]) -> Vec<Vec<TrackerEndpoint>> {
    trackers
        .iter()
        .map(|tier| {
            tier.iter()
                .filter_map(|u| {
                    let e = TrackerEndpoint::parse(u, resolve);
                    if e.is_none() {
                        tracing::warn!("skipping tracker {u}: unsupported or unresolvable");
                    }
                    e
                })
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// The bitfield of `good` pieces.
pub fn bitfield(good: &[bool]) -> Bitfield {
    let mut b = Bitfield::new(good.len() as u32);
    for (i, g) in good.iter().enumerate() {
        if *g {
            b.set(i as u32);
        }
    }
    b
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SessionError> + Send + 'static,
) -> Result<T, SessionError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SessionError::Join(e.to_string()))?
}

/// Opens (creating) a download under `dir`. Pieces come from the resume data; with `check`,
/// or when the files already hold data but no resume data says what (a folder filled by
/// another client or copied by hand), every piece is verified first and the resume data
/// saved, so complete data is never downloaded again.
pub async fn open_download(
    meta: &Metainfo,
    dir: &Path,
    check: bool,
) -> Result<(FileStorage, Bitfield), SessionError> {
    let m = meta.clone();
    let dir = dir.to_path_buf();
    blocking(move || {
        let mut s = FileStorage::open(&m, &dir).map_err(|source| SessionError::Open {
            path: dir.clone(),
            source,
        })?;
        let good = if check || (!s.has_resume() && s.found_data()) {
            s.clear_verified();
            let g = recheck(&m, &mut s).map_err(SessionError::Check)?;
            for (i, ok) in g.iter().enumerate() {
                if *ok {
                    s.mark_verified(i as u32);
                }
            }
            s.flush().map_err(SessionError::Flush)?;
            g
        } else {
            s.verified().to_vec()
        };
        Ok((s, bitfield(&good)))
    })
    .await
}

/// Opens the data of a torrent to seed: the file itself (single-file torrent) or the
/// torrent's folder, never created or written. With `trusted` (the pieces were hashed from
/// this data a moment ago) every piece counts as verified; otherwise each is checked, and
/// data that does not match is [`SessionError::Mismatch`].
pub async fn open_seed(
    meta: &Metainfo,
    content: &Path,
    trusted: bool,
) -> Result<(FileStorage, Bitfield), SessionError> {
    let m = meta.clone();
    let content = content.to_path_buf();
    blocking(move || {
        let mut s = FileStorage::open_seed(&m, &content).map_err(|source| SessionError::Open {
            path: content.clone(),
            source,
        })?;
        let n = m.piece_count() as u32;
        if trusted {
            for i in 0..n {
                s.mark_verified(i);
            }
            return Ok((s, Bitfield::full(n)));
        }
        let have = bitfield(&recheck(&m, &mut s).map_err(SessionError::Check)?);
        if !have.is_full() {
            return Err(SessionError::Mismatch {
                good: have.count(),
                total: have.len(),
            });
        }
        Ok((s, have))
    })
    .await
}

/// What [`Session::next`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Update {
    /// The core's counters, every [`SessionConfig::stats_every`].
    Stats(ClientStats),
    /// An event of the core (disk jobs never show here: the session completes them).
    Event(ClientEvent),
    /// The session has nothing more to do; [`Session::stop`] it.
    Finished(Outcome),
}

/// Why a session finished.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every piece is verified and the session was not asked to seed on.
    Complete,
    /// Seeding reached its ratio or time limit.
    SeedingDone,
    /// Reading or writing the content failed.
    StorageFailed(String),
    /// The client's task is gone.
    Gone,
}

/// One torrent's client core running on the peer port, with its disk pool, web-seed tasks and
/// DHT registration.
#[derive(Debug)]
pub struct Session {
    node: NodeHandle<SessionClient>,
    pool: DiskPool,
    has_trackers: bool,
    seed: bool,
    /// Pieces in, shared with the web-seed tasks.
    have: Arc<Mutex<Vec<bool>>>,
    web_seeds: Vec<JoinHandle<()>>,
    tick: tokio::time::Interval,
    next_id: u64,
    completed: bool,
    finished: Option<Outcome>,
}

impl Session {
    /// Starts the client core on `storage` holding the pieces in `have`: binds the peer
    /// port, connects to the configured peers, starts one fetcher per `http://` web seed
    /// while pieces are missing, and tracks the torrent on `dht` unless it is private.
    pub async fn start(
        meta: &Metainfo,
        storage: FileStorage,
        have: Bitfield,
        cfg: &SessionConfig,
        dht: Option<&DhtPeerSource>,
    ) -> Result<Session, SessionError> {
        let started_complete = have.is_full();
        let have_now: Vec<bool> = (0..have.len()).map(|i| have.get(i)).collect();
        let storage = SharedStorage::new(storage);
        let pool = DiskPool::new(storage.clone(), cfg.disk_threads.max(1))
            .map_err(SessionError::DiskThreads)?;
        let trackers = tracker_endpoints(&meta.trackers);
        let mut rng = servent_runtime::os_rng().map_err(|e| SessionError::Random(e.to_string()))?;
        let m = meta.clone();
        let c = cfg.clone();
        let node = spawn(cfg.node_config(), move |local| {
            let port = local.tcp.map_or(0, |a| a.port());
            let cc = c.client_config(make_peer_id(&mut rng), port, trackers);
            Client::new(cc, &m, storage, have, rng)
        })
        .await
        .map_err(|source| SessionError::Listen {
            listen: cfg.listen,
            source,
        })?;
        if !cfg.peers.is_empty() {
            node.command(ClientCommand::AddPeers {
                id: 1,
                peers: cfg.peers.clone(),
            })
            .await
            .map_err(|_| SessionError::Gone)?;
        }
        let have = Arc::new(Mutex::new(have_now));
        let mut web_seeds = Vec::new();
        if cfg.web_seeds && !started_complete {
            for url in meta.web_seeds.iter().filter(|u| u.starts_with("http://")) {
                let (m, u, h, c) = (meta.clone(), url.clone(), have.clone(), node.commander());
                let agent = cfg.user_agent.clone();
                web_seeds.push(tokio::spawn(async move {
                    if let Err(e) = crate::driver::webseed::fetch(m, &u, h, c, &agent).await {
                        tracing::warn!("web seed {u}: {e}");
                    }
                }));
            }
        }
        if let (Some(d), false) = (dht, meta.private) {
            let port = node.local.tcp.map_or(0, |a| a.port());
            d.track(meta.info_hash, port, node.commander()).await;
        }
        let mut tick = tokio::time::interval(cfg.stats_every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Session {
            node,
            pool,
            has_trackers: !meta.trackers.is_empty(),
            seed: cfg.seed,
            have,
            web_seeds,
            tick,
            next_id: 10,
            completed: meta.piece_count() == 0 || started_complete,
            finished: None,
        })
    }

    /// The peer port's bound address.
    pub fn local(&self) -> Option<SocketAddr> {
        self.node.local.tcp
    }

    /// A sender of commands to the core (for the DHT, a web seed, a test).
    pub fn commander(&self) -> tokio::sync::mpsc::Sender<ClientCommand> {
        self.node.commander()
    }

    /// Whether every piece has been verified.
    pub fn is_complete(&self) -> bool {
        self.completed
    }

    /// The next thing to report. Disk jobs go to the pool, verified pieces to the web seeds,
    /// and a stats sample is asked for every [`SessionConfig::stats_every`]. After
    /// [`Update::Finished`] it keeps answering the same. Cancel-safe (for `select!`).
    pub async fn next(&mut self) -> Update {
        loop {
            if let Some(o) = &self.finished {
                return Update::Finished(o.clone());
            }
            tokio::select! {
                ev = self.node.next_event() => {
                    if let Some(u) = self.take(ev) {
                        return u;
                    }
                }
                _ = self.tick.tick() => {
                    self.next_id += 1;
                    let _ = self.node.command(ClientCommand::Stats { id: self.next_id }).await;
                }
            }
        }
    }

    /// Handles one event of the core; what the caller should see, if anything.
    fn take(&mut self, ev: Option<ClientEvent>) -> Option<Update> {
        let Some(ev) = ev else {
            self.finished = Some(Outcome::Gone);
            return None;
        };
        match ev {
            ClientEvent::Disk { id, job } => {
                self.pool.submit(id, job, self.node.commander());
                None
            }
            ClientEvent::Stats { stats, .. } => Some(Update::Stats(stats)),
            ClientEvent::PieceVerified { index } => {
                let mut h = self.have.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(x) = h.get_mut(index as usize) {
                    *x = true;
                }
                Some(Update::Event(ev))
            }
            ClientEvent::Completed => {
                self.completed = true;
                if !self.seed {
                    self.finished = Some(Outcome::Complete);
                }
                Some(Update::Event(ev))
            }
            ClientEvent::SeedingDone => {
                self.finished = Some(Outcome::SeedingDone);
                Some(Update::Event(ev))
            }
            ClientEvent::StorageFailed { ref reason } => {
                self.finished = Some(Outcome::StorageFailed(reason.clone()));
                Some(Update::Event(ev))
            }
            ev => Some(Update::Event(ev)),
        }
    }

    /// Stops the session politely and returns the core: the web seeds end, the core
    /// announces `stopped` to its trackers and writes its resume data (its disk jobs keep
    /// running on the pool until it answers, at most 30 s), and the trackers' answer gets up
    /// to 2 s more.
    pub async fn stop(self) -> Result<SessionClient, SessionError> {
        for t in &self.web_seeds {
            t.abort();
        }
        stop_node(self.node, self.has_trackers, Some(&self.pool)).await
    }
}

/// Stops a client node politely (see [`Session::stop`]); without a `pool` a disk job ends
/// the wait (a core without disk jobs flushes inline).
async fn stop_node<S: Storage + Send + 'static>(
    mut node: NodeHandle<Client<S>>,
    has_trackers: bool,
    pool: Option<&DiskPool>,
) -> Result<Client<S>, SessionError> {
    if node
        .command(ClientCommand::Stop { id: STOP_ID })
        .await
        .is_ok()
    {
        let start = tokio::time::Instant::now();
        let (mut stopped, mut tracker_done) = (false, !has_trackers);
        while !(stopped && tracker_done) {
            let deadline = start + if stopped { STOP_TRACKERS } else { STOP_FLUSH };
            let Ok(Some(ev)) = tokio::time::timeout_at(deadline, node.next_event()).await else {
                break;
            };
            match ev {
                ClientEvent::Disk { id, job } => match pool {
                    Some(p) => p.submit(id, job, node.commander()),
                    None => break,
                },
                ClientEvent::Stopped { id: STOP_ID } => stopped = true,
                ClientEvent::TrackerReply { .. } | ClientEvent::TrackerError { .. } => {
                    tracker_done = true
                }
                _ => {}
            }
        }
        if !stopped {
            tracing::warn!("the client did not finish its resume flush in time");
        }
    }
    node.shutdown().await.map_err(|_| SessionError::Gone)
}

/// Resolves a magnet's `x.pe` peers.
fn magnet_peers(m: &Magnet) -> Vec<SocketAddr> {
    m.peers
        .iter()
        .filter_map(|p| match p {
            PeerAddr::Ip(a) => Some(*a),
            PeerAddr::Name { host, port } => resolve(host, *port),
        })
        .collect()
}

/// Fetching a magnet link's info dictionary (BEP 9) from peers found through its trackers,
/// its `x.pe` peers, the configured peers and the DHT: [`MetadataFetch::start`], wait for
/// [`MetadataFetch::next`] to give the bytes, then [`MetadataFetch::finish`].
#[derive(Debug)]
pub struct MetadataFetch {
    node: NodeHandle<Client<MemStorage>>,
    magnet: Magnet,
    peers: Vec<SocketAddr>,
}

impl MetadataFetch {
    /// Starts a metadata-only core on `cfg.listen` (any port would do: it is only for the
    /// metadata exchange).
    pub async fn start(
        magnet: &Magnet,
        cfg: &SessionConfig,
        dht: Option<&DhtPeerSource>,
    ) -> Result<MetadataFetch, SessionError> {
        let ih = magnet.info_hash;
        let trackers: Vec<Vec<String>> = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
        let mut peers = cfg.peers.clone();
        peers.extend(magnet_peers(magnet));
        if trackers.is_empty() && peers.is_empty() && dht.is_none() {
            return Err(SessionError::NoPeerSource(ih));
        }
        let endpoints = tracker_endpoints(&trackers);
        let mut rng = servent_runtime::os_rng().map_err(|e| SessionError::Random(e.to_string()))?;
        let c = cfg.clone();
        let node = spawn(cfg.node_config(), move |local| {
            let port = local.tcp.map_or(0, |a| a.port());
            let mut cc = ClientConfig::new(make_peer_id(&mut rng), port);
            cc.trackers = endpoints;
            cc.encryption = c.encryption;
            c.limits.apply(&mut cc);
            Client::magnet(cc, ih, MemStorage::empty(0), rng)
        })
        .await
        .map_err(|source| SessionError::Listen {
            listen: cfg.listen,
            source,
        })?;
        if !peers.is_empty() {
            node.command(ClientCommand::AddPeers {
                id: 1,
                peers: peers.clone(),
            })
            .await
            .map_err(|_| SessionError::Gone)?;
        }
        if let Some(d) = dht {
            d.track(ih, 0, node.commander()).await;
        }
        Ok(MetadataFetch {
            node,
            magnet: magnet.clone(),
            peers,
        })
    }

    /// The torrent's name, or its info-hash while the magnet has none.
    pub fn name(&self) -> String {
        self.magnet
            .name
            .clone()
            .unwrap_or_else(|| self.magnet.info_hash.to_hex())
    }

    /// Waits for the info dictionary's bytes (verified against the info-hash); a peer that
    /// sent bad metadata is banned on the way. Cancel-safe.
    pub async fn next(&mut self) -> Result<Vec<u8>, SessionError> {
        loop {
            match self.node.next_event().await {
                Some(ClientEvent::MetadataReceived { info_bytes }) => return Ok(info_bytes),
                Some(ClientEvent::PeerBanned { ip }) => {
                    tracing::warn!(%ip, "banned for bad metadata")
                }
                Some(ClientEvent::TrackerError { url, reason }) => {
                    tracing::warn!(%url, %reason, "tracker")
                }
                Some(ev) => tracing::debug!(?ev, "event"),
                None => return Err(SessionError::Gone),
            }
        }
    }

    /// Stops the metadata core and builds the torrent from `info_bytes`, with the magnet's
    /// trackers and web seeds; the peers are the ones it was given and the ones the core
    /// knew, for the download.
    pub async fn finish(
        self,
        info_bytes: &[u8],
    ) -> Result<(Metainfo, Vec<SocketAddr>), SessionError> {
        let name = self.name();
        let has_trackers = !self.magnet.trackers.is_empty();
        let core = stop_node(self.node, has_trackers, None).await?;
        let mut meta =
            Metainfo::from_info_bytes(info_bytes).map_err(|e| SessionError::BadMetadata {
                name,
                reason: e.to_string(),
            })?;
        meta.trackers = self
            .magnet
            .trackers
            .iter()
            .map(|t| vec![t.clone()])
            .collect();
        meta.web_seeds = self.magnet.web_seeds.clone();
        let mut peers = self.peers;
        peers.extend(core.known_peers());
        peers.sort();
        peers.dedup();
        Ok((meta, peers))
    }

    /// Stops the metadata core without waiting for anything.
    pub async fn abort(self) {
        let _ = self.node.shutdown().await;
    }
}
