//! The in-memory test network of coin nodes: real [`Node`] cores, each with a real chain
//! [`Store`] opened in memory (its requests are completed inline, in order), virtual time that
//! jumps to the next event, a fixed one-way latency, and raw peers a test scripts byte by byte
//! (hostile input). Tests read as scenarios: set up, act, [`Net::drive_until`], assert.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng, Transmit};

use crate::core::block::{Chain, Coin};
use crate::core::node::{Command, Event, Node, NodeConfig};
use crate::core::script::push_data;
use crate::store::Store;
use crate::store::node::{active_headers, serve};
use crate::wire::{Block, BlockHeader, OutPoint, Transaction, TxIn, TxOut};
use crate::{Params, hash_meets_target, merkle_root, subsidy, target_from_compact};

/// `OP_TRUE`: the output script the harness miner pays to (spendable with an empty script).
pub const ANYONE: [u8; 1] = [0x51];

/// One node of the network.
pub struct SimNode {
    pub node: Node,
    pub store: Store,
    pub addr: SocketAddr,
    /// Every event other than store requests, in order.
    pub events: Vec<Event>,
    next_inbound: u64,
    /// While set, store requests wait in `held` until [`Net::release_store`].
    pub hold_store: bool,
    pub held: Vec<crate::core::node::Request>,
}

/// A scripted peer.
#[derive(Debug, Default)]
pub struct RawPeer {
    pub node: usize,
    pub conn: Option<ConnId>,
    pub received: Vec<u8>,
    pub closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Node(usize, ConnId),
    Raw(usize),
}

#[derive(Debug)]
enum Action {
    Connected {
        node: usize,
        conn: ConnId,
        peer: SocketAddr,
    },
    ConnectFailed {
        node: usize,
        conn: ConnId,
    },
    Deliver {
        to: End,
        data: Vec<u8>,
    },
    Closed {
        to: End,
    },
}

/// The network.
pub struct Net {
    pub nodes: Vec<SimNode>,
    pub raws: Vec<RawPeer>,
    now: Instant,
    queue: BTreeMap<(Instant, u64), Action>,
    seq: u64,
    latency: Duration,
    links: BTreeMap<(usize, ConnId), End>,
    params: Params,
    unix_at_zero: i64,
    next_cmd: u64,
    mined: u64,
    cfg: NodeConfig,
}

impl Net {
    /// `n` regtest nodes at 10.0.0.1.. (port 18444), none connected, 20 ms latency.
    pub fn new(n: usize, seed: u64) -> Self {
        Self::with_config(n, seed, NodeConfig::default())
    }

    /// As [`Net::new`], every node with `cfg` (its `unix_at_zero` is the network's).
    pub fn with_config(n: usize, seed: u64, cfg: NodeConfig) -> Self {
        Self::with_params(n, seed, Params::regtest(), cfg)
    }

    /// As [`Net::with_config`] on the network of `params`.
    pub fn with_params(n: usize, seed: u64, params: Params, cfg: NodeConfig) -> Self {
        let mut net = Self {
            nodes: Vec::new(),
            raws: Vec::new(),
            now: Instant::ZERO,
            queue: BTreeMap::new(),
            seq: 0,
            latency: Duration::from_millis(20),
            links: BTreeMap::new(),
            params,
            unix_at_zero: NodeConfig::default().unix_at_zero,
            next_cmd: 1,
            mined: 0,
            cfg,
        };
        let mut rng = Rng::new(seed);
        for _ in 0..n {
            net.add_node(&mut rng);
        }
        net
    }

    /// Add a fresh node (empty chain); returns its index.
    pub fn add_node(&mut self, rng: &mut Rng) -> usize {
        let i = self.nodes.len();
        let store = Store::open(":memory:", self.params.clone()).expect("in-memory store");
        let headers = active_headers(&store).expect("headers");
        let cfg = NodeConfig {
            unix_at_zero: self.unix_at_zero,
            ..self.cfg.clone()
        };
        let node = Node::new(cfg, self.params.clone(), &headers, rng.fork(i as u64))
            .expect("regtest genesis");
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1)), 18444);
        self.nodes.push(SimNode {
            node,
            store,
            addr,
            events: Vec::new(),
            next_inbound: 0,
            hold_store: false,
            held: Vec::new(),
        });
        i
    }

    pub fn now(&self) -> Instant {
        self.now
    }
    fn unix(&self) -> i64 {
        self.unix_at_zero + (self.now.as_micros() / 1_000_000) as i64
    }

    fn at(&mut self, delay: Duration, a: Action) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), a);
    }

    /// Node `a` dials node `b`.
    pub fn connect(&mut self, a: usize, b: usize) {
        let to = self.nodes[b].addr;
        self.command(a, Command::Connect(to));
    }

    /// Give node `i` a command; returns the id used for commands that carry one.
    pub fn command(&mut self, i: usize, c: Command) {
        let now = self.now;
        self.nodes[i].node.handle_input(now, Input::Command(c));
        self.pump(i);
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_cmd += 1;
        self.next_cmd
    }

    /// Drain node `i`: transmits onto the network, store requests served inline.
    fn pump(&mut self, i: usize) {
        loop {
            let mut busy = false;
            while let Some(t) = self.nodes[i].node.poll_transmit() {
                busy = true;
                self.transmit(i, t);
            }
            while let Some(e) = self.nodes[i].node.poll_event() {
                busy = true;
                match e {
                    Event::Store(req) if self.nodes[i].hold_store => self.nodes[i].held.push(req),
                    Event::Store(req) => {
                        let unix = self.unix();
                        let reply = serve(&mut self.nodes[i].store, req, unix);
                        let now = self.now;
                        self.nodes[i]
                            .node
                            .handle_input(now, Input::Command(Command::StoreDone(reply)));
                    }
                    other => self.nodes[i].events.push(other),
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn transmit(&mut self, i: usize, t: Transmit) {
        let lat = self.latency;
        match t {
            Transmit::Connect { conn, to } => {
                let Some(j) = self.nodes.iter().position(|n| n.addr == to) else {
                    self.at(lat, Action::ConnectFailed { node: i, conn });
                    return;
                };
                let inb = ConnId::inbound(self.nodes[j].next_inbound);
                self.nodes[j].next_inbound += 1;
                self.links.insert((i, conn), End::Node(j, inb));
                self.links.insert((j, inb), End::Node(i, conn));
                let from = self.nodes[i].addr;
                self.at(
                    lat,
                    Action::Connected {
                        node: j,
                        conn: inb,
                        peer: from,
                    },
                );
                self.at(
                    lat,
                    Action::Connected {
                        node: i,
                        conn,
                        peer: to,
                    },
                );
            }
            Transmit::Send { conn, data } => {
                if let Some(to) = self.links.get(&(i, conn)).copied() {
                    self.at(lat, Action::Deliver { to, data });
                }
            }
            Transmit::Close { conn } => {
                if let Some(to) = self.links.remove(&(i, conn)) {
                    if let End::Node(j, c) = to {
                        self.links.remove(&(j, c));
                    }
                    self.at(lat, Action::Closed { to });
                }
            }
            Transmit::Datagram { .. } => {}
        }
    }

    /// Serve node `i`'s waiting store requests in order (and stop holding them).
    pub fn release_store(&mut self, i: usize) {
        // Requests made while these are served queue behind them: replies stay in order.
        while !self.nodes[i].held.is_empty() {
            let req = self.nodes[i].held.remove(0);
            let unix = self.unix();
            let reply = serve(&mut self.nodes[i].store, req, unix);
            let now = self.now;
            self.nodes[i]
                .node
                .handle_input(now, Input::Command(Command::StoreDone(reply)));
            self.pump(i);
        }
        self.nodes[i].hold_store = false;
    }

    /// Cut every connection between `a` and `b` (both sides see a reset).
    pub fn disconnect(&mut self, a: usize, b: usize) {
        let pairs: Vec<((usize, ConnId), End)> = self
            .links
            .iter()
            .filter(|((x, _), e)| *x == a && matches!(e, End::Node(y, _) if *y == b))
            .map(|(k, e)| (*k, *e))
            .collect();
        for ((x, c), e) in pairs {
            self.links.remove(&(x, c));
            if let End::Node(y, d) = e {
                self.links.remove(&(y, d));
            }
            self.at(
                Duration::ZERO,
                Action::Closed {
                    to: End::Node(x, c),
                },
            );
            self.at(Duration::ZERO, Action::Closed { to: e });
        }
    }

    /// A scripted peer at `ip` connects to node `i`; returns its index.
    pub fn raw_connect(&mut self, i: usize, ip: Ipv4Addr) -> usize {
        let k = self.raws.len();
        let inb = ConnId::inbound(self.nodes[i].next_inbound);
        self.nodes[i].next_inbound += 1;
        self.links.insert((i, inb), End::Raw(k));
        self.raws.push(RawPeer {
            node: i,
            conn: Some(inb),
            received: Vec::new(),
            closed: false,
        });
        let peer = SocketAddr::new(IpAddr::V4(ip), 40_000 + k as u16);
        self.at(
            self.latency,
            Action::Connected {
                node: i,
                conn: inb,
                peer,
            },
        );
        k
    }

    /// Raw peer `k` sends bytes.
    pub fn raw_send(&mut self, k: usize, data: Vec<u8>) {
        let (i, Some(conn)) = (self.raws[k].node, self.raws[k].conn) else {
            return;
        };
        if self.links.contains_key(&(i, conn)) {
            self.at(
                self.latency,
                Action::Deliver {
                    to: End::Node(i, conn),
                    data,
                },
            );
        }
    }

    /// One event (or timer); `false` if nothing is left before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let next_q = self.queue.keys().next().map(|(t, _)| *t);
        let next_t = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.node.poll_timeout().map(|t| (t, i)))
            .min();
        let take_queue = match (next_q, next_t) {
            (Some(q), Some((t, _))) => q <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if take_queue {
            let Some(((t, s), a)) = self.queue.pop_first() else {
                return false;
            };
            if t > limit {
                self.queue.insert((t, s), a);
                return false;
            }
            self.now = self.now.max(t);
            self.apply(a);
        } else if let Some((t, i)) = next_t {
            if t > limit {
                return false;
            }
            self.now = self.now.max(t);
            let now = self.now;
            self.nodes[i].node.handle_timeout(now);
            self.pump(i);
        }
        true
    }

    fn apply(&mut self, a: Action) {
        let now = self.now;
        match a {
            Action::Connected { node, conn, peer } => {
                self.nodes[node]
                    .node
                    .handle_input(now, Input::Connected { conn, peer });
                self.pump(node);
            }
            Action::ConnectFailed { node, conn } => {
                self.nodes[node]
                    .node
                    .handle_input(now, Input::ConnectFailed { conn });
                self.pump(node);
            }
            Action::Deliver { to, data } => match to {
                End::Node(i, conn) => {
                    if self.links.contains_key(&(i, conn)) {
                        self.nodes[i]
                            .node
                            .handle_input(now, Input::Received { conn, data: &data });
                        self.pump(i);
                    }
                }
                End::Raw(k) => self.raws[k].received.extend_from_slice(&data),
            },
            Action::Closed { to } => match to {
                End::Node(i, conn) => {
                    self.nodes[i].node.handle_input(
                        now,
                        Input::Closed {
                            conn,
                            reason: CloseReason::Reset,
                        },
                    );
                    self.pump(i);
                }
                End::Raw(k) => self.raws[k].closed = true,
            },
        }
    }

    /// Run until `done` holds or `max` of virtual time passed; returns whether it held.
    pub fn drive_until(&mut self, max: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let limit = self.now + max;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(limit) {
                self.now = self.now.max(limit);
                return done(self);
            }
        }
    }

    /// Run for `d` of virtual time.
    pub fn drive_for(&mut self, d: Duration) {
        self.drive_until(d, |_| false);
    }

    /// Mine a block on node `i`'s tip holding `txs` after a coinbase paying the subsidy to
    /// [`ANYONE`], and submit it to node `i`. Returns the block.
    pub fn mine(&mut self, i: usize, txs: Vec<Transaction>) -> Block {
        let base = self.nodes[i].node.template_base();
        self.mined += 1;
        let mut script_sig = crate::core::block::bip34_prefix(base.height);
        push_data(&mut script_sig, &self.mined.to_le_bytes());
        push_data(&mut script_sig, &(i as u64).to_le_bytes());
        let coinbase = Transaction {
            version: 1,
            inputs: vec![TxIn {
                prevout: OutPoint {
                    txid: [0; 32],
                    vout: u32::MAX,
                },
                script_sig,
                sequence: u32::MAX,
            }],
            outputs: vec![TxOut {
                value: subsidy(base.height, self.params.halving_interval).to_sat(),
                script_pubkey: ANYONE.to_vec(),
            }],
            lock_time: 0,
        };
        let mut all = vec![coinbase];
        all.extend(txs);
        let ids: Vec<[u8; 32]> = all.iter().map(Transaction::txid).collect();
        let time = (base.median_time_past + 1).max(self.unix() as u32);
        let mut header = BlockHeader {
            version: 4,
            prev: base.prev,
            merkle_root: merkle_root(&ids).0,
            time,
            bits: base.bits,
            nonce: 0,
        };
        let target = target_from_compact(header.bits).target;
        while !hash_meets_target(&header.hash(), &target) {
            header.nonce += 1;
        }
        let block = Block { header, txs: all };
        let id = self.next_id();
        self.command(
            i,
            Command::SubmitBlock {
                id,
                block: block.clone(),
            },
        );
        block
    }

    /// The UTXO set of node `i`'s store.
    pub fn utxos(&self, i: usize) -> BTreeMap<OutPoint, Coin> {
        let mut m = BTreeMap::new();
        self.nodes[i]
            .store
            .for_each_utxo(|op, c| {
                m.insert(op, c);
            })
            .expect("walk utxos");
        m
    }

    /// The UTXO set a fresh in-memory replay of node `i`'s active chain gives.
    pub fn replayed_utxos(&self, i: usize) -> BTreeMap<OutPoint, Coin> {
        let s = &self.nodes[i].store;
        let mut c = Chain::new(self.params.clone());
        for h in 1..=s.height() {
            let b = s
                .hash_at(h)
                .and_then(|hash| s.block(&hash).ok().flatten())
                .expect("active block");
            c.accept(&b, i64::from(u32::MAX)).expect("replay");
        }
        c.view.coins
    }

    /// Tip hash of node `i`'s store.
    pub fn tip(&self, i: usize) -> [u8; 32] {
        self.nodes[i].store.tip()
    }
    pub fn height(&self, i: usize) -> u32 {
        self.nodes[i].store.height()
    }
}

/// A transaction spending `prev` (an [`ANYONE`] output) into outputs of `values`, to [`ANYONE`].
pub fn spend(prev: OutPoint, values: &[i64]) -> Transaction {
    Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: prev,
            script_sig: Vec::new(),
            sequence: u32::MAX,
        }],
        outputs: values
            .iter()
            .map(|v| TxOut {
                value: *v,
                script_pubkey: ANYONE.to_vec(),
            })
            .collect(),
        lock_time: 0,
    }
}
