//! The manifest of an object: its files, their segments, and for every segment the hash
//! and location of each of its n shards. Stored encrypted under the capability's manifest
//! key (see [`crate::core::object`]); this is the plaintext encoding.

use super::{Reader, Truncated};

const MAGIC: &[u8; 4] = b"SVM1";
/// The most files in one object.
pub const MAX_FILES: usize = 1_000_000;
/// The longest path.
pub const MAX_PATH: usize = 4096;
/// The largest manifest (plaintext).
pub const MAX_MANIFEST: usize = 64 * 1024 * 1024;
/// The most shards per segment (issue: up to 100-of-500).
pub const MAX_N: usize = 500;
/// The longest address string.
const MAX_ADDR: usize = 64;

/// Where one shard is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardLoc {
    /// SHA-256 of the shard.
    pub hash: [u8; 32],
    /// The holder's DHT id.
    pub node: [u8; 20],
    /// The holder's address (`ip:port`, TCP and UDP).
    pub addr: String,
}

/// One segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Ciphertext length (plaintext + 16-byte tag).
    pub cipher_len: u32,
    /// Bytes per shard.
    pub shard_size: u32,
    /// n shards: `0..k` originals, `k..n` recovery.
    pub shards: Vec<ShardLoc>,
}

/// One file of the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path (`/`-separated; empty for a single-file put).
    pub path: String,
    /// Plaintext size.
    pub size: u64,
    /// Its segments, in order.
    pub segments: Vec<Segment>,
}

/// The manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Shards needed.
    pub k: u16,
    /// Shards made.
    pub n: u16,
    /// Plaintext bytes per segment (the last one may be shorter).
    pub segment_size: u32,
    /// A single file (`false`) or a folder (`true`).
    pub is_dir: bool,
    /// The name given at put.
    pub name: String,
    /// SHA-256 of the delete secret (so repair can re-place shards under the same owner).
    pub owner: [u8; 32],
    /// Files.
    pub files: Vec<FileEntry>,
}

/// A malformed manifest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Ended early.
    #[error("truncated manifest")]
    Truncated,
    /// Wrong magic.
    #[error("not a manifest")]
    Magic,
    /// Above a limit.
    #[error("manifest field over its limit: {0}")]
    Limit(&'static str),
    /// Not UTF-8, bad k/n, …
    #[error("bad manifest field: {0}")]
    Bad(&'static str),
}

impl From<Truncated> for ManifestError {
    fn from(_: Truncated) -> ManifestError {
        ManifestError::Truncated
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u16).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn get_str(r: &mut Reader<'_>, max: usize) -> Result<String, ManifestError> {
    let n = r.u16()? as usize;
    if n > max {
        return Err(ManifestError::Limit("string"));
    }
    String::from_utf8(r.take(n)?.to_vec()).map_err(|_| ManifestError::Bad("utf-8"))
}

impl Manifest {
    /// The plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.k.to_be_bytes());
        b.extend_from_slice(&self.n.to_be_bytes());
        b.extend_from_slice(&self.segment_size.to_be_bytes());
        b.push(u8::from(self.is_dir));
        put_str(&mut b, &self.name);
        b.extend_from_slice(&self.owner);
        b.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for f in &self.files {
            put_str(&mut b, &f.path);
            b.extend_from_slice(&f.size.to_be_bytes());
            b.extend_from_slice(&(f.segments.len() as u32).to_be_bytes());
            for s in &f.segments {
                b.extend_from_slice(&s.cipher_len.to_be_bytes());
                b.extend_from_slice(&s.shard_size.to_be_bytes());
                b.extend_from_slice(&(s.shards.len() as u16).to_be_bytes());
                for l in &s.shards {
                    b.extend_from_slice(&l.hash);
                    b.extend_from_slice(&l.node);
                    put_str(&mut b, &l.addr);
                }
            }
        }
        b
    }

    /// Parses the plaintext bytes.
    pub fn decode(buf: &[u8]) -> Result<Manifest, ManifestError> {
        if buf.len() > MAX_MANIFEST {
            return Err(ManifestError::Limit("size"));
        }
        let mut r = Reader::new(buf);
        if &r.array::<4>()? != MAGIC {
            return Err(ManifestError::Magic);
        }
        let k = r.u16()?;
        let n = r.u16()?;
        if k == 0 || n < k || n as usize > MAX_N {
            return Err(ManifestError::Bad("k/n"));
        }
        let segment_size = r.u32()?;
        if segment_size == 0 {
            return Err(ManifestError::Bad("segment size"));
        }
        let is_dir = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ManifestError::Bad("is_dir")),
        };
        let name = get_str(&mut r, MAX_PATH)?;
        let owner = r.array()?;
        let nfiles = r.u32()? as usize;
        // every file takes at least 14 bytes: no allocation beyond what the input can fill
        if nfiles > MAX_FILES || nfiles.saturating_mul(14) > r.left() {
            return Err(ManifestError::Limit("files"));
        }
        let mut files = Vec::with_capacity(nfiles);
        for _ in 0..nfiles {
            let path = get_str(&mut r, MAX_PATH)?;
            let size = r.u64()?;
            let nseg = r.u32()? as usize;
            if nseg.saturating_mul(10) > r.left() {
                return Err(ManifestError::Truncated);
            }
            let mut segments = Vec::with_capacity(nseg);
            for _ in 0..nseg {
                let cipher_len = r.u32()?;
                let shard_size = r.u32()?;
                let ns = r.u16()? as usize;
                if ns != n as usize {
                    return Err(ManifestError::Bad("shard count"));
                }
                if ns.saturating_mul(54) > r.left() {
                    return Err(ManifestError::Truncated);
                }
                let mut shards = Vec::with_capacity(ns);
                for _ in 0..ns {
                    let hash = r.array()?;
                    let node = r.array()?;
                    let addr = get_str(&mut r, MAX_ADDR)?;
                    shards.push(ShardLoc { hash, node, addr });
                }
                segments.push(Segment {
                    cipher_len,
                    shard_size,
                    shards,
                });
            }
            files.push(FileEntry {
                path,
                size,
                segments,
            });
        }
        if r.left() > 0 {
            return Err(ManifestError::Bad("trailing bytes"));
        }
        Ok(Manifest {
            k,
            n,
            segment_size,
            is_dir,
            name,
            owner,
            files,
        })
    }

    /// Total plaintext bytes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Every segment, with its file index and segment index.
    pub fn segments(&self) -> impl Iterator<Item = (usize, usize, &Segment)> {
        self.files.iter().enumerate().flat_map(|(fi, f)| {
            f.segments
                .iter()
                .enumerate()
                .map(move |(si, s)| (fi, si, s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            k: 2,
            n: 3,
            segment_size: 1024,
            is_dir: true,
            name: "dir".into(),
            owner: [5; 32],
            files: vec![FileEntry {
                path: "a/b.txt".into(),
                size: 10,
                segments: vec![Segment {
                    cipher_len: 26,
                    shard_size: 14,
                    shards: (0..3)
                        .map(|i| ShardLoc {
                            hash: [i; 32],
                            node: [i; 20],
                            addr: format!("127.0.0.1:{}", 4000 + i as u16),
                        })
                        .collect(),
                }],
            }],
        }
    }

    #[test]
    fn manifest_round_trips_and_truncation_is_an_error() {
        let m = sample();
        let b = m.encode();
        assert_eq!(Manifest::decode(&b).unwrap(), m);
        for cut in 0..b.len() {
            assert!(Manifest::decode(&b[..cut]).is_err(), "cut {cut}");
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Manifest::decode(&b);
            let mut m = sample().encode();
            let l = m.len();
            m.truncate(l.min(b.len()));
            m.extend_from_slice(&b);
            let _ = Manifest::decode(&m);
        }
    }
}
