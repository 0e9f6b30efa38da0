//! The Chord node: a sans-IO state machine (see the crate documentation for the run loop).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use servent_core::{Core, FxMap, Id, Input, Instant, KeyedMap, Ring, Rng, Transmit, keyed_map};

use crate::wire::{
    Body, ErrorCode, Item, MAX_DATAGRAM, MAX_KEY, MAX_NODES, MAX_PATH, MAX_VALUE, Message, NodeRef,
};

/// At most this many requests in flight per node (the default of [`Config::max_pending`]).
pub const MAX_PENDING: usize = 4096;
/// At most this many user lookups and operations in progress.
pub const MAX_OPS: usize = 1024;
const MAX_TRANSMITS: usize = 16 * 1024;
const MAX_EVENTS: usize = 8 * 1024;
/// Alternates a step reply offers besides the closest preceding finger.
const MAX_CANDIDATES: usize = 8;
/// A reply to a source that has not proven it receives at its address is at most this many
/// times the request's length ...
pub const AMPLIFICATION: usize = 3;
/// ... or this many bytes, whichever is larger (a Pong is 40 bytes).
pub const MIN_UNVERIFIED_REPLY: usize = 48;
/// Most addresses remembered as verified (oldest forgotten first).
pub const MAX_VERIFIED: usize = 4096;
/// How long an address stays verified after its last round trip.
pub const VERIFIED_TTL: Duration = Duration::from_secs(600);
/// Most unverified addresses with a challenge in flight, and requests held for each.
const MAX_CHALLENGES: usize = 256;
const MAX_HELD_PER_ADDR: usize = 8;

/// How `find_successor` travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupMode {
    /// The originator asks each node on the route in turn (the paper's iterative style).
    Iterative,
    /// Each node forwards the query; the last one answers the originator directly.
    Recursive,
}

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The identifier ring (m bits).
    pub ring: Ring,
    /// This node's id (reduced mod 2^m); see [`node_id`].
    pub id: Id,
    /// This node's UDP address, as peers reach it.
    pub addr: SocketAddr,
    /// r, the length of the successor list (also the number of copies of each key).
    pub succ_list_len: usize,
    /// Period of `stabilize`.
    pub stabilize_every: Duration,
    /// Period of `fix_fingers` (one finger refreshed per period).
    pub fix_fingers_every: Duration,
    /// Period of `check_predecessor`.
    pub check_pred_every: Duration,
    /// Period of pushing primary keys to the replicas.
    pub replicate_every: Duration,
    /// How long to wait for a response before resending.
    pub rpc_timeout: Duration,
    /// Resends before a peer is declared dead.
    pub rpc_retries: u32,
    /// How user lookups travel.
    pub mode: LookupMode,
    /// Most key-value pairs stored.
    pub max_store: usize,
    /// Most bytes of keys and values stored.
    pub max_store_bytes: usize,
    /// How long a deleted key's tombstone is kept (and pushed to the replicas).
    pub tombstone_ttl: Duration,
    /// Most tombstones kept (the oldest go first).
    pub max_tombstones: usize,
    /// A copy of a key this node is not responsible for is dropped when the responsible node
    /// has not pushed it for this many replication periods (we are no longer among its r
    /// successors).
    pub replica_lease_periods: u32,
    /// `false` for a client that only issues commands: it runs no maintenance, answers no
    /// requests and sends ring bits 0.
    pub member: bool,
    /// Largest datagram accepted (default and ceiling [`MAX_DATAGRAM`], 16 KiB); longer
    /// ones are dropped unread.
    pub max_datagram: usize,
    /// Most requests of ours in flight (default [`MAX_PENDING`]); more wait as failures
    /// (`Busy`) instead of growing the table.
    pub max_pending: usize,
    /// Requests one source IP may send per second on average (default 200); over it they
    /// are dropped. Loopback sources are exempt unless [`Config::limit_loopback`].
    pub rate_per_ip: f64,
    /// Burst a source IP may send at once (default 400).
    pub burst_per_ip: f64,
    /// Most source IPs tracked by the rate limit (default 16 384; one is forgotten when
    /// full, so forged floods cannot lock newcomers out).
    pub max_tracked_ips: usize,
    /// Apply the per-IP rate limit to loopback sources too (default off: every node of a
    /// ring on one host shares 127.0.0.1).
    pub limit_loopback: bool,
}

impl Config {
    /// Defaults for a ring member with `ring`, `id` and `addr`: r = 2·log2(expected size)
    /// is the caller's choice; the default is 8.
    pub fn new(ring: Ring, id: Id, addr: SocketAddr) -> Config {
        Config {
            ring,
            id: ring.reduce(&id),
            addr,
            succ_list_len: 8,
            stabilize_every: Duration::from_millis(500),
            fix_fingers_every: Duration::from_millis(100),
            check_pred_every: Duration::from_millis(1000),
            replicate_every: Duration::from_secs(5),
            rpc_timeout: Duration::from_millis(300),
            rpc_retries: 2,
            mode: LookupMode::Iterative,
            max_store: 100_000,
            max_store_bytes: 256 << 20,
            tombstone_ttl: Duration::from_secs(600),
            max_tombstones: 16 * 1024,
            replica_lease_periods: 3,
            member: true,
            max_datagram: MAX_DATAGRAM,
            max_pending: MAX_PENDING,
            rate_per_ip: 200.0,
            burst_per_ip: 400.0,
            max_tracked_ips: 16 * 1024,
            limit_loopback: false,
        }
    }

    /// A client that is not a ring member (for the CLI's one-shot commands).
    pub fn client(addr: SocketAddr) -> Config {
        let mut c = Config::new(Ring::FULL, Id::ZERO, addr);
        c.member = false;
        c
    }
}

/// The paper's node identifier: SHA-1 of the node's address ("ip:port"), reduced to m bits.
pub fn node_id(ring: Ring, addr: SocketAddr) -> Id {
    ring.hash(addr.to_string().as_bytes())
}

/// The paper's key identifier: SHA-1 of the key, reduced to m bits.
pub fn key_id(ring: Ring, key: &[u8]) -> Id {
    ring.hash(key)
}

/// A user command; each carries an id that its completion event repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Join the ring through any node we know the address of.
    Join {
        /// Command id.
        id: u64,
        /// A ring member.
        via: SocketAddr,
    },
    /// `find_successor(key)`; starts at this node, or at `start` (a client's entry node).
    Lookup {
        /// Command id.
        id: u64,
        /// The key (reduced mod 2^m by whoever evaluates it).
        key: Id,
        /// Where to start instead of here.
        start: Option<SocketAddr>,
    },
    /// Store a pair on the key's successor (which replicates it on its successors).
    Put {
        /// Command id.
        id: u64,
        /// Key bytes (hashed with SHA-1 to find its place).
        key: Vec<u8>,
        /// Value bytes.
        value: Vec<u8>,
        /// Where to start the lookup instead of here.
        start: Option<SocketAddr>,
    },
    /// Fetch a value.
    Get {
        /// Command id.
        id: u64,
        /// Key bytes.
        key: Vec<u8>,
        /// Where to start the lookup instead of here.
        start: Option<SocketAddr>,
    },
    /// Delete a key.
    Delete {
        /// Command id.
        id: u64,
        /// Key bytes.
        key: Vec<u8>,
        /// Where to start the lookup instead of here.
        start: Option<SocketAddr>,
    },
    /// Ask a node for its finger table.
    Fingers {
        /// Command id.
        id: u64,
        /// The node.
        node: SocketAddr,
    },
    /// Ask a node for its counters.
    Stats {
        /// Command id.
        id: u64,
        /// The node.
        node: SocketAddr,
    },
    /// Ask a node for its predecessor and successor list.
    Neighbors {
        /// Command id.
        id: u64,
        /// The node.
        node: SocketAddr,
    },
    /// Hand our keys to our successor, tell our neighbours, and stop.
    Leave {
        /// Command id.
        id: u64,
    },
}

/// What the node reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Our join is complete: we have a successor.
    Joined {
        /// Command id.
        id: u64,
        /// Our successor.
        successor: NodeRef,
    },
    /// A lookup finished.
    LookupDone {
        /// Command id.
        id: u64,
        /// The key.
        key: Id,
        /// The nodes the lookup went through, the start first and the key's predecessor
        /// last. `route.len() - 1` hops, counted as the paper counts them.
        route: Vec<Id>,
        /// The key's successor: the node responsible for it.
        responsible: NodeRef,
        /// Requests that timed out on the way.
        timeouts: u32,
    },
    /// A value was stored.
    Stored {
        /// Command id.
        id: u64,
        /// The node that took it.
        node: NodeRef,
    },
    /// A get finished (`value` is `None` when no replica had the key).
    Got {
        /// Command id.
        id: u64,
        /// The value.
        value: Option<Vec<u8>>,
        /// The node that answered.
        node: NodeRef,
    },
    /// A delete finished.
    Deleted {
        /// Command id.
        id: u64,
        /// Whether the key existed.
        existed: bool,
    },
    /// A node's finger table.
    FingerTable {
        /// Command id.
        id: u64,
        /// The node.
        node: NodeRef,
        /// m.
        bits: u8,
        /// Entry i+1 (start `node + 2^i`).
        entries: Vec<Option<NodeRef>>,
    },
    /// A node's counters ([`crate::wire::STAT_NAMES`] names the values, in order).
    StatsReport {
        /// Command id.
        id: u64,
        /// The node.
        node: NodeRef,
        /// Its ring's m.
        bits: u8,
        /// Its predecessor.
        pred: Option<NodeRef>,
        /// The counters.
        values: Vec<u64>,
    },
    /// A node's neighbours.
    NeighborList {
        /// Command id.
        id: u64,
        /// The node.
        node: NodeRef,
        /// Its predecessor.
        pred: Option<NodeRef>,
        /// Its successor list.
        succs: Vec<NodeRef>,
    },
    /// We left the ring.
    Left {
        /// Command id.
        id: u64,
    },
    /// A command could not be completed.
    Failed {
        /// Command id.
        id: u64,
        /// Why.
        reason: FailReason,
    },
}

/// Why a command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// Every node we could try stopped answering.
    Unreachable,
    /// The route exceeded the hop limit (a loop through stale tables).
    TooManyHops,
    /// Too many commands in progress, or a duplicate command id.
    Busy,
    /// The key or value exceeds the wire limits.
    TooLarge,
    /// Another node already has our id.
    IdTaken,
    /// The node is not (or no longer) a ring member.
    NotMember,
    /// The responsible node refused to store (its store is full).
    Refused,
    /// A node of a ring with another number of bits answered: `ours` is this node's m,
    /// `theirs` the answering node's.
    WrongRing {
        /// Our m.
        ours: u8,
        /// The other ring's m.
        theirs: u8,
    },
    /// A node refused the request because this address exceeded its request rate.
    RateLimited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    User(u64),
    Join(u64),
    Fix(usize),
    Op(u64),
}

#[derive(Debug)]
struct Lookup {
    why: Why,
    key: Id,
    route: Vec<Id>,
    /// The node being asked, then alternates to fall back on, best first.
    current: Option<SocketAddr>,
    alternates: Vec<NodeRef>,
    timeouts: u32,
    /// Once the key's predecessor answered: its successor list, checked for life in order.
    finals: Vec<NodeRef>,
    /// The last node that answered with a next hop, and its ring.
    from: Option<NodeRef>,
    ring: Ring,
    /// Nodes that timed out during this lookup.
    dead: Vec<SocketAddr>,
    /// Times the lookup fell back to `from`'s successor list.
    fallbacks: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Put,
    Get,
    Delete,
}

#[derive(Debug)]
struct Op {
    cmd: u64,
    kind: OpKind,
    key: Vec<u8>,
    value: Vec<u8>,
    targets: VecDeque<NodeRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Step(u64),
    Verify(u64),
    Fallback(u64),
    Rec(u64),
    Stabilize,
    CheckPred,
    JoinFingers(u64),
    OpRequest(u64),
    RemoteFingers(u64),
    RemoteStats(u64),
    RemoteNeighbors(u64),
    Transfer,
    LeaveTransfer(u64),
    /// A Ping to an unverified address whose requests we hold until it answers.
    Challenge(SocketAddr),
}

#[derive(Debug)]
struct Rpc {
    to: SocketAddr,
    data: Vec<u8>,
    deadline: Instant,
    tries_left: u32,
    purpose: Purpose,
}

/// The periodic maintenance timers, each with its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Stabilize = 0,
    FixFingers = 1,
    CheckPred = 2,
    Replicate = 3,
}

const TIMERS: [Timer; 4] = [
    Timer::Stabilize,
    Timer::FixFingers,
    Timer::CheckPred,
    Timer::Replicate,
];

/// A stored value with its version and when it was last written or pushed to us.
#[derive(Clone, Debug)]
struct Stored {
    value: Vec<u8>,
    version: u64,
    refreshed: Instant,
}

type StoreKey = (Id, Vec<u8>);

/// The limits a member enforces on its peers, with their defaults (`chord run --help`
/// names each flag). [`Limits::apply`] copies them into a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// [`Config::max_datagram`].
    pub max_datagram: usize,
    /// [`Config::max_pending`].
    pub max_pending: usize,
    /// [`Config::rate_per_ip`].
    pub rate_per_ip: f64,
    /// [`Config::burst_per_ip`].
    pub burst_per_ip: f64,
    /// [`Config::max_store`].
    pub max_items: usize,
    /// [`Config::max_store_bytes`].
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        let c = Config::new(Ring::FULL, Id::ZERO, SocketAddr::from(([127, 0, 0, 1], 0)));
        Limits {
            max_datagram: c.max_datagram,
            max_pending: c.max_pending,
            rate_per_ip: c.rate_per_ip,
            burst_per_ip: c.burst_per_ip,
            max_items: c.max_store,
            max_bytes: c.max_store_bytes,
        }
    }
}

impl Limits {
    /// Sets these limits on `cfg`.
    pub fn apply(&self, cfg: &mut Config) {
        cfg.max_datagram = self.max_datagram.min(MAX_DATAGRAM);
        cfg.max_pending = self.max_pending.min(MAX_PENDING);
        cfg.rate_per_ip = self.rate_per_ip;
        cfg.burst_per_ip = self.burst_per_ip;
        cfg.max_store = self.max_items;
        cfg.max_store_bytes = self.max_bytes;
    }
}

/// What a node counted since it started (`chord stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Requests served (after every check below).
    pub requests_in: u64,
    /// Datagrams dropped because they did not decode (garbage, truncated, bad lengths).
    pub malformed: u64,
    /// Datagrams dropped for exceeding [`Config::max_datagram`].
    pub oversized: u64,
    /// Requests dropped by the per-IP rate limit.
    pub rate_limited: u64,
    /// Requests from a ring of another size, answered with an error.
    pub wrong_ring: u64,
    /// Requests held until their source answered a challenge.
    pub challenged: u64,
}

/// Why a datagram was dropped, as logged at `-v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropReason {
    Malformed,
    Oversized,
    RateLimited,
}

/// A token bucket: tokens left and when they were counted.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One Chord node (or a client, see [`Config::member`]).
///
/// Drive it as [`servent_core::contract`] describes: feed inputs with
/// [`Core::handle_input`] / [`Core::handle_timeout`] (`now` never going backwards), then
/// drain [`Core::poll_transmit`], then [`Core::poll_event`], then re-arm the timer with
/// [`Core::poll_timeout`].
#[derive(Debug)]
pub struct ChordNode {
    cfg: Config,
    me: NodeRef,
    rng: Rng,
    /// Finger i (0-based) points at successor(me + 2^i); entry 0 is the successor.
    fingers: Vec<Option<NodeRef>>,
    succs: Vec<NodeRef>,
    pred: Option<NodeRef>,
    joined: bool,
    left: bool,
    next_finger: usize,
    timers: [Option<Instant>; 4],
    store: BTreeMap<StoreKey, Stored>,
    store_bytes: usize,
    /// Deleted keys: (version of the delete, expiry); `tomb_order` by expiry.
    tombs: BTreeMap<StoreKey, (u64, Instant)>,
    tomb_order: VecDeque<(Instant, StoreKey)>,
    pending: FxMap<u64, Rpc>,
    deadlines: BTreeSet<(Instant, u64)>,
    lookups: FxMap<u64, Lookup>,
    ops: FxMap<u64, Op>,
    next_local: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    fix_in_flight: bool,
    stabilize_in_flight: bool,
    /// Addresses that answered one of our requests (echoing its random transaction id),
    /// with the time that proof expires; `verified_order` is their insertion order.
    verified: KeyedMap<SocketAddr, Instant>,
    verified_order: VecDeque<SocketAddr>,
    /// Requests held until the address (the key) answers our challenge Ping: (the
    /// request's source, the request's bytes).
    held: KeyedMap<SocketAddr, Vec<(SocketAddr, Vec<u8>)>>,
    /// Per source IP (IPv6 octets, IPv4 mapped): its token bucket.
    limiter: KeyedMap<[u8; 16], Bucket>,
    /// When the limiter next forgets sources whose bucket is full again.
    limiter_prune_at: Instant,
    stats: NodeStats,
    /// When each drop reason was last logged (one line per reason per second).
    drop_logged: [Option<Instant>; 3],
}

impl ChordNode {
    /// A node that is not yet in a ring: give it [`Command::Join`], or call
    /// [`ChordNode::create`] to start a new ring. `rng` should be seeded by the caller.
    pub fn new(cfg: Config, mut rng: Rng) -> ChordNode {
        let m = cfg.ring.bits() as usize;
        let me = NodeRef {
            id: cfg.ring.reduce(&cfg.id),
            addr: cfg.addr,
        };
        ChordNode {
            fingers: vec![None; m],
            succs: Vec::new(),
            pred: None,
            joined: false,
            left: false,
            next_finger: 1,
            timers: [None; 4],
            store: BTreeMap::new(),
            store_bytes: 0,
            tombs: BTreeMap::new(),
            tomb_order: VecDeque::new(),
            pending: FxMap::default(),
            deadlines: BTreeSet::new(),
            lookups: FxMap::default(),
            ops: FxMap::default(),
            next_local: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            fix_in_flight: false,
            stabilize_in_flight: false,
            verified: keyed_map(&mut rng),
            verified_order: VecDeque::new(),
            held: keyed_map(&mut rng),
            limiter: keyed_map(&mut rng),
            limiter_prune_at: Instant::ZERO,
            stats: NodeStats::default(),
            drop_logged: [None; 3],
            me,
            rng,
            cfg,
        }
    }

    /// Starts a new ring with this node alone in it (the paper's `create`).
    pub fn create(&mut self, now: Instant) {
        if !self.cfg.member {
            return;
        }
        self.pred = None;
        self.succs = vec![self.me];
        if let Some(f) = self.fingers.first_mut() {
            *f = Some(self.me);
        }
        self.start_member(now);
    }

    /// Builds a node with a correct, stabilized state for the ring `members` (the caller
    /// knows every member): fingers, successor list and predecessor as stabilization would
    /// leave them. Used by large simulations that do not replay the joins.
    pub fn with_ideal_state(cfg: Config, rng: Rng, now: Instant, members: &[NodeRef]) -> ChordNode {
        let mut node = ChordNode::new(cfg, rng);
        let mut sorted: Vec<NodeRef> = members.to_vec();
        sorted.sort();
        sorted.dedup_by_key(|n| n.id);
        let succ_of = |k: &Id| -> NodeRef {
            let i = sorted.partition_point(|n| n.id < *k);
            sorted.get(i).or(sorted.first()).copied().unwrap_or(node.me)
        };
        let m = node.cfg.ring.bits();
        for i in 0..m {
            let start = node.cfg.ring.add_pow2(&node.me.id, i);
            if let Some(f) = node.fingers.get_mut(i as usize) {
                *f = Some(succ_of(&start));
            }
        }
        let pos = sorted.partition_point(|n| n.id <= node.me.id);
        let n = sorted.len();
        node.succs = (0..node.cfg.succ_list_len.min(n.saturating_sub(1)).max(1))
            .filter_map(|k| sorted.get((pos + k) % n.max(1)).copied())
            .collect();
        node.pred = sorted.get((pos + n.saturating_sub(2)) % n.max(1)).copied();
        node.start_member(now);
        node
    }

    fn start_member(&mut self, now: Instant) {
        self.joined = true;
        let periods = [
            self.cfg.stabilize_every,
            self.cfg.fix_fingers_every,
            self.cfg.check_pred_every,
            self.cfg.replicate_every,
        ];
        for (slot, p) in self.timers.iter_mut().zip(periods) {
            // A random phase, so that a ring's nodes do not all stabilize in lock step.
            let us = u64::try_from(p.as_micros()).unwrap_or(u64::MAX).max(1);
            *slot = Some(now + Duration::from_micros(self.rng.below(us)));
        }
    }

    /// Changes the periods of `stabilize` and `fix_fingers` (from their next firing on,
    /// with a fresh random phase).
    pub fn set_periods(&mut self, stabilize: Duration, fix_fingers: Duration) {
        self.cfg.stabilize_every = stabilize;
        self.cfg.fix_fingers_every = fix_fingers;
        for (t, p) in [
            (Timer::Stabilize, stabilize),
            (Timer::FixFingers, fix_fingers),
        ] {
            let us = u64::try_from(p.as_micros()).unwrap_or(u64::MAX).max(1);
            let jitter = Duration::from_micros(self.rng.below(us));
            if let Some(at) = self.timers[t as usize].as_mut() {
                *at += jitter;
            }
        }
    }

    /// This node.
    pub fn me(&self) -> NodeRef {
        self.me
    }

    /// The ring.
    pub fn ring(&self) -> Ring {
        self.cfg.ring
    }

    /// Whether the node is a ring member (created or joined, not left).
    pub fn is_member(&self) -> bool {
        self.joined && !self.left
    }

    /// The successor, if any.
    pub fn successor(&self) -> Option<NodeRef> {
        self.succs.first().copied()
    }

    /// The successor list, nearest first.
    pub fn successors(&self) -> &[NodeRef] {
        &self.succs
    }

    /// The predecessor, if known.
    pub fn predecessor(&self) -> Option<NodeRef> {
        self.pred
    }

    /// The finger table: entry i (0-based) is successor(me + 2^i).
    pub fn fingers(&self) -> &[Option<NodeRef>] {
        &self.fingers
    }

    /// The start of finger entry `i` (0-based): (me + 2^i) mod 2^m.
    pub fn finger_start(&self, i: u32) -> Id {
        self.cfg.ring.add_pow2(&self.me.id, i)
    }

    /// Number of key-value pairs held (primary and replica).
    pub fn stored(&self) -> usize {
        self.store.len()
    }

    /// Number of tombstones held (deleted keys remembered so that stale copies cannot
    /// bring them back).
    pub fn tombstones(&self) -> usize {
        self.tombs.len()
    }

    /// Whether this node holds `key`.
    pub fn holds(&self, key: &[u8]) -> bool {
        let kid = key_id(self.cfg.ring, key);
        self.store.contains_key(&(kid, key.to_vec()))
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// What this node counted since it started.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// The values of a Stats answer, in the order of [`crate::wire::STAT_NAMES`].
    fn stat_values(&self) -> Vec<u64> {
        let s = self.stats;
        let n = |x: usize| x as u64;
        vec![
            n(self.succs.len()),
            n(self.fingers.iter().flatten().count()),
            n(self.store.len()),
            n(self.store_bytes),
            n(self.tombs.len()),
            n(self.pending.len()),
            s.datagrams_in,
            s.requests_in,
            s.malformed,
            s.oversized,
            s.rate_limited,
            s.wrong_ring,
        ]
    }

    /// Source IPs the rate limit currently tracks.
    pub fn tracked_ips(&self) -> usize {
        self.limiter.len()
    }

    /// Counts a dropped datagram and logs its typed reason (at most once a second per
    /// reason, with the running count, so a flood cannot flood the log).
    fn dropped(
        &mut self,
        now: Instant,
        from: SocketAddr,
        why: DropReason,
        detail: &dyn std::fmt::Display,
    ) {
        let count = match why {
            DropReason::Malformed => {
                self.stats.malformed += 1;
                self.stats.malformed
            }
            DropReason::Oversized => {
                self.stats.oversized += 1;
                self.stats.oversized
            }
            DropReason::RateLimited => {
                self.stats.rate_limited += 1;
                self.stats.rate_limited
            }
        };
        let slot = &mut self.drop_logged[why as usize];
        if slot.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1)) {
            *slot = Some(now);
            tracing::info!(%from, reason = ?why, %detail, total = count, "chord: dropped a datagram");
        }
    }

    /// The per-IP token bucket: whether a request from `ip` may be served now.
    fn allow(&mut self, now: Instant, ip: std::net::IpAddr) -> bool {
        if ip.is_loopback() && !self.cfg.limit_loopback {
            return true;
        }
        let (rate, burst) = (
            self.cfg.rate_per_ip.max(0.0),
            self.cfg.burst_per_ip.max(1.0),
        );
        let key = match ip {
            std::net::IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v) => v.octets(),
        };
        if !self.limiter.contains_key(&key) {
            if now >= self.limiter_prune_at {
                // Sources whose bucket has refilled are as good as new: forget them.
                self.limiter.retain(|_, b| {
                    b.tokens + rate * now.saturating_duration_since(b.at).as_secs_f64() < burst
                });
                let refill = if rate > 0.0 { burst / rate } else { 60.0 };
                self.limiter_prune_at = now + Duration::from_secs_f64(refill.clamp(0.1, 60.0));
            }
            if self.limiter.len() >= self.cfg.max_tracked_ips.max(1) {
                // Full: forget one (the first in the keyed order, which a peer cannot
                // predict) rather than refuse every newcomer.
                if let Some(k) = self.limiter.keys().next().copied() {
                    self.limiter.remove(&k);
                }
            }
        }
        let b = self.limiter.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + rate * now.saturating_duration_since(b.at).as_secs_f64()).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn bits_byte(&self) -> u8 {
        if self.cfg.member {
            self.cfg.ring.bits() as u8
        } else {
            0
        }
    }

    fn emit(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    fn send_raw(&mut self, to: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() < MAX_TRANSMITS && data.len() <= MAX_DATAGRAM {
            self.transmits.push_back(Transmit::Datagram { to, data });
        }
    }

    fn send_oneway(&mut self, to: SocketAddr, body: Body) {
        let msg = Message {
            bits: self.bits_byte(),
            txid: self.rng.next_u64(),
            body,
        };
        self.send_raw(to, msg.encode());
    }

    fn reply(&mut self, to: SocketAddr, txid: u64, body: Body) {
        let msg = Message {
            bits: self.bits_byte(),
            txid,
            body,
        };
        self.send_raw(to, msg.encode());
    }

    /// Whether `addr` answered one of our requests within [`VERIFIED_TTL`].
    pub fn is_verified(&self, now: Instant, addr: SocketAddr) -> bool {
        self.verified.get(&addr).is_some_and(|exp| *exp > now)
    }

    fn mark_verified(&mut self, now: Instant, addr: SocketAddr) {
        let exp = now + VERIFIED_TTL;
        if let Some(e) = self.verified.get_mut(&addr) {
            *e = exp;
            return;
        }
        if self.verified.len() >= MAX_VERIFIED {
            if let Some(old) = self.verified_order.pop_front() {
                self.verified.remove(&old);
            }
        }
        self.verified.insert(addr, exp);
        self.verified_order.push_back(addr);
    }

    /// Answers `request` (from `from`) with `body` when the answer is small enough for an
    /// unverified source or `from` is verified; otherwise holds the request and challenges
    /// `from` with a Ping (see docs/chord.md, "Amplification").
    fn answer(&mut self, now: Instant, from: SocketAddr, txid: u64, body: Body, request: &[u8]) {
        let data = Message {
            bits: self.bits_byte(),
            txid,
            body,
        }
        .encode();
        if data.len() <= unverified_budget(request.len()) || self.is_verified(now, from) {
            self.send_raw(from, data);
        } else {
            self.challenge(now, from, from, request);
        }
    }

    /// Holds `request` (received from `from`) until `addr` answers a Ping.
    fn challenge(&mut self, now: Instant, addr: SocketAddr, from: SocketAddr, request: &[u8]) {
        if let Some(list) = self.held.get_mut(&addr) {
            // A challenge is already in flight: no second Ping.
            if list.len() < MAX_HELD_PER_ADDR {
                list.push((from, request.to_vec()));
            }
            return;
        }
        if self.held.len() >= MAX_CHALLENGES {
            return;
        }
        if self.request(now, addr, Body::Ping, Purpose::Challenge(addr)) {
            self.stats.challenged += 1;
            self.held.insert(addr, vec![(from, request.to_vec())]);
        }
    }

    /// Sends a request and remembers it; `false` when too many are in flight.
    fn request(&mut self, now: Instant, to: SocketAddr, body: Body, purpose: Purpose) -> bool {
        self.request_with_txid(now, to, body, purpose, None)
    }

    fn request_with_txid(
        &mut self,
        now: Instant,
        to: SocketAddr,
        body: Body,
        purpose: Purpose,
        txid: Option<u64>,
    ) -> bool {
        if self.pending.len() >= self.cfg.max_pending.min(MAX_PENDING) {
            return false;
        }
        let mut txid = txid.unwrap_or_else(|| self.rng.next_u64());
        while self.pending.contains_key(&txid) {
            txid = self.rng.next_u64();
        }
        let data = Message {
            bits: self.bits_byte(),
            txid,
            body,
        }
        .encode();
        let deadline = now + self.cfg.rpc_timeout;
        self.send_raw(to, data.clone());
        self.deadlines.insert((deadline, txid));
        self.pending.insert(
            txid,
            Rpc {
                to,
                data,
                deadline,
                tries_left: self.cfg.rpc_retries,
                purpose,
            },
        );
        true
    }

    fn local_id(&mut self) -> u64 {
        let id = self.next_local;
        self.next_local += 1;
        id
    }

    // ----- the routing table -------------------------------------------------------------

    /// Whether `key ∈ (me, successor]`: then the successor is responsible for it.
    fn owned_by_successor(&self, key: &Id) -> Option<NodeRef> {
        let s = self.successor()?;
        key.in_half_open(&self.me.id, &s.id).then_some(s)
    }

    /// The paper's `closest_preceding_finger(key)`: the finger table searched from the last
    /// entry to the first, the first node in `(me, key)` wins. Then, as alternates should it
    /// be dead, the other distinct fingers and successors in `(me, key)`, closest to the key
    /// first.
    fn closest_preceding(&self, key: &Id) -> Vec<NodeRef> {
        let mut out: Vec<NodeRef> = Vec::new();
        for f in self.fingers.iter().rev().flatten() {
            if f.id.in_open(&self.me.id, key) && !out.iter().any(|o| o.id == f.id) {
                out.push(*f);
            }
        }
        let ring = self.cfg.ring;
        let mut extra: Vec<NodeRef> = self
            .succs
            .iter()
            .filter(|s| s.id.in_open(&self.me.id, key) && !out.iter().any(|o| o.id == s.id))
            .copied()
            .collect();
        // Closest to the key first: largest clockwise distance from us.
        extra.sort_by_key(|s| std::cmp::Reverse(ring.clockwise(&self.me.id, &s.id)));
        extra.dedup_by_key(|s| s.id);
        if out.is_empty() {
            out = extra;
        } else {
            out.extend(extra);
        }
        out.truncate(MAX_CANDIDATES);
        out
    }

    /// One step of find_successor evaluated here.
    fn step(&self, key: &Id) -> (bool, Vec<NodeRef>) {
        if *key == self.me.id && self.joined && !self.left {
            // Our own id is ours: we are its successor (then our successors, should we
            // have died by the time the asker checks). No finger is strictly closer.
            let mut v = Vec::with_capacity(self.succs.len() + 1);
            v.push(self.me);
            v.extend(self.succs.iter().filter(|s| s.id != self.me.id));
            v.truncate(MAX_NODES);
            return (true, v);
        }
        if let Some(_s) = self.owned_by_successor(key) {
            let mut v = self.succs.clone();
            v.truncate(MAX_NODES);
            return (true, v);
        }
        let c = self.closest_preceding(key);
        if c.is_empty() {
            // No finger precedes the key: our successor is the best answer we have.
            return (true, self.succs.clone());
        }
        (false, c)
    }

    /// A peer stopped answering: forget it everywhere.
    fn forget(&mut self, addr: SocketAddr) {
        if addr == self.me.addr {
            return;
        }
        for f in self.fingers.iter_mut() {
            if f.is_some_and(|n| n.addr == addr) {
                *f = None;
            }
        }
        self.succs.retain(|s| s.addr != addr);
        if self.pred.is_some_and(|p| p.addr == addr) {
            self.pred = None;
        }
        if self.joined && !self.left && self.succs.is_empty() {
            // Out of successors: fall back to the nearest finger, then our predecessor,
            // then ourselves (stabilize will pull us back into the ring).
            let me = self.me.id;
            let ring = self.cfg.ring;
            let best = self
                .fingers
                .iter()
                .flatten()
                .filter(|f| f.id != me)
                .min_by_key(|f| ring.clockwise(&me, &f.id))
                .copied()
                .or(self.pred)
                .unwrap_or(self.me);
            self.succs.push(best);
        }
        self.sync_finger0();
    }

    fn sync_finger0(&mut self) {
        let s = self.successor();
        if let Some(f) = self.fingers.first_mut() {
            *f = s;
        }
    }

    fn set_successor_list(&mut self, first: NodeRef, rest: &[NodeRef]) {
        let mut v = vec![first];
        for n in rest {
            if v.len() >= self.cfg.succ_list_len {
                break;
            }
            if n.id == self.me.id {
                break; // wrapped around the ring
            }
            if !v.iter().any(|x| x.id == n.id) {
                v.push(*n);
            }
        }
        self.succs = v;
        self.sync_finger0();
    }

    // ----- commands -----------------------------------------------------------------------

    fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Join { id, via } => {
                if !self.cfg.member || self.joined {
                    self.emit(Event::Failed {
                        id,
                        reason: FailReason::NotMember,
                    });
                    return;
                }
                let key = self.me.id;
                self.start_lookup(now, Why::Join(id), key, Some(via));
            }
            Command::Lookup { id, key, start } => {
                if !self.can_start(id, start) {
                    return;
                }
                let key = self.cfg.ring.reduce(&key);
                if start.is_none() && self.cfg.mode == LookupMode::Recursive {
                    self.start_recursive(now, id, key);
                } else {
                    self.start_lookup(now, Why::User(id), key, start);
                }
            }
            Command::Put {
                id,
                key,
                value,
                start,
            } => self.start_op(now, id, OpKind::Put, key, value, start),
            Command::Get { id, key, start } => {
                self.start_op(now, id, OpKind::Get, key, Vec::new(), start)
            }
            Command::Delete { id, key, start } => {
                self.start_op(now, id, OpKind::Delete, key, Vec::new(), start)
            }
            Command::Fingers { id, node } => {
                if !self.request(now, node, Body::GetFingers, Purpose::RemoteFingers(id)) {
                    self.emit(Event::Failed {
                        id,
                        reason: FailReason::Busy,
                    });
                }
            }
            Command::Stats { id, node } => {
                if !self.request(now, node, Body::GetStats, Purpose::RemoteStats(id)) {
                    self.emit(Event::Failed {
                        id,
                        reason: FailReason::Busy,
                    });
                }
            }
            Command::Neighbors { id, node } => {
                if !self.request(now, node, Body::GetNeighbors, Purpose::RemoteNeighbors(id)) {
                    self.emit(Event::Failed {
                        id,
                        reason: FailReason::Busy,
                    });
                }
            }
            Command::Leave { id } => self.leave(now, id),
        }
    }

    fn can_start(&mut self, id: u64, start: Option<SocketAddr>) -> bool {
        if start.is_none() && !self.is_member() {
            self.emit(Event::Failed {
                id,
                reason: FailReason::NotMember,
            });
            return false;
        }
        if self.lookups.len() + self.ops.len() >= MAX_OPS {
            self.emit(Event::Failed {
                id,
                reason: FailReason::Busy,
            });
            return false;
        }
        true
    }

    fn start_op(
        &mut self,
        now: Instant,
        id: u64,
        kind: OpKind,
        key: Vec<u8>,
        value: Vec<u8>,
        start: Option<SocketAddr>,
    ) {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            self.emit(Event::Failed {
                id,
                reason: FailReason::TooLarge,
            });
            return;
        }
        if !self.can_start(id, start) {
            return;
        }
        let op_id = self.local_id();
        // Keys are hashed with the full SHA-1; whoever evaluates a step reduces it mod 2^m,
        // so a client need not know m.
        let kid = if self.cfg.member {
            key_id(self.cfg.ring, &key)
        } else {
            Id::hash(&key)
        };
        self.ops.insert(
            op_id,
            Op {
                cmd: id,
                kind,
                key,
                value,
                targets: VecDeque::new(),
            },
        );
        self.start_lookup(now, Why::Op(op_id), kid, start);
    }

    fn leave(&mut self, now: Instant, id: u64) {
        if !self.is_member() {
            self.emit(Event::Failed {
                id,
                reason: FailReason::NotMember,
            });
            return;
        }
        let me = self.me;
        let pred = self.pred;
        let succs = self.succs.clone();
        let succ = self.successor().filter(|s| s.id != me.id);
        for n in pred.iter().chain(succ.iter()) {
            if n.id != me.id {
                self.send_oneway(
                    n.addr,
                    Body::Leaving {
                        me,
                        pred,
                        succs: succs.clone(),
                    },
                );
            }
        }
        self.left = true;
        self.timers = [None; 4];
        // Hand every key to the successor; done when it acknowledges (or stops answering).
        let items = self.all_items(now);
        match succ {
            Some(s) if !items.is_empty() => {
                let batches = batch_items(items);
                let mut sent = 0;
                for b in batches {
                    if self.request(
                        now,
                        s.addr,
                        Body::Transfer { items: b },
                        Purpose::LeaveTransfer(id),
                    ) {
                        sent += 1;
                    }
                }
                if sent == 0 {
                    self.emit(Event::Left { id });
                }
            }
            _ => self.emit(Event::Left { id }),
        }
    }

    // ----- iterative lookups -------------------------------------------------------------

    fn start_lookup(&mut self, now: Instant, why: Why, key: Id, start: Option<SocketAddr>) {
        let lid = self.local_id();
        let mut lk = Lookup {
            why,
            key,
            route: Vec::new(),
            current: None,
            alternates: Vec::new(),
            timeouts: 0,
            finals: Vec::new(),
            from: None,
            ring: self.cfg.ring,
            dead: Vec::new(),
            fallbacks: 0,
        };
        match start {
            Some(addr) => {
                lk.current = Some(addr);
                self.lookups.insert(lid, lk);
                self.ask_step(now, lid);
            }
            None => {
                // The first step is evaluated here, without a message.
                lk.route.push(self.me.id);
                let (done, nodes) = self.step(&key);
                self.lookups.insert(lid, lk);
                self.step_result(now, lid, self.me, 0, done, nodes);
            }
        }
    }

    fn ask_step(&mut self, now: Instant, lid: u64) {
        let Some(lk) = self.lookups.get(&lid) else {
            return;
        };
        let (Some(to), key) = (lk.current, lk.key) else {
            return;
        };
        if to == self.me.addr && self.is_member() {
            // Our own entry came back as a candidate: evaluate locally.
            let (done, nodes) = self.step(&key);
            if let Some(lk) = self.lookups.get_mut(&lid) {
                lk.route.push(self.me.id);
            }
            self.step_result(now, lid, self.me, 0, done, nodes);
            return;
        }
        if !self.request(now, to, Body::FindStep { key }, Purpose::Step(lid)) {
            self.finish_lookup_failed(now, lid, FailReason::Busy);
        }
    }

    /// A step's answer from `from` (whose ring has `bits` bits; 0 means ours).
    fn step_result(
        &mut self,
        now: Instant,
        lid: u64,
        from: NodeRef,
        bits: u8,
        done: bool,
        nodes: Vec<NodeRef>,
    ) {
        // A client learns m from the answers; a member uses its own ring.
        let ring = if self.cfg.member || bits == 0 {
            self.cfg.ring
        } else {
            Ring::new(u32::from(bits)).unwrap_or(self.cfg.ring)
        };
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        lk.ring = ring;
        lk.key = ring.reduce(&lk.key);
        if lk.route.last() != Some(&from.id) {
            lk.route.push(from.id);
        }
        if done {
            lk.finals = nodes;
            self.verify_next(now, lid);
            return;
        }
        if lk.route.len() > MAX_PATH {
            self.finish_lookup_failed(now, lid, FailReason::TooManyHops);
            return;
        }
        // Only candidates strictly closer to the key than `from` make progress.
        let key = lk.key;
        let dist_from = ring.clockwise(&from.id, &key);
        let mut c: Vec<NodeRef> = nodes
            .into_iter()
            .filter(|n| ring.clockwise(&n.id, &key) < dist_from)
            .collect();
        if c.is_empty() {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            return;
        }
        let next = c.remove(0);
        lk.current = Some(next.addr);
        lk.alternates = c;
        lk.from = Some(from);
        self.ask_step(now, lid);
    }

    /// Every next hop `from` offered is dead: fall back on `from`'s successor list. Its
    /// first live entry either still precedes the key (continue there) or is the key's
    /// successor.
    fn fallback(&mut self, now: Instant, lid: u64) {
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        let Some(from) = lk.from else {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            return;
        };
        lk.fallbacks += 1;
        if lk.fallbacks > 3 {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            return;
        }
        if from.addr == self.me.addr && self.is_member() {
            let succs = self.succs.clone();
            self.fallback_succs(now, lid, from, succs);
        } else if !self.request(now, from.addr, Body::GetNeighbors, Purpose::Fallback(lid)) {
            self.finish_lookup_failed(now, lid, FailReason::Busy);
        }
    }

    fn fallback_succs(&mut self, now: Instant, lid: u64, from: NodeRef, succs: Vec<NodeRef>) {
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        let live: Vec<NodeRef> = succs
            .into_iter()
            .filter(|s| !lk.dead.contains(&s.addr) && s.id != from.id)
            .collect();
        let key = lk.key;
        let before: Vec<NodeRef> = live
            .iter()
            .filter(|s| s.id.in_open(&from.id, &key))
            .copied()
            .collect();
        if let Some((closest, rest)) = before.split_last() {
            lk.current = Some(closest.addr);
            lk.alternates = rest.iter().rev().copied().collect();
            self.ask_step(now, lid);
        } else if live.is_empty() {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
        } else {
            lk.finals = live;
            self.verify_next(now, lid);
        }
    }

    /// The key's successor as its predecessor sees it may have died unnoticed: check that
    /// it answers, falling back along the predecessor's successor list.
    fn verify_next(&mut self, now: Instant, lid: u64) {
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        let dead = std::mem::take(&mut lk.dead);
        lk.finals.retain(|f| !dead.contains(&f.addr));
        lk.dead = dead;
        let Some(first) = lk.finals.first().copied() else {
            self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            return;
        };
        let answered_just_now = lk.route.last() == Some(&first.id);
        if (first.addr == self.me.addr && self.is_member()) || answered_just_now {
            self.verified(now, lid);
            return;
        }
        if !self.request(now, first.addr, Body::Ping, Purpose::Verify(lid)) {
            self.finish_lookup_failed(now, lid, FailReason::Busy);
        }
    }

    fn verified(&mut self, now: Instant, lid: u64) {
        let Some(lk) = self.lookups.remove(&lid) else {
            return;
        };
        match lk.finals.first().copied() {
            Some(resp) => {
                let finals = lk.finals.clone();
                self.lookup_done(now, lk, resp, finals);
            }
            None => self.fail_why(now, lk.why, FailReason::Unreachable),
        }
    }

    fn verify_timed_out(&mut self, now: Instant, lid: u64, dead: SocketAddr) {
        self.forget(dead);
        if let Some(lk) = self.lookups.get_mut(&lid) {
            lk.timeouts += 1;
            if lk.dead.len() < MAX_PATH {
                lk.dead.push(dead);
            }
            if !lk.finals.is_empty() {
                lk.finals.remove(0);
            }
        }
        self.verify_next(now, lid);
    }

    fn step_timed_out(&mut self, now: Instant, lid: u64, dead: SocketAddr) {
        self.forget(dead);
        let Some(lk) = self.lookups.get_mut(&lid) else {
            return;
        };
        lk.timeouts += 1;
        if lk.dead.len() < MAX_PATH {
            lk.dead.push(dead);
        }
        if lk.alternates.is_empty() {
            self.fallback(now, lid);
            return;
        }
        let next = lk.alternates.remove(0);
        lk.current = Some(next.addr);
        self.ask_step(now, lid);
    }

    fn finish_lookup_failed(&mut self, now: Instant, lid: u64, reason: FailReason) {
        if let Some(lk) = self.lookups.remove(&lid) {
            self.fail_why(now, lk.why, reason);
        }
    }

    fn fail_why(&mut self, _now: Instant, why: Why, reason: FailReason) {
        match why {
            Why::User(id) => self.emit(Event::Failed { id, reason }),
            Why::Join(id) => self.emit(Event::Failed { id, reason }),
            Why::Fix(_) => self.fix_in_flight = false,
            Why::Op(op) => {
                if let Some(op) = self.ops.remove(&op) {
                    self.emit(Event::Failed { id: op.cmd, reason });
                }
            }
        }
    }

    fn lookup_done(&mut self, now: Instant, lk: Lookup, resp: NodeRef, succs: Vec<NodeRef>) {
        match lk.why {
            Why::User(id) => self.emit(Event::LookupDone {
                id,
                key: lk.key,
                route: lk.route,
                responsible: resp,
                timeouts: lk.timeouts,
            }),
            Why::Join(id) => {
                if resp.id == self.me.id {
                    self.emit(Event::Failed {
                        id,
                        reason: FailReason::IdTaken,
                    });
                    return;
                }
                self.pred = None;
                self.set_successor_list(resp, &succs[1.min(succs.len())..]);
                self.start_member(now);
                // The lecture's shortcut: start from a copy of the successor's fingers.
                self.request(now, resp.addr, Body::GetFingers, Purpose::JoinFingers(id));
                self.emit(Event::Joined {
                    id,
                    successor: resp,
                });
                // Stabilize right away rather than after a period.
                self.timers[Timer::Stabilize as usize] = Some(now);
            }
            Why::Fix(i) => {
                self.fix_in_flight = false;
                self.set_finger_from(i, resp);
            }
            Why::Op(op_id) => {
                let Some(op) = self.ops.get_mut(&op_id) else {
                    return;
                };
                op.targets = succs
                    .into_iter()
                    .take(self.cfg.succ_list_len.max(1))
                    .collect();
                self.op_next(now, op_id);
            }
        }
    }

    /// Sets finger `i` and every later finger whose start also falls in `(me, node]` (their
    /// successor is the same node), and moves the round-robin cursor past them.
    fn set_finger_from(&mut self, i: usize, node: NodeRef) {
        let ring = self.cfg.ring;
        let me = self.me.id;
        let m = self.fingers.len();
        let mut j = i;
        loop {
            if let Some(f) = self.fingers.get_mut(j) {
                *f = Some(node);
            }
            j += 1;
            if j >= m || node.id == me {
                break;
            }
            let start = ring.add_pow2(&me, j as u32);
            if !start.in_half_open(&me, &node.id) {
                break;
            }
        }
        self.next_finger = if j >= m { 1 } else { j };
        if i == 0 {
            self.sync_finger0();
        }
    }

    // ----- recursive lookups -------------------------------------------------------------

    fn start_recursive(&mut self, now: Instant, id: u64, key: Id) {
        let (done, nodes) = self.step(&key);
        if done {
            if let Some(r) = nodes.first() {
                self.emit(Event::LookupDone {
                    id,
                    key,
                    route: vec![self.me.id],
                    responsible: *r,
                    timeouts: 0,
                });
                return;
            }
        }
        let Some(next) = nodes.first().copied() else {
            self.emit(Event::Failed {
                id,
                reason: FailReason::Unreachable,
            });
            return;
        };
        let body = Body::FindRec {
            key,
            origin: self.me.addr,
            path: vec![self.me.id],
        };
        // The whole query is retried end to end; hop-by-hop losses show up as a timeout.
        if !self.request(now, next.addr, body, Purpose::Rec(id)) {
            self.emit(Event::Failed {
                id,
                reason: FailReason::Busy,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_find_rec(
        &mut self,
        now: Instant,
        from: SocketAddr,
        request: &[u8],
        txid: u64,
        key: Id,
        origin: SocketAddr,
        mut path: Vec<Id>,
    ) {
        let key = self.cfg.ring.reduce(&key);
        path.push(self.me.id);
        let (done, nodes) = self.step(&key);
        if done {
            let body = Body::RecDone { path, succs: nodes };
            if origin == from {
                self.answer(now, from, txid, body, request);
            } else if self.is_verified(now, origin) {
                // Only to an origin that proved it receives at its address: a FindRec
                // naming someone else's address draws nothing but a 13-byte Ping.
                self.reply(origin, txid, body);
            } else {
                self.challenge(now, origin, from, request);
            }
            return;
        }
        if path.len() >= MAX_PATH {
            return; // a loop through stale tables: the originator times out
        }
        if let Some(next) = nodes.first() {
            let msg = Message {
                bits: self.bits_byte(),
                txid,
                body: Body::FindRec { key, origin, path },
            };
            self.send_raw(next.addr, msg.encode());
        }
    }

    // ----- key-value operations ----------------------------------------------------------

    fn op_next(&mut self, now: Instant, op_id: u64) {
        let Some(op) = self.ops.get_mut(&op_id) else {
            return;
        };
        let Some(t) = op.targets.pop_front() else {
            let op = self.ops.remove(&op_id);
            if let Some(op) = op {
                match op.kind {
                    OpKind::Get => self.emit(Event::Got {
                        id: op.cmd,
                        value: None,
                        node: self.me,
                    }),
                    _ => self.emit(Event::Failed {
                        id: op.cmd,
                        reason: FailReason::Unreachable,
                    }),
                }
            }
            return;
        };
        let body = match op.kind {
            OpKind::Put => Body::Put {
                key: op.key.clone(),
                value: op.value.clone(),
            },
            OpKind::Get => Body::Get {
                key: op.key.clone(),
            },
            OpKind::Delete => Body::Delete {
                key: op.key.clone(),
                propagate: true,
            },
        };
        if t.addr == self.me.addr && self.is_member() {
            let resp = self.serve(now, body);
            self.op_response(now, op_id, resp);
        } else if !self.request(now, t.addr, body, Purpose::OpRequest(op_id)) {
            if let Some(op) = self.ops.remove(&op_id) {
                self.emit(Event::Failed {
                    id: op.cmd,
                    reason: FailReason::Busy,
                });
            }
        }
    }

    fn op_response(&mut self, now: Instant, op_id: u64, body: Option<Body>) {
        let Some(op) = self.ops.get(&op_id) else {
            return;
        };
        let cmd = op.cmd;
        match body {
            Some(Body::PutAck { me, stored }) => {
                self.ops.remove(&op_id);
                if stored {
                    self.emit(Event::Stored { id: cmd, node: me });
                } else {
                    self.emit(Event::Failed {
                        id: cmd,
                        reason: FailReason::Refused,
                    });
                }
            }
            Some(Body::Value { me, value }) => {
                if value.is_none() && !op.targets.is_empty() {
                    // A replica may have it (the primary may be new to the range).
                    self.op_next(now, op_id);
                } else {
                    self.ops.remove(&op_id);
                    self.emit(Event::Got {
                        id: cmd,
                        value,
                        node: me,
                    });
                }
            }
            Some(Body::Deleted { existed, .. }) => {
                self.ops.remove(&op_id);
                self.emit(Event::Deleted { id: cmd, existed });
            }
            _ => self.op_next(now, op_id),
        }
    }

    /// Answers a key-value request locally (also used when we are the target ourselves).
    fn serve(&mut self, now: Instant, body: Body) -> Option<Body> {
        let ring = self.cfg.ring;
        match body {
            Body::Put { key, value } => {
                let k = (key_id(ring, &key), key);
                let version = self.next_version(now, &k);
                let stored = self.store_item(now, k.clone(), value.clone(), version);
                if stored {
                    self.tombs.remove(&k);
                    let item = Item {
                        key: k.1,
                        version,
                        value: Some(value),
                    };
                    self.replicate_items(now, vec![item]);
                }
                Some(Body::PutAck {
                    me: self.me,
                    stored,
                })
            }
            Body::Get { key } => {
                let kid = key_id(ring, &key);
                Some(Body::Value {
                    me: self.me,
                    value: self.store.get(&(kid, key)).map(|s| s.value.clone()),
                })
            }
            Body::Delete { key, propagate } => {
                // A tombstone one version above what we knew; the replicas get it as an
                // acknowledged (resent) Transfer, and again every replication period while
                // it lives, so one that missed it catches up.
                let k = (key_id(ring, &key), key);
                let version = self.next_version(now, &k);
                let existed = self.remove_item(&k);
                self.add_tomb(now, k.clone(), version);
                if propagate {
                    let item = Item {
                        key: k.1,
                        version,
                        value: None,
                    };
                    self.replicate_items(now, vec![item]);
                }
                Some(Body::Deleted {
                    me: self.me,
                    existed,
                })
            }
            _ => None,
        }
    }

    fn store_item(&mut self, now: Instant, k: StoreKey, value: Vec<u8>, version: u64) -> bool {
        let add = k.1.len() + value.len();
        let old = self.store.get(&k).map(|v| k.1.len() + v.value.len());
        let after = self.store_bytes.saturating_sub(old.unwrap_or(0)) + add;
        if (old.is_none() && self.store.len() >= self.cfg.max_store)
            || after > self.cfg.max_store_bytes
        {
            return false;
        }
        let s = Stored {
            value,
            version,
            refreshed: now,
        };
        self.store.insert(k, s);
        self.store_bytes = after;
        true
    }

    fn remove_item(&mut self, k: &StoreKey) -> bool {
        match self.store.remove(k) {
            Some(v) => {
                self.store_bytes = self.store_bytes.saturating_sub(k.1.len() + v.value.len());
                true
            }
            None => false,
        }
    }

    /// The version of a live tombstone for `k`.
    fn tomb_version(&self, now: Instant, k: &StoreKey) -> Option<u64> {
        self.tombs
            .get(k)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| *v)
    }

    /// One more than the highest version we know for `k` (value or tombstone).
    fn next_version(&self, now: Instant, k: &StoreKey) -> u64 {
        let v = self.store.get(k).map_or(0, |s| s.version);
        v.max(self.tomb_version(now, k).unwrap_or(0))
            .saturating_add(1)
    }

    fn add_tomb(&mut self, now: Instant, k: StoreKey, version: u64) {
        let exp = now + self.cfg.tombstone_ttl;
        self.tombs.insert(k.clone(), (version, exp));
        self.tomb_order.push_back((exp, k));
        self.prune_tombs(now);
    }

    /// Drops expired tombstones, and the oldest ones beyond `max_tombstones`.
    fn prune_tombs(&mut self, now: Instant) {
        let max = self.cfg.max_tombstones;
        while let Some((exp, _)) = self.tomb_order.front() {
            let over = self.tombs.len() > max || self.tomb_order.len() > 2 * max.max(1);
            if *exp > now && !over {
                break;
            }
            if let Some((exp, k)) = self.tomb_order.pop_front() {
                // A later delete of the same key re-queued it with a later expiry.
                if self.tombs.get(&k).is_some_and(|(_, e)| *e == exp) {
                    self.tombs.remove(&k);
                }
            }
        }
    }

    /// Takes a pushed item (replication, hand-over, delete) unless we know a newer version:
    /// a value loses to a tombstone of the same or a later version, so a copy that missed a
    /// delete cannot bring the key back while the tombstone lives.
    fn apply_item(&mut self, now: Instant, item: Item) {
        let k = (key_id(self.cfg.ring, &item.key), item.key);
        let have = self.store.get(&k).map(|s| s.version);
        let tomb = self.tomb_version(now, &k);
        match item.value {
            Some(v) => {
                if tomb.is_some_and(|t| item.version <= t) {
                    return;
                }
                match have {
                    Some(h) if item.version < h => {}
                    Some(h) if item.version == h => {
                        if let Some(s) = self.store.get_mut(&k) {
                            s.refreshed = now; // the responsible node still wants our copy
                        }
                    }
                    _ => {
                        if self.store_item(now, k.clone(), v, item.version) {
                            self.tombs.remove(&k);
                        }
                    }
                }
            }
            None => {
                if have.is_some_and(|h| h > item.version) {
                    return; // put again after that delete
                }
                self.remove_item(&k);
                if tomb.is_none_or(|t| t < item.version) {
                    self.add_tomb(now, k, item.version);
                }
            }
        }
    }

    /// Sends copies to the r − 1 successors.
    fn replicate_items(&mut self, now: Instant, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let me = self.me.id;
        let reps: Vec<NodeRef> = self
            .succs
            .iter()
            .filter(|s| s.id != me)
            .take(self.cfg.succ_list_len.saturating_sub(1))
            .copied()
            .collect();
        let batches = batch_items(items);
        for r in reps {
            for b in &batches {
                self.request(
                    now,
                    r.addr,
                    Body::Transfer { items: b.clone() },
                    Purpose::Transfer,
                );
            }
        }
    }

    /// Pairs and live tombstones whose key lies in `(from, to]`.
    fn items_in(&self, now: Instant, from: &Id, to: &Id) -> Vec<Item> {
        self.items_where(now, |kid| kid.in_half_open(from, to))
    }

    /// Every pair and live tombstone.
    fn all_items(&self, now: Instant) -> Vec<Item> {
        self.items_where(now, |_| true)
    }

    fn items_where(&self, now: Instant, keep: impl Fn(&Id) -> bool) -> Vec<Item> {
        let values = self
            .store
            .iter()
            .filter(|((kid, _), _)| keep(kid))
            .map(|((_, k), s)| Item {
                key: k.clone(),
                version: s.version,
                value: Some(s.value.clone()),
            });
        let tombs = self
            .tombs
            .iter()
            .filter(|((kid, _), (_, exp))| keep(kid) && *exp > now)
            .map(|((_, k), (version, _))| Item {
                key: k.clone(),
                version: *version,
                value: None,
            });
        values.chain(tombs).collect()
    }

    // ----- maintenance -------------------------------------------------------------------

    fn stabilize(&mut self, now: Instant) {
        let Some(s) = self.successor() else {
            return;
        };
        if s.id == self.me.id {
            // Alone (or we think so): our predecessor, if any, is our successor.
            if let Some(p) = self.pred.filter(|p| p.id != self.me.id) {
                self.set_successor_list(p, &[]);
                self.send_oneway(p.addr, Body::Notify { me: self.me });
            }
            return;
        }
        if self.stabilize_in_flight {
            return;
        }
        if self.request(now, s.addr, Body::GetNeighbors, Purpose::Stabilize) {
            self.stabilize_in_flight = true;
        }
    }

    fn on_stabilize_reply(&mut self, s: NodeRef, pred: Option<NodeRef>, succs: Vec<NodeRef>) {
        self.stabilize_in_flight = false;
        if self.successor().map(|x| x.addr) != Some(s.addr) {
            return;
        }
        let me = self.me;
        match pred {
            Some(x) if x.id.in_open(&me.id, &s.id) && x.id != me.id => {
                // Someone joined between us and our successor: it is our successor now.
                let mut rest = vec![s];
                rest.extend(succs);
                self.set_successor_list(x, &rest);
            }
            _ => self.set_successor_list(s, &succs),
        }
        if let Some(s) = self.successor().filter(|s| s.id != me.id) {
            self.send_oneway(s.addr, Body::Notify { me });
        }
    }

    fn on_notify(&mut self, now: Instant, n: NodeRef) {
        if !self.is_member() || n.id == self.me.id {
            return;
        }
        let old = self.pred;
        let take = match old {
            None => true,
            Some(p) => n.id.in_open(&p.id, &self.me.id),
        };
        if !take {
            return;
        }
        self.pred = Some(n);
        // Keys now in (old predecessor, n] belong to n: hand them over (we keep copies,
        // being n's successor makes us its first replica).
        let from = old.map(|p| p.id).unwrap_or(self.me.id);
        let items = self.items_in(now, &from, &n.id);
        if !items.is_empty() {
            for b in batch_items(items) {
                self.request(now, n.addr, Body::Transfer { items: b }, Purpose::Transfer);
            }
        }
        if self.successor().is_some_and(|s| s.id == self.me.id) {
            // We were alone: the newcomer is also our successor.
            self.set_successor_list(n, &[]);
        }
    }

    fn on_leaving(&mut self, who: NodeRef, pred: Option<NodeRef>, succs: Vec<NodeRef>) {
        if self.pred.is_some_and(|p| p.id == who.id) {
            self.pred = pred.filter(|p| p.id != self.me.id);
        }
        if self.successor().is_some_and(|s| s.id == who.id) {
            let rest: Vec<NodeRef> = succs.into_iter().filter(|s| s.id != who.id).collect();
            match rest.first().copied() {
                Some(first) if first.id != self.me.id => {
                    self.set_successor_list(first, rest.get(1..).unwrap_or(&[]))
                }
                _ => {
                    self.succs.retain(|s| s.id != who.id);
                    if self.succs.is_empty() {
                        self.succs.push(self.me);
                    }
                    self.sync_finger0();
                }
            }
        }
        self.forget(who.addr);
    }

    fn fix_fingers(&mut self, now: Instant) {
        if self.fix_in_flight || self.fingers.len() < 2 {
            return;
        }
        let i = self.next_finger.clamp(1, self.fingers.len() - 1);
        let start = self.finger_start(i as u32);
        self.fix_in_flight = true;
        self.start_lookup(now, Why::Fix(i), start, None);
    }

    fn check_predecessor(&mut self, now: Instant) {
        if let Some(p) = self.pred {
            self.request(now, p.addr, Body::Ping, Purpose::CheckPred);
        }
    }

    /// Pushes our primary range (values and tombstones) to the r − 1 next successors, and
    /// drops copies outside it that their responsible node stopped pushing to us.
    fn replicate(&mut self, now: Instant) {
        self.prune_tombs(now);
        let Some(p) = self.pred else {
            return; // without a predecessor we cannot tell our range: drop nothing
        };
        let me = self.me.id;
        let lease = self
            .cfg
            .replicate_every
            .saturating_mul(self.cfg.replica_lease_periods.max(1));
        let stale: Vec<StoreKey> = self
            .store
            .iter()
            .filter(|((kid, _), s)| !kid.in_half_open(&p.id, &me) && s.refreshed + lease <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            self.remove_item(k);
        }
        let items = self.items_in(now, &p.id, &me);
        self.replicate_items(now, items);
    }

    // ----- datagrams ---------------------------------------------------------------------

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.datagrams_in += 1;
        if data.len() > self.cfg.max_datagram {
            let n = data.len();
            self.dropped(now, from, DropReason::Oversized, &format_args!("{n} bytes"));
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                // hostile or garbled: dropped, never answered
                self.dropped(now, from, DropReason::Malformed, &e);
                return;
            }
        };
        if msg.body.is_response() {
            self.response(now, from, msg);
            return;
        }
        if self.cfg.member && !self.allow(now, from.ip()) {
            let kind = msg.body.kind();
            self.dropped(
                now,
                from,
                DropReason::RateLimited,
                &format_args!("request type 0x{kind:02x}"),
            );
            return;
        }
        if msg.body == Body::Ping && !self.left {
            // Clients and joining nodes answer too: it is how they pass a challenge.
            self.reply(from, msg.txid, Body::Pong { me: self.me });
            return;
        }
        if !self.is_member() {
            return;
        }
        let bits = u32::from(msg.bits);
        if bits != 0 && bits != self.cfg.ring.bits() {
            // Another ring's node: say so (a joining node then reports both sizes
            // instead of timing out). One-way messages get no answer.
            self.stats.wrong_ring += 1;
            tracing::info!(%from, theirs = bits, ours = self.cfg.ring.bits(), "chord: request from a ring of another size");
            if !matches!(msg.body, Body::Notify { .. } | Body::Leaving { .. }) {
                self.reply(
                    from,
                    msg.txid,
                    Body::Error {
                        code: ErrorCode::WrongRing,
                    },
                );
            }
            return;
        }
        let txid = msg.txid;
        self.stats.requests_in += 1;
        match msg.body {
            Body::GetNeighbors => {
                let body = Body::Neighbors {
                    me: self.me,
                    pred: self.pred,
                    succs: self.succs.clone(),
                };
                self.answer(now, from, txid, body, data);
            }
            Body::Notify { me } => self.on_notify(now, me),
            Body::FindStep { key } => {
                let key = self.cfg.ring.reduce(&key);
                let (done, nodes) = self.step(&key);
                let body = Body::StepReply {
                    me: self.me,
                    done,
                    nodes,
                };
                self.answer(now, from, txid, body, data);
            }
            Body::FindRec { key, origin, path } => {
                self.on_find_rec(now, from, data, txid, key, origin, path)
            }
            Body::GetStats => {
                let body = Body::Stats {
                    me: self.me,
                    pred: self.pred,
                    values: self.stat_values(),
                };
                self.answer(now, from, txid, body, data);
            }
            Body::GetFingers => {
                let body = Body::Fingers {
                    me: self.me,
                    bits: self.cfg.ring.bits() as u8,
                    entries: self.fingers.clone(),
                };
                self.answer(now, from, txid, body, data);
            }
            b @ (Body::Put { .. } | Body::Get { .. } | Body::Delete { .. }) => {
                let propagate_false = matches!(
                    b,
                    Body::Delete {
                        propagate: false,
                        ..
                    }
                );
                // Put and Delete answers (41 bytes) always fit the unverified budget of
                // their requests, so `answer` never holds (and replays) a mutation.
                if let Some(r) = self.serve(now, b) {
                    if !propagate_false {
                        self.answer(now, from, txid, r, data);
                    }
                }
            }
            Body::Transfer { items } => {
                for item in items {
                    self.apply_item(now, item);
                }
                self.reply(from, txid, Body::TransferAck);
            }
            Body::Leaving { me, pred, succs } => self.on_leaving(me, pred, succs),
            _ => {}
        }
    }

    fn response(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        let Some(rpc) = self.pending.remove(&msg.txid) else {
            return;
        };
        let bits = msg.bits;
        self.deadlines.remove(&(rpc.deadline, msg.txid));
        // Matched by transaction id (a recursive answer comes from afar, `from`): whoever
        // echoed our random id received our request at `rpc.to`.
        let _ = from;
        self.mark_verified(now, rpc.to);
        match (rpc.purpose, msg.body) {
            (purpose, Body::Error { code }) => {
                let reason = match code {
                    ErrorCode::WrongRing => FailReason::WrongRing {
                        ours: self.cfg.ring.bits() as u8,
                        theirs: bits,
                    },
                    ErrorCode::RateLimited => FailReason::RateLimited,
                    ErrorCode::Other(_) => FailReason::Unreachable,
                };
                self.refused(now, purpose, reason);
            }
            (Purpose::Challenge(addr), Body::Pong { .. }) => {
                for (src, req) in self.held.remove(&addr).unwrap_or_default() {
                    self.datagram(now, src, &req);
                }
            }
            (Purpose::Step(lid), Body::StepReply { me, done, nodes }) => {
                self.step_result(now, lid, me, bits, done, nodes)
            }
            (Purpose::Rec(id), Body::RecDone { path, succs }) => match succs.first() {
                Some(r) => {
                    self.emit(Event::LookupDone {
                        id,
                        key: self.rec_key(&rpc.data),
                        route: path,
                        responsible: *r,
                        timeouts: 0,
                    });
                }
                None => self.emit(Event::Failed {
                    id,
                    reason: FailReason::Unreachable,
                }),
            },
            (Purpose::Stabilize, Body::Neighbors { me, pred, succs }) => {
                self.on_stabilize_reply(me, pred, succs)
            }
            (Purpose::CheckPred, Body::Pong { .. }) => {}
            (Purpose::Verify(lid), Body::Pong { .. }) => self.verified(now, lid),
            (Purpose::Fallback(lid), Body::Neighbors { me, succs, .. }) => {
                self.fallback_succs(now, lid, me, succs)
            }
            (Purpose::JoinFingers(_), Body::Fingers { entries, .. }) => {
                // Copy the successor's fingers where we have none; fix_fingers corrects them.
                let me = self.me.id;
                for (mine, theirs) in self.fingers.iter_mut().zip(entries).skip(1) {
                    if mine.is_none() {
                        *mine = theirs.filter(|t| t.id != me);
                    }
                }
            }
            (Purpose::OpRequest(op), body) => self.op_response(now, op, Some(body)),
            (Purpose::RemoteStats(id), Body::Stats { me, pred, values }) => {
                self.emit(Event::StatsReport {
                    id,
                    node: me,
                    bits,
                    pred,
                    values,
                })
            }
            (Purpose::RemoteFingers(id), Body::Fingers { me, bits, entries }) => {
                self.emit(Event::FingerTable {
                    id,
                    node: me,
                    bits,
                    entries,
                })
            }
            (Purpose::RemoteNeighbors(id), Body::Neighbors { me, pred, succs }) => {
                self.emit(Event::NeighborList {
                    id,
                    node: me,
                    pred,
                    succs,
                })
            }
            (Purpose::Transfer, Body::TransferAck) => {}
            (Purpose::LeaveTransfer(id), Body::TransferAck) => self.leave_transfer_done(id),
            _ => {}
        }
    }

    /// A peer answered one of our requests with an error: the request's purpose fails
    /// with `reason` (maintenance simply stops waiting).
    fn refused(&mut self, now: Instant, purpose: Purpose, reason: FailReason) {
        match purpose {
            Purpose::Step(lid) | Purpose::Verify(lid) | Purpose::Fallback(lid) => {
                self.finish_lookup_failed(now, lid, reason)
            }
            Purpose::Rec(id)
            | Purpose::RemoteFingers(id)
            | Purpose::RemoteStats(id)
            | Purpose::RemoteNeighbors(id) => self.emit(Event::Failed { id, reason }),
            Purpose::OpRequest(op) => {
                if let Some(op) = self.ops.remove(&op) {
                    self.emit(Event::Failed { id: op.cmd, reason });
                }
            }
            Purpose::Stabilize => self.stabilize_in_flight = false,
            Purpose::LeaveTransfer(id) => self.leave_transfer_done(id),
            Purpose::Challenge(addr) => {
                self.held.remove(&addr);
            }
            Purpose::CheckPred | Purpose::JoinFingers(_) | Purpose::Transfer => {}
        }
    }

    fn rec_key(&self, data: &[u8]) -> Id {
        match Message::decode(data) {
            Ok(Message {
                body: Body::FindRec { key, .. },
                ..
            }) => key,
            _ => Id::ZERO,
        }
    }

    fn leave_transfer_done(&mut self, id: u64) {
        let more = self
            .pending
            .values()
            .any(|r| r.purpose == Purpose::LeaveTransfer(id));
        if !more {
            self.emit(Event::Left { id });
        }
    }

    fn rpc_timeout(&mut self, now: Instant, txid: u64) {
        let Some(mut rpc) = self.pending.remove(&txid) else {
            return;
        };
        if rpc.tries_left > 0 {
            rpc.tries_left -= 1;
            rpc.deadline = now + self.cfg.rpc_timeout;
            self.send_raw(rpc.to, rpc.data.clone());
            self.deadlines.insert((rpc.deadline, txid));
            self.pending.insert(txid, rpc);
            return;
        }
        let dead = rpc.to;
        match rpc.purpose {
            Purpose::Step(lid) => self.step_timed_out(now, lid, dead),
            Purpose::Verify(lid) => self.verify_timed_out(now, lid, dead),
            Purpose::Fallback(lid) => {
                self.forget(dead);
                self.finish_lookup_failed(now, lid, FailReason::Unreachable);
            }
            Purpose::Rec(id) => {
                self.forget(dead);
                self.emit(Event::Failed {
                    id,
                    reason: FailReason::Unreachable,
                });
            }
            Purpose::Stabilize => {
                self.stabilize_in_flight = false;
                self.forget(dead);
            }
            Purpose::CheckPred | Purpose::Transfer | Purpose::JoinFingers(_) => self.forget(dead),
            Purpose::OpRequest(op) => {
                self.forget(dead);
                self.op_next(now, op);
            }
            Purpose::RemoteFingers(id)
            | Purpose::RemoteStats(id)
            | Purpose::RemoteNeighbors(id) => self.emit(Event::Failed {
                id,
                reason: FailReason::Unreachable,
            }),
            Purpose::LeaveTransfer(id) => self.leave_transfer_done(id),
            Purpose::Challenge(addr) => {
                self.held.remove(&addr);
            }
        }
    }

    fn timer_fired(&mut self, now: Instant, t: Timer) {
        let period = match t {
            Timer::Stabilize => self.cfg.stabilize_every,
            Timer::FixFingers => self.cfg.fix_fingers_every,
            Timer::CheckPred => self.cfg.check_pred_every,
            Timer::Replicate => self.cfg.replicate_every,
        };
        self.timers[t as usize] = Some(now + period);
        match t {
            Timer::Stabilize => self.stabilize(now),
            Timer::FixFingers => self.fix_fingers(now),
            Timer::CheckPred => self.check_predecessor(now),
            Timer::Replicate => self.replicate(now),
        }
    }
}

/// The largest reply we send to an unverified source for a request of `request_len` bytes.
pub fn unverified_budget(request_len: usize) -> usize {
    (AMPLIFICATION * request_len).max(MIN_UNVERIFIED_REPLY)
}

/// Splits items into batches that each fit in one datagram.
fn batch_items(items: Vec<Item>) -> Vec<Vec<Item>> {
    const BUDGET: usize = MAX_DATAGRAM - 64;
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0;
    for it in items {
        let n = 2 + it.key.len() + 8 + 1 + 2 + it.value.as_ref().map_or(0, Vec::len);
        if !cur.is_empty() && (size + n > BUDGET || cur.len() >= usize::from(u8::MAX)) {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += n;
        cur.push(it);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Core for ChordNode {
    type Command = Command;
    type Event = Event;

    fn handle_input(&mut self, now: Instant, input: Input<'_, Command>) {
        match input {
            Input::Command(c) => self.command(now, c),
            Input::Datagram { from, data } => self.datagram(now, from, data),
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        // Requests first (their outcomes feed maintenance), then the periodic timers.
        while let Some(&(at, txid)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            self.rpc_timeout(now, txid);
        }
        for t in TIMERS {
            if self.timers[t as usize].is_some_and(|at| at <= now) && !self.left {
                self.timer_fired(now, t);
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let rpc = self.deadlines.first().map(|(t, _)| *t);
        self.timers.iter().flatten().copied().chain(rpc).min()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;

    /// IPv6 source addresses whose octets, hashed as the limiter's `[u8; 16]` key is (the
    /// length 16, then the bytes), all have the same FxHash: what a peer owning a /64 could
    /// send against an unkeyed per-IP table.
    fn fx_colliding_sources(n: usize) -> Vec<[u8; 16]> {
        const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95; // servent_core's FxHasher
        let prefix = 16u64.wrapping_mul(FX_SEED).rotate_left(5);
        servent_core::keyed::fx_colliding_words(n, 0x00c0_ffee)
            .into_iter()
            .map(|mut w| {
                let a = u64::from_le_bytes(w[..8].try_into().unwrap()) ^ prefix;
                w[..8].copy_from_slice(&a.to_le_bytes());
                w
            })
            .collect()
    }

    #[test]
    fn fxhash_colliding_source_ips_spread_in_the_keyed_limiter() {
        let ips = fx_colliding_sources(20_000);
        let fx = std::hash::BuildHasherDefault::<servent_core::FxHasher>::default();
        let fx_hashes: std::collections::BTreeSet<u64> =
            ips.iter().map(|k| fx.hash_one(k)).collect();
        assert_eq!(
            fx_hashes.len(),
            1,
            "the attack is real under an unkeyed hash"
        );

        let ring = Ring::new(16).unwrap_or(Ring::FULL);
        let me = SocketAddr::from(([10, 0, 0, 1], 4000));
        let mut cfg = Config::new(ring, ring.id(1), me);
        cfg.max_tracked_ips = 100_000;
        let mut n = ChordNode::new(cfg, Rng::new(9));
        n.create(Instant::ZERO);
        let ping = Message {
            bits: 16,
            txid: 1,
            body: Body::Ping,
        }
        .encode();
        for k in &ips {
            let from = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(*k)), 6881);
            n.handle_input(Instant::ZERO, Input::Datagram { from, data: &ping });
            while n.poll_transmit().is_some() {}
        }
        assert_eq!(n.tracked_ips(), 20_000);
        assert_eq!(n.stats().requests_in, 0); // Pings are answered before any request
        // Counted, not timed: under the node's secret key every source hashes apart, so each
        // insert and lookup probes a chain of about one.
        let keyed: std::collections::BTreeSet<u64> = n
            .limiter
            .keys()
            .map(|k| n.limiter.hasher().hash_one(k))
            .collect();
        assert_eq!(keyed.len(), 20_000);
        // The same holds for the verified and held tables (keyed by peer addresses).
        let addrs: std::collections::BTreeSet<u64> = ips
            .iter()
            .map(|k| {
                n.verified
                    .hasher()
                    .hash_one(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(*k)), 1))
            })
            .collect();
        assert_eq!(addrs.len(), 20_000);
    }
}
