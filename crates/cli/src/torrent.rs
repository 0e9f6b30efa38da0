//! `servent torrent`: create and inspect torrents, run a tracker, seed and download.
//!
//! The protocol lives in `servent-bittorrent` (sans-IO cores); this module resolves tracker
//! names, opens files, and runs the cores under the tokio driver.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use servent_bittorrent::client::{
    Client, ClientCommand, ClientConfig, ClientEvent, TrackerEndpoint, make_peer_id,
};
use servent_bittorrent::create::{CreateOptions, create_torrent};
use servent_bittorrent::metainfo::Metainfo;
use servent_bittorrent::picker::Bitfield;
use servent_bittorrent::storage::{FileStorage, recheck};
use servent_bittorrent::tracker_server::{Tracker, TrackerConfig, TrackerEvent};
use servent_core::Rng;
use servent_runtime::{NodeConfig, NodeHandle, spawn};

use crate::demo::DemoSection;

/// BitTorrent: torrents, a tracker, seeding and downloading.
#[derive(Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Create a .torrent from a file or folder.
    Create {
        /// The file or folder to share.
        path: PathBuf,
        /// Tracker URL (http:// or udp://); repeat for more tiers, or separate URLs of one
        /// tier with commas.
        #[arg(short = 't', long = "tracker")]
        trackers: Vec<String>,
        /// Where to write the torrent.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Piece size: bytes, or with K/M suffix (a power of two, at least 16K)
        /// [default: chosen from the size].
        #[arg(long)]
        piece_size: Option<String>,
        /// Mark the torrent private (BEP 27: peers only from its trackers).
        #[arg(long)]
        private: bool,
        /// Web seed URL (BEP 19); repeatable.
        #[arg(long = "web-seed")]
        web_seeds: Vec<String>,
        /// A comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Print what a .torrent holds: name, info-hash, pieces, files, trackers.
    Show {
        /// The torrent file.
        file: PathBuf,
    },
    /// Run a tracker (HTTP announce/scrape and the UDP tracker protocol on one address).
    Tracker {
        /// Address for both TCP (HTTP) and UDP.
        #[arg(long, default_value = "127.0.0.1:6969")]
        listen: SocketAddr,
        /// Announce interval told to clients, in seconds.
        #[arg(long, default_value_t = 1800)]
        interval: u64,
    },
    /// Seed a torrent from data already on disk.
    Seed {
        /// The torrent file.
        file: PathBuf,
        /// The data: the file itself (single-file torrent) or the torrent's folder.
        #[arg(long)]
        data: PathBuf,
        /// Where to accept peers.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Extra peers to connect to (HOST:PORT); repeatable.
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Upload limit in bytes per second.
        #[arg(long)]
        upload_limit: Option<u64>,
    },
    /// Download one or more torrents into a folder.
    Get {
        /// Torrent files (magnet links need the metadata exchange, not available yet).
        #[arg(required = true)]
        sources: Vec<String>,
        /// The download folder.
        #[arg(short = 'o', long)]
        out: PathBuf,
        /// Where to accept peers (with several torrents, each takes the next port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Keep seeding after the download completes (until Ctrl-C or a limit).
        #[arg(long)]
        seed_after: bool,
        /// Stop seeding at this upload/size ratio.
        #[arg(long)]
        seed_ratio: Option<f64>,
        /// Stop seeding after this many seconds.
        #[arg(long)]
        seed_time: Option<u64>,
        /// Re-verify data already in the folder instead of trusting resume data.
        #[arg(long)]
        check: bool,
        /// Extra peers to connect to (HOST:PORT); repeatable.
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Upload limit in bytes per second.
        #[arg(long)]
        upload_limit: Option<u64>,
        /// Download limit in bytes per second.
        #[arg(long)]
        download_limit: Option<u64>,
    },
}

/// Runs a `servent torrent` command.
pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.action {
        Action::Create {
            path,
            trackers,
            output,
            piece_size,
            private,
            web_seeds,
            comment,
        } => {
            let piece_length = piece_size.as_deref().map(parse_size).transpose()?;
            let opts = CreateOptions {
                trackers: trackers
                    .iter()
                    .map(|t| {
                        t.split(',')
                            .map(|u| u.trim().to_string())
                            .filter(|u| !u.is_empty())
                            .collect()
                    })
                    .filter(|t: &Vec<String>| !t.is_empty())
                    .collect(),
                piece_length,
                private,
                web_seeds,
                comment,
                created_by: Some(concat!("servent ", env!("CARGO_PKG_VERSION")).into()),
                creation_date: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .and_then(|d| i64::try_from(d.as_secs()).ok()),
            };
            let p = path.clone();
            let (bytes, meta) = tokio::task::spawn_blocking(move || create_torrent(&p, &opts))
                .await?
                .with_context(|| format!("creating a torrent from {}", path.display()))?;
            std::fs::write(&output, bytes)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {}", output.display());
            show(&meta);
            Ok(())
        }
        Action::Show { file } => {
            show(&load(&file)?);
            Ok(())
        }
        Action::Tracker { listen, interval } => run_tracker(listen, interval).await,
        Action::Seed {
            file,
            data,
            listen,
            peers,
            upload_limit,
        } => {
            let meta = load(&file)?;
            let m = meta.clone();
            let (storage, have) =
                tokio::task::spawn_blocking(move || -> Result<(FileStorage, Bitfield)> {
                    let mut s = FileStorage::open_content(&m, &data)
                        .with_context(|| format!("opening {}", data.display()))?;
                    let good = recheck(&m, &mut s).context("checking the data")?;
                    Ok((s, bitfield(&good)))
                })
                .await??;
            if !have.is_full() {
                bail!(
                    "the data does not match the torrent: {} of {} pieces are good",
                    have.count(),
                    have.len()
                );
            }
            let opts = RunOpts {
                listen,
                peers,
                seed: true,
                upload_limit,
                ..RunOpts::default()
            };
            let mp = MultiProgress::new();
            run_client(&meta, storage, have, &opts, &mp).await
        }
        Action::Get {
            sources,
            out,
            listen,
            seed_after,
            seed_ratio,
            seed_time,
            check,
            peers,
            upload_limit,
            download_limit,
        } => {
            let mut jobs = Vec::new();
            let mp = MultiProgress::new();
            for (i, src) in sources.iter().enumerate() {
                if src.starts_with("magnet:") {
                    bail!(
                        "{src}: magnet links need the metadata exchange (BEP 9), which is not implemented yet; use the .torrent file"
                    );
                }
                let meta = load(Path::new(src))?;
                let m = meta.clone();
                let dir = out.clone();
                let (storage, have) =
                    tokio::task::spawn_blocking(move || -> Result<(FileStorage, Bitfield)> {
                        let mut s = FileStorage::open(&m, &dir)
                            .with_context(|| format!("opening {}", dir.display()))?;
                        let good = if check {
                            s.clear_verified();
                            let g = recheck(&m, &mut s).context("checking existing data")?;
                            for (i, ok) in g.iter().enumerate() {
                                if *ok {
                                    servent_bittorrent::storage::Storage::mark_verified(
                                        &mut s, i as u32,
                                    );
                                }
                            }
                            g
                        } else {
                            s.verified().to_vec()
                        };
                        Ok((s, bitfield(&good)))
                    })
                    .await??;
                let port = if listen.port() == 0 {
                    0
                } else {
                    listen.port().saturating_add(i as u16)
                };
                let opts = RunOpts {
                    listen: SocketAddr::new(listen.ip(), port),
                    peers: peers.clone(),
                    seed: seed_after,
                    seed_ratio,
                    seed_time: seed_time.map(Duration::from_secs),
                    upload_limit,
                    download_limit,
                };
                let mp = mp.clone();
                jobs.push(tokio::spawn(async move {
                    run_client(&meta, storage, have, &opts, &mp).await
                }));
            }
            let mut failed = 0;
            for j in jobs {
                if let Err(e) = j.await? {
                    eprintln!("error: {e:#}");
                    failed += 1;
                }
            }
            if failed > 0 {
                bail!("{failed} of {} torrents did not complete", sources.len());
            }
            Ok(())
        }
    }
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1024),
        Some('m' | 'M') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("piece size {s:?} is not a number"))?;
    Ok(n * mult)
}

fn load(file: &Path) -> Result<Metainfo> {
    let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    if meta.len() > 64 << 20 {
        bail!(
            "{}: {} bytes is too large for a torrent file",
            file.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Metainfo::parse(&bytes).with_context(|| format!("{} is not a valid torrent", file.display()))
}

fn bitfield(good: &[bool]) -> Bitfield {
    let mut b = Bitfield::new(good.len() as u32);
    for (i, g) in good.iter().enumerate() {
        if *g {
            b.set(i as u32);
        }
    }
    b
}

fn human(n: f64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", U[i])
}

fn show(m: &Metainfo) {
    println!("name:        {}", m.name);
    println!("info-hash:   {}", m.info_hash);
    println!(
        "size:        {} ({} bytes)",
        human(m.total_length as f64),
        m.total_length
    );
    println!(
        "pieces:      {} x {}",
        m.piece_count(),
        human(m.piece_length as f64)
    );
    println!("private:     {}", if m.private { "yes" } else { "no" });
    if let Some(c) = &m.created_by {
        println!("created by:  {c}");
    }
    if let Some(c) = &m.comment {
        println!("comment:     {c}");
    }
    println!("trackers:");
    for (i, tier) in m.trackers.iter().enumerate() {
        for t in tier {
            println!("  tier {i}: {t}");
        }
    }
    for w in &m.web_seeds {
        println!("web seed:    {w}");
    }
    println!("files:");
    for f in &m.files {
        let path = if m.multi_file {
            format!("{}/{}", m.name, f.display_path())
        } else {
            f.display_path()
        };
        println!(
            "  {:>12}  {path}{}",
            f.length,
            if f.pad { " (padding)" } else { "" }
        );
    }
    println!("magnet:      {}", m.magnet());
}

fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .ok()?
        .find(|a| a.is_ipv4())
        .or_else(|| (host, port).to_socket_addrs().ok()?.next())
}

fn endpoints(meta: &Metainfo) -> Vec<Vec<TrackerEndpoint>> {
    meta.trackers
        .iter()
        .map(|tier| {
            tier.iter()
                .filter_map(|u| {
                    let e = TrackerEndpoint::parse(u, resolve);
                    if e.is_none() {
                        tracing::warn!("skipping tracker {u}: unsupported or unresolvable");
                    }
                    e
                })
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

fn os_seed() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_le_bytes(b) ^ u64::from(std::process::id())
}

async fn run_tracker(listen: SocketAddr, interval: u64) -> Result<()> {
    let cfg = NodeConfig {
        udp: Some(listen),
        tcp: Some(listen),
        ..NodeConfig::default()
    };
    let tcfg = TrackerConfig {
        interval: Duration::from_secs(interval),
        peer_timeout: Duration::from_secs(interval.saturating_mul(2) + 60),
        ..TrackerConfig::default()
    };
    let mut node = spawn(cfg, |_| Tracker::new(tcfg, Rng::new(os_seed())))
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = node.local.tcp.unwrap_or(listen);
    println!("tracker: http://{addr}/announce and udp://{addr} (Ctrl-C stops)");
    loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(TrackerEvent::Announced { info_hash, peer, event, udp }) => {
                    tracing::info!(%info_hash, %peer, ?event, udp, "announce");
                }
                Some(TrackerEvent::Refused { from, reason }) => tracing::info!(%from, %reason, "refused"),
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    node.shutdown().await?;
    Ok(())
}

#[derive(Clone, Debug)]
struct RunOpts {
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
    seed: bool,
    seed_ratio: Option<f64>,
    seed_time: Option<Duration>,
    upload_limit: Option<u64>,
    download_limit: Option<u64>,
}

impl Default for RunOpts {
    fn default() -> RunOpts {
        RunOpts {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: Vec::new(),
            seed: false,
            seed_ratio: None,
            seed_time: None,
            upload_limit: None,
            download_limit: None,
        }
    }
}

type TorrentNode = NodeHandle<Client<FileStorage>>;

async fn start_client(
    meta: &Metainfo,
    storage: FileStorage,
    have: Bitfield,
    opts: &RunOpts,
) -> Result<TorrentNode> {
    let trackers = endpoints(meta);
    let cfg = NodeConfig {
        udp: Some(SocketAddr::new(opts.listen.ip(), 0)),
        tcp: Some(opts.listen),
        ..NodeConfig::default()
    };
    let m = meta.clone();
    let o = opts.clone();
    let node = spawn(cfg, move |local| {
        let mut rng = Rng::new(os_seed());
        let port = local.tcp.map_or(0, |a| a.port());
        let mut c = ClientConfig::new(make_peer_id(&mut rng), port);
        c.trackers = trackers;
        c.seed = o.seed;
        c.seed_ratio = o.seed_ratio;
        c.seed_time = o.seed_time;
        c.upload_limit = o.upload_limit;
        c.download_limit = o.download_limit;
        Client::new(c, &m, storage, have, rng)
    })
    .await
    .with_context(|| format!("listening on {}", opts.listen))?;
    if !opts.peers.is_empty() {
        node.command(ClientCommand::AddPeers {
            id: 1,
            peers: opts.peers.clone(),
        })
        .await?;
    }
    Ok(node)
}

/// Stops a client politely (announce `stopped`) and returns its core.
async fn stop(mut node: TorrentNode) -> Result<Client<FileStorage>> {
    if node
        .command(ClientCommand::Stop { id: u64::MAX })
        .await
        .is_ok()
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, node.next_event()).await {
            if matches!(
                ev,
                ClientEvent::TrackerReply { .. } | ClientEvent::TrackerError { .. }
            ) {
                break;
            }
        }
    }
    Ok(node.shutdown().await?)
}

async fn run_client(
    meta: &Metainfo,
    storage: FileStorage,
    have: Bitfield,
    opts: &RunOpts,
    mp: &MultiProgress,
) -> Result<()> {
    let mut node = start_client(meta, storage, have, opts).await?;
    let listen = node.local.tcp;
    let bar = mp.add(ProgressBar::new(meta.total_length));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(meta.name.chars().take(24).collect::<String>());
    if let Some(a) = listen {
        bar.println(format!(
            "{}: info-hash {}, listening on {a}",
            meta.name, meta.info_hash
        ));
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut next_id = 10;
    let mut complete = meta.piece_count() == 0;
    let outcome: Result<()> = loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(ClientEvent::Stats { stats, .. }) => {
                    let have = (u64::from(stats.pieces_have) * meta.piece_length).min(meta.total_length);
                    bar.set_position(have);
                    bar.set_message(format!(
                        "down {}/s up {}/s peers {}",
                        human(stats.down_rate),
                        human(stats.up_rate),
                        stats.peers
                    ));
                }
                Some(ClientEvent::Completed) => {
                    complete = true;
                    bar.set_position(meta.total_length);
                    bar.println(format!("{}: complete, every piece verified", meta.name));
                    if !opts.seed {
                        break Ok(());
                    }
                }
                Some(ClientEvent::SeedingDone) => break Ok(()),
                Some(ClientEvent::StorageFailed { reason }) => break Err(anyhow::anyhow!("storage: {reason}")),
                Some(ClientEvent::TrackerError { url, reason }) => tracing::warn!(%url, %reason, "tracker"),
                Some(ClientEvent::PieceFailed { index, senders }) => tracing::warn!(index, ?senders, "piece failed its hash check"),
                Some(ClientEvent::PeerBanned { ip }) => tracing::warn!(%ip, "banned for bad data"),
                Some(ev) => tracing::debug!(?ev, "event"),
                None => break Err(anyhow::anyhow!("the client stopped unexpectedly")),
            },
            _ = tick.tick() => {
                next_id += 1;
                let _ = node.command(ClientCommand::Stats { id: next_id }).await;
            }
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    let core = stop(node).await?;
    bar.finish();
    outcome?;
    if !core.is_complete() || !complete {
        bail!(
            "{}: stopped with {} of {} pieces verified",
            meta.name,
            core.have().count(),
            meta.piece_count()
        );
    }
    Ok(())
}

/// The demo's BitTorrent section: a tracker, one seeder and ten leechers on 127.0.0.1, every
/// copy checked byte for byte; and the swarm scenario in the simulator.
pub async fn demo(out: &Path) -> Result<DemoSection> {
    let mut sec = DemoSection::new("BitTorrent");
    let dir = out.join("bittorrent");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Content: 16 MiB of seeded random bytes.
    let size = 16usize << 20;
    let mut rng = Rng::new(42);
    let mut content = vec![0u8; size];
    for chunk in content.chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let src = dir.join("seed").join("image.bin");
    std::fs::create_dir_all(dir.join("seed"))?;
    std::fs::write(&src, &content)?;

    let tcfg = NodeConfig {
        udp: Some("127.0.0.1:0".parse()?),
        tcp: Some("127.0.0.1:0".parse()?),
        ..NodeConfig::default()
    };
    let tracker = spawn(tcfg, |_| {
        Tracker::new(
            TrackerConfig {
                interval: Duration::from_secs(30),
                ..TrackerConfig::default()
            },
            Rng::new(7),
        )
    })
    .await?;
    let taddr = tracker.local.tcp.context("tracker has no TCP address")?;
    let opts = CreateOptions {
        trackers: vec![vec![format!("http://{taddr}/announce")]],
        piece_length: Some(256 << 10),
        ..CreateOptions::default()
    };
    let s2 = src.clone();
    let (bytes, meta) = tokio::task::spawn_blocking(move || create_torrent(&s2, &opts)).await??;
    std::fs::write(dir.join("image.torrent"), &bytes)?;

    let mut storage = FileStorage::open_content(&meta, &src)?;
    let good = recheck(&meta, &mut storage)?;
    let seeder = start_client(
        &meta,
        storage,
        bitfield(&good),
        &RunOpts {
            seed: true,
            ..RunOpts::default()
        },
    )
    .await?;
    let started = std::time::Instant::now();
    let mut leechers = Vec::new();
    for i in 0..10 {
        let d = dir.join(format!("leecher-{i}"));
        let s = FileStorage::open(&meta, &d)?;
        leechers.push(
            start_client(
                &meta,
                s,
                Bitfield::new(meta.piece_count() as u32),
                &RunOpts {
                    seed: true,
                    ..RunOpts::default()
                },
            )
            .await?,
        );
    }
    let mut done: Vec<Option<f64>> = vec![None; leechers.len()];
    let deadline = started + Duration::from_secs(120);
    while done.iter().any(Option::is_none) && std::time::Instant::now() < deadline {
        for (i, l) in leechers.iter_mut().enumerate() {
            while let Some(ev) = l.try_event() {
                if matches!(ev, ClientEvent::Completed) && done[i].is_none() {
                    done[i] = Some(started.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seeder_core = stop(seeder).await?;
    let seeder_up = seeder_core.stats().uploaded;
    let mut total_up = seeder_up;
    let mut identical = 0;
    for (i, l) in leechers.into_iter().enumerate() {
        let core = stop(l).await?;
        total_up += core.stats().uploaded;
        let got =
            std::fs::read(dir.join(format!("leecher-{i}")).join("image.bin")).unwrap_or_default();
        if core.is_complete() && got == content {
            identical += 1;
        }
    }
    tracker.shutdown().await?;
    let times: Vec<f64> = done.iter().flatten().copied().collect();
    let last = times.iter().copied().fold(0.0, f64::max);
    let share = if total_up > 0 {
        seeder_up as f64 / total_up as f64
    } else {
        0.0
    };
    sec.row(
        "tracker + 1 seeder + 10 leechers on 127.0.0.1, 16 MiB",
        format!(
            "{identical}/10 copies identical byte for byte; last completion {last:.2} s; seeder sent {:.0}% of all uploaded bytes ({:.2} copies)",
            share * 100.0,
            seeder_up as f64 / size as f64
        ),
        identical == 10,
    );
    // The same core in the simulator: completion time against N.
    let sopts = servent_sim::ScenarioOpts {
        nodes: Some(30),
        seed: 1,
        out: out.join("bittorrent-swarm"),
    };
    use servent_sim::Scenario as _;
    let rep = tokio::task::block_in_place(|| servent_bittorrent::swarm::SwarmScenario.run(&sopts))?;
    rep.write(&sopts.out)?;
    let get = |k: &str| rep.get(k).unwrap_or_default().to_string();
    sec.row(
        "simulator: 1 seeder, N = 10..30 leechers, 8 MiB",
        format!(
            "worst ratio to the fluid bound {}, seeder sent at most {} copies",
            get("worst_ratio_to_bound"),
            get("worst_seeder_copies")
        ),
        get("worst_ratio_to_bound")
            .parse::<f64>()
            .is_ok_and(|r| r.is_finite() && r >= 1.0),
    );
    sec.plots.extend(rep.plots);
    sec.notes.push(
        "Client-server distribution time grows as N*F/u_s; the swarm's last completion stays near \
         the fluid bound max(F/u_s, F/d, N*F/(u_s+N*u)), which is nearly flat in N."
            .into(),
    );
    Ok(sec)
}
