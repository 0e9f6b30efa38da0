//! `servent tv`: live P2P TV — broadcaster, channel tracker and directory, viewer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use servent_tv::core::ChunkerConfig;
use servent_tv::driver::{self, BroadcastOpts, InputUrl, TrackerOpts, WatchOpts};

/// Live P2P TV: every viewer downloads and forwards the channel (mesh pull, signed chunks).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Ingest a live MPEG-TS, cut it into signed chunks at keyframes, announce the channel.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Broadcast {
        /// The channel's name in the directory.
        #[arg(long)]
        channel: String,
        /// tcp://IP:PORT (we listen; ffmpeg connects), udp://IP:PORT (we bind), or - (stdin).
        #[arg(long)]
        input: InputUrl,
        /// The channel tracker.
        #[arg(long)]
        tracker: SocketAddr,
        /// Where viewers connect.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Upload limit, e.g. 3.4M, 800k (bit/s; 0: unlimited).
        #[arg(long, default_value = "0", value_parser = parse_rate)]
        up: u32,
        /// The channel's secret key (64 hex digits; made and saved if the file is missing).
        /// Without it a new channel id is made for this run.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// After the input ends, keep serving viewers this many seconds.
        #[arg(long, default_value_t = 10)]
        linger: u64,
        /// Most TS packets in one chunk (7..=1394).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(7..=1394))]
        chunk_packets: u32,
    },
    /// Run the channel tracker and directory.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Tracker {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: SocketAddr,
    },
    /// List the tracker's channels with their viewers and bitrate.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Channels {
        /// The channel tracker.
        #[arg(long)]
        tracker: SocketAddr,
    },
    /// Watch (and forward) a channel; a player reads it at http://PLAY/CHANNEL.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Watch {
        /// The channel's name (or its id, 64 hex digits).
        channel: String,
        /// The channel tracker.
        #[arg(long)]
        tracker: SocketAddr,
        /// Where partners connect.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The HTTP play endpoint.
        #[arg(long, default_value = "127.0.0.1:8800")]
        play: SocketAddr,
        /// Upload limit, e.g. 1.7M, 800k (bit/s; 0: unlimited).
        #[arg(long, default_value = "0", value_parser = parse_rate)]
        up: u32,
        /// A well-provisioned node: the tracker prefers it as a parent.
        #[arg(long)]
        supernode: bool,
        /// Partner only with this peer (repeatable); the tracker's suggestions are ignored.
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Partners to dial.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=64))]
        partners: u32,
        /// Playout buffer, milliseconds.
        #[arg(long, default_value_t = 1000)]
        buffer_ms: u64,
        /// Leave after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// After the broadcast ends, keep forwarding this many seconds.
        #[arg(long, default_value_t = 5)]
        linger: u64,
        /// Write the metrics here as CSV (rewritten every 5 s and at the end).
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
    },
}

/// `1.7M`, `800k`, `2000000` (bit/s) to kbit/s.
fn parse_rate(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        Some('g' | 'G') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s}: expected a rate like 1.7M, 800k or 2000000 (bit/s)"))?;
    if !(0.0..=1e11).contains(&v) {
        return Err(format!("{s}: out of range"));
    }
    Ok((v * mul / 1000.0).round() as u32)
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.cmd {
        Sub::Broadcast {
            channel,
            input,
            tracker,
            listen,
            up,
            key,
            linger,
            chunk_packets,
        } => {
            let key = driver::load_or_create_key(key.as_deref()).context("the channel key")?;
            let opts = BroadcastOpts {
                name: channel.clone(),
                input,
                tracker,
                listen,
                up_kbps: up,
                key,
                linger: Duration::from_secs(linger),
                udp_idle: Duration::from_secs(10),
                chunking: ChunkerConfig {
                    max_packets: chunk_packets as usize,
                    ..ChunkerConfig::default()
                },
                on_ready: Some(|addr, id| {
                    println!("tv broadcast: channel {id} listening on {addr}");
                }),
            };
            let s = driver::broadcast(opts)
                .await
                .with_context(|| format!("broadcasting {channel}"))?;
            println!(
                "tv broadcast {channel}: {} bytes in over {:.1} s ({} kbit/s), {} chunks ({} at keyframes), {} bytes of video uploaded ({:.2}x the input)",
                s.input_bytes,
                s.input_secs,
                s.bitrate_kbps,
                s.chunks,
                s.keyframe_chunks,
                s.video_up,
                if s.input_bytes > 0 {
                    s.video_up as f64 / s.input_bytes as f64
                } else {
                    0.0
                }
            );
            Ok(())
        }
        Sub::Tracker { listen } => {
            driver::run_tracker(TrackerOpts {
                listen,
                on_ready: Some(|a| println!("tv tracker: listening on {a}")),
                verbose: true,
            })
            .await
            .with_context(|| format!("running the tracker on {listen}"))?;
            Ok(())
        }
        Sub::Channels { tracker } => {
            let list = driver::list_channels(tracker)
                .await
                .with_context(|| format!("asking {tracker} for its channels"))?;
            println!("{:<20} {:>8} {:>12}  id", "channel", "viewers", "kbit/s");
            for c in &list {
                println!(
                    "{:<20} {:>8} {:>12}  {}",
                    c.name,
                    c.viewers,
                    c.bitrate_kbps,
                    driver::channel_hex(&c.channel)
                );
            }
            println!("{} channels", list.len());
            Ok(())
        }
        Sub::Watch {
            channel,
            tracker,
            listen,
            play,
            up,
            supernode,
            peers,
            partners,
            buffer_ms,
            duration,
            linger,
            csv,
        } => {
            let opts = WatchOpts {
                channel: channel.clone(),
                tracker,
                listen,
                play,
                up_kbps: up,
                supernode,
                peers,
                partners: partners as usize,
                buffer: Duration::from_millis(buffer_ms),
                duration: duration.map(Duration::from_secs),
                linger: Duration::from_secs(linger),
                csv,
                on_ready: Some(|play, listen| {
                    println!("tv watch: partners connect to {listen}; play http://{play}/CHANNEL");
                }),
                progress: true,
            };
            let r = driver::watch(opts)
                .await
                .with_context(|| format!("watching {channel}"))?;
            for l in driver::summary_lines(&r) {
                println!("{l}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_parse_with_suffixes() {
        assert_eq!(parse_rate("1.7M"), Ok(1700));
        assert_eq!(parse_rate("800k"), Ok(800));
        assert_eq!(parse_rate("3400000"), Ok(3400));
        assert!(parse_rate("fast").is_err());
    }
}
