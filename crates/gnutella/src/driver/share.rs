//! The shared folder on disk: scanning it (names, sizes, SHA-1s) and opening a file for an
//! upload, never following a symlink and never leaving the folder.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::core::library::SharedFile;
use crate::wire::http;

/// The SHA-1 of a regular file (not following a symlink).
fn sha1_of(path: &Path) -> io::Result<[u8; 20]> {
    use sha1::Digest;
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut h = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or(&[]));
    }
    Ok(h.finalize().into())
}

/// A shared folder: regular files directly inside it, indexed by position.
#[derive(Clone, Debug, Default)]
pub struct Share {
    root: Option<PathBuf>,
    files: Vec<SharedFile>,
}

impl Share {
    /// Scans `root` (not following symlinks, not descending into folders).
    pub fn scan(root: &Path) -> io::Result<Share> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            let meta = std::fs::symlink_metadata(entry.path())?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if meta.is_file() && http::safe_name(&name) {
                names.push((name, meta.len()));
            }
        }
        names.sort();
        let files = names
            .into_iter()
            .enumerate()
            .map(|(i, (name, size))| {
                // HUGE: the SHA-1 of each file, read once at scan time (unreadable → none).
                let sha1 = sha1_of(&root.join(&name)).ok();
                SharedFile {
                    index: i as u32,
                    name,
                    size,
                    sha1,
                }
            })
            .collect();
        Ok(Share {
            root: Some(root.to_path_buf()),
            files,
        })
    }

    /// The files.
    pub fn files(&self) -> &[SharedFile] {
        &self.files
    }

    /// Opens the file whose SHA-1 is `h`, with the same checks as [`Share::open`].
    pub fn open_sha1(&self, h: &[u8; 20]) -> Option<(std::fs::File, u64)> {
        let f = self.files.iter().find(|f| f.sha1.as_ref() == Some(h))?;
        self.open(f.index, &f.name)
    }

    /// Opens file `index` if its name is `name`: never a symlink, never outside the folder.
    pub fn open(&self, index: u32, name: &str) -> Option<(std::fs::File, u64)> {
        let root = self.root.as_ref()?;
        let f = self
            .files
            .iter()
            .find(|f| f.index == index && f.name == name)?;
        if !http::safe_name(&f.name) {
            return None;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(root.join(&f.name))
            .ok()?;
        let meta = file.metadata().ok()?;
        meta.is_file().then_some((file, meta.len()))
    }
}
