//! The event engine and the virtual network.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng, Transmit};

use crate::dist::Dist;
use crate::queue::CalendarQueue;

/// Index of a node in a [`Sim`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NodeId(pub u32);

impl NodeId {
    /// As an index into per-node vectors.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The first virtual address; node `i` is `127.0.0.1 + i`. Virtual addresses never reach a
/// real network: the simulator is a closed world in one process.
const BASE_IP: u32 = 0x7f00_0001;
/// Bytes of IP+UDP header counted against bandwidth for each datagram.
const UDP_OVERHEAD: usize = 28;
/// Bytes of IP+TCP header counted against bandwidth for each stream send.
const TCP_OVERHEAD: usize = 40;

/// The network and engine settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The run's seed: the same seed gives the same run, event for event.
    pub seed: u64,
    /// One-way latency between two nodes, in milliseconds, drawn once per pair (so it is the
    /// same every time the pair talks, as on a real path).
    pub latency_ms: Dist,
    /// Probability that a datagram is lost. Stream connections are reliable (TCP retransmits).
    pub loss: f64,
    /// How long a connection attempt waits before failing when nothing answers (a dead host,
    /// a firewall that drops, a partition).
    pub connect_timeout: Duration,
    /// Record a hash of every delivered input ([`Sim::trace_hash`]); costs a little speed.
    pub trace: bool,
    /// Keep the events cores emit for [`Sim::take_events`]; turn off for huge runs that
    /// only read cores' state.
    pub collect_events: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            latency_ms: Dist::lognormal_median(40.0, 0.5),
            loss: 0.0,
            connect_timeout: Duration::from_secs(3),
            trace: false,
            collect_events: true,
        }
    }
}

/// Per-node settings.
#[derive(Clone, Debug)]
pub struct NodeOpts {
    /// Uplink in bytes per second; `None` is unlimited.
    pub up_bps: Option<u64>,
    /// Downlink in bytes per second; `None` is unlimited.
    pub down_bps: Option<u64>,
    /// Drops inbound connection attempts silently (a firewall or NAT). Datagrams still arrive.
    pub firewalled: bool,
    /// The port in the node's virtual address.
    pub port: u16,
}

impl Default for NodeOpts {
    fn default() -> NodeOpts {
        NodeOpts {
            up_bps: None,
            down_bps: None,
            firewalled: false,
            port: 6000,
        }
    }
}

/// Counters for one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams and stream sends this node transmitted.
    pub msgs_sent: u64,
    /// Bytes of payload it transmitted.
    pub bytes_sent: u64,
    /// Datagrams and stream chunks delivered to it.
    pub msgs_received: u64,
    /// Bytes of payload delivered to it.
    pub bytes_received: u64,
}

/// Counters for the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed by the engine.
    pub events: u64,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Datagrams lost (loss, dead or absent destination, partition).
    pub datagrams_lost: u64,
    /// Stream sends.
    pub stream_sends: u64,
    /// Payload bytes sent, both transports.
    pub bytes: u64,
    /// Connection attempts.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connects_failed: u64,
}

/// Churn: nodes leave after a session and come back after a downtime, as fresh cores.
pub struct Churn<C: Core> {
    /// Session length in seconds.
    pub session_s: Dist,
    /// Time offline in seconds before the node comes back.
    pub downtime_s: Dist,
    /// Makes the core of a returning node, and the commands it starts with.
    pub factory: ChurnFactory<C>,
}

/// Makes the core of a node that comes back, and the commands it starts with.
pub type ChurnFactory<C> =
    Box<dyn FnMut(NodeId, SocketAddr, &mut Rng) -> (C, Vec<<C as Core>::Command>)>;

impl<C: Core> std::fmt::Debug for Churn<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Churn")
            .field("session_s", &self.session_s)
            .field("downtime_s", &self.downtime_s)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Connecting,
    Established,
}

#[derive(Debug)]
struct Link {
    /// Unique over the whole run: events carry it so that a stale event never reaches a new
    /// connection that reuses the same `ConnId` after a node restarted.
    lid: u64,
    state: LinkState,
    peer: u32,
    /// The connection id on the peer's side, and its link id.
    peer_conn: ConnId,
    peer_lid: u64,
    /// No delivery on this link to the peer happens before this (in-order delivery).
    last_arrival: Instant,
    /// Bytes sent while connecting, flushed on establishment.
    early: Vec<Vec<u8>>,
}

/// What shares a node's uplink: each stream connection is a flow of its own, and all of
/// the node's datagrams are one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FlowKey {
    Datagrams,
    Conn(ConnId),
}

/// A message waiting for the sender's uplink.
enum Queued {
    /// A datagram to `dst`, or lost on the way (`dst` is `None`).
    Datagram {
        dst: Option<u32>,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Data {
        conn: ConnId,
        lid: u64,
        peer: u32,
        peer_conn: ConnId,
        peer_lid: u64,
        data: Vec<u8>,
    },
    /// An orderly close queued behind the connection's data.
    Fin {
        peer: u32,
        peer_conn: ConnId,
        peer_lid: u64,
    },
}

struct FlowQueue {
    /// The messages with their start tags.
    items: VecDeque<(u64, Queued)>,
    /// The latest delivery time of this flow's messages so far (in-order delivery).
    last: Instant,
}

/// A node's uplink shared fairly between its flows, by start-time fair queuing (Goyal et
/// al.): each message gets a start tag `max(virtual time, the flow's previous finish tag)`
/// and a finish tag `start + size`; the waiting message with the smallest start tag goes
/// next and sets the virtual time. So flows share the uplink byte for byte, as the kernel
/// interleaves the send buffers of a host's TCP sockets, and a small message on one
/// connection never waits behind another connection's backlog.
#[derive(Default)]
struct Uplink {
    flows: BTreeMap<FlowKey, FlowQueue>,
    /// Finish tag of each flow's latest message (forgotten when the uplink is idle).
    tags: BTreeMap<FlowKey, u64>,
    /// The start tag of the message in service.
    vtime: u64,
    /// Whether an [`Ev::UpNext`] is pending.
    scheduled: bool,
}

impl Uplink {
    /// Tags a message of `size` bytes on flow `key`; returns its start tag.
    fn tag(&mut self, key: FlowKey, size: usize) -> u64 {
        let prev = self.tags.get(&key).copied().unwrap_or(0);
        let start = self.vtime.max(prev);
        self.tags.insert(key, start + size as u64);
        start
    }
}

/// What the network model reads and writes of a node for every message, kept apart from
/// the node record (which holds the core inline and spans many cache lines): a send touches
/// the receiver's entry too, and this makes that one cache line.
#[derive(Clone, Copy, Debug)]
struct Net {
    /// The uplink is serialising a message until then.
    up_free: Instant,
    down_free: Instant,
    /// [`NodeOpts::up_bps`] and [`NodeOpts::down_bps`]; 0 is unlimited.
    up_bps: u64,
    down_bps: u64,
    partition: u16,
}

struct Node<C> {
    core: Option<C>,
    opts: NodeOpts,
    /// Messages waiting for the uplink (`None` while it has never been busy since a restart).
    uplink: Option<Box<Uplink>>,
    /// Bumped when the node dies, so a pending [`Ev::UpNext`] of the old life is ignored.
    up_gen: u32,
    timer_gen: u64,
    timer_at: Option<Instant>,
    conns: BTreeMap<ConnId, Link>,
    next_inbound: u64,
    stats: NodeStats,
}

enum Ev<Cmd> {
    Command(Cmd),
    Timer {
        generation: u64,
    },
    Datagram {
        from: SocketAddr,
        data: Vec<u8>,
    },
    Syn {
        from: u32,
        from_conn: ConnId,
        from_lid: u64,
        port: u16,
    },
    Refused {
        conn: ConnId,
        lid: u64,
    },
    SynAck {
        conn: ConnId,
        lid: u64,
        from: u32,
        from_conn: ConnId,
        from_lid: u64,
    },
    ConnectTimeout {
        conn: ConnId,
        lid: u64,
    },
    Data {
        conn: ConnId,
        lid: u64,
        data: Vec<u8>,
    },
    Fin {
        conn: ConnId,
        lid: u64,
        reason: CloseReason,
    },
    Leave,
    Join,
    /// The node's uplink is free: send the next waiting message.
    UpNext {
        generation: u32,
    },
}

/// A simulation of many nodes running the core `C` over a virtual network.
///
/// The engine pops events in (time, sequence) order; equal seeds give equal runs. Inputs are
/// handed to cores exactly as the tokio driver hands them over real sockets, and outputs are
/// drained in the contract's order (transmits, events, timer).
///
/// Model, in brief: each pair of nodes has a fixed one-way latency drawn from
/// [`SimConfig::latency_ms`]; a message leaves after the sender's uplink has serialised it
/// (size / up_bps) — a busy uplink serves its connections round robin, one message each,
/// and the node's datagrams as one more flow — arrives one latency later, and is delivered
/// after the receiver's downlink has taken it (reserved in sending order). Datagrams may be lost;
/// streams are reliable and in order. A connection attempt to a dead, absent, firewalled or
/// partitioned node fails after [`SimConfig::connect_timeout`]; one to a live node's address
/// with another port than its own is refused after a round trip (a closed port); when a node dies its peers
/// see their connections reset one latency later; partitioning resets connections that
/// cross it.
pub struct Sim<C: Core> {
    cfg: SimConfig,
    now: Instant,
    seq: u64,
    heap: CalendarQueue,
    slots: Vec<Option<(u32, Ev<C::Command>)>>,
    free_slots: Vec<u32>,
    nodes: Vec<Node<C>>,
    /// Per node, indexed like `nodes`.
    net: Vec<Net>,
    rng: Rng,
    net_rng: Rng,
    next_lid: u64,
    events: Vec<(Instant, NodeId, C::Event)>,
    stats: SimStats,
    trace: u64,
    churn: Option<Churn<C>>,
}

impl<C: Core> std::fmt::Debug for Sim<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("pending_events", &self.heap.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn mix(mut h: u64, v: u64) -> u64 {
    h ^= v;
    h = h.wrapping_mul(0x100_0000_01b3);
    h ^ (h >> 29)
}

impl<C: Core> Sim<C> {
    /// An empty simulation at time zero.
    pub fn new(cfg: SimConfig) -> Sim<C> {
        let rng = Rng::new(cfg.seed);
        let net_rng = rng.fork(u64::MAX);
        Sim {
            cfg,
            now: Instant::ZERO,
            seq: 0,
            heap: CalendarQueue::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            nodes: Vec::new(),
            net: Vec::new(),
            rng,
            net_rng,
            next_lid: 0,
            events: Vec::new(),
            stats: SimStats::default(),
            trace: 0xcbf2_9ce4_8422_2325,
            churn: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Adds a node running `core`; it is alive from now on.
    ///
    /// # Panics
    /// Past 16 million nodes (the size of the virtual address space).
    pub fn add_node(&mut self, core: C, opts: NodeOpts) -> NodeId {
        assert!(
            self.nodes.len() < (1 << 24) - 2,
            "virtual address space exhausted"
        );
        let id = NodeId(self.nodes.len() as u32);
        self.net.push(Net {
            up_free: Instant::ZERO,
            down_free: Instant::ZERO,
            up_bps: opts.up_bps.unwrap_or(0),
            down_bps: opts.down_bps.unwrap_or(0),
            partition: 0,
        });
        self.nodes.push(Node {
            core: Some(core),
            opts,
            uplink: None,
            up_gen: 0,
            timer_gen: 0,
            timer_at: None,
            conns: BTreeMap::new(),
            next_inbound: 0,
            stats: NodeStats::default(),
        });
        self.after_input(id.0);
        id
    }

    /// Number of nodes ever added (alive or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's virtual address.
    pub fn addr(&self, n: NodeId) -> SocketAddr {
        let port = self.nodes.get(n.index()).map_or(0, |x| x.opts.port);
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(BASE_IP + n.0), port))
    }

    /// The node behind a virtual address (any port), if there is one.
    pub fn node_of(&self, addr: SocketAddr) -> Option<NodeId> {
        let SocketAddr::V4(v4) = addr else {
            return None;
        };
        let i = u32::from(*v4.ip()).checked_sub(BASE_IP)?;
        ((i as usize) < self.nodes.len()).then_some(NodeId(i))
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The scenario's own randomness (separate from the network's).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// The node's core, `None` while it is dead.
    pub fn core(&self, n: NodeId) -> Option<&C> {
        self.nodes.get(n.index())?.core.as_ref()
    }

    /// The node's core, mutably (for inspection; drive it through commands).
    pub fn core_mut(&mut self, n: NodeId) -> Option<&mut C> {
        self.nodes.get_mut(n.index())?.core.as_mut()
    }

    /// Whether the node is alive.
    pub fn is_alive(&self, n: NodeId) -> bool {
        self.core(n).is_some()
    }

    /// The node's traffic counters.
    pub fn node_stats(&self, n: NodeId) -> NodeStats {
        self.nodes
            .get(n.index())
            .map(|x| x.stats)
            .unwrap_or_default()
    }

    /// The run's counters.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Hash of every input delivered so far (with [`SimConfig::trace`]); two runs with the
    /// same seed and the same commands have the same hash.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Events not yet processed.
    pub fn pending(&self) -> usize {
        self.heap.len()
    }

    /// Takes the events the cores emitted so far, in the order they happened.
    pub fn take_events(&mut self) -> Vec<(Instant, NodeId, C::Event)> {
        std::mem::take(&mut self.events)
    }

    /// Gives node `n` a command now.
    pub fn command(&mut self, n: NodeId, cmd: C::Command) {
        self.schedule(self.now, n.0, Ev::Command(cmd));
    }

    /// Gives node `n` a command at `at` (not before now).
    pub fn command_at(&mut self, at: Instant, n: NodeId, cmd: C::Command) {
        self.schedule(at.max(self.now), n.0, Ev::Command(cmd));
    }

    /// Turns churn on: every alive node leaves after a session drawn from `churn.session_s`
    /// and comes back as a fresh core after `churn.downtime_s`.
    pub fn set_churn(&mut self, churn: Churn<C>) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].core.is_some() {
                let s = churn.session_s.sample(&mut self.rng);
                self.schedule(self.now + secs(s), i as u32, Ev::Leave);
            }
        }
        self.churn = Some(churn);
    }

    /// Kills node `n` now: its core is dropped, its peers see resets.
    pub fn kill(&mut self, n: NodeId) {
        let Some(node) = self.nodes.get_mut(n.index()) else {
            return;
        };
        if node.core.take().is_none() {
            return;
        }
        node.timer_gen += 1;
        node.timer_at = None;
        node.uplink = None;
        node.up_gen = node.up_gen.wrapping_add(1);
        let conns = std::mem::take(&mut node.conns);
        for link in conns.into_values() {
            if link.state == LinkState::Established {
                let at = self.now + self.latency(n.0, link.peer);
                self.schedule(
                    at,
                    link.peer,
                    Ev::Fin {
                        conn: link.peer_conn,
                        lid: link.peer_lid,
                        reason: CloseReason::Reset,
                    },
                );
            }
        }
    }

    /// Brings a dead node back with a fresh core (same address).
    pub fn revive(&mut self, n: NodeId, core: C) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(n.index()) else {
            return;
        };
        if node.core.is_some() {
            return;
        }
        node.core = Some(core);
        let net = &mut self.net[n.index()];
        net.up_free = now;
        net.down_free = now;
        self.after_input(n.0);
    }

    /// Splits the network: `group(node)` names each node's side; nodes on different sides
    /// can no longer reach each other, and connections across are reset now.
    pub fn partition(&mut self, group: impl Fn(NodeId) -> u16) {
        for i in 0..self.nodes.len() {
            self.net[i].partition = group(NodeId(i as u32));
        }
        let mut resets = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for (conn, link) in &node.conns {
                if self.net[i].partition != self.net[link.peer as usize].partition {
                    resets.push((i as u32, *conn, link.lid));
                }
            }
        }
        for (i, conn, lid) in resets {
            self.schedule(
                self.now,
                i,
                Ev::Fin {
                    conn,
                    lid,
                    reason: CloseReason::Reset,
                },
            );
        }
    }

    /// Joins every side again.
    pub fn heal(&mut self) {
        for n in &mut self.net {
            n.partition = 0;
        }
    }

    /// Runs every event up to and including `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some((at, _, _)) = self.heap.peek() {
            if at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until no event is left or the clock would pass `limit`; returns whether it ran
    /// out of events (true) rather than time.
    pub fn run_until_idle(&mut self, limit: Instant) -> bool {
        while let Some((at, _, _)) = self.heap.peek() {
            if at > limit {
                self.now = self.now.max(limit);
                return false;
            }
            self.step();
        }
        true
    }

    /// Processes one event; false when there is none.
    pub fn step(&mut self) -> bool {
        let Some((at, _, slot)) = self.heap.pop() else {
            return false;
        };
        let Some((node, ev)) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return true;
        };
        self.free_slots.push(slot);
        self.now = self.now.max(at);
        self.stats.events += 1;
        self.dispatch(node, ev);
        true
    }

    fn schedule(&mut self, at: Instant, node: u32, ev: Ev<C::Command>) {
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = Some((node, ev));
                s
            }
            None => {
                self.slots.push(Some((node, ev)));
                (self.slots.len() - 1) as u32
            }
        };
        self.seq += 1;
        self.heap.push((at, self.seq, slot));
    }

    /// The fixed one-way latency between two nodes.
    fn latency(&self, a: u32, b: u32) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        // a fast non-secret generator: one per message, keyed by the pair, so latencies are
        // fixed per pair without storing N^2 of them
        let mut r = servent_core::rng::FastRng::new(
            self.cfg.seed
                ^ (u64::from(lo) << 32 | u64::from(hi)).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let ms = self.cfg.latency_ms.sample(&mut r);
        Duration::from_micros((ms * 1000.0) as u64)
    }

    fn reachable(&self, a: u32, b: u32) -> bool {
        match (self.net.get(a as usize), self.net.get(b as usize)) {
            (Some(x), Some(y)) => x.partition == y.partition,
            _ => false,
        }
    }

    /// When `size` bytes sent now from `a` to `b` are delivered at `b`.
    fn transfer(&mut self, a: u32, b: u32, size: usize) -> Instant {
        let now = self.now;
        let lat = self.latency(a, b);
        let src = &mut self.net[a as usize];
        let start = now.max(src.up_free);
        let depart = start + tx_time(size, src.up_bps);
        src.up_free = depart;
        let arrive = depart + lat;
        let dst = &mut self.net[b as usize];
        let done = arrive.max(dst.down_free) + tx_time(size, dst.down_bps);
        dst.down_free = done;
        done
    }

    fn dispatch(&mut self, n: u32, ev: Ev<C::Command>) {
        let idx = n as usize;
        match ev {
            Ev::UpNext { generation } => self.up_next(n, generation),
            Ev::Leave => {
                self.kill(NodeId(n));
                if let Some(ch) = &self.churn {
                    let d = ch.downtime_s.sample(&mut self.rng);
                    self.schedule(self.now + secs(d), n, Ev::Join);
                }
            }
            Ev::Join => {
                let addr = self.addr(NodeId(n));
                let mut rng = self.rng.fork(self.seq);
                let Some(ch) = self.churn.as_mut() else {
                    return;
                };
                let (core, cmds) = (ch.factory)(NodeId(n), addr, &mut rng);
                let s = ch.session_s.sample(&mut self.rng);
                self.revive(NodeId(n), core);
                for c in cmds {
                    self.command(NodeId(n), c);
                }
                self.schedule(self.now + secs(s), n, Ev::Leave);
            }
            Ev::Timer { generation } => {
                let node = &mut self.nodes[idx];
                if generation != node.timer_gen {
                    return;
                }
                node.timer_at = None;
                let now = self.now;
                let Some(core) = node.core.as_mut() else {
                    return;
                };
                if core.poll_timeout().is_some_and(|t| t <= now) {
                    self.trace_input(n, 1, &[]);
                    if let Some(core) = self.nodes[idx].core.as_mut() {
                        core.handle_timeout(now);
                    }
                }
                self.after_input(n);
            }
            Ev::Command(cmd) => {
                self.trace_input(n, 2, &[]);
                if self.deliver(n, Input::Command(cmd)) {
                    self.after_input(n);
                }
            }
            Ev::Datagram { from, data } => {
                let st = &mut self.nodes[idx].stats;
                st.msgs_received += 1;
                st.bytes_received += data.len() as u64;
                self.trace_input(n, 3, &data);
                if self.deliver(n, Input::Datagram { from, data: &data }) {
                    self.after_input(n);
                } else {
                    self.stats.datagrams_lost += 1;
                }
            }
            Ev::Syn {
                from,
                from_conn,
                from_lid,
                port,
            } => {
                let node = &self.nodes[idx];
                if node.core.is_none() || node.opts.firewalled || !self.reachable(from, n) {
                    return; // silently dropped: the connector times out
                }
                if port != node.opts.port {
                    // nothing listens on that port: the host answers with a reset
                    let at = self.now + self.latency(n, from);
                    self.schedule(
                        at,
                        from,
                        Ev::Refused {
                            conn: from_conn,
                            lid: from_lid,
                        },
                    );
                    return;
                }
                let conn = ConnId::inbound(node.next_inbound);
                let lid = self.next_lid;
                self.next_lid += 1;
                let lat = self.latency(n, from);
                let node = &mut self.nodes[idx];
                node.next_inbound += 1;
                node.conns.insert(
                    conn,
                    Link {
                        lid,
                        state: LinkState::Established,
                        peer: from,
                        peer_conn: from_conn,
                        peer_lid: from_lid,
                        last_arrival: self.now,
                        early: Vec::new(),
                    },
                );
                let at = self.now + lat;
                self.schedule(
                    at,
                    from,
                    Ev::SynAck {
                        conn: from_conn,
                        lid: from_lid,
                        from: n,
                        from_conn: conn,
                        from_lid: lid,
                    },
                );
                let peer = self.addr(NodeId(from));
                self.trace_input(n, 4, &[]);
                if self.deliver(n, Input::Connected { conn, peer }) {
                    self.after_input(n);
                }
            }
            Ev::SynAck {
                conn,
                lid,
                from,
                from_conn,
                from_lid,
            } => {
                let live = self.nodes[idx]
                    .conns
                    .get(&conn)
                    .is_some_and(|l| l.lid == lid);
                if !live {
                    // We gave up or died meanwhile: reset the half-open side.
                    let at = self.now + self.latency(n, from);
                    self.schedule(
                        at,
                        from,
                        Ev::Fin {
                            conn: from_conn,
                            lid: from_lid,
                            reason: CloseReason::Reset,
                        },
                    );
                    return;
                }
                let early = match self.nodes[idx].conns.get_mut(&conn) {
                    Some(link) => {
                        link.state = LinkState::Established;
                        link.peer_conn = from_conn;
                        link.peer_lid = from_lid;
                        std::mem::take(&mut link.early)
                    }
                    None => return,
                };
                let peer = self.addr(NodeId(from));
                self.trace_input(n, 5, &[]);
                for data in early {
                    self.stream_send(n, conn, data);
                }
                if self.deliver(n, Input::Connected { conn, peer }) {
                    self.after_input(n);
                }
            }
            Ev::ConnectTimeout { conn, lid } | Ev::Refused { conn, lid } => {
                let node = &mut self.nodes[idx];
                let pending = node
                    .conns
                    .get(&conn)
                    .is_some_and(|l| l.lid == lid && l.state == LinkState::Connecting);
                if pending {
                    node.conns.remove(&conn);
                    self.stats.connects_failed += 1;
                    self.trace_input(n, 6, &[]);
                    if self.deliver(n, Input::ConnectFailed { conn }) {
                        self.after_input(n);
                    }
                }
            }
            Ev::Data { conn, lid, data } => {
                let node = &mut self.nodes[idx];
                if node.conns.get(&conn).is_none_or(|l| l.lid != lid) {
                    return;
                }
                node.stats.msgs_received += 1;
                node.stats.bytes_received += data.len() as u64;
                self.trace_input(n, 7, &data);
                if self.deliver(n, Input::Received { conn, data: &data }) {
                    self.after_input(n);
                }
            }
            Ev::Fin { conn, lid, reason } => {
                let node = &mut self.nodes[idx];
                if node.conns.get(&conn).is_none_or(|l| l.lid != lid) {
                    return;
                }
                node.conns.remove(&conn);
                self.trace_input(n, 8, &[]);
                if self.deliver(n, Input::Closed { conn, reason }) {
                    self.after_input(n);
                }
            }
        }
    }

    /// Hands one input to node `n`'s core; false when the node is dead.
    fn deliver(&mut self, n: u32, input: Input<'_, C::Command>) -> bool {
        let now = self.now;
        match self.nodes[n as usize].core.as_mut() {
            Some(core) => {
                core.handle_input(now, input);
                true
            }
            None => false,
        }
    }

    fn trace_input(&mut self, n: u32, kind: u64, data: &[u8]) {
        if !self.cfg.trace {
            return;
        }
        let mut h = mix(self.trace, self.now.as_micros());
        h = mix(h, u64::from(n) << 8 | kind);
        h = mix(h, data.len() as u64);
        for chunk in data.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            h = mix(h, u64::from_le_bytes(b));
        }
        self.trace = h;
    }

    /// Drains node `n`'s outputs in the contract's order and re-arms its timer.
    fn after_input(&mut self, n: u32) {
        let idx = n as usize;
        while let Some(t) = self.nodes[idx].core.as_mut().and_then(Core::poll_transmit) {
            self.transmit(n, t);
        }
        let now = self.now;
        let collect = self.cfg.collect_events;
        while let Some(e) = self.nodes[idx].core.as_mut().and_then(Core::poll_event) {
            if collect {
                self.events.push((now, NodeId(n), e));
            }
        }
        let node = &mut self.nodes[idx];
        let Some(want) = node.core.as_ref().and_then(Core::poll_timeout) else {
            return;
        };
        if node.timer_at.is_none_or(|t| want < t) {
            node.timer_gen += 1;
            node.timer_at = Some(want);
            let generation = node.timer_gen;
            self.schedule(want.max(now), n, Ev::Timer { generation });
        }
    }

    fn transmit(&mut self, n: u32, t: Transmit) {
        match t {
            Transmit::Datagram { to, data } => {
                self.stats.datagrams += 1;
                self.stats.bytes += data.len() as u64;
                let st = &mut self.nodes[n as usize].stats;
                st.msgs_sent += 1;
                st.bytes_sent += data.len() as u64;
                let Some(dst) = self.node_of(to) else {
                    self.stats.datagrams_lost += 1;
                    return;
                };
                let lost = !self.reachable(n, dst.0)
                    || (self.cfg.loss > 0.0 && self.net_rng.chance(self.cfg.loss));
                let size = data.len() + UDP_OVERHEAD;
                if self.uplink_busy(n, FlowKey::Datagrams, size) {
                    let from = self.addr(NodeId(n));
                    if lost {
                        self.stats.datagrams_lost += 1;
                    }
                    let item = Queued::Datagram {
                        dst: (!lost).then_some(dst.0),
                        from,
                        data,
                    };
                    self.enqueue(n, FlowKey::Datagrams, Instant::ZERO, size, item);
                    return;
                }
                if lost {
                    // the sender's uplink still carried it
                    let size = data.len() + UDP_OVERHEAD;
                    let src = &mut self.net[n as usize];
                    src.up_free = self.now.max(src.up_free) + tx_time(size, src.up_bps);
                    self.stats.datagrams_lost += 1;
                    return;
                }
                let at = self.transfer(n, dst.0, data.len() + UDP_OVERHEAD);
                let from = self.addr(NodeId(n));
                self.schedule(at, dst.0, Ev::Datagram { from, data });
            }
            Transmit::Connect { conn, to } => {
                self.stats.connects += 1;
                let lid = self.next_lid;
                self.next_lid += 1;
                let now = self.now;
                let node = &mut self.nodes[n as usize];
                if node.conns.contains_key(&conn) {
                    // a core reusing a live id: refuse the second use
                    self.stats.connects_failed += 1;
                    return;
                }
                node.conns.insert(
                    conn,
                    Link {
                        lid,
                        state: LinkState::Connecting,
                        peer: u32::MAX,
                        peer_conn: conn,
                        peer_lid: u64::MAX,
                        last_arrival: now,
                        early: Vec::new(),
                    },
                );
                let timeout = self.cfg.connect_timeout;
                self.schedule(now + timeout, n, Ev::ConnectTimeout { conn, lid });
                if let Some(dst) = self.node_of(to) {
                    if let Some(link) = self.nodes[n as usize].conns.get_mut(&conn) {
                        link.peer = dst.0;
                    }
                    if self.reachable(n, dst.0) {
                        let at = now + self.latency(n, dst.0);
                        self.schedule(
                            at,
                            dst.0,
                            Ev::Syn {
                                from: n,
                                from_conn: conn,
                                from_lid: lid,
                                port: to.port(),
                            },
                        );
                    }
                }
            }
            Transmit::Send { conn, data } => self.stream_send(n, conn, data),
            Transmit::Close { conn } => {
                let Some(link) = self.nodes[n as usize].conns.remove(&conn) else {
                    return;
                };
                let queued = self.nodes[n as usize]
                    .uplink
                    .as_ref()
                    .is_some_and(|u| u.flows.contains_key(&FlowKey::Conn(conn)));
                if link.state == LinkState::Established && queued {
                    let item = Queued::Fin {
                        peer: link.peer,
                        peer_conn: link.peer_conn,
                        peer_lid: link.peer_lid,
                    };
                    self.enqueue(n, FlowKey::Conn(conn), link.last_arrival, 0, item);
                } else if link.state == LinkState::Established {
                    let at = (self.now + self.latency(n, link.peer)).max(link.last_arrival);
                    self.schedule(
                        at,
                        link.peer,
                        Ev::Fin {
                            conn: link.peer_conn,
                            lid: link.peer_lid,
                            reason: CloseReason::Closed,
                        },
                    );
                }
            }
        }
    }

    fn stream_send(&mut self, n: u32, conn: ConnId, data: Vec<u8>) {
        let Some(link) = self.nodes[n as usize].conns.get_mut(&conn) else {
            return;
        };
        if link.state == LinkState::Connecting {
            link.early.push(data);
            return;
        }
        let (lid, peer, peer_conn, peer_lid, last) = (
            link.lid,
            link.peer,
            link.peer_conn,
            link.peer_lid,
            link.last_arrival,
        );
        self.stats.stream_sends += 1;
        self.stats.bytes += data.len() as u64;
        let st = &mut self.nodes[n as usize].stats;
        st.msgs_sent += 1;
        st.bytes_sent += data.len() as u64;
        let size = data.len() + TCP_OVERHEAD;
        if self.uplink_busy(n, FlowKey::Conn(conn), size) {
            let item = Queued::Data {
                conn,
                lid,
                peer,
                peer_conn,
                peer_lid,
                data,
            };
            self.enqueue(n, FlowKey::Conn(conn), last, size, item);
            return;
        }
        let at = self.transfer(n, peer, data.len() + TCP_OVERHEAD).max(last);
        if let Some(link) = self.nodes[n as usize].conns.get_mut(&conn) {
            link.last_arrival = at;
        }
        self.schedule(
            at,
            peer,
            Ev::Data {
                conn: peer_conn,
                lid: peer_lid,
                data,
            },
        );
    }
}

impl<C: Core> Sim<C> {
    /// Whether a message sent by `n` now has to wait for its uplink.
    ///
    /// A message that does not wait still counts for fairness; when nothing waits and the
    /// link is idle, the fair-queuing state starts afresh.
    fn uplink_busy(&mut self, n: u32, key: FlowKey, size: usize) -> bool {
        let now = self.now;
        let net = self.net[n as usize];
        if net.up_bps == 0 {
            return false;
        }
        let node = &mut self.nodes[n as usize];
        let up = node.uplink.get_or_insert_with(Box::default);
        let queued = !up.flows.is_empty();
        if !queued && net.up_free <= now {
            up.tags.clear();
            up.vtime = 0;
        }
        if queued || net.up_free > now {
            return true;
        }
        up.tag(key, size);
        false
    }

    /// Queues a message behind the busy uplink of `n`; `last` is the flow's latest delivery
    /// time so far.
    fn enqueue(&mut self, n: u32, key: FlowKey, last: Instant, size: usize, item: Queued) {
        let now = self.now;
        let node = &mut self.nodes[n as usize];
        let up = node.uplink.get_or_insert_with(Box::default);
        let start = up.tag(key, size);
        match up.flows.get_mut(&key) {
            Some(q) => q.items.push_back((start, item)),
            None => {
                up.flows.insert(
                    key,
                    FlowQueue {
                        items: VecDeque::from([(start, item)]),
                        last,
                    },
                );
            }
        }
        if !up.scheduled {
            up.scheduled = true;
            let (at, generation) = (self.net[n as usize].up_free.max(now), node.up_gen);
            self.schedule(at, n, Ev::UpNext { generation });
        }
    }

    /// The uplink of `n` is free: the next flow in turn sends one message.
    fn up_next(&mut self, n: u32, generation: u32) {
        let node = &mut self.nodes[n as usize];
        if node.up_gen != generation {
            return;
        }
        let Some(up) = node.uplink.as_mut() else {
            return;
        };
        up.scheduled = false;
        // the waiting message with the smallest start tag (ties: the lowest flow)
        let Some(key) = up
            .flows
            .iter()
            .filter_map(|(k, q)| q.items.front().map(|(start, _)| (*start, *k)))
            .min()
            .map(|(_, k)| k)
        else {
            return;
        };
        let Some(q) = up.flows.get_mut(&key) else {
            return;
        };
        let Some((start, item)) = q.items.pop_front() else {
            return;
        };
        up.vtime = start;
        let flow_last = q.last;
        if q.items.is_empty() {
            up.flows.remove(&key);
        }
        let delivered = match item {
            Queued::Datagram { dst, from, data } => {
                let size = data.len() + UDP_OVERHEAD;
                match dst {
                    Some(dst) => {
                        let at = self.transfer(n, dst, size);
                        self.schedule(at, dst, Ev::Datagram { from, data });
                    }
                    None => {
                        let src = &mut self.net[n as usize];
                        src.up_free = self.now.max(src.up_free) + tx_time(size, src.up_bps);
                    }
                }
                None
            }
            Queued::Data {
                conn,
                lid,
                peer,
                peer_conn,
                peer_lid,
                data,
            } => {
                let mut at = self
                    .transfer(n, peer, data.len() + TCP_OVERHEAD)
                    .max(flow_last);
                if let Some(link) = self.nodes[n as usize].conns.get_mut(&conn)
                    && link.lid == lid
                {
                    at = at.max(link.last_arrival);
                    link.last_arrival = at;
                }
                let ev = Ev::Data {
                    conn: peer_conn,
                    lid: peer_lid,
                    data,
                };
                self.schedule(at, peer, ev);
                Some(at)
            }
            Queued::Fin {
                peer,
                peer_conn,
                peer_lid,
            } => {
                let at = (self.now + self.latency(n, peer)).max(flow_last);
                let ev = Ev::Fin {
                    conn: peer_conn,
                    lid: peer_lid,
                    reason: CloseReason::Closed,
                };
                self.schedule(at, peer, ev);
                Some(at)
            }
        };
        let now = self.now;
        let node = &mut self.nodes[n as usize];
        let Some(up) = node.uplink.as_mut() else {
            return;
        };
        if let (Some(at), Some(q)) = (delivered, up.flows.get_mut(&key)) {
            q.last = q.last.max(at);
        }
        if !up.flows.is_empty() {
            up.scheduled = true;
            let (at, generation) = (self.net[n as usize].up_free.max(now), node.up_gen);
            self.schedule(at, n, Ev::UpNext { generation });
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_micros((s.max(0.0) * 1e6) as u64)
}

/// Time to serialise `size` bytes at `bps` bytes per second (0: unlimited).
fn tx_time(size: usize, bps: u64) -> Duration {
    if bps == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros((size as u64).saturating_mul(1_000_000) / bps)
}
