//! `servent napster`: the index server and the client commands (OpenNap protocol).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use servent_napster::client::{ClientConfig, ClientEvent};
use servent_napster::net::{self, DataPort, ServerOptions, Session};
use servent_napster::wire::{ClientMsg, SearchQuery, ServerMsg};
use servent_runtime::ShareIndex;

/// Napster: a central index server, and clients that share, search and download directly.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Run the index server (accounts, bans and counters in a SQLite database).
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Server {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8888")]
        listen: SocketAddr,
        /// State folder: the SQLite database of accounts, bans and counters is
        /// DIR/napster.db (created if missing). Default `$XDG_STATE_HOME/servent/napster-IP-PORT`
        /// (else `~/.local/state/servent/napster-IP-PORT`) for the --listen address.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// The database file itself, instead of DIR/napster.db.
        #[arg(long, value_name = "FILE", conflicts_with = "data")]
        db: Option<PathBuf>,
        /// Make this (existing) account an administrator; may be repeated.
        #[arg(long)]
        admin: Vec<String>,
        /// Most files one user may share (1..=1000000); past it, one 404 and further shares
        /// are ignored.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_shares: u32,
        /// Most simultaneous connections (1..=1000000); a newcomer past it is told "Server
        /// is full".
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_connections: u32,
        /// argon2id memory cost per password hash, in KiB (8..=1048576, i.e. 8 KiB to 1 GiB;
        /// lower it only for load tests).
        #[arg(long, default_value_t = 19 * 1024, value_parser = clap::value_parser!(u32).range(8..=1_048_576))]
        argon2_kib: u32,
        /// Logins per second allowed from one address (0.1..=1000; burst: 10x).
        #[arg(long, default_value_t = 2.0, value_parser = parse_login_rate)]
        login_rate: f64,
        /// Largest message payload accepted from a client, in bytes (256..=65535): a longer
        /// message is skipped unread and answered with a 404; the connection stays.
        #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(256..=65_535))]
        max_payload: u32,
        /// Longest search (200) accepted, in bytes (16..=65535; above --max-payload the
        /// payload limit refuses it first): a longer one gets a 404 and an empty result.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=65_535))]
        max_search_len: u32,
        /// Time a new connection has to log in before it is closed (half-open and silent
        /// connections cost nothing for longer than this): 1s..10m.
        #[arg(long, value_parser = crate::common::parse_duration, default_value = "15s")]
        login_timeout: std::time::Duration,
        /// Quiet time after which a logged-in client's connection is probed (TCP keepalive,
        /// 3 probes): one that vanished without closing (crash, cut cable) is logged out and
        /// its files leave the index within about 1.3x this; a quiet live client stays.
        /// 1s..2h, or `off`.
        #[arg(long, value_parser = parse_keepalive, default_value = "60s")]
        keepalive: Keepalive,
        /// Connections from one address not logged in yet, at most; a newer one closes the
        /// oldest (1..=10000).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        max_pending_per_ip: u32,
        /// The message of the day: a text file, one 621 line per line (at most 64 KiB and
        /// 200 lines; longer lines are cut at 1000 bytes), sent after every login after the
        /// server's own lines (version, name, welcome).
        #[arg(long, value_name = "FILE", conflicts_with = "motd_text")]
        motd: Option<PathBuf>,
        /// The message of the day as text; `\n` separates lines.
        #[arg(long, value_name = "TEXT")]
        motd_text: Option<String>,
        /// The server's name, in the message of the day and in answers to a server ping
        /// (750): one word of 1 to 64 printable characters.
        #[arg(long, default_value = "servent", value_parser = parse_server_name)]
        name: String,
    },
    /// Log in and print the server's message of the day (621 lines), one per line.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Motd {
        #[command(flatten)]
        who: Who,
    },
    /// Log in, share the files of DIR, serve downloads, stay online until interrupted.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Share {
        /// The folder to share.
        dir: PathBuf,
        #[command(flatten)]
        who: Who,
        /// Address of our data port (downloaders connect here).
        #[arg(long, default_value = "127.0.0.1:0")]
        data_listen: SocketAddr,
        /// Act as a firewalled client: no data port; downloads are pushed.
        #[arg(long)]
        firewalled: bool,
    },
    /// Search the index; prints one result per line: nick, file, size (exit 3: no results).
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Search {
        /// Words that must all appear in the file name.
        query: String,
        #[command(flatten)]
        who: Who,
        /// Most results (1..=10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        max: u32,
        /// One JSON object per result: {"nick","file","size","bitrate","freq","secs","md5"}.
        #[arg(long)]
        json: bool,
    },
    /// Download FILE from NICK into a folder (resumes an interrupted download).
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Get {
        /// The user sharing the file.
        nick: String,
        /// The file name as search or browse shows it.
        file: String,
        /// Output folder.
        #[arg(
            short = 'o',
            long = "output",
            alias = "out",
            value_name = "DIR",
            default_value = "."
        )]
        out: PathBuf,
        #[command(flatten)]
        who: Who,
        /// Address of our data port (a firewalled holder pushes to it).
        #[arg(long, default_value = "127.0.0.1:0")]
        data_listen: SocketAddr,
    },
    /// List the files a user shares (from the server's index, or with --direct from the
    /// user's own client).
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Browse {
        /// The user.
        nick: String,
        #[command(flatten)]
        who: Who,
        /// One JSON object per file: {"nick","file","size","bitrate","freq","secs","md5"}.
        #[arg(long)]
        json: bool,
        /// Ask the user's client for its list directly (640/641, napster.txt 5.3): we
        /// connect to its data port and send GETLIST, or, if it is firewalled, it connects
        /// to ours (--data-listen) and pushes the list. Fails (exit 1) with the server's
        /// reason when that is not possible (offline, sharing nothing, both firewalled).
        #[arg(long)]
        direct: bool,
        /// With --direct: address of our data port, where a firewalled user pushes its list.
        #[arg(long, default_value = "127.0.0.1:0", requires = "direct")]
        data_listen: SocketAddr,
    },
    /// Ban a nick or a dotted IP address (administrators: see `server --admin`).
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Ban {
        /// The nick or address.
        target: String,
        /// Why (shown to nobody but stored with the ban).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        who: Who,
    },
    /// Lift a ban (administrators).
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Unban {
        /// The nick or address.
        target: String,
        #[command(flatten)]
        who: Who,
    },
    /// Interactive chat: lines go to the channel; /msg NICK TEXT, /join C, /part, /quit.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Chat {
        #[command(flatten)]
        who: Who,
        /// Channel to join at start.
        #[arg(long)]
        channel: Option<String>,
    },
}

/// Largest --motd file.
const MAX_MOTD_BYTES: usize = 64 * 1024;

/// The lines of a message of the day: at most 200, each cut to 1000 bytes (on a character
/// boundary) so that every one fits a message; a trailing `\r` is dropped.
fn motd_lines(text: &str) -> Result<Vec<String>> {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut end = l.len().min(1000);
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l[..end].to_string()
        })
        .collect();
    if lines.len() > 200 {
        bail!(
            "the message of the day has {} lines, at most 200",
            lines.len()
        );
    }
    Ok(lines)
}

/// `--login-rate`: a number of logins per second in 0.1..=1000.
fn parse_login_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.1..=1000.0).contains(&v) => Ok(v),
        _ => Err("expected a number of logins per second from 0.1 to 1000".into()),
    }
}

/// `--name`: one word of printable ASCII, 1 to 64 characters.
fn parse_server_name(s: &str) -> Result<String, String> {
    if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
        Ok(s.to_string())
    } else {
        Err("expected one word of 1 to 64 printable characters (no quotes)".into())
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "1 login, 2 searches, 0 downloads brokered".
fn session_summary(logins: u64, searches: u64, downloads: u64) -> String {
    format!(
        "{}, {}, {} brokered",
        plural(logins, "login", "logins"),
        plural(searches, "search", "searches"),
        plural(downloads, "download", "downloads")
    )
}

/// A shared file as one `--json` record.
fn file_json(nick: &str, f: &servent_napster::wire::FileInfo) -> serde_json::Value {
    serde_json::json!({
        "nick": nick,
        "file": f.name,
        "size": f.size,
        "bitrate": f.bitrate,
        "freq": f.freq,
        "secs": f.secs,
        "md5": f.md5,
    })
}

/// Which server, and as whom.
#[derive(clap::Args, Debug)]
struct Who {
    /// The index server to log in to, HOST:PORT (`--server` is an old spelling).
    #[arg(
        long = "node",
        alias = "server",
        value_name = "ADDR",
        default_value = "127.0.0.1:8888"
    )]
    server: String,
    /// Our nick (registered on first login; default: guest<random number>).
    #[arg(long = "nick", id = "my_nick", value_name = "NAME")]
    my_nick: Option<String>,
    /// Our password (there is no default: the first login with a nick creates its account
    /// with this password). Or --password-file, or the environment SERVENT_NAPSTER_PASSWORD.
    #[arg(long, env = "SERVENT_NAPSTER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// A file whose first line is our password (keeps it out of `ps`).
    #[arg(long, value_name = "FILE", conflicts_with = "password")]
    password_file: Option<PathBuf>,
}

impl Who {
    /// The password from --password, SERVENT_NAPSTER_PASSWORD or --password-file.
    fn password(&self) -> Result<String> {
        let pw = match (&self.password, &self.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading --password-file {}", f.display()))?;
                text.lines().next().unwrap_or("").to_string()
            }
            (None, None) => anyhow::bail!(
                "a password is required: --password PW, --password-file FILE or SERVENT_NAPSTER_PASSWORD"
            ),
        };
        if pw.is_empty() {
            anyhow::bail!("the password is empty");
        }
        Ok(pw)
    }

    async fn config(&self, data_port: u16) -> Result<ClientConfig> {
        let server = tokio::net::lookup_host(&self.server)
            .await
            .with_context(|| format!("resolving {}", self.server))?
            .next()
            .with_context(|| format!("{} has no address", self.server))?;
        let nick = match self.my_nick.clone() {
            Some(n) => n,
            None => {
                let [a, b, c, d] = servent_runtime::os_random::<4>()?;
                format!("guest{}", u32::from_le_bytes([a, b, c, d]) % 1_000_000)
            }
        };
        let password = self.password()?;
        let mut c = ClientConfig::new(server, &nick, &password);
        c.data_port = data_port;
        Ok(c)
    }

    async fn login(&self, data_port: u16) -> Result<Session> {
        let cfg = self.config(data_port).await?;
        Session::login(cfg)
            .await
            .with_context(|| format!("logging in to {}", self.server))
    }
}

/// Waits until the server has handled everything sent before (a browse is answered in
/// order), then fails with the server's error text if it refused (`permission denied`,
/// `could not store`).
async fn confirm(s: &mut Session, what: &str) -> Result<()> {
    let me = s.nick.clone();
    s.browse(&me).await?;
    while let Ok(Some(e)) = tokio::time::timeout(std::time::Duration::ZERO, s.next_event()).await {
        if let ClientEvent::Server(ServerMsg::Error { text } | ServerMsg::ErrorMessage { text }) = e
        {
            bail!("the server refused the {what}: {text}");
        }
    }
    Ok(())
}

/// `--keepalive`: a duration, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive(Option<std::time::Duration>);

fn parse_keepalive(s: &str) -> Result<Keepalive, String> {
    if s == "off" {
        return Ok(Keepalive(None));
    }
    let d = crate::common::parse_duration(s)?;
    if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(7200)).contains(&d) {
        return Err(format!("{s}: from 1s to 2h, or off"));
    }
    Ok(Keepalive(Some(d)))
}

/// Runs the subcommand.
pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.cmd {
        Sub::Server {
            listen,
            data,
            db,
            admin,
            max_shares,
            max_connections,
            argon2_kib,
            login_rate,
            max_payload,
            max_search_len,
            login_timeout,
            keepalive,
            max_pending_per_ip,
            motd,
            motd_text,
            name,
        } => {
            if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(600))
                .contains(&login_timeout)
            {
                anyhow::bail!("--login-timeout must be between 1s and 10m");
            }
            let db = match db {
                Some(file) => file,
                None => {
                    let dir = data.unwrap_or_else(|| crate::common::state_dir("napster", listen));
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating the data folder {}", dir.display()))?;
                    dir.join("napster.db")
                }
            };
            let db_shown = db.display().to_string();
            let mut o = ServerOptions::new(listen, db);
            o.admins = admin;
            o.max_connections = max_connections as usize;
            o.config.max_shares_per_user = max_shares as usize;
            o.config.max_connections = max_connections as usize;
            o.config.argon2.0 = argon2_kib;
            o.config.login_rate = (login_rate, login_rate * 10.0);
            o.config.max_payload = max_payload as usize;
            o.config.max_search_len = max_search_len as usize;
            o.config.login_timeout = login_timeout;
            o.keepalive = keepalive.0;
            o.config.max_pending_per_ip = max_pending_per_ip as usize;
            o.config.name = name;
            o.config.motd = match (motd, motd_text) {
                (Some(path), _) => {
                    let meta = std::fs::metadata(&path)
                        .with_context(|| format!("reading --motd {}", path.display()))?;
                    if meta.len() > MAX_MOTD_BYTES as u64 {
                        bail!("--motd {}: larger than 64 KiB", path.display());
                    }
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading --motd {}", path.display()))?;
                    motd_lines(&String::from_utf8_lossy(&bytes))?
                }
                (None, Some(text)) => motd_lines(&text.replace("\\n", "\n"))?,
                (None, None) => Vec::new(),
            };
            let srv = net::start_server(o).await?;
            println!("napster server listening on {}", srv.addr);
            println!("database {db_shown}");
            crate::common::stop_signal().await;
            let st = srv.shutdown().await?;
            println!(
                "stopped: {} this session",
                session_summary(st.logins, st.searches, st.downloads_brokered)
            );
            Ok(())
        }
        Sub::Share {
            dir,
            who,
            data_listen,
            firewalled,
        } => {
            let share = Arc::new(
                ShareIndex::scan(&dir).with_context(|| format!("scanning {}", dir.display()))?,
            );
            let data = if firewalled {
                None
            } else {
                Some(DataPort::bind(data_listen, Some(share.clone())).await?)
            };
            let port = data.as_ref().map_or(0, |(d, _)| d.addr.port());
            let mut s = who.login(port).await?;
            let files = net::share_list(&share);
            if let Some((d, _)) = &data {
                d.publish_list(&s.nick, &files);
            }
            let n = s.share(files).await?;
            println!(
                "{} sharing {n} files from {} ({}); Ctrl-C to stop",
                s.nick,
                share.root().display(),
                if firewalled {
                    "firewalled: uploads are pushed".to_string()
                } else {
                    format!("data port {port}")
                }
            );
            tokio::select! {
                r = net::serve_session(&mut s, share, |e| match e {
                    ClientEvent::Server(ServerMsg::Motd { text }) => println!("motd: {text}"),
                    ClientEvent::UploadAccepted { nick, file } => println!("upload to {nick}: {file}"),
                    ClientEvent::PushRequested { peer } => println!("pushing to {}: {}", peer.nick, peer.file),
                    ClientEvent::DirectBrowseAccepted { nick } => println!("{nick} browses our list directly"),
                    ClientEvent::ListPushRequested { nick, .. } => println!("pushing our list to {nick}"),
                    _ => {}
                }) => r?,
                _ = crate::common::stop_signal() => {}
            }
            s.close().await;
            Ok(())
        }
        Sub::Search {
            query,
            who,
            max,
            json,
        } => {
            let mut s = who.login(0).await?;
            let hits = s
                .search(SearchQuery {
                    contains: vec![query.clone()],
                    max_results: Some(max),
                    ..Default::default()
                })
                .await?;
            for h in &hits {
                if json {
                    crate::common::print_json(&file_json(&h.nick, &h.file));
                } else {
                    println!("{}\t{}\t{}", h.nick, h.file.name, h.file.size);
                }
            }
            if hits.is_empty() {
                // A refused search (too long, rate limit) ends empty after a 404: say why.
                while let Ok(Some(e)) =
                    tokio::time::timeout(std::time::Duration::ZERO, s.next_event()).await
                {
                    if let ClientEvent::Server(ServerMsg::ErrorMessage { text }) = e {
                        s.close().await;
                        bail!("the server refused the search: {text}");
                    }
                }
            }
            s.close().await;
            if hits.is_empty() {
                return Err(crate::common::NotFound(format!("no results for \"{query}\"")).into());
            }
            Ok(())
        }
        Sub::Ban {
            target,
            reason,
            who,
        } => {
            let mut s = who.login(0).await?;
            s.send(ClientMsg::Ban {
                target: target.clone(),
                reason,
            })
            .await?;
            confirm(&mut s, "ban").await?;
            println!("banned {target}");
            s.close().await;
            Ok(())
        }
        Sub::Unban { target, who } => {
            let mut s = who.login(0).await?;
            s.send(ClientMsg::Unban {
                target: target.clone(),
            })
            .await?;
            confirm(&mut s, "unban").await?;
            println!("unbanned {target}");
            s.close().await;
            Ok(())
        }
        Sub::Browse {
            nick,
            who,
            json,
            direct: true,
            data_listen,
        } => {
            let (data, task) = DataPort::bind(data_listen, None).await?;
            let mut s = who.login(data.addr.port()).await?;
            let r = net::direct_browse(&mut s, Some(&data), &nick).await;
            task.abort();
            s.close().await;
            let files = r.with_context(|| format!("browsing {nick} directly"))?;
            for f in files {
                if json {
                    crate::common::print_json(&file_json(&nick, &f));
                } else {
                    println!("{}\t{}", f.name, f.size);
                }
            }
            Ok(())
        }
        Sub::Browse {
            nick, who, json, ..
        } => {
            let mut s = who.login(0).await?;
            match s.browse(&nick).await? {
                Some(files) => {
                    for f in files {
                        if json {
                            crate::common::print_json(&file_json(&nick, &f));
                        } else {
                            println!("{}\t{}", f.name, f.size);
                        }
                    }
                }
                None => {
                    s.close().await;
                    return Err(crate::common::NotFound(format!("{nick} is not online")).into());
                }
            }
            s.close().await;
            Ok(())
        }
        Sub::Get {
            nick,
            file,
            out,
            who,
            data_listen,
        } => {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let (data, task) = DataPort::bind(data_listen, None).await?;
            let mut s = who.login(data.addr.port()).await?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let r = net::download(&mut s, &data, &nick, &file, &out, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await;
            bar.finish_and_clear();
            task.abort();
            s.close().await;
            let d = r?;
            println!(
                "{} ({} bytes{}{})",
                d.path.display(),
                d.size,
                if d.resumed_from > 0 {
                    format!(", resumed from {}", d.resumed_from)
                } else {
                    String::new()
                },
                if d.pushed {
                    ", pushed by a firewalled holder"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Sub::Chat { who, channel } => chat(who, channel).await,
        Sub::Motd { who } => {
            let mut s = who.login(0).await?;
            // The server sends the message of the day right after the login ack; a browse
            // answered after it marks its end.
            let me = s.nick.clone();
            s.browse(&me).await?;
            while let Ok(Some(e)) =
                tokio::time::timeout(std::time::Duration::ZERO, s.next_event()).await
            {
                if let ClientEvent::Server(ServerMsg::Motd { text }) = e {
                    println!("{text}");
                }
            }
            s.close().await;
            Ok(())
        }
    }
}

async fn chat(who: Who, channel: Option<String>) -> Result<()> {
    let mut s = who.login(0).await?;
    println!(
        "logged in as {}; /msg NICK TEXT, /join C, /part, /quit",
        s.nick
    );
    let mut current = channel;
    if let Some(c) = &current {
        s.send(ClientMsg::Join { channel: c.clone() }).await?;
    }
    // Standard input is read on a blocking thread and handed over line by line.
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(64);
    tokio::task::spawn_blocking(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let line = line.trim();
                if line.is_empty() { continue; }
                let msg = if let Some(rest) = line.strip_prefix("/msg ") {
                    let (to, text) = rest.split_once(' ').unwrap_or((rest, ""));
                    ClientMsg::PrivateMessage { to: to.into(), text: text.into() }
                } else if let Some(c) = line.strip_prefix("/join ") {
                    current = Some(c.trim().to_string());
                    ClientMsg::Join { channel: c.trim().into() }
                } else if line == "/part" {
                    let Some(c) = current.take() else { println!("not in a channel"); continue };
                    ClientMsg::Part { channel: c }
                } else if line == "/quit" {
                    break;
                } else if let Some(c) = &current {
                    ClientMsg::Say { channel: c.clone(), text: line.into() }
                } else {
                    println!("join a channel first (/join NAME)");
                    continue;
                };
                if let Err(e) = s.send(msg).await { println!("not sent: {e}"); }
            }
            ev = s.next_event() => {
                let Some(ev) = ev else { break };
                match ev {
                    ClientEvent::Server(ServerMsg::ChannelMessage { channel, nick, text }) => println!("[{channel}] <{nick}> {text}"),
                    ClientEvent::Server(ServerMsg::PrivateMessage { from, text }) => println!("*{from}* {text}"),
                    ClientEvent::Server(ServerMsg::UserJoined(u)) => println!("[{}] {} joined", u.channel, u.nick),
                    ClientEvent::Server(ServerMsg::UserParted(u)) => println!("[{}] {} left", u.channel, u.nick),
                    ClientEvent::Server(ServerMsg::Topic { channel, topic }) => println!("[{channel}] topic: {topic}"),
                    ClientEvent::Server(ServerMsg::ErrorMessage { text }) => println!("server: {text}"),
                    ClientEvent::Server(ServerMsg::Motd { text }) => println!("motd: {text}"),
                    ClientEvent::Disconnected { reason } => { println!("disconnected: {reason}"); break; }
                    _ => {}
                }
            }
        }
    }
    s.close().await;
    Ok(())
}

/// The demo: a server, 10 sharing clients (3 of them firewalled), a search that returns the
/// provider list, a direct download and a pushed one, both verified by SHA-256.
pub async fn demo(out: &std::path::Path) -> Result<crate::demo::DemoSection> {
    use std::time::Duration;
    let mut sec = crate::demo::DemoSection::new("Napster (OpenNap)");
    let dir = out.join("napster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut o = ServerOptions::new("127.0.0.1:0".parse()?, dir.join("napster.db"));
    o.config = servent_napster::server::ServerConfig::for_tests();
    let srv = net::start_server(o).await?;
    let t0 = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..10usize {
        let folder = dir.join(format!("share{i}"));
        std::fs::create_dir_all(&folder)?;
        // Everyone has a few files; users 0, 3, 6 and 9 also have "pixies - debaser".
        for k in 0..5usize {
            let body: Vec<u8> = (0..20_000 + i * 1000 + k)
                .map(|b| (b * 31 + i * 7 + k) as u8)
                .collect();
            std::fs::write(folder.join(format!("track {k} of user{i}.mp3")), body)?;
        }
        if i % 3 == 0 {
            let body: Vec<u8> = (0..250_000usize)
                .map(|b| (b % 251) as u8 ^ (i as u8))
                .collect();
            std::fs::write(folder.join("pixies - debaser.mp3"), body)?;
        }
        let share = Arc::new(ShareIndex::scan(&folder)?);
        let firewalled = i >= 7;
        let data = if firewalled {
            None
        } else {
            Some(DataPort::bind("127.0.0.1:0".parse()?, Some(share.clone())).await?)
        };
        let mut cfg = ClientConfig::new(srv.addr, &format!("user{i}"), "pw");
        cfg.data_port = data.as_ref().map_or(0, |(d, _)| d.addr.port());
        let mut s = Session::login(cfg).await?;
        s.share(net::share_list(&share)).await?;
        tasks.push(tokio::spawn(async move {
            let _keep = data;
            let _ = net::serve_session(&mut s, share, |_| {}).await;
        }));
    }
    sec.row(
        "10 clients log in and share (3 firewalled)",
        format!("{:.0} ms", t0.elapsed().as_secs_f64() * 1e3),
        true,
    );
    let (data, data_task) = DataPort::bind("127.0.0.1:0".parse()?, None).await?;
    let mut cfg = ClientConfig::new(srv.addr, "downloader", "pw");
    cfg.data_port = data.addr.port();
    let mut me = Session::login(cfg).await?;
    let t = std::time::Instant::now();
    let hits = me
        .search(SearchQuery {
            contains: vec!["debaser".into()],
            max_results: Some(100),
            ..Default::default()
        })
        .await?;
    let providers: Vec<String> = hits.iter().map(|h| h.nick.clone()).collect();
    sec.row(
        "search \"debaser\" returns the provider list",
        format!(
            "{} providers ({}) in {:.1} ms",
            hits.len(),
            providers.join(", "),
            t.elapsed().as_secs_f64() * 1e3
        ),
        hits.len() == 4,
    );
    let got = dir.join("downloads");
    std::fs::create_dir_all(&got)?;
    for (nick, label) in [
        ("user3", "direct download"),
        ("user9", "download from a firewalled holder (push)"),
    ] {
        let t = std::time::Instant::now();
        std::fs::create_dir_all(got.join(nick))?;
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            net::download(
                &mut me,
                &data,
                nick,
                "pixies - debaser.mp3",
                &got.join(nick),
                |_, _| {},
            ),
        )
        .await;
        let r = match r {
            Ok(r) => r,
            Err(_) => Err(net::NetError::Timeout("30 s".into())),
        };
        match r {
            Ok(d) => {
                let a = ShareIndex::scan(&dir.join(format!("share{}", &nick[4..])))?;
                let b = ShareIndex::scan(&got.join(nick))?;
                let same = match (
                    a.by_path("pixies - debaser.mp3").map(|f| a.hashes(f.index)),
                    b.by_path("pixies - debaser.mp3").map(|f| b.hashes(f.index)),
                ) {
                    (Some(Ok(x)), Some(Ok(y))) => x.sha256 == y.sha256,
                    _ => false,
                };
                sec.row(
                    format!("{label} from {nick}, verified by SHA-256"),
                    format!(
                        "{} bytes in {:.0} ms{}",
                        d.size,
                        t.elapsed().as_secs_f64() * 1e3,
                        if d.pushed { ", pushed" } else { "" }
                    ),
                    same && d.pushed == (nick == "user9"),
                );
            }
            Err(e) => sec.row(format!("{label} from {nick}"), format!("{e}"), false),
        }
    }
    me.close().await;
    data_task.abort();
    for t in tasks {
        t.abort();
    }
    let st = srv.shutdown().await?;
    sec.notes.push(format!(
        "Central index on the OpenNap protocol: {} (download acks and push requests); accounts in SQLite with argon2 hashes.",
        session_summary(st.logins, st.searches, st.downloads_brokered)
    ));
    Ok(sec)
}

#[cfg(test)]
mod tests {
    use super::{Keepalive, parse_keepalive};

    fn cmd() -> clap::Command {
        <super::Cmd as clap::Args>::augment_args(clap::Command::new("napster"))
    }

    #[test]
    fn the_napster_command_line_is_well_formed() {
        cmd().debug_assert();
    }

    #[test]
    fn the_session_summary_says_one_search_not_one_searches() {
        assert_eq!(
            super::session_summary(1, 1, 1),
            "1 login, 1 search, 1 download brokered"
        );
        assert_eq!(
            super::session_summary(0, 2, 3),
            "0 logins, 2 searches, 3 downloads brokered"
        );
    }

    fn server(args: &[&str]) -> Result<clap::ArgMatches, clap::Error> {
        let mut all = vec!["napster", "server", "--db", "x.db"];
        all.extend_from_slice(args);
        cmd().try_get_matches_from(all)
    }

    #[test]
    fn server_limits_outside_their_stated_range_are_usage_errors() {
        for (flag, bad, good) in [
            ("--argon2-kib", ["7", "1048577"], ["8", "1048576"]),
            ("--max-shares", ["0", "1000001"], ["1", "1000000"]),
            ("--max-connections", ["0", "1000001"], ["1", "1000000"]),
            ("--login-rate", ["0.05", "1001"], ["0.1", "1000"]),
            ("--max-payload", ["255", "65536"], ["256", "65535"]),
            ("--max-search-len", ["15", "65536"], ["16", "65535"]),
        ] {
            for v in bad {
                let e = server(&[flag, v]).expect_err(&format!("{flag} {v} accepted"));
                assert_eq!(e.exit_code(), 2, "{flag} {v}: {e}");
            }
            for v in good {
                server(&[flag, v]).unwrap_or_else(|e| panic!("{flag} {v}: {e}"));
            }
        }
        // A connection that never logs in is closed after 15 s unless told otherwise.
        let m = server(&[]).expect("defaults");
        let (_, sub) = m.subcommand().expect("server");
        assert_eq!(
            sub.get_one::<std::time::Duration>("login_timeout"),
            Some(&std::time::Duration::from_secs(15))
        );
        // Vanished logged-in clients are probed after a minute of quiet unless told otherwise.
        assert_eq!(
            sub.get_one::<Keepalive>("keepalive"),
            Some(&Keepalive(Some(std::time::Duration::from_secs(60))))
        );
        assert_eq!(
            parse_keepalive("off"),
            Ok(Keepalive(None)),
            "--keepalive off turns probing off"
        );
        for v in ["0s", "500ms", "3h", "x"] {
            assert!(server(&["--keepalive", v]).is_err(), "--keepalive {v}");
        }
        for v in ["nan", "inf", "-1", "x"] {
            assert!(server(&["--login-rate", v]).is_err(), "--login-rate {v}");
        }
        // The help states each range it enforces.
        let mut c = cmd();
        let help = c
            .find_subcommand_mut("server")
            .expect("server subcommand")
            .render_long_help()
            .to_string();
        for range in [
            "8..=1048576",
            "1..=1000000",
            "0.1..=1000",
            "256..=65535",
            "16..=65535",
        ] {
            assert!(help.contains(range), "{range} not in the help:\n{help}");
        }
    }

    #[test]
    fn every_napster_subcommand_documents_the_exit_codes() {
        let c = cmd();
        let mut n = 0;
        for sub in c.get_subcommands() {
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert_eq!(
                after,
                crate::common::EXIT_CODES_HELP,
                "napster {}",
                sub.get_name()
            );
            n += 1;
        }
        assert!(n >= 9, "{n} subcommands");
    }
}
