//! The swarm core: one torrent, its peers, its trackers — sans-IO.
//!
//! A [`Client`] downloads and seeds one torrent. It speaks the peer wire protocol (BEP 3 with
//! the Fast extension, BEP 6; the extension protocol, BEP 10; peer exchange, BEP 11) over the
//! stream connections the driver carries, and announces to HTTP and UDP trackers (BEP 3,
//! BEP 15) in BEP 12 tier order. Content lives in a [`Storage`] the driver hands in.
//!
//! The engine: rarest-first piece picking with random first pieces and strict priority to
//! finish started pieces ([`crate::picker`]); request pipelining sized to what each peer
//! delivers (its rate times [`QUEUE_TIME`], the bandwidth-delay product with margin); endgame;
//! tit-for-tat choking every [`ClientConfig::choke_interval`] with a rotating optimistic
//! unchoke; every piece SHA-1 verified before it is announced; senders of bad pieces get
//! strikes and are banned at [`ClientConfig::ban_strikes`]; seeding until a ratio or time
//! limit; upload and download rate limits (token buckets refilled by the tick).
//!
//! # Run loop
//! As for every [`Core`]: feed an input (or `handle_timeout` when `poll_timeout` is due), then
//! drain [`Core::poll_transmit`] (network first), then [`Core::poll_event`], then re-arm the
//! timer with [`Core::poll_timeout`]. `now` never goes backwards.
//!
//! Tracker URLs are resolved by the caller ([`TrackerEndpoint`] carries the address): a core
//! does no DNS.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use servent_core::framing::RecvBuf;
use servent_core::{ConnId, Core, Input, Instant, Rng, Transmit};

use crate::metadata::{self, FetchConfig, FetchEvent, MetadataFetch, MetadataMsg};
use crate::metainfo::{InfoHash, Metainfo};
use crate::mse::{self, Incoming, Initiator, MseConfig, MseStream, Responder};
use crate::picker::{Bitfield, Picker};
use crate::storage::Storage;
use crate::tracker::{
    AnnounceEvent, AnnounceRequest, AnnounceResponse, UdpRequest, UdpResponse, parse_http_response,
};
use crate::wire::{
    self, BLOCK_LEN, BlockRef, ExtHandshake, Handshake, Message, Pex, Reserved, UT_METADATA_ID,
    UT_PEX_ID, decode_message,
};
pub use config::{ClientConfig, TrackerEndpoint, TrackerKind, make_peer_id};
use disk::{Disk, Pending};
pub use disk::{DiskJob, DiskResult, MAX_DISK_JOBS, MAX_HELD_BYTES};

/// How much data to keep requested from a peer, in seconds of its measured rate.
pub const QUEUE_TIME: Duration = Duration::from_secs(3);
/// Requests a peer may queue with us; more are rejected.
pub const MAX_PEER_REQUESTS: usize = 500;
/// Requests kept outstanding to a peer whose rate is not known yet (or is very low).
pub const MIN_REQUESTS: usize = 16;
const MAX_QUEUE: usize = 1 << 16;
const MAX_CANDIDATES: usize = 2000;
const TICK: Duration = Duration::from_secs(1);
const PEX_EVERY: Duration = Duration::from_secs(60);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(90);
const IDLE_TIMEOUT: Duration = Duration::from_secs(180);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
const TRACKER_TIMEOUT: Duration = Duration::from_secs(15);
const TRACKER_RETRY: Duration = Duration::from_secs(60);
const MAX_TRACKER_REPLY: usize = 1 << 21;
const ALLOWED_FAST_K: usize = 4;
/// `left` announced while the metadata (and so the size) is unknown: "still downloading".
const MAGNET_LEFT: u64 = 16 * 1024;

/// Message Stream Encryption (MSE/PE) policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Outgoing: try MSE, reconnect in plaintext if the peer refuses it; incoming: both.
    /// The handshake is always obfuscated; the payload is RC4 only when the peer insists
    /// (libtorrent's default: RC4 costs several times SHA-1's CPU per byte).
    Prefer,
    /// MSE with RC4 only, both ways; plaintext peers are refused.
    Require,
    /// Plain BitTorrent only, both ways (the simulator's default: no DH, no RC4).
    #[default]
    Plaintext,
}

/// Most addresses remembered as "refused MSE: dial in plaintext".
const MAX_PLAIN_RETRY: usize = 4096;
/// Dials of an address that failed before the handshake are retried this many times, after
/// 2, 4, 8, … s (a peer given by the user may not be listening yet).
const REDIALS: u32 = 5;
/// Pieces revealed to one peer at a time when super-seeding.
const SUPER_REVEAL: usize = 1;
/// Bytes of an incoming connection kept before we can tell plaintext from MSE.
const CLASSIFY_LEN: usize = 20;

/// The stream layer of one peer connection.
#[derive(Debug)]
enum Crypt {
    /// Plain BitTorrent.
    Plain,
    /// After an MSE handshake (RC4, or plaintext-selected: then a no-op).
    Stream(Box<MseStream>),
    /// Incoming, first bytes not seen yet.
    Undecided(Vec<u8>),
    /// Outgoing MSE handshake running.
    Init(Box<Initiator>),
    /// Incoming MSE handshake running.
    Resp(Box<Responder>),
}

/// A command to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCommand {
    /// Add peers to try (from the user, DHT, a magnet link).
    AddPeers {
        /// Repeated in [`ClientEvent::PeersAdded`].
        id: u64,
        /// The peers.
        peers: Vec<SocketAddr>,
    },
    /// A whole piece fetched elsewhere (a BEP 19 web seed): written, SHA-1 verified like any
    /// piece, answered by [`ClientEvent::PieceDataDone`].
    PieceData {
        /// Repeated in the answer.
        id: u64,
        /// The piece.
        index: u32,
        /// Its bytes (exactly the piece's length).
        data: Vec<u8>,
    },
    /// The result of the [`ClientEvent::Disk`] job `id` (with [`ClientConfig::disk_jobs`]).
    DiskDone {
        /// The job's id.
        id: u64,
        /// What it gave.
        result: DiskResult,
    },
    /// Report counters in [`ClientEvent::Stats`].
    Stats {
        /// Repeated in the answer.
        id: u64,
    },
    /// Announce `stopped`, close every connection and flush what was verified (a
    /// [`DiskJob::Flush`] with disk jobs on); answered by [`ClientEvent::Stopped`] once the
    /// flush is done.
    Stop {
        /// Repeated in the answer.
        id: u64,
    },
}

/// Counters of a client.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ClientStats {
    /// Verified pieces.
    pub pieces_have: u32,
    /// All pieces.
    pub pieces_total: u32,
    /// Payload bytes received (block data, duplicates included).
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Block bytes thrown away (unrequested, duplicates, bad pieces).
    pub wasted: u64,
    /// Connected peers (handshake done).
    pub peers: usize,
    /// Download rate over the last seconds, bytes per second.
    pub down_rate: f64,
    /// Upload rate over the last seconds, bytes per second.
    pub up_rate: f64,
    /// Peer connections closed for a limit of [`ClientConfig`]: more than
    /// `max_peers_per_ip` from one address, `max_peers` in total, no handshake within
    /// `handshake_timeout`, nothing at all within `idle_timeout`, or a message longer than its
    /// type allows ([`wire::message_len_limit`]). Each close's reason is in its
    /// [`ClientEvent::PeerDisconnected`] (or [`ClientEvent::HandshakeFailed`]).
    pub limit_closes: u64,
}

/// What the client reports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A piece hashed correctly and is now announced.
    PieceVerified {
        /// Its index.
        index: u32,
    },
    /// A piece hashed wrong and was dropped.
    PieceFailed {
        /// Its index.
        index: u32,
        /// Who sent its blocks.
        senders: Vec<SocketAddr>,
    },
    /// Every piece is verified.
    Completed,
    /// A client started from a magnet link ([`Client::magnet`]) has the info dictionary,
    /// verified against the info-hash. The driver builds the metainfo from it
    /// (`Metainfo::from_info_bytes`) and goes on with a client for the whole torrent.
    MetadataReceived {
        /// The info dictionary's exact bytes.
        info_bytes: Vec<u8>,
    },
    /// Seeding reached its ratio or time limit; the client has left the swarm.
    SeedingDone,
    /// A peer finished the handshake.
    PeerConnected {
        /// Its address.
        addr: SocketAddr,
        /// Whether it connected to us.
        inbound: bool,
    },
    /// A peer left or was dropped.
    PeerDisconnected {
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A connection closed before its BitTorrent handshake completed (no payload flowed):
    /// the driver counts these to tell the user why nothing downloads (for example a
    /// plaintext-only client facing peers that require encryption).
    HandshakeFailed {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        reason: String,
        /// Whether we had offered MSE on this connection.
        encrypted: bool,
    },
    /// A peer was banned for sending bad data or breaking the protocol.
    PeerBanned {
        /// Its IP.
        ip: IpAddr,
    },
    /// A tracker answered.
    TrackerReply {
        /// Its URL.
        url: String,
        /// Peers it listed.
        peers: usize,
        /// Seeders it counts.
        seeders: u32,
        /// Leechers it counts.
        leechers: u32,
    },
    /// A tracker failed.
    TrackerError {
        /// Its URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing the content failed; the client stops.
    StorageFailed {
        /// Why.
        reason: String,
    },
    /// Answer to [`ClientCommand::AddPeers`].
    PeersAdded {
        /// The command's id.
        id: u64,
        /// How many were new.
        added: usize,
    },
    /// Answer to [`ClientCommand::PieceData`].
    PieceDataDone {
        /// The command's id.
        id: u64,
        /// The piece.
        index: u32,
        /// Whether we have the piece now (it hashed correctly, or we had it already).
        ok: bool,
    },
    /// Disk work for the driver (with [`ClientConfig::disk_jobs`]): run `job` on the
    /// storage, answer with [`ClientCommand::DiskDone`] and the same `id`.
    Disk {
        /// The job's id.
        id: u64,
        /// The work.
        job: DiskJob,
    },
    /// Answer to [`ClientCommand::Stats`].
    Stats {
        /// The command's id.
        id: u64,
        /// The counters.
        stats: ClientStats,
    },
    /// Answer to [`ClientCommand::Stop`]: stopped, and its resume data is durable.
    Stopped {
        /// The command's id.
        id: u64,
    },
}

/// The timers, each a slot in a small table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Request timeouts, rates, buckets, keep-alives, connecting, resume flush.
    Tick = 0,
    /// Tit-for-tat round.
    Choke = 1,
    /// Peer exchange.
    Pex = 2,
    /// Next tracker announce.
    Announce = 3,
    /// The running tracker exchange gives up.
    TrackerJob = 4,
}
const TIMERS: usize = 5;

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    buf: RecvBuf,
    connected_at: Instant,
    handshake: Option<Handshake>,
    fast: bool,
    ext: Option<ExtHandshake>,
    has: Bitfield,
    first_msg: bool,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    inflight: Vec<(BlockRef, Instant)>,
    requests: VecDeque<BlockRef>,
    allowed_fast: Vec<u32>,
    given_fast: Vec<u32>,
    down_total: u64,
    up_total: u64,
    down_round: u64,
    up_round: u64,
    down_tick: u64,
    down_rate: f64,
    last_recv: Instant,
    last_send: Instant,
    strikes: u32,
    pex_sent: BTreeSet<SocketAddr>,
    crypt: Crypt,
    /// Super-seeding: pieces revealed to this peer that it does not have yet.
    revealed: Vec<u32>,
}

#[derive(Debug)]
enum Job {
    Http {
        conn: ConnId,
        url: String,
        request: Vec<u8>,
        reply: Vec<u8>,
    },
    Udp {
        addr: SocketAddr,
        url: String,
        tid: u32,
        connection_id: Option<u64>,
        attempts: u32,
    },
}

#[derive(Debug)]
enum Role {
    Peer,
    Tracker,
}

/// The swarm core for one torrent.
#[derive(Debug)]
pub struct Client<S> {
    cfg: ClientConfig,
    info_hash: InfoHash,
    piece_length: u64,
    total: u64,
    piece_hashes: Vec<[u8; 20]>,
    private: bool,
    storage: S,
    picker: Picker,
    rng: Rng,
    peers: BTreeMap<ConnId, Peer>,
    roles: BTreeMap<ConnId, Role>,
    half_open: BTreeSet<ConnId>,
    /// Addresses to dial, from trackers, PEX, the DHT and `--peer` (bounded by
    /// `MAX_CANDIDATES`). This and the other address-keyed maps here (`tried`, `banned`,
    /// `plain_retry`, `redial`, each peer's `pex_sent`) are ordered maps: peer-chosen keys
    /// cannot flood them into hash collisions (O(log n) whatever the keys).
    candidates: BTreeSet<SocketAddr>,
    tried: BTreeSet<SocketAddr>,
    banned: BTreeSet<IpAddr>,
    next_conn: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    timers: [Option<Instant>; TIMERS],
    started: bool,
    stopped: bool,
    completed_at: Option<Instant>,
    seeding_done: bool,
    choke_round: u32,
    optimistic: Option<ConnId>,
    job: Option<Job>,
    tracker_pos: (usize, usize),
    pending_event: AnnounceEvent,
    interval: Duration,
    downloaded: u64,
    uploaded: u64,
    wasted: u64,
    limit_closes: u64,
    up_tokens: f64,
    down_tokens: f64,
    up_rate: f64,
    down_rate: f64,
    up_tick: u64,
    down_tick: u64,
    last_tick: Instant,
    flush_pending: bool,
    /// Our info dictionary, served to peers by BEP 9 (empty while fetching it).
    info_bytes: Vec<u8>,
    /// Set when started from a magnet link: the info dictionary being fetched (BEP 9).
    fetch: Option<MetadataFetch<ConnId>>,
    /// Peers that refused MSE: dialled in plaintext (with [`Encryption::Prefer`]).
    plain_retry: BTreeSet<SocketAddr>,
    /// Outgoing dials that failed before the handshake: attempts so far and when to retry
    /// (`None`: retried, outcome pending).
    redial: BTreeMap<SocketAddr, (u32, Option<Instant>)>,
    /// Super-seeding: how often each piece was revealed.
    reveal_count: Vec<u32>,
    /// Disk jobs outstanding and queued.
    disk: Disk,
}

impl<S: Storage> Client<S> {
    /// A client for `meta` whose verified pieces are `have` (from resume data or a check).
    pub fn new(
        cfg: ClientConfig,
        meta: &Metainfo,
        storage: S,
        have: Bitfield,
        mut rng: Rng,
    ) -> Client<S> {
        let picker = Picker::new(meta.piece_length, meta.total_length, have, &mut rng);
        let complete = picker.have().is_full();
        Client {
            info_hash: meta.info_hash,
            piece_length: meta.piece_length,
            total: meta.total_length,
            piece_hashes: meta.pieces.clone(),
            private: meta.private,
            storage,
            picker,
            rng,
            peers: BTreeMap::new(),
            roles: BTreeMap::new(),
            half_open: BTreeSet::new(),
            candidates: BTreeSet::new(),
            tried: BTreeSet::new(),
            banned: BTreeSet::new(),
            next_conn: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timers: [None; TIMERS],
            started: false,
            stopped: false,
            completed_at: None,
            seeding_done: false,
            choke_round: 0,
            optimistic: None,
            job: None,
            tracker_pos: (0, 0),
            pending_event: AnnounceEvent::Started,
            interval: Duration::from_secs(1800),
            downloaded: 0,
            uploaded: 0,
            wasted: 0,
            limit_closes: 0,
            up_tokens: 0.0,
            down_tokens: 0.0,
            up_rate: 0.0,
            down_rate: 0.0,
            up_tick: 0,
            down_tick: 0,
            last_tick: Instant::ZERO,
            flush_pending: false,
            info_bytes: meta.info_bytes.clone(),
            fetch: None,
            plain_retry: BTreeSet::new(),
            redial: BTreeMap::new(),
            reveal_count: Vec::new(),
            disk: Disk::default(),
            cfg: ClientConfig {
                seed: cfg.seed || complete,
                ..cfg
            },
        }
    }

    /// A client that knows only the info-hash (a magnet link): it finds peers (trackers in
    /// `cfg`, [`ClientCommand::AddPeers`]), fetches the info dictionary from those that offer
    /// it (BEP 9), verifies it against the info-hash and reports it in
    /// [`ClientEvent::MetadataReceived`]. It downloads no content: the driver then starts a
    /// [`Client::new`] for the torrent (with [`Client::known_peers`] as its first peers).
    pub fn magnet(cfg: ClientConfig, info_hash: InfoHash, storage: S, rng: Rng) -> Client<S> {
        let meta = Metainfo {
            info_hash,
            info_bytes: Vec::new(),
            name: String::new(),
            piece_length: u64::from(BLOCK_LEN),
            pieces: Vec::new(),
            files: Vec::new(),
            multi_file: false,
            total_length: 0,
            private: false,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            nodes: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        };
        let seed = cfg.seed;
        let mut c = Client::new(cfg, &meta, storage, Bitfield::new(0), rng);
        c.cfg.seed = seed;
        c.fetch = Some(MetadataFetch::new(info_hash, FetchConfig::default()));
        c
    }

    /// Whether this client is fetching metadata (started by [`Client::magnet`]).
    pub fn is_magnet(&self) -> bool {
        self.fetch.is_some()
    }

    /// Every peer address this client knows: connected (outbound ones, and inbound ones at
    /// their announced listen port), waiting to be tried, and tried.
    pub fn known_peers(&self) -> Vec<SocketAddr> {
        let mut all: BTreeSet<SocketAddr> = self.candidates.clone();
        all.extend(self.tried.iter().copied());
        for (c, p) in &self.peers {
            if !c.is_inbound() {
                all.insert(p.addr);
            } else if let Some(port) = p.ext.as_ref().and_then(|e| e.port) {
                all.insert(SocketAddr::new(p.addr.ip(), port));
            }
        }
        all.into_iter()
            .filter(|a| !self.banned.contains(&a.ip()))
            .collect()
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    /// Whether every piece is verified (never, while fetching metadata).
    pub fn is_complete(&self) -> bool {
        self.fetch.is_none() && self.picker.have().is_full()
    }

    /// The storage (to read back verified content).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Current counters.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            pieces_have: self.picker.have().count(),
            pieces_total: self.picker.piece_count(),
            downloaded: self.downloaded,
            uploaded: self.uploaded,
            wasted: self.wasted,
            peers: self
                .peers
                .values()
                .filter(|p| p.handshake.is_some())
                .count(),
            down_rate: self.down_rate,
            up_rate: self.up_rate,
            limit_closes: self.limit_closes,
        }
    }

    fn send(&mut self, t: Transmit) {
        if self.transmits.len() < MAX_QUEUE {
            self.transmits.push_back(t);
        }
    }

    fn emit(&mut self, e: ClientEvent) {
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(e);
        }
    }

    fn set_timer(&mut self, t: Timer, at: Option<Instant>) {
        if let Some(slot) = self.timers.get_mut(t as usize) {
            *slot = at;
        }
    }

    fn timer(&self, t: Timer) -> Option<Instant> {
        self.timers.get(t as usize).copied().flatten()
    }

    fn send_msg(&mut self, conn: ConnId, m: &Message<'_>, now: Instant) {
        let mut data = Vec::new();
        m.encode_into(&mut data);
        if let Some(p) = self.peers.get_mut(&conn) {
            p.last_send = now;
        }
        self.send_peer(conn, data);
    }

    /// Sends BitTorrent bytes to a peer, through its MSE stream if it has one.
    fn send_peer(&mut self, conn: ConnId, mut data: Vec<u8>) {
        if let Some(Crypt::Stream(s)) = self.peers.get_mut(&conn).map(|p| &mut p.crypt) {
            s.encrypt(&mut data);
        }
        self.send(Transmit::Send { conn, data });
    }

    fn mse_config(&self) -> MseConfig {
        let (allowed, prefer_plaintext) = match self.cfg.encryption {
            Encryption::Require => (mse::CRYPTO_RC4, false),
            _ => (mse::CRYPTO_RC4 | mse::CRYPTO_PLAINTEXT, true),
        };
        MseConfig {
            allowed,
            prefer_plaintext,
            ..MseConfig::default()
        }
    }

    /// Runs the stream layer on received bytes: the plaintext BitTorrent bytes to handle
    /// (`None`: nothing yet), or why to drop the peer.
    fn unwrap_stream<'a>(
        &mut self,
        conn: ConnId,
        data: &'a [u8],
    ) -> Result<Option<Cow<'a, [u8]>>, &'static str> {
        let require = self.cfg.encryption == Encryption::Require;
        let plain_only = self.cfg.encryption == Encryption::Plaintext;
        let cfg = self.mse_config();
        let info_hash = self.info_hash;
        let Some(p) = self.peers.get_mut(&conn) else {
            return Ok(None);
        };
        let mut input = match &mut p.crypt {
            Crypt::Plain => return Ok(Some(Cow::Borrowed(data))),
            Crypt::Stream(s) if s.crypto() == mse::Crypto::Plaintext => {
                return Ok(Some(Cow::Borrowed(data)));
            }
            Crypt::Stream(s) => {
                let mut d = data.to_vec();
                s.decrypt(&mut d);
                return Ok(Some(Cow::Owned(d)));
            }
            Crypt::Undecided(pre) => {
                pre.extend_from_slice(data);
                match mse::classify(pre) {
                    Incoming::NeedMore if pre.len() < CLASSIFY_LEN => return Ok(None),
                    Incoming::Plaintext | Incoming::NeedMore => {
                        if require {
                            return Err("plaintext peer (encryption required)");
                        }
                        let d = std::mem::take(pre);
                        p.crypt = Crypt::Plain;
                        return Ok(Some(Cow::Owned(d)));
                    }
                    Incoming::Encrypted => {
                        if plain_only {
                            return Err("encrypted peer (plaintext only)");
                        }
                        let d = std::mem::take(pre);
                        let r = Responder::new(&cfg, &mut self.rng, &[info_hash]);
                        p.crypt = Crypt::Resp(Box::new(r));
                        d
                    }
                }
            }
            Crypt::Init(_) | Crypt::Resp(_) => data.to_vec(),
        };
        let mut out = Vec::new();
        let r = match &mut p.crypt {
            Crypt::Init(i) => i.handle_input(&input, &mut out),
            Crypt::Resp(r) => r.handle_input(&input, &mut out),
            _ => return Ok(None),
        };
        if !out.is_empty() {
            self.send(Transmit::Send { conn, data: out });
        }
        match r {
            Ok(None) => Ok(None),
            Ok(Some(est)) => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.crypt = Crypt::Stream(Box::new(est.stream));
                }
                input = est.received;
                Ok((!input.is_empty()).then_some(Cow::Owned(input)))
            }
            Err(_) => Err("MSE handshake failed"),
        }
    }

    fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        self.last_tick = now;
        self.set_timer(Timer::Tick, Some(now + TICK));
        self.set_timer(Timer::Choke, Some(now + self.cfg.choke_interval));
        self.set_timer(Timer::Pex, Some(now + PEX_EVERY));
        if !self.cfg.trackers.is_empty() {
            self.set_timer(Timer::Announce, Some(now));
        }
        if self.is_complete() {
            self.completed_at = Some(now);
        }
    }

    // ---------------------------------------------------------------------------------
    // The tick.

    fn tick(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_tick)
            .as_secs_f64()
            .max(1e-3);
        self.last_tick = now;
        let ewma = |old: f64, bytes: u64| 0.6 * old + 0.4 * (bytes as f64 / dt);
        self.down_rate = ewma(self.down_rate, std::mem::take(&mut self.down_tick));
        self.up_rate = ewma(self.up_rate, std::mem::take(&mut self.up_tick));
        if let Some(l) = self.cfg.upload_limit {
            self.up_tokens = (self.up_tokens + l as f64 * dt).min(l as f64);
        }
        if let Some(l) = self.cfg.download_limit {
            self.down_tokens = (self.down_tokens + l as f64 * dt).min(l as f64);
        }
        let timeout = self.cfg.request_timeout;
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for c in conns {
            let Some(p) = self.peers.get_mut(&c) else {
                continue;
            };
            p.down_rate = ewma(p.down_rate, std::mem::take(&mut p.down_tick));
            if p.handshake.is_none() {
                if now.saturating_duration_since(p.connected_at) > self.cfg.handshake_timeout {
                    self.limit_closes += 1;
                    let why = format!(
                        "no handshake within {:?} (handshake timeout)",
                        self.cfg.handshake_timeout
                    );
                    self.drop_peer(c, &why, true);
                }
                continue;
            }
            if now.saturating_duration_since(p.last_recv) > self.cfg.idle_timeout {
                self.limit_closes += 1;
                let why = format!(
                    "idle: nothing received for {:?} (idle timeout)",
                    self.cfg.idle_timeout
                );
                self.drop_peer(c, &why, true);
                continue;
            }
            let expired: Vec<BlockRef> = p
                .inflight
                .iter()
                .filter(|(_, t)| now.saturating_duration_since(*t) > timeout)
                .map(|(r, _)| *r)
                .collect();
            if !expired.is_empty() {
                p.inflight.retain(|(r, _)| !expired.contains(r));
                for r in &expired {
                    self.picker.unrequest(r);
                }
            }
            if now.saturating_duration_since(p.last_send) > KEEPALIVE_EVERY {
                self.send_msg(c, &Message::KeepAlive, now);
            }
            self.fill_requests(now, c);
            self.serve(now, c);
        }
        if self.flush_pending {
            self.flush_pending = false;
            self.flush_soon(now);
        }
        if let Some(done) = self.completed_at {
            let ratio_hit = self
                .cfg
                .seed_ratio
                .is_some_and(|r| self.total > 0 && self.uploaded as f64 >= r * self.total as f64);
            let time_hit = self
                .cfg
                .seed_time
                .is_some_and(|t| now.saturating_duration_since(done) >= t);
            if ratio_hit || time_hit {
                self.finish_seeding(now);
            }
        }
        let due: Vec<SocketAddr> = self
            .redial
            .iter()
            .filter(|(_, (_, at))| at.is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for a in due {
            if let Some(e) = self.redial.get_mut(&a) {
                e.1 = None;
            }
            self.tried.remove(&a);
            if !self.is_complete() || self.cfg.seed {
                self.add_candidates([a]);
            }
        }
        self.connect_more(now);
        let keep_ticking = !(self.stopped || self.seeding_done);
        self.set_timer(Timer::Tick, keep_ticking.then(|| now + TICK));
    }
}

fn http_result(status: u16, body: &[u8]) -> Result<AnnounceResponse, String> {
    match AnnounceResponse::decode(body) {
        Ok(r) => Ok(r),
        Err(e) if status == 200 => Err(e.to_string()),
        Err(_) => Err(format!("HTTP status {status}")),
    }
}

impl<S: Storage> Core for Client<S> {
    type Command = ClientCommand;
    type Event = ClientEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, ClientCommand>) {
        self.start(now);
        match input {
            Input::Command(ClientCommand::AddPeers { id, peers }) => {
                let added = self.add_candidates(peers);
                self.emit(ClientEvent::PeersAdded { id, added });
                self.connect_more(now);
            }
            Input::Command(ClientCommand::PieceData { id, index, data }) => {
                if let Some(ok) = self.piece_data(now, id, index, data) {
                    self.emit(ClientEvent::PieceDataDone { id, index, ok });
                }
            }
            Input::Command(ClientCommand::DiskDone { id, result }) => {
                self.disk_done(now, id, result);
            }
            Input::Command(ClientCommand::Stats { id }) => {
                let stats = self.stats();
                self.emit(ClientEvent::Stats { id, stats });
            }
            Input::Command(ClientCommand::Stop { id }) => {
                // At most a few stops wait (a user asks once; a repeat is answered with the first).
                if self.disk.stop_answers.len() < 16 {
                    self.disk.stop_answers.push(id);
                }
                if !self.stopped {
                    self.stopped = true;
                    self.leave(now);
                    self.set_timer(Timer::Tick, None);
                    // Make what was verified durable: a flush job like any other disk work
                    // (inline when the core runs its disk work itself); `Stopped` answers
                    // when it is done.
                    self.flush_now(now);
                }
                self.answer_stops();
            }
            Input::Connected { conn, peer } => {
                if matches!(self.roles.get(&conn), Some(Role::Tracker)) {
                    if let Some(Job::Http {
                        conn: jc, request, ..
                    }) = &self.job
                    {
                        if *jc == conn {
                            let data = request.clone();
                            self.send(Transmit::Send { conn, data });
                        }
                    }
                    return;
                }
                if conn.is_inbound() {
                    if self.peers.len() >= self.cfg.max_peers
                        && !self.stopped
                        && !self.seeding_done
                        && !self.banned.contains(&peer.ip())
                    {
                        // Full: the oldest inbound connection that has not finished its
                        // handshake makes room, so idle or slowloris connections cannot keep
                        // real peers out (a real peer handshakes at once and is then safe).
                        let idle = self
                            .peers
                            .iter()
                            .filter(|(c, p)| c.is_inbound() && p.handshake.is_none())
                            .min_by_key(|(_, p)| p.connected_at)
                            .map(|(c, _)| *c);
                        if let Some(old) = idle {
                            self.limit_closes += 1;
                            self.drop_peer(
                                old,
                                "evicted: no handshake while full (max peers)",
                                true,
                            );
                        }
                    }
                    if self.stopped || self.seeding_done || self.banned.contains(&peer.ip()) {
                        self.send(Transmit::Close { conn });
                        return;
                    }
                    let mut from_ip = self
                        .peers
                        .values()
                        .filter(|p| p.addr.ip() == peer.ip())
                        .count();
                    if from_ip >= self.cfg.max_peers_per_ip {
                        // This IP is at its limit: its oldest inbound connection that has not
                        // handshaken makes room (as for the total), so one address holds at
                        // most max_peers_per_ip slots and silent connections from it cannot
                        // keep a real peer from the same address (a NAT) out.
                        let silent = self
                            .peers
                            .iter()
                            .filter(|(c, p)| {
                                c.is_inbound() && p.handshake.is_none() && p.addr.ip() == peer.ip()
                            })
                            .min_by_key(|(_, p)| p.connected_at)
                            .map(|(c, _)| *c);
                        if let Some(old) = silent {
                            self.limit_closes += 1;
                            let why = format!(
                                "evicted: no handshake, {from_ip} connections from {} (max peers per IP)",
                                peer.ip()
                            );
                            self.drop_peer(old, &why, true);
                            from_ip -= 1;
                        }
                    }
                    let over = if from_ip >= self.cfg.max_peers_per_ip {
                        Some(format!(
                            "refused: {from_ip} connections from {} already (max peers per IP)",
                            peer.ip()
                        ))
                    } else if self.peers.len() >= self.cfg.max_peers {
                        Some(format!(
                            "refused: {} peers already (max peers)",
                            self.peers.len()
                        ))
                    } else {
                        None
                    };
                    if let Some(reason) = over {
                        self.limit_closes += 1;
                        self.emit(ClientEvent::PeerDisconnected { addr: peer, reason });
                        self.send(Transmit::Close { conn });
                        return;
                    }
                    self.roles.insert(conn, Role::Peer);
                    let mut p = self.new_peer(peer, now);
                    p.crypt = Crypt::Undecided(Vec::new());
                    self.peers.insert(conn, p);
                } else {
                    self.half_open.remove(&conn);
                    if self.peers.contains_key(&conn) {
                        let h = self.handshake_msg();
                        let mse = match self.cfg.encryption {
                            Encryption::Plaintext => false,
                            Encryption::Require => true,
                            Encryption::Prefer => !self.plain_retry.contains(&peer),
                        };
                        let crypt = if mse {
                            // Our BitTorrent handshake rides in the MSE handshake (IA).
                            let mut out = Vec::new();
                            let cfg = self.mse_config();
                            match Initiator::new(self.info_hash, &cfg, &mut self.rng, &h, &mut out)
                            {
                                Ok(i) => {
                                    self.send(Transmit::Send { conn, data: out });
                                    Crypt::Init(Box::new(i))
                                }
                                Err(_) => {
                                    self.send(Transmit::Send {
                                        conn,
                                        data: h.to_vec(),
                                    });
                                    Crypt::Plain
                                }
                            }
                        } else {
                            self.send(Transmit::Send {
                                conn,
                                data: h.to_vec(),
                            });
                            Crypt::Plain
                        };
                        if let Some(p) = self.peers.get_mut(&conn) {
                            p.connected_at = now;
                            p.last_send = now;
                            p.crypt = crypt;
                        }
                    }
                }
            }
            Input::ConnectFailed { conn } => {
                if matches!(self.roles.get(&conn), Some(Role::Tracker)) {
                    self.roles.remove(&conn);
                    if matches!(&self.job, Some(Job::Http { conn: jc, .. }) if *jc == conn) {
                        self.tracker_done(now, Err("connection failed".into()));
                    }
                    return;
                }
                self.drop_peer(conn, "connection failed", false);
                self.connect_more(now);
            }
            Input::Received { conn, data } => self.received(now, conn, data),
            Input::Closed { conn, .. } => {
                if matches!(self.roles.get(&conn), Some(Role::Tracker)) {
                    self.tracker_closed(now, conn);
                    self.roles.remove(&conn);
                    return;
                }
                self.drop_peer(conn, "closed by peer", false);
                self.connect_more(now);
            }
            Input::Datagram { from, data } => self.tracker_datagram(now, from, data),
            _ => {}
        }
        self.pump_fetch(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        if self.timer(Timer::TrackerJob).is_some_and(|t| t <= now) {
            self.set_timer(Timer::TrackerJob, None);
            self.tracker_timeout(now);
        }
        if self.timer(Timer::Announce).is_some_and(|t| t <= now) {
            self.set_timer(Timer::Announce, None);
            self.start_announce(now);
        }
        if self.timer(Timer::Choke).is_some_and(|t| t <= now) {
            self.choke_round(now);
            self.set_timer(Timer::Choke, Some(now + self.cfg.choke_interval));
        }
        if self.timer(Timer::Pex).is_some_and(|t| t <= now) {
            self.pex_round(now);
            self.set_timer(Timer::Pex, Some(now + PEX_EVERY));
        }
        if self.timer(Timer::Tick).is_some_and(|t| t <= now) {
            self.tick(now);
        }
        if let Some(f) = &mut self.fetch {
            if f.poll_timeout().is_some_and(|t| t <= now) {
                f.handle_timeout(now);
            }
        }
        self.pump_fetch(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<ClientEvent> {
        // Events first, then the disk jobs the caller did not take with `poll_disk_job`.
        self.events.pop_front().or_else(|| {
            self.disk
                .queue
                .pop_front()
                .map(|(id, job)| ClientEvent::Disk { id, job })
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if !self.started {
            // Not started yet: wake once to start (announce, timers).
            return Some(Instant::ZERO);
        }
        let fetch = self.fetch.as_ref().and_then(MetadataFetch::poll_timeout);
        self.timers.iter().flatten().copied().chain(fetch).min()
    }
}

mod choker;
mod config;
pub mod disk;
mod messages;
mod peer;
mod pex;
mod requests;
mod trackers;

#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod tests;
