//! Maps and sets for keys that peers or users choose.
//!
//! An unkeyed hash (like [`crate::FxHasher`]) lets whoever picks the keys pick colliding
//! ones: 300 000 words whose hashes agree turn every insert into a scan (HashDoS). The maps
//! here hash with SipHash-1-3 under a 128-bit key drawn from the node's [`Rng`]: from the
//! OS CSPRNG in real runs, from the scenario seed in the simulator, so simulated runs stay
//! reproducible while a remote peer cannot know the key.
//!
//! ```
//! use servent_core::{KeyedMap, KeyedState, Rng, keyed_map};
//! let mut rng = Rng::new(7);
//! let mut words: KeyedMap<String, u32> = keyed_map(&mut rng);
//! words.insert("debaser".into(), 1);
//! // several maps may share one key
//! let state = KeyedState::new(&mut rng);
//! let mut a: KeyedMap<u64, u8> = KeyedMap::with_hasher(state.clone());
//! a.insert(1, 2);
//! assert_eq!(words.get("debaser"), Some(&1));
//! ```

use std::hash::BuildHasher;

use siphasher::sip::SipHasher13;

use crate::Rng;

/// A [`BuildHasher`] for SipHash-1-3 with a secret 128-bit key.
#[derive(Clone)]
pub struct KeyedState {
    k0: u64,
    k1: u64,
}

impl KeyedState {
    /// A key drawn from `rng` (the node's generator: OS-seeded in real runs).
    pub fn new(rng: &mut Rng) -> KeyedState {
        KeyedState {
            k0: rng.next_u64(),
            k1: rng.next_u64(),
        }
    }
}

impl std::fmt::Debug for KeyedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the key is a secret: never printed
        f.write_str("KeyedState(..)")
    }
}

impl BuildHasher for KeyedState {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// `HashMap` hashed under a secret key: for keys a peer or user chooses.
#[allow(clippy::disallowed_types)]
pub type KeyedMap<K, V> = std::collections::HashMap<K, V, KeyedState>;
/// `HashSet` hashed under a secret key: for keys a peer or user chooses.
#[allow(clippy::disallowed_types)]
pub type KeyedSet<K> = std::collections::HashSet<K, KeyedState>;

/// An empty [`KeyedMap`] with a key drawn from `rng`.
pub fn keyed_map<K, V>(rng: &mut Rng) -> KeyedMap<K, V> {
    KeyedMap::with_hasher(KeyedState::new(rng))
}

/// An empty [`KeyedSet`] with a key drawn from `rng`.
pub fn keyed_set<K>(rng: &mut Rng) -> KeyedSet<K> {
    KeyedSet::with_hasher(KeyedState::new(rng))
}

/// Keys whose [`crate::FxHasher`] hashes agree in their low `bits` bits: the attack an
/// unkeyed map falls to. Tests of every structure that holds peer-chosen keys feed it these.
///
/// Each key is 16 bytes (two 64-bit words, as `FxHasher::write` consumes them, plus the
/// length prefix a `[u8]`/`String` key hashes with is up to the caller): the first word is
/// free, the second is solved so that the final hash equals `target` exactly. The function
/// returns keys for `Hasher::write(&key)` alone; wrap them as the structure's key type needs.
pub fn fx_colliding_words(n: usize, target: u64) -> Vec<[u8; 16]> {
    // FxHasher: h' = (rotl(h, 5) ^ w) * SEED. For h0 = 0 and a free first word a:
    // h1 = a * SEED; we need (rotl(h1, 5) ^ b) * SEED = target, so
    // b = rotl(h1, 5) ^ (target * SEED^-1).
    let inv = mod_inverse(FX_SEED);
    let want = target.wrapping_mul(inv);
    (0..n as u64)
        .map(|i| {
            let a = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed;
            let h1 = a.wrapping_mul(FX_SEED);
            let b = h1.rotate_left(5) ^ want;
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&a.to_le_bytes());
            k[8..].copy_from_slice(&b.to_le_bytes());
            k
        })
        .collect()
}

const FX_SEED: u64 = crate::FX_SEED;

/// The inverse of an odd number modulo 2^64 (Newton's iteration).
fn mod_inverse(a: u64) -> u64 {
    let mut x = a; // correct to 3 bits for odd a
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hasher};

    use super::*;
    use crate::FxHasher;

    #[test]
    fn constructed_words_collide_under_fxhash() {
        let words = fx_colliding_words(1000, 0xdead_beef);
        for w in &words {
            let mut h = FxHasher::default();
            h.write(w);
            assert_eq!(h.finish(), 0xdead_beef);
        }
        let distinct: std::collections::BTreeSet<_> = words.iter().collect();
        assert_eq!(distinct.len(), 1000);
    }

    #[test]
    fn keyed_hashes_of_colliding_words_spread() {
        let words = fx_colliding_words(4096, 7);
        let state = KeyedState::new(&mut Rng::new(1));
        let buckets: std::collections::BTreeSet<u64> =
            words.iter().map(|w| state.hash_one(w) & 0xffff).collect();
        // 4096 keys into 65 536 buckets: nearly all distinct (FxHash gives 1)
        assert!(buckets.len() > 3900, "{}", buckets.len());
    }

    #[test]
    fn a_keyed_map_takes_colliding_keys_in_linear_time() {
        // 20 000 FxHash-colliding keys: an FxMap needs ~n^2/2 probes (seconds); a keyed map
        // stays linear. Counted, not timed: the probe count of a keyed map is the number of
        // distinct hashes it sees, which must be all of them.
        let words = fx_colliding_words(20_000, 0);
        let mut m: KeyedMap<[u8; 16], usize> = keyed_map(&mut Rng::new(2));
        for (i, w) in words.iter().enumerate() {
            m.insert(*w, i);
        }
        assert_eq!(m.len(), 20_000);
        let hashes: std::collections::BTreeSet<u64> =
            words.iter().map(|w| m.hasher().hash_one(w)).collect();
        assert_eq!(hashes.len(), 20_000);
    }

    #[test]
    fn the_key_is_not_printed() {
        let s = format!("{:?}", KeyedState::new(&mut Rng::new(3)));
        assert_eq!(s, "KeyedState(..)");
    }

    #[test]
    fn inverse_is_an_inverse() {
        assert_eq!(FX_SEED.wrapping_mul(mod_inverse(FX_SEED)), 1);
    }
}
