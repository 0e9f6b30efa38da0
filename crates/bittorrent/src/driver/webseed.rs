//! The web-seed fetcher (BEP 19): whole pieces over HTTP, handed to the client core as
//! [`ClientCommand::PieceData`], which verifies them like any piece.
//!
//! The HTTP side is the sans-IO [`crate::webseed`] codec (URLs, range requests, the response
//! reader); this is the socket loop around it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::client::ClientCommand;
use crate::metainfo::Metainfo;
use crate::webseed::{
    HttpUrl, MAX_REDIRECTS, ResponseReader, Source, Status, WebSeedError, piece_segments,
};

/// How long one HTTP connect or read from a web seed may take.
pub const WEB_SEED_READ: Duration = Duration::from_secs(30);

/// Why a web seed was given up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server did not connect or answer within [`WEB_SEED_READ`].
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// A response the codec refused (an HTTP error, a wrong range, a bad redirect).
    #[error(transparent)]
    WebSeed(#[from] WebSeedError),
    /// The server broke the exchange.
    #[error("{0}")]
    Protocol(&'static str),
}

/// Fetches whole pieces from the web seed `url` (the highest missing index first, so the
/// swarm's rarest-first picks and ours rarely meet) and hands them to `client`, which
/// verifies them. `have[i]`: piece `i` is in already (kept up to date by the caller).
/// Returns when every piece is in or the client is gone; an error when the seed fails (a
/// wrong piece, an HTTP error, a refused range). `user_agent` goes into each request.
pub async fn fetch(
    meta: Metainfo,
    url: &str,
    have: Arc<Mutex<Vec<bool>>>,
    client: mpsc::Sender<ClientCommand>,
    user_agent: &str,
) -> Result<(), FetchError> {
    let mut conn: Option<(String, u16, TcpStream)> = None;
    let mut fetched = vec![false; meta.piece_count()];
    let mut buf = vec![0u8; 1 << 16];
    let mut id = 0u64;
    loop {
        let next = {
            let h = have.lock().unwrap_or_else(|p| p.into_inner());
            (0..meta.piece_count())
                .rev()
                .find(|i| !h.get(*i).copied().unwrap_or(true) && !fetched[*i])
        };
        let Some(index) = next else { return Ok(()) };
        fetched[index] = true;
        let mut piece = vec![0u8; meta.piece_len(index) as usize];
        for seg in piece_segments(&meta, url, index as u32)? {
            let Source::Http {
                url: mut target,
                range,
                ..
            } = seg.source
            else {
                continue; // pad file: zeros
            };
            let mut body = Vec::with_capacity(seg.len as usize);
            let mut redirects = 0;
            'request: loop {
                let reuse =
                    matches!(&conn, Some((h, p, _)) if *h == target.host && *p == target.port);
                if !reuse {
                    let s = tokio::time::timeout(
                        WEB_SEED_READ,
                        TcpStream::connect((target.host.as_str(), target.port)),
                    )
                    .await
                    .map_err(|_| FetchError::Timeout("connect"))??;
                    conn = Some((target.host.clone(), target.port, s));
                }
                let Some((_, _, stream)) = conn.as_mut() else {
                    return Err(FetchError::Protocol("no connection"));
                };
                stream
                    .write_all(&target.get_request(range.clone(), user_agent))
                    .await?;
                let mut reader = ResponseReader::new(range.clone());
                body.clear();
                loop {
                    let n = tokio::time::timeout(WEB_SEED_READ, stream.read(&mut buf))
                        .await
                        .map_err(|_| FetchError::Timeout("read"))??;
                    if n == 0 {
                        return Err(FetchError::Protocol(
                            "the server closed the connection mid-response",
                        ));
                    }
                    match reader.feed(buf.get(..n).unwrap_or_default(), &mut body)? {
                        Status::NeedMore => {}
                        Status::Done { keep_alive, .. } => {
                            if !keep_alive {
                                conn = None;
                            }
                            break 'request;
                        }
                        Status::Redirect { location } => {
                            conn = None;
                            redirects += 1;
                            if redirects > MAX_REDIRECTS {
                                return Err(FetchError::Protocol("too many redirects"));
                            }
                            target = HttpUrl::join(&target, &location)?;
                            continue 'request;
                        }
                        Status::Unavailable { retry_after } => {
                            conn = None;
                            let wait = retry_after.unwrap_or(10).min(60);
                            tokio::time::sleep(Duration::from_secs(wait)).await;
                            continue 'request;
                        }
                    }
                }
            }
            let at = seg.piece_offset as usize;
            match piece.get_mut(at..at + body.len()) {
                Some(dst) if body.len() == seg.len as usize => dst.copy_from_slice(&body),
                _ => return Err(FetchError::Protocol("a segment of the wrong length")),
            }
        }
        id += 1;
        if client
            .send(ClientCommand::PieceData {
                id,
                index: index as u32,
                data: piece,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}
