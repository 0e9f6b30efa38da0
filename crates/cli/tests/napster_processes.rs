//! Napster end to end with every party a separate `servent` process on 127.0.0.1: a sharer
//! logs in and uploads its list, others search and browse the index, download directly from
//! the sharer, resume an interrupted download by offset, and see the shares vanish when the
//! sharer's process dies.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_servent");
/// A client command that has not finished by then has hung.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the index may take to reflect a login or a disconnect.
const SETTLE: Duration = Duration::from_secs(30);
const FILE: &str = "Pixies - Debaser.mp3";

/// A long-running process, SIGKILLed when dropped so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the index server and returns it with the address it printed.
fn server(db: &Path) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(["napster", "server", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(["--argon2-kib", "64", "--login-rate", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server");
    let stdout = child.stdout.take().expect("piped stdout");
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server announces its address within 30 s");
    let addr = line
        .strip_prefix("napster server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (proc, addr)
}

/// Runs one client command as `nick`, with a bounded wait.
fn client(addr: &str, nick: &str, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("napster")
        .args(args)
        .args(["--server", addr, "--nick", nick, "--password", "pw"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a client");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        match child.try_wait().expect("poll the client") {
            Some(_) => return child.wait_with_output().expect("client output"),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("client {args:?} did not finish within {CLIENT_TIMEOUT:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Searches until `want(results)` holds or SETTLE passes; returns the last output.
fn search_until(addr: &str, want: impl Fn(&str) -> bool) -> Output {
    let deadline = Instant::now() + SETTLE;
    loop {
        let o = client(addr, "bob", &["search", "debaser"]);
        if want(&stdout(&o)) || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn share_search_browse_download_resume_and_vanish_across_processes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let share = dir.path().join("share");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&share).expect("share dir");
    std::fs::create_dir_all(&out).expect("out dir");
    let content: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(share.join(FILE), &content).expect("shared file");

    let (_server, addr) = server(&dir.path().join("napster.db"));
    let sharer = Proc(
        Command::new(BIN)
            .args(["napster", "share"])
            .arg(&share)
            .args(["--server", &addr, "--nick", "alice", "--password", "pw"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the sharer"),
    );

    // The provider list: one line per result, nick, file, size.
    let found = search_until(&addr, |s| s.contains("alice"));
    let line = format!("alice\t{FILE}\t300000");
    assert!(
        stdout(&found).lines().any(|l| l == line),
        "search: {}",
        text(&found)
    );

    let browse = client(&addr, "bob", &["browse", "alice"]);
    assert!(browse.status.success(), "browse: {}", text(&browse));
    assert!(stdout(&browse).contains(FILE), "browse: {}", text(&browse));

    // A direct download.
    let out_s = out.to_str().expect("utf-8 temp path");
    let get = client(&addr, "bob", &["get", "alice", FILE, "-o", out_s]);
    assert!(get.status.success(), "get: {}", text(&get));
    assert_eq!(
        std::fs::read(out.join(FILE)).expect("downloaded file"),
        content
    );

    // Resume: an interrupted download left a .part whose first 100 000 bytes are marked.
    // A resumed transfer asks for the rest from that offset and keeps the marked prefix;
    // a download from scratch would not.
    let out2 = dir.path().join("out2");
    std::fs::create_dir_all(&out2).expect("out2 dir");
    std::fs::write(out2.join(format!("{FILE}.part")), vec![0xAA; 100_000]).expect("part file");
    let get = client(
        &addr,
        "carol",
        &["get", "alice", FILE, "-o", out2.to_str().expect("utf-8")],
    );
    assert!(get.status.success(), "resumed get: {}", text(&get));
    let got = std::fs::read(out2.join(FILE)).expect("resumed file");
    assert_eq!(got.len(), content.len());
    assert!(
        got[..100_000].iter().all(|&b| b == 0xAA),
        "the prefix was downloaded again"
    );
    assert_eq!(got[100_000..], content[100_000..]);

    // The sharer's process dies: its shares leave the index.
    drop(sharer);
    let gone = search_until(&addr, |s| !s.contains("alice"));
    assert!(
        !stdout(&gone).contains("alice"),
        "shares outlived their owner: {}",
        text(&gone)
    );
}
