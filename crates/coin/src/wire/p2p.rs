//! The Bitcoin P2P message layer: a 24-byte header (network magic,
//! NUL-padded ASCII command, payload length, first 4 bytes of the
//! payload's SHA-256d) and the payloads a pre-SegWit full node speaks.
//! Strict: a wrong magic, a malformed command, a payload above
//! [`MAX_PAYLOAD`], a bad checksum, a list above its protocol limit or
//! trailing bytes are typed errors; nothing is allocated beyond what the
//! input holds. Unknown commands decode to [`Message::Unknown`] (Core
//! ignores them).
use thiserror::Error;

use super::{
    Block, BlockHeader, DecodeError, Encode, Reader, Transaction, write_bytes, write_compact_size,
};
use crate::sha256d;

/// Header bytes before every payload.
pub const HEADER_LEN: usize = 24;
/// Core's `MAX_PROTOCOL_MESSAGE_LENGTH`.
pub const MAX_PAYLOAD: usize = 4_000_000;
/// Core's `MAX_INV_SZ` (inv, getdata, notfound).
pub const MAX_INV: usize = 50_000;
/// Core's `MAX_ADDR_TO_SEND`.
pub const MAX_ADDR: usize = 1000;
/// Core's `MAX_HEADERS_RESULTS`.
pub const MAX_HEADERS: usize = 2000;
/// Core's `MAX_LOCATOR_SZ`.
pub const MAX_LOCATOR: usize = 101;
/// Core's `MAX_SUBVERSION_LENGTH`.
pub const MAX_USER_AGENT: usize = 256;

/// A user agent as text: invalid UTF-8 becomes U+FFFD (3 bytes each), so the text is cut at
/// a character boundary to [`MAX_USER_AGENT`] bytes again; what we decode always encodes to a
/// version message we accept (found by the `coin_p2p` fuzz target).
fn user_agent_text(raw: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(raw).into_owned();
    let mut end = s.len().min(MAX_USER_AGENT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum P2pError {
    #[error("wrong network magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("malformed command field")]
    BadCommand,
    #[error("{command}: payload of {len} bytes exceeds {MAX_PAYLOAD}")]
    Oversized { command: String, len: usize },
    #[error("{0}: checksum mismatch")]
    BadChecksum(String),
    #[error("{command}: {err}")]
    Decode { command: String, err: DecodeError },
    #[error("{command}: {n} entries exceed the limit of {max}")]
    TooMany {
        command: String,
        n: usize,
        max: usize,
    },
    #[error("headers: a header carries transactions")]
    HeaderWithTxs,
}

/// A peer address as `addr` and `version` carry it (no time field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetAddr {
    pub services: u64,
    /// IPv6, or IPv4-mapped (`::ffff:a.b.c.d`).
    pub ip: [u8; 16],
    /// Big-endian on the wire.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: i32,
    pub services: u64,
    pub timestamp: i64,
    pub receiver: NetAddr,
    pub sender: NetAddr,
    pub nonce: u64,
    pub user_agent: String,
    pub start_height: i32,
    /// BIP37 relay flag; `true` when absent.
    pub relay: bool,
}

/// An inventory vector: type (1 tx, 2 block, ...) and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inv {
    pub kind: u32,
    pub hash: [u8; 32],
}

pub const INV_TX: u32 = 1;
pub const INV_BLOCK: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetHeaders {
    pub version: u32,
    pub locator: Vec<[u8; 32]>,
    /// All zero: as many as allowed.
    pub stop: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Version(Version),
    Verack,
    Ping(u64),
    Pong(u64),
    /// (time, address) pairs.
    Addr(Vec<(u32, NetAddr)>),
    GetAddr,
    Inv(Vec<Inv>),
    GetData(Vec<Inv>),
    NotFound(Vec<Inv>),
    GetHeaders(GetHeaders),
    /// `getblocks` has the same payload as `getheaders`.
    GetBlocks(GetHeaders),
    Headers(Vec<BlockHeader>),
    Block(Block),
    Tx(Transaction),
    SendHeaders,
    /// BIP133 minimum fee rate (sat/kvB); parsed, a node may ignore it.
    FeeFilter(i64),
    /// A command this codec does not know; its payload was checksummed and skipped.
    Unknown {
        command: String,
        len: usize,
    },
}

impl Message {
    /// The command string.
    pub fn command(&self) -> &str {
        match self {
            Message::Version(_) => "version",
            Message::Verack => "verack",
            Message::Ping(_) => "ping",
            Message::Pong(_) => "pong",
            Message::Addr(_) => "addr",
            Message::GetAddr => "getaddr",
            Message::Inv(_) => "inv",
            Message::GetData(_) => "getdata",
            Message::NotFound(_) => "notfound",
            Message::GetHeaders(_) => "getheaders",
            Message::GetBlocks(_) => "getblocks",
            Message::Headers(_) => "headers",
            Message::Block(_) => "block",
            Message::Tx(_) => "tx",
            Message::SendHeaders => "sendheaders",
            Message::FeeFilter(_) => "feefilter",
            Message::Unknown { command, .. } => command,
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            Message::Version(v) => {
                o.extend_from_slice(&v.version.to_le_bytes());
                o.extend_from_slice(&v.services.to_le_bytes());
                o.extend_from_slice(&v.timestamp.to_le_bytes());
                write_addr(&mut o, &v.receiver);
                write_addr(&mut o, &v.sender);
                o.extend_from_slice(&v.nonce.to_le_bytes());
                write_bytes(&mut o, v.user_agent.as_bytes());
                o.extend_from_slice(&v.start_height.to_le_bytes());
                o.push(u8::from(v.relay));
            }
            Message::Verack | Message::GetAddr | Message::SendHeaders => {}
            Message::Ping(n) | Message::Pong(n) => o.extend_from_slice(&n.to_le_bytes()),
            Message::Addr(list) => {
                write_compact_size(&mut o, list.len() as u64);
                for (t, a) in list {
                    o.extend_from_slice(&t.to_le_bytes());
                    write_addr(&mut o, a);
                }
            }
            Message::Inv(l) | Message::GetData(l) | Message::NotFound(l) => {
                write_compact_size(&mut o, l.len() as u64);
                for i in l {
                    o.extend_from_slice(&i.kind.to_le_bytes());
                    o.extend_from_slice(&i.hash);
                }
            }
            Message::GetHeaders(g) | Message::GetBlocks(g) => {
                o.extend_from_slice(&g.version.to_le_bytes());
                write_compact_size(&mut o, g.locator.len() as u64);
                for h in &g.locator {
                    o.extend_from_slice(h);
                }
                o.extend_from_slice(&g.stop);
            }
            Message::Headers(hs) => {
                write_compact_size(&mut o, hs.len() as u64);
                for h in hs {
                    h.encode_to(&mut o);
                    o.push(0);
                }
            }
            Message::Block(b) => b.encode_to(&mut o),
            Message::Tx(t) => t.encode_to(&mut o),
            Message::FeeFilter(r) => o.extend_from_slice(&r.to_le_bytes()),
            Message::Unknown { .. } => {}
        }
        o
    }
}

fn write_addr(o: &mut Vec<u8>, a: &NetAddr) {
    o.extend_from_slice(&a.services.to_le_bytes());
    o.extend_from_slice(&a.ip);
    o.extend_from_slice(&a.port.to_be_bytes());
}

fn u64_le(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let mut a = [0u8; 8];
    a.copy_from_slice(r.take(8)?);
    Ok(u64::from_le_bytes(a))
}

fn read_addr(r: &mut Reader<'_>) -> Result<NetAddr, DecodeError> {
    let services = u64_le(r)?;
    let mut ip = [0u8; 16];
    ip.copy_from_slice(r.take(16)?);
    let p = r.take(2)?;
    Ok(NetAddr {
        services,
        ip,
        port: u16::from_be_bytes([p[0], p[1]]),
    })
}

/// Frame `m` for the network with `magic`.
pub fn frame(magic: [u8; 4], m: &Message) -> Vec<u8> {
    let payload = m.payload();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&magic);
    let mut cmd = [0u8; 12];
    let c = m.command().as_bytes();
    cmd[..c.len().min(12)].copy_from_slice(&c[..c.len().min(12)]);
    out.extend_from_slice(&cmd);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&sha256d(&payload)[..4]);
    out.extend_from_slice(&payload);
    out
}

/// The command of a header: printable ASCII, then only NULs.
fn command_of(field: &[u8]) -> Result<String, P2pError> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    if end == 0
        || !field[..end].iter().all(|b| (0x21..0x7f).contains(b))
        || field[end..].iter().any(|&b| b != 0)
    {
        return Err(P2pError::BadCommand);
    }
    Ok(String::from_utf8_lossy(&field[..end]).into_owned())
}

/// Parse one message from the front of `buf`: `Ok(None)` until a whole
/// message is there (the header's length is checked first, so a peer
/// cannot make the caller buffer more than [`MAX_PAYLOAD`]); otherwise the
/// message and the bytes it used.
pub fn parse(buf: &[u8], magic: [u8; 4]) -> Result<Option<(Message, usize)>, P2pError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    if buf[..4] != magic {
        let mut m = [0u8; 4];
        m.copy_from_slice(&buf[..4]);
        return Err(P2pError::BadMagic(m));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let command = command_of(&buf[4..16])?;
    let len = u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(P2pError::Oversized { command, len });
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + len];
    if sha256d(payload)[..4] != buf[20..24] {
        return Err(P2pError::BadChecksum(command));
    }
    let m = decode_payload(&command, payload)?;
    Ok(Some((m, HEADER_LEN + len)))
}

fn limit(command: &str, n: usize, max: usize) -> Result<(), P2pError> {
    if n > max {
        return Err(P2pError::TooMany {
            command: command.into(),
            n,
            max,
        });
    }
    Ok(())
}

/// Decode the payload of `command`.
pub fn decode_payload(command: &str, payload: &[u8]) -> Result<Message, P2pError> {
    let de = |err| P2pError::Decode {
        command: command.into(),
        err,
    };
    let mut r = Reader::new(payload);
    let r = &mut r;
    let m = match command {
        "version" => {
            let version = r.i32().map_err(de)?;
            let services = u64_le(r).map_err(de)?;
            let timestamp = r.i64().map_err(de)?;
            let receiver = read_addr(r).map_err(de)?;
            let sender = read_addr(r).map_err(de)?;
            let nonce = u64_le(r).map_err(de)?;
            let ua = r.var_bytes().map_err(de)?;
            limit(command, ua.len(), MAX_USER_AGENT)?;
            let start_height = r.i32().map_err(de)?;
            let relay = if r.remaining() > 0 {
                r.u8().map_err(de)? != 0
            } else {
                true
            };
            Message::Version(Version {
                version,
                services,
                timestamp,
                receiver,
                sender,
                nonce,
                user_agent: user_agent_text(&ua),
                start_height,
                relay,
            })
        }
        "verack" => Message::Verack,
        "getaddr" => Message::GetAddr,
        "sendheaders" => Message::SendHeaders,
        "ping" => Message::Ping(u64_le(r).map_err(de)?),
        "pong" => Message::Pong(u64_le(r).map_err(de)?),
        "feefilter" => Message::FeeFilter(r.i64().map_err(de)?),
        "addr" => {
            let n = r.count(30).map_err(de)?;
            limit(command, n, MAX_ADDR)?;
            let mut l = Vec::with_capacity(n);
            for _ in 0..n {
                let t = r.u32().map_err(de)?;
                l.push((t, read_addr(r).map_err(de)?));
            }
            Message::Addr(l)
        }
        "inv" | "getdata" | "notfound" => {
            let n = r.count(36).map_err(de)?;
            limit(command, n, MAX_INV)?;
            let mut l = Vec::with_capacity(n);
            for _ in 0..n {
                let kind = r.u32().map_err(de)?;
                l.push(Inv {
                    kind,
                    hash: r.hash().map_err(de)?,
                });
            }
            match command {
                "inv" => Message::Inv(l),
                "getdata" => Message::GetData(l),
                _ => Message::NotFound(l),
            }
        }
        "getheaders" | "getblocks" => {
            let version = r.u32().map_err(de)?;
            let n = r.count(32).map_err(de)?;
            limit(command, n, MAX_LOCATOR)?;
            let mut locator = Vec::with_capacity(n);
            for _ in 0..n {
                locator.push(r.hash().map_err(de)?);
            }
            let g = GetHeaders {
                version,
                locator,
                stop: r.hash().map_err(de)?,
            };
            if command == "getheaders" {
                Message::GetHeaders(g)
            } else {
                Message::GetBlocks(g)
            }
        }
        "headers" => {
            let n = r.count(81).map_err(de)?;
            limit(command, n, MAX_HEADERS)?;
            let mut l = Vec::with_capacity(n);
            for _ in 0..n {
                l.push(BlockHeader::decode_from(r).map_err(de)?);
                if r.compact_size().map_err(de)? != 0 {
                    return Err(P2pError::HeaderWithTxs);
                }
            }
            Message::Headers(l)
        }
        "block" => return Block::decode(payload).map(Message::Block).map_err(de),
        "tx" => return Transaction::decode(payload).map(Message::Tx).map_err(de),
        _ => {
            return Ok(Message::Unknown {
                command: command.into(),
                len: payload.len(),
            });
        }
    };
    let rest = r.remaining();
    if rest > 0 {
        return Err(de(DecodeError::Trailing(rest)));
    }
    Ok(m)
}
