//! What a user asks of a node and what it reports.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::Id;

use crate::core::bep44::{self, Item};
use crate::wire::krpc::NodeInfo;

/// A user command. Each carries an id that its completion event repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Join the DHT through these addresses (find_node for our own id), then look up our
    /// own id to fill the table. Ends with [`Event::Bootstrapped`].
    Bootstrap {
        /// Command id.
        id: u64,
        /// Known nodes (ids unknown).
        nodes: Vec<SocketAddr>,
    },
    /// The k closest nodes to `target`. Ends with [`Event::LookupDone`].
    FindNode {
        /// Command id.
        id: u64,
        /// Target.
        target: Id,
    },
    /// Peers for `info_hash`: [`Event::Peers`] as they come, then [`Event::LookupDone`].
    GetPeers {
        /// Command id.
        id: u64,
        /// The torrent.
        info_hash: Id,
    },
    /// get_peers, then announce_peer to the k closest nodes. [`Event::Peers`] as they
    /// come, then [`Event::Announced`].
    Announce {
        /// Command id.
        id: u64,
        /// The torrent.
        info_hash: Id,
        /// Our BitTorrent (TCP) port.
        port: u16,
        /// Ask nodes to use our UDP source port instead (BEP 5 `implied_port`).
        implied_port: bool,
    },
    /// BEP 44 get: the item under `target`. A mutable item is checked against `salt`
    /// (responses do not carry it) and the newest valid one kept; an immutable one ends the
    /// lookup at once. Ends with [`Event::Got`].
    Get {
        /// Command id.
        id: u64,
        /// SHA-1 of the value, or of public key ‖ salt.
        target: Id,
        /// The salt of a mutable item (empty: none).
        salt: Vec<u8>,
        /// Only items with a higher sequence number are wanted.
        seq: Option<i64>,
    },
    /// BEP 44 put: a get lookup for tokens (and the current sequence number of a mutable
    /// item), then `put` to the k closest nodes. Ends with [`Event::Stored`].
    Put {
        /// Command id.
        id: u64,
        /// The value, one canonical bencoded value of at most 1000 bytes.
        value: Vec<u8>,
        /// `None`: immutable item. Otherwise signed with this key.
        key: Option<MutableKey>,
    },
    /// Report the routing table and counters: [`Event::Snapshot`].
    Snapshot {
        /// Command id.
        id: u64,
    },
    /// Ping one address. Ends with [`Event::Pong`] or [`Event::Unreachable`].
    Ping {
        /// Command id.
        id: u64,
        /// Whom.
        addr: SocketAddr,
    },
}

/// The signing side of a mutable put.
#[derive(Clone, PartialEq, Eq)]
pub struct MutableKey {
    /// The ed25519 seed (secret key).
    pub seed: [u8; 32],
    /// Salt (empty: none; at most 64 bytes).
    pub salt: Vec<u8>,
    /// The sequence number to use; `None`: one more than the highest found (1 if none),
    /// with `cas` set to the one found.
    pub seq: Option<i64>,
}

impl std::fmt::Debug for MutableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutableKey")
            .field("public", &hex::encode(bep44::public_key(&self.seed)))
            .field("salt", &self.salt)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Counters of one lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Queries sent (retries included).
    pub rpcs: u32,
    /// Answers received.
    pub responses: u32,
    /// Queries that got no answer within their adaptive timeout (some answered later).
    pub timeouts: u32,
    /// Path length: how many answers it took to reach the closest node found.
    pub hops: u32,
    /// From command to result.
    pub duration: Duration,
}

/// Something the node reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bootstrap `id` finished with `nodes` nodes in the routing table.
    Bootstrapped {
        /// Command id.
        id: u64,
        /// Nodes in the table.
        nodes: usize,
    },
    /// New peers found by lookup `id` (each reported once per lookup).
    Peers {
        /// Command id.
        id: u64,
        /// Peers.
        peers: Vec<SocketAddrV4>,
    },
    /// find_node or get_peers `id` converged.
    LookupDone {
        /// Command id.
        id: u64,
        /// The k closest nodes that answered, closest first.
        closest: Vec<NodeInfo>,
        /// Distinct peers found (get_peers).
        peers: usize,
        /// Counters.
        stats: LookupStats,
    },
    /// Announce `id` finished: `stored_at` nodes accepted our announce_peer.
    Announced {
        /// Command id.
        id: u64,
        /// Nodes that answered the announce_peer.
        stored_at: usize,
        /// Distinct peers found on the way.
        peers: usize,
        /// Counters of the get_peers part.
        stats: LookupStats,
    },
    /// Ping `id` was answered by node `node` after `rtt`.
    Pong {
        /// Command id.
        id: u64,
        /// The answering node's id.
        node: Id,
        /// Round trip.
        rtt: Duration,
    },
    /// Ping `id` was not answered.
    Unreachable {
        /// Command id.
        id: u64,
    },
    /// Command `id` was refused.
    Refused {
        /// Command id.
        id: u64,
        /// Why.
        reason: &'static str,
    },
    /// The answer to [`Command::Snapshot`].
    Snapshot {
        /// Command id.
        id: u64,
        /// Our id.
        node: Id,
        /// The nodes of the routing table.
        nodes: Vec<NodeInfo>,
        /// Nodes per bucket.
        buckets: Vec<usize>,
        /// Counters.
        stats: NodeStats,
        /// Info-hashes with stored peers.
        stored_hashes: usize,
        /// Stored peers.
        stored_peers: usize,
    },
    /// Get `id` finished: the item found (the newest valid one for a mutable target).
    Got {
        /// Command id.
        id: u64,
        /// What was looked up.
        target: Id,
        /// The item, if any node had a valid one.
        item: Option<Item>,
        /// Counters.
        stats: LookupStats,
    },
    /// Put `id` finished: `stored_at` nodes accepted the item.
    Stored {
        /// Command id.
        id: u64,
        /// Where the item lives.
        target: Id,
        /// The sequence number used (mutable items).
        seq: Option<i64>,
        /// Nodes that accepted the `put`.
        stored_at: usize,
        /// Counters of the get part.
        stats: LookupStats,
    },
    /// A node stored a BEP 44 item with us.
    ItemStored {
        /// Its target.
        target: Id,
        /// Its sequence number (mutable items).
        seq: Option<i64>,
    },
    /// Several nodes agreed that our public address is `external`, and our id did not fit
    /// it (BEP 42): the node now uses `new` (the routing table was rebuilt around it).
    IdChanged {
        /// The id before.
        old: Id,
        /// The id now.
        new: Id,
        /// Our public address as the answering nodes see it.
        external: Ipv4Addr,
    },
    /// A peer announced itself to us for `info_hash`.
    PeerAnnounced {
        /// The torrent.
        info_hash: Id,
        /// The peer (port as announced, or the UDP source port with implied_port).
        peer: SocketAddrV4,
    },
}

/// Counters of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Queries answered.
    pub queries_in: u64,
    /// Queries dropped by the per-IP rate limit.
    pub rate_limited: u64,
    /// Datagrams that were not usable KRPC.
    pub malformed: u64,
    /// Answers to our queries.
    pub responses_in: u64,
    /// Answers that matched no query of ours (or came from the wrong address).
    pub unexpected: u64,
    /// Queries we sent.
    pub queries_out: u64,
    /// Our queries that got no answer at all (within `query_timeout`).
    pub timeouts: u64,
    /// Lookup queries that outlived their adaptive timeout (each freed its α slot).
    pub late: u64,
    /// announce_peer refused for a bad token.
    pub bad_tokens: u64,
    /// Nodes kept out of the table by BEP 42.
    pub bep42_rejected: u64,
    /// Datagrams dropped unread for being longer than `max_datagram`.
    pub oversized: u64,
    /// Replies to unverified sources cut to their query's size (the amplification budget
    /// was spent).
    pub trimmed: u64,
    /// Nodes that queried us and were pinged before entering the table.
    pub verify_pings: u64,
    /// Queries not answered because this node is read-only (BEP 43).
    pub read_only_dropped: u64,
}

impl NodeStats {
    /// Every counter as (name, value).
    pub fn pairs(&self) -> Vec<(String, i64)> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        [
            ("queries_in", self.queries_in),
            ("rate_limited", self.rate_limited),
            ("malformed", self.malformed),
            ("responses_in", self.responses_in),
            ("unexpected", self.unexpected),
            ("queries_out", self.queries_out),
            ("timeouts", self.timeouts),
            ("late", self.late),
            ("bad_tokens", self.bad_tokens),
            ("bep42_rejected", self.bep42_rejected),
            ("oversized", self.oversized),
            ("trimmed", self.trimmed),
            ("verify_pings", self.verify_pings),
            ("read_only_dropped", self.read_only_dropped),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), n(v)))
        .collect()
    }
}
