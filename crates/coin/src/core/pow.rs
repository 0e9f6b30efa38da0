//! 256-bit targets: retargeting (Core's `CalculateNextWorkRequired`),
//! `GetCompact`, chain work.

/// An unsigned 256-bit integer, four little-endian u64 limbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct U256(pub [u64; 4]);

impl PartialOrd for U256 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for U256 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.iter().rev().cmp(o.0.iter().rev())
    }
}

impl U256 {
    pub const ZERO: U256 = U256([0; 4]);
    pub fn from_be_bytes(b: &[u8; 32]) -> Self {
        let mut l = [0u64; 4];
        for (i, limb) in l.iter_mut().enumerate() {
            let s = 32 - 8 * (i + 1);
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[s..s + 8]);
            *limb = u64::from_be_bytes(w);
        }
        U256(l)
    }
    pub fn to_be_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            let s = 32 - 8 * (i + 1);
            b[s..s + 8].copy_from_slice(&limb.to_be_bytes());
        }
        b
    }
    pub fn is_zero(self) -> bool {
        self.0 == [0; 4]
    }
    /// `None` on overflow.
    pub fn checked_mul_u64(self, m: u64) -> Option<Self> {
        let mut out = [0u64; 4];
        let mut carry: u128 = 0;
        for (slot, &limb) in out.iter_mut().zip(&self.0) {
            let v = u128::from(limb) * u128::from(m) + carry;
            *slot = v as u64;
            carry = v >> 64;
        }
        (carry == 0).then_some(U256(out))
    }
    pub fn div_u64(self, d: u64) -> Self {
        let mut out = [0u64; 4];
        let mut rem: u128 = 0;
        for i in (0..4).rev() {
            let cur = (rem << 64) | u128::from(self.0[i]);
            out[i] = (cur / u128::from(d.max(1))) as u64;
            rem = cur % u128::from(d.max(1));
        }
        U256(out)
    }
    fn bits(self) -> u32 {
        for i in (0..4).rev() {
            if self.0[i] != 0 {
                return 64 * i as u32 + 64 - self.0[i].leading_zeros();
            }
        }
        0
    }
    fn shr_bytes(self, n: u32) -> Self {
        let b = self.to_be_bytes();
        let n = n as usize;
        let mut o = [0u8; 32];
        if n < 32 {
            o[n..].copy_from_slice(&b[..32 - n]);
        }
        U256::from_be_bytes(&o)
    }
    /// Core's `arith_uint256::GetCompact` (never sets the sign bit).
    pub fn to_compact(self) -> u32 {
        let mut size = self.bits().div_ceil(8);
        let mut compact: u32 = if size <= 3 {
            (self.0[0] << (8 * (3 - size))) as u32
        } else {
            self.shr_bytes(size - 3).0[0] as u32
        };
        if compact & 0x0080_0000 != 0 {
            compact >>= 8;
            size += 1;
        }
        compact | (size << 24)
    }
    /// `None` on overflow past 2^256.
    pub fn checked_add(self, o: Self) -> Option<Self> {
        let s = self.add(o);
        (s >= self).then_some(s)
    }
    fn not(self) -> Self {
        U256(self.0.map(|l| !l))
    }
    fn add(self, o: Self) -> Self {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, slot) in out.iter_mut().enumerate() {
            let (a, c1) = self.0[i].overflowing_add(o.0[i]);
            let (b, c2) = a.overflowing_add(u64::from(carry));
            *slot = b;
            carry = c1 || c2;
        }
        U256(out)
    }
    fn sub(self, o: Self) -> Self {
        self.add(o.not()).add(U256([1, 0, 0, 0]))
    }
    /// Long division (shift-subtract); `d` must be non-zero.
    pub fn div_u256(self, d: Self) -> Self {
        if d.is_zero() {
            return U256::ZERO;
        }
        let mut q = U256::ZERO;
        let mut r = U256::ZERO;
        for bit in (0..256).rev() {
            r = r.add(r);
            if self.0[bit / 64] >> (bit % 64) & 1 == 1 {
                r.0[0] |= 1;
            }
            if r >= d {
                r = r.sub(d);
                q.0[bit / 64] |= 1 << (bit % 64);
            }
        }
        q
    }
}

/// Work a block of this target represents: 2^256 / (target + 1) (Core's `GetBlockProof`).
pub fn work_from_target(target: U256) -> U256 {
    // ~target / (target + 1) + 1, which avoids 2^256.
    target
        .not()
        .div_u256(target.add(U256([1, 0, 0, 0])))
        .add(U256([1, 0, 0, 0]))
}

/// Two weeks, in seconds.
pub const TARGET_TIMESPAN: i64 = 14 * 24 * 60 * 60;
/// Blocks between retargets.
pub const RETARGET_INTERVAL: u32 = 2016;

/// Core's `CalculateNextWorkRequired`: scale the last target by the
/// actual timespan (clamped to a quarter .. four times two weeks), never
/// above the pow limit. `first_time` is the time of the block 2015 blocks
/// before the last (mainnet's off-by-one: the interval's first block is not
/// the previous retarget's last).
pub fn next_target(last_bits: u32, first_time: u32, last_time: u32, pow_limit: U256) -> u32 {
    let actual = (i64::from(last_time) - i64::from(first_time))
        .clamp(TARGET_TIMESPAN / 4, TARGET_TIMESPAN * 4);
    let old = U256::from_be_bytes(&crate::target_from_compact(last_bits).target);
    let new = old
        .checked_mul_u64(actual as u64)
        .map(|t| t.div_u64(TARGET_TIMESPAN as u64))
        .unwrap_or(pow_limit);
    new.min(pow_limit).to_compact()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mainnet_limit() -> U256 {
        crate::Params::mainnet().pow_limit()
    }

    // Bitcoin Core's pow_tests.cpp, with real mainnet retargets.
    #[test]
    fn retarget_matches_cores_mainnet_cases() {
        // block 32256: a normal retarget
        assert_eq!(
            next_target(0x1d00ffff, 1_261_130_161, 1_262_152_739, mainnet_limit()),
            0x1d00d86a
        );
        // block 2016: slower than two weeks, held at the pow limit
        assert_eq!(
            next_target(0x1d00ffff, 1_231_006_505, 1_233_061_996, mainnet_limit()),
            0x1d00ffff
        );
        // block 68544: faster than a quarter, clamped to 4x harder
        assert_eq!(
            next_target(0x1c05a3f4, 1_279_008_237, 1_279_297_671, mainnet_limit()),
            0x1c0168fd
        );
        // block 46368: slower than 4x, clamped to 4x easier
        assert_eq!(
            next_target(0x1c387f6f, 1_263_163_443, 1_269_211_443, mainnet_limit()),
            0x1d00e1fd
        );
    }

    #[test]
    fn compact_round_trips_and_difficulty_one_work_is_0x100010001() {
        for bits in [
            0x1d00ffffu32,
            0x1b0404cb,
            0x207fffff,
            0x1c0168fd,
            0x03123456,
        ] {
            let t = U256::from_be_bytes(&crate::target_from_compact(bits).target);
            assert_eq!(t.to_compact(), bits);
        }
        let t = U256::from_be_bytes(&crate::target_from_compact(0x1d00ffff).target);
        assert_eq!(work_from_target(t), U256([0x1_0001_0001, 0, 0, 0]));
    }
}
