//! `servent torrent`: create and inspect torrents, run a tracker, seed and download.
//!
//! The protocol lives in `servent-bittorrent` (sans-IO cores) and its driver runs them
//! ([`Session`]: one torrent on the peer port, its disk jobs, web seeds and DHT
//! registration); this module parses the arguments, starts the sessions and prints what they
//! report. The DHT (the crate's [`DhtPeerSource`]) is an extra peer source for every
//! non-private torrent when bootstrap nodes are known (`--bootstrap`, a torrent's `nodes`,
//! the routing table saved under `--data DIR`).
//! A magnet link runs in two steps: a [`MetadataFetch`] finds peers and fetches the info
//! dictionary (BEP 9), then a normal session downloads the torrent from the same peers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar};
use servent_bittorrent::client::{ClientEvent, Encryption};
use servent_bittorrent::create::{CreateOptions, create_torrent};
use servent_bittorrent::driver::dht::{self, DhtPeerSource, DhtSourceOpts};
use servent_bittorrent::driver::session::{
    self, MetadataFetch, Outcome, Session, SessionConfig, Update, open_download, open_seed,
};
use servent_bittorrent::magnet::Magnet;
use servent_bittorrent::metainfo::Metainfo;
use servent_bittorrent::picker::Bitfield;
use servent_bittorrent::storage::FileStorage;
use servent_bittorrent::tracker_server::{Tracker, TrackerConfig, TrackerEvent};
use servent_core::Rng;
use servent_kademlia::client::{ClientOpts, DhtClient};
use servent_runtime::{NodeConfig, spawn};

use crate::common::{Progress, fmt_bytes};
use crate::demo::DemoSection;

/// BitTorrent: torrents, a tracker, seeding and downloading.
#[derive(Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

/// Options shared by `seed`, `get` and `share`: the DHT, encryption, JSON output.
#[derive(Args, Debug, Clone, Default)]
struct DhtArgs {
    /// No progress lines; at the end, one JSON object per torrent on its own line (`name`,
    /// `info_hash`, `outcome`, `bytes`, `size`, `seconds`, `rate`, `downloaded`, `uploaded`,
    /// `peers`, `max_peers`, `handshakes_closed`, `limit_closes`, and `error` on failure). `share` prints its magnet
    /// link first as `{"magnet": ..}`.
    #[arg(long)]
    json: bool,
    /// UDP address of our DHT node [default: the --listen IP, any port].
    #[arg(long)]
    dht_listen: Option<SocketAddr>,
    /// A DHT node to join through: HOST:PORT, or a file of addresses one per line (`#`
    /// comments); repeatable. The DHT runs when a bootstrap node is known (here, in a
    /// trackerless torrent's `nodes`, or saved under --data). Old spelling: --dht-bootstrap.
    #[arg(long = "bootstrap", alias = "dht-bootstrap", value_name = "ADDR|FILE")]
    bootstrap: Vec<String>,
    /// State folder: the DHT node's id and routing table are kept in `DIR/dht.dat` (loaded
    /// on start, saved on exit, crash-safely), so a later run rejoins without --bootstrap
    /// [default with a --dht-listen port: `$XDG_STATE_HOME/servent/torrent-dht-IP-PORT`, else
    /// `~/.local/state/servent/torrent-dht-IP-PORT`; with none, nothing is kept].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Never use the DHT.
    #[arg(long, conflicts_with_all = ["bootstrap", "data"])]
    no_dht: bool,
    /// Message Stream Encryption: `prefer` (try MSE, fall back to plaintext; accept both),
    /// `require` (MSE with RC4 only) or `plaintext` (never MSE).
    #[arg(long, value_enum, default_value_t = EncryptionArg::Prefer)]
    encryption: EncryptionArg,
    /// Threads writing and hashing pieces and reading uploads off the network loop (2: one
    /// hashing while the other writes); 0, the default, does that disk work on the network
    /// loop itself, which costs less CPU per GiB on a fast disk.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    disk_threads: u32,
    #[command(flatten)]
    limits: PeerLimits,
}

impl DhtArgs {
    fn disk_threads(&self) -> usize {
        self.disk_threads as usize
    }

    /// The session settings these options give (the rest at their defaults).
    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            encryption: self.encryption.into(),
            limits: self.limits.to_limits(),
            disk_threads: self.disk_threads(),
            user_agent: created_by(),
            ..SessionConfig::default()
        }
    }
}

/// Limits of the peer port against floods and hostile peers (`seed`, `get`, `share`). Over
/// a limit the connection is closed with its reason logged at `-v`; a message longer than its
/// type can carry (a piece message above one 16 KiB block + 13 bytes, a bitfield above
/// ceil(pieces/8) + 1, an extension message above 1 MiB, any message above 256 KiB) is
/// refused from its 5-byte head, before its body is buffered, and bans the peer's IP.
#[derive(Args, Debug, Clone)]
struct PeerLimits {
    /// Most peer connections of one torrent, handshaking ones included.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_peers: u32,
    /// Most connections from one IP address.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_peers_per_ip: u32,
    /// A connection that has not finished its handshake (encryption included) this long after
    /// connecting is closed (slowloris). 1s to 1h.
    #[arg(long, default_value = "20s", value_parser = peer_timeout)]
    handshake_timeout: Duration,
    /// A peer that sends nothing at all, not even a keep-alive, this long is closed. 1s to 1h.
    #[arg(long, default_value = "3m", value_parser = peer_timeout)]
    idle_timeout: Duration,
}

impl Default for PeerLimits {
    fn default() -> PeerLimits {
        PeerLimits {
            max_peers: 60,
            max_peers_per_ip: 16,
            handshake_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(180),
        }
    }
}

impl PeerLimits {
    fn to_limits(&self) -> session::PeerLimits {
        session::PeerLimits {
            max_peers: self.max_peers as usize,
            max_peers_per_ip: self.max_peers_per_ip as usize,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// A peer-port timeout: a duration from 1 s to 1 h.
fn peer_timeout(s: &str) -> Result<Duration, String> {
    let d = crate::common::parse_duration(s)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
        return Err(format!("{s}: give 1s to 1h"));
    }
    Ok(d)
}

/// Limits of `torrent tracker` against floods and hostile clients.
#[derive(Args, Debug, Clone)]
struct TrackerLimits {
    /// Announces accepted per client IP per minute (a burst of this many, then one every
    /// 60/N s); more are answered "announcing too often". 0: no limit.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    announce_rate: u32,
    /// Most torrents tracked at once; announces for new ones are refused beyond it.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_torrents: u64,
    /// Most peers listed per torrent; new peers are refused beyond it.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_peers: u64,
    /// Most peers in one reply, whatever `numwant` asks (1..=200).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=200))]
    max_numwant: u32,
    /// Most open HTTP connections; when full, the oldest is closed for a new one.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_conns: u64,
    /// An HTTP client that has not sent its whole request (at most 16 KiB) in this time is
    /// closed.
    #[arg(long, value_parser = crate::common::parse_duration, default_value = "15s")]
    http_timeout: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
enum EncryptionArg {
    #[default]
    Prefer,
    Require,
    Plaintext,
}

impl From<EncryptionArg> for Encryption {
    fn from(e: EncryptionArg) -> Encryption {
        match e {
            EncryptionArg::Prefer => Encryption::Prefer,
            EncryptionArg::Require => Encryption::Require,
            EncryptionArg::Plaintext => Encryption::Plaintext,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Create a .torrent from a file or folder.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Create {
        /// The file or folder to share.
        path: PathBuf,
        /// Tracker URL (http:// or udp://); repeat for more tiers, or separate URLs of one
        /// tier with commas.
        #[arg(short = 't', long = "tracker")]
        trackers: Vec<String>,
        /// The folder to write `<name>.torrent` into, created when missing [default: the current
        /// folder].
        #[arg(short = 'o', long, value_name = "DIR", conflicts_with = "torrent_file")]
        output: Option<PathBuf>,
        /// Write the torrent to exactly this file instead.
        #[arg(long, value_name = "FILE")]
        torrent_file: Option<PathBuf>,
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
        /// A trackerless torrent (BEP 5): no `announce`; peers come from the DHT. The
        /// --bootstrap nodes go into its `nodes` key.
        #[arg(long, conflicts_with = "trackers")]
        trackerless: bool,
        /// A DHT node written into the torrent's `nodes`: HOST:PORT (names are kept, not
        /// resolved), or a file of them one per line; repeatable. Old spelling: --dht-bootstrap.
        #[arg(long = "bootstrap", alias = "dht-bootstrap", value_name = "ADDR|FILE")]
        nodes: Vec<String>,
    },
    /// Print what a .torrent holds: name, info-hash, pieces, files, trackers.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Show {
        /// The torrent file.
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a tracker (HTTP announce/scrape and the UDP tracker protocol on one address).
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Tracker {
        /// Address for both TCP (HTTP) and UDP.
        #[arg(long, default_value = "127.0.0.1:6969")]
        listen: SocketAddr,
        /// Announce interval told to clients (`90s`, `30m`; a bare number is seconds), 1s to
        /// 24h.
        #[arg(long, default_value = "30m", value_parser = tracker_interval)]
        interval: Duration,
        #[command(flatten)]
        limits: TrackerLimits,
    },
    /// Seed a torrent from data already on disk.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Seed {
        /// The torrent file.
        file: PathBuf,
        /// The data: the file itself (single-file torrent) or the torrent's folder.
        #[arg(value_name = "PATH")]
        payload: PathBuf,
        /// Where to accept peers.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Extra peers to connect to (HOST:PORT); repeatable.
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Upload limit in bytes per second, 1024 to 10^10.
        #[arg(long, value_parser = rate_limit)]
        upload_limit: Option<u64>,
        /// Super-seed: announce no pieces and reveal one at a time to each peer, so the
        /// swarm gets each piece from us about once (for an initial seeder of a big swarm).
        #[arg(long)]
        super_seed: bool,
        #[command(flatten)]
        dht: DhtArgs,
    },
    /// Publish a file or folder: create its torrent, seed it, announce it to the DHT (and
    /// any trackers), and print its magnet link as the first line of output; seeds until
    /// Ctrl-C.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Share {
        /// The file or folder to share.
        path: PathBuf,
        /// Tracker URL (http:// or udp://); repeatable. Without one, the torrent is
        /// trackerless.
        #[arg(short = 't', long = "tracker")]
        trackers: Vec<String>,
        /// Also write `<name>.torrent` into this folder (created when missing).
        #[arg(short = 'o', long, value_name = "DIR", conflicts_with = "torrent_file")]
        output: Option<PathBuf>,
        /// Also write the torrent to exactly this file.
        #[arg(long, value_name = "FILE")]
        torrent_file: Option<PathBuf>,
        /// Piece size: bytes, or with K/M suffix [default: chosen from the size].
        #[arg(long)]
        piece_size: Option<String>,
        /// Where to accept peers.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Upload limit in bytes per second, 1024 to 10^10.
        #[arg(long, value_parser = rate_limit)]
        upload_limit: Option<u64>,
        #[command(flatten)]
        dht: DhtArgs,
    },
    /// Download one or more torrents into a folder.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Get {
        /// Torrent files or magnet links (`magnet:?xt=urn:btih:...`).
        #[arg(required = true)]
        sources: Vec<String>,
        /// The download folder. Old spelling: --out.
        #[arg(short = 'o', long = "output", alias = "out", value_name = "DIR")]
        out: PathBuf,
        /// Where to accept peers (with several torrents, each takes the next port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Keep seeding after the download completes (until Ctrl-C or a limit).
        #[arg(long)]
        seed_after: bool,
        /// Stop seeding at this upload/size ratio, 0.01 to 1000.
        #[arg(long, value_parser = seed_ratio)]
        seed_ratio: Option<f64>,
        /// Stop seeding after this long (`90s`, `2m`, `1h`; a bare number is seconds), 1s to
        /// 365 days.
        #[arg(long, value_parser = seed_time)]
        seed_time: Option<Duration>,
        /// Re-verify data already in the folder instead of trusting resume data.
        #[arg(long)]
        check: bool,
        /// Extra peers to connect to (HOST:PORT); repeatable.
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Upload limit in bytes per second, 1024 to 10^10.
        #[arg(long, value_parser = rate_limit)]
        upload_limit: Option<u64>,
        /// Download limit in bytes per second, 1024 to 10^10.
        #[arg(long, value_parser = rate_limit)]
        download_limit: Option<u64>,
        #[command(flatten)]
        dht: DhtArgs,
    },
}

/// Runs a `servent torrent` command.
pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.action {
        Action::Create {
            path,
            trackers,
            output,
            torrent_file,
            piece_size,
            private,
            web_seeds,
            comment,
            trackerless,
            nodes,
        } => {
            if trackerless && private {
                bail!(
                    "a private torrent needs a tracker (BEP 27): drop --private or --trackerless"
                );
            }
            if !trackerless && trackers.is_empty() && !nodes.is_empty() {
                bail!("--bootstrap in `create` is for --trackerless torrents");
            }
            let piece_length = piece_size.as_deref().map(parse_size).transpose()?;
            let opts = CreateOptions {
                trackers: tiers(&trackers),
                piece_length,
                private,
                web_seeds,
                nodes: torrent_nodes(&nodes)?,
                comment,
                created_by: Some(created_by()),
                creation_date: now_secs(),
            };
            let p = path.clone();
            let (bytes, meta) = tokio::task::spawn_blocking(move || create_torrent(&p, &opts))
                .await?
                .with_context(|| format!("creating a torrent from {}", path.display()))?;
            let output = torrent_path(output.as_deref(), torrent_file, &meta)
                .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", meta.name)));
            write_torrent(&output, &bytes)?;
            println!("wrote {}", output.display());
            show(&meta);
            Ok(())
        }
        Action::Show { file, json } => {
            let m = load(&file)?;
            if json {
                crate::common::print_json(&show_json(&m));
            } else {
                show(&m);
            }
            Ok(())
        }
        Action::Tracker {
            listen,
            interval,
            limits,
        } => run_tracker(listen, interval, limits).await,
        Action::Seed {
            file,
            payload,
            listen,
            peers,
            upload_limit,
            super_seed,
            dht,
        } => {
            let meta = load(&file)?;
            let (storage, have) = match open_seed(&meta, &payload, false).await {
                Err(e @ session::SessionError::Mismatch { .. }) => return Err(e.into()),
                r => r.with_context(|| format!("seeding from {}", payload.display()))?,
            };
            let opts = RunOpts {
                cfg: SessionConfig {
                    listen,
                    peers,
                    seed: true,
                    upload_limit,
                    super_seed,
                    ..dht.session_config()
                },
                ..RunOpts::new(&dht)
            };
            let dht = start_dht(&dht, listen.ip(), &meta.nodes).await?;
            let mp = MultiProgress::new();
            let r = run_client(&meta, storage, have, &opts, &mp, dht.as_ref()).await;
            stop_dht(dht).await;
            r
        }
        Action::Share {
            path,
            trackers,
            output,
            torrent_file,
            piece_size,
            listen,
            upload_limit,
            dht,
        } => {
            let opts = CreateOptions {
                trackers: tiers(&trackers),
                piece_length: piece_size.as_deref().map(parse_size).transpose()?,
                created_by: Some(created_by()),
                creation_date: now_secs(),
                ..CreateOptions::default()
            };
            let p = path.clone();
            let (bytes, meta) = tokio::task::spawn_blocking(move || create_torrent(&p, &opts))
                .await?
                .with_context(|| format!("creating a torrent from {}", path.display()))?;
            if let Some(o) = torrent_path(output.as_deref(), torrent_file, &meta) {
                write_torrent(&o, &bytes)?;
            }
            // The magnet link first, alone on its line, for scripts.
            {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                if dht.json {
                    let v = serde_json::json!({
                        "magnet": meta.magnet(),
                        "name": meta.name,
                        "info_hash": meta.info_hash.to_hex(),
                    });
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(out, "{}", meta.magnet())?;
                }
                out.flush()?;
            }
            // The pieces were hashed from this data a moment ago.
            let (storage, have) = open_seed(&meta, &path, true)
                .await
                .with_context(|| format!("seeding from {}", path.display()))?;
            if dht.no_dht && meta.trackers.is_empty() {
                eprintln!("note: no trackers and no DHT: peers must be given the address");
            }
            let opts = RunOpts {
                cfg: SessionConfig {
                    listen,
                    seed: true,
                    upload_limit,
                    ..dht.session_config()
                },
                ..RunOpts::new(&dht)
            };
            let dht = start_dht(&dht, listen.ip(), &[]).await?;
            let mp = MultiProgress::new();
            let r = run_client(&meta, storage, have, &opts, &mp, dht.as_ref()).await;
            stop_dht(dht).await;
            r
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
            dht,
        } => {
            let mut jobs = Vec::new();
            let mp = MultiProgress::new();
            let mut magnets = BTreeMap::new();
            let mut metas = BTreeMap::new();
            let mut nodes = Vec::new();
            for (i, src) in sources.iter().enumerate() {
                if src.starts_with("magnet:") {
                    let m =
                        Magnet::parse(src).with_context(|| format!("{src}: not a magnet link"))?;
                    magnets.insert(i, m);
                } else {
                    let meta = load(Path::new(src))?;
                    nodes.extend(meta.nodes.iter().cloned());
                    metas.insert(i, meta);
                }
            }
            let base = RunOpts::new(&dht);
            let dht = start_dht(&dht, listen.ip(), &nodes).await?;
            for (i, src) in sources.iter().enumerate() {
                let port = if listen.port() == 0 {
                    0
                } else {
                    listen.port().saturating_add(i as u16)
                };
                let opts = RunOpts {
                    cfg: SessionConfig {
                        listen: SocketAddr::new(listen.ip(), port),
                        peers: peers.clone(),
                        seed: seed_after,
                        seed_ratio,
                        seed_time,
                        upload_limit,
                        download_limit,
                        ..base.cfg.clone()
                    },
                    ..base.clone()
                };
                if let Some(m) = magnets.remove(&i) {
                    let mp = mp.clone();
                    let dir = out.clone();
                    let d = dht.clone();
                    jobs.push(tokio::spawn(async move {
                        get_magnet(m, dir, opts, check, &mp, d.as_ref()).await
                    }));
                    continue;
                }
                let Some(meta) = metas.remove(&i) else {
                    bail!("{src}: no torrent");
                };
                let (storage, have) = open_download(&meta, &out, check)
                    .await
                    .with_context(|| format!("opening {}", out.display()))?;
                let mp = mp.clone();
                let d = dht.clone();
                jobs.push(tokio::spawn(async move {
                    run_client(&meta, storage, have, &opts, &mp, d.as_ref()).await
                }));
            }
            let mut failed = 0;
            for j in jobs {
                if let Err(e) = j.await? {
                    eprintln!("error: {e:#}");
                    failed += 1;
                }
            }
            stop_dht(dht).await;
            if failed > 0 {
                bail!("{failed} of {} torrents did not complete", sources.len());
            }
            Ok(())
        }
    }
}

/// Where `create`/`share` write the torrent: `--torrent-file FILE` as given, or
/// `<DIR>/<name>.torrent` for `-o DIR`; `None` when neither was given.
fn torrent_path(dir: Option<&Path>, file: Option<PathBuf>, meta: &Metainfo) -> Option<PathBuf> {
    file.or_else(|| dir.map(|d| d.join(format!("{}.torrent", meta.name))))
}

/// Writes a torrent file, creating its folder first (`-o DIR` is always a folder, made when
/// missing).
fn write_torrent(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `--seed-ratio`: 0.01 to 1000.
fn seed_ratio(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a number like 1.5"))?;
    if !(0.01..=1000.0).contains(&r) {
        return Err(format!("{s}: give 0.01 to 1000"));
    }
    Ok(r)
}

/// `--seed-time`: a duration from 1 s to 365 days.
fn seed_time(s: &str) -> Result<Duration, String> {
    let d = crate::common::parse_duration(s)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(365 * 86_400)).contains(&d) {
        return Err(format!("{s}: give 1s to 365 days"));
    }
    Ok(d)
}

/// `tracker --interval`: a duration from 1 s to 24 h.
fn tracker_interval(s: &str) -> Result<Duration, String> {
    let d = crate::common::parse_duration(s)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&d) {
        return Err(format!("{s}: give 1s to 24h"));
    }
    Ok(d)
}

/// `--upload-limit`/`--download-limit`: bytes per second, 1024 to 10^10.
fn rate_limit(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected bytes per second, like 500000"))?;
    if !(1024..=10_000_000_000).contains(&v) {
        return Err(format!("{s}: give 1024 to 10000000000 bytes per second"));
    }
    Ok(v)
}

/// `-t` values: one tier each; URLs of one tier separated by commas.
fn tiers(trackers: &[String]) -> Vec<Vec<String>> {
    trackers
        .iter()
        .map(|t| {
            t.split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect()
        })
        .filter(|t: &Vec<String>| !t.is_empty())
        .collect()
}

/// `HOST:PORT` for a torrent's `nodes`.
/// The `nodes` of `torrent create --bootstrap ADDR|FILE`: each value is HOST:PORT, or a file
/// of them one per line (`#` comments and blank lines skipped). Names stay names (a torrent's
/// `nodes` commonly say `router.example.org:6881`).
fn torrent_nodes(values: &[String]) -> Result<Vec<(String, u16)>> {
    let mut out = Vec::new();
    for v in values {
        let p = Path::new(v);
        if p.is_file() {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the bootstrap file {}", p.display()))?;
            for (i, line) in text.lines().enumerate() {
                let l = line.split('#').next().unwrap_or("").trim();
                if !l.is_empty() {
                    out.push(parse_node(l).with_context(|| format!("{}:{}", p.display(), i + 1))?);
                }
            }
        } else {
            out.push(parse_node(v)?);
        }
    }
    Ok(out)
}

fn parse_node(s: &str) -> Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .with_context(|| format!("DHT node {s:?}: give HOST:PORT"))?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = p
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("DHT node {s:?}: bad port"))?;
    if h.is_empty() {
        bail!("DHT node {s:?}: no host");
    }
    Ok((h.to_string(), port))
}

fn created_by() -> String {
    concat!("servent ", env!("CARGO_PKG_VERSION")).into()
}

fn now_secs() -> Option<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
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
    if meta.len() > servent_bittorrent::metainfo::MAX_TORRENT_FILE {
        bail!(
            "{}: {} bytes is too large for a torrent file",
            file.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Metainfo::parse(&bytes).with_context(|| format!("{} is not a valid torrent", file.display()))
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
    if !m.trackers.is_empty() {
        println!("trackers:");
    }
    for (i, tier) in m.trackers.iter().enumerate() {
        for t in tier {
            println!("  tier {i}: {t}");
        }
    }
    for w in &m.web_seeds {
        println!("web seed:    {w}");
    }
    for (h, p) in &m.nodes {
        println!("dht node:    {h}:{p}");
    }
    if m.trackers.is_empty() && !m.private {
        println!("trackerless: peers from the DHT (BEP 5)");
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

/// `torrent show --json`: the same facts as [`show`], as one object.
fn show_json(m: &Metainfo) -> serde_json::Value {
    let files: Vec<serde_json::Value> = m
        .files
        .iter()
        .map(|f| {
            let path = if m.multi_file {
                format!("{}/{}", m.name, f.display_path())
            } else {
                f.display_path()
            };
            serde_json::json!({ "path": path, "length": f.length, "pad": f.pad })
        })
        .collect();
    serde_json::json!({
        "name": m.name,
        "info_hash": m.info_hash.to_hex(),
        "size": m.total_length,
        "piece_count": m.piece_count(),
        "piece_length": m.piece_length,
        "private": m.private,
        "created_by": m.created_by,
        "comment": m.comment,
        "trackers": m.trackers,
        "web_seeds": m.web_seeds,
        "nodes": m.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>(),
        "files": files,
        "magnet": m.magnet(),
    })
}

async fn run_tracker(listen: SocketAddr, interval: Duration, limits: TrackerLimits) -> Result<()> {
    let cfg = NodeConfig {
        udp: Some(listen),
        tcp: Some(listen),
        ..NodeConfig::default()
    };
    let tcfg = TrackerConfig {
        interval,
        peer_timeout: interval.saturating_mul(2) + Duration::from_secs(60),
        announces_per_ip_per_min: limits.announce_rate,
        max_torrents: limits.max_torrents as usize,
        max_peers_per_torrent: limits.max_peers as usize,
        max_numwant: limits.max_numwant,
        max_conns: limits.max_conns as usize,
        http_timeout: limits.http_timeout,
        ..TrackerConfig::default()
    };
    let rng = servent_runtime::os_rng()?;
    let mut node = spawn(cfg, |_| Tracker::new(tcfg, rng))
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
            _ = crate::common::stop_signal() => break,
        }
    }
    node.shutdown().await?;
    println!("tracker: stopped");
    Ok(())
}

// -------------------------------------------------------------------------------------
// The DHT as a peer source.

/// The DHT node shared by every torrent of one command.
type Dht = DhtPeerSource;

/// The DHT state file under the state folder: `--data DIR`, else (with a fixed
/// `--dht-listen` port) the default folder for that address, as `servent dht run` chooses
/// its own; `None` when neither (a node on any port keeps no state).
fn dht_state_file(args: &DhtArgs) -> Option<PathBuf> {
    let dir = args.data.clone().or_else(|| {
        args.dht_listen
            .filter(|a| a.port() != 0)
            .map(|a| crate::common::state_dir("torrent-dht", a))
    })?;
    Some(dir.join(DHT_STATE_FILE))
}

/// The DHT routing table's file name under the state folder.
const DHT_STATE_FILE: &str = "dht.dat";

/// Starts the DHT node when bootstrap nodes are known (`--bootstrap`, a torrent's
/// `nodes`, or a routing table saved under the state folder); `None` otherwise.
async fn start_dht(args: &DhtArgs, ip: IpAddr, nodes: &[(String, u16)]) -> Result<Option<Dht>> {
    if args.no_dht {
        return Ok(None);
    }
    let state = dht_state_file(args);
    let saved = state.as_deref().is_some_and(Path::is_file);
    if args.bootstrap.is_empty() && nodes.is_empty() && args.data.is_none() && !saved {
        return Ok(None);
    }
    // --bootstrap values are the user's: a name that does not resolve or a missing file is an
    // error. A torrent's `nodes` are the author's: one that does not resolve is only warned of.
    let given = args.bootstrap.clone();
    let mut bootstrap =
        tokio::task::spawn_blocking(move || crate::common::bootstrap_addrs(&given)).await??;
    bootstrap.extend(dht::resolve_nodes(nodes).await);
    let listen = args.dht_listen.unwrap_or(SocketAddr::new(ip, 0));
    let opts = DhtSourceOpts {
        listen,
        state,
        bootstrap,
        rng: servent_runtime::os_rng()?,
    };
    Ok(Some(DhtPeerSource::start(opts).await?))
}

/// Stops the DHT node (saving its routing table when it has a state folder).
async fn stop_dht(dht: Option<Dht>) {
    if let Some(d) = dht {
        d.stop().await;
    }
}

// -------------------------------------------------------------------------------------
// Magnet links.

/// Downloads a magnet link: fetch the info dictionary (BEP 9) from peers found through the
/// magnet's trackers, `x.pe` peers, `--peer`s and the DHT ([`MetadataFetch`]); then download
/// as usual.
async fn get_magnet(
    m: Magnet,
    out: PathBuf,
    mut opts: RunOpts,
    check: bool,
    mp: &MultiProgress,
    dht: Option<&Dht>,
) -> Result<()> {
    let ih = m.info_hash;
    let mut fetch = MetadataFetch::start(&m, &opts.cfg, dht).await?;
    let name = fetch.name();
    let spinner = mp.add(ProgressBar::new_spinner());
    spinner.set_message(format!("{name}: fetching metadata"));
    spinner.enable_steady_tick(Duration::from_millis(200));
    if !opts.quiet && !opts.json && !crate::common::stdout_is_terminal() {
        println!("{name}: fetching the metadata (info-hash {ih})");
    }
    let info_bytes = tokio::select! {
        got = fetch.next() => got.with_context(|| format!("{name}: fetching the metadata"))?,
        _ = crate::common::stop_signal() => {
            spinner.finish_and_clear();
            fetch.abort().await;
            bail!("{name}: interrupted before the metadata arrived");
        }
    };
    let (meta, peers) = fetch.finish(&info_bytes).await?;
    spinner.finish_and_clear();
    opts.cfg.peers = peers;
    let (storage, have) = open_download(&meta, &out, check)
        .await
        .with_context(|| format!("opening {}", out.display()))?;
    run_client(&meta, storage, have, &opts, mp, dht).await
}

/// How to run one torrent: the session's settings and how to print.
#[derive(Clone, Debug)]
struct RunOpts {
    cfg: SessionConfig,
    /// No progress output (the demo runs clients in the background).
    quiet: bool,
    /// No progress output; a final JSON summary object (`--json`).
    json: bool,
}

impl RunOpts {
    fn new(args: &DhtArgs) -> RunOpts {
        RunOpts {
            cfg: args.session_config(),
            quiet: false,
            json: args.json,
        }
    }
}

impl Default for RunOpts {
    fn default() -> RunOpts {
        RunOpts {
            cfg: SessionConfig {
                user_agent: created_by(),
                ..SessionConfig::default()
            },
            quiet: false,
            json: false,
        }
    }
}

/// Prints a line above the progress bar (terminal) or on stdout (anything else).
fn say(progress: Option<&Progress>, msg: &str) {
    match progress.and_then(|p| p.bar()) {
        Some(b) => b.println(msg),
        None if progress.is_some() => println!("{msg}"),
        None => tracing::info!("{msg}"),
    }
}

/// What a run saw, for the progress detail and the final summary.
#[derive(Default)]
struct Seen {
    peers: usize,
    max_peers: usize,
    /// Peers connected now, by the connect/disconnect events.
    live: usize,
    /// Connections closed for a peer-port limit (`ClientStats::limit_closes`).
    limit_closes: u64,
    downloaded: u64,
    uploaded: u64,
    /// Connections closed during the handshake, before any payload.
    handshakes_closed: u64,
    last_handshake_reason: String,
    noted: bool,
}

impl Seen {
    fn detail(&self, encryption: Encryption) -> String {
        let mut d = format!(
            "{} peers (max {}), down {}, up {}",
            self.peers,
            self.max_peers,
            fmt_bytes(self.downloaded),
            fmt_bytes(self.uploaded)
        );
        if self.limit_closes > 0 {
            d.push_str(&format!(
                ", {} connections closed over limits (-v: why)",
                self.limit_closes
            ));
        }
        if self.downloaded == 0 && self.handshakes_closed > 0 {
            d.push_str(&format!(
                ", {} handshakes closed before any data ({})",
                self.handshakes_closed,
                self.handshake_hint(encryption)
            ));
        }
        d
    }

    fn handshake_hint(&self, encryption: Encryption) -> String {
        match encryption {
            Encryption::Plaintext => format!(
                "last: {}; the peers may require encryption: try --encryption prefer",
                self.last_handshake_reason
            ),
            Encryption::Require => format!(
                "last: {}; the peers may not speak encryption: try --encryption prefer",
                self.last_handshake_reason
            ),
            Encryption::Prefer => format!("last: {}", self.last_handshake_reason),
        }
    }
}

async fn run_client(
    meta: &Metainfo,
    storage: FileStorage,
    have: Bitfield,
    opts: &RunOpts,
    mp: &MultiProgress,
    dht: Option<&Dht>,
) -> Result<()> {
    let label: String = meta.name.chars().take(24).collect();
    let started_complete = have.is_full();
    let started = tokio::time::Instant::now();
    if started_complete && !opts.cfg.seed {
        // Everything is here and verified: nothing to fetch, nobody to serve.
        if opts.json {
            print_summary_json(meta, "already complete", 0, started, &Seen::default(), None);
        } else if !opts.quiet {
            println!(
                "{}: complete, every piece verified ({} already on disk)",
                meta.name,
                fmt_bytes(meta.total_length)
            );
        }
        return Ok(());
    }
    let mut progress = (!opts.quiet && !opts.json).then(|| {
        let p = if started_complete {
            Progress::new(&format!("{label} (seeding)"), None)
        } else {
            Progress::new(&label, Some(meta.total_length))
        };
        if let Some(b) = p.bar() {
            mp.add(b.clone());
        }
        p
    });
    let mut s = Session::start(meta, storage, have, &opts.cfg, dht).await?;
    if let Some(a) = s.local() {
        say(
            progress.as_ref(),
            &format!(
                "{}: info-hash {}, listening on {a}",
                meta.name, meta.info_hash
            ),
        );
    }
    let mut seeding = started_complete;
    let mut seen = Seen::default();
    let stop_signal = crate::common::stop_signal();
    tokio::pin!(stop_signal);
    let outcome: Result<&str> = loop {
        let update = tokio::select! {
            u = s.next() => u,
            _ = &mut stop_signal => break Ok("stopped"),
        };
        let ev = match update {
            Update::Finished(Outcome::Complete) => break Ok("complete"),
            Update::Finished(Outcome::SeedingDone) => break Ok("seeding done"),
            Update::Finished(Outcome::StorageFailed(reason)) => {
                break Err(anyhow::anyhow!("storage: {reason}"));
            }
            Update::Finished(_) => break Err(anyhow::anyhow!("the client stopped unexpectedly")),
            Update::Stats(stats) => {
                seen.peers = stats.peers;
                seen.max_peers = seen.max_peers.max(stats.peers);
                seen.downloaded = stats.downloaded;
                seen.uploaded = stats.uploaded;
                seen.limit_closes = stats.limit_closes;
                let detail = format!(
                    "down {}/s, up {}/s, {}",
                    fmt_bytes(stats.down_rate as u64),
                    fmt_bytes(stats.up_rate as u64),
                    seen.detail(opts.cfg.encryption)
                );
                if let Some(p) = &mut progress {
                    let done = if seeding {
                        stats.uploaded
                    } else {
                        (u64::from(stats.pieces_have) * meta.piece_length).min(meta.total_length)
                    };
                    p.update(done, &detail);
                }
                continue;
            }
            Update::Event(ev) => ev,
            _ => continue,
        };
        match ev {
            ClientEvent::Completed => {
                say(
                    progress.as_ref(),
                    &format!("{}: complete, every piece verified", meta.name),
                );
                if !opts.cfg.seed {
                    continue; // the session finishes next
                }
                if let Some(p) = progress.take() {
                    p.finish("complete");
                    let s = Progress::new(&format!("{label} (seeding)"), None);
                    if let Some(b) = s.bar() {
                        mp.add(b.clone());
                    }
                    progress = Some(s);
                }
                seeding = true;
            }
            ClientEvent::TrackerError { url, reason } => tracing::warn!(%url, %reason, "tracker"),
            ClientEvent::PieceFailed { index, senders } => {
                tracing::warn!(index, ?senders, "piece failed its hash check")
            }
            ClientEvent::PeerBanned { ip } => tracing::warn!(%ip, "peer banned"),
            ClientEvent::PeerConnected { addr, inbound } => {
                tracing::debug!(%addr, inbound, "peer connected");
                // Between two stats samples too (a short download may see none).
                seen.live += 1;
                seen.max_peers = seen.max_peers.max(seen.live);
            }
            ClientEvent::PeerDisconnected { addr, reason } => {
                tracing::info!(%addr, %reason, "peer disconnected");
                seen.live = seen.live.saturating_sub(1);
            }
            ClientEvent::HandshakeFailed {
                addr,
                reason,
                encrypted,
            } => {
                tracing::info!(%addr, %reason, encrypted, "handshake failed");
                seen.handshakes_closed += 1;
                seen.last_handshake_reason = reason;
                if !seen.noted && !seeding && seen.downloaded == 0 && seen.handshakes_closed >= 2 {
                    seen.noted = true;
                    say(
                        progress.as_ref(),
                        &format!(
                            "{}: no data yet: {} connections closed during the handshake ({})",
                            meta.name,
                            seen.handshakes_closed,
                            seen.handshake_hint(opts.cfg.encryption)
                        ),
                    );
                }
            }
            ev => tracing::debug!(?ev, "event"),
        }
    };
    let complete = s.is_complete();
    let core = s.stop().await?;
    let stats = core.stats();
    seen.downloaded = stats.downloaded;
    seen.uploaded = stats.uploaded;
    seen.peers = stats.peers;
    seen.limit_closes = stats.limit_closes;
    if let Some(mut p) = progress {
        let done = if seeding {
            stats.uploaded
        } else {
            (u64::from(stats.pieces_have) * meta.piece_length).min(meta.total_length)
        };
        p.update(done, &seen.detail(opts.cfg.encryption));
        let what = match &outcome {
            Ok(w) => *w,
            Err(_) => "failed",
        };
        p.finish(what);
    }
    if opts.json {
        let (what, err) = match &outcome {
            Ok(w) => (*w, None),
            Err(e) => ("failed", Some(format!("{e:#}"))),
        };
        let bytes = if seeding {
            stats.uploaded
        } else {
            (u64::from(stats.pieces_have) * meta.piece_length).min(meta.total_length)
        };
        print_summary_json(meta, what, bytes, started, &seen, err);
    }
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

/// The `--json` final summary of one torrent's run: one object on its own line.
fn print_summary_json(
    meta: &Metainfo,
    outcome: &str,
    bytes: u64,
    started: tokio::time::Instant,
    seen: &Seen,
    error: Option<String>,
) {
    let secs = started.elapsed().as_secs_f64();
    let mut v = serde_json::json!({
        "name": meta.name,
        "info_hash": meta.info_hash.to_hex(),
        "outcome": outcome,
        "bytes": bytes,
        "size": meta.total_length,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "rate": (bytes as f64 / secs.max(1e-3)).round() as u64,
        "downloaded": seen.downloaded,
        "uploaded": seen.uploaded,
        "peers": seen.peers,
        "max_peers": seen.max_peers,
        "handshakes_closed": seen.handshakes_closed,
        "limit_closes": seen.limit_closes,
    });
    if let Some(e) = error {
        v["error"] = serde_json::Value::String(e);
    }
    crate::common::print_json(&v);
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

    let seeding = SessionConfig {
        seed: true,
        ..RunOpts::default().cfg
    };
    let (storage, have) = open_seed(&meta, &src, false).await?;
    let started = std::time::Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(16);
    let s = Session::start(&meta, storage, have, &seeding, None).await?;
    let seeder = tokio::spawn(demo_peer(s, started, stop_rx.clone(), done_tx.clone()));
    let mut leechers = Vec::new();
    for i in 0..10 {
        let d = dir.join(format!("leecher-{i}"));
        let st = FileStorage::open(&meta, &d)?;
        let s = Session::start(
            &meta,
            st,
            Bitfield::new(meta.piece_count() as u32),
            &seeding,
            None,
        )
        .await?;
        leechers.push(tokio::spawn(demo_peer(
            s,
            started,
            stop_rx.clone(),
            done_tx.clone(),
        )));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let _ = tokio::time::timeout_at(deadline, async {
        for _ in 0..leechers.len() {
            done_rx.recv().await;
        }
    })
    .await;
    let _ = stop_tx.send(true);
    let (seeder, _) = seeder.await?;
    let seeder_core = seeder.stop().await?;
    let seeder_up = seeder_core.stats().uploaded;
    let mut total_up = seeder_up;
    let mut identical = 0;
    let mut done = Vec::new();
    for (i, l) in leechers.into_iter().enumerate() {
        let (l, at) = l.await?;
        done.push(at);
        let core = l.stop().await?;
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
        params: Default::default(),
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
    // Trackerless: the DHT and a magnet link, no tracker anywhere.
    let tl = demo_trackerless(out).await?;
    sec.rows.extend(tl.rows);
    sec.notes.extend(tl.notes);
    Ok(sec)
}

/// Runs one demo peer until `stop`, telling `done` when it completes: its session and when
/// (seconds from `started`).
async fn demo_peer(
    mut s: Session,
    started: std::time::Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
    done: tokio::sync::mpsc::Sender<()>,
) -> (Session, Option<f64>) {
    let mut at = None;
    loop {
        tokio::select! {
            u = s.next() => match u {
                Update::Event(ClientEvent::Completed) if at.is_none() => {
                    at = Some(started.elapsed().as_secs_f64());
                    let _ = done.send(()).await;
                }
                Update::Finished(_) => break,
                _ => {}
            },
            _ = stop.changed() => break,
        }
    }
    (s, at)
}

/// The demo's trackerless rows (part of [`demo`]): 50 DHT nodes on 127.0.0.1, a seeder that announces a
/// torrent only to the DHT, and a leecher given only the magnet link (no tracker anywhere):
/// it finds the seeder through the DHT, fetches the info dictionary (BEP 9) and downloads the
/// file, checked byte for byte.
async fn demo_trackerless(out: &Path) -> Result<DemoSection> {
    let mut sec = DemoSection::new("BitTorrent trackerless (DHT + magnet)");
    let dir = out.join("bittorrent-trackerless");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("seed"))?;
    let mut nodes = Vec::new();
    for i in 0..50u64 {
        let mut o = ClientOpts::new(SocketAddr::from(([127, 0, 0, 1], 0)), 9000 + i);
        o.timeout = Duration::from_secs(20);
        let mut c = DhtClient::start(o).await?;
        if let Some(first) = nodes.first().map(|n: &DhtClient| n.local) {
            let _ = c.bootstrap(vec![first]).await;
        }
        nodes.push(c);
    }
    let boot = nodes
        .first()
        .map(|n| n.local.to_string())
        .unwrap_or_default();
    let size = 8usize << 20;
    let mut rng = Rng::new(43);
    let mut content = vec![0u8; size];
    for chunk in content.chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let src = dir.join("seed").join("image.bin");
    std::fs::write(&src, &content)?;
    let opts = CreateOptions {
        piece_length: Some(256 << 10),
        nodes: vec![parse_node(&boot)?],
        ..CreateOptions::default()
    };
    let s2 = src.clone();
    let (_, meta) = tokio::task::spawn_blocking(move || create_torrent(&s2, &opts)).await??;
    let magnet = meta.magnet();
    let args = DhtArgs {
        bootstrap: vec![boot.clone()],
        ..DhtArgs::default()
    };
    let seed_dht = start_dht(&args, IpAddr::from([127, 0, 0, 1]), &[]).await?;
    let (storage, have) = open_seed(&meta, &src, false).await?;
    let seeding = SessionConfig {
        seed: true,
        ..RunOpts::default().cfg
    };
    // The session announces the torrent on the seeder's DHT node.
    let s = Session::start(&meta, storage, have, &seeding, seed_dht.as_ref()).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, _done_rx) = tokio::sync::mpsc::channel(1);
    let seeder = tokio::spawn(demo_peer(s, std::time::Instant::now(), stop_rx, done_tx));
    let leech_dht = start_dht(&args, IpAddr::from([127, 0, 0, 1]), &[]).await?;
    let started = std::time::Instant::now();
    let mp = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let m = Magnet::parse(&magnet)?;
    let got = tokio::time::timeout(
        Duration::from_secs(90),
        get_magnet(
            m,
            dir.join("leecher"),
            RunOpts {
                quiet: true,
                ..RunOpts::default()
            },
            false,
            &mp,
            leech_dht.as_ref(),
        ),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    let ok = matches!(got, Ok(Ok(())));
    let same = std::fs::read(dir.join("leecher").join("image.bin")).unwrap_or_default() == content;
    let _ = stop_tx.send(true);
    if let Ok((s, _)) = seeder.await {
        let _ = s.stop().await;
    }
    stop_dht(seed_dht).await;
    stop_dht(leech_dht).await;
    for n in nodes {
        let _ = n.shutdown().await;
    }
    sec.row(
        "50 DHT nodes, no tracker: a leecher with only the magnet link finds the seeder, fetches the metadata (BEP 9), downloads 8 MiB",
        match &got {
            Ok(Ok(())) => format!(
                "{magnet_short}: done in {secs:.2} s, copy {}",
                if same { "identical" } else { "DIFFERENT" },
                magnet_short = magnet.chars().take(60).collect::<String>()
            ),
            Ok(Err(e)) => format!("failed: {e:#}"),
            Err(_) => "no result within 90 s".to_string(),
        },
        ok && same,
    );
    sec.notes.push(
        "Every client is a lightweight tracker: the seeder announces the info-hash to the 8 DHT \
         nodes closest to it; the leecher's get_peers lookup converges on the same nodes."
            .into(),
    );
    Ok(sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torrent_arguments_have_distinct_names() {
        // clap checks its ids only when a subcommand is parsed: `seed`'s payload and the
        // state folder `--data` once collided.
        #[derive(clap::Parser)]
        struct T {
            #[command(subcommand)]
            a: Action,
        }
        use clap::CommandFactory;
        T::command().debug_assert();
    }

    #[test]
    fn disk_threads_default_to_0_inline_and_take_0_to_64() {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            a: DhtArgs,
        }
        use clap::Parser;
        let threads = |args: &[&str]| {
            T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
                .map(|t| t.a.disk_threads())
        };
        assert_eq!(threads(&[]).unwrap(), 0);
        assert_eq!(threads(&["--disk-threads", "0"]).unwrap(), 0);
        assert_eq!(threads(&["--disk-threads", "3"]).unwrap(), 3);
        assert!(threads(&["--disk-threads", "65"]).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trackerless_demo_downloads_through_the_dht_with_no_tracker() {
        let dir = tempfile::tempdir().unwrap();
        let sec = demo_trackerless(dir.path()).await.unwrap();
        for r in &sec.rows {
            assert!(r.ok, "{}: {}", r.check, r.result);
        }
        assert_eq!(sec.rows.len(), 1);
    }
}
