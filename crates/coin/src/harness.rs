//! The in-memory test network of coin nodes: real [`Node`] cores, each with a real chain
//! [`Store`] opened in memory (its requests are completed inline, in order), on the shared
//! [`servent_core::harness`] (virtual time that jumps to the next event, a fixed one-way
//! latency), and raw peers a test scripts byte by byte (hostile input). Tests read as
//! scenarios: set up, act, [`Net::drive_until`], assert.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use servent_core::harness::{End, RawEnd};
use servent_core::{Core, Input, Instant, Rng, Transmit};

use crate::core::block::{Chain, Coin};
use crate::core::node::{Command, Event, Node, NodeConfig, Request};
use crate::core::script::push_data;
use crate::store::Store;
use crate::store::node::{active_headers, serve};
use crate::wire::{Block, BlockHeader, OutPoint, Transaction, TxIn, TxOut};
use crate::{Params, hash_meets_target, merkle_root, subsidy, target_from_compact};

/// `OP_TRUE`: the output script the harness miner pays to (spendable with an empty script).
pub const ANYONE: [u8; 1] = [0x51];

/// One node of the network: the core and its store, whose requests it serves inline.
pub struct SimNode {
    pub node: Node,
    pub store: Store,
    pub addr: SocketAddr,
    /// While set, store requests wait in `held` until [`Net::release_store`].
    pub hold_store: bool,
    pub held: Vec<Request>,
    unix_at_zero: i64,
    /// The `now` of the last input, at which store requests are served.
    now: Instant,
}

impl SimNode {
    fn unix(&self) -> i64 {
        self.unix_at_zero + (self.now.as_micros() / 1_000_000) as i64
    }

    fn serve(&mut self, req: Request) {
        let unix = self.unix();
        let reply = serve(&mut self.store, req, unix);
        let now = self.now;
        self.node
            .handle_input(now, Input::Command(Command::StoreDone(reply)));
    }

    /// Serves the waiting store requests in order, and those they lead to behind them,
    /// then stops holding.
    fn release(&mut self, now: Instant, events: &mut Vec<Event>) {
        self.now = now;
        let mut held = std::mem::take(&mut self.held);
        while !held.is_empty() {
            self.serve(held.remove(0));
            while let Some(e) = self.node.poll_event() {
                match e {
                    Event::Store(req) => held.push(req),
                    other => events.push(other),
                }
            }
        }
        self.hold_store = false;
    }
}

impl Core for SimNode {
    type Command = Command;
    type Event = Event;

    fn handle_input(&mut self, now: Instant, input: Input<'_, Command>) {
        self.now = now;
        self.node.handle_input(now, input);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.node.handle_timeout(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.node.poll_transmit()
    }
    /// Store requests never come out: they are held or served here (what the reply makes
    /// the node send is drained next, by the harness).
    fn poll_event(&mut self) -> Option<Event> {
        loop {
            match self.node.poll_event()? {
                Event::Store(req) if self.hold_store => self.held.push(req),
                Event::Store(req) => self.serve(req),
                other => return Some(other),
            }
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }
}

/// The network.
pub struct Net {
    net: servent_core::harness::Harness<SimNode>,
    addrs: Vec<SocketAddr>,
    /// Every event of each node other than store requests, in order.
    events: Vec<Vec<Event>>,
    raws: Vec<End>,
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
            net: servent_core::harness::Harness::new()
                .with_latency(Duration::from_millis(20))
                .with_seed(seed),
            addrs: Vec::new(),
            events: Vec::new(),
            raws: Vec::new(),
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
        let i = self.addrs.len();
        let store = Store::open(":memory:", self.params.clone()).expect("in-memory store");
        let headers = active_headers(&store).expect("headers");
        let cfg = NodeConfig {
            unix_at_zero: self.unix_at_zero,
            ..self.cfg.clone()
        };
        let node = Node::new(cfg, self.params.clone(), &headers, rng.fork(i as u64))
            .expect("regtest genesis");
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1)), 18444);
        self.addrs.push(addr);
        self.events.push(Vec::new());
        let sim = SimNode {
            node,
            store,
            addr,
            hold_store: false,
            held: Vec::new(),
            unix_at_zero: self.unix_at_zero,
            now: self.net.now(),
        };
        self.net.add_at(addr, sim);
        self.collect();
        i
    }

    pub fn now(&self) -> Instant {
        self.net.now()
    }
    fn unix(&self) -> i64 {
        self.unix_at_zero + (self.now().as_micros() / 1_000_000) as i64
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &SimNode {
        self.net.node(self.addrs[i]).expect("a node of the network")
    }

    /// Node `i`, mutable.
    pub fn node_mut(&mut self, i: usize) -> &mut SimNode {
        self.net
            .node_mut(self.addrs[i])
            .expect("a node of the network")
    }

    /// Every event of node `i` other than store requests, in order.
    pub fn events(&self, i: usize) -> &[Event] {
        &self.events[i]
    }

    /// Moves the events the network collected to each node's list.
    fn collect(&mut self) {
        for (a, e) in self.net.take_events() {
            if let Some(i) = self.addrs.iter().position(|x| *x == a) {
                self.events[i].push(e);
            }
        }
    }

    /// Node `a` dials node `b`.
    pub fn connect(&mut self, a: usize, b: usize) {
        let to = self.addrs[b];
        self.command(a, Command::Connect(to));
    }

    /// Give node `i` a command.
    pub fn command(&mut self, i: usize, c: Command) {
        self.net.command(self.addrs[i], c);
        self.collect();
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_cmd += 1;
        self.next_cmd
    }

    /// Serve node `i`'s waiting store requests in order (and stop holding them).
    pub fn release_store(&mut self, i: usize) {
        let now = self.now();
        let mut events = Vec::new();
        self.node_mut(i).release(now, &mut events);
        self.events[i].extend(events);
        self.net.poke(self.addrs[i]);
        self.collect();
    }

    /// Cut every connection between `a` and `b` (both sides see a reset).
    pub fn disconnect(&mut self, a: usize, b: usize) {
        self.net.cut(self.addrs[a], self.addrs[b]);
    }

    /// A scripted peer at `ip` connects to node `i`; returns its index.
    pub fn raw_connect(&mut self, i: usize, ip: Ipv4Addr) -> usize {
        let k = self.raws.len();
        let from = SocketAddr::new(IpAddr::V4(ip), 40_000 + k as u16);
        let end = self.net.raw_connect(from, self.addrs[i]);
        self.raws.push(end);
        k
    }

    /// What scripted peer `k` received, and whether the node closed on it.
    pub fn raw(&self, k: usize) -> &RawEnd {
        self.net
            .raw(self.raws[k])
            .expect("a raw peer of the network")
    }

    /// Raw peer `k` sends bytes.
    pub fn raw_send(&mut self, k: usize, data: Vec<u8>) {
        self.net.send_raw(self.raws[k], &data);
    }

    /// One delivery (or the timers due next); `false` if nothing is left before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let moved = self.net.step(limit);
        self.collect();
        moved
    }

    /// Run until `done` holds or `max` of virtual time passed; returns whether it held.
    pub fn drive_until(&mut self, max: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let limit = self.now() + max;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(limit) {
                self.net.drive_until(limit);
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
        let base = self.node(i).node.template_base();
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
        self.node(i)
            .store
            .for_each_utxo(|op, c| {
                m.insert(op, c);
            })
            .expect("walk utxos");
        m
    }

    /// The UTXO set a fresh in-memory replay of node `i`'s active chain gives.
    pub fn replayed_utxos(&self, i: usize) -> BTreeMap<OutPoint, Coin> {
        let s = &self.node(i).store;
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
        self.node(i).store.tip()
    }
    pub fn height(&self, i: usize) -> u32 {
        self.node(i).store.height()
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
