//! Piece storage: where a torrent's bytes live.
//!
//! The swarm core addresses content by its offset in the concatenation of all files. A
//! [`Storage`] holds those bytes: [`MemStorage`] keeps everything in memory (tests),
//! [`SyntheticStorage`] stands for known content without holding it (the simulator runs
//! thousands of peers in one process: it stores one flag per written range — whether the
//! bytes equal the known content — and reads regenerate them), and the driver's
//! `FileStorage` (feature `runtime`) maps offsets onto the torrent's files under a download
//! folder, with crash-safe resume data.

use std::collections::BTreeSet;
use std::path::PathBuf;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::metainfo::Metainfo;

/// Why storage failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An offset or length outside the content.
    #[error("range {offset}+{len} is outside the content ({total} bytes)")]
    OutOfRange {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Content length.
        total: u64,
    },
    /// A path that would leave the download folder (a symlink on the way, or an odd name).
    #[error("{0}: refusing a path outside the download folder")]
    Escapes(PathBuf),
    /// A file of the content to seed is not there (seeding never creates data).
    #[error("{0}: no such file")]
    Missing(PathBuf),
    /// A file of the content to seed has another length than the torrent says.
    #[error("{path}: {actual} bytes, but the torrent says {expected}")]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// Its length on disk.
        actual: u64,
        /// Its length in the torrent.
        expected: u64,
    },
    /// A write to content opened read-only (a seeder never writes its data).
    #[error("the content is open read-only (seeding)")]
    ReadOnly,
}

/// Content storage addressed by offset into the concatenated files.
pub trait Storage {
    /// Total content length.
    fn len(&self) -> u64;
    /// Whether the content is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads `out.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError>;
    /// Writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// SHA-1 of `len` bytes at `offset` (a piece).
    fn hash(&mut self, offset: u64, len: u64) -> Result<[u8; 20], StorageError> {
        let mut h = Sha1::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            self.read(offset + done, chunk)?;
            h.update(&*chunk);
            done += n as u64;
        }
        Ok(h.finalize().into())
    }
    /// Records that piece `index` is verified (for resume data).
    fn mark_verified(&mut self, _index: u32) {}
    /// Makes verified pieces durable (see the module docs).
    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

pub(crate) fn check_range(offset: u64, len: usize, total: u64) -> Result<(), StorageError> {
    let len = len as u64;
    if offset.checked_add(len).is_none_or(|e| e > total) {
        return Err(StorageError::OutOfRange { offset, len, total });
    }
    Ok(())
}

/// Everything in memory.
#[derive(Debug, Clone)]
pub struct MemStorage {
    data: Vec<u8>,
}

impl MemStorage {
    /// Zeroed storage for `len` bytes.
    pub fn empty(len: u64) -> MemStorage {
        MemStorage {
            data: vec![0; usize::try_from(len).unwrap_or(0)],
        }
    }

    /// Storage holding `data` (a seeder's).
    pub fn with(data: Vec<u8>) -> MemStorage {
        MemStorage { data }
    }

    /// The bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

impl Storage for MemStorage {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        check_range(offset, out.len(), self.len())?;
        let s = offset as usize;
        out.copy_from_slice(self.data.get(s..s + out.len()).unwrap_or_default());
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        check_range(offset, data.len(), self.len())?;
        let s = offset as usize;
        if let Some(dst) = self.data.get_mut(s..s + data.len()) {
            dst.copy_from_slice(data);
        }
        Ok(())
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The known content of a [`SyntheticStorage`]: byte `o` is a fixed function of `seed` and `o`.
pub fn synthetic_bytes(seed: u64, offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let o = offset + i as u64;
        *b = splitmix(seed ^ (o / 8))
            .to_le_bytes()
            .get((o % 8) as usize)
            .copied()
            .unwrap_or(0);
    }
}

/// Stands for content whose bytes are a known function ([`synthetic_bytes`]); remembers only
/// which written ranges differed from it, so reads, writes and hashes behave exactly as if the
/// bytes were stored.
#[derive(Debug, Clone)]
pub struct SyntheticStorage {
    seed: u64,
    len: u64,
    corrupt: BTreeSet<(u64, u64)>,
}

impl SyntheticStorage {
    /// Content of `len` bytes generated from `seed`.
    pub fn new(seed: u64, len: u64) -> SyntheticStorage {
        SyntheticStorage {
            seed,
            len,
            corrupt: BTreeSet::new(),
        }
    }

    fn overlaps_corrupt(&self, offset: u64, len: u64) -> bool {
        self.corrupt
            .iter()
            .any(|&(s, e)| s < offset + len && offset < e)
    }
}

impl Storage for SyntheticStorage {
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        check_range(offset, out.len(), self.len)?;
        synthetic_bytes(self.seed, offset, out);
        if self.overlaps_corrupt(offset, out.len() as u64) {
            if let Some(b) = out.first_mut() {
                *b ^= 0xFF;
            }
        }
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        check_range(offset, data.len(), self.len)?;
        let mut want = vec![0u8; data.len()];
        synthetic_bytes(self.seed, offset, &mut want);
        let end = offset + data.len() as u64;
        // A rewrite of a range replaces what was there.
        self.corrupt.retain(|&(s, e)| !(s >= offset && e <= end));
        if want != data {
            self.corrupt.insert((offset, end));
        }
        Ok(())
    }
}

/// Re-verifies every piece of `meta` against `storage` (`--check`); returns which are good.
pub fn recheck(meta: &Metainfo, storage: &mut dyn Storage) -> Result<Vec<bool>, StorageError> {
    let mut good = Vec::with_capacity(meta.piece_count());
    for (i, want) in meta.pieces.iter().enumerate() {
        let off = i as u64 * meta.piece_length;
        let h = storage.hash(off, meta.piece_len(i))?;
        good.push(&h == want);
    }
    Ok(good)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    #[test]
    fn synthetic_storage_detects_wrong_bytes_like_real_storage() {
        let mut s = SyntheticStorage::new(5, 1000);
        let mut good = vec![0u8; 100];
        synthetic_bytes(5, 200, &mut good);
        let want: [u8; 20] = Sha1::digest(&good).into();
        s.write(200, &good).unwrap();
        assert_eq!(s.hash(200, 100).unwrap(), want);
        let mut bad = good.clone();
        bad[3] ^= 1;
        s.write(200, &bad).unwrap();
        assert_ne!(s.hash(200, 100).unwrap(), want);
        s.write(200, &good).unwrap();
        assert_eq!(s.hash(200, 100).unwrap(), want);
    }
}
