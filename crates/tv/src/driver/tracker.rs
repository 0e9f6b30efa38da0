//! The tracker process.

use std::net::SocketAddr;

use super::TvError;
use crate::core::{Tracker, TrackerEvent};

/// How to run a tracker.
#[derive(Debug, Clone)]
pub struct TrackerOpts {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Called once with the bound address.
    pub on_ready: Option<fn(SocketAddr)>,
    /// Print joins and leaves.
    pub verbose: bool,
}

/// Runs a tracker until Ctrl-C.
pub async fn run_tracker(opts: TrackerOpts) -> Result<(), TvError> {
    let rng = servent_runtime::os_rng()?;
    let cfg = servent_runtime::NodeConfig {
        tcp: Some(opts.listen),
        max_connections: 20_000,
        ..Default::default()
    };
    let mut node = servent_runtime::spawn(cfg, move |_| Tracker::new(rng)).await?;
    let addr = node.local.tcp.unwrap_or(opts.listen);
    if let Some(f) = opts.on_ready {
        f(addr);
    }
    let ctrl_c = servent_runtime::stop_signal();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(TrackerEvent::Joined { channel, addr }) if opts.verbose => {
                    println!("tv tracker: {addr} joined {}", &hex::encode(channel)[..16]);
                }
                Some(TrackerEvent::Left { channel, addr }) if opts.verbose => {
                    println!("tv tracker: {addr} left {}", &hex::encode(channel)[..16]);
                }
                Some(_) => {}
                None => break,
            },
            _ = &mut ctrl_c => break,
        }
    }
    node.shutdown().await?;
    Ok(())
}
