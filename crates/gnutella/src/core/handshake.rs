//! The Gnutella 0.6 connection handshake as a sans-IO state machine (its header blocks are
//! the codec in [`crate::wire::handshake`]), plus the deflate stream wrapper a compressed
//! link runs through afterwards.
//!
//! ```text
//! initiator                                   acceptor
//! GNUTELLA CONNECT/0.6  + headers   ──────►
//!                                   ◄──────   GNUTELLA/0.6 200 OK + headers   (or 503 + X-Try-Ultrapeers)
//! GNUTELLA/0.6 200 OK   + headers   ──────►   (the initiator may still refuse here)
//! ```
//! A 0.4 initiator (`GNUTELLA CONNECT/0.4`) is answered `GNUTELLA OK` and the link is up.
//!
//! [`Handshake`] reads the peer's bytes with [`Handshake::feed`] and queues ours, taken
//! with [`Handshake::take_output`]. When the peer's headers need a policy decision (is there a
//! free slot? is the peer an ultrapeer?) it returns [`Progress::Decide`] and waits for
//! [`Handshake::respond`]; the state machine itself holds no policy. Compression follows
//! the 0.6 rule: a side that read `Accept-Encoding: deflate` from its peer and wants
//! compression says `Content-Encoding: deflate` in its next header block and compresses
//! everything it sends after that block. Header blocks are bounded in bytes
//! ([`MAX_BLOCK`]) and lines ([`MAX_HEADERS`]).

use std::net::SocketAddr;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use thiserror::Error;

pub use crate::wire::handshake::{
    Block, HandshakeError, Headers, MAX_BLOCK, MAX_HEADERS, MAX_TRY, parse_addrs, parse_block,
};

/// Our side's constant handshake settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    pub user_agent: String,
    /// We are (or offer to be) an ultrapeer.
    pub ultrapeer: bool,
    /// Where we accept connections (Listen-IP), if anywhere.
    pub listen: Option<SocketAddr>,
    /// Offer and accept a deflate-compressed stream.
    pub deflate: bool,
    /// X-Degree we announce when an ultrapeer.
    pub degree: u32,
    /// X-Max-TTL we announce when an ultrapeer.
    pub max_ttl: u8,
}

impl HandshakeConfig {
    /// Defaults of today's servents: deflate on, degree 32, max TTL 4.
    pub fn new(user_agent: &str, ultrapeer: bool, listen: Option<SocketAddr>) -> Self {
        HandshakeConfig {
            user_agent: clean(user_agent),
            ultrapeer,
            listen,
            deflate: true,
            degree: 32,
            max_ttl: 4,
        }
    }
}

/// The protocol version the initiator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V04,
    V06,
}

/// A policy decision on the peer's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accept; the acceptor announces `X-Ultrapeer-Needed` when set and `X-Try-Ultrapeers`
    /// when non-empty.
    Accept {
        ultrapeer_needed: Option<bool>,
        try_ultrapeers: Vec<SocketAddr>,
    },
    /// Refuse with `code` (503 when full) and addresses to try instead.
    Refuse {
        code: u16,
        reason: String,
        try_ultrapeers: Vec<SocketAddr>,
    },
}

/// The link once the handshake succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub version: Version,
    pub peer: Headers,
    /// Bytes from the peer after its last header block are deflate-compressed.
    pub deflate_in: bool,
    /// We must compress everything we send after our last header block.
    pub deflate_out: bool,
    /// Stream bytes that arrived with the last header block (still compressed if
    /// `deflate_in`).
    pub leftover: Vec<u8>,
}

/// What a step of the handshake produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for more bytes from the peer.
    NeedMore,
    /// The peer's headers are in: call [`Handshake::respond`].
    Decide { version: Version, peer: Headers },
    /// The link is up.
    Established(Link),
    /// The peer refused us (`code` is not 200); close after flushing output.
    Refused {
        code: u16,
        reason: String,
        peer: Headers,
    },
    /// We refused; flush [`Handshake::take_output`] then close.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Initiator: CONNECT sent, awaiting the acceptor's response.
    AwaitResponse,
    /// Acceptor: awaiting CONNECT.
    AwaitConnect,
    /// Awaiting respond(); `peer` as parsed.
    Deciding {
        version: Version,
        peer: Headers,
    },
    /// Acceptor: 200 sent, awaiting the final block.
    AwaitFinal {
        peer: Headers,
        deflate_out: bool,
    },
    Done,
}

/// One connection's handshake, either side.
#[derive(Debug)]
pub struct Handshake {
    cfg: HandshakeConfig,
    remote: SocketAddr,
    outbound: bool,
    state: State,
    inbuf: Vec<u8>,
    out: Vec<u8>,
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .take(MAX_TRY)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn status(start: &str) -> Option<(u16, String)> {
    let rest = start.strip_prefix("GNUTELLA/0.6 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 {
        return None;
    }
    Some((code.parse().ok()?, reason.to_string()))
}

impl Handshake {
    /// The initiator: queues `GNUTELLA CONNECT/0.6` and our headers.
    pub fn outbound(cfg: HandshakeConfig, remote: SocketAddr) -> Self {
        let mut h = Handshake {
            cfg,
            remote,
            outbound: true,
            state: State::AwaitResponse,
            inbuf: Vec::new(),
            out: Vec::new(),
        };
        h.out.extend_from_slice(b"GNUTELLA CONNECT/0.6\r\n");
        h.common_headers();
        h.out.extend_from_slice(b"\r\n");
        h
    }

    /// The acceptor of an inbound connection from `remote`.
    pub fn inbound(cfg: HandshakeConfig, remote: SocketAddr) -> Self {
        Handshake {
            cfg,
            remote,
            outbound: false,
            state: State::AwaitConnect,
            inbuf: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Bytes to send to the peer now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn header(&mut self, name: &str, value: &str) {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(clean(value).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn common_headers(&mut self) {
        let ua = self.cfg.user_agent.clone();
        self.header("User-Agent", &ua);
        if let Some(l) = self.cfg.listen {
            self.header("Listen-IP", &l.to_string());
        }
        self.header("Remote-IP", &self.remote.ip().to_string());
        self.header(
            "X-Ultrapeer",
            if self.cfg.ultrapeer { "True" } else { "False" },
        );
        self.header("X-Query-Routing", "0.1");
        if self.cfg.ultrapeer {
            self.header("X-Ultrapeer-Query-Routing", "0.1");
            self.header("X-Degree", &self.cfg.degree.to_string());
            self.header("X-Dynamic-Querying", "0.1");
            self.header("X-Max-TTL", &self.cfg.max_ttl.to_string());
        }
        if self.cfg.deflate {
            self.header("Accept-Encoding", "deflate");
        }
    }

    /// Reads bytes from the peer.
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, HandshakeError> {
        if matches!(self.state, State::Done) {
            return Err(HandshakeError::Finished);
        }
        if self.inbuf.len() + data.len() > MAX_BLOCK * 2 {
            return Err(HandshakeError::BlockTooLarge);
        }
        self.inbuf.extend_from_slice(data);
        if matches!(self.state, State::Deciding { .. }) {
            return Ok(Progress::NeedMore);
        }
        let Some((block, used)) = parse_block(&self.inbuf)? else {
            return Ok(Progress::NeedMore);
        };
        self.inbuf.drain(..used);
        let peer = Headers::from_block(&block);
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitConnect => {
                let version = match block.start.as_str() {
                    "GNUTELLA CONNECT/0.6" => Version::V06,
                    "GNUTELLA CONNECT/0.4" => Version::V04,
                    s if s.starts_with("GNUTELLA CONNECT/") => Version::V06,
                    s => return Err(HandshakeError::Unexpected(s.chars().take(80).collect())),
                };
                self.state = State::Deciding {
                    version,
                    peer: peer.clone(),
                };
                Ok(Progress::Decide { version, peer })
            }
            State::AwaitResponse => {
                let (code, reason) = status(&block.start)
                    .ok_or_else(|| HandshakeError::BadStartLine(block.start.clone()))?;
                if code != 200 {
                    return Ok(Progress::Refused { code, reason, peer });
                }
                self.state = State::Deciding {
                    version: Version::V06,
                    peer: peer.clone(),
                };
                Ok(Progress::Decide {
                    version: Version::V06,
                    peer,
                })
            }
            State::AwaitFinal {
                peer: first,
                deflate_out,
            } => {
                let (code, reason) = status(&block.start)
                    .ok_or_else(|| HandshakeError::BadStartLine(block.start.clone()))?;
                if code != 200 {
                    return Ok(Progress::Refused { code, reason, peer });
                }
                let mut merged = first;
                merged.content_deflate = peer.content_deflate;
                merged.other.extend(peer.other);
                Ok(Progress::Established(Link {
                    version: Version::V06,
                    deflate_in: merged.content_deflate,
                    peer: merged,
                    deflate_out,
                    leftover: std::mem::take(&mut self.inbuf),
                }))
            }
            State::Deciding { .. } | State::Done => Err(HandshakeError::Finished),
        }
    }

    /// Answers a [`Progress::Decide`].
    pub fn respond(&mut self, decision: Decision) -> Result<Progress, HandshakeError> {
        let State::Deciding { version, peer } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(HandshakeError::NoDecisionPending);
        };
        match (decision, version) {
            (Decision::Refuse { .. }, Version::V04) => Ok(Progress::Closed),
            (
                Decision::Refuse {
                    code,
                    reason,
                    try_ultrapeers,
                },
                Version::V06,
            ) => {
                self.out.extend_from_slice(
                    format!("GNUTELLA/0.6 {code} {}\r\n", clean(&reason)).as_bytes(),
                );
                let ua = self.cfg.user_agent.clone();
                self.header("User-Agent", &ua);
                if !try_ultrapeers.is_empty() {
                    self.header("X-Try-Ultrapeers", &join(&try_ultrapeers));
                }
                self.out.extend_from_slice(b"\r\n");
                Ok(Progress::Closed)
            }
            (Decision::Accept { .. }, Version::V04) => {
                self.out.extend_from_slice(b"GNUTELLA OK\n\n");
                Ok(Progress::Established(Link {
                    version,
                    peer,
                    deflate_in: false,
                    deflate_out: false,
                    leftover: std::mem::take(&mut self.inbuf),
                }))
            }
            (
                Decision::Accept {
                    ultrapeer_needed,
                    try_ultrapeers,
                },
                Version::V06,
            ) => {
                let deflate_out = self.cfg.deflate && peer.accept_deflate;
                self.out.extend_from_slice(b"GNUTELLA/0.6 200 OK\r\n");
                if self.outbound {
                    let ua = self.cfg.user_agent.clone();
                    self.header("User-Agent", &ua);
                } else {
                    self.common_headers();
                    if let Some(n) = ultrapeer_needed {
                        self.header("X-Ultrapeer-Needed", if n { "True" } else { "False" });
                    }
                    if !try_ultrapeers.is_empty() {
                        self.header("X-Try-Ultrapeers", &join(&try_ultrapeers));
                    }
                }
                if deflate_out {
                    self.header("Content-Encoding", "deflate");
                }
                self.out.extend_from_slice(b"\r\n");
                if self.outbound {
                    Ok(Progress::Established(Link {
                        version,
                        deflate_in: peer.content_deflate,
                        peer,
                        deflate_out,
                        leftover: std::mem::take(&mut self.inbuf),
                    }))
                } else {
                    self.state = State::AwaitFinal { peer, deflate_out };
                    // The final block may already be buffered.
                    self.feed(&[])
                }
            }
        }
    }
}

/// Errors of the deflate stream.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeflateError {
    #[error("corrupt deflate stream")]
    Corrupt,
    #[error("the deflate stream ended")]
    Ended,
}

/// The sending half of a compressed link: one zlib stream for the whole connection,
/// sync-flushed after every call so each message is readable at once.
#[derive(Debug)]
pub struct Deflater(Compress);

impl Default for Deflater {
    fn default() -> Self {
        Deflater(Compress::new(Compression::default(), true))
    }
}

impl Deflater {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the compressed, flushed form of `data` to `out`.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let mut input = data;
        // Each round either consumes input or fills a reserved chunk; bounded anyway.
        for _ in 0..(data.len() / 64 + 64) {
            out.reserve(input.len() / 2 + 64);
            let before = self.0.total_in();
            let before_out = self.0.total_out();
            self.0
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|_| DeflateError::Corrupt)?;
            let used = (self.0.total_in() - before) as usize;
            let made = self.0.total_out() - before_out;
            input = input.get(used..).unwrap_or(&[]);
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if used == 0 && made == 0 {
                out.reserve(out.capacity().max(64));
            }
        }
        Err(DeflateError::Corrupt)
    }
}

/// The receiving half of a compressed link.
#[derive(Debug)]
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(true))
    }
}

impl Inflater {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inflates from `input` into `out` until nothing more comes out or `out` holds `limit`
    /// bytes (call again, even with empty input, to drain the rest); returns how many input bytes were consumed (the caller keeps the rest for
    /// the next call, after draining `out`).
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, DeflateError> {
        let mut scratch = [0u8; 4096];
        let mut consumed = 0;
        loop {
            let room = limit.saturating_sub(out.len()).min(scratch.len());
            let rest = input.get(consumed..).unwrap_or(&[]);
            // An empty `rest` still drains output the inflater holds from earlier input.
            if room == 0 {
                return Ok(consumed);
            }
            let (bi, bo) = (self.0.total_in(), self.0.total_out());
            let buf = scratch.get_mut(..room).unwrap_or(&mut []);
            let st = self
                .0
                .decompress(rest, buf, FlushDecompress::Sync)
                .map_err(|_| DeflateError::Corrupt)?;
            let used = (self.0.total_in() - bi) as usize;
            let made = (self.0.total_out() - bo) as usize;
            consumed += used;
            out.extend_from_slice(scratch.get(..made).unwrap_or(&[]));
            if st == flate2::Status::StreamEnd {
                return Err(DeflateError::Ended);
            }
            if used == 0 && made == 0 {
                return Ok(consumed);
            }
        }
    }
}
