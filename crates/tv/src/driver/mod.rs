//! The tokio glue (feature `runtime`): the broadcaster, the tracker and the viewer as
//! processes, each a core from [`crate::core`] under `servent-runtime`'s driver.
//!
//! - [`broadcast`]: reads a live MPEG-TS from `tcp://` (it listens; ffmpeg connects),
//!   `udp://` (it binds) or stdin, feeds it to the broadcaster [`Node`], announces the channel.
//! - `tracker`: the channel tracker and directory, and [`list_channels`] for clients.
//! - [`watch`]: a viewer with its HTTP play endpoint: `GET /CHANNEL` streams the channel's TS
//!   until the broadcast ends, starting at the newest keyframe chunk; asking for another
//!   channel joins it alongside the first (a channel switch keeps both until the new one plays).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use servent_core::framing::RecvBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::core::Node;
use crate::wire::chunk::ChannelId;
use crate::wire::msg::{ChannelInfo, FRAME, TrackerMsg};

mod broadcast;
mod tracker;
mod watch;

pub use broadcast::{BroadcastOpts, BroadcastSummary, InputUrl, broadcast};
pub use tracker::{TrackerOpts, run_tracker};
pub use watch::{ChannelReport, WatchOpts, WatchReport, summary_lines, watch};

/// What can go wrong in a TV process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TvError {
    /// The node's sockets or task.
    #[error(transparent)]
    Driver(#[from] servent_runtime::DriverError),
    /// OS randomness.
    #[error(transparent)]
    Random(#[from] servent_runtime::OsRandomError),
    /// A socket or file.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The tracker did not answer as it should.
    #[error("tracker {addr}: {msg}")]
    Tracker {
        /// The tracker.
        addr: SocketAddr,
        /// What went wrong.
        msg: String,
    },
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TvError {
    let what = what.into();
    move |source| TvError::Io { what, source }
}

/// Wall clock minus the driver's `Instant` origin, µs, for [`crate::core::NodeConfig::wall_offset_us`].
pub fn wall_offset_us(origin: std::time::Instant) -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    wall - origin.elapsed().as_micros() as i64
}

/// The wall clock, µs since the Unix epoch.
pub fn wall_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// Channel ids are printed and typed as 64 hex digits.
pub fn channel_hex(id: &ChannelId) -> String {
    hex::encode(id)
}

/// Parses 64 hex digits as a channel id.
pub fn parse_channel_hex(s: &str) -> Option<ChannelId> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

/// Asks the tracker at `addr` for its directory.
pub async fn list_channels(addr: SocketAddr) -> Result<Vec<ChannelInfo>, TvError> {
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(io(format!("connecting to tracker {addr}")))?;
        s.write_all(&TrackerMsg::ListChannels.to_bytes())
            .await
            .map_err(io("writing to the tracker"))?;
        let mut buf = RecvBuf::new(FRAME.max_frame_len());
        let mut tmp = vec![0u8; 16 * 1024];
        loop {
            let n = s
                .read(&mut tmp)
                .await
                .map_err(io("reading from the tracker"))?;
            if n == 0 {
                return Err(TvError::Tracker {
                    addr,
                    msg: "closed the connection".into(),
                });
            }
            buf.extend(&tmp[..n]).map_err(|e| TvError::Tracker {
                addr,
                msg: e.to_string(),
            })?;
            if let Some(f) = buf.next_frame(&FRAME).map_err(|e| TvError::Tracker {
                addr,
                msg: e.to_string(),
            })? {
                return match TrackerMsg::decode(f.payload) {
                    Ok(TrackerMsg::Channels(v)) => Ok(v),
                    Ok(m) => Err(TvError::Tracker {
                        addr,
                        msg: format!("unexpected answer {m:?}"),
                    }),
                    Err(e) => Err(TvError::Tracker {
                        addr,
                        msg: e.to_string(),
                    }),
                };
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| TvError::Tracker {
            addr,
            msg: "no answer within 10 s".into(),
        })?
}

/// Finds a channel by name (or 64 hex digits) in the tracker's directory.
pub async fn resolve(tracker: SocketAddr, name: &str) -> Result<ChannelInfo, TvError> {
    let list = list_channels(tracker).await?;
    let hex_id = parse_channel_hex(name);
    list.into_iter()
        .find(|c| c.name == name || Some(c.channel) == hex_id)
        .ok_or_else(|| TvError::Usage(format!("the tracker {tracker} knows no channel {name:?}")))
}

/// Writes `data` to `path` atomically: a temporary file, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), TvError> {
    use std::io::Write as _;
    let tmp: PathBuf = {
        let mut p = path.as_os_str().to_owned();
        p.push(".tmp");
        p.into()
    };
    let mut f = std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))
}

/// Loads the channel's secret key from `path` (64 hex digits), or makes one and saves it.
pub fn load_or_create_key(path: Option<&Path>) -> Result<ed25519_dalek::SigningKey, TvError> {
    if let Some(p) = path
        && p.exists()
    {
        let s = std::fs::read_to_string(p).map_err(io(format!("reading {}", p.display())))?;
        let seed: [u8; 32] = hex::decode(s.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| TvError::Usage(format!("{}: not 64 hex digits", p.display())))?;
        return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
    }
    let seed: [u8; 32] = servent_runtime::os_random()?;
    if let Some(p) = path {
        write_atomic(p, hex::encode(seed).as_bytes())?;
    }
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// A node config for the runtime driver listening at `listen`.
pub(crate) fn node_config(listen: SocketAddr) -> servent_runtime::NodeConfig {
    servent_runtime::NodeConfig {
        tcp: Some(listen),
        connect_timeout: Duration::from_secs(3),
        ..servent_runtime::NodeConfig::default()
    }
}

/// The node handle type.
pub(crate) type Handle = servent_runtime::NodeHandle<Node>;
