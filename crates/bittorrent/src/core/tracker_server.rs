//! The tracker server core: HTTP announce/scrape over stream connections and the UDP tracker
//! protocol (BEP 15) over datagrams, sans-IO.
//!
//! Peers are kept per torrent, keyed by their address; a peer that has not announced for
//! [`TrackerConfig::peer_timeout`] is dropped by the sweep timer. Every malformed HTTP request
//! gets a bencoded `failure reason`; malformed UDP packets get a BEP 15 error when they carry
//! a transaction id, and nothing otherwise. UDP connection ids are derived from a secret, the
//! client's address and the current minute, so the tracker keeps no state for them and
//! accepts an id for at least two minutes (BEP 15).
//!
//! Run loop: as for every [`Core`] — feed inputs, drain `poll_transmit`, then `poll_event`,
//! then re-arm the timer from `poll_timeout`.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::framing::RecvBuf;
use servent_core::{ConnId, Core, Input, Instant, Rng, Transmit};
use sha1::{Digest, Sha1};

use crate::metainfo::InfoHash;
use crate::tracker::{
    AnnounceEvent, AnnounceRequest, AnnounceResponse, MAX_HTTP_HEAD, ScrapeEntry, UdpRequest,
    UdpResponse, encode_scrape, failure_body, http_response, parse_request_head, scrape_query,
};

/// Tracker settings.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// The announce interval told to clients.
    pub interval: Duration,
    /// A peer silent this long is dropped.
    pub peer_timeout: Duration,
    /// Peers listed when the client does not say `numwant`.
    pub default_numwant: u32,
    /// Most torrents tracked.
    pub max_torrents: usize,
    /// Most peers per torrent.
    pub max_peers_per_torrent: usize,
    /// Most open HTTP connections.
    pub max_conns: usize,
    /// An HTTP connection that has not sent a full request within this time is closed.
    pub http_timeout: Duration,
    /// Only these torrents are served (`None`: any).
    pub whitelist: Option<Vec<InfoHash>>,
    /// Most peers listed in one reply, whatever `numwant` asks (at most
    /// [`crate::tracker::MAX_NUMWANT`]).
    pub max_numwant: u32,
    /// Announces accepted from one IP per minute (a burst of this many, then one every
    /// 60/n s); more are refused with "announcing too often". 0: no limit.
    pub announces_per_ip_per_min: u32,
}

/// Most IPs whose announce rate is tracked at once; when full, IPs whose allowance has
/// refilled are forgotten first, and a new IP beyond that is refused ("tracker busy").
pub const MAX_RATE_ENTRIES: usize = 65_536;

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        TrackerConfig {
            interval: Duration::from_secs(1800),
            peer_timeout: Duration::from_secs(3600),
            default_numwant: 50,
            max_torrents: 100_000,
            max_peers_per_torrent: 50_000,
            max_conns: 1024,
            http_timeout: Duration::from_secs(15),
            whitelist: None,
            max_numwant: crate::tracker::MAX_NUMWANT,
            announces_per_ip_per_min: 300,
        }
    }
}

/// A command to the tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerCommand {
    /// Report counts; answered by [`TrackerEvent::Stats`] with the same id.
    Stats {
        /// Repeated in the answer.
        id: u64,
    },
}

/// What the tracker reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerEvent {
    /// A valid announce was served.
    Announced {
        /// The torrent.
        info_hash: InfoHash,
        /// The peer as listed to others.
        peer: SocketAddr,
        /// Its event.
        event: AnnounceEvent,
        /// Over UDP (else HTTP).
        udp: bool,
    },
    /// A request was refused with this failure reason.
    Refused {
        /// Who asked.
        from: SocketAddr,
        /// Why.
        reason: String,
    },
    /// Answer to [`TrackerCommand::Stats`].
    Stats {
        /// The command's id.
        id: u64,
        /// Torrents with at least one peer.
        torrents: usize,
        /// Peers over all torrents.
        peers: usize,
        /// Seeders over all torrents.
        seeders: usize,
    },
}

#[derive(Debug, Clone)]
struct PeerEntry {
    left: u64,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Swarm {
    /// The swarm's peers by address, at most `max_peers_per_torrent`; an ordered map: peer-chosen keys cannot flood it into hash collisions (O(log n) whatever the keys).
    peers: BTreeMap<SocketAddr, PeerEntry>,
    seeders: u32,
    downloaded: u32,
}

impl Swarm {
    fn entry(&self) -> ScrapeEntry {
        ScrapeEntry {
            complete: self.seeders,
            downloaded: self.downloaded,
            incomplete: u32::try_from(self.peers.len())
                .unwrap_or(u32::MAX)
                .saturating_sub(self.seeders),
        }
    }
}

#[derive(Debug)]
struct HttpConn {
    peer: SocketAddr,
    buf: RecvBuf,
    opened: Instant,
}

const MAX_QUEUE: usize = 16_384;
const SWEEP_EVERY: Duration = Duration::from_secs(30);
const CONN_ID_EPOCH_SECS: u64 = 60;

/// The tracker core.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    secret: [u8; 16],
    rng: Rng,
    /// Swarms by info-hash (client-chosen), at most `max_torrents`; an ordered map: peer-chosen keys cannot flood it into hash collisions (O(log n) whatever the keys).
    swarms: BTreeMap<InfoHash, Swarm>,
    conns: BTreeMap<ConnId, HttpConn>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TrackerEvent>,
    next_sweep: Option<Instant>,
    /// Per IP: announce allowance left and when it was last refilled (an ordered map: peer-chosen keys cannot flood it into hash collisions (O(log n) whatever the keys)).
    rates: BTreeMap<IpAddr, (f64, Instant)>,
}

impl Tracker {
    /// A tracker with its randomness (connection-id secret, peer sampling) from `rng`.
    pub fn new(cfg: TrackerConfig, mut rng: Rng) -> Tracker {
        let mut secret = [0u8; 16];
        for chunk in secret.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
        Tracker {
            cfg,
            secret,
            rng,
            swarms: BTreeMap::new(),
            conns: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_sweep: None,
            rates: BTreeMap::new(),
        }
    }

    /// Takes one announce from `ip`'s allowance; `Err` says why it is refused.
    fn rate_ok(&mut self, now: Instant, ip: IpAddr) -> Result<(), String> {
        let n = self.cfg.announces_per_ip_per_min;
        if n == 0 {
            return Ok(());
        }
        let burst = f64::from(n);
        let per_sec = burst / 60.0;
        let refill = |(tokens, at): (f64, Instant)| {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            (tokens + secs * per_sec).min(burst)
        };
        if !self.rates.contains_key(&ip) && self.rates.len() >= MAX_RATE_ENTRIES {
            self.rates.retain(|_, e| refill(*e) < burst);
            if self.rates.len() >= MAX_RATE_ENTRIES {
                return Err("tracker busy".into());
            }
        }
        let e = self.rates.entry(ip).or_insert((burst, now));
        let tokens = refill(*e);
        if tokens < 1.0 {
            *e = (tokens, now);
            return Err("announcing too often".into());
        }
        *e = (tokens - 1.0, now);
        Ok(())
    }

    /// Peers currently listed for a torrent.
    pub fn peer_count(&self, info_hash: &InfoHash) -> usize {
        self.swarms.get(info_hash).map_or(0, |s| s.peers.len())
    }

    /// Scrape counts for a torrent.
    pub fn scrape(&self, info_hash: &InfoHash) -> ScrapeEntry {
        self.swarms
            .get(info_hash)
            .map(Swarm::entry)
            .unwrap_or_default()
    }

    fn send(&mut self, t: Transmit) {
        if self.transmits.len() < MAX_QUEUE {
            self.transmits.push_back(t);
        }
    }

    fn emit(&mut self, e: TrackerEvent) {
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(e);
        }
    }

    fn conn_id(&self, from: SocketAddr, epoch: u64) -> u64 {
        let mut h = Sha1::new();
        h.update(self.secret);
        h.update(from.to_string().as_bytes());
        h.update(epoch.to_be_bytes());
        let d: [u8; 20] = h.finalize().into();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_be_bytes(b)
    }

    fn conn_id_valid(&self, now: Instant, from: SocketAddr, id: u64) -> bool {
        let epoch = now.as_micros() / 1_000_000 / CONN_ID_EPOCH_SECS;
        // Issued in this minute or either of the two before: valid for at least two minutes.
        (0..3).any(|back| epoch >= back && id == self.conn_id(from, epoch - back))
    }

    /// Applies an announce; returns the reply or a failure reason.
    fn announce(
        &mut self,
        now: Instant,
        req: &AnnounceRequest,
        peer: SocketAddr,
        udp: bool,
    ) -> Result<AnnounceResponse, String> {
        self.rate_ok(now, peer.ip())?;
        if let Some(w) = &self.cfg.whitelist {
            if !w.contains(&req.info_hash) {
                return Err("torrent not tracked here".into());
            }
        }
        if !self.swarms.contains_key(&req.info_hash) {
            if req.event == AnnounceEvent::Stopped {
                return Ok(AnnounceResponse {
                    interval: secs(self.cfg.interval),
                    ..Default::default()
                });
            }
            if self.swarms.len() >= self.cfg.max_torrents {
                return Err("tracker is full".into());
            }
        }
        let max_peers = self.cfg.max_peers_per_torrent;
        let swarm = self.swarms.entry(req.info_hash).or_default();
        let old = swarm.peers.remove(&peer);
        if old.as_ref().is_some_and(|o| o.left == 0) {
            swarm.seeders = swarm.seeders.saturating_sub(1);
        }
        if req.event == AnnounceEvent::Completed && old.as_ref().is_none_or(|o| o.left > 0) {
            swarm.downloaded = swarm.downloaded.saturating_add(1);
        }
        if req.event != AnnounceEvent::Stopped {
            if swarm.peers.len() >= max_peers {
                return Err("swarm is full".into());
            }
            swarm.peers.insert(
                peer,
                PeerEntry {
                    left: req.left,
                    last_seen: now,
                },
            );
            if req.left == 0 {
                swarm.seeders += 1;
            }
        }
        let want = req
            .numwant
            .unwrap_or(self.cfg.default_numwant)
            .min(self.cfg.max_numwant)
            .min(crate::tracker::MAX_NUMWANT) as usize;
        let mut peers: Vec<SocketAddr> = Vec::new();
        if req.event != AnnounceEvent::Stopped {
            // The announcing peer is never listed to itself. A seeder gets leechers first and
            // then other seeders: a client fetching a magnet's metadata does not know the size
            // and announces left=0 (aria2), yet needs the seeders.
            let seeding = req.left == 0;
            let others = || swarm.peers.iter().filter(|(a, _)| **a != peer);
            let mut first: Vec<SocketAddr> = others()
                .filter(|(_, e)| !(seeding && e.left == 0))
                .map(|(a, _)| *a)
                .collect();
            let mut then: Vec<SocketAddr> = others()
                .filter(|(_, e)| seeding && e.left == 0)
                .map(|(a, _)| *a)
                .collect();
            for list in [&mut first, &mut then] {
                let room = want.saturating_sub(peers.len());
                if list.len() > room {
                    // A uniform random sample (partial Fisher–Yates).
                    for i in 0..room {
                        let j = i + self.rng.below((list.len() - i) as u64) as usize;
                        list.swap(i, j);
                    }
                    list.truncate(room);
                }
                peers.append(list);
            }
        }
        let entry = swarm.entry();
        if swarm.peers.is_empty() {
            self.swarms.remove(&req.info_hash);
        }
        if udp {
            peers.retain(SocketAddr::is_ipv4);
        }
        self.emit(TrackerEvent::Announced {
            info_hash: req.info_hash,
            peer,
            event: req.event,
            udp,
        });
        Ok(AnnounceResponse {
            interval: secs(self.cfg.interval),
            min_interval: Some(secs(self.cfg.interval) / 2),
            complete: entry.complete,
            incomplete: entry.incomplete,
            peers,
            warning: None,
        })
    }

    fn refuse(&mut self, from: SocketAddr, reason: String) {
        self.emit(TrackerEvent::Refused { from, reason });
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let req = match UdpRequest::decode(data) {
            Ok(r) => r,
            Err(_) => {
                // Answer with an error when there is a transaction id to echo.
                if let Some(tid) = data.get(12..16).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                    let reply = UdpResponse::Error {
                        transaction_id: u32::from_be_bytes(tid),
                        message: "malformed request".into(),
                    };
                    self.send(Transmit::Datagram {
                        to: from,
                        data: reply.encode(),
                    });
                }
                self.refuse(from, "malformed UDP request".into());
                return;
            }
        };
        let reply = match req {
            UdpRequest::Connect { transaction_id } => {
                let epoch = now.as_micros() / 1_000_000 / CONN_ID_EPOCH_SECS;
                UdpResponse::Connect {
                    transaction_id,
                    connection_id: self.conn_id(from, epoch),
                }
            }
            UdpRequest::Announce {
                connection_id,
                transaction_id,
                req,
                ..
            } => {
                if !self.conn_id_valid(now, from, connection_id) {
                    self.refuse(from, "bad connection id".into());
                    UdpResponse::Error {
                        transaction_id,
                        message: "bad connection id".into(),
                    }
                } else {
                    // The address announced is the sender's IP and the port it names.
                    let peer = SocketAddr::new(from.ip(), req.port);
                    match self.announce(now, &req, peer, true) {
                        Ok(r) => UdpResponse::Announce {
                            transaction_id,
                            interval: r.interval,
                            leechers: r.incomplete,
                            seeders: r.complete,
                            peers: r
                                .peers
                                .iter()
                                .filter_map(|p| match p {
                                    SocketAddr::V4(a) => Some(*a),
                                    SocketAddr::V6(_) => None::<SocketAddrV4>,
                                })
                                .collect(),
                        },
                        Err(message) => {
                            self.refuse(from, message.clone());
                            UdpResponse::Error {
                                transaction_id,
                                message,
                            }
                        }
                    }
                }
            }
            UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                if self.conn_id_valid(now, from, connection_id) {
                    UdpResponse::Scrape {
                        transaction_id,
                        entries: info_hashes.iter().map(|h| self.scrape(h)).collect(),
                    }
                } else {
                    self.refuse(from, "bad connection id".into());
                    UdpResponse::Error {
                        transaction_id,
                        message: "bad connection id".into(),
                    }
                }
            }
        };
        self.send(Transmit::Datagram {
            to: from,
            data: reply.encode(),
        });
    }

    fn http_bytes(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let peer = c.peer;
        if c.buf.extend(data).is_err() {
            self.http_reply(
                conn,
                peer,
                413,
                "Request Too Large",
                Err("request too large".into()),
            );
            return;
        }
        let head = match c.buf.take_until(b"\r\n\r\n", MAX_HTTP_HEAD) {
            Ok(Some(h)) => h.to_vec(),
            Ok(None) => return,
            Err(_) => {
                self.http_reply(
                    conn,
                    peer,
                    413,
                    "Request Too Large",
                    Err("request too large".into()),
                );
                return;
            }
        };
        let (method, target) = match parse_request_head(&head) {
            Ok(x) => x,
            Err(e) => {
                self.http_reply(conn, peer, 400, "Bad Request", Err(e.to_string()));
                return;
            }
        };
        if method != "GET" {
            self.http_reply(
                conn,
                peer,
                405,
                "Method Not Allowed",
                Err("only GET".into()),
            );
            return;
        }
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        match path {
            "/announce" => match AnnounceRequest::from_query(query) {
                Ok(req) => {
                    let listed = SocketAddr::new(peer.ip(), req.port);
                    let compact = req.compact;
                    let r = self.announce(now, &req, listed, false);
                    let body = r.map(|r| r.encode(compact));
                    self.http_reply(conn, peer, 200, "OK", body);
                }
                Err(e) => self.http_reply(conn, peer, 200, "OK", Err(e.to_string())),
            },
            "/scrape" => match scrape_query(query) {
                Ok(hashes) => {
                    let entries: Vec<(InfoHash, ScrapeEntry)> = if hashes.is_empty() {
                        self.swarms
                            .iter()
                            .take(crate::tracker::MAX_SCRAPE)
                            .map(|(h, s)| (*h, s.entry()))
                            .collect()
                    } else {
                        hashes.iter().map(|h| (*h, self.scrape(h))).collect()
                    };
                    self.http_reply(conn, peer, 200, "OK", Ok(encode_scrape(&entries)));
                }
                Err(e) => self.http_reply(conn, peer, 200, "OK", Err(e.to_string())),
            },
            _ => self.http_reply(conn, peer, 404, "Not Found", Err("no such path".into())),
        }
    }

    fn http_reply(
        &mut self,
        conn: ConnId,
        peer: SocketAddr,
        status: u16,
        reason: &str,
        body: Result<Vec<u8>, String>,
    ) {
        let body = match body {
            Ok(b) => b,
            Err(why) => {
                self.refuse(peer, why.clone());
                failure_body(&why)
            }
        };
        self.send(Transmit::Send {
            conn,
            data: http_response(status, reason, "text/plain", &body),
        });
        self.send(Transmit::Close { conn });
        self.conns.remove(&conn);
    }

    fn sweep(&mut self, now: Instant) {
        // An IP whose allowance has refilled is as good as new: forget it.
        let per_sec = f64::from(self.cfg.announces_per_ip_per_min) / 60.0;
        let burst = f64::from(self.cfg.announces_per_ip_per_min);
        self.rates.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst
        });
        let timeout = self.cfg.peer_timeout;
        self.swarms.retain(|_, s| {
            let mut seeders_gone = 0u32;
            s.peers.retain(|_, p| {
                let keep = now.saturating_duration_since(p.last_seen) < timeout;
                if !keep && p.left == 0 {
                    seeders_gone += 1;
                }
                keep
            });
            s.seeders = s.seeders.saturating_sub(seeders_gone);
            !s.peers.is_empty()
        });
        let http_timeout = self.cfg.http_timeout;
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.opened) >= http_timeout)
            .map(|(id, _)| *id)
            .collect();
        for conn in stale {
            self.conns.remove(&conn);
            self.send(Transmit::Close { conn });
        }
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Core for Tracker {
    type Command = TrackerCommand;
    type Event = TrackerEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, TrackerCommand>) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_EVERY);
        }
        match input {
            Input::Command(TrackerCommand::Stats { id }) => {
                let peers = self.swarms.values().map(|s| s.peers.len()).sum();
                let seeders = self.swarms.values().map(|s| s.seeders as usize).sum();
                self.emit(TrackerEvent::Stats {
                    id,
                    torrents: self.swarms.len(),
                    peers,
                    seeders,
                });
            }
            Input::Datagram { from, data } => self.datagram(now, from, data),
            Input::Connected { conn, peer } => {
                // Full: the oldest connection goes, not the newcomer, so idle or slow
                // connections cannot keep a client that sends its request at once out.
                if self.conns.len() >= self.cfg.max_conns {
                    let oldest = self
                        .conns
                        .iter()
                        .min_by_key(|(_, c)| c.opened)
                        .map(|(id, _)| *id);
                    match oldest {
                        Some(old) if self.cfg.max_conns > 0 => {
                            self.conns.remove(&old);
                            self.send(Transmit::Close { conn: old });
                        }
                        _ => {
                            self.send(Transmit::Close { conn });
                            return;
                        }
                    }
                }
                self.conns.insert(
                    conn,
                    HttpConn {
                        peer,
                        buf: RecvBuf::new(MAX_HTTP_HEAD),
                        opened: now,
                    },
                );
            }
            Input::Received { conn, data } => self.http_bytes(now, conn, data),
            Input::Closed { conn, .. } | Input::ConnectFailed { conn } => {
                self.conns.remove(&conn);
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| t <= now) {
            self.sweep(now);
            self.next_sweep = Some(now + SWEEP_EVERY);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<TrackerEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{parse_http_response, percent_encode};
    use proptest::prelude::*;
    use servent_core::Rng;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn drain(t: &mut Tracker) -> Vec<Transmit> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    fn http(t: &mut Tracker, now: Instant, n: u64, from: &str, target: &str) -> (u16, Vec<u8>) {
        let conn = ConnId::inbound(n);
        t.handle_input(
            now,
            Input::Connected {
                conn,
                peer: addr(from),
            },
        );
        let req = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
        t.handle_input(
            now,
            Input::Received {
                conn,
                data: req.as_bytes(),
            },
        );
        let out = drain(t);
        let Some(Transmit::Send { data, .. }) = out.first() else {
            panic!("no reply: {out:?}");
        };
        assert_eq!(out.get(1), Some(&Transmit::Close { conn }));
        let (status, body) = parse_http_response(data).unwrap();
        (status, body.to_vec())
    }

    fn announce_q(ih: u8, port: u16, left: u64, event: AnnounceEvent) -> String {
        let r = AnnounceRequest {
            info_hash: InfoHash([ih; 20]),
            peer_id: [port as u8; 20],
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: None,
            compact: true,
            key: None,
        };
        format!("/announce?{}", r.to_query())
    }

    #[test]
    fn http_announces_list_other_peers_but_not_the_announcer() {
        let mut t = Tracker::new(TrackerConfig::default(), Rng::new(1));
        let now = Instant::from_secs(1);
        let (s, b) = http(
            &mut t,
            now,
            1,
            "127.0.0.2:5000",
            &announce_q(1, 7001, 0, AnnounceEvent::Started),
        );
        assert_eq!(s, 200);
        let r = AnnounceResponse::decode(&b).unwrap();
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete), (1, 0));
        let (_, b) = http(
            &mut t,
            now,
            2,
            "127.0.0.3:5001",
            &announce_q(1, 7002, 100, AnnounceEvent::Started),
        );
        let r = AnnounceResponse::decode(&b).unwrap();
        assert_eq!(r.peers, vec![addr("127.0.0.2:7001")]);
        assert_eq!((r.complete, r.incomplete), (1, 1));
        assert_eq!(r.interval, 1800);
        // Stopped removes the peer.
        http(
            &mut t,
            now,
            3,
            "127.0.0.3:5002",
            &announce_q(1, 7002, 100, AnnounceEvent::Stopped),
        );
        assert_eq!(t.peer_count(&InfoHash([1; 20])), 1);
    }

    #[test]
    fn completed_counts_downloads_and_scrape_reports_them() {
        let mut t = Tracker::new(TrackerConfig::default(), Rng::new(1));
        let now = Instant::from_secs(1);
        http(
            &mut t,
            now,
            1,
            "127.0.0.2:1",
            &announce_q(1, 7001, 5, AnnounceEvent::Started),
        );
        http(
            &mut t,
            now,
            2,
            "127.0.0.2:1",
            &announce_q(1, 7001, 0, AnnounceEvent::Completed),
        );
        let q = format!("/scrape?info_hash={}", percent_encode(&[1; 20]));
        let (_, b) = http(&mut t, now, 3, "127.0.0.9:1", &q);
        let e = crate::tracker::decode_scrape(&b).unwrap();
        assert_eq!(
            e,
            vec![(
                InfoHash([1; 20]),
                ScrapeEntry {
                    complete: 1,
                    downloaded: 1,
                    incomplete: 0
                }
            )]
        );
    }

    #[test]
    fn every_malformed_http_request_gets_a_failure_reason() {
        let mut t = Tracker::new(TrackerConfig::default(), Rng::new(1));
        let now = Instant::from_secs(1);
        for (i, target) in [
            "/announce?port=1",
            "/announce?info_hash=%zz",
            "/scrape?info_hash=abc",
            "/nope",
        ]
        .iter()
        .enumerate()
        {
            let (_, b) = http(&mut t, now, i as u64, "127.0.0.2:1", target);
            let v = crate::bencode::decode(&b, &crate::bencode::Limits::strict()).unwrap();
            assert!(
                v.as_dict().unwrap().bytes(b"failure reason").is_some(),
                "{target}"
            );
        }
        // A request head that never ends within the limit.
        let conn = ConnId::inbound(99);
        t.handle_input(
            now,
            Input::Connected {
                conn,
                peer: addr("127.0.0.2:1"),
            },
        );
        let junk = vec![b'a'; MAX_HTTP_HEAD + 10];
        t.handle_input(now, Input::Received { conn, data: &junk });
        let out = drain(&mut t);
        assert!(matches!(out.first(), Some(Transmit::Send { .. })));
        assert_eq!(out.get(1), Some(&Transmit::Close { conn }));
    }

    #[test]
    fn peers_expire_when_they_stop_announcing() {
        let cfg = TrackerConfig {
            peer_timeout: Duration::from_secs(100),
            ..Default::default()
        };
        let mut t = Tracker::new(cfg, Rng::new(1));
        http(
            &mut t,
            Instant::from_secs(1),
            1,
            "127.0.0.2:1",
            &announce_q(1, 7001, 5, AnnounceEvent::Started),
        );
        http(
            &mut t,
            Instant::from_secs(80),
            2,
            "127.0.0.3:1",
            &announce_q(1, 7002, 5, AnnounceEvent::Started),
        );
        let mut now = Instant::from_secs(80);
        while now < Instant::from_secs(150) {
            now = t.poll_timeout().unwrap();
            t.handle_timeout(now);
        }
        assert_eq!(
            t.peer_count(&InfoHash([1; 20])),
            1,
            "the silent peer expired, the other stays"
        );
    }

    fn udp(t: &mut Tracker, now: Instant, from: &str, req: &UdpRequest) -> UdpResponse {
        t.handle_input(
            now,
            Input::Datagram {
                from: addr(from),
                data: &req.encode(),
            },
        );
        match drain(t).pop() {
            Some(Transmit::Datagram { data, .. }) => UdpResponse::decode(&data).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn udp_connect_announce_scrape() {
        let mut t = Tracker::new(TrackerConfig::default(), Rng::new(7));
        let now = Instant::from_secs(1000);
        let UdpResponse::Connect {
            connection_id,
            transaction_id: 9,
        } = udp(
            &mut t,
            now,
            "127.0.0.5:4000",
            &UdpRequest::Connect { transaction_id: 9 },
        )
        else {
            panic!()
        };
        let a = |port| AnnounceRequest {
            info_hash: InfoHash([3; 20]),
            peer_id: [1; 20],
            port,
            uploaded: 0,
            downloaded: 0,
            left: 10,
            event: AnnounceEvent::Started,
            numwant: Some(10),
            compact: true,
            key: None,
        };
        http(
            &mut t,
            now,
            1,
            "127.0.0.2:1",
            &announce_q(3, 7001, 0, AnnounceEvent::Started),
        );
        let r = udp(
            &mut t,
            now,
            "127.0.0.5:4000",
            &UdpRequest::Announce {
                connection_id,
                transaction_id: 10,
                req: a(6000),
                ip: 0,
            },
        );
        assert_eq!(
            r,
            UdpResponse::Announce {
                transaction_id: 10,
                interval: 1800,
                leechers: 1,
                seeders: 1,
                peers: vec!["127.0.0.2:7001".parse().unwrap()]
            }
        );
        // The id is good for the next minute too, but not from another address or later.
        let later = now + Duration::from_secs(90);
        let r = udp(
            &mut t,
            later,
            "127.0.0.5:4000",
            &UdpRequest::Scrape {
                connection_id,
                transaction_id: 11,
                info_hashes: vec![InfoHash([3; 20])],
            },
        );
        assert_eq!(
            r,
            UdpResponse::Scrape {
                transaction_id: 11,
                entries: vec![ScrapeEntry {
                    complete: 1,
                    downloaded: 0,
                    incomplete: 1
                }]
            }
        );
        let r = udp(
            &mut t,
            now,
            "127.0.0.6:4000",
            &UdpRequest::Announce {
                connection_id,
                transaction_id: 12,
                req: a(6001),
                ip: 0,
            },
        );
        assert!(matches!(
            r,
            UdpResponse::Error {
                transaction_id: 12,
                ..
            }
        ));
        let r = udp(
            &mut t,
            now + Duration::from_secs(200),
            "127.0.0.5:4000",
            &UdpRequest::Announce {
                connection_id,
                transaction_id: 13,
                req: a(6000),
                ip: 0,
            },
        );
        assert!(matches!(
            r,
            UdpResponse::Error {
                transaction_id: 13,
                ..
            }
        ));
    }

    #[test]
    fn an_announce_flood_from_one_ip_is_refused_and_others_are_served() {
        let cfg = TrackerConfig {
            announces_per_ip_per_min: 10,
            max_numwant: 3,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg, Rng::new(1));
        let now = Instant::from_secs(1);
        let q = |port: u16| announce_q(1, port, 5, AnnounceEvent::Started);
        for i in 0..10u16 {
            let (code, b) = http(&mut t, now, u64::from(i), "127.0.0.9:1", &q(7000 + i));
            assert_eq!(code, 200);
            assert!(AnnounceResponse::decode(&b).is_ok(), "announce {i} refused");
        }
        let (_, b) = http(&mut t, now, 50, "127.0.0.9:1", &q(7100));
        assert!(String::from_utf8_lossy(&b).contains("announcing too often"));
        // Another IP is not affected, and numwant is capped by the configuration.
        let more = q(7200).replace("compact=1", "compact=1&numwant=50");
        let (_, b) = http(&mut t, now, 51, "127.0.0.10:1", &more);
        let r = AnnounceResponse::decode(&b).unwrap();
        assert_eq!(r.peers.len(), 3);
        // Six seconds later the flooding IP has one announce again.
        let later = Instant::from_secs(7);
        let (_, b) = http(&mut t, later, 52, "127.0.0.9:1", &q(7101));
        assert!(AnnounceResponse::decode(&b).is_ok());
        let (_, b) = http(&mut t, later, 53, "127.0.0.9:1", &q(7102));
        assert!(String::from_utf8_lossy(&b).contains("announcing too often"));
    }

    #[test]
    fn numwant_limits_and_samples_the_peer_list() {
        let mut t = Tracker::new(TrackerConfig::default(), Rng::new(1));
        let now = Instant::from_secs(1);
        for i in 0..30u16 {
            http(
                &mut t,
                now,
                u64::from(i),
                &format!("127.0.1.{}:1", i + 1),
                &announce_q(1, 7000 + i, 5, AnnounceEvent::Started),
            );
        }
        let q =
            announce_q(1, 9999, 5, AnnounceEvent::None).replace("compact=1", "compact=1&numwant=7");
        let (_, b) = http(&mut t, now, 100, "127.0.2.1:1", &q);
        let r = AnnounceResponse::decode(&b).unwrap();
        assert_eq!(r.peers.len(), 7);
        let uniq: std::collections::BTreeSet<_> = r.peers.iter().collect();
        assert_eq!(uniq.len(), 7);
    }

    #[test]
    fn a_seeder_gets_leechers_first_then_other_seeders() {
        // aria2 fetching a magnet's metadata announces left=0: it must still get the seeders.
        let mut t = Tracker::new(TrackerConfig::default(), Rng::new(1));
        let now = Instant::from_secs(1);
        for (i, left) in [(0u16, 0u64), (1, 0), (2, 0), (3, 77)] {
            http(
                &mut t,
                now,
                u64::from(i),
                &format!("127.0.1.{}:1", i + 1),
                &announce_q(1, 7000 + i, left, AnnounceEvent::Started),
            );
        }
        let ask = |t: &mut Tracker, n: u64, numwant: u32| {
            let q = announce_q(1, 7000, 0, AnnounceEvent::None)
                .replace("compact=1", &format!("compact=1&numwant={numwant}"));
            let (_, b) = http(t, now, n, "127.0.1.1:1", &q);
            AnnounceResponse::decode(&b).unwrap().peers
        };
        let leecher: SocketAddr = "127.0.1.4:7003".parse().unwrap();
        assert_eq!(ask(&mut t, 10, 1), vec![leecher]);
        let all = ask(&mut t, 11, 50);
        assert_eq!(
            all.len(),
            3,
            "the two other seeders and the leecher, not itself"
        );
        assert_eq!(all.first(), Some(&leecher));
        assert!(!all.contains(&"127.0.1.1:7000".parse().unwrap()));
    }

    #[test]
    fn when_connections_are_full_the_oldest_idle_one_goes_and_a_new_announce_is_answered() {
        let cfg = TrackerConfig {
            max_conns: 3,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg, Rng::new(1));
        for n in 0..3u64 {
            let now = Instant::from_secs(1 + n);
            t.handle_input(
                now,
                Input::Connected {
                    conn: ConnId::inbound(n),
                    peer: addr("127.0.0.9:1"),
                },
            );
        }
        assert!(drain(&mut t).is_empty());
        // A newcomer pushes out the oldest silent connection (0), and only it.
        let now = Instant::from_secs(10);
        let conn = ConnId::inbound(7);
        t.handle_input(
            now,
            Input::Connected {
                conn,
                peer: addr("127.0.0.1:5"),
            },
        );
        assert_eq!(
            drain(&mut t),
            vec![Transmit::Close {
                conn: ConnId::inbound(0)
            }]
        );
        let req = format!(
            "GET /announce?{} HTTP/1.1\r\nHost: t\r\n\r\n",
            announce_q(1, 6881, 10, AnnounceEvent::Started)
        );
        t.handle_input(
            now,
            Input::Received {
                conn,
                data: req.as_bytes(),
            },
        );
        let out = drain(&mut t);
        let Some(Transmit::Send { data, .. }) = out.first() else {
            panic!("no reply: {out:?}");
        };
        assert_eq!(parse_http_response(data).unwrap().0, 200);
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_and_http_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut t = Tracker::new(TrackerConfig::default(), Rng::new(1));
            let now = Instant::from_secs(5);
            t.handle_input(now, Input::Datagram { from: addr("127.0.0.1:1"), data: &data });
            let conn = ConnId::inbound(1);
            t.handle_input(now, Input::Connected { conn, peer: addr("127.0.0.1:2") });
            t.handle_input(now, Input::Received { conn, data: &data });
            t.handle_input(now, Input::Received { conn, data: b"\r\n\r\n" });
            drain(&mut t);
        }
    }
}
