//! 160-bit identifiers for the DHT overlays: Kademlia node ids and info-hashes, Chord ids.
//!
//! Two geometries live on the same type:
//! - the **XOR metric** (Kademlia): [`Id::distance`], [`Id::bucket_index`];
//! - the **ring modulo 2^m** (Chord), for any `m` from 1 to 160: [`Ring`] reduces ids to `m`
//!   bits and does the clockwise interval tests and `n + 2^i`.
//!
//! The interval tests do not depend on `m` as long as both ends and the tested id are already
//! reduced, so they are methods on [`Id`]; `add_pow2` and hashing to the ring need `m`.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// Number of bits in an [`Id`].
pub const ID_BITS: u32 = 160;
/// Number of bytes in an [`Id`].
pub const ID_LEN: usize = 20;

/// A 160-bit identifier, big-endian: byte 0 holds the most significant bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; ID_LEN]);

/// Error parsing an [`Id`] from text or bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The text was not 40 hex digits.
    #[error("an id is 40 hexadecimal digits, got {0} characters")]
    BadLength(usize),
    /// The text had a character that is not a hex digit.
    #[error("an id is 40 hexadecimal digits: {0}")]
    BadHex(String),
    /// A byte slice was not exactly 20 bytes long.
    #[error("an id is 20 bytes, got {0}")]
    BadSliceLength(usize),
}

impl Id {
    /// The id whose bits are all zero.
    pub const ZERO: Id = Id([0; ID_LEN]);
    /// The id whose bits are all one (2^160 − 1).
    pub const MAX: Id = Id([0xff; ID_LEN]);

    /// SHA-1 of `data`: how Chord names nodes and keys and how BitTorrent names content.
    pub fn hash(data: &[u8]) -> Id {
        let digest = Sha1::digest(data);
        let mut out = [0u8; ID_LEN];
        out.copy_from_slice(&digest);
        Id(out)
    }

    /// An id from exactly 20 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Id, IdError> {
        let arr: [u8; ID_LEN] = bytes
            .try_into()
            .map_err(|_| IdError::BadSliceLength(bytes.len()))?;
        Ok(Id(arr))
    }

    /// The id with the numeric value `v` (the low 64 bits).
    pub const fn from_u64(v: u64) -> Id {
        let mut out = [0u8; ID_LEN];
        let b = v.to_be_bytes();
        let mut i = 0;
        while i < 8 {
            out[12 + i] = b[i];
            i += 1;
        }
        Id(out)
    }

    /// The low 64 bits as a number (exact for ids below 2^64, e.g. on small rings).
    pub fn low_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[12..]);
        u64::from_be_bytes(b)
    }

    /// A uniformly random id.
    pub fn random(rng: &mut impl rand_core::RngCore) -> Id {
        let mut out = [0u8; ID_LEN];
        rng.fill_bytes(&mut out);
        Id(out)
    }

    /// The bytes, most significant first.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Kademlia's XOR distance.
    pub fn distance(&self, other: &Id) -> Id {
        let mut out = [0u8; ID_LEN];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Id(out)
    }

    /// Number of leading zero bits (160 for [`Id::ZERO`]).
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }

    /// The k-bucket that `other` falls in, seen from `self`: the length of the common prefix,
    /// 0 for ids that differ in the top bit, up to 159; `None` when they are equal.
    pub fn bucket_index(&self, other: &Id) -> Option<usize> {
        let lz = self.distance(other).leading_zeros();
        (lz < ID_BITS).then_some(lz as usize)
    }

    /// Bit `i` counted from the most significant (bit 0) to the least significant (bit 159).
    pub fn bit(&self, i: usize) -> bool {
        i < ID_BITS as usize && (self.0[i / 8] >> (7 - i % 8)) & 1 == 1
    }

    /// `self + other` modulo 2^160.
    pub fn wrapping_add(&self, other: &Id) -> Id {
        let mut out = [0u8; ID_LEN];
        let mut carry = 0u16;
        for i in (0..ID_LEN).rev() {
            let s = u16::from(self.0[i]) + u16::from(other.0[i]) + carry;
            out[i] = s as u8;
            carry = s >> 8;
        }
        Id(out)
    }

    /// `self − other` modulo 2^160.
    pub fn wrapping_sub(&self, other: &Id) -> Id {
        let mut out = [0u8; ID_LEN];
        let mut borrow = 0i16;
        for i in (0..ID_LEN).rev() {
            let mut d = i16::from(self.0[i]) - i16::from(other.0[i]) - borrow;
            borrow = 0;
            if d < 0 {
                d += 256;
                borrow = 1;
            }
            out[i] = d as u8;
        }
        Id(out)
    }

    /// 2^i for i < 160.
    pub fn pow2(i: u32) -> Id {
        let mut out = [0u8; ID_LEN];
        if i < ID_BITS {
            let byte = ID_LEN - 1 - (i / 8) as usize;
            out[byte] = 1 << (i % 8);
        }
        Id(out)
    }

    /// Whether `self` lies in the clockwise open interval (a, b) on the ring.
    /// When `a == b` the interval is the whole ring except `a`.
    pub fn in_open(&self, a: &Id, b: &Id) -> bool {
        if a < b {
            a < self && self < b
        } else {
            // wraps around zero (or a == b: everything but a)
            self > a || self < b
        }
    }

    /// Whether `self` lies in the clockwise half-open interval (a, b] on the ring.
    /// When `a == b` the interval is the whole ring.
    pub fn in_half_open(&self, a: &Id, b: &Id) -> bool {
        if a < b {
            a < self && self <= b
        } else {
            self > a || self <= b
        }
    }
}

/// The identifier ring modulo 2^m (Chord), 1 ≤ m ≤ 160.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    bits: u32,
}

impl Ring {
    /// The full 160-bit ring.
    pub const FULL: Ring = Ring { bits: ID_BITS };

    /// A ring of `bits` bits; `None` outside 1..=160.
    pub fn new(bits: u32) -> Option<Ring> {
        (1..=ID_BITS).contains(&bits).then_some(Ring { bits })
    }

    /// m, the number of bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// `x` modulo 2^m.
    pub fn reduce(&self, x: &Id) -> Id {
        let mut out = *x;
        let clear = ID_BITS - self.bits; // high bits to clear
        for i in 0..clear as usize {
            out.0[i / 8] &= !(0x80 >> (i % 8));
        }
        out
    }

    /// (n + 2^i) mod 2^m, for i < m: the start of Chord's finger i+1.
    pub fn add_pow2(&self, n: &Id, i: u32) -> Id {
        self.reduce(&n.wrapping_add(&Id::pow2(i)))
    }

    /// (a + b) mod 2^m.
    pub fn add(&self, a: &Id, b: &Id) -> Id {
        self.reduce(&a.wrapping_add(b))
    }

    /// Clockwise distance from `a` to `b`: (b − a) mod 2^m.
    pub fn clockwise(&self, a: &Id, b: &Id) -> Id {
        self.reduce(&b.wrapping_sub(a))
    }

    /// SHA-1 of `data`, reduced to m bits (the low m bits of the digest).
    pub fn hash(&self, data: &[u8]) -> Id {
        self.reduce(&Id::hash(data))
    }

    /// The id with value `v` modulo 2^m.
    pub fn id(&self, v: u64) -> Id {
        self.reduce(&Id::from_u64(v))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", hex::encode(self.0))
    }
}

impl fmt::LowerHex for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Id, IdError> {
        if s.len() != 2 * ID_LEN {
            return Err(IdError::BadLength(s.len()));
        }
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|e| IdError::BadHex(e.to_string()))?;
        Ok(Id(out))
    }
}

impl From<[u8; ID_LEN]> for Id {
    fn from(b: [u8; ID_LEN]) -> Id {
        Id(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_id() -> impl Strategy<Value = Id> {
        any::<[u8; 20]>().prop_map(Id)
    }

    #[test]
    fn sha1_of_abc_is_the_published_vector() {
        assert_eq!(
            Id::hash(b"abc").to_string(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id: Id = "00112233445566778899aabbccddeeff00112233".parse().unwrap();
        assert_eq!(id.0[0], 0x00);
        assert_eq!(id.0[19], 0x33);
        assert_eq!(id.to_string().parse::<Id>().unwrap(), id);
        assert_eq!("abc".parse::<Id>(), Err(IdError::BadLength(3)));
        assert!(matches!(
            "zz112233445566778899aabbccddeeff00112233".parse::<Id>(),
            Err(IdError::BadHex(_))
        ));
        assert_eq!(Id::from_slice(&[1, 2]), Err(IdError::BadSliceLength(2)));
    }

    #[test]
    fn chord_m5_finger_starts() {
        // The lecture's ring: m = 5, node 8's finger starts are 9, 10, 12, 16, 24.
        let ring = Ring::new(5).unwrap();
        let n = ring.id(8);
        let starts: Vec<u64> = (0..5).map(|i| ring.add_pow2(&n, i).low_u64()).collect();
        assert_eq!(starts, vec![9, 10, 12, 16, 24]);
        // Node 28's starts wrap: 29, 30, 0, 4, 12.
        let n = ring.id(28);
        let starts: Vec<u64> = (0..5).map(|i| ring.add_pow2(&n, i).low_u64()).collect();
        assert_eq!(starts, vec![29, 30, 0, 4, 12]);
    }

    #[test]
    fn intervals_wrap_around_zero() {
        let r = Ring::new(5).unwrap();
        let (a, b) = (r.id(28), r.id(4));
        assert!(r.id(30).in_open(&a, &b));
        assert!(r.id(0).in_open(&a, &b));
        assert!(!r.id(4).in_open(&a, &b));
        assert!(r.id(4).in_half_open(&a, &b));
        assert!(!r.id(28).in_half_open(&a, &b));
        assert!(!r.id(10).in_half_open(&a, &b));
        // a == b: (a, a] is the whole ring, (a, a) everything but a
        assert!(r.id(3).in_half_open(&a, &a));
        assert!(a.in_half_open(&a, &a));
        assert!(!a.in_open(&a, &a));
    }

    #[test]
    fn bucket_index_is_common_prefix_length() {
        let a = Id::ZERO;
        assert_eq!(a.bucket_index(&a), None);
        assert_eq!(a.bucket_index(&Id::MAX), Some(0));
        assert_eq!(a.bucket_index(&Id::from_u64(1)), Some(159));
        assert_eq!(a.bucket_index(&Id::pow2(100)), Some(59));
    }

    proptest! {
        #[test]
        fn xor_is_a_metric(a in arb_id(), b in arb_id(), c in arb_id()) {
            prop_assert_eq!(a.distance(&a), Id::ZERO);
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            // XOR satisfies d(a,c) <= d(a,b) xor-sum d(b,c) exactly: d(a,c) = d(a,b) ^ d(b,c)
            prop_assert_eq!(a.distance(&c), a.distance(&b).distance(&b.distance(&c)));
            // unidirectional: for a given a and distance there is exactly one b
            prop_assert_eq!(a.distance(&a.distance(&b)), b);
        }

        #[test]
        fn bucket_index_matches_bits(a in arb_id(), b in arb_id()) {
            if let Some(i) = a.bucket_index(&b) {
                for j in 0..i { prop_assert_eq!(a.bit(j), b.bit(j)); }
                prop_assert_ne!(a.bit(i), b.bit(i));
            } else {
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn add_sub_are_inverse(a in arb_id(), b in arb_id()) {
            prop_assert_eq!(a.wrapping_add(&b).wrapping_sub(&b), a);
            prop_assert_eq!(a.wrapping_sub(&b).wrapping_add(&b), a);
        }

        #[test]
        fn ring_intervals_agree_with_clockwise_distance(
            m in 1u32..=160, a in arb_id(), b in arb_id(), x in arb_id()
        ) {
            let r = Ring::new(m).unwrap();
            let (a, b, x) = (r.reduce(&a), r.reduce(&b), r.reduce(&x));
            let dab = r.clockwise(&a, &b);
            let dax = r.clockwise(&a, &x);
            // x in (a, b]  <=>  0 < d(a,x) <= d(a,b), with (a, a] the whole ring
            let half = if a == b { true } else { dax != Id::ZERO && dax <= dab };
            prop_assert_eq!(x.in_half_open(&a, &b), half);
            let open = if a == b { x != a } else { dax != Id::ZERO && dax < dab };
            prop_assert_eq!(x.in_open(&a, &b), open);
        }

        #[test]
        fn ring_reduce_and_add_pow2(m in 1u32..=160, n in arb_id(), i in 0u32..160) {
            let r = Ring::new(m).unwrap();
            let n = r.reduce(&n);
            prop_assert!(n.leading_zeros() >= 160 - m);
            prop_assert_eq!(r.reduce(&n), n);
            if i < m {
                let s = r.add_pow2(&n, i);
                prop_assert_eq!(r.clockwise(&n, &s), Id::pow2(i));
            }
        }
    }
}
