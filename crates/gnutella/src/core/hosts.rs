//! Host caches (any servent, ultrapeers), refilling connections from them, and the
//! leaf-to-ultrapeer election.

use super::descriptors::raw_header;
use super::links::State;
use super::{DownReason, Event, KIND_BYE, PeerRole, Role, Servent};
use crate::wire::Guid;
use servent_core::{ConnId, Instant};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

impl Servent {
    /// Up to `n` ultrapeer addresses to offer others (X-Try-Ultrapeers), newest first.
    pub(super) fn try_ultrapeers(&self, n: usize, except: SocketAddr) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        if self.cfg.role == Role::Ultrapeer && !self.cfg.firewalled {
            out.push(SocketAddr::V4(self.cfg.advertised));
        }
        for a in self
            .up_cache
            .iter()
            .rev()
            .map(|a| SocketAddr::V4(*a))
            .filter(|a| *a != except)
        {
            if out.len() >= n {
                break;
            }
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out.truncate(n);
        out
    }

    /// Remembers an address as an ultrapeer's.
    pub(super) fn learn_ultrapeer(&mut self, addr: SocketAddr) {
        let SocketAddr::V4(a) = addr else {
            return;
        };
        if a.port() == 0 || a.ip().is_unspecified() || a == self.cfg.advertised {
            return;
        }
        self.up_cache.retain(|x| *x != a);
        if self.up_cache.len() >= self.cfg.host_cache_cap.max(1) {
            self.up_cache.pop_front();
        }
        self.up_cache.push_back(a);
    }

    pub(super) fn learn_host(&mut self, addr: SocketAddrV4) {
        if addr.port() == 0
            || addr.ip().is_unspecified()
            || *addr.ip() == Ipv4Addr::BROADCAST
            || addr == self.cfg.advertised
            || self.host_set.contains(&addr)
        {
            return;
        }
        if self.host_cache.len() >= self.cfg.host_cache_cap {
            if let Some(old) = self.host_cache.pop_front() {
                self.host_set.remove(&old);
            }
        }
        self.host_cache.push_back(addr);
        self.host_set.insert(addr);
    }

    /// Adds an address to the host cache (e.g. from `--connect` or a saved list).
    pub fn add_host(&mut self, addr: SocketAddrV4) {
        self.learn_host(addr);
    }

    /// How many mesh connections (a leaf: ultrapeers) a 0.6 servent keeps opening.
    pub(super) fn want_06(&self) -> usize {
        match self.cfg.role {
            Role::Leaf => self.cfg.want_conns.min(self.cfg.leaf_ultrapeers),
            _ => self.cfg.want_conns.min(self.cfg.up_peers),
        }
    }

    /// Mesh connections of a 0.6 servent: up, accepted, or being opened by us.
    pub(super) fn have_06(&self) -> usize {
        self.conns
            .iter()
            .filter(|(id, c)| match c.role {
                Some(r) => r != PeerRole::Leaf,
                None => {
                    !id.is_inbound() && matches!(c.state, State::Connecting | State::Handshake06(_))
                }
            })
            .count()
    }

    /// A 0.6 servent opens connections until it has `want_06`: known ultrapeers first
    /// (newest first), then other hosts from Pongs.
    pub(super) fn refill(&mut self, now: Instant) {
        let want = self.want_06();
        let mut have = self.have_06();
        let mut tries = self.up_cache.len() + self.host_cache.len();
        while have < want && tries > 0 {
            tries -= 1;
            let addr = match self.up_cache.pop_back() {
                Some(a) => a,
                None => match self.host_cache.pop_front() {
                    Some(a) => {
                        self.host_set.remove(&a);
                        a
                    }
                    None => break,
                },
            };
            let a = SocketAddr::V4(addr);
            if self.linked_to(a) {
                continue;
            }
            self.open(now, a, None);
            have += 1;
        }
    }

    /// Supernode election of a [`Role::Auto`] leaf (see [`Role::Auto`]). On promotion it
    /// says Bye to its ultrapeers and reconnects to them as an ultrapeer.
    pub(super) fn elect(&mut self, now: Instant) {
        if !self.auto || self.cfg.role != Role::Leaf || self.cfg.firewalled {
            return;
        }
        let up = self
            .started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let capable = up >= self.cfg.promote_uptime && self.cfg.speed_kbps >= self.cfg.promote_kbps;
        let known: BTreeSet<SocketAddr> = self
            .up_cache
            .iter()
            .map(|a| SocketAddr::V4(*a))
            .chain(
                self.conns
                    .values()
                    .filter(|c| c.role == Some(PeerRole::Ultrapeer))
                    .map(|c| c.peer),
            )
            .collect();
        let asked = self.needed_seen || known.len() < self.cfg.leaf_ultrapeers;
        if !(capable && asked) {
            return;
        }
        self.cfg.role = Role::Ultrapeer;
        self.qrp_dirty = true;
        let ups: Vec<(ConnId, SocketAddr)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.role == Some(PeerRole::Ultrapeer))
            .map(|(id, c)| (*id, c.peer))
            .collect();
        for (conn, peer) in ups {
            let mut bye = 200u16.to_le_bytes().to_vec();
            bye.extend_from_slice(b"Becoming an ultrapeer\0");
            let mut v = raw_header(Guid::random(&mut self.rng), KIND_BYE, 1, 0, bye.len()).to_vec();
            v.extend_from_slice(&bye);
            self.send_bytes(conn, v, None);
            self.close(conn, DownReason::Requested, None);
            if let SocketAddr::V4(a) = peer {
                if !conn.is_inbound() {
                    self.learn_ultrapeer(SocketAddr::V4(a));
                }
            }
        }
        self.emit(Event::RoleChanged {
            role: Role::Ultrapeer,
        });
    }

    /// Addresses known to be ultrapeers, newest last.
    pub fn ultrapeer_cache(&self) -> impl Iterator<Item = &SocketAddrV4> {
        self.up_cache.iter()
    }

    /// Adds an address to the ultrapeer cache (a bootstrap list).
    pub fn add_ultrapeer(&mut self, addr: SocketAddrV4) {
        self.learn_ultrapeer(SocketAddr::V4(addr));
    }
}
