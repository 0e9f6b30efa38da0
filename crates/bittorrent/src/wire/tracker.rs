//! Tracker protocol codecs: HTTP announce and scrape (BEP 3, compact peers BEP 23, BEP 7
//! `peers6`) and the UDP tracker protocol (BEP 15). Both directions of each are here: the
//! tracker server ([`crate::tracker_server`]) decodes requests and encodes replies, the client
//! does the opposite. Every decoder returns a typed error on malformed, truncated or oversized
//! input.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use thiserror::Error;

use crate::bencode::{self, Limits, OwnedValue, Value};
use crate::metainfo::InfoHash;

/// Why a tracker request or reply is refused; the message is what a tracker sends back as
/// `failure reason`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerError {
    /// A query parameter is missing or malformed.
    #[error("invalid or missing parameter `{0}`")]
    Param(&'static str),
    /// Bad percent-encoding.
    #[error("bad percent-encoding")]
    Percent,
    /// The reply is not valid bencode.
    #[error("reply is not bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// The reply lacks a required field.
    #[error("reply lacks `{0}`")]
    Field(&'static str),
    /// The tracker answered with a failure.
    #[error("tracker failure: {0}")]
    Failure(String),
    /// A UDP packet of the wrong size or with an unknown action.
    #[error("malformed UDP tracker packet")]
    Udp,
    /// An HTTP message we cannot parse.
    #[error("malformed HTTP message: {0}")]
    Http(&'static str),
}

// ---------------------------------------------------------------------------------------
// Percent-encoding (RFC 3986 unreserved characters stay as they are).

/// What [`percent_encode`] escapes: everything but RFC 3986's unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes bytes for a query string.
pub fn percent_encode(b: &[u8]) -> String {
    percent_encoding::percent_encode(b, QUERY).to_string()
}

/// Decodes percent-encoding (and `+` as space, as HTML forms do); rejects truncated or
/// non-hex escapes (which the `percent-encoding` crate would pass through).
pub fn percent_decode(s: &str) -> Result<Vec<u8>, TrackerError> {
    let b = s.as_bytes();
    for (i, _) in b.iter().enumerate().filter(|(_, c)| **c == b'%') {
        let hex = b.get(i + 1..i + 3).ok_or(TrackerError::Percent)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(TrackerError::Percent);
        }
    }
    let plus: Vec<u8> = b
        .iter()
        .map(|&c| if c == b'+' { b' ' } else { c })
        .collect();
    Ok(percent_encoding::percent_decode(&plus).collect())
}

// ---------------------------------------------------------------------------------------
// Announce.

/// The `event` of an announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AnnounceEvent {
    /// A regular update.
    #[default]
    None,
    /// The download completed.
    Completed,
    /// The first announce.
    Started,
    /// The client is leaving.
    Stopped,
}

impl AnnounceEvent {
    /// The BEP 15 number (0 none, 1 completed, 2 started, 3 stopped).
    pub fn udp_code(self) -> u32 {
        match self {
            AnnounceEvent::None => 0,
            AnnounceEvent::Completed => 1,
            AnnounceEvent::Started => 2,
            AnnounceEvent::Stopped => 3,
        }
    }

    fn from_udp(c: u32) -> Option<AnnounceEvent> {
        Some(match c {
            0 => AnnounceEvent::None,
            1 => AnnounceEvent::Completed,
            2 => AnnounceEvent::Started,
            3 => AnnounceEvent::Stopped,
            _ => return None,
        })
    }

    fn query_name(self) -> Option<&'static str> {
        match self {
            AnnounceEvent::None => None,
            AnnounceEvent::Completed => Some("completed"),
            AnnounceEvent::Started => Some("started"),
            AnnounceEvent::Stopped => Some("stopped"),
        }
    }
}

/// An announce, as both the HTTP query and the UDP packet carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing client's peer id.
    pub peer_id: [u8; 20],
    /// The port it accepts peer connections on.
    pub port: u16,
    /// Bytes uploaded so far.
    pub uploaded: u64,
    /// Bytes downloaded so far.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// started / completed / stopped / none.
    pub event: AnnounceEvent,
    /// Peers wanted (`None`: the tracker's default).
    pub numwant: Option<u32>,
    /// Whether compact peer lists are accepted (HTTP only; UDP is always compact).
    pub compact: bool,
    /// A random key identifying the client across IP changes.
    pub key: Option<u32>,
}

/// Most peers one announce reply lists.
pub const MAX_NUMWANT: u32 = 200;

impl AnnounceRequest {
    /// The query string (without `?`) for an HTTP announce.
    pub fn to_query(&self) -> String {
        let mut q = format!(
            "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact={}",
            percent_encode(&self.info_hash.0),
            percent_encode(&self.peer_id),
            self.port,
            self.uploaded,
            self.downloaded,
            self.left,
            u8::from(self.compact),
        );
        if let Some(e) = self.event.query_name() {
            let _ = write!(q, "&event={e}");
        }
        if let Some(n) = self.numwant {
            let _ = write!(q, "&numwant={n}");
        }
        if let Some(k) = self.key {
            let _ = write!(q, "&key={k:08x}");
        }
        q
    }

    /// Parses an HTTP announce query string (the part after `?`).
    pub fn from_query(q: &str) -> Result<AnnounceRequest, TrackerError> {
        let mut info_hash = None;
        let mut peer_id = None;
        let mut port = None;
        let mut uploaded = 0;
        let mut downloaded = 0;
        let mut left = None;
        let mut event = AnnounceEvent::None;
        let mut numwant = None;
        let mut compact = false;
        let mut key = None;
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "info_hash" => {
                    info_hash = Some(
                        InfoHash::from_slice(&percent_decode(v)?)
                            .ok_or(TrackerError::Param("info_hash"))?,
                    );
                }
                "peer_id" => {
                    peer_id = Some(
                        <[u8; 20]>::try_from(percent_decode(v)?.as_slice())
                            .map_err(|_| TrackerError::Param("peer_id"))?,
                    );
                }
                "port" => port = Some(v.parse::<u16>().map_err(|_| TrackerError::Param("port"))?),
                "uploaded" => uploaded = num(v, "uploaded")?,
                "downloaded" => downloaded = num(v, "downloaded")?,
                "left" => left = Some(num(v, "left")?),
                "numwant" => {
                    numwant = Some(
                        v.parse::<i64>()
                            .map_err(|_| TrackerError::Param("numwant"))?
                            .clamp(0, i64::from(MAX_NUMWANT)) as u32,
                    );
                }
                "compact" => compact = v == "1",
                "event" => {
                    event = match v {
                        "" | "empty" | "paused" => AnnounceEvent::None,
                        "started" => AnnounceEvent::Started,
                        "completed" => AnnounceEvent::Completed,
                        "stopped" => AnnounceEvent::Stopped,
                        _ => return Err(TrackerError::Param("event")),
                    }
                }
                "key" => key = u32::from_str_radix(v, 16).ok(),
                _ => {}
            }
        }
        let port = port.ok_or(TrackerError::Param("port"))?;
        if port == 0 && event != AnnounceEvent::Stopped {
            return Err(TrackerError::Param("port"));
        }
        Ok(AnnounceRequest {
            info_hash: info_hash.ok_or(TrackerError::Param("info_hash"))?,
            peer_id: peer_id.ok_or(TrackerError::Param("peer_id"))?,
            port,
            uploaded,
            downloaded,
            left: left.ok_or(TrackerError::Param("left"))?,
            event,
            numwant,
            compact,
            key,
        })
    }
}

fn num(v: &str, what: &'static str) -> Result<u64, TrackerError> {
    v.parse().map_err(|_| TrackerError::Param(what))
}

/// Parses an HTTP scrape query: zero or more `info_hash` parameters (zero means all).
pub fn scrape_query(q: &str) -> Result<Vec<InfoHash>, TrackerError> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        if let Some(("info_hash", v)) = pair.split_once('=') {
            if out.len() >= MAX_SCRAPE {
                return Err(TrackerError::Param("info_hash"));
            }
            out.push(
                InfoHash::from_slice(&percent_decode(v)?)
                    .ok_or(TrackerError::Param("info_hash"))?,
            );
        }
    }
    Ok(out)
}

/// Most info-hashes one scrape may ask about (BEP 15's packet holds about 74).
pub const MAX_SCRAPE: usize = 74;

/// A tracker's answer to an announce.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    /// Seconds the client should wait before announcing again.
    pub interval: u32,
    /// Seconds it must wait at least.
    pub min_interval: Option<u32>,
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// Peers (IPv4 and IPv6).
    pub peers: Vec<SocketAddr>,
    /// A warning to show the user.
    pub warning: Option<String>,
}

/// Encodes IPv4 peers as BEP 23 compact bytes (6 per peer) and IPv6 ones as BEP 7 (18 each).
pub fn compact_peers(peers: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in peers {
        match p {
            SocketAddr::V4(a) => {
                v4.extend_from_slice(&a.ip().octets());
                v4.extend_from_slice(&a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                v6.extend_from_slice(&a.ip().octets());
                v6.extend_from_slice(&a.port().to_be_bytes());
            }
        }
    }
    (v4, v6)
}

/// Decodes BEP 23 compact IPv4 peers; the length must be a multiple of 6.
pub fn parse_compact_v4(b: &[u8]) -> Result<Vec<SocketAddr>, TrackerError> {
    if b.len() % 6 != 0 {
        return Err(TrackerError::Field("peers"));
    }
    Ok(b.chunks_exact(6)
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([c[4], c[5]])))
        })
        .collect())
}

/// Decodes BEP 7 compact IPv6 peers; the length must be a multiple of 18.
pub fn parse_compact_v6(b: &[u8]) -> Result<Vec<SocketAddr>, TrackerError> {
    if b.len() % 18 != 0 {
        return Err(TrackerError::Field("peers6"));
    }
    Ok(b.chunks_exact(18)
        .filter_map(|c| {
            let ip: [u8; 16] = c.get(..16)?.try_into().ok()?;
            let port = u16::from_be_bytes(c.get(16..18)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                0,
            )))
        })
        .collect())
}

impl AnnounceResponse {
    /// The bencoded HTTP reply body: compact (BEP 23) or the original list of dictionaries.
    pub fn encode(&self, compact: bool) -> Vec<u8> {
        let mut d = OwnedValue::dict()
            .with("interval", OwnedValue::Int(i64::from(self.interval)))
            .with("complete", OwnedValue::Int(i64::from(self.complete)))
            .with("incomplete", OwnedValue::Int(i64::from(self.incomplete)));
        if let Some(m) = self.min_interval {
            d = d.with("min interval", OwnedValue::Int(i64::from(m)));
        }
        if let Some(w) = &self.warning {
            d = d.with("warning message", OwnedValue::bytes(w));
        }
        if compact {
            let (v4, v6) = compact_peers(&self.peers);
            d = d.with("peers", OwnedValue::Bytes(v4));
            if !v6.is_empty() {
                d = d.with("peers6", OwnedValue::Bytes(v6));
            }
        } else {
            let list = self
                .peers
                .iter()
                .map(|p| {
                    OwnedValue::dict()
                        .with("ip", OwnedValue::bytes(p.ip().to_string()))
                        .with("port", OwnedValue::Int(i64::from(p.port())))
                })
                .collect();
            d = d.with("peers", OwnedValue::List(list));
        }
        d.encode()
    }

    /// Decodes an HTTP announce reply body; a `failure reason` becomes [`TrackerError::Failure`].
    pub fn decode(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
        let v = bencode::decode(body, &Limits::lenient_order())?;
        let d = v.as_dict().ok_or(TrackerError::Field("dictionary"))?;
        if let Some(f) = d.bytes(b"failure reason") {
            return Err(TrackerError::Failure(
                String::from_utf8_lossy(f).into_owned(),
            ));
        }
        let int32 = |k: &[u8]| d.int(k).and_then(|i| u32::try_from(i).ok());
        let interval = int32(b"interval").ok_or(TrackerError::Field("interval"))?;
        let mut peers = match d.get(b"peers") {
            Some(Value::Bytes(b)) => parse_compact_v4(b)?,
            Some(Value::List(l)) => l
                .iter()
                .filter_map(|p| {
                    let p = p.as_dict()?;
                    let ip: IpAddr = p.str(b"ip")?.parse().ok()?;
                    let port = u16::try_from(p.int(b"port")?).ok()?;
                    Some(SocketAddr::new(ip, port))
                })
                .collect(),
            None => Vec::new(),
            Some(_) => return Err(TrackerError::Field("peers")),
        };
        if let Some(b) = d.bytes(b"peers6") {
            peers.extend(parse_compact_v6(b)?);
        }
        Ok(AnnounceResponse {
            interval,
            min_interval: int32(b"min interval"),
            complete: int32(b"complete").unwrap_or(0),
            incomplete: int32(b"incomplete").unwrap_or(0),
            peers,
            warning: d
                .bytes(b"warning message")
                .map(|w| String::from_utf8_lossy(w).into_owned()),
        })
    }
}

/// A tracker's failure reply body (`d14:failure reason…e`).
pub fn failure_body(reason: &str) -> Vec<u8> {
    OwnedValue::dict()
        .with("failure reason", OwnedValue::bytes(reason))
        .encode()
}

/// Counts for one torrent in a scrape reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ScrapeEntry {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads ever reported.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Encodes an HTTP scrape reply body (`d5:filesd<20-byte hash>d…eee`).
pub fn encode_scrape(entries: &[(InfoHash, ScrapeEntry)]) -> Vec<u8> {
    let files = entries.iter().fold(OwnedValue::dict(), |d, (h, e)| {
        d.with(
            h.0,
            OwnedValue::dict()
                .with("complete", OwnedValue::Int(i64::from(e.complete)))
                .with("downloaded", OwnedValue::Int(i64::from(e.downloaded)))
                .with("incomplete", OwnedValue::Int(i64::from(e.incomplete))),
        )
    });
    OwnedValue::dict().with("files", files).encode()
}

/// Decodes an HTTP scrape reply body.
pub fn decode_scrape(body: &[u8]) -> Result<Vec<(InfoHash, ScrapeEntry)>, TrackerError> {
    let v = bencode::decode(body, &Limits::lenient_order())?;
    let d = v.as_dict().ok_or(TrackerError::Field("dictionary"))?;
    if let Some(f) = d.bytes(b"failure reason") {
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(f).into_owned(),
        ));
    }
    let files = d.dict(b"files").ok_or(TrackerError::Field("files"))?;
    let mut out = Vec::new();
    for (k, v) in files.iter() {
        let h = InfoHash::from_slice(k).ok_or(TrackerError::Field("files"))?;
        let e = v.as_dict().ok_or(TrackerError::Field("files"))?;
        let n = |k: &[u8]| e.int(k).and_then(|i| u32::try_from(i).ok()).unwrap_or(0);
        out.push((
            h,
            ScrapeEntry {
                complete: n(b"complete"),
                downloaded: n(b"downloaded"),
                incomplete: n(b"incomplete"),
            },
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// UDP tracker protocol (BEP 15).

/// The magic constant of a connect request.
pub const UDP_PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// A client-to-tracker UDP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpRequest {
    /// Ask for a connection id.
    Connect {
        /// Transaction id.
        transaction_id: u32,
    },
    /// Announce.
    Announce {
        /// From a connect reply.
        connection_id: u64,
        /// Transaction id.
        transaction_id: u32,
        /// The announce (its `compact` is ignored: UDP is always compact).
        req: AnnounceRequest,
        /// IPv4 address to list instead of the sender's (0: the sender's).
        ip: u32,
    },
    /// Scrape.
    Scrape {
        /// From a connect reply.
        connection_id: u64,
        /// Transaction id.
        transaction_id: u32,
        /// Up to [`MAX_SCRAPE`] torrents.
        info_hashes: Vec<InfoHash>,
    },
}

/// A tracker-to-client UDP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpResponse {
    /// A connection id.
    Connect {
        /// Transaction id.
        transaction_id: u32,
        /// Valid for about a minute.
        connection_id: u64,
    },
    /// Announce reply (IPv4 peers).
    Announce {
        /// Transaction id.
        transaction_id: u32,
        /// Seconds until the next announce.
        interval: u32,
        /// Leechers.
        leechers: u32,
        /// Seeders.
        seeders: u32,
        /// Peers.
        peers: Vec<SocketAddrV4>,
    },
    /// Scrape reply, in request order.
    Scrape {
        /// Transaction id.
        transaction_id: u32,
        /// One entry per requested torrent.
        entries: Vec<ScrapeEntry>,
    },
    /// An error.
    Error {
        /// Transaction id.
        transaction_id: u32,
        /// The message.
        message: String,
    },
}

struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TrackerError> {
        if self.0.len() < n {
            return Err(TrackerError::Udp);
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u32(&mut self) -> Result<u32, TrackerError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| TrackerError::Udp)?,
        ))
    }
    fn u64(&mut self) -> Result<u64, TrackerError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| TrackerError::Udp)?,
        ))
    }
    fn u16(&mut self) -> Result<u16, TrackerError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().map_err(|_| TrackerError::Udp)?,
        ))
    }
    fn arr20(&mut self) -> Result<[u8; 20], TrackerError> {
        self.take(20)?.try_into().map_err(|_| TrackerError::Udp)
    }
}

impl UdpRequest {
    /// The packet bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(98);
        match self {
            UdpRequest::Connect { transaction_id } => {
                o.extend_from_slice(&UDP_PROTOCOL_ID.to_be_bytes());
                o.extend_from_slice(&0u32.to_be_bytes());
                o.extend_from_slice(&transaction_id.to_be_bytes());
            }
            UdpRequest::Announce {
                connection_id,
                transaction_id,
                req,
                ip,
            } => {
                o.extend_from_slice(&connection_id.to_be_bytes());
                o.extend_from_slice(&1u32.to_be_bytes());
                o.extend_from_slice(&transaction_id.to_be_bytes());
                o.extend_from_slice(&req.info_hash.0);
                o.extend_from_slice(&req.peer_id);
                o.extend_from_slice(&req.downloaded.to_be_bytes());
                o.extend_from_slice(&req.left.to_be_bytes());
                o.extend_from_slice(&req.uploaded.to_be_bytes());
                o.extend_from_slice(&req.event.udp_code().to_be_bytes());
                o.extend_from_slice(&ip.to_be_bytes());
                o.extend_from_slice(&req.key.unwrap_or(0).to_be_bytes());
                let nw: i32 = req
                    .numwant
                    .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
                o.extend_from_slice(&nw.to_be_bytes());
                o.extend_from_slice(&req.port.to_be_bytes());
            }
            UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                o.extend_from_slice(&connection_id.to_be_bytes());
                o.extend_from_slice(&2u32.to_be_bytes());
                o.extend_from_slice(&transaction_id.to_be_bytes());
                for h in info_hashes {
                    o.extend_from_slice(&h.0);
                }
            }
        }
        o
    }

    /// Parses a packet; extension bytes after an announce (BEP 41) are ignored.
    pub fn decode(b: &[u8]) -> Result<UdpRequest, TrackerError> {
        let mut r = Rd(b);
        let connection_id = r.u64()?;
        let action = r.u32()?;
        let transaction_id = r.u32()?;
        match action {
            0 if connection_id == UDP_PROTOCOL_ID => Ok(UdpRequest::Connect { transaction_id }),
            1 => {
                let info_hash = InfoHash(r.arr20()?);
                let peer_id = r.arr20()?;
                let downloaded = r.u64()?;
                let left = r.u64()?;
                let uploaded = r.u64()?;
                let event = AnnounceEvent::from_udp(r.u32()?).ok_or(TrackerError::Udp)?;
                let ip = r.u32()?;
                let key = r.u32()?;
                let nw = r.u32()? as i32;
                let port = r.u16()?;
                Ok(UdpRequest::Announce {
                    connection_id,
                    transaction_id,
                    ip,
                    req: AnnounceRequest {
                        info_hash,
                        peer_id,
                        port,
                        uploaded,
                        downloaded,
                        left,
                        event,
                        numwant: u32::try_from(nw).ok().map(|n| n.min(MAX_NUMWANT)),
                        compact: true,
                        key: Some(key),
                    },
                })
            }
            2 => {
                let rest = r.0;
                if rest.is_empty() || rest.len() % 20 != 0 || rest.len() / 20 > MAX_SCRAPE {
                    return Err(TrackerError::Udp);
                }
                Ok(UdpRequest::Scrape {
                    connection_id,
                    transaction_id,
                    info_hashes: rest
                        .chunks_exact(20)
                        .filter_map(InfoHash::from_slice)
                        .collect(),
                })
            }
            _ => Err(TrackerError::Udp),
        }
    }
}

impl UdpResponse {
    /// The packet bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(64);
        match self {
            UdpResponse::Connect {
                transaction_id,
                connection_id,
            } => {
                o.extend_from_slice(&0u32.to_be_bytes());
                o.extend_from_slice(&transaction_id.to_be_bytes());
                o.extend_from_slice(&connection_id.to_be_bytes());
            }
            UdpResponse::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            } => {
                o.extend_from_slice(&1u32.to_be_bytes());
                o.extend_from_slice(&transaction_id.to_be_bytes());
                o.extend_from_slice(&interval.to_be_bytes());
                o.extend_from_slice(&leechers.to_be_bytes());
                o.extend_from_slice(&seeders.to_be_bytes());
                for p in peers {
                    o.extend_from_slice(&p.ip().octets());
                    o.extend_from_slice(&p.port().to_be_bytes());
                }
            }
            UdpResponse::Scrape {
                transaction_id,
                entries,
            } => {
                o.extend_from_slice(&2u32.to_be_bytes());
                o.extend_from_slice(&transaction_id.to_be_bytes());
                for e in entries {
                    o.extend_from_slice(&e.complete.to_be_bytes());
                    o.extend_from_slice(&e.downloaded.to_be_bytes());
                    o.extend_from_slice(&e.incomplete.to_be_bytes());
                }
            }
            UdpResponse::Error {
                transaction_id,
                message,
            } => {
                o.extend_from_slice(&3u32.to_be_bytes());
                o.extend_from_slice(&transaction_id.to_be_bytes());
                o.extend_from_slice(message.as_bytes());
            }
        }
        o
    }

    /// Parses a packet.
    pub fn decode(b: &[u8]) -> Result<UdpResponse, TrackerError> {
        let mut r = Rd(b);
        let action = r.u32()?;
        let transaction_id = r.u32()?;
        match action {
            0 => {
                let connection_id = r.u64()?;
                Ok(UdpResponse::Connect {
                    transaction_id,
                    connection_id,
                })
            }
            1 => {
                let interval = r.u32()?;
                let leechers = r.u32()?;
                let seeders = r.u32()?;
                let peers = parse_compact_v4(r.0)?
                    .into_iter()
                    .filter_map(|p| match p {
                        SocketAddr::V4(a) => Some(a),
                        SocketAddr::V6(_) => None,
                    })
                    .collect();
                Ok(UdpResponse::Announce {
                    transaction_id,
                    interval,
                    leechers,
                    seeders,
                    peers,
                })
            }
            2 => {
                if r.0.len() % 12 != 0 {
                    return Err(TrackerError::Udp);
                }
                let mut entries = Vec::with_capacity(r.0.len() / 12);
                while !r.0.is_empty() {
                    entries.push(ScrapeEntry {
                        complete: r.u32()?,
                        downloaded: r.u32()?,
                        incomplete: r.u32()?,
                    });
                }
                Ok(UdpResponse::Scrape {
                    transaction_id,
                    entries,
                })
            }
            3 => Ok(UdpResponse::Error {
                transaction_id,
                message: String::from_utf8_lossy(r.0).into_owned(),
            }),
            _ => Err(TrackerError::Udp),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Minimal HTTP/1.x framing for trackers.

/// The largest HTTP request head a tracker reads.
pub const MAX_HTTP_HEAD: usize = 8192;

/// An HTTP request line's method and target, from a complete request head.
pub fn parse_request_head(head: &[u8]) -> Result<(String, String), TrackerError> {
    let text = std::str::from_utf8(head).map_err(|_| TrackerError::Http("not UTF-8"))?;
    let line = text
        .lines()
        .next()
        .ok_or(TrackerError::Http("empty request"))?;
    let mut parts = line.split(' ');
    let method = parts.next().ok_or(TrackerError::Http("no method"))?;
    let target = parts.next().ok_or(TrackerError::Http("no target"))?;
    let version = parts.next().ok_or(TrackerError::Http("no version"))?;
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Err(TrackerError::Http("bad request line"));
    }
    Ok((method.to_string(), target.to_string()))
}

/// A complete HTTP/1.0 response with a body.
pub fn http_response(status: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut o = format!(
        "HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    o.extend_from_slice(body);
    o
}

/// Splits an HTTP response into status and body: the head must be complete, and the body is
/// `Content-Length` bytes or everything up to the close.
pub fn parse_http_response(data: &[u8]) -> Result<(u16, &[u8]), TrackerError> {
    let end = servent_core::framing::find(data, b"\r\n\r\n")
        .ok_or(TrackerError::Http("truncated head"))?;
    let head = std::str::from_utf8(data.get(..end).unwrap_or_default())
        .map_err(|_| TrackerError::Http("head not UTF-8"))?;
    let body = data.get(end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or(TrackerError::Http("no status line"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or(TrackerError::Http("bad status line"))?;
    let mut len = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = Some(
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| TrackerError::Http("bad length"))?,
                );
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && !v.trim().eq_ignore_ascii_case("identity")
            {
                return Err(TrackerError::Http("chunked bodies are not supported"));
            }
        }
    }
    let body = match len {
        Some(n) => body.get(..n).ok_or(TrackerError::Http("truncated body"))?,
        None => body,
    };
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([0x12; 20]),
            peer_id: *b"-SV0001-abcdefghijkl",
            port: 6881,
            uploaded: 10,
            downloaded: 20,
            left: 30,
            event: AnnounceEvent::Started,
            numwant: Some(50),
            compact: true,
            key: Some(0xdead_beef),
        }
    }

    #[test]
    fn announce_query_golden_and_round_trip() {
        let q = req().to_query();
        assert_eq!(
            q,
            "info_hash=%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12\
             &peer_id=-SV0001-abcdefghijkl&port=6881&uploaded=10&downloaded=20&left=30\
             &compact=1&event=started&numwant=50&key=deadbeef"
        );
        assert_eq!(AnnounceRequest::from_query(&q), Ok(req()));
    }

    #[test]
    fn malformed_announces_name_the_bad_parameter() {
        let ok = req().to_query();
        let cases = [
            (ok.replace("port=6881", "port=99999"), "port"),
            (ok.replace("left=30", "left=-1"), "left"),
            (ok.replace("info_hash=%12", "info_hash="), "info_hash"),
            (ok.replace("peer_id=-", "peer_id="), "peer_id"),
            (ok.replace("event=started", "event=bogus"), "event"),
            (ok.replace("&port=6881", ""), "port"),
        ];
        for (q, what) in cases {
            assert_eq!(
                AnnounceRequest::from_query(&q),
                Err(TrackerError::Param(what)),
                "{q}"
            );
        }
        assert_eq!(
            AnnounceRequest::from_query(&ok.replace("%12&", "%1&")),
            Err(TrackerError::Percent)
        );
    }

    #[test]
    fn compact_reply_golden_bytes() {
        let r = AnnounceResponse {
            interval: 1800,
            min_interval: None,
            complete: 1,
            incomplete: 2,
            peers: vec!["10.0.0.1:6881".parse().unwrap()],
            warning: None,
        };
        let body = r.encode(true);
        assert_eq!(
            body,
            b"d8:completei1e10:incompletei2e8:intervali1800e5:peers6:\x0a\x00\x00\x01\x1a\xe1e"
        );
        assert_eq!(AnnounceResponse::decode(&body), Ok(r.clone()));
        let full = r.encode(false);
        assert_eq!(
            full,
            b"d8:completei1e10:incompletei2e8:intervali1800e5:peersld2:ip8:10.0.0.14:porti6881eeee"
        );
        assert_eq!(AnnounceResponse::decode(&full), Ok(r));
        assert_eq!(
            AnnounceResponse::decode(&failure_body("nope")),
            Err(TrackerError::Failure("nope".into()))
        );
    }

    #[test]
    fn ipv6_peers_travel_in_peers6() {
        let r = AnnounceResponse {
            interval: 60,
            peers: vec!["1.2.3.4:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(AnnounceResponse::decode(&r.encode(true)), Ok(r));
    }

    #[test]
    fn scrape_round_trips() {
        let e = vec![(
            InfoHash([1; 20]),
            ScrapeEntry {
                complete: 3,
                downloaded: 4,
                incomplete: 5,
            },
        )];
        assert_eq!(decode_scrape(&encode_scrape(&e)), Ok(e));
        let q = format!(
            "info_hash={}&info_hash={}",
            percent_encode(&[1; 20]),
            percent_encode(&[2; 20])
        );
        assert_eq!(
            scrape_query(&q),
            Ok(vec![InfoHash([1; 20]), InfoHash([2; 20])])
        );
    }

    #[test]
    fn udp_connect_golden_bytes() {
        let c = UdpRequest::Connect {
            transaction_id: 0x0102_0304,
        };
        assert_eq!(
            c.encode(),
            [
                0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4
            ]
        );
        assert_eq!(UdpRequest::decode(&c.encode()), Ok(c));
        // A connect with the wrong magic is not a connect.
        let mut bad = UdpRequest::Connect { transaction_id: 1 }.encode();
        bad[0] = 1;
        assert_eq!(UdpRequest::decode(&bad), Err(TrackerError::Udp));
    }

    #[test]
    fn udp_announce_is_98_bytes_and_round_trips() {
        let a = UdpRequest::Announce {
            connection_id: 77,
            transaction_id: 5,
            req: req(),
            ip: 0,
        };
        let b = a.encode();
        assert_eq!(b.len(), 98);
        assert_eq!(&b[8..12], &[0, 0, 0, 1]);
        assert_eq!(&b[80..84], &[0, 0, 0, 2], "event started = 2");
        assert_eq!(UdpRequest::decode(&b), Ok(a));
        assert_eq!(UdpRequest::decode(&b[..97]), Err(TrackerError::Udp));
        let r = UdpResponse::Announce {
            transaction_id: 5,
            interval: 900,
            leechers: 1,
            seeders: 2,
            peers: vec!["127.0.0.1:80".parse().unwrap()],
        };
        let rb = r.encode();
        assert_eq!(rb.len(), 26);
        assert_eq!(UdpResponse::decode(&rb), Ok(r));
    }

    #[test]
    fn http_response_parsing_respects_content_length() {
        let r = http_response(200, "OK", "text/plain", b"hello");
        assert_eq!(parse_http_response(&r), Ok((200, &b"hello"[..])));
        assert_eq!(
            parse_http_response(&r[..r.len() - 1]),
            Err(TrackerError::Http("truncated body"))
        );
        assert_eq!(
            parse_request_head(b"GET /announce?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(("GET".into(), "/announce?x=1".into()))
        );
        assert!(parse_request_head(b"GET /x\r\n\r\n").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = UdpRequest::decode(&data);
            let _ = UdpResponse::decode(&data);
            let _ = AnnounceResponse::decode(&data);
            let _ = decode_scrape(&data);
            let _ = parse_http_response(&data);
            let _ = parse_request_head(&data);
            if let Ok(s) = std::str::from_utf8(&data) {
                let _ = AnnounceRequest::from_query(s);
                let _ = scrape_query(s);
                let _ = percent_decode(s);
            }
        }

        #[test]
        fn percent_encoding_round_trips(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(percent_decode(&percent_encode(&data)).unwrap(), data);
        }

        #[test]
        fn udp_scrape_round_trips(hashes in proptest::collection::vec(any::<[u8; 20]>(), 1..74), tid in any::<u32>()) {
            let s = UdpRequest::Scrape { connection_id: 9, transaction_id: tid, info_hashes: hashes.into_iter().map(InfoHash).collect() };
            prop_assert_eq!(UdpRequest::decode(&s.encode()), Ok(s));
        }
    }
}
