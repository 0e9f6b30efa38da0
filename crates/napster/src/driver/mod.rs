#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
//! The tokio side: the index server over real sockets with its SQLite store, client
//! sessions, and the data-port transfers (`GET`, `SEND`, resume by offset).
//!
//! The protocol cores ([`Server`], [`Client`]) run on `servent_runtime`'s driver; this
//! module adds what is not protocol logic: the database, files on disk, and the byte
//! streams of transfers, parsed with the sans-IO codecs of [`crate::transfer`].

mod browse;
pub mod store;

pub use browse::direct_browse;

use std::collections::{BTreeMap, VecDeque};
use std::io::SeekFrom;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use servent_core::Rng;
use servent_runtime::{NodeConfig, NodeHandle, ShareIndex};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::{Client, ClientCommand, ClientConfig, ClientEvent};
use crate::server::{
    Job, JobResult, Journal, JournalError, Level, Persist, Server, ServerCommand, ServerConfig,
    ServerEvent, ServerStats,
};
use crate::store::{SharedStore, Store, StoreError};
use crate::transfer::{self, Command, Request, TransferError};
use crate::wire::{ClientMsg, FileInfo, PeerFile, SearchHit, SearchQuery};

/// What can go wrong on the real network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Socket or file I/O.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The driver.
    #[error(transparent)]
    Driver(#[from] servent_runtime::DriverError),
    /// The shared folder.
    #[error(transparent)]
    Share(#[from] servent_runtime::ShareError),
    /// The server refused or ended the session.
    #[error("server: {0}")]
    Server(String),
    /// A peer broke the transfer protocol.
    #[error("transfer: {0}")]
    Transfer(#[from] TransferError),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A request that cannot be carried out (bad name, both sides firewalled, …).
    #[error("{0}")]
    Refused(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

/// How long a peer may stay silent during a transfer handshake or stream.
pub const TRANSFER_IDLE: Duration = Duration::from_secs(30);
/// How long the server has to answer a command.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Server

/// How to run the index server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The SQLite database.
    pub db: PathBuf,
    /// Limits and costs.
    pub config: ServerConfig,
    /// Seeds password salts and the keys of the server's hash maps: `None` (the default,
    /// every real run) draws them from the OS ([`servent_runtime::os_rng`]); tests may fix it.
    pub seed: Option<u64>,
    /// Nicks to make administrators (they must have accounts).
    pub admins: Vec<String>,
    /// Connections accepted at most.
    pub max_connections: usize,
    /// Quiet time after which the kernel probes a client (TCP keepalive, 3 probes a tenth of
    /// it apart at least 1 s): a logged-in client that vanished without closing (crash, cut
    /// link) is logged out and its shares leave the index; a quiet live client stays.
    /// `None`: never probe.
    pub keepalive: Option<std::time::Duration>,
}

impl ServerOptions {
    /// Defaults for `listen` and `db`.
    pub fn new(listen: SocketAddr, db: PathBuf) -> ServerOptions {
        ServerOptions {
            listen,
            db,
            config: ServerConfig::default(),
            seed: None,
            admins: Vec::new(),
            max_connections: 20_000,
            keepalive: Some(std::time::Duration::from_secs(60)),
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<ServerStats, NetError>>,
}

impl RunningServer {
    /// Stops the server, saves its counters and returns them.
    pub async fn shutdown(mut self) -> Result<ServerStats, NetError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(NetError::Refused(format!("server task failed: {e}"))),
        }
    }
}

/// Opens the database, loads accounts and bans, and starts serving.
pub async fn start_server(opts: ServerOptions) -> Result<RunningServer, NetError> {
    let mut store = Store::open(&opts.db)?;
    for nick in &opts.admins {
        if !store.set_level(nick, Level::Admin)? {
            return Err(NetError::Refused(format!(
                "--admin {nick}: no such account (log in once to create it)"
            )));
        }
    }
    let accounts = store.accounts()?;
    let bans = store.bans()?;
    let store = SharedStore::new(store);
    let rng = match opts.seed {
        Some(seed) => Rng::new(seed),
        None => servent_runtime::os_rng()
            .map_err(|e| NetError::Server(format!("OS randomness: {e}")))?,
    };
    let cfg = opts.config.clone();
    let max_jobs = cfg.max_jobs.max(1);
    let mut handle = servent_runtime::spawn(
        NodeConfig {
            tcp: Some(opts.listen),
            max_connections: opts.max_connections,
            keepalive: opts.keepalive,
            keepalive_interval: opts
                .keepalive
                .map_or(std::time::Duration::from_secs(10), |k| {
                    (k / 10).max(std::time::Duration::from_secs(1))
                }),
            ..NodeConfig::default()
        },
        move |_| {
            use servent_core::{Core, Input, Instant};
            let mut s = Server::new(cfg, rng);
            for a in accounts {
                s.handle_input(Instant::ZERO, Input::Command(ServerCommand::LoadAccount(a)));
            }
            for b in bans {
                s.handle_input(Instant::ZERO, Input::Command(ServerCommand::LoadBan(b)));
            }
            s
        },
    )
    .await?;
    let addr = handle
        .local
        .tcp
        .ok_or_else(|| NetError::Refused("no listening address".into()))?;
    let jobs = Jobs::start(handle.commander(), store.clone(), max_jobs);
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let mut last = ServerStats::default();
        let mut snap = 0u64;
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                ev = handle.next_event() => match ev {
                    Some(ServerEvent::Job { id, job }) => jobs.submit(id, job),
                    Some(ServerEvent::JournalFailed { change, error }) => {
                        tracing::error!(?change, %error, "could not store a change; refused it");
                    }
                    Some(ServerEvent::Stats { stats, .. }) => {
                        // Off the event loop: a slow disk never delays the server's events.
                        let st = store.clone();
                        tokio::task::spawn_blocking(move || {
                            if let Err(e) = st.with(|s| s.save_stats(&stats)) {
                                tracing::error!(%e, "could not store the counters");
                            }
                        });
                        last = stats;
                    }
                    Some(ServerEvent::LoggedIn { nick, peer }) => tracing::info!(%nick, %peer, "login"),
                    Some(ServerEvent::LoggedOut { nick }) => tracing::info!(%nick, "logout"),
                    Some(ServerEvent::Kicked { conn, why }) => tracing::info!(?conn, ?why, "disconnected a client"),
                    Some(_) => {}
                    None => break,
                },
                _ = tick.tick() => {
                    snap += 1;
                    let _ = handle.command(ServerCommand::Snapshot { id: snap }).await;
                }
            }
        }
        // Final counters: ask once more and store what comes back.
        let _ = handle
            .command(ServerCommand::Snapshot { id: u64::MAX })
            .await;
        let deadline = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                ev = handle.next_event() => match ev {
                    Some(ServerEvent::Stats { id: u64::MAX, stats }) => { last = stats; break; }
                    Some(ServerEvent::Job { id, job }) => jobs.submit(id, job),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        let _ = handle.shutdown().await;
        let st = store.clone();
        tokio::task::spawn_blocking(move || st.with(|s| s.save_stats(&last)))
            .await
            .map_err(|e| NetError::Refused(format!("storing the counters: {e}")))??;
        Ok(last)
    });
    Ok(RunningServer {
        addr,
        stop: Some(stop_tx),
        task,
    })
}

/// Completes the server core's jobs off its event loop: password hashing and checks on
/// blocking threads (as many at once as the machine has cores, so a login flood queues
/// instead of taking every core and ~19 MiB per hash), and durable writes one at a time, in
/// the order the core gave them, on one writer. Results go back as
/// [`ServerCommand::Complete`].
struct Jobs {
    commander: tokio::sync::mpsc::Sender<ServerCommand>,
    cpu: Arc<tokio::sync::Semaphore>,
    writes: tokio::sync::mpsc::Sender<(u64, Persist)>,
}

impl Jobs {
    fn start(
        commander: tokio::sync::mpsc::Sender<ServerCommand>,
        store: SharedStore,
        max_jobs: usize,
    ) -> Jobs {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // The core keeps at most `max_jobs` jobs in flight, so this queue never fills.
        let (writes, mut rx) = tokio::sync::mpsc::channel::<(u64, Persist)>(max_jobs + 16);
        let back = commander.clone();
        tokio::spawn(async move {
            while let Some((id, change)) = rx.recv().await {
                let st = store.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let mut st = st;
                    st.write(&change)
                })
                .await
                .unwrap_or_else(|e| Err(JournalError(format!("writer failed: {e}"))));
                let done = ServerCommand::Complete {
                    id,
                    result: JobResult::Written(result),
                };
                if back.send(done).await.is_err() {
                    break;
                }
            }
        });
        Jobs {
            commander,
            cpu: Arc::new(tokio::sync::Semaphore::new(cores.max(1))),
            writes,
        }
    }

    fn submit(&self, id: u64, job: Job) {
        let back = self.commander.clone();
        if let Job::Write(change) = job {
            if let Err(e) = self.writes.try_send((id, change)) {
                // Cannot happen while the core bounds its jobs; refuse rather than wait.
                let (id, _) = e.into_inner();
                tokio::spawn(async move {
                    let result = JobResult::Written(Err(JournalError("writer is busy".into())));
                    let _ = back.send(ServerCommand::Complete { id, result }).await;
                });
            }
            return;
        }
        let cpu = self.cpu.clone();
        tokio::spawn(async move {
            let failed = match &job {
                Job::HashPassword { .. } => JobResult::Hashed(None),
                _ => JobResult::Verified(false),
            };
            let result = match cpu.acquire_owned().await {
                Ok(permit) => tokio::task::spawn_blocking(move || {
                    let r = job.compute();
                    drop(permit);
                    r
                })
                .await
                .ok()
                .flatten()
                .unwrap_or(failed),
                Err(_) => failed,
            };
            let _ = back.send(ServerCommand::Complete { id, result }).await;
        });
    }
}

// ---------------------------------------------------------------------------------------
// Client session

/// Where to fetch a file from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Connect to the holder and `GET`.
    Direct(PeerFile),
    /// The holder is firewalled and was asked to connect to us and `SEND`.
    Push(PeerFile),
}

/// A logged-in session with the server.
#[derive(Debug)]
pub struct Session {
    handle: NodeHandle<Client>,
    next_id: u64,
    backlog: VecDeque<ClientEvent>,
    /// Our nick.
    pub nick: String,
    /// The e-mail the server has for us.
    pub email: String,
}

const MAX_BACKLOG: usize = 4096;

impl Session {
    /// Connects and logs in (registers the nick on first use).
    pub async fn login(cfg: ClientConfig) -> Result<Session, NetError> {
        let nick = cfg.nick.clone();
        let handle =
            servent_runtime::spawn(NodeConfig::default(), move |_| Client::new(cfg)).await?;
        let mut s = Session {
            handle,
            next_id: 1,
            backlog: VecDeque::new(),
            nick,
            email: String::new(),
        };
        let email = s
            .wait(|e| match e {
                ClientEvent::LoggedIn { email } => Some(Ok(email.clone())),
                ClientEvent::Disconnected { reason } => Some(Err(reason.clone())),
                _ => None,
            })
            .await?
            .map_err(NetError::Server)?;
        s.email = email;
        Ok(s)
    }

    async fn wait<T>(
        &mut self,
        mut pick: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> Result<T, NetError> {
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.handle.next_event())
                .await
                .map_err(|_| NetError::Timeout("no answer from the server".into()))?
                .ok_or_else(|| NetError::Server("session ended".into()))?;
            if let Some(t) = pick(&e) {
                return Ok(t);
            }
            if let ClientEvent::Disconnected { reason } = &e {
                return Err(NetError::Server(reason.clone()));
            }
            if self.backlog.len() < MAX_BACKLOG {
                self.backlog.push_back(e);
            }
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    async fn command(&mut self, cmd: ClientCommand) -> Result<(), NetError> {
        self.handle
            .command(cmd)
            .await
            .map_err(|_| NetError::Server("session ended".into()))
    }

    /// Announces files.
    pub async fn share(&mut self, files: Vec<FileInfo>) -> Result<usize, NetError> {
        let id = self.id();
        self.command(ClientCommand::Share { id, files }).await?;
        self.wait(|e| match e {
            ClientEvent::Shared { id: i, count } if *i == id => Some(Ok(*count)),
            ClientEvent::Refused { id: i, reason } if *i == id => Some(Err(reason.clone())),
            _ => None,
        })
        .await?
        .map_err(NetError::Refused)
    }

    /// Searches.
    pub async fn search(&mut self, query: SearchQuery) -> Result<Vec<SearchHit>, NetError> {
        let id = self.id();
        self.command(ClientCommand::Search { id, query }).await?;
        self.wait(|e| match e {
            ClientEvent::SearchDone { id: i, hits } if *i == id => Some(Ok(hits.clone())),
            ClientEvent::Refused { id: i, reason } if *i == id => Some(Err(reason.clone())),
            _ => None,
        })
        .await?
        .map_err(NetError::Refused)
    }

    /// Lists a user's files (`None` when the user is not online).
    pub async fn browse(&mut self, nick: &str) -> Result<Option<Vec<FileInfo>>, NetError> {
        let id = self.id();
        self.command(ClientCommand::Browse {
            id,
            nick: nick.into(),
        })
        .await?;
        self.wait(|e| match e {
            ClientEvent::BrowseDone {
                id: i, files, ip, ..
            } if *i == id => Some(Ok(ip.map(|_| files.clone()))),
            ClientEvent::Refused { id: i, reason } if *i == id => Some(Err(reason.clone())),
            _ => None,
        })
        .await?
        .map_err(NetError::Refused)
    }

    /// Asks for a file: the holder must accept (607/608) before the server tells us where.
    pub async fn request(&mut self, nick: &str, file: &str) -> Result<Route, NetError> {
        let id = self.id();
        self.command(ClientCommand::Download {
            id,
            nick: nick.into(),
            file: file.into(),
        })
        .await?;
        self.wait(|e| match e {
            ClientEvent::DownloadReady { id: i, peer } if *i == id => {
                Some(Ok(Route::Direct(peer.clone())))
            }
            ClientEvent::PushExpected { id: i, peer } if *i == id => {
                Some(Ok(Route::Push(peer.clone())))
            }
            ClientEvent::DownloadFailed { id: i, reason }
            | ClientEvent::Refused { id: i, reason }
                if *i == id =>
            {
                Some(Err(reason.clone()))
            }
            _ => None,
        })
        .await?
        .map_err(NetError::Refused)
    }

    /// Sends a protocol message that has no answer of its own (chat, hotlist, 218/219 …).
    pub async fn send(&mut self, msg: ClientMsg) -> Result<(), NetError> {
        let id = self.id();
        self.command(ClientCommand::Send { id, msg }).await?;
        self.wait(|e| match e {
            ClientEvent::Sent { id: i } if *i == id => Some(Ok(())),
            ClientEvent::Refused { id: i, reason } if *i == id => Some(Err(reason.clone())),
            _ => None,
        })
        .await?
        .map_err(NetError::Refused)
    }

    /// The next event not consumed by a command (chat, upload requests, push requests …);
    /// `None` once the session is over.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        self.handle.next_event().await
    }

    /// Closes the session.
    pub async fn close(self) {
        let _ = self.handle.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// Files

/// Napster's checksum: MD5 of the first 299 008 bytes, in hex.
pub fn napster_md5(path: &Path) -> std::io::Result<String> {
    use md5::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?.take(299_008);
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex_lower(&h.finalize()))
}

fn hex_lower(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(char::from(H[usize::from(x >> 4)]));
        s.push(char::from(H[usize::from(x & 15)]));
    }
    s
}

/// The share list of a scanned folder: each file under its relative path.
pub fn share_list(share: &ShareIndex) -> Vec<FileInfo> {
    share
        .files()
        .iter()
        .filter(|f| !f.path.contains('"'))
        .map(|f| FileInfo {
            name: f.path.clone(),
            md5: share
                .resolve(&f.path)
                .ok()
                .and_then(|p| napster_md5(&p).ok())
                .unwrap_or_else(|| "0".repeat(32)),
            size: f.size,
            // Napster clients expect audio attributes; non-MP3 files carry these neutral ones.
            bitrate: 128,
            freq: 44100,
            secs: 0,
        })
        .collect()
}

/// The local file name for a remote one: its last component, refused when empty, `.`,
/// `..`, or holding control characters.
pub fn local_name(remote: &str) -> Result<String, NetError> {
    let base = remote
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if base.is_empty() || base == "." || base == ".." || base.chars().any(char::is_control) {
        return Err(NetError::Refused(format!(
            "refusing to save {remote:?}: no usable file name"
        )));
    }
    Ok(base)
}

// ---------------------------------------------------------------------------------------
// Data port

type PushKey = (String, String);
type PushWaiter = oneshot::Sender<(TcpStream, Request, Vec<u8>)>;

/// Our data port: serves `GET`s from the shared folder and hands `SEND`s (pushes from
/// firewalled holders) to the download that waits for them.
#[derive(Debug)]
pub struct DataPort {
    /// Where it listens.
    pub addr: SocketAddr,
    share: Option<Arc<ShareIndex>>,
    pushes: Mutex<BTreeMap<PushKey, PushWaiter>>,
    /// Our answer to `GETLIST`, once [`DataPort::publish_list`] gave it.
    list: Mutex<Option<Arc<Vec<u8>>>>,
    /// Direct browses waiting for a firewalled browsee's `SENDLIST`, by lower-cased nick.
    lists: Mutex<BTreeMap<String, browse::ListWaiter>>,
    /// Uploads finished (bytes sent), for reports.
    pub uploads: Mutex<Vec<(String, u64)>>,
}

impl DataPort {
    /// Binds `listen` and serves from `share` (if any) until the returned task is aborted.
    pub async fn bind(
        listen: SocketAddr,
        share: Option<Arc<ShareIndex>>,
    ) -> Result<(Arc<DataPort>, JoinHandle<()>), NetError> {
        let l = TcpListener::bind(listen)
            .await
            .map_err(io(format!("binding data port {listen}")))?;
        let addr = l.local_addr().map_err(io("data port address"))?;
        let port = Arc::new(DataPort {
            addr,
            share,
            pushes: Mutex::new(BTreeMap::new()),
            list: Mutex::new(None),
            lists: Mutex::new(BTreeMap::new()),
            uploads: Mutex::new(Vec::new()),
        });
        let p = port.clone();
        let task = tokio::spawn(async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(64));
            loop {
                let Ok((stream, peer)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    // Too many transfers at once: refuse by closing.
                    continue;
                };
                let p = p.clone();
                tokio::spawn(async move {
                    if let Err(e) = p.inbound(stream).await {
                        tracing::debug!(%peer, "data connection: {e}");
                    }
                    drop(permit);
                });
            }
        });
        Ok((port, task))
    }

    async fn inbound(&self, mut s: TcpStream) -> Result<(), NetError> {
        s.write_all(&[transfer::HELLO])
            .await
            .map_err(io("greeting"))?;
        let mut buf = Vec::new();
        let (cmd, used) = read_until(&mut s, &mut buf, transfer::parse_command).await?;
        buf.drain(..used);
        match cmd {
            Command::GetList => return self.serve_list(s).await,
            Command::SendList => return self.take_pushed_list(s, buf).await,
            Command::Get | Command::Send => {}
        }
        let (req, used) = read_until(&mut s, &mut buf, Request::parse).await?;
        buf.drain(..used);
        match cmd {
            Command::Get => self.serve_get(s, req).await,
            Command::Send => {
                let key = (req.nick.to_ascii_lowercase(), req.file.clone());
                let waiter = self.pushes.lock().ok().and_then(|mut m| m.remove(&key));
                match waiter {
                    Some(w) => {
                        let _ = w.send((s, req, buf));
                        Ok(())
                    }
                    None => {
                        let _ = s.write_all(b"INVALID REQUEST").await;
                        Err(NetError::Refused("unexpected SEND".into()))
                    }
                }
            }
            Command::GetList | Command::SendList => Ok(()),
        }
    }

    async fn serve_get(&self, mut s: TcpStream, req: Request) -> Result<(), NetError> {
        let found = self
            .share
            .as_ref()
            .and_then(|sh| sh.by_path(&req.file).map(|f| (sh.clone(), f.clone())));
        let Some((share, f)) = found else {
            let _ = s.write_all(b"FILE NOT SHARED").await;
            return Err(NetError::Refused(format!(
                "{} asked for {:?}",
                req.nick, req.file
            )));
        };
        let sent = stream_file(&mut s, &share, f.index, req.number).await?;
        if let Ok(mut u) = self.uploads.lock() {
            if u.len() < 10_000 {
                u.push((req.nick, sent));
            }
        }
        Ok(())
    }

    fn cancel_push(&self, nick: &str, file: &str) {
        if let Ok(mut m) = self.pushes.lock() {
            m.remove(&(nick.to_ascii_lowercase(), file.to_string()));
        }
    }

    fn expect_push(
        &self,
        nick: &str,
        file: &str,
    ) -> oneshot::Receiver<(TcpStream, Request, Vec<u8>)> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.pushes.lock() {
            if m.len() < 1024 {
                m.insert((nick.to_ascii_lowercase(), file.to_string()), tx);
            }
        }
        rx
    }
}

/// Connects to a data port (bounded) and reads its greeting, the one byte `1`; the peer
/// sends nothing more before we speak.
async fn connect_hello(to: SocketAddr) -> Result<TcpStream, NetError> {
    let mut s = tokio::time::timeout(TRANSFER_IDLE, TcpStream::connect(to))
        .await
        .map_err(|_| NetError::Timeout(format!("connecting to {to}")))?
        .map_err(io(format!("connecting to {to}")))?;
    let mut buf = Vec::new();
    let hello = read_until(&mut s, &mut buf, |b| Ok(b.first().copied())).await?;
    if hello != transfer::HELLO || buf.len() > 1 {
        return Err(TransferError::BadGreeting.into());
    }
    Ok(s)
}

/// Reads into `buf` until `parse` finds something, with the idle timeout and a size cap.
async fn read_until<T>(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<Option<T>, TransferError>,
) -> Result<T, NetError> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(t) = parse(buf)? {
            return Ok(t);
        }
        if buf.len() > transfer::MAX_LINE {
            return Err(TransferError::TooLong.into());
        }
        let n = tokio::time::timeout(TRANSFER_IDLE, s.read(&mut chunk))
            .await
            .map_err(|_| NetError::Timeout("peer went silent".into()))?
            .map_err(io("reading from peer"))?;
        if n == 0 {
            return Err(NetError::Refused("peer closed the connection".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends the size and the bytes from `offset`; returns the bytes sent.
async fn stream_file(
    s: &mut TcpStream,
    share: &ShareIndex,
    index: u32,
    offset: u64,
) -> Result<u64, NetError> {
    let file = share.open(index)?;
    let size = file.metadata().map_err(io("file size"))?.len();
    if offset > size {
        let _ = s.write_all(b"INVALID REQUEST").await;
        return Err(NetError::Refused(format!(
            "offset {offset} past the end ({size})"
        )));
    }
    let mut file = tokio::fs::File::from_std(file);
    file.seek(SeekFrom::Start(offset))
        .await
        .map_err(io("seeking"))?;
    s.write_all(size.to_string().as_bytes())
        .await
        .map_err(io("sending size"))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = size - offset;
    let mut sent = 0;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(io("reading file"))?;
        if n == 0 {
            break;
        }
        tokio::time::timeout(TRANSFER_IDLE, s.write_all(&buf[..n]))
            .await
            .map_err(|_| NetError::Timeout("downloader stopped reading".into()))?
            .map_err(io("sending file"))?;
        left -= n as u64;
        sent += n as u64;
    }
    let _ = s.shutdown().await;
    Ok(sent)
}

/// Pushes a file to a downloader (we are firewalled): connect, `SEND`, stream from the
/// offset they answer.
pub async fn push_upload(
    peer: &PeerFile,
    my_nick: &str,
    share: &ShareIndex,
) -> Result<u64, NetError> {
    let f = share
        .by_path(&peer.file)
        .ok_or_else(|| NetError::Refused(format!("not sharing {:?}", peer.file)))?
        .clone();
    let to = SocketAddr::new(IpAddr::V4(peer.ip), peer.port);
    let mut s = connect_hello(to).await?;
    let mut buf = Vec::new();
    let line = Request {
        nick: my_nick.into(),
        file: f.path.clone(),
        number: f.size,
    }
    .encode()
    .ok_or_else(|| NetError::Refused("file name cannot be sent".into()))?;
    s.write_all(b"SEND").await.map_err(io("sending SEND"))?;
    s.write_all(&line).await.map_err(io("sending SEND"))?;
    buf.clear();
    let (offset, _) = read_until(&mut s, &mut buf, |b| transfer::parse_number(b, None)).await?;
    if offset > f.size {
        return Err(NetError::Refused(format!("offset {offset} past the end")));
    }
    let mut file = tokio::fs::File::from_std(share.open(f.index)?);
    file.seek(SeekFrom::Start(offset))
        .await
        .map_err(io("seeking"))?;
    let n = tokio::io::copy(&mut file.take(f.size - offset), &mut s)
        .await
        .map_err(io("pushing file"))?;
    let _ = s.shutdown().await;
    Ok(n)
}

/// Where a download went and how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// The file on disk.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Bytes that were already there (resumed from).
    pub resumed_from: u64,
    /// Whether the holder pushed it (firewalled).
    pub pushed: bool,
}

/// Downloads `file` from `nick` into `dir`, resuming from a `.part` file left by an
/// interrupted attempt. `progress(done, total)` is called as bytes arrive.
pub async fn download(
    session: &mut Session,
    data: &DataPort,
    nick: &str,
    file: &str,
    dir: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Downloaded, NetError> {
    let name = local_name(file)?;
    let final_path = dir.join(&name);
    let part_path = dir.join(format!("{name}.part"));
    // The size comes from the holder's browse list: it tells how many digits the size
    // answer has (file data may start with digits).
    let size = session
        .browse(nick)
        .await?
        .ok_or_else(|| NetError::Refused(format!("{nick} is not online")))?
        .into_iter()
        .find(|f| f.name == file)
        .map(|f| f.size)
        .ok_or_else(|| NetError::Refused(format!("{nick} does not share {file:?}")))?;
    let offset = match tokio::fs::metadata(&part_path).await {
        Ok(m) if m.len() <= size => m.len(),
        _ => 0,
    };
    // A firewalled holder may connect as soon as the server relays our push request, before
    // we learn that a push is coming: be ready for it first.
    let push = data.expect_push(nick, file);
    let route = session.request(nick, file).await;
    if !matches!(route, Ok(Route::Push(_))) {
        data.cancel_push(nick, file);
    }
    let route = route?;
    let (mut s, pushed, leftover) = match &route {
        Route::Direct(peer) => {
            let to = SocketAddr::new(IpAddr::V4(peer.ip), peer.port);
            let mut s = connect_hello(to).await?;
            let mut buf = Vec::new();
            let line = Request {
                nick: session.nick.clone(),
                file: file.into(),
                number: offset,
            }
            .encode()
            .ok_or_else(|| NetError::Refused("file name cannot be sent".into()))?;
            s.write_all(b"GET").await.map_err(io("sending GET"))?;
            s.write_all(&line).await.map_err(io("sending GET"))?;
            buf.clear();
            let digits = size.to_string().len();
            let (announced, used) = read_until(&mut s, &mut buf, |b| {
                transfer::parse_number(b, Some(digits))
            })
            .await?;
            if announced != size {
                return Err(NetError::Refused(format!(
                    "holder announced {announced} bytes, the index says {size}"
                )));
            }
            buf.drain(..used);
            (s, false, buf)
        }
        Route::Push(peer) => {
            let got = tokio::time::timeout(Duration::from_secs(60), push).await;
            data.cancel_push(nick, file);
            let (mut s, req, leftover) = got
                .map_err(|_| NetError::Timeout(format!("{} never pushed the file", peer.nick)))?
                .map_err(|_| NetError::Refused("push cancelled".into()))?;
            if req.number != size {
                return Err(NetError::Refused(format!(
                    "holder announced {} bytes, the index says {size}",
                    req.number
                )));
            }
            s.write_all(offset.to_string().as_bytes())
                .await
                .map_err(io("sending offset"))?;
            (s, true, leftover)
        }
    };
    let _ = session.send(ClientMsg::Downloading).await;
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part_path)
        .await
        .map_err(io(format!("opening {}", part_path.display())))?;
    let mut have = offset;
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = leftover;
    progress(have, size);
    while have < size {
        let n = if !first.is_empty() {
            let n = first
                .len()
                .min(usize::try_from(size - have).unwrap_or(usize::MAX));
            buf[..n].copy_from_slice(&first[..n]);
            first.clear();
            n
        } else {
            let want = buf
                .len()
                .min(usize::try_from(size - have).unwrap_or(usize::MAX));
            tokio::time::timeout(TRANSFER_IDLE, s.read(&mut buf[..want]))
                .await
                .map_err(|_| NetError::Timeout("holder went silent".into()))?
                .map_err(io("receiving file"))?
        };
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).await.map_err(io("writing file"))?;
        have += n as u64;
        progress(have, size);
    }
    out.sync_all().await.map_err(io("syncing file"))?;
    drop(out);
    let _ = session.send(ClientMsg::DownloadDone).await;
    if have < size {
        return Err(NetError::Refused(format!(
            "transfer interrupted at {have} of {size} bytes; run again to resume"
        )));
    }
    tokio::fs::rename(&part_path, &final_path)
        .await
        .map_err(io(format!("renaming to {}", final_path.display())))?;
    Ok(Downloaded {
        path: final_path,
        size,
        resumed_from: offset,
        pushed,
    })
}

/// Pushes (files and lists) a sharing session runs at once, at most.
pub const MAX_PUSHES: usize = 16;

/// Serves the upload side of a sharing session until it ends: accepts upload requests
/// (the client core does) and carries out push requests (files and direct-browse lists,
/// at most [`MAX_PUSHES`] at once).
pub async fn serve_session(
    session: &mut Session,
    share: Arc<ShareIndex>,
    mut on_event: impl FnMut(&ClientEvent),
) -> Result<(), NetError> {
    // Our list for direct browses we push (we are firewalled), encoded on first use.
    let mut list: Option<Arc<Vec<u8>>> = None;
    // Pushes are outgoing connections that anyone may ask for: at most this many at once;
    // a request past it is dropped (the requester times out), never queued without bound.
    let pushes = Arc::new(tokio::sync::Semaphore::new(MAX_PUSHES));
    while let Some(e) = session.next_event().await {
        on_event(&e);
        match e {
            ClientEvent::ListPushRequested { nick, ip, port } => {
                let bytes = match &list {
                    Some(l) => l.clone(),
                    None => {
                        let (me, sh) = (session.nick.clone(), share.clone());
                        let l = tokio::task::spawn_blocking(move || {
                            Arc::new(transfer::encode_list(&me, &share_list(&sh)))
                        })
                        .await
                        .map_err(|e| NetError::Refused(format!("listing the share: {e}")))?;
                        list = Some(l.clone());
                        l
                    }
                };
                let Ok(permit) = pushes.clone().try_acquire_owned() else {
                    tracing::info!(to = %nick, "too many pushes at once: list push dropped");
                    continue;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    let to = SocketAddr::new(IpAddr::V4(ip), port);
                    if let Err(err) = browse::push_list(to, &bytes).await {
                        tracing::info!(to = %nick, "list push failed: {err}");
                    }
                });
            }
            ClientEvent::PushRequested { peer } => {
                let Ok(permit) = pushes.clone().try_acquire_owned() else {
                    tracing::info!(to = %peer.nick, "too many pushes at once: push dropped");
                    continue;
                };
                let share = share.clone();
                let me = session.nick.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(err) = push_upload(&peer, &me, &share).await {
                        tracing::info!(to = %peer.nick, "push failed: {err}");
                    }
                });
            }
            ClientEvent::Disconnected { reason } => return Err(NetError::Server(reason)),
            _ => {}
        }
    }
    Ok(())
}
