//! The files a servent shares, as the core sees them: index, name, size. Reading them is
//! the driver's business; the core only matches queries against names.

/// One shared file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    /// The index peers use in `GET /get/<index>/<name>` and in Push.
    pub index: u32,
    /// The file name as shown in QueryHits (no directories).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-1 of the contents, when known (HUGE: `urn:sha1:` in QueryHits, and
    /// `GET /uri-res/N2R?urn:sha1:...`).
    pub sha1: Option<[u8; 20]>,
}

impl SharedFile {
    /// Its `urn:sha1:<base32>` when the hash is known.
    pub fn urn(&self) -> Option<String> {
        self.sha1.map(|h| sha1_urn(&h))
    }
}

pub use crate::wire::urn::{base32, parse_sha1_urn, sha1_urn};

/// The shared files and their lowercase names, for matching.
#[derive(Clone, Debug, Default)]
pub struct Library {
    files: Vec<SharedFile>,
    lower: Vec<String>,
    total_bytes: u64,
}

impl Library {
    /// A library of `files`.
    pub fn new(files: Vec<SharedFile>) -> Library {
        let lower = files.iter().map(|f| f.name.to_lowercase()).collect();
        let total_bytes = files.iter().map(|f| f.size).sum();
        Library {
            files,
            lower,
            total_bytes,
        }
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Kilobytes shared (for Pongs).
    pub fn kbytes(&self) -> u32 {
        u32::try_from(self.total_bytes / 1024).unwrap_or(u32::MAX)
    }

    /// Every shared file.
    pub fn files(&self) -> &[SharedFile] {
        &self.files
    }

    /// The file with `index`.
    pub fn get(&self, index: u32) -> Option<&SharedFile> {
        self.files.iter().find(|f| f.index == index)
    }

    /// The file whose SHA-1 is `h`.
    pub fn by_sha1(&self, h: &[u8; 20]) -> Option<&SharedFile> {
        self.files.iter().find(|f| f.sha1.as_ref() == Some(h))
    }

    /// Files whose names match `criteria`, at most `max`.
    pub fn search(&self, criteria: &[u8], max: usize) -> Vec<&SharedFile> {
        let Ok(c) = std::str::from_utf8(criteria) else {
            return Vec::new();
        };
        // The matching rules every servent system shares (servent_core::share).
        let Some(terms) = servent_core::share::query_terms(c) else {
            return Vec::new();
        };
        self.files
            .iter()
            .zip(&self.lower)
            .filter(|(_, name)| servent_core::share::matches_all(&terms, name))
            .map(|(f, _)| f)
            .take(max)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib() -> Library {
        Library::new(vec![
            SharedFile {
                index: 0,
                name: "Pixies - Debaser.mp3".into(),
                size: 4000,
                sha1: None,
            },
            SharedFile {
                index: 7,
                name: "notes.txt".into(),
                size: 10,
                sha1: None,
            },
        ])
    }

    #[test]
    fn sha1_urns_round_trip_in_base32() {
        // SHA-1 of the empty string, and its well-known base32 form.
        let h: [u8; 20] = [
            0xda, 0x39, 0xa3, 0xee, 0x5e, 0x6b, 0x4b, 0x0d, 0x32, 0x55, 0xbf, 0xef, 0x95, 0x60,
            0x18, 0x90, 0xaf, 0xd8, 0x07, 0x09,
        ];
        let urn = sha1_urn(&h);
        assert_eq!(urn, "urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ");
        assert_eq!(parse_sha1_urn(&urn), Some(h));
        assert_eq!(parse_sha1_urn(&urn.to_lowercase()), Some(h));
        assert_eq!(
            parse_sha1_urn("urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBY"),
            None
        );
        assert_eq!(
            parse_sha1_urn("urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBY1"),
            None
        );
        assert_eq!(
            parse_sha1_urn("urn:md5:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ"),
            None
        );
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn keywords_match_case_insensitively_all_terms() {
        let l = lib();
        assert_eq!(l.search(b"debaser", 10).len(), 1);
        assert_eq!(l.search(b"PIXIES debaser", 10).len(), 1);
        assert_eq!(l.search(b"pixies notes", 10).len(), 0);
        assert_eq!(l.search(b"deb*mp3", 10)[0].index, 0);
        assert_eq!(l.search(b"*.txt", 10)[0].index, 7);
    }

    #[test]
    fn empty_and_star_queries_list_nothing() {
        let l = lib();
        assert!(l.search(b"", 10).is_empty());
        assert!(l.search(b"    ", 10).is_empty());
        assert!(l.search(b"* **", 10).is_empty());
        assert!(l.search(&[0xff, 0xfe], 10).is_empty());
    }
}
