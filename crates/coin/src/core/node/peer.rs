//! One connection's state: the version/verack handshake (Core's rules), the reassembly buffer,
//! ping/pong, the misbehaviour score, blocks in flight from it and what it knows.
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

use servent_core::Instant;

use crate::wire::p2p::{HEADER_LEN, MAX_PAYLOAD, Version};

/// Core's `MIN_PEER_PROTO_VERSION`: older peers are disconnected.
pub const MIN_PEER_PROTO_VERSION: i32 = 31_800;
/// The protocol version we speak (pre-SegWit, with sendheaders and feefilter).
pub const PROTOCOL_VERSION: i32 = 70_015;
/// Misbehaviour score at which a peer is banned (Core's `-banscore` default).
pub const BAN_SCORE: u32 = 100;
/// Core's `MAX_UNCONNECTING_HEADERS`: every this many unconnecting `headers`, 20 points.
pub const MAX_UNCONNECTING_HEADERS: u32 = 10;
/// Hashes remembered per peer as known to it (not announced back).
const KNOWN_CAP: usize = 4096;
/// Most tx announcements from one peer we track at once (Core's `MAX_PEER_TX_ANNOUNCEMENTS`).
pub const MAX_TX_REQUESTS: usize = 5000;

/// Where a peer is in the handshake.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    pub sent_version: bool,
    pub version: Option<Version>,
    pub got_verack: bool,
}

/// A connected peer.
#[derive(Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub inbound: bool,
    pub connected_at: Instant,
    pub hs: Handshake,
    /// Bytes received and not yet parsed (at most one message: header + payload).
    pub recv: Vec<u8>,
    pub score: u32,
    /// Our outstanding ping: nonce and when it left.
    pub ping: Option<(u64, Instant)>,
    pub next_ping: Instant,
    /// Last round-trip time measured, microseconds.
    pub ping_us: Option<u64>,
    /// Blocks requested from this peer and not yet delivered.
    pub blocks_in_flight: BTreeSet<[u8; 32]>,
    /// Transactions requested from this peer.
    pub txs_requested: BTreeSet<[u8; 32]>,
    /// The best header this peer showed us (its tip as far as we know).
    pub best_known: Option<[u8; 32]>,
    pub unconnecting_headers: u32,
    pub answered_getaddr: bool,
    pub send_headers: bool,
    /// Block hashes it asked for that we still have to read from the store.
    pub getdata_blocks: VecDeque<[u8; 32]>,
    /// A block read for it is at the store.
    pub reading: bool,
    known: BTreeSet<[u8; 32]>,
    known_order: VecDeque<[u8; 32]>,
    pub bytes_recv: u64,
    pub bytes_sent: u64,
}

impl Peer {
    pub fn new(addr: SocketAddr, inbound: bool, now: Instant) -> Self {
        Self {
            addr,
            inbound,
            connected_at: now,
            hs: Handshake::default(),
            recv: Vec::new(),
            score: 0,
            ping: None,
            next_ping: now,
            ping_us: None,
            blocks_in_flight: BTreeSet::new(),
            txs_requested: BTreeSet::new(),
            best_known: None,
            unconnecting_headers: 0,
            answered_getaddr: false,
            send_headers: false,
            getdata_blocks: VecDeque::new(),
            reading: false,
            known: BTreeSet::new(),
            known_order: VecDeque::new(),
            bytes_recv: 0,
            bytes_sent: 0,
        }
    }

    /// Version received and verack received: the peer may sync and relay.
    pub fn ready(&self) -> bool {
        self.hs.version.is_some() && self.hs.got_verack
    }

    /// Most bytes the reassembly buffer needs (one whole message).
    pub const RECV_CAP: usize = HEADER_LEN + MAX_PAYLOAD;

    /// Remember that the peer knows `hash` (it sent it, or we announced it).
    pub fn mark_known(&mut self, hash: [u8; 32]) {
        if self.known.insert(hash) {
            self.known_order.push_back(hash);
            if self.known_order.len() > KNOWN_CAP {
                if let Some(old) = self.known_order.pop_front() {
                    self.known.remove(&old);
                }
            }
        }
    }
    pub fn knows(&self, hash: &[u8; 32]) -> bool {
        self.known.contains(hash)
    }
}
