//! The viewer process and its HTTP play endpoint.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use servent_http::{Limits, ResponseHead, parse_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::{
    Handle, TvError, channel_hex, io, node_config, parse_channel_hex, resolve, wall_offset_us,
};
use crate::core::{Node, NodeCommand, NodeConfig, NodeEvent, NodeStats};
use crate::wire::chunk::{ChannelId, Chunk};

/// Chunks a player connection may fall behind before it is closed (never cut mid-stream).
const PLAYER_QUEUE: usize = 512;
/// Most chunks kept for a player that connects late (from the newest keyframe chunk).
const GOP_CACHE: usize = 256;

/// How to run a viewer.
#[derive(Debug, Clone)]
pub struct WatchOpts {
    /// The channel: its name in the directory or its id (64 hex digits).
    pub channel: String,
    /// The channel tracker.
    pub tracker: SocketAddr,
    /// Where it listens for partners.
    pub listen: SocketAddr,
    /// Where the HTTP play endpoint listens.
    pub play: SocketAddr,
    /// Upload limit, kbit/s (0: unlimited).
    pub up_kbps: u32,
    /// Announce as a supernode.
    pub supernode: bool,
    /// Partner only with these.
    pub peers: Vec<SocketAddr>,
    /// Partners to dial.
    pub partners: usize,
    /// The playout buffer.
    pub buffer: Duration,
    /// Leave after this long.
    pub duration: Option<Duration>,
    /// After the broadcast ends, keep forwarding this long.
    pub linger: Duration,
    /// Metrics CSV (rewritten every few seconds and at the end).
    pub csv: Option<PathBuf>,
    /// Called once with the bound play and partner addresses.
    pub on_ready: Option<fn(SocketAddr, SocketAddr)>,
    /// Print progress lines.
    pub progress: bool,
}

/// One channel's figures.
#[derive(Debug, Clone, Default)]
pub struct ChannelReport {
    /// Its name (as asked for).
    pub name: String,
    /// Its id.
    pub channel: String,
    /// From joining to the first chunk played, seconds.
    pub startup_s: Option<f64>,
    /// From a player's request to its first byte, seconds, per request (the channel
    /// switch time when the player was watching another channel).
    pub first_byte_s: Vec<f64>,
    /// Lag percentiles, seconds: 5th, 50th, 95th.
    pub lag_s: Option<(f64, f64, f64)>,
    /// Chunks played on time ÷ chunks due.
    pub continuity: f64,
    /// The node's counters.
    pub stats: NodeStats,
    /// Partners at the end.
    pub partners: usize,
}

/// What a viewer measured.
#[derive(Debug, Clone, Default)]
pub struct WatchReport {
    /// Per channel, the first one first.
    pub channels: Vec<ChannelReport>,
}

impl WatchReport {
    /// The CSV text: one row per channel.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "channel,name,startup_s,first_byte_s,lag_p5_s,lag_p50_s,lag_p95_s,continuity,played,skipped,video_down_bytes,video_up_bytes,control_overhead,forgers_dropped,repaired,partners\n",
        );
        for c in &self.channels {
            let fb = c
                .first_byte_s
                .first()
                .map_or(String::new(), |v| format!("{v:.3}"));
            let (l5, l50, l95) = c.lag_s.map_or(
                (String::new(), String::new(), String::new()),
                |(a, b, d)| (format!("{a:.3}"), format!("{b:.3}"), format!("{d:.3}")),
            );
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{:.4},{},{},{},{},{:.5},{},{},{}\n",
                c.channel,
                c.name.replace(',', " "),
                c.startup_s.map_or(String::new(), |v| format!("{v:.3}")),
                fb,
                l5,
                l50,
                l95,
                c.continuity,
                c.stats.played,
                c.stats.skipped,
                c.stats.video_down,
                c.stats.video_up,
                c.stats.control_overhead(),
                c.stats.forgers_dropped,
                c.stats.repaired,
                c.partners
            ));
        }
        s
    }
}

#[derive(Debug, Default)]
struct Shared {
    cache: VecDeque<Arc<Chunk>>,
    subs: Vec<mpsc::Sender<Arc<Chunk>>>,
    ended: bool,
    stats: NodeStats,
    partners: usize,
    first_byte_s: Vec<f64>,
}

#[derive(Debug)]
struct Chan {
    name: String,
    id: ChannelId,
    listen: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Ctx {
    opts: WatchOpts,
    chans: Mutex<Vec<Chan>>,
    origin: std::time::Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ctx {
    fn find(&self, name: &str) -> Option<Arc<Mutex<Shared>>> {
        let id = parse_channel_hex(name);
        lock(&self.chans)
            .iter()
            .find(|c| c.name == name || Some(c.id) == id)
            .map(|c| c.shared.clone())
    }

    /// Joins channel `name` (resolving it at the tracker) unless already in it.
    async fn join(&self, name: &str, listen: SocketAddr) -> Result<Arc<Mutex<Shared>>, TvError> {
        if let Some(s) = self.find(name) {
            return Ok(s);
        }
        let id = match parse_channel_hex(name) {
            Some(id) => id,
            None => {
                // The broadcaster may not have announced yet: retry for a while.
                let mut tries = 0;
                loop {
                    match resolve(self.opts.tracker, name).await {
                        Ok(c) => break c.channel,
                        Err(e) if tries >= 20 => return Err(e),
                        Err(_) => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        };
        if let Some(s) = self.find(name) {
            return Ok(s);
        }
        let rng = servent_runtime::os_rng()?;
        let mut cfg = NodeConfig::viewer(id, listen, Some(self.opts.tracker));
        cfg.up_kbps = self.opts.up_kbps;
        cfg.supernode = self.opts.supernode;
        cfg.fixed_peers = self.opts.peers.clone();
        cfg.partners = self.opts.partners;
        cfg.buffer = self.opts.buffer;
        cfg.wall_offset_us = wall_offset_us(self.origin);
        if self.opts.supernode {
            cfg.max_partners = 200;
        }
        let node: Handle = servent_runtime::spawn(node_config(listen), move |local| {
            let mut cfg = cfg;
            if let Some(a) = local.tcp {
                cfg.listen = a;
            }
            Node::new(cfg, rng)
        })
        .await?;
        let bound = node.local.tcp.unwrap_or(listen);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(pump(
            node,
            shared.clone(),
            stop_rx,
            name.to_string(),
            self.opts.progress,
        ));
        lock(&self.chans).push(Chan {
            name: name.to_string(),
            id,
            listen: bound,
            shared: shared.clone(),
            stop: Some(stop_tx),
            task: Some(task),
        });
        Ok(shared)
    }

    fn report(&self) -> WatchReport {
        let chans = lock(&self.chans);
        WatchReport {
            channels: chans
                .iter()
                .map(|c| {
                    let s = lock(&c.shared);
                    let lag = match (
                        s.stats.lag_percentile(5.0),
                        s.stats.lag_percentile(50.0),
                        s.stats.lag_percentile(95.0),
                    ) {
                        (Some(a), Some(b), Some(d)) => Some((a, b, d)),
                        _ => None,
                    };
                    ChannelReport {
                        name: c.name.clone(),
                        channel: channel_hex(&c.id),
                        startup_s: s.stats.startup.map(|d| d.as_secs_f64()),
                        first_byte_s: s.first_byte_s.clone(),
                        lag_s: lag,
                        continuity: s.stats.continuity(),
                        stats: s.stats.clone(),
                        partners: s.partners,
                    }
                })
                .collect(),
        }
    }
}

/// Runs one channel's node: hands its chunks to the players, keeps its figures.
async fn pump(
    mut node: Handle,
    shared: Arc<Mutex<Shared>>,
    mut stop: oneshot::Receiver<()>,
    name: String,
    progress: bool,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(NodeEvent::Play { chunk, .. }) => {
                    let mut s = lock(&shared);
                    if chunk.keyframe {
                        s.cache.clear();
                    }
                    if s.cache.len() >= GOP_CACHE {
                        s.cache.pop_front();
                    }
                    s.cache.push_back(chunk.clone());
                    // A player that does not keep up is closed as a whole, never cut.
                    s.subs.retain(|tx| tx.try_send(chunk.clone()).is_ok());
                }
                Some(NodeEvent::Ended) => {
                    let mut s = lock(&shared);
                    s.ended = true;
                    s.subs.clear();
                    if progress {
                        println!("tv watch {name}: the broadcast ended");
                    }
                }
                Some(NodeEvent::Started { seq, startup }) => {
                    if progress {
                        println!("tv watch {name}: playing from chunk {seq} after {:.3} s", startup.as_secs_f64());
                    }
                }
                Some(NodeEvent::Forger { addr, error }) => {
                    eprintln!("tv watch {name}: dropped {addr}: {error}");
                }
                Some(_) => {}
                None => break,
            },
            _ = tick.tick() => {
                if let Ok((st, p)) = node.inspect(|n| (n.stats().clone(), n.partner_count())).await {
                    let mut s = lock(&shared);
                    s.stats = st;
                    s.partners = p;
                }
            }
            _ = &mut stop => break,
        }
    }
    let _ = node.command(NodeCommand::Leave).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Ok(core) = node.shutdown().await {
        let mut s = lock(&shared);
        s.stats = core.stats().clone();
        s.partners = core.partner_count();
    }
}

/// Answers 404 (an unknown channel or path); the connection closes after it.
async fn not_found(sock: &mut TcpStream) {
    let head = ResponseHead::new(404)
        .header("Connection", "close")
        .header("Content-Length", "0");
    let _ = sock.write_all(&head.to_bytes()).await;
}

/// Serves one player connection.
async fn serve_player(mut sock: TcpStream, ctx: Arc<Ctx>) -> Result<(), TvError> {
    let asked = std::time::Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 2048];
    let head = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut tmp))
            .await
            .map_err(|_| TvError::Usage("player sent no request".into()))?
            .map_err(io("reading the player's request"))?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        match parse_request(&buf, &Limits::default()) {
            Ok(Some((h, _))) => break h,
            Ok(None) => continue,
            Err(e) => {
                let _ = sock
                    .write_all(
                        &ResponseHead::new(400)
                            .header("Connection", "close")
                            .to_bytes(),
                    )
                    .await;
                return Err(TvError::Usage(format!("bad request from the player: {e}")));
            }
        }
    };
    let name =
        servent_http::percent_decode_str(head.path().trim_start_matches('/')).unwrap_or_default();
    if head.method != "GET" || name.is_empty() || name.contains('/') {
        not_found(&mut sock).await;
        return Ok(());
    }
    let listen = SocketAddr::new(ctx.opts.listen.ip(), 0);
    let shared = match ctx.join(&name, listen).await {
        Ok(s) => s,
        Err(e) => {
            not_found(&mut sock).await;
            return Err(e);
        }
    };
    let (tx, mut rx) = mpsc::channel::<Arc<Chunk>>(PLAYER_QUEUE);
    {
        let mut s = lock(&shared);
        for c in &s.cache {
            let _ = tx.try_send(c.clone());
        }
        if !s.ended {
            s.subs.push(tx);
        }
    }
    let resp = ResponseHead::new(200)
        .header("Content-Type", "video/mp2t")
        .header("Cache-Control", "no-cache")
        .header("Connection", "close");
    sock.write_all(&resp.to_bytes())
        .await
        .map_err(io("writing to the player"))?;
    let mut first = true;
    while let Some(c) = rx.recv().await {
        if sock.write_all(&c.payload).await.is_err() {
            return Ok(());
        }
        if first {
            first = false;
            lock(&shared)
                .first_byte_s
                .push(asked.elapsed().as_secs_f64());
        }
    }
    let _ = sock.shutdown().await;
    Ok(())
}

/// Runs a viewer until the broadcast ends (and `linger` has passed), `duration` passes, or
/// Ctrl-C; returns what it measured.
pub async fn watch(opts: WatchOpts) -> Result<WatchReport, TvError> {
    let origin = std::time::Instant::now();
    let play = TcpListener::bind(opts.play)
        .await
        .map_err(io(format!("binding the play endpoint {}", opts.play)))?;
    let play_addr = play.local_addr().map_err(io("play endpoint address"))?;
    let ctx = Arc::new(Ctx {
        opts: opts.clone(),
        chans: Mutex::new(Vec::new()),
        origin,
    });
    let primary = ctx.join(&opts.channel, opts.listen).await?;
    let listen = lock(&ctx.chans).first().map_or(opts.listen, |c| c.listen);
    if let Some(f) = opts.on_ready {
        f(play_addr, listen);
    }
    let accept_ctx = ctx.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = play.accept().await else {
                break;
            };
            let ctx = accept_ctx.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_player(sock, ctx).await {
                    eprintln!("tv watch: player: {e}");
                }
            });
        }
    });
    let deadline = opts.duration.map(|d| origin + d);
    let mut ended_at: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    let ctrl_c = servent_runtime::stop_signal();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
        }
        n += 1;
        if ended_at.is_none() && lock(&primary).ended {
            ended_at = Some(std::time::Instant::now());
        }
        if ended_at.is_some_and(|t| t.elapsed() >= opts.linger) {
            break;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
        if n % 5 == 0 {
            let r = ctx.report();
            if opts.progress {
                for c in &r.channels {
                    println!(
                        "tv watch {}: {} partners, played {}, skipped {}, continuity {:.4}, lag p50 {}",
                        c.name,
                        c.partners,
                        c.stats.played,
                        c.stats.skipped,
                        c.continuity,
                        c.lag_s.map_or("-".into(), |l| format!("{:.2} s", l.1))
                    );
                }
            }
            if let Some(p) = &opts.csv {
                super::write_atomic(p, r.to_csv().as_bytes())?;
            }
        }
    }
    acceptor.abort();
    let chans: Vec<Chan> = std::mem::take(&mut *lock(&ctx.chans));
    let mut done = Vec::new();
    for mut c in chans {
        if let Some(s) = c.stop.take() {
            let _ = s.send(());
        }
        done.push(c);
    }
    for c in &mut done {
        if let Some(t) = c.task.take() {
            let _ = t.await;
        }
    }
    *lock(&ctx.chans) = done;
    let r = ctx.report();
    if let Some(p) = &opts.csv {
        super::write_atomic(p, r.to_csv().as_bytes())?;
    }
    Ok(r)
}

/// The figures of a report as lines for people.
pub fn summary_lines(r: &WatchReport) -> Vec<String> {
    r.channels
        .iter()
        .map(|c| {
            format!(
                "channel {}: startup {}, first byte {}, lag p50/p95 {}, continuity {:.4}, played {}, skipped {}, control overhead {:.3}%, forgers dropped {}",
                c.name,
                c.startup_s.map_or("-".into(), |v| format!("{v:.3} s")),
                c.first_byte_s.first().map_or("-".into(), |v| format!("{v:.3} s")),
                c.lag_s.map_or("-".into(), |l| format!("{:.2}/{:.2} s", l.1, l.2)),
                c.continuity,
                c.stats.played,
                c.stats.skipped,
                100.0 * c.stats.control_overhead(),
                c.stats.forgers_dropped
            )
        })
        .collect()
}
