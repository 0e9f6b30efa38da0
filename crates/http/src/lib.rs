//! servent-http: the one HTTP/1.x head codec of servent, on `httparse`.
//!
//! Gnutella file transfers, BitTorrent web seeds and the HTTP tracker, the control APIs and
//! the gateways of the newer systems all speak HTTP/1.x heads; they parse and write them here
//! and nowhere else. Bodies are the caller's business (a head tells their length).
//!
//! - [`parse_request`] / [`parse_response`] take a caller-owned buffer and answer
//!   `Ok(None)` (need more bytes), `Ok(Some((head, consumed)))`, or an error; a head longer
//!   than [`Limits::max_head_bytes`] or with more than [`Limits::max_headers`] headers is an
//!   error as soon as that is known, so a peer cannot make us buffer without bound.
//! - [`parse_response`] also accepts the Gnutella 0.4 document's versionless status line
//!   (`HTTP 200 OK`), which old servents send; we always write `HTTP/1.1`.
//! - [`query_pairs`] and [`percent_encode`] handle query strings with binary values (the
//!   tracker's `info_hash`), through the `percent-encoding` crate.
//!
//! ```
//! use servent_http::{Limits, RequestHead, ResponseHead, parse_request, parse_response};
//! let mut out = Vec::new();
//! RequestHead::new("GET", "/get/1/song.mp3").header("Range", "bytes=0-").write_to(&mut out);
//! let (req, used) = parse_request(&out, &Limits::default()).unwrap().unwrap();
//! assert_eq!((req.method.as_str(), req.target.as_str(), used), ("GET", "/get/1/song.mp3", out.len()));
//! assert_eq!(req.headers.get("range"), Some("bytes=0-"));
//!
//! let (resp, _) = parse_response(b"HTTP 200 OK\r\nContent-Length: 3\r\n\r\nabc", &Limits::default())
//!     .unwrap()
//!     .unwrap();
//! assert_eq!((resp.status, resp.headers.content_length().unwrap()), (200, Some(3)));
//! ```

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, utf8_percent_encode};

/// How much of a head we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the whole head (request or status line, headers, blank line).
    pub max_head_bytes: usize,
    /// Number of header fields.
    pub max_headers: usize,
}

impl Default for Limits {
    /// 16 KiB and 64 headers: more than any browser, curl, tracker client or servent sends.
    fn default() -> Limits {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// What is wrong with a head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The head is longer than the limit (and not finished).
    #[error("HTTP head longer than {limit} bytes")]
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// More header fields than the limit.
    #[error("more than {limit} HTTP header fields")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// Not HTTP/1.x.
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    /// A header value that must be a number is not one, or appears twice with two values.
    #[error("bad {name} header: {value:?}")]
    BadHeader {
        /// The header's name.
        name: &'static str,
        /// What it said.
        value: String,
    },
}

/// The protocol version on a request or status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// `HTTP 200 OK`: no version (the Gnutella 0.4 document's example; read, never written).
    Bare,
}

impl Version {
    /// Whether the connection stays open after this message unless `Connection: close`.
    pub fn keeps_alive_by_default(self) -> bool {
        self == Version::Http11
    }
}

/// Header fields in the order they came; names compared without case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    /// No fields.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Replaces every field `name` by one with `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.fields.push((name.to_string(), value.into()));
    }

    /// All fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Content-Length`, checked: digits only, and several fields must agree (RFC 9112 §6.3).
    pub fn content_length(&self) -> Result<Option<u64>, HttpError> {
        let mut found: Option<u64> = None;
        for v in self.get_all("content-length") {
            let bad = || HttpError::BadHeader {
                name: "Content-Length",
                value: v.to_string(),
            };
            let t = v.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: u64 = t.parse().map_err(|_| bad())?;
            if found.is_some_and(|f| f != n) {
                return Err(bad());
            }
            found = Some(n);
        }
        Ok(found)
    }

    /// Whether `Connection` lists `token` (e.g. `close`, `keep-alive`).
    pub fn connection_has(&self, token: &str) -> bool {
        self.get_all("connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.fields {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            // a value never carries a line break onto the wire (header injection)
            for b in v.bytes() {
                out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A request line and its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// `GET`, `HEAD`, `PUT`, …
    pub method: String,
    /// The request target as sent (path and query, still percent-encoded).
    pub target: String,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields.
    pub headers: Headers,
}

impl RequestHead {
    /// An HTTP/1.1 request with no headers.
    pub fn new(method: &str, target: &str) -> RequestHead {
        RequestHead {
            method: method.to_string(),
            target: target.to_string(),
            version: Version::Http11,
            headers: Headers::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> RequestHead {
        self.headers.push(name, value);
        self
    }

    /// The path part of the target (before `?`), still percent-encoded.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Whether the connection stays open after the exchange.
    pub fn keep_alive(&self) -> bool {
        if self.headers.connection_has("close") {
            false
        } else {
            self.version.keeps_alive_by_default() || self.headers.connection_has("keep-alive")
        }
    }

    /// Appends the head (request line, headers, blank line) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let v = match self.version {
            Version::Http10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let target: String = self
            .target
            .chars()
            .map(|c| if c.is_ascii_whitespace() { '+' } else { c })
            .collect();
        let _ = write!(Buf(out), "{} {} {v}\r\n", self.method, target);
        self.headers.write_to(out);
        out.extend_from_slice(b"\r\n");
    }

    /// The head as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

/// A status line and its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The version the peer sent (we always write HTTP/1.1).
    pub version: Version,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
}

impl ResponseHead {
    /// An HTTP/1.1 response with the standard reason phrase for `status`.
    pub fn new(status: u16) -> ResponseHead {
        ResponseHead {
            version: Version::Http11,
            status,
            reason: reason(status).to_string(),
            headers: Headers::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> ResponseHead {
        self.headers.push(name, value);
        self
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Appends the head (`HTTP/1.1 <status> <reason>`, headers, blank line) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let reason: String = self
            .reason
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        let _ = write!(Buf(out), "HTTP/1.1 {} {reason}\r\n", self.status);
        self.headers.write_to(out);
        out.extend_from_slice(b"\r\n");
    }

    /// The head as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The standard reason phrase of `status` (`""` for codes we never send).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Where the head ends (just past `\r\n\r\n`, or `\n\n` from lax peers), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

fn check_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, HttpError> {
    match head_end(buf) {
        Some(end) if end <= limits.max_head_bytes => Ok(Some(end)),
        Some(_) => Err(HttpError::HeadTooLarge {
            limit: limits.max_head_bytes,
        }),
        None if buf.len() >= limits.max_head_bytes => Err(HttpError::HeadTooLarge {
            limit: limits.max_head_bytes,
        }),
        None => Ok(None),
    }
}

fn owned_headers(raw: &[httparse::Header<'_>]) -> Result<Headers, HttpError> {
    let mut h = Headers::new();
    for f in raw {
        let v = std::str::from_utf8(f.value)
            .map(str::to_string)
            .unwrap_or_else(|_| String::from_utf8_lossy(f.value).into_owned());
        h.push(f.name, v);
    }
    Ok(h)
}

fn map_err(e: httparse::Error, limits: &Limits) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders {
            limit: limits.max_headers,
        },
        other => HttpError::Malformed(other.to_string()),
    }
}

/// Parses a request head from the start of `buf`: `Ok(None)` until the blank line arrives.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let Some(end) = check_len(buf, limits)? else {
        return Ok(None);
    };
    let mut raw = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(&buf[..end]).map_err(|e| map_err(e, limits))? {
        httparse::Status::Complete(n) => {
            let version = match req.version {
                Some(0) => Version::Http10,
                _ => Version::Http11,
            };
            let head = RequestHead {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                version,
                headers: owned_headers(req.headers)?,
            };
            Ok(Some((head, n)))
        }
        httparse::Status::Partial => Err(HttpError::Malformed("incomplete head".into())),
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` until the blank line arrives.
/// Accepts `HTTP/1.0`, `HTTP/1.1` and the versionless `HTTP 200 OK`.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let Some(end) = check_len(buf, limits)? else {
        return Ok(None);
    };
    let head = &buf[..end];
    if let Some(rest) = head.strip_prefix(b"HTTP ") {
        // versionless status line: "HTTP <code> <reason>\r\n", then ordinary headers
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| HttpError::Malformed("no status line".into()))?;
        let line = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| HttpError::Malformed("status line is not text".into()))?
            .trim_end_matches('\r');
        let (code, reason) = line.split_once(' ').unwrap_or((line, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::Malformed(format!("status code {code:?}")));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| HttpError::Malformed(format!("status code {code:?}")))?;
        let mut raw = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let hdr_start = 5 + line_end + 1;
        let headers = match httparse::parse_headers(&head[hdr_start..], &mut raw)
            .map_err(|e| map_err(e, limits))?
        {
            httparse::Status::Complete((_, h)) => owned_headers(h)?,
            httparse::Status::Partial => {
                return Err(HttpError::Malformed("incomplete head".into()));
            }
        };
        return Ok(Some((
            ResponseHead {
                version: Version::Bare,
                status,
                reason: reason.to_string(),
                headers,
            },
            end,
        )));
    }
    let mut raw = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(head).map_err(|e| map_err(e, limits))? {
        httparse::Status::Complete(n) => {
            let version = match resp.version {
                Some(0) => Version::Http10,
                _ => Version::Http11,
            };
            Ok(Some((
                ResponseHead {
                    version,
                    status: resp.code.unwrap_or_default(),
                    reason: resp.reason.unwrap_or_default().to_string(),
                    headers: owned_headers(resp.headers)?,
                },
                n,
            )))
        }
        httparse::Status::Partial => Err(HttpError::Malformed("incomplete head".into())),
    }
}

/// A single byte range of a `Range: bytes=...` header, resolved against a length of `len`:
/// `Ok(None)` when there is no usable single range (serve the whole body), `Err` when the
/// range cannot be satisfied (answer 416). The result is `(first, last)` inclusive.
pub fn byte_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, HttpError> {
    let bad = || HttpError::BadHeader {
        name: "Range",
        value: value.to_string(),
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: we answer with the whole body
    }
    let (a, b) = spec.trim().split_once('-').ok_or_else(bad)?;
    let num = |s: &str| -> Result<u64, HttpError> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (first, last) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n = num(suffix)?;
            if n == 0 || len == 0 {
                return Err(bad());
            }
            (len.saturating_sub(n), len - 1)
        }
        (start, "") => (num(start)?, len.saturating_sub(1)),
        (start, end) => (num(start)?, num(end)?.min(len.saturating_sub(1))),
    };
    if len == 0 || first >= len || first > last {
        return Err(bad());
    }
    Ok(Some((first, last)))
}

/// The `Content-Range` value for `first..=last` of `len` bytes.
pub fn content_range(first: u64, last: u64, len: u64) -> String {
    format!("bytes {first}-{last}/{len}")
}

/// The bytes RFC 3986 leaves unreserved; everything else is escaped.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes bytes for a query value or a path segment (unreserved bytes stay).
pub fn percent_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, QUERY).to_string()
}

/// Percent-encodes a text (UTF-8) path segment or query value.
pub fn percent_encode_str(s: &str) -> String {
    utf8_percent_encode(s, QUERY).to_string()
}

/// Percent-decodes to bytes (a `%` not followed by two hex digits stays as it is).
pub fn percent_decode_bytes(s: &str) -> Vec<u8> {
    percent_decode(s.as_bytes()).collect()
}

/// Percent-decodes to text; `None` when the result is not UTF-8.
pub fn percent_decode_str(s: &str) -> Option<String> {
    String::from_utf8(percent_decode_bytes(s)).ok()
}

/// The `key=value` pairs of a query string, keys as text and values as bytes, both
/// percent-decoded (`+` in a value is a space, as HTML forms send it). At most `max` pairs:
/// more is an error, so a request cannot make us build an unbounded list.
pub fn query_pairs(query: &str, max: usize) -> Result<Vec<(String, Vec<u8>)>, HttpError> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= max {
            return Err(HttpError::Malformed(format!(
                "more than {max} query parameters"
            )));
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = String::from_utf8_lossy(&percent_decode_bytes(&k.replace('+', " "))).into_owned();
        out.push((key, percent_decode_bytes(&v.replace('+', " "))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn requests_parse_in_pieces_and_whole() {
        let raw =
            b"GET /uri-res/N2R?urn:sha1:ABC HTTP/1.1\r\nHost: x\r\nRange: bytes=10-\r\n\r\nBODY";
        let l = Limits::default();
        for cut in 0..raw.len() - 4 {
            assert_eq!(parse_request(&raw[..cut], &l).unwrap(), None, "cut {cut}");
        }
        let (h, n) = parse_request(raw, &l).unwrap().unwrap();
        assert_eq!(n, raw.len() - 4);
        assert_eq!(h.path(), "/uri-res/N2R");
        assert_eq!(h.query(), Some("urn:sha1:ABC"));
        assert_eq!(h.headers.get("RANGE"), Some("bytes=10-"));
        assert!(h.keep_alive());
    }

    #[test]
    fn we_write_http_1_1_and_read_the_versionless_form() {
        let bytes = ResponseHead::new(206)
            .header("Content-Length", "5")
            .to_bytes();
        assert!(bytes.starts_with(b"HTTP/1.1 206 Partial Content\r\n"));
        let (h, _) = parse_response(&bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!((h.version, h.status), (Version::Http11, 206));
        let (h, n) = parse_response(b"HTTP 200 OK\r\nServer: old\r\n\r\n", &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.version, h.status, h.reason.as_str()),
            (Version::Bare, 200, "OK")
        );
        assert_eq!(h.headers.get("server"), Some("old"));
        assert_eq!(n, 28);
    }

    #[test]
    fn an_endless_head_is_refused_at_the_limit() {
        let l = Limits {
            max_head_bytes: 1024,
            max_headers: 8,
        };
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.resize(1024, b'a');
        assert_eq!(
            parse_request(&raw, &l),
            Err(HttpError::HeadTooLarge { limit: 1024 })
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..9 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&many, &l),
            Err(HttpError::TooManyHeaders { limit: 8 })
        );
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        let mut h = Headers::new();
        h.push("Content-Length", "12");
        assert_eq!(h.content_length(), Ok(Some(12)));
        h.push("content-length", "13");
        assert!(h.content_length().is_err());
        let mut h = Headers::new();
        h.push("Content-Length", "-1");
        assert!(h.content_length().is_err());
        h.set("Content-Length", "+5");
        assert!(h.content_length().is_err());
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let b = ResponseHead::new(200)
            .header("X-Name", "a\r\nSet-Cookie: evil")
            .to_bytes();
        let (h, _) = parse_response(&b, &Limits::default()).unwrap().unwrap();
        assert_eq!(h.headers.len(), 1);
    }

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        assert_eq!(byte_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(byte_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(byte_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(byte_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert!(byte_range("bytes=100-", 100).is_err());
        assert!(byte_range("bytes=9-3", 100).is_err());
        assert!(byte_range("bytes=a-b", 100).is_err());
        assert_eq!(byte_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(byte_range("items=0-1", 100), Ok(None));
        assert_eq!(content_range(0, 9, 100), "bytes 0-9/100");
    }

    #[test]
    fn query_values_are_bytes() {
        let ih = [0u8, 0xff, b'a', b' ', b'%'];
        let q = format!("info_hash={}&port=6881&x", percent_encode(&ih));
        let p = query_pairs(&q, 10).unwrap();
        assert_eq!(p[0], ("info_hash".to_string(), ih.to_vec()));
        assert_eq!(p[1], ("port".to_string(), b"6881".to_vec()));
        assert_eq!(p[2], ("x".to_string(), Vec::new()));
        assert!(query_pairs("a=1&b=2&c=3", 2).is_err());
        assert_eq!(
            percent_decode_str(&percent_encode_str("Pixies - Debaser.mp3")).unwrap(),
            "Pixies - Debaser.mp3"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let l = Limits { max_head_bytes: 512, max_headers: 16 };
            let _ = parse_request(&data, &l);
            let _ = parse_response(&data, &l);
        }

        #[test]
        fn written_heads_parse_back(path in "/[a-z0-9/]{0,20}", v in "[ -~]{0,30}", code in 100u16..600) {
            let l = Limits::default();
            let req = RequestHead::new("GET", &path).header("X-V", v.clone());
            let (r, _) = parse_request(&req.to_bytes(), &l).unwrap().unwrap();
            prop_assert_eq!(r.target, path);
            prop_assert_eq!(r.headers.get("x-v"), Some(v.trim()));
            let (s, _) = parse_response(&ResponseHead::new(code).to_bytes(), &l).unwrap().unwrap();
            prop_assert_eq!(s.status, code);
        }

        #[test]
        fn percent_round_trips(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(percent_decode_bytes(&percent_encode(&b)), b);
        }
    }
}
