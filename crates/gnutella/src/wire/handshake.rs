//! The Gnutella 0.6 handshake's header blocks as a pure codec: a start line, header lines
//! (CRLF or bare LF, continuation lines folded), a blank line; bounded in bytes
//! ([`MAX_BLOCK`]) and lines ([`MAX_HEADERS`]), and typed into [`Headers`]. The handshake's
//! state machine is [`crate::core::handshake`].

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// Largest header block (start line, headers, blank line) we read.
pub const MAX_BLOCK: usize = 8192;
/// Most header lines in one block.
pub const MAX_HEADERS: usize = 64;
/// Most addresses kept from an X-Try / X-Try-Ultrapeers header.
pub const MAX_TRY: usize = 32;

/// What can go wrong during the handshake.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("header block exceeds {MAX_BLOCK} bytes")]
    BlockTooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("header block is not UTF-8/ASCII text")]
    NotText,
    #[error("malformed start line {0:?}")]
    BadStartLine(String),
    #[error("malformed header line {0:?}")]
    BadHeader(String),
    #[error("unexpected {0:?} at this step")]
    Unexpected(String),
    #[error("respond() called when no decision is pending")]
    NoDecisionPending,
    #[error("the handshake is over")]
    Finished,
}

/// One parsed header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The first line, without its line end.
    pub start: String,
    /// Header lines in order, names as sent; continuation lines folded into the value.
    pub headers: Vec<(String, String)>,
}

impl Block {
    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one header block from the front of `buf`: `Ok(None)` when more bytes are needed,
/// else the block and the bytes it used. Lines end in CRLF or a bare LF; the block ends at
/// the first empty line.
pub fn parse_block(buf: &[u8]) -> Result<Option<(Block, usize)>, HandshakeError> {
    let window = buf.get(..buf.len().min(MAX_BLOCK)).unwrap_or(buf);
    let mut pos = 0;
    let mut start: Option<String> = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let Some(nl) = window
            .get(pos..)
            .and_then(|w| w.iter().position(|b| *b == b'\n'))
        else {
            return if buf.len() >= MAX_BLOCK {
                Err(HandshakeError::BlockTooLarge)
            } else {
                Ok(None)
            };
        };
        let raw = window.get(pos..pos + nl).unwrap_or(&[]);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += nl + 1;
        let line = std::str::from_utf8(raw).map_err(|_| HandshakeError::NotText)?;
        if start.is_none() {
            if line.is_empty() || !line.starts_with("GNUTELLA") {
                return Err(HandshakeError::BadStartLine(
                    line.chars().take(80).collect(),
                ));
            }
            start = Some(line.to_string());
            continue;
        }
        if line.is_empty() {
            let start = start.unwrap_or_default();
            return Ok(Some((Block { start, headers }, pos)));
        }
        if line.starts_with([' ', '\t']) {
            let Some(last) = headers.last_mut() else {
                return Err(HandshakeError::BadHeader(line.chars().take(80).collect()));
            };
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HandshakeError::BadHeader(line.chars().take(80).collect()));
        };
        let name = name.trim();
        if name.is_empty() || name.contains(' ') {
            return Err(HandshakeError::BadHeader(line.chars().take(80).collect()));
        }
        if headers.len() == MAX_HEADERS {
            return Err(HandshakeError::TooManyHeaders);
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

/// A peer's headers, typed. Unknown headers stay in [`Headers::other`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub user_agent: Option<String>,
    /// X-Ultrapeer: True/False.
    pub ultrapeer: Option<bool>,
    /// X-Ultrapeer-Needed: True/False.
    pub ultrapeer_needed: Option<bool>,
    /// X-Query-Routing version (e.g. "0.1").
    pub query_routing: Option<String>,
    /// X-Ultrapeer-Query-Routing version.
    pub ultrapeer_query_routing: Option<String>,
    pub try_ultrapeers: Vec<SocketAddr>,
    pub try_hosts: Vec<SocketAddr>,
    /// Listen-IP (or X-My-Address): where the peer accepts connections.
    pub listen: Option<SocketAddr>,
    /// Remote-IP: our address as the peer sees it.
    pub remote_ip: Option<IpAddr>,
    /// Accept-Encoding lists deflate.
    pub accept_deflate: bool,
    /// Content-Encoding is deflate.
    pub content_deflate: bool,
    /// X-Degree: the peer's intended ultrapeer connection count.
    pub degree: Option<u32>,
    /// X-Dynamic-Querying version.
    pub dynamic_querying: Option<String>,
    /// X-Max-TTL.
    pub max_ttl: Option<u8>,
    pub other: Vec<(String, String)>,
}

fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses `ip:port[ extra], ip:port, ...`, skipping unparsable items, at most [`MAX_TRY`].
pub fn parse_addrs(v: &str) -> Vec<SocketAddr> {
    v.split(',')
        .filter_map(|item| item.split_whitespace().next()?.parse().ok())
        .take(MAX_TRY)
        .collect()
}

fn has_deflate(v: &str) -> bool {
    v.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("deflate"))
}

impl Headers {
    /// Types the headers of a block. Malformed values of known headers are ignored (as real
    /// servents do), never an error.
    pub fn from_block(b: &Block) -> Self {
        let mut h = Headers::default();
        for (n, v) in &b.headers {
            match n.to_ascii_lowercase().as_str() {
                "user-agent" => h.user_agent = Some(v.clone()),
                "x-ultrapeer" => h.ultrapeer = parse_bool(v),
                "x-ultrapeer-needed" => h.ultrapeer_needed = parse_bool(v),
                "x-query-routing" => h.query_routing = Some(v.clone()),
                "x-ultrapeer-query-routing" => h.ultrapeer_query_routing = Some(v.clone()),
                "x-try-ultrapeers" => h.try_ultrapeers.extend(parse_addrs(v)),
                "x-try" => h.try_hosts.extend(parse_addrs(v)),
                "listen-ip" | "x-my-address" => h.listen = v.trim().parse().ok(),
                "remote-ip" => h.remote_ip = v.trim().parse().ok(),
                "accept-encoding" => h.accept_deflate |= has_deflate(v),
                "content-encoding" => h.content_deflate |= has_deflate(v),
                "x-degree" => h.degree = v.trim().parse().ok(),
                "x-dynamic-querying" => h.dynamic_querying = Some(v.clone()),
                "x-max-ttl" => h.max_ttl = v.trim().parse().ok(),
                _ => h.other.push((n.clone(), v.clone())),
            }
        }
        h.try_ultrapeers.truncate(MAX_TRY);
        h.try_hosts.truncate(MAX_TRY);
        h
    }
}
