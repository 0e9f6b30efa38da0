//! A small in-memory network of [`Servent`]s for tests: real cores on the shared
//! [`servent_core::harness`] (virtual time that jumps to the next event, a constant link
//! latency, so each link stays in order), nodes named by index, and nodes that refuse
//! inbound connections (firewalled).
//!
//! Connections handed off to the driver ([`Event::Handoff`]) stay open in the harness: bytes
//! for them are collected ([`Net::handed`]) instead of reaching the core, and tests can
//! write on them with [`Net::send_raw`].

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{ConnId, Instant, Rng};

use crate::core::{Command, Config, Event, Servent};
use crate::wire::Guid;

/// The in-memory network.
#[derive(Debug)]
pub struct Net {
    net: servent_core::harness::Harness<Servent>,
    len: usize,
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

fn at(i: usize) -> SocketAddr {
    SocketAddr::V4(addr_of(i))
}

impl Net {
    /// `n` servents (ids and addresses derived from their index) configured by `tweak`.
    pub fn new(n: usize, seed: u64, mut tweak: impl FnMut(usize, &mut Config)) -> Net {
        let rng = Rng::new(seed);
        let mut net = servent_core::harness::Harness::new().with_seed(seed);
        net.handoff_with(|e: &Event| match e {
            Event::Handoff { conn, .. } => Some(*conn),
            _ => None,
        });
        for i in 0..n {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let mut cfg = Config::new(Guid(id), addr_of(i));
            cfg.want_conns = 0;
            cfg.ping_ttl = 0;
            tweak(i, &mut cfg);
            net.refuse_inbound(at(i), cfg.firewalled);
            net.add_at(at(i), Servent::new(cfg, rng.fork(i as u64)));
        }
        let mut net = Net {
            net,
            len: n,
            events: Vec::new(),
        };
        net.collect();
        net
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// Node `n`'s core.
    pub fn node(&self, n: usize) -> &Servent {
        self.net
            .node(at(n))
            .unwrap_or_else(|| panic!("no node {n}"))
    }

    /// Node `n`'s core, mutable (what it then sends is for the caller to drain).
    pub fn node_mut(&mut self, n: usize) -> &mut Servent {
        self.net
            .node_mut(at(n))
            .unwrap_or_else(|| panic!("no node {n}"))
    }

    /// The cores, by node index.
    pub fn nodes(&self) -> impl Iterator<Item = &Servent> {
        (0..self.len).filter_map(|i| self.net.node(at(i)))
    }

    /// Bytes received so far on node `n`'s connection `conn`, if the core handed it off.
    pub fn handed(&self, n: usize, conn: ConnId) -> Option<&[u8]> {
        self.net.raw((at(n), conn)).map(|r| r.received.as_slice())
    }

    /// Gives node `n` a command now.
    pub fn command(&mut self, n: usize, cmd: Command) {
        self.net.command(at(n), cmd);
        self.collect();
    }

    /// Writes `data` on a handed-off connection of node `n`, as its driver would.
    pub fn send_raw(&mut self, n: usize, conn: ConnId, data: &[u8]) {
        self.net.send_raw((at(n), conn), data);
    }

    /// Connects `a` to `b` (run the network for both to be up).
    pub fn link(&mut self, a: usize, b: usize) {
        self.command(a, Command::Connect { id: 0, addr: at(b) });
    }

    fn collect(&mut self) {
        for (t, a, e) in self.net.take_timed_events() {
            if let Some(n) = node_of(a) {
                self.events.push((t, n, e));
            }
        }
    }

    /// Runs until nothing is left to deliver and no timer is due before `limit`.
    pub fn run_until(&mut self, limit: Instant) {
        self.net.drive_while(limit, 10_000_000, |_| false);
        self.collect();
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.net.drive_for(d);
        self.collect();
    }

    /// Takes the events collected so far.
    pub fn take_events(&mut self) -> Vec<(Instant, usize, Event)> {
        std::mem::take(&mut self.events)
    }
}
