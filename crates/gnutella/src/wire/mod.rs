//! The Gnutella 0.4 wire format, byte for byte.
//!
//! Every descriptor is a 23-byte header followed by its payload:
//!
//! ```text
//! 0..16  descriptor id (GUID)
//! 16     payload descriptor: 0x00 Ping, 0x01 Pong, 0x40 Push, 0x80 Query, 0x81 QueryHit
//! 17     TTL
//! 18     hops
//! 19..23 payload length, little-endian
//! ```
//!
//! Ports, counts, sizes, speeds and file indexes are little-endian; IPv4 addresses are in
//! network (big-endian) order. The Query's "minimum speed" field is read the way later
//! servents do: as big-endian flags when its top bit (0x80 in the first byte) is set.
//!
//! Decoders never panic and never allocate more than the bytes they were given: every
//! malformed, truncated or oversized input is a [`DecodeError`].

pub mod handshake;
pub mod http;
pub mod qrp;
pub mod urn;

use std::fmt;
use std::net::Ipv4Addr;

/// Length of the descriptor header.
pub const HEADER_LEN: usize = 23;
/// The default limit on a payload's length (64 KiB); a longer one closes the connection.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// What the connecting side sends.
pub const CONNECT_04: &[u8] = b"GNUTELLA CONNECT/0.4\n\n";
/// What the accepting side answers.
pub const OK_04: &[u8] = b"GNUTELLA OK\n\n";
/// Our vendor code in QueryHit trailers.
pub const VENDOR: [u8; 4] = *b"SRVT";
/// The Query flags marker: set in the first byte of the minimum-speed field.
pub const QUERY_FLAGS_MARK: u8 = 0x80;
/// Query flag: the querying servent is firewalled (meaningful only with the marker).
pub const QUERY_FLAG_FIREWALLED: u8 = 0x40;

/// A 16-byte identifier: a descriptor id or a servent id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// A random GUID drawn from the caller's generator, marked the way modern servents mark
    /// theirs (byte 8 = 0xff, byte 15 = 0x00).
    pub fn random(rng: &mut servent_core::Rng) -> Guid {
        let mut g = [0u8; 16];
        g[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        g[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
        g[8] = 0xff;
        g[15] = 0;
        Guid(g)
    }

    /// Parses 32 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Guid> {
        let mut g = [0u8; 16];
        hex::decode_to_slice(s, &mut g).ok()?;
        Some(Guid(g))
    }

    /// 32 uppercase hex digits, as in a `GIV` line.
    pub fn to_hex_upper(&self) -> String {
        hex::encode_upper(self.0)
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

/// The payload descriptor byte.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum Kind {
    /// 0x00.
    Ping = 0x00,
    /// 0x01.
    Pong = 0x01,
    /// 0x40.
    Push = 0x40,
    /// 0x80.
    Query = 0x80,
    /// 0x81.
    QueryHit = 0x81,
}

impl Kind {
    /// The kind for a payload descriptor byte.
    pub fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0x00 => Kind::Ping,
            0x01 => Kind::Pong,
            0x40 => Kind::Push,
            0x80 => Kind::Query,
            0x81 => Kind::QueryHit,
            _ => return None,
        })
    }

    /// A small dense index (0..5) for counters.
    pub fn index(self) -> usize {
        match self {
            Kind::Ping => 0,
            Kind::Pong => 1,
            Kind::Push => 2,
            Kind::Query => 3,
            Kind::QueryHit => 4,
        }
    }

    /// All kinds, in [`Kind::index`] order.
    pub const ALL: [Kind; 5] = [
        Kind::Ping,
        Kind::Pong,
        Kind::Push,
        Kind::Query,
        Kind::QueryHit,
    ];
}

/// Why bytes are not a valid descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// An unknown payload descriptor byte.
    #[error("unknown payload descriptor 0x{0:02x}")]
    UnknownKind(u8),
    /// The header announces a payload over the limit.
    #[error("payload length {len} over the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The header's length does not match the bytes given.
    #[error("header announces {announced} payload bytes, {actual} given")]
    LengthMismatch {
        /// From the header.
        announced: usize,
        /// Given.
        actual: usize,
    },
    /// A payload has the wrong size for its kind.
    #[error("{kind:?} payload of {len} bytes, expected {expected}")]
    BadLength {
        /// Kind.
        kind: Kind,
        /// Actual length.
        len: usize,
        /// Expected (exact or minimum) length.
        expected: usize,
    },
    /// A string that must be NUL-terminated is not.
    #[error("missing NUL terminator in {0}")]
    MissingNul(&'static str),
}

/// The 23-byte descriptor header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Descriptor id.
    pub id: Guid,
    /// Payload descriptor.
    pub kind: Kind,
    /// Time to live: hops left.
    pub ttl: u8,
    /// Hops taken so far.
    pub hops: u8,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Decodes a header from the first 23 bytes of `b`.
    pub fn decode(b: &[u8]) -> Result<Header, DecodeError> {
        let h: &[u8; HEADER_LEN] =
            b.get(..HEADER_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or(DecodeError::Truncated {
                    what: "header",
                    need: HEADER_LEN,
                    have: b.len(),
                })?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        let kind = Kind::from_byte(h[16]).ok_or(DecodeError::UnknownKind(h[16]))?;
        Ok(Header {
            id: Guid(id),
            kind,
            ttl: h[17],
            hops: h[18],
            len: u32::from_le_bytes([h[19], h[20], h[21], h[22]]),
        })
    }

    /// The 23 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..16].copy_from_slice(&self.id.0);
        h[16] = self.kind as u8;
        h[17] = self.ttl;
        h[18] = self.hops;
        h[19..].copy_from_slice(&self.len.to_le_bytes());
        h
    }
}

/// Pong payload (14 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// Port of the answering servent.
    pub port: u16,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Number of files it shares.
    pub files: u32,
    /// Kilobytes it shares.
    pub kbytes: u32,
}

/// Push payload (26 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The servent that should push (from its QueryHit).
    pub servent_id: Guid,
    /// The file it should push.
    pub index: u32,
    /// Where to connect to.
    pub ip: Ipv4Addr,
    /// Port to connect to.
    pub port: u16,
}

/// Query payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The minimum-speed field as sent (2 bytes). With [`QUERY_FLAGS_MARK`] set in the first
    /// byte it holds flags (big-endian); otherwise a legacy little-endian speed in kb/s.
    pub min_speed: [u8; 2],
    /// The search criteria (without its NUL), `*` as wildcard.
    pub criteria: Vec<u8>,
    /// Bytes after the criteria's NUL (extensions of later servents), kept for forwarding.
    pub extensions: Vec<u8>,
}

impl Query {
    /// The field value we send: flags marker set, nothing else.
    pub const FLAGGED: [u8; 2] = [QUERY_FLAGS_MARK, 0];

    /// Whether the field holds flags rather than a legacy speed.
    pub fn flagged(&self) -> bool {
        self.min_speed[0] & QUERY_FLAGS_MARK != 0
    }

    /// Whether a flagged query says its source is firewalled.
    pub fn source_firewalled(&self) -> bool {
        self.flagged() && self.min_speed[0] & QUERY_FLAG_FIREWALLED != 0
    }
}

/// One result of a QueryHit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitRecord {
    /// File index on the responding servent.
    pub index: u32,
    /// File size in bytes.
    pub size: u32,
    /// File name, without its NUL.
    pub name: Vec<u8>,
    /// Extension block between the name's NUL and the record's final NUL (empty in 0.4).
    pub extension: Vec<u8>,
}

/// The optional QueryHit trailer between the result set and the servent id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Four-character vendor code.
    pub vendor: [u8; 4],
    /// Open data (the two flag bytes, when 2 long).
    pub open: Vec<u8>,
    /// Vendor-private bytes after the open data.
    pub private: Vec<u8>,
}

/// The capability flags carried by a trailer's two open-data bytes. `None` means the
/// responder did not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HitFlags {
    /// The responder is firewalled: reach it through Push.
    pub push: Option<bool>,
    /// All its upload slots are busy.
    pub busy: Option<bool>,
    /// It has completed an upload.
    pub have_uploaded: Option<bool>,
    /// Its speed field is measured rather than set by its user.
    pub speed_measured: Option<bool>,
}

const F_PUSH: u8 = 0x01;
const F_BUSY: u8 = 0x04;
const F_UPLOADED: u8 = 0x08;
const F_SPEED: u8 = 0x10;

impl HitFlags {
    /// Encodes as the two open-data bytes. In the first byte, bit 0 is the push flag itself
    /// and bits 2..4 say which of the other flags are meaningful; in the second byte, bit 0
    /// says the push flag is meaningful and bits 2..4 are the other flags' values.
    pub fn to_bytes(self) -> [u8; 2] {
        let mut a = 0u8;
        let mut b = 0u8;
        if let Some(p) = self.push {
            b |= F_PUSH;
            if p {
                a |= F_PUSH;
            }
        }
        for (flag, bit) in [
            (self.busy, F_BUSY),
            (self.have_uploaded, F_UPLOADED),
            (self.speed_measured, F_SPEED),
        ] {
            if let Some(v) = flag {
                a |= bit;
                if v {
                    b |= bit;
                }
            }
        }
        [a, b]
    }

    /// Decodes the two open-data bytes (the inverse of [`HitFlags::to_bytes`]).
    pub fn from_bytes(a: u8, b: u8) -> HitFlags {
        let get =
            |meaning: u8, value: u8, bit: u8| (meaning & bit != 0).then_some(value & bit != 0);
        HitFlags {
            push: get(b, a, F_PUSH),
            busy: get(a, b, F_BUSY),
            have_uploaded: get(a, b, F_UPLOADED),
            speed_measured: get(a, b, F_SPEED),
        }
    }
}

impl Trailer {
    /// Our trailer: vendor `SRVT`, two flag bytes.
    pub fn ours(flags: HitFlags) -> Trailer {
        Trailer {
            vendor: VENDOR,
            open: flags.to_bytes().to_vec(),
            private: Vec::new(),
        }
    }

    /// The flags, when the open data holds (at least) the two flag bytes.
    pub fn flags(&self) -> Option<HitFlags> {
        match self.open.as_slice() {
            [a, b, ..] => Some(HitFlags::from_bytes(*a, *b)),
            _ => None,
        }
    }
}

/// QueryHit payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryHit {
    /// Port of the responding servent.
    pub port: u16,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Its speed in kb/s.
    pub speed: u32,
    /// The result set (at most 255).
    pub results: Vec<HitRecord>,
    /// The trailer, when present.
    pub trailer: Option<Trailer>,
    /// The responding servent's id (the last 16 bytes).
    pub servent_id: Guid,
}

impl QueryHit {
    /// The responder's flags, if its trailer carries them.
    pub fn flags(&self) -> HitFlags {
        self.trailer
            .as_ref()
            .and_then(Trailer::flags)
            .unwrap_or_default()
    }
}

/// A decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Ping (empty; extra bytes of later servents are ignored).
    Ping,
    /// Pong.
    Pong(Pong),
    /// Push.
    Push(Push),
    /// Query.
    Query(Query),
    /// QueryHit.
    QueryHit(QueryHit),
}

impl Body {
    /// The payload descriptor of this body.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Ping => Kind::Ping,
            Body::Pong(_) => Kind::Pong,
            Body::Push(_) => Kind::Push,
            Body::Query(_) => Kind::Query,
            Body::QueryHit(_) => Kind::QueryHit,
        }
    }

    /// Decodes the payload of a descriptor of kind `kind`.
    pub fn decode(kind: Kind, p: &[u8]) -> Result<Body, DecodeError> {
        let mut r = Reader { b: p, what: kind };
        let body = match kind {
            Kind::Ping => Body::Ping,
            Kind::Pong => {
                if p.len() < 14 {
                    return Err(DecodeError::BadLength {
                        kind,
                        len: p.len(),
                        expected: 14,
                    });
                }
                Body::Pong(Pong {
                    port: r.u16_le()?,
                    ip: r.ipv4()?,
                    files: r.u32_le()?,
                    kbytes: r.u32_le()?,
                })
            }
            Kind::Push => {
                if p.len() < 26 {
                    return Err(DecodeError::BadLength {
                        kind,
                        len: p.len(),
                        expected: 26,
                    });
                }
                Body::Push(Push {
                    servent_id: r.guid()?,
                    index: r.u32_le()?,
                    ip: r.ipv4()?,
                    port: r.u16_le()?,
                })
            }
            Kind::Query => {
                let min_speed = [r.u8()?, r.u8()?];
                let criteria = r.cstr("query criteria")?.to_vec();
                let mut extensions = r.b.to_vec();
                // A trailing NUL ends the extension area; keep what is between.
                if extensions.last() == Some(&0) {
                    extensions.pop();
                }
                Body::Query(Query {
                    min_speed,
                    criteria,
                    extensions,
                })
            }
            Kind::QueryHit => {
                let fixed = 11 + 16;
                if p.len() < fixed {
                    return Err(DecodeError::BadLength {
                        kind,
                        len: p.len(),
                        expected: fixed,
                    });
                }
                let (head, id) = p.split_at(p.len() - 16);
                let mut servent_id = [0u8; 16];
                servent_id.copy_from_slice(id);
                let mut r = Reader {
                    b: head,
                    what: kind,
                };
                let n = r.u8()?;
                let port = r.u16_le()?;
                let ip = r.ipv4()?;
                let speed = r.u32_le()?;
                let mut results = Vec::with_capacity(usize::from(n).min(r.b.len() / 10));
                for _ in 0..n {
                    let index = r.u32_le()?;
                    let size = r.u32_le()?;
                    let name = r.cstr("result name")?.to_vec();
                    let extension = r.cstr("result extension")?.to_vec();
                    results.push(HitRecord {
                        index,
                        size,
                        name,
                        extension,
                    });
                }
                let trailer = if r.b.len() >= 5 {
                    let vendor = [r.u8()?, r.u8()?, r.u8()?, r.u8()?];
                    let open_len = usize::from(r.u8()?);
                    let open = r.take(open_len)?.to_vec();
                    Some(Trailer {
                        vendor,
                        open,
                        private: r.b.to_vec(),
                    })
                } else {
                    None
                };
                Body::QueryHit(QueryHit {
                    port,
                    ip,
                    speed,
                    results,
                    trailer,
                    servent_id: Guid(servent_id),
                })
            }
        };
        Ok(body)
    }

    /// Appends the payload bytes to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Body::Ping => {}
            Body::Pong(p) => {
                out.extend_from_slice(&p.port.to_le_bytes());
                out.extend_from_slice(&p.ip.octets());
                out.extend_from_slice(&p.files.to_le_bytes());
                out.extend_from_slice(&p.kbytes.to_le_bytes());
            }
            Body::Push(p) => {
                out.extend_from_slice(&p.servent_id.0);
                out.extend_from_slice(&p.index.to_le_bytes());
                out.extend_from_slice(&p.ip.octets());
                out.extend_from_slice(&p.port.to_le_bytes());
            }
            Body::Query(q) => {
                out.extend_from_slice(&q.min_speed);
                out.extend_from_slice(&q.criteria);
                out.push(0);
                if !q.extensions.is_empty() {
                    out.extend_from_slice(&q.extensions);
                    out.push(0);
                }
            }
            Body::QueryHit(h) => {
                out.push(u8::try_from(h.results.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(&h.port.to_le_bytes());
                out.extend_from_slice(&h.ip.octets());
                out.extend_from_slice(&h.speed.to_le_bytes());
                for r in h.results.iter().take(usize::from(u8::MAX)) {
                    out.extend_from_slice(&r.index.to_le_bytes());
                    out.extend_from_slice(&r.size.to_le_bytes());
                    out.extend_from_slice(&r.name);
                    out.push(0);
                    out.extend_from_slice(&r.extension);
                    out.push(0);
                }
                if let Some(t) = &h.trailer {
                    out.extend_from_slice(&t.vendor);
                    let open = &t.open[..t.open.len().min(usize::from(u8::MAX))];
                    out.push(open.len() as u8);
                    out.extend_from_slice(open);
                    out.extend_from_slice(&t.private);
                }
                out.extend_from_slice(&h.servent_id.0);
            }
        }
    }
}

/// A whole descriptor: header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Descriptor id.
    pub id: Guid,
    /// Time to live.
    pub ttl: u8,
    /// Hops so far.
    pub hops: u8,
    /// Payload.
    pub body: Body,
}

impl Message {
    /// Appends header and payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        self.body.encode_payload(out);
        let len = u32::try_from(out.len() - start - HEADER_LEN).unwrap_or(u32::MAX);
        let h = Header {
            id: self.id,
            kind: self.body.kind(),
            ttl: self.ttl,
            hops: self.hops,
            len,
        };
        out[start..start + HEADER_LEN].copy_from_slice(&h.to_bytes());
    }

    /// Header and payload as a new vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + 64);
        self.encode_into(&mut v);
        v
    }

    /// Decodes exactly one descriptor from `b` (header + payload, nothing after it).
    pub fn decode(b: &[u8], max_payload: usize) -> Result<Message, DecodeError> {
        let h = Header::decode(b)?;
        if h.len as usize > max_payload {
            return Err(DecodeError::TooLarge {
                len: u64::from(h.len),
                max: max_payload,
            });
        }
        let payload = &b[HEADER_LEN..];
        if payload.len() != h.len as usize {
            return Err(DecodeError::LengthMismatch {
                announced: h.len as usize,
                actual: payload.len(),
            });
        }
        Ok(Message {
            id: h.id,
            ttl: h.ttl,
            hops: h.hops,
            body: Body::decode(h.kind, payload)?,
        })
    }
}

/// A Query payload's minimum-speed field and criteria, borrowed, checked as
/// [`Body::decode`] checks them (the routing fast path: no allocation).
pub fn scan_query(p: &[u8]) -> Result<([u8; 2], &[u8]), DecodeError> {
    let mut r = Reader {
        b: p,
        what: Kind::Query,
    };
    let min_speed = [r.u8()?, r.u8()?];
    let criteria = r.cstr("query criteria")?;
    Ok((min_speed, criteria))
}

/// The head of a vendor message payload (descriptors 0x31 and 0x32): vendor code (4
/// bytes), selector (u16 LE) and version (u16 LE); the rest is the message's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VendorHead<'a> {
    /// Vendor code, e.g. `BEAR` or `LIME`.
    pub vendor: [u8; 4],
    /// Message selector within the vendor.
    pub selector: u16,
    /// Message version.
    pub version: u16,
    /// The bytes after the 8-byte head.
    pub data: &'a [u8],
}

/// A typed error for vendor messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VendorError {
    /// Fewer bytes than the message needs.
    #[error("truncated vendor message: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
}

impl<'a> VendorHead<'a> {
    /// Splits a vendor message payload into its head and data.
    pub fn decode(p: &'a [u8]) -> Result<VendorHead<'a>, VendorError> {
        match p {
            [v0, v1, v2, v3, s0, s1, r0, r1, data @ ..] => Ok(VendorHead {
                vendor: [*v0, *v1, *v2, *v3],
                selector: u16::from_le_bytes([*s0, *s1]),
                version: u16::from_le_bytes([*r0, *r1]),
                data,
            }),
            _ => Err(VendorError::Truncated {
                need: 8,
                have: p.len(),
            }),
        }
    }
}

/// Selector of the "query status response" vendor message (`BEAR` 11, also sent as `LIME`
/// 11): a leaf tells its ultrapeer how many hits it kept for the query whose descriptor id
/// the message carries; used by dynamic querying.
pub const QUERY_STATUS_SELECTOR: u16 = 11;
/// A query status of this value asks the ultrapeer to stop the query.
pub const QUERY_STATUS_STOP: u16 = 0xFFFF;

/// The hit count of a query status response (`BEAR`/`LIME` 11, version 1 or later: u16 LE
/// kept hits first); `Ok(None)` for any other vendor message.
pub fn query_status(p: &[u8]) -> Result<Option<u16>, VendorError> {
    let head = VendorHead::decode(p)?;
    if !matches!(&head.vendor, b"BEAR" | b"LIME")
        || head.selector != QUERY_STATUS_SELECTOR
        || head.version == 0
    {
        return Ok(None);
    }
    match head.data {
        [a, b, ..] => Ok(Some(u16::from_le_bytes([*a, *b]))),
        d => Err(VendorError::Truncated {
            need: 10,
            have: 8 + d.len(),
        }),
    }
}

/// Encodes a query status response (`BEAR` 11 version 1) reporting `kept` hits.
pub fn encode_query_status(kept: u16) -> [u8; 10] {
    let mut p = [0u8; 10];
    p[..4].copy_from_slice(b"BEAR");
    p[4..6].copy_from_slice(&QUERY_STATUS_SELECTOR.to_le_bytes());
    p[6..8].copy_from_slice(&1u16.to_le_bytes());
    p[8..].copy_from_slice(&kept.to_le_bytes());
    p
}

/// Checks a QueryHit payload exactly as [`Body::decode`] does, without allocating, and
/// returns the responder's servent id (the routing fast path for hits that are not ours).
pub fn scan_queryhit(p: &[u8]) -> Result<Guid, DecodeError> {
    let fixed = 11 + 16;
    if p.len() < fixed {
        return Err(DecodeError::BadLength {
            kind: Kind::QueryHit,
            len: p.len(),
            expected: fixed,
        });
    }
    let (head, id) = p.split_at(p.len() - 16);
    let mut r = Reader {
        b: head,
        what: Kind::QueryHit,
    };
    let n = r.u8()?;
    r.take(10)?;
    for _ in 0..n {
        r.take(8)?;
        r.cstr("result name")?;
        r.cstr("result extension")?;
    }
    if r.b.len() >= 5 {
        r.take(4)?;
        let open_len = usize::from(r.u8()?);
        r.take(open_len)?;
    }
    let mut g = [0u8; 16];
    g.copy_from_slice(id);
    Ok(Guid(g))
}

/// A bounds-checked cursor over a payload.
struct Reader<'a> {
    b: &'a [u8],
    what: Kind,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated {
                what: kind_name(self.what),
                need: n,
                have: self.b.len(),
            });
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16_le(&mut self) -> Result<u16, DecodeError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32_le(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn ipv4(&mut self) -> Result<Ipv4Addr, DecodeError> {
        let s = self.take(4)?;
        Ok(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
    }

    fn guid(&mut self) -> Result<Guid, DecodeError> {
        let s = self.take(16)?;
        let mut g = [0u8; 16];
        g.copy_from_slice(s);
        Ok(Guid(g))
    }

    /// Bytes up to the next NUL, consuming the NUL.
    fn cstr(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let pos = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or(DecodeError::MissingNul(what))?;
        let s = &self.b[..pos];
        self.b = &self.b[pos + 1..];
        Ok(s)
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Ping => "ping",
        Kind::Pong => "pong",
        Kind::Push => "push",
        Kind::Query => "query",
        Kind::QueryHit => "queryhit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gid(b: u8) -> Guid {
        Guid([b; 16])
    }

    fn golden(m: &Message, hex_bytes: &str) {
        let want = hex::decode(hex_bytes.replace(' ', "")).unwrap();
        assert_eq!(hex::encode(m.encode()), hex::encode(&want));
        assert_eq!(&Message::decode(&want, DEFAULT_MAX_PAYLOAD).unwrap(), m);
    }

    #[test]
    fn ping_golden_bytes() {
        let m = Message {
            id: gid(0x11),
            ttl: 7,
            hops: 0,
            body: Body::Ping,
        };
        golden(&m, "11111111111111111111111111111111 00 07 00 00000000");
    }

    #[test]
    fn pong_golden_bytes_port_le_ip_be() {
        let m = Message {
            id: gid(0x22),
            ttl: 3,
            hops: 2,
            body: Body::Pong(Pong {
                port: 6346,
                ip: Ipv4Addr::new(192, 168, 1, 2),
                files: 10,
                kbytes: 0x0102_0304,
            }),
        };
        // 6346 = 0x18ca -> ca 18; IP big-endian; counts little-endian.
        golden(
            &m,
            "22222222222222222222222222222222 01 03 02 0e000000 ca18 c0a80102 0a000000 04030201",
        );
    }

    #[test]
    fn push_golden_bytes() {
        let m = Message {
            id: gid(0x33),
            ttl: 7,
            hops: 0,
            body: Body::Push(Push {
                servent_id: gid(0xab),
                index: 5,
                ip: Ipv4Addr::new(10, 0, 0, 1),
                port: 80,
            }),
        };
        golden(
            &m,
            "33333333333333333333333333333333 40 07 00 1a000000 abababababababababababababababab 05000000 0a000001 5000",
        );
    }

    #[test]
    fn query_golden_bytes_with_flags_marker() {
        let m = Message {
            id: gid(0x44),
            ttl: 7,
            hops: 1,
            body: Body::Query(Query {
                min_speed: Query::FLAGGED,
                criteria: b"debaser".to_vec(),
                extensions: Vec::new(),
            }),
        };
        golden(
            &m,
            "44444444444444444444444444444444 80 07 01 0a000000 8000 6465626173657200",
        );
    }

    #[test]
    fn queryhit_golden_bytes_with_trailer() {
        let m = Message {
            id: gid(0x55),
            ttl: 2,
            hops: 0,
            body: Body::QueryHit(QueryHit {
                port: 6346,
                ip: Ipv4Addr::new(127, 0, 0, 1),
                speed: 1000,
                results: vec![HitRecord {
                    index: 3,
                    size: 4096,
                    name: b"a.mp3".to_vec(),
                    extension: Vec::new(),
                }],
                trailer: Some(Trailer::ours(HitFlags {
                    push: Some(true),
                    busy: Some(false),
                    have_uploaded: None,
                    speed_measured: None,
                })),
                servent_id: gid(0x99),
            }),
        };
        // n=1, port, ip, speed=1000 (e8030000), index 3, size 4096, "a.mp3" NUL NUL,
        // "SRVT", open size 2, flags: byte0 = push(1) | busy meaningful(4) = 05,
        // byte1 = push meaningful(1) = 01; servent id.
        golden(
            &m,
            "55555555555555555555555555555555 81 02 00 31000000 01 ca18 7f000001 e8030000 \
             03000000 00100000 612e6d70330000 53525654 02 0501 99999999999999999999999999999999",
        );
        let Body::QueryHit(h) = &m.body else {
            unreachable!()
        };
        assert_eq!(h.flags().push, Some(true));
        assert_eq!(h.flags().busy, Some(false));
    }

    #[test]
    fn queryhit_without_trailer_decodes() {
        let mut p = vec![0u8, 0x39, 0x30, 1, 2, 3, 4, 0, 0, 0, 0];
        p.extend_from_slice(&[7; 16]);
        let b = Body::decode(Kind::QueryHit, &p).unwrap();
        let Body::QueryHit(h) = b else { panic!() };
        assert_eq!(h.port, 12345);
        assert_eq!(h.trailer, None);
        assert_eq!(h.servent_id, gid(7));
        assert_eq!(h.flags(), HitFlags::default());
    }

    #[test]
    fn legacy_query_without_marker_is_accepted() {
        let b = Body::decode(Kind::Query, b"\x00\x00abc\x00").unwrap();
        let Body::Query(q) = b else { panic!() };
        assert!(!q.flagged());
        assert_eq!(q.criteria, b"abc");
    }

    #[test]
    fn oversized_announcement_is_an_error_before_reading() {
        let mut h = Header {
            id: gid(1),
            kind: Kind::Query,
            ttl: 1,
            hops: 0,
            len: 65537,
        }
        .to_bytes()
        .to_vec();
        h.extend_from_slice(&[0; 10]);
        assert_eq!(
            Message::decode(&h, DEFAULT_MAX_PAYLOAD),
            Err(DecodeError::TooLarge {
                len: 65537,
                max: DEFAULT_MAX_PAYLOAD
            })
        );
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        assert!(matches!(
            Body::decode(Kind::Pong, &[0; 13]),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            Body::decode(Kind::Push, &[0; 25]),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            Body::decode(Kind::Query, b"\x80\x00abc"),
            Err(DecodeError::MissingNul(_))
        ));
        // Claims 3 results but holds one.
        let mut p = vec![3u8, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0];
        p.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, b'x', 0, 0]);
        p.extend_from_slice(&[7; 16]);
        assert!(Body::decode(Kind::QueryHit, &p).is_err());
        assert_eq!(
            Header::decode(&[0; 22]),
            Err(DecodeError::Truncated {
                what: "header",
                need: 23,
                have: 22
            })
        );
        let mut bad = [0u8; 23];
        bad[16] = 0x02;
        assert_eq!(Header::decode(&bad), Err(DecodeError::UnknownKind(2)));
    }

    #[test]
    fn hit_flags_bits_sit_in_opposite_bytes() {
        let f = HitFlags {
            push: Some(false),
            busy: Some(true),
            have_uploaded: Some(true),
            speed_measured: Some(false),
        };
        assert_eq!(f.to_bytes(), [0x1c, 0x0d]);
        assert_eq!(HitFlags::from_bytes(0x1c, 0x0d), f);
        assert_eq!(HitFlags::from_bytes(0, 0), HitFlags::default());
    }

    fn arb_guid() -> impl Strategy<Value = Guid> {
        any::<[u8; 16]>().prop_map(Guid)
    }

    fn arb_cstr() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 0..40)
    }

    fn arb_flag() -> impl Strategy<Value = Option<bool>> {
        proptest::option::of(any::<bool>())
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        let ip = any::<[u8; 4]>().prop_map(Ipv4Addr::from);
        prop_oneof![
            Just(Body::Ping),
            (any::<u16>(), ip.clone(), any::<u32>(), any::<u32>()).prop_map(
                |(port, ip, files, kbytes)| Body::Pong(Pong {
                    port,
                    ip,
                    files,
                    kbytes
                })
            ),
            (arb_guid(), any::<u32>(), ip.clone(), any::<u16>()).prop_map(
                |(servent_id, index, ip, port)| Body::Push(Push {
                    servent_id,
                    index,
                    ip,
                    port
                })
            ),
            (any::<[u8; 2]>(), arb_cstr(), arb_cstr()).prop_map(
                |(min_speed, criteria, extensions)| Body::Query(Query {
                    min_speed,
                    criteria,
                    extensions
                })
            ),
            (
                any::<u16>(),
                ip,
                any::<u32>(),
                proptest::collection::vec(
                    (any::<u32>(), any::<u32>(), arb_cstr(), arb_cstr()),
                    0..6
                ),
                proptest::option::of((
                    any::<[u8; 4]>(),
                    (arb_flag(), arb_flag(), arb_flag(), arb_flag()),
                    proptest::collection::vec(any::<u8>(), 0..8)
                )),
                arb_guid(),
            )
                .prop_map(|(port, ip, speed, rs, tr, servent_id)| {
                    Body::QueryHit(QueryHit {
                        port,
                        ip,
                        speed,
                        results: rs
                            .into_iter()
                            .map(|(index, size, name, extension)| HitRecord {
                                index,
                                size,
                                name,
                                extension,
                            })
                            .collect(),
                        trailer: tr.map(|(vendor, (p, b, u, s), private)| Trailer {
                            vendor,
                            open: HitFlags {
                                push: p,
                                busy: b,
                                have_uploaded: u,
                                speed_measured: s,
                            }
                            .to_bytes()
                            .to_vec(),
                            private,
                        }),
                        servent_id,
                    })
                }),
        ]
    }

    proptest! {
        #[test]
        fn every_descriptor_round_trips(id in arb_guid(), ttl in any::<u8>(), hops in any::<u8>(), body in arb_body()) {
            let m = Message { id, ttl, hops, body };
            let bytes = m.encode();
            let back = Message::decode(&bytes, DEFAULT_MAX_PAYLOAD).unwrap();
            prop_assert_eq!(&back, &m);
            prop_assert_eq!(back.encode(), bytes);
        }

        #[test]
        fn fast_scans_agree_with_the_full_decoder(p in proptest::collection::vec(any::<u8>(), 0..120)) {
            let full = Body::decode(Kind::QueryHit, &p);
            let scan = scan_queryhit(&p);
            prop_assert_eq!(full.is_ok(), scan.is_ok());
            if let (Ok(Body::QueryHit(h)), Ok(id)) = (&full, &scan) {
                prop_assert_eq!(h.servent_id, *id);
            }
            let full = Body::decode(Kind::Query, &p);
            let scan = scan_query(&p);
            prop_assert_eq!(full.is_ok(), scan.is_ok());
            if let (Ok(Body::Query(q)), Ok((ms, c))) = (&full, &scan) {
                prop_assert_eq!(q.min_speed, *ms);
                prop_assert_eq!(&q.criteria[..], *c);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(b in proptest::collection::vec(any::<u8>(), 0..300), kind in 0usize..5) {
            let _ = Message::decode(&b, DEFAULT_MAX_PAYLOAD);
            let _ = Body::decode(Kind::ALL[kind], &b);
        }

        #[test]
        fn any_payload_under_a_valid_header_never_panics(kind in 0usize..5, p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let h = Header { id: Guid([1; 16]), kind: Kind::ALL[kind], ttl: 1, hops: 0, len: p.len() as u32 };
            let mut b = h.to_bytes().to_vec();
            b.extend_from_slice(&p);
            if let Ok(m) = Message::decode(&b, DEFAULT_MAX_PAYLOAD) {
                prop_assert_eq!(m.body.kind(), Kind::ALL[kind]);
            }
        }
    }
}
