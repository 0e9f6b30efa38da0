//! Secret values: a seed and a password. Their `Debug` prints `<redacted>`
//! and their bytes are wiped when they are dropped.
use std::fmt;

use zeroize::Zeroizing;

/// Longest seed BIP 32 takes (and BIP 39 makes).
pub const MAX_SEED_LEN: usize = 64;
/// Shortest seed BIP 32 takes.
pub const MIN_SEED_LEN: usize = 16;

/// A BIP 32 seed of 16 to 64 bytes (BIP 39 makes 64).
#[derive(Clone, PartialEq, Eq)]
pub struct Seed(Zeroizing<Vec<u8>>);

impl Seed {
    /// `None` unless `bytes` holds 16 to 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (MIN_SEED_LEN..=MAX_SEED_LEN)
            .contains(&bytes.len())
            .then(|| Self(Zeroizing::new(bytes.to_vec())))
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// The wallet file's password. There is no default and no empty password.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// `None` for an empty password.
    pub fn new(password: String) -> Option<Self> {
        let p = Zeroizing::new(password);
        (!p.is_empty()).then_some(Self(p))
    }
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}
