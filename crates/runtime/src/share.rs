//! The shared-file index: what a servent offers to others.
//!
//! [`ShareIndex::scan`] walks a folder (not following symbolic links, which are skipped
//! entirely), and gives every regular file a stable index (files sorted by relative path),
//! its name, size and keywords. Searches follow [`servent_core::share`]: case-insensitive,
//! every term must match the relative path, `*` wildcards between pieces that must occur in
//! order. Hashes (SHA-1, SHA-256) are computed on demand and cached.
//!
//! Every way in from outside — an index and a name from a download request, a relative path
//! — goes through [`ShareIndex::resolve`] or [`ShareIndex::open`], which refuse absolute
//! paths, `..`, NUL bytes, symbolic links and anything whose real path is outside the folder.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use sha1::Digest;

/// Most files one index holds.
pub const MAX_FILES: usize = 1_000_000;
/// Deepest folder nesting scanned.
pub const MAX_DEPTH: usize = 32;

/// One shared file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    /// Stable index within this scan.
    pub index: u32,
    /// The file name (last path component).
    pub name: String,
    /// Path relative to the shared folder, `/`-separated.
    pub path: String,
    /// Size in bytes at scan time.
    pub size: u64,
    /// Lower-case words of the relative path (split on anything not a letter or digit).
    pub keywords: Vec<String>,
}

/// What can go wrong with the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The folder could not be read.
    #[error("cannot read shared folder {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A requested path would leave the shared folder or is not a plain relative path.
    #[error("refused path {0:?}: outside the shared folder or not a plain file")]
    Refused(String),
    /// No file with that index (and name).
    #[error("no shared file {0}")]
    NotFound(String),
    /// The folder holds more than [`MAX_FILES`] files.
    #[error("more than {MAX_FILES} files in the shared folder")]
    TooMany,
}

/// Hashes of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHashes {
    /// SHA-1 of the whole file (Gnutella's `urn:sha1`, BitTorrent pieces use SHA-1 too).
    pub sha1: [u8; 20],
    /// SHA-256 of the whole file (content verification in demos and tests).
    pub sha256: [u8; 32],
}

/// A scanned folder.
#[derive(Debug)]
pub struct ShareIndex {
    root: PathBuf,
    files: Vec<SharedFile>,
    hashes: Mutex<BTreeMap<u32, FileHashes>>,
}

pub use servent_core::share::{keywords, query_terms, term_matches};

/// Checks that `rel` is a plain relative path: no root, no `..`, no `.`-only tricks, no NUL,
/// no backslashes (which other systems read as separators).
pub fn check_relative(rel: &str) -> Result<PathBuf, ShareError> {
    let refused = || ShareError::Refused(rel.chars().take(200).collect());
    if rel.is_empty() || rel.contains('\0') || rel.contains('\\') {
        return Err(refused());
    }
    let p = Path::new(rel);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => return Err(refused()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refused());
    }
    Ok(out)
}

impl ShareIndex {
    /// Scans `root`.
    pub fn scan(root: &Path) -> Result<ShareIndex, ShareError> {
        let io = |path: &Path, source| ShareError::Io {
            path: path.to_path_buf(),
            source,
        };
        let root = root.canonicalize().map_err(|e| io(root, e))?;
        let mut found: Vec<(String, u64)> = Vec::new();
        let mut stack = vec![(root.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|e| io(&dir, e))?;
            for entry in rd {
                let entry = entry.map_err(|e| io(&dir, e))?;
                // file_type() does not follow symlinks: links are neither files nor dirs here.
                let Ok(ft) = entry.file_type() else { continue };
                let path = entry.path();
                if ft.is_dir() && depth + 1 < MAX_DEPTH {
                    stack.push((path, depth + 1));
                } else if ft.is_file() {
                    let Ok(rel) = path.strip_prefix(&root) else {
                        continue;
                    };
                    let Some(rel) = rel.to_str() else { continue }; // names must be UTF-8 to be offered
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    found.push((rel.replace(std::path::MAIN_SEPARATOR, "/"), size));
                    if found.len() > MAX_FILES {
                        return Err(ShareError::TooMany);
                    }
                }
            }
        }
        found.sort();
        let files = found
            .into_iter()
            .enumerate()
            .map(|(i, (path, size))| SharedFile {
                index: i as u32,
                name: path.rsplit('/').next().unwrap_or(&path).to_string(),
                keywords: keywords(&path),
                path,
                size,
            })
            .collect();
        Ok(ShareIndex {
            root,
            files,
            hashes: Mutex::new(BTreeMap::new()),
        })
    }

    /// The shared folder (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every file, in index order.
    pub fn files(&self) -> &[SharedFile] {
        &self.files
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Total bytes shared.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The file with this index.
    pub fn get(&self, index: u32) -> Option<&SharedFile> {
        self.files.get(index as usize)
    }

    /// The file with this index, if its name (or relative path) is `name` too: what a
    /// download request names.
    pub fn get_named(&self, index: u32, name: &str) -> Option<&SharedFile> {
        self.get(index).filter(|f| f.name == name || f.path == name)
    }

    /// The file at this relative path.
    pub fn by_path(&self, path: &str) -> Option<&SharedFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.files.get(i))
    }

    /// Files matching every term of `query` (whitespace-separated), at most `max`, in index
    /// order. An empty or all-`*` query matches nothing.
    pub fn search(&self, query: &str, max: usize) -> Vec<&SharedFile> {
        let Some(terms) = query_terms(query) else {
            return Vec::new();
        };
        self.files
            .iter()
            .filter(|f| servent_core::share::matches_all(&terms, &f.path.to_lowercase()))
            .take(max)
            .collect()
    }

    /// The real path of a relative path inside the folder, refusing anything that would
    /// leave it (including through a symbolic link anywhere on the way).
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, ShareError> {
        let clean = check_relative(rel)?;
        let full = self.root.join(&clean);
        let meta =
            std::fs::symlink_metadata(&full).map_err(|_| ShareError::NotFound(rel.into()))?;
        if !meta.file_type().is_file() {
            return Err(ShareError::Refused(rel.into()));
        }
        let real = full
            .canonicalize()
            .map_err(|_| ShareError::NotFound(rel.into()))?;
        if !real.starts_with(&self.root) || real != full {
            return Err(ShareError::Refused(rel.into()));
        }
        Ok(real)
    }

    /// Opens shared file `index` for reading (never following a symbolic link).
    pub fn open(&self, index: u32) -> Result<File, ShareError> {
        let f = self
            .get(index)
            .ok_or_else(|| ShareError::NotFound(index.to_string()))?;
        let path = self.resolve(&f.path)?;
        open_nofollow(&path).map_err(|source| ShareError::Io { path, source })
    }

    /// SHA-1 and SHA-256 of file `index`, computed once and cached.
    pub fn hashes(&self, index: u32) -> Result<FileHashes, ShareError> {
        if let Some(h) = self.hashes.lock().ok().and_then(|m| m.get(&index).copied()) {
            return Ok(h);
        }
        let mut file = self.open(index)?;
        let h = hash_reader(&mut file).map_err(|source| ShareError::Io {
            path: self.root.clone(),
            source,
        })?;
        if let Ok(mut m) = self.hashes.lock() {
            m.insert(index, h);
        }
        Ok(h)
    }
}

/// SHA-1 and SHA-256 of everything `r` yields.
pub fn hash_reader(r: &mut impl Read) -> std::io::Result<FileHashes> {
    let mut s1 = sha1::Sha1::new();
    let mut s2 = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s1.update(&buf[..n]);
        s2.update(&buf[..n]);
    }
    Ok(FileHashes {
        sha1: s1.finalize().into(),
        sha256: s2.finalize().into(),
    })
}

/// Opens a file for reading, failing if the last component is a symbolic link.
pub fn open_nofollow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn relative_paths_that_leave_are_refused() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "",
            "a\0b",
            "..",
            "a\\..\\b",
            ".",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_relative("a/./b.mp3").unwrap(),
            PathBuf::from("a/b.mp3")
        );
    }

    proptest! {
        #[test]
        fn check_relative_output_never_escapes(s in "[a-z./]{0,20}") {
            if let Ok(p) = check_relative(&s) {
                prop_assert!(p.components().all(|c| matches!(c, Component::Normal(_))));
            }
        }
    }
}
