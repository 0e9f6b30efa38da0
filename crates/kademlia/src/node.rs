//! The sans-IO DHT node: answers KRPC queries, keeps the routing table, runs iterative
//! lookups and stores announced peers.
//!
//! # Run loop
//! A driver hands the node datagrams, commands and time, then drains it in the contract's
//! order: [`Core::poll_transmit`] (datagrams to send), [`Core::poll_event`] (results for
//! the user), [`Core::poll_timeout`] (when to call [`Core::handle_timeout`]). `now` never
//! goes backwards. See the crate documentation for a compiled example.
//!
//! # Lookups
//! Every lookup (find_node, get_peers, announce, bootstrap, bucket refresh) is iterative:
//! it keeps a short list of candidates sorted by XOR distance to the target, queries the
//! closest not yet queried ones with at most `alpha` queries in flight, adds the nodes each
//! answer names, and ends when the `k` closest candidates that did not fail have all
//! answered. A query that gets no answer within `query_timeout` is retried `retries` times,
//! then the candidate is dropped and the routing table told. An announce is a get_peers
//! lookup followed by `announce_peer` (with each node's token) to the k closest answering
//! nodes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{Core, FxMap, FxSet, Id, Input, Instant, Rng, Transmit};
use sha1::{Digest, Sha1};

use crate::bep42;
use crate::bep44::{self, Item};
use crate::krpc::{self, Body, DecodeError, Message, NodeInfo, Query, Response};
use crate::table::{Inserted, RoutingTable};

/// Settings of a node. [`Config::default`] follows BEP 5 and common practice.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bucket size and the number of closest nodes a lookup converges on (8).
    pub k: usize,
    /// Parallel queries per lookup (3).
    pub alpha: usize,
    /// The longest we wait for any answer (1 s). A lookup query is considered late much
    /// earlier (see [`Config::min_query_timeout`]), but its answer is still taken until this.
    pub query_timeout: Duration,
    /// The floor of the adaptive timeout (100 ms). A lookup query unanswered after
    /// `srtt + 4·rttvar` (the node's own smoothed RTT when we have timed it, else the
    /// node-wide one; clamped to `[min_query_timeout, query_timeout]`) gives up its α slot
    /// and is retried (or the candidate is given up after `retries`).
    pub min_query_timeout: Duration,
    /// How many times an unanswered lookup query is sent again (3: with 10 % loss each way a
    /// query and its answer are lost together 19 % of the time, four tries 0.13 %).
    pub retries: u8,
    /// The token secret changes this often; tokens from the current and previous secret
    /// are accepted, so a token is valid for up to twice this (5 min: ~10 min validity).
    pub token_rotation: Duration,
    /// Announced peers are forgotten after this (30 min).
    pub peer_ttl: Duration,
    /// At most this many peers stored per info-hash (100).
    pub max_peers_per_hash: usize,
    /// At most this many info-hashes stored (10 000).
    pub max_hashes: usize,
    /// At most this many peers in one get_peers answer (50: about 450 bytes).
    pub max_values: usize,
    /// BEP 44 items stored at most (2000, each value ≤ 1000 bytes); then `put`s of new
    /// targets are refused with 202.
    pub max_items: usize,
    /// BEP 44 items are forgotten this long after their last `put` (2 h).
    pub item_ttl: Duration,
    /// Queries a single IPv4 address may send per second on average (20; loopback
    /// addresses are not limited).
    pub rate_per_ip: f64,
    /// ... and in a burst (40).
    pub burst_per_ip: f64,
    /// Addresses tracked by the rate limiter (4096).
    pub max_tracked_ips: usize,
    /// Lookups running at once; more are refused (64).
    pub max_lookups: usize,
    /// Queries of ours waiting for an answer (2048).
    pub max_pending: usize,
    /// Candidates a lookup remembers (64).
    pub max_candidates: usize,
    /// Periodic work (peer expiry, one bucket refresh) runs this often (60 s).
    pub maintenance: Duration,
    /// Keep nodes whose id does not fit their public address out of the table (BEP 42).
    pub enforce_bep42: bool,
    /// Take a BEP 42 id for our external address once this many different nodes (by IP)
    /// reported the same public address in the `ip` field of their answers (4; 0: never).
    pub bep42_votes: usize,
    /// Our client version (`v`), sent in every message.
    pub version: Option<[u8; 4]>,
    /// BEP 43 read-only node (a short-lived client): every query we send carries `ro=1`,
    /// so that other nodes keep us out of their tables, and queries to us are not answered.
    pub read_only: bool,
    /// Datagrams longer than this are dropped unread (4096; at least 512).
    pub max_datagram: usize,
    /// Apply the per-IP rate limit to loopback addresses too (off: every node of a loopback
    /// test or demo shares 127.0.0.1).
    pub limit_loopback: bool,
    /// Bytes per second (and burst) by which all answers to unverified sources together may
    /// exceed [`AMPLIFICATION`] times their queries (64 KiB). A source is verified once it
    /// answered one of our queries. Beyond the budget such an answer is cut to
    /// `AMPLIFICATION` times its query (peers, then a BEP 44 value, then nodes left out), so
    /// a flood with forged sender addresses cannot use us as an amplifier.
    pub unverified_reply_budget: usize,
    /// Nodes that queried us are pinged before they may enter the table; at most this many
    /// such pings wait for an answer at once (64).
    pub max_verify_pings: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            k: 8,
            alpha: 3,
            query_timeout: Duration::from_secs(1),
            min_query_timeout: Duration::from_millis(100),
            retries: 3,
            token_rotation: Duration::from_secs(300),
            peer_ttl: Duration::from_secs(30 * 60),
            max_peers_per_hash: 100,
            max_hashes: 10_000,
            max_values: 50,
            max_items: 2000,
            item_ttl: Duration::from_secs(2 * 3600),
            rate_per_ip: 20.0,
            burst_per_ip: 40.0,
            max_tracked_ips: 4096,
            max_lookups: 64,
            max_pending: 2048,
            max_candidates: 64,
            maintenance: Duration::from_secs(60),
            enforce_bep42: true,
            bep42_votes: 4,
            version: Some(*b"SV01"),
            read_only: false,
            max_datagram: krpc::MAX_DATAGRAM,
            limit_loopback: false,
            unverified_reply_budget: 64 * 1024,
            max_verify_pings: 64,
        }
    }
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Lookup {
        key: u64,
        node: Id,
    },
    AnnounceTo {
        key: u64,
    },
    Bootstrap {
        key: u64,
    },
    UserPing {
        cmd: u64,
    },
    Check,
    /// A node that queried us: it enters the table only once it answers this ping.
    Verify,
}

#[derive(Debug)]
struct Pending {
    to: SocketAddrV4,
    tries: u8,
    /// The query, kept for resending (bootstrap and announce_peer; lookups re-pick
    /// their candidates instead).
    resend: Option<Query>,
    node: Option<Id>,
    sent: Instant,
    /// Lookup queries: when the adaptive timeout frees the α slot (`None` once it has).
    soft: Option<Instant>,
    /// Whether this query holds one of its lookup's α slots.
    slot: bool,
    deadline: Instant,
    purpose: Purpose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    FindNode,
    GetPeers,
    Announce { port: u16, implied_port: bool },
    Get,
    Put,
    Bootstrap,
    Refresh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CandState {
    Fresh,
    InFlight,
    Done,
    Failed,
}

#[derive(Debug)]
struct Cand {
    info: NodeInfo,
    state: CandState,
    tries: u8,
    /// Queries to it still waiting for an answer.
    outstanding: u8,
    token: Option<Vec<u8>>,
    depth: u32,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the bootstrap queries (count outstanding).
    Seeding(usize),
    Searching,
    Announcing {
        outstanding: usize,
        ok: usize,
    },
}

#[derive(Debug)]
struct Lookup {
    cmd: u64,
    kind: Kind,
    target: Id,
    cands: BTreeMap<Id, Cand>,
    inflight: usize,
    peers: FxSet<SocketAddrV4>,
    started: Instant,
    stats: LookupStats,
    phase: Phase,
    /// BEP 44 lookups.
    item: Option<Box<ItemLookup>>,
}

/// The BEP 44 side of a get or put lookup.
#[derive(Debug)]
struct ItemLookup {
    salt: Vec<u8>,
    want_seq: Option<i64>,
    /// The best valid item seen (the newest for a mutable target).
    best: Option<Item>,
    /// Put: the value and, for a mutable item, the key.
    put: Option<(Vec<u8>, Option<MutableKey>)>,
    /// Put: the sequence number used.
    seq_used: Option<i64>,
}

const MAX_QUEUE: usize = 8192;
/// An answer to a source that has not answered us is at most this many times the size of
/// its query once the node's amplification budget is spent (QUIC's rule, RFC 9000 §8.1):
/// a find_node answer with 8 nodes fits, a 1000-byte BEP 44 value or 50 peers do not.
pub const AMPLIFICATION: usize = 3;
const MAX_PEERS_PER_LOOKUP: usize = 4096;

/// A DHT node (BEP 5).
#[derive(Debug)]
pub struct Dht {
    cfg: Config,
    id: Id,
    table: RoutingTable,
    rng: Rng,
    started: bool,
    next_tid: u16,
    pending: FxMap<u16, Pending>,
    deadlines: BTreeSet<(Instant, u16)>,
    lookups: BTreeMap<u64, Lookup>,
    next_key: u64,
    secrets: [u64; 2],
    next_rotation: Instant,
    next_maintenance: Instant,
    store: BTreeMap<Id, Vec<(SocketAddrV4, Instant)>>,
    items: BTreeMap<Id, (Item, Instant)>,
    /// Per-IP token buckets. A BTreeMap: the keys are addresses anyone can forge, and a
    /// B-tree has no hash to collide (O(log n) whatever the keys).
    limiter: BTreeMap<Ipv4Addr, (f64, Instant)>,
    /// Bytes that replies to unverified sources may still exceed their queries by.
    reply_budget: (f64, Instant),
    /// Verification pings waiting for an answer, and to whom.
    verifying: usize,
    verify_addrs: BTreeSet<SocketAddrV4>,
    /// Node-wide smoothed RTT and RTT variation (µs), from every timed answer.
    srtt_us: Option<(u64, u64)>,
    /// BEP 42: the address each answering node (by IP, at most 64) says we have.
    ip_votes: BTreeMap<Ipv4Addr, Ipv4Addr>,
    /// Our public address once enough answers agreed.
    external: Option<Ipv4Addr>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: NodeStats,
}

fn cfg_budget(cfg: &Config) -> f64 {
    cfg.unverified_reply_budget as f64
}

fn v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

impl Dht {
    /// A node with id `id`, settings `cfg` and the caller's seeded `rng`.
    pub fn new(id: Id, mut cfg: Config, mut rng: Rng) -> Dht {
        cfg.alpha = cfg.alpha.max(1);
        cfg.k = cfg.k.max(1);
        cfg.max_datagram = cfg.max_datagram.max(512);
        let secrets = [rng.next_u64(), rng.next_u64()];
        let budget = cfg_budget(&cfg);
        Dht {
            table: RoutingTable::new(id, cfg.k, Instant::ZERO),
            cfg,
            id,
            rng,
            started: false,
            next_tid: 0,
            pending: FxMap::default(),
            deadlines: BTreeSet::new(),
            lookups: BTreeMap::new(),
            next_key: 0,
            secrets,
            next_rotation: Instant::ZERO,
            next_maintenance: Instant::ZERO,
            store: BTreeMap::new(),
            items: BTreeMap::new(),
            limiter: BTreeMap::new(),
            reply_budget: (budget, Instant::ZERO),
            verifying: 0,
            verify_addrs: BTreeSet::new(),
            srtt_us: None,
            ip_votes: BTreeMap::new(),
            external: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
        }
    }

    /// Our node id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Lookups running.
    pub fn lookups(&self) -> usize {
        self.lookups.len()
    }

    /// Info-hashes with stored peers, and the number of stored peers.
    pub fn stored(&self) -> (usize, usize) {
        (self.store.len(), self.store.values().map(Vec::len).sum())
    }

    /// Peers stored for `info_hash`.
    pub fn stored_peers(&self, info_hash: &Id) -> Vec<SocketAddrV4> {
        self.store
            .get(info_hash)
            .map(|v| v.iter().map(|(a, _)| *a).collect())
            .unwrap_or_default()
    }

    /// Our public IPv4 address, once enough answers agreed on it (BEP 42 `ip` fields).
    pub fn external_ip(&self) -> Option<Ipv4Addr> {
        self.external
    }

    /// BEP 44 items stored with us.
    pub fn stored_items(&self) -> usize {
        self.items.len()
    }

    /// The BEP 44 item stored with us under `target`.
    pub fn stored_item(&self, target: &Id) -> Option<&Item> {
        self.items.get(target).map(|(i, _)| i)
    }

    /// Adds a node we learned about out of band (a saved table, a simulator's warm start)
    /// as if it had answered at `now`.
    pub fn add_node(&mut self, info: NodeInfo, now: Instant) {
        self.start(now);
        if info.id != self.id {
            self.table.insert(info, now, true);
        }
    }

    fn start(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            self.table = RoutingTable::new(self.id, self.cfg.k, now);
            self.next_rotation = now + self.cfg.token_rotation;
            // spread the periodic work of many nodes over the interval
            let jitter = self
                .rng
                .below(self.cfg.maintenance.as_micros().max(1) as u64);
            self.next_maintenance = now + Duration::from_micros(jitter);
        }
    }

    fn emit(&mut self, e: Event) {
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(e);
        }
    }

    fn send_msg(&mut self, to: SocketAddrV4, mut m: Message) {
        m.version = self.cfg.version.map(|v| v.to_vec());
        if matches!(m.body, Body::Query(_)) {
            m.read_only = self.cfg.read_only;
        }
        if self.transmits.len() < MAX_QUEUE {
            self.transmits.push_back(Transmit::Datagram {
                to: SocketAddr::V4(to),
                data: m.encode(),
            });
        }
    }

    fn token(&self, ip: Ipv4Addr, secret: u64) -> Vec<u8> {
        let mut h = Sha1::new();
        h.update(ip.octets());
        h.update(secret.to_be_bytes());
        h.finalize()[..8].to_vec()
    }

    fn valid_token(&self, ip: Ipv4Addr, token: &[u8]) -> bool {
        self.secrets.iter().any(|s| self.token(ip, *s) == token)
    }

    /// Sends a query; `false` when too many are pending.
    fn query(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        node: Option<Id>,
        q: Query,
        purpose: Purpose,
    ) -> bool {
        self.query_try(now, to, node, q, purpose, 1)
    }

    fn query_try(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        node: Option<Id>,
        q: Query,
        purpose: Purpose,
        tries: u8,
    ) -> bool {
        if self.pending.len() >= self.cfg.max_pending {
            return false;
        }
        let mut tid = self.next_tid;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let hard = now + self.cfg.query_timeout;
        let rto = now + self.rto(node);
        let (soft, deadline) = match purpose {
            // late answers still count until the hard deadline; the slot is freed earlier
            Purpose::Lookup { .. } => ((rto < hard).then_some(rto), hard),
            // resent as a whole: the adaptive timeout is the deadline
            Purpose::Bootstrap { .. } | Purpose::AnnounceTo { .. } => (None, rto),
            Purpose::UserPing { .. } | Purpose::Check | Purpose::Verify => (None, hard),
        };
        self.pending.insert(
            tid,
            Pending {
                to,
                tries,
                resend: matches!(
                    purpose,
                    Purpose::Bootstrap { .. } | Purpose::AnnounceTo { .. }
                )
                .then(|| q.clone()),
                node,
                sent: now,
                soft,
                slot: matches!(purpose, Purpose::Lookup { .. }),
                deadline,
                purpose,
            },
        );
        self.deadlines.insert((deadline, tid));
        if let Some(s) = soft {
            self.deadlines.insert((s, tid));
        }
        self.stats.queries_out += 1;
        self.send_msg(to, Message::query(&tid.to_be_bytes(), q));
        true
    }

    /// The adaptive timeout for a query to `node`: `srtt + 4·rttvar`, with the node's own
    /// smoothed RTT when we have one, clamped to `[min_query_timeout, query_timeout]`.
    /// Before any answer was timed it is `query_timeout`.
    fn rto(&self, node: Option<Id>) -> Duration {
        let Some((srtt, var)) = self.srtt_us else {
            return self.cfg.query_timeout;
        };
        let srtt = node
            .and_then(|n| self.table.rtt(&n))
            .map_or(srtt, |d| d.as_micros() as u64);
        Duration::from_micros(srtt.saturating_add(var.saturating_mul(4))).clamp(
            self.cfg.min_query_timeout,
            self.cfg.query_timeout.max(self.cfg.min_query_timeout),
        )
    }

    /// Folds one measured round trip into the node-wide estimate (TCP's rules: gains 1/8
    /// and 1/4, first sample sets the variation to half of it).
    fn sample_rtt(&mut self, rtt: Duration) {
        let r = rtt.as_micros().min(u128::from(u32::MAX)) as u64;
        self.srtt_us = Some(match self.srtt_us {
            None => (r, r / 2),
            Some((srtt, var)) => ((srtt * 7 + r) / 8, (var * 3 + srtt.abs_diff(r)) / 4),
        });
    }

    fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Snapshot { id } => {
                let (stored_hashes, stored_peers) = self.stored();
                self.emit(Event::Snapshot {
                    id,
                    node: self.id,
                    nodes: self.table.entries().map(|e| e.info).collect(),
                    buckets: self.table.bucket_sizes(),
                    stats: self.stats,
                    stored_hashes,
                    stored_peers,
                });
            }
            Command::Ping { id, addr } => {
                let Some(to) = v4(addr) else {
                    self.emit(Event::Refused {
                        id,
                        reason: "only IPv4 is spoken",
                    });
                    return;
                };
                let q = Query::Ping { id: self.id };
                if !self.query(now, to, None, q, Purpose::UserPing { cmd: id }) {
                    self.emit(Event::Refused {
                        id,
                        reason: "too many queries pending",
                    });
                }
            }
            Command::Bootstrap { id, nodes } => {
                let Some(key) = self.new_lookup(now, id, Kind::Bootstrap, self.id) else {
                    return;
                };
                let mut sent = 0;
                for a in nodes.into_iter().filter_map(v4).take(32) {
                    let q = Query::FindNode {
                        id: self.id,
                        target: self.id,
                    };
                    if self.query(now, a, None, q, Purpose::Bootstrap { key }) {
                        sent += 1;
                    }
                }
                if let Some(l) = self.lookups.get_mut(&key) {
                    l.phase = Phase::Seeding(sent);
                }
                if sent == 0 {
                    self.begin_search(now, key);
                }
            }
            Command::FindNode { id, target } => {
                if let Some(key) = self.new_lookup(now, id, Kind::FindNode, target) {
                    self.begin_search(now, key);
                }
            }
            Command::GetPeers { id, info_hash } => {
                if let Some(key) = self.new_lookup(now, id, Kind::GetPeers, info_hash) {
                    self.begin_search(now, key);
                }
            }
            Command::Get {
                id,
                target,
                salt,
                seq,
            } => {
                if let Some(key) = self.new_lookup(now, id, Kind::Get, target) {
                    if let Some(l) = self.lookups.get_mut(&key) {
                        l.item = Some(Box::new(ItemLookup {
                            salt,
                            want_seq: seq,
                            best: None,
                            put: None,
                            seq_used: None,
                        }));
                    }
                    self.begin_search(now, key);
                }
            }
            Command::Put { id, value, key } => {
                if !krpc::is_item_value(&value) {
                    self.emit(Event::Refused {
                        id,
                        reason: "the value must be one canonical bencoded value of at most 1000 bytes",
                    });
                    return;
                }
                if key.as_ref().is_some_and(|k| k.salt.len() > bep44::MAX_SALT) {
                    self.emit(Event::Refused {
                        id,
                        reason: "the salt is longer than 64 bytes",
                    });
                    return;
                }
                let (target, salt) = match &key {
                    None => (bep44::immutable_target(&value), Vec::new()),
                    Some(k) => (
                        bep44::mutable_target(&bep44::public_key(&k.seed), &k.salt),
                        k.salt.clone(),
                    ),
                };
                if let Some(lk) = self.new_lookup(now, id, Kind::Put, target) {
                    if let Some(l) = self.lookups.get_mut(&lk) {
                        l.item = Some(Box::new(ItemLookup {
                            salt,
                            want_seq: None,
                            best: None,
                            put: Some((value, key)),
                            seq_used: None,
                        }));
                    }
                    self.begin_search(now, lk);
                }
            }
            Command::Announce {
                id,
                info_hash,
                port,
                implied_port,
            } => {
                let kind = Kind::Announce { port, implied_port };
                if let Some(key) = self.new_lookup(now, id, kind, info_hash) {
                    self.begin_search(now, key);
                }
            }
        }
    }

    fn new_lookup(&mut self, now: Instant, cmd: u64, kind: Kind, target: Id) -> Option<u64> {
        if self.lookups.len() >= self.cfg.max_lookups {
            if kind != Kind::Refresh {
                self.emit(Event::Refused {
                    id: cmd,
                    reason: "too many lookups running",
                });
            }
            return None;
        }
        let key = self.next_key;
        self.next_key += 1;
        self.lookups.insert(
            key,
            Lookup {
                cmd,
                kind,
                target,
                cands: BTreeMap::new(),
                inflight: 0,
                peers: FxSet::default(),
                started: now,
                stats: LookupStats::default(),
                phase: Phase::Searching,
                item: None,
            },
        );
        Some(key)
    }

    fn add_cand(&mut self, key: u64, info: NodeInfo, depth: u32) {
        let own = self.id;
        let max = self.cfg.max_candidates;
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if info.id == own {
            return;
        }
        let dist = info.id.distance(&l.target);
        if l.cands.contains_key(&dist) {
            return;
        }
        if l.cands.len() >= max {
            match l.cands.last_key_value() {
                Some((far, _)) if *far > dist => {
                    let far = *far;
                    l.cands.remove(&far);
                }
                _ => return,
            }
        }
        l.cands.insert(
            dist,
            Cand {
                info,
                state: CandState::Fresh,
                tries: 0,
                outstanding: 0,
                token: None,
                depth,
            },
        );
    }

    fn begin_search(&mut self, now: Instant, key: u64) {
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        l.phase = Phase::Searching;
        let target = l.target;
        let seeds = self
            .table
            .closest(&target, self.cfg.max_candidates.min(self.cfg.k * 4), now);
        for s in seeds {
            self.add_cand(key, s, 0);
        }
        self.step(now, key);
    }

    /// Sends queries or finishes lookup `key`.
    fn step(&mut self, now: Instant, key: u64) {
        let (k, alpha) = (self.cfg.k, self.cfg.alpha);
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if l.phase != Phase::Searching {
            return;
        }
        let mut considered = 0;
        let mut all_done = true;
        let mut to_send = Vec::new();
        for (dist, c) in &l.cands {
            if considered >= k {
                break;
            }
            match c.state {
                CandState::Failed => continue,
                CandState::Done => considered += 1,
                CandState::InFlight => {
                    considered += 1;
                    all_done = false;
                }
                CandState::Fresh => {
                    considered += 1;
                    all_done = false;
                    if l.inflight + to_send.len() < alpha {
                        to_send.push(*dist);
                    }
                }
            }
        }
        if all_done {
            self.finish_search(now, key);
            return;
        }
        let (target, kind) = (l.target, l.kind);
        let tried = !to_send.is_empty();
        for dist in to_send {
            let Some(l) = self.lookups.get_mut(&key) else {
                return;
            };
            let Some(c) = l.cands.get_mut(&dist) else {
                continue;
            };
            c.state = CandState::InFlight;
            c.tries += 1;
            c.outstanding += 1;
            let info = c.info;
            let q = match kind {
                Kind::GetPeers | Kind::Announce { .. } => Query::GetPeers {
                    id: self.id,
                    info_hash: target,
                },
                Kind::Get | Kind::Put => Query::Get {
                    id: self.id,
                    target,
                    seq: l.item.as_ref().and_then(|i| i.want_seq),
                },
                _ => Query::FindNode {
                    id: self.id,
                    target,
                },
            };
            l.inflight += 1;
            l.stats.rpcs += 1;
            let purpose = Purpose::Lookup { key, node: info.id };
            if !self.query(now, info.addr, Some(info.id), q, purpose) {
                if let Some(l) = self.lookups.get_mut(&key) {
                    l.inflight -= 1;
                    if let Some(c) = l.cands.get_mut(&dist) {
                        c.outstanding -= 1;
                        c.state = CandState::Failed;
                    }
                }
            }
        }
        // Sending may have failed for every candidate: look again (terminates: each pass
        // moves at least one candidate out of Fresh).
        let stalled = self
            .lookups
            .get(&key)
            .is_some_and(|l| tried && l.inflight == 0 && l.phase == Phase::Searching);
        if stalled {
            self.step(now, key);
        }
    }

    fn closest_done(l: &Lookup, k: usize) -> Vec<&Cand> {
        l.cands
            .values()
            .filter(|c| c.state == CandState::Done)
            .take(k)
            .collect()
    }

    fn finish_search(&mut self, now: Instant, key: u64) {
        let k = self.cfg.k;
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        l.stats.duration = now.saturating_duration_since(l.started);
        l.stats.hops = Self::closest_done(l, 1).first().map_or(0, |c| c.depth + 1);
        match l.kind {
            Kind::Announce { port, implied_port } => {
                let targets: Vec<(NodeInfo, Vec<u8>)> = Self::closest_done(l, k)
                    .into_iter()
                    .filter_map(|c| c.token.clone().map(|t| (c.info, t)))
                    .collect();
                let info_hash = l.target;
                let mut sent = 0;
                for (info, token) in targets {
                    let q = Query::AnnouncePeer {
                        id: self.id,
                        info_hash,
                        port,
                        token,
                        implied_port,
                    };
                    if self.query(
                        now,
                        info.addr,
                        Some(info.id),
                        q,
                        Purpose::AnnounceTo { key },
                    ) {
                        sent += 1;
                    }
                }
                if let Some(l) = self.lookups.get_mut(&key) {
                    l.phase = Phase::Announcing {
                        outstanding: sent,
                        ok: 0,
                    };
                }
                if sent == 0 {
                    self.finish_announce(key);
                }
            }
            Kind::Put => {
                let targets: Vec<(NodeInfo, Vec<u8>)> = Self::closest_done(l, k)
                    .into_iter()
                    .filter_map(|c| c.token.clone().map(|t| (c.info, t)))
                    .collect();
                let Some(il) = l.item.as_mut() else {
                    return self.finish_announce(key);
                };
                let Some((value, mk)) = il.put.take() else {
                    return self.finish_announce(key);
                };
                let found = il
                    .best
                    .as_ref()
                    .and_then(|b| b.mutable.as_ref().map(|m| m.seq));
                let (item, cas) = match &mk {
                    None => (Item::immutable(value), None),
                    Some(mk) => {
                        let (seq, cas) = match mk.seq {
                            Some(s) => (s, None),
                            None => (found.map_or(1, |f| f.saturating_add(1)), found),
                        };
                        il.seq_used = Some(seq);
                        let signed = bep44::sign(&mk.seed, &mk.salt, seq, &value);
                        (
                            Item {
                                v: value,
                                mutable: Some(signed),
                            },
                            cas,
                        )
                    }
                };
                let mut sent = 0;
                for (info, token) in targets {
                    let q = Query::Put {
                        id: self.id,
                        token,
                        item: item.clone(),
                        cas,
                    };
                    if self.query(
                        now,
                        info.addr,
                        Some(info.id),
                        q,
                        Purpose::AnnounceTo { key },
                    ) {
                        sent += 1;
                    }
                }
                if let Some(l) = self.lookups.get_mut(&key) {
                    l.phase = Phase::Announcing {
                        outstanding: sent,
                        ok: 0,
                    };
                }
                if sent == 0 {
                    self.finish_announce(key);
                }
            }
            _ => {
                let Some(l) = self.lookups.remove(&key) else {
                    return;
                };
                let ev = match l.kind {
                    Kind::Bootstrap => Some(Event::Bootstrapped {
                        id: l.cmd,
                        nodes: self.table.len(),
                    }),
                    Kind::Refresh => None,
                    Kind::Get => Some(Event::Got {
                        id: l.cmd,
                        target: l.target,
                        item: l.item.and_then(|i| i.best),
                        stats: l.stats,
                    }),
                    _ => Some(Event::LookupDone {
                        id: l.cmd,
                        closest: Self::closest_done(&l, k).iter().map(|c| c.info).collect(),
                        peers: l.peers.len(),
                        stats: l.stats,
                    }),
                };
                if let Some(ev) = ev {
                    self.emit(ev);
                }
            }
        }
    }

    fn finish_announce(&mut self, key: u64) {
        if let Some(l) = self.lookups.remove(&key) {
            let ok = match l.phase {
                Phase::Announcing { ok, .. } => ok,
                _ => 0,
            };
            if l.kind == Kind::Put {
                self.emit(Event::Stored {
                    id: l.cmd,
                    target: l.target,
                    seq: l.item.and_then(|i| i.seq_used),
                    stored_at: ok,
                    stats: l.stats,
                });
                return;
            }
            self.emit(Event::Announced {
                id: l.cmd,
                stored_at: ok,
                peers: l.peers.len(),
                stats: l.stats,
            });
        }
    }

    fn heard(&mut self, now: Instant, info: NodeInfo, responded: bool) {
        if self.cfg.enforce_bep42 && !bep42::is_valid(&info.id, *info.addr.ip()) {
            self.stats.bep42_rejected += 1;
            return;
        }
        if let Inserted::Cached { ping: Some(n) } = self.table.insert(info, now, responded) {
            let already = self.pending.values().any(|p| p.node == Some(n.id));
            if !already {
                self.query(
                    now,
                    n.addr,
                    Some(n.id),
                    Query::Ping { id: self.id },
                    Purpose::Check,
                );
            }
        }
    }

    fn allow(&mut self, now: Instant, ip: Ipv4Addr) -> bool {
        // Every node of a loopback test shares 127.0.0.1: a per-IP limit would throttle the
        // test, and protects nothing on the local host.
        if ip.is_loopback() && !self.cfg.limit_loopback {
            return true;
        }
        let (rate, burst) = (self.cfg.rate_per_ip, self.cfg.burst_per_ip);
        if !self.limiter.contains_key(&ip) && self.limiter.len() >= self.cfg.max_tracked_ips {
            // Full: forget one tracked address at random (the first at or after a random
            // point). Refusing every new address instead would let a flood from forged
            // addresses lock out every legitimate newcomer.
            let at = Ipv4Addr::from(self.rng.next_u64() as u32);
            let victim = self
                .limiter
                .range(at..)
                .next()
                .or_else(|| self.limiter.iter().next())
                .map(|(k, _)| *k);
            if let Some(v) = victim {
                self.limiter.remove(&v);
            }
        }
        let (tokens, last) = self.limiter.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + rate * now.saturating_duration_since(*last).as_secs_f64()).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Some(from) = v4(from) else {
            return;
        };
        if data.len() > self.cfg.max_datagram {
            self.stats.oversized += 1;
            return;
        }
        let msg = match krpc::decode_with_limit(data, self.cfg.max_datagram) {
            Ok(m) => m,
            Err(DecodeError::Invalid {
                tid,
                query: true,
                code,
                reason,
            }) => {
                self.stats.malformed += 1;
                if self.allow(now, *from.ip()) {
                    self.send_msg(from, Message::error(&tid, code, reason));
                }
                return;
            }
            Err(DecodeError::Invalid { tid, .. }) => {
                // a broken answer to one of our queries counts as no answer
                self.stats.malformed += 1;
                let _ = tid;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match msg.body {
            Body::Query(q) => {
                if self.cfg.read_only {
                    // BEP 43: a read-only node does not answer
                    self.stats.read_only_dropped += 1;
                    return;
                }
                if !self.allow(now, *from.ip()) {
                    self.stats.rate_limited += 1;
                    return;
                }
                self.stats.queries_in += 1;
                self.answer(now, from, &msg.tid, q, msg.read_only, data.len());
            }
            Body::Response(r) => {
                if let Some(ip) = msg.ip {
                    // only answers to queries of ours count (a query carries no `ip`)
                    if self.pending_from(&msg.tid, from) {
                        self.vote_ip(now, *from.ip(), *ip.ip());
                    }
                }
                self.response(now, from, &msg.tid, Some(r));
            }
            Body::Error { .. } => self.response(now, from, &msg.tid, None),
        }
    }

    fn pending_from(&self, tid: &[u8], from: SocketAddrV4) -> bool {
        <[u8; 2]>::try_from(tid)
            .map(u16::from_be_bytes)
            .ok()
            .and_then(|t| self.pending.get(&t))
            .is_some_and(|p| p.to == from)
    }

    /// Counts one node's report of our address; once `bep42_votes` different nodes agree on
    /// one public address that our id does not fit, takes a BEP 42 id for it.
    fn vote_ip(&mut self, now: Instant, voter: Ipv4Addr, seen: Ipv4Addr) {
        let need = self.cfg.bep42_votes;
        if need == 0 || bep42::is_exempt(seen) {
            return;
        }
        if self.ip_votes.len() >= 64 && !self.ip_votes.contains_key(&voter) {
            // keep the table small: start over (the agreeing majority comes back quickly)
            self.ip_votes.clear();
        }
        self.ip_votes.insert(voter, seen);
        let agree = self.ip_votes.values().filter(|&&v| v == seen).count();
        if agree < need {
            return;
        }
        self.external = Some(seen);
        if bep42::is_valid(&self.id, seen) {
            return;
        }
        let old = self.id;
        let new = bep42::make_id(seen, &Id::random(&mut self.rng));
        self.id = new;
        // the buckets are laid out around our id: rebuild them around the new one
        let nodes: Vec<crate::table::Entry> = self.table.entries().copied().collect();
        self.table = RoutingTable::new(new, self.cfg.k, now);
        for e in nodes {
            if e.info.id != new {
                self.table
                    .insert(e.info, e.last_seen, e.last_response.is_some());
            }
        }
        self.ip_votes.clear();
        self.emit(Event::IdChanged {
            old,
            new,
            external: seen,
        });
        // tell the network where we are now
        if let Some(key) = self.new_lookup(now, u64::MAX, Kind::Refresh, new) {
            self.begin_search(now, key);
        }
    }

    fn answer(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        tid: &[u8],
        q: Query,
        read_only: bool,
        query_len: usize,
    ) {
        let sender = q.sender();
        let mut r = Response {
            id: self.id,
            ..Response::default()
        };
        let k = self.cfg.k;
        match q {
            Query::Ping { .. } => {}
            Query::Stats { .. } => {
                if !from.ip().is_loopback() {
                    self.send_msg(
                        from,
                        Message::error(
                            tid,
                            krpc::ERR_GENERIC,
                            "sv_stats is answered to local queries only",
                        ),
                    );
                    return;
                }
                r.stats = Some(self.report_pairs());
                r.buckets = self
                    .table
                    .bucket_sizes()
                    .into_iter()
                    .map(|b| b as i64)
                    .collect();
            }
            Query::FindNode { target, .. } => {
                r.nodes = self.table.closest_verified(&target, k, now);
            }
            Query::GetPeers { info_hash, .. } => {
                r.token = Some(self.token(*from.ip(), self.secrets[0]));
                let stored = self.stored_peers(&info_hash);
                if stored.is_empty() {
                    r.nodes = self.table.closest_verified(&info_hash, k, now);
                } else {
                    let mut v = stored;
                    self.rng.shuffle(&mut v);
                    v.truncate(self.cfg.max_values);
                    r.values = v;
                }
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                token,
                implied_port,
                ..
            } => {
                if !self.valid_token(*from.ip(), &token) {
                    self.stats.bad_tokens += 1;
                    self.send_msg(from, Message::error(tid, krpc::ERR_PROTOCOL, "bad token"));
                    return;
                }
                let peer =
                    SocketAddrV4::new(*from.ip(), if implied_port { from.port() } else { port });
                if !self.store_peer(now, info_hash, peer) {
                    self.send_msg(from, Message::error(tid, krpc::ERR_SERVER, "storage full"));
                    return;
                }
                self.emit(Event::PeerAnnounced { info_hash, peer });
            }
            Query::Get { target, seq, .. } => {
                r.token = Some(self.token(*from.ip(), self.secrets[0]));
                if let Some((item, _)) = self.items.get(&target) {
                    match &item.mutable {
                        None => r.v = Some(item.v.clone()),
                        Some(m) => {
                            r.k = Some(m.k);
                            r.seq = Some(m.seq);
                            if seq.is_none_or(|s| m.seq > s) {
                                r.v = Some(item.v.clone());
                                r.sig = Some(m.sig);
                            }
                        }
                    }
                }
                // the value is what was asked for: no nodes next to it (keeps the answer
                // near 1 KB at most)
                if r.v.is_none() {
                    r.nodes = self.table.closest_verified(&target, k, now);
                }
            }
            Query::Put {
                token, item, cas, ..
            } => {
                if !self.valid_token(*from.ip(), &token) {
                    self.stats.bad_tokens += 1;
                    self.send_msg(from, Message::error(tid, krpc::ERR_PROTOCOL, "bad token"));
                    return;
                }
                if let Err((code, why)) = self.store_item(now, item, cas) {
                    self.send_msg(from, Message::error(tid, code, why));
                    return;
                }
            }
        }
        let verified = self
            .table
            .get(&sender)
            .is_some_and(|e| e.info.addr == from && e.last_response.is_some());
        self.reply(now, from, tid, r, verified, query_len);
        if !read_only {
            self.consider_querier(
                now,
                NodeInfo {
                    id: sender,
                    addr: from,
                },
            );
        }
    }

    /// Sends answer `r`. To an unverified source, whatever the answer has beyond its
    /// query's size is paid from the amplification budget; when that is spent, nodes and
    /// peers are left out until the answer is no larger than the query.
    fn reply(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        tid: &[u8],
        r: Response,
        verified: bool,
        query_len: usize,
    ) {
        let version = self.cfg.version.map(|v| v.to_vec());
        let encode = |r: &Response| {
            let mut m = Message::response(tid, r.clone());
            m.ip = Some(from);
            m.version.clone_from(&version);
            m.encode()
        };
        let mut r = r;
        let mut data = encode(&r);
        let allowed = query_len.saturating_mul(AMPLIFICATION);
        if !verified && data.len() > allowed {
            let cap = cfg_budget(&self.cfg);
            let (tokens, last) = &mut self.reply_budget;
            *tokens = (*tokens + cap * now.saturating_duration_since(*last).as_secs_f64()).min(cap);
            *last = now;
            let excess = (data.len() - allowed) as f64;
            if *tokens >= excess {
                *tokens -= excess;
            } else {
                self.stats.trimmed += 1;
                // peers first, then a BEP 44 value, then nodes, until it fits
                while data.len() > allowed {
                    let over = data.len() - allowed;
                    if !r.values.is_empty() {
                        let n = over.div_ceil(krpc::COMPACT_PEER + 2).min(r.values.len());
                        r.values.truncate(r.values.len() - n);
                    } else if r.v.is_some() || r.k.is_some() {
                        (r.v, r.k, r.sig, r.seq) = (None, None, None, None);
                    } else if !r.nodes.is_empty() {
                        let n = over.div_ceil(krpc::COMPACT_NODE).min(r.nodes.len());
                        r.nodes.truncate(r.nodes.len() - n);
                    } else {
                        break;
                    }
                    data = encode(&r);
                }
            }
        }
        if self.transmits.len() < MAX_QUEUE {
            self.transmits.push_back(Transmit::Datagram {
                to: SocketAddr::V4(from),
                data,
            });
        }
    }

    /// A node queried us: one we know at that address is refreshed; a new one is pinged,
    /// and enters the table only if it answers (so an address that only sends queries —
    /// forged, or a client gone a second later — is never handed out to others).
    fn consider_querier(&mut self, now: Instant, info: NodeInfo) {
        if self.cfg.enforce_bep42 && !bep42::is_valid(&info.id, *info.addr.ip()) {
            self.stats.bep42_rejected += 1;
            return;
        }
        if info.id == self.id {
            return;
        }
        match self.table.get(&info.id) {
            Some(e) if e.info.addr == info.addr => {
                self.table.insert(info, now, false);
                return;
            }
            Some(_) => return,
            None => {}
        }
        if self.verifying >= self.cfg.max_verify_pings
            || self.verify_addrs.contains(&info.addr)
            || !self.table.would_take(&info.id, now)
        {
            return;
        }
        let q = Query::Ping { id: self.id };
        if self.query(now, info.addr, Some(info.id), q, Purpose::Verify) {
            self.verifying += 1;
            self.verify_addrs.insert(info.addr);
            self.stats.verify_pings += 1;
        }
    }

    /// The node's counters as (name, value), sorted by name (the `sv_stats` answer and the
    /// state file).
    pub fn report_pairs(&self) -> Vec<(String, i64)> {
        let (hashes, peers) = self.stored();
        let mut v = self.stats.pairs();
        v.push(("nodes".into(), self.table.len() as i64));
        v.push(("stored_hashes".into(), hashes as i64));
        v.push(("stored_peers".into(), peers as i64));
        v.push(("stored_items".into(), self.items.len() as i64));
        v.push(("lookups".into(), self.lookups.len() as i64));
        v.sort();
        v
    }

    /// Stores a BEP 44 item after the checks of a `put`.
    fn store_item(
        &mut self,
        now: Instant,
        item: Item,
        cas: Option<i64>,
    ) -> Result<(), (i64, &'static str)> {
        if !item.is_valid() {
            return Err(match &item.mutable {
                Some(_) if item.v.len() <= bep44::MAX_VALUE => {
                    (bep44::ERR_INVALID_SIGNATURE, "invalid signature")
                }
                _ => (bep44::ERR_VALUE_TOO_BIG, "message (v field) too big"),
            });
        }
        let target = item.target();
        let expiry = now + self.cfg.item_ttl;
        let seq = item.mutable.as_ref().map(|m| m.seq);
        match self.items.get_mut(&target) {
            Some((old, exp)) => {
                if let (Some(new), Some(have)) = (&item.mutable, &old.mutable) {
                    if cas.is_some_and(|c| c != have.seq) {
                        return Err((bep44::ERR_CAS_MISMATCH, "CAS mismatch"));
                    }
                    if new.seq < have.seq {
                        return Err((bep44::ERR_SEQ_TOO_LOW, "sequence number less than current"));
                    }
                    if new.seq > have.seq {
                        *old = item;
                    }
                }
                *exp = expiry;
            }
            None => {
                if self.items.len() >= self.cfg.max_items {
                    return Err((krpc::ERR_SERVER, "storage full"));
                }
                self.items.insert(target, (item, expiry));
            }
        }
        self.emit(Event::ItemStored { target, seq });
        Ok(())
    }

    fn store_peer(&mut self, now: Instant, info_hash: Id, peer: SocketAddrV4) -> bool {
        if !self.store.contains_key(&info_hash) && self.store.len() >= self.cfg.max_hashes {
            return false;
        }
        let expiry = now + self.cfg.peer_ttl;
        let max = self.cfg.max_peers_per_hash;
        let peers = self.store.entry(info_hash).or_default();
        if let Some(p) = peers.iter_mut().find(|(a, _)| *a == peer) {
            p.1 = expiry;
        } else if peers.len() < max {
            peers.push((peer, expiry));
        } else if let Some(oldest) = peers.iter_mut().min_by_key(|(_, e)| *e) {
            *oldest = (peer, expiry);
        }
        true
    }

    fn response(&mut self, now: Instant, from: SocketAddrV4, tid: &[u8], r: Option<Response>) {
        let Ok(tid) = <[u8; 2]>::try_from(tid).map(u16::from_be_bytes) else {
            self.stats.unexpected += 1;
            return;
        };
        match self.pending.get(&tid) {
            Some(p) if p.to == from => {}
            _ => {
                self.stats.unexpected += 1;
                return;
            }
        }
        let Some(p) = self.pending.remove(&tid) else {
            return;
        };
        self.deadlines.remove(&(p.deadline, tid));
        if let Some(s) = p.soft {
            self.deadlines.remove(&(s, tid));
        }
        self.stats.responses_in += 1;
        // The node answered (even with an error): it is alive. A different id at the
        // address we expected means another node now: treat as no answer from ours.
        let ok = match (&r, p.node) {
            (Some(r), Some(expected)) => r.id == expected,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if let Some(r) = &r {
            self.heard(
                now,
                NodeInfo {
                    id: r.id,
                    addr: from,
                },
                true,
            );
            // each try has its own transaction id: the sample is unambiguous (Karn)
            let rtt = now.saturating_duration_since(p.sent);
            self.sample_rtt(rtt);
            self.table.record_rtt(&r.id, rtt);
        } else if let Some(n) = p.node {
            self.table.failed(&n, now);
        }
        match p.purpose {
            Purpose::Check => {}
            Purpose::Verify => self.verified(p.to),
            Purpose::UserPing { cmd } => match r {
                Some(r) => self.emit(Event::Pong {
                    id: cmd,
                    node: r.id,
                    rtt: now.saturating_duration_since(p.sent),
                }),
                None => self.emit(Event::Unreachable { id: cmd }),
            },
            Purpose::Bootstrap { key } => self.seeded(now, key),
            Purpose::AnnounceTo { key } => self.announce_answered(key, ok),
            Purpose::Lookup { key, node } => {
                let Some(l) = self.lookups.get_mut(&key) else {
                    return;
                };
                if p.slot {
                    l.inflight = l.inflight.saturating_sub(1);
                }
                let dist = node.distance(&l.target);
                let mut depth = 0;
                let mut fresh_answer = true;
                if let Some(c) = l.cands.get_mut(&dist) {
                    depth = c.depth;
                    c.outstanding = c.outstanding.saturating_sub(1);
                    if c.state == CandState::Done {
                        // a retry and a late first try both answered
                        fresh_answer = false;
                    } else if ok {
                        // also a candidate given up for being late: its answer still counts
                        c.state = CandState::Done;
                        l.stats.responses += 1;
                        c.token = r.as_ref().and_then(|r| r.token.clone());
                    } else {
                        c.state = CandState::Failed;
                    }
                }
                let mut found_immutable = false;
                if let (true, true, Some(r), Some(il)) = (ok, fresh_answer, &r, l.item.as_mut()) {
                    found_immutable = Self::take_item(il, &l.target, r);
                }
                if found_immutable && l.kind == Kind::Get {
                    // the value hashes to the target: nothing better can be found
                    return self.finish_search(now, key);
                }
                if let (true, true, Some(r)) = (ok, fresh_answer, r) {
                    let cmd = l.cmd;
                    let mut fresh = Vec::new();
                    for v in r.values {
                        if l.peers.len() < MAX_PEERS_PER_LOOKUP && l.peers.insert(v) {
                            fresh.push(v);
                        }
                    }
                    if !fresh.is_empty() {
                        self.emit(Event::Peers {
                            id: cmd,
                            peers: fresh,
                        });
                    }
                    for n in r.nodes.into_iter().take(2 * self.cfg.k) {
                        self.add_cand(key, n, depth + 1);
                    }
                }
                self.step(now, key);
            }
        }
    }

    /// Checks an item in a `get` answer against the lookup; keeps it if valid and newer.
    /// Returns whether it was a valid immutable item.
    fn take_item(il: &mut ItemLookup, target: &Id, r: &Response) -> bool {
        let Some(v) = &r.v else {
            return false;
        };
        match (r.k, r.sig, r.seq) {
            (Some(k), Some(sig), Some(seq)) => {
                let newer = il
                    .best
                    .as_ref()
                    .and_then(|b| b.mutable.as_ref())
                    .is_none_or(|b| seq > b.seq);
                let wanted = il.want_seq.is_none_or(|w| seq > w);
                if newer
                    && wanted
                    && bep44::mutable_target(&k, &il.salt) == *target
                    && bep44::verify(&k, &sig, &il.salt, seq, v)
                {
                    il.best = Some(Item {
                        v: v.clone(),
                        mutable: Some(bep44::Signed {
                            k,
                            sig,
                            seq,
                            salt: il.salt.clone(),
                        }),
                    });
                }
                false
            }
            _ if bep44::immutable_target(v) == *target => {
                il.best = Some(Item::immutable(v.clone()));
                true
            }
            _ => false,
        }
    }

    /// A verification ping to `to` ended (answered or not).
    fn verified(&mut self, to: SocketAddrV4) {
        self.verifying = self.verifying.saturating_sub(1);
        self.verify_addrs.remove(&to);
    }

    fn seeded(&mut self, now: Instant, key: u64) {
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if let Phase::Seeding(n) = &mut l.phase {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.begin_search(now, key);
            }
        }
    }

    fn announce_answered(&mut self, key: u64, ok: bool) {
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if let Phase::Announcing { outstanding, ok: n } = &mut l.phase {
            *outstanding = outstanding.saturating_sub(1);
            if ok {
                *n += 1;
            }
            if *outstanding == 0 {
                self.finish_announce(key);
            }
        }
    }

    fn expire(&mut self, now: Instant, tid: u16) {
        let Some(mut p) = self.pending.remove(&tid) else {
            return;
        };
        self.stats.timeouts += 1;
        if let Some(n) = p.node {
            self.table.failed(&n, now);
        }
        // bootstrap nodes are all we have, and an announce is worth a second try
        if p.tries <= self.cfg.retries {
            if let Some(q) = p.resend.take() {
                if self.query_try(now, p.to, p.node, q, p.purpose, p.tries + 1) {
                    return;
                }
            }
        }
        match p.purpose {
            Purpose::Check => {}
            Purpose::Verify => self.verified(p.to),
            Purpose::UserPing { cmd } => self.emit(Event::Unreachable { id: cmd }),
            Purpose::Bootstrap { key } => self.seeded(now, key),
            Purpose::AnnounceTo { key } => self.announce_answered(key, false),
            Purpose::Lookup { key, node } => {
                let retries = self.cfg.retries;
                let Some(l) = self.lookups.get_mut(&key) else {
                    return;
                };
                let dist = node.distance(&l.target);
                let Some(c) = l.cands.get_mut(&dist) else {
                    if p.slot {
                        l.inflight = l.inflight.saturating_sub(1);
                    }
                    return self.step(now, key);
                };
                c.outstanding = c.outstanding.saturating_sub(1);
                if p.slot {
                    // no adaptive timeout came first (it was not shorter than this one)
                    l.inflight = l.inflight.saturating_sub(1);
                    l.stats.timeouts += 1;
                    if c.state == CandState::InFlight {
                        c.state = if c.tries <= retries {
                            CandState::Fresh
                        } else {
                            CandState::Failed
                        };
                    }
                } else if c.state == CandState::InFlight && c.outstanding == 0 {
                    c.state = CandState::Failed;
                }
                self.step(now, key);
            }
        }
    }

    /// A lookup query outlived its adaptive timeout: it frees its α slot and its candidate
    /// is retried (or given up once out of tries); an answer is still taken until the
    /// hard deadline.
    fn late(&mut self, now: Instant, tid: u16) {
        let retries = self.cfg.retries;
        let Some(p) = self.pending.get_mut(&tid) else {
            return;
        };
        p.soft = None;
        let had_slot = std::mem::replace(&mut p.slot, false);
        let Purpose::Lookup { key, node } = p.purpose else {
            return;
        };
        self.stats.late += 1;
        let Some(l) = self.lookups.get_mut(&key) else {
            return;
        };
        if had_slot {
            l.inflight = l.inflight.saturating_sub(1);
        }
        l.stats.timeouts += 1;
        let dist = node.distance(&l.target);
        if let Some(c) = l.cands.get_mut(&dist) {
            if c.state == CandState::InFlight {
                c.state = if c.tries <= retries {
                    CandState::Fresh
                } else {
                    CandState::Failed
                };
            }
        }
        self.step(now, key);
    }

    fn maintain(&mut self, now: Instant) {
        if now >= self.next_rotation {
            self.secrets = [self.rng.next_u64(), self.secrets[0]];
            self.next_rotation = now + self.cfg.token_rotation;
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + self.cfg.maintenance;
            for peers in self.store.values_mut() {
                peers.retain(|(_, e)| *e > now);
            }
            self.store.retain(|_, v| !v.is_empty());
            self.items.retain(|_, (_, e)| *e > now);
            if !self.table.is_empty() {
                if let Some(target) = self.table.refresh_due(now, &mut self.rng) {
                    if let Some(key) = self.new_lookup(now, u64::MAX, Kind::Refresh, target) {
                        self.begin_search(now, key);
                    }
                }
            }
        }
    }
}

impl Core for Dht {
    type Command = Command;
    type Event = Event;

    fn handle_input(&mut self, now: Instant, input: Input<'_, Command>) {
        self.start(now);
        match input {
            Input::Command(c) => self.command(now, c),
            Input::Datagram { from, data } => self.datagram(now, from, data),
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        while let Some(&(at, tid)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match self.pending.get(&tid) {
                Some(p) if p.soft == Some(at) => self.late(now, tid),
                Some(p) if p.deadline == at => self.expire(now, tid),
                _ => {}
            }
        }
        self.maintain(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if !self.started {
            return None;
        }
        let t = self.next_rotation.min(self.next_maintenance);
        Some(self.deadlines.first().map_or(t, |(d, _)| t.min(*d)))
    }
}
