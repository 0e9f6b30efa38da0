//! The tokio driver of a [`Servent`] over real sockets, with the file transfers the core
//! hands over (feature `runtime`).
//!
//! The core runs in the shared driver, [`servent_runtime::driver`]: it accepts TCP
//! connections, carries out the core's transmits, feeds it what sockets read and fires its
//! timer. When the core hands a connection over ([`Event::Handoff`]), that driver detaches
//! it (reader stopped, queued writes flushed, later bytes kept) and the node's own task
//! takes the socket ([`NodeHandle::take_connection`]) and runs the transfer on it: serving
//! `GET` requests from the shared folder (keep-alive, `Range`), or — for a `GIV` answering
//! our Push — sending our `GET`. The node's task also answers the user's requests (reads of
//! the core through [`NodeHandle::inspect`]) and redials the bootstrap peers.
//!
//! Uploads read only regular files directly inside the shared folder, opened with
//! `O_NOFOLLOW`, whose index *and* name match the request; downloads write only inside the
//! folder given, under a checked name, resuming from `<name>.part` and verifying the size.

// The driver: sockets, timers and disk are its job (the crate's clippy.toml forbids them
// everywhere else).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use servent_core::{ConnId, Core, Input, Instant, Rng};
use servent_runtime::{NodeConfig, NodeHandle};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::core::{Command, Config, Event, HandoffKind, Hit, PeerInfo, Role, Servent, Stats};
use crate::wire::Guid;
use crate::wire::http;

pub mod control;
mod share;

pub use share::Share;

/// How long a transfer may wait for the peer's next bytes.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a download waits for the `GIV` after sending a Push.
const PUSH_TIMEOUT: Duration = Duration::from_secs(20);
/// Writes queued per connection before it counts as a slow peer.
const SEND_QUEUE: usize = 1024;
/// Hits kept per search.
const MAX_HITS: usize = 1000;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Where to listen (overlay and HTTP on the same port); port 0 picks one.
    pub listen: SocketAddr,
    /// The folder to share (flat: regular files directly inside it).
    pub share: Option<PathBuf>,
    /// Peers to join through.
    pub connect: Vec<SocketAddr>,
    /// Most overlay connections.
    pub max_conns: usize,
    /// Connections to keep from the host cache.
    pub want_conns: usize,
    /// Highest TTL.
    pub max_ttl: u8,
    /// Refuse every inbound connection (a firewall), and say so in QueryHits.
    pub firewalled: bool,
    /// Seed for descriptor ids and the servent id, for reproducible tests (default: the OS
    /// CSPRNG).
    pub seed: Option<u64>,
    /// 0.4 flat servent (default), or a 0.6 leaf or ultrapeer. For 0.6 roles the `connect`
    /// peers also seed the ultrapeer cache the core refills its connections from.
    pub role: Role,
    /// A leaf's most ultrapeer connections (default 3).
    pub leaf_ultrapeers: usize,
    /// Offer and accept deflate-compressed 0.6 links (default on; off gives readable
    /// captures).
    pub deflate: bool,
    /// A handshake not finished within this time is abandoned (default 15 s).
    pub handshake_timeout: Duration,
    /// Most inbound connections in their handshake at once (default 128).
    pub max_pending: usize,
    /// Most of those from one IP address (default 16).
    pub max_pending_per_ip: usize,
    /// Largest descriptor payload accepted; a peer sending a larger one is disconnected
    /// (default 64 KiB).
    pub max_payload: usize,
    /// Pings one link may send per second (default 8); 10× closes it as a flooder.
    pub max_pings_per_sec: u32,
    /// Queries one link may send per second (default 200), the same rule.
    pub max_queries_per_sec: u32,
    /// How long a flooder's address is refused (default 60 s).
    pub flood_ban: Duration,
}

impl NodeOptions {
    /// Defaults: listen on `listen`, share nothing, 5 connections, TTL 7.
    pub fn new(listen: SocketAddr) -> NodeOptions {
        NodeOptions {
            listen,
            share: None,
            connect: Vec::new(),
            max_conns: 5,
            want_conns: 3,
            max_ttl: 7,
            firewalled: false,
            seed: None,
            role: Role::Flat04,
            leaf_ultrapeers: 3,
            deflate: true,
            handshake_timeout: Duration::from_secs(15),
            max_pending: 128,
            max_pending_per_ip: 16,
            max_payload: crate::wire::DEFAULT_MAX_PAYLOAD,
            max_pings_per_sec: 8,
            max_queries_per_sec: 200,
            flood_ban: Duration::from_secs(60),
        }
    }
}

/// Progress of a download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes on disk so far.
    pub done: u64,
    /// Size of the file.
    pub total: u64,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A socket or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The node's task has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The OS gave no randomness for the servent id and GUIDs.
    #[error(transparent)]
    Random(#[from] servent_runtime::OsRandomError),
    /// The peer answered something we cannot use.
    #[error("{0}")]
    Protocol(String),
    /// No route for the Push, or no GIV in time.
    #[error("push failed: {0}")]
    Push(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

/// Where a pushed connection (and the bytes read after its GIV) is delivered.
type PushReply = oneshot::Sender<Result<(TcpStream, Vec<u8>), NodeError>>;

enum Req {
    Search {
        query: String,
        ttl: Option<u8>,
        reply: oneshot::Sender<u64>,
    },
    TakeHits {
        id: u64,
        reply: oneshot::Sender<Vec<Hit>>,
    },
    Push {
        hit: Hit,
        reply: PushReply,
    },
    Peers {
        reply: oneshot::Sender<Vec<SocketAddr>>,
    },
    PeerInfos {
        reply: oneshot::Sender<(Role, Vec<PeerInfo>)>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
}

/// A running Gnutella node.
#[derive(Debug)]
pub struct Node {
    reqs: mpsc::Sender<Req>,
    /// The bound address (overlay and HTTP).
    pub local: SocketAddr,
    /// Our servent id.
    pub servent_id: Guid,
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

/// The connection the core hands over in `e`, if any (for the shared driver).
fn handover_of(e: &Event) -> Option<ConnId> {
    match e {
        Event::Handoff { conn, .. } => Some(*conn),
        _ => None,
    }
}

/// Accepts and at once drops every connection: a firewalled servent's port, bound so it
/// has an address to advertise, that nobody can reach.
async fn refuse_all(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => drop(stream),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl Node {
    /// Binds, scans the share, connects to the given peers and starts.
    pub async fn start(opts: NodeOptions) -> Result<Node, NodeError> {
        let share = match &opts.share {
            Some(dir) => Share::scan(dir).map_err(io_err(format!("scanning {}", dir.display())))?,
            None => Share::default(),
        };
        // A firewalled servent takes no connection: its port is a black hole of our own and
        // the shared driver listens nowhere.
        let blackhole = if opts.firewalled {
            let l = TcpListener::bind(opts.listen)
                .await
                .map_err(io_err(format!("binding {}", opts.listen)))?;
            let addr = l
                .local_addr()
                .map_err(io_err("reading the bound address"))?;
            Some((addr, l))
        } else {
            None
        };
        // Servent id and descriptor GUIDs: from the OS CSPRNG in real runs (predictable ids
        // let anyone forge our replies); a fixed seed only when a test asks for one.
        let mut rng = match opts.seed {
            Some(seed) => Rng::new(seed),
            None => servent_runtime::os_rng()?,
        };
        let servent_id = Guid::random(&mut rng);
        let node_cfg = NodeConfig {
            tcp: blackhole.is_none().then_some(opts.listen),
            send_queue: SEND_QUEUE,
            connect_timeout: Duration::from_secs(5),
            ..NodeConfig::default()
        };
        let fixed = blackhole.as_ref().map(|(a, _)| *a);
        let files = share.files().to_vec();
        let core_opts = opts.clone();
        let handle = servent_runtime::spawn_with_handover(
            node_cfg,
            move |local| {
                let local = fixed.or(local.tcp).unwrap_or(core_opts.listen);
                let ip = match local.ip() {
                    IpAddr::V4(v4) if !v4.is_unspecified() => v4,
                    _ => Ipv4Addr::LOCALHOST,
                };
                let mut core = Servent::new(
                    core_config(&core_opts, servent_id, SocketAddrV4::new(ip, local.port())),
                    rng.fork(1),
                );
                if core_opts.role.is_06() {
                    for a in &core_opts.connect {
                        if let SocketAddr::V4(a) = a {
                            core.add_ultrapeer(*a);
                        }
                    }
                }
                core.handle_input(
                    Instant::ZERO,
                    Input::Command(Command::Share { id: 0, files }),
                );
                core
            },
            handover_of,
        )
        .await
        .map_err(|e| match e {
            servent_runtime::DriverError::Bind { addr, source } => NodeError::Io {
                what: format!("binding {addr}"),
                source,
            },
            _ => NodeError::Stopped,
        })?;
        let local = match &blackhole {
            Some((a, _)) => *a,
            None => handle.local.tcp.unwrap_or(opts.listen),
        };
        let (reqs, req_rx) = mpsc::channel(64);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (state_tx, state_rx) = mpsc::channel(4);
        let driver = Driver {
            commands: handle.commander(),
            share,
            next_search: 1,
            searches: BTreeMap::new(),
            pushes: BTreeMap::new(),
            next_push: 1,
            push_wait: BTreeMap::new(),
            bootstrap: opts.connect.clone(),
            redial: vec![
                Redial {
                    in_flight: false,
                    failures: 0,
                    next: tokio::time::Instant::now(),
                };
                opts.connect.len()
            ],
            state_tx,
            asking: false,
        };
        let blackhole = blackhole.map(|(_, l)| tokio::spawn(refuse_all(l)));
        let task = tokio::spawn(driver.run(handle, blackhole, req_rx, state_rx, stop_rx));
        Ok(Node {
            reqs,
            local,
            servent_id,
            task,
            stop: Some(stop_tx),
        })
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Req) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.reqs
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Overlay peers whose handshake is done.
    pub async fn peers(&self) -> Result<Vec<SocketAddr>, NodeError> {
        self.ask(|reply| Req::Peers { reply }).await
    }

    /// Our role and every overlay peer with its role and QRP table fill.
    pub async fn peer_infos(&self) -> Result<(Role, Vec<PeerInfo>), NodeError> {
        self.ask(|reply| Req::PeerInfos { reply }).await
    }

    /// Message counters.
    pub async fn stats(&self) -> Result<Stats, NodeError> {
        self.ask(|reply| Req::Stats { reply }).await
    }

    /// Waits until at least `n` peers are up, for at most `timeout`; returns how many are.
    pub async fn wait_peers(&self, n: usize, timeout: Duration) -> Result<usize, NodeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let have = self.peers().await?.len();
            if have >= n || tokio::time::Instant::now() >= deadline {
                return Ok(have);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Floods a Query and collects hits for `wait`.
    pub async fn search(
        &self,
        query: &str,
        ttl: Option<u8>,
        wait: Duration,
    ) -> Result<Vec<Hit>, NodeError> {
        let id = self
            .ask(|reply| Req::Search {
                query: query.to_string(),
                ttl,
                reply,
            })
            .await?;
        tokio::time::sleep(wait).await;
        self.ask(|reply| Req::TakeHits { id, reply }).await
    }

    /// Downloads `hit` into `dir` (through Push when the holder is firewalled or cannot be
    /// reached), resuming a partial file; reports progress on `progress`.
    pub async fn download(
        &self,
        hit: &Hit,
        dir: &Path,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<PathBuf, NodeError> {
        if !http::safe_name(&hit.name) {
            return Err(NodeError::Protocol(format!(
                "refusing unsafe file name {:?}",
                hit.name
            )));
        }
        if !hit.push {
            let direct = tokio::time::timeout(
                Duration::from_secs(5),
                TcpStream::connect(SocketAddr::V4(hit.addr)),
            )
            .await;
            if let Ok(Ok(stream)) = direct {
                return fetch(stream, Vec::new(), hit, dir, progress).await;
            }
        }
        let pushed = self.ask(|reply| Req::Push {
            hit: hit.clone(),
            reply,
        });
        let (stream, rest) = tokio::time::timeout(PUSH_TIMEOUT, pushed)
            .await
            .map_err(|_| NodeError::Push("no GIV from the holder in time".into()))???;
        fetch(stream, rest, hit, dir, progress).await
    }

    /// Stops the node and every connection and transfer task it owns.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The core's settings from the node's options.
fn core_config(opts: &NodeOptions, servent_id: Guid, advertised: SocketAddrV4) -> Config {
    let mut cfg = Config::new(servent_id, advertised);
    cfg.max_conns = opts.max_conns;
    cfg.want_conns = opts.want_conns;
    cfg.max_ttl = opts.max_ttl;
    cfg.firewalled = opts.firewalled;
    cfg.role = opts.role;
    cfg.leaf_ultrapeers = opts.leaf_ultrapeers;
    cfg.deflate = opts.deflate;
    cfg.handshake_timeout = opts.handshake_timeout;
    cfg.max_pending = opts.max_pending;
    cfg.max_pending_per_ip = opts.max_pending_per_ip;
    cfg.max_payload = opts.max_payload;
    cfg.max_pings_per_sec = opts.max_pings_per_sec;
    cfg.max_queries_per_sec = opts.max_queries_per_sec;
    cfg.flood_ban = opts.flood_ban;
    cfg
}

/// What the redial needs to know of the core: its overlay peers, its slots, and which
/// bootstrap peers it has a link to (open or being opened).
struct JoinState {
    peers: usize,
    slots: usize,
    linked: Vec<bool>,
}

/// The node's own task: the user's requests, the core's events (collected at once, so the
/// shared driver never waits for us), the transfers the core hands over, and the redial of
/// bootstrap peers. The core itself runs in `servent_runtime`'s driver.
struct Driver {
    commands: mpsc::Sender<Command>,
    share: Share,
    next_search: u64,
    searches: BTreeMap<u64, Vec<Hit>>,
    /// Push command id → (servent id, index) it asked for.
    pushes: BTreeMap<u64, (Guid, u32)>,
    next_push: u64,
    push_wait: BTreeMap<(Guid, u32), PushReply>,
    /// The `--peer` servents, each dialled again while we have no link to it and a free slot.
    bootstrap: Vec<SocketAddr>,
    /// Per bootstrap peer: whether a connect is in flight, failures in a row, and when the
    /// next try may start (a peer that refuses or drops us is tried with backoff).
    redial: Vec<Redial>,
    /// Where the core's state for the redial comes back (read on another task).
    state_tx: mpsc::Sender<JoinState>,
    /// A read of the core's state for the redial is under way.
    asking: bool,
}

/// The redial state of one bootstrap peer.
#[derive(Debug, Clone, Copy)]
struct Redial {
    in_flight: bool,
    failures: u32,
    next: tokio::time::Instant,
}

/// The first retry of a bootstrap peer waits this long; each failure in a row doubles it,
/// up to [`REDIAL_MAX`].
const REDIAL_FIRST: Duration = Duration::from_secs(2);
const REDIAL_MAX: Duration = Duration::from_secs(120);

/// Answers `reply` with a read of the core, on its own task (the node's task keeps
/// collecting events meanwhile).
fn answer<R, F>(handle: &NodeHandle<Servent>, f: F, reply: oneshot::Sender<R>)
where
    R: Send + 'static,
    F: FnOnce(&Servent) -> R + Send + 'static,
{
    let read = handle.inspect(f);
    tokio::spawn(async move {
        if let Ok(r) = read.await {
            let _ = reply.send(r);
        }
    });
}

impl Driver {
    async fn run(
        mut self,
        mut handle: NodeHandle<Servent>,
        blackhole: Option<JoinHandle<()>>,
        mut reqs: mpsc::Receiver<Req>,
        mut state_rx: mpsc::Receiver<JoinState>,
        mut stop: oneshot::Receiver<()>,
    ) {
        self.ask_join_state(&handle);
        let mut rejoin = tokio::time::interval(Duration::from_secs(3));
        rejoin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                e = handle.next_event() => match e {
                    Some(e) => self.event(&handle, e),
                    None => break,
                },
                r = reqs.recv() => match r {
                    Some(r) => self.req(&handle, r),
                    None => break,
                },
                Some(s) = state_rx.recv() => self.rejoin(s),
                _ = rejoin.tick() => self.ask_join_state(&handle),
            }
        }
        if let Some(b) = blackhole {
            b.abort();
        }
        let _ = handle.shutdown().await;
    }

    /// Gives the core a command without waiting in the node's task.
    fn command(&self, cmd: Command) {
        match self.commands.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let tx = self.commands.clone();
                tokio::spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
            // The core has stopped; so will we.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn ask_join_state(&mut self, handle: &NodeHandle<Servent>) {
        if self.asking || self.bootstrap.is_empty() {
            return;
        }
        self.asking = true;
        let bootstrap = self.bootstrap.clone();
        let read = handle.inspect(move |core: &Servent| {
            let cfg = core.config();
            let slots = match cfg.role {
                Role::Leaf | Role::Auto => cfg.leaf_ultrapeers,
                Role::Flat04 | Role::Ultrapeer => cfg.max_conns,
            };
            JoinState {
                peers: core.peers().len(),
                slots,
                linked: bootstrap.iter().map(|a| core.linked_to(*a)).collect(),
            }
        });
        let tx = self.state_tx.clone();
        tokio::spawn(async move {
            if let Ok(s) = read.await {
                let _ = tx.send(s).await;
            }
        });
    }

    /// Dials each bootstrap peer we have no link to (open or being opened) while we have
    /// fewer overlay links than our slots (a leaf's ultrapeer slots, else --max-conns): one
    /// attempt per peer at a time, with backoff after failures, so a peer that refused us
    /// (busy, or too many handshakes from our address) or went away is tried again.
    fn rejoin(&mut self, s: JoinState) {
        self.asking = false;
        let wall = tokio::time::Instant::now();
        for (i, addr) in self.bootstrap.clone().into_iter().enumerate() {
            let busy = self.redial.iter().filter(|r| r.in_flight).count();
            if s.peers + busy >= s.slots {
                return;
            }
            let r = self.redial[i];
            if r.in_flight || wall < r.next || s.linked.get(i).copied().unwrap_or(false) {
                continue;
            }
            self.redial[i].in_flight = true;
            self.command(Command::Connect { id: i as u64, addr });
        }
    }

    /// A bootstrap connect ended: up (the backoff resets) or failed (it doubles).
    fn redial_done(&mut self, id: u64, up: bool) {
        let Some(r) = usize::try_from(id)
            .ok()
            .and_then(|i| self.redial.get_mut(i))
        else {
            return;
        };
        r.in_flight = false;
        if up {
            r.failures = 0;
            r.next = tokio::time::Instant::now();
        } else {
            let wait = REDIAL_FIRST
                .saturating_mul(1u32 << r.failures.min(6))
                .min(REDIAL_MAX);
            r.failures = r.failures.saturating_add(1);
            r.next = tokio::time::Instant::now() + wait;
        }
    }

    /// Runs the transfer on a connection the core handed over, once the shared driver gives
    /// its socket back with the bytes read after the core's last look.
    fn start_transfer(&mut self, handle: &NodeHandle<Servent>, conn: ConnId, kind: HandoffKind) {
        let take = handle.take_connection(conn);
        let share = self.share.clone();
        let waiter = match &kind {
            HandoffKind::Giv { giv, .. } => self.push_wait.remove(&(giv.servent_id, giv.index)),
            _ => None,
        };
        tokio::spawn(async move {
            let Ok((stream, late)) = take.await else {
                return;
            };
            match kind {
                HandoffKind::Http { mut head } => {
                    head.extend_from_slice(&late);
                    let _ = serve(stream, head, &share).await;
                }
                HandoffKind::Pushed { .. } => {
                    let _ = serve(stream, late, &share).await;
                }
                HandoffKind::Giv { mut rest, .. } => {
                    rest.extend_from_slice(&late);
                    if let Some(w) = waiter {
                        let _ = w.send(Ok((stream, rest)));
                    }
                }
            }
        });
    }

    fn req(&mut self, handle: &NodeHandle<Servent>, r: Req) {
        match r {
            Req::Search { query, ttl, reply } => {
                let id = self.next_search;
                self.next_search += 1;
                self.searches.insert(id, Vec::new());
                // Forget old searches nobody collected.
                while self.searches.len() > 64 {
                    self.searches.pop_first();
                }
                self.command(Command::Search { id, query, ttl });
                let _ = reply.send(id);
            }
            Req::TakeHits { id, reply } => {
                let _ = reply.send(self.searches.remove(&id).unwrap_or_default());
            }
            Req::Push { hit, reply } => {
                let id = self.next_push;
                self.next_push += 1;
                let key = (hit.servent_id, hit.index);
                self.pushes.insert(id, key);
                self.push_wait.insert(key, reply);
                while self.push_wait.len() > 256 {
                    self.push_wait.pop_first();
                }
                while self.pushes.len() > 256 {
                    self.pushes.pop_first();
                }
                self.command(Command::Push {
                    id,
                    servent_id: hit.servent_id,
                    index: hit.index,
                });
            }
            Req::Peers { reply } => answer(
                handle,
                |core: &Servent| core.peers().into_iter().map(|(_, a)| a).collect(),
                reply,
            ),
            Req::PeerInfos { reply } => answer(
                handle,
                |core: &Servent| (core.config().role, core.peer_infos()),
                reply,
            ),
            Req::Stats { reply } => answer(handle, |core: &Servent| core.stats().clone(), reply),
        }
    }

    fn event(&mut self, handle: &NodeHandle<Servent>, e: Event) {
        match e {
            Event::Hit { search, hit } => {
                if let Some(v) = self.searches.get_mut(&search) {
                    if v.len() < MAX_HITS {
                        v.push(hit);
                    }
                }
            }
            Event::PushSent { id, routed } => {
                if let Some(key) = self.pushes.remove(&id) {
                    if !routed {
                        if let Some(w) = self.push_wait.remove(&key) {
                            let _ =
                                w.send(Err(NodeError::Push("no route back to the holder".into())));
                        }
                    }
                }
            }
            Event::Handoff { conn, peer, kind } => {
                tracing::debug!(%peer, ?conn, "gnutella transfer handoff");
                self.start_transfer(handle, conn, kind);
            }
            Event::PeerUp { cmd: Some(id), .. } => {
                tracing::debug!(?e, "gnutella");
                self.redial_done(id, true);
            }
            Event::ConnectFailed { cmd: Some(id), .. } => {
                tracing::debug!(?e, "gnutella");
                self.redial_done(id, false);
            }
            Event::PeerDown { .. }
            | Event::PeerUp { .. }
            | Event::ConnectFailed { .. }
            | Event::PushRequested { .. } => {
                tracing::debug!(?e, "gnutella");
            }
            _ => {}
        }
    }
}

/// Reads a head (through its blank line) into `buf`, which may already hold some bytes;
/// returns the head and leaves what follows in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, NodeError> {
    loop {
        let end = servent_core::framing::find(buf, b"\r\n\r\n")
            .map(|p| p + 4)
            .or_else(|| servent_core::framing::find(buf, b"\n\n").map(|p| p + 2));
        if let Some(end) = end {
            let rest = buf.split_off(end);
            let head = std::mem::replace(buf, rest);
            return Ok(head);
        }
        if buf.len() > http::MAX_HEAD {
            return Err(NodeError::Protocol("head too long".into()));
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| NodeError::Protocol("timed out".into()))?
            .map_err(io_err("reading a head"))?;
        if n == 0 {
            return Err(NodeError::Protocol("connection closed".into()));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Serves `GET` requests on `stream` until the peer closes or asks to close.
pub async fn serve(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    share: &Share,
) -> Result<(), NodeError> {
    loop {
        let head = match read_head(&mut stream, &mut buf).await {
            Ok(h) => h,
            Err(_) => return Ok(()),
        };
        let req = match http::parse_get(&head) {
            Ok(r) => r,
            Err(e @ (http::HttpError::BadName | http::HttpError::BadPath)) => {
                tracing::debug!(error = %e, "refusing an upload request");
                stream
                    .write_all(&http::not_found(false))
                    .await
                    .map_err(io_err("answering"))?;
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "malformed upload request");
                stream
                    .write_all(&http::bad_request())
                    .await
                    .map_err(io_err("answering"))?;
                return Ok(());
            }
        };
        let opened = match &req.sha1 {
            Some(h) => share.open_sha1(h),
            None => share.open(req.index, &req.name),
        };
        let Some((file, size)) = opened else {
            stream
                .write_all(&http::not_found(req.keep_alive))
                .await
                .map_err(io_err("answering"))?;
            if req.keep_alive {
                continue;
            }
            return Ok(());
        };
        let Some((head, from, to)) = http::response_for(&req, size) else {
            stream
                .write_all(&http::range_not_satisfiable(size))
                .await
                .map_err(io_err("answering"))?;
            return Ok(());
        };
        stream
            .write_all(&head)
            .await
            .map_err(io_err("sending a head"))?;
        let mut file = tokio::fs::File::from_std(file);
        file.seek(io::SeekFrom::Start(from))
            .await
            .map_err(io_err("seeking"))?;
        // Large reads: every read of a tokio file is a trip to the blocking pool.
        let mut body = tokio::io::BufReader::with_capacity(1 << 20, file.take(to - from));
        tokio::io::copy_buf(&mut body, &mut stream)
            .await
            .map_err(io_err("sending a file"))?;
        if !req.keep_alive {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

/// Downloads `hit` on `stream` (connected to its holder, or pushed by it; `buf` holds bytes
/// already read) into `dir`, resuming `<name>.part`; renames to `<name>` once the size
/// matches.
pub async fn fetch(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    hit: &Hit,
    dir: &Path,
    progress: Option<mpsc::Sender<Progress>>,
) -> Result<PathBuf, NodeError> {
    if !http::safe_name(&hit.name) {
        return Err(NodeError::Protocol(format!(
            "refusing file name {:?}",
            hit.name
        )));
    }
    let total = u64::from(hit.size);
    let final_path = dir.join(&hit.name);
    let part_path = dir.join(format!("{}.part", hit.name));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_err(format!("creating {}", dir.display())))?;
    let mut part = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&part_path)
        .map(tokio::fs::File::from_std)
        .map_err(io_err(format!("opening {}", part_path.display())))?;
    let mut have = part
        .metadata()
        .await
        .map_err(io_err("reading the partial file"))?
        .len();
    if have > total {
        return Err(NodeError::Protocol(format!(
            "{} is larger than the file ({have} > {total})",
            part_path.display()
        )));
    }
    if have < total || total == 0 {
        let req = http::get_head(hit.index, &hit.name, hit.sha1.as_ref(), have);
        stream
            .write_all(&req)
            .await
            .map_err(io_err("sending GET"))?;
        let head = read_head(&mut stream, &mut buf).await?;
        let resp = http::parse_response(&head).map_err(|e| NodeError::Protocol(e.to_string()))?;
        match resp.status {
            200 => {
                // The whole file: start over.
                if have > 0 {
                    part.set_len(0).await.map_err(io_err("truncating"))?;
                    have = 0;
                }
            }
            206 if resp.range_start == Some(have) => {}
            s => {
                return Err(NodeError::Protocol(format!(
                    "{} answered {s} for {}",
                    hit.addr, hit.name
                )));
            }
        }
        let want = total - have;
        if resp.content_length.is_some_and(|l| l != want) {
            return Err(NodeError::Protocol(format!(
                "Content-length {:?}, expected {want}",
                resp.content_length
            )));
        }
        let mut left = want;
        let first = buf.len().min(left as usize);
        // Large writes: every write of a tokio file is a trip to the blocking pool.
        let mut w = tokio::io::BufWriter::with_capacity(4 << 20, part);
        w.write_all(buf.get(..first).unwrap_or_default())
            .await
            .map_err(io_err("writing"))?;
        left -= first as u64;
        have += first as u64;
        let mut chunk = vec![0u8; 256 * 1024];
        while left > 0 {
            let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk))
                .await
                .map_err(|_| NodeError::Protocol("transfer stalled".into()))?
                .map_err(io_err("receiving"))?;
            if n == 0 {
                break;
            }
            let n = n.min(left as usize);
            w.write_all(chunk.get(..n).unwrap_or_default())
                .await
                .map_err(io_err("writing"))?;
            left -= n as u64;
            have += n as u64;
            if let Some(p) = &progress {
                let _ = p.try_send(Progress { done: have, total });
            }
        }
        w.flush().await.map_err(io_err("flushing"))?;
        part = w.into_inner();
        part.sync_all().await.map_err(io_err("syncing"))?;
    }
    let len = part
        .metadata()
        .await
        .map_err(io_err("reading the partial file"))?
        .len();
    if len != total {
        return Err(NodeError::Protocol(format!(
            "incomplete: {len} of {total} bytes (run again to resume)"
        )));
    }
    tokio::fs::rename(&part_path, &final_path)
        .await
        .map_err(io_err(format!("renaming to {}", final_path.display())))?;
    if let Some(p) = &progress {
        let _ = p.try_send(Progress { done: total, total });
    }
    let _ = stream.shutdown().await;
    Ok(final_path)
}
