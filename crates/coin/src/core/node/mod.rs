//! The full node, sans-IO: peers (handshake, ping, addresses), headers-first sync, block
//! download from several peers with a bounded in-flight window, relay of blocks and
//! transactions, the mempool, misbehaviour scores and bans. It owns no socket, clock, disk or
//! thread: a driver feeds it [`Input`]s with `now`, and completes the slow work it hands out
//! as [`Event::Store`] requests (validate and connect a block, read blocks, look up the coins
//! a transaction spends) by sending the [`Reply`] back as [`Command::StoreDone`]. Replies must
//! come back in the order the requests left (one store, served in order), so that a coin
//! lookup always sees the chain the node last heard about.
//!
//! # Run loop
//! As [`servent_core::Core`]: hand in an input or the timer, then drain
//! [`Node::poll_transmit`] (the network first), [`Node::poll_event`] (store requests and
//! answers for the user), then re-arm the timer with [`Node::poll_timeout`]. `now` never goes
//! backwards; unix time is `unix_at_zero + now` (for version timestamps and the 2-hour
//! future rule).
//!
//! # Misbehaviour (Core's scores; 100 bans the address for 24 hours)
//! garbled, oversized or badly checksummed messages and lists above the protocol limits
//! (e.g. an `inv` flood of more than 50 000 entries): 100; an invalid header (proof of work,
//! nBits, time, version) or block: 100; a non-continuous `headers` list: 20; every 10th
//! `headers` message that does not connect: 20; a second `version`: 1.
pub mod address;
pub mod addrs;
pub mod headers;
pub mod peer;
mod sync;
mod txs;
pub mod types;

pub use types::*;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use secp256k1::{Secp256k1, VerifyOnly};
use servent_core::{CloseReason, ConnId, Core, Input, Instant, KeyedMap, Rng, Transmit, keyed_map};

use self::addrs::AddrTable;
use self::headers::{HeaderError, HeaderTree};
use self::peer::{
    BAN_SCORE, MAX_TX_REQUESTS, MAX_UNCONNECTING_HEADERS, MIN_PEER_PROTO_VERSION, PROTOCOL_VERSION,
    Peer,
};
use crate::core::block::UtxoView;
use crate::core::mempool::{Mempool, MempoolError};
use crate::wire::p2p::{
    self, GetHeaders, INV_BLOCK, INV_TX, Inv, MAX_ADDR, MAX_HEADERS, Message, NetAddr, Version,
};
use crate::wire::{Block, BlockHeader, Transaction};
use crate::{Params, hash_hex};

/// BIP130's `SENDHEADERS_VERSION`.
pub const SENDHEADERS_VERSION: i32 = 70_012;
/// Core's `NODE_NETWORK`.
pub const NODE_NETWORK: u64 = 1;

/// A transaction asked for and not delivered in this time may be asked from another peer.
pub const TX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Coin lookups handed to the store at once; the store's queue stays short.
pub const MAX_COINS_OUT: usize = 64;
/// Transactions waiting for a coin lookup; beyond this a peer's transaction is not kept.
pub const MAX_COINS_WAITING: usize = 10_000;

/// Transactions kept while their parent is missing (Core's `DEFAULT_MAX_ORPHAN_TRANSACTIONS`).
pub const MAX_ORPHANS: usize = 100;
/// An orphan is forgotten after this (Core's `ORPHAN_TX_EXPIRE_TIME`).
pub const ORPHAN_EXPIRY: Duration = Duration::from_secs(20 * 60);

/// Most banned addresses remembered.
pub const MAX_BANS: usize = 10_000;

/// Transaction ids recently refused (not asked for again until the tip moves).
const RECENT_REJECTS: usize = 10_000;

/// The node.
pub struct Node {
    cfg: NodeConfig,
    rng: Rng,
    nonce: u64,
    now: Instant,
    headers: HeaderTree,
    mempool: Mempool,
    secp: Secp256k1<VerifyOnly>,
    peers: BTreeMap<ConnId, Peer>,
    dialing: BTreeMap<ConnId, SocketAddr>,
    next_conn: u64,
    next_dial: Instant,
    bans: KeyedMap<IpAddr, Instant>,
    addrs: AddrTable,
    /// Block hash → (peer, asked at).
    in_flight: BTreeMap<[u8; 32], (ConnId, Instant)>,
    /// Blocks received, waiting for their parent to reach the store.
    held: BTreeMap<[u8; 32], (Block, Origin, Instant)>,
    /// Blocks at the store.
    submitting: BTreeSet<[u8; 32]>,
    /// Transaction ids whose coins are being looked up.
    tx_pending: BTreeSet<[u8; 32]>,
    /// Coin lookups at the store, and transactions waiting for one (bounded).
    coins_out: usize,
    coins_waiting: VecDeque<(Origin, Transaction)>,
    /// Transactions asked for, by which peer.
    tx_requested: BTreeMap<[u8; 32], (ConnId, Instant)>,
    rejects: BTreeSet<[u8; 32]>,
    /// Transactions waiting for a parent, with when they came.
    orphans: BTreeMap<[u8; 32], (Transaction, Instant)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("height", &self.headers.height())
            .field("tip", &hash_hex(&self.headers.tip()))
            .field("peers", &self.peers.len())
            .finish()
    }
}

fn ipv6_mapped(addr: &SocketAddr) -> [u8; 16] {
    match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Node {
    /// A node whose store holds `active` (genesis first, linked), or `None` if `active` is
    /// not a chain of `params`'s network.
    pub fn new(
        cfg: NodeConfig,
        params: Params,
        active: &[BlockHeader],
        mut rng: Rng,
    ) -> Option<Self> {
        let headers = HeaderTree::new(params, active)?;
        let bans = keyed_map(&mut rng);
        let addrs = AddrTable::new(cfg.max_addrs, &mut rng);
        let nonce = rng.next_u64();
        Some(Self {
            mempool: Mempool::new(cfg.mempool),
            cfg,
            rng,
            nonce,
            now: Instant::ZERO,
            headers,
            secp: Secp256k1::verification_only(),
            peers: BTreeMap::new(),
            dialing: BTreeMap::new(),
            next_conn: 0,
            next_dial: Instant::ZERO,
            bans,
            addrs,
            in_flight: BTreeMap::new(),
            held: BTreeMap::new(),
            submitting: BTreeSet::new(),
            tx_pending: BTreeSet::new(),
            coins_out: 0,
            coins_waiting: VecDeque::new(),
            tx_requested: BTreeMap::new(),
            rejects: BTreeSet::new(),
            orphans: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    pub fn headers(&self) -> &HeaderTree {
        &self.headers
    }
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }
    pub fn height(&self) -> u32 {
        self.headers.height()
    }
    pub fn tip(&self) -> [u8; 32] {
        self.headers.tip()
    }
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
    pub fn is_banned(&self, ip: &IpAddr) -> bool {
        self.bans.get(ip).is_some_and(|until| *until > self.now)
    }
    pub fn addr_count(&self) -> usize {
        self.addrs.len()
    }
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            height: self.height(),
            best: self.tip(),
            best_header_height: self.headers.best().height,
            peers: self.peers.len(),
            mempool_txs: self.mempool.len(),
            mempool_bytes: self.mempool.bytes(),
            banned: self.bans.values().filter(|u| **u > self.now).count(),
        }
    }
    fn unix(&self) -> i64 {
        self.cfg.unix_at_zero + (self.now.as_micros() / 1_000_000) as i64
    }

    fn send(&mut self, conn: ConnId, m: &Message) {
        let data = p2p::frame(self.headers.params().magic, m);
        if let Some(p) = self.peers.get_mut(&conn) {
            p.bytes_sent += data.len() as u64;
        }
        self.transmits.push_back(Transmit::Send { conn, data });
    }

    fn close(&mut self, conn: ConnId) {
        if self.peers.contains_key(&conn) {
            self.transmits.push_back(Transmit::Close { conn });
            self.drop_peer(conn);
        }
    }

    fn drop_peer(&mut self, conn: ConnId) {
        let Some(p) = self.peers.remove(&conn) else {
            return;
        };
        for h in &p.blocks_in_flight {
            self.in_flight.remove(h);
        }
        for t in &p.txs_requested {
            self.tx_requested.remove(t);
        }
        self.events
            .push_back(Event::PeerDown { conn, addr: p.addr });
        self.schedule_downloads();
    }

    /// Add `score` to the peer's misbehaviour; at [`BAN_SCORE`] ban its address and close.
    fn misbehave(&mut self, conn: ConnId, score: u32, reason: &str) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        p.score = p.score.saturating_add(score);
        if p.score >= BAN_SCORE {
            let ip = p.addr.ip();
            let until = self.now + self.cfg.ban_time;
            if self.bans.len() >= MAX_BANS && !self.bans.contains_key(&ip) {
                // Bounded: the ban closest to its end makes room.
                let first = self.bans.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k);
                if let Some(k) = first {
                    self.bans.remove(&k);
                }
            }
            self.bans.insert(ip, until);
            self.events.push_back(Event::Banned {
                ip,
                reason: reason.into(),
            });
            self.close(conn);
        }
    }

    fn version_msg(&mut self, to: &SocketAddr) -> Message {
        Message::Version(Version {
            version: PROTOCOL_VERSION,
            services: NODE_NETWORK,
            timestamp: self.unix(),
            receiver: NetAddr {
                services: 0,
                ip: ipv6_mapped(to),
                port: to.port(),
            },
            sender: NetAddr {
                services: NODE_NETWORK,
                ip: [0; 16],
                port: self.cfg.listen_port,
            },
            nonce: self.nonce,
            user_agent: self.cfg.user_agent.clone(),
            start_height: self.height() as i32,
            relay: true,
        })
    }

    fn on_connected(&mut self, conn: ConnId, addr: SocketAddr) {
        let outbound = self.dialing.remove(&conn).is_some();
        if self.is_banned(&addr.ip()) {
            self.transmits.push_back(Transmit::Close { conn });
            return;
        }
        let inbound_count = self.peers.values().filter(|p| p.inbound).count();
        if conn.is_inbound() && inbound_count >= self.cfg.max_inbound {
            self.transmits.push_back(Transmit::Close { conn });
            return;
        }
        let mut peer = Peer::new(addr, !outbound, self.now);
        peer.next_ping = self.now + self.cfg.ping_interval;
        self.peers.insert(conn, peer);
        self.events.push_back(Event::PeerUp { conn, addr });
        if outbound {
            let v = self.version_msg(&addr);
            self.send(conn, &v);
            if let Some(p) = self.peers.get_mut(&conn) {
                p.hs.sent_version = true;
            }
        }
    }

    fn on_received(&mut self, conn: ConnId, data: &[u8]) {
        let magic = self.headers.params().magic;
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        p.bytes_recv += data.len() as u64;
        // Parse from an offset and cut the buffer once: many small messages in one read cost
        // one move of the rest, not one per message.
        let mut buf = std::mem::take(&mut p.recv);
        buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            if !self.peers.contains_key(&conn) {
                return;
            }
            match p2p::parse(&buf[at..], magic) {
                Ok(None) => break,
                Ok(Some((m, used))) => {
                    at += used;
                    self.on_message(conn, m);
                }
                Err(e) => {
                    let reason = e.to_string();
                    self.misbehave(conn, BAN_SCORE, &reason);
                    return;
                }
            }
        }
        buf.drain(..at);
        if buf.len() > Peer::RECV_CAP {
            // Unreachable with the codec's length check; kept as the buffer's bound.
            self.misbehave(conn, BAN_SCORE, "oversized message");
            return;
        }
        if let Some(p) = self.peers.get_mut(&conn) {
            p.recv = buf;
        }
    }

    fn on_message(&mut self, conn: ConnId, m: Message) {
        let Some(p) = self.peers.get(&conn) else {
            return;
        };
        if p.hs.version.is_none() {
            match m {
                Message::Version(v) => self.on_version(conn, v),
                // Core: anything before `version` ends the connection.
                _ => self.close(conn),
            }
            return;
        }
        if !p.hs.got_verack {
            match m {
                Message::Verack => self.on_verack(conn),
                Message::Version(_) => self.misbehave(conn, 1, "duplicate version"),
                // Core ignores other messages before the handshake completes.
                _ => {}
            }
            return;
        }
        match m {
            Message::Version(_) => self.misbehave(conn, 1, "duplicate version"),
            Message::Verack => {}
            Message::Ping(n) => self.send(conn, &Message::Pong(n)),
            Message::Pong(n) => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    if let Some((want, sent)) = p.ping {
                        if want == n {
                            p.ping = None;
                            p.ping_us =
                                Some(self.now.saturating_duration_since(sent).as_micros() as u64);
                        }
                    }
                }
            }
            Message::Addr(list) => {
                let unix = self.unix() as u32;
                for (t, a) in list {
                    self.addrs.add(a, t.min(unix), &mut self.rng);
                }
            }
            Message::GetAddr => self.on_getaddr(conn),
            Message::Inv(list) => self.on_inv(conn, list),
            Message::GetData(list) => self.on_getdata(conn, list),
            Message::NotFound(list) => self.on_notfound(conn, list),
            Message::GetHeaders(g) => {
                let hs = self.headers.headers_after(&g.locator, &g.stop, MAX_HEADERS);
                if let Some(p) = self.peers.get_mut(&conn) {
                    if let Some(last) = hs.last() {
                        p.mark_known(last.hash());
                    }
                }
                self.send(conn, &Message::Headers(hs));
            }
            Message::GetBlocks(g) => {
                let inv = self
                    .headers
                    .headers_after(&g.locator, &g.stop, 500)
                    .iter()
                    .map(|h| Inv {
                        kind: INV_BLOCK,
                        hash: h.hash(),
                    })
                    .collect();
                self.send(conn, &Message::Inv(inv));
            }
            Message::Headers(hs) => self.on_headers(conn, hs),
            Message::Block(b) => self.on_block(conn, b),
            Message::Tx(tx) => self.on_tx(conn, tx),
            Message::SendHeaders => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.send_headers = true;
                }
            }
            Message::FeeFilter(_) | Message::Unknown { .. } => {}
        }
    }

    fn on_version(&mut self, conn: ConnId, v: Version) {
        let Some(p) = self.peers.get(&conn) else {
            return;
        };
        let inbound = p.inbound;
        let addr = p.addr;
        if v.version < MIN_PEER_PROTO_VERSION {
            self.close(conn);
            return;
        }
        if inbound && v.nonce == self.nonce {
            // Connected to ourselves.
            self.close(conn);
            return;
        }
        if !inbound && v.sender.port != 0 {
            self.addrs.add(
                NetAddr {
                    services: v.services,
                    ip: ipv6_mapped(&addr),
                    port: addr.port(),
                },
                self.unix() as u32,
                &mut self.rng,
            );
        }
        if let Some(p) = self.peers.get_mut(&conn) {
            p.hs.version = Some(v);
        }
        if inbound {
            let ours = self.version_msg(&addr);
            self.send(conn, &ours);
        }
        self.send(conn, &Message::Verack);
        if !inbound {
            self.send(conn, &Message::GetAddr);
        }
    }

    fn on_verack(&mut self, conn: ConnId) {
        if let Some(p) = self.peers.get_mut(&conn) {
            p.hs.got_verack = true;
        }
        // BIP130: only peers from protocol 70012 know `sendheaders`.
        let version = self
            .peers
            .get(&conn)
            .and_then(|p| p.hs.version.as_ref())
            .map_or(0, |v| v.version);
        if version >= SENDHEADERS_VERSION {
            self.send(conn, &Message::SendHeaders);
        }
        self.ask_headers(conn);
    }

    fn ask_headers(&mut self, conn: ConnId) {
        // From the best header's parent, as Core does, so that a peer on the same chain
        // answers at least that header and we learn what it has.
        let b = self.headers.best();
        let best = if b.height > 0 {
            b.header.prev
        } else {
            b.header.hash()
        };
        let locator = self.headers.locator(&best);
        self.send(
            conn,
            &Message::GetHeaders(GetHeaders {
                version: PROTOCOL_VERSION as u32,
                locator,
                stop: [0; 32],
            }),
        );
    }

    fn on_getaddr(&mut self, conn: ConnId) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        // Core answers inbound peers only, once per connection.
        if !p.inbound || p.answered_getaddr {
            return;
        }
        p.answered_getaddr = true;
        let list: Vec<(u32, NetAddr)> = self
            .addrs
            .sample(MAX_ADDR, &mut self.rng)
            .into_iter()
            .map(|k| (k.time, k.addr))
            .collect();
        if !list.is_empty() {
            self.send(conn, &Message::Addr(list));
        }
    }

    fn on_inv(&mut self, conn: ConnId, list: Vec<Inv>) {
        let mut want_headers = false;
        let mut getdata = Vec::new();
        for i in list {
            match i.kind {
                INV_BLOCK => {
                    if let Some(p) = self.peers.get_mut(&conn) {
                        p.mark_known(i.hash);
                    }
                    if self.headers.get(&i.hash).is_none() {
                        want_headers = true;
                    }
                }
                INV_TX => {
                    let Some(p) = self.peers.get_mut(&conn) else {
                        return;
                    };
                    p.mark_known(i.hash);
                    let asked = self.tx_requested.get(&i.hash).copied();
                    let waiting = asked.is_some_and(|(_, at)| {
                        self.now.saturating_duration_since(at) < TX_REQUEST_TIMEOUT
                    });
                    if self.mempool.contains(&i.hash)
                        || self.rejects.contains(&i.hash)
                        || self.tx_pending.contains(&i.hash)
                        || waiting
                        || p.txs_requested.len() >= MAX_TX_REQUESTS
                    {
                        continue;
                    }
                    p.txs_requested.insert(i.hash);
                    if let Some((old, _)) = asked {
                        // The first peer did not deliver in time: ask this one.
                        if let Some(o) = self.peers.get_mut(&old) {
                            o.txs_requested.remove(&i.hash);
                        }
                    }
                    self.tx_requested.insert(i.hash, (conn, self.now));
                    getdata.push(i);
                }
                _ => {}
            }
        }
        if !getdata.is_empty() {
            self.send(conn, &Message::GetData(getdata));
        }
        if want_headers {
            self.ask_headers(conn);
        }
    }

    fn on_getdata(&mut self, conn: ConnId, list: Vec<Inv>) {
        let mut notfound = Vec::new();
        for i in list {
            match i.kind {
                INV_TX => match self.mempool.get(&i.hash) {
                    Some(e) => {
                        let tx = e.tx.clone();
                        self.send(conn, &Message::Tx(tx));
                    }
                    None => notfound.push(i),
                },
                INV_BLOCK => {
                    let have = self
                        .headers
                        .get(&i.hash)
                        .is_some_and(|e| e.have_block && !e.invalid);
                    let Some(p) = self.peers.get_mut(&conn) else {
                        return;
                    };
                    if have && p.getdata_blocks.len() < p2p::MAX_INV {
                        p.getdata_blocks.push_back(i.hash);
                    } else {
                        notfound.push(i);
                    }
                }
                _ => notfound.push(i),
            }
        }
        if !notfound.is_empty() {
            self.send(conn, &Message::NotFound(notfound));
        }
        self.read_blocks_for(conn);
    }

    /// Hand the store the next few blocks a peer asked for (one read per peer at a time).
    fn read_blocks_for(&mut self, conn: ConnId) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        if p.reading || p.getdata_blocks.is_empty() {
            return;
        }
        let n = p.getdata_blocks.len().min(16);
        let hashes: Vec<[u8; 32]> = p.getdata_blocks.drain(..n).collect();
        p.reading = true;
        self.events
            .push_back(Event::Store(Request::ReadBlocks { conn, hashes }));
    }

    fn on_notfound(&mut self, conn: ConnId, list: Vec<Inv>) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        for i in list {
            if p.blocks_in_flight.remove(&i.hash) {
                self.in_flight.remove(&i.hash);
            }
            if p.txs_requested.remove(&i.hash) {
                self.tx_requested.remove(&i.hash);
            }
        }
        self.schedule_downloads();
    }

    fn on_store_done(&mut self, reply: Reply) {
        match reply {
            Reply::BlockDone {
                origin,
                hash,
                result,
            } => self.on_block_done(origin, hash, result),
            Reply::Blocks {
                conn,
                blocks,
                missing,
            } => {
                if !self.peers.contains_key(&conn) {
                    return;
                }
                for b in blocks {
                    self.send(conn, &Message::Block(b));
                }
                if !missing.is_empty() {
                    let inv = missing
                        .into_iter()
                        .map(|hash| Inv {
                            kind: INV_BLOCK,
                            hash,
                        })
                        .collect();
                    self.send(conn, &Message::NotFound(inv));
                }
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.reading = false;
                }
                self.read_blocks_for(conn);
            }
            Reply::Coins { origin, tx, view } => self.on_coins(origin, tx, view),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Connect(to) => self.dial(to),
            Command::SubmitTx { id, tx } => self.take_tx(tx, Origin::Local(id)),
            Command::SubmitBlock { id, block } => self.take_block(block, Origin::Local(id)),
            Command::Info { id } => {
                let info = self.info();
                self.events.push_back(Event::Info { id, info });
            }
            Command::Peers { id } => {
                let peers = self
                    .peers
                    .iter()
                    .map(|(c, p)| PeerSummary {
                        conn: *c,
                        addr: p.addr,
                        inbound: p.inbound,
                        version: p.hs.version.as_ref().map_or(0, |v| v.version),
                        user_agent: p
                            .hs
                            .version
                            .as_ref()
                            .map(|v| v.user_agent.clone())
                            .unwrap_or_default(),
                        start_height: p.hs.version.as_ref().map_or(0, |v| v.start_height),
                        score: p.score,
                        ping_us: p.ping_us,
                        bytes_sent: p.bytes_sent,
                        bytes_recv: p.bytes_recv,
                    })
                    .collect();
                self.events.push_back(Event::Peers { id, peers });
            }
            Command::Template {
                id,
                coinbase_script,
            } => {
                let result = self.block_template(&coinbase_script);
                self.events.push_back(Event::Template { id, result });
            }
            Command::MempoolTx { id, txid } => {
                let tx = self.mempool.get(&txid).map(|e| e.tx.clone());
                self.events.push_back(Event::MempoolTx { id, tx });
            }
            Command::MempoolTxids { id } => {
                let txids = self.mempool.txids().copied().collect();
                self.events.push_back(Event::MempoolTxids { id, txids });
            }
            Command::StoreDone(r) => self.on_store_done(r),
        }
    }

    /// A template on the tip from the mempool, timed after the median time past and no
    /// earlier than now; with the fee of each transaction.
    pub fn block_template(
        &self,
        coinbase_script: &[u8],
    ) -> Result<(crate::mine::Template, Vec<i64>), String> {
        let base = self.template_base();
        let time =
            (base.median_time_past + 1).max(self.unix().clamp(0, i64::from(u32::MAX)) as u32);
        let t = crate::mine::block_template(
            self.headers.params(),
            base.prev,
            base.height,
            base.bits,
            time,
            &self.mempool,
            coinbase_script,
        )
        .map_err(|e| e.to_string())?;
        let fees = t
            .txs
            .iter()
            .map(|tx| self.mempool.get(&tx.txid()).map_or(0, |e| e.fee.to_sat()))
            .collect();
        Ok((t, fees))
    }

    /// The tip, the next nBits and the mempool in fee-rate order with parents first.
    pub fn template_base(&self) -> TemplateBase {
        let tip = self.tip();
        let tip_e = self.headers.tip_entry();
        let mut txs = Vec::new();
        let mut placed: BTreeSet<[u8; 32]> = BTreeSet::new();
        let mut pending: Vec<&crate::core::mempool::PoolEntry> =
            self.mempool.by_fee_rate().collect();
        // Parents first: repeat passes until nothing more can be placed.
        loop {
            let before = pending.len();
            pending.retain(|e| {
                let parents_ok = e.tx.inputs.iter().all(|i| {
                    !self.mempool.contains(&i.prevout.txid) || placed.contains(&i.prevout.txid)
                });
                if parents_ok {
                    placed.insert(e.tx.txid());
                    txs.push((e.tx.clone(), e.fee.to_sat()));
                }
                !parents_ok
            });
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        TemplateBase {
            prev: tip,
            height: self.height() + 1,
            bits: tip_e.map_or(self.headers.params().pow_limit_bits, |e| {
                self.headers.next_bits(e)
            }),
            median_time_past: self.headers.median_time_past(&tip),
            txs,
        }
    }

    fn outbound_count(&self) -> usize {
        self.peers.values().filter(|p| !p.inbound).count() + self.dialing.len()
    }

    /// Dial `to` unless connected, dialing, banned, or the outbound slots are full.
    fn dial(&mut self, to: SocketAddr) {
        if self.peers.values().any(|p| p.addr == to) || self.dialing.values().any(|a| *a == to) {
            return;
        }
        if self.is_banned(&to.ip()) || self.outbound_count() >= self.cfg.max_outbound {
            return;
        }
        let conn = ConnId::outbound(self.next_conn);
        self.next_conn += 1;
        self.dialing.insert(conn, to);
        self.transmits.push_back(Transmit::Connect { conn, to });
    }

    /// One dial from the address table into a free outbound slot.
    fn dial_from_table(&mut self) {
        self.next_dial = self.now + self.cfg.dial_every;
        if self.outbound_count() >= self.cfg.max_outbound {
            return;
        }
        let picks = self.addrs.sample(16, &mut self.rng);
        for k in picks {
            let ip = std::net::Ipv6Addr::from(k.addr.ip);
            let ip = match ip.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(ip),
            };
            let to = SocketAddr::new(ip, k.addr.port);
            let busy = self.peers.values().any(|p| p.addr == to)
                || self.dialing.values().any(|a| *a == to)
                || self.is_banned(&ip);
            if !busy {
                self.dial(to);
                return;
            }
        }
    }

    fn on_timer(&mut self) {
        let now = self.now;
        if self.cfg.dial_from_table && now >= self.next_dial {
            self.dial_from_table();
        }
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for c in conns {
            let Some(p) = self.peers.get(&c) else {
                continue;
            };
            if !p.ready()
                && now.saturating_duration_since(p.connected_at) >= self.cfg.handshake_timeout
            {
                self.close(c);
                continue;
            }
            if let Some((_, sent)) = p.ping {
                if now.saturating_duration_since(sent) >= self.cfg.ping_timeout {
                    self.close(c);
                    continue;
                }
            }
            if p.ready() && p.ping.is_none() && now >= p.next_ping {
                let nonce = self.rng.next_u64();
                if let Some(p) = self.peers.get_mut(&c) {
                    p.ping = Some((nonce, now));
                    p.next_ping = now + self.cfg.ping_interval;
                }
                self.send(c, &Message::Ping(nonce));
            }
        }
        let stalled: BTreeSet<ConnId> = self
            .in_flight
            .values()
            .filter(|(_, at)| now.saturating_duration_since(*at) >= self.cfg.block_timeout)
            .map(|(c, _)| *c)
            .collect();
        for c in stalled {
            self.close(c);
        }
        self.bans.retain(|_, until| *until > now);
        self.orphans
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < ORPHAN_EXPIRY);
        // Blocks whose parent never came make room again (they may be fetched later).
        let limit = self.cfg.block_timeout * 2;
        let stale: Vec<[u8; 32]> = self
            .held
            .iter()
            .filter(|(_, (_, _, at))| now.saturating_duration_since(*at) >= limit)
            .map(|(h, _)| *h)
            .collect();
        for h in stale {
            if let Some((_, origin, _)) = self.held.remove(&h) {
                self.local_result(
                    origin,
                    Err("inconclusive: previous block never arrived".into()),
                );
            }
        }
        let expired: Vec<([u8; 32], ConnId)> = self
            .tx_requested
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= TX_REQUEST_TIMEOUT)
            .map(|(t, (c, _))| (*t, *c))
            .collect();
        for (t, c) in expired {
            self.tx_requested.remove(&t);
            if let Some(p) = self.peers.get_mut(&c) {
                p.txs_requested.remove(&t);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |i: Instant| t = Some(t.map_or(i, |x| x.min(i)));
        if self.cfg.dial_from_table
            && !self.addrs.is_empty()
            && self.outbound_count() < self.cfg.max_outbound
        {
            at(self.next_dial);
        }
        for p in self.peers.values() {
            if !p.ready() {
                at(p.connected_at + self.cfg.handshake_timeout);
            }
            match p.ping {
                Some((_, sent)) => at(sent + self.cfg.ping_timeout),
                None if p.ready() => at(p.next_ping),
                None => {}
            }
        }
        for (_, asked) in self.in_flight.values() {
            at(*asked + self.cfg.block_timeout);
        }
        if let Some((_, _, t0)) = self.held.values().min_by_key(|(_, _, t)| *t) {
            at(*t0 + self.cfg.block_timeout * 2);
        }
        if let Some((_, t0)) = self.tx_requested.values().min_by_key(|(_, t)| *t) {
            at(*t0 + TX_REQUEST_TIMEOUT);
        }
        t
    }
}

impl Core for Node {
    type Command = Command;
    type Event = Event;

    fn handle_input(&mut self, now: Instant, input: Input<'_, Command>) {
        self.now = self.now.max(now);
        match input {
            Input::Command(c) => self.on_command(c),
            Input::Connected { conn, peer } => self.on_connected(conn, peer),
            Input::ConnectFailed { conn } => {
                self.dialing.remove(&conn);
            }
            Input::Received { conn, data } => self.on_received(conn, data),
            Input::Closed { conn, reason } => {
                let _: CloseReason = reason;
                self.dialing.remove(&conn);
                self.drop_peer(conn);
            }
            Input::Datagram { .. } => {}
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.on_timer();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline()
    }
}
