//! BIP 39 mnemonics (English word list, from the `bip39` crate): words from
//! 16 to 32 bytes of entropy (12 to 24 words), and the seed from the words
//! (PBKDF2-HMAC-SHA512, 2048 rounds, salt "mnemonic" + passphrase, NFKD).
use std::fmt;

use bip39::Language;
use thiserror::Error;
use zeroize::Zeroizing;

use super::secret::Seed;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MnemonicError {
    #[error("a mnemonic has 12, 15, 18, 21 or 24 words, this one {0}")]
    BadWordCount(usize),
    #[error("word {0} (counting from 1) is not in the BIP 39 English list")]
    UnknownWord(usize),
    #[error("entropy is 16, 20, 24, 28 or 32 bytes, not {0}")]
    BadEntropyLength(usize),
    #[error("the mnemonic's checksum does not match: a word is wrong or out of order")]
    BadChecksum,
}

impl From<bip39::Error> for MnemonicError {
    fn from(e: bip39::Error) -> Self {
        match e {
            bip39::Error::BadWordCount(n) => MnemonicError::BadWordCount(n),
            bip39::Error::UnknownWord(i) => MnemonicError::UnknownWord(i + 1),
            bip39::Error::BadEntropyBitCount(bits) => MnemonicError::BadEntropyLength(bits / 8),
            // Only English is compiled in, so no other language can be ambiguous with it.
            bip39::Error::InvalidChecksum | bip39::Error::AmbiguousLanguages(_) => {
                MnemonicError::BadChecksum
            }
        }
    }
}

/// A checked BIP 39 English mnemonic. `Debug` prints no words; they are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Mnemonic(bip39::Mnemonic);

impl fmt::Debug for Mnemonic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mnemonic(<redacted>, {} words)", self.0.word_count())
    }
}

impl Mnemonic {
    /// The words for `entropy` (16 bytes: 12 words, 32 bytes: 24 words).
    pub fn from_entropy(entropy: &[u8]) -> Result<Self, MnemonicError> {
        Ok(Self(bip39::Mnemonic::from_entropy_in(
            Language::English,
            entropy,
        )?))
    }

    /// Parses words separated by whitespace, in any letter case; the
    /// checksum must match.
    pub fn parse(words: &str) -> Result<Self, MnemonicError> {
        let lower = Zeroizing::new(words.to_lowercase());
        Ok(Self(bip39::Mnemonic::parse_in(
            Language::English,
            lower.as_str(),
        )?))
    }

    /// The words, separated by single spaces.
    pub fn phrase(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.to_string())
    }

    pub fn word_count(&self) -> usize {
        self.0.word_count()
    }

    /// The entropy the words encode.
    pub fn entropy(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_entropy())
    }

    /// The 64-byte seed for `passphrase` (empty for none).
    pub fn to_seed(&self, passphrase: &str) -> Seed {
        let bytes = Zeroizing::new(self.0.to_seed(passphrase));
        Seed::from_bytes(bytes.as_ref()).expect("BIP 39 seeds are 64 bytes")
    }
}
