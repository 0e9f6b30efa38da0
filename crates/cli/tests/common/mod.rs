//! Helpers shared by the CLI's process tests: every party is a separate `servent` process.
//! Use with `mod common;` at the top of a test file; every wait is bounded, and a process
//! that outlives its test is SIGKILLed when its guard drops.
// each test file uses a different subset; `pub` only means "used by the test files"
#![allow(dead_code, unreachable_pub)]

pub mod coin;
pub mod torrent;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_servent");

/// A `servent` command with the given arguments (stdin closed).
pub fn servent(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    c
}

/// A long-running `servent` process whose stdout lines arrive on a channel; SIGKILLed on drop.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    /// Starts `servent ARGS`; stderr goes to the test's stderr (shown on failure).
    pub fn start(args: &[&str]) -> Proc {
        Proc::start_cmd(servent(args))
    }

    /// Starts a prepared command (for extra environment or a working directory).
    pub fn start_cmd(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn servent");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The process id (for `kill -9` tests).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for a stdout line that `want` accepts and returns it; panics with
    /// everything seen so far when none comes.
    pub fn wait_line(&mut self, limit: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        for l in &self.seen {
            if want(l) {
                return l.clone();
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no matching line within {limit:?}; stdout so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The rest of a line that starts with `prefix` (e.g. an address the process printed).
    pub fn wait_prefix(&mut self, limit: Duration, prefix: &str) -> String {
        let l = self.wait_line(limit, |l| l.starts_with(prefix));
        l[prefix.len()..].trim().to_string()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every stdout line seen so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// SIGKILL now, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGINT (a user's Ctrl-C) and wait up to `limit` for the exit; returns the exit code
    /// and the remaining stdout.
    pub fn interrupt(mut self, limit: Duration) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + limit;
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("no exit within {limit:?} after SIGINT");
                }
            }
        };
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            rest.push(l);
        }
        (code, rest.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `servent ARGS` to completion within `limit` (panics if it hangs).
pub fn run(args: &[&str], limit: Duration) -> Output {
    run_cmd(servent(args), limit)
}

/// Runs a prepared command to completion within `limit`.
pub fn run_cmd(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn servent");
    // drain both pipes on threads so a chatty child never blocks on a full pipe
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("poll child") {
            Some(st) => break st,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?} did not finish within {limit:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Output {
        status,
        stdout: to.join().unwrap_or_default(),
        stderr: te.join().unwrap_or_default(),
    }
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard output and error, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Repeats `f` until it returns `Some` or `limit` passes (then `None`), pausing `every`.
pub fn retry<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// A port that was free a moment ago on 127.0.0.1 (TCP and UDP both checked).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let t = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = t.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Deterministic test content of `len` bytes written to `path`; returns the bytes.
pub fn content(path: &Path, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(path, &data).expect("write content");
    data
}

/// A folder under `root` holding `files` (name, bytes); returns its path.
pub fn share_dir(root: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    for (f, b) in files {
        std::fs::write(d.join(f), b).expect("write");
    }
    d
}
