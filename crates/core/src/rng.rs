//! Seeded randomness. Cores never create their own randomness: the caller hands them an
//! [`Rng`] built from a seed, so that the same seed gives the same run.

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};

/// The environment variable that tests and the simulator read their seed from.
pub const SEED_ENV: &str = "SERVENT_SEED";

/// ChaCha12 (the generator behind `rand`'s `StdRng`): fast enough for the simulator and
/// unpredictable when its 256-bit seed is: real runs build it from the OS CSPRNG
/// (`servent_runtime::os_rng()`), so keys, tokens, GUIDs and transaction ids drawn from it
/// cannot be guessed; tests and the simulator build it from a 64-bit seed
/// ([`Rng::new`]) so the same seed gives the same run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    inner: ChaCha12Rng,
}

/// SplitMix64, used to expand a 64-bit seed into the generator's 256-bit seed.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator from a 64-bit seed: for tests and the simulator, never for real runs
    /// (64 bits can be searched; use [`Rng::from_seed_bytes`] with OS randomness).
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&splitmix64(&mut x).to_le_bytes());
        }
        Rng::from_seed_bytes(bytes)
    }

    /// A generator from a full 256-bit seed (the OS CSPRNG's bytes in real runs).
    pub fn from_seed_bytes(seed: [u8; 32]) -> Rng {
        Rng {
            inner: ChaCha12Rng::from_seed(seed),
        }
    }

    /// An independent generator for sub-stream `stream` (e.g. one per simulated node),
    /// derived from this one's key and position without advancing it. Its output is as
    /// unpredictable as this generator's.
    pub fn fork(&self, stream: u64) -> Rng {
        let mut g = self.inner.clone();
        let mut x = stream;
        g.set_stream(self.inner.get_stream() ^ splitmix64(&mut x) ^ 0x666f_726b);
        let mut seed = [0u8; 32];
        g.fill_bytes(&mut seed);
        Rng::from_seed_bytes(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Fills `dest` with random bytes (keys, nonces, ids).
    pub fn fill(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
    }

    /// `N` random bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.inner.fill_bytes(&mut b);
        b
    }

    /// A uniform number in `0..n` (`n > 0`; returns 0 for `n == 0`), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's nearly divisionless method.
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let t = n.wrapping_neg() % n;
            while (m as u64) < t {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Shuffles a slice (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// A uniformly chosen element, `None` for an empty slice.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            v.get(self.below(v.len() as u64) as usize)
        }
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
    }
}

impl SeedableRng for Rng {
    type Seed = [u8; 32];
    fn from_seed(seed: [u8; 32]) -> Rng {
        Rng::from_seed_bytes(seed)
    }
}

/// xoshiro256++: a small, fast, predictable generator for the simulator's own sampling
/// (per-pair latencies, loss, churn), where nothing is secret and a fresh generator per
/// sample must cost nothing. Never give it to a core: cores take [`Rng`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastRng {
    s: [u64; 4],
}

impl FastRng {
    /// A generator from a 64-bit seed.
    pub fn new(seed: u64) -> FastRng {
        let mut x = seed;
        FastRng {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[0]
            .wrapping_add(self.s[3])
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A source of uniform floats in [0, 1), for samplers that take either generator.
pub trait Unit {
    /// A uniform float in [0, 1).
    fn unit01(&mut self) -> f64;
}

impl Unit for Rng {
    fn unit01(&mut self) -> f64 {
        self.unit()
    }
}

impl Unit for FastRng {
    fn unit01(&mut self) -> f64 {
        self.unit()
    }
}

/// The seed for a test or a run: `SERVENT_SEED` when it is set (decimal or 0x-hex),
/// else `default`. Callers print the seed they used so a failure can be replayed.
#[allow(clippy::disallowed_methods)] // for tests and the binary, never called by a core
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| parse_seed(&s))
        .unwrap_or(default)
}

/// Parses a seed written in decimal or as `0x` hex.
pub fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let r = Rng::new(7);
        assert_ne!(r.fork(1).next_u64(), r.fork(2).next_u64());
        assert_eq!(r.fork(1).next_u64(), r.fork(1).next_u64());
        // forking does not advance the parent, and a fork differs from its parent
        let mut p = Rng::new(7);
        let _ = p.fork(3);
        assert_eq!(p.next_u64(), Rng::new(7).next_u64());
        assert_ne!(Rng::new(7).fork(0).next_u64(), Rng::new(7).next_u64());
    }

    #[test]
    fn full_seeds_give_distinct_streams() {
        let mut a = Rng::from_seed_bytes([1; 32]);
        let mut b = Rng::from_seed_bytes([2; 32]);
        assert_ne!(a.bytes::<16>(), b.bytes::<16>());
        let mut c = Rng::from_seed_bytes([1; 32]);
        assert_eq!(Rng::from_seed_bytes([1; 32]).bytes::<16>(), c.bytes::<16>());
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let v = r.below(10) as usize;
            counts[v] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed("0x2a"), Some(42));
        assert_eq!(parse_seed("nope"), None);
    }
}
