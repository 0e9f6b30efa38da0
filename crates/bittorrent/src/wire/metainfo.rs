//! Metainfo files (BEP 3), tracker tiers (BEP 12) and web seeds (BEP 19).
//!
//! [`Metainfo::parse`] reads any real `.torrent` file strictly: the whole file must be one
//! bencoded dictionary with nothing after it, the info dictionary must be canonical (its keys
//! sorted, as re-encoding it must give the same bytes), and the info-hash is the SHA-1 of the
//! info dictionary's exact bytes as they appear in the file. Every file path is checked so it
//! can never name anything outside the download folder. [`MetainfoBuilder`] creates single-
//! and multi-file torrents from piece hashes the caller computed (see [`crate::create`] for
//! hashing files on disk).

use std::collections::BTreeSet;
use std::fmt;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::{self, BencodeError, Dict, Limits, OwnedValue, Value};

/// The SHA-1 of a torrent's info dictionary: the torrent's identity on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// The lowercase hex form (40 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From the 40-character hex form (either case).
    pub fn from_hex(s: &str) -> Option<InfoHash> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(InfoHash(out))
    }

    /// From exactly 20 bytes.
    pub fn from_slice(b: &[u8]) -> Option<InfoHash> {
        <[u8; 20]>::try_from(b).ok().map(InfoHash)
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a metainfo file is refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetainfoError {
    /// Not bencode, or not canonical where it must be.
    #[error(transparent)]
    Bencode(#[from] BencodeError),
    /// A required key is absent or has the wrong type.
    #[error("metainfo: missing or invalid `{0}`")]
    Field(&'static str),
    /// The info dictionary's keys are not sorted, so its info-hash is ambiguous.
    #[error("metainfo: the info dictionary is not canonical bencode")]
    NonCanonicalInfo,
    /// `pieces` does not hold one 20-byte hash per piece of the content.
    #[error("metainfo: {got} piece hashes for content needing {want}")]
    PieceCount {
        /// Hashes present.
        got: usize,
        /// Pieces the lengths require.
        want: u64,
    },
    /// A file name or path component that could escape the download folder or is unusable.
    #[error("metainfo: unsafe file path component {0:?}")]
    UnsafePath(String),
    /// Two files with the same path, or a file that is also a folder of another.
    #[error("metainfo: file path {0:?} used twice")]
    DuplicatePath(String),
    /// A BitTorrent v2-only torrent (BEP 52), which this client does not speak.
    #[error("metainfo: BitTorrent v2-only torrents are not supported")]
    V2Only,
    /// Sizes out of range (negative, zero piece length, overflowing totals).
    #[error("metainfo: size out of range: {0}")]
    Size(&'static str),
}

/// One file of the content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the torrent's folder (single-file torrents: just the name).
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// Offset of the file's first byte in the concatenated content.
    pub offset: u64,
    /// A BEP 47 padding file: its bytes are zeros and never written to disk.
    pub pad: bool,
}

impl FileEntry {
    /// The path joined with `/`, for display.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }
}

/// A parsed torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the info dictionary's exact bytes.
    pub info_hash: InfoHash,
    /// The info dictionary's exact bytes (served to peers by BEP 9).
    pub info_bytes: Vec<u8>,
    /// The suggested name: the file's name (single file) or the folder's (multi-file).
    pub name: String,
    /// Bytes per piece (the last piece may be shorter).
    pub piece_length: u64,
    /// One SHA-1 per piece.
    pub pieces: Vec<[u8; 20]>,
    /// The files in content order.
    pub files: Vec<FileEntry>,
    /// Whether the info dictionary has `files` (content goes in a folder named `name`).
    pub multi_file: bool,
    /// Sum of all file lengths.
    pub total_length: u64,
    /// BEP 27: peers only from the trackers.
    pub private: bool,
    /// Tracker tiers: BEP 12 `announce-list` if present, else `[[announce]]`.
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 web seeds (`url-list`).
    pub web_seeds: Vec<String>,
    /// BEP 5 DHT bootstrap nodes (`nodes`: host and port) of a trackerless torrent.
    pub nodes: Vec<(String, u16)>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date` (seconds since the Unix epoch).
    pub creation_date: Option<i64>,
}

/// Most `nodes` entries read from a torrent.
pub const MAX_NODES: usize = 64;

/// The largest piece length accepted (libtorrent's limit is similar).
pub const MAX_PIECE_LENGTH: u64 = 128 << 20;
/// The largest content accepted (2^50 bytes, one PiB).
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;
/// The most pieces a torrent may have (libtorrent's `load_torrent_limits::max_pieces`).
pub const MAX_PIECES: usize = 0x20_0000;
/// The deepest nesting accepted (libtorrent's `max_decode_depth`).
pub const MAX_DECODE_DEPTH: usize = 100;
/// The most bencode values in a torrent file (every integer, string, list and dictionary
/// counts one). A file entry takes about six, so this admits 10^6-file torrents;
/// libtorrent's default (3 000 000 tokens, ends counted too) refuses them, Transmission
/// accepts them. Memory stays linear in the input, which is bounded by
/// [`MAX_TORRENT_FILE`] (a `.torrent`) or 8 MiB (BEP 9 metadata).
pub const MAX_DECODE_VALUES: usize = 8 << 20;
/// The largest `.torrent` file read.
pub const MAX_TORRENT_FILE: u64 = 64 << 20;

/// The decoding limits of torrent files and info dictionaries.
pub const fn decode_limits(require_sorted: bool) -> Limits {
    Limits {
        max_depth: MAX_DECODE_DEPTH,
        max_values: MAX_DECODE_VALUES,
        require_sorted,
    }
}

/// Checks one path component: non-empty, not `.` or `..`, no separators, NUL or control
/// characters, so joining it under a folder can only name something inside that folder.
pub fn check_component(c: &str) -> Result<(), MetainfoError> {
    let bad = c.is_empty()
        || c == "."
        || c == ".."
        || c.len() > 255
        || c.chars()
            .any(|ch| ch == '/' || ch == '\\' || ch.is_control() || ch == '\0')
        || (c.len() >= 2 && c.as_bytes().get(1) == Some(&b':')); // a Windows drive letter
    if bad {
        return Err(MetainfoError::UnsafePath(c.to_string()));
    }
    Ok(())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn nonneg(v: Option<i64>, field: &'static str) -> Result<u64, MetainfoError> {
    let v = v.ok_or(MetainfoError::Field(field))?;
    u64::try_from(v).map_err(|_| MetainfoError::Size(field))
}

impl Metainfo {
    /// Parses a `.torrent` file.
    pub fn parse(data: &[u8]) -> Result<Metainfo, MetainfoError> {
        // Outside the info dictionary some creators leave keys unsorted; inside, no.
        let root = bencode::decode(data, &decode_limits(false))?;
        let root = root
            .as_dict()
            .ok_or(MetainfoError::Field("root dictionary"))?;
        let info_v = root.get(b"info").ok_or(MetainfoError::Field("info"))?;
        let info = info_v.as_dict().ok_or(MetainfoError::Field("info"))?;
        if !info_v.is_canonical() {
            return Err(MetainfoError::NonCanonicalInfo);
        }
        let mut m = Metainfo::from_info(info)?;
        m.trackers = trackers(root);
        m.web_seeds = match root.get(b"url-list") {
            Some(Value::Bytes(b)) if !b.is_empty() => vec![text(b)],
            Some(Value::List(l)) => l
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        m.nodes = nodes(root);
        m.comment = root.bytes(b"comment").map(text);
        m.created_by = root.bytes(b"created by").map(text);
        m.creation_date = root.int(b"creation date");
        Ok(m)
    }

    /// Builds a metainfo from an info dictionary alone (BEP 9 metadata from a magnet link).
    pub fn from_info_bytes(info_bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let v = bencode::decode(info_bytes, &decode_limits(true))?;
        let info = v.as_dict().ok_or(MetainfoError::Field("info"))?;
        Metainfo::from_info(info)
    }

    fn from_info(info: &Dict<'_>) -> Result<Metainfo, MetainfoError> {
        let info_bytes = info.raw().to_vec();
        let info_hash = InfoHash(Sha1::digest(&info_bytes).into());
        let pieces_raw = match info.get(b"pieces") {
            Some(Value::Bytes(b)) => *b,
            None if info.get(b"meta version").is_some() => return Err(MetainfoError::V2Only),
            _ => return Err(MetainfoError::Field("pieces")),
        };
        if pieces_raw.len() % 20 != 0 {
            return Err(MetainfoError::Field("pieces"));
        }
        if pieces_raw.len() / 20 > MAX_PIECES {
            return Err(MetainfoError::Size("pieces"));
        }
        let pieces: Vec<[u8; 20]> = pieces_raw
            .chunks_exact(20)
            .filter_map(|c| <[u8; 20]>::try_from(c).ok())
            .collect();
        let piece_length = nonneg(info.int(b"piece length"), "piece length")?;
        if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
            return Err(MetainfoError::Size("piece length"));
        }
        let name_b = info
            .bytes(b"name.utf-8")
            .or_else(|| info.bytes(b"name"))
            .ok_or(MetainfoError::Field("name"))?;
        let name = text(name_b);
        check_component(&name)?;
        let private = info.int(b"private") == Some(1);

        let mut files = Vec::new();
        let mut total: u64 = 0;
        let multi_file = info.get(b"files").is_some();
        if let Some(list) = info.get(b"files") {
            let list = list.as_list().ok_or(MetainfoError::Field("files"))?;
            if list.is_empty() {
                return Err(MetainfoError::Field("files"));
            }
            let mut seen_files = BTreeSet::new();
            let mut seen_dirs = BTreeSet::new();
            for f in list {
                let f = f.as_dict().ok_or(MetainfoError::Field("files"))?;
                let length = nonneg(f.int(b"length"), "length")?;
                let path_v = f
                    .list(b"path.utf-8")
                    .or_else(|| f.list(b"path"))
                    .ok_or(MetainfoError::Field("path"))?;
                if path_v.is_empty() {
                    return Err(MetainfoError::Field("path"));
                }
                let mut path = Vec::with_capacity(path_v.len());
                for c in path_v {
                    let c = text(c.as_bytes().ok_or(MetainfoError::Field("path"))?);
                    check_component(&c)?;
                    path.push(c);
                }
                let pad = f.bytes(b"attr").is_some_and(|a| a.contains(&b'p'));
                let joined = path.join("/");
                if !pad {
                    // Two files in the same place, or a file where another needs a folder,
                    // would overwrite each other.
                    if seen_dirs.contains(&joined) || !seen_files.insert(joined.clone()) {
                        return Err(MetainfoError::DuplicatePath(joined));
                    }
                    for i in 1..path.len() {
                        let dir = path.get(..i).map(|p| p.join("/")).unwrap_or_default();
                        if seen_files.contains(&dir) {
                            return Err(MetainfoError::DuplicatePath(dir));
                        }
                        seen_dirs.insert(dir);
                    }
                }
                files.push(FileEntry {
                    path,
                    length,
                    offset: total,
                    pad,
                });
                total = total
                    .checked_add(length)
                    .filter(|t| *t <= MAX_TOTAL_LENGTH)
                    .ok_or(MetainfoError::Size("total length"))?;
            }
        } else {
            let length = nonneg(info.int(b"length"), "length")?;
            if length > MAX_TOTAL_LENGTH {
                return Err(MetainfoError::Size("length"));
            }
            files.push(FileEntry {
                path: vec![name.clone()],
                length,
                offset: 0,
                pad: false,
            });
            total = length;
        }
        let want = total.div_ceil(piece_length);
        if pieces.len() as u64 != want {
            return Err(MetainfoError::PieceCount {
                got: pieces.len(),
                want,
            });
        }
        Ok(Metainfo {
            info_hash,
            info_bytes,
            name,
            piece_length,
            pieces,
            files,
            multi_file,
            total_length: total,
            private,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            nodes: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        })
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> usize {
        self.pieces.len()
    }

    /// Length of piece `index` (the last one may be short); 0 for an index out of range.
    pub fn piece_len(&self, index: usize) -> u64 {
        let start = (index as u64).saturating_mul(self.piece_length);
        if index >= self.pieces.len() {
            return 0;
        }
        self.total_length
            .saturating_sub(start)
            .min(self.piece_length)
    }

    /// The expected SHA-1 of piece `index`.
    pub fn piece_hash(&self, index: usize) -> Option<&[u8; 20]> {
        self.pieces.get(index)
    }

    /// The trackers in tier order, flattened (for display).
    pub fn tracker_urls(&self) -> impl Iterator<Item = &str> {
        self.trackers.iter().flatten().map(String::as_str)
    }

    /// A magnet link for this torrent (BEP 9 form).
    pub fn magnet(&self) -> String {
        let mut s = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        s.push_str("&dn=");
        s.push_str(&crate::tracker::percent_encode(self.name.as_bytes()));
        for t in self.tracker_urls() {
            s.push_str("&tr=");
            s.push_str(&crate::tracker::percent_encode(t.as_bytes()));
        }
        s
    }
}

/// BEP 5 `nodes`: a list of `[host, port]` pairs; malformed entries are skipped.
fn nodes(root: &Dict<'_>) -> Vec<(String, u16)> {
    let Some(list) = root.list(b"nodes") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|n| {
            let pair = n.as_list()?;
            let host = pair.first()?.as_str()?;
            let port = u16::try_from(pair.get(1)?.as_int()?).ok()?;
            (pair.len() == 2 && !host.is_empty() && port != 0).then(|| (host.to_string(), port))
        })
        .take(MAX_NODES)
        .collect()
}

fn trackers(root: &Dict<'_>) -> Vec<Vec<String>> {
    let mut tiers: Vec<Vec<String>> = Vec::new();
    if let Some(list) = root.list(b"announce-list") {
        for tier in list {
            let Some(tier) = tier.as_list() else { continue };
            let urls: Vec<String> = tier
                .iter()
                .filter_map(Value::as_str)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect();
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(a) = root.str(b"announce").filter(|a| !a.is_empty()) {
            tiers.push(vec![a.to_string()]);
        }
    }
    tiers
}

/// Picks a piece length for `total` bytes: a power of two giving at most about 1500 pieces,
/// between 16 KiB and 16 MiB (the range mktorrent and libtorrent use).
pub fn auto_piece_length(total: u64) -> u64 {
    let mut pl: u64 = 16 << 10;
    while pl < (16 << 20) && total.div_ceil(pl) > 1500 {
        pl *= 2;
    }
    pl
}

/// Describes a torrent to create.
#[derive(Clone, Debug, Default)]
pub struct MetainfoBuilder {
    /// The file's or folder's name.
    pub name: String,
    /// Files as (path below the folder, length); a single entry with an empty path makes a
    /// single-file torrent.
    pub files: Vec<(Vec<String>, u64)>,
    /// Bytes per piece.
    pub piece_length: u64,
    /// BEP 27 private flag.
    pub private: bool,
    /// Tracker tiers; the first URL also becomes `announce`.
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 web seeds.
    pub web_seeds: Vec<String>,
    /// BEP 5 DHT nodes (host, port) for a trackerless torrent.
    pub nodes: Vec<(String, u16)>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`.
    pub creation_date: Option<i64>,
}

impl MetainfoBuilder {
    /// Encodes the `.torrent` file given the piece hashes, and parses it back (so what is
    /// returned is exactly what any reader of the file sees).
    pub fn build(&self, pieces: &[[u8; 20]]) -> Result<(Vec<u8>, Metainfo), MetainfoError> {
        let single = self.files.len() == 1 && self.files.first().is_some_and(|f| f.0.is_empty());
        let to_i64 = |v: u64, what| i64::try_from(v).map_err(|_| MetainfoError::Size(what));
        let mut info = OwnedValue::dict()
            .with("name", OwnedValue::bytes(&self.name))
            .with(
                "piece length",
                OwnedValue::Int(to_i64(self.piece_length, "piece length")?),
            )
            .with("pieces", OwnedValue::Bytes(pieces.concat()));
        if self.private {
            info = info.with("private", OwnedValue::Int(1));
        }
        if single {
            let len = self.files.first().map_or(0, |f| f.1);
            info = info.with("length", OwnedValue::Int(to_i64(len, "length")?));
        } else {
            let mut list = Vec::with_capacity(self.files.len());
            for (path, len) in &self.files {
                list.push(
                    OwnedValue::dict()
                        .with("length", OwnedValue::Int(to_i64(*len, "length")?))
                        .with(
                            "path",
                            OwnedValue::List(path.iter().map(OwnedValue::bytes).collect()),
                        ),
                );
            }
            info = info.with("files", OwnedValue::List(list));
        }
        let mut root = OwnedValue::dict().with("info", info);
        if let Some(first) = self.trackers.iter().flatten().next() {
            root = root.with("announce", OwnedValue::bytes(first));
        }
        let n_urls = self.trackers.iter().flatten().count();
        if n_urls > 1 {
            root = root.with(
                "announce-list",
                OwnedValue::List(
                    self.trackers
                        .iter()
                        .filter(|t| !t.is_empty())
                        .map(|t| OwnedValue::List(t.iter().map(OwnedValue::bytes).collect()))
                        .collect(),
                ),
            );
        }
        if !self.web_seeds.is_empty() {
            root = root.with(
                "url-list",
                OwnedValue::List(self.web_seeds.iter().map(OwnedValue::bytes).collect()),
            );
        }
        if !self.nodes.is_empty() {
            root = root.with(
                "nodes",
                OwnedValue::List(
                    self.nodes
                        .iter()
                        .map(|(h, p)| {
                            OwnedValue::List(vec![
                                OwnedValue::bytes(h),
                                OwnedValue::Int(i64::from(*p)),
                            ])
                        })
                        .collect(),
                ),
            );
        }
        if let Some(c) = &self.comment {
            root = root.with("comment", OwnedValue::bytes(c));
        }
        if let Some(c) = &self.created_by {
            root = root.with("created by", OwnedValue::bytes(c));
        }
        if let Some(d) = self.creation_date {
            root = root.with("creation date", OwnedValue::Int(d));
        }
        let bytes = root.encode();
        let m = Metainfo::parse(&bytes)?;
        Ok((bytes, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A single-file torrent laid out as mktorrent writes one (announce, created by, creation
    /// date, info) for the 11 bytes "hello world".
    fn golden_single() -> Vec<u8> {
        let piece = Sha1::digest(b"hello world");
        let mut info = b"d6:lengthi11e4:name9:hello.txt12:piece lengthi32768e6:pieces20:".to_vec();
        info.extend_from_slice(&piece);
        info.push(b'e');
        let mut t = b"d8:announce10:http://t/a10:created by13:mktorrent 1.113:creation datei1700000000e4:info".to_vec();
        t.extend_from_slice(&info);
        t.push(b'e');
        t
    }

    #[test]
    fn single_file_torrent_parses_with_info_hash_of_exact_bytes() {
        let t = golden_single();
        let m = Metainfo::parse(&t).unwrap();
        assert_eq!(m.name, "hello.txt");
        assert_eq!(m.total_length, 11);
        assert_eq!(m.piece_count(), 1);
        assert_eq!(m.piece_len(0), 11);
        assert!(!m.multi_file);
        assert_eq!(m.trackers, vec![vec!["http://t/a".to_string()]]);
        assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
        let start = t.windows(6).position(|w| w == b"4:info").unwrap() + 6;
        let info = &t[start..t.len() - 1];
        assert_eq!(m.info_bytes, info);
        assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(info)));
        // The SHA-1 of that exact info dictionary, computed independently (Python hashlib).
        assert_eq!(
            m.info_hash.to_hex(),
            "0287986056fa0e1eb8b1fb57c993ca38de383cd9"
        );
    }

    #[test]
    fn unsorted_info_dictionary_is_rejected() {
        let piece = [7u8; 20];
        let mut info = b"d4:name1:x6:lengthi1e12:piece lengthi16384e6:pieces20:".to_vec();
        info.extend_from_slice(&piece);
        info.push(b'e');
        let t = [b"d4:info".to_vec(), info, b"e".to_vec()].concat();
        assert_eq!(Metainfo::parse(&t), Err(MetainfoError::NonCanonicalInfo));
    }

    #[test]
    fn trailing_bytes_after_the_torrent_are_rejected() {
        let mut t = golden_single();
        t.push(b'x');
        assert!(matches!(
            Metainfo::parse(&t),
            Err(MetainfoError::Bencode(BencodeError::Trailing(1)))
        ));
    }

    fn multi(paths: &[(&[&str], u64)]) -> MetainfoBuilder {
        MetainfoBuilder {
            name: "dir".into(),
            files: paths
                .iter()
                .map(|(p, l)| (p.iter().map(|s| s.to_string()).collect(), *l))
                .collect(),
            piece_length: 16384,
            ..Default::default()
        }
    }

    fn hashes(total: u64, pl: u64) -> Vec<[u8; 20]> {
        vec![[0u8; 20]; total.div_ceil(pl) as usize]
    }

    #[test]
    fn multi_file_torrent_round_trips_with_offsets_and_tiers() {
        let mut b = multi(&[(&["a.bin"], 20000), (&["sub", "b.bin"], 30000)]);
        b.trackers = vec![
            vec!["http://one/announce".into(), "udp://two:80".into()],
            vec!["http://three/announce".into()],
        ];
        b.private = true;
        b.web_seeds = vec!["http://seed/".into()];
        let (bytes, m) = b.build(&hashes(50000, 16384)).unwrap();
        assert!(m.multi_file && m.private);
        assert_eq!(m.files[1].offset, 20000);
        assert_eq!(m.files[1].path, vec!["sub", "b.bin"]);
        assert_eq!(m.piece_count(), 4);
        assert_eq!(m.piece_len(3), 50000 - 3 * 16384);
        assert_eq!(m.trackers.len(), 2);
        assert_eq!(m.web_seeds, vec!["http://seed/"]);
        assert_eq!(Metainfo::parse(&bytes).unwrap(), m);
        assert!(
            bencode::decode(&bytes, &Limits::strict()).is_ok(),
            "ours are canonical"
        );
        assert_eq!(
            Metainfo::from_info_bytes(&m.info_bytes).unwrap().info_hash,
            m.info_hash
        );
    }

    #[test]
    fn paths_that_escape_the_folder_are_rejected() {
        for bad in [
            &[".."][..],
            &["a", ".."],
            &["/etc"],
            &["a/b"],
            &["a\\b"],
            &[""],
            &["."],
            &["x\0y"],
            &["C:"],
            &["a\nb"],
        ] {
            let b = multi(&[(bad, 1)]);
            assert!(
                matches!(
                    b.build(&hashes(1, 16384)),
                    Err(MetainfoError::UnsafePath(_))
                ),
                "{bad:?}"
            );
        }
        let mut b = multi(&[(&["ok"], 1)]);
        b.name = "..".into();
        assert!(matches!(
            b.build(&hashes(1, 16384)),
            Err(MetainfoError::UnsafePath(_))
        ));
    }

    #[test]
    fn colliding_paths_are_rejected() {
        let b = multi(&[(&["a"], 1), (&["a"], 1)]);
        assert!(matches!(
            b.build(&hashes(2, 16384)),
            Err(MetainfoError::DuplicatePath(_))
        ));
        let b = multi(&[(&["a"], 1), (&["a", "b"], 1)]);
        assert!(matches!(
            b.build(&hashes(2, 16384)),
            Err(MetainfoError::DuplicatePath(_))
        ));
        let b = multi(&[(&["a", "b"], 1), (&["a"], 1)]);
        assert!(matches!(
            b.build(&hashes(2, 16384)),
            Err(MetainfoError::DuplicatePath(_))
        ));
    }

    #[test]
    fn wrong_piece_count_is_rejected() {
        let b = multi(&[(&["a"], 40000)]);
        assert_eq!(
            b.build(&hashes(10, 16384)).map(|_| ()),
            Err(MetainfoError::PieceCount { got: 1, want: 3 })
        );
    }

    #[test]
    fn trackerless_torrents_carry_bep5_nodes_and_no_announce() {
        let b = MetainfoBuilder {
            name: "x".into(),
            files: vec![(Vec::new(), 10)],
            piece_length: 16 << 10,
            nodes: vec![("127.0.0.1".into(), 6881), ("dht.example".into(), 6882)],
            ..Default::default()
        };
        let (bytes, m) = b.build(&[[0; 20]]).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("announce"));
        assert!(text.contains("5:nodesl l9:127.0.0.1i6881ee".replace(' ', "").as_str()));
        assert_eq!(m.nodes, b.nodes);
        assert!(m.trackers.is_empty());
        // Hand-written: a bad entry (port out of range, wrong shape) is skipped.
        let mut t = b"d4:infod6:lengthi10e4:name1:x12:piece lengthi16384e6:pieces20:".to_vec();
        t.extend_from_slice(&[0; 20]);
        t.extend_from_slice(b"e5:nodesll1:ai70000eel1:bi1eeli5eel1:ci2ei3eeee");
        let m = Metainfo::parse(&t).unwrap();
        assert_eq!(m.nodes, vec![("b".to_string(), 1)]);
    }

    #[test]
    fn piece_length_is_chosen_from_content_size() {
        assert_eq!(auto_piece_length(0), 16 << 10);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        assert_eq!(auto_piece_length(1 << 40), 16 << 20);
        for total in [1u64, 1 << 20, 5 << 30] {
            assert!(total.div_ceil(auto_piece_length(total)) <= 1500);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Metainfo::parse(&data);
            let _ = Metainfo::from_info_bytes(&data);
        }

        #[test]
        fn mutated_torrents_never_panic(pos in 0usize..200, byte in any::<u8>()) {
            let mut t = golden_single();
            let n = t.len();
            if let Some(b) = t.get_mut(pos % n) { *b = byte; }
            let _ = Metainfo::parse(&t);
        }
    }

    /// A torrent of 10^6 files (one byte each), written as bencode by hand.
    fn million_files() -> Vec<u8> {
        let n = 1_000_000u64;
        let mut files = Vec::with_capacity(30 << 20);
        files.extend_from_slice(b"5:filesl");
        for i in 0..n {
            files.extend_from_slice(format!("d6:lengthi1e4:pathl7:f{i:06}ee").as_bytes());
        }
        files.push(b'e');
        let pl = 1u64 << 16;
        let pieces = n.div_ceil(pl) as usize;
        let mut info = b"d".to_vec();
        info.extend_from_slice(&files);
        info.extend_from_slice(
            format!("4:name4:many12:piece lengthi{pl}e6:pieces{}:", pieces * 20).as_bytes(),
        );
        info.extend(std::iter::repeat_n(7u8, pieces * 20));
        info.push(b'e');
        let mut t = b"d4:info".to_vec();
        t.extend_from_slice(&info);
        t.push(b'e');
        t
    }

    #[test]
    fn a_torrent_with_a_million_files_is_accepted() {
        let t = million_files();
        assert!(t.len() as u64 <= MAX_TORRENT_FILE);
        let m = Metainfo::parse(&t).unwrap();
        assert_eq!(m.files.len(), 1_000_000);
        assert_eq!(m.total_length, 1_000_000);
        assert_eq!(m.files.last().map(|f| f.offset), Some(999_999));
    }

    #[test]
    fn more_values_than_the_limit_are_an_error() {
        let mut over = b"l".to_vec();
        over.extend(std::iter::repeat_n(b"i0e".as_slice(), MAX_DECODE_VALUES + 1).flatten());
        over.push(b'e');
        assert!(Metainfo::parse(&over).is_err());
    }

    #[test]
    fn more_pieces_than_libtorrent_accepts_are_refused() {
        let pieces = MAX_PIECES + 1;
        let mut t = format!(
            "d4:infod6:lengthi{}e4:name1:x12:piece lengthi16384e6:pieces{}:",
            pieces as u64 * 16384,
            pieces * 20
        )
        .into_bytes();
        t.extend(std::iter::repeat_n(1u8, pieces * 20));
        t.extend_from_slice(b"ee");
        assert!(matches!(
            Metainfo::parse(&t),
            Err(MetainfoError::Size("pieces"))
        ));
    }
}
