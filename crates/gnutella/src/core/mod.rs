//! The Gnutella 0.4 and 0.6 servent core: handshakes, flood routing, reverse-path routing,
//! Push, and in 0.6 roles QRP and dynamic querying.
//!
//! [`Servent`] owns the connections and pumps one sub-machine per file: `links` (opening,
//! sniffing, handshakes, deflate, closing), `descriptors` (flood and reverse-path routing,
//! with the per-link allowance of `flood_control`), `query` and `dynamic_query` (QRP
//! routing of queries, answering them, hits to the user), `push`, `qrp_sync` (our table
//! and who gets it) and `hosts` (host caches, refills, the ultrapeer election). The pure
//! pieces they use are public: [`handshake`], [`qrp`], [`routing`], [`library`].
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

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use servent_core::framing::{Endian, FrameSpec};
use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng, Transmit};

pub mod handshake;
pub mod library;
pub mod qrp;
pub mod routing;

mod config;
mod descriptors;
mod dynamic_query;
mod events;
mod flood_control;
mod hosts;
mod links;
mod push;
mod qrp_sync;
mod query;

pub use config::{Config, PeerInfo, PeerRole, Role};
pub use descriptors::{KIND_BYE, KIND_VENDOR, decode_bye};
pub use events::{Command, DownReason, Event, HandoffKind, Hit, Stats};
pub use flood_control::FLOOD_FACTOR;

use dynamic_query::DynQuery;
use links::{Conn, State};

use crate::core::library::Library;
use crate::core::routing::RouteTable;
use crate::wire::{Body, Guid, HEADER_LEN, Kind, Message, Pong, Push, Query};
use qrp::Table;

/// At most this many transmits wait in the core; more are dropped (and counted).
pub const MAX_TRANSMITS: usize = 1 << 16;
/// At most this many events wait; more are dropped (and counted).
pub const MAX_EVENTS: usize = 1 << 14;
/// The longest handshake or `GIV` line we read.
const MAX_HANDSHAKE: usize = 512;
/// At most this many outbound Push connections at once.
const MAX_PUSH_CONNS: usize = 16;

/// Where a remembered descriptor came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Conn(ConnId),
    /// We sent it: a Search (its command id) or a Ping (`None`).
    Local(Option<u64>),
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
