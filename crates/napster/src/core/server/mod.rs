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

// One sub-machine per file; this file holds the types, the shared state and the run loop.
mod accounts;
mod browse;
mod channels;
mod direct;
mod messages;
mod search;
mod transfers;

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
    /// The server's name: in the message of the day and in answers to 750 (one word).
    pub name: String,
    /// The operator's message of the day, one 621 message per line after the server's own
    /// lines (version, name, welcome); sent after login and on request (621).
    pub motd: Vec<String>,
    /// Longest search (200) payload answered, in bytes (default 1024); a longer one is
    /// refused with a 404 and ended with 202, and the connection stays usable.
    pub max_search_len: usize,
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
            name: "servent".into(),
            motd: Vec::new(),
            max_search_len: 1024,
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
    /// Payload bytes still to discard of a message longer than the limit (never buffered).
    skip: usize,
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
    DirectBrowse(u64),
}

#[derive(Debug)]
struct PendingDownload {
    holder: ConnId,
    requester: ConnId,
    file: String,
    deadline: Instant,
}

/// A direct browse (640) relayed to the browsee, waiting for its accept (641).
#[derive(Debug)]
struct PendingBrowse {
    browsee: ConnId,
    requester: ConnId,
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
    direct: BTreeMap<u64, PendingBrowse>,
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
            direct: BTreeMap::new(),
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
        self.penalize(now, conn);
    }

    /// Counts a refused message against the sender (already answered); kicks it when its
    /// allowance is spent.
    fn penalize(&mut self, now: Instant, conn: ConnId) {
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
        self.forget_direct_browses(conn, &user.nick);
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

    fn user(&self, conn: ConnId) -> Option<&User> {
        self.conns.get(&conn)?.user.as_deref()
    }

    fn user_mut(&mut self, conn: ConnId) -> Option<&mut User> {
        self.conns.get_mut(&conn)?.user.as_deref_mut()
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
                            skip: 0,
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
                Timer::DirectBrowse(id) => self.direct_browse_expired(id),
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
