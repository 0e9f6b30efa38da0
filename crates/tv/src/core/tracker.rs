//! The channel tracker and directory: per-channel peer lists with each peer's upload
//! capacity and buffer position. A peer announces itself every few seconds (over one TCP
//! connection it keeps open) and gets back the peers it should partner with: supernodes
//! first when the viewers' own upload falls short of what the audience needs, then the
//! peers with the most spare capacity per child handed out so far, fresh positions first.
//! A peer that stops announcing, or whose connection ends, leaves the list.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use servent_core::framing::RecvBuf;
use servent_core::{ConnId, Core, Input, Instant, KeyedMap, Rng, Transmit, keyed_map};

use crate::wire::chunk::ChannelId;
use crate::wire::msg::{ChannelInfo, FRAME, MAX_CHANNELS, MAX_PEERS, PeerInfo, TrackerMsg};

/// A peer that has not announced for this long is dropped.
pub const PEER_TTL: Duration = Duration::from_secs(10);
/// Most channels tracked.
pub const MAX_TRACKED_CHANNELS: usize = MAX_CHANNELS;
/// Most peers per channel.
pub const MAX_CHANNEL_PEERS: usize = 100_000;
/// Most bytes of one request (an announce is small).
const MAX_REQUEST_BYTES: usize = 1024;
const SWEEP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Entry {
    info: PeerInfo,
    conn: ConnId,
    seen: Instant,
    handed: u32,
}

#[derive(Debug)]
struct Channel {
    name: String,
    bitrate_kbps: u32,
    peers: KeyedMap<SocketAddr, Entry>,
}

/// What the tracker tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerEvent {
    /// A peer joined a channel.
    Joined {
        /// The channel.
        channel: ChannelId,
        /// Where the peer listens.
        addr: SocketAddr,
    },
    /// A peer left (said so, its connection ended, or it stopped announcing).
    Left {
        /// The channel.
        channel: ChannelId,
        /// Where it listened.
        addr: SocketAddr,
    },
}

/// The tracker core. Run loop: the [`Core`] contract (transmits, then events, then timer).
#[derive(Debug)]
pub struct Tracker {
    rng: Rng,
    channels: KeyedMap<ChannelId, Channel>,
    conns: std::collections::BTreeMap<ConnId, RecvBuf>,
    out: VecDeque<Transmit>,
    events: VecDeque<TrackerEvent>,
    next_sweep: Instant,
}

impl Tracker {
    /// An empty tracker.
    pub fn new(mut rng: Rng) -> Tracker {
        let channels = keyed_map(&mut rng);
        Tracker {
            rng,
            channels,
            conns: Default::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_sweep: Instant::ZERO,
        }
    }

    /// The directory: every channel with its viewers and bitrate, by name.
    pub fn directory(&self) -> Vec<ChannelInfo> {
        let mut v: Vec<ChannelInfo> = self
            .channels
            .iter()
            .map(|(id, c)| ChannelInfo {
                channel: *id,
                name: c.name.clone(),
                viewers: c.peers.values().filter(|e| !e.info.flags.source).count() as u32,
                bitrate_kbps: c.bitrate_kbps,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.channel.cmp(&b.channel)));
        v
    }

    /// The peers of `channel` the tracker knows.
    pub fn peers(&self, channel: &ChannelId) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .channels
            .get(channel)
            .map(|c| c.peers.values().map(|e| e.info).collect())
            .unwrap_or_default();
        v.sort_by_key(|p| p.addr);
        v
    }

    fn send(&mut self, conn: ConnId, m: &TrackerMsg) {
        self.out.push_back(Transmit::Send {
            conn,
            data: m.to_bytes(),
        });
    }

    fn handle_msg(&mut self, now: Instant, conn: ConnId, msg: TrackerMsg) {
        match msg {
            TrackerMsg::Announce {
                channel,
                name,
                addr,
                up_kbps,
                position,
                flags,
                bitrate_kbps,
                leaving,
                want,
            } => {
                if !self.channels.contains_key(&channel) {
                    if leaving || self.channels.len() >= MAX_TRACKED_CHANNELS {
                        return;
                    }
                    let peers = keyed_map(&mut self.rng);
                    self.channels.insert(
                        channel,
                        Channel {
                            name: String::new(),
                            bitrate_kbps: 0,
                            peers,
                        },
                    );
                }
                let Some(ch) = self.channels.get_mut(&channel) else {
                    return;
                };
                if flags.source {
                    if !name.is_empty() {
                        ch.name = name;
                    }
                    ch.bitrate_kbps = bitrate_kbps;
                }
                if leaving {
                    if ch.peers.remove(&addr).is_some() {
                        self.events.push_back(TrackerEvent::Left { channel, addr });
                    }
                    return;
                }
                let info = PeerInfo {
                    addr,
                    up_kbps,
                    position,
                    flags,
                };
                let full = ch.peers.len() >= MAX_CHANNEL_PEERS;
                match ch.peers.get_mut(&addr) {
                    Some(e) => {
                        e.info = info;
                        e.conn = conn;
                        e.seen = now;
                    }
                    None if !full => {
                        ch.peers.insert(
                            addr,
                            Entry {
                                info,
                                conn,
                                seen: now,
                                handed: 0,
                            },
                        );
                        self.events
                            .push_back(TrackerEvent::Joined { channel, addr });
                    }
                    None => {}
                }
                let peers = self.choose(&channel, addr, usize::from(want).min(MAX_PEERS));
                self.send(conn, &TrackerMsg::Peers { channel, peers });
            }
            TrackerMsg::ListChannels => {
                let d = self.directory();
                self.send(conn, &TrackerMsg::Channels(d));
            }
            TrackerMsg::Peers { .. } | TrackerMsg::Channels(_) => {}
        }
    }

    /// Up to `want` parents for `asker`, best first (see the module documentation).
    fn choose(&mut self, channel: &ChannelId, asker: SocketAddr, want: usize) -> Vec<PeerInfo> {
        let Some(ch) = self.channels.get_mut(channel) else {
            return Vec::new();
        };
        let viewers: Vec<&Entry> = ch.peers.values().filter(|e| !e.info.flags.source).collect();
        let demand = u64::from(ch.bitrate_kbps) * viewers.len() as u64;
        let supply: u64 = ch
            .peers
            .values()
            .filter(|e| !e.info.flags.supernode)
            .map(|e| u64::from(e.info.up_kbps))
            .sum();
        let short = supply < demand;
        let newest = ch
            .peers
            .values()
            .map(|e| e.info.position)
            .max()
            .unwrap_or(0);
        let mut scored: Vec<(f64, u64, SocketAddr)> = ch
            .peers
            .values()
            .filter(|e| e.info.addr != asker)
            .map(|e| {
                let mut s = f64::from(e.info.up_kbps.max(1)) / f64::from(1 + e.handed);
                if e.info.flags.supernode && short {
                    s *= 8.0;
                }
                if e.info.position + 10 < newest {
                    s *= 0.5;
                }
                (s, self.rng.next_u64(), e.info.addr)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(want);
        let mut out = Vec::with_capacity(scored.len());
        for (_, _, addr) in scored {
            if let Some(e) = ch.peers.get_mut(&addr) {
                e.handed = e.handed.saturating_add(1);
                out.push(e.info);
            }
        }
        out
    }

    fn sweep(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (id, ch) in self.channels.iter_mut() {
            let mut dead: Vec<SocketAddr> = ch
                .peers
                .values()
                .filter(|e| now.saturating_duration_since(e.seen) > PEER_TTL)
                .map(|e| e.info.addr)
                .collect();
            dead.sort();
            for a in dead {
                ch.peers.remove(&a);
                gone.push((*id, a));
            }
            for e in ch.peers.values_mut() {
                e.handed /= 2;
            }
        }
        gone.sort();
        for (channel, addr) in gone {
            self.events.push_back(TrackerEvent::Left { channel, addr });
        }
        let mut empty: Vec<ChannelId> = self
            .channels
            .iter()
            .filter(|(_, c)| c.peers.is_empty())
            .map(|(id, _)| *id)
            .collect();
        empty.sort();
        for id in empty {
            self.channels.remove(&id);
        }
    }

    fn closed(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        let mut gone = Vec::new();
        for (id, ch) in self.channels.iter_mut() {
            let mut dead: Vec<SocketAddr> = ch
                .peers
                .values()
                .filter(|e| e.conn == conn)
                .map(|e| e.info.addr)
                .collect();
            dead.sort();
            for a in dead {
                ch.peers.remove(&a);
                gone.push((*id, a));
            }
        }
        gone.sort();
        for (channel, addr) in gone {
            self.events.push_back(TrackerEvent::Left { channel, addr });
        }
    }
}

impl Core for Tracker {
    type Command = std::convert::Infallible;
    type Event = TrackerEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, Self::Command>) {
        match input {
            Input::Connected { conn, .. } => {
                self.conns.insert(conn, RecvBuf::new(MAX_REQUEST_BYTES));
            }
            Input::Received { conn, data } => {
                let Some(buf) = self.conns.get_mut(&conn) else {
                    return;
                };
                let mut msgs = Vec::new();
                let mut bad = buf.extend(data).is_err();
                while !bad {
                    let spec = servent_core::framing::FrameSpec {
                        max_payload: MAX_REQUEST_BYTES - 4,
                        ..FRAME
                    };
                    match buf.next_frame(&spec) {
                        Ok(Some(f)) => match TrackerMsg::decode(f.payload) {
                            Ok(m) => msgs.push(m),
                            Err(_) => bad = true,
                        },
                        Ok(None) => break,
                        Err(_) => bad = true,
                    }
                }
                for m in msgs {
                    self.handle_msg(now, conn, m);
                }
                if bad {
                    self.out.push_back(Transmit::Close { conn });
                    self.closed(conn);
                }
            }
            Input::Closed { conn, reason: _ } => self.closed(conn),
            Input::ConnectFailed { .. } | Input::Datagram { .. } | Input::Command(_) => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + SWEEP;
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_event(&mut self) -> Option<TrackerEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_sweep)
    }
}
