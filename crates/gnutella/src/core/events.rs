//! What a user asks of a servent and what it reports: commands, hits, events, counters.

use super::Role;
use super::library::SharedFile;
use crate::wire::Guid;
use crate::wire::http::Giv;
use servent_core::{CloseReason, ConnId};
use std::net::{SocketAddr, SocketAddrV4};

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
    /// Descriptors received, by [`Kind::index`](crate::wire::Kind::index).
    pub rx: [u64; 5],
    /// Descriptors sent (originated or forwarded), by [`Kind::index`](crate::wire::Kind::index).
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
    /// Links closed for sending over [`FLOOD_FACTOR`](crate::core::flood_control::FLOOD_FACTOR) times that.
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
