//! The broadcaster process.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};

use super::{Handle, TvError, io, node_config, wall_offset_us};
use crate::core::{ChunkerConfig, Node, NodeCommand, NodeConfig, NodeEvent};

/// Where the live TS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputUrl {
    /// `tcp://ADDR`: listen there and take one connection (ffmpeg's `-f mpegts tcp://ADDR`).
    Tcp(SocketAddr),
    /// `udp://ADDR`: bind there and take datagrams (ffmpeg's `udp://ADDR`).
    Udp(SocketAddr),
    /// `-`: standard input.
    Stdin,
}

impl std::str::FromStr for InputUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<InputUrl, String> {
        if s == "-" {
            return Ok(InputUrl::Stdin);
        }
        let parse = |rest: &str| -> Result<SocketAddr, String> {
            let addr = rest.split(['?', '/']).next().unwrap_or(rest);
            addr.parse()
                .map_err(|e| format!("{s}: {e} (expected tcp://IP:PORT, udp://IP:PORT or -)"))
        };
        if let Some(rest) = s.strip_prefix("tcp://") {
            Ok(InputUrl::Tcp(parse(rest)?))
        } else if let Some(rest) = s.strip_prefix("udp://") {
            Ok(InputUrl::Udp(parse(rest)?))
        } else {
            Err(format!(
                "{s}: expected tcp://IP:PORT, udp://IP:PORT or - for stdin"
            ))
        }
    }
}

/// How to run a broadcaster.
#[derive(Debug, Clone)]
pub struct BroadcastOpts {
    /// The channel's name in the directory.
    pub name: String,
    /// The live input.
    pub input: InputUrl,
    /// The channel tracker.
    pub tracker: SocketAddr,
    /// Where it listens for viewers.
    pub listen: SocketAddr,
    /// Upload limit, kbit/s (0: unlimited).
    pub up_kbps: u32,
    /// The channel's secret key.
    pub key: ed25519_dalek::SigningKey,
    /// After the input ends, keep serving this long.
    pub linger: Duration,
    /// A UDP input that is silent this long has ended.
    pub udp_idle: Duration,
    /// How it cuts chunks.
    pub chunking: ChunkerConfig,
    /// Called once with the bound listen address and the channel id (hex).
    pub on_ready: Option<fn(SocketAddr, &str)>,
}

/// What a broadcast did.
#[derive(Debug, Clone, Default)]
pub struct BroadcastSummary {
    /// Bytes of TS taken in.
    pub input_bytes: u64,
    /// Chunks made.
    pub chunks: u64,
    /// Keyframe chunks.
    pub keyframe_chunks: u64,
    /// Chunk payload bytes uploaded.
    pub video_up: u64,
    /// The input's bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// How long the input lasted, seconds.
    pub input_secs: f64,
}

/// Runs a broadcaster until its input ends (and `linger` has passed) or Ctrl-C.
pub async fn broadcast(opts: BroadcastOpts) -> Result<BroadcastSummary, TvError> {
    let origin = std::time::Instant::now();
    let rng = servent_runtime::os_rng()?;
    let key = opts.key.clone();
    let mut cfg = NodeConfig::viewer([0; 32], opts.listen, Some(opts.tracker));
    cfg.name = opts.name.clone();
    cfg.up_kbps = opts.up_kbps;
    cfg.wall_offset_us = wall_offset_us(origin);
    cfg.max_partners = 64;
    let chunking = opts.chunking;
    let mut node: Handle = servent_runtime::spawn(node_config(opts.listen), move |local| {
        let mut cfg = cfg;
        if let Some(a) = local.tcp {
            cfg.listen = a;
        }
        Node::broadcaster(cfg, key, chunking, rng)
    })
    .await?;
    let listen = node.local.tcp.unwrap_or(opts.listen);
    let channel = hex::encode(opts.key.verifying_key().to_bytes());
    if let Some(f) = opts.on_ready {
        f(listen, &channel);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
    let input = opts.input.clone();
    let udp_idle = opts.udp_idle;
    let reader = tokio::spawn(async move { read_input(input, udp_idle, tx).await });
    let mut summary = BroadcastSummary::default();
    let mut started: Option<std::time::Instant> = None;
    let mut ended_at: Option<std::time::Instant> = None;
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    let ctrl_c = servent_runtime::stop_signal();
    tokio::pin!(ctrl_c);
    loop {
        if let Some(t) = ended_at
            && t.elapsed() >= opts.linger
        {
            break;
        }
        tokio::select! {
            data = rx.recv(), if ended_at.is_none() => match data {
                Some(Some(d)) => {
                    started.get_or_insert_with(std::time::Instant::now);
                    summary.input_bytes += d.len() as u64;
                    node.command(NodeCommand::Ingest(d)).await?;
                }
                Some(None) | None => {
                    node.command(NodeCommand::EndOfInput).await?;
                    ended_at = Some(std::time::Instant::now());
                    summary.input_secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
                    eprintln!("tv broadcast: input ended after {} bytes; serving for {:?} more", summary.input_bytes, opts.linger);
                }
            },
            ev = node.next_event() => match ev {
                Some(NodeEvent::Made { keyframe, .. }) => {
                    summary.chunks += 1;
                    summary.keyframe_chunks += u64::from(keyframe);
                }
                Some(_) => {}
                None => break,
            },
            _ = progress.tick() => {
                let (partners, up) = node
                    .inspect(|n| (n.partner_count(), n.stats().video_up))
                    .await?;
                println!(
                    "tv broadcast {}: {} chunks ({} keyframe), {} partners, {:.1} MB in, {:.1} MB up",
                    opts.name,
                    summary.chunks,
                    summary.keyframe_chunks,
                    partners,
                    summary.input_bytes as f64 / 1e6,
                    up as f64 / 1e6
                );
            }
            _ = tokio::time::sleep(Duration::from_millis(200)), if ended_at.is_some() => {}
            _ = &mut ctrl_c => break,
        }
    }
    reader.abort();
    node.command(NodeCommand::Leave).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let core = node.shutdown().await?;
    summary.video_up = core.stats().video_up;
    if summary.input_secs == 0.0 {
        summary.input_secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    }
    if summary.input_secs > 0.0 {
        summary.bitrate_kbps =
            (summary.input_bytes as f64 * 8.0 / summary.input_secs / 1000.0) as u32;
    }
    Ok(summary)
}

/// Reads the input and hands it on; `None` when it ends.
async fn read_input(
    input: InputUrl,
    udp_idle: Duration,
    tx: tokio::sync::mpsc::Sender<Option<Vec<u8>>>,
) -> Result<(), TvError> {
    let mut buf = vec![0u8; 64 * 1024];
    match input {
        InputUrl::Tcp(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(io(format!("listening for the input on {addr}")))?;
            let (mut s, _) = l.accept().await.map_err(io("accepting the input"))?;
            loop {
                let n = s.read(&mut buf).await.map_err(io("reading the input"))?;
                if n == 0 || tx.send(Some(buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
        InputUrl::Udp(addr) => {
            let s = UdpSocket::bind(addr)
                .await
                .map_err(io(format!("binding the input on {addr}")))?;
            let mut got = false;
            loop {
                let wait = if got {
                    udp_idle
                } else {
                    Duration::from_secs(3600)
                };
                match tokio::time::timeout(wait, s.recv(&mut buf)).await {
                    Ok(Ok(n)) => {
                        got = true;
                        if tx.send(Some(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                    Ok(Err(e)) => return Err(io("reading the input")(e)),
                    Err(_) => break,
                }
            }
        }
        InputUrl::Stdin => {
            let mut s = tokio::io::stdin();
            loop {
                let n = s.read(&mut buf).await.map_err(io("reading stdin"))?;
                if n == 0 || tx.send(Some(buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(None).await;
    Ok(())
}
