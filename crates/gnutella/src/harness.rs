//! A small in-memory network of [`Servent`]s for tests: real cores, virtual time that jumps
//! to the next event, a constant link latency (so each link stays in order), and nodes that
//! can refuse inbound connections (firewalled).
//!
//! Connections handed off to the driver ([`Event::Handoff`]) stay open in the harness: bytes
//! for them are collected in [`Net::handed`] instead of reaching the core, and tests can
//! write on them with [`Net::send_raw`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng, Transmit};

use crate::core::{Command, Config, Event, Servent};
use crate::wire::Guid;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Delivery {
    Connected {
        node: usize,
        conn: ConnId,
        peer: SocketAddr,
    },
    ConnectFailed {
        node: usize,
        conn: ConnId,
    },
    Received {
        node: usize,
        conn: ConnId,
        data: Vec<u8>,
    },
    Closed {
        node: usize,
        conn: ConnId,
    },
}

/// The in-memory network.
#[derive(Debug)]
pub struct Net {
    /// The cores, by node index.
    pub nodes: Vec<Servent>,
    firewalled: Vec<bool>,
    now: Instant,
    latency: Duration,
    queue: BinaryHeap<Reverse<(Instant, u64, Delivery)>>,
    seq: u64,
    /// (node, conn) → (peer node, peer conn).
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    next_inbound: Vec<u64>,
    /// Connections the core handed to its driver: bytes received on them, by (node, conn).
    pub handed: BTreeMap<(usize, ConnId), Vec<u8>>,
    /// Every event, with when and where.
    pub events: Vec<(Instant, usize, Event)>,
}

/// The address of node `i`.
pub fn addr_of(i: usize) -> SocketAddrV4 {
    let i = u32::try_from(i).unwrap_or(u32::MAX).wrapping_add(1);
    SocketAddrV4::new(Ipv4Addr::from(0x7f00_0000 | (i & 0x00ff_ffff)), 6346)
}

fn node_of(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v) if v.port() == 6346 => {
            let n = u32::from(*v.ip()) & 0x00ff_ffff;
            usize::try_from(n).ok()?.checked_sub(1)
        }
        _ => None,
    }
}

impl Net {
    /// `n` servents (ids and addresses derived from their index) configured by `tweak`.
    pub fn new(n: usize, seed: u64, mut tweak: impl FnMut(usize, &mut Config)) -> Net {
        let rng = Rng::new(seed);
        let mut nodes = Vec::with_capacity(n);
        let mut firewalled = Vec::with_capacity(n);
        for i in 0..n {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let mut cfg = Config::new(Guid(id), addr_of(i));
            cfg.want_conns = 0;
            cfg.ping_ttl = 0;
            tweak(i, &mut cfg);
            firewalled.push(cfg.firewalled);
            nodes.push(Servent::new(cfg, rng.fork(i as u64)));
        }
        Net {
            nodes,
            firewalled,
            now: Instant::ZERO,
            latency: Duration::from_millis(10),
            queue: BinaryHeap::new(),
            seq: 0,
            links: BTreeMap::new(),
            next_inbound: vec![0; n],
            handed: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    fn push(&mut self, d: Delivery) {
        self.seq += 1;
        self.queue
            .push(Reverse((self.now + self.latency, self.seq, d)));
    }

    /// Gives node `n` a command now.
    pub fn command(&mut self, n: usize, cmd: Command) {
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(n) {
            node.handle_input(now, Input::Command(cmd));
        }
        self.pump(n);
    }

    /// Writes `data` on a handed-off connection of node `n`, as its driver would.
    pub fn send_raw(&mut self, n: usize, conn: ConnId, data: &[u8]) {
        if let Some(&(pn, pc)) = self.links.get(&(n, conn)) {
            self.push(Delivery::Received {
                node: pn,
                conn: pc,
                data: data.to_vec(),
            });
        }
    }

    /// Connects `a` to `b` and runs until both are up.
    pub fn link(&mut self, a: usize, b: usize) {
        self.command(
            a,
            Command::Connect {
                id: 0,
                addr: SocketAddr::V4(addr_of(b)),
            },
        );
    }

    fn pump(&mut self, n: usize) {
        while let Some(t) = self.nodes.get_mut(n).and_then(Core::poll_transmit) {
            match t {
                Transmit::Connect { conn, to } => match node_of(to) {
                    Some(m) if m < self.nodes.len() && !self.firewalled[m] => {
                        let inb = ConnId::inbound(self.next_inbound[m]);
                        self.next_inbound[m] += 1;
                        self.links.insert((n, conn), (m, inb));
                        self.links.insert((m, inb), (n, conn));
                        self.push(Delivery::Connected {
                            node: m,
                            conn: inb,
                            peer: SocketAddr::V4(addr_of(n)),
                        });
                        self.push(Delivery::Connected {
                            node: n,
                            conn,
                            peer: to,
                        });
                    }
                    _ => self.push(Delivery::ConnectFailed { node: n, conn }),
                },
                Transmit::Send { conn, data } => {
                    if let Some(&(m, mc)) = self.links.get(&(n, conn)) {
                        self.push(Delivery::Received {
                            node: m,
                            conn: mc,
                            data,
                        });
                    }
                }
                Transmit::Close { conn } => {
                    if let Some((m, mc)) = self.links.remove(&(n, conn)) {
                        self.links.remove(&(m, mc));
                        self.push(Delivery::Closed { node: m, conn: mc });
                    }
                }
                _ => {}
            }
        }
        while let Some(e) = self.nodes.get_mut(n).and_then(Core::poll_event) {
            if let Event::Handoff { conn, .. } = &e {
                self.handed.insert((n, *conn), Vec::new());
            }
            self.events.push((self.now, n, e));
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        let n = match &d {
            Delivery::Connected { node, .. }
            | Delivery::ConnectFailed { node, .. }
            | Delivery::Received { node, .. }
            | Delivery::Closed { node, .. } => *node,
        };
        let Some(node) = self.nodes.get_mut(n) else {
            return;
        };
        match d {
            Delivery::Connected { conn, peer, .. } => {
                node.handle_input(now, Input::Connected { conn, peer })
            }
            Delivery::ConnectFailed { conn, .. } => {
                node.handle_input(now, Input::ConnectFailed { conn })
            }
            Delivery::Received { conn, data, .. } => {
                if let Some(buf) = self.handed.get_mut(&(n, conn)) {
                    buf.extend_from_slice(&data);
                } else {
                    node.handle_input(now, Input::Received { conn, data: &data });
                }
            }
            Delivery::Closed { conn, .. } => {
                self.handed.remove(&(n, conn));
                node.handle_input(
                    now,
                    Input::Closed {
                        conn,
                        reason: CloseReason::Closed,
                    },
                );
            }
        }
        self.pump(n);
    }

    /// Runs until nothing is left to deliver and no timer is due before `limit`.
    pub fn run_until(&mut self, limit: Instant) {
        loop {
            let next_msg = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.poll_timeout().map(|t| (t, i)))
                .min();
            let take_msg = match (next_msg, next_timer) {
                (Some(m), Some((t, _))) => m <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return,
            };
            if take_msg {
                let Some(Reverse((t, s, d))) = self.queue.pop() else {
                    return;
                };
                if t > limit {
                    self.queue.push(Reverse((t, s, d)));
                    return;
                }
                self.now = self.now.max(t);
                self.deliver(d);
            } else if let Some((t, i)) = next_timer {
                if t > limit {
                    return;
                }
                self.now = self.now.max(t);
                let now = self.now;
                if let Some(node) = self.nodes.get_mut(i) {
                    node.handle_timeout(now);
                }
                self.pump(i);
            }
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        self.run_until(limit);
        self.now = self.now.max(limit);
    }

    /// Takes the events collected so far.
    pub fn take_events(&mut self) -> Vec<(Instant, usize, Event)> {
        std::mem::take(&mut self.events)
    }
}
