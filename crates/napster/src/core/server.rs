//! The index server as a sans-IO core: users, their shares, searches, download brokering,
//! hotlists, channels and private messages, with the limits that protect the service.
//!
//! The server owns no socket and no database. The driver feeds it connections and bytes
//! ([`Core::handle_input`]), drains the bytes to send ([`Core::poll_transmit`]), then the
//! events ([`Core::poll_event`]) and re-arms the timer ([`Core::poll_timeout`]). At start the
//! driver loads the stored accounts and bans with [`ServerCommand::LoadAccount`] and
//! [`ServerCommand::LoadBan`].
//!
//! # Slow work leaves the core
//! Password hashing (argon2id, tens of milliseconds and ~19 MiB each) and the durable
//! writes of accounts and bans are not done here: the core hands each out as a [`Job`]
//! ([`Server::poll_job`], or [`ServerEvent::Job`] from [`Core::poll_event`] when the caller
//! does not take jobs itself) and takes its [`JobResult`] back with
//! [`ServerCommand::Complete`]. The tokio driver completes jobs on blocking threads (writes
//! one at a time, in the order given); the harness and the simulator complete them inline,
//! in virtual time ([`crate::harness::settle`]). Meanwhile the core keeps serving: a flood
//! of logins waiting for their password checks never delays a search. A connection whose
//! login is waiting has its further bytes held, unread, until the answer comes (at most its
//! receive buffer; more is refused as [`Kick::Oversized`]).
//!
//! # Durability
//! An account or ban change must be on disk before anything that depends on it leaves the
//! server: a login ack sent for an account that a `kill -9` then loses would let someone
//! else take the nick. So the core changes its state and queues the reply only when the
//! [`Job::Write`] for the change came back successful; a failed write refuses the login (or
//! the ban) instead. [`ServerEvent::Persist`] then reports what was written, for observers.
//!
//! Passwords are argon2id hashes (PHC strings); salts come from the caller's
//! [`Rng`]. Argon2 costs are part of [`ServerConfig`] so the simulator can run cheaply.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use servent_core::framing::{FrameError, FrameSpec, RecvBuf};
use servent_core::{
    ConnId, Core, FxMap, Input, Instant, KeyedMap, KeyedSet, Rng, Transmit, keyed_map, keyed_set,
};

use crate::index::{FileRef, Index};
use crate::wire::{
    self, Attr, ChannelUser, ClientMsg, DecodeError, FileInfo, LinkType, PeerFile, SearchHit,
    SearchQuery, ServerMsg, kind,
};

/// A user's privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Ordinary user.
    User,
    /// May ban and unban.
    Admin,
}

impl Level {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::User => "User",
            Level::Admin => "Admin",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "User" => Some(Level::User),
            "Admin" => Some(Level::Admin),
            _ => None,
        }
    }
}

/// A registered account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The nick as registered.
    pub nick: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// E-mail address given at registration (or a placeholder).
    pub email: String,
    /// Privileges.
    pub level: Level,
}

/// A ban on a nick or an IPv4 address (dotted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// Lower-cased nick, or dotted address.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Who set it.
    pub by: String,
}

/// What the server is told by its operator.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerCommand {
    /// Load a stored account (at start).
    LoadAccount(Account),
    /// Load a stored ban (at start).
    LoadBan(Ban),
    /// Ban a nick or address now (kicks whoever matches); done as [`ServerEvent::Done`].
    Ban {
        /// Command id.
        id: u64,
        /// The ban.
        ban: Ban,
    },
    /// Lift a ban; done as [`ServerEvent::Done`].
    Unban {
        /// Command id.
        id: u64,
        /// Nick or dotted address.
        target: String,
    },
    /// Report the counters as [`ServerEvent::Stats`].
    Snapshot {
        /// Command id.
        id: u64,
    },
    /// The result of the [`Job`] the core handed out with this id.
    Complete {
        /// The job's id.
        id: u64,
        /// What it gave.
        result: JobResult,
    },
}

/// Slow work the core does not do itself; the caller completes it and feeds back the
/// [`JobResult`] as [`ServerCommand::Complete`] (see the module documentation).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Job {
    /// Hash a new account's password with argon2id; answer [`JobResult::Hashed`].
    HashPassword {
        /// The password.
        password: String,
        /// The salt, drawn from the server's [`Rng`].
        salt: [u8; 16],
        /// argon2 memory cost (KiB), iterations, lanes.
        cost: (u32, u32, u32),
    },
    /// Check a login's password against the stored PHC string; answer
    /// [`JobResult::Verified`].
    VerifyPassword {
        /// The stored argon2 PHC string.
        hash: String,
        /// The password given.
        password: String,
    },
    /// Make the change durable; answer [`JobResult::Written`]. Writes are carried out one
    /// at a time, in the order the core gave them.
    Write(Persist),
}

impl std::fmt::Debug for Job {
    /// Never prints a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::HashPassword { cost, .. } => f
                .debug_struct("HashPassword")
                .field("cost", cost)
                .finish_non_exhaustive(),
            Job::VerifyPassword { .. } => f.write_str("VerifyPassword"),
            Job::Write(p) => f.debug_tuple("Write").field(p).finish(),
        }
    }
}

impl Job {
    /// Whether this is a [`Job::Write`] (the driver's journal takes those, in order).
    pub fn is_write(&self) -> bool {
        matches!(self, Job::Write(_))
    }
}

/// What a [`Job`] gave.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobResult {
    /// The PHC string, or `None` if hashing failed.
    Hashed(Option<String>),
    /// Whether the password matched.
    Verified(bool),
    /// Whether the change is durable.
    Written(Result<(), JournalError>),
}

/// A change that must survive a crash, written through the [`Journal`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persist {
    /// A new account.
    AccountCreated(Account),
    /// A new ban.
    BanAdded(Ban),
    /// A ban lifted.
    BanRemoved {
        /// Its target.
        target: String,
    },
}

/// Durable storage, as whoever completes [`Job::Write`] sees it (the driver's SQLite store
/// on a blocking thread, or [`Volatile`] inline in the harness and the simulator).
///
/// [`Journal::write`] must return only once the change is durable (committed to disk for a
/// real store): the core sends the replies that depend on it as soon as it learns the
/// result. An error makes the core refuse the operation and leave its state as it was.
pub trait Journal: std::fmt::Debug + Send {
    /// Makes `change` durable.
    fn write(&mut self, change: &Persist) -> Result<(), JournalError>;
}

/// A [`Journal`] write that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("journal write failed: {0}")]
pub struct JournalError(pub String);

/// No durable storage (the simulator, the in-memory harness): every write succeeds and is
/// kept nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct Volatile;

impl Journal for Volatile {
    fn write(&mut self, _change: &Persist) -> Result<(), JournalError> {
        Ok(())
    }
}

/// Why a client was disconnected by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kick {
    /// Too many malformed or refused messages.
    Misbehaving,
    /// A frame larger than the limit or a receive buffer overflow.
    Oversized,
    /// Did not log in in time.
    LoginTimeout,
    /// Login refused (bad password, banned, rate limit, …).
    LoginRefused(String),
    /// Banned while online.
    Banned,
    /// Logged in again from elsewhere.
    Ghost,
    /// The server is full.
    Full,
    /// A newer connection from the same address arrived while this one, not yet logged in,
    /// was among the oldest of more than `max_pending_per_ip` such connections.
    TooManyPending,
}

/// What the server reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// This change was written durably (before any reply that depends on it).
    Persist(Persist),
    /// Work for the caller, when it does not take jobs with [`Server::poll_job`]: complete
    /// it and answer with [`ServerCommand::Complete`].
    Job {
        /// The job's id.
        id: u64,
        /// What to do.
        job: Job,
    },
    /// A user logged in.
    LoggedIn {
        /// Nick.
        nick: String,
        /// From where.
        peer: SocketAddr,
    },
    /// A user logged out or was disconnected.
    LoggedOut {
        /// Nick.
        nick: String,
    },
    /// The server closed a connection.
    Kicked {
        /// The connection.
        conn: ConnId,
        /// Why.
        why: Kick,
    },
    /// A search was answered.
    Searched {
        /// By whom.
        nick: String,
        /// How many results.
        results: usize,
    },
    /// The counters, in answer to [`ServerCommand::Snapshot`].
    Stats {
        /// Command id.
        id: u64,
        /// The counters.
        stats: ServerStats,
    },
    /// The journal refused a change; the operation that needed it was refused.
    JournalFailed {
        /// The change.
        change: Persist,
        /// Why.
        error: JournalError,
    },
    /// An operator command finished.
    Done {
        /// Its id.
        id: u64,
        /// Whether it did anything.
        ok: bool,
    },
}

/// Limits and costs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest payload accepted from a client.
    pub max_payload: usize,
    /// Most files one user may share.
    pub max_shares_per_user: usize,
    /// Results returned when a search gives no `MAX_RESULTS`.
    pub default_results: u32,
    /// Most results one search returns, whatever it asks.
    pub max_results: u32,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Logins per second per IP address, and the burst allowed.
    pub login_rate: (f64, f64),
    /// Searches per second per user, and the burst allowed.
    pub search_rate: (f64, f64),
    /// Refused or malformed messages per second per connection, and the burst before a kick.
    pub error_rate: (f64, f64),
    /// Time a new connection has to log in (default 15 s: a silent or half-open connection
    /// is closed well before it can pile up).
    pub login_timeout: Duration,
    /// How long a download request waits for the holder's accept.
    pub download_timeout: Duration,
    /// Register unknown nicks on login (2), as OpenNap does by default.
    pub auto_register: bool,
    /// Hotlist entries per user.
    pub max_hotlist: usize,
    /// Channels per user.
    pub max_channels_per_user: usize,
    /// Channels on the server.
    pub max_channels: usize,
    /// Members per channel.
    pub max_channel_members: usize,
    /// Pending download requests per holder.
    pub max_pending_per_holder: usize,
    /// Connections from one address that have not logged in yet, at most (default 16): a
    /// new one closes the oldest, so idle floods from an address cycle instead of
    /// filling the server, and a real client from the same address still gets in.
    pub max_pending_per_ip: usize,
    /// argon2 memory cost (KiB), iterations, lanes.
    pub argon2: (u32, u32, u32),
    /// Logins (and operator bans) waiting for a password check or a durable write, at most
    /// (default 256); more are refused with "Server busy", so a login flood holds a bounded
    /// amount of work and memory.
    pub max_jobs: usize,
    /// The email returned in the login ack for accounts registered without one.
    pub anon_email: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_payload: wire::DEFAULT_MAX_PAYLOAD,
            max_shares_per_user: 10_000,
            default_results: 100,
            max_results: 500,
            max_connections: 20_000,
            login_rate: (2.0, 20.0),
            search_rate: (2.0, 20.0),
            error_rate: (1.0, 20.0),
            login_timeout: Duration::from_secs(15),
            download_timeout: Duration::from_secs(120),
            auto_register: true,
            max_hotlist: 256,
            max_channels_per_user: 16,
            max_channels: 1024,
            max_channel_members: 500,
            max_pending_per_holder: 64,
            max_pending_per_ip: 16,
            argon2: (19 * 1024, 2, 1),
            max_jobs: 256,
            anon_email: "anon@servent".into(),
        }
    }
}

impl ServerConfig {
    /// Costs and limits for tests and simulations: cheap argon2, generous rates.
    pub fn for_tests() -> Self {
        ServerConfig {
            argon2: (8, 1, 1),
            login_rate: (1000.0, 100_000.0),
            search_rate: (1000.0, 100_000.0),
            ..Default::default()
        }
    }
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Users online.
    pub users: u64,
    /// Files shared.
    pub files: u64,
    /// Bytes shared.
    pub bytes: u64,
    /// Logins accepted since start.
    pub logins: u64,
    /// Logins refused since start.
    pub refused_logins: u64,
    /// Accounts created since start.
    pub registrations: u64,
    /// Searches answered since start.
    pub searches: u64,
    /// Download acks (204) and push requests (501) sent since start.
    pub downloads_brokered: u64,
    /// Connections closed by the server since start.
    pub kicks: u64,
    /// Malformed or unknown messages since start.
    pub bad_messages: u64,
    /// Account or ban changes the journal failed to store since start.
    pub journal_failures: u64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(now: Instant, (_, burst): (f64, f64)) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }
    fn take(&mut self, now: Instant, (rate, burst): (f64, f64)) -> bool {
        let dt = (now - self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct User {
    nick: String,
    key: String,
    ip: Ipv4Addr,
    port: u16,
    link: LinkType,
    level: Level,
    files: FxMap<Box<str>, FileRef>,
    share_limit_told: bool,
    hotlist: BTreeSet<String>,
    channels: BTreeSet<String>,
    search: Bucket,
    downloads: u32,
    uploads: u32,
}

#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    buf: RecvBuf,
    user: Option<Box<User>>,
    errors: Bucket,
    login_deadline: Instant,
    /// The job its login waits for; its further bytes stay unread in `buf` meanwhile.
    waiting: Option<u64>,
}

#[derive(Debug)]
struct Channel {
    name: String,
    topic: String,
    members: BTreeSet<ConnId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Login(ConnId),
    Download(u64),
}

#[derive(Debug)]
struct PendingDownload {
    holder: ConnId,
    requester: ConnId,
    file: String,
    deadline: Instant,
}

/// Where the result of a job goes.
#[derive(Debug)]
enum Waiter {
    /// A login on an existing account, waiting for its password check.
    Verify {
        conn: ConnId,
        key: String,
        port: u16,
        link: LinkType,
    },
    /// A new account, waiting for its password hash.
    Hash {
        conn: ConnId,
        nick: String,
        email: String,
        port: u16,
        link: LinkType,
    },
    /// A new account, waiting for its durable write.
    Register {
        conn: ConnId,
        account: Account,
        port: u16,
        link: LinkType,
    },
    /// A ban waiting for its durable write.
    Ban { from: Origin, ban: Ban },
    /// The lifting of a ban waiting for its durable write.
    Unban { from: Origin, target: String },
}

/// Who asked for a ban or an unban.
#[derive(Clone, Copy, Debug)]
enum Origin {
    /// The operator, with a command id.
    Operator(u64),
    /// An administrator on this connection.
    Admin(ConnId),
}

const MAX_EVENTS: usize = 1 << 16;
const MAX_TRANSMITS: usize = 1 << 18;

/// The OpenNap index server core. See the module documentation for the run loop.
#[derive(Debug)]
pub struct Server {
    cfg: ServerConfig,
    spec: FrameSpec,
    rng: Rng,
    conns: BTreeMap<ConnId, Conn>,
    // Nicks, words and addresses are peer-chosen: these maps are keyed from `rng`.
    online: KeyedMap<String, ConnId>,
    watchers: KeyedMap<String, BTreeSet<ConnId>>,
    accounts: KeyedMap<String, Account>,
    bans: BTreeMap<String, Ban>,
    channels: BTreeMap<String, Channel>,
    index: Index<ConnId>,
    pending: BTreeMap<u64, PendingDownload>,
    next_pending: u64,
    timers: BTreeSet<(Instant, Timer)>,
    login_buckets: KeyedMap<IpAddr, Bucket>,
    account_buckets: KeyedMap<String, Bucket>,
    /// Per address, its connections not logged in yet, oldest first.
    pending_by_ip: KeyedMap<IpAddr, VecDeque<ConnId>>,
    out: FxMap<ConnId, Vec<u8>>,
    dirty: Vec<ConnId>,
    closing: Vec<ConnId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
    stats: ServerStats,
    jobs: VecDeque<(u64, Job)>,
    waiters: BTreeMap<u64, Waiter>,
    next_job: u64,
    /// Nicks whose accounts are being created (hash or write in flight).
    registering: KeyedSet<String>,
}

fn key(nick: &str) -> String {
    nick.to_ascii_lowercase()
}

fn v4(addr: SocketAddr) -> Ipv4Addr {
    match addr.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

impl Server {
    /// A server with no users; `rng` salts password hashes and keys the maps of
    /// peer-chosen keys.
    pub fn new(cfg: ServerConfig, mut rng: Rng) -> Server {
        Server {
            registering: keyed_set(&mut rng),
            online: keyed_map(&mut rng),
            watchers: keyed_map(&mut rng),
            accounts: keyed_map(&mut rng),
            login_buckets: keyed_map(&mut rng),
            account_buckets: keyed_map(&mut rng),
            pending_by_ip: keyed_map(&mut rng),
            index: Index::new(&mut rng),
            jobs: VecDeque::new(),
            waiters: BTreeMap::new(),
            next_job: 0,
            spec: wire::frame_spec(cfg.max_payload),
            cfg,
            rng,
            conns: BTreeMap::new(),
            bans: BTreeMap::new(),
            channels: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_pending: 0,
            timers: BTreeSet::new(),
            out: FxMap::default(),
            dirty: Vec::new(),
            closing: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    /// Counters, with the live figures filled in.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            users: self.online.len() as u64,
            files: self.index.len() as u64,
            bytes: self.index.total_bytes(),
            ..self.stats
        }
    }

    /// Number of registered accounts.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// Whether a nick or an address is banned.
    pub fn is_banned(&self, target: &str) -> bool {
        self.bans.contains_key(&key(target))
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Whether `nick` is online.
    pub fn is_online(&self, nick: &str) -> bool {
        self.online.contains_key(&key(nick))
    }

    /// The number of files `nick` shares (0 when offline).
    pub fn shares_of(&self, nick: &str) -> usize {
        self.user_by_nick(nick).map_or(0, |u| u.files.len())
    }

    fn user_by_nick(&self, nick: &str) -> Option<&User> {
        let c = self.online.get(&key(nick))?;
        self.conns.get(c)?.user.as_deref()
    }

    fn emit(&mut self, e: ServerEvent) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    fn send(&mut self, conn: ConnId, msg: &ServerMsg) {
        let buf = self.out.entry(conn).or_default();
        if buf.is_empty() {
            self.dirty.push(conn);
        }
        // Every value we send was validated on the way in; a message that still cannot be
        // encoded is dropped rather than sent malformed.
        let _ = msg.encode(buf);
    }

    fn error(&mut self, conn: ConnId, text: impl Into<String>) {
        let logged_in = self.conns.get(&conn).is_some_and(|c| c.user.is_some());
        let text = text.into();
        if logged_in {
            self.send(conn, &ServerMsg::ErrorMessage { text });
        } else {
            self.send(conn, &ServerMsg::Error { text });
        }
    }

    /// A refused or malformed message: answered, and counted against the sender.
    fn strike(&mut self, now: Instant, conn: ConnId, text: String) {
        self.error(conn, text);
        let rate = self.cfg.error_rate;
        let over = self
            .conns
            .get_mut(&conn)
            .is_some_and(|c| !c.errors.take(now, rate));
        if over {
            self.kick(conn, Kick::Misbehaving);
        }
    }

    fn flush(&mut self) {
        for conn in std::mem::take(&mut self.dirty) {
            if let Some(data) = self.out.remove(&conn) {
                if !data.is_empty() && self.transmits.len() < MAX_TRANSMITS {
                    self.transmits.push_back(Transmit::Send { conn, data });
                }
            }
        }
        for conn in std::mem::take(&mut self.closing) {
            if self.transmits.len() < MAX_TRANSMITS {
                self.transmits.push_back(Transmit::Close { conn });
            }
        }
    }

    /// Closes a connection after what was queued for it, and forgets its user.
    fn kick(&mut self, conn: ConnId, why: Kick) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.stats.kicks += 1;
        self.emit(ServerEvent::Kicked { conn, why });
        self.drop_conn(conn);
        self.closing.push(conn);
    }

    fn unpend(&mut self, ip: IpAddr, conn: ConnId) {
        if let Some(q) = self.pending_by_ip.get_mut(&ip) {
            q.retain(|&c| c != conn);
            if q.is_empty() {
                self.pending_by_ip.remove(&ip);
            }
        }
    }

    fn drop_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.timers.remove(&(c.login_deadline, Timer::Login(conn)));
        if c.user.is_none() {
            self.unpend(c.peer.ip(), conn);
        }
        let Some(user) = c.user else { return };
        self.online.remove(&user.key);
        for (_, r) in user.files.iter() {
            self.index.remove(*r);
        }
        for friend in &user.hotlist {
            if let Some(w) = self.watchers.get_mut(friend) {
                w.remove(&conn);
                if w.is_empty() {
                    self.watchers.remove(friend);
                }
            }
        }
        let shared = u32::try_from(user.files.len()).unwrap_or(u32::MAX);
        for ch in &user.channels {
            let Some(channel) = self.channels.get_mut(ch) else {
                continue;
            };
            channel.members.remove(&conn);
            let msg = ServerMsg::UserParted(ChannelUser {
                channel: channel.name.clone(),
                nick: user.nick.clone(),
                shared,
                link: user.link,
            });
            let members: Vec<ConnId> = channel.members.iter().copied().collect();
            if members.is_empty() {
                self.channels.remove(ch);
            }
            for m in members {
                self.send(m, &msg);
            }
        }
        let stale: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.holder == conn || p.requester == conn)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(p) = self.pending.remove(&id) {
                self.timers.remove(&(p.deadline, Timer::Download(id)));
            }
        }
        if let Some(w) = self.watchers.get(&user.key) {
            let msg = ServerMsg::HotlistSignoff {
                nick: user.nick.clone(),
            };
            for m in w.clone() {
                self.send(m, &msg);
            }
        }
        self.emit(ServerEvent::LoggedOut { nick: user.nick });
    }

    /// Hands out `job` for the caller to complete; its result goes to `waiter`.
    fn submit(&mut self, job: Job, waiter: Waiter) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.waiters.insert(id, waiter);
        self.jobs.push_back((id, job));
        id
    }

    /// The next job for the caller (see the module documentation); the caller completes it
    /// and feeds the result back as [`ServerCommand::Complete`].
    pub fn poll_job(&mut self) -> Option<(u64, Job)> {
        self.jobs.pop_front()
    }

    /// Jobs handed out (or waiting to be) whose results have not come back.
    pub fn jobs_in_flight(&self) -> usize {
        self.waiters.len()
    }

    /// Asks for `change` to be made durable, unless too much work is in flight.
    fn write(&mut self, change: Persist, waiter: Waiter) -> bool {
        if self.waiters.len() >= self.cfg.max_jobs.max(1) {
            return false;
        }
        self.submit(Job::Write(change), waiter);
        true
    }

    /// A write that failed: counted and reported; the caller refuses what needed it.
    fn write_failed(&mut self, change: Persist, error: JournalError) {
        self.stats.journal_failures += 1;
        self.emit(ServerEvent::JournalFailed { change, error });
    }

    /// A write that succeeded, reported. Never dropped: at most a few per input, and the
    /// caller drains events after every input.
    fn written(&mut self, change: Persist) {
        self.events.push_back(ServerEvent::Persist(change));
    }

    fn refuse_login(&mut self, conn: ConnId, text: &str) {
        self.stats.refused_logins += 1;
        self.send(
            conn,
            &ServerMsg::Error {
                text: text.to_string(),
            },
        );
        self.kick(conn, Kick::LoginRefused(text.to_string()));
    }

    /// A login or registration (2, 6): checked here, then its password check or hash leaves
    /// as a job; [`Server::complete`] finishes it.
    #[allow(clippy::too_many_arguments)]
    fn login(
        &mut self,
        now: Instant,
        conn: ConnId,
        nick: String,
        password: String,
        port: u16,
        link: LinkType,
        register_email: Option<String>,
    ) {
        let Some(peer) = self.conns.get(&conn).map(|c| c.peer) else {
            return;
        };
        let ip = v4(peer);
        if !wire::valid_nick(&nick) {
            return self.refuse_login(conn, "Invalid nickname");
        }
        let k = key(&nick);
        if self.bans.contains_key(&k) || self.bans.contains_key(&ip.to_string()) {
            return self.refuse_login(conn, "You are banned from this server");
        }
        // The login rate has two views: attempts on an existing account are counted per
        // account (guessing one password is slow from any number of addresses, and a flood
        // of other nicks from the owner's address does not lock the owner out); attempts
        // that would create an account are counted per address.
        let rate = self.cfg.login_rate;
        let allowed = if self.accounts.contains_key(&k) {
            if self.account_buckets.len() > 100_000 {
                self.account_buckets.clear();
            }
            self.account_buckets
                .entry(k.clone())
                .or_insert_with(|| Bucket::new(now, rate))
                .take(now, rate)
        } else {
            if self.login_buckets.len() > 100_000 {
                // Forget the buckets' history rather than grow without bound.
                self.login_buckets.clear();
            }
            self.login_buckets
                .entry(peer.ip())
                .or_insert_with(|| Bucket::new(now, rate))
                .take(now, rate)
        };
        if !allowed {
            return self.refuse_login(conn, "Too many login attempts, try again later");
        }
        if self.waiters.len() >= self.cfg.max_jobs.max(1) {
            return self.refuse_login(conn, "Server busy, try again later");
        }
        let (job, waiter) = match (self.accounts.get(&k), register_email) {
            (Some(_), Some(_)) => {
                return self.refuse_login(conn, "Nickname is already registered");
            }
            (Some(a), None) => (
                Job::VerifyPassword {
                    hash: a.password_hash.clone(),
                    password,
                },
                Waiter::Verify {
                    conn,
                    key: k,
                    port,
                    link,
                },
            ),
            (None, email) => {
                if email.is_none() && !self.cfg.auto_register {
                    return self.refuse_login(conn, "Nickname is not registered");
                }
                // One creation per nick at a time: two racing registrations must not both
                // be acknowledged.
                if !self.registering.insert(k) {
                    return self.refuse_login(conn, "Nickname is being registered, try again");
                }
                let salt = self.rng.bytes::<16>();
                (
                    Job::HashPassword {
                        password,
                        salt,
                        cost: self.cfg.argon2,
                    },
                    Waiter::Hash {
                        conn,
                        nick,
                        email: email.unwrap_or_else(|| self.cfg.anon_email.clone()),
                        port,
                        link,
                    },
                )
            }
        };
        let id = self.submit(job, waiter);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.waiting = Some(id);
        }
    }

    /// Whether `conn` is still open and waiting for job `id`; clears the wait.
    fn take_wait(&mut self, conn: ConnId, id: u64) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if c.waiting == Some(id) => {
                c.waiting = None;
                true
            }
            _ => false,
        }
    }

    /// Takes the result of job `id` and carries on what waited for it.
    fn complete(&mut self, now: Instant, id: u64, result: JobResult) {
        let Some(waiter) = self.waiters.remove(&id) else {
            return;
        };
        let mut resume = None;
        match (waiter, result) {
            (
                Waiter::Verify {
                    conn,
                    key,
                    port,
                    link,
                },
                JobResult::Verified(ok),
            ) => {
                if self.take_wait(conn, id) {
                    let account = self.accounts.get(&key).cloned();
                    match account {
                        Some(a) if ok => {
                            if self.is_banned(&key) {
                                self.refuse_login(conn, "You are banned from this server");
                            } else {
                                self.finish_login(now, conn, a, port, link);
                                resume = Some(conn);
                            }
                        }
                        _ => self.refuse_login(conn, "Invalid Password"),
                    }
                }
            }
            (
                Waiter::Hash {
                    conn,
                    nick,
                    email,
                    port,
                    link,
                },
                JobResult::Hashed(hash),
            ) => {
                let k = key(&nick);
                match hash {
                    Some(hash) if self.take_wait(conn, id) => {
                        let account = Account {
                            nick,
                            password_hash: hash,
                            email,
                            level: Level::User,
                        };
                        // Durable first: the login ack must never announce an account
                        // that a crash could lose.
                        let wid = self.submit(
                            Job::Write(Persist::AccountCreated(account.clone())),
                            Waiter::Register {
                                conn,
                                account,
                                port,
                                link,
                            },
                        );
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.waiting = Some(wid);
                        }
                    }
                    Some(_) => {
                        // The connection went away: nobody was told of the account, so
                        // it is not created.
                        self.registering.remove(&k);
                    }
                    None => {
                        self.registering.remove(&k);
                        if self.take_wait(conn, id) {
                            self.refuse_login(conn, "Server error");
                        }
                    }
                }
            }
            (
                Waiter::Register {
                    conn,
                    account,
                    port,
                    link,
                },
                JobResult::Written(result),
            ) => {
                let k = key(&account.nick);
                self.registering.remove(&k);
                let change = Persist::AccountCreated(account.clone());
                match result {
                    Ok(()) => {
                        // Stored: the account exists whether or not its connection is
                        // still here to be told.
                        self.accounts.insert(k, account.clone());
                        self.stats.registrations += 1;
                        self.written(change);
                        if self.take_wait(conn, id) {
                            self.finish_login(now, conn, account, port, link);
                            resume = Some(conn);
                        }
                    }
                    Err(e) => {
                        self.write_failed(change, e);
                        if self.take_wait(conn, id) {
                            self.refuse_login(conn, "Server error: could not store the account");
                        }
                    }
                }
            }
            (Waiter::Ban { from, ban }, JobResult::Written(result)) => {
                let change = Persist::BanAdded(ban.clone());
                let ok = match result {
                    Ok(()) => {
                        self.written(change);
                        self.apply_ban(ban);
                        true
                    }
                    Err(e) => {
                        self.write_failed(change, e);
                        false
                    }
                };
                self.answer(from, ok, "Server error: could not store the ban");
            }
            (Waiter::Unban { from, target }, JobResult::Written(result)) => {
                let change = Persist::BanRemoved {
                    target: target.clone(),
                };
                let ok = match result {
                    Ok(()) => {
                        self.written(change);
                        self.bans.remove(&target).is_some()
                    }
                    Err(e) => {
                        self.write_failed(change, e);
                        false
                    }
                };
                self.answer(from, ok, "Server error: could not lift the ban");
            }
            (waiter, result) => {
                // A result of the wrong kind for its job: a driver bug. Refuse what waited.
                self.stats.bad_messages += 1;
                match waiter {
                    Waiter::Verify { conn, .. }
                    | Waiter::Hash { conn, .. }
                    | Waiter::Register { conn, .. } => {
                        if let Waiter::Hash { nick, .. }
                        | Waiter::Register {
                            account: Account { nick, .. },
                            ..
                        } = &waiter
                        {
                            self.registering.remove(&key(nick));
                        }
                        if self.take_wait(conn, id) {
                            self.refuse_login(conn, "Server error");
                        }
                    }
                    Waiter::Ban { from, .. } | Waiter::Unban { from, .. } => {
                        self.answer(from, false, "Server error");
                    }
                }
                let _ = result;
            }
        }
        // Bytes that arrived while the login waited are read now.
        if let Some(conn) = resume {
            self.stream(now, conn, &[]);
        }
    }

    /// Tells whoever asked for a ban or unban how it went.
    fn answer(&mut self, from: Origin, ok: bool, failure: &str) {
        match from {
            Origin::Operator(id) => self.emit(ServerEvent::Done { id, ok }),
            Origin::Admin(conn) => {
                if !ok {
                    self.error(conn, failure.to_string());
                }
            }
        }
    }

    /// The password matched (and a new account is stored): the user is online.
    fn finish_login(
        &mut self,
        now: Instant,
        conn: ConnId,
        account: Account,
        port: u16,
        link: LinkType,
    ) {
        let Some(peer) = self.conns.get(&conn).map(|c| c.peer) else {
            return;
        };
        let ip = v4(peer);
        let k = key(&account.nick);
        // An older session with this nick is a ghost.
        if let Some(&old) = self.online.get(&k) {
            if old != conn {
                self.error(old, "You logged in from another location");
                self.kick(old, Kick::Ghost);
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.timers.remove(&(c.login_deadline, Timer::Login(conn)));
        let pending_ip = c.user.is_none().then_some(c.peer.ip());
        c.user = Some(Box::new(User {
            nick: account.nick.clone(),
            key: k.clone(),
            ip,
            port,
            link,
            level: account.level,
            files: FxMap::default(),
            share_limit_told: false,
            hotlist: BTreeSet::new(),
            channels: BTreeSet::new(),
            search: Bucket::new(now, self.cfg.search_rate),
            downloads: 0,
            uploads: 0,
        }));
        if let Some(ip) = pending_ip {
            self.unpend(ip, conn);
        }
        self.online.insert(k.clone(), conn);
        self.stats.logins += 1;
        self.send(
            conn,
            &ServerMsg::LoginAck {
                email: account.email.clone(),
            },
        );
        let st = self.stats();
        self.send(
            conn,
            &ServerMsg::Stats {
                users: st.users,
                files: st.files,
                gigabytes: st.bytes >> 30,
            },
        );
        if let Some(w) = self.watchers.get(&k) {
            let msg = ServerMsg::HotlistSignon {
                nick: account.nick.clone(),
                link,
            };
            for m in w.clone() {
                if m != conn {
                    self.send(m, &msg);
                }
            }
        }
        self.emit(ServerEvent::LoggedIn {
            nick: account.nick,
            peer,
        });
    }

    fn oversized(&mut self, conn: ConnId, e: FrameError) {
        self.error(conn, format!("Message too long: {e}"));
        self.kick(conn, Kick::Oversized);
    }

    /// Bytes from a connection. A read may hold many messages (a share list arrives in
    /// 64 KiB reads): it is taken through the bounded buffer a piece at a time, and whole
    /// messages are handled one by one — none while the connection's login waits for a job.
    fn stream(&mut self, now: Instant, conn: ConnId, mut data: &[u8]) {
        let spec = self.spec;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let cap = c.buf.capacity_limit();
            let n = cap.saturating_sub(c.buf.len()).min(data.len());
            let (piece, rest) = data.split_at(n);
            data = rest;
            if let Err(e) = c.buf.extend(piece) {
                return self.oversized(conn, e);
            }
            loop {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if c.waiting.is_some() {
                    break;
                }
                let (t, payload) = match c.buf.next_frame(&spec) {
                    Ok(Some(f)) => {
                        let (_, t) = wire::parse_header(f.header).unwrap_or((0, 0));
                        (t, f.payload.to_vec())
                    }
                    Ok(None) => break,
                    Err(e) => return self.oversized(conn, e),
                };
                self.message(now, conn, t, &payload);
            }
            if data.is_empty() {
                return;
            }
            // Still bytes to take and no room: either a login is waiting and the client
            // sent more than the buffer holds meanwhile, or the buffer holds no whole frame
            // (the limits were misconfigured). Refuse either way; never spin.
            let full = self
                .conns
                .get(&conn)
                .is_some_and(|c| c.buf.len() >= c.buf.capacity_limit());
            if full {
                return self.oversized(conn, FrameError::BufferFull(cap));
            }
        }
    }

    fn message(&mut self, now: Instant, conn: ConnId, t: u16, payload: &[u8]) {
        let logged_in = self.conns.get(&conn).is_some_and(|c| c.user.is_some());
        let msg = match ClientMsg::decode(t, payload) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_messages += 1;
                let text = match e {
                    DecodeError::Unknown(k) => format!("Unknown command code {k}"),
                    e => format!("Invalid message: {e}"),
                };
                // A search that fails to parse still ends with 202, so clients stop waiting.
                if t == kind::SEARCH && logged_in {
                    self.send(conn, &ServerMsg::SearchEnd);
                }
                return self.strike(now, conn, text);
            }
        };
        if !logged_in {
            return match msg {
                ClientMsg::Login {
                    nick,
                    password,
                    port,
                    link,
                    ..
                } => self.login(now, conn, nick, password, port, link, None),
                ClientMsg::Register {
                    nick,
                    password,
                    port,
                    link,
                    email,
                    ..
                } => self.login(now, conn, nick, password, port, link, Some(email)),
                ClientMsg::NickCheck { nick } => {
                    let reply = self.nick_check(&nick);
                    self.send(conn, &reply);
                }
                ClientMsg::ServerPing => self.send(conn, &ServerMsg::ServerPing),
                _ => self.strike(now, conn, "You must log in first".into()),
            };
        }
        self.logged_in(now, conn, msg);
    }

    /// The answer to a nick check (7): invalid, taken or free.
    fn nick_check(&self, nick: &str) -> ServerMsg {
        if !wire::valid_nick(nick) {
            ServerMsg::NickInvalid
        } else if self.accounts.contains_key(&key(nick)) {
            ServerMsg::NickTaken
        } else {
            ServerMsg::NickFree
        }
    }

    fn user(&self, conn: ConnId) -> Option<&User> {
        self.conns.get(&conn)?.user.as_deref()
    }

    fn user_mut(&mut self, conn: ConnId) -> Option<&mut User> {
        self.conns.get_mut(&conn)?.user.as_deref_mut()
    }

    fn logged_in(&mut self, now: Instant, conn: ConnId, msg: ClientMsg) {
        match msg {
            ClientMsg::Login { .. } | ClientMsg::Register { .. } => {
                self.strike(now, conn, "You are already logged in".into())
            }
            ClientMsg::NickCheck { nick } => {
                let reply = self.nick_check(&nick);
                self.send(conn, &reply);
            }
            ClientMsg::Share(f) => self.share(now, conn, f),
            ClientMsg::Unshare { name } => {
                let r = self
                    .user_mut(conn)
                    .and_then(|u| u.files.remove(name.as_str()));
                match r {
                    Some(r) => {
                        self.index.remove(r);
                    }
                    None => self.strike(now, conn, format!("You are not sharing \"{name}\"")),
                }
            }
            ClientMsg::UnshareAll => {
                let files = self
                    .user_mut(conn)
                    .map(|u| std::mem::take(&mut u.files))
                    .unwrap_or_default();
                for (_, r) in files {
                    self.index.remove(r);
                }
            }
            ClientMsg::Search(q) => self.search(now, conn, &q),
            ClientMsg::DownloadRequest { nick, file } => {
                self.download_request(now, conn, &nick, &file)
            }
            ClientMsg::UploadAccept { nick, file } => self.upload_accept(conn, &nick, &file),
            ClientMsg::AltDownloadRequest { nick, file } => {
                self.alt_download(now, conn, &nick, &file)
            }
            ClientMsg::PrivateMessage { to, text } => {
                let from = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                match self.online.get(&key(&to)).copied() {
                    Some(dest) => self.send(dest, &ServerMsg::PrivateMessage { from, text }),
                    None => self.error(conn, format!("User {to} is not currently online.")),
                }
            }
            ClientMsg::HotlistAdd { nick } | ClientMsg::HotlistInit { nick } => {
                self.hotlist_add(conn, nick)
            }
            ClientMsg::HotlistRemove { nick } => {
                let k = key(&nick);
                if let Some(u) = self.user_mut(conn) {
                    u.hotlist.remove(&k);
                }
                if let Some(w) = self.watchers.get_mut(&k) {
                    w.remove(&conn);
                    if w.is_empty() {
                        self.watchers.remove(&k);
                    }
                }
            }
            ClientMsg::Browse { nick } => self.browse(conn, &nick),
            ClientMsg::Stats => {
                let st = self.stats();
                self.send(
                    conn,
                    &ServerMsg::Stats {
                        users: st.users,
                        files: st.files,
                        gigabytes: st.bytes >> 30,
                    },
                );
            }
            ClientMsg::Downloading => {
                if let Some(u) = self.user_mut(conn) {
                    u.downloads = u.downloads.saturating_add(1);
                }
            }
            ClientMsg::DownloadDone => {
                if let Some(u) = self.user_mut(conn) {
                    u.downloads = u.downloads.saturating_sub(1);
                }
            }
            ClientMsg::Uploading => {
                if let Some(u) = self.user_mut(conn) {
                    u.uploads = u.uploads.saturating_add(1);
                }
            }
            ClientMsg::UploadDone => {
                if let Some(u) = self.user_mut(conn) {
                    u.uploads = u.uploads.saturating_sub(1);
                }
            }
            ClientMsg::Join { channel } => self.join(now, conn, channel),
            ClientMsg::Part { channel } => self.part(now, conn, &channel),
            ClientMsg::Say { channel, text } => {
                let Some(ch) = self.member_channel(conn, &channel) else {
                    return self.strike(now, conn, format!("You are not on channel {channel}"));
                };
                let nick = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                let msg = ServerMsg::ChannelMessage {
                    channel: ch.name.clone(),
                    nick,
                    text,
                };
                for m in ch.members.clone() {
                    self.send(m, &msg);
                }
            }
            ClientMsg::SetTopic { channel, topic } => {
                let Some(name) = self.member_channel(conn, &channel).map(|c| c.name.clone()) else {
                    return self.strike(now, conn, format!("You are not on channel {channel}"));
                };
                let Some(ch) = self.channels.get_mut(&key(&name)) else {
                    return;
                };
                ch.topic = topic.clone();
                let members = ch.members.clone();
                let msg = ServerMsg::Topic {
                    channel: name,
                    topic,
                };
                for m in members {
                    self.send(m, &msg);
                }
            }
            ClientMsg::ListChannels => {
                let entries: Vec<ServerMsg> = self
                    .channels
                    .values()
                    .map(|c| ServerMsg::ChannelEntry {
                        channel: c.name.clone(),
                        users: u32::try_from(c.members.len()).unwrap_or(u32::MAX),
                        topic: if c.topic.is_empty() {
                            "-".into()
                        } else {
                            c.topic.clone()
                        },
                    })
                    .collect();
                for e in entries {
                    self.send(conn, &e);
                }
                self.send(conn, &ServerMsg::ChannelListEnd);
            }
            ClientMsg::Ban { target, reason } => {
                if self.user(conn).map(|u| u.level) != Some(Level::Admin) {
                    return self.strike(now, conn, "permission denied".into());
                }
                let by = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                let ban = Ban {
                    target: key(&target),
                    reason: reason.unwrap_or_default(),
                    by,
                };
                self.ban(ban, Origin::Admin(conn));
            }
            ClientMsg::Unban { target } => {
                if self.user(conn).map(|u| u.level) != Some(Level::Admin) {
                    return self.strike(now, conn, "permission denied".into());
                }
                self.unban(&target, Origin::Admin(conn));
            }
            ClientMsg::DataPortError { nick } => {
                let me = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                if let Some(&dest) = self.online.get(&key(&nick)) {
                    self.send(dest, &ServerMsg::DataPortError { nick: me });
                }
            }
            ClientMsg::ChangeDataPort { port } => {
                if let Some(u) = self.user_mut(conn) {
                    u.port = port;
                }
            }
            ClientMsg::ServerPing => self.send(conn, &ServerMsg::ServerPing),
            ClientMsg::PingUser { nick } => {
                let me = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                match self.online.get(&key(&nick)).copied() {
                    Some(dest) => self.send(dest, &ServerMsg::PingUser { nick: me }),
                    None => self.error(conn, format!("ping failed, {nick} is not online")),
                }
            }
            ClientMsg::PongUser { nick } => {
                let me = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                if let Some(&dest) = self.online.get(&key(&nick)) {
                    self.send(dest, &ServerMsg::PongUser { nick: me });
                }
            }
        }
    }

    fn share(&mut self, now: Instant, conn: ConnId, f: FileInfo) {
        let limit = self.cfg.max_shares_per_user;
        let Some(u) = self.user_mut(conn) else { return };
        if u.files.contains_key(f.name.as_str()) {
            return;
        }
        if u.files.len() >= limit {
            if !u.share_limit_told {
                u.share_limit_told = true;
                self.error(conn, format!("Share limit reached ({limit} files)"));
            }
            return;
        }
        if f.name.is_empty() || f.name.contains('"') {
            return self.strike(now, conn, "Invalid file name".into());
        }
        let name: Box<str> = f.name.as_str().into();
        let r = self.index.insert(conn, f);
        if let Some(u) = self.user_mut(conn) {
            u.files.insert(name, r);
        }
    }

    fn search(&mut self, now: Instant, conn: ConnId, q: &SearchQuery) {
        let rate = self.cfg.search_rate;
        let Some(u) = self.user_mut(conn) else { return };
        if !u.search.take(now, rate) {
            self.send(conn, &ServerMsg::SearchEnd);
            return self.strike(now, conn, "Search rate limit exceeded".into());
        }
        let nick = u.nick.clone();
        let limit = q
            .max_results
            .unwrap_or(self.cfg.default_results)
            .min(self.cfg.max_results) as usize;
        let speed: Vec<_> = q
            .constraints
            .iter()
            .filter(|c| c.attr == Attr::LineSpeed)
            .copied()
            .collect();
        let conns = &self.conns;
        let hits = self.index.search(q, limit, |owner| {
            owner != conn
                && conns
                    .get(&owner)
                    .and_then(|c| c.user.as_deref())
                    .is_some_and(|u| {
                        speed
                            .iter()
                            .all(|c| c.cmp.holds(u64::from(u.link.get()), c.value))
                    })
        });
        let msgs: Vec<ServerMsg> = hits
            .into_iter()
            .filter_map(|(_, e)| {
                let u = conns.get(&e.owner)?.user.as_deref()?;
                Some(ServerMsg::SearchResult(SearchHit {
                    file: e.info.clone(),
                    nick: u.nick.clone(),
                    ip: u.ip,
                    link: u.link,
                }))
            })
            .collect();
        let n = msgs.len();
        for m in msgs {
            self.send(conn, &m);
        }
        self.send(conn, &ServerMsg::SearchEnd);
        self.stats.searches += 1;
        self.emit(ServerEvent::Searched { nick, results: n });
    }

    /// The holder's connection and the file's info, if `nick` is online and shares `file`.
    fn holder_file(&self, nick: &str, file: &str) -> Option<(ConnId, FileInfo)> {
        let c = *self.online.get(&key(nick))?;
        let u = self.user(c)?;
        let r = u.files.get(file)?;
        Some((c, self.index.get(*r)?.info.clone()))
    }

    fn download_request(&mut self, now: Instant, conn: ConnId, nick: &str, file: &str) {
        let Some((holder, _)) = self.holder_file(nick, file) else {
            return self.send(
                conn,
                &ServerMsg::GetError {
                    nick: nick.into(),
                    file: file.into(),
                },
            );
        };
        let per_holder = self.pending.values().filter(|p| p.holder == holder).count();
        if per_holder >= self.cfg.max_pending_per_holder {
            return self.error(conn, format!("{nick} has too many pending requests"));
        }
        let Some(me) = self.user(conn) else { return };
        let (my_nick, my_link) = (me.nick.clone(), me.link);
        let id = self.next_pending;
        self.next_pending += 1;
        let deadline = now + self.cfg.download_timeout;
        self.pending.insert(
            id,
            PendingDownload {
                holder,
                requester: conn,
                file: file.into(),
                deadline,
            },
        );
        self.timers.insert((deadline, Timer::Download(id)));
        self.send(
            holder,
            &ServerMsg::UploadRequest {
                nick: my_nick,
                file: file.into(),
                link: Some(my_link),
            },
        );
    }

    fn upload_accept(&mut self, conn: ConnId, nick: &str, file: &str) {
        let Some(&requester) = self.online.get(&key(nick)) else {
            return;
        };
        let Some(id) = self
            .pending
            .iter()
            .find(|(_, p)| p.holder == conn && p.requester == requester && p.file == file)
            .map(|(id, _)| *id)
        else {
            // An accept nobody asked for is ignored (it could only be a forgery).
            return;
        };
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.timers.remove(&(p.deadline, Timer::Download(id)));
        let Some(holder) = self.user(conn) else {
            return;
        };
        let Some(r) = holder.files.get(file).copied() else {
            return;
        };
        let md5 = self
            .index
            .get(r)
            .map(|e| e.info.md5.clone())
            .unwrap_or_default();
        let ack = ServerMsg::DownloadAck(PeerFile {
            nick: holder.nick.clone(),
            ip: holder.ip,
            port: holder.port,
            file: file.into(),
            md5,
            link: holder.link,
        });
        self.stats.downloads_brokered += 1;
        self.send(requester, &ack);
    }

    fn alt_download(&mut self, now: Instant, conn: ConnId, nick: &str, file: &str) {
        let Some((holder, info)) = self.holder_file(nick, file) else {
            return self.send(
                conn,
                &ServerMsg::GetError {
                    nick: nick.into(),
                    file: file.into(),
                },
            );
        };
        let Some(me) = self.user(conn) else { return };
        if me.port == 0 {
            return self.strike(
                now,
                conn,
                "Both you and the holder are firewalled; no transfer is possible".into(),
            );
        }
        let push = ServerMsg::AltDownloadAck(PeerFile {
            nick: me.nick.clone(),
            ip: me.ip,
            port: me.port,
            file: file.into(),
            md5: info.md5,
            link: me.link,
        });
        self.stats.downloads_brokered += 1;
        self.send(holder, &push);
    }

    fn hotlist_add(&mut self, conn: ConnId, nick: String) {
        let max = self.cfg.max_hotlist;
        let k = key(&nick);
        let ok = wire::valid_nick(&nick)
            && self
                .user_mut(conn)
                .is_some_and(|u| u.hotlist.len() < max || u.hotlist.contains(&k));
        if !ok {
            return self.send(conn, &ServerMsg::HotlistError { nick });
        }
        if let Some(u) = self.user_mut(conn) {
            u.hotlist.insert(k.clone());
        }
        self.watchers.entry(k.clone()).or_default().insert(conn);
        self.send(conn, &ServerMsg::HotlistAck { nick });
        if let Some(friend) = self.online.get(&k).and_then(|c| self.user(*c)) {
            let msg = ServerMsg::HotlistSignon {
                nick: friend.nick.clone(),
                link: friend.link,
            };
            self.send(conn, &msg);
        }
    }

    fn browse(&mut self, conn: ConnId, nick: &str) {
        let Some(u) = self.online.get(&key(nick)).and_then(|c| self.user(*c)) else {
            self.send(conn, &ServerMsg::HotlistSignoff { nick: nick.into() });
            return self.send(
                conn,
                &ServerMsg::BrowseEnd {
                    nick: nick.into(),
                    ip: None,
                },
            );
        };
        let mut files: Vec<&FileInfo> = u
            .files
            .values()
            .filter_map(|r| self.index.get(*r).map(|e| &e.info))
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut msgs: Vec<ServerMsg> = files
            .into_iter()
            .map(|f| ServerMsg::BrowseEntry {
                nick: u.nick.clone(),
                file: f.clone(),
            })
            .collect();
        msgs.push(ServerMsg::BrowseEnd {
            nick: u.nick.clone(),
            ip: Some(u.ip),
        });
        for m in msgs {
            self.send(conn, &m);
        }
    }

    fn member_channel(&self, conn: ConnId, name: &str) -> Option<&Channel> {
        self.channels
            .get(&key(name))
            .filter(|c| c.members.contains(&conn))
    }

    fn channel_user(&self, conn: ConnId, channel: &str) -> Option<ChannelUser> {
        let u = self.user(conn)?;
        Some(ChannelUser {
            channel: channel.into(),
            nick: u.nick.clone(),
            shared: u32::try_from(u.files.len()).unwrap_or(u32::MAX),
            link: u.link,
        })
    }

    fn join(&mut self, now: Instant, conn: ConnId, channel: String) {
        if !wire::valid_channel(&channel) {
            return self.strike(now, conn, format!("Invalid channel name {channel}"));
        }
        let k = key(&channel);
        let Some(u) = self.user(conn) else { return };
        if u.channels.contains(&k) {
            return;
        }
        if u.channels.len() >= self.cfg.max_channels_per_user {
            return self.error(conn, "You are on too many channels");
        }
        let full = match self.channels.get(&k) {
            Some(c) => c.members.len() >= self.cfg.max_channel_members,
            None => self.channels.len() >= self.cfg.max_channels,
        };
        if full {
            return self.error(conn, format!("Channel {channel} is full"));
        }
        let ch = self.channels.entry(k.clone()).or_insert_with(|| Channel {
            name: channel,
            topic: String::new(),
            members: BTreeSet::new(),
        });
        ch.members.insert(conn);
        let name = ch.name.clone();
        let topic = ch.topic.clone();
        let members: Vec<ConnId> = ch.members.iter().copied().collect();
        if let Some(u) = self.user_mut(conn) {
            u.channels.insert(k);
        }
        self.send(
            conn,
            &ServerMsg::JoinAck {
                channel: name.clone(),
            },
        );
        let me = self.channel_user(conn, &name);
        for &m in &members {
            if let Some(cu) = self.channel_user(m, &name) {
                self.send(conn, &ServerMsg::ChannelUser(cu));
            }
            if m != conn {
                if let Some(me) = me.clone() {
                    self.send(m, &ServerMsg::UserJoined(me));
                }
            }
        }
        self.send(
            conn,
            &ServerMsg::ChannelUsersEnd {
                channel: name.clone(),
            },
        );
        if !topic.is_empty() {
            self.send(
                conn,
                &ServerMsg::Topic {
                    channel: name,
                    topic,
                },
            );
        }
    }

    fn part(&mut self, now: Instant, conn: ConnId, channel: &str) {
        let k = key(channel);
        let Some(name) = self.member_channel(conn, channel).map(|c| c.name.clone()) else {
            return self.strike(now, conn, format!("You are not on channel {channel}"));
        };
        let me = self.channel_user(conn, &name);
        if let Some(u) = self.user_mut(conn) {
            u.channels.remove(&k);
        }
        let mut members = Vec::new();
        if let Some(ch) = self.channels.get_mut(&k) {
            ch.members.remove(&conn);
            members = ch.members.iter().copied().collect();
            if members.is_empty() {
                self.channels.remove(&k);
            }
        }
        self.send(conn, &ServerMsg::Parted { channel: name });
        if let Some(me) = me {
            let msg = ServerMsg::UserParted(me);
            for m in members {
                self.send(m, &msg);
            }
        }
    }

    /// Asks for the ban to be stored; it is applied when that succeeded.
    fn ban(&mut self, ban: Ban, from: Origin) {
        let ban = Ban {
            target: key(&ban.target),
            ..ban
        };
        if !self.write(Persist::BanAdded(ban.clone()), Waiter::Ban { from, ban }) {
            self.answer(from, false, "Server busy, try again later");
        }
    }

    /// A stored ban in force: whoever matches it is kicked.
    fn apply_ban(&mut self, ban: Ban) {
        let target = ban.target.clone();
        let victims: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                v4(c.peer).to_string() == target || c.user.as_ref().is_some_and(|u| u.key == target)
            })
            .map(|(id, _)| *id)
            .collect();
        for v in victims {
            self.error(v, "You have been banned");
            self.kick(v, Kick::Banned);
        }
        self.bans.insert(ban.target.clone(), ban);
    }

    /// Asks for the lifting of a ban to be stored; it is lifted when that succeeded. Refused
    /// at once if there is no such ban.
    fn unban(&mut self, target: &str, from: Origin) {
        let target = key(target);
        if !self.bans.contains_key(&target) {
            return self.answer(from, false, "No such ban");
        }
        let change = Persist::BanRemoved {
            target: target.clone(),
        };
        if !self.write(change, Waiter::Unban { from, target }) {
            self.answer(from, false, "Server busy, try again later");
        }
    }

    fn command(&mut self, now: Instant, cmd: ServerCommand) {
        match cmd {
            ServerCommand::LoadAccount(a) => {
                self.accounts.insert(key(&a.nick), a);
            }
            ServerCommand::LoadBan(b) => {
                self.bans.insert(key(&b.target), b);
            }
            ServerCommand::Ban { id, ban } => self.ban(ban, Origin::Operator(id)),
            ServerCommand::Unban { id, target } => self.unban(&target, Origin::Operator(id)),
            ServerCommand::Complete { id, result } => self.complete(now, id, result),
            ServerCommand::Snapshot { id } => {
                let stats = self.stats();
                self.emit(ServerEvent::Stats { id, stats });
            }
        }
    }

    /// Makes `nick` an administrator (operator action; not persisted by itself).
    pub fn set_level(&mut self, nick: &str, level: Level) -> bool {
        let k = key(nick);
        let found = match self.accounts.get_mut(&k) {
            Some(a) => {
                a.level = level;
                true
            }
            None => false,
        };
        if let Some(u) = self.online.get(&k).copied().and_then(|c| self.user_mut(c)) {
            u.level = level;
        }
        found
    }
}

impl Core for Server {
    type Command = ServerCommand;
    type Event = ServerEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, ServerCommand>) {
        match input {
            Input::Command(cmd) => self.command(now, cmd),
            Input::Connected { conn, peer } => {
                if !conn.is_inbound() || self.conns.contains_key(&conn) {
                    // The server opens no connections.
                } else if self.conns.len() >= self.cfg.max_connections {
                    self.stats.kicks += 1;
                    self.emit(ServerEvent::Kicked {
                        conn,
                        why: Kick::Full,
                    });
                    self.send(
                        conn,
                        &ServerMsg::Error {
                            text: "Server is full".into(),
                        },
                    );
                    self.closing.push(conn);
                } else {
                    let deadline = now + self.cfg.login_timeout;
                    self.conns.insert(
                        conn,
                        Conn {
                            peer,
                            buf: RecvBuf::new(self.spec.max_frame_len() * 4),
                            user: None,
                            errors: Bucket::new(now, self.cfg.error_rate),
                            login_deadline: deadline,
                            waiting: None,
                        },
                    );
                    self.timers.insert((deadline, Timer::Login(conn)));
                    let q = self.pending_by_ip.entry(peer.ip()).or_default();
                    q.push_back(conn);
                    let oldest = (q.len() > self.cfg.max_pending_per_ip.max(1))
                        .then(|| q.front().copied())
                        .flatten();
                    if let Some(old) = oldest {
                        self.error(old, "Too many connections from your address");
                        self.kick(old, Kick::TooManyPending);
                    }
                }
            }
            Input::Received { conn, data } => self.stream(now, conn, data),
            Input::Closed { conn, .. } => {
                self.drop_conn(conn);
                self.out.remove(&conn);
            }
            _ => {}
        }
        self.flush();
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Login(conn) => {
                    if self.conns.get(&conn).is_some_and(|c| c.user.is_none()) {
                        self.error(conn, "Login timed out");
                        self.kick(conn, Kick::LoginTimeout);
                    }
                }
                Timer::Download(id) => {
                    if let Some(p) = self.pending.remove(&id) {
                        let holder = self.user(p.holder).map(|u| u.nick.clone());
                        if let Some(nick) = holder {
                            self.send(p.requester, &ServerMsg::AcceptFailed { nick, file: p.file });
                        }
                    }
                }
            }
        }
        self.flush();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Events first; then the jobs not taken with [`Server::poll_job`], as
    /// [`ServerEvent::Job`].
    fn poll_event(&mut self) -> Option<ServerEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.jobs
            .pop_front()
            .map(|(id, job)| ServerEvent::Job { id, job })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }
}
