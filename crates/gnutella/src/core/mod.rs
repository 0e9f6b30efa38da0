//! The Gnutella 0.4 servent core: handshakes, flood routing, reverse-path routing, Push.
//!
//! A [`Servent`] is a sans-IO state machine (see [`servent_core::contract`]). The driver
//! feeds it connection news and bytes; it answers with [`Transmit`]s, [`Event`]s and a
//! timer. It never touches a disk: it knows the shared files by name and size only, and it
//! hands a connection that turns out to carry a file transfer (`GET ...`, or `GIV ...` after
//! a Push) over to the driver with [`Event::Handoff`], after which it forgets it.
//!
//! Routing, per descriptor received on connection `c` with TTL `t` and hops `h`:
//! - `t == 0` is dropped; a TTL above the configured maximum is lowered to it;
//! - Ping, Query and Push whose descriptor id was seen within `route_ttl` are duplicates and
//!   dropped; otherwise the id is remembered with `c` (bounded memory, oldest evicted first);
//! - Ping is answered with a Pong on `c`; Query with a QueryHit on `c` when files match;
//! - Ping and Query are forwarded with `t-1`, `h+1` to every other connection when `t > 1`;
//! - Pong and QueryHit go back only on the connection their Ping/Query came from (or are
//!   ours); without a route they are dropped;
//! - a QueryHit teaches "servent id S is reached through `c`"; a Push for S goes only there,
//!   or is ours when S is our id: then we connect out and send `GIV`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use servent_core::framing::{Endian, FrameError, FrameSpec, RecvBuf};
use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng, Transmit};

use crate::handshake06::{
    Decision, Deflater, Handshake, HandshakeConfig, Headers, Inflater, Progress, Version,
};
use crate::http::{self, Giv};
use crate::library::{Library, SharedFile};
use crate::qrp::{self, RouteUpdate, Table};
use crate::routing::RouteTable;
use crate::wire::{
    Body, CONNECT_04, DEFAULT_MAX_PAYLOAD, Guid, HEADER_LEN, Header, HitFlags, HitRecord, Kind,
    Message, OK_04, Pong, Push, Query, QueryHit, Trailer, scan_query, scan_queryhit,
};

/// At most this many transmits wait in the core; more are dropped (and counted).
pub const MAX_TRANSMITS: usize = 1 << 16;
/// At most this many events wait; more are dropped (and counted).
pub const MAX_EVENTS: usize = 1 << 14;
/// The longest handshake or `GIV` line we read.
const MAX_HANDSHAKE: usize = 512;
/// At most this many outbound Push connections at once.
const MAX_PUSH_CONNS: usize = 16;

/// Settings of a servent.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our servent id (in QueryHits; Pushes name it).
    pub servent_id: Guid,
    /// The address we advertise in Pongs, QueryHits and Pushes.
    pub advertised: SocketAddrV4,
    /// Highest TTL we send or forward (default 7).
    pub max_ttl: u8,
    /// Most overlay connections, inbound and outbound together (default 5).
    pub max_conns: usize,
    /// Below this many, the servent connects to hosts from its cache (default 3; 0 = never).
    pub want_conns: usize,
    /// Largest payload accepted; a longer announcement closes the connection (64 KiB).
    pub max_payload: usize,
    /// How long a descriptor id is remembered for routing and duplicate detection.
    pub route_ttl: Duration,
    /// Most descriptor ids remembered (per table).
    pub route_cap: usize,
    /// Most addresses in the host cache.
    pub host_cache_cap: usize,
    /// Whether we cannot accept connections (sets the push flag in our QueryHits).
    pub firewalled: bool,
    /// Our speed in kb/s, as QueryHits report it.
    pub speed_kbps: u32,
    /// TTL of the Ping sent on every new connection (0 = none).
    pub ping_ttl: u8,
    /// Most results in one QueryHit.
    pub max_results: usize,
    /// How often the housekeeping timer runs (expiry, refilling connections, handshakes).
    pub tick: Duration,
    /// A handshake not finished within this time is abandoned.
    pub handshake_timeout: Duration,
    /// Most inbound connections still in their handshake (or HTTP request) at once; more
    /// are closed on arrival (2 000 idle sockets cost us at most this many slots).
    pub max_pending: usize,
    /// Most of those from one IP address.
    pub max_pending_per_ip: usize,
    /// Pings one link may send us per second (default 8); more are dropped unanswered and
    /// counted in [`Stats::throttled`]; a link sending over [`FLOOD_FACTOR`] times this in
    /// one second is closed as a flooder.
    pub max_pings_per_sec: u32,
    /// Queries one link may send us per second (default 200), the same way.
    pub max_queries_per_sec: u32,
    /// How long the address of a link closed as a flooder is refused (default 60 s), so
    /// that reconnecting buys it no fresh allowance.
    pub flood_ban: Duration,
    /// Gnutella 0.4 flat servent (default) or a 0.6 leaf or ultrapeer.
    pub role: Role,
    /// A leaf's most ultrapeer connections (default 3).
    pub leaf_ultrapeers: usize,
    /// An ultrapeer's most connections to other ultrapeers and 0.4 peers (default 16).
    pub up_peers: usize,
    /// An ultrapeer's most leaves (default 16).
    pub up_leaves: usize,
    /// Highest TTL of a query in the ultrapeer mesh (default 4).
    pub mesh_ttl: u8,
    /// Slots of the QRP tables we send (a power of two, default 65 536).
    pub qrp_slots: u32,
    /// Infinity of the QRP tables we send (default 7).
    pub qrp_infinity: u8,
    /// Offer and accept a deflate-compressed stream on 0.6 links (default on).
    pub deflate: bool,
    /// Our User-Agent header.
    pub user_agent: String,
    /// Most pongs an ultrapeer caches; a Ping is answered with up to 10 of them.
    pub pong_cache: usize,
    /// [`Role::Auto`]: uptime needed before becoming an ultrapeer (default 60 s).
    pub promote_uptime: Duration,
    /// [`Role::Auto`]: least `speed_kbps` to become an ultrapeer (default 256).
    pub promote_kbps: u32,
    /// An ultrapeer runs its leaves' queries and its own searches as dynamic queries
    /// (default on; off: one copy to every connection at the query's TTL).
    pub dynamic_query: bool,
    /// Dynamic querying: results wanted for one of our leaves' queries (default 50; a leaf
    /// asks about 3 ultrapeers, so it gets about three times that).
    pub dq_leaf_results: u32,
    /// Dynamic querying: results wanted for our own searches (default 150).
    pub dq_local_results: u32,
    /// Dynamic querying: ultrapeers probed first (default 3).
    pub dq_probe: usize,
    /// Dynamic querying: wait per TTL hop of the copy just sent before the next round
    /// (default 2.4 s, as LimeWire).
    pub dq_hop_wait: Duration,
    /// Dynamic querying: a query stops widening this long after it started (default 120 s).
    pub dq_lifetime: Duration,
    /// Dynamic querying: most queries running at once; more are routed the plain way
    /// (default 256).
    pub dq_max: usize,
}

/// What a servent is in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A Gnutella 0.4 servent: `GNUTELLA CONNECT/0.4`, flooding (the default).
    Flat04,
    /// A 0.6 leaf: at most `leaf_ultrapeers` connections, all to ultrapeers; routes nothing,
    /// sends its QRP table to its ultrapeers.
    Leaf,
    /// A 0.6 ultrapeer: leaves behind QRP tables, a mesh of ultrapeers with TTL at most
    /// `mesh_ttl`, pong caching; also accepts 0.4 peers as mesh neighbours.
    Ultrapeer,
    /// Supernode election: starts as a leaf and becomes an ultrapeer once capable (not
    /// firewalled, `promote_uptime` up, `speed_kbps` at least `promote_kbps`) and asked
    /// (an ultrapeer said `X-Ultrapeer-Needed: True`, or fewer ultrapeers are known than a
    /// leaf's slots). [`Servent::config`] then shows the role it acts in.
    Auto,
}

impl Role {
    /// Whether the role speaks 0.6.
    pub fn is_06(self) -> bool {
        !matches!(self, Role::Flat04)
    }
}

/// What a connected peer is, as its handshake said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerRole {
    /// A Gnutella 0.4 peer (or a 0.6 peer in a 0.4 servent).
    Legacy,
    /// A 0.6 leaf.
    Leaf,
    /// A 0.6 ultrapeer.
    Ultrapeer,
}

/// One overlay connection as [`Servent::peer_infos`] reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerInfo {
    /// Connection.
    pub conn: ConnId,
    /// Remote address.
    pub addr: SocketAddr,
    /// What the peer is.
    pub role: PeerRole,
    /// The peer's User-Agent, if it sent one.
    pub user_agent: Option<String>,
    /// Fill (0..=1) of the QRP table the peer sent us, if any.
    pub qrp_fill: Option<f64>,
    /// We read a deflate stream from the peer.
    pub deflate_in: bool,
    /// We send a deflate stream to the peer.
    pub deflate_out: bool,
}

impl Config {
    /// Defaults for a servent with id `servent_id` reachable at `advertised`.
    pub fn new(servent_id: Guid, advertised: SocketAddrV4) -> Config {
        Config {
            servent_id,
            advertised,
            max_ttl: 7,
            max_conns: 5,
            want_conns: 3,
            max_payload: DEFAULT_MAX_PAYLOAD,
            route_ttl: Duration::from_secs(300),
            route_cap: 100_000,
            host_cache_cap: 1000,
            firewalled: false,
            speed_kbps: 1000,
            ping_ttl: 7,
            max_results: 64,
            tick: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(15),
            max_pending: 128,
            max_pending_per_ip: 16,
            max_pings_per_sec: 8,
            max_queries_per_sec: 200,
            flood_ban: Duration::from_secs(60),
            role: Role::Flat04,
            leaf_ultrapeers: 3,
            up_peers: 16,
            up_leaves: 16,
            mesh_ttl: 4,
            qrp_slots: 65_536,
            qrp_infinity: 7,
            deflate: true,
            user_agent: concat!("servent/", env!("CARGO_PKG_VERSION")).to_string(),
            pong_cache: 100,
            promote_uptime: Duration::from_secs(60),
            promote_kbps: 256,
            dynamic_query: true,
            dq_leaf_results: 50,
            dq_local_results: 150,
            dq_probe: 3,
            dq_hop_wait: Duration::from_millis(2400),
            dq_lifetime: Duration::from_secs(120),
            dq_max: 256,
        }
    }
}

/// A user command; each carries an id its answer repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Open an overlay connection (answered by [`Event::PeerUp`] or [`Event::ConnectFailed`]).
    Connect {
        /// Command id.
        id: u64,
        /// Where.
        addr: SocketAddr,
    },
    /// Flood a Query (answered by [`Event::SearchStarted`], then [`Event::Hit`]s).
    Search {
        /// Command id.
        id: u64,
        /// Search criteria.
        query: String,
        /// TTL, at most the configured maximum (default: the maximum).
        ttl: Option<u8>,
    },
    /// Ask a firewalled servent to connect to us (answered by [`Event::PushSent`]).
    Push {
        /// Command id.
        id: u64,
        /// Its servent id (from the QueryHit).
        servent_id: Guid,
        /// The file wanted.
        index: u32,
    },
    /// Flood a Ping to fill the host cache (answered by [`Event::PingSent`]).
    Ping {
        /// Command id.
        id: u64,
        /// TTL.
        ttl: u8,
    },
    /// Close an overlay connection (answered by [`Event::PeerDown`]).
    Disconnect {
        /// Command id.
        id: u64,
        /// Which.
        conn: ConnId,
    },
    /// Replace the shared files.
    Share {
        /// Command id.
        id: u64,
        /// The files.
        files: Vec<SharedFile>,
    },
}

/// One search result as the user sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Where the holder says it accepts connections.
    pub addr: SocketAddrV4,
    /// The holder's servent id (for Push).
    pub servent_id: Guid,
    /// File index on the holder.
    pub index: u32,
    /// File name (lossily decoded).
    pub name: String,
    /// Size in bytes.
    pub size: u32,
    /// The holder's speed in kb/s.
    pub speed: u32,
    /// The holder is firewalled: use Push.
    pub push: bool,
    /// The holder's upload slots are full.
    pub busy: bool,
    /// The holder's vendor code, if sent.
    pub vendor: Option<[u8; 4]>,
    /// Hops the QueryHit travelled.
    pub hops: u8,
    /// The file's SHA-1, when the result carried `urn:sha1:` (HUGE).
    pub sha1: Option<[u8; 20]>,
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// The peer closed or the connection broke.
    Closed(CloseReason),
    /// The peer broke the protocol (the text says how); we closed.
    Protocol(String),
    /// The handshake did not finish in time.
    HandshakeTimeout,
    /// A second link to a servent we are already linked with (both dialled each other);
    /// the one dialled by the servent with the lower listen address stays.
    Duplicate,
    /// We were asked to.
    Requested,
    /// The peer said goodbye with a Bye (0x02) message.
    Bye {
        /// Its code (e.g. 200 for a normal shutdown).
        code: u16,
        /// Its text.
        message: String,
    },
}

/// How a handed-off connection started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandoffKind {
    /// An inbound HTTP request; `head` holds every byte received so far (from `GET `).
    Http {
        /// Bytes received so far.
        head: Vec<u8>,
    },
    /// An inbound pushed connection: the peer sent this `GIV`; `rest` is what followed it.
    Giv {
        /// The GIV.
        giv: Giv,
        /// Bytes after the GIV's blank line.
        rest: Vec<u8>,
    },
    /// We connected out because of a Push and sent `GIV`; serve the peer's `GET` on it.
    Pushed {
        /// The file pushed.
        index: u32,
    },
}

/// What the servent reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An overlay connection finished its handshake.
    PeerUp {
        /// Connection.
        conn: ConnId,
        /// Remote address.
        peer: SocketAddr,
        /// The `Connect` command that opened it, if any.
        cmd: Option<u64>,
    },
    /// An outbound connection could not be made or its handshake was refused.
    ConnectFailed {
        /// The `Connect` command, if the user asked for it.
        cmd: Option<u64>,
        /// Where.
        addr: SocketAddr,
    },
    /// An overlay connection ended.
    PeerDown {
        /// Connection.
        conn: ConnId,
        /// Remote address.
        peer: SocketAddr,
        /// Why.
        reason: DownReason,
        /// The `Disconnect` command, if the user asked for it.
        cmd: Option<u64>,
    },
    /// A Query was sent.
    SearchStarted {
        /// Command id.
        id: u64,
        /// Its descriptor id.
        guid: Guid,
        /// On how many connections.
        sent_to: usize,
    },
    /// A result for search `search`.
    Hit {
        /// The `Search` command id.
        search: u64,
        /// The result.
        hit: Hit,
    },
    /// A Push was sent, or could not be routed.
    PushSent {
        /// Command id.
        id: u64,
        /// Whether a route to the servent was known.
        routed: bool,
    },
    /// A Ping was sent.
    PingSent {
        /// Command id.
        id: u64,
        /// On how many connections.
        sent_to: usize,
    },
    /// The shared files were replaced.
    Shared {
        /// Command id.
        id: u64,
        /// How many.
        files: usize,
    },
    /// A connection that carries a transfer: the driver owns it from now on.
    Handoff {
        /// Connection.
        conn: ConnId,
        /// Remote address.
        peer: SocketAddr,
        /// What started it.
        kind: HandoffKind,
    },
    /// A [`Role::Auto`] servent was elected: it now acts as `role`.
    RoleChanged {
        /// The new role.
        role: Role,
    },
    /// A Push for us arrived; we are connecting to `to` to send `GIV`.
    PushRequested {
        /// File index.
        index: u32,
        /// Where we connect.
        to: SocketAddrV4,
    },
}

/// Message counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Descriptors received, by [`Kind::index`].
    pub rx: [u64; 5],
    /// Descriptors sent (originated or forwarded), by [`Kind::index`].
    pub tx: [u64; 5],
    /// Descriptors dropped as duplicates.
    pub duplicates: u64,
    /// Second links to a servent already linked with, closed (one link per pair).
    pub duplicate_links: u64,
    /// Inbound connections closed on arrival: too many handshakes pending (in all, or from
    /// that IP address).
    pub refused_pending: u64,
    /// Descriptors dropped because their TTL was 0.
    pub ttl_expired: u64,
    /// Replies (Pong, QueryHit, Push) dropped for want of a route.
    pub unroutable: u64,
    /// Queries answered with a QueryHit.
    pub queries_answered: u64,
    /// Distinct Queries received (not duplicates).
    pub queries_seen: u64,
    /// Malformed descriptors (the connection was closed).
    pub malformed: u64,
    /// Transmits or events dropped because a queue was full.
    pub overflow: u64,
    /// Bytes received on overlay connections.
    pub bytes_in: u64,
    /// Bytes sent on overlay connections.
    pub bytes_out: u64,
    /// ROUTE_TABLE_UPDATE (QRP) messages received.
    pub qrp_rx: u64,
    /// ROUTE_TABLE_UPDATE (QRP) messages sent.
    pub qrp_tx: u64,
    /// Well-formed messages we do not act on (vendor messages, unknown 0.6 kinds).
    pub ignored: u64,
    /// Queries an ultrapeer did not pass to a leaf or last-hop ultrapeer because its QRP
    /// table ruled them out.
    pub qrp_blocked: u64,
    /// Pongs answered from an ultrapeer's pong cache.
    pub cached_pongs: u64,
    /// Pings and Queries dropped because their link sent more per second than
    /// `max_pings_per_sec`/`max_queries_per_sec` allow.
    pub throttled: u64,
    /// Links closed for sending over [`FLOOD_FACTOR`] times that.
    pub flooders_closed: u64,
    /// Inbound connections closed on arrival because their address flooded us lately.
    pub refused_banned: u64,
    /// Dynamic queries started (an ultrapeer's leaves' queries and own searches).
    pub dq_started: u64,
    /// Dynamic queries that stopped because enough results came back.
    pub dq_satisfied: u64,
    /// Query copies sent by dynamic queries after their probe (the widening rounds).
    pub dq_round_copies: u64,
    /// Query status vendor messages received from leaves.
    pub dq_status_rx: u64,
}

impl Stats {
    /// Descriptors sent, all kinds.
    pub fn tx_total(&self) -> u64 {
        self.tx.iter().sum()
    }
}

/// Where a remembered descriptor came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Conn(ConnId),
    /// We sent it: a Search (its command id) or a Ping (`None`).
    Local(Option<u64>),
}

#[derive(Debug)]
enum State {
    /// Outbound, waiting for the TCP connection.
    Connecting,
    /// Outbound, `GNUTELLA CONNECT/0.4` sent, waiting for `GNUTELLA OK`.
    AwaitOk,
    /// Inbound, reading the first bytes to decide what it is.
    Sniff,
    /// The handshake is done: descriptors flow.
    Overlay,
    /// Outbound because of a Push: send `GIV` once connected.
    PushConnecting { giv: Giv },
    /// A 0.6 handshake (either side) in progress.
    Handshake06(Box<Handshake>),
}

/// What a 0.6 link carries beyond a 0.4 one.
#[derive(Debug, Default)]
struct Ext {
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
    /// The QRP table the peer sends us (leaves to ultrapeers, ultrapeers to ultrapeers).
    qrp_in: qrp::Receiver,
    /// The table we last sent the peer.
    qrp_sent: Option<Arc<Table>>,
    user_agent: Option<String>,
    /// The peer's X-Degree (ultrapeer connections it aims at), for dynamic querying.
    degree: Option<u32>,
    /// The peer's X-Max-TTL.
    max_ttl: Option<u8>,
}

#[derive(Debug)]
struct Conn {
    state: State,
    peer: SocketAddr,
    buf: RecvBuf,
    cmd: Option<u64>,
    since: Instant,
    /// Set when the handshake decided what the peer is (a slot is taken from then on).
    role: Option<PeerRole>,
    ext: Option<Box<Ext>>,
    /// Where the peer accepts connections: the address we dialled, its `Listen-IP` (0.6),
    /// or the address in its own Pong (hops 0). One overlay link per such address.
    listen: Option<SocketAddr>,
    /// Pings and Queries this link sent in the current one-second window.
    budget: Budget,
}

/// A link whose Pings or Queries in one second pass this many times its allowance is closed.
pub const FLOOD_FACTOR: u32 = 10;

/// Per-link counts of Pings and Queries in a one-second window (the flood allowance).
#[derive(Debug, Clone, Copy)]
struct Budget {
    window: Option<Instant>,
    pings: u32,
    queries: u32,
}

/// What a link's allowance says of one more Ping or Query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowance {
    Ok,
    Drop,
    Flood(u32),
}

impl Budget {
    fn take(&mut self, now: Instant, ping: bool, limit: u32) -> Allowance {
        let fresh = self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(1));
        if fresh {
            *self = Budget {
                window: Some(now),
                pings: 0,
                queries: 0,
            };
        }
        let n = if ping {
            &mut self.pings
        } else {
            &mut self.queries
        };
        *n = n.saturating_add(1);
        if *n <= limit {
            Allowance::Ok
        } else if *n > limit.saturating_mul(FLOOD_FACTOR) {
            Allowance::Flood(*n)
        } else {
            Allowance::Drop
        }
    }
}

impl Conn {
    fn new(state: State, peer: SocketAddr, buf_cap: usize, cmd: Option<u64>, now: Instant) -> Conn {
        let state_kind = &state;
        let listen = matches!(state_kind, State::Connecting).then_some(peer);
        Conn {
            state,
            peer,
            buf: RecvBuf::new(buf_cap),
            cmd,
            since: now,
            role: None,
            ext: None,
            listen,
            budget: Budget {
                window: None,
                pings: 0,
                queries: 0,
            },
        }
    }
}

/// The degree assumed for a neighbour that sent no X-Degree (a 0.4 servent).
const DQ_DEFAULT_DEGREE: u32 = 6;

/// Servents a query sent with `ttl` to a neighbour of degree `degree` reaches in theory:
/// 1 + (d-1) + (d-1)^2 + ... (`ttl` terms), times 0.8 per hop beyond the first for the
/// overlap of a real mesh (gtk-gnutella's correction).
fn dq_horizon(degree: u32, ttl: u8) -> f64 {
    let d = f64::from(degree.clamp(1, 64).saturating_sub(1));
    let mut sum = 0.0;
    let mut term = 1.0;
    for _ in 0..ttl.min(8) {
        sum += term;
        term *= d;
    }
    sum * 0.8f64.powi(i32::from(ttl.clamp(1, 8)) - 1)
}

/// A neighbour a dynamic query may use next.
#[derive(Clone, Copy, Debug)]
struct DqPeer {
    conn: ConnId,
    degree: u32,
    max_ttl: u8,
    /// It sent a last-hop QRP table and that table may match.
    matches: bool,
    /// Its last-hop QRP table rules the query out.
    ruled_out: bool,
}

/// A dynamic query an ultrapeer runs for one of its leaves or for itself.
#[derive(Debug)]
struct DynQuery {
    /// The leaf that asked (None: our own search).
    leaf: Option<ConnId>,
    /// The Query payload, as the copies carry it.
    payload: Vec<u8>,
    /// Hops of the copies we send.
    hops: u8,
    /// Highest TTL of a copy.
    ceiling: u8,
    /// Results wanted.
    target: u32,
    /// Ultrapeer connections that got a copy (at most our connections).
    used: BTreeSet<ConnId>,
    /// Results routed back through us (or to us) so far.
    results: u32,
    /// The leaf's last query status: (hits it kept, `results` when it said so).
    status: Option<(u32, u32)>,
    /// Theoretical servents reached so far.
    horizon: f64,
    /// When the next round is due.
    next: Instant,
    /// When the query stops widening.
    deadline: Instant,
}

impl DynQuery {
    /// The results that count towards the target: a leaf's own count, when it sends one,
    /// divided by the 3 ultrapeers a leaf usually asks (it counts what they all sent),
    /// plus what came through us since; else what came through us.
    fn effective(&self) -> u32 {
        match self.status {
            Some((kept, at)) => (kept / 3).saturating_add(self.results.saturating_sub(at)),
            None => self.results,
        }
    }
}

/// At most this many pongs go back for one Ping from the cache.
const PONGS_PER_PING: usize = 10;
/// A bound on the rounds of one `received` call (each consumes input or yields output).
const MAX_ROUNDS: usize = 1 << 20;

/// The servent core. Drive it as [`servent_core::contract`] describes: after each input,
/// drain [`Core::poll_transmit`] first, then [`Core::poll_event`], then re-arm the timer
/// from [`Core::poll_timeout`]; `now` never goes backwards.
#[derive(Debug)]
pub struct Servent {
    cfg: Config,
    rng: Rng,
    library: Library,
    conns: BTreeMap<ConnId, Conn>,
    /// (descriptor id, kind of the request) → where it came from.
    routes: RouteTable<(Guid, Kind), Route>,
    /// Servent id → the connection its QueryHits came from.
    push_routes: RouteTable<Guid, ConnId>,
    host_cache: VecDeque<SocketAddrV4>,
    host_set: servent_core::KeyedSet<SocketAddrV4>,
    next_conn: u64,
    next_tick: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    frame: FrameSpec,
    scratch: Vec<ConnId>,
    /// Addresses known to be ultrapeers (X-Try-Ultrapeers, handshakes), newest last.
    up_cache: VecDeque<SocketAddrV4>,
    /// Our own QRP table (0.6 roles): a leaf's files, or an ultrapeer's merged table.
    qrp_local: Option<Arc<Table>>,
    /// The local table must be rebuilt (shares or leaf tables changed).
    qrp_dirty: bool,
    /// An ultrapeer's pong cache: (address, files, kbytes), newest last.
    pongs: VecDeque<Pong>,
    /// A connection was lost or refused: refill from the caches before the next tick.
    urgent_refill: bool,
    /// Started as [`Role::Auto`] (and `cfg.role` is the role we act in).
    auto: bool,
    /// When the servent first ran (for the uptime of the election).
    started: Option<Instant>,
    /// An ultrapeer told us `X-Ultrapeer-Needed: True`.
    needed_seen: bool,
    /// Dynamic queries in progress, by descriptor id (at most `dq_max`).
    dqs: servent_core::KeyedMap<Guid, DynQuery>,
    /// Addresses of flooders, refused until the instant (at most [`MAX_BANNED`]).
    banned: servent_core::KeyedMap<IpAddr, Instant>,
}

/// Most flooder addresses remembered at once.
const MAX_BANNED: usize = 4096;

impl Servent {
    /// A servent with settings `cfg`, drawing randomness (descriptor ids, host choice) from
    /// `rng`.
    pub fn new(mut cfg: Config, mut rng: Rng) -> Servent {
        let auto = cfg.role == Role::Auto;
        if auto {
            cfg.role = Role::Leaf;
        }
        let frame = FrameSpec {
            header_len: HEADER_LEN,
            len_offset: 19,
            len_width: 4,
            endian: Endian::Little,
            max_payload: cfg.max_payload,
        };
        let host_set = servent_core::keyed_set(&mut rng);
        let dqs = servent_core::keyed_map(&mut rng);
        let banned = servent_core::keyed_map(&mut rng);
        Servent {
            routes: RouteTable::new(cfg.route_cap, cfg.route_ttl, &mut rng),
            push_routes: RouteTable::new(cfg.route_cap, cfg.route_ttl, &mut rng),
            cfg,
            rng,
            library: Library::default(),
            conns: BTreeMap::new(),
            host_cache: VecDeque::new(),
            host_set,
            next_conn: 0,
            next_tick: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            frame,
            scratch: Vec::new(),
            up_cache: VecDeque::new(),
            qrp_local: None,
            qrp_dirty: true,
            pongs: VecDeque::new(),
            urgent_refill: false,
            auto,
            started: None,
            needed_seen: false,
            dqs,
            banned,
        }
    }

    /// Changes the address we advertise (a driver learns it after binding).
    pub fn set_advertised(&mut self, addr: SocketAddrV4) {
        self.cfg.advertised = addr;
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Message counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The shared files.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Overlay connections whose handshake is done, with their remote addresses.
    pub fn peers(&self) -> Vec<(ConnId, SocketAddr)> {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Overlay))
            .map(|(id, c)| (*id, c.peer))
            .collect()
    }

    /// Addresses learnt from Pongs, newest last.
    pub fn host_cache(&self) -> impl Iterator<Item = &SocketAddrV4> {
        self.host_cache.iter()
    }

    /// Descriptor ids currently remembered.
    pub fn routes_len(&self) -> usize {
        self.routes.len()
    }

    fn emit(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        } else {
            self.stats.overflow += 1;
        }
    }

    fn transmit(&mut self, t: Transmit) {
        if self.transmits.len() < MAX_TRANSMITS {
            self.transmits.push_back(t);
        } else {
            self.stats.overflow += 1;
        }
    }

    fn send_bytes(&mut self, conn: ConnId, data: Vec<u8>, kind: Option<Kind>) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.overflow += 1;
            return;
        }
        if let Some(k) = kind {
            self.stats.tx[k.index()] += 1;
        }
        // A deflate link compresses everything after its last header block.
        let data = match self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.ext.as_mut())
            .and_then(|e| e.deflater.as_mut())
        {
            Some(d) => {
                let mut out = Vec::with_capacity(data.len() / 2 + 16);
                if d.compress(&data, &mut out).is_err() {
                    return;
                }
                out
            }
            None => data,
        };
        if kind.is_some()
            || matches!(self.conns.get(&conn), Some(c) if matches!(c.state, State::Overlay))
        {
            self.stats.bytes_out += data.len() as u64;
        }
        self.transmits.push_back(Transmit::Send { conn, data });
    }

    /// Overlay connections, up or being opened by us.
    fn overlay_count(&self) -> usize {
        self.conns
            .iter()
            .filter(|(id, c)| match c.state {
                State::Overlay | State::AwaitOk | State::Connecting => true,
                State::Handshake06(_) => !id.is_inbound(),
                _ => false,
            })
            .count()
    }

    /// Connections whose handshake gave the peer role `r` (up, or accepted and finishing).
    fn role_count(&self, r: PeerRole) -> usize {
        self.conns.values().filter(|c| c.role == Some(r)).count()
    }

    fn new_conn_id(&mut self) -> ConnId {
        let id = ConnId::outbound(self.next_conn);
        self.next_conn += 1;
        id
    }

    fn arm_tick(&mut self, now: Instant) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.cfg.tick);
        }
    }

    fn open(&mut self, now: Instant, addr: SocketAddr, cmd: Option<u64>) {
        let conn = self.new_conn_id();
        self.conns.insert(
            conn,
            Conn::new(State::Connecting, addr, MAX_HANDSHAKE, cmd, now),
        );
        self.transmit(Transmit::Connect { conn, to: addr });
        self.arm_tick(now);
    }

    /// Whether an overlay connection (open or being opened) goes to the servent listening
    /// at `a`.
    pub fn linked_to(&self, a: SocketAddr) -> bool {
        self.conns.values().any(|c| {
            !matches!(c.state, State::PushConnecting { .. }) && (c.peer == a || c.listen == Some(a))
        })
    }

    /// Records that the peer of `conn` listens at `listen`. When another overlay connection
    /// already goes to that servent (both of us dialled), one of the two is closed: the link
    /// dialled by the servent with the lower listen address stays, so both ends close the
    /// same one. Returns whether `conn` is still open.
    fn note_listen(&mut self, conn: ConnId, listen: SocketAddr) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.listen.is_some() {
            return true;
        }
        c.listen = Some(listen);
        let other = self
            .conns
            .iter()
            .find(|(id, c)| {
                **id != conn
                    && c.listen == Some(listen)
                    && !matches!(c.state, State::PushConnecting { .. })
            })
            .map(|(id, _)| *id);
        let Some(other) = other else {
            return true;
        };
        // The link I dialled stays when my address is the lower one; else the one it dialled.
        let keep_mine = SocketAddr::V4(self.cfg.advertised) < listen;
        let drop = match (conn.is_inbound(), other.is_inbound()) {
            (true, false) if keep_mine => conn,
            (true, false) => other,
            (false, true) if keep_mine => other,
            // Two links in the same direction: the newer goes.
            _ => conn,
        };
        self.stats.duplicate_links += 1;
        self.close(drop, DownReason::Duplicate, None);
        drop != conn
    }

    fn close(&mut self, conn: ConnId, reason: DownReason, cmd: Option<u64>) {
        if let Some(c) = self.conns.remove(&conn) {
            self.transmit(Transmit::Close { conn });
            self.lost(conn, c, reason, cmd);
        }
    }

    /// Reports the end of a connection already removed from the table.
    fn lost(&mut self, conn: ConnId, c: Conn, reason: DownReason, cmd: Option<u64>) {
        match c.state {
            State::Overlay => self.emit(Event::PeerDown {
                conn,
                peer: c.peer,
                reason,
                cmd,
            }),
            State::Connecting | State::AwaitOk => self.emit(Event::ConnectFailed {
                cmd: c.cmd,
                addr: c.peer,
            }),
            State::Handshake06(_) if !conn.is_inbound() => self.emit(Event::ConnectFailed {
                cmd: c.cmd,
                addr: c.peer,
            }),
            State::Sniff | State::PushConnecting { .. } | State::Handshake06(_) => {}
        }
        if c.role == Some(PeerRole::Leaf) {
            self.qrp_dirty = true;
            // Nobody is left to want the results of its dynamic queries.
            self.dqs.retain(|_, q| q.leaf != Some(conn));
        }
        if self.cfg.role.is_06() {
            self.urgent_refill = true;
        }
    }

    fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Connect { id, addr } => {
                let max = match self.cfg.role {
                    Role::Leaf => self.cfg.leaf_ultrapeers,
                    Role::Ultrapeer => self.cfg.up_peers + self.cfg.up_leaves,
                    _ => self.cfg.max_conns,
                };
                if self.overlay_count() >= max {
                    self.emit(Event::ConnectFailed {
                        cmd: Some(id),
                        addr,
                    });
                } else {
                    self.open(now, addr, Some(id));
                }
            }
            Command::Search { id, query, ttl } => {
                let guid = Guid::random(&mut self.rng);
                let default_ttl = if self.cfg.role.is_06() {
                    self.cfg.mesh_ttl
                } else {
                    self.cfg.max_ttl
                };
                let ttl = ttl.unwrap_or(default_ttl).clamp(1, self.cfg.max_ttl.max(1));
                self.routes
                    .put(now, (guid, Kind::Query), Route::Local(Some(id)));
                let mut min_speed = Query::FLAGGED;
                if self.cfg.firewalled {
                    min_speed[0] |= crate::wire::QUERY_FLAG_FIREWALLED;
                }
                let msg = Message {
                    id: guid,
                    ttl,
                    hops: 0,
                    body: Body::Query(Query {
                        min_speed,
                        criteria: query.into_bytes(),
                        extensions: Vec::new(),
                    }),
                };
                let sent_to = if self.cfg.role == Role::Ultrapeer {
                    let bytes = msg.encode();
                    let payload = bytes.get(HEADER_LEN..).unwrap_or(&[]);
                    let ttl = ttl.min(self.cfg.mesh_ttl);
                    let target = self.cfg.dq_local_results;
                    self.dq_start(now, guid, ttl, 0, payload, None, target)
                } else {
                    self.flood(&msg.encode(), &[], Kind::Query, None)
                };
                self.emit(Event::SearchStarted { id, guid, sent_to });
            }
            Command::Push {
                id,
                servent_id,
                index,
            } => {
                let route = self.push_routes.get(now, &servent_id);
                let routed = match route {
                    Some(conn) if self.is_overlay(conn) => {
                        let msg = Message {
                            id: Guid::random(&mut self.rng),
                            ttl: self.cfg.max_ttl,
                            hops: 0,
                            body: Body::Push(Push {
                                servent_id,
                                index,
                                ip: *self.cfg.advertised.ip(),
                                port: self.cfg.advertised.port(),
                            }),
                        };
                        self.routes
                            .put(now, (msg.id, Kind::Push), Route::Local(Some(id)));
                        self.send_bytes(conn, msg.encode(), Some(Kind::Push));
                        true
                    }
                    _ => false,
                };
                self.emit(Event::PushSent { id, routed });
            }
            Command::Ping { id, ttl } => {
                let sent_to = self.send_ping(now, ttl, None);
                self.emit(Event::PingSent { id, sent_to });
            }
            Command::Disconnect { id, conn } => {
                if self.conns.contains_key(&conn) {
                    self.close(conn, DownReason::Requested, Some(id));
                }
            }
            Command::Share { id, files } => {
                let n = files.len();
                self.library = Library::new(files);
                self.qrp_dirty = true;
                if self.cfg.role == Role::Leaf {
                    self.push_qrp();
                }
                self.emit(Event::Shared { id, files: n });
            }
        }
    }

    fn is_overlay(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| matches!(c.state, State::Overlay))
    }

    /// Sends a fresh Ping on `only` or on every connection; returns on how many.
    fn send_ping(&mut self, now: Instant, ttl: u8, only: Option<ConnId>) -> usize {
        let msg = Message {
            id: Guid::random(&mut self.rng),
            ttl: ttl.clamp(1, self.cfg.max_ttl.max(1)),
            hops: 0,
            body: Body::Ping,
        };
        self.routes
            .put(now, (msg.id, Kind::Ping), Route::Local(None));
        let bytes = msg.encode();
        match only {
            Some(c) => {
                self.send_bytes(c, bytes, Some(Kind::Ping));
                1
            }
            None => self.flood(&bytes, &[], Kind::Ping, None),
        }
    }

    /// Sends `head` then `payload` (one buffer per connection) on every overlay connection
    /// except `except`; returns on how many.
    fn flood(&mut self, head: &[u8], payload: &[u8], kind: Kind, except: Option<ConnId>) -> usize {
        let mut targets = std::mem::take(&mut self.scratch);
        targets.clear();
        targets.extend(
            self.conns
                .iter()
                .filter(|(id, c)| matches!(c.state, State::Overlay) && Some(**id) != except)
                .map(|(id, _)| *id),
        );
        let n = targets.len();
        for &t in &targets {
            let mut v = Vec::with_capacity(head.len() + payload.len());
            v.extend_from_slice(head);
            v.extend_from_slice(payload);
            self.send_bytes(t, v, Some(kind));
        }
        self.scratch = targets;
        n
    }

    fn connected(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        if conn.is_inbound() {
            let (mut pending, mut same_ip) = (0, 0);
            for (id, c) in &self.conns {
                if id.is_inbound() && !matches!(c.state, State::Overlay) {
                    pending += 1;
                    if c.peer.ip() == peer.ip() {
                        same_ip += 1;
                    }
                }
            }
            if self
                .banned
                .get(&peer.ip())
                .is_some_and(|&until| now < until)
            {
                self.stats.refused_banned += 1;
                self.transmit(Transmit::Close { conn });
                return;
            }
            if pending >= self.cfg.max_pending || same_ip >= self.cfg.max_pending_per_ip {
                self.stats.refused_pending += 1;
                self.transmit(Transmit::Close { conn });
                return;
            }
            self.conns.insert(
                conn,
                Conn::new(State::Sniff, peer, MAX_HANDSHAKE, None, now),
            );
            self.arm_tick(now);
            return;
        }
        let hs_cfg = self.hs_config();
        let is_06 = self.cfg.role.is_06();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.since = now;
        match std::mem::replace(&mut c.state, State::AwaitOk) {
            State::Connecting if is_06 => {
                let mut hs = Handshake::outbound(hs_cfg, peer);
                let out = hs.take_output();
                c.state = State::Handshake06(Box::new(hs));
                self.send_bytes(conn, out, None);
            }
            State::Connecting => {
                self.send_bytes(conn, CONNECT_04.to_vec(), None);
            }
            State::PushConnecting { giv } => {
                let index = giv.index;
                let peer = c.peer;
                self.conns.remove(&conn);
                self.send_bytes(conn, http::giv_line(&giv).into_bytes(), None);
                self.emit(Event::Handoff {
                    conn,
                    peer,
                    kind: HandoffKind::Pushed { index },
                });
            }
            other => c.state = other,
        }
    }

    fn received(&mut self, now: Instant, conn: ConnId, mut data: &[u8]) {
        while !data.is_empty() {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if matches!(c.state, State::Handshake06(_)) {
                self.handshake_bytes(now, conn, data);
                return;
            }
            if matches!(c.state, State::Overlay)
                && c.ext.as_ref().is_some_and(|e| e.inflater.is_some())
            {
                self.inflate_bytes(now, conn, data);
                return;
            }
            let room = c.buf.capacity_limit().saturating_sub(c.buf.len());
            if room == 0 {
                self.stats.malformed += 1;
                self.close(
                    conn,
                    DownReason::Protocol("receive buffer full".into()),
                    None,
                );
                return;
            }
            let (now_part, rest) = data.split_at(room.min(data.len()));
            data = rest;
            // Cannot fail: we checked the room.
            let _ = c.buf.extend(now_part);
            if matches!(c.state, State::Overlay) {
                self.stats.bytes_in += now_part.len() as u64;
            }
            if !self.process(now, conn) {
                return;
            }
        }
    }

    /// Handles what is buffered on `conn`; `false` once the connection is gone.
    fn process(&mut self, now: Instant, conn: ConnId) -> bool {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return false;
            };
            match c.state {
                State::Overlay => return self.process_overlay(now, conn),
                State::AwaitOk => {
                    let got = c.buf.as_slice();
                    let n = got.len().min(OK_04.len());
                    if got[..n] != OK_04[..n] {
                        self.close(conn, DownReason::Protocol("handshake refused".into()), None);
                        return false;
                    }
                    if n < OK_04.len() {
                        return true;
                    }
                    c.buf.consume(OK_04.len());
                    self.overlay_up(now, conn);
                }
                State::Sniff => match self.sniff(now, conn) {
                    Sniffed::Wait => return true,
                    Sniffed::Gone => return false,
                    Sniffed::Overlay => {}
                },
                State::Connecting | State::PushConnecting { .. } => return true,
                // Handshake bytes never reach the buffer (see `received`).
                State::Handshake06(_) => return true,
            }
        }
    }

    /// The 0.6 handshake settings of our current role.
    fn hs_config(&self) -> HandshakeConfig {
        let mut h = HandshakeConfig::new(
            &self.cfg.user_agent,
            self.cfg.role == Role::Ultrapeer,
            (!self.cfg.firewalled).then_some(SocketAddr::V4(self.cfg.advertised)),
        );
        h.deflate = self.cfg.deflate;
        h.degree = u32::try_from(self.cfg.up_peers).unwrap_or(u32::MAX);
        h.max_ttl = self.cfg.mesh_ttl;
        h
    }

    /// Up to `n` ultrapeer addresses to offer others (X-Try-Ultrapeers), newest first.
    fn try_ultrapeers(&self, n: usize, except: SocketAddr) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        if self.cfg.role == Role::Ultrapeer && !self.cfg.firewalled {
            out.push(SocketAddr::V4(self.cfg.advertised));
        }
        for a in self
            .up_cache
            .iter()
            .rev()
            .map(|a| SocketAddr::V4(*a))
            .filter(|a| *a != except)
        {
            if out.len() >= n {
                break;
            }
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out.truncate(n);
        out
    }

    /// Remembers an address as an ultrapeer's.
    fn learn_ultrapeer(&mut self, addr: SocketAddr) {
        let SocketAddr::V4(a) = addr else {
            return;
        };
        if a.port() == 0 || a.ip().is_unspecified() || a == self.cfg.advertised {
            return;
        }
        self.up_cache.retain(|x| *x != a);
        if self.up_cache.len() >= self.cfg.host_cache_cap.max(1) {
            self.up_cache.pop_front();
        }
        self.up_cache.push_back(a);
    }

    /// Our policy on a peer's handshake headers: which slot it takes, or a refusal.
    fn decide(
        &self,
        conn: ConnId,
        peer_addr: SocketAddr,
        version: Version,
        peer: &Headers,
    ) -> (Decision, Option<PeerRole>) {
        let try_ups = self.try_ultrapeers(10, peer_addr);
        // A refusal names other ultrapeers only, never the refuser.
        let me = SocketAddr::V4(self.cfg.advertised);
        let others: Vec<SocketAddr> = try_ups.iter().copied().filter(|a| *a != me).collect();
        let refuse = |reason: &str| {
            (
                Decision::Refuse {
                    code: 503,
                    reason: reason.to_string(),
                    try_ultrapeers: others.clone(),
                },
                None,
            )
        };
        let peer_role = match version {
            Version::V04 => PeerRole::Legacy,
            Version::V06 if peer.ultrapeer == Some(true) => PeerRole::Ultrapeer,
            Version::V06 => PeerRole::Leaf,
        };
        match self.cfg.role {
            Role::Flat04 => refuse("Not a 0.6 servent"),
            Role::Leaf | Role::Auto => {
                if conn.is_inbound() {
                    return refuse("I am a leaf");
                }
                if peer_role != PeerRole::Ultrapeer {
                    return refuse("Not an ultrapeer");
                }
                if self.role_count(PeerRole::Ultrapeer) >= self.cfg.leaf_ultrapeers {
                    return refuse("Ultrapeer slots full");
                }
                (
                    Decision::Accept {
                        ultrapeer_needed: None,
                        try_ultrapeers: Vec::new(),
                    },
                    Some(PeerRole::Ultrapeer),
                )
            }
            Role::Ultrapeer => {
                let mesh = self.role_count(PeerRole::Ultrapeer) + self.role_count(PeerRole::Legacy);
                let leaves = self.role_count(PeerRole::Leaf);
                match peer_role {
                    PeerRole::Leaf if !conn.is_inbound() => return refuse("Not an ultrapeer"),
                    PeerRole::Leaf if leaves >= self.cfg.up_leaves => {
                        return refuse("Leaf slots full");
                    }
                    PeerRole::Ultrapeer | PeerRole::Legacy if mesh >= self.cfg.up_peers => {
                        return refuse("Ultrapeer slots full");
                    }
                    _ => {}
                }
                // The ultrapeer draft (leaf guidance): `X-Ultrapeer-Needed` tells an
                // ultrapeer(-capable) peer whether we want it as an ultrapeer. Short of
                // ultrapeer links we do (saying False would ask it to become our leaf, which
                // gtk-gnutella refuses with 403). To a leaf it says whether the network
                // needs more ultrapeers, judged by our leaf slots being over half used
                // (what drives the supernode election of `Role::Auto`).
                let needed = match peer_role {
                    PeerRole::Leaf => leaves * 2 >= self.cfg.up_leaves,
                    _ => mesh < self.cfg.up_peers,
                };
                (
                    Decision::Accept {
                        ultrapeer_needed: Some(needed),
                        try_ultrapeers: try_ups,
                    },
                    Some(peer_role),
                )
            }
        }
    }

    /// Feeds handshake bytes to the 0.6 handshake of `conn` and acts on its progress.
    fn handshake_bytes(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let State::Handshake06(hs) = &mut c.state else {
            return;
        };
        let mut step = hs.feed(data);
        // Each round answers one decision; a handshake has at most two.
        for _ in 0..4 {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let peer_addr = c.peer;
            let State::Handshake06(hs) = &mut c.state else {
                return;
            };
            let out = hs.take_output();
            if !out.is_empty() {
                self.send_bytes(conn, out, None);
            }
            match step {
                Err(e) => {
                    self.stats.malformed += 1;
                    self.close(conn, DownReason::Protocol(e.to_string()), None);
                    return;
                }
                Ok(Progress::NeedMore) => return,
                Ok(Progress::Decide { version, peer }) => {
                    if peer.ultrapeer == Some(true) && peer.ultrapeer_needed == Some(true) {
                        self.needed_seen = true;
                    }
                    if let (true, Some(l)) = (conn.is_inbound(), peer.listen) {
                        if !self.note_listen(conn, l) {
                            return;
                        }
                    }
                    if peer.ultrapeer == Some(true) {
                        if !conn.is_inbound() {
                            self.learn_ultrapeer(peer_addr);
                        } else if let Some(l) = peer.listen {
                            self.learn_ultrapeer(l);
                        }
                    }
                    for a in peer.try_ultrapeers.iter().copied() {
                        self.learn_ultrapeer(a);
                    }
                    let (decision, role) = self.decide(conn, peer_addr, version, &peer);
                    let Some(c) = self.conns.get_mut(&conn) else {
                        return;
                    };
                    c.role = role;
                    let ext = c.ext.get_or_insert_with(Box::default);
                    if let Some(ua) = &peer.user_agent {
                        ext.user_agent = Some(ua.clone());
                    }
                    ext.degree = peer.degree;
                    ext.max_ttl = peer.max_ttl;
                    let State::Handshake06(hs) = &mut c.state else {
                        return;
                    };
                    step = hs.respond(decision);
                }
                Ok(Progress::Established(link)) => {
                    let Some(c) = self.conns.get_mut(&conn) else {
                        return;
                    };
                    let ext = c.ext.get_or_insert_with(Box::default);
                    if link.deflate_out {
                        ext.deflater = Some(Deflater::new());
                    }
                    if link.deflate_in {
                        ext.inflater = Some(Inflater::new());
                    }
                    if ext.user_agent.is_none() {
                        ext.user_agent = link.peer.user_agent.clone();
                    }
                    if c.role.is_none() {
                        c.role = Some(match link.version {
                            Version::V04 => PeerRole::Legacy,
                            Version::V06 => PeerRole::Leaf,
                        });
                    }
                    c.buf = RecvBuf::new(MAX_HANDSHAKE);
                    self.overlay_up(now, conn);
                    if !link.leftover.is_empty() {
                        self.received(now, conn, &link.leftover);
                    }
                    return;
                }
                Ok(Progress::Refused { code, reason, peer }) => {
                    for a in peer.try_ultrapeers.iter().chain(peer.try_hosts.iter()) {
                        self.learn_ultrapeer(*a);
                    }
                    self.close(
                        conn,
                        DownReason::Protocol(format!("refused: {code} {reason}")),
                        None,
                    );
                    return;
                }
                Ok(Progress::Closed) => {
                    self.close(conn, DownReason::Protocol("we refused".into()), None);
                    return;
                }
            }
        }
    }

    /// Inflates bytes of a deflate link into its frame buffer, handling frames as they
    /// complete; the inflated bytes never exceed the buffer's room (a zlib bomb stalls, it
    /// does not grow memory).
    fn inflate_bytes(&mut self, now: Instant, conn: ConnId, mut data: &[u8]) {
        let mut out = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let room = c.buf.capacity_limit().saturating_sub(c.buf.len());
            if room == 0 {
                self.stats.malformed += 1;
                self.close(
                    conn,
                    DownReason::Protocol("receive buffer full".into()),
                    None,
                );
                return;
            }
            let Some(inf) = c.ext.as_mut().and_then(|e| e.inflater.as_mut()) else {
                return;
            };
            out.clear();
            let used = match inf.decompress(data, &mut out, room) {
                Ok(n) => n,
                Err(e) => {
                    self.stats.malformed += 1;
                    self.close(conn, DownReason::Protocol(e.to_string()), None);
                    return;
                }
            };
            data = data.get(used..).unwrap_or(&[]);
            if out.is_empty() {
                if data.is_empty() {
                    return;
                }
                if used == 0 {
                    self.stats.malformed += 1;
                    self.close(
                        conn,
                        DownReason::Protocol("deflate stream stalled".into()),
                        None,
                    );
                    return;
                }
                continue;
            }
            // Cannot fail: `out` is at most `room` bytes.
            let _ = c.buf.extend(&out);
            self.stats.bytes_in += out.len() as u64;
            if !self.process(now, conn) {
                return;
            }
        }
        self.stats.malformed += 1;
        self.close(
            conn,
            DownReason::Protocol("deflate stream too long".into()),
            None,
        );
    }

    fn overlay_up(&mut self, now: Instant, conn: ConnId) {
        let cap = HEADER_LEN + self.cfg.max_payload;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.state = State::Overlay;
        c.buf.set_capacity_limit(cap);
        let (peer, cmd, role) = (c.peer, c.cmd, c.role);
        self.emit(Event::PeerUp { conn, peer, cmd });
        // QRP: a leaf sends its table to each ultrapeer; an ultrapeer its merged table to
        // each ultrapeer neighbour.
        if self.cfg.role.is_06() && role == Some(PeerRole::Ultrapeer) {
            self.rebuild_qrp();
            self.send_qrp(conn);
        }
        if self.cfg.ping_ttl > 0 {
            self.send_ping(now, self.cfg.ping_ttl, Some(conn));
        }
    }

    /// Rebuilds our QRP table when it is stale: a leaf's from its files; an ultrapeer's from
    /// its files merged with every leaf's table.
    fn rebuild_qrp(&mut self) {
        if !self.qrp_dirty && self.qrp_local.is_some() {
            return;
        }
        let Ok(mut t) = Table::new(self.cfg.qrp_slots, self.cfg.qrp_infinity) else {
            return;
        };
        for f in self.library.files() {
            t.insert_text(&f.name);
            if let Some(urn) = f.urn() {
                t.insert_urn(&urn);
            }
        }
        if self.cfg.role == Role::Ultrapeer {
            for c in self.conns.values() {
                if c.role != Some(PeerRole::Leaf) || !matches!(c.state, State::Overlay) {
                    continue;
                }
                if let Some(lt) = c.ext.as_ref().and_then(|e| e.qrp_in.table()) {
                    t.merge(lt);
                }
            }
        }
        self.qrp_dirty = false;
        if self.qrp_local.as_deref() != Some(&t) {
            self.qrp_local = Some(Arc::new(t));
        }
    }

    /// Sends `conn` what it lacks of our current table (RESET + PATCH, or a PATCH of the
    /// difference to the table it has).
    fn send_qrp(&mut self, conn: ConnId) {
        let Some(table) = self.qrp_local.clone() else {
            return;
        };
        let Some(ext) = self
            .conns
            .get_mut(&conn)
            .map(|c| c.ext.get_or_insert_with(Box::default))
        else {
            return;
        };
        if ext
            .qrp_sent
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, &table))
        {
            return;
        }
        let updates = table.encode_updates(ext.qrp_sent.as_deref(), 4, true, qrp::DEFAULT_FRAGMENT);
        ext.qrp_sent = Some(table);
        let Ok(updates) = updates else {
            return;
        };
        for u in updates {
            let payload = u.to_bytes();
            let id = Guid::random(&mut self.rng);
            let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
            v.extend_from_slice(&raw_header(
                id,
                qrp::ROUTE_TABLE_UPDATE,
                1,
                0,
                payload.len(),
            ));
            v.extend_from_slice(&payload);
            self.stats.qrp_tx += 1;
            self.send_bytes(conn, v, None);
        }
    }

    /// Sends our (rebuilt) table to every peer that should have it.
    fn push_qrp(&mut self) {
        if !self.cfg.role.is_06() {
            return;
        }
        self.rebuild_qrp();
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.role == Some(PeerRole::Ultrapeer) && matches!(c.state, State::Overlay)
            })
            .map(|(id, _)| *id)
            .collect();
        for t in targets {
            self.send_qrp(t);
        }
    }

    fn sniff(&mut self, now: Instant, conn: ConnId) -> Sniffed {
        let hs_cfg = self.hs_config();
        let Some(c) = self.conns.get_mut(&conn) else {
            return Sniffed::Gone;
        };
        let got = c.buf.as_slice();
        let prefix = |want: &[u8]| {
            let n = got.len().min(want.len());
            got[..n] == want[..n]
        };
        const CONNECT: &[u8] = b"GNUTELLA CONNECT/";
        if self.cfg.role.is_06() && prefix(CONNECT) {
            if got.len() < CONNECT.len() {
                return Sniffed::Wait;
            }
            let head = got.to_vec();
            c.buf = RecvBuf::new(MAX_HANDSHAKE);
            c.state = State::Handshake06(Box::new(Handshake::inbound(hs_cfg, c.peer)));
            self.handshake_bytes(now, conn, &head);
            // The handshake state takes the rest of the bytes (or the connection is gone).
            return Sniffed::Overlay;
        }
        if prefix(CONNECT_04) {
            if got.len() < CONNECT_04.len() {
                return Sniffed::Wait;
            }
            c.buf.consume(CONNECT_04.len());
            let overlay = self
                .conns
                .values()
                .filter(|c| matches!(c.state, State::Overlay | State::AwaitOk | State::Connecting))
                .count();
            if overlay >= self.cfg.max_conns {
                // 0.4 has no way to say "busy": close without answering.
                self.conns.remove(&conn);
                self.transmit(Transmit::Close { conn });
                return Sniffed::Gone;
            }
            self.send_bytes(conn, OK_04.to_vec(), None);
            self.overlay_up(now, conn);
            return Sniffed::Overlay;
        }
        if prefix(b"GET ") {
            if got.len() < 4 {
                return Sniffed::Wait;
            }
            let head = got.to_vec();
            let peer = c.peer;
            self.conns.remove(&conn);
            self.emit(Event::Handoff {
                conn,
                peer,
                kind: HandoffKind::Http { head },
            });
            return Sniffed::Gone;
        }
        if prefix(b"GIV ") {
            let line = match c.buf.take_until(b"\n\n", MAX_HANDSHAKE) {
                Ok(Some(line)) => http::parse_giv(line),
                Ok(None) => return Sniffed::Wait,
                Err(_) => Err(http::HttpError::BadGiv),
            };
            let rest = c.buf.as_slice().to_vec();
            let peer = c.peer;
            match line {
                Ok(giv) => {
                    self.conns.remove(&conn);
                    self.emit(Event::Handoff {
                        conn,
                        peer,
                        kind: HandoffKind::Giv { giv, rest },
                    });
                }
                Err(_) => {
                    self.conns.remove(&conn);
                    self.transmit(Transmit::Close { conn });
                }
            }
            return Sniffed::Gone;
        }
        // Nothing we speak.
        self.conns.remove(&conn);
        self.transmit(Transmit::Close { conn });
        Sniffed::Gone
    }

    fn process_overlay(&mut self, now: Instant, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let mut buf = std::mem::replace(&mut c.buf, RecvBuf::new(0));
        let spec = self.frame;
        let mut alive = true;
        loop {
            match buf.next_frame(&spec) {
                Ok(Some(f)) => {
                    if let Err(reason) = self.descriptor(now, conn, f.header, f.payload) {
                        self.stats.malformed += 1;
                        self.close(conn, DownReason::Protocol(reason), None);
                        alive = false;
                        break;
                    }
                    if !self.conns.contains_key(&conn) {
                        alive = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let reason = match e {
                        FrameError::TooLarge { announced, max } => {
                            format!("payload length {announced} over the limit of {max}")
                        }
                        other => other.to_string(),
                    };
                    self.stats.malformed += 1;
                    self.close(conn, DownReason::Protocol(reason), None);
                    alive = false;
                    break;
                }
            }
        }
        if alive {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.buf = buf;
            }
        }
        alive
    }

    /// Routes one descriptor from `from`; an error closes the connection.
    fn descriptor(
        &mut self,
        now: Instant,
        from: ConnId,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), String> {
        let kind_byte = header.get(16).copied().unwrap_or(0);
        if Kind::from_byte(kind_byte).is_none() {
            let mut id = [0u8; 16];
            if let Some(b) = header.get(..16) {
                id.copy_from_slice(b);
            }
            return self.descriptor_06(from, Guid(id), kind_byte, payload);
        }
        let h = Header::decode(header).map_err(|e| e.to_string())?;
        self.stats.rx[h.kind.index()] += 1;
        // Ultrapeers pass queries to their leaves even when the TTL ran out.
        if h.ttl == 0 && !(self.cfg.role == Role::Leaf && h.kind == Kind::Query) {
            self.stats.ttl_expired += 1;
            return Ok(());
        }
        let ttl = h.ttl.min(self.cfg.max_ttl);
        if matches!(h.kind, Kind::Ping | Kind::Query) {
            let ping = h.kind == Kind::Ping;
            let limit = if ping {
                self.cfg.max_pings_per_sec
            } else {
                self.cfg.max_queries_per_sec
            };
            let Some(c) = self.conns.get_mut(&from) else {
                return Ok(());
            };
            match c.budget.take(now, ping, limit) {
                Allowance::Ok => {}
                Allowance::Drop => {
                    self.stats.throttled += 1;
                    return Ok(());
                }
                Allowance::Flood(n) => {
                    let ip = c.peer.ip();
                    self.stats.throttled += 1;
                    self.stats.flooders_closed += 1;
                    if self.banned.len() >= MAX_BANNED {
                        self.banned.retain(|_, until| now < *until);
                    }
                    if self.banned.len() < MAX_BANNED {
                        self.banned.insert(ip, now + self.cfg.flood_ban);
                    }
                    return Err(format!(
                        "{} flood: {n} in one second, allowance {limit}",
                        if ping { "ping" } else { "query" }
                    ));
                }
            }
        }
        // Queries and QueryHits are most of the traffic: route them from borrowed views.
        match h.kind {
            Kind::Query => {
                let (min_speed, criteria) = scan_query(payload).map_err(|e| e.to_string())?;
                if !self
                    .routes
                    .insert_new(now, (h.id, Kind::Query), Route::Conn(from))
                {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                self.stats.queries_seen += 1;
                let ext_area = payload.get(2 + criteria.len() + 1..).unwrap_or(&[]);
                self.answer_query(&h, min_speed, criteria, ext_area, from);
                match self.cfg.role {
                    Role::Leaf => {}
                    Role::Ultrapeer => {
                        let hops = h.hops.saturating_add(1);
                        let from_leaf = self
                            .conns
                            .get(&from)
                            .is_some_and(|c| c.role == Some(PeerRole::Leaf));
                        if from_leaf {
                            // Our leaf's query: the mesh part is a dynamic query; no copy
                            // goes further than the plain route would have sent it (TTL
                            // on arrival, at most `mesh_ttl`, less our hop).
                            let ceiling = ttl.min(self.cfg.mesh_ttl).saturating_sub(1);
                            let target = self.cfg.dq_leaf_results;
                            self.dq_start(now, h.id, ceiling, hops, payload, Some(from), target);
                        } else {
                            let out_ttl = ttl.min(self.cfg.mesh_ttl).saturating_sub(1);
                            self.route_query_06(h.id, out_ttl, hops, payload, Some(from));
                        }
                    }
                    _ => self.forward_flood(&h, ttl, payload, from),
                }
                return Ok(());
            }
            Kind::QueryHit => {
                let servent_id = scan_queryhit(payload).map_err(|e| e.to_string())?;
                if servent_id != self.cfg.servent_id {
                    self.push_routes.put(now, servent_id, from);
                }
                match self.routes.get(now, &(h.id, Kind::Query)) {
                    Some(Route::Local(Some(search))) => {
                        if let Body::QueryHit(qh) =
                            Body::decode(h.kind, payload).map_err(|e| e.to_string())?
                        {
                            let n = u32::try_from(qh.results.len()).unwrap_or(u32::MAX);
                            self.deliver_hits(search, &h, qh);
                            self.dq_results(h.id, n);
                        }
                    }
                    Some(Route::Conn(back)) if back != from && self.cfg.role != Role::Leaf => {
                        // The result count is the payload's first byte (checked by
                        // `scan_queryhit` above).
                        let n = payload.first().copied().map_or(0, u32::from);
                        self.forward_reply(&h, ttl, payload, back);
                        self.dq_results(h.id, n);
                    }
                    _ => self.stats.unroutable += 1,
                }
                return Ok(());
            }
            _ => {}
        }
        let body = Body::decode(h.kind, payload).map_err(|e| e.to_string())?;
        match body {
            Body::Ping => {
                if !self
                    .routes
                    .insert_new(now, (h.id, Kind::Ping), Route::Conn(from))
                {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                let pong_ttl = h.hops.saturating_add(1).min(self.cfg.max_ttl.max(1));
                let pong = Message {
                    id: h.id,
                    ttl: pong_ttl,
                    hops: 0,
                    body: Body::Pong(Pong {
                        port: self.cfg.advertised.port(),
                        ip: *self.cfg.advertised.ip(),
                        files: u32::try_from(self.library.len()).unwrap_or(u32::MAX),
                        kbytes: self.library.kbytes(),
                    }),
                };
                self.send_bytes(from, pong.encode(), Some(Kind::Pong));
                match self.cfg.role {
                    // A leaf routes nothing.
                    Role::Leaf => {}
                    // Pong caching: an ultrapeer answers from its cache instead of
                    // flooding the Ping.
                    Role::Ultrapeer => {
                        let peer = self.conns.get(&from).map(|c| c.peer);
                        let cached: Vec<Pong> = self
                            .pongs
                            .iter()
                            .rev()
                            .filter(|p| {
                                Some(SocketAddr::V4(SocketAddrV4::new(p.ip, p.port))) != peer
                            })
                            .take(PONGS_PER_PING)
                            .cloned()
                            .collect();
                        for p in cached {
                            let m = Message {
                                id: h.id,
                                ttl: pong_ttl,
                                hops: 1,
                                body: Body::Pong(p),
                            };
                            self.stats.cached_pongs += 1;
                            self.send_bytes(from, m.encode(), Some(Kind::Pong));
                        }
                    }
                    _ => self.forward_flood(&h, ttl, payload, from),
                }
            }
            Body::Pong(p) => {
                let addr = SocketAddrV4::new(p.ip, p.port);
                if h.hops == 0 && !self.note_listen(from, SocketAddr::V4(addr)) {
                    // The neighbour's own Pong said where it listens: a second link to a
                    // servent we are linked with, now closed.
                    return Ok(());
                }
                self.learn_host(addr);
                if self.cfg.role == Role::Ultrapeer && addr != self.cfg.advertised {
                    self.pongs.retain(|q| (q.ip, q.port) != (p.ip, p.port));
                    if self.pongs.len() >= self.cfg.pong_cache.max(1) {
                        self.pongs.pop_front();
                    }
                    self.pongs.push_back(p.clone());
                }
                match self.routes.get(now, &(h.id, Kind::Ping)) {
                    Some(Route::Local(_)) => {}
                    Some(Route::Conn(back)) if back != from => {
                        self.forward_reply(&h, ttl, payload, back)
                    }
                    _ => self.stats.unroutable += 1,
                }
            }
            // Routed on the fast path above.
            Body::Query(_) | Body::QueryHit(_) => {}
            Body::Push(p) => {
                if !self
                    .routes
                    .insert_new(now, (h.id, Kind::Push), Route::Conn(from))
                {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                if p.servent_id == self.cfg.servent_id {
                    self.pushed(now, p);
                } else {
                    match self.push_routes.get(now, &p.servent_id) {
                        Some(next)
                            if next != from
                                && self.is_overlay(next)
                                && self.cfg.role != Role::Leaf =>
                        {
                            self.forward_reply(&h, ttl, payload, next)
                        }
                        _ => self.stats.unroutable += 1,
                    }
                }
            }
        }
        Ok(())
    }

    /// A descriptor whose kind 0.4 does not know: Bye, QRP, vendor messages.
    fn descriptor_06(
        &mut self,
        from: ConnId,
        id: Guid,
        kind: u8,
        payload: &[u8],
    ) -> Result<(), String> {
        match kind {
            KIND_BYE => {
                let (code, message) = decode_bye(payload).ok_or("truncated Bye")?;
                self.close(from, DownReason::Bye { code, message }, None);
                Ok(())
            }
            qrp::ROUTE_TABLE_UPDATE => {
                self.stats.qrp_rx += 1;
                let Some(c) = self.conns.get_mut(&from) else {
                    return Ok(());
                };
                // Tables from leaves (to us, an ultrapeer) and from ultrapeer neighbours.
                let wanted = matches!(
                    (self.cfg.role, c.role),
                    (Role::Ultrapeer, Some(PeerRole::Leaf | PeerRole::Ultrapeer))
                );
                if !wanted {
                    self.stats.ignored += 1;
                    return Ok(());
                }
                let update = RouteUpdate::decode(payload).map_err(|e| e.to_string())?;
                let ext = c.ext.get_or_insert_with(Box::default);
                let applied = ext.qrp_in.apply(&update).map_err(|e| e.to_string())?;
                if c.role == Some(PeerRole::Leaf) && applied != qrp::Applied::Fragment {
                    self.qrp_dirty = true;
                }
                Ok(())
            }
            k if KIND_VENDOR.contains(&k) => {
                let from_leaf = self.cfg.role == Role::Ultrapeer
                    && self
                        .conns
                        .get(&from)
                        .is_some_and(|c| c.role == Some(PeerRole::Leaf));
                // A leaf's query status (BEAR/LIME 11) steers our dynamic query for it; a
                // truncated one is a protocol error; any other vendor message is ignored.
                match crate::wire::query_status(payload) {
                    Ok(Some(kept)) if from_leaf => {
                        self.stats.dq_status_rx += 1;
                        self.dq_status(from, id, kept);
                    }
                    Ok(_) => self.stats.ignored += 1,
                    Err(e) if from_leaf => return Err(e.to_string()),
                    Err(_) => self.stats.ignored += 1,
                }
                Ok(())
            }
            _ if self.cfg.role.is_06() => {
                self.stats.ignored += 1;
                Ok(())
            }
            k => Err(crate::wire::DecodeError::UnknownKind(k).to_string()),
        }
    }

    /// An ultrapeer routes a Query: to each leaf whose QRP table may match (whatever the
    /// TTL), and, while `out_ttl` is at least 1, to every mesh neighbour — except that a
    /// neighbour that gets it with TTL 1 (the last hop) must have a table that may match,
    /// if it sent one. Returns on how many connections it went.
    fn route_query_06(
        &mut self,
        id: Guid,
        out_ttl: u8,
        hops: u8,
        payload: &[u8],
        from: Option<ConnId>,
    ) -> usize {
        let Ok((_, criteria)) = scan_query(payload) else {
            return 0;
        };
        let ext_area = payload.get(2 + criteria.len() + 1..).unwrap_or(&[]);
        let text = String::from_utf8_lossy(criteria);
        let urns = query_urns(ext_area);
        let mut targets: Vec<(ConnId, u8)> = Vec::new();
        let mut blocked = 0;
        for (id, c) in &self.conns {
            if Some(*id) == from || !matches!(c.state, State::Overlay) {
                continue;
            }
            let table = c.ext.as_ref().and_then(|e| e.qrp_in.table());
            match c.role {
                Some(PeerRole::Leaf) => {
                    if table.is_some_and(|t| t.may_match(&text, &urns)) {
                        targets.push((*id, out_ttl.max(1)));
                    } else {
                        blocked += 1;
                    }
                }
                Some(PeerRole::Ultrapeer) if out_ttl == 1 => {
                    if table.is_none_or(|t| t.may_match(&text, &urns)) {
                        targets.push((*id, 1));
                    } else {
                        blocked += 1;
                    }
                }
                Some(PeerRole::Ultrapeer | PeerRole::Legacy) if out_ttl >= 1 => {
                    targets.push((*id, out_ttl));
                }
                _ => {}
            }
        }
        self.stats.qrp_blocked += blocked;
        let n = targets.len();
        for (conn, ttl) in targets {
            let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
            v.extend_from_slice(
                &Header {
                    id,
                    kind: Kind::Query,
                    ttl,
                    hops,
                    len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                }
                .to_bytes(),
            );
            v.extend_from_slice(payload);
            self.send_bytes(conn, v, Some(Kind::Query));
        }
        n
    }

    /// One Query copy with `ttl` and `hops` to `conn`.
    fn send_query_copy(&mut self, conn: ConnId, id: Guid, ttl: u8, hops: u8, payload: &[u8]) {
        let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
        v.extend_from_slice(
            &Header {
                id,
                kind: Kind::Query,
                ttl,
                hops,
                len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            }
            .to_bytes(),
        );
        v.extend_from_slice(payload);
        self.send_bytes(conn, v, Some(Kind::Query));
    }

    /// The ultrapeer neighbours a dynamic query may still use, best first: those whose
    /// last-hop QRP table may match, then those without a table (0.4 peers, tables not in
    /// yet), then those whose table rules the query out (useful only with TTL 2 or more).
    /// Each with its degree and highest TTL, and whether its table rules the query out.
    fn dq_candidates(
        &self,
        text: &str,
        urns: &[&str],
        skip: Option<ConnId>,
        used: &BTreeSet<ConnId>,
    ) -> Vec<DqPeer> {
        let mut out: Vec<(u8, DqPeer)> = Vec::new();
        for (id, c) in &self.conns {
            if Some(*id) == skip || used.contains(id) || !matches!(c.state, State::Overlay) {
                continue;
            }
            if !matches!(c.role, Some(PeerRole::Ultrapeer | PeerRole::Legacy)) {
                continue;
            }
            let ext = c.ext.as_deref();
            let rank = match ext.and_then(|e| e.qrp_in.table()) {
                Some(t) if t.may_match(text, urns) => 0,
                None => 1,
                Some(_) => 2,
            };
            out.push((
                rank,
                DqPeer {
                    conn: *id,
                    degree: ext.and_then(|e| e.degree).unwrap_or(DQ_DEFAULT_DEGREE),
                    max_ttl: ext.and_then(|e| e.max_ttl).unwrap_or(u8::MAX),
                    matches: rank == 0,
                    ruled_out: rank == 2,
                },
            ));
        }
        // A stable sort keeps connection order within a rank: deterministic.
        out.sort_by_key(|(rank, _)| *rank);
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// Starts a dynamic query (an ultrapeer's own search, or a query from its leaf `leaf`):
    /// the copies to the leaves whose QRP tables match, then a probe with a low TTL to
    /// `dq_probe` ultrapeers, matching ones first; later rounds (see [`Self::dq_round`])
    /// widen it. No copy gets a TTL above `ceiling`. Falls back to the plain route when
    /// dynamic querying is off or `dq_max` queries run. Returns the copies sent.
    #[allow(clippy::too_many_arguments)]
    fn dq_start(
        &mut self,
        now: Instant,
        id: Guid,
        ceiling: u8,
        hops: u8,
        payload: &[u8],
        leaf: Option<ConnId>,
        target: u32,
    ) -> usize {
        if !self.cfg.dynamic_query || self.dqs.len() >= self.cfg.dq_max || ceiling == 0 {
            return self.route_query_06(id, ceiling, hops, payload, leaf);
        }
        let Ok((_, criteria)) = scan_query(payload) else {
            return 0;
        };
        let ext_area = payload.get(2 + criteria.len() + 1..).unwrap_or(&[]);
        let text = String::from_utf8_lossy(criteria).into_owned();
        let urns = query_urns(ext_area);
        // Our leaves: every one whose table may match, at once.
        let mut leaves = Vec::new();
        let mut blocked = 0;
        for (cid, c) in &self.conns {
            if Some(*cid) == leaf
                || c.role != Some(PeerRole::Leaf)
                || !matches!(c.state, State::Overlay)
            {
                continue;
            }
            let table = c.ext.as_ref().and_then(|e| e.qrp_in.table());
            if table.is_some_and(|t| t.may_match(&text, &urns)) {
                leaves.push(*cid);
            } else {
                blocked += 1;
            }
        }
        // The probe: TTL 1 when enough neighbours' last-hop tables match, else TTL 2 (a
        // few connections, or none that matches) to reach beyond them.
        let used = BTreeSet::new();
        let cands = self.dq_candidates(&text, &urns, leaf, &used);
        if cands.len() <= self.cfg.dq_probe.max(1) {
            // The probe would use every ultrapeer connection and leave none to widen with
            // (a neighbour drops a second copy as a duplicate): the plain route, at once.
            return self.route_query_06(id, ceiling, hops, payload, leaf);
        }
        let matching = cands.iter().filter(|p| p.matches).count();
        let probe_ttl = if matching >= self.cfg.dq_probe.max(1) {
            1
        } else {
            2.min(ceiling)
        };
        let probe: Vec<DqPeer> = cands
            .into_iter()
            .filter(|p| probe_ttl > 1 || !p.ruled_out)
            .take(self.cfg.dq_probe.max(1))
            .collect();
        let mut q = DynQuery {
            leaf,
            payload: payload.to_vec(),
            hops,
            ceiling,
            target: target.max(1),
            used: BTreeSet::new(),
            results: 0,
            status: None,
            horizon: 0.0,
            next: now,
            deadline: now + self.cfg.dq_lifetime,
        };
        let mut sent = 0;
        for l in leaves {
            self.send_query_copy(l, id, 1, hops, payload);
            sent += 1;
        }
        self.stats.qrp_blocked += blocked;
        let mut wait = 1u32;
        for p in probe {
            let ttl = probe_ttl.min(p.max_ttl).max(1);
            self.send_query_copy(p.conn, id, ttl, hops, payload);
            q.used.insert(p.conn);
            q.horizon += dq_horizon(p.degree, ttl);
            wait = wait.max(u32::from(ttl));
            sent += 1;
        }
        q.next = now + self.cfg.dq_hop_wait * wait;
        self.stats.dq_started += 1;
        // A replaced entry (the same id again) is simply restarted.
        self.dqs.insert(id, q);
        sent
    }

    /// `n` results for query `id` came back through us (or to us).
    fn dq_results(&mut self, id: Guid, n: u32) {
        if let Some(q) = self.dqs.get_mut(&id) {
            q.results = q.results.saturating_add(n);
            if q.effective() >= q.target {
                self.dqs.remove(&id);
                self.stats.dq_satisfied += 1;
            }
        }
    }

    /// Leaf `from` says it kept `kept` hits for query `id` (`0xFFFF`: stop it).
    fn dq_status(&mut self, from: ConnId, id: Guid, kept: u16) {
        let Some(q) = self.dqs.get_mut(&id) else {
            return;
        };
        if q.leaf != Some(from) {
            return;
        }
        if kept == crate::wire::QUERY_STATUS_STOP {
            self.dqs.remove(&id);
            return;
        }
        q.status = Some((u32::from(kept), q.results));
        if q.effective() >= q.target {
            self.dqs.remove(&id);
            self.stats.dq_satisfied += 1;
        }
    }

    /// Runs the rounds that are due and drops the queries past their lifetime.
    fn dq_due(&mut self, now: Instant) {
        let due: Vec<Guid> = self
            .dqs
            .iter()
            .filter(|(_, q)| q.next <= now || q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.dq_round(now, id);
        }
    }

    /// One widening round: estimate the results per ultrapeer reached so far, the hosts
    /// still needed for the target, split them over the unused connections and send the
    /// query to the best unused one with the TTL whose theoretical horizon (from its
    /// X-Degree) covers its share; then wait that TTL's hops. Ends the query when its time
    /// is up or every connection was used.
    fn dq_round(&mut self, now: Instant, id: Guid) {
        let Some(q) = self.dqs.remove(&id) else {
            return;
        };
        if q.deadline <= now {
            return;
        }
        let mut q = q;
        let (text, urns_owned) = match scan_query(&q.payload) {
            Ok((_, criteria)) => {
                let ext_area = q.payload.get(2 + criteria.len() + 1..).unwrap_or(&[]);
                (
                    String::from_utf8_lossy(criteria).into_owned(),
                    query_urns(ext_area)
                        .into_iter()
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                )
            }
            Err(_) => return,
        };
        let urns: Vec<&str> = urns_owned.iter().map(String::as_str).collect();
        let cands = self.dq_candidates(&text, &urns, q.leaf, &q.used);
        let needed = f64::from(q.target.saturating_sub(q.effective()).max(1));
        let per_host = f64::from(q.results) / q.horizon.max(1.0);
        let hosts = needed / per_host.max(1e-6);
        let per_conn = hosts / cands.len().max(1) as f64;
        for p in &cands {
            let max = q.ceiling.min(p.max_ttl).max(1);
            // The highest TTL whose horizon does not overshoot the share (at least 1).
            let ttl = (1..=max)
                .rev()
                .find(|t| dq_horizon(p.degree, *t) <= per_conn)
                .unwrap_or(1);
            q.used.insert(p.conn);
            if ttl == 1 && p.ruled_out {
                // Its table says no servent one hop away has it: skip it.
                continue;
            }
            self.send_query_copy(p.conn, id, ttl, q.hops, &q.payload);
            self.stats.dq_round_copies += 1;
            q.horizon += dq_horizon(p.degree, ttl);
            q.next = now + self.cfg.dq_hop_wait * u32::from(ttl);
            self.dqs.insert(id, q);
            return;
        }
        // Every connection was used.
    }

    /// The header of a forwarded copy: TTL one less, hops one more.
    fn forwarded(h: &Header, ttl: u8, payload: &[u8]) -> Option<Vec<u8>> {
        if ttl <= 1 {
            return None;
        }
        let fh = Header {
            ttl: ttl - 1,
            hops: h.hops.saturating_add(1),
            ..*h
        };
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&fh.to_bytes());
        out.extend_from_slice(payload);
        Some(out)
    }

    fn forward_flood(&mut self, h: &Header, ttl: u8, payload: &[u8], from: ConnId) {
        if ttl <= 1 {
            self.stats.ttl_expired += 1;
            return;
        }
        let fh = Header {
            ttl: ttl - 1,
            hops: h.hops.saturating_add(1),
            ..*h
        };
        self.flood(&fh.to_bytes(), payload, h.kind, Some(from));
    }

    fn forward_reply(&mut self, h: &Header, ttl: u8, payload: &[u8], to: ConnId) {
        if !self.is_overlay(to) {
            self.stats.unroutable += 1;
            return;
        }
        match Self::forwarded(h, ttl, payload) {
            Some(bytes) => self.send_bytes(to, bytes, Some(h.kind)),
            None => self.stats.ttl_expired += 1,
        }
    }

    fn answer_query(
        &mut self,
        h: &Header,
        min_speed: [u8; 2],
        criteria: &[u8],
        ext_area: &[u8],
        from: ConnId,
    ) {
        if self.library.is_empty() {
            return;
        }
        // A firewalled querier cannot reach a firewalled responder, not even with Push.
        let source_firewalled = min_speed[0] & crate::wire::QUERY_FLAGS_MARK != 0
            && min_speed[0] & crate::wire::QUERY_FLAG_FIREWALLED != 0;
        if self.cfg.firewalled && source_firewalled {
            return;
        }
        let max = self.cfg.max_results.min(255);
        // HUGE: a query naming `urn:sha1:` URNs matches the files with those hashes.
        let mut found: Vec<&SharedFile> = query_urns(ext_area)
            .into_iter()
            .filter_map(crate::library::parse_sha1_urn)
            .filter_map(|h| self.library.by_sha1(&h))
            .take(max)
            .collect();
        if found.is_empty() {
            found = self.library.search(criteria, max);
        }
        if found.is_empty() {
            return;
        }
        let mut results = Vec::with_capacity(found.len());
        let mut room = self.cfg.max_payload.saturating_sub(11 + 16 + 7);
        for f in found {
            let extension = f.urn().map(String::into_bytes).unwrap_or_default();
            let need = 10 + f.name.len() + extension.len();
            if need > room {
                break;
            }
            room -= need;
            results.push(HitRecord {
                index: f.index,
                size: u32::try_from(f.size).unwrap_or(u32::MAX),
                name: f.name.as_bytes().to_vec(),
                extension,
            });
        }
        if results.is_empty() {
            return;
        }
        let hit = Message {
            id: h.id,
            ttl: h.hops.saturating_add(1).min(self.cfg.max_ttl.max(1)),
            hops: 0,
            body: Body::QueryHit(QueryHit {
                port: self.cfg.advertised.port(),
                ip: *self.cfg.advertised.ip(),
                speed: self.cfg.speed_kbps,
                results,
                trailer: Some(Trailer::ours(HitFlags {
                    push: Some(self.cfg.firewalled),
                    busy: Some(false),
                    have_uploaded: None,
                    speed_measured: None,
                })),
                servent_id: self.cfg.servent_id,
            }),
        };
        self.stats.queries_answered += 1;
        self.send_bytes(from, hit.encode(), Some(Kind::QueryHit));
    }

    fn deliver_hits(&mut self, search: u64, h: &Header, qh: QueryHit) {
        let flags = qh.flags();
        let addr = SocketAddrV4::new(qh.ip, qh.port);
        let vendor = qh.trailer.as_ref().map(|t| t.vendor);
        for r in qh.results {
            self.emit(Event::Hit {
                search,
                hit: Hit {
                    addr,
                    servent_id: qh.servent_id,
                    index: r.index,
                    name: String::from_utf8_lossy(&r.name).into_owned(),
                    size: r.size,
                    speed: qh.speed,
                    push: flags.push.unwrap_or(false),
                    busy: flags.busy.unwrap_or(false),
                    vendor,
                    hops: h.hops.saturating_add(1),
                    sha1: r
                        .extension
                        .split(|b| *b == 0x1c)
                        .filter_map(|x| std::str::from_utf8(x).ok())
                        .find_map(crate::library::parse_sha1_urn),
                },
            });
        }
    }

    fn pushed(&mut self, now: Instant, p: Push) {
        let Some(file) = self.library.get(p.index) else {
            return;
        };
        let pushing = self
            .conns
            .values()
            .filter(|c| matches!(c.state, State::PushConnecting { .. }))
            .count();
        if pushing >= MAX_PUSH_CONNS || p.port == 0 || p.ip.is_unspecified() {
            return;
        }
        let giv = Giv {
            index: p.index,
            servent_id: self.cfg.servent_id,
            name: file.name.clone(),
        };
        let to = SocketAddrV4::new(p.ip, p.port);
        let conn = self.new_conn_id();
        self.conns.insert(
            conn,
            Conn::new(
                State::PushConnecting { giv },
                SocketAddr::V4(to),
                MAX_HANDSHAKE,
                None,
                now,
            ),
        );
        self.transmit(Transmit::Connect {
            conn,
            to: SocketAddr::V4(to),
        });
        self.emit(Event::PushRequested { index: p.index, to });
        self.arm_tick(now);
    }

    fn learn_host(&mut self, addr: SocketAddrV4) {
        if addr.port() == 0
            || addr.ip().is_unspecified()
            || *addr.ip() == Ipv4Addr::BROADCAST
            || addr == self.cfg.advertised
            || self.host_set.contains(&addr)
        {
            return;
        }
        if self.host_cache.len() >= self.cfg.host_cache_cap {
            if let Some(old) = self.host_cache.pop_front() {
                self.host_set.remove(&old);
            }
        }
        self.host_cache.push_back(addr);
        self.host_set.insert(addr);
    }

    /// Adds an address to the host cache (e.g. from `--connect` or a saved list).
    pub fn add_host(&mut self, addr: SocketAddrV4) {
        self.learn_host(addr);
    }

    fn tick(&mut self, now: Instant) {
        self.routes.expire(now);
        self.push_routes.expire(now);
        // Abandon stale handshakes.
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !matches!(c.state, State::Overlay)
                    && now.saturating_duration_since(c.since) >= self.cfg.handshake_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in stale {
            self.close(conn, DownReason::HandshakeTimeout, None);
        }
        if self.cfg.role.is_06() {
            self.elect(now);
            self.refill(now);
            if self.qrp_dirty {
                self.push_qrp();
            }
            return;
        }
        // Refill from the host cache.
        let mut have = self.overlay_count();
        let mut tries = self.host_cache.len();
        while have < self.cfg.want_conns.min(self.cfg.max_conns) && tries > 0 {
            tries -= 1;
            let Some(addr) = self.host_cache.pop_front() else {
                break;
            };
            self.host_set.remove(&addr);
            let a = SocketAddr::V4(addr);
            if self.linked_to(a) {
                self.learn_host(addr);
                continue;
            }
            self.open(now, a, None);
            have += 1;
        }
    }
}

/// A descriptor header for a payload kind [`Kind`] does not cover (0.6 messages).
fn raw_header(id: Guid, kind: u8, ttl: u8, hops: u8, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..16].copy_from_slice(&id.0);
    h[16] = kind;
    h[17] = ttl;
    h[18] = hops;
    h[19..].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    h
}

/// Payload descriptor of Bye (0.6).
pub const KIND_BYE: u8 = 0x02;
/// Payload descriptors of vendor messages (0.6): 0x31 vendor, 0x32 standard vendor.
pub const KIND_VENDOR: [u8; 2] = [0x31, 0x32];

/// A Bye payload: code (u16 LE) and an optional NUL-terminated text.
pub fn decode_bye(p: &[u8]) -> Option<(u16, String)> {
    let [a, b, rest @ ..] = p else {
        return None;
    };
    let text = rest.split(|b| *b == 0).next().unwrap_or(&[]);
    let text: String = String::from_utf8_lossy(text)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    Some((u16::from_le_bytes([*a, *b]), text))
}

/// URNs (`urn:...`) in a Query's extension area (after the criteria's NUL), at most 8.
fn query_urns(ext: &[u8]) -> Vec<&str> {
    ext.split(|b| *b == 0x1c || *b == 0)
        .filter_map(|x| std::str::from_utf8(x).ok())
        .filter(|x| x.len() > 4 && x.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")))
        .take(8)
        .collect()
}

impl Servent {
    /// How many mesh connections (a leaf: ultrapeers) a 0.6 servent keeps opening.
    fn want_06(&self) -> usize {
        match self.cfg.role {
            Role::Leaf => self.cfg.want_conns.min(self.cfg.leaf_ultrapeers),
            _ => self.cfg.want_conns.min(self.cfg.up_peers),
        }
    }

    /// Mesh connections of a 0.6 servent: up, accepted, or being opened by us.
    fn have_06(&self) -> usize {
        self.conns
            .iter()
            .filter(|(id, c)| match c.role {
                Some(r) => r != PeerRole::Leaf,
                None => {
                    !id.is_inbound() && matches!(c.state, State::Connecting | State::Handshake06(_))
                }
            })
            .count()
    }

    /// A 0.6 servent opens connections until it has `want_06`: known ultrapeers first
    /// (newest first), then other hosts from Pongs.
    fn refill(&mut self, now: Instant) {
        let want = self.want_06();
        let mut have = self.have_06();
        let mut tries = self.up_cache.len() + self.host_cache.len();
        while have < want && tries > 0 {
            tries -= 1;
            let addr = match self.up_cache.pop_back() {
                Some(a) => a,
                None => match self.host_cache.pop_front() {
                    Some(a) => {
                        self.host_set.remove(&a);
                        a
                    }
                    None => break,
                },
            };
            let a = SocketAddr::V4(addr);
            if self.linked_to(a) {
                continue;
            }
            self.open(now, a, None);
            have += 1;
        }
    }

    /// Supernode election of a [`Role::Auto`] leaf (see [`Role::Auto`]). On promotion it
    /// says Bye to its ultrapeers and reconnects to them as an ultrapeer.
    fn elect(&mut self, now: Instant) {
        if !self.auto || self.cfg.role != Role::Leaf || self.cfg.firewalled {
            return;
        }
        let up = self
            .started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let capable = up >= self.cfg.promote_uptime && self.cfg.speed_kbps >= self.cfg.promote_kbps;
        let known: BTreeSet<SocketAddr> = self
            .up_cache
            .iter()
            .map(|a| SocketAddr::V4(*a))
            .chain(
                self.conns
                    .values()
                    .filter(|c| c.role == Some(PeerRole::Ultrapeer))
                    .map(|c| c.peer),
            )
            .collect();
        let asked = self.needed_seen || known.len() < self.cfg.leaf_ultrapeers;
        if !(capable && asked) {
            return;
        }
        self.cfg.role = Role::Ultrapeer;
        self.qrp_dirty = true;
        let ups: Vec<(ConnId, SocketAddr)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.role == Some(PeerRole::Ultrapeer))
            .map(|(id, c)| (*id, c.peer))
            .collect();
        for (conn, peer) in ups {
            let mut bye = 200u16.to_le_bytes().to_vec();
            bye.extend_from_slice(b"Becoming an ultrapeer\0");
            let mut v = raw_header(Guid::random(&mut self.rng), KIND_BYE, 1, 0, bye.len()).to_vec();
            v.extend_from_slice(&bye);
            self.send_bytes(conn, v, None);
            self.close(conn, DownReason::Requested, None);
            if let SocketAddr::V4(a) = peer {
                if !conn.is_inbound() {
                    self.learn_ultrapeer(SocketAddr::V4(a));
                }
            }
        }
        self.emit(Event::RoleChanged {
            role: Role::Ultrapeer,
        });
    }

    /// Every overlay connection with its role and QRP table fill.
    pub fn peer_infos(&self) -> Vec<PeerInfo> {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(c.state, State::Overlay))
            .map(|(id, c)| {
                let ext = c.ext.as_deref();
                PeerInfo {
                    conn: *id,
                    addr: c.peer,
                    role: c.role.unwrap_or(PeerRole::Legacy),
                    user_agent: ext.and_then(|e| e.user_agent.clone()),
                    qrp_fill: ext.and_then(|e| e.qrp_in.table()).map(Table::fill),
                    deflate_in: ext.is_some_and(|e| e.inflater.is_some()),
                    deflate_out: ext.is_some_and(|e| e.deflater.is_some()),
                }
            })
            .collect()
    }

    /// Our own QRP table (0.6 roles; an ultrapeer's merges its leaves'), once built.
    pub fn qrp_table(&self) -> Option<&Table> {
        self.qrp_local.as_deref()
    }

    /// Addresses known to be ultrapeers, newest last.
    pub fn ultrapeer_cache(&self) -> impl Iterator<Item = &SocketAddrV4> {
        self.up_cache.iter()
    }

    /// Adds an address to the ultrapeer cache (a bootstrap list).
    pub fn add_ultrapeer(&mut self, addr: SocketAddrV4) {
        self.learn_ultrapeer(SocketAddr::V4(addr));
    }
}

enum Sniffed {
    Wait,
    Gone,
    Overlay,
}

impl Core for Servent {
    type Command = Command;
    type Event = Event;

    fn handle_input(&mut self, now: Instant, input: Input<'_, Command>) {
        self.started.get_or_insert(now);
        self.arm_tick(now);
        match input {
            Input::Command(cmd) => self.command(now, cmd),
            Input::Connected { conn, peer } => self.connected(now, conn, peer),
            Input::ConnectFailed { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    self.lost(conn, c, DownReason::Closed(CloseReason::Reset), None);
                }
            }
            Input::Received { conn, data } => self.received(now, conn, data),
            Input::Closed { conn, reason } => {
                if let Some(c) = self.conns.remove(&conn) {
                    self.lost(conn, c, DownReason::Closed(reason), None);
                }
            }
            _ => {}
        }
        if std::mem::take(&mut self.urgent_refill) && self.cfg.role.is_06() {
            self.refill(now);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.dq_due(now);
        match self.next_tick {
            Some(t) if t <= now => {
                self.tick(now);
                // Keep ticking only while there is housekeeping left to do, so an idle
                // servent lets a simulation go idle too.
                let busy = self
                    .conns
                    .values()
                    .any(|c| !matches!(c.state, State::Overlay))
                    || (self.overlay_count() < self.cfg.want_conns.min(self.cfg.max_conns)
                        && !self.host_cache.is_empty())
                    || !self.routes.is_empty()
                    || !self.push_routes.is_empty()
                    || (self.auto && self.cfg.role == Role::Leaf && !self.cfg.firewalled)
                    || (self.cfg.role.is_06()
                        && (self.qrp_dirty
                            || (self.have_06() < self.want_06()
                                && !(self.up_cache.is_empty() && self.host_cache.is_empty()))));
                self.next_tick = busy.then(|| now + self.cfg.tick);
            }
            _ => {}
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let dq = self.dqs.values().map(|q| q.next.min(q.deadline)).min();
        match (self.next_tick, dq) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
