//! The address table: addresses peers told us about (`addr`) and the peers we met, keyed by
//! (ip, port) in a map keyed from the node's RNG (peers choose these keys), bounded: at
//! capacity a random entry makes room, so a flood of addresses cannot grow it or pin it.
use servent_core::{KeyedMap, Rng, keyed_map};

use crate::wire::p2p::NetAddr;

/// One known address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAddr {
    pub addr: NetAddr,
    /// Last time seen (unix seconds), as `addr` carries it.
    pub time: u32,
}

/// The bounded table.
#[derive(Debug)]
pub struct AddrTable {
    map: KeyedMap<([u8; 16], u16), KnownAddr>,
    /// Insertion order of keys, for random eviction by index.
    keys: Vec<([u8; 16], u16)>,
    cap: usize,
}

impl AddrTable {
    pub fn new(cap: usize, rng: &mut Rng) -> Self {
        Self {
            map: keyed_map(rng),
            keys: Vec::new(),
            cap: cap.max(1),
        }
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Add or refresh `addr` (seen at `time`). Port 0 and the unspecified address are ignored.
    pub fn add(&mut self, addr: NetAddr, time: u32, rng: &mut Rng) {
        if addr.port == 0 || addr.ip == [0; 16] {
            return;
        }
        let key = (addr.ip, addr.port);
        if let Some(k) = self.map.get_mut(&key) {
            k.time = k.time.max(time);
            k.addr.services = addr.services;
            return;
        }
        if self.map.len() >= self.cap && !self.keys.is_empty() {
            let i = rng.below(self.keys.len() as u64) as usize;
            let gone = self.keys.swap_remove(i);
            self.map.remove(&gone);
        }
        self.keys.push(key);
        self.map.insert(key, KnownAddr { addr, time });
    }

    /// Up to `n` addresses picked at random (Core answers `getaddr` with a random sample).
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Vec<KnownAddr> {
        let mut idx: Vec<usize> = (0..self.keys.len()).collect();
        rng.shuffle(&mut idx);
        idx.into_iter()
            .take(n)
            .filter_map(|i| self.map.get(self.keys.get(i)?).cloned())
            .collect()
    }
}
