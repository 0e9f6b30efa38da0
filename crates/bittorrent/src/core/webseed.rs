//! BEP 19 (GetRight-style) web seeds: downloading pieces from plain HTTP servers.
//!
//! A web seed is a URL under which the torrent's files are served as ordinary files. A piece
//! maps onto one or more byte ranges of one or more files; [`piece_segments`] computes them
//! (the file's URL is the seed URL plus the torrent's name — and, for multi-file torrents, the
//! file's path — each component percent-encoded), and [`HttpUrl::get_request`] writes the
//! HTTP/1.1 `GET` with a `Range` header for one segment. [`ResponseReader`] parses the answer
//! from the bytes the driver reads: a bounded head, `206` with a `Content-Range` that must be
//! exactly the range asked for (or `200` when the server ignores `Range`, if the bytes to skip
//! are few), redirects and `503`/`429` reported to the driver, chunked transfer refused, and
//! exactly the expected body bytes appended to the caller's buffer.
//!
//! # How a driver uses it
//! 1. `let segs = piece_segments(&metainfo, &seed_url, piece)?;` — for each
//!    [`Segment`] with [`Source::Http`], connect to `url.host:url.port` (the driver does DNS;
//!    one keep-alive connection per seed is enough), send
//!    `url.get_request(range, "servent")` and read with a fresh
//!    [`ResponseReader::new(range)`](ResponseReader::new); the body bytes go to the piece
//!    buffer at `seg.piece_offset`. [`Source::Zeros`] segments (BEP 47 pad files) are zeros.
//! 2. Feed every read to [`ResponseReader::feed`]: [`Status::NeedMore`]; [`Status::Done`]
//!    (`consumed` bytes of the input belonged to this response — the rest starts the next
//!    one; reconnect if `keep_alive` is false); [`Status::Redirect`] (close, resolve with
//!    [`HttpUrl::join`], at most [`MAX_REDIRECTS`] times); [`Status::Unavailable`] (close, try
//!    again after `retry_after` seconds or later). An `Err` means: close, and stop using this
//!    seed for a while.
//! 3. When every segment is in, verify the piece's SHA-1 like any other piece: a web seed
//!    that serves bad data is dropped like a peer that does.
//!
//! No TLS: `https://` seeds are refused with [`WebSeedError::Unsupported`].

use std::fmt::Write as _;
use std::ops::Range;

use thiserror::Error;

use crate::metainfo::Metainfo;

/// The largest response head accepted.
pub const MAX_HEAD: usize = 16 << 10;
/// The most header lines accepted.
pub const MAX_HEADERS: usize = 100;
/// Redirects a driver should follow for one request at most.
pub const MAX_REDIRECTS: usize = 5;
/// A `200` (range ignored) is used only when at most this many leading bytes are skipped.
pub const MAX_SKIP: u64 = 4 << 20;
/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 4096;

/// Why a web seed URL, request or response is refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebSeedError {
    /// Not an `http://` URL we can use (https needs TLS, which this client lacks).
    #[error("web seed: unsupported URL {0:?}")]
    Unsupported(String),
    /// A malformed URL.
    #[error("web seed: invalid URL {0:?}")]
    BadUrl(String),
    /// The piece index is past the end of the torrent.
    #[error("web seed: no piece {0}")]
    NoSuchPiece(u32),
    /// The response head is larger than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] lines.
    #[error("web seed: response head too large")]
    HeadTooLarge,
    /// The response is not HTTP/1.x or a header line is malformed.
    #[error("web seed: malformed response: {0}")]
    Malformed(&'static str),
    /// A status we cannot use.
    #[error("web seed: HTTP status {0}")]
    Status(u16),
    /// `Content-Range`/`Content-Length` disagree with the range asked for.
    #[error("web seed: the server sent a different range than asked ({0})")]
    WrongRange(&'static str),
    /// `Transfer-Encoding: chunked` (or any transfer coding) — not supported.
    #[error("web seed: transfer codings are not supported")]
    Chunked,
    /// A `200` for a range starting more than [`MAX_SKIP`] bytes into the file.
    #[error("web seed: the server ignores Range and the piece is {0} bytes into the file")]
    RangeIgnored(u64),
    /// Input after the response was complete.
    #[error("web seed: response already complete")]
    Finished,
}

/// An `http://` URL split for the driver: where to connect and what to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (80 if the URL names none).
    pub port: u16,
    /// The request target: path and query, percent-encoded, starting with `/`.
    pub target: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path][?query]` (a fragment is dropped).
    pub fn parse(url: &str) -> Result<HttpUrl, WebSeedError> {
        let bad = || WebSeedError::BadUrl(url.chars().take(200).collect());
        if url.len() > MAX_URL_LEN {
            return Err(bad());
        }
        let rest = match url.get(..7) {
            Some(s) if s.eq_ignore_ascii_case("http://") => url.get(7..).unwrap_or_default(),
            _ => return Err(WebSeedError::Unsupported(url.chars().take(200).collect())),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i..).unwrap_or("/"),
            ),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad()); // credentials in URLs are not for us to send
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad)?,
            None => 80,
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b':' | b'_'));
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_string()
        };
        let target_ok = target.bytes().all(|c| c.is_ascii_graphic());
        if !host_ok || !target_ok {
            return Err(bad());
        }
        Ok(HttpUrl {
            host: host.to_ascii_lowercase(),
            port,
            target,
        })
    }

    /// The URL as text.
    pub fn to_url(&self) -> String {
        format!("http://{}{}", self.authority(), self.target)
    }

    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves a `Location` header against this URL (absolute `http://` URLs and absolute
    /// paths; anything else is refused).
    pub fn join(&self, location: &str) -> Result<HttpUrl, WebSeedError> {
        let location = location.trim();
        if location.starts_with('/') && !location.starts_with("//") {
            HttpUrl::parse(&format!("http://{}{location}", self.authority()))
        } else {
            HttpUrl::parse(location)
        }
    }

    /// The request for bytes `range` (file offsets, end exclusive, non-empty) of this URL.
    pub fn get_request(&self, range: Range<u64>, user_agent: &str) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nRange: bytes={}-{}\r\n\
             Accept-Encoding: identity\r\nConnection: keep-alive\r\n\r\n",
            self.target,
            self.authority(),
            user_agent.replace(['\r', '\n'], " "),
            range.start,
            range.end.saturating_sub(1).max(range.start),
        );
        s.into_bytes()
    }
}

/// Where a segment's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Bytes `range` of the file at `url`.
    Http {
        /// The file's URL.
        url: HttpUrl,
        /// Byte offsets in the file (end exclusive).
        range: Range<u64>,
        /// Index of the file in the torrent.
        file_index: usize,
    },
    /// A BEP 47 pad file: zeros, never fetched.
    Zeros,
}

/// One part of a piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the segment in the piece.
    pub piece_offset: u32,
    /// Bytes in the segment.
    pub len: u32,
    /// Where they come from.
    pub source: Source,
}

/// Percent-encodes one path component (RFC 3986 unreserved characters stay).
fn encode_component(out: &mut String, c: &str) {
    out.push_str(&crate::tracker::percent_encode(c.as_bytes()));
}

/// The URL of file `index` of `meta` under the web seed `seed` (BEP 19: single-file torrents
/// use the seed URL itself unless it ends in `/`, then the name is appended; multi-file
/// torrents append `name/path…`).
pub fn file_url(meta: &Metainfo, seed: &str, index: usize) -> Result<HttpUrl, WebSeedError> {
    let base = HttpUrl::parse(seed)?;
    let file = meta
        .files
        .get(index)
        .ok_or(WebSeedError::NoSuchPiece(u32::MAX))?;
    let (path, query) = match base.target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (base.target.clone(), None),
    };
    let mut target = path;
    if meta.multi_file {
        if !target.ends_with('/') {
            target.push('/');
        }
        encode_component(&mut target, &meta.name);
        for c in &file.path {
            target.push('/');
            encode_component(&mut target, c);
        }
    } else if target.ends_with('/') {
        encode_component(&mut target, &meta.name);
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(&q);
    }
    Ok(HttpUrl { target, ..base })
}

/// The segments of piece `piece` of `meta` as served by the web seed `seed`, in piece order
/// (one per file the piece touches; empty files are skipped).
pub fn piece_segments(
    meta: &Metainfo,
    seed: &str,
    piece: u32,
) -> Result<Vec<Segment>, WebSeedError> {
    let index = piece as usize;
    if index >= meta.piece_count() {
        return Err(WebSeedError::NoSuchPiece(piece));
    }
    let start = (piece as u64).saturating_mul(meta.piece_length);
    let end = start.saturating_add(meta.piece_len(index));
    HttpUrl::parse(seed)?;
    let mut out = Vec::new();
    for (i, f) in meta.files.iter().enumerate() {
        let (fs, fe) = (f.offset, f.offset.saturating_add(f.length));
        if fe <= start || fs >= end || f.length == 0 {
            continue;
        }
        let (s, e) = (fs.max(start), fe.min(end));
        let source = if f.pad {
            Source::Zeros
        } else {
            Source::Http {
                url: file_url(meta, seed, i)?,
                range: (s - fs)..(e - fs),
                file_index: i,
            }
        };
        out.push(Segment {
            piece_offset: (s - start) as u32,
            len: (e - s) as u32,
            source,
        });
    }
    Ok(out)
}

/// What [`ResponseReader::feed`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// All input was used; feed more.
    NeedMore,
    /// The body is complete. `consumed` bytes of the last input belonged to this response.
    Done {
        /// Bytes of the last `feed` input used.
        consumed: usize,
        /// Whether the connection may carry the next request.
        keep_alive: bool,
    },
    /// A redirect to `location` (resolve it with [`HttpUrl::join`]); close the connection.
    Redirect {
        /// The `Location` header.
        location: String,
    },
    /// `503` or `429`: try later (`Retry-After` in seconds, if given); close the connection.
    Unavailable {
        /// Seconds to wait, if the server said.
        retry_after: Option<u64>,
    },
}

#[derive(Debug)]
enum RState {
    Head,
    Body {
        skip: u64,
        take: u64,
        keep_alive: bool,
    },
    Done,
}

/// Reads one HTTP response to a range request (see the module docs).
#[derive(Debug)]
pub struct ResponseReader {
    range: Range<u64>,
    head: Vec<u8>,
    state: RState,
}

impl ResponseReader {
    /// A reader for the response to a request for file bytes `range`.
    pub fn new(range: Range<u64>) -> ResponseReader {
        ResponseReader {
            range,
            head: Vec::new(),
            state: RState::Head,
        }
    }

    /// Feeds bytes read from the connection; appends body bytes of the range to `body`.
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<Status, WebSeedError> {
        let mut used = 0usize;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            match &mut self.state {
                RState::Done => return Err(WebSeedError::Finished),
                RState::Head => {
                    // Look for the blank line in what we hold plus the new input.
                    let old = self.head.len();
                    let take = rest.len().min(MAX_HEAD + 4 - old.min(MAX_HEAD + 4));
                    self.head
                        .extend_from_slice(rest.get(..take).unwrap_or_default());
                    let from = old.saturating_sub(3);
                    let Some(end) = self
                        .head
                        .get(from..)
                        .and_then(|h| h.windows(4).position(|w| w == b"\r\n\r\n"))
                        .map(|p| from + p + 4)
                    else {
                        if self.head.len() > MAX_HEAD {
                            self.state = RState::Done;
                            return Err(WebSeedError::HeadTooLarge);
                        }
                        return Ok(Status::NeedMore);
                    };
                    if end > MAX_HEAD {
                        self.state = RState::Done;
                        return Err(WebSeedError::HeadTooLarge);
                    }
                    used += end - old;
                    let head = std::mem::take(&mut self.head);
                    let next = self.on_head(head.get(..end).unwrap_or_default());
                    match next {
                        Ok(Ok(state)) => self.state = state,
                        Ok(Err(status)) => {
                            self.state = RState::Done;
                            return Ok(status);
                        }
                        Err(e) => {
                            self.state = RState::Done;
                            return Err(e);
                        }
                    }
                }
                RState::Body {
                    skip,
                    take,
                    keep_alive,
                } => {
                    let n = (*skip).min(rest.len() as u64) as usize;
                    *skip -= n as u64;
                    used += n;
                    let rest = input.get(used..).unwrap_or_default();
                    let m = (*take).min(rest.len() as u64) as usize;
                    body.extend_from_slice(rest.get(..m).unwrap_or_default());
                    *take -= m as u64;
                    used += m;
                    if *skip == 0 && *take == 0 {
                        let keep_alive = *keep_alive;
                        self.state = RState::Done;
                        return Ok(Status::Done {
                            consumed: used,
                            keep_alive,
                        });
                    }
                    return Ok(Status::NeedMore);
                }
            }
        }
    }

    /// Parses the head: the body plan, or a status to report at once.
    fn on_head(&self, head: &[u8]) -> Result<Result<RState, Status>, WebSeedError> {
        let text = std::str::from_utf8(head).map_err(|_| WebSeedError::Malformed("not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let http10 = match version {
            "HTTP/1.1" => false,
            "HTTP/1.0" => true,
            _ => return Err(WebSeedError::Malformed("status line")),
        };
        let code: u16 = parts
            .next()
            .filter(|c| c.len() == 3)
            .and_then(|c| c.parse().ok())
            .ok_or(WebSeedError::Malformed("status code"))?;
        let mut content_length: Option<u64> = None;
        let mut content_range: Option<&str> = None;
        let mut location: Option<&str> = None;
        let mut retry_after: Option<u64> = None;
        let mut keep_alive = !http10;
        let mut coded = false;
        for (n, line) in lines.filter(|l| !l.is_empty()).enumerate() {
            if n >= MAX_HEADERS {
                return Err(WebSeedError::HeadTooLarge);
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(WebSeedError::Malformed("header line"))?;
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    let v = value
                        .parse::<u64>()
                        .map_err(|_| WebSeedError::Malformed("Content-Length"))?;
                    if content_length.is_some_and(|old| old != v) {
                        return Err(WebSeedError::Malformed("two Content-Length values"));
                    }
                    content_length = Some(v);
                }
                "content-range" => content_range = Some(value),
                "location" => location = Some(value),
                "retry-after" => retry_after = value.parse().ok(),
                "transfer-encoding" => coded |= !value.eq_ignore_ascii_case("identity"),
                "connection" => {
                    let v = value.to_ascii_lowercase();
                    if v.contains("close") {
                        keep_alive = false;
                    } else if v.contains("keep-alive") {
                        keep_alive = true;
                    }
                }
                _ => {}
            }
        }
        let want = self.range.end.saturating_sub(self.range.start);
        match code {
            206 => {
                if coded {
                    return Err(WebSeedError::Chunked);
                }
                let cr = content_range.ok_or(WebSeedError::WrongRange("no Content-Range"))?;
                let (a, b) = parse_content_range(cr)?;
                if a != self.range.start || b.checked_add(1) != Some(self.range.end) {
                    return Err(WebSeedError::WrongRange("Content-Range"));
                }
                if content_length.is_some_and(|l| l != want) {
                    return Err(WebSeedError::WrongRange("Content-Length"));
                }
                Ok(Ok(RState::Body {
                    skip: 0,
                    take: want,
                    keep_alive,
                }))
            }
            200 => {
                if coded {
                    return Err(WebSeedError::Chunked);
                }
                let len = content_length.ok_or(WebSeedError::WrongRange("no Content-Length"))?;
                if len < self.range.end {
                    return Err(WebSeedError::WrongRange("file shorter than the range"));
                }
                if self.range.start > MAX_SKIP {
                    return Err(WebSeedError::RangeIgnored(self.range.start));
                }
                // The rest of the body is not read: the connection cannot be reused.
                Ok(Ok(RState::Body {
                    skip: self.range.start,
                    take: want,
                    keep_alive: keep_alive && len == self.range.end,
                }))
            }
            301 | 302 | 303 | 307 | 308 => {
                let location =
                    location.ok_or(WebSeedError::Malformed("redirect without Location"))?;
                if location.len() > MAX_URL_LEN {
                    return Err(WebSeedError::Malformed("Location too long"));
                }
                Ok(Err(Status::Redirect {
                    location: location.to_string(),
                }))
            }
            429 | 503 => Ok(Err(Status::Unavailable { retry_after })),
            other => Err(WebSeedError::Status(other)),
        }
    }
}

/// `bytes a-b/total` (total may be `*`) into `(a, b)`.
fn parse_content_range(v: &str) -> Result<(u64, u64), WebSeedError> {
    let bad = WebSeedError::WrongRange("malformed Content-Range");
    let v = v.strip_prefix("bytes").ok_or(bad.clone())?.trim_start();
    let (range, total) = v.split_once('/').ok_or(bad.clone())?;
    let (a, b) = range.split_once('-').ok_or(bad.clone())?;
    let a: u64 = a.trim().parse().map_err(|_| bad.clone())?;
    let b: u64 = b.trim().parse().map_err(|_| bad.clone())?;
    let total = total.trim();
    if a > b || (total != "*" && total.parse::<u64>().map_or(true, |t| t <= b)) {
        return Err(bad);
    }
    Ok((a, b))
}
