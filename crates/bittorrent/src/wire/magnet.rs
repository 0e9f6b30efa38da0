//! Magnet URIs (BEP 9, with BEP 53 `so` and the common `x.pe`/`ws` parameters).
//!
//! [`Magnet::parse`] reads a `magnet:?…` URI into the torrent's info-hash (`xt=urn:btih:`,
//! 40 hex digits or 32 base32 characters), its display name (`dn`), trackers (`tr`, repeated,
//! also as `tr.1`, `tr.2`, …), peer addresses (`x.pe`), web seeds (`ws`) and the BEP 53 file
//! selection (`so`). Values are percent-decoded; unknown keys (and other `xt` URNs such as
//! BitTorrent v2's `urn:btmh:`) are ignored. Everything is bounded: the URI's length and the
//! number of trackers, peers and web seeds; going over a bound is an error, never a silent cut.
//! [`Magnet::to_uri`] writes the canonical form back (`parse(to_uri(m)) == m`).
//!
//! A driver/core starting from a magnet: announce `info_hash` to `trackers` (and the DHT),
//! connect to `peers`, fetch the info dictionary with [`crate::metadata::MetadataFetch`], then
//! build the [`crate::metainfo::Metainfo`] with `Metainfo::from_info_bytes`. The core does no
//! DNS: [`PeerAddr::Name`] entries are the driver's to resolve.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

use crate::metainfo::InfoHash;
use crate::tracker::{percent_decode, percent_encode};

/// The longest URI accepted, in bytes.
pub const MAX_URI_LEN: usize = 64 << 10;
/// At most this many trackers.
pub const MAX_TRACKERS: usize = 200;
/// At most this many `x.pe` peers.
pub const MAX_PEERS: usize = 200;
/// At most this many web seeds.
pub const MAX_WEB_SEEDS: usize = 50;
/// At most this many ranges in `so`.
pub const MAX_SELECT_RANGES: usize = 1000;
/// The longest single value (a name or URL) accepted, in bytes after decoding.
pub const MAX_VALUE_LEN: usize = 4096;

/// Why a magnet URI is refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MagnetError {
    /// Does not start with `magnet:?`.
    #[error("magnet: not a magnet URI (must start with `magnet:?`)")]
    Scheme,
    /// Longer than [`MAX_URI_LEN`], or one value longer than [`MAX_VALUE_LEN`].
    #[error("magnet: URI or value too long")]
    TooLong,
    /// No `xt=urn:btih:` parameter.
    #[error("magnet: no `xt=urn:btih:` info-hash")]
    NoInfoHash,
    /// An `urn:btih:` that is neither 40 hex digits nor 32 base32 characters.
    #[error("magnet: invalid info-hash {0:?}")]
    BadInfoHash(String),
    /// Two different `urn:btih:` hashes in one URI.
    #[error("magnet: two different info-hashes")]
    ConflictingInfoHash,
    /// Bad percent-encoding, or a value that is not UTF-8 where text is required.
    #[error("magnet: bad encoding in `{0}`")]
    Encoding(&'static str),
    /// More trackers, peers, web seeds or `so` ranges than the bound.
    #[error("magnet: too many `{0}` values")]
    TooMany(&'static str),
    /// An `x.pe` that is not `host:port`, `ipv4:port` or `[ipv6]:port`.
    #[error("magnet: invalid peer address {0:?}")]
    BadPeer(String),
    /// A `so` value that is not a comma-separated list of indices and `a-b` ranges.
    #[error("magnet: invalid `so` value {0:?}")]
    BadSelect(String),
}

/// A peer address from `x.pe`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerAddr {
    /// An IPv4 or IPv6 literal with a port.
    Ip(SocketAddr),
    /// A host name and port, for the driver to resolve.
    Name {
        /// The host name (letters, digits, `-`, `.`).
        host: String,
        /// The port.
        port: u16,
    },
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl PeerAddr {
    /// Parses `host:port`, `ipv4:port` or `[ipv6]:port`.
    pub fn parse(s: &str) -> Result<PeerAddr, MagnetError> {
        let bad = || MagnetError::BadPeer(s.chars().take(100).collect());
        if let Ok(a) = s.parse::<SocketAddr>() {
            if a.port() == 0 {
                return Err(bad());
            }
            return Ok(PeerAddr::Ip(a));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
            && host.parse::<IpAddr>().is_err();
        if port == 0 || !host_ok {
            return Err(bad());
        }
        Ok(PeerAddr::Name {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A parsed magnet URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The torrent's info-hash (v1).
    pub info_hash: InfoHash,
    /// `dn`: a display name (may be absent; the real name comes with the metadata).
    pub name: Option<String>,
    /// `tr`: tracker URLs in the order given, duplicates removed.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to connect to, duplicates removed.
    pub peers: Vec<PeerAddr>,
    /// `ws`: web seed URLs (BEP 19), duplicates removed.
    pub web_seeds: Vec<String>,
    /// BEP 53 `so`: inclusive ranges of file indices to download; `None` means all files.
    pub select_only: Option<Vec<(u32, u32)>>,
}

impl Magnet {
    /// A magnet with just an info-hash.
    pub fn new(info_hash: InfoHash) -> Magnet {
        Magnet {
            info_hash,
            name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            web_seeds: Vec::new(),
            select_only: None,
        }
    }

    /// Parses a magnet URI (see the module docs for what is read and what is bounded).
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_URI_LEN {
            return Err(MagnetError::TooLong);
        }
        let query = strip_prefix_ci(uri.trim(), "magnet:?").ok_or(MagnetError::Scheme)?;
        let mut info_hash: Option<InfoHash> = None;
        let mut m = Magnet::new(InfoHash::default());
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = param.split_once('=').unwrap_or((param, ""));
            // `tr.1`, `xt.2`, ...: numbered forms of repeated keys.
            let key = match key.split_once('.') {
                Some((k, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => k,
                _ => key,
            };
            match key {
                "xt" => {
                    let v = text(raw, "xt")?;
                    let Some(h) = strip_prefix_ci(&v, "urn:btih:") else {
                        continue; // urn:btmh: (v2), urn:sha1:, ... are not ours
                    };
                    let h = parse_btih(h)?;
                    match info_hash {
                        Some(old) if old != h => return Err(MagnetError::ConflictingInfoHash),
                        _ => info_hash = Some(h),
                    }
                }
                "dn" => m.name = Some(text(raw, "dn")?),
                "tr" => push_unique(&mut m.trackers, text(raw, "tr")?, MAX_TRACKERS, "tr")?,
                "ws" => push_unique(&mut m.web_seeds, text(raw, "ws")?, MAX_WEB_SEEDS, "ws")?,
                "x.pe" => {
                    let p = PeerAddr::parse(&text(raw, "x.pe")?)?;
                    push_unique(&mut m.peers, p, MAX_PEERS, "x.pe")?;
                }
                "so" => m.select_only = Some(parse_select(&text(raw, "so")?)?),
                _ => {}
            }
        }
        m.info_hash = info_hash.ok_or(MagnetError::NoInfoHash)?;
        Ok(m)
    }

    /// The canonical URI: `xt` (lowercase hex), then `dn`, `tr`…, `ws`…, `x.pe`…, `so`.
    pub fn to_uri(&self) -> String {
        let mut s = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(n) = &self.name {
            s.push_str("&dn=");
            s.push_str(&percent_encode(n.as_bytes()));
        }
        for (k, list) in [("tr", &self.trackers), ("ws", &self.web_seeds)] {
            for v in list {
                s.push('&');
                s.push_str(k);
                s.push('=');
                s.push_str(&percent_encode(v.as_bytes()));
            }
        }
        for p in &self.peers {
            s.push_str("&x.pe=");
            s.push_str(&percent_encode(p.to_string().as_bytes()));
        }
        if let Some(sel) = &self.select_only {
            s.push_str("&so=");
            let parts: Vec<String> = sel
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            s.push_str(&parts.join(","));
        }
        s
    }

    /// Whether file `index` is selected (always true without `so`).
    pub fn selects(&self, index: u32) -> bool {
        self.select_only
            .as_ref()
            .is_none_or(|r| r.iter().any(|&(a, b)| (a..=b).contains(&index)))
    }
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl std::str::FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Magnet, MagnetError> {
        Magnet::parse(s)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn text(raw: &str, key: &'static str) -> Result<String, MagnetError> {
    let bytes = percent_decode(raw).map_err(|_| MagnetError::Encoding(key))?;
    if bytes.len() > MAX_VALUE_LEN {
        return Err(MagnetError::TooLong);
    }
    String::from_utf8(bytes).map_err(|_| MagnetError::Encoding(key))
}

fn push_unique<T: PartialEq>(
    list: &mut Vec<T>,
    v: T,
    max: usize,
    key: &'static str,
) -> Result<(), MagnetError> {
    if list.contains(&v) {
        return Ok(());
    }
    if list.len() >= max {
        return Err(MagnetError::TooMany(key));
    }
    list.push(v);
    Ok(())
}

fn parse_btih(h: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(h.chars().take(64).collect());
    match h.len() {
        40 => InfoHash::from_hex(h).ok_or_else(bad),
        32 => base32_decode(h).map(InfoHash).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// RFC 4648 base32 (no padding), either case: 32 characters into 20 bytes.
fn base32_decode(s: &str) -> Option<[u8; 20]> {
    let bytes = data_encoding::BASE32_NOPAD
        .decode(s.to_ascii_uppercase().as_bytes())
        .ok()?;
    <[u8; 20]>::try_from(bytes.as_slice()).ok()
}

fn parse_select(s: &str) -> Result<Vec<(u32, u32)>, MagnetError> {
    let bad = || MagnetError::BadSelect(s.chars().take(100).collect());
    let mut out = Vec::new();
    for part in s.split(',') {
        if out.len() >= MAX_SELECT_RANGES {
            return Err(MagnetError::TooMany("so"));
        }
        let num = |t: &str| -> Result<u32, MagnetError> {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let a = num(part)?;
                (a, a)
            }
        };
        if a > b {
            return Err(bad());
        }
        out.push((a, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_and_hex_give_the_same_hash() {
        let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        let a = Magnet::parse(&format!("magnet:?xt=urn:btih:{hex}")).unwrap();
        let b = Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}")).unwrap();
        let c = Magnet::parse(&format!("magnet:?xt=urn:btih:{}", b32.to_lowercase())).unwrap();
        assert_eq!(a.info_hash, b.info_hash);
        assert_eq!(a.info_hash, c.info_hash);
    }

    #[test]
    fn base32_with_a_bad_character_is_refused() {
        assert!(base32_decode("YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1").is_none());
        assert!(base32_decode("YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE").is_none());
    }
}
