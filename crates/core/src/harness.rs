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

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::contract::{CloseReason, ConnId, Core, Input, Transmit};
use crate::time::Instant;

/// Datagrams and bytes sent to addresses where no node lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stray {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes.
    pub bytes: u64,
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

/// A per-node step run before each drain of a node's output (see [`Harness::settle_with`]).
type Settle<C> = Box<dyn FnMut(&mut C, Instant)>;

/// A network of cores of one kind in virtual time.
pub struct Harness<C: Core> {
    now: Instant,
    latency: Duration,
    nodes: BTreeMap<SocketAddr, C>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    /// Each open stream end (node, its id) and the other end.
    links: BTreeMap<(SocketAddr, ConnId), (SocketAddr, ConnId)>,
    next_inbound: u64,
    events: Vec<(SocketAddr, C::Event)>,
    stray: Stray,
    delivered: u64,
    settle: Option<Settle<C>>,
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
    /// An empty network with 10 ms one-way latency.
    pub fn new() -> Self {
        Harness {
            now: Instant::ZERO,
            latency: Duration::from_millis(10),
            nodes: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            links: BTreeMap::new(),
            next_inbound: 0,
            events: Vec::new(),
            stray: Stray::default(),
            delivered: 0,
            settle: None,
        }
    }

    /// The same network with another one-way latency.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Runs `f` on a node before each drain of its output: for cores that hand out jobs
    /// (password hashing, disk writes) which a real driver completes on other threads, the
    /// harness completes them inline, in virtual time.
    pub fn settle_with(&mut self, f: impl FnMut(&mut C, Instant) + 'static) {
        self.settle = Some(Box::new(f));
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
        let ends: Vec<(SocketAddr, ConnId)> = self
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

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
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

    /// Takes the events reported so far.
    pub fn take_events(&mut self) -> Vec<(SocketAddr, C::Event)> {
        std::mem::take(&mut self.events)
    }

    /// What was sent to addresses where no node lives.
    pub fn stray(&self) -> Stray {
        self.stray
    }

    /// Datagrams and stream reads delivered to nodes.
    pub fn delivered(&self) -> u64 {
        self.delivered
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

    fn schedule(&mut self, d: Delivery) {
        self.seq += 1;
        self.queue.insert((self.now + self.latency, self.seq), d);
    }

    /// Drains a node's transmits (into the queue) and events.
    fn flush(&mut self, addr: SocketAddr) {
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
        while let Some(e) = n.poll_event() {
            self.events.push((addr, e));
        }
        for t in out {
            match t {
                Transmit::Datagram { to, data } => self.schedule(Delivery::Datagram {
                    from: addr,
                    to,
                    data,
                }),
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
                if !self.nodes.contains_key(&to) {
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
                let n = self.nodes.get_mut(&node)?;
                self.delivered += 1;
                n.handle_input(now, Input::Received { conn, data: &data });
                Some(node)
            }
            Delivery::Closed { node, conn, reason } => {
                self.links.remove(&(node, conn))?;
                let n = self.nodes.get_mut(&node)?;
                n.handle_input(now, Input::Closed { conn, reason });
                Some(node)
            }
        }
    }

    /// Runs until virtual time `until` (bounded: at most 10^7 deliveries and timers).
    pub fn drive_until(&mut self, until: Instant) {
        for _ in 0..10_000_000u64 {
            let next_msg = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer = self.nodes.values().filter_map(Core::poll_timeout).min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let d = entry.remove();
                if let Some(a) = self.deliver(d) {
                    self.flush(a);
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
        }
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
}
