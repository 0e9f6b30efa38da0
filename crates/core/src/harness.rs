//! The in-memory test network every protocol's tests use: real cores exchanging datagrams
//! and stream bytes in virtual time, with no sockets, no threads and no clock.
//!
//! Every datagram and every stream event takes `latency` to arrive; time jumps to the next
//! delivery or timer. Streams behave like TCP between live nodes: a `Connect` reaches the
//! listener after one latency (which sees `Connected` with an inbound id) and the dialler
//! after two (its `Connected`); bytes arrive in order; a `Close` reaches the other end after
//! the bytes sent before it; a connect to an address where no node lives fails. Datagrams to
//! such addresses are counted in [`Harness::stray`], so a test can measure what a node sent
//! to addresses that never asked for it, and [`Harness::inject`] hands a node a datagram that
//! claims to come from any address (a forged source).
//!
//! The link is seeded ([`Harness::with_seed`]): each datagram and stream event may take up to
//! [`Harness::with_jitter`] longer, and datagrams are lost with [`Harness::with_loss`]; a
//! stream stays in order whatever the jitter. [`Harness::refuse_inbound`] makes a node refuse
//! connections (firewalled), [`Harness::cut`] breaks every connection between two nodes.
//!
//! A test can hold one end of a stream itself, as a raw peer: [`Harness::raw_connect`] dials
//! a node from an address where no core lives, [`Harness::detach`] takes over a core's end
//! (as a driver takes a connection a core hands off, see [`Harness::handoff_with`]), and
//! [`Harness::send_raw`] writes on any end as if its owner had; what reaches a raw end is in
//! [`Harness::raw`].
//!
//! A crate's own harness is a thin use of this one: its node constructor and any per-crate
//! step, such as completing a core's CPU or disk jobs inline, given by [`Harness::settle_with`].
//!
//! ```
//! use std::time::Duration;
//! use servent_core::harness::Harness;
//! use servent_core::pingpong::{Ping, PingEvent, PingPong, Transport};
//!
//! let mut h = Harness::new();
//! let a = h.add(PingPong::new(Duration::from_secs(1)));
//! let b = h.add(PingPong::new(Duration::from_secs(1)));
//! h.command(a, Ping { id: 1, to: b, transport: Transport::Stream });
//! h.command(a, Ping { id: 2, to: b, transport: Transport::Datagram });
//! h.drive_for(Duration::from_secs(2));
//! let pongs = h.events().iter().filter(|(n, e)| *n == a && matches!(e, PingEvent::Pong { .. }));
//! assert_eq!(pongs.count(), 2);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::contract::{CloseReason, ConnId, Core, Input, Transmit};
use crate::rng::Rng;
use crate::time::Instant;

/// Datagrams and bytes sent to addresses where no node lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stray {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes.
    pub bytes: u64,
}

/// One end of a stream: the address of its node and the node's id for the connection.
pub type End = (SocketAddr, ConnId);

/// What reached a stream end the test holds itself ([`Harness::raw_connect`],
/// [`Harness::detach`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawEnd {
    /// The bytes, in order.
    pub received: Vec<u8>,
    /// Whether the other end closed or the connection broke.
    pub closed: bool,
}

/// Something in flight to one node.
#[derive(Debug)]
enum Delivery {
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// A connection attempt reaching `to`.
    Dial {
        from: SocketAddr,
        conn: ConnId,
        to: SocketAddr,
    },
    Connected {
        node: SocketAddr,
        conn: ConnId,
        peer: SocketAddr,
    },
    ConnectFailed {
        node: SocketAddr,
        conn: ConnId,
    },
    Bytes {
        node: SocketAddr,
        conn: ConnId,
        data: Vec<u8>,
    },
    Closed {
        node: SocketAddr,
        conn: ConnId,
        reason: CloseReason,
    },
}

impl Delivery {
    /// The stream end this delivery reaches, for the ones that must stay in order.
    fn end(&self) -> Option<End> {
        match self {
            Delivery::Datagram { .. } | Delivery::Dial { .. } => None,
            Delivery::Connected { node, conn, .. }
            | Delivery::ConnectFailed { node, conn }
            | Delivery::Bytes { node, conn, .. }
            | Delivery::Closed { node, conn, .. } => Some((*node, *conn)),
        }
    }
}

/// A per-node step run before each drain of a node's output (see [`Harness::settle_with`]).
type Settle<C> = Box<dyn FnMut(&mut C, Instant)>;
/// Which connection, if any, an event hands to the driver (see [`Harness::handoff_with`]).
type Handoff<E> = Box<dyn Fn(&E) -> Option<ConnId>>;

/// Raw ends the harness opens are outbound ids from here up, clear of a core's own.
const RAW_BASE: u64 = 1 << 62;
/// At most this many drain rounds per node per flush (a core that never goes quiet).
const MAX_DRAIN_ROUNDS: usize = 10_000;

/// `input` for a core of another kind: its command through `f` (`None` when the command
/// is not for that core), everything else as it is. For a harness whose nodes are an enum of
/// several cores (a server and its clients).
pub fn map_input<'a, A, B>(
    input: Input<'a, A>,
    f: impl FnOnce(A) -> Option<B>,
) -> Option<Input<'a, B>> {
    Some(match input {
        Input::Command(c) => Input::Command(f(c)?),
        Input::Datagram { from, data } => Input::Datagram { from, data },
        Input::Connected { conn, peer } => Input::Connected { conn, peer },
        Input::ConnectFailed { conn } => Input::ConnectFailed { conn },
        Input::Received { conn, data } => Input::Received { conn, data },
        Input::Closed { conn, reason } => Input::Closed { conn, reason },
    })
}

/// A network of cores of one kind in virtual time (several kinds: an enum of them, with
/// [`map_input`]).
pub struct Harness<C: Core> {
    now: Instant,
    latency: Duration,
    jitter: Duration,
    loss: f64,
    rng: Rng,
    nodes: BTreeMap<SocketAddr, C>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    /// Each open stream end (node, its id) and the other end.
    links: BTreeMap<End, End>,
    /// The last delivery instant per receiving stream end: a stream stays in order.
    last: BTreeMap<End, Instant>,
    next_inbound: u64,
    next_raw: u64,
    raws: BTreeMap<End, RawEnd>,
    refusing: BTreeSet<SocketAddr>,
    events: Vec<(SocketAddr, C::Event)>,
    event_times: Vec<Instant>,
    stray: Stray,
    delivered: u64,
    lost: u64,
    settle: Option<Settle<C>>,
    handoff: Option<Handoff<C::Event>>,
}

impl<C: Core> std::fmt::Debug for Harness<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("in_flight", &self.queue.len())
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl<C: Core> Default for Harness<C> {
    fn default() -> Self {
        Harness::new()
    }
}

impl<C: Core> Harness<C> {
    /// An empty network with 10 ms one-way latency, no jitter, no loss, seed 0.
    pub fn new() -> Self {
        Harness {
            now: Instant::ZERO,
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            rng: Rng::new(0),
            nodes: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            links: BTreeMap::new(),
            last: BTreeMap::new(),
            next_inbound: 0,
            next_raw: 0,
            raws: BTreeMap::new(),
            refusing: BTreeSet::new(),
            events: Vec::new(),
            event_times: Vec::new(),
            stray: Stray::default(),
            delivered: 0,
            lost: 0,
            settle: None,
            handoff: None,
        }
    }

    /// The same network with another one-way latency.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Each datagram and stream event takes up to `jitter` more (uniform, from the seed);
    /// a stream still delivers in order.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Each datagram is lost with probability `loss` (streams are reliable).
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// The link's random stream (jitter and loss) starts from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self
    }

    /// Runs `f` on a node before each drain of its output: for cores that hand out jobs
    /// (password hashing, disk writes) which a real driver completes on other threads, the
    /// harness completes them inline, in virtual time.
    pub fn settle_with(&mut self, f: impl FnMut(&mut C, Instant) + 'static) {
        self.settle = Some(Box::new(f));
    }

    /// Events for which `f` names a connection hand it to the driver, as a real driver
    /// takes over a connection a core hands off: from then on the harness collects what
    /// arrives on it as a raw end ([`Harness::raw`]) instead of giving it to the core.
    pub fn handoff_with(&mut self, f: impl Fn(&C::Event) -> Option<ConnId> + 'static) {
        self.handoff = Some(Box::new(f));
    }

    /// Adds a node at the next free address (127.0.1.N:6881) and returns the address.
    pub fn add(&mut self, core: C) -> SocketAddr {
        let mut n = self.nodes.len() as u32 + 1;
        let mut addr;
        loop {
            addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x7f00_0100 + n), 6881));
            if !self.nodes.contains_key(&addr) {
                break;
            }
            n += 1;
        }
        self.add_at(addr, core);
        addr
    }

    /// Adds a node at `addr` (replacing any node there, whose connections are reset).
    pub fn add_at(&mut self, addr: SocketAddr, mut core: C) {
        self.remove(addr);
        core.handle_timeout(self.now);
        self.nodes.insert(addr, core);
        self.flush(addr);
    }

    /// Takes the node at `addr` off the network, as a crash: its peers see their
    /// connections to it reset, and what was in flight to it is lost.
    pub fn remove(&mut self, addr: SocketAddr) -> Option<C> {
        let node = self.nodes.remove(&addr)?;
        let ends: Vec<End> = self
            .links
            .range((addr, ConnId::outbound(0))..)
            .take_while(|((a, _), _)| *a == addr)
            .map(|(k, _)| *k)
            .collect();
        for end in ends {
            if let Some((peer, pconn)) = self.links.remove(&end) {
                self.schedule(Delivery::Closed {
                    node: peer,
                    conn: pconn,
                    reason: CloseReason::Reset,
                });
            }
        }
        Some(node)
    }

    /// Whether the node at `addr` refuses inbound connections (a firewall): a dial to it
    /// fails as to an address where nobody lives.
    pub fn refuse_inbound(&mut self, addr: SocketAddr, refuse: bool) {
        if refuse {
            self.refusing.insert(addr);
        } else {
            self.refusing.remove(&addr);
        }
    }

    /// Breaks every connection between the nodes at `a` and `b`: both ends see a reset now.
    pub fn cut(&mut self, a: SocketAddr, b: SocketAddr) {
        let ends: Vec<End> = self
            .links
            .iter()
            .filter(|((x, _), (y, _))| (*x == a && *y == b) || (*x == b && *y == a))
            .map(|(k, _)| *k)
            .collect();
        for (node, conn) in ends {
            // A reset overtakes what is in flight on the stream: that is lost with it.
            self.seq += 1;
            let reset = Delivery::Closed {
                node,
                conn,
                reason: CloseReason::Reset,
            };
            self.queue.insert((self.now, self.seq), reset);
        }
    }

    /// A raw peer at `from` (where no core need live) dials the node at `to`; the test
    /// holds the returned end. The node sees the connection after one latency.
    pub fn raw_connect(&mut self, from: SocketAddr, to: SocketAddr) -> End {
        self.next_raw += 1;
        let end = (from, ConnId::outbound(RAW_BASE + self.next_raw));
        self.raws.insert(end, RawEnd::default());
        if !self.nodes.contains_key(&to) || self.refusing.contains(&to) {
            if let Some(raw) = self.raws.get_mut(&end) {
                raw.closed = true;
            }
            return end;
        }
        self.next_inbound += 1;
        let inbound = ConnId::inbound(self.next_inbound);
        self.links.insert(end, (to, inbound));
        self.links.insert((to, inbound), end);
        self.schedule(Delivery::Connected {
            node: to,
            conn: inbound,
            peer: from,
        });
        end
    }

    /// The test takes over the stream end `end` of a core: what arrives on it is collected
    /// in [`Harness::raw`] and no longer reaches the core.
    pub fn detach(&mut self, end: End) {
        self.raws.entry(end).or_default();
    }

    /// What reached the raw end `end` so far.
    pub fn raw(&self, end: End) -> Option<&RawEnd> {
        self.raws.get(&end)
    }

    /// Writes `data` on the stream end `end` (raw or a core's), as if its owner had; returns
    /// whether the connection is open there.
    pub fn send_raw(&mut self, end: End, data: &[u8]) -> bool {
        let Some(&(node, conn)) = self.links.get(&end) else {
            return false;
        };
        self.schedule(Delivery::Bytes {
            node,
            conn,
            data: data.to_vec(),
        });
        true
    }

    /// The other end of the open stream end `end`.
    pub fn peer_of(&self, end: End) -> Option<End> {
        self.links.get(&end).copied()
    }

    /// The open stream ends of the node at `addr`, each with its other end.
    pub fn ends_of(&self, addr: SocketAddr) -> Vec<(End, End)> {
        self.links
            .range((addr, ConnId::outbound(0))..)
            .take_while(|((a, _), _)| *a == addr)
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The link's random stream (for scenarios choosing keys and victims).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// The addresses of the nodes, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.keys().copied().collect()
    }

    /// The node at `addr`.
    pub fn node(&self, addr: SocketAddr) -> Option<&C> {
        self.nodes.get(&addr)
    }

    /// The node at `addr`, mutable. Call [`Harness::poke`] after changing it from outside,
    /// so what it wants to send goes out.
    pub fn node_mut(&mut self, addr: SocketAddr) -> Option<&mut C> {
        self.nodes.get_mut(&addr)
    }

    /// Drains what the node at `addr` wants to send and report.
    pub fn poke(&mut self, addr: SocketAddr) {
        self.flush(addr);
    }

    /// Events reported so far (node address, event).
    pub fn events(&self) -> &[(SocketAddr, C::Event)] {
        &self.events
    }

    /// When each of [`Harness::events`] was reported, in the same order.
    pub fn event_times(&self) -> &[Instant] {
        &self.event_times
    }

    /// Takes the events reported so far.
    pub fn take_events(&mut self) -> Vec<(SocketAddr, C::Event)> {
        self.event_times.clear();
        std::mem::take(&mut self.events)
    }

    /// Takes the events reported so far, each with when it was reported.
    pub fn take_timed_events(&mut self) -> Vec<(Instant, SocketAddr, C::Event)> {
        let times = std::mem::take(&mut self.event_times);
        let events = std::mem::take(&mut self.events);
        times
            .into_iter()
            .zip(events)
            .map(|(t, (a, e))| (t, a, e))
            .collect()
    }

    /// What was sent to addresses where no node lives.
    pub fn stray(&self) -> Stray {
        self.stray
    }

    /// Datagrams and stream reads delivered to nodes.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Datagrams the link lost ([`Harness::with_loss`]).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Open stream ends (each connection counts twice while both ends are open).
    pub fn open_stream_ends(&self) -> usize {
        self.links.len()
    }

    /// Gives the node at `addr` a command now.
    pub fn command(&mut self, addr: SocketAddr, cmd: C::Command) {
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(&addr) {
            n.handle_input(now, Input::Command(cmd));
        }
        self.flush(addr);
    }

    /// Delivers `data` to `to` now, as if sent from `from` (which may be forged).
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(&to) {
            self.delivered += 1;
            n.handle_input(now, Input::Datagram { from, data });
        }
        self.flush(to);
    }

    /// One latency plus this delivery's jitter.
    fn delay(&mut self) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        let j = u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX);
        self.latency + Duration::from_micros(self.rng.below(j.saturating_add(1)))
    }

    fn schedule(&mut self, d: Delivery) {
        let mut at = self.now + self.delay();
        if let Some(end) = d.end() {
            let last = self.last.entry(end).or_insert(at);
            at = at.max(*last);
            *last = at;
        }
        self.seq += 1;
        self.queue.insert((at, self.seq), d);
    }

    /// Drains a node's transmits (into the queue) and events until it has none left.
    fn flush(&mut self, addr: SocketAddr) {
        for _ in 0..MAX_DRAIN_ROUNDS {
            let now = self.now;
            let Some(n) = self.nodes.get_mut(&addr) else {
                return;
            };
            if let Some(settle) = self.settle.as_mut() {
                settle(n, now);
            }
            let mut out = Vec::new();
            while let Some(t) = n.poll_transmit() {
                out.push(t);
            }
            let mut busy = !out.is_empty();
            let mut handed = Vec::new();
            while let Some(e) = n.poll_event() {
                busy = true;
                if let Some(conn) = self.handoff.as_ref().and_then(|h| h(&e)) {
                    handed.push(conn);
                }
                self.events.push((addr, e));
                self.event_times.push(now);
            }
            // What polling the events made the core send (a job completed inline).
            while let Some(t) = n.poll_transmit() {
                busy = true;
                out.push(t);
            }
            for conn in handed {
                self.detach((addr, conn));
            }
            for t in out {
                self.transmit(addr, t);
            }
            if !busy {
                return;
            }
        }
    }

    fn transmit(&mut self, addr: SocketAddr, t: Transmit) {
        match t {
            Transmit::Datagram { to, data } => {
                if self.loss > 0.0 && self.rng.chance(self.loss) {
                    self.lost += 1;
                    return;
                }
                self.schedule(Delivery::Datagram {
                    from: addr,
                    to,
                    data,
                });
            }
            Transmit::Connect { conn, to } => self.schedule(Delivery::Dial {
                from: addr,
                conn,
                to,
            }),
            Transmit::Send { conn, data } => {
                if let Some(&(peer, pconn)) = self.links.get(&(addr, conn)) {
                    self.schedule(Delivery::Bytes {
                        node: peer,
                        conn: pconn,
                        data,
                    });
                }
            }
            Transmit::Close { conn } => {
                if let Some((peer, pconn)) = self.links.remove(&(addr, conn)) {
                    self.schedule(Delivery::Closed {
                        node: peer,
                        conn: pconn,
                        reason: CloseReason::Closed,
                    });
                }
            }
        }
    }

    /// Hands one delivery to its node; returns the node to drain.
    fn deliver(&mut self, d: Delivery) -> Option<SocketAddr> {
        let now = self.now;
        match d {
            Delivery::Datagram { from, to, data } => match self.nodes.get_mut(&to) {
                Some(n) => {
                    self.delivered += 1;
                    n.handle_input(now, Input::Datagram { from, data: &data });
                    Some(to)
                }
                None => {
                    self.stray.datagrams += 1;
                    self.stray.bytes += data.len() as u64;
                    None
                }
            },
            Delivery::Dial { from, conn, to } => {
                if !self.nodes.contains_key(&from) {
                    return None;
                }
                if !self.nodes.contains_key(&to) || self.refusing.contains(&to) {
                    self.schedule(Delivery::ConnectFailed { node: from, conn });
                    return None;
                }
                self.next_inbound += 1;
                let inbound = ConnId::inbound(self.next_inbound);
                self.links.insert((to, inbound), (from, conn));
                self.links.insert((from, conn), (to, inbound));
                self.schedule(Delivery::Connected {
                    node: from,
                    conn,
                    peer: to,
                });
                let n = self.nodes.get_mut(&to)?;
                n.handle_input(
                    now,
                    Input::Connected {
                        conn: inbound,
                        peer: from,
                    },
                );
                Some(to)
            }
            Delivery::Connected { node, conn, peer } => {
                if !self.links.contains_key(&(node, conn)) {
                    return None; // the listener closed it before the dialler heard it was up
                }
                let n = self.nodes.get_mut(&node)?;
                n.handle_input(now, Input::Connected { conn, peer });
                Some(node)
            }
            Delivery::ConnectFailed { node, conn } => {
                let n = self.nodes.get_mut(&node)?;
                n.handle_input(now, Input::ConnectFailed { conn });
                Some(node)
            }
            Delivery::Bytes { node, conn, data } => {
                if !self.links.contains_key(&(node, conn)) {
                    return None; // this end closed: nothing more is reported on it
                }
                if let Some(raw) = self.raws.get_mut(&(node, conn)) {
                    raw.received.extend_from_slice(&data);
                    return None;
                }
                let n = self.nodes.get_mut(&node)?;
                self.delivered += 1;
                n.handle_input(now, Input::Received { conn, data: &data });
                Some(node)
            }
            Delivery::Closed { node, conn, reason } => {
                self.links.remove(&(node, conn))?;
                if let Some(raw) = self.raws.get_mut(&(node, conn)) {
                    raw.closed = true;
                    return None;
                }
                let n = self.nodes.get_mut(&node)?;
                n.handle_input(now, Input::Closed { conn, reason });
                Some(node)
            }
        }
    }

    /// The instant of the next delivery or timer, if any.
    pub fn next_instant(&self) -> Option<Instant> {
        let next_msg = self.queue.keys().next().map(|(t, _)| *t);
        let next_timer = self.nodes.values().filter_map(Core::poll_timeout).min();
        match (next_msg, next_timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles the next delivery, or else the timers due at the next instant, if that is no
    /// later than `limit`; returns whether there was one. Deliveries due at an instant come
    /// before the timers due then; timers fire in address order.
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some(next) = self.next_instant() else {
            return false;
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        if let Some(entry) = self.queue.first_entry() {
            if entry.key().0 <= now {
                let d = entry.remove();
                if let Some(a) = self.deliver(d) {
                    self.flush(a);
                }
                return true;
            }
        }
        let due: Vec<SocketAddr> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.poll_timeout().is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for a in due {
            if let Some(n) = self.nodes.get_mut(&a) {
                n.handle_timeout(now);
            }
            self.flush(a);
        }
        true
    }

    /// Runs until `done` holds (checked before each step) or nothing is left before
    /// `limit`, at most `max_steps` steps; the clock stays at the last event. Returns the
    /// steps taken.
    pub fn drive_while(
        &mut self,
        limit: Instant,
        max_steps: usize,
        mut done: impl FnMut(&Self) -> bool,
    ) -> usize {
        let mut steps = 0;
        while steps < max_steps && !done(self) && self.step(limit) {
            steps += 1;
        }
        steps
    }

    /// Runs until virtual time `until` (bounded: at most 10^7 deliveries and timers).
    pub fn drive_until(&mut self, until: Instant) {
        self.drive_while(until, 10_000_000, |_| false);
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn drive_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.drive_until(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pingpong::{Ping, PingEvent, PingPong, Transport};

    fn pongs(h: &Harness<PingPong>, at: SocketAddr) -> Vec<u64> {
        h.events()
            .iter()
            .filter_map(|(n, e)| match e {
                PingEvent::Pong { id, .. } if *n == at => Some(*id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn datagram_and_stream_pings_are_answered_with_the_latency_round_trips() {
        let mut h = Harness::new().with_latency(Duration::from_millis(25));
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        h.command(
            a,
            Ping {
                id: 1,
                to: b,
                transport: Transport::Datagram,
            },
        );
        h.command(
            a,
            Ping {
                id: 2,
                to: b,
                transport: Transport::Stream,
            },
        );
        h.drive_for(Duration::from_secs(2));
        let mut got = pongs(&h, a);
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
        for (_, e) in h.events() {
            if let PingEvent::Pong { id, rtt } = e {
                // a datagram: one round trip; a stream: connect (two latencies) then one
                let want = if *id == 1 { 50 } else { 100 };
                assert_eq!(rtt.as_millis(), want, "ping {id}");
            }
        }
        // the stream ping's connection is closed on both ends afterwards
        assert_eq!(h.open_stream_ends(), 0);
    }

    #[test]
    fn a_dial_to_nobody_fails_and_a_datagram_to_nobody_is_stray() {
        let mut h = Harness::new();
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let nobody: SocketAddr = "127.9.9.9:1".parse().unwrap();
        h.command(
            a,
            Ping {
                id: 1,
                to: nobody,
                transport: Transport::Stream,
            },
        );
        h.command(
            a,
            Ping {
                id: 2,
                to: nobody,
                transport: Transport::Datagram,
            },
        );
        h.drive_for(Duration::from_secs(3));
        assert_eq!(h.stray().datagrams, 1);
        let failed = h
            .events()
            .iter()
            .filter(|(_, e)| !matches!(e, PingEvent::Pong { .. }))
            .count();
        assert_eq!(failed, 2, "{:?}", h.events());
    }

    #[test]
    fn a_removed_node_resets_its_peers_connections() {
        let mut h = Harness::new();
        let a = h.add(PingPong::new(Duration::from_secs(5)));
        let b = h.add(PingPong::new(Duration::from_secs(5)));
        h.command(
            a,
            Ping {
                id: 1,
                to: b,
                transport: Transport::Stream,
            },
        );
        // the dial reaches b after 10 ms; b is gone before its answer can leave
        h.drive_for(Duration::from_millis(15));
        assert_eq!(h.open_stream_ends(), 2);
        assert!(h.remove(b).is_some());
        h.drive_for(Duration::from_secs(6));
        assert_eq!(h.open_stream_ends(), 0);
        assert!(pongs(&h, a).is_empty());
        assert_eq!(h.node(a).map(PingPong::connections), Some(0));
    }

    #[test]
    fn settle_runs_before_every_drain() {
        use std::cell::Cell;
        use std::rc::Rc;
        let calls = Rc::new(Cell::new(0u32));
        let seen = calls.clone();
        let mut h = Harness::new();
        h.settle_with(move |_: &mut PingPong, _| seen.set(seen.get() + 1));
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        let before = calls.get();
        h.command(
            a,
            Ping {
                id: 1,
                to: b,
                transport: Transport::Datagram,
            },
        );
        h.drive_for(Duration::from_secs(1));
        // the command, b's receipt and a's receipt each drained a node
        assert!(calls.get() >= before + 3, "{}", calls.get());
        assert_eq!(pongs(&h, a), vec![1]);
    }
    fn ping(h: &mut Harness<PingPong>, from: SocketAddr, to: SocketAddr, id: u64, t: Transport) {
        h.command(
            from,
            Ping {
                id,
                to,
                transport: t,
            },
        );
    }

    /// The pong log (node, id, rtt) of a jittery run with `seed`.
    fn jittery_run(seed: u64) -> Vec<(SocketAddr, u64, u128)> {
        let mut h = Harness::new()
            .with_jitter(Duration::from_millis(20))
            .with_seed(seed);
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        for id in 0..20 {
            ping(&mut h, a, b, id, Transport::Datagram);
        }
        h.drive_for(Duration::from_secs(2));
        h.events()
            .iter()
            .filter_map(|(n, e)| match e {
                PingEvent::Pong { id, rtt } => Some((*n, *id, rtt.as_micros())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn map_input_maps_commands_and_keeps_the_rest() {
        let conn = ConnId::inbound(3);
        let got = map_input(Input::<'_, u8>::Command(7), |c| Some(u16::from(c) * 2));
        assert!(matches!(got, Some(Input::Command(14))));
        assert!(map_input(Input::<'_, u8>::Command(7), |_| None::<u16>).is_none());
        let input: Input<'_, u8> = Input::Received { conn, data: b"x" };
        let got = map_input(input, |_| None::<u16>);
        assert!(matches!(got, Some(Input::Received { conn: c, data: b"x" }) if c == conn));
    }

    #[test]
    fn jitter_spreads_round_trips_within_bounds_and_the_seed_fixes_them() {
        let run = jittery_run(7);
        assert_eq!(run.len(), 20);
        for (_, id, rtt) in &run {
            // two trips of 10 ms plus up to 20 ms each
            assert!((20_000..=60_000).contains(rtt), "ping {id}: {rtt} µs");
        }
        let distinct: BTreeSet<u128> = run.iter().map(|(_, _, r)| *r).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
        assert_eq!(run, jittery_run(7), "same seed, same run");
        assert_ne!(run, jittery_run(8), "another seed, another run");
    }

    #[test]
    fn a_stream_delivers_in_order_under_jitter() {
        let mut h = Harness::new()
            .with_jitter(Duration::from_millis(50))
            .with_seed(3);
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        let raw = h.raw_connect("127.9.0.1:5000".parse().unwrap(), b);
        let mut sent = Vec::new();
        for id in 0..30u64 {
            let mut msg = vec![9, 0x01];
            msg.extend_from_slice(&id.to_le_bytes());
            // one byte at a time: any reordering breaks the framing
            for byte in msg {
                assert!(h.send_raw(raw, &[byte]));
            }
            sent.push(id);
        }
        h.drive_for(Duration::from_secs(5));
        let got = &h.raw(raw).unwrap().received;
        let ids: Vec<u64> = got
            .chunks(10)
            .map(|m| {
                assert_eq!(&m[..2], &[9, 0x02]);
                u64::from_le_bytes(m[2..10].try_into().unwrap())
            })
            .collect();
        assert_eq!(ids, sent);
    }

    #[test]
    fn loss_drops_datagrams_but_not_streams() {
        let mut h = Harness::new().with_loss(1.0);
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        ping(&mut h, a, b, 1, Transport::Datagram);
        ping(&mut h, a, b, 2, Transport::Stream);
        h.drive_for(Duration::from_secs(2));
        assert_eq!(pongs(&h, a), vec![2]);
        assert_eq!(h.lost(), 1);
        assert!(
            h.events()
                .iter()
                .any(|(_, e)| matches!(e, PingEvent::Timeout { id: 1 }))
        );
    }

    #[test]
    fn a_node_refusing_inbound_fails_dials_but_still_dials_out() {
        let mut h = Harness::new();
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        h.refuse_inbound(b, true);
        ping(&mut h, a, b, 1, Transport::Stream);
        ping(&mut h, b, a, 2, Transport::Stream);
        h.drive_for(Duration::from_secs(2));
        assert!(
            h.events()
                .iter()
                .any(|(n, e)| *n == a && matches!(e, PingEvent::Failed { id: 1 }))
        );
        assert_eq!(pongs(&h, b), vec![2]);
        h.refuse_inbound(b, false);
        ping(&mut h, a, b, 3, Transport::Stream);
        h.drive_for(Duration::from_secs(2));
        assert_eq!(pongs(&h, a), vec![3]);
    }

    #[test]
    fn cut_resets_both_ends_at_once() {
        let mut h = Harness::new();
        let a = h.add(PingPong::new(Duration::from_secs(5)));
        let b = h.add(PingPong::new(Duration::from_secs(5)));
        let c = h.add(PingPong::new(Duration::from_secs(5)));
        ping(&mut h, a, b, 1, Transport::Stream);
        ping(&mut h, a, c, 2, Transport::Stream);
        h.drive_for(Duration::from_millis(15)); // both dials reached their listeners
        assert_eq!(h.open_stream_ends(), 4);
        h.cut(b, a);
        assert!(h.step(h.now()));
        assert!(h.step(h.now()));
        assert_eq!(h.open_stream_ends(), 2, "only a–c stays");
        h.drive_for(Duration::from_secs(1));
        assert_eq!(pongs(&h, a), vec![2]);
        assert!(
            h.events()
                .iter()
                .any(|(n, e)| *n == a && matches!(e, PingEvent::Failed { id: 1 }))
        );
    }

    #[test]
    fn a_detached_end_collects_bytes_and_the_test_answers_for_it() {
        let mut h = Harness::new();
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        ping(&mut h, a, b, 7, Transport::Stream);
        h.drive_for(Duration::from_millis(15));
        let [(b_end, a_end)] = h.ends_of(b)[..] else {
            panic!("{:?}", h.ends_of(b));
        };
        assert_eq!(h.peer_of(a_end), Some(b_end));
        h.detach(b_end);
        h.drive_for(Duration::from_millis(100));
        let mut want = vec![9, 0x01];
        want.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(h.raw(b_end).map(|r| r.received.clone()), Some(want));
        assert!(pongs(&h, a).is_empty(), "b's core never saw the ping");
        let mut pong = vec![9, 0x02];
        pong.extend_from_slice(&7u64.to_le_bytes());
        assert!(h.send_raw(b_end, &pong));
        h.drive_for(Duration::from_millis(100));
        assert_eq!(pongs(&h, a), vec![7]);
        // a closed after its pong: the raw end hears it
        assert_eq!(h.raw(b_end).map(|r| r.closed), Some(true));
    }

    #[test]
    fn an_event_naming_a_connection_hands_it_off() {
        let mut h = Harness::new();
        // PingPong's first stream is outbound 0; a refused duplicate ping hands it off here.
        h.handoff_with(|e: &PingEvent| {
            matches!(e, PingEvent::Refused { .. }).then_some(ConnId::outbound(0))
        });
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        ping(&mut h, a, b, 1, Transport::Stream);
        ping(&mut h, a, b, 1, Transport::Stream);
        h.drive_for(Duration::from_secs(2));
        let got = h.raw((a, ConnId::outbound(0))).map(|r| r.received.clone());
        assert_eq!(
            got.map(|g| g.get(..2).map(<[u8]>::to_vec)),
            Some(Some(vec![9, 0x02]))
        );
        assert!(pongs(&h, a).is_empty());
        assert!(
            h.events()
                .iter()
                .any(|(_, e)| matches!(e, PingEvent::Timeout { id: 1 }))
        );
    }

    #[test]
    fn drive_while_stops_when_done_holds_and_leaves_the_clock_at_the_last_event() {
        let mut h = Harness::new();
        let a = h.add(PingPong::new(Duration::from_secs(1)));
        let b = h.add(PingPong::new(Duration::from_secs(1)));
        ping(&mut h, a, b, 1, Transport::Datagram);
        let limit = h.now() + Duration::from_secs(60);
        let steps = h.drive_while(limit, 100, |h| !pongs(h, a).is_empty());
        assert_eq!(steps, 2, "the ping's arrival, then the pong's");
        assert_eq!(h.now(), Instant::ZERO + Duration::from_millis(20));
        let times: Vec<Instant> = h.take_timed_events().into_iter().map(|(t, ..)| t).collect();
        // b reported the ping at 10 ms, a the pong at 20 ms
        assert_eq!(times.last(), Some(&h.now()));
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(h.events().is_empty() && h.event_times().is_empty());
    }
    /// A core that answers a datagram only when its events are polled, as a core whose
    /// events hand out jobs that the harness completes inline.
    #[derive(Default)]
    struct LazyEcho {
        pending: Vec<SocketAddr>,
        out: Vec<Transmit>,
        got: u32,
        reported: u32,
    }

    impl Core for LazyEcho {
        type Command = SocketAddr;
        type Event = u32;
        fn handle_input(&mut self, _: Instant, input: Input<'_, SocketAddr>) {
            match input {
                Input::Command(to) => self.out.push(Transmit::Datagram {
                    to,
                    data: b"ask".to_vec(),
                }),
                Input::Datagram { from, data } if data == b"ask" => self.pending.push(from),
                Input::Datagram { .. } => self.got += 1,
                _ => {}
            }
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.pop()
        }
        fn poll_event(&mut self) -> Option<u32> {
            for to in std::mem::take(&mut self.pending) {
                self.out.push(Transmit::Datagram {
                    to,
                    data: b"answer".to_vec(),
                });
            }
            (self.got > self.reported).then(|| {
                self.reported = self.got;
                self.got
            })
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    #[test]
    fn what_polling_events_makes_a_core_send_goes_out_in_the_same_drain() {
        let mut h = Harness::new();
        let a = h.add(LazyEcho::default());
        let b = h.add(LazyEcho::default());
        h.command(a, b);
        h.drive_for(Duration::from_millis(100));
        assert_eq!(h.events(), &[(a, 1)]);
        assert_eq!(
            h.event_times(),
            &[Instant::ZERO + Duration::from_millis(20)]
        );
    }
}
