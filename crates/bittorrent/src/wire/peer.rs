//! The peer wire protocol: handshake and messages of BEP 3, the Fast extension (BEP 6), the
//! extension protocol (BEP 10) with its handshake, and peer exchange (BEP 11).
//!
//! Decoding borrows from the caller's receive buffer and reports how many bytes a message
//! took ([`decode_message`]); encoding appends to a caller-owned buffer ([`Message::encode_into`]).
//! Every length is checked before anything is stored.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use servent_core::framing::{Endian, FrameError, FrameSpec};
use thiserror::Error;

use crate::bencode::{self, Limits, OwnedValue};
use crate::metainfo::InfoHash;
use crate::tracker::{compact_peers, parse_compact_v4, parse_compact_v6};

/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of the handshake.
pub const HANDSHAKE_LEN: usize = 68;
/// The standard block size; larger requests are refused.
pub const BLOCK_LEN: u32 = 16 * 1024;
/// Largest message accepted: a bitfield for 2^21 pieces, or a block, or extension messages.
pub const MAX_MESSAGE_LEN: usize = 1 << 18;
/// Largest extension message (BEP 10): the frame limit binds first; named for the check.
pub const MAX_EXTENSION_LEN: usize = 1 << 20;
/// Message framing: a 4-byte big-endian length, then the message.
pub const FRAME: FrameSpec = FrameSpec::length_prefixed(4, Endian::Big, MAX_MESSAGE_LEN);

/// Why a peer's bytes are refused; each ends the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The handshake does not start with the BitTorrent protocol string.
    #[error("not a BitTorrent handshake")]
    BadHandshake,
    /// A message longer than [`MAX_MESSAGE_LEN`].
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A message whose length does not fit its type.
    #[error("message {id} has the wrong length {len}")]
    BadLength {
        /// Message id.
        id: u8,
        /// Payload length.
        len: usize,
    },
    /// An unknown message id.
    #[error("unknown message id {0}")]
    UnknownId(u8),
    /// A message longer than anything its type can carry (seen from its 5-byte head, before
    /// the body is buffered).
    #[error("message {id} of {len} bytes is longer than its type allows ({limit})")]
    TooLong {
        /// Message id.
        id: u8,
        /// Its length field.
        len: usize,
        /// The most its type can carry.
        limit: usize,
    },
    /// An extension message whose bencoded part is malformed.
    #[error("bad extension message: {0}")]
    Extension(&'static str),
}

/// Reserved-bit capabilities of a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// BEP 10 extension protocol (byte 5, 0x10).
    pub const EXTENSION: (usize, u8) = (5, 0x10);
    /// BEP 6 Fast extension (byte 7, 0x04).
    pub const FAST: (usize, u8) = (7, 0x04);
    /// BEP 5 DHT (byte 7, 0x01).
    pub const DHT: (usize, u8) = (7, 0x01);

    /// What servent announces: the Fast and extension protocols.
    pub fn ours() -> Reserved {
        let mut r = Reserved::default();
        r.set(Reserved::FAST);
        r.set(Reserved::EXTENSION);
        r
    }

    /// Sets one capability bit.
    pub fn set(&mut self, (byte, bit): (usize, u8)) {
        if let Some(b) = self.0.get_mut(byte) {
            *b |= bit;
        }
    }

    /// Whether a capability bit is set.
    pub fn has(&self, (byte, bit): (usize, u8)) -> bool {
        self.0.get(byte).is_some_and(|b| b & bit != 0)
    }
}

/// The 68-byte handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Capabilities.
    pub reserved: Reserved,
    /// The torrent.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// The handshake bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut o = [0u8; HANDSHAKE_LEN];
        let mut v = Vec::with_capacity(HANDSHAKE_LEN);
        v.push(19);
        v.extend_from_slice(PROTOCOL);
        v.extend_from_slice(&self.reserved.0);
        v.extend_from_slice(&self.info_hash.0);
        v.extend_from_slice(&self.peer_id);
        o.copy_from_slice(&v);
        o
    }

    /// Parses a handshake from the front of `buf`: `Ok(None)` while fewer than 68 bytes.
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        // Reject a wrong protocol string as soon as its bytes are in.
        let n = buf.len().min(20);
        let mut expect = [0u8; 20];
        expect[0] = 19;
        expect[1..].copy_from_slice(PROTOCOL);
        if buf.get(..n) != expect.get(..n) {
            return Err(WireError::BadHandshake);
        }
        let Some(h) = buf.get(..HANDSHAKE_LEN) else {
            return Ok(None);
        };
        let arr = |r: std::ops::Range<usize>| -> Result<[u8; 20], WireError> {
            h.get(r)
                .and_then(|s| s.try_into().ok())
                .ok_or(WireError::BadHandshake)
        };
        let reserved: [u8; 8] = h
            .get(20..28)
            .and_then(|s| s.try_into().ok())
            .ok_or(WireError::BadHandshake)?;
        Ok(Some(Handshake {
            reserved: Reserved(reserved),
            info_hash: InfoHash(arr(28..48)?),
            peer_id: arr(48..68)?,
        }))
    }
}

/// One block of a piece: where it starts and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRef {
    /// Piece index.
    pub index: u32,
    /// Byte offset in the piece.
    pub begin: u32,
    /// Length.
    pub length: u32,
}

/// A peer wire message, borrowing its payload from the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Zero-length message.
    KeepAlive,
    /// 0.
    Choke,
    /// 1.
    Unchoke,
    /// 2.
    Interested,
    /// 3.
    NotInterested,
    /// 4: the sender has verified a piece.
    Have(u32),
    /// 5: the sender's pieces, high bit of the first byte is piece 0.
    Bitfield(&'a [u8]),
    /// 6.
    Request(BlockRef),
    /// 7.
    Piece {
        /// Piece index.
        index: u32,
        /// Offset.
        begin: u32,
        /// The data.
        data: &'a [u8],
    },
    /// 8.
    Cancel(BlockRef),
    /// 9: the sender's DHT port.
    Port(u16),
    /// 0x0D (BEP 6).
    Suggest(u32),
    /// 0x0E (BEP 6).
    HaveAll,
    /// 0x0F (BEP 6).
    HaveNone,
    /// 0x10 (BEP 6): a request the sender will not serve.
    Reject(BlockRef),
    /// 0x11 (BEP 6): a piece the receiver may request while choked.
    AllowedFast(u32),
    /// 20 (BEP 10): an extension message; id 0 is the extension handshake.
    Extended {
        /// The extension's id as the receiver assigned it.
        id: u8,
        /// The payload.
        payload: &'a [u8],
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_be_bytes)
}

impl Message<'_> {
    /// The message id (`None` for keep-alive).
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => 0,
            Message::Unchoke => 1,
            Message::Interested => 2,
            Message::NotInterested => 3,
            Message::Have(_) => 4,
            Message::Bitfield(_) => 5,
            Message::Request(_) => 6,
            Message::Piece { .. } => 7,
            Message::Cancel(_) => 8,
            Message::Port(_) => 9,
            Message::Suggest(_) => 0x0D,
            Message::HaveAll => 0x0E,
            Message::HaveNone => 0x0F,
            Message::Reject(_) => 0x10,
            Message::AllowedFast(_) => 0x11,
            Message::Extended { .. } => 20,
        })
    }

    /// Appends the framed message (length prefix included).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let Some(id) = self.id() else {
            out.extend_from_slice(&[0, 0, 0, 0]);
            return;
        };
        let body_len = match self {
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 4,
            Message::Bitfield(b) => b.len(),
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 12,
            Message::Piece { data, .. } => 8 + data.len(),
            Message::Port(_) => 2,
            Message::Extended { payload, .. } => 1 + payload.len(),
            _ => 0,
        };
        out.extend_from_slice(&((1 + body_len) as u32).to_be_bytes());
        out.push(id);
        match self {
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => {
                out.extend_from_slice(&i.to_be_bytes());
            }
            Message::Bitfield(b) => out.extend_from_slice(b),
            Message::Request(r) | Message::Cancel(r) | Message::Reject(r) => {
                out.extend_from_slice(&r.index.to_be_bytes());
                out.extend_from_slice(&r.begin.to_be_bytes());
                out.extend_from_slice(&r.length.to_be_bytes());
            }
            Message::Piece { index, begin, data } => {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&begin.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Port(p) => out.extend_from_slice(&p.to_be_bytes()),
            Message::Extended { id, payload } => {
                out.push(*id);
                out.extend_from_slice(payload);
            }
            _ => {}
        }
    }

    /// The framed message as a new vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }
}

/// Decodes one framed message from the front of `buf`: the message and the bytes it took,
/// `Ok(None)` when more bytes are needed.
/// The most bytes (id included, length prefix not) a message of type `id` can justify in a
/// torrent of `pieces` pieces (0: not known yet, as before a magnet's metadata arrives):
/// a piece message carries at most one [`BLOCK_LEN`] block (we never request more), a bitfield
/// `ceil(pieces / 8)` bytes, an extension message [`MAX_EXTENSION_LEN`]; fixed-size messages
/// their size (an unknown id is refused when decoded). Never above [`MAX_MESSAGE_LEN`].
pub fn message_len_limit(id: u8, pieces: u32) -> usize {
    let l = match id {
        0..=3 | 0x0E | 0x0F => 1,
        4 | 0x0D | 0x11 => 5,
        5 if pieces > 0 => 1 + (pieces as usize).div_ceil(8),
        6 | 8 | 0x10 => 13,
        7 => 9 + BLOCK_LEN as usize,
        9 => 3,
        20 => MAX_EXTENSION_LEN,
        _ => MAX_MESSAGE_LEN,
    };
    l.min(MAX_MESSAGE_LEN)
}

/// Checks the head (length and id) of the next message in `buf` against
/// [`message_len_limit`], so an oversized message is refused when its first 5 bytes arrive,
/// not after up to [`MAX_MESSAGE_LEN`] bytes of it were buffered.
pub fn check_message_head(buf: &[u8], pieces: u32) -> Result<(), WireError> {
    let (Some(len), Some(&id)) = (buf.get(..4), buf.get(4)) else {
        return Ok(());
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let limit = message_len_limit(id, pieces);
    if len > limit {
        return Err(WireError::TooLong { id, len, limit });
    }
    Ok(())
}

pub fn decode_message(buf: &[u8]) -> Result<Option<(Message<'_>, usize)>, WireError> {
    let Some(frame) = FRAME.split(buf)? else {
        return Ok(None);
    };
    let used = frame.len();
    let p = frame.payload;
    let Some((&id, body)) = p.split_first() else {
        return Ok(Some((Message::KeepAlive, used)));
    };
    let want = |n: usize| {
        if body.len() == n {
            Ok(())
        } else {
            Err(WireError::BadLength {
                id,
                len: body.len(),
            })
        }
    };
    let block = || BlockRef {
        index: be32(body, 0),
        begin: be32(body, 4),
        length: be32(body, 8),
    };
    let m = match id {
        0 => want(0).map(|_| Message::Choke)?,
        1 => want(0).map(|_| Message::Unchoke)?,
        2 => want(0).map(|_| Message::Interested)?,
        3 => want(0).map(|_| Message::NotInterested)?,
        4 => want(4).map(|_| Message::Have(be32(body, 0)))?,
        5 => Message::Bitfield(body),
        6 => want(12).map(|_| Message::Request(block()))?,
        7 => {
            if body.len() < 8 {
                return Err(WireError::BadLength {
                    id,
                    len: body.len(),
                });
            }
            Message::Piece {
                index: be32(body, 0),
                begin: be32(body, 4),
                data: body.get(8..).unwrap_or_default(),
            }
        }
        8 => want(12).map(|_| Message::Cancel(block()))?,
        9 => want(2).map(|_| {
            Message::Port(u16::from_be_bytes([
                body.first().copied().unwrap_or(0),
                body.get(1).copied().unwrap_or(0),
            ]))
        })?,
        0x0D => want(4).map(|_| Message::Suggest(be32(body, 0)))?,
        0x0E => want(0).map(|_| Message::HaveAll)?,
        0x0F => want(0).map(|_| Message::HaveNone)?,
        0x10 => want(12).map(|_| Message::Reject(block()))?,
        0x11 => want(4).map(|_| Message::AllowedFast(be32(body, 0)))?,
        20 => {
            let (&ext, payload) = body
                .split_first()
                .ok_or(WireError::BadLength { id, len: 0 })?;
            Message::Extended { id: ext, payload }
        }
        other => return Err(WireError::UnknownId(other)),
    };
    Ok(Some((m, used)))
}

/// Our id for `ut_pex` in extension handshakes we send.
pub const UT_PEX_ID: u8 = 1;
/// Our id for `ut_metadata` (BEP 9) in extension handshakes we send.
pub const UT_METADATA_ID: u8 = 2;

/// The BEP 10 extension handshake (extended message id 0).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExtHandshake {
    /// The sender's id for `ut_pex`, if it speaks it.
    pub ut_pex: Option<u8>,
    /// The sender's id for `ut_metadata`, if it speaks it.
    pub ut_metadata: Option<u8>,
    /// The sender's listen port.
    pub port: Option<u16>,
    /// Client name and version.
    pub client: Option<String>,
    /// Requests the sender queues per peer.
    pub reqq: Option<u32>,
    /// Size of the info dictionary (BEP 9).
    pub metadata_size: Option<u32>,
}

impl ExtHandshake {
    /// The bencoded payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = OwnedValue::dict();
        if let Some(i) = self.ut_pex {
            m = m.with("ut_pex", OwnedValue::Int(i64::from(i)));
        }
        if let Some(i) = self.ut_metadata {
            m = m.with("ut_metadata", OwnedValue::Int(i64::from(i)));
        }
        let mut d = OwnedValue::dict().with("m", m);
        if let Some(p) = self.port {
            d = d.with("p", OwnedValue::Int(i64::from(p)));
        }
        if let Some(v) = &self.client {
            d = d.with("v", OwnedValue::bytes(v));
        }
        if let Some(q) = self.reqq {
            d = d.with("reqq", OwnedValue::Int(i64::from(q)));
        }
        if let Some(s) = self.metadata_size {
            d = d.with("metadata_size", OwnedValue::Int(i64::from(s)));
        }
        d.encode()
    }

    /// Parses the payload; unknown keys are ignored, an id of 0 means "disabled" (BEP 10).
    pub fn decode(payload: &[u8]) -> Result<ExtHandshake, WireError> {
        let v = bencode::decode(payload, &Limits::lenient_order())
            .map_err(|_| WireError::Extension("handshake is not bencode"))?;
        let d = v
            .as_dict()
            .ok_or(WireError::Extension("handshake is not a dictionary"))?;
        let m = d.dict(b"m");
        let ext_id = |k: &[u8]| {
            m.and_then(|m| m.int(k))
                .and_then(|i| u8::try_from(i).ok())
                .filter(|i| *i != 0)
        };
        Ok(ExtHandshake {
            ut_pex: ext_id(b"ut_pex"),
            ut_metadata: ext_id(b"ut_metadata"),
            port: d
                .int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            client: d.str(b"v").map(str::to_string),
            reqq: d.int(b"reqq").and_then(|q| u32::try_from(q).ok()),
            metadata_size: d.int(b"metadata_size").and_then(|q| u32::try_from(q).ok()),
        })
    }
}

/// A BEP 11 peer exchange message.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pex {
    /// Peers the sender connected to since its last message.
    pub added: Vec<SocketAddr>,
    /// Peers it disconnected from.
    pub dropped: Vec<SocketAddr>,
}

/// Most peers a PEX message may add or drop (BEP 11 says 50; we accept some slack).
pub const MAX_PEX: usize = 200;

impl Pex {
    /// The bencoded payload.
    pub fn encode(&self) -> Vec<u8> {
        let (a4, a6) = compact_peers(&self.added);
        let (d4, d6) = compact_peers(&self.dropped);
        let flags = vec![0u8; a4.len() / 6];
        let mut d = OwnedValue::dict()
            .with("added", OwnedValue::Bytes(a4))
            .with("added.f", OwnedValue::Bytes(flags))
            .with("dropped", OwnedValue::Bytes(d4));
        if !a6.is_empty() {
            d = d.with("added6", OwnedValue::Bytes(a6));
        }
        if !d6.is_empty() {
            d = d.with("dropped6", OwnedValue::Bytes(d6));
        }
        d.encode()
    }

    /// Parses the payload.
    pub fn decode(payload: &[u8]) -> Result<Pex, WireError> {
        let v = bencode::decode(payload, &Limits::lenient_order())
            .map_err(|_| WireError::Extension("pex is not bencode"))?;
        let d = v
            .as_dict()
            .ok_or(WireError::Extension("pex is not a dictionary"))?;
        let get = |k4: &[u8], k6: &[u8]| -> Result<Vec<SocketAddr>, WireError> {
            let mut out = parse_compact_v4(d.bytes(k4).unwrap_or_default())
                .map_err(|_| WireError::Extension("bad compact peers"))?;
            out.extend(
                parse_compact_v6(d.bytes(k6).unwrap_or_default())
                    .map_err(|_| WireError::Extension("bad compact peers"))?,
            );
            if out.len() > MAX_PEX {
                return Err(WireError::Extension("too many peers"));
            }
            Ok(out)
        };
        Ok(Pex {
            added: get(b"added", b"added6")?,
            dropped: get(b"dropped", b"dropped6")?,
        })
    }
}

/// The BEP 6 allowed-fast set: `k` pieces a peer at `ip` may request while choked, computed
/// as the BEP specifies (SHA-1 chain over the /24 network and the info-hash).
pub fn allowed_fast_set(ip: Ipv4Addr, info_hash: &InfoHash, num_pieces: u32, k: usize) -> Vec<u32> {
    use sha1::{Digest, Sha1};
    let mut out = Vec::with_capacity(k);
    if num_pieces == 0 {
        return out;
    }
    let k = k.min(num_pieces as usize);
    let masked = u32::from(ip) & 0xFFFF_FF00;
    let mut x = masked.to_be_bytes().to_vec();
    x.extend_from_slice(&info_hash.0);
    // Bounded: each round adds up to 5 indexes; stop after enough rounds in any case.
    for _ in 0..(k * 64 + 16) {
        if out.len() >= k {
            break;
        }
        let h: [u8; 20] = Sha1::digest(&x).into();
        for i in 0..5 {
            if out.len() >= k {
                break;
            }
            let y = be32(&h, i * 4);
            let index = y % num_pieces;
            if !out.contains(&index) {
                out.push(index);
            }
        }
        x = h.to_vec();
    }
    out
}

/// The compact IPv4 form of an address, if it is one (for PEX and trackers).
pub fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_message_type_is_held_to_the_length_it_can_justify() {
        let head = |len: u32, id: u8| {
            let l = len.to_be_bytes();
            vec![l[0], l[1], l[2], l[3], id]
        };
        // A full block fits; one byte more is refused from the head alone.
        assert!(check_message_head(&head(9 + BLOCK_LEN, 7), 100).is_ok());
        assert!(matches!(
            check_message_head(&head(10 + BLOCK_LEN, 7), 100),
            Err(WireError::TooLong { id: 7, .. })
        ));
        // A bitfield of 100 pieces is 13 bytes (+1 for the id).
        assert!(check_message_head(&head(14, 5), 100).is_ok());
        assert!(check_message_head(&head(15, 5), 100).is_err());
        // Pieces unknown (magnet): the frame limit.
        assert!(check_message_head(&head(MAX_MESSAGE_LEN as u32, 5), 0).is_ok());
        assert!(check_message_head(&head(6, 0), 100).is_err());
        assert!(check_message_head(&head(14, 6), 100).is_err());
        assert!(check_message_head(&head(0xFFFF_FFFF, 20), 100).is_err());
        // Fewer than 5 bytes: nothing to judge yet; a keep-alive is fine.
        assert!(check_message_head(&[0xFF, 0xFF, 0xFF], 100).is_ok());
        assert!(check_message_head(&[0, 0, 0, 0], 100).is_ok());
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handshake_golden_bytes() {
        let h = Handshake {
            reserved: Reserved::ours(),
            info_hash: InfoHash([0xAA; 20]),
            peer_id: *b"-SV0001-000000000000",
        };
        let b = h.encode();
        assert_eq!(&b[..20], b"\x13BitTorrent protocol");
        assert_eq!(&b[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(Handshake::decode(&b), Ok(Some(h)));
        assert_eq!(Handshake::decode(&b[..67]), Ok(None));
        assert_eq!(
            Handshake::decode(b"\x13BitTorrent protocoX"),
            Err(WireError::BadHandshake)
        );
        assert_eq!(Handshake::decode(b"GET /"), Err(WireError::BadHandshake));
    }

    #[test]
    fn message_golden_bytes() {
        let cases: Vec<(Message<'_>, &[u8])> = vec![
            (Message::KeepAlive, b"\0\0\0\0"),
            (Message::Choke, b"\0\0\0\x01\x00"),
            (Message::Unchoke, b"\0\0\0\x01\x01"),
            (Message::Interested, b"\0\0\0\x01\x02"),
            (Message::NotInterested, b"\0\0\0\x01\x03"),
            (Message::Have(258), b"\0\0\0\x05\x04\0\0\x01\x02"),
            (Message::Bitfield(&[0xF0]), b"\0\0\0\x02\x05\xF0"),
            (
                Message::Request(BlockRef {
                    index: 1,
                    begin: 16384,
                    length: 16384,
                }),
                b"\0\0\0\x0d\x06\0\0\0\x01\0\0\x40\0\0\0\x40\0",
            ),
            (
                Message::Piece {
                    index: 2,
                    begin: 0,
                    data: b"xy",
                },
                b"\0\0\0\x0b\x07\0\0\0\x02\0\0\0\0xy",
            ),
            (
                Message::Cancel(BlockRef {
                    index: 1,
                    begin: 0,
                    length: 1,
                }),
                b"\0\0\0\x0d\x08\0\0\0\x01\0\0\0\0\0\0\0\x01",
            ),
            (Message::Port(6881), b"\0\0\0\x03\x09\x1a\xe1"),
            (Message::Suggest(3), b"\0\0\0\x05\x0d\0\0\0\x03"),
            (Message::HaveAll, b"\0\0\0\x01\x0e"),
            (Message::HaveNone, b"\0\0\0\x01\x0f"),
            (
                Message::Reject(BlockRef {
                    index: 0,
                    begin: 0,
                    length: 16384,
                }),
                b"\0\0\0\x0d\x10\0\0\0\0\0\0\0\0\0\0\x40\0",
            ),
            (Message::AllowedFast(7), b"\0\0\0\x05\x11\0\0\0\x07"),
            (
                Message::Extended {
                    id: 0,
                    payload: b"de",
                },
                b"\0\0\0\x04\x14\0de",
            ),
        ];
        for (m, bytes) in cases {
            assert_eq!(m.encode(), bytes, "{m:?}");
            assert_eq!(decode_message(bytes), Ok(Some((m, bytes.len()))));
        }
    }

    #[test]
    fn partial_oversized_and_misshapen_messages() {
        assert_eq!(decode_message(b"\0\0\0\x05\x04\0\0"), Ok(None));
        assert!(matches!(
            decode_message(b"\x10\0\0\0"),
            Err(WireError::Frame(_))
        ));
        assert_eq!(
            decode_message(b"\0\0\0\x02\x00\x00"),
            Err(WireError::BadLength { id: 0, len: 1 })
        );
        assert_eq!(
            decode_message(b"\0\0\0\x01\x63"),
            Err(WireError::UnknownId(0x63))
        );
        assert_eq!(
            decode_message(b"\0\0\0\x04\x07\0\0\0"),
            Err(WireError::BadLength { id: 7, len: 3 })
        );
    }

    #[test]
    fn extension_handshake_round_trips_and_golden() {
        let h = ExtHandshake {
            ut_pex: Some(1),
            ut_metadata: Some(2),
            port: Some(6881),
            client: Some("servent 0.1".into()),
            reqq: Some(500),
            metadata_size: None,
        };
        let b = h.encode();
        assert_eq!(
            b,
            b"d1:md11:ut_metadatai2e6:ut_pexi1ee1:pi6881e4:reqqi500e1:v11:servent 0.1e"
        );
        assert_eq!(ExtHandshake::decode(&b), Ok(h));
        // libtorrent disables an extension by sending id 0.
        let off = ExtHandshake::decode(b"d1:md6:ut_pexi0eee").unwrap();
        assert_eq!(off.ut_pex, None);
    }

    #[test]
    fn pex_round_trips() {
        let p = Pex {
            added: vec!["10.0.0.1:6881".parse().unwrap(), "[::2]:7".parse().unwrap()],
            dropped: vec!["10.0.0.9:1".parse().unwrap()],
        };
        assert_eq!(Pex::decode(&p.encode()), Ok(p));
        assert!(Pex::decode(b"d5:added5:abcdee").is_err());
    }

    #[test]
    fn allowed_fast_set_matches_bep6_example() {
        // BEP 6's worked example: 80.4.4.200, info-hash 0xaa * 20, 1313 pieces.
        let ih = InfoHash([0xAA; 20]);
        let ip = Ipv4Addr::new(80, 4, 4, 200);
        assert_eq!(
            allowed_fast_set(ip, &ih, 1313, 7),
            vec![1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(ip, &ih, 1313, 9),
            vec![1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_message(&data);
            let _ = Handshake::decode(&data);
            let _ = ExtHandshake::decode(&data);
            let _ = Pex::decode(&data);
        }

        #[test]
        fn block_messages_round_trip(index in any::<u32>(), begin in any::<u32>(), length in any::<u32>(),
                                     data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let r = BlockRef { index, begin, length };
            for m in [Message::Request(r), Message::Cancel(r), Message::Reject(r), Message::Have(index),
                      Message::Piece { index, begin, data: &data }, Message::Bitfield(&data)] {
                let b = m.encode();
                prop_assert_eq!(decode_message(&b), Ok(Some((m, b.len()))));
            }
        }
    }
}
