//! Peer and tracker messages. Each travels in one frame on a TCP connection:
//!
//! ```text
//! length u32 (of what follows) | type u8 | body
//! ```
//! Peer: `Hello`, `BufferMap`, `Request`, `Chunk`, `Have`, `Bye`.
//! Tracker: `Announce` (a peer says where it is in a channel) answered by `Peers`,
//! `GetPeers` answered by `Peers`, `ListChannels` answered by `Channels`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use servent_core::framing::{Endian, FrameSpec};

use super::chunk::{CHUNK_OVERHEAD, ChannelId, Chunk, ChunkError, MAX_PAYLOAD};
use super::{Reader, WireError};

/// The frame layout of every message.
pub const FRAME: FrameSpec =
    FrameSpec::length_prefixed(4, Endian::Big, 1 + CHUNK_OVERHEAD + MAX_PAYLOAD);
/// Most chunk numbers in one buffer map.
pub const MAX_MAP_BITS: usize = 2048;
/// Most chunk numbers in one request.
pub const MAX_REQUEST: usize = 64;
/// Most peers in one `Peers` answer.
pub const MAX_PEERS: usize = 200;
/// Most channels in one `Channels` answer.
pub const MAX_CHANNELS: usize = 1000;
/// Longest channel name, bytes of UTF-8.
pub const MAX_NAME: usize = 64;

/// Role flags a peer advertises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// A well-provisioned node (CDN) that the tracker prefers as a parent.
    pub supernode: bool,
    /// The broadcaster.
    pub source: bool,
}

impl Flags {
    fn to_byte(self) -> u8 {
        u8::from(self.supernode) | (u8::from(self.source) << 1)
    }
    fn from_byte(b: u8) -> Flags {
        Flags {
            supernode: b & 1 != 0,
            source: b & 2 != 0,
        }
    }
}

/// What one peer holds: chunks `base..base + bits.len()`, plus its newest keyframe chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferMap {
    /// The first chunk number the map covers.
    pub base: u64,
    /// Bit `i` (LSB first in each byte) says it has chunk `base + i`.
    pub bits: Vec<u8>,
    /// How many bits are meaningful.
    pub len: u16,
    /// The newest keyframe chunk it has, if any (where a newcomer starts).
    pub newest_key: Option<u64>,
}

impl BufferMap {
    /// Whether it says it has `seq`.
    pub fn has(&self, seq: u64) -> bool {
        let Some(i) = seq.checked_sub(self.base) else {
            return false;
        };
        if i >= u64::from(self.len) {
            return false;
        }
        let i = i as usize;
        self.bits
            .get(i / 8)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// The map of the chunk numbers in `seqs` (ascending), at most [`MAX_MAP_BITS`] from the
    /// newest back.
    pub fn from_seqs(seqs: &[u64], newest_key: Option<u64>) -> BufferMap {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return BufferMap {
                base: 0,
                bits: Vec::new(),
                len: 0,
                newest_key,
            };
        };
        let base = first.max(last.saturating_sub(MAX_MAP_BITS as u64 - 1));
        let len = (last - base + 1) as usize;
        let mut bits = vec![0u8; len.div_ceil(8)];
        for &s in seqs.iter().filter(|&&s| s >= base) {
            let i = (s - base) as usize;
            bits[i / 8] |= 1 << (i % 8);
        }
        BufferMap {
            base,
            bits,
            len: len as u16,
            newest_key,
        }
    }
}

/// A message between two viewers (or a viewer and the broadcaster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    /// The first message each way: which channel, where the sender listens, what it can do.
    Hello {
        /// The channel.
        channel: ChannelId,
        /// The TCP port the sender listens on (0: it does not).
        listen_port: u16,
        /// Its role.
        flags: Flags,
        /// Its upload capacity, kbit/s (0: unknown).
        up_kbps: u32,
    },
    /// What the sender holds.
    BufferMap(BufferMap),
    /// Send me these chunks.
    Request(Vec<u64>),
    /// One chunk.
    Chunk(Chunk),
    /// The sender has verified this chunk.
    Have {
        /// The chunk number.
        seq: u64,
        /// It is a keyframe chunk.
        keyframe: bool,
    },
    /// The sender is leaving.
    Bye,
    /// The sender will not send these (its upload is busy or it lacks them): ask elsewhere.
    Refuse(Vec<u64>),
}

/// One peer of a channel, as the tracker knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its upload capacity, kbit/s.
    pub up_kbps: u32,
    /// The newest chunk it has.
    pub position: u64,
    /// Its role.
    pub flags: Flags,
}

/// One channel of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Its id (public key).
    pub channel: ChannelId,
    /// Its name.
    pub name: String,
    /// Viewers announced (the source excluded).
    pub viewers: u32,
    /// The bitrate the source announces, kbit/s.
    pub bitrate_kbps: u32,
}

/// A message to or from the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerMsg {
    /// I am in this channel (or leaving it); answered by `Peers`.
    Announce {
        /// The channel.
        channel: ChannelId,
        /// Its name (the source sets it; viewers send an empty one).
        name: String,
        /// Where the sender listens for peers.
        addr: SocketAddr,
        /// Its upload capacity, kbit/s.
        up_kbps: u32,
        /// The newest chunk it has.
        position: u64,
        /// Its role.
        flags: Flags,
        /// The stream's bitrate, kbit/s (the source's measure; 0 from viewers).
        bitrate_kbps: u32,
        /// It leaves the channel.
        leaving: bool,
        /// How many peers it wants back.
        want: u16,
    },
    /// Peers of a channel, best parents first.
    Peers {
        /// The channel.
        channel: ChannelId,
        /// The peers.
        peers: Vec<PeerInfo>,
    },
    /// List the channels.
    ListChannels,
    /// The directory.
    Channels(Vec<ChannelInfo>),
}

const T_HELLO: u8 = 1;
const T_MAP: u8 = 2;
const T_REQUEST: u8 = 3;
const T_CHUNK: u8 = 4;
const T_HAVE: u8 = 5;
const T_BYE: u8 = 6;
const T_REFUSE: u8 = 7;
const T_ANNOUNCE: u8 = 20;
const T_PEERS: u8 = 21;
const T_LIST: u8 = 22;
const T_CHANNELS: u8 = 23;

fn begin(out: &mut Vec<u8>, ty: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, ty]);
    at
}

fn end(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn get_addr(r: &mut Reader<'_>) -> Result<SocketAddr, WireError> {
    let ip = match r.u8()? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        _ => return Err(WireError::Bad("address family")),
    };
    Ok(SocketAddr::new(ip, r.u16()?))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(MAX_NAME)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn get_str(r: &mut Reader<'_>) -> Result<String, WireError> {
    let n = usize::from(r.u8()?);
    if n > MAX_NAME {
        return Err(WireError::TooLong {
            what: "channel name",
            len: n,
            max: MAX_NAME,
        });
    }
    String::from_utf8(r.bytes(n)?.to_vec()).map_err(|_| WireError::Bad("channel name"))
}

fn count(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<usize, WireError> {
    let n = usize::from(r.u16()?);
    if n > max {
        return Err(WireError::TooLong { what, len: n, max });
    }
    Ok(n)
}

impl PeerMsg {
    /// Appends the framed message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            PeerMsg::Hello {
                channel,
                listen_port,
                flags,
                up_kbps,
            } => {
                let at = begin(out, T_HELLO);
                out.extend_from_slice(channel);
                out.extend_from_slice(&listen_port.to_be_bytes());
                out.push(flags.to_byte());
                out.extend_from_slice(&up_kbps.to_be_bytes());
                end(out, at);
            }
            PeerMsg::BufferMap(m) => {
                let at = begin(out, T_MAP);
                out.extend_from_slice(&m.base.to_be_bytes());
                out.extend_from_slice(&m.newest_key.unwrap_or(u64::MAX).to_be_bytes());
                out.extend_from_slice(&m.len.to_be_bytes());
                out.extend_from_slice(&m.bits[..usize::from(m.len).div_ceil(8)]);
                end(out, at);
            }
            PeerMsg::Request(seqs) | PeerMsg::Refuse(seqs) => {
                let ty = if matches!(self, PeerMsg::Request(_)) {
                    T_REQUEST
                } else {
                    T_REFUSE
                };
                let at = begin(out, ty);
                let seqs = &seqs[..seqs.len().min(MAX_REQUEST)];
                out.extend_from_slice(&(seqs.len() as u16).to_be_bytes());
                for s in seqs {
                    out.extend_from_slice(&s.to_be_bytes());
                }
                end(out, at);
            }
            PeerMsg::Chunk(c) => {
                let at = begin(out, T_CHUNK);
                c.encode(out);
                end(out, at);
            }
            PeerMsg::Have { seq, keyframe } => {
                let at = begin(out, T_HAVE);
                out.extend_from_slice(&seq.to_be_bytes());
                out.push(u8::from(*keyframe));
                end(out, at);
            }
            PeerMsg::Bye => {
                let at = begin(out, T_BYE);
                end(out, at);
            }
        }
    }

    /// The framed message as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes one frame's payload (type and body).
    pub fn decode(payload: &[u8]) -> Result<PeerMsg, ChunkError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8()? {
            T_HELLO => PeerMsg::Hello {
                channel: r.array()?,
                listen_port: r.u16()?,
                flags: Flags::from_byte(r.u8()?),
                up_kbps: r.u32()?,
            },
            T_MAP => {
                let base = r.u64()?;
                let key = r.u64()?;
                let len = r.u16()?;
                if usize::from(len) > MAX_MAP_BITS {
                    return Err(WireError::TooLong {
                        what: "buffer map",
                        len: len.into(),
                        max: MAX_MAP_BITS,
                    }
                    .into());
                }
                let bits = r.bytes(usize::from(len).div_ceil(8))?.to_vec();
                PeerMsg::BufferMap(BufferMap {
                    base,
                    bits,
                    len,
                    newest_key: (key != u64::MAX).then_some(key),
                })
            }
            t @ (T_REQUEST | T_REFUSE) => {
                let n = count(&mut r, "request", MAX_REQUEST)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(r.u64()?);
                }
                if t == T_REQUEST {
                    PeerMsg::Request(v)
                } else {
                    PeerMsg::Refuse(v)
                }
            }
            T_CHUNK => return Ok(PeerMsg::Chunk(Chunk::decode(r.rest())?)),
            T_HAVE => PeerMsg::Have {
                seq: r.u64()?,
                keyframe: r.u8()? != 0,
            },
            T_BYE => PeerMsg::Bye,
            t => return Err(WireError::UnknownType(t).into()),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl TrackerMsg {
    /// Appends the framed message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
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
                let at = begin(out, T_ANNOUNCE);
                out.extend_from_slice(channel);
                put_str(out, name);
                put_addr(out, addr);
                out.extend_from_slice(&up_kbps.to_be_bytes());
                out.extend_from_slice(&position.to_be_bytes());
                out.push(flags.to_byte() | if *leaving { 0x80 } else { 0 });
                out.extend_from_slice(&bitrate_kbps.to_be_bytes());
                out.extend_from_slice(&want.to_be_bytes());
                end(out, at);
            }
            TrackerMsg::Peers { channel, peers } => {
                let at = begin(out, T_PEERS);
                out.extend_from_slice(channel);
                let peers = &peers[..peers.len().min(MAX_PEERS)];
                out.extend_from_slice(&(peers.len() as u16).to_be_bytes());
                for p in peers {
                    put_addr(out, &p.addr);
                    out.extend_from_slice(&p.up_kbps.to_be_bytes());
                    out.extend_from_slice(&p.position.to_be_bytes());
                    out.push(p.flags.to_byte());
                }
                end(out, at);
            }
            TrackerMsg::ListChannels => {
                let at = begin(out, T_LIST);
                end(out, at);
            }
            TrackerMsg::Channels(list) => {
                let at = begin(out, T_CHANNELS);
                let list = &list[..list.len().min(MAX_CHANNELS)];
                out.extend_from_slice(&(list.len() as u16).to_be_bytes());
                for c in list {
                    out.extend_from_slice(&c.channel);
                    put_str(out, &c.name);
                    out.extend_from_slice(&c.viewers.to_be_bytes());
                    out.extend_from_slice(&c.bitrate_kbps.to_be_bytes());
                }
                end(out, at);
            }
        }
    }

    /// The framed message as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes one frame's payload (type and body).
    pub fn decode(payload: &[u8]) -> Result<TrackerMsg, WireError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8()? {
            T_ANNOUNCE => {
                let channel = r.array()?;
                let name = get_str(&mut r)?;
                let addr = get_addr(&mut r)?;
                let up_kbps = r.u32()?;
                let position = r.u64()?;
                let f = r.u8()?;
                TrackerMsg::Announce {
                    channel,
                    name,
                    addr,
                    up_kbps,
                    position,
                    flags: Flags::from_byte(f),
                    leaving: f & 0x80 != 0,
                    bitrate_kbps: r.u32()?,
                    want: r.u16()?,
                }
            }
            T_PEERS => {
                let channel = r.array()?;
                let n = count(&mut r, "peer list", MAX_PEERS)?;
                let mut peers = Vec::with_capacity(n);
                for _ in 0..n {
                    peers.push(PeerInfo {
                        addr: get_addr(&mut r)?,
                        up_kbps: r.u32()?,
                        position: r.u64()?,
                        flags: Flags::from_byte(r.u8()?),
                    });
                }
                TrackerMsg::Peers { channel, peers }
            }
            T_LIST => TrackerMsg::ListChannels,
            T_CHANNELS => {
                let n = count(&mut r, "channel list", MAX_CHANNELS)?;
                let mut v = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    v.push(ChannelInfo {
                        channel: r.array()?,
                        name: get_str(&mut r)?,
                        viewers: r.u32()?,
                        bitrate_kbps: r.u32()?,
                    });
                }
                TrackerMsg::Channels(v)
            }
            t => return Err(WireError::UnknownType(t)),
        };
        r.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payload(framed: &[u8]) -> &[u8] {
        FRAME.split(framed).unwrap().unwrap().payload
    }

    #[test]
    fn peer_messages_round_trip() {
        let k = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let msgs = vec![
            PeerMsg::Hello {
                channel: [1; 32],
                listen_port: 4000,
                flags: Flags {
                    supernode: true,
                    source: false,
                },
                up_kbps: 3400,
            },
            PeerMsg::BufferMap(BufferMap::from_seqs(&[3, 4, 9], Some(4))),
            PeerMsg::Request(vec![1, 2, 3]),
            PeerMsg::Refuse(vec![4]),
            PeerMsg::Chunk(Chunk::sign(&k, 5, 6, true, true, vec![0x47; 188])),
            PeerMsg::Have {
                seq: 9,
                keyframe: false,
            },
            PeerMsg::Bye,
        ];
        for m in msgs {
            assert_eq!(PeerMsg::decode(payload(&m.to_bytes())).unwrap(), m);
        }
        let m = BufferMap::from_seqs(&[3, 4, 9], None);
        assert!(m.has(3) && m.has(9) && !m.has(5) && !m.has(2) && !m.has(10));
    }

    #[test]
    fn tracker_messages_round_trip() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let msgs = vec![
            TrackerMsg::Announce {
                channel: [2; 32],
                name: "news".into(),
                addr,
                up_kbps: 1,
                position: 2,
                flags: Flags::default(),
                bitrate_kbps: 1700,
                leaving: true,
                want: 8,
            },
            TrackerMsg::Peers {
                channel: [2; 32],
                peers: vec![PeerInfo {
                    addr: "[::1]:7".parse().unwrap(),
                    up_kbps: 5,
                    position: 6,
                    flags: Flags {
                        supernode: false,
                        source: true,
                    },
                }],
            },
            TrackerMsg::ListChannels,
            TrackerMsg::Channels(vec![ChannelInfo {
                channel: [4; 32],
                name: "sport".into(),
                viewers: 3,
                bitrate_kbps: 1700,
            }]),
        ];
        for m in msgs {
            assert_eq!(TrackerMsg::decode(payload(&m.to_bytes())).unwrap(), m);
        }
    }

    #[test]
    fn oversized_counts_are_refused_before_allocating() {
        let mut b = vec![T_REQUEST];
        b.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            PeerMsg::decode(&b),
            Err(ChunkError::Wire(WireError::TooLong { .. }))
        ));
        let mut b = vec![T_CHANNELS];
        b.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            TrackerMsg::decode(&b),
            Err(WireError::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = PeerMsg::decode(&b);
            let _ = TrackerMsg::decode(&b);
            let _ = Chunk::decode(&b);
            let _ = crate::wire::ts::parse_header(&b);
            if b.len() >= 188 {
                let p = &b[..188];
                if let Ok(h) = crate::wire::ts::parse_header(p) {
                    let _ = crate::wire::ts::pat_pmt_pids(p, &h);
                    let _ = crate::wire::ts::pmt_video_pids(p, &h);
                }
            }
        }

        #[test]
        fn decoding_arbitrary_bodies_of_each_type_never_panics(
            t in prop_oneof![1u8..=7, 20u8..=23],
            b in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut m = vec![t];
            m.extend_from_slice(&b);
            let _ = PeerMsg::decode(&m);
            let _ = TrackerMsg::decode(&m);
        }
    }
}
