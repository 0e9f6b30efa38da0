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

use servent_core::{Core, FxMap, Id, Input, Instant, KeyedSet, KeyedState, Rng, Transmit};
use sha1::{Digest, Sha1};

use self::bep44::Item;
use self::table::{Inserted, RoutingTable};
use crate::wire::krpc::{self, Body, DecodeError, Message, NodeInfo, Query, Response};

mod answer;
pub mod bep42;
pub mod bep44;
mod config;
mod events;
mod lookup;
mod own_id;
mod storage;
pub mod table;

pub use config::Config;
pub use events::{Command, Event, LookupStats, MutableKey, NodeStats};

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
    /// Peers named by answers: addresses a remote chooses, so hashed under a secret key.
    peers: KeyedSet<SocketAddrV4>,
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
    /// The hash key of every set over peer-chosen addresses (drawn once from `rng`).
    keyed: KeyedState,
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
        let keyed = KeyedState::new(&mut rng);
        let budget = cfg_budget(&cfg);
        Dht {
            table: RoutingTable::new(id, cfg.k, Instant::ZERO),
            cfg,
            id,
            rng,
            keyed,
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

    /// A verification ping to `to` ended (answered or not).
    fn verified(&mut self, to: SocketAddrV4) {
        self.verifying = self.verifying.saturating_sub(1);
        self.verify_addrs.remove(&to);
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
