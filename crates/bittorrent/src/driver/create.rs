//! Creating a `.torrent` from a file or folder on disk (`servent torrent create`).
//!
//! Files of a folder are taken in byte order of their relative paths (as mktorrent does);
//! symlinks are refused rather than followed, so a torrent never includes anything outside
//! the folder. Pieces are hashed on every core (a scoped thread per core): each worker takes
//! the next run of pieces and reads them itself with positioned reads, so there is no reader
//! thread to wait for and no buffer handed between threads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::metainfo::{Metainfo, MetainfoBuilder, MetainfoError, auto_piece_length};

/// Why a torrent could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CreateError {
    /// Reading the content failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A symlink inside the content.
    #[error("{0}: symlinks are not followed; copy the file in instead")]
    Symlink(PathBuf),
    /// A name that is not valid UTF-8.
    #[error("{0}: file names must be UTF-8")]
    Name(PathBuf),
    /// No files.
    #[error("{0}: no files to put in a torrent")]
    Empty(PathBuf),
    /// A hashing thread died.
    #[error("a hashing thread failed")]
    Worker,
    /// A piece length that is not a power of two of at least 16 KiB.
    #[error("piece size {0} must be a power of two, at least 16 KiB")]
    PieceSize(u64),
    /// The result is not a valid torrent.
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
}

/// What to put in the torrent besides the content.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Tracker tiers.
    pub trackers: Vec<Vec<String>>,
    /// Piece length (`None`: chosen from the size).
    pub piece_length: Option<u64>,
    /// BEP 27 private flag.
    pub private: bool,
    /// BEP 19 web seeds.
    pub web_seeds: Vec<String>,
    /// BEP 5 DHT nodes (host, port): with no trackers, a trackerless torrent.
    pub nodes: Vec<(String, u16)>,
    /// Comment.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date` (seconds since the epoch).
    pub creation_date: Option<i64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk(
    root: &Path,
    rel: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, PathBuf, u64)>,
) -> Result<(), CreateError> {
    let dir = rel.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let e = e.map_err(io(&dir))?;
        let name = e
            .file_name()
            .into_string()
            .map_err(|_| CreateError::Name(e.path()))?;
        entries.push((name, e.path()));
    }
    entries.sort();
    for (name, path) in entries {
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.file_type().is_symlink() {
            return Err(CreateError::Symlink(path));
        }
        rel.push(name);
        if meta.is_dir() {
            walk(root, rel, out)?;
        } else if meta.is_file() {
            out.push((rel.clone(), path, meta.len()));
        }
        rel.pop();
    }
    Ok(())
}

/// The content's files laid end to end: where each starts, to find the files under a range.
struct Layout<'a> {
    files: &'a [(Vec<String>, PathBuf, u64)],
    /// `starts[i]`: the content offset of file `i`'s first byte.
    starts: Vec<u64>,
}

impl<'a> Layout<'a> {
    fn new(files: &'a [(Vec<String>, PathBuf, u64)]) -> Layout<'a> {
        let mut at = 0u64;
        let starts = files
            .iter()
            .map(|f| {
                let s = at;
                at += f.2;
                s
            })
            .collect();
        Layout { files, starts }
    }
}

/// One hashing worker's open file: the last one it read, kept for the next range (a big
/// file is opened once per worker, not once per piece).
struct Reader<'a> {
    layout: &'a Layout<'a>,
    open: Option<(usize, File)>,
}

impl Reader<'_> {
    /// Fills `buf` with the content's bytes from offset `at` on, reading each file's part
    /// with positioned reads (no shared cursor, so workers never wait for each other).
    fn read_at(&mut self, mut at: u64, buf: &mut [u8]) -> Result<(), CreateError> {
        let mut got = 0;
        // The last file starting at or before `at` (empty files are skipped by the loop).
        let mut i = self
            .layout
            .starts
            .partition_point(|s| *s <= at)
            .saturating_sub(1);
        while got < buf.len() {
            let Some((_, path, len)) = self.layout.files.get(i) else {
                return Err(CreateError::Io {
                    path: PathBuf::new(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            };
            let start = self.layout.starts.get(i).copied().unwrap_or(0);
            let end = start + len;
            if at >= end {
                i += 1;
                continue;
            }
            if self.open.as_ref().is_none_or(|o| o.0 != i) {
                self.open = Some((i, File::open(path).map_err(io(path))?));
            }
            let Some((_, f)) = self.open.as_ref() else {
                continue;
            };
            let n = ((end - at) as usize).min(buf.len() - got);
            let dst = buf.get_mut(got..got + n).unwrap_or_default();
            f.read_exact_at(dst, at - start).map_err(io(path))?;
            got += n;
            at += n as u64;
        }
        Ok(())
    }
}

/// Pieces a worker hashed: (index, SHA-1).
type Hashed = Vec<(usize, [u8; 20])>;

/// Alignment of the hashing workers' buffers.
const PAGE: usize = 4096;

/// SHA-1 of every piece, on one worker per core: each takes the next run of pieces (about
/// 4 MiB), reads each piece straight from the files with positioned reads into its own
/// buffer of one piece (still in the core's cache when hashed) and hashes it. No reader
/// thread, no copies between threads, no ordering between workers.
fn hash_pieces(
    files: &[(Vec<String>, PathBuf, u64)],
    piece_length: u64,
    total: u64,
) -> Result<Vec<[u8; 20]>, CreateError> {
    let count = total.div_ceil(piece_length) as usize;
    let per_job = ((4u64 << 20) / piece_length).max(1) as usize;
    let jobs = count.div_ceil(per_job);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get().min(16))
        .min(jobs.max(1));
    let layout = Layout::new(files);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = || -> Result<Hashed, CreateError> {
        let mut reader = Reader {
            layout: &layout,
            open: None,
        };
        // The piece buffer starts on a page boundary: the kernel copies into it from the
        // page cache several times faster than into an address 16 bytes past one (what a
        // large allocation gives).
        let mut space = vec![0u8; piece_length as usize + PAGE];
        let skip = (PAGE - space.as_ptr() as usize % PAGE) % PAGE;
        let buf = space
            .get_mut(skip..skip + piece_length as usize)
            .unwrap_or_default();
        let mut out = Vec::new();
        loop {
            use std::sync::atomic::Ordering::Relaxed;
            let job = next.fetch_add(1, Relaxed);
            if job >= jobs || failed.load(Relaxed) {
                return Ok(out);
            }
            for piece in job * per_job..((job + 1) * per_job).min(count) {
                let at = piece as u64 * piece_length;
                let len = piece_length.min(total - at) as usize;
                let b = buf.get_mut(..len).unwrap_or_default();
                if let Err(e) = reader.read_at(at, b) {
                    failed.store(true, Relaxed);
                    return Err(e);
                }
                out.push((piece, Sha1::digest(&*b).into()));
            }
        }
    };
    let results: Vec<Result<Hashed, CreateError>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (1..threads).map(|_| sc.spawn(work)).collect();
        let mut r = vec![work()];
        r.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(CreateError::Worker))),
        );
        r
    });
    let mut hashes = vec![[0u8; 20]; count];
    for r in results {
        for (i, h) in r? {
            if let Some(slot) = hashes.get_mut(i) {
                *slot = h;
            }
        }
    }
    Ok(hashes)
}

/// Creates a torrent for the file or folder at `path`: its bytes and what they parse to.
pub fn create_torrent(
    path: &Path,
    opts: &CreateOptions,
) -> Result<(Vec<u8>, Metainfo), CreateError> {
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    if meta.file_type().is_symlink() {
        return Err(CreateError::Symlink(path.to_path_buf()));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CreateError::Name(path.to_path_buf()))?
        .to_string();
    let mut files = Vec::new();
    if meta.is_dir() {
        walk(path, &mut Vec::new(), &mut files)?;
        if files.is_empty() {
            return Err(CreateError::Empty(path.to_path_buf()));
        }
    } else {
        files.push((Vec::new(), path.to_path_buf(), meta.len()));
    }
    let total: u64 = files.iter().map(|f| f.2).sum();
    let piece_length = match opts.piece_length {
        Some(p) if p.is_power_of_two() && p >= 16 * 1024 => p,
        Some(p) => return Err(CreateError::PieceSize(p)),
        None => auto_piece_length(total),
    };
    let hashes = hash_pieces(&files, piece_length, total)?;
    let b = MetainfoBuilder {
        name,
        files: files.into_iter().map(|(rel, _, len)| (rel, len)).collect(),
        piece_length,
        private: opts.private,
        trackers: opts.trackers.clone(),
        web_seeds: opts.web_seeds.clone(),
        nodes: opts.nodes.clone(),
        comment: opts.comment.clone(),
        created_by: opts.created_by.clone(),
        creation_date: opts.creation_date,
    };
    Ok(b.build(&hashes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FileStorage, recheck};

    #[test]
    fn a_folder_becomes_a_multi_file_torrent_whose_pieces_check_against_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("album");
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("z.bin"), vec![3u8; 40_000]).unwrap();
        std::fs::write(root.join("b/a.bin"), vec![5u8; 30_000]).unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        let opts = CreateOptions {
            trackers: vec![vec!["http://127.0.0.1:6969/announce".into()]],
            piece_length: Some(16 * 1024),
            ..Default::default()
        };
        let (_, m) = create_torrent(&root, &opts).unwrap();
        let paths: Vec<String> = m.files.iter().map(|f| f.display_path()).collect();
        assert_eq!(paths, vec!["b/a.bin", "empty", "z.bin"]);
        assert_eq!(m.total_length, 70_000);
        assert_eq!(m.piece_count(), 5);
        let mut s = FileStorage::open(&m, dir.path()).unwrap();
        assert!(recheck(&m, &mut s).unwrap().iter().all(|g| *g));
    }

    #[test]
    fn content_of_many_hashing_jobs_gets_every_piece_hash_in_its_place() {
        // 16 KiB pieces and 3 files over 21 MiB: several 4 MiB jobs per worker, answered in
        // any order, pieces spanning file boundaries, a short last piece.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        std::fs::create_dir_all(&root).unwrap();
        let mut all = Vec::new();
        for (i, len) in [(0u8, 9_000_001usize), (1, 7_777_777), (2, 5_000_000)] {
            let data: Vec<u8> = (0..len).map(|j| (j as u8) ^ (j >> 13) as u8 ^ i).collect();
            std::fs::write(root.join(format!("f{i}")), &data).unwrap();
            all.extend(data);
        }
        let opts = CreateOptions {
            trackers: vec![vec!["http://127.0.0.1:6969/announce".into()]],
            piece_length: Some(16 * 1024),
            ..Default::default()
        };
        let (_, m) = create_torrent(&root, &opts).unwrap();
        let want: Vec<[u8; 20]> = all
            .chunks(16 * 1024)
            .map(|c| Sha1::digest(c).into())
            .collect();
        assert_eq!(m.pieces.len(), want.len());
        assert!(m.pieces == want, "a piece hash is out of place");
    }

    #[test]
    fn symlinks_and_bad_piece_sizes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("c");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f"), b"x").unwrap();
        let opts = CreateOptions {
            piece_length: Some(1000),
            ..Default::default()
        };
        assert!(matches!(
            create_torrent(&root, &opts),
            Err(CreateError::PieceSize(1000))
        ));
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        assert!(matches!(
            create_torrent(&root, &CreateOptions::default()),
            Err(CreateError::Symlink(_))
        ));
    }
}
