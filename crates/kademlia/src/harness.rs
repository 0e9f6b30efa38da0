//! The in-memory test network: real [`Dht`] cores exchanging datagrams in virtual time.
//!
//! Every datagram takes `latency` to arrive; time jumps to the next delivery or timer.
//! Datagrams to an address where no node lives (a forged source, a node that left) are
//! counted in [`Harness::stray`] and dropped, so a test can measure what a node sent to
//! addresses that never asked for it. [`Harness::inject`] hands a node a datagram that
//! claims to come from any address (a forged source).
//!
//! ```
//! use servent_core::{Id, Rng};
//! use servent_kademlia::harness::Harness;
//! use servent_kademlia::{Command, Config, Dht, Event};
//!
//! let mut h = Harness::new();
//! let a = h.add(Dht::new(Id([1; 20]), Config::default(), Rng::new(1)));
//! let b = h.add(Dht::new(Id([2; 20]), Config::default(), Rng::new(2)));
//! h.command(b, Command::Bootstrap { id: 1, nodes: vec![a] });
//! h.drive_for(std::time::Duration::from_secs(5));
//! assert!(h.events().iter().any(|(n, e)| *n == b && matches!(e, Event::Bootstrapped { nodes: 1, .. })));
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{Core, Input, Instant, Transmit};

use crate::core::{Command, Dht, Event};

/// Datagrams and bytes sent to addresses where no node lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stray {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes.
    pub bytes: u64,
}

/// A datagram in flight: delivery time, a sequence number that keeps equal times in send
/// order, source, destination and payload.
type InFlight = Reverse<(Instant, u64, SocketAddr, SocketAddr, Vec<u8>)>;

/// A network of DHT cores in virtual time.
#[derive(Debug)]
pub struct Harness {
    now: Instant,
    latency: Duration,
    nodes: BTreeMap<SocketAddr, Dht>,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    events: Vec<(SocketAddr, Event)>,
    stray: Stray,
    delivered: u64,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl Harness {
    /// An empty network with 10 ms one-way latency.
    pub fn new() -> Harness {
        Harness {
            now: Instant::ZERO,
            latency: Duration::from_millis(10),
            nodes: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            events: Vec::new(),
            stray: Stray::default(),
            delivered: 0,
        }
    }

    /// Adds a node at the next free address (127.0.1.N:6881) and returns the address.
    pub fn add(&mut self, dht: Dht) -> SocketAddr {
        let n = self.nodes.len() as u32 + 1;
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x7f00_0100 + n), 6881));
        self.add_at(addr, dht);
        addr
    }

    /// Adds a node at `addr`.
    pub fn add_at(&mut self, addr: SocketAddr, mut dht: Dht) {
        dht.handle_timeout(self.now);
        self.nodes.insert(addr, dht);
        self.flush(addr);
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The node at `addr`.
    pub fn node(&self, addr: SocketAddr) -> Option<&Dht> {
        self.nodes.get(&addr)
    }

    /// The node at `addr`, mutable.
    pub fn node_mut(&mut self, addr: SocketAddr) -> Option<&mut Dht> {
        self.nodes.get_mut(&addr)
    }

    /// Events reported so far (node address, event).
    pub fn events(&self) -> &[(SocketAddr, Event)] {
        &self.events
    }

    /// Takes the events reported so far.
    pub fn take_events(&mut self) -> Vec<(SocketAddr, Event)> {
        std::mem::take(&mut self.events)
    }

    /// What was sent to addresses where no node lives.
    pub fn stray(&self) -> Stray {
        self.stray
    }

    /// Datagrams delivered to nodes.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Gives the node at `addr` a command now.
    pub fn command(&mut self, addr: SocketAddr, cmd: Command) {
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

    /// Drains a node's transmits (into the queue) and events.
    fn flush(&mut self, addr: SocketAddr) {
        let Some(n) = self.nodes.get_mut(&addr) else {
            return;
        };
        while let Some(t) = n.poll_transmit() {
            if let Transmit::Datagram { to, data } = t {
                self.seq += 1;
                self.queue
                    .push(Reverse((self.now + self.latency, self.seq, addr, to, data)));
            }
        }
        while let Some(e) = n.poll_event() {
            self.events.push((addr, e));
        }
    }

    /// Runs until virtual time `until` (bounded: at most 10^7 deliveries and timers).
    pub fn drive_until(&mut self, until: Instant) {
        for _ in 0..10_000_000u64 {
            let next_msg = self.queue.peek().map(|Reverse((t, ..))| *t);
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
            while let Some(Reverse((t, ..))) = self.queue.peek() {
                if *t > now {
                    break;
                }
                let Some(Reverse((_, _, from, to, data))) = self.queue.pop() else {
                    break;
                };
                match self.nodes.get_mut(&to) {
                    Some(n) => {
                        self.delivered += 1;
                        n.handle_input(now, Input::Datagram { from, data: &data });
                        self.flush(to);
                    }
                    None => {
                        self.stray.datagrams += 1;
                        self.stray.bytes += data.len() as u64;
                    }
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
