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
    /// Run only the demo's TV section (two live channels, 20 viewers, one switch).
    #[command(hide = true)]
    Demo,
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
        Sub::Demo => {
            let sec = demo(std::path::Path::new(".")).await?;
            for r in &sec.rows {
                println!(
                    "{} {:<42} {}",
                    if r.ok { "ok  " } else { "FAIL" },
                    r.check,
                    r.result
                );
            }
            if sec.ok() {
                Ok(())
            } else {
                anyhow::bail!("some TV demo checks failed")
            }
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

/// A port on 127.0.0.1 that was free a moment ago.
fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?)
}

/// Reads `http://play/channel` for `secs`, returns (bytes, seconds to the first byte).
async fn read_play(play: SocketAddr, channel: &str, secs: f64) -> Result<(u64, Option<f64>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t0 = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(play).await?;
    s.write_all(format!("GET /{channel} HTTP/1.1\r\nHost: {play}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut body = 0u64;
    let mut first = None;
    while t0.elapsed().as_secs_f64() < secs {
        let left = Duration::from_secs_f64((secs - t0.elapsed().as_secs_f64()).max(0.01));
        let n = match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
        };
        if head.len() < 4 || !head.ends_with(b"\r\n\r\n") {
            // Still in the head: split it off.
            let mut i = 0;
            while i < n && !head.ends_with(b"\r\n\r\n") {
                head.push(buf[i]);
                i += 1;
            }
            body += (n - i) as u64;
        } else {
            body += n as u64;
        }
        if body > 0 && first.is_none() {
            first = Some(t0.elapsed().as_secs_f64());
        }
    }
    Ok((body, first))
}

/// The demo's TV section: ffmpeg's test source live on two channels, 20 viewers, one switch.
pub async fn demo(_out: &std::path::Path) -> Result<crate::demo::DemoSection> {
    let mut sec = crate::demo::DemoSection::new("P2P TV");
    let ok = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        sec.row(
            "ffmpeg test source",
            "ffmpeg is not installed (apt-get install ffmpeg)",
            false,
        );
        return Ok(sec);
    }
    let tracker = free_addr()?;
    let ttask = tokio::spawn(driver::run_tracker(TrackerOpts {
        listen: tracker,
        on_ready: None,
        verbose: false,
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let secs = 14u64;
    let mut bcs = Vec::new();
    let mut encoders = Vec::new();
    for name in ["news", "sport"] {
        let input = free_addr()?;
        let key = driver::load_or_create_key(None)?;
        let opts = BroadcastOpts {
            name: name.to_string(),
            input: InputUrl::Tcp(input),
            tracker,
            listen: "127.0.0.1:0".parse()?,
            up_kbps: 0,
            key,
            linger: Duration::from_secs(2),
            udp_idle: Duration::from_secs(10),
            chunking: ChunkerConfig::default(),
            on_ready: None,
        };
        bcs.push(tokio::spawn(driver::broadcast(opts)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let freq = if name == "news" { "440" } else { "660" };
        encoders.push(
            std::process::Command::new("ffmpeg")
                .args([
                    "-v",
                    "error",
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc=size=320x240:rate=25",
                    "-f",
                    "lavfi",
                    "-i",
                    &format!("sine=frequency={freq}:sample_rate=48000"),
                    "-t",
                    &(secs + 4).to_string(),
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-g",
                    "25",
                    "-pix_fmt",
                    "yuv420p",
                    "-c:a",
                    "aac",
                    "-f",
                    "mpegts",
                    &format!("tcp://{input}"),
                ])
                .stdin(std::process::Stdio::null())
                .spawn()
                .context("starting ffmpeg")?,
        );
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut viewers = Vec::new();
    let mut plays = Vec::new();
    for i in 0..20usize {
        let channel = if i < 14 { "news" } else { "sport" };
        let play = free_addr()?;
        plays.push(play);
        let opts = WatchOpts {
            channel: channel.to_string(),
            tracker,
            listen: "127.0.0.1:0".parse()?,
            play,
            up_kbps: 3400,
            supernode: i == 0,
            peers: Vec::new(),
            partners: 4,
            buffer: Duration::from_millis(1500),
            duration: Some(Duration::from_secs(secs - 2)),
            linger: Duration::from_secs(1),
            csv: None,
            on_ready: None,
            progress: false,
        };
        viewers.push(tokio::spawn(driver::watch(opts)));
    }
    // Viewer 1 plays news, then switches to sport on the same play endpoint.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p1 = plays[1];
    let watching = tokio::spawn(async move { read_play(p1, "news", 5.0).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let switched = read_play(p1, "sport", 3.0).await;
    let before = watching.await?;
    let (switched, before) = match (switched, before) {
        (Ok(s), Ok(b)) => (s, b),
        (Err(e), _) | (_, Err(e)) => {
            for e in encoders.iter_mut() {
                let _ = e.kill();
                let _ = e.wait();
            }
            return Err(e.context("the channel switch"));
        }
    };
    let mut reports = Vec::new();
    for v in viewers {
        reports.push(v.await?.context("a demo viewer")?);
    }
    for e in encoders.iter_mut() {
        let _ = e.kill();
        let _ = e.wait();
    }
    let mut up = 0u64;
    let mut input = 0u64;
    for b in bcs {
        let s = b.await?.context("a demo broadcaster")?;
        up += s.video_up;
        input += s.input_bytes;
    }
    ttask.abort();
    let mut worst = 1.0f64;
    for (i, r) in reports.iter().enumerate() {
        let Some(c) = r.channels.first() else {
            continue;
        };
        worst = worst.min(c.continuity);
        let good = c.continuity >= 0.99 && c.startup_s.is_some_and(|s| s <= 1.5);
        sec.row(
            format!("viewer {i:>2} ({})", c.name),
            format!(
                "startup {}, lag p50 {}, continuity {:.4} ({} played, {} skipped)",
                c.startup_s.map_or("-".into(), |v| format!("{v:.2} s")),
                c.lag_s.map_or("-".into(), |l| format!("{:.2} s", l.1)),
                c.continuity,
                c.stats.played,
                c.stats.skipped
            ),
            good,
        );
    }
    sec.row(
        "channel switch news -> sport (viewer 1)",
        format!(
            "news played {} bytes; sport's first byte after {} ({} bytes in 3 s)",
            before.0,
            switched.1.map_or("never".into(), |v| format!("{v:.2} s")),
            switched.0
        ),
        switched.1.is_some_and(|v| v <= 2.0) && before.0 > 0,
    );
    sec.row(
        "source upload / ingested",
        format!(
            "{:.2}x for 2 channels and 20 viewers (client-server: 10x on average)",
            up as f64 / input.max(1) as f64
        ),
        input > 0,
    );
    let _ = worst;
    Ok(sec)
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
