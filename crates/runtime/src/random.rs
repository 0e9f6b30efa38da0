//! Randomness for real runs: every generator a driver hands a core is seeded from the
//! operating system's CSPRNG (never from the clock or the process id), so keys, tokens,
//! GUIDs, transaction ids and peer ids cannot be predicted by someone who knows when a node
//! started. The simulator and tests keep their seeded [`Rng::new`].

use servent_core::Rng;

/// The OS had no randomness to give (on Linux: `getrandom(2)` failed).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct OsRandomError(String);

/// A generator seeded with 256 bits from the OS CSPRNG.
pub fn os_rng() -> Result<Rng, OsRandomError> {
    Ok(Rng::from_seed_bytes(os_random::<32>()?))
}

/// `N` bytes from the OS CSPRNG.
pub fn os_random<const N: usize>() -> Result<[u8; N], OsRandomError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| OsRandomError(e.to_string()))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_os_generators_differ() {
        let mut a = os_rng().unwrap();
        let mut b = os_rng().unwrap();
        assert_ne!(a.bytes::<32>(), b.bytes::<32>());
    }
}
