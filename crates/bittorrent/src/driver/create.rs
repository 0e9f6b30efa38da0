//! Creating a `.torrent` from a file or folder on disk (`servent torrent create`).
//!
//! Files of a folder are taken in byte order of their relative paths (as mktorrent does);
//! symlinks are refused rather than followed, so a torrent never includes anything outside
//! the folder. The content is read in one sequential pass, in batches of whole pieces; while
//! one batch is read, the previous one is hashed on every core (a scoped thread per core).

use std::fs::File;
use std::io::Read;
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

/// The files' bytes in order, read into whole-piece batches.
struct Content<'a> {
    files: &'a [(Vec<String>, PathBuf, u64)],
    next: usize,
    open: Option<(File, &'a Path, u64)>,
}

impl Content<'_> {
    /// Reads up to `want` bytes into `buf` (less only at the end of the content), reusing
    /// its memory: two buffers serve the whole run, so no batch pays for fresh pages.
    fn read_batch(&mut self, buf: &mut Vec<u8>, want: usize) -> Result<(), CreateError> {
        buf.resize(want, 0);
        let mut got = 0;
        while got < want {
            if self.open.as_ref().is_none_or(|o| o.2 == 0) {
                let Some((_, p, len)) = self.files.get(self.next) else {
                    break;
                };
                self.next += 1;
                self.open = Some((File::open(p).map_err(io(p))?, p.as_path(), *len));
            }
            let Some((f, p, left)) = self.open.as_mut() else {
                break;
            };
            let n = (*left).min((want - got) as u64) as usize;
            let chunk = buf.get_mut(got..got + n).unwrap_or_default();
            f.read_exact(chunk).map_err(io(p))?;
            *left -= n as u64;
            got += n;
        }
        buf.truncate(got);
        Ok(())
    }
}

/// SHA-1 of every piece: this thread reads the content in order into a few reused buffers
/// of whole pieces while one worker per core hashes them, a pipeline without a barrier per
/// batch (a worker that loses its core for a moment delays only its own buffer).
fn hash_pieces(
    files: &[(Vec<String>, PathBuf, u64)],
    piece_length: u64,
    total: u64,
) -> Result<Vec<[u8; 20]>, CreateError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
    let pl = piece_length as usize;
    let count = total.div_ceil(piece_length) as usize;
    // About 4 MiB per job, whole pieces; two jobs per worker in flight.
    let per_job = ((4usize << 20) / pl).max(1) * pl;
    let max_in_flight = threads * 2;
    let mut content = Content {
        files,
        next: 0,
        open: None,
    };
    let mut hashes = vec![[0u8; 20]; count];
    let (jobs_tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(max_in_flight);
    let jobs_rx = std::sync::Mutex::new(rx);
    let (done_tx, done_rx) =
        std::sync::mpsc::sync_channel::<(usize, Vec<[u8; 20]>, Vec<u8>)>(max_in_flight);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let jobs_rx = &jobs_rx;
            sc.spawn(move || {
                loop {
                    let job = jobs_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((first, buf)) = job else { return };
                    let hs: Vec<[u8; 20]> =
                        buf.chunks(pl).map(|p| Sha1::digest(p).into()).collect();
                    if done_tx.send((first, hs, buf)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // Moved in: dropped when this closure returns, so the workers stop even on an error.
        let jobs_tx = jobs_tx;
        let mut free: Vec<Vec<u8>> = Vec::new();
        let (mut in_flight, mut next_piece, mut read_all) = (0usize, 0usize, false);
        loop {
            while in_flight > 0 && (in_flight >= max_in_flight || read_all) {
                let Ok((first, hs, buf)) = done_rx.recv() else {
                    return Err(CreateError::Worker);
                };
                for (i, h) in hs.into_iter().enumerate() {
                    if let Some(slot) = hashes.get_mut(first + i) {
                        *slot = h;
                    }
                }
                free.push(buf);
                in_flight -= 1;
            }
            if read_all {
                return Ok(());
            }
            let mut buf = free.pop().unwrap_or_default();
            content.read_batch(&mut buf, per_job)?;
            if buf.is_empty() {
                read_all = true;
                continue;
            }
            let n = buf.len().div_ceil(pl);
            if jobs_tx.send((next_piece, buf)).is_err() {
                return Err(CreateError::Worker);
            }
            in_flight += 1;
            next_piece += n;
        }
    })?;
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
