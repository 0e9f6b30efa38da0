//! The tokio driver: the storage node ([`node`]) and the client ([`client`]). One TCP request/response per shard operation ([`crate::wire::shard`]);
//! the DHT (servent-kademlia's UDP node) on the same port number as the TCP listener, so
//! that a node the DHT names is reachable for shards at the same address.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod client;
pub mod node;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::shard::{self, Request, Response};

/// A shard request that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// Could not connect, or the connection broke.
    #[error("{addr}: {source}")]
    Io {
        /// Whom.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{0}: no answer in time")]
    Timeout(String),
    /// A malformed answer.
    #[error("{addr}: malformed answer: {source}")]
    Wire {
        /// Whom.
        addr: String,
        /// Why.
        source: shard::WireError,
    },
}

/// Reads one frame body from `s`.
pub(crate) async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await?;
    let n =
        shard::frame_len(h).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).await?;
    Ok(b)
}

/// One request to the node at `addr`, on a fresh connection, within `limit`.
pub async fn rpc(addr: &str, req: &Request, limit: Duration) -> Result<Response, RpcError> {
    let io = |source| RpcError::Io {
        addr: addr.to_string(),
        source,
    };
    let fut = async {
        let sa: SocketAddr = addr.parse().map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "bad address",
            ))
        })?;
        let mut s = TcpStream::connect(sa).await.map_err(io)?;
        s.set_nodelay(true).ok();
        s.write_all(&req.encode()).await.map_err(io)?;
        let body = read_frame(&mut s).await.map_err(io)?;
        Response::decode(&body).map_err(|source| RpcError::Wire {
            addr: addr.to_string(),
            source,
        })
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| RpcError::Timeout(addr.to_string()))?
}
