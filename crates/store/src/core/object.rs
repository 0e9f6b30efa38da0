//! An object: parameters, segment boundaries, and the sealed (encrypted) manifest.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::keys;
use crate::wire::{Manifest, ManifestError};

/// Default plaintext bytes per segment.
pub const DEFAULT_SEGMENT: u32 = 1024 * 1024;
/// The largest segment.
pub const MAX_SEGMENT: u32 = 16 * 1024 * 1024;

/// Erasure and segment parameters of a put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Shards needed to read.
    pub k: u16,
    /// Shards made.
    pub n: u16,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            k: 4,
            n: 8,
            segment_size: DEFAULT_SEGMENT,
        }
    }
}

/// Why an object could not be sealed or opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// Bad parameters.
    #[error("bad parameters: {0}")]
    Params(&'static str),
    /// The sealed manifest failed authentication (wrong capability or tampered).
    #[error("manifest failed authentication (wrong capability or tampered copy)")]
    Auth,
    /// The manifest decrypted but does not parse.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl Params {
    /// Checks the limits: 1 ≤ k ≤ 100, k ≤ n ≤ 500 (and what the coder supports),
    /// 1 KiB ≤ segment ≤ 16 MiB.
    pub fn check(&self) -> Result<(), ObjectError> {
        if self.k == 0 || self.k > 100 || self.n < self.k || self.n > 500 {
            return Err(ObjectError::Params("need 1 <= k <= 100 and k <= n <= 500"));
        }
        if !super::segment::supported(self.k as usize, self.n as usize) {
            return Err(ObjectError::Params(
                "k-of-n not supported by the erasure coder",
            ));
        }
        if self.segment_size < 1024 || self.segment_size > MAX_SEGMENT {
            return Err(ObjectError::Params("segment size must be 1 KiB..16 MiB"));
        }
        Ok(())
    }

    /// How many segments a file of `size` bytes has (at least one: an empty file is one
    /// empty segment, so that it still has an authenticated ciphertext).
    pub fn segments(&self, size: u64) -> u64 {
        size.div_ceil(u64::from(self.segment_size)).max(1)
    }

    /// The plaintext range of segment `i` of a file of `size` bytes.
    pub fn segment_range(&self, size: u64, i: u64) -> (u64, u64) {
        let s = u64::from(self.segment_size);
        let from = (i * s).min(size);
        (from, (from + s).min(size))
    }
}

const MANIFEST_AAD: &[u8] = b"servent-store/manifest/v1";

/// Encrypts a manifest under the read key: 24-byte random nonce ‖ ciphertext.
pub fn seal_manifest(read: &[u8; 32], nonce: [u8; 24], m: &Manifest) -> Vec<u8> {
    let key = keys::manifest_key(read);
    let cipher = XChaCha20Poly1305::new((&key).into());
    let plain = m.encode();
    let mut out = nonce.to_vec();
    let si = keys::storage_index(read);
    let mut aad = MANIFEST_AAD.to_vec();
    aad.extend_from_slice(&si);
    // encryption with a fixed-size key and nonce cannot fail for inputs below 256 GiB
    if let Ok(ct) = cipher.encrypt(
        &XNonce::from(nonce),
        Payload {
            msg: &plain,
            aad: &aad,
        },
    ) {
        out.extend_from_slice(&ct);
    }
    out
}

/// Decrypts and parses a sealed manifest.
pub fn open_manifest(read: &[u8; 32], sealed: &[u8]) -> Result<Manifest, ObjectError> {
    if sealed.len() < 24 + 16 {
        return Err(ObjectError::Auth);
    }
    let (nonce, ct) = sealed.split_at(24);
    let mut n = [0u8; 24];
    n.copy_from_slice(nonce);
    let key = keys::manifest_key(read);
    let cipher = XChaCha20Poly1305::new((&key).into());
    let si = keys::storage_index(read);
    let mut aad = MANIFEST_AAD.to_vec();
    aad.extend_from_slice(&si);
    let plain = cipher
        .decrypt(&XNonce::from(n), Payload { msg: ct, aad: &aad })
        .map_err(|_| ObjectError::Auth)?;
    Ok(Manifest::decode(&plain)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FileEntry;

    #[test]
    fn manifest_seals_and_only_the_right_key_opens_it() {
        let m = Manifest {
            k: 4,
            n: 8,
            segment_size: 1024,
            is_dir: false,
            name: "f".into(),
            owner: [1; 32],
            files: vec![FileEntry {
                path: String::new(),
                size: 0,
                segments: vec![],
            }],
        };
        let r = keys::read_key(&[5; 32]);
        let mut s = seal_manifest(&r, [7; 24], &m);
        assert_eq!(open_manifest(&r, &s).unwrap(), m);
        assert_eq!(open_manifest(&[0; 32], &s), Err(ObjectError::Auth));
        let last = s.len() - 1;
        s[last] ^= 1;
        assert_eq!(open_manifest(&r, &s), Err(ObjectError::Auth));
        assert_eq!(open_manifest(&r, &[1, 2]), Err(ObjectError::Auth));
    }

    #[test]
    fn segments_cover_the_file() {
        let p = Params {
            segment_size: 1024,
            ..Params::default()
        };
        assert_eq!(p.segments(0), 1);
        assert_eq!(p.segments(1), 1);
        assert_eq!(p.segments(1024), 1);
        assert_eq!(p.segments(1025), 2);
        assert_eq!(p.segment_range(1025, 1), (1024, 1025));
        assert_eq!(p.segment_range(0, 0), (0, 0));
        assert!(p.check().is_ok());
        assert!(
            Params {
                k: 100,
                n: 500,
                segment_size: 1024
            }
            .check()
            .is_ok()
        );
        assert!(
            Params {
                k: 5,
                n: 4,
                segment_size: 1024
            }
            .check()
            .is_err()
        );
    }
}
