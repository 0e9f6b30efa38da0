//! The transfer side of Gnutella, without I/O: the download request and response heads
//! (parsed and written by `servent-http`, the project's one HTTP codec) and the `GIV` line of
//! a pushed connection.
//!
//! ```text
//! downloader: GET /uri-res/N2R?urn:sha1:<base32> HTTP/1.1\r\n   (the hit carried a SHA-1)
//!             GET /get/<index>/<percent-encoded name> HTTP/1.1\r\n   (otherwise)
//!             User-Agent: servent\r\n
//!             Connection: Keep-Alive\r\n
//!             Range: bytes=<N>-\r\n
//!             \r\n
//! uploader:   HTTP/1.1 200 OK\r\n                (or HTTP/1.1 206 Partial Content)
//!             Server: servent\r\n
//!             Content-Type: application/binary\r\n
//!             Content-Length: <len>\r\n
//!             \r\n
//!             <bytes>
//! pushed:     GIV <index>:<servent id, 32 hex>/<name>\n\n
//! ```
//!
//! We write `HTTP/1.1` status lines (curl and every modern servent want a version) and still
//! read the 0.4 document's versionless `HTTP 200 OK` from old peers. A request for
//! `/get/<index>/<name>/` (the 0.4 document's trailing slash) is served as well. File names
//! are percent-decoded; a name that is empty, `.`/`..`, or holds `/`, `\` or NUL is refused
//! before any lookup, so no request can name a path outside the share.

use servent_http::{Limits, RequestHead, ResponseHead};

/// The longest request or response head we read.
pub const MAX_HEAD: usize = 4096;

/// The most header fields we read in a transfer head.
pub const MAX_HEADERS: usize = 64;

/// The limits every transfer head is parsed with.
pub fn limits() -> Limits {
    Limits {
        max_head_bytes: MAX_HEAD,
        max_headers: MAX_HEADERS,
    }
}

/// Why a head could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Not a `GET` request of the expected form, or not HTTP at all.
    #[error("malformed request: {0}")]
    BadRequestLine(String),
    /// The path is neither `/get/<index>/<name>` nor `/uri-res/N2R?urn:sha1:<base32>`.
    #[error("path is not /get/<index>/<name> or /uri-res/N2R?urn:sha1:<base32>")]
    BadPath,
    /// The file name is unsafe or not valid UTF-8 (`/`, `\`, `..`, NUL, empty).
    #[error("refused file name")]
    BadName,
    /// A `Range` header we do not understand.
    #[error("malformed Range header")]
    BadRange,
    /// A malformed status line or header in a response.
    #[error("malformed response: {0}")]
    BadResponse(String),
    /// A malformed `GIV` line.
    #[error("malformed GIV line")]
    BadGiv,
}

/// A parsed download request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetRequest {
    /// File index.
    pub index: u32,
    /// File name (percent-decoded, checked safe).
    pub name: String,
    /// First byte wanted (`Range: bytes=N-`), 0 without a range.
    pub start: u64,
    /// Last byte wanted, inclusive, when the range gives one.
    pub end: Option<u64>,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
    /// Set for `GET /uri-res/N2R?urn:sha1:<base32>` (HUGE): the file is the one with this
    /// SHA-1, and `index`/`name` are unused (0, empty).
    pub sha1: Option<[u8; 20]>,
}

/// Checks a file name that came from a peer: a single path component only.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(char::is_control)
}

/// Parses a complete request head (through its blank line).
pub fn parse_get(head: &[u8]) -> Result<GetRequest, HttpError> {
    let (req, _) = servent_http::parse_request(head, &limits())
        .map_err(|e| HttpError::BadRequestLine(e.to_string()))?
        .ok_or_else(|| HttpError::BadRequestLine("incomplete head".into()))?;
    if req.method != "GET" {
        return Err(HttpError::BadRequestLine(format!(
            "method {:?}",
            req.method
        )));
    }
    let target = req.target.as_str();
    let (index, name, sha1) = if let Some(urn) = target.strip_prefix("/uri-res/N2R?") {
        let h = crate::wire::urn::parse_sha1_urn(urn).ok_or(HttpError::BadPath)?;
        (0, String::new(), Some(h))
    } else {
        let rest = target.strip_prefix("/get/").ok_or(HttpError::BadPath)?;
        let (index, name) = rest.split_once('/').ok_or(HttpError::BadPath)?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::BadPath);
        }
        let index: u32 = index.parse().map_err(|_| HttpError::BadPath)?;
        let name = name.strip_suffix('/').unwrap_or(name);
        let name = servent_http::percent_decode_str(name).ok_or(HttpError::BadName)?;
        if !safe_name(&name) {
            return Err(HttpError::BadName);
        }
        (index, name, None)
    };
    let (start, end) = match req.headers.get("Range") {
        None => (0, None),
        Some(r) => parse_range(r)?,
    };
    Ok(GetRequest {
        index,
        name,
        start,
        end,
        keep_alive: req.keep_alive(),
        sha1,
    })
}

fn parse_range(r: &str) -> Result<(u64, Option<u64>), HttpError> {
    let spec = r
        .strip_prefix("bytes")
        .ok_or(HttpError::BadRange)?
        .trim_start();
    let spec = spec.strip_prefix('=').ok_or(HttpError::BadRange)?.trim();
    let (a, b) = spec.split_once('-').ok_or(HttpError::BadRange)?;
    let start = a.trim().parse().map_err(|_| HttpError::BadRange)?;
    let end = match b.trim() {
        "" => None,
        e => Some(e.parse().map_err(|_| HttpError::BadRange)?),
    };
    if end.is_some_and(|e| e < start) {
        return Err(HttpError::BadRange);
    }
    Ok((start, end))
}

/// The request target for a file: `/uri-res/N2R?urn:sha1:<base32>` when its SHA-1 is known
/// (every modern servent serves it, and it survives renames), else
/// `/get/<index>/<percent-encoded name>` with no trailing slash.
pub fn get_target(index: u32, name: &str, sha1: Option<&[u8; 20]>) -> String {
    match sha1 {
        Some(h) => format!("/uri-res/N2R?{}", crate::wire::urn::sha1_urn(h)),
        None => format!("/get/{index}/{}", servent_http::percent_encode_str(name)),
    }
}

/// The request head a downloader sends.
pub fn get_head(index: u32, name: &str, sha1: Option<&[u8; 20]>, start: u64) -> Vec<u8> {
    let mut head = RequestHead::new("GET", &get_target(index, name, sha1))
        .header("User-Agent", "servent")
        .header("Connection", "Keep-Alive");
    if start > 0 {
        head = head.header("Range", format!("bytes={start}-"));
    }
    head.to_bytes()
}

fn answer(status: u16, keep_alive: bool) -> ResponseHead {
    ResponseHead::new(status)
        .header("Server", "servent")
        .header(
            "Connection",
            if keep_alive { "Keep-Alive" } else { "close" },
        )
}

/// What an uploader answers to a request for a file of `size` bytes: the head and the byte
/// range `[from, to)` to send after it, or `None` for an unsatisfiable range (then send
/// [`range_not_satisfiable`]).
pub fn response_for(req: &GetRequest, size: u64) -> Option<(Vec<u8>, u64, u64)> {
    if req.start > size || (req.start == size && size > 0) {
        return None;
    }
    let last = req.end.map_or(size, |e| e.saturating_add(1).min(size));
    let len = last - req.start;
    let full = req.start == 0 && last == size;
    let mut head = answer(if full { 200 } else { 206 }, req.keep_alive)
        .header("Content-Type", "application/binary")
        .header("Content-Length", len.to_string());
    if !full {
        head = head.header(
            "Content-Range",
            servent_http::content_range(req.start, last.saturating_sub(1), size),
        );
    }
    Some((head.to_bytes(), req.start, last))
}

/// The answer to an unknown index, a name mismatch or a refused name.
pub fn not_found(keep_alive: bool) -> Vec<u8> {
    answer(404, keep_alive)
        .header("Content-Length", "0")
        .to_bytes()
}

/// The answer to a request we cannot parse (the connection closes after it).
pub fn bad_request() -> Vec<u8> {
    answer(400, false).header("Content-Length", "0").to_bytes()
}

/// The answer to a range past the end of the file.
pub fn range_not_satisfiable(size: u64) -> Vec<u8> {
    answer(416, false)
        .header("Content-Length", "0")
        .header("Content-Range", format!("bytes */{size}"))
        .to_bytes()
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Length`.
    pub content_length: Option<u64>,
    /// Start offset from `Content-Range`, when present.
    pub range_start: Option<u64>,
    /// Whether the server keeps the connection open.
    pub keep_alive: bool,
}

/// Parses a complete response head: `HTTP/1.x 200 ...` or the 0.4 `HTTP 200 OK`.
pub fn parse_response(head: &[u8]) -> Result<Response, HttpError> {
    let (resp, _) = servent_http::parse_response(head, &limits())
        .map_err(|e| HttpError::BadResponse(e.to_string()))?
        .ok_or_else(|| HttpError::BadResponse("incomplete head".into()))?;
    let content_length = resp
        .headers
        .content_length()
        .map_err(|e| HttpError::BadResponse(e.to_string()))?;
    let range_start = resp.headers.get("Content-Range").and_then(|v| {
        let v = v
            .strip_prefix("bytes")?
            .trim_start()
            .trim_start_matches('=')
            .trim();
        v.split_once('-')?.0.trim().parse().ok()
    });
    let keep_alive = !resp.headers.connection_has("close");
    Ok(Response {
        status: resp.status,
        content_length,
        range_start,
        keep_alive,
    })
}

/// Lines of a `GIV` message (split on LF, CR stripped), up to the blank line.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

/// A parsed `GIV` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Giv {
    /// File index.
    pub index: u32,
    /// Servent id of the pushing servent.
    pub servent_id: crate::wire::Guid,
    /// File name.
    pub name: String,
}

/// `GIV <index>:<servent id hex>/<name>\n\n`.
pub fn giv_line(g: &Giv) -> String {
    format!(
        "GIV {}:{}/{}\n\n",
        g.index,
        g.servent_id.to_hex_upper(),
        g.name
    )
}

/// Parses a `GIV` line (with or without its trailing blank line).
pub fn parse_giv(line: &[u8]) -> Result<Giv, HttpError> {
    let line = lines(line).next().ok_or(HttpError::BadGiv)?;
    let line = std::str::from_utf8(line).map_err(|_| HttpError::BadGiv)?;
    let rest = line.strip_prefix("GIV ").ok_or(HttpError::BadGiv)?;
    let (index, rest) = rest.split_once(':').ok_or(HttpError::BadGiv)?;
    let index = index.trim().parse().map_err(|_| HttpError::BadGiv)?;
    let (id, name) = rest.split_once('/').ok_or(HttpError::BadGiv)?;
    let servent_id = crate::wire::Guid::from_hex(id).ok_or(HttpError::BadGiv)?;
    Ok(Giv {
        index,
        servent_id,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Guid;
    use proptest::prelude::*;

    #[test]
    fn uri_res_n2r_names_a_file_by_sha1() {
        let r = parse_get(
            b"GET /uri-res/N2R?urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ HTTP/1.1\r\nRange: bytes=10-\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.sha1.map(|h| h[0]), Some(0xda));
        assert_eq!((r.index, r.name.as_str(), r.start), (0, "", 10));
        for bad in [
            &b"GET /uri-res/N2R?urn:sha1:../../etc/passwd HTTP/1.1\r\n\r\n"[..],
            b"GET /uri-res/N2R?urn:md5:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ HTTP/1.1\r\n\r\n",
            b"GET /uri-res/N2R?urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBY HTTP/1.1\r\n\r\n",
            b"GET /uri-res/N2X?urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_get(bad), Err(HttpError::BadPath), "{bad:?}");
        }
    }

    #[test]
    fn get_request_with_range_and_keep_alive() {
        let r = parse_get(
            b"GET /get/12/Pixies%20-%20Debaser.mp3/ HTTP/1.0\r\nConnection: Keep-Alive\r\nRange: bytes=4932-\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            r,
            GetRequest {
                index: 12,
                name: "Pixies - Debaser.mp3".into(),
                start: 4932,
                end: None,
                keep_alive: true,
                sha1: None,
            }
        );
        assert_eq!(
            parse_get(&get_head(12, "Pixies - Debaser.mp3", None, 4932)),
            Ok(r)
        );
    }

    #[test]
    fn path_traversal_is_refused() {
        for head in [
            &b"GET /get/0/../../etc/passwd/ HTTP/1.0\r\n\r\n"[..],
            b"GET /get/0/..%2F..%2Fetc%2Fpasswd/ HTTP/1.0\r\n\r\n",
            b"GET /get/0/../ HTTP/1.0\r\n\r\n",
            b"GET /get/0/a%5Cb/ HTTP/1.0\r\n\r\n",
            b"GET /get/0/a%00b/ HTTP/1.0\r\n\r\n",
            b"GET /get/0// HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(parse_get(head), Err(HttpError::BadName), "{head:?}");
        }
        assert_eq!(
            parse_get(b"GET /etc/passwd HTTP/1.0\r\n\r\n"),
            Err(HttpError::BadPath)
        );
        assert_eq!(
            parse_get(b"GET /get/x/a/ HTTP/1.0\r\n\r\n"),
            Err(HttpError::BadPath)
        );
    }

    #[test]
    fn responses_full_partial_and_unsatisfiable() {
        let mut req = parse_get(b"GET /get/1/a HTTP/1.0\r\n\r\n").unwrap();
        let (head, from, to) = response_for(&req, 100).unwrap();
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 100\r\n"));
        assert_eq!((from, to), (0, 100));
        req.start = 40;
        let (head, from, to) = response_for(&req, 100).unwrap();
        let text = String::from_utf8(head.clone()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 206 Partial Content\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Range: bytes 40-99/100\r\n"));
        assert_eq!((from, to), (40, 100));
        let r = parse_response(&head).unwrap();
        assert_eq!(
            (r.status, r.content_length, r.range_start),
            (206, Some(60), Some(40))
        );
        req.start = 100;
        assert_eq!(response_for(&req, 100), None);
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!((r.status, r.content_length), (200, Some(5)));
        let nf = not_found(true);
        assert!(nf.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert_eq!(parse_response(&nf).unwrap().status, 404);
        assert!(bad_request().starts_with(b"HTTP/1.1 400 "));
        assert!(range_not_satisfiable(9).starts_with(b"HTTP/1.1 416 "));
    }

    #[test]
    fn old_peers_versionless_status_line_is_still_read() {
        let r =
            parse_response(b"HTTP 200 OK\r\nServer: gnut\r\nContent-length: 7\r\n\r\n").unwrap();
        assert_eq!(
            (r.status, r.content_length, r.keep_alive),
            (200, Some(7), true)
        );
        let r = parse_response(b"HTTP 206 Partial Content\r\nContent-range: bytes 3-9/10\r\n\r\n")
            .unwrap();
        assert_eq!((r.status, r.range_start), (206, Some(3)));
        assert!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
    }

    #[test]
    fn download_asks_by_sha1_when_the_hit_has_one_else_by_index_without_trailing_slash() {
        let h =
            crate::wire::urn::parse_sha1_urn("urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ").unwrap();
        let head = get_head(3, "a b.txt", Some(&h), 0);
        assert!(
            head.starts_with(
                b"GET /uri-res/N2R?urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ HTTP/1.1\r\n"
            ),
            "{}",
            String::from_utf8_lossy(&head)
        );
        assert_eq!(parse_get(&head).unwrap().sha1, Some(h));
        let head = get_head(3, "a b/c.txt", None, 10);
        let text = String::from_utf8(head.clone()).unwrap();
        assert!(
            text.starts_with("GET /get/3/a%20b%2Fc.txt HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("Range: bytes=10-\r\n"));
        // a name with a slash is refused by the uploader, not read as a path
        assert_eq!(parse_get(&head), Err(HttpError::BadName));
        let r = parse_get(&get_head(3, "a b.txt", None, 0)).unwrap();
        assert_eq!(
            (r.index, r.name.as_str(), r.keep_alive),
            (3, "a b.txt", true)
        );
        // the 0.4 document's trailing slash is still served
        let r = parse_get(b"GET /get/3/a%20b.txt/ HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            (r.index, r.name.as_str(), r.keep_alive),
            (3, "a b.txt", false)
        );
    }

    #[test]
    fn giv_golden_line_round_trips() {
        let g = Giv {
            index: 4,
            servent_id: Guid([0xab; 16]),
            name: "song.mp3".into(),
        };
        let line = giv_line(&g);
        assert_eq!(line, "GIV 4:ABABABABABABABABABABABABABABABAB/song.mp3\n\n");
        assert_eq!(parse_giv(line.as_bytes()), Ok(g));
        assert_eq!(parse_giv(b"GIV 4:zz/x\n\n"), Err(HttpError::BadGiv));
        assert_eq!(parse_giv(b"GET / HTTP/1.0\n\n"), Err(HttpError::BadGiv));
    }

    proptest! {
        #[test]
        fn arbitrary_heads_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_get(&b);
            let _ = parse_response(&b);
            let _ = parse_giv(&b);
        }

        #[test]
        fn accepted_names_are_single_components(name in "\\PC{0,30}") {
            let head = format!(
                "GET /get/1/{} HTTP/1.0\r\n\r\n",
                servent_http::percent_encode_str(&name)
            );
            match parse_get(head.as_bytes()) {
                Ok(r) => {
                    prop_assert_eq!(&r.name, &name);
                    prop_assert!(safe_name(&r.name));
                }
                Err(e) => prop_assert_eq!(e, HttpError::BadName),
            }
        }
    }
}
