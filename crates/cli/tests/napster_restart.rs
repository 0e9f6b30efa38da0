//! Accounts and bans survive `kill -9` of the Napster index server: the real binary, as
//! separate processes, on 127.0.0.1.
//!
//! Server 1 registers three accounts through client commands and is killed with SIGKILL;
//! server 2 starts on the same database with one of them as administrator (which needs the
//! stored account), bans another through the `ban` client command, and is killed too;
//! server 3 must refuse a wrong password, accept the right one, and refuse the banned user.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_servent");
/// A client command that has not finished by then has hung.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A server process that is SIGKILLed when dropped (so a failing test leaves nothing behind).
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(db: &Path, admin: Option<&str>) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["napster", "server", "--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            // Cheap hashes: this is a test of durability, not of argon2's cost.
            .args(["--argon2-kib", "64", "--login-rate", "50"]);
        if let Some(a) = admin {
            cmd.args(["--admin", a]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server");
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
        let mut server = Server {
            child,
            addr: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server announces its address within 30 s");
        server.addr = line
            .strip_prefix("napster server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        server
    }

    /// SIGKILL, no chance to flush or say goodbye.
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one client command against `server`, with a bounded wait.
fn client(server: &Server, args: &[&str], nick: &str, password: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("napster")
        .args(args)
        .args([
            "--server",
            &server.addr,
            "--nick",
            nick,
            "--password",
            password,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a client");
    let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
    loop {
        match child.try_wait().expect("poll the client") {
            Some(_) => return child.wait_with_output().expect("client output"),
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("client {args:?} as {nick} did not finish within {CLIENT_TIMEOUT:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Logs in (a search is the smallest command that does) and reports the outcome.
fn log_in(server: &Server, nick: &str, password: &str) -> Output {
    client(server, &["search", "nothing-matches-this"], nick, password)
}

/// A login that succeeded runs the search, which finds nothing: exit 3. A refused login is 1.
fn logged_in(o: &Output) -> bool {
    o.status.code() == Some(3)
}

fn refused(o: &Output) -> bool {
    o.status.code() == Some(1)
}

#[test]
fn accounts_and_bans_survive_kill_dash_9_of_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("napster.db");

    // 1. Register three accounts; the server dies right after the last login ack.
    let s1 = Server::start(&db, None);
    for (nick, pw) in [
        ("boss", "boss-pw"),
        ("alice", "alice-pw"),
        ("mallory", "m-pw"),
    ] {
        let o = log_in(&s1, nick, pw);
        assert!(logged_in(&o), "registering {nick}: {}", text(&o));
    }
    s1.kill9();

    // 2. `--admin boss` needs boss's stored account; ban mallory, then die again.
    let s2 = Server::start(&db, Some("boss"));
    let o = client(
        &s2,
        &["ban", "mallory", "--reason", "flooding"],
        "boss",
        "boss-pw",
    );
    assert!(o.status.success(), "ban: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("banned mallory"),
        "{}",
        text(&o)
    );
    // Not an administrator: refused, and so reported.
    let o = client(&s2, &["ban", "boss"], "alice", "alice-pw");
    assert!(!o.status.success(), "alice may not ban: {}", text(&o));
    s2.kill9();

    // 3. Everything is still there.
    let s3 = Server::start(&db, None);
    let wrong = log_in(&s3, "alice", "not-alice-pw");
    assert!(refused(&wrong), "wrong password accepted: {}", text(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("Invalid Password"),
        "{}",
        text(&wrong)
    );
    let right = log_in(&s3, "alice", "alice-pw");
    assert!(
        logged_in(&right),
        "right password refused: {}",
        text(&right)
    );
    let banned = log_in(&s3, "mallory", "m-pw");
    assert!(refused(&banned), "ban lost: {}", text(&banned));
    assert!(
        String::from_utf8_lossy(&banned.stderr).contains("banned"),
        "{}",
        text(&banned)
    );
    // boss is still an administrator only when named so; the account itself survived.
    let boss = log_in(&s3, "boss", "boss-pw");
    assert!(logged_in(&boss), "{}", text(&boss));
    s3.kill9();
}
