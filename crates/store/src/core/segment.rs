//! One segment: encrypt with XChaCha20-Poly1305 under the file key (nonce = segment
//! index, unique per key), pad the ciphertext to k equal shards (an even byte count, as
//! Reed-Solomon over GF(2^16) needs), and add n−k recovery shards with reed-solomon-simd.
//! Decoding takes any k shards whose SHA-256 matches the manifest, rebuilds the rest, and
//! checks the AEAD tag.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::keys::sha256;

/// The AEAD tag length.
pub const TAG: usize = 16;

/// Why a segment could not be made or read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// Fewer than k good shards.
    #[error("only {have} good shards of the {need} needed")]
    TooFewShards {
        /// Good shards.
        have: usize,
        /// k.
        need: usize,
    },
    /// k and n not supported.
    #[error("unsupported erasure parameters {k}-of-{n}")]
    Params {
        /// k.
        k: usize,
        /// n.
        n: usize,
    },
    /// The manifest's sizes do not fit together.
    #[error("inconsistent segment sizes")]
    Sizes,
    /// The decrypted bytes failed authentication.
    #[error("segment failed authentication (wrong key or corrupted data)")]
    Auth,
    /// The erasure coder refused.
    #[error("erasure coding: {0}")]
    Coding(String),
}

/// A segment ready to place: n shards and their hashes.
#[derive(Clone, Debug)]
pub struct EncodedSegment {
    /// Ciphertext length.
    pub cipher_len: u32,
    /// Bytes per shard.
    pub shard_size: u32,
    /// n shards.
    pub shards: Vec<Vec<u8>>,
    /// SHA-256 of each.
    pub hashes: Vec<[u8; 32]>,
}

fn nonce(file: u32, seg: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..4].copy_from_slice(&file.to_be_bytes());
    n[4..12].copy_from_slice(&seg.to_be_bytes());
    XNonce::from(n)
}

fn aad(file: u32, seg: u64) -> [u8; 12] {
    let mut a = [0u8; 12];
    a[..4].copy_from_slice(&file.to_be_bytes());
    a[4..].copy_from_slice(&seg.to_be_bytes());
    a
}

/// Whether `k`-of-`n` is supported (1 ≤ k ≤ n ≤ 500, k ≤ 100 recommended by the issue).
pub fn supported(k: usize, n: usize) -> bool {
    k >= 1
        && n >= k
        && n <= 500
        && (n == k || reed_solomon_simd::ReedSolomonEncoder::supports(k, n - k))
}

/// The shard size for a ciphertext of `cipher_len` bytes in `k` shards.
pub fn shard_size(cipher_len: usize, k: usize) -> usize {
    let s = cipher_len.div_ceil(k.max(1)).max(2);
    s + (s & 1)
}

/// Encrypts and erasure-codes segment `seg` of file `file`.
pub fn encode_segment(
    key: &[u8; 32],
    file: u32,
    seg: u64,
    plain: &[u8],
    k: usize,
    n: usize,
) -> Result<EncodedSegment, SegmentError> {
    if !supported(k, n) {
        return Err(SegmentError::Params { k, n });
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(
            &nonce(file, seg),
            Payload {
                msg: plain,
                aad: &aad(file, seg),
            },
        )
        .map_err(|_| SegmentError::Auth)?;
    let size = shard_size(ct.len(), k);
    let mut shards: Vec<Vec<u8>> = (0..k)
        .map(|i| {
            let mut s = vec![0u8; size];
            let from = (i * size).min(ct.len());
            let to = ((i + 1) * size).min(ct.len());
            if let (Some(dst), Some(src)) = (s.get_mut(..to - from), ct.get(from..to)) {
                dst.copy_from_slice(src);
            }
            s
        })
        .collect();
    if n > k {
        let rec = reed_solomon_simd::encode(k, n - k, &shards)
            .map_err(|e| SegmentError::Coding(e.to_string()))?;
        shards.extend(rec);
    }
    let hashes = shards.iter().map(|s| sha256(s)).collect();
    Ok(EncodedSegment {
        cipher_len: ct.len() as u32,
        shard_size: size as u32,
        shards,
        hashes,
    })
}

/// Rebuilds the whole shard set (all n) from whatever good shards are given; shards whose
/// hash does not match `hashes` are ignored. Used by get and by repair.
pub fn rebuild_shards(
    k: usize,
    n: usize,
    shard_size: usize,
    hashes: &[[u8; 32]],
    have: &[Option<Vec<u8>>],
) -> Result<Vec<Vec<u8>>, SegmentError> {
    if !supported(k, n) || hashes.len() != n || have.len() != n {
        return Err(SegmentError::Params { k, n });
    }
    let good: Vec<(usize, &Vec<u8>)> = have
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
        .filter(|(i, s)| s.len() == shard_size && hashes.get(*i) == Some(&sha256(s)))
        .collect();
    if good.len() < k {
        return Err(SegmentError::TooFewShards {
            have: good.len(),
            need: k,
        });
    }
    let mut orig: Vec<Option<Vec<u8>>> = vec![None; k];
    for (i, s) in &good {
        if let Some(slot) = orig.get_mut(*i) {
            *slot = Some((*s).clone());
        }
    }
    if orig.iter().any(Option::is_none) {
        let o = good
            .iter()
            .filter(|(i, _)| *i < k)
            .map(|(i, s)| (*i, s.as_slice()));
        let r = good
            .iter()
            .filter(|(i, _)| *i >= k)
            .map(|(i, s)| (*i - k, s.as_slice()));
        let restored = reed_solomon_simd::decode(k, n - k, o, r)
            .map_err(|e| SegmentError::Coding(e.to_string()))?;
        for (i, s) in restored {
            if let Some(slot) = orig.get_mut(i) {
                *slot = Some(s);
            }
        }
    }
    let orig: Vec<Vec<u8>> = orig.into_iter().map(Option::unwrap_or_default).collect();
    let mut all = orig.clone();
    if n > k {
        let rec = reed_solomon_simd::encode(k, n - k, &orig)
            .map_err(|e| SegmentError::Coding(e.to_string()))?;
        all.extend(rec);
    }
    // every rebuilt shard must hash as the manifest says, or the manifest lied
    if all.iter().zip(hashes).any(|(s, h)| sha256(s) != *h) {
        return Err(SegmentError::Auth);
    }
    Ok(all)
}

/// Decrypts a segment from any k good shards (`have[i]`: shard i, if fetched).
#[allow(clippy::too_many_arguments)]
pub fn decode_segment(
    key: &[u8; 32],
    file: u32,
    seg: u64,
    k: usize,
    n: usize,
    cipher_len: usize,
    shard_size: usize,
    hashes: &[[u8; 32]],
    have: &[Option<Vec<u8>>],
) -> Result<Vec<u8>, SegmentError> {
    if cipher_len < TAG
        || shard_size * k < cipher_len
        || shard_size != self::shard_size(cipher_len, k)
    {
        return Err(SegmentError::Sizes);
    }
    if !supported(k, n) || hashes.len() != n || have.len() != n {
        return Err(SegmentError::Params { k, n });
    }
    let good = |i: usize| {
        have.get(i)
            .and_then(Option::as_ref)
            .filter(|s| s.len() == shard_size && hashes.get(i) == Some(&sha256(s)))
    };
    let mut ct = Vec::with_capacity(shard_size * k);
    if (0..k).all(|i| good(i).is_some()) {
        for i in 0..k {
            ct.extend_from_slice(good(i).map(Vec::as_slice).unwrap_or_default());
        }
    } else {
        let all = rebuild_shards(k, n, shard_size, hashes, have)?;
        for s in all.iter().take(k) {
            ct.extend_from_slice(s);
        }
    }
    ct.truncate(cipher_len);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            &nonce(file, seg),
            Payload {
                msg: &ct,
                aad: &aad(file, seg),
            },
        )
        .map_err(|_| SegmentError::Auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(
        plain: &[u8],
        k: usize,
        n: usize,
        drop: &[usize],
    ) -> Result<Vec<u8>, SegmentError> {
        let key = [9u8; 32];
        let e = encode_segment(&key, 1, 2, plain, k, n)?;
        let mut have: Vec<Option<Vec<u8>>> = e.shards.iter().cloned().map(Some).collect();
        for &d in drop {
            have[d] = None;
        }
        decode_segment(
            &key,
            1,
            2,
            k,
            n,
            e.cipher_len as usize,
            e.shard_size as usize,
            &e.hashes,
            &have,
        )
    }

    #[test]
    fn round_trips_empty_one_byte_and_large() {
        assert_eq!(roundtrip(b"", 4, 8, &[]).unwrap(), b"");
        assert_eq!(roundtrip(b"x", 4, 8, &[]).unwrap(), b"x");
        let big: Vec<u8> = (0..100_003u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(roundtrip(&big, 4, 8, &[]).unwrap(), big);
        assert_eq!(roundtrip(&big, 100, 500, &[]).unwrap(), big);
        assert_eq!(roundtrip(&big, 3, 3, &[]).unwrap(), big);
    }

    #[test]
    fn losing_n_minus_k_shards_is_tolerated_and_one_more_is_not() {
        let data = vec![42u8; 5000];
        for drop in [[0, 1, 2, 3], [4, 5, 6, 7], [0, 2, 5, 7], [1, 3, 4, 6]] {
            assert_eq!(roundtrip(&data, 4, 8, &drop).unwrap(), data);
        }
        assert_eq!(
            roundtrip(&data, 4, 8, &[0, 1, 2, 3, 4]),
            Err(SegmentError::TooFewShards { have: 3, need: 4 })
        );
    }

    #[test]
    fn tampered_shard_is_detected_and_rebuilt_from_the_others() {
        let key = [3u8; 32];
        let data: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
        let e = encode_segment(&key, 0, 0, &data, 4, 8).unwrap();
        let mut have: Vec<Option<Vec<u8>>> = e.shards.iter().cloned().map(Some).collect();
        have[1].as_mut().unwrap()[5] ^= 1;
        let size = e.shard_size as usize;
        // the decoder skips the bad shard (its hash fails) and rebuilds it
        let all = rebuild_shards(4, 8, size, &e.hashes, &have).unwrap();
        assert_eq!(all[1], e.shards[1]);
        let got = decode_segment(
            &key,
            0,
            0,
            4,
            8,
            e.cipher_len as usize,
            size,
            &e.hashes,
            &have,
        );
        assert_eq!(got.unwrap(), data);
    }

    #[test]
    fn no_shard_contains_plaintext() {
        let key = [4u8; 32];
        let marker = b"THE-SECRET-PLAINTEXT-MARKER-0123456789";
        let mut data = Vec::new();
        for _ in 0..200 {
            data.extend_from_slice(marker);
        }
        let e = encode_segment(&key, 0, 0, &data, 4, 8).unwrap();
        for s in &e.shards {
            assert!(!s.windows(16).any(|w| w == &marker[..16]));
        }
    }

    #[test]
    fn wrong_key_fails_authentication() {
        let e = encode_segment(&[1; 32], 0, 0, b"hello", 2, 4).unwrap();
        let have: Vec<Option<Vec<u8>>> = e.shards.iter().cloned().map(Some).collect();
        let r = decode_segment(
            &[2; 32],
            0,
            0,
            2,
            4,
            e.cipher_len as usize,
            e.shard_size as usize,
            &e.hashes,
            &have,
        );
        assert_eq!(r, Err(SegmentError::Auth));
    }
}
