//! A peer of one channel: the broadcaster (with a [`Chunker`]) or a viewer, possibly a
//! supernode. One [`Node`] per channel.
//!
//! - **Membership**: it keeps one TCP connection to the channel's tracker and announces its
//!   position and upload capacity every [`ANNOUNCE_EVERY`]; the tracker answers with peers,
//!   which it dials until it has `partners` of them (or only the `fixed_peers` it was given).
//! - **Mesh pull**: partners exchange a buffer map on joining and every [`MAP_EVERY`], and a
//!   `Have` for each chunk they verify. The scheduler asks for missing chunks **deadline
//!   first** (the [`URGENT_CHUNKS`] after the play point, in order), **rarity second**
//!   (fewest partners holding it), each from the holder with the fewest requests in flight;
//!   a request unanswered after [`REQUEST_TIMEOUT`] is asked again of another partner, so a
//!   chunk lost on one link is repaired from another before it is due.
//! - **Upload**: requests from partners wait in a bounded queue per partner and are served
//!   round-robin from a token bucket of `up_kbps` (0: unlimited); a partner whose queue is
//!   full gets nothing for that request and asks elsewhere after its timeout.
//! - **Verification**: every chunk is checked against the channel key before it is stored,
//!   forwarded or played; a partner that sends a forged or tampered chunk is dropped and
//!   never dialled again.
//! - **Playout**: a newcomer starts at the newest keyframe chunk its partners hold (the GOP
//!   cache), so it plays as soon as that one chunk arrives. Chunk `s` is due at
//!   `t0 + buffer + (ts(s) - ts(start))`; chunks go to the player in order as soon as they are
//!   here, and a missing one is skipped once a later chunk is due.
//!
//! # Run loop
//! The [`Core`] contract: after each input drain [`Core::poll_transmit`], then
//! [`Core::poll_event`], then re-arm the timer with [`Core::poll_timeout`]; `now` never goes
//! backwards.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use servent_core::framing::RecvBuf;
use servent_core::{ConnId, Core, Input, Instant, Rng, Transmit};

use super::chunker::{Chunker, ChunkerConfig};
use super::stats::NodeStats;
use crate::wire::chunk::{ChannelId, Chunk, ChunkError};
use crate::wire::msg::{BufferMap, FRAME, Flags, PeerInfo, PeerMsg, TrackerMsg};

/// How often a node re-announces itself to the tracker.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// How often partners exchange full buffer maps.
pub const MAP_EVERY: Duration = Duration::from_secs(2);
/// The chunks this close to the play point are fetched in order, before rarer ones.
pub const URGENT_CHUNKS: u64 = 8;
/// A request unanswered this long is asked of another partner.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(800);
/// A chunk a partner refused is asked again (of another, if one has it) after this.
pub const REFUSED_BACKOFF: Duration = Duration::from_millis(60);
/// The scheduler's tick.
pub const TICK: Duration = Duration::from_millis(20);
/// Most requests from one partner waiting for upload.
const MAX_UPLOAD_QUEUE: usize = 64;
/// Most peers remembered from the tracker.
const MAX_CANDIDATES: usize = 200;
/// Most addresses remembered as forgers.
const MAX_BANNED: usize = 1024;

/// How a node behaves.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The channel.
    pub channel: ChannelId,
    /// The channel's name (the broadcaster announces it).
    pub name: String,
    /// Where this node listens for partners (advertised to the tracker).
    pub listen: SocketAddr,
    /// The channel tracker.
    pub tracker: Option<SocketAddr>,
    /// Partner only with these (and never with the tracker's suggestions).
    pub fixed_peers: Vec<SocketAddr>,
    /// Partners to dial.
    pub partners: usize,
    /// Most partners in all (dialled and accepted).
    pub max_partners: usize,
    /// Upload limit, kbit/s (0: unlimited).
    pub up_kbps: u32,
    /// A well-provisioned node the tracker prefers as a parent.
    pub supernode: bool,
    /// Time between the start chunk's arrival and its successors' deadlines.
    pub buffer: Duration,
    /// Chunks kept behind the newest, to serve partners that are behind.
    pub window: usize,
    /// Chunks fetched ahead of the play point.
    pub lookahead: usize,
    /// Whether it plays (viewers) or only relays (the broadcaster).
    pub play: bool,
    /// Check every chunk's signature (the simulator may turn this off for speed; its own
    /// report says so).
    pub verify: bool,
    /// Wall clock minus `now`, µs: the chunks carry the source's wall clock.
    pub wall_offset_us: i64,
    /// Requests in flight to one partner.
    pub max_inflight: usize,
}

impl NodeConfig {
    /// A viewer of `channel` listening at `listen`, with the defaults.
    pub fn viewer(channel: ChannelId, listen: SocketAddr, tracker: Option<SocketAddr>) -> Self {
        NodeConfig {
            channel,
            name: String::new(),
            listen,
            tracker,
            fixed_peers: Vec::new(),
            partners: 5,
            max_partners: 24,
            up_kbps: 0,
            supernode: false,
            buffer: Duration::from_millis(2000),
            window: 64,
            lookahead: 32,
            play: true,
            verify: true,
            wall_offset_us: 0,
            max_inflight: 6,
        }
    }
}

/// What the node tells its user.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeEvent {
    /// Playback started with this chunk (a keyframe chunk).
    Started {
        /// Its number.
        seq: u64,
        /// From joining to its arrival.
        startup: Duration,
    },
    /// Hand this chunk to the player.
    Play {
        /// The chunk.
        chunk: Arc<Chunk>,
        /// It came before its deadline.
        on_time: bool,
        /// Playout lag of this chunk, µs: its deadline (or arrival, if late) minus its
        /// source timestamp.
        lag_us: i64,
    },
    /// A chunk was not here by its deadline and is skipped.
    Skipped {
        /// Its number.
        seq: u64,
    },
    /// The broadcast ended (the last chunk has been played).
    Ended,
    /// A partner sent a chunk that does not verify and was dropped.
    Forger {
        /// Its address.
        addr: SocketAddr,
        /// What was wrong.
        error: ChunkError,
    },
    /// A chunk the broadcaster made (the source only).
    Made {
        /// Its number.
        seq: u64,
        /// It starts at a keyframe.
        keyframe: bool,
    },
}

/// What the user asks of the node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeCommand {
    /// Bytes of the live TS input (the broadcaster).
    Ingest(Vec<u8>),
    /// The live input has ended (the broadcaster).
    EndOfInput,
    /// Leave the channel: tell partners and the tracker.
    Leave,
}

#[derive(Debug)]
struct Partner {
    addr: SocketAddr,
    /// Where it listens (from its hello).
    listen: Option<SocketAddr>,
    ready: bool,
    recv: RecvBuf,
    has: BTreeSet<u64>,
    newest_key: Option<u64>,
    inflight: usize,
    upq: VecDeque<(u64, Instant)>,
    flags: Flags,
    up_kbps: u32,
    /// When it last sent anything (maps come every MAP_EVERY).
    heard: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Asked {
    from: ConnId,
    /// Until when it counts as in flight.
    until: Instant,
    /// The partner refused it (then `until` is a short back-off).
    refused: bool,
}

#[derive(Debug, Clone, Copy)]
enum Play {
    /// Not playing yet.
    Waiting,
    /// Playing: the next chunk for the player; the start chunk's arrival and timestamp.
    Playing { next: u64, t0: Instant, ts0: u64 },
    /// The broadcast has ended.
    Ended,
}

/// The peer core (see the module documentation).
#[derive(Debug)]
pub struct Node {
    cfg: NodeConfig,
    rng: Rng,
    source: Option<Chunker>,
    chunks: BTreeMap<u64, Arc<Chunk>>,
    newest_key: Option<u64>,
    partners: BTreeMap<ConnId, Partner>,
    dialing: BTreeMap<ConnId, SocketAddr>,
    asked: BTreeMap<u64, Asked>,
    /// Chunks whose last request timed out, with the partner that failed.
    failed: BTreeMap<u64, ConnId>,
    candidates: Vec<PeerInfo>,
    banned: BTreeSet<SocketAddr>,
    tracker_conn: Option<ConnId>,
    tracker_ready: bool,
    tracker_recv: RecvBuf,
    next_conn: u64,
    play: Play,
    joined: Option<Instant>,
    tokens: f64,
    last_refill: Instant,
    next_tick: Instant,
    next_announce: Instant,
    next_map: Instant,
    leaving: bool,
    rr: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<NodeEvent>,
    stats: NodeStats,
    bitrate: RateMeter,
}

/// Bytes over a sliding few seconds, for the broadcaster's bitrate.
#[derive(Debug, Default, Clone)]
struct RateMeter {
    first: Option<Instant>,
    bytes: u64,
}

impl RateMeter {
    fn kbps(&self, now: Instant) -> u32 {
        let Some(t) = self.first else { return 0 };
        let secs = now.saturating_duration_since(t).as_secs_f64();
        if secs < 0.5 {
            return 0;
        }
        (self.bytes as f64 * 8.0 / secs / 1000.0) as u32
    }
}

impl Node {
    /// A viewer (or relay) of `cfg.channel`.
    pub fn new(cfg: NodeConfig, rng: Rng) -> Node {
        Node {
            rng,
            source: None,
            chunks: BTreeMap::new(),
            newest_key: None,
            partners: BTreeMap::new(),
            dialing: BTreeMap::new(),
            asked: BTreeMap::new(),
            failed: BTreeMap::new(),
            candidates: Vec::new(),
            banned: BTreeSet::new(),
            tracker_conn: None,
            tracker_ready: false,
            tracker_recv: RecvBuf::new(64 * 1024),
            next_conn: 1,
            play: Play::Waiting,
            joined: None,
            tokens: 0.0,
            last_refill: Instant::ZERO,
            next_tick: Instant::ZERO,
            next_announce: Instant::ZERO,
            next_map: Instant::ZERO,
            leaving: false,
            rr: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
            bitrate: RateMeter::default(),
            cfg,
        }
    }

    /// The broadcaster of the channel whose key is `key` (the channel id is its public key).
    pub fn broadcaster(
        mut cfg: NodeConfig,
        key: ed25519_dalek::SigningKey,
        chunking: ChunkerConfig,
        rng: Rng,
    ) -> Node {
        let chunker = Chunker::new(key, chunking);
        cfg.channel = chunker.channel();
        cfg.play = false;
        let mut n = Node::new(cfg, rng);
        n.source = Some(chunker);
        n
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// What it has measured.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Partners with a finished handshake.
    pub fn partner_count(&self) -> usize {
        self.partners.values().filter(|p| p.ready).count()
    }

    /// Where its ready partners listen.
    pub fn partner_addrs(&self) -> Vec<SocketAddr> {
        self.partners
            .values()
            .filter(|p| p.ready)
            .map(|p| p.listen.unwrap_or(p.addr))
            .collect()
    }

    /// The newest chunk it holds.
    pub fn position(&self) -> u64 {
        self.chunks.keys().next_back().copied().unwrap_or(0)
    }

    /// Chunks it holds.
    pub fn held(&self) -> usize {
        self.chunks.len()
    }

    /// A line describing the scheduler's state (for diagnostics).
    pub fn debug_line(&self) -> String {
        let next = match self.play {
            Play::Playing { next, .. } => format!("next {next}"),
            Play::Waiting => "waiting".into(),
            Play::Ended => "ended".into(),
        };
        let parts: Vec<String> = self
            .partners
            .values()
            .map(|p| {
                format!(
                    "{}:{}..{} if{} q{}",
                    p.listen.unwrap_or(p.addr),
                    p.has.first().copied().unwrap_or(0),
                    p.has.last().copied().unwrap_or(0),
                    p.inflight,
                    p.upq.len()
                )
            })
            .collect();
        let asked: Vec<String> = self
            .asked
            .iter()
            .take(5)
            .map(|(s, a)| format!("{s}:{:?}r{}", a.from, a.refused))
            .collect();
        format!(
            "{next} pos {} held {} asked {:?} partners {:?}",
            self.position(),
            self.chunks.len(),
            asked,
            parts
        )
    }

    /// Whether it is playing.
    pub fn is_playing(&self) -> bool {
        matches!(self.play, Play::Playing { .. })
    }

    /// The bitrate of the input (the broadcaster), kbit/s.
    pub fn bitrate_kbps(&self, now: Instant) -> u32 {
        self.bitrate.kbps(now)
    }

    fn wall(&self, now: Instant) -> u64 {
        (now.as_micros() as i64)
            .saturating_add(self.cfg.wall_offset_us)
            .max(0) as u64
    }

    fn flags(&self) -> Flags {
        Flags {
            supernode: self.cfg.supernode,
            source: self.source.is_some(),
        }
    }

    fn conn_id(&mut self) -> ConnId {
        let c = ConnId::outbound(self.next_conn);
        self.next_conn += 1;
        c
    }

    fn send_peer(&mut self, conn: ConnId, m: &PeerMsg) {
        let data = m.to_bytes();
        match m {
            PeerMsg::Chunk(c) => {
                self.stats.video_up += c.payload.len() as u64;
                self.stats.control_up += (data.len() - c.payload.len()) as u64;
            }
            _ => self.stats.control_up += data.len() as u64,
        }
        self.out.push_back(Transmit::Send { conn, data });
    }

    fn send_tracker(&mut self, m: &TrackerMsg) {
        if let (Some(conn), true) = (self.tracker_conn, self.tracker_ready) {
            let data = m.to_bytes();
            self.stats.control_up += data.len() as u64;
            self.out.push_back(Transmit::Send { conn, data });
        }
    }

    fn announce(&mut self, now: Instant, leaving: bool) {
        let want = if self.cfg.fixed_peers.is_empty() && self.source.is_none() {
            (self.cfg.partners * 3) as u16
        } else {
            0
        };
        let m = TrackerMsg::Announce {
            channel: self.cfg.channel,
            name: self.cfg.name.clone(),
            addr: self.cfg.listen,
            up_kbps: self.cfg.up_kbps,
            position: self.position(),
            flags: self.flags(),
            bitrate_kbps: self.bitrate.kbps(now),
            leaving,
            want,
        };
        self.send_tracker(&m);
    }

    fn hello(&mut self, conn: ConnId) {
        let m = PeerMsg::Hello {
            channel: self.cfg.channel,
            listen_port: self.cfg.listen.port(),
            flags: self.flags(),
            up_kbps: self.cfg.up_kbps,
        };
        self.send_peer(conn, &m);
    }

    fn buffer_map(&self) -> BufferMap {
        let seqs: Vec<u64> = self.chunks.keys().copied().collect();
        BufferMap::from_seqs(&seqs, self.newest_key)
    }

    fn drop_partner(&mut self, conn: ConnId, close: bool) {
        if self.partners.remove(&conn).is_some() {
            let lost: Vec<u64> = self
                .asked
                .iter()
                .filter(|(_, a)| a.from == conn)
                .map(|(s, _)| *s)
                .collect();
            for s in lost {
                self.asked.remove(&s);
            }
            if close {
                self.out.push_back(Transmit::Close { conn });
            }
        }
        self.dialing.remove(&conn);
    }

    fn connected_addrs(&self) -> BTreeSet<SocketAddr> {
        let mut s: BTreeSet<SocketAddr> = self
            .partners
            .values()
            .flat_map(|p| [Some(p.addr), p.listen])
            .flatten()
            .collect();
        s.extend(self.dialing.values().copied());
        s
    }

    fn dial_more(&mut self) {
        if self.leaving || self.source.is_some() {
            return;
        }
        // Partners we dialled count towards the target; those that dialled us do not (a
        // fixed peer is always dialled).
        let have = self.partners.keys().filter(|c| !c.is_inbound()).count() + self.dialing.len();
        let target = if self.cfg.fixed_peers.is_empty() {
            self.cfg.partners
        } else {
            self.cfg.fixed_peers.len()
        };
        if have >= target {
            return;
        }
        let busy = self.connected_addrs();
        let pool: Vec<SocketAddr> = if self.cfg.fixed_peers.is_empty() {
            self.candidates.iter().map(|p| p.addr).collect()
        } else {
            self.cfg.fixed_peers.clone()
        };
        let mut need = target - have;
        let n = pool.len().max(1);
        let off = (self.rng.next_u64() % n as u64) as usize;
        for i in 0..pool.len() {
            let addr = pool[(off + i) % n];
            if need == 0 {
                break;
            }
            if addr == self.cfg.listen || busy.contains(&addr) || self.banned.contains(&addr) {
                continue;
            }
            let conn = self.conn_id();
            self.dialing.insert(conn, addr);
            self.out.push_back(Transmit::Connect { conn, to: addr });
            need -= 1;
        }
    }

    fn on_peer_msg(&mut self, now: Instant, conn: ConnId, msg: PeerMsg) {
        let Some(p) = self.partners.get_mut(&conn) else {
            return;
        };
        match msg {
            PeerMsg::Hello {
                channel,
                listen_port,
                flags,
                up_kbps,
            } => {
                if channel != self.cfg.channel || p.ready {
                    self.drop_partner(conn, true);
                    return;
                }
                p.ready = true;
                p.flags = flags;
                p.up_kbps = up_kbps;
                if listen_port != 0 {
                    p.listen = Some(SocketAddr::new(p.addr.ip(), listen_port));
                }
                if conn.is_inbound() {
                    if self.partners.len() > self.cfg.max_partners {
                        self.drop_partner(conn, true);
                        return;
                    }
                    self.hello(conn);
                }
                let m = PeerMsg::BufferMap(self.buffer_map());
                self.send_peer(conn, &m);
            }
            PeerMsg::BufferMap(m) => {
                if !p.ready {
                    return;
                }
                p.has = (0..u64::from(m.len))
                    .map(|i| m.base + i)
                    .filter(|s| m.has(*s))
                    .collect();
                if m.newest_key.is_some() {
                    p.newest_key = m.newest_key;
                }
                self.schedule(now);
            }
            PeerMsg::Have { seq, keyframe } => {
                if !p.ready {
                    return;
                }
                p.has.insert(seq);
                if keyframe && p.newest_key.is_none_or(|k| seq > k) {
                    p.newest_key = Some(seq);
                }
                let floor = seq.saturating_sub(4 * self.cfg.window as u64);
                while p.has.first().is_some_and(|&s| s < floor) {
                    p.has.pop_first();
                }
                self.schedule(now);
            }
            PeerMsg::Request(seqs) => {
                if !p.ready {
                    return;
                }
                let limit = self.upload_queue_limit();
                let mut queued: usize = self.partners.values().map(|p| p.upq.len()).sum();
                let mut refused = Vec::new();
                for s in seqs {
                    let Some(p) = self.partners.get_mut(&conn) else {
                        return;
                    };
                    if p.upq.iter().any(|(q, _)| *q == s) {
                        continue;
                    }
                    if p.upq.len() >= MAX_UPLOAD_QUEUE
                        || queued >= limit
                        || !self.chunks.contains_key(&s)
                    {
                        self.stats.requests_refused += 1;
                        refused.push(s);
                        continue;
                    }
                    p.upq.push_back((s, now));
                    queued += 1;
                }
                if !refused.is_empty() {
                    self.send_peer(conn, &PeerMsg::Refuse(refused));
                }
                self.upload(now);
            }
            PeerMsg::Refuse(seqs) => {
                for s in seqs {
                    if let Some(a) = self.asked.get_mut(&s)
                        && a.from == conn
                        && !a.refused
                    {
                        a.refused = true;
                        a.until = now + REFUSED_BACKOFF;
                        if let Some(p) = self.partners.get_mut(&conn) {
                            p.inflight = p.inflight.saturating_sub(1);
                        }
                        self.failed.insert(s, conn);
                    }
                }
            }
            PeerMsg::Chunk(c) => {
                if !p.ready {
                    return;
                }
                self.on_chunk(now, conn, c);
            }
            PeerMsg::Bye => self.drop_partner(conn, true),
        }
    }

    fn on_chunk(&mut self, now: Instant, conn: ConnId, c: Chunk) {
        let len = c.payload.len() as u64;
        if self.cfg.verify
            && let Err(error) = c.verify(&self.cfg.channel)
        {
            let addr = self.partners.get(&conn).map(|p| p.listen.unwrap_or(p.addr));
            self.stats.forgers_dropped += 1;
            self.drop_partner(conn, true);
            if let Some(addr) = addr {
                if self.banned.len() < MAX_BANNED {
                    self.banned.insert(addr);
                }
                self.events.push_back(NodeEvent::Forger { addr, error });
            }
            return;
        }
        self.stats.video_down += len;
        if let Some(a) = self.asked.remove(&c.seq) {
            if !a.refused
                && let Some(p) = self.partners.get_mut(&a.from)
            {
                p.inflight = p.inflight.saturating_sub(1);
            }
        }
        if let Some(p) = self.partners.get_mut(&conn) {
            p.has.insert(c.seq);
        }
        if self.chunks.contains_key(&c.seq) || self.too_old(c.seq) {
            self.stats.duplicates += 1;
            return;
        }
        if self.failed.remove(&c.seq).is_some() {
            self.stats.repaired += 1;
        }
        self.store(now, c);
        self.advance(now);
        self.schedule(now);
    }

    fn too_old(&self, seq: u64) -> bool {
        match self.play {
            Play::Playing { next, .. } => seq < next.saturating_sub(self.cfg.window as u64),
            _ => false,
        }
    }

    fn store(&mut self, now: Instant, c: Chunk) {
        let seq = c.seq;
        let keyframe = c.keyframe;
        if keyframe && self.newest_key.is_none_or(|k| seq > k) {
            self.newest_key = Some(seq);
        }
        self.chunks.insert(seq, Arc::new(c));
        let newest = self.position();
        let floor = newest.saturating_sub(self.cfg.window as u64);
        let play_floor = match self.play {
            Play::Playing { next, .. } => next,
            _ => u64::MAX,
        };
        while let Some((&s, _)) = self.chunks.first_key_value() {
            if s < floor.min(play_floor) || s + 4 * self.cfg.window as u64 <= newest {
                self.chunks.pop_first();
            } else {
                break;
            }
        }
        let conns: Vec<ConnId> = self
            .partners
            .iter()
            .filter(|(_, p)| p.ready && !p.has.contains(&seq))
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.send_peer(conn, &PeerMsg::Have { seq, keyframe });
        }
        let _ = now;
    }

    /// Hands the player what is due, skips what is late.
    fn advance(&mut self, now: Instant) {
        if !self.cfg.play {
            return;
        }
        if let Play::Waiting = self.play {
            let Some(start) = self.start_point() else {
                return;
            };
            let Some(c) = self.chunks.get(&start) else {
                return;
            };
            let startup = now.saturating_duration_since(self.joined.unwrap_or(now));
            self.stats.startup = Some(startup);
            self.stats.started_at = Some(now);
            self.play = Play::Playing {
                next: start,
                t0: now,
                ts0: c.timestamp_us,
            };
            self.events.push_back(NodeEvent::Started {
                seq: start,
                startup,
            });
        }
        let Play::Playing { mut next, t0, ts0 } = self.play else {
            return;
        };
        let wall_now = self.wall(now) as i64;
        let base = self.wall(t0 + self.cfg.buffer) as i64 - ts0 as i64;
        loop {
            if let Some(c) = self.chunks.get(&next).cloned() {
                let deadline = base + c.timestamp_us as i64;
                let on_time = wall_now <= deadline;
                let lag_us = deadline.max(wall_now) - c.timestamp_us as i64;
                self.stats.record_play(on_time, lag_us);
                let end = c.end;
                self.events.push_back(NodeEvent::Play {
                    chunk: c,
                    on_time,
                    lag_us,
                });
                next += 1;
                if end {
                    self.play = Play::Ended;
                    self.events.push_back(NodeEvent::Ended);
                    return;
                }
                continue;
            }
            // Missing: skip it once a later chunk we hold is due.
            let later = self
                .chunks
                .range(next + 1..)
                .next()
                .map(|(_, c)| c.timestamp_us);
            match later {
                Some(ts) if wall_now > base + ts as i64 => {
                    self.stats.skipped += 1;
                    self.events.push_back(NodeEvent::Skipped { seq: next });
                    self.asked.remove(&next);
                    next += 1;
                }
                _ => break,
            }
        }
        self.play = Play::Playing { next, t0, ts0 };
    }

    /// Where a newcomer starts: the newest keyframe chunk anyone holds.
    fn start_point(&self) -> Option<u64> {
        self.partners
            .values()
            .filter(|p| p.ready)
            .filter_map(|p| p.newest_key)
            .chain(self.newest_key)
            .max()
    }

    /// Asks partners for what is missing (deadline first, rarity second).
    fn schedule(&mut self, now: Instant) {
        if self.source.is_some() || self.leaving {
            return;
        }
        let from = match self.play {
            Play::Waiting => match self.start_point() {
                Some(s) => s,
                None => return,
            },
            Play::Playing { next, .. } => next,
            Play::Ended => return,
        };
        let newest = self
            .partners
            .values()
            .filter_map(|p| p.has.last().copied())
            .max()
            .unwrap_or(0);
        let to = newest.min(from + self.cfg.lookahead as u64);
        if to < from {
            return;
        }
        let urgent_until = from + URGENT_CHUNKS;
        let mut wanted: Vec<(bool, usize, u64)> = Vec::new();
        for s in from..=to {
            if self.chunks.contains_key(&s) {
                continue;
            }
            if let Some(a) = self.asked.get(&s)
                && now < a.until
            {
                continue;
            }
            let holders = self
                .partners
                .values()
                .filter(|p| p.ready && p.has.contains(&s))
                .count();
            if holders == 0 {
                continue;
            }
            let urgent = s < urgent_until;
            wanted.push((!urgent, if urgent { 0 } else { holders }, s));
        }
        wanted.sort();
        let mut batches: BTreeMap<ConnId, Vec<u64>> = BTreeMap::new();
        for (_, _, s) in wanted {
            if let Some(a) = self.asked.remove(&s) {
                if !a.refused {
                    if let Some(p) = self.partners.get_mut(&a.from) {
                        p.inflight = p.inflight.saturating_sub(1);
                    }
                    self.stats.timeouts += 1;
                }
                self.failed.insert(s, a.from);
            }
            let avoid = self.failed.get(&s).copied();
            let max_inflight = self.cfg.max_inflight;
            let best = self
                .partners
                .iter()
                .filter(|(c, p)| {
                    p.ready && p.has.contains(&s) && p.inflight < max_inflight && Some(**c) != avoid
                })
                .min_by_key(|(c, p)| {
                    let cap = if p.up_kbps == 0 {
                        1_000_000
                    } else {
                        u64::from(p.up_kbps)
                    };
                    (
                        (p.inflight as u64 + 1) * 1_000_000_000 / cap,
                        c.raw() ^ self.rr,
                    )
                })
                .map(|(c, _)| *c)
                .or_else(|| {
                    // Only the partner that failed has it: ask it again.
                    avoid.filter(|c| {
                        self.partners.get(c).is_some_and(|p| {
                            p.ready && p.has.contains(&s) && p.inflight < max_inflight
                        })
                    })
                });
            let Some(conn) = best else { continue };
            if let Some(p) = self.partners.get_mut(&conn) {
                p.inflight += 1;
            }
            self.asked.insert(
                s,
                Asked {
                    from: conn,
                    until: now + REQUEST_TIMEOUT,
                    refused: false,
                },
            );
            batches.entry(conn).or_default().push(s);
        }
        self.rr = self.rr.wrapping_add(1);
        for (conn, seqs) in batches {
            self.send_peer(conn, &PeerMsg::Request(seqs));
        }
        // Requests behind the play point are moot.
        while self.asked.first_key_value().is_some_and(|(&s, _)| s < from) {
            if let Some((_, a)) = self.asked.pop_first()
                && !a.refused
                && let Some(p) = self.partners.get_mut(&a.from)
            {
                p.inflight = p.inflight.saturating_sub(1);
            }
        }
        // Forget failures well behind the play point.
        let floor = from.saturating_sub(self.cfg.window as u64);
        while self
            .failed
            .first_key_value()
            .is_some_and(|(&s, _)| s < floor)
        {
            self.failed.pop_first();
        }
    }

    /// Requests waiting for upload, over all partners: what the upload limit sends in
    /// 15% of a request timeout (120 ms; at least 2), so that what is accepted leaves at once
    /// and the rest is asked elsewhere (a longer queue measured worse in the churn test).
    fn upload_queue_limit(&self) -> usize {
        if self.cfg.up_kbps == 0 {
            return usize::MAX;
        }
        let rate = f64::from(self.cfg.up_kbps) * 1000.0 / 8.0;
        let n = self.chunks.len().max(1);
        let avg = self
            .chunks
            .values()
            .rev()
            .take(16)
            .map(|c| c.payload.len())
            .sum::<usize>() as f64
            / n.min(16) as f64;
        ((rate * REQUEST_TIMEOUT.as_secs_f64() * 0.15 / avg.max(188.0)) as usize).max(2)
    }

    fn refill(&mut self, now: Instant) {
        let rate = f64::from(self.cfg.up_kbps) * 1000.0 / 8.0;
        let dt = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.last_refill = now;
        // A burst of at most 200 ms of upload (a chunk may take it below zero).
        let burst = rate * 0.2;
        self.tokens = (self.tokens + rate * dt).min(burst);
    }

    /// Serves partners' requests round-robin within the upload limit.
    fn upload(&mut self, now: Instant) {
        let limited = self.cfg.up_kbps > 0;
        if limited {
            self.refill(now);
        }
        loop {
            if limited && self.tokens <= 0.0 {
                return;
            }
            let conns: Vec<ConnId> = self
                .partners
                .iter()
                .filter(|(_, p)| !p.upq.is_empty())
                .map(|(c, _)| *c)
                .collect();
            if conns.is_empty() {
                return;
            }
            for conn in conns {
                if limited && self.tokens <= 0.0 {
                    return;
                }
                let Some((seq, at)) = self.partners.get_mut(&conn).and_then(|p| p.upq.pop_front())
                else {
                    continue;
                };
                if now.saturating_duration_since(at) >= REQUEST_TIMEOUT {
                    // The partner has asked elsewhere by now.
                    continue;
                }
                let Some(c) = self.chunks.get(&seq).cloned() else {
                    continue;
                };
                self.tokens -= c.payload.len() as f64;
                self.send_peer(conn, &PeerMsg::Chunk((*c).clone()));
            }
        }
    }

    fn on_tracker_bytes(&mut self, now: Instant, data: &[u8]) {
        self.stats.control_down += data.len() as u64;
        if self.tracker_recv.extend(data).is_err() {
            self.drop_tracker();
            return;
        }
        let mut msgs = Vec::new();
        loop {
            match self.tracker_recv.next_frame(&FRAME) {
                Ok(Some(f)) => match TrackerMsg::decode(f.payload) {
                    Ok(m) => msgs.push(m),
                    Err(_) => {
                        self.drop_tracker();
                        return;
                    }
                },
                Ok(None) => break,
                Err(_) => {
                    self.drop_tracker();
                    return;
                }
            }
        }
        for m in msgs {
            if let TrackerMsg::Peers { channel, peers } = m
                && channel == self.cfg.channel
            {
                for p in peers {
                    if p.addr == self.cfg.listen || self.candidates.iter().any(|c| c.addr == p.addr)
                    {
                        continue;
                    }
                    if self.candidates.len() >= MAX_CANDIDATES {
                        self.candidates.remove(0);
                    }
                    self.candidates.push(p);
                }
            }
        }
        self.dial_more();
        let _ = now;
    }

    fn drop_tracker(&mut self) {
        if let Some(conn) = self.tracker_conn.take() {
            self.out.push_back(Transmit::Close { conn });
        }
        self.tracker_ready = false;
        self.tracker_recv = RecvBuf::new(64 * 1024);
    }

    fn tick(&mut self, now: Instant) {
        if self.joined.is_none() {
            self.joined = Some(now);
            self.last_refill = now;
            self.stats.joined_at = Some(now);
        }
        if let Some(ch) = self.source.as_mut() {
            ch.handle_timeout(now);
        }
        self.drain_chunker(now);
        if !self.leaving {
            if self.tracker_conn.is_none()
                && let Some(t) = self.cfg.tracker
            {
                let conn = self.conn_id();
                self.tracker_conn = Some(conn);
                self.out.push_back(Transmit::Connect { conn, to: t });
            }
            if now >= self.next_announce {
                self.announce(now, false);
                self.next_announce = now + ANNOUNCE_EVERY;
                // Dead candidates are forgotten; the tracker's answer refills the list.
                if self.partners.len() < self.cfg.partners {
                    self.candidates.clear();
                }
            }
            if now >= self.next_map {
                self.next_map = now + MAP_EVERY;
                // A partner silent for three map periods is gone (its host died).
                let dead: Vec<ConnId> = self
                    .partners
                    .iter()
                    .filter(|(_, p)| now.saturating_duration_since(p.heard) > 3 * MAP_EVERY)
                    .map(|(c, _)| *c)
                    .collect();
                for c in dead {
                    self.stats.partners_lost += 1;
                    self.drop_partner(c, true);
                }
                let m = PeerMsg::BufferMap(self.buffer_map());
                let conns: Vec<ConnId> = self
                    .partners
                    .iter()
                    .filter(|(_, p)| p.ready)
                    .map(|(c, _)| *c)
                    .collect();
                for c in conns {
                    self.send_peer(c, &m);
                }
            }
            self.dial_more();
        }
        self.upload(now);
        self.schedule(now);
        self.advance(now);
        self.stats.held_peak = self.stats.held_peak.max(self.chunks.len());
        self.next_tick = now + TICK;
    }

    fn drain_chunker(&mut self, now: Instant) {
        while let Some(c) = self.source.as_mut().and_then(|ch| ch.poll_chunk()) {
            self.events.push_back(NodeEvent::Made {
                seq: c.seq,
                keyframe: c.keyframe,
            });
            self.store(now, c);
        }
    }

    fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.announce(now, true);
        self.leaving = true;
        let conns: Vec<ConnId> = self.partners.keys().copied().collect();
        for c in conns {
            self.send_peer(c, &PeerMsg::Bye);
            self.out.push_back(Transmit::Close { conn: c });
        }
        self.partners.clear();
        if let Some(conn) = self.tracker_conn.take() {
            self.out.push_back(Transmit::Close { conn });
        }
    }
}

impl Core for Node {
    type Command = NodeCommand;
    type Event = NodeEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, NodeCommand>) {
        if self.joined.is_none() {
            self.tick(now);
        }
        match input {
            Input::Command(NodeCommand::Ingest(data)) => {
                if self.bitrate.first.is_none() {
                    self.bitrate.first = Some(now);
                }
                self.bitrate.bytes += data.len() as u64;
                let wall = self.wall(now);
                if let Some(ch) = self.source.as_mut() {
                    ch.push(now, wall, &data);
                }
                self.drain_chunker(now);
                self.upload(now);
            }
            Input::Command(NodeCommand::EndOfInput) => {
                let wall = self.wall(now);
                if let Some(ch) = self.source.as_mut() {
                    ch.finish(now, wall);
                }
                self.drain_chunker(now);
                self.upload(now);
            }
            Input::Command(NodeCommand::Leave) => self.leave(now),
            Input::Connected { conn, peer } => {
                if Some(conn) == self.tracker_conn {
                    self.tracker_ready = true;
                    self.announce(now, false);
                    self.next_announce = now + ANNOUNCE_EVERY;
                    return;
                }
                if self.leaving || (conn.is_inbound() && self.banned.contains(&peer)) {
                    self.out.push_back(Transmit::Close { conn });
                    return;
                }
                let listen = self.dialing.remove(&conn);
                self.partners.insert(
                    conn,
                    Partner {
                        addr: peer,
                        listen,
                        ready: false,
                        recv: RecvBuf::new(FRAME.max_frame_len()),
                        has: BTreeSet::new(),
                        newest_key: None,
                        inflight: 0,
                        upq: VecDeque::new(),
                        flags: Flags::default(),
                        up_kbps: 0,
                        heard: now,
                    },
                );
                if !conn.is_inbound() {
                    self.hello(conn);
                }
            }
            Input::ConnectFailed { conn } => {
                if Some(conn) == self.tracker_conn {
                    self.tracker_conn = None;
                    self.tracker_ready = false;
                    return;
                }
                if let Some(addr) = self.dialing.remove(&conn) {
                    self.candidates.retain(|c| c.addr != addr);
                }
            }
            Input::Received { conn, data } => {
                if Some(conn) == self.tracker_conn {
                    self.on_tracker_bytes(now, data);
                    return;
                }
                let Some(p) = self.partners.get_mut(&conn) else {
                    return;
                };
                p.heard = now;
                if p.recv.extend(data).is_err() {
                    self.drop_partner(conn, true);
                    return;
                }
                let mut msgs = Vec::new();
                let mut bad = false;
                loop {
                    match p.recv.next_frame(&FRAME) {
                        Ok(Some(f)) => match PeerMsg::decode(f.payload) {
                            Ok(m) => msgs.push((m, f.len())),
                            Err(_) => {
                                bad = true;
                                break;
                            }
                        },
                        Ok(None) => break,
                        Err(_) => {
                            bad = true;
                            break;
                        }
                    }
                }
                for (m, len) in msgs {
                    let video = match &m {
                        PeerMsg::Chunk(c) => c.payload.len(),
                        _ => 0,
                    };
                    self.stats.control_down += (len - video) as u64;
                    self.on_peer_msg(now, conn, m);
                }
                if bad {
                    self.drop_partner(conn, true);
                }
            }
            Input::Closed { conn, .. } => {
                if Some(conn) == self.tracker_conn {
                    self.tracker_conn = None;
                    self.tracker_ready = false;
                    self.tracker_recv = RecvBuf::new(64 * 1024);
                    return;
                }
                if let Some(p) = self.partners.get(&conn) {
                    let a = p.listen.unwrap_or(p.addr);
                    self.candidates.retain(|c| c.addr != a);
                }
                self.drop_partner(conn, false);
                self.dial_more();
            }
            Input::Datagram { .. } => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_tick
            || self
                .source
                .as_ref()
                .and_then(|c| c.poll_timeout())
                .is_some_and(|t| now >= t)
        {
            self.tick(now);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.leaving {
            return None;
        }
        let c = self.source.as_ref().and_then(|c| c.poll_timeout());
        Some(c.map_or(self.next_tick, |c| c.min(self.next_tick)))
    }
}
