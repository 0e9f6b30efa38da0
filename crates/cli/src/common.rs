//! What every subcommand shares: the duration syntax, exit codes, address lists for
//! `--bootstrap`, progress that is honest on a terminal and off one, and JSON records.
//!
//! Exit codes (documented in `servent --help`): 0 success (also a user's Ctrl-C of a seeder,
//! server or daemon), 1 failure, 2 usage, 3 nothing found (a search or lookup without a
//! result). Return [`NotFound`] from a command to get 3.

// Each system's module adopts these as it moves to the one vocabulary; until all have,
// some are unused.
#![allow(dead_code)]

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The exit code of a search or lookup that found nothing.
pub const EXIT_NOT_FOUND: u8 = 3;

/// The text of `servent --help`'s exit-code paragraph.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 success (also Ctrl-C of a seeder, server or daemon, \
after its summary), 1 failure, 2 usage error, 3 nothing found (a search or lookup without a result).";

/// A search or lookup that found nothing: `main` prints it and exits with 3.
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// Parses `500ms`, `3s`, `2m`, `1h`, `1.5s` (a bare number is seconds) — the one duration
/// syntax of every flag. For clap: `#[arg(value_parser = common::parse_duration)]`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 500ms, 3s, 2m or 1h"))?;
    let secs = match unit.trim() {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        other => {
            return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)"));
        }
    };
    if !secs.is_finite() || !(0.0..=10.0 * 365.0 * 86_400.0).contains(&secs) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration the way the flags take it (`1.5s`, `250ms`, `2m`).
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 120_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{:.1}m", d.as_secs_f64() / 60.0)
    }
}

/// Bytes for people: `1.5 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The addresses of `--bootstrap ADDR|FILE` values: each value is an address (`host:port`,
/// resolved) or the path of a file with one address per line (`#` comments and blank lines
/// skipped). An empty result is an error only if values were given.
pub fn bootstrap_addrs(values: &[String]) -> Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs as _;
    let mut out = Vec::new();
    for v in values {
        if let Ok(a) = v.parse::<SocketAddr>() {
            out.push(a);
            continue;
        }
        let p = Path::new(v);
        if p.is_file() {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the bootstrap file {}", p.display()))?;
            for (i, line) in text.lines().enumerate() {
                let l = line.split('#').next().unwrap_or("").trim();
                if l.is_empty() {
                    continue;
                }
                let mut addrs = l.to_socket_addrs().with_context(|| {
                    format!("{}:{}: {l:?} is not host:port", p.display(), i + 1)
                })?;
                match addrs.next() {
                    Some(a) => out.push(a),
                    None => bail!("{}:{}: {l:?} resolves to nothing", p.display(), i + 1),
                }
            }
            continue;
        }
        match v.to_socket_addrs() {
            Ok(mut it) => match it.next() {
                Some(a) => out.push(a),
                None => bail!("--bootstrap {v:?} resolves to nothing"),
            },
            Err(_) => bail!("--bootstrap {v:?} is neither host:port nor a file of addresses"),
        }
    }
    Ok(out)
}

/// Whether standard output is a terminal (bars) or a pipe, file or journal (plain lines).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Progress of one long piece of work: an indicatif bar on a terminal; elsewhere one plain
/// line on stdout every [`Progress::PLAIN_EVERY`], and always a final summary line.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    detail: String,
    started: Instant,
    last_plain: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// How often a plain progress line is printed when stdout is not a terminal.
    pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

    /// Starts reporting `label`; `total` in bytes when known.
    pub fn new(label: &str, total: Option<u64>) -> Progress {
        let bar = stdout_is_terminal().then(|| {
            let b = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let style = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.set_prefix(label.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            detail: String::new(),
            started: now,
            last_plain: now,
            bar,
        }
    }

    /// The indicatif bar, when on a terminal (to add it to a `MultiProgress`).
    pub fn bar(&self) -> Option<&indicatif::ProgressBar> {
        self.bar.as_ref()
    }

    /// Sets the total once it is known.
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    /// Reports `done` bytes and a short detail (`"4 peers"`).
    pub fn update(&mut self, done: u64, detail: &str) {
        self.done = done;
        if detail != self.detail {
            self.detail = detail.to_string();
            if let Some(b) = &self.bar {
                b.set_message(detail.to_string());
            }
        }
        match &self.bar {
            Some(b) => b.set_position(done),
            None => {
                if self.last_plain.elapsed() >= Self::PLAIN_EVERY {
                    self.last_plain = Instant::now();
                    println!("{}", self.line());
                }
            }
        }
    }

    /// The current state as one line: `label: 12.0 MiB of 64.0 MiB (18%), 4.1 MiB/s, 4 peers`.
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = fmt_bytes((self.done as f64 / secs) as u64);
        let mut s = match self.total {
            Some(t) if t > 0 => format!(
                "{}: {} of {} ({}%), {rate}/s",
                self.label,
                fmt_bytes(self.done),
                fmt_bytes(t),
                self.done.saturating_mul(100) / t
            ),
            _ => format!("{}: {}, {rate}/s", self.label, fmt_bytes(self.done)),
        };
        if !self.detail.is_empty() {
            s.push_str(", ");
            s.push_str(&self.detail);
        }
        s
    }

    /// Ends the bar and prints the summary line (always, terminal or not):
    /// `label: <outcome>: 64.0 MiB in 3.2s (20.0 MiB/s), <detail>`.
    pub fn finish(self, outcome: &str) -> String {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let el = self.started.elapsed();
        let rate = fmt_bytes((self.done as f64 / el.as_secs_f64().max(1e-3)) as u64);
        let mut s = format!(
            "{}: {outcome}: {} in {} ({rate}/s)",
            self.label,
            fmt_bytes(self.done),
            fmt_duration(el)
        );
        if !self.detail.is_empty() {
            s.push_str(", ");
            s.push_str(&self.detail);
        }
        println!("{s}");
        s
    }
}

/// Prints one record as a JSON object on its own line (for `--json`).
pub fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// Writes `text` to `path` atomically (temporary file, fsync, rename), creating the folder:
/// for `control.addr` and other small state files under `--data`.
pub fn write_state_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The default state folder of a long-running node of `kind` listening on `listen`:
/// `$XDG_STATE_HOME/servent/KIND-IP-PORT`, else `~/.local/state/servent/KIND-IP-PORT`, so
/// several nodes on one host never share one.
pub fn state_dir(kind: &str, listen: std::net::SocketAddr) -> std::path::PathBuf {
    use std::path::PathBuf;
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("servent")
        .join(format!("{kind}-{}-{}", listen.ip(), listen.port()))
}

/// Set once SIGINT or SIGTERM arrived; see [`install_stop_signals`].
static STOP: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> = std::sync::OnceLock::new();

/// Installs the SIGINT and SIGTERM handlers for the whole run, before any command starts: a
/// Ctrl-C that arrives while a command is still starting, or between two waits on
/// [`stop_signal`], is remembered instead of killing the process unsaved or being lost.
/// A second Ctrl-C quits at once (exit 130). Must be called inside the runtime.
pub fn install_stop_signals() {
    let (tx, _) = tokio::sync::watch::channel(false);
    if STOP.set(tx).is_err() {
        return;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if let Some(tx) = STOP.get() {
                tx.send_replace(true);
            }
            // a second Ctrl-C while the command saves and says goodbye quits at once
            let _ = int.recv().await;
            eprintln!("interrupted again: quitting without a clean stop");
            std::process::exit(130);
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        if let Some(tx) = STOP.get() {
            tx.send_replace(true);
        }
    });
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM: a daemon's normal stop. Returns at once if one
/// already arrived.
pub async fn stop_signal() {
    match STOP.get() {
        Some(tx) => {
            let mut rx = tx.subscribe();
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_syntax() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn bootstrap_takes_addresses_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("peers.txt");
        std::fs::write(
            &f,
            "# ultrapeers\n127.0.0.1:6346\n\n127.0.0.1:6347 # second\n",
        )
        .unwrap();
        let got = bootstrap_addrs(&["127.0.0.1:1".into(), f.display().to_string()]).unwrap();
        let want: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:6346", "127.0.0.1:6347"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert!(bootstrap_addrs(&["/no/such/file".into()]).is_err());
    }

    #[test]
    fn bytes_print_for_people() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(64 << 20), "64.0 MiB");
    }
}
