//! `FileStorage`: a torrent's files under a download folder, plus crash-safe resume data.
//!
//! Crash safety: a piece is recorded as verified only in memory until [`Storage::flush`];
//! flushing first `fdatasync`s every data file written since the last flush, then replaces
//! the resume file atomically (write a temporary file, fsync, rename, fsync the folder). After
//! a `kill -9` the resume file lists only pieces whose bytes were on disk before it was
//! written.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::core::storage::{Storage, StorageError, check_range};
use crate::metainfo::{InfoHash, Metainfo};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The magic at the start of a resume file.
const RESUME_MAGIC: &[u8; 8] = b"SVTRES01";

/// The torrent's files under a download folder, plus resume data.
#[derive(Debug)]
pub struct FileStorage {
    files: Vec<FileSlot>,
    total: u64,
    resume_path: PathBuf,
    info_hash: InfoHash,
    verified: Vec<bool>,
    dirty_files: BTreeSet<usize>,
    resume_dirty: bool,
    /// Seeding content opened with [`FileStorage::open_seed`]: no writes, no resume file.
    read_only: bool,
    /// Whether a data file already held bytes when opened (a folder someone filled before).
    found_data: bool,
    /// Whether valid resume data was loaded.
    resume_loaded: bool,
}

#[derive(Debug)]
struct FileSlot {
    path: PathBuf,
    offset: u64,
    length: u64,
    /// `None` for BEP 47 padding files (zeros, never on disk).
    file: Option<File>,
}

/// Joins checked path components under `root`, refusing symlinks on the way.
fn safe_join(root: &Path, components: &[String]) -> Result<PathBuf, StorageError> {
    let mut p = root.to_path_buf();
    for c in components {
        crate::metainfo::check_component(c).map_err(|_| StorageError::Escapes(p.join(c)))?;
        p.push(c);
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if m.file_type().is_symlink() {
                return Err(StorageError::Escapes(p));
            }
        }
    }
    Ok(p)
}

impl FileStorage {
    /// Opens (creating as needed) the files of `meta` under `dir`: a multi-file torrent goes
    /// into `dir/<name>/`, a single file is `dir/<name>`. Loads resume data if present.
    pub fn open(meta: &Metainfo, dir: &Path) -> Result<FileStorage, StorageError> {
        FileStorage::open_at(meta, dir, std::slice::from_ref(&meta.name))
    }

    /// Opens content that already exists at `content`: the file itself (single-file
    /// torrent) or the torrent's folder (multi-file), whatever its name (`servent torrent
    /// seed FILE PATH`). Resume data goes next to it.
    pub fn open_content(meta: &Metainfo, content: &Path) -> Result<FileStorage, StorageError> {
        let name = content
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StorageError::Escapes(content.to_path_buf()))?
            .to_string();
        let parent = match content.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        FileStorage::open_at(meta, &parent, &[name])
    }

    /// Opens existing content to seed, read-only: the file itself (single-file torrent) or
    /// the torrent's folder (multi-file). Nothing is created, extended or written, and no
    /// resume file is kept (the seeder re-verifies on start): a missing file is
    /// [`StorageError::Missing`], a file of another length [`StorageError::WrongLength`].
    pub fn open_seed(meta: &Metainfo, content: &Path) -> Result<FileStorage, StorageError> {
        let name = content
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StorageError::Escapes(content.to_path_buf()))?
            .to_string();
        let dir = match content.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut files = Vec::with_capacity(meta.files.len());
        for f in &meta.files {
            let mut comps = vec![name.clone()];
            if meta.multi_file {
                comps.extend(f.path.iter().cloned());
            }
            let path = safe_join(&dir, &comps)?;
            let file = if f.pad {
                None
            } else {
                let file = match File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(StorageError::Missing(path));
                    }
                    Err(e) => return Err(io(&path)(e)),
                };
                let actual = file.metadata().map_err(io(&path))?.len();
                if actual != f.length {
                    return Err(StorageError::WrongLength {
                        path,
                        actual,
                        expected: f.length,
                    });
                }
                Some(file)
            };
            files.push(FileSlot {
                path,
                offset: f.offset,
                length: f.length,
                file,
            });
        }
        Ok(FileStorage {
            files,
            total: meta.total_length,
            resume_path: dir.join(format!(".servent-resume-{}", meta.info_hash.to_hex())),
            info_hash: meta.info_hash,
            verified: vec![false; meta.piece_count()],
            dirty_files: BTreeSet::new(),
            resume_dirty: false,
            read_only: true,
            found_data: true,
            resume_loaded: false,
        })
    }

    /// Whether a data file already held bytes when the folder was opened: with no resume
    /// data, such content is re-verified rather than downloaded again.
    pub fn found_data(&self) -> bool {
        self.found_data
    }

    /// Whether resume data was found (and matched this torrent).
    pub fn has_resume(&self) -> bool {
        self.resume_loaded
    }

    fn open_at(meta: &Metainfo, dir: &Path, top: &[String]) -> Result<FileStorage, StorageError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut found_data = false;
        let mut files = Vec::with_capacity(meta.files.len());
        for f in &meta.files {
            let mut comps = top.to_vec();
            if meta.multi_file {
                comps.extend(f.path.iter().cloned());
            }
            let path = safe_join(dir, &comps)?;
            let file = if f.pad {
                None
            } else {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                    // Re-check: nothing on the way may be a symlink, even if just created by
                    // someone else.
                    safe_join(dir, &comps)?;
                }
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(io(&path))?;
                let cur = file.metadata().map_err(io(&path))?.len();
                found_data |= cur > 0;
                if cur != f.length {
                    file.set_len(f.length).map_err(io(&path))?;
                }
                Some(file)
            };
            files.push(FileSlot {
                path,
                offset: f.offset,
                length: f.length,
                file,
            });
        }
        let resume_path = dir.join(format!(".servent-resume-{}", meta.info_hash.to_hex()));
        let mut s = FileStorage {
            files,
            total: meta.total_length,
            resume_path,
            info_hash: meta.info_hash,
            verified: vec![false; meta.piece_count()],
            dirty_files: BTreeSet::new(),
            resume_dirty: false,
            read_only: false,
            found_data,
            resume_loaded: false,
        };
        s.load_resume();
        Ok(s)
    }

    /// Pieces the resume data lists as verified.
    pub fn verified(&self) -> &[bool] {
        &self.verified
    }

    /// Forgets the resume data (for `--check`, which re-verifies everything).
    pub fn clear_verified(&mut self) {
        self.verified.iter_mut().for_each(|v| *v = false);
        self.resume_dirty = true;
    }

    fn load_resume(&mut self) {
        let Ok(data) = std::fs::read(&self.resume_path) else {
            return;
        };
        let n = self.verified.len();
        let bits = n.div_ceil(8);
        if data.len() != 8 + 20 + 4 + bits + 20 {
            return;
        }
        let (body, sum) = data.split_at(data.len() - 20);
        if Sha1::digest(body).as_slice() != sum
            || body.get(..8) != Some(&RESUME_MAGIC[..])
            || body.get(8..28) != Some(&self.info_hash.0[..])
            || body.get(28..32) != Some(&(n as u32).to_be_bytes()[..])
        {
            return;
        }
        self.resume_loaded = true;
        let bf = body.get(32..).unwrap_or_default();
        for (i, v) in self.verified.iter_mut().enumerate() {
            *v = bf.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
        }
    }

    fn write_resume(&self) -> Result<(), StorageError> {
        let n = self.verified.len();
        let mut body = RESUME_MAGIC.to_vec();
        body.extend_from_slice(&self.info_hash.0);
        body.extend_from_slice(&(n as u32).to_be_bytes());
        let mut bf = vec![0u8; n.div_ceil(8)];
        for (i, v) in self.verified.iter().enumerate() {
            if *v {
                if let Some(b) = bf.get_mut(i / 8) {
                    *b |= 0x80 >> (i % 8);
                }
            }
        }
        body.extend_from_slice(&bf);
        let sum = Sha1::digest(&body);
        body.extend_from_slice(&sum);
        let tmp = self.resume_path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&body).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &self.resume_path).map_err(io(&self.resume_path))?;
        if let Some(dir) = self.resume_path.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Calls `f(slot index, offset in file, range in buffer)` for each file the range touches.
    fn spans(&self, offset: u64, len: usize) -> Vec<(usize, u64, std::ops::Range<usize>)> {
        let end = offset + len as u64;
        let first = self
            .files
            .partition_point(|f| f.offset + f.length <= offset);
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate().skip(first) {
            if f.offset >= end {
                break;
            }
            let s = offset.max(f.offset);
            let e = end.min(f.offset + f.length);
            if s >= e {
                continue;
            }
            out.push((
                i,
                s - f.offset,
                (s - offset) as usize..(e - offset) as usize,
            ));
        }
        out
    }
}

impl Storage for FileStorage {
    fn len(&self) -> u64 {
        self.total
    }

    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        check_range(offset, out.len(), self.total)?;
        for (i, at, r) in self.spans(offset, out.len()) {
            let (Some(slot), Some(buf)) = (self.files.get(i), out.get_mut(r)) else {
                continue;
            };
            match &slot.file {
                Some(f) => f.read_exact_at(buf, at).map_err(io(&slot.path))?,
                None => buf.fill(0),
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        check_range(offset, data.len(), self.total)?;
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        for (i, at, r) in self.spans(offset, data.len()) {
            let (Some(slot), Some(buf)) = (self.files.get(i), data.get(r)) else {
                continue;
            };
            if let Some(f) = &slot.file {
                f.write_all_at(buf, at).map_err(io(&slot.path))?;
                self.dirty_files.insert(i);
            }
        }
        Ok(())
    }

    fn mark_verified(&mut self, index: u32) {
        if let Some(v) = self.verified.get_mut(index as usize) {
            *v = true;
            self.resume_dirty = true;
        }
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if !self.resume_dirty || self.read_only {
            return Ok(());
        }
        for i in std::mem::take(&mut self.dirty_files) {
            if let Some(FileSlot {
                file: Some(f),
                path,
                ..
            }) = self.files.get(i)
            {
                f.sync_data().map_err(io(path))?;
            }
        }
        self.write_resume()?;
        self.resume_dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::storage::recheck;
    use crate::metainfo::MetainfoBuilder;

    fn meta(files: &[(&[&str], u64)], pl: u64, content: &[u8]) -> Metainfo {
        let b = MetainfoBuilder {
            name: "t".into(),
            files: files
                .iter()
                .map(|(p, l)| (p.iter().map(|s| s.to_string()).collect(), *l))
                .collect(),
            piece_length: pl,
            ..Default::default()
        };
        let hashes: Vec<[u8; 20]> = content
            .chunks(pl as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        b.build(&hashes).unwrap().1
    }

    #[test]
    fn multi_file_mapping_writes_each_file_its_bytes() {
        let content: Vec<u8> = (0..100u8).collect();
        let m = meta(
            &[(&["a"], 30), (&["d", "b"], 0), (&["d", "c"], 70)],
            16,
            &content,
        );
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStorage::open(&m, dir.path()).unwrap();
        s.write(0, &content[..50]).unwrap();
        s.write(50, &content[50..]).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("t/a")).unwrap(),
            &content[..30]
        );
        assert_eq!(std::fs::read(dir.path().join("t/d/b")).unwrap(), b"");
        assert_eq!(
            std::fs::read(dir.path().join("t/d/c")).unwrap(),
            &content[30..]
        );
        let mut back = vec![0u8; 40];
        s.read(20, &mut back).unwrap();
        assert_eq!(back, &content[20..60]);
        assert!(recheck(&m, &mut s).unwrap().iter().all(|g| *g));
        assert!(matches!(
            s.write(95, &[0; 10]),
            Err(StorageError::OutOfRange { .. })
        ));
    }

    #[test]
    fn resume_data_survives_reopen_and_ignores_corruption() {
        let content = vec![7u8; 64];
        let m = meta(&[(&["only"], 64)], 16, &content);
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = FileStorage::open(&m, dir.path()).unwrap();
            s.write(16, &content[16..32]).unwrap();
            s.mark_verified(1);
            s.flush().unwrap();
            s.mark_verified(2); // never flushed: as if killed here
        }
        let s = FileStorage::open(&m, dir.path()).unwrap();
        assert_eq!(s.verified(), &[false, true, false, false]);
        // A damaged resume file is ignored, not trusted.
        let rp = dir
            .path()
            .join(format!(".servent-resume-{}", m.info_hash.to_hex()));
        let mut bytes = std::fs::read(&rp).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&rp, bytes).unwrap();
        let s = FileStorage::open(&m, dir.path()).unwrap();
        assert_eq!(s.verified(), &[false; 4]);
    }

    #[test]
    fn seeding_opens_read_only_and_never_creates_missing_data() {
        let content: Vec<u8> = (0..100u8).collect();
        let m = meta(&[(&["a"], 30), (&["c"], 70)], 16, &content);
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = FileStorage::open_seed(&m, &missing).unwrap_err();
        assert!(matches!(e, StorageError::Missing(_)), "{e}");
        assert!(e.to_string().contains("no such file"), "{e}");
        assert!(!missing.exists(), "seeding created the missing folder");
        // A short file is refused, never extended.
        let root = dir.path().join("t");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a"), &content[..30]).unwrap();
        std::fs::write(root.join("c"), &content[30..60]).unwrap();
        let e = FileStorage::open_seed(&m, &root).unwrap_err();
        assert!(
            matches!(
                e,
                StorageError::WrongLength {
                    actual: 30,
                    expected: 70,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(std::fs::metadata(root.join("c")).unwrap().len(), 30);
        std::fs::write(root.join("c"), &content[30..]).unwrap();
        let mut s = FileStorage::open_seed(&m, &root).unwrap();
        assert!(recheck(&m, &mut s).unwrap().iter().all(|g| *g));
        assert!(matches!(s.write(0, b"x"), Err(StorageError::ReadOnly)));
        s.mark_verified(0);
        s.flush().unwrap();
        assert!(
            !dir.path()
                .join(format!(".servent-resume-{}", m.info_hash.to_hex()))
                .exists()
        );
        assert_eq!(std::fs::read(root.join("a")).unwrap(), &content[..30]);
    }

    #[test]
    fn symlinks_on_the_way_are_refused() {
        let content = vec![1u8; 10];
        let m = meta(&[(&["sub", "f"], 10)], 16, &content);
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("t/sub")).unwrap();
        assert!(matches!(
            FileStorage::open(&m, dir.path()),
            Err(StorageError::Escapes(_))
        ));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
