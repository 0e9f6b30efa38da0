//! The servent's settings and roles.

use crate::wire::{DEFAULT_MAX_PAYLOAD, Guid};
use servent_core::ConnId;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

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
    /// counted in [`Stats::throttled`](crate::core::events::Stats::throttled); a link sending over [`FLOOD_FACTOR`](crate::core::flood_control::FLOOD_FACTOR) times this in
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
    /// leaf's slots). [`Servent::config`](crate::core::Servent::config) then shows the role it acts in.
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

/// One overlay connection as [`Servent::peer_infos`](crate::core::Servent::peer_infos) reports it.
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
