//! servent-core: the foundation every servent protocol stands on.
//!
//! - [`Id`] and [`Ring`]: 160-bit identifiers with the XOR metric and ring arithmetic;
//! - [`Instant`]: time as the caller passes it in, never read from a clock here;
//! - [`Rng`]: seeded randomness (ChaCha12; OS-seeded in real runs);
//! - [`KeyedMap`]/[`KeyedSet`]: hash maps for keys peers choose (no HashDoS);
//! - [`queue::BoundedQueue`]: the one bounded queue, which never drops silently;
//! - [`contract`]: how a sans-IO protocol core is driven ([`Core`], [`Input`], [`Transmit`]);
//! - [`framing`]: length-bounded framing for stream protocols;
//! - [`harness`]: the in-memory test network (datagrams and streams in virtual time) that
//!   every protocol's tests and its own `harness.rs` build on;
//! - [`share`]: how queries match shared files, the same rules in every system;
//! - [`pingpong`]: the example protocol that proves the contract on both drivers.
//!
//! This crate has no I/O and no async runtime; CI builds it alone to prove it.

pub mod contract;
pub mod framing;
pub mod harness;
pub mod id;
pub mod keyed;
pub mod pingpong;
pub mod queue;
pub mod rng;
pub mod share;
pub mod time;

pub use contract::{CloseReason, ConnId, Core, Input, Transmit};
pub use id::{ID_BITS, ID_LEN, Id, IdError, Ring};
pub use keyed::{KeyedMap, KeyedSet, KeyedState, keyed_map, keyed_set};
pub use queue::BoundedQueue;
pub use rng::Rng;
pub use time::Instant;

/// A fast, fixed (unkeyed) hasher: the same inserts give the same iteration order on every
/// run, which `std`'s randomly keyed `HashMap` does not. Use it only for keys we mint
/// ourselves (our own handles and indexes); keys a peer or user chooses go in a
/// [`KeyedMap`], whose hash they cannot predict.
#[derive(Default, Clone, Copy, Debug)]
pub struct FxHasher {
    hash: u64,
}

pub(crate) const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.hash = (self.hash.rotate_left(5) ^ i).wrapping_mul(FX_SEED);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `HashMap` with [`FxHasher`]: deterministic iteration for the same sequence of inserts.
#[allow(clippy::disallowed_types)]
pub type FxMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;
/// `HashSet` with [`FxHasher`].
#[allow(clippy::disallowed_types)]
pub type FxSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<FxHasher>>;
