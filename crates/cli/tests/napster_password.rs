//! The Napster client has no default password (a guessable default would let anyone log in
//! as any nick created with it), reads one from --password, SERVENT_NAPSTER_PASSWORD or
//! --password-file; the server closes a connection that does not log in within
//! --login-timeout.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Proc, run_cmd, servent, text};

const LIMIT: Duration = Duration::from_secs(60);

fn server(dir: &std::path::Path, extra: &[&str]) -> (Proc, String) {
    let db = dir.join("nap.db");
    let db = db.to_str().expect("utf-8 temp path");
    let mut args = vec!["napster", "server", "--listen", "127.0.0.1:0", "--db", db];
    args.extend_from_slice(&["--argon2-kib", "64", "--login-rate", "50"]);
    args.extend_from_slice(extra);
    let mut p = Proc::start(&args);
    let line = p.wait_prefix(Duration::from_secs(30), "napster server listening on ");
    let addr = line
        .trim_start_matches("napster server listening on ")
        .to_string();
    (p, addr)
}

fn search(addr: &str, nick: &str, auth: &[&str]) -> Output {
    let mut cmd = servent(&["napster", "search", "nothing-matches-this"]);
    cmd.args(["--server", addr, "--nick", nick]).args(auth);
    cmd.env_remove("SERVENT_NAPSTER_PASSWORD");
    run_cmd(cmd, LIMIT)
}

#[test]
fn a_client_without_a_password_is_refused_before_connecting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_srv, addr) = server(tmp.path(), &[]);
    let o = search(&addr, "alice", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("a password is required"),
        "{}",
        text(&o)
    );
}

#[test]
fn password_file_and_environment_give_the_account_password() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_srv, addr) = server(tmp.path(), &[]);
    let file = tmp.path().join("pw");
    std::fs::write(&file, "file-secret\nignored second line\n").expect("write pw");
    let file = file.to_str().expect("utf-8 temp path");
    // The first login creates alice with the file's first line.
    let o = search(&addr, "alice", &["--password-file", file]);
    assert_ne!(o.status.code(), Some(1), "{}", text(&o));
    let wrong = search(&addr, "alice", &["--password", "ignored second line"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    let right = search(&addr, "alice", &["--password", "file-secret"]);
    assert_ne!(right.status.code(), Some(1), "{}", text(&right));
    // The environment variable is a password too.
    let mut cmd = servent(&["napster", "search", "nothing-matches-this"]);
    cmd.args(["--server", &addr, "--nick", "alice"]);
    cmd.env("SERVENT_NAPSTER_PASSWORD", "file-secret");
    let env = run_cmd(cmd, LIMIT);
    assert_ne!(env.status.code(), Some(1), "{}", text(&env));
    let mut cmd = servent(&["napster", "search", "nothing-matches-this"]);
    cmd.args(["--server", &addr, "--nick", "alice"]);
    cmd.env("SERVENT_NAPSTER_PASSWORD", "guess");
    let env = run_cmd(cmd, LIMIT);
    assert_eq!(env.status.code(), Some(1), "{}", text(&env));
}

#[test]
fn a_connection_that_never_logs_in_is_closed_after_the_login_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_srv, addr) = server(tmp.path(), &["--login-timeout", "1s"]);
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("read timeout");
    let t = Instant::now();
    let mut buf = [0u8; 256];
    // The server may say why before closing; read until end of stream.
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no close within 8 s (timeout 1 s): {e}"),
        }
    }
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed before the timeout: {waited:?}"
    );
}

#[test]
fn login_timeout_out_of_range_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("nap.db");
    let mut cmd = servent(&[
        "napster",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--login-timeout",
        "0s",
        "--db",
    ]);
    cmd.arg(&db);
    let o = run_cmd(cmd, LIMIT);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--login-timeout"),
        "{}",
        text(&o)
    );
}

#[test]
fn search_json_exit_3_and_the_servers_ctrl_c_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (srv, addr) = server(tmp.path(), &[]);
    // Nothing shared: a search finds nothing and says so with exit code 3.
    let mut cmd = servent(&["napster", "search", "debaser", "--json"]);
    cmd.args(["--node", &addr, "--nick", "dora", "--password", "pw"]);
    let o = run_cmd(cmd, LIMIT);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
    // Browsing a user who is not online is "nothing found" too.
    let mut cmd = servent(&["napster", "browse", "nobody", "--json"]);
    cmd.args(["--node", &addr, "--nick", "dora", "--password", "pw"]);
    let o = run_cmd(cmd, LIMIT);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // Ctrl-C of the server is a normal stop: exit 0 and a summary in the singular.
    let (code, rest) = srv.interrupt(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{rest}");
    assert!(
        rest.contains("stopped: 2 logins, 1 search, 0 downloads brokered"),
        "{rest}"
    );
}
