//! The Chord node: a sans-IO state machine (see the crate documentation for the run loop).
//!
//! This file holds the node's state, its configuration, commands and events, and the
//! dispatch of inputs; each sub-machine is a file of its own: `ring` maintenance
//! (join/stabilize/notify/fix_fingers/check_predecessor/leave), `lookup`
//! (find_successor, iterative and recursive), `store` (put/get/delete, replication),
//! `transactions` (requests, retries, amplification limits) and `limits` (per-IP rate,
//! drops and counters).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use servent_core::{Core, FxMap, Id, Input, Instant, KeyedMap, Ring, Rng, Transmit, keyed_map};

use crate::wire::{
    Body, ErrorCode, Item, MAX_DATAGRAM, MAX_KEY, MAX_NODES, MAX_PATH, MAX_VALUE, Message, NodeRef,
};

mod limits;
mod lookup;
mod ring;
mod store;
mod transactions;

use limits::{Bucket, DropReason};
pub use limits::{Limits, NodeStats};
use store::batch_items;
use transactions::rec_key;

/// Stabilization rounds a node that fell back to being alone keeps asking the successor it
/// lost (at the default 500 ms, five minutes).
const LOST_RETRIES: u32 = 600;

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
    /// Most source addresses remembered as verified (default and ceiling
    /// [`MAX_VERIFIED`]; the oldest is forgotten first, and a neighbour we keep talking to
    /// is verified again by its next answer).
    pub max_verified: usize,
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
            max_verified: MAX_VERIFIED,
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
    /// The cheap check of finger i: ask the finger for its predecessor.
    FixCheck(usize),
    RemoteNeighbors(u64),
    Transfer,
    LeaveTransfer(u64),
    /// A Ping to an unverified address whose requests we hold until it answers.
    Challenge(SocketAddr),
}

#[derive(Debug)]
struct Rpc {
    to: SocketAddr,
    /// The request, encoded again for a resend (retries are rare; keeping its bytes would
    /// cost a copy of every request).
    msg: Message,
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
    /// The successor we lost when we fell back to being alone, and how many more
    /// stabilization rounds we try it.
    lost: Option<(NodeRef, u32)>,
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
    /// The secret of stateless challenges (see `transactions::cookie`).
    cookie_key: servent_core::KeyedState,
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
            lost: None,
            stabilize_in_flight: false,
            verified: keyed_map(&mut rng),
            verified_order: VecDeque::new(),
            held: keyed_map(&mut rng),
            limiter: keyed_map(&mut rng),
            cookie_key: servent_core::KeyedState::new(&mut rng),
            limiter_prune_at: Instant::ZERO,
            stats: NodeStats::default(),
            drop_logged: [None; 3],
            me,
            rng,
            cfg,
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
            Body::GetPred => {
                let body = Body::Pred {
                    me: self.me,
                    pred: self.pred,
                };
                self.answer(now, from, txid, body, data);
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
            if matches!(msg.body, Body::Pong { .. }) && self.is_cookie(from, now, msg.txid) {
                self.mark_verified(now, from);
            }
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
                        key: rec_key(&rpc.msg),
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
            (Purpose::FixCheck(i), Body::Pred { me, pred }) => self.fix_checked(now, i, me, pred),
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
}

/// The largest reply we send to an unverified source for a request of `request_len` bytes.
pub fn unverified_budget(request_len: usize) -> usize {
    (AMPLIFICATION * request_len).max(MIN_UNVERIFIED_REPLY)
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
