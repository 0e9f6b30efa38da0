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
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::framing::{Endian, FrameError, FrameSpec, RecvBuf};
use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng, Transmit};

use crate::http::{self, Giv};
use crate::library::{Library, SharedFile};
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
    /// We were asked to.
    Requested,
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
}

#[derive(Debug)]
struct Conn {
    state: State,
    peer: SocketAddr,
    buf: RecvBuf,
    cmd: Option<u64>,
    since: Instant,
}

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
    host_set: BTreeSet<SocketAddrV4>,
    next_conn: u64,
    next_tick: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    frame: FrameSpec,
    scratch: Vec<ConnId>,
}

impl Servent {
    /// A servent with settings `cfg`, drawing randomness (descriptor ids, host choice) from
    /// `rng`.
    pub fn new(cfg: Config, rng: Rng) -> Servent {
        let frame = FrameSpec {
            header_len: HEADER_LEN,
            len_offset: 19,
            len_width: 4,
            endian: Endian::Little,
            max_payload: cfg.max_payload,
        };
        Servent {
            routes: RouteTable::new(cfg.route_cap, cfg.route_ttl),
            push_routes: RouteTable::new(cfg.route_cap, cfg.route_ttl),
            cfg,
            rng,
            library: Library::default(),
            conns: BTreeMap::new(),
            host_cache: VecDeque::new(),
            host_set: BTreeSet::new(),
            next_conn: 0,
            next_tick: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            frame,
            scratch: Vec::new(),
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
            self.stats.bytes_out += data.len() as u64;
        }
        self.transmits.push_back(Transmit::Send { conn, data });
    }

    fn overlay_count(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.state, State::Overlay | State::AwaitOk | State::Connecting))
            .count()
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
            Conn {
                state: State::Connecting,
                peer: addr,
                buf: RecvBuf::new(MAX_HANDSHAKE),
                cmd,
                since: now,
            },
        );
        self.transmit(Transmit::Connect { conn, to: addr });
        self.arm_tick(now);
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
            State::Sniff | State::PushConnecting { .. } => {}
        }
    }

    fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Connect { id, addr } => {
                if self.overlay_count() >= self.cfg.max_conns {
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
                let ttl = ttl
                    .unwrap_or(self.cfg.max_ttl)
                    .clamp(1, self.cfg.max_ttl.max(1));
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
                let sent_to = self.flood(&msg.encode(), &[], Kind::Query, None);
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
            self.conns.insert(
                conn,
                Conn {
                    state: State::Sniff,
                    peer,
                    buf: RecvBuf::new(MAX_HANDSHAKE),
                    cmd: None,
                    since: now,
                },
            );
            self.arm_tick(now);
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.since = now;
        match std::mem::replace(&mut c.state, State::AwaitOk) {
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
            }
        }
    }

    fn overlay_up(&mut self, now: Instant, conn: ConnId) {
        let cap = HEADER_LEN + self.cfg.max_payload;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.state = State::Overlay;
        c.buf.set_capacity_limit(cap);
        let (peer, cmd) = (c.peer, c.cmd);
        self.emit(Event::PeerUp { conn, peer, cmd });
        if self.cfg.ping_ttl > 0 {
            self.send_ping(now, self.cfg.ping_ttl, Some(conn));
        }
    }

    fn sniff(&mut self, now: Instant, conn: ConnId) -> Sniffed {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Sniffed::Gone;
        };
        let got = c.buf.as_slice();
        let prefix = |want: &[u8]| {
            let n = got.len().min(want.len());
            got[..n] == want[..n]
        };
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
        let h = Header::decode(header).map_err(|e| e.to_string())?;
        self.stats.rx[h.kind.index()] += 1;
        if h.ttl == 0 {
            self.stats.ttl_expired += 1;
            return Ok(());
        }
        let ttl = h.ttl.min(self.cfg.max_ttl);
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
                self.answer_query(&h, min_speed, criteria, from);
                self.forward_flood(&h, ttl, payload, from);
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
                            self.deliver_hits(search, &h, qh);
                        }
                    }
                    Some(Route::Conn(back)) if back != from => {
                        self.forward_reply(&h, ttl, payload, back)
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
                let pong = Message {
                    id: h.id,
                    ttl: h.hops.saturating_add(1).min(self.cfg.max_ttl.max(1)),
                    hops: 0,
                    body: Body::Pong(Pong {
                        port: self.cfg.advertised.port(),
                        ip: *self.cfg.advertised.ip(),
                        files: u32::try_from(self.library.len()).unwrap_or(u32::MAX),
                        kbytes: self.library.kbytes(),
                    }),
                };
                self.send_bytes(from, pong.encode(), Some(Kind::Pong));
                self.forward_flood(&h, ttl, payload, from);
            }
            Body::Pong(p) => {
                let addr = SocketAddrV4::new(p.ip, p.port);
                self.learn_host(addr);
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
                        Some(next) if next != from && self.is_overlay(next) => {
                            self.forward_reply(&h, ttl, payload, next)
                        }
                        _ => self.stats.unroutable += 1,
                    }
                }
            }
        }
        Ok(())
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

    fn answer_query(&mut self, h: &Header, min_speed: [u8; 2], criteria: &[u8], from: ConnId) {
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
        let found = self.library.search(criteria, max);
        if found.is_empty() {
            return;
        }
        let mut results = Vec::with_capacity(found.len());
        let mut room = self.cfg.max_payload.saturating_sub(11 + 16 + 7);
        for f in found {
            let need = 10 + f.name.len();
            if need > room {
                break;
            }
            room -= need;
            results.push(HitRecord {
                index: f.index,
                size: u32::try_from(f.size).unwrap_or(u32::MAX),
                name: f.name.as_bytes().to_vec(),
                extension: Vec::new(),
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
            Conn {
                state: State::PushConnecting { giv },
                peer: SocketAddr::V4(to),
                buf: RecvBuf::new(MAX_HANDSHAKE),
                cmd: None,
                since: now,
            },
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
            if self.conns.values().any(|c| c.peer == a) {
                self.learn_host(addr);
                continue;
            }
            self.open(now, a, None);
            have += 1;
        }
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
    }

    fn handle_timeout(&mut self, now: Instant) {
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
                    || !self.push_routes.is_empty();
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
        self.next_tick
    }
}
