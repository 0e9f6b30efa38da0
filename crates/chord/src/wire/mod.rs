//! The Chord RPC wire format: one UDP datagram per message, big-endian, length-bounded.
//!
//! Chord has no standard wire format; this one is documented byte for byte in
//! `docs/chord.md` and pinned by golden vectors in the tests below.
//!
//! ```text
//! header (13 bytes)
//!   0  2  magic "CH" (0x43 0x48)
//!   2  1  version (2; 1 carried Transfer items without versions)
//!   3  1  type: requests 0x01..=0x0d, responses = request | 0x80, 0xff error
//!   4  1  ring bits m (1..=160), or 0 from a client that is not a ring member
//!   5  8  transaction id (u64): a response repeats its request's
//! node     = id (20 bytes, the value mod 2^m, big-endian) + addr
//! addr     = family (4 | 6) + address (4 | 16 bytes) + port (u16)
//! opt<T>   = 0 (absent) | 1 + T
//! list<T>  = count (u8) + count × T
//! bytes16  = length (u16) + bytes
//! ```
//! Every decoder checks every length against what is left and against its limit before it
//! allocates; trailing bytes after a message are an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use servent_core::{ID_LEN, Id};

/// The first two bytes of every message.
pub const MAGIC: [u8; 2] = *b"CH";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 2;
/// Header length in bytes.
pub const HEADER_LEN: usize = 13;
/// Largest datagram we send or accept.
pub const MAX_DATAGRAM: usize = 16 * 1024;
/// Longest key in bytes.
pub const MAX_KEY: usize = 1024;
/// Longest value in bytes.
pub const MAX_VALUE: usize = 8 * 1024;
/// Most nodes in one list (successor list, candidates, finger table).
pub const MAX_NODES: usize = 160;
/// What each value of a [`Body::Stats`] counts, in order.
pub const STAT_NAMES: [&str; 12] = [
    "successors",
    "fingers_known",
    "items",
    "item_bytes",
    "tombstones",
    "requests_in_flight",
    "datagrams_in",
    "requests_in",
    "malformed",
    "oversized",
    "rate_limited",
    "wrong_ring",
];
/// Most values a [`Body::Stats`] may carry.
pub const MAX_STATS: usize = 32;
/// Most hops a recursive lookup's path may record.
pub const MAX_PATH: usize = 64;

/// A Chord node: its identifier and where it listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRef {
    /// Identifier on the ring (already reduced mod 2^m).
    pub id: Id,
    /// UDP address.
    pub addr: SocketAddr,
}

/// One message body. Requests have types `0x01..=0x0b`, responses `0x81..=0x8b`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// 0x01: are you alive (check_predecessor, and a client's first contact).
    Ping,
    /// 0x81: yes, and this is who I am.
    Pong {
        /// The answering node.
        me: NodeRef,
    },
    /// 0x02: tell me your predecessor and successor list (stabilize, ring walk).
    GetNeighbors,
    /// 0x82: my predecessor and successor list.
    Neighbors {
        /// The answering node.
        me: NodeRef,
        /// Its predecessor, if known.
        pred: Option<NodeRef>,
        /// Its successor list, nearest first.
        succs: Vec<NodeRef>,
    },
    /// 0x03 (no response): I think I might be your predecessor.
    Notify {
        /// The notifying node.
        me: NodeRef,
    },
    /// 0x04: one step of an iterative `find_successor(key)`.
    FindStep {
        /// The key (the receiver reduces it mod 2^m).
        key: Id,
    },
    /// 0x84: the step's answer.
    StepReply {
        /// The answering node.
        me: NodeRef,
        /// `true`: `key ∈ (me, successor]` and `nodes` is my successor list, the key's
        /// successor first; `false`: ask `nodes[0]`, my closest preceding finger, next
        /// (the rest are alternates should it be dead).
        done: bool,
        /// See `done`.
        nodes: Vec<NodeRef>,
    },
    /// 0x05: a recursive `find_successor(key)`, forwarded node to node.
    FindRec {
        /// The key.
        key: Id,
        /// Where the final answer goes.
        origin: SocketAddr,
        /// Ids of the nodes the query visited so far, the originator first.
        path: Vec<Id>,
    },
    /// 0x85: the final answer of a recursive lookup, sent straight to its origin.
    RecDone {
        /// Every node the query visited, the originator first, the key's predecessor last.
        path: Vec<Id>,
        /// The key's successor first, then its successors.
        succs: Vec<NodeRef>,
    },
    /// 0x06: send me your finger table.
    GetFingers,
    /// 0x86: my finger table, entry 1 first.
    Fingers {
        /// The answering node.
        me: NodeRef,
        /// m, so that a client can compute the starts.
        bits: u8,
        /// Entry i+1 (start `me + 2^i`), absent when not yet known.
        entries: Vec<Option<NodeRef>>,
    },
    /// 0x07: store this pair (the receiver is the key's successor and replicates it).
    Put {
        /// Key bytes.
        key: Vec<u8>,
        /// Value bytes.
        value: Vec<u8>,
    },
    /// 0x87: stored or refused (store full).
    PutAck {
        /// The answering node.
        me: NodeRef,
        /// Whether it was stored.
        stored: bool,
    },
    /// 0x08: the value under this key.
    Get {
        /// Key bytes.
        key: Vec<u8>,
    },
    /// 0x88: the value, if held.
    Value {
        /// The answering node.
        me: NodeRef,
        /// The value.
        value: Option<Vec<u8>>,
    },
    /// 0x09: delete this key (and, when `propagate`, from the replicas too).
    Delete {
        /// Key bytes.
        key: Vec<u8>,
        /// Whether the receiver is the primary and should tell its replicas.
        propagate: bool,
    },
    /// 0x89: whether the key was there.
    Deleted {
        /// The answering node.
        me: NodeRef,
        /// Whether it existed.
        existed: bool,
    },
    /// 0x0a: take these items (key hand-over on join and leave, replication, deletes).
    Transfer {
        /// Versioned pairs and tombstones.
        items: Vec<Item>,
    },
    /// 0x8a: taken.
    TransferAck,
    /// 0x0d: who is your predecessor (the cheap check of a finger in fix_fingers)?
    GetPred,
    /// 0x8d: my predecessor.
    Pred {
        /// The answering node.
        me: NodeRef,
        /// Its predecessor, if known.
        pred: Option<NodeRef>,
    },
    /// 0x0c: send me your counters (`chord stats`).
    GetStats,
    /// 0x8c: my counters.
    Stats {
        /// The answering node.
        me: NodeRef,
        /// Its predecessor.
        pred: Option<NodeRef>,
        /// The counters, in the order of [`STAT_NAMES`] (a newer peer may send more;
        /// at most [`MAX_STATS`]).
        values: Vec<u64>,
    },
    /// 0xff: the answer to any request this node will not serve; the header's ring bits
    /// are the answering node's m (so a [`ErrorCode::WrongRing`] names both sizes).
    Error {
        /// Why.
        code: ErrorCode,
    },
    /// 0x0b (no response): I am leaving; here are my neighbours.
    Leaving {
        /// The leaving node.
        me: NodeRef,
        /// Its predecessor.
        pred: Option<NodeRef>,
        /// Its successor list.
        succs: Vec<NodeRef>,
    },
}

impl Body {
    /// The type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Body::Ping => 0x01,
            Body::Pong { .. } => 0x81,
            Body::GetNeighbors => 0x02,
            Body::Neighbors { .. } => 0x82,
            Body::Notify { .. } => 0x03,
            Body::FindStep { .. } => 0x04,
            Body::StepReply { .. } => 0x84,
            Body::FindRec { .. } => 0x05,
            Body::RecDone { .. } => 0x85,
            Body::GetFingers => 0x06,
            Body::Fingers { .. } => 0x86,
            Body::Put { .. } => 0x07,
            Body::PutAck { .. } => 0x87,
            Body::Get { .. } => 0x08,
            Body::Value { .. } => 0x88,
            Body::Delete { .. } => 0x09,
            Body::Deleted { .. } => 0x89,
            Body::Transfer { .. } => 0x0a,
            Body::TransferAck => 0x8a,
            Body::Leaving { .. } => 0x0b,
            Body::GetStats => 0x0c,
            Body::GetPred => 0x0d,
            Body::Pred { .. } => 0x8d,
            Body::Stats { .. } => 0x8c,
            Body::Error { .. } => 0xff,
        }
    }

    /// Whether this is a response (matched to a pending request by transaction id).
    pub fn is_response(&self) -> bool {
        self.kind() & 0x80 != 0
    }
}

/// Why a node refused a request ([`Body::Error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: the request came from a ring with another number of bits m.
    WrongRing,
    /// 2: the sender's address exceeded its request rate; retry later.
    RateLimited,
    /// A code this version does not know (kept, so a newer peer's reason is still shown).
    Other(u8),
}

impl ErrorCode {
    /// The code byte.
    pub fn byte(self) -> u8 {
        match self {
            ErrorCode::WrongRing => 1,
            ErrorCode::RateLimited => 2,
            ErrorCode::Other(b) => b,
        }
    }

    /// The code for a byte.
    pub fn from_byte(b: u8) -> ErrorCode {
        match b {
            1 => ErrorCode::WrongRing,
            2 => ErrorCode::RateLimited,
            b => ErrorCode::Other(b),
        }
    }
}

/// One key in a [`Body::Transfer`]: a versioned value, or a tombstone (`value: None`)
/// saying the key was deleted at that version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Key bytes.
    pub key: Vec<u8>,
    /// Version, assigned by the key's responsible node: one more than the highest it knew.
    pub version: u64,
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// A whole message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender's ring size m, or 0 from a client.
    pub bits: u8,
    /// Transaction id.
    pub txid: u64,
    /// What it says.
    pub body: Body,
}

/// Why bytes are not a Chord message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The datagram ended inside a field.
    #[error("message truncated: needed {needed} more bytes for {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes missing.
        needed: usize,
    },
    /// Not "CH".
    #[error("bad magic, not a Chord message")]
    BadMagic,
    /// A version we do not speak.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// A type byte we do not know.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// The ring size is above 160.
    #[error("ring bits {0} out of range 0..=160")]
    BadBits(u8),
    /// An address family byte other than 4 or 6.
    #[error("unknown address family {0}")]
    BadFamily(u8),
    /// A boolean or option flag other than 0 or 1.
    #[error("flag byte {0} is neither 0 nor 1")]
    BadFlag(u8),
    /// A list or byte string longer than its limit.
    #[error("{what} has {len} elements, the limit is {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes left over after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// The datagram is larger than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes exceeds the limit")]
    Oversized(usize),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated {
                what,
                needed: n - self.buf.len(),
            });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            f => Err(WireError::BadFlag(f)),
        }
    }

    fn id(&mut self) -> Result<Id, WireError> {
        let b = self.take(ID_LEN, "id")?;
        let mut a = [0u8; ID_LEN];
        a.copy_from_slice(b);
        Ok(Id(a))
    }

    fn addr(&mut self) -> Result<SocketAddr, WireError> {
        let ip = match self.u8("address family")? {
            4 => {
                let b = self.take(4, "IPv4 address")?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            6 => {
                let b = self.take(16, "IPv6 address")?;
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                IpAddr::V6(Ipv6Addr::from(a))
            }
            f => return Err(WireError::BadFamily(f)),
        };
        let port = self.u16("port")?;
        Ok(SocketAddr::new(ip, port))
    }

    fn node(&mut self) -> Result<NodeRef, WireError> {
        let id = self.id()?;
        let addr = self.addr()?;
        Ok(NodeRef { id, addr })
    }

    fn opt_node(&mut self) -> Result<Option<NodeRef>, WireError> {
        Ok(if self.flag("option flag")? {
            Some(self.node()?)
        } else {
            None
        })
    }

    fn count(&mut self, what: &'static str, max: usize) -> Result<usize, WireError> {
        let n = usize::from(self.u8(what)?);
        if n > max {
            return Err(WireError::TooLong { what, len: n, max });
        }
        Ok(n)
    }

    fn nodes(&mut self) -> Result<Vec<NodeRef>, WireError> {
        let n = self.count("node list", MAX_NODES)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.node()?);
        }
        Ok(v)
    }

    fn bytes(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, WireError> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(WireError::TooLong { what, len: n, max });
        }
        Ok(self.take(n, what)?.to_vec())
    }
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

fn put_node(out: &mut Vec<u8>, n: &NodeRef) {
    out.extend_from_slice(n.id.as_bytes());
    put_addr(out, &n.addr);
}

fn put_opt_node(out: &mut Vec<u8>, n: &Option<NodeRef>) {
    match n {
        Some(n) => {
            out.push(1);
            put_node(out, n);
        }
        None => out.push(0),
    }
}

/// Lists longer than the limit are cut at the limit: the encoder never writes what the
/// decoder would refuse.
fn put_nodes(out: &mut Vec<u8>, v: &[NodeRef]) {
    let v = &v[..v.len().min(MAX_NODES)];
    out.push(v.len() as u8);
    for n in v {
        put_node(out, n);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8], max: usize) {
    let b = &b[..b.len().min(max)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

impl Message {
    /// Encodes the message. Lists and byte strings beyond their limits are truncated to the
    /// limit (callers keep within them; see [`Message::encoded_len_ok`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.body.kind());
        out.push(self.bits);
        out.extend_from_slice(&self.txid.to_be_bytes());
        match &self.body {
            Body::Ping | Body::GetNeighbors | Body::GetFingers | Body::TransferAck => {}
            Body::Pong { me } | Body::Notify { me } => put_node(&mut out, me),
            Body::Neighbors { me, pred, succs } | Body::Leaving { me, pred, succs } => {
                put_node(&mut out, me);
                put_opt_node(&mut out, pred);
                put_nodes(&mut out, succs);
            }
            Body::FindStep { key } => out.extend_from_slice(key.as_bytes()),
            Body::Error { code } => out.push(code.byte()),
            Body::GetStats | Body::GetPred => {}
            Body::Pred { me, pred } => {
                put_node(&mut out, me);
                put_opt_node(&mut out, pred);
            }
            Body::Stats { me, pred, values } => {
                put_node(&mut out, me);
                put_opt_node(&mut out, pred);
                let v = &values[..values.len().min(MAX_STATS)];
                out.push(v.len() as u8);
                for x in v {
                    out.extend_from_slice(&x.to_be_bytes());
                }
            }
            Body::StepReply { me, done, nodes } => {
                put_node(&mut out, me);
                out.push(u8::from(*done));
                put_nodes(&mut out, nodes);
            }
            Body::FindRec { key, origin, path } => {
                out.extend_from_slice(key.as_bytes());
                put_addr(&mut out, origin);
                put_path(&mut out, path);
            }
            Body::RecDone { path, succs } => {
                put_path(&mut out, path);
                put_nodes(&mut out, succs);
            }
            Body::Fingers { me, bits, entries } => {
                put_node(&mut out, me);
                out.push(*bits);
                let e = &entries[..entries.len().min(MAX_NODES)];
                out.push(e.len() as u8);
                for n in e {
                    put_opt_node(&mut out, n);
                }
            }
            Body::Put { key, value } => {
                put_bytes(&mut out, key, MAX_KEY);
                put_bytes(&mut out, value, MAX_VALUE);
            }
            Body::PutAck { me, stored: flag } | Body::Deleted { me, existed: flag } => {
                put_node(&mut out, me);
                out.push(u8::from(*flag));
            }
            Body::Get { key } => put_bytes(&mut out, key, MAX_KEY),
            Body::Value { me, value } => {
                put_node(&mut out, me);
                match value {
                    Some(v) => {
                        out.push(1);
                        put_bytes(&mut out, v, MAX_VALUE);
                    }
                    None => out.push(0),
                }
            }
            Body::Delete { key, propagate } => {
                put_bytes(&mut out, key, MAX_KEY);
                out.push(u8::from(*propagate));
            }
            Body::Transfer { items } => {
                let items = &items[..items.len().min(usize::from(u8::MAX))];
                out.push(items.len() as u8);
                for it in items {
                    put_bytes(&mut out, &it.key, MAX_KEY);
                    out.extend_from_slice(&it.version.to_be_bytes());
                    match &it.value {
                        Some(v) => {
                            out.push(1);
                            put_bytes(&mut out, v, MAX_VALUE);
                        }
                        None => out.push(0),
                    }
                }
            }
        }
        out
    }

    /// About the encoded length (exact for most messages), so that encoding allocates once.
    fn size_hint(&self) -> usize {
        const NODE: usize = 20 + 19; // id + the largest address
        HEADER_LEN
            + match &self.body {
                Body::Neighbors { succs, .. } | Body::Leaving { succs, .. } => {
                    2 * NODE + 3 + succs.len() * NODE
                }
                Body::StepReply { nodes, .. } => NODE + 2 + nodes.len() * NODE,
                Body::RecDone { path, succs } => 2 + path.len() * 20 + succs.len() * NODE,
                Body::FindRec { path, .. } => 20 + 20 + 1 + path.len() * 20,
                Body::Fingers { entries, .. } => NODE + 2 + entries.len() * (NODE + 1),
                Body::Put { key, value } => 4 + key.len() + value.len(),
                Body::Value { value, .. } => NODE + 3 + value.as_ref().map_or(0, Vec::len),
                Body::Transfer { items } => {
                    1 + items
                        .iter()
                        .map(|i| 13 + i.key.len() + i.value.as_ref().map_or(0, Vec::len))
                        .sum::<usize>()
                }
                Body::Stats { values, .. } => 2 * NODE + 2 + values.len() * 8,
                _ => 2 * NODE + 4,
            }
    }

    /// Whether the encoding fits in one datagram.
    pub fn encoded_len_ok(&self) -> bool {
        self.encode().len() <= MAX_DATAGRAM
    }

    /// Decodes one datagram.
    pub fn decode(data: &[u8]) -> Result<Message, WireError> {
        if data.len() > MAX_DATAGRAM {
            return Err(WireError::Oversized(data.len()));
        }
        let mut r = Reader { buf: data };
        if r.take(2, "magic")? != MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let kind = r.u8("type")?;
        let bits = r.u8("ring bits")?;
        if u32::from(bits) > servent_core::ID_BITS {
            return Err(WireError::BadBits(bits));
        }
        let txid = r.u64("transaction id")?;
        let body = match kind {
            0x01 => Body::Ping,
            0x81 => Body::Pong { me: r.node()? },
            0x02 => Body::GetNeighbors,
            0x82 => Body::Neighbors {
                me: r.node()?,
                pred: r.opt_node()?,
                succs: r.nodes()?,
            },
            0x03 => Body::Notify { me: r.node()? },
            0x04 => Body::FindStep { key: r.id()? },
            0x84 => Body::StepReply {
                me: r.node()?,
                done: r.flag("done flag")?,
                nodes: r.nodes()?,
            },
            0x05 => Body::FindRec {
                key: r.id()?,
                origin: r.addr()?,
                path: read_path(&mut r)?,
            },
            0x85 => Body::RecDone {
                path: read_path(&mut r)?,
                succs: r.nodes()?,
            },
            0x06 => Body::GetFingers,
            0x86 => {
                let me = r.node()?;
                let fbits = r.u8("finger bits")?;
                let n = r.count("finger table", MAX_NODES)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(r.opt_node()?);
                }
                Body::Fingers {
                    me,
                    bits: fbits,
                    entries,
                }
            }
            0x07 => Body::Put {
                key: r.bytes("key", MAX_KEY)?,
                value: r.bytes("value", MAX_VALUE)?,
            },
            0x87 => Body::PutAck {
                me: r.node()?,
                stored: r.flag("stored flag")?,
            },
            0x08 => Body::Get {
                key: r.bytes("key", MAX_KEY)?,
            },
            0x88 => Body::Value {
                me: r.node()?,
                value: if r.flag("value flag")? {
                    Some(r.bytes("value", MAX_VALUE)?)
                } else {
                    None
                },
            },
            0x09 => Body::Delete {
                key: r.bytes("key", MAX_KEY)?,
                propagate: r.flag("propagate flag")?,
            },
            0x89 => Body::Deleted {
                me: r.node()?,
                existed: r.flag("existed flag")?,
            },
            0x0a => {
                let n = usize::from(r.u8("item count")?);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let key = r.bytes("key", MAX_KEY)?;
                    let version = r.u64("version")?;
                    let value = if r.flag("value flag")? {
                        Some(r.bytes("value", MAX_VALUE)?)
                    } else {
                        None
                    };
                    items.push(Item {
                        key,
                        version,
                        value,
                    });
                }
                Body::Transfer { items }
            }
            0x8a => Body::TransferAck,
            0x0b => Body::Leaving {
                me: r.node()?,
                pred: r.opt_node()?,
                succs: r.nodes()?,
            },
            0x0c => Body::GetStats,
            0x0d => Body::GetPred,
            0x8d => Body::Pred {
                me: r.node()?,
                pred: r.opt_node()?,
            },
            0x8c => {
                let me = r.node()?;
                let pred = r.opt_node()?;
                let n = r.count("stats", MAX_STATS)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(r.u64("stat")?);
                }
                Body::Stats { me, pred, values }
            }
            0xff => Body::Error {
                code: ErrorCode::from_byte(r.u8("error code")?),
            },
            k => return Err(WireError::UnknownType(k)),
        };
        if !r.buf.is_empty() {
            return Err(WireError::Trailing(r.buf.len()));
        }
        Ok(Message { bits, txid, body })
    }
}

fn put_path(out: &mut Vec<u8>, path: &[Id]) {
    let p = &path[..path.len().min(MAX_PATH)];
    out.push(p.len() as u8);
    for id in p {
        out.extend_from_slice(id.as_bytes());
    }
}

fn read_path(r: &mut Reader<'_>) -> Result<Vec<Id>, WireError> {
    let n = r.count("path", MAX_PATH)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(r.id()?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn node(id: u64, port: u16) -> NodeRef {
        NodeRef {
            id: Id::from_u64(id),
            addr: v4(port),
        }
    }

    #[test]
    fn golden_ping_is_thirteen_header_bytes() {
        let m = Message {
            bits: 5,
            txid: 0x0102_0304_0506_0708,
            body: Body::Ping,
        };
        let b = m.encode();
        assert_eq!(
            b,
            [0x43, 0x48, 0x02, 0x01, 0x05, 1, 2, 3, 4, 5, 6, 7, 8].to_vec()
        );
        assert_eq!(Message::decode(&b), Ok(m));
    }

    #[test]
    fn golden_step_reply_lists_nodes_with_their_addresses() {
        let m = Message {
            bits: 5,
            txid: 9,
            body: Body::StepReply {
                me: node(8, 4000),
                done: false,
                nodes: vec![node(1, 4001)],
            },
        };
        let mut want = vec![0x43, 0x48, 2, 0x84, 5, 0, 0, 0, 0, 0, 0, 0, 9];
        want.extend_from_slice(&[0u8; 19]);
        want.push(8);
        want.extend_from_slice(&[4, 127, 0, 0, 1, 0x0f, 0xa0]);
        want.push(0); // not done
        want.push(1); // one node
        want.extend_from_slice(&[0u8; 19]);
        want.push(1);
        want.extend_from_slice(&[4, 127, 0, 0, 1, 0x0f, 0xa1]);
        assert_eq!(m.encode(), want);
        assert_eq!(Message::decode(&want), Ok(m));
    }

    #[test]
    fn golden_put_carries_length_prefixed_key_and_value() {
        let m = Message {
            bits: 160,
            txid: 1,
            body: Body::Put {
                key: b"k".to_vec(),
                value: b"vv".to_vec(),
            },
        };
        let want = [
            0x43, 0x48, 2, 0x07, 160, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b'k', 0, 2, b'v', b'v',
        ];
        assert_eq!(m.encode(), want.to_vec());
        assert_eq!(Message::decode(&want), Ok(m));
    }

    #[test]
    fn golden_ipv6_address_uses_family_six() {
        let a: SocketAddr = "[::1]:7".parse().unwrap_or_else(|_| v4(7));
        let m = Message {
            bits: 0,
            txid: 0,
            body: Body::Notify {
                me: NodeRef {
                    id: Id::ZERO,
                    addr: a,
                },
            },
        };
        let b = m.encode();
        assert_eq!(b.len(), HEADER_LEN + 20 + 1 + 16 + 2);
        assert_eq!(b[HEADER_LEN + 20], 6);
        assert_eq!(&b[b.len() - 3..], &[1, 0, 7]);
        assert_eq!(Message::decode(&b), Ok(m));
    }

    #[test]
    fn golden_transfer_carries_a_version_and_an_optional_value() {
        let m = Message {
            bits: 5,
            txid: 3,
            body: Body::Transfer {
                items: vec![
                    Item {
                        key: b"k".to_vec(),
                        version: 258,
                        value: Some(b"v".to_vec()),
                    },
                    Item {
                        key: b"d".to_vec(),
                        version: 7,
                        value: None,
                    },
                ],
            },
        };
        let want = [
            0x43, 0x48, 2, 0x0a, 5, 0, 0, 0, 0, 0, 0, 0, 3, // header
            2, // two items
            0, 1, b'k', 0, 0, 0, 0, 0, 0, 1, 2, 1, 0, 1, b'v', // k = v at version 258
            0, 1, b'd', 0, 0, 0, 0, 0, 0, 0, 7, 0, // d deleted at version 7
        ];
        assert_eq!(m.encode(), want.to_vec());
        assert_eq!(Message::decode(&want), Ok(m));
    }

    #[test]
    fn golden_error_names_the_answerers_ring_bits_and_a_code() {
        let m = Message {
            bits: 5,
            txid: 9,
            body: Body::Error {
                code: ErrorCode::WrongRing,
            },
        };
        let b = m.encode();
        assert_eq!(b, b"CH\x02\xff\x05\0\0\0\0\0\0\0\x09\x01");
        assert_eq!(Message::decode(&b), Ok(m));
        assert!(
            Body::Error {
                code: ErrorCode::RateLimited
            }
            .is_response()
        );
    }

    #[test]
    fn malformed_inputs_give_typed_errors() {
        assert!(matches!(
            Message::decode(b"CH"),
            Err(WireError::Truncated { .. })
        ));
        assert_eq!(
            Message::decode(b"XX\x01\x01\x05\0\0\0\0\0\0\0\0"),
            Err(WireError::BadMagic)
        );
        assert_eq!(
            Message::decode(b"CH\x01\x01\x05\0\0\0\0\0\0\0\0"),
            Err(WireError::BadVersion(1))
        );
        assert_eq!(
            Message::decode(b"CH\x02\x7f\x05\0\0\0\0\0\0\0\0"),
            Err(WireError::UnknownType(0x7f))
        );
        assert_eq!(
            Message::decode(b"CH\x02\x01\xa1\0\0\0\0\0\0\0\0"),
            Err(WireError::BadBits(0xa1))
        );
        assert_eq!(
            Message::decode(b"CH\x02\x01\x05\0\0\0\0\0\0\0\0\0"),
            Err(WireError::Trailing(1))
        );
        // A Get announcing a 60000-byte key is refused on the length, before any copy.
        assert!(matches!(
            Message::decode(b"CH\x02\x08\x05\0\0\0\0\0\0\0\0\xea\x60"),
            Err(WireError::TooLong { max: MAX_KEY, .. })
        ));
        assert_eq!(
            Message::decode(&vec![0u8; MAX_DATAGRAM + 1]),
            Err(WireError::Oversized(MAX_DATAGRAM + 1))
        );
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p)),
        ]
    }

    fn arb_node() -> impl Strategy<Value = NodeRef> {
        (any::<[u8; 20]>(), arb_addr()).prop_map(|(id, addr)| NodeRef { id: Id(id), addr })
    }

    fn arb_nodes() -> impl Strategy<Value = Vec<NodeRef>> {
        proptest::collection::vec(arb_node(), 0..8)
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        let id = any::<[u8; 20]>().prop_map(Id);
        prop_oneof![
            Just(Body::Ping),
            arb_node().prop_map(|me| Body::Pong { me }),
            Just(Body::GetNeighbors),
            (arb_node(), proptest::option::of(arb_node()), arb_nodes())
                .prop_map(|(me, pred, succs)| Body::Neighbors { me, pred, succs }),
            arb_node().prop_map(|me| Body::Notify { me }),
            id.clone().prop_map(|key| Body::FindStep { key }),
            (arb_node(), any::<bool>(), arb_nodes())
                .prop_map(|(me, done, nodes)| Body::StepReply { me, done, nodes }),
            (
                id.clone(),
                arb_addr(),
                proptest::collection::vec(id.clone(), 0..10)
            )
                .prop_map(|(key, origin, path)| Body::FindRec { key, origin, path }),
            (proptest::collection::vec(id, 0..10), arb_nodes())
                .prop_map(|(path, succs)| Body::RecDone { path, succs }),
            Just(Body::GetFingers),
            (
                arb_node(),
                any::<u8>(),
                proptest::collection::vec(proptest::option::of(arb_node()), 0..10)
            )
                .prop_map(|(me, bits, entries)| Body::Fingers { me, bits, entries }),
            (arb_bytes(40), arb_bytes(200)).prop_map(|(key, value)| Body::Put { key, value }),
            (arb_node(), any::<bool>()).prop_map(|(me, stored)| Body::PutAck { me, stored }),
            arb_bytes(40).prop_map(|key| Body::Get { key }),
            (arb_node(), proptest::option::of(arb_bytes(100)))
                .prop_map(|(me, value)| Body::Value { me, value }),
            (arb_bytes(40), any::<bool>())
                .prop_map(|(key, propagate)| Body::Delete { key, propagate }),
            (arb_node(), any::<bool>()).prop_map(|(me, existed)| Body::Deleted { me, existed }),
            proptest::collection::vec(
                (
                    arb_bytes(20),
                    any::<u64>(),
                    proptest::option::of(arb_bytes(50))
                ),
                0..6
            )
            .prop_map(|items| Body::Transfer {
                items: items
                    .into_iter()
                    .map(|(key, version, value)| Item {
                        key,
                        version,
                        value,
                    })
                    .collect()
            }),
            Just(Body::TransferAck),
            Just(Body::GetStats),
            Just(Body::GetPred),
            (arb_node(), proptest::option::of(arb_node()))
                .prop_map(|(me, pred)| Body::Pred { me, pred }),
            (
                arb_node(),
                proptest::option::of(arb_node()),
                proptest::collection::vec(any::<u64>(), 0..MAX_STATS)
            )
                .prop_map(|(me, pred, values)| Body::Stats { me, pred, values }),
            any::<u8>().prop_map(|c| Body::Error {
                code: ErrorCode::from_byte(c)
            }),
            (arb_node(), proptest::option::of(arb_node()), arb_nodes())
                .prop_map(|(me, pred, succs)| Body::Leaving { me, pred, succs }),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Message::decode(&data);
        }

        #[test]
        fn arbitrary_bodies_after_a_valid_header_never_panic(kind in any::<u8>(), rest in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut data = vec![0x43, 0x48, 1, kind, 5, 0, 0, 0, 0, 0, 0, 0, 1];
            data.extend_from_slice(&rest);
            let _ = Message::decode(&data);
        }

        #[test]
        fn every_message_round_trips(bits in 0u8..=160, txid in any::<u64>(), body in arb_body()) {
            let m = Message { bits, txid, body };
            let b = m.encode();
            prop_assert_eq!(Message::decode(&b), Ok(m));
        }

        #[test]
        fn every_truncation_of_a_message_is_an_error(body in arb_body(), cut in any::<prop::sample::Index>()) {
            let b = Message { bits: 5, txid: 7, body }.encode();
            let n = cut.index(b.len());
            prop_assert!(Message::decode(&b[..n]).is_err());
        }
    }
}
