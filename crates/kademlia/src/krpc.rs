//! KRPC, the DHT's wire format (BEP 5): one bencoded dictionary per UDP datagram.
//!
//! Every message has `t` (transaction id, echoed by the answer), `y` (`q` query, `r`
//! response, `e` error) and optionally `v` (client version). Queries carry `q` (method
//! name) and `a` (arguments, always with the sender's `id`); responses carry `r` (always
//! with the responder's `id`); errors carry `e = [code, message]`. BEP 42 adds a top-level
//! `ip` (the requester's address as the responder saw it) and BEP 43 an `ro` flag.
//!
//! Contacts are compact: a peer is 6 bytes (IPv4 address and port, big-endian), a node 26
//! bytes (its 20-byte id, then the peer form). Only IPv4 is spoken (`nodes6`/`want` are
//! ignored on input and never sent).
//!
//! [`decode`] never panics and never allocates more than a small multiple of the datagram:
//! everything it returns is bounded by the input it was given ([`MAX_DATAGRAM`]).
//! A datagram whose envelope is valid but whose contents are not gives
//! [`DecodeError::Invalid`] with the transaction id, so the node can answer with a KRPC
//! error (203 protocol error, 204 method unknown) as BEP 5 asks; anything else is dropped.

use std::net::{Ipv4Addr, SocketAddrV4};

use servent_bencode::{self as bencode, Dict, Limits, OwnedValue, Value};
use servent_core::Id;

use crate::bep44::{self, Item, Signed};

/// The largest datagram we decode (larger ones are dropped unread).
pub const MAX_DATAGRAM: usize = 4096;
/// The longest transaction id we accept (BEP 5 suggests 2 bytes; clients use up to 4-8).
pub const MAX_TID: usize = 16;
/// The longest token we accept from a peer.
pub const MAX_TOKEN: usize = 64;
/// Bytes in compact peer info.
pub const COMPACT_PEER: usize = 6;
/// Bytes in compact node info.
pub const COMPACT_NODE: usize = 26;

/// KRPC error code: generic error.
pub const ERR_GENERIC: i64 = 201;
/// KRPC error code: server error.
pub const ERR_SERVER: i64 = 202;
/// KRPC error code: protocol error (malformed packet, invalid arguments, bad token).
pub const ERR_PROTOCOL: i64 = 203;
/// KRPC error code: method unknown.
pub const ERR_METHOD_UNKNOWN: i64 = 204;

const LIMITS: Limits = Limits {
    // BEP 44 values are any bencoded value, nested inside `a`/`r`: allow some depth (the
    // value count and the datagram size still bound the work)
    max_depth: 12,
    max_values: 1024,
    require_sorted: false,
};

/// A node's contact: its id and UDP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeInfo {
    /// The node id.
    pub id: Id,
    /// Where it listens.
    pub addr: SocketAddrV4,
}

/// One KRPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Transaction id (at most [`MAX_TID`] bytes).
    pub tid: Vec<u8>,
    /// The sender's client version (`v`), if it sent one (at most 16 bytes kept).
    pub version: Option<Vec<u8>>,
    /// BEP 42: the requester's address as the responder saw it (responses and errors).
    pub ip: Option<SocketAddrV4>,
    /// BEP 43: the querier does not answer queries (`ro=1`).
    pub read_only: bool,
    /// What it says.
    pub body: Body,
}

/// The three kinds of KRPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `y=q`.
    Query(Query),
    /// `y=r`.
    Response(Response),
    /// `y=e`.
    Error {
        /// 201..=204 in BEP 5; anything a peer sends is kept.
        code: i64,
        /// Human-readable text (lossy UTF-8, at most 256 bytes kept).
        message: String,
    },
}

/// The four BEP 5 queries. Every one carries the querier's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// `ping`.
    Ping {
        /// Querier.
        id: Id,
    },
    /// `find_node`: the k closest nodes to `target`.
    FindNode {
        /// Querier.
        id: Id,
        /// What to look for.
        target: Id,
    },
    /// `get_peers`: peers for `info_hash`, or the closest nodes, and a token.
    GetPeers {
        /// Querier.
        id: Id,
        /// The torrent.
        info_hash: Id,
    },
    /// `announce_peer`: the querier downloads `info_hash` on `port`.
    AnnouncePeer {
        /// Querier.
        id: Id,
        /// The torrent.
        info_hash: Id,
        /// TCP port of the peer (ignored when `implied_port`).
        port: u16,
        /// The token from an earlier `get_peers` response.
        token: Vec<u8>,
        /// Use the UDP source port of this query as the peer's port.
        implied_port: bool,
    },
    /// BEP 44 `get`: the item stored under `target` (or the closest nodes), and a token.
    Get {
        /// Querier.
        id: Id,
        /// SHA-1 of the value (immutable) or of key ‖ salt (mutable).
        target: Id,
        /// Only send the value if the stored `seq` is higher than this.
        seq: Option<i64>,
    },
    /// BEP 44 `put`: store `item` (with the token from an earlier `get`).
    Put {
        /// Querier.
        id: Id,
        /// The token from an earlier `get` response.
        token: Vec<u8>,
        /// The item (its value canonical bencoding of at most 1000 bytes).
        item: Item,
        /// Mutable items: store only if the current `seq` is this (compare and swap).
        cas: Option<i64>,
    },
    /// servent's own `sv_stats`: the answering node's counters and bucket sizes. Answered
    /// only to loopback sources (the `servent dht stats` of the same host); an extension
    /// method other clients answer with 204.
    Stats {
        /// Querier.
        id: Id,
    },
}

impl Query {
    /// The querier's id.
    pub fn sender(&self) -> Id {
        match self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. }
            | Query::Get { id, .. }
            | Query::Put { id, .. }
            | Query::Stats { id } => *id,
        }
    }

    /// The method name on the wire.
    pub fn method(&self) -> &'static str {
        match self {
            Query::Ping { .. } => "ping",
            Query::FindNode { .. } => "find_node",
            Query::GetPeers { .. } => "get_peers",
            Query::AnnouncePeer { .. } => "announce_peer",
            Query::Get { .. } => "get",
            Query::Put { .. } => "put",
            Query::Stats { .. } => "sv_stats",
        }
    }
}

/// A response. KRPC responses do not name their method: the transaction id says which
/// query they answer, so one type holds every field a BEP 5 response may have.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Response {
    /// The responder.
    pub id: Id,
    /// `nodes`: compact node info (find_node, get_peers without peers).
    pub nodes: Vec<NodeInfo>,
    /// `values`: compact peers (get_peers).
    pub values: Vec<SocketAddrV4>,
    /// `token` (get_peers, get).
    pub token: Option<Vec<u8>>,
    /// BEP 44 `v`: the stored value, bencoded (get).
    pub v: Option<Vec<u8>>,
    /// BEP 44 `k`: the mutable item's public key (get).
    pub k: Option<[u8; 32]>,
    /// BEP 44 `sig`: the mutable item's signature (get).
    pub sig: Option<[u8; 64]>,
    /// BEP 44 `seq`: the mutable item's sequence number (get).
    pub seq: Option<i64>,
    /// `sv_stats`: the node's counters (name, value), sorted by name.
    pub stats: Option<Vec<(String, i64)>>,
    /// `sv_buckets`: nodes per bucket (answers to `sv_stats`).
    pub buckets: Vec<i64>,
}

/// The most counters and buckets an `sv_stats` answer may carry.
pub const MAX_STATS: usize = 200;

/// Why a datagram is not a KRPC message we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes is larger than the KRPC limit")]
    TooLarge(usize),
    /// Not bencode, or not a dictionary.
    #[error("not a bencoded dictionary: {0}")]
    Bencode(String),
    /// No usable transaction id or message type: nothing can be answered.
    #[error("no usable envelope: {0}")]
    Envelope(&'static str),
    /// A valid envelope around invalid contents: answer with a KRPC error to `tid`.
    #[error("invalid KRPC message (code {code}): {reason}")]
    Invalid {
        /// The transaction id to answer.
        tid: Vec<u8>,
        /// Whether the datagram was a query (only queries are answered).
        query: bool,
        /// 203 or 204.
        code: i64,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Compact peer info (6 bytes).
pub fn encode_peer(a: &SocketAddrV4) -> [u8; COMPACT_PEER] {
    let mut out = [0u8; COMPACT_PEER];
    out[..4].copy_from_slice(&a.ip().octets());
    out[4..].copy_from_slice(&a.port().to_be_bytes());
    out
}

/// Parses compact peer info; `None` unless exactly 6 bytes.
pub fn decode_peer(b: &[u8]) -> Option<SocketAddrV4> {
    let b: &[u8; COMPACT_PEER] = b.try_into().ok()?;
    Some(SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    ))
}

/// Compact node info (26 bytes).
pub fn encode_node(n: &NodeInfo) -> [u8; COMPACT_NODE] {
    let mut out = [0u8; COMPACT_NODE];
    out[..20].copy_from_slice(n.id.as_bytes());
    out[20..].copy_from_slice(&encode_peer(&n.addr));
    out
}

/// Parses a concatenation of compact node infos; `None` unless the length is a multiple
/// of 26.
pub fn decode_nodes(b: &[u8]) -> Option<Vec<NodeInfo>> {
    if b.len() % COMPACT_NODE != 0 {
        return None;
    }
    b.chunks_exact(COMPACT_NODE)
        .map(|c| {
            let (id, addr) = c.split_at(20);
            Some(NodeInfo {
                id: Id::from_slice(id).ok()?,
                addr: decode_peer(addr)?,
            })
        })
        .collect()
}

fn id_value(id: &Id) -> OwnedValue {
    OwnedValue::bytes(id.as_bytes())
}

/// A BEP 44 value (kept as its bencoding) as a value to embed; bytes that are not one
/// bencoded value are sent as a string (never produced by the node, which checks values).
fn raw_value(v: &[u8]) -> OwnedValue {
    match bencode::decode(v, &LIMITS) {
        Ok(val) => val.to_owned_value(),
        Err(_) => OwnedValue::bytes(v),
    }
}

/// Whether `v` is exactly one canonical bencoded value of at most [`bep44::MAX_VALUE`]
/// bytes (what a BEP 44 item may hold, and what we can forward byte for byte).
pub fn is_item_value(v: &[u8]) -> bool {
    v.len() <= bep44::MAX_VALUE && bencode::decode(v, &LIMITS).is_ok_and(|val| val.is_canonical())
}

/// The bencoding of a value found in a message, if canonical.
fn value_bytes(v: &Value<'_>) -> Option<Vec<u8>> {
    if !v.is_canonical() {
        return None;
    }
    let mut out = Vec::new();
    v.encode_into(&mut out);
    Some(out)
}

impl Message {
    /// A query with transaction id `tid`.
    pub fn query(tid: &[u8], q: Query) -> Message {
        Message {
            tid: tid.to_vec(),
            version: None,
            ip: None,
            read_only: false,
            body: Body::Query(q),
        }
    }

    /// A response to transaction `tid`.
    pub fn response(tid: &[u8], r: Response) -> Message {
        Message {
            tid: tid.to_vec(),
            version: None,
            ip: None,
            read_only: false,
            body: Body::Response(r),
        }
    }

    /// An error answer to transaction `tid`.
    pub fn error(tid: &[u8], code: i64, message: &str) -> Message {
        Message {
            tid: tid.to_vec(),
            version: None,
            ip: None,
            read_only: false,
            body: Body::Error {
                code,
                message: message.to_string(),
            },
        }
    }

    /// The canonical bencoding (keys sorted), ready to send.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = OwnedValue::dict().with("t", OwnedValue::bytes(&self.tid));
        if let Some(v) = &self.version {
            d = d.with("v", OwnedValue::bytes(v));
        }
        if let Some(ip) = &self.ip {
            d = d.with("ip", OwnedValue::bytes(encode_peer(ip)));
        }
        if self.read_only {
            d = d.with("ro", OwnedValue::Int(1));
        }
        match &self.body {
            Body::Query(q) => {
                let mut a = OwnedValue::dict().with("id", id_value(&q.sender()));
                match q {
                    Query::Ping { .. } | Query::Stats { .. } => {}
                    Query::FindNode { target, .. } => a = a.with("target", id_value(target)),
                    Query::GetPeers { info_hash, .. } => {
                        a = a.with("info_hash", id_value(info_hash));
                    }
                    Query::AnnouncePeer {
                        info_hash,
                        port,
                        token,
                        implied_port,
                        ..
                    } => {
                        a = a
                            .with("info_hash", id_value(info_hash))
                            .with("port", OwnedValue::Int(i64::from(*port)))
                            .with("token", OwnedValue::bytes(token));
                        if *implied_port {
                            a = a.with("implied_port", OwnedValue::Int(1));
                        }
                    }
                    Query::Get { target, seq, .. } => {
                        a = a.with("target", id_value(target));
                        if let Some(seq) = seq {
                            a = a.with("seq", OwnedValue::Int(*seq));
                        }
                    }
                    Query::Put {
                        token, item, cas, ..
                    } => {
                        a = a
                            .with("token", OwnedValue::bytes(token))
                            .with("v", raw_value(&item.v));
                        if let Some(m) = &item.mutable {
                            a = a
                                .with("k", OwnedValue::bytes(m.k))
                                .with("sig", OwnedValue::bytes(m.sig))
                                .with("seq", OwnedValue::Int(m.seq));
                            if !m.salt.is_empty() {
                                a = a.with("salt", OwnedValue::bytes(&m.salt));
                            }
                            if let Some(cas) = cas {
                                a = a.with("cas", OwnedValue::Int(*cas));
                            }
                        }
                    }
                }
                d = d
                    .with("y", OwnedValue::bytes("q"))
                    .with("q", OwnedValue::bytes(q.method()))
                    .with("a", a);
            }
            Body::Response(r) => {
                let mut rd = OwnedValue::dict().with("id", id_value(&r.id));
                if !r.nodes.is_empty() {
                    let mut nodes = Vec::with_capacity(r.nodes.len() * COMPACT_NODE);
                    for n in &r.nodes {
                        nodes.extend_from_slice(&encode_node(n));
                    }
                    rd = rd.with("nodes", OwnedValue::Bytes(nodes));
                }
                if !r.values.is_empty() {
                    rd = rd.with(
                        "values",
                        OwnedValue::List(
                            r.values
                                .iter()
                                .map(|p| OwnedValue::bytes(encode_peer(p)))
                                .collect(),
                        ),
                    );
                }
                if let Some(t) = &r.token {
                    rd = rd.with("token", OwnedValue::bytes(t));
                }
                if let Some(v) = &r.v {
                    rd = rd.with("v", raw_value(v));
                }
                if let Some(k) = &r.k {
                    rd = rd.with("k", OwnedValue::bytes(k));
                }
                if let Some(sig) = &r.sig {
                    rd = rd.with("sig", OwnedValue::bytes(sig));
                }
                if let Some(seq) = r.seq {
                    rd = rd.with("seq", OwnedValue::Int(seq));
                }
                if let Some(st) = &r.stats {
                    let mut sd = OwnedValue::dict();
                    for (k, v) in st {
                        sd = sd.with(k, OwnedValue::Int(*v));
                    }
                    rd = rd.with("sv_stats", sd);
                }
                if !r.buckets.is_empty() {
                    rd = rd.with(
                        "sv_buckets",
                        OwnedValue::List(r.buckets.iter().map(|b| OwnedValue::Int(*b)).collect()),
                    );
                }
                d = d.with("y", OwnedValue::bytes("r")).with("r", rd);
            }
            Body::Error { code, message } => {
                d = d.with("y", OwnedValue::bytes("e")).with(
                    "e",
                    OwnedValue::List(vec![
                        OwnedValue::Int(*code),
                        OwnedValue::bytes(message.as_bytes()),
                    ]),
                );
            }
        }
        d.encode()
    }
}

fn get_id(d: &Dict<'_>, key: &[u8]) -> Option<Id> {
    d.bytes(key).and_then(|b| Id::from_slice(b).ok())
}

/// Decodes one datagram of at most [`MAX_DATAGRAM`] bytes.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    decode_with_limit(data, MAX_DATAGRAM)
}

/// Decodes one datagram of at most `max` bytes (a node's `max_datagram`).
pub fn decode_with_limit(data: &[u8], max: usize) -> Result<Message, DecodeError> {
    if data.len() > max {
        return Err(DecodeError::TooLarge(data.len()));
    }
    let v = bencode::decode(data, &LIMITS).map_err(|e| DecodeError::Bencode(e.to_string()))?;
    let Value::Dict(d) = v else {
        return Err(DecodeError::Bencode("top level is not a dictionary".into()));
    };
    let tid = d
        .bytes(b"t")
        .ok_or(DecodeError::Envelope("no transaction id"))?;
    if tid.len() > MAX_TID {
        return Err(DecodeError::Envelope("transaction id too long"));
    }
    let y = d.bytes(b"y").ok_or(DecodeError::Envelope("no type"))?;
    let is_query = y == b"q";
    let invalid = |code: i64, reason: &'static str| DecodeError::Invalid {
        tid: tid.to_vec(),
        query: is_query,
        code,
        reason,
    };
    let version = d.bytes(b"v").map(|v| v[..v.len().min(16)].to_vec());
    let ip = d.bytes(b"ip").and_then(decode_peer);
    let read_only = d.int(b"ro") == Some(1);
    let body = match y {
        b"q" => {
            let method = d
                .bytes(b"q")
                .ok_or(invalid(ERR_PROTOCOL, "query without method"))?;
            let a = d
                .dict(b"a")
                .ok_or(invalid(ERR_PROTOCOL, "query without arguments"))?;
            let id = get_id(a, b"id").ok_or(invalid(ERR_PROTOCOL, "query without a valid id"))?;
            let q = match method {
                b"ping" => Query::Ping { id },
                b"sv_stats" => Query::Stats { id },
                b"find_node" => Query::FindNode {
                    id,
                    target: get_id(a, b"target")
                        .ok_or(invalid(ERR_PROTOCOL, "find_node without a valid target"))?,
                },
                b"get_peers" => Query::GetPeers {
                    id,
                    info_hash: get_id(a, b"info_hash")
                        .ok_or(invalid(ERR_PROTOCOL, "get_peers without a valid info_hash"))?,
                },
                b"announce_peer" => {
                    let info_hash = get_id(a, b"info_hash").ok_or(invalid(
                        ERR_PROTOCOL,
                        "announce_peer without a valid info_hash",
                    ))?;
                    let implied_port = a.int(b"implied_port").is_some_and(|v| v != 0);
                    let port = match a.int(b"port").map(u16::try_from) {
                        Some(Ok(p)) => p,
                        Some(Err(_)) => return Err(invalid(ERR_PROTOCOL, "port out of range")),
                        None if implied_port => 0,
                        None => return Err(invalid(ERR_PROTOCOL, "announce_peer without port")),
                    };
                    let token = a
                        .bytes(b"token")
                        .ok_or(invalid(ERR_PROTOCOL, "announce_peer without token"))?;
                    if token.len() > MAX_TOKEN {
                        return Err(invalid(ERR_PROTOCOL, "token too long"));
                    }
                    Query::AnnouncePeer {
                        id,
                        info_hash,
                        port,
                        token: token.to_vec(),
                        implied_port,
                    }
                }
                b"get" => Query::Get {
                    id,
                    target: get_id(a, b"target")
                        .ok_or(invalid(ERR_PROTOCOL, "get without a valid target"))?,
                    seq: a.int(b"seq"),
                },
                b"put" => {
                    let token = a
                        .bytes(b"token")
                        .ok_or(invalid(ERR_PROTOCOL, "put without token"))?;
                    if token.len() > MAX_TOKEN {
                        return Err(invalid(ERR_PROTOCOL, "token too long"));
                    }
                    let v = a.get(b"v").ok_or(invalid(ERR_PROTOCOL, "put without v"))?;
                    let v = value_bytes(v).ok_or(invalid(ERR_PROTOCOL, "v is not canonical"))?;
                    if v.len() > bep44::MAX_VALUE {
                        return Err(invalid(
                            bep44::ERR_VALUE_TOO_BIG,
                            "message (v field) too big",
                        ));
                    }
                    let mutable = match a.bytes(b"k") {
                        None => None,
                        Some(k) => {
                            let k = <[u8; 32]>::try_from(k)
                                .map_err(|_| invalid(ERR_PROTOCOL, "k is not 32 bytes"))?;
                            let sig = a
                                .bytes(b"sig")
                                .and_then(|s| <[u8; 64]>::try_from(s).ok())
                                .ok_or(invalid(ERR_PROTOCOL, "sig missing or not 64 bytes"))?;
                            let seq = a
                                .int(b"seq")
                                .ok_or(invalid(ERR_PROTOCOL, "mutable put without seq"))?;
                            let salt = a.bytes(b"salt").unwrap_or(b"");
                            if salt.len() > bep44::MAX_SALT {
                                return Err(invalid(
                                    bep44::ERR_SALT_TOO_BIG,
                                    "salt (salt field) too big",
                                ));
                            }
                            Some(Signed {
                                k,
                                sig,
                                seq,
                                salt: salt.to_vec(),
                            })
                        }
                    };
                    let cas = mutable.as_ref().and_then(|_| a.int(b"cas"));
                    Query::Put {
                        id,
                        token: token.to_vec(),
                        item: Item { v, mutable },
                        cas,
                    }
                }
                _ => return Err(invalid(ERR_METHOD_UNKNOWN, "method unknown")),
            };
            Body::Query(q)
        }
        b"r" => {
            let r = d
                .dict(b"r")
                .ok_or(invalid(ERR_PROTOCOL, "response without body"))?;
            let id = get_id(r, b"id").ok_or(invalid(ERR_PROTOCOL, "response without id"))?;
            let nodes = match r.bytes(b"nodes") {
                Some(b) => decode_nodes(b).ok_or(invalid(ERR_PROTOCOL, "bad compact nodes"))?,
                None => Vec::new(),
            };
            let values = match r.list(b"values") {
                Some(l) => l
                    .iter()
                    .map(|v| v.as_bytes().and_then(decode_peer))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(invalid(ERR_PROTOCOL, "bad compact peer"))?,
                None => Vec::new(),
            };
            let token = match r.bytes(b"token") {
                Some(t) if t.len() > MAX_TOKEN => {
                    return Err(invalid(ERR_PROTOCOL, "token too long"));
                }
                Some(t) => Some(t.to_vec()),
                None => None,
            };
            let v = match r.get(b"v") {
                Some(v) => Some(
                    value_bytes(v)
                        .filter(|v| v.len() <= bep44::MAX_VALUE)
                        .ok_or(invalid(ERR_PROTOCOL, "bad v"))?,
                ),
                None => None,
            };
            let k = match r.bytes(b"k") {
                Some(k) => {
                    Some(<[u8; 32]>::try_from(k).map_err(|_| invalid(ERR_PROTOCOL, "bad k"))?)
                }
                None => None,
            };
            let sig = match r.bytes(b"sig") {
                Some(s) => {
                    Some(<[u8; 64]>::try_from(s).map_err(|_| invalid(ERR_PROTOCOL, "bad sig"))?)
                }
                None => None,
            };
            let stats = match r.dict(b"sv_stats") {
                Some(sd) if sd.len() > MAX_STATS => {
                    return Err(invalid(ERR_PROTOCOL, "too many sv_stats counters"));
                }
                Some(sd) => Some(
                    sd.iter()
                        .filter_map(|(k, v)| {
                            Some((String::from_utf8_lossy(k).into_owned(), v.as_int()?))
                        })
                        .collect(),
                ),
                None => None,
            };
            let buckets = match r.list(b"sv_buckets") {
                Some(l) if l.len() > MAX_STATS => {
                    return Err(invalid(ERR_PROTOCOL, "too many sv_buckets"));
                }
                Some(l) => l.iter().filter_map(Value::as_int).collect(),
                None => Vec::new(),
            };
            Body::Response(Response {
                id,
                nodes,
                values,
                token,
                v,
                k,
                sig,
                seq: r.int(b"seq"),
                stats,
                buckets,
            })
        }
        b"e" => {
            let e = d
                .list(b"e")
                .ok_or(invalid(ERR_PROTOCOL, "error without list"))?;
            let code = e
                .first()
                .and_then(Value::as_int)
                .ok_or(invalid(ERR_PROTOCOL, "error without code"))?;
            let msg = e.get(1).and_then(Value::as_bytes).unwrap_or(b"");
            Body::Error {
                code,
                message: String::from_utf8_lossy(&msg[..msg.len().min(256)]).into_owned(),
            }
        }
        _ => return Err(DecodeError::Envelope("unknown message type")),
    };
    Ok(Message {
        tid: tid.to_vec(),
        version,
        ip,
        read_only,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &[u8; 20]) -> Id {
        Id(*s)
    }

    // The example messages of BEP 5, byte for byte.
    const PING_Q: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    const PING_R: &[u8] = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re";
    const FIND_Q: &[u8] = b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe";
    const GET_Q: &[u8] = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe";
    const GET_R_VALUES: &[u8] = b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
    const ANNOUNCE_Q: &[u8] = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
    const ERROR: &[u8] = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";

    fn roundtrip(bytes: &[u8], expected: &Message) {
        assert_eq!(&decode(bytes).unwrap(), expected);
        assert_eq!(
            expected.encode(),
            bytes,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }

    #[test]
    fn bep5_ping_query_and_response_golden() {
        roundtrip(
            PING_Q,
            &Message::query(
                b"aa",
                Query::Ping {
                    id: id(b"abcdefghij0123456789"),
                },
            ),
        );
        roundtrip(
            PING_R,
            &Message::response(
                b"aa",
                Response {
                    id: id(b"mnopqrstuvwxyz123456"),
                    ..Response::default()
                },
            ),
        );
    }

    #[test]
    fn bep5_find_node_query_and_response_golden() {
        roundtrip(
            FIND_Q,
            &Message::query(
                b"aa",
                Query::FindNode {
                    id: id(b"abcdefghij0123456789"),
                    target: id(b"mnopqrstuvwxyz123456"),
                },
            ),
        );
        // BEP 5's example elides the node string; here one real compact node.
        let node = NodeInfo {
            id: id(b"mnopqrstuvwxyz123456"),
            addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 6881),
        };
        let mut bytes = b"d1:rd2:id20:0123456789abcdefghij5:nodes26:mnopqrstuvwxyz123456".to_vec();
        bytes.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
        bytes.extend_from_slice(b"e1:t2:aa1:y1:re");
        roundtrip(
            &bytes,
            &Message::response(
                b"aa",
                Response {
                    id: id(b"0123456789abcdefghij"),
                    nodes: vec![node],
                    ..Response::default()
                },
            ),
        );
    }

    #[test]
    fn bep5_get_peers_query_and_responses_golden() {
        roundtrip(
            GET_Q,
            &Message::query(
                b"aa",
                Query::GetPeers {
                    id: id(b"abcdefghij0123456789"),
                    info_hash: id(b"mnopqrstuvwxyz123456"),
                },
            ),
        );
        roundtrip(
            GET_R_VALUES,
            &Message::response(
                b"aa",
                Response {
                    id: id(b"abcdefghij0123456789"),
                    values: vec![
                        decode_peer(b"axje.u").unwrap(),
                        decode_peer(b"idhtnm").unwrap(),
                    ],
                    token: Some(b"aoeusnth".to_vec()),
                    ..Response::default()
                },
            ),
        );
        let mut bytes = b"d1:rd2:id20:abcdefghij01234567895:nodes52:".to_vec();
        let n1 = NodeInfo {
            id: id(b"mnopqrstuvwxyz123456"),
            addr: SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 1),
        };
        let n2 = NodeInfo {
            id: id(b"MNOPQRSTUVWXYZ123456"),
            addr: SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, 9), 65535),
        };
        bytes.extend_from_slice(&encode_node(&n1));
        bytes.extend_from_slice(&encode_node(&n2));
        bytes.extend_from_slice(b"5:token8:aoeusnthe1:t2:aa1:y1:re");
        roundtrip(
            &bytes,
            &Message::response(
                b"aa",
                Response {
                    id: id(b"abcdefghij0123456789"),
                    nodes: vec![n1, n2],
                    token: Some(b"aoeusnth".to_vec()),
                    ..Response::default()
                },
            ),
        );
    }

    #[test]
    fn bep5_announce_peer_query_and_response_golden() {
        roundtrip(
            ANNOUNCE_Q,
            &Message::query(
                b"aa",
                Query::AnnouncePeer {
                    id: id(b"abcdefghij0123456789"),
                    info_hash: id(b"mnopqrstuvwxyz123456"),
                    port: 6881,
                    token: b"aoeusnth".to_vec(),
                    implied_port: true,
                },
            ),
        );
        roundtrip(
            PING_R,
            &Message::response(
                b"aa",
                Response {
                    id: id(b"mnopqrstuvwxyz123456"),
                    ..Response::default()
                },
            ),
        );
    }

    #[test]
    fn bep5_error_golden() {
        roundtrip(
            ERROR,
            &Message::error(b"aa", 201, "A Generic Error Ocurred"),
        );
    }

    fn hex32(h: &str) -> [u8; 32] {
        hex::decode(h).unwrap().try_into().unwrap()
    }

    // BEP 44's test vector 1 (public key, signature of "Hello World!" at seq 1).
    const K1: &str = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548";
    const SIG1: &str = "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01";

    #[test]
    fn bep44_get_and_immutable_put_golden() {
        roundtrip(
            b"d1:ad2:id20:abcdefghij01234567893:seqi4e6:target20:mnopqrstuvwxyz123456e1:q3:get1:t2:aa1:y1:qe",
            &Message::query(
                b"aa",
                Query::Get {
                    id: id(b"abcdefghij0123456789"),
                    target: id(b"mnopqrstuvwxyz123456"),
                    seq: Some(4),
                },
            ),
        );
        roundtrip(
            b"d1:ad2:id20:abcdefghij01234567895:token8:aoeusnth1:v12:Hello World!e1:q3:put1:t2:aa1:y1:qe",
            &Message::query(
                b"aa",
                Query::Put {
                    id: id(b"abcdefghij0123456789"),
                    token: b"aoeusnth".to_vec(),
                    item: Item::immutable(b"12:Hello World!".to_vec()),
                    cas: None,
                },
            ),
        );
        roundtrip(
            b"d1:rd2:id20:0123456789abcdefghij5:token8:aoeusnth1:v12:Hello World!e1:t2:aa1:y1:re",
            &Message::response(
                b"aa",
                Response {
                    id: id(b"0123456789abcdefghij"),
                    token: Some(b"aoeusnth".to_vec()),
                    v: Some(b"12:Hello World!".to_vec()),
                    ..Response::default()
                },
            ),
        );
    }

    #[test]
    fn bep44_mutable_put_and_get_response_golden() {
        let k = hex32(K1);
        let sig: [u8; 64] = hex::decode(SIG1).unwrap().try_into().unwrap();
        let mut put = b"d1:ad3:casi0e2:id20:abcdefghij01234567891:k32:".to_vec();
        put.extend_from_slice(&k);
        put.extend_from_slice(b"4:salt6:foobar3:seqi1e3:sig64:");
        put.extend_from_slice(&sig);
        put.extend_from_slice(b"5:token8:aoeusnth1:v12:Hello World!e1:q3:put1:t2:aa1:y1:qe");
        roundtrip(
            &put,
            &Message::query(
                b"aa",
                Query::Put {
                    id: id(b"abcdefghij0123456789"),
                    token: b"aoeusnth".to_vec(),
                    item: Item {
                        v: b"12:Hello World!".to_vec(),
                        mutable: Some(Signed {
                            k,
                            sig,
                            seq: 1,
                            salt: b"foobar".to_vec(),
                        }),
                    },
                    cas: Some(0),
                },
            ),
        );
        let mut resp = b"d1:rd2:id20:0123456789abcdefghij1:k32:".to_vec();
        resp.extend_from_slice(&k);
        resp.extend_from_slice(b"3:seqi1e3:sig64:");
        resp.extend_from_slice(&sig);
        resp.extend_from_slice(b"5:token8:aoeusnth1:v12:Hello World!e1:t2:aa1:y1:re");
        roundtrip(
            &resp,
            &Message::response(
                b"aa",
                Response {
                    id: id(b"0123456789abcdefghij"),
                    token: Some(b"aoeusnth".to_vec()),
                    v: Some(b"12:Hello World!".to_vec()),
                    k: Some(k),
                    sig: Some(sig),
                    seq: Some(1),
                    ..Response::default()
                },
            ),
        );
    }

    #[test]
    fn bep44_bad_puts_get_their_error_codes() {
        let code = |bytes: &[u8]| match decode(bytes) {
            Err(DecodeError::Invalid { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        let mut big = b"d1:ad2:id20:abcdefghij01234567895:token1:x1:v".to_vec();
        big.extend_from_slice(b"1001:");
        big.extend_from_slice(&[b'x'; 1001]);
        big.extend_from_slice(b"e1:q3:put1:t2:aa1:y1:qe");
        assert_eq!(code(&big), crate::bep44::ERR_VALUE_TOO_BIG);
        let mut salty = b"d1:ad2:id20:abcdefghij01234567891:k32:".to_vec();
        salty.extend_from_slice(&[1; 32]);
        salty.extend_from_slice(b"4:salt65:");
        salty.extend_from_slice(&[b's'; 65]);
        salty.extend_from_slice(b"3:seqi1e3:sig64:");
        salty.extend_from_slice(&[2; 64]);
        salty.extend_from_slice(b"5:token1:x1:v1:ae1:q3:put1:t2:aa1:y1:qe");
        assert_eq!(code(&salty), crate::bep44::ERR_SALT_TOO_BIG);
        // a value whose dictionary is not sorted cannot be re-encoded byte for byte
        assert_eq!(
            code(b"d1:ad2:id20:abcdefghij01234567895:token1:x1:vd1:bi1e1:ai2eee1:q3:put1:t2:aa1:y1:qe"),
            ERR_PROTOCOL
        );
        // short key
        assert_eq!(
            code(b"d1:ad2:id20:abcdefghij01234567891:k3:abc3:seqi1e3:sig1:s5:token1:x1:v1:ae1:q3:put1:t2:aa1:y1:qe"),
            ERR_PROTOCOL
        );
    }

    #[test]
    fn bep42_ip_and_version_fields_roundtrip() {
        let mut m = Message::response(
            b"\x00\x01",
            Response {
                id: id(b"mnopqrstuvwxyz123456"),
                ..Response::default()
            },
        );
        m.ip = Some(SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 0x1234));
        m.version = Some(b"SV01".to_vec());
        let bytes = m.encode();
        assert_eq!(
            bytes,
            b"d2:ip6:\x01\x02\x03\x04\x12\x341:rd2:id20:mnopqrstuvwxyz123456e1:t2:\x00\x011:v4:SV011:y1:re"
        );
        assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn unknown_method_is_answerable_with_204() {
        let bytes = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe";
        assert_eq!(
            decode(bytes),
            Err(DecodeError::Invalid {
                tid: b"xy".to_vec(),
                query: true,
                code: ERR_METHOD_UNKNOWN,
                reason: "method unknown"
            })
        );
    }

    #[test]
    fn malformed_contents_give_typed_errors() {
        // short id
        assert!(matches!(
            decode(b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe"),
            Err(DecodeError::Invalid {
                code: ERR_PROTOCOL,
                ..
            })
        ));
        // nodes not a multiple of 26
        assert!(matches!(
            decode(b"d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t2:aa1:y1:re"),
            Err(DecodeError::Invalid { query: false, .. })
        ));
        // port out of range
        assert!(matches!(
            decode(b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe"),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(decode(b"le"), Err(DecodeError::Bencode(_))));
        assert!(matches!(decode(b"d1:y1:qe"), Err(DecodeError::Envelope(_))));
        assert!(matches!(
            decode(&vec![b'x'; MAX_DATAGRAM + 1]),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn unsorted_keys_from_other_clients_are_accepted() {
        let bytes = b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id20:abcdefghij0123456789ee";
        assert!(matches!(
            decode(bytes),
            Ok(Message {
                body: Body::Query(Query::Ping { .. }),
                ..
            })
        ));
    }

    fn arb_id() -> impl Strategy<Value = Id> {
        any::<[u8; 20]>().prop_map(Id)
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddrV4> {
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddrV4::new(ip.into(), p))
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let tid = proptest::collection::vec(any::<u8>(), 0..=MAX_TID);
        let token = proptest::collection::vec(any::<u8>(), 0..=20);
        let query = prop_oneof![
            arb_id().prop_map(|id| Query::Ping { id }),
            (arb_id(), arb_id()).prop_map(|(id, target)| Query::FindNode { id, target }),
            (arb_id(), arb_id()).prop_map(|(id, info_hash)| Query::GetPeers { id, info_hash }),
            (
                arb_id(),
                arb_id(),
                any::<u16>(),
                token.clone(),
                any::<bool>()
            )
                .prop_map(|(id, info_hash, port, token, implied_port)| {
                    Query::AnnouncePeer {
                        id,
                        info_hash,
                        port,
                        token,
                        implied_port,
                    }
                }),
            (arb_id(), arb_id(), proptest::option::of(any::<i64>()))
                .prop_map(|(id, target, seq)| Query::Get { id, target, seq }),
            (
                arb_id(),
                token.clone(),
                "[a-z]{0,40}",
                any::<i64>(),
                proptest::option::of(any::<i64>()),
                any::<bool>(),
                "[a-z]{0,10}"
            )
                .prop_map(|(id, token, s, seq, cas, mutable, salt)| {
                    let v = format!("{}:{s}", s.len()).into_bytes();
                    let mutable =
                        mutable.then(|| crate::bep44::sign(&[3; 32], salt.as_bytes(), seq, &v));
                    let cas = if mutable.is_some() { cas } else { None };
                    Query::Put {
                        id,
                        token,
                        item: Item { v, mutable },
                        cas,
                    }
                }),
        ]
        .prop_map(Body::Query);
        let nodes = proptest::collection::vec(
            (arb_id(), arb_addr()).prop_map(|(id, addr)| NodeInfo { id, addr }),
            0..10,
        );
        let values = proptest::collection::vec(arb_addr(), 0..10);
        let response = (arb_id(), nodes, values, proptest::option::of(token)).prop_map(
            |(id, nodes, values, token)| {
                Body::Response(Response {
                    id,
                    nodes,
                    values,
                    token,
                    ..Response::default()
                })
            },
        );
        let error = (201i64..=204, "[a-zA-Z ]{0,30}")
            .prop_map(|(code, message)| Body::Error { code, message });
        (
            tid,
            prop_oneof![query, response, error],
            proptest::option::of(arb_addr()),
            any::<bool>(),
        )
            .prop_map(|(tid, body, ip, read_only)| Message {
                tid,
                version: None,
                ip,
                read_only,
                body,
            })
    }

    proptest! {
        #[test]
        fn any_datagram_never_panics_the_decoder(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&data);
        }

        #[test]
        fn mutated_valid_messages_never_panic(m in arb_message(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = m.encode();
            let i = pos % bytes.len();
            bytes[i] = byte;
            let _ = decode(&bytes);
            bytes.truncate(i);
            let _ = decode(&bytes);
        }

        #[test]
        fn encode_decode_roundtrips(m in arb_message()) {
            prop_assert_eq!(decode(&m.encode()).unwrap(), m);
        }
    }
}
