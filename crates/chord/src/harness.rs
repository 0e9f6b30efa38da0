//! The in-memory network for Chord cores: real [`ChordNode`]s on the shared
//! [`servent_core::harness`] (virtual time that jumps to the next event, a seeded link with
//! a fixed latency plus optional jitter and loss), with nodes named by the index they were
//! added at. The crate's tests use it; `servent-sim` runs the same cores on its richer
//! network model.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use servent_core::{Instant, Rng};

use crate::core::{ChordNode, Command, Event};

/// Several Chord cores on a virtual network.
#[derive(Debug)]
pub struct Harness {
    net: servent_core::harness::Harness<ChordNode>,
    addrs: Vec<SocketAddr>,
    index: BTreeMap<SocketAddr, usize>,
}

/// The virtual address of node index `i`: 10.0.0.0/8 plus `i`, port 4000.
pub fn addr_of(i: usize) -> SocketAddr {
    let v = 0x0a00_0001u32.wrapping_add(i as u32);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(v)), 4000)
}

impl Harness {
    /// A network whose datagrams take `latency`, its link seeded with `seed`.
    pub fn new(seed: u64, latency: Duration) -> Harness {
        Harness {
            net: servent_core::harness::Harness::new()
                .with_latency(latency)
                .with_seed(seed),
            addrs: Vec::new(),
            index: BTreeMap::new(),
        }
    }

    /// Adds uniform jitter in `[0, jitter]` to every datagram.
    pub fn with_jitter(mut self, jitter: Duration) -> Harness {
        self.net = self.net.with_jitter(jitter);
        self
    }

    /// Drops each datagram with probability `loss`.
    pub fn with_loss(mut self, loss: f64) -> Harness {
        self.net = self.net.with_loss(loss);
        self
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// The harness's own random stream (for scenarios choosing keys and victims).
    pub fn rng(&mut self) -> &mut Rng {
        self.net.rng()
    }

    /// The address the next added node will have.
    pub fn next_addr(&self) -> SocketAddr {
        addr_of(self.addrs.len())
    }

    /// Adds a node (its address must be [`Harness::next_addr`]); returns its index.
    pub fn add(&mut self, node: ChordNode) -> usize {
        let i = self.addrs.len();
        let addr = node.me().addr;
        self.addrs.push(addr);
        self.index.insert(addr, i);
        self.net.add_at(addr, node);
        i
    }

    /// Node `i`, if alive.
    pub fn node(&self, i: usize) -> Option<&ChordNode> {
        self.net.node(*self.addrs.get(i)?)
    }

    /// Node `i`, if alive, mutably (call [`Harness::touch`] afterwards).
    pub fn node_mut(&mut self, i: usize) -> Option<&mut ChordNode> {
        self.net.node_mut(*self.addrs.get(i)?)
    }

    /// Re-reads node `i`'s outputs after it was changed from outside.
    pub fn touch(&mut self, i: usize) {
        if let Some(&a) = self.addrs.get(i) {
            self.net.poke(a);
        }
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether no node was ever added.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Indexes of the live nodes.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.node(i).is_some())
            .collect()
    }

    /// Crashes node `i`: it vanishes without a word.
    pub fn kill(&mut self, i: usize) {
        if let Some(&a) = self.addrs.get(i) {
            self.net.remove(a);
        }
    }

    /// Datagrams delivered so far.
    pub fn delivered(&self) -> u64 {
        self.net.delivered()
    }

    /// Gives node `i` a command now.
    pub fn command(&mut self, i: usize, cmd: Command) {
        if let Some(&a) = self.addrs.get(i) {
            self.net.command(a, cmd);
        }
    }

    /// Takes the events reported so far: (when, node index, event).
    pub fn take_events(&mut self) -> Vec<(Instant, usize, Event)> {
        let index = &self.index;
        self.net
            .take_timed_events()
            .into_iter()
            .filter_map(|(t, a, e)| Some((t, *index.get(&a)?, e)))
            .collect()
    }

    /// Processes events up to and including `until`; the clock ends at `until`.
    pub fn run_until(&mut self, until: Instant) {
        self.net.drive_until(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.net.drive_for(d);
    }
}
