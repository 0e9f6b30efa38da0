//! A small in-memory network for Chord cores: real [`ChordNode`]s, virtual time that jumps
//! to the next event, a seeded link (fixed latency plus optional jitter and loss). The
//! crate's tests and its simulation scenarios share it; `servent-sim` runs the same cores
//! on its richer network model.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use servent_core::{Core, FxMap, Input, Instant, Rng, Transmit};

use crate::core::{ChordNode, Command, Event};

#[derive(Debug)]
struct Delivery {
    to: SocketAddr,
    from: SocketAddr,
    data: Vec<u8>,
}

/// Several Chord cores on a virtual network.
#[derive(Debug)]
pub struct Harness {
    now: Instant,
    rng: Rng,
    latency: Duration,
    jitter: Duration,
    loss: f64,
    nodes: Vec<Option<ChordNode>>,
    by_addr: FxMap<SocketAddr, usize>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    timers: BTreeSet<(Instant, usize)>,
    timer_of: Vec<Option<Instant>>,
    events: Vec<(Instant, usize, Event)>,
    /// Datagrams delivered so far.
    pub delivered: u64,
}

/// The virtual address of node index `i`: 10.0.0.0/8 plus `i`, port 4000.
pub fn addr_of(i: usize) -> SocketAddr {
    let v = 0x0a00_0001u32.wrapping_add(i as u32);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(v)), 4000)
}

impl Harness {
    /// A network whose datagrams take `latency`.
    pub fn new(seed: u64, latency: Duration) -> Harness {
        Harness {
            now: Instant::ZERO,
            rng: Rng::new(seed),
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
            nodes: Vec::new(),
            by_addr: FxMap::default(),
            queue: BTreeMap::new(),
            seq: 0,
            timers: BTreeSet::new(),
            timer_of: Vec::new(),
            events: Vec::new(),
            delivered: 0,
        }
    }

    /// Adds uniform jitter in `[0, jitter)` to every datagram.
    pub fn with_jitter(mut self, jitter: Duration) -> Harness {
        self.jitter = jitter;
        self
    }

    /// Drops each datagram with probability `loss`.
    pub fn with_loss(mut self, loss: f64) -> Harness {
        self.loss = loss;
        self
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The harness's own random stream (for scenarios choosing keys and victims).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// The address the next added node will have.
    pub fn next_addr(&self) -> SocketAddr {
        addr_of(self.nodes.len())
    }

    /// Adds a node (its address must be [`Harness::next_addr`]); returns its index.
    pub fn add(&mut self, node: ChordNode) -> usize {
        let i = self.nodes.len();
        self.by_addr.insert(node.me().addr, i);
        self.nodes.push(Some(node));
        self.timer_of.push(None);
        self.pump(i);
        i
    }

    /// Node `i`, if alive.
    pub fn node(&self, i: usize) -> Option<&ChordNode> {
        self.nodes.get(i).and_then(|n| n.as_ref())
    }

    /// Node `i`, if alive, mutably (call [`Harness::touch`] afterwards).
    pub fn node_mut(&mut self, i: usize) -> Option<&mut ChordNode> {
        self.nodes.get_mut(i).and_then(|n| n.as_mut())
    }

    /// Re-reads node `i`'s outputs after it was changed from outside.
    pub fn touch(&mut self, i: usize) {
        self.pump(i);
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was ever added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Indexes of the live nodes.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.node(i).is_some())
            .collect()
    }

    /// Crashes node `i`: it vanishes without a word.
    pub fn kill(&mut self, i: usize) {
        if let Some(slot) = self.nodes.get_mut(i) {
            *slot = None;
        }
        if let Some(Some(t)) = self.timer_of.get(i).copied() {
            self.timers.remove(&(t, i));
        }
        if let Some(t) = self.timer_of.get_mut(i) {
            *t = None;
        }
    }

    /// Gives node `i` a command now.
    pub fn command(&mut self, i: usize, cmd: Command) {
        let now = self.now;
        if let Some(n) = self.node_mut(i) {
            n.handle_input(now, Input::Command(cmd));
            self.pump(i);
        }
    }

    /// Takes the events reported so far.
    pub fn take_events(&mut self) -> Vec<(Instant, usize, Event)> {
        std::mem::take(&mut self.events)
    }

    fn pump(&mut self, i: usize) {
        let now = self.now;
        let Some(Some(n)) = self.nodes.get_mut(i) else {
            return;
        };
        let from = n.me().addr;
        let mut out = Vec::new();
        while let Some(t) = n.poll_transmit() {
            if let Transmit::Datagram { to, data } = t {
                out.push((to, data));
            }
        }
        while let Some(e) = n.poll_event() {
            self.events.push((now, i, e));
        }
        let next = n.poll_timeout();
        if let Some(Some(old)) = self.timer_of.get(i).copied() {
            self.timers.remove(&(old, i));
        }
        if let Some(slot) = self.timer_of.get_mut(i) {
            *slot = next;
        }
        if let Some(t) = next {
            self.timers.insert((t.max(now), i));
            if let Some(slot) = self.timer_of.get_mut(i) {
                *slot = Some(t.max(now));
            }
        }
        for (to, data) in out {
            if self.loss > 0.0 && self.rng.chance(self.loss) {
                continue;
            }
            let mut at = now + self.latency;
            if !self.jitter.is_zero() {
                let j = u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX);
                at += Duration::from_micros(self.rng.below(j.max(1)));
            }
            self.seq += 1;
            self.queue
                .insert((at, self.seq), Delivery { to, from, data });
        }
    }

    /// Processes events up to and including `until`; the clock ends at `until`.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next_msg = self.queue.first_key_value().map(|(k, _)| k.0);
            let next_timer = self.timers.first().map(|(t, _)| *t);
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_msg == Some(next) {
                if let Some((_, d)) = self.queue.pop_first() {
                    if let Some(&i) = self.by_addr.get(&d.to) {
                        let now = self.now;
                        if let Some(Some(n)) = self.nodes.get_mut(i) {
                            self.delivered += 1;
                            n.handle_input(
                                now,
                                Input::Datagram {
                                    from: d.from,
                                    data: &d.data,
                                },
                            );
                            self.pump(i);
                        }
                    }
                }
            } else if let Some((_, i)) = self.timers.pop_first() {
                if let Some(t) = self.timer_of.get_mut(i) {
                    *t = None;
                }
                let now = self.now;
                if let Some(Some(n)) = self.nodes.get_mut(i) {
                    n.handle_timeout(now);
                }
                self.pump(i);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}
