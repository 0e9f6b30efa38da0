//! Share targets and share validation.
//!
//! Difficulty 1 is Bitcoin's `diff1` target `0x00000000ffff0000…0000` (the genesis nBits
//! `0x1d00ffff`); a share of difficulty `d` must hash at most `diff1 / d`. Regtest's network
//! difficulty is about 4.66e-10, so share difficulties are fractions there.
//!
//! [`check`] rebuilds the coinbase from `coinb1 + extranonce1 + extranonce2 + coinb2`, the
//! merkle root from the job's branch and the header from the job and the miner's ntime and
//! nonce, and decides: stale, bad ntime, low difficulty, or a share (and whether it is also a
//! block). Duplicates are the job's keyed set (see [`super::jobs::Job::record`]).
use crate::core::pow::U256;
use crate::wire::BlockHeader;
use crate::wire::stratum::{Submit, code};
use crate::{hash_meets_target, sha256d};

use super::jobs::Job;

/// Bitcoin's difficulty-1 target.
pub fn diff1() -> U256 {
    U256([0, 0, 0, 0x0000_0000_ffff_0000])
}

/// The largest target (every hash meets it).
pub const MAX_TARGET: U256 = U256([u64::MAX; 4]);

/// A 256-bit number as a float (for difficulties and rates).
pub fn to_f64(x: U256) -> f64 {
    x.0.iter()
        .enumerate()
        .map(|(i, l)| *l as f64 * 2f64.powi(64 * i as i32))
        .sum()
}

fn shl(x: U256, n: u32) -> Option<U256> {
    let len = (0..4)
        .rev()
        .find(|&i| x.0[i] != 0)
        .map_or(0, |i| 64 * i as u32 + 64 - x.0[i].leading_zeros());
    if len == 0 {
        return Some(x);
    }
    if len + n > 256 {
        return None;
    }
    let mut out = [0u64; 4];
    let (limbs, rem) = ((n / 64) as usize, n % 64);
    for i in (0..4).rev() {
        if i < limbs {
            continue;
        }
        let mut v = x.0[i - limbs] << rem;
        if rem > 0 && i > limbs {
            v |= x.0[i - limbs - 1] >> (64 - rem);
        }
        out[i] = v;
    }
    Some(U256(out))
}

fn shr(x: U256, n: u32) -> U256 {
    if n >= 256 {
        return U256::ZERO;
    }
    let mut out = [0u64; 4];
    let (limbs, rem) = ((n / 64) as usize, n % 64);
    for (i, slot) in out.iter_mut().enumerate() {
        if i + limbs >= 4 {
            break;
        }
        let mut v = x.0[i + limbs] >> rem;
        if rem > 0 && i + limbs + 1 < 4 {
            v |= x.0[i + limbs + 1] << (64 - rem);
        }
        *slot = v;
    }
    U256(out)
}

/// The target of difficulty `d` (`diff1 / d`, the largest target if that exceeds 2^256);
/// `None` unless `d` is finite and positive.
pub fn target_for_difficulty(d: f64) -> Option<U256> {
    if !d.is_finite() || d <= 0.0 {
        return None;
    }
    // d = m * 2^e with m an odd integer below 2^53.
    let bits = d.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mut m, mut e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    while m & 1 == 0 {
        m >>= 1;
        e += 1;
    }
    let q = diff1().div_u64(m);
    Some(if e >= 0 {
        shr(q, e as u32)
    } else {
        shl(q, e.unsigned_abs()).unwrap_or(MAX_TARGET)
    })
}

/// The difficulty of a target (`diff1 / target`).
pub fn difficulty_of(target: U256) -> f64 {
    to_f64(diff1()) / to_f64(target).max(1.0)
}

/// Hashes one expects to try per hash meeting `target`: 2^256 / (target + 1).
pub fn hashes_per_hit(target: U256) -> f64 {
    2f64.powi(256) / (to_f64(target) + 1.0)
}

/// Why a share was refused: its Stratum code and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reject {
    /// The job is unknown, or older than a job with `clean_jobs`.
    Stale,
    Duplicate,
    LowDifficulty,
    BadNtime,
    BadExtranonce2,
    Unauthorized,
    NotSubscribed,
    /// The job has taken as many shares as it keeps for duplicate checks.
    JobFull,
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::Stale,
        Reject::Duplicate,
        Reject::LowDifficulty,
        Reject::BadNtime,
        Reject::BadExtranonce2,
        Reject::Unauthorized,
        Reject::NotSubscribed,
        Reject::JobFull,
    ];
    pub fn code(self) -> i64 {
        match self {
            Reject::Stale => code::JOB_NOT_FOUND,
            Reject::Duplicate => code::DUPLICATE,
            Reject::LowDifficulty => code::LOW_DIFFICULTY,
            Reject::Unauthorized => code::UNAUTHORIZED,
            Reject::NotSubscribed => code::NOT_SUBSCRIBED,
            Reject::BadNtime | Reject::BadExtranonce2 | Reject::JobFull => code::OTHER,
        }
    }
    /// A short name for statistics (`stale`, `duplicate`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Reject::Stale => "stale",
            Reject::Duplicate => "duplicate",
            Reject::LowDifficulty => "low-difficulty",
            Reject::BadNtime => "bad-ntime",
            Reject::BadExtranonce2 => "bad-extranonce2",
            Reject::Unauthorized => "unauthorized",
            Reject::NotSubscribed => "not-subscribed",
            Reject::JobFull => "job-full",
        }
    }
    pub fn message(self) -> &'static str {
        match self {
            Reject::Stale => "Job not found (stale)",
            Reject::Duplicate => "Duplicate share",
            Reject::LowDifficulty => "Low difficulty share",
            Reject::BadNtime => "ntime out of range",
            Reject::BadExtranonce2 => "Wrong extranonce2 size",
            Reject::Unauthorized => "Unauthorized worker",
            Reject::NotSubscribed => "Not subscribed",
            Reject::JobFull => "Too many shares for this job",
        }
    }
}

/// How far past the pool's clock an ntime may be (Core's MAX_FUTURE_BLOCK_TIME).
pub const MAX_FUTURE: u64 = 2 * 60 * 60;

/// A share that passed: its header and hash, and whether it meets the network target.
#[derive(Debug, Clone)]
pub struct Checked {
    pub header: BlockHeader,
    pub hash: [u8; 32],
    pub coinbase: Vec<u8>,
    pub is_block: bool,
}

/// The coinbase of `job` with these extranonces.
pub fn coinbase_bytes(job: &Job, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
    let mut cb = Vec::with_capacity(job.coinb1.len() + 8 + job.coinb2.len());
    cb.extend_from_slice(&job.coinb1);
    cb.extend_from_slice(extranonce1);
    cb.extend_from_slice(extranonce2);
    cb.extend_from_slice(&job.coinb2);
    cb
}

/// The merkle root from the coinbase txid up a branch.
pub fn root_from_branch(coinbase_txid: [u8; 32], branch: &[[u8; 32]]) -> [u8; 32] {
    crate::merkle_root_from_branch(coinbase_txid, branch, 0)
}

/// The header a miner hashed for `job`.
pub fn header_for(job: &Job, extranonce1: &[u8], s: &Submit) -> (BlockHeader, Vec<u8>) {
    let cb = coinbase_bytes(job, extranonce1, &s.extranonce2);
    let root = root_from_branch(sha256d(&cb), &job.branch);
    let h = BlockHeader {
        version: job.version as i32,
        prev: job.prev,
        merkle_root: root,
        time: s.ntime,
        bits: job.bits,
        nonce: s.nonce,
    };
    (h, cb)
}

/// Check a submission against `job` (which the caller found by id: an unknown id is
/// [`Reject::Stale`]) for a session with `extranonce1` and share target `share_target`, at
/// pool time `unix_now`.
pub fn check(
    job: &Job,
    extranonce1: &[u8],
    s: &Submit,
    share_target: U256,
    unix_now: u64,
) -> Result<Checked, Reject> {
    if s.extranonce2.len() != super::EXTRANONCE2_SIZE {
        return Err(Reject::BadExtranonce2);
    }
    let latest = u64::from(job.ntime).max(unix_now) + MAX_FUTURE;
    if s.ntime < job.ntime || u64::from(s.ntime) > latest {
        return Err(Reject::BadNtime);
    }
    let (header, coinbase) = header_for(job, extranonce1, s);
    let hash = header.hash();
    if !hash_meets_target(&hash, &share_target.to_be_bytes()) {
        return Err(Reject::LowDifficulty);
    }
    let is_block = hash_meets_target(&hash, &job.network_target);
    Ok(Checked {
        header,
        hash,
        coinbase,
        is_block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_one_is_the_diff1_target_and_fractions_scale_it_up() {
        assert_eq!(target_for_difficulty(1.0), Some(diff1()));
        assert_eq!(
            target_for_difficulty(0.5),
            Some(diff1().checked_mul_u64(2).expect("fits"))
        );
        assert_eq!(target_for_difficulty(2.0), Some(diff1().div_u64(2)));
        assert_eq!(target_for_difficulty(1e-12), Some(MAX_TARGET));
        assert_eq!(target_for_difficulty(0.0), None);
        assert_eq!(target_for_difficulty(f64::NAN), None);
        // Regtest's nBits 0x207fffff is difficulty ~4.66e-10.
        let regtest = U256::from_be_bytes(&crate::target_from_compact(0x207f_ffff).target);
        let d = difficulty_of(regtest);
        assert!((d - 4.656_542_373_906_925e-10).abs() < 1e-18, "{d}");
        let back = target_for_difficulty(d).expect("a target");
        let ratio = to_f64(back) / to_f64(regtest);
        assert!((ratio - 1.0).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn shifts_agree_with_multiplication() {
        let x = U256([0x1234_5678_9abc_def0, 0xffff, 0, 0]);
        assert_eq!(shl(x, 4), x.checked_mul_u64(16));
        assert_eq!(shl(x, 70).map(|y| shr(y, 70)), Some(x));
        assert_eq!(shl(MAX_TARGET, 1), None);
        assert_eq!(shr(x, 256), U256::ZERO);
    }
}
