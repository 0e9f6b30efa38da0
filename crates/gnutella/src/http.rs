//! The transfer side of Gnutella 0.4, without I/O: parsing and writing the HTTP request and
//! response heads, and the `GIV` line of a pushed connection.
//!
//! ```text
//! downloader: GET /get/<index>/<name>/ HTTP/1.0\r\n
//!             Connection: Keep-Alive\r\n
//!             Range: bytes=<N>-\r\n
//!             \r\n
//! uploader:   HTTP 200 OK\r\n                    (or HTTP 206 Partial Content)
//!             Server: servent\r\n
//!             Content-type: application/binary\r\n
//!             Content-length: <len>\r\n
//!             \r\n
//!             <bytes>
//! pushed:     GIV <index>:<servent id, 32 hex>/<name>\n\n
//! ```
//!
//! The status line follows the 0.4 document (`HTTP 200 OK`, no version); when reading a
//! response we accept both that and `HTTP/1.x <code>`. File names are percent-decoded; a
//! name that is empty, `.`/`..`, or holds `/`, `\` or NUL is refused before any lookup, so no
//! request can name a path outside the share.

/// The longest request or response head we read.
pub const MAX_HEAD: usize = 4096;

/// Why a head could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Not a `GET` request line of the expected form.
    #[error("malformed request line")]
    BadRequestLine,
    /// The path is not `/get/<index>/<name>/`.
    #[error("path is not /get/<index>/<name>/")]
    BadPath,
    /// The file name is unsafe or not valid UTF-8 (`/`, `\`, `..`, NUL, empty).
    #[error("refused file name")]
    BadName,
    /// A `Range` header we do not understand.
    #[error("malformed Range header")]
    BadRange,
    /// A malformed status line or header in a response.
    #[error("malformed response")]
    BadResponse,
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

/// Lines of a head (split on LF, CR stripped), the request/status line first.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    lines(head).skip(1).find_map(|l| {
        let l = std::str::from_utf8(l).ok()?;
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Checks a file name that came from a peer: a single path component only.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(char::is_control)
}

/// Decodes `%XX` escapes (and nothing else); `None` on a bad escape or non-UTF-8 result.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes what cannot appear raw in a request path.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~()'!+,;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a request head (through its blank line).
pub fn parse_get(head: &[u8]) -> Result<GetRequest, HttpError> {
    let first = lines(head).next().ok_or(HttpError::BadRequestLine)?;
    let first = std::str::from_utf8(first).map_err(|_| HttpError::BadRequestLine)?;
    let mut parts = first.split(' ');
    let (Some("GET"), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    if !version.starts_with("HTTP/") {
        return Err(HttpError::BadRequestLine);
    }
    let (index, name, sha1) = if let Some(urn) = path.strip_prefix("/uri-res/N2R?") {
        let h = crate::library::parse_sha1_urn(urn).ok_or(HttpError::BadPath)?;
        (0, String::new(), Some(h))
    } else {
        let rest = path.strip_prefix("/get/").ok_or(HttpError::BadPath)?;
        let (index, name) = rest.split_once('/').ok_or(HttpError::BadPath)?;
        let index: u32 = index.parse().map_err(|_| HttpError::BadPath)?;
        let name = name.strip_suffix('/').unwrap_or(name);
        let name = percent_decode(name).ok_or(HttpError::BadName)?;
        if !safe_name(&name) {
            return Err(HttpError::BadName);
        }
        (index, name, None)
    };
    let (start, end) = match header(head, "Range") {
        None => (0, None),
        Some(r) => parse_range(r)?,
    };
    let keep_alive = match header(head, "Connection") {
        Some(c) if c.eq_ignore_ascii_case("close") => false,
        Some(c) if c.eq_ignore_ascii_case("keep-alive") => true,
        _ => version != "HTTP/1.0",
    };
    Ok(GetRequest {
        index,
        name,
        start,
        end,
        keep_alive,
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

/// The request head a downloader sends.
pub fn get_head(index: u32, name: &str, start: u64) -> String {
    let mut s = format!(
        "GET /get/{index}/{}/ HTTP/1.0\r\nUser-Agent: servent\r\nConnection: Keep-Alive\r\n",
        percent_encode(name)
    );
    if start > 0 {
        s.push_str(&format!("Range: bytes={start}-\r\n"));
    }
    s.push_str("\r\n");
    s
}

/// What an uploader answers to a request for a file of `size` bytes: the head and the byte
/// range `[from, to)` to send after it, or `None` for an unsatisfiable range (then send
/// [`RANGE_NOT_SATISFIABLE`]).
pub fn response_for(req: &GetRequest, size: u64) -> Option<(String, u64, u64)> {
    if req.start > size || (req.start == size && size > 0) {
        return None;
    }
    let last = req.end.map_or(size, |e| e.saturating_add(1).min(size));
    let len = last - req.start;
    let conn = if req.keep_alive {
        "Connection: Keep-Alive\r\n"
    } else {
        "Connection: close\r\n"
    };
    let head = if req.start == 0 && last == size {
        format!(
            "HTTP 200 OK\r\nServer: servent\r\nContent-type: application/binary\r\nContent-length: {len}\r\n{conn}\r\n"
        )
    } else {
        format!(
            "HTTP 206 Partial Content\r\nServer: servent\r\nContent-type: application/binary\r\nContent-length: {len}\r\nContent-range: bytes {}-{}/{size}\r\n{conn}\r\n",
            req.start,
            last.saturating_sub(1)
        )
    };
    Some((head, req.start, last))
}

/// The answer to an unknown index, a name mismatch or a refused name.
pub const NOT_FOUND: &str = "HTTP 404 Not Found\r\nServer: servent\r\nContent-length: 0\r\n\r\n";
/// The answer to a request we cannot parse.
pub const BAD_REQUEST: &str =
    "HTTP 400 Bad Request\r\nServer: servent\r\nContent-length: 0\r\n\r\n";
/// The answer to a range past the end of the file.
pub const RANGE_NOT_SATISFIABLE: &str =
    "HTTP 416 Requested Range Not Satisfiable\r\nServer: servent\r\nContent-length: 0\r\n\r\n";

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-length`.
    pub content_length: Option<u64>,
    /// Start offset from `Content-range`, when present.
    pub range_start: Option<u64>,
    /// Whether the server keeps the connection open.
    pub keep_alive: bool,
}

/// Parses a response head: `HTTP 200 OK` (0.4) or `HTTP/1.x 200 ...`.
pub fn parse_response(head: &[u8]) -> Result<Response, HttpError> {
    let first = lines(head).next().ok_or(HttpError::BadResponse)?;
    let first = std::str::from_utf8(first).map_err(|_| HttpError::BadResponse)?;
    let mut parts = first.split_whitespace();
    let proto = parts.next().ok_or(HttpError::BadResponse)?;
    if proto != "HTTP" && !proto.starts_with("HTTP/") {
        return Err(HttpError::BadResponse);
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::BadResponse)?;
    let content_length = match header(head, "Content-length") {
        Some(v) => Some(v.parse().map_err(|_| HttpError::BadResponse)?),
        None => None,
    };
    let range_start = header(head, "Content-range").and_then(|v| {
        let v = v
            .strip_prefix("bytes")?
            .trim_start()
            .trim_start_matches('=')
            .trim();
        v.split_once('-')?.0.trim().parse().ok()
    });
    let keep_alive = !header(head, "Connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
    Ok(Response {
        status,
        content_length,
        range_start,
        keep_alive,
    })
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
            parse_get(get_head(12, "Pixies - Debaser.mp3", 4932).as_bytes()),
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
        let mut req = parse_get(b"GET /get/1/a/ HTTP/1.0\r\n\r\n").unwrap();
        let (head, from, to) = response_for(&req, 100).unwrap();
        assert!(head.starts_with("HTTP 200 OK\r\n"));
        assert!(head.contains("Content-length: 100\r\n"));
        assert_eq!((from, to), (0, 100));
        req.start = 40;
        let (head, from, to) = response_for(&req, 100).unwrap();
        assert!(head.starts_with("HTTP 206 Partial Content\r\n"));
        assert!(head.contains("Content-range: bytes 40-99/100\r\n"));
        assert_eq!((from, to), (40, 100));
        let r = parse_response(head.as_bytes()).unwrap();
        assert_eq!(
            (r.status, r.content_length, r.range_start),
            (206, Some(60), Some(40))
        );
        req.start = 100;
        assert_eq!(response_for(&req, 100), None);
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!((r.status, r.content_length), (200, Some(5)));
        assert_eq!(parse_response(NOT_FOUND.as_bytes()).unwrap().status, 404);
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
            let head = format!("GET /get/1/{}/ HTTP/1.0\r\n\r\n", percent_encode(&name));
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
