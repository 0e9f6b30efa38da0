//! Gnutella 0.6 failover with every servent a separate `servent` process on 127.0.0.1:
//! two ultrapeers, leaves attached to the first (one ultrapeer slot each, so they have to
//! move), a searcher on the second. The first ultrapeer is killed with SIGKILL; its leaves
//! reconnect to the second from their host cache (learnt from X-Try-Ultrapeers), send it
//! their QRP tables, and a search from the searcher finds a leaf's file within 10 s.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_servent");
const FILE: &str = "Pixies - Debaser.mp3";

/// A long-running process, SIGKILLed when dropped so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running servent: its process, overlay address and control address.
struct Servent {
    proc: Proc,
    listen: String,
    control: String,
}

/// Starts `servent gnutella run` with `args` and reads the addresses it prints.
fn run(args: &[&str]) -> Servent {
    let mut child = Command::new(BIN)
        .args([
            "gnutella",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .args(args)
        .env_remove("SERVENT_GNUTELLA_CONTROL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a servent");
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
        .expect("the servent announces its addresses within 30 s");
    // "gnutella servent ID (0.6 leaf) listening on A, control API on C"
    let rest = line
        .split_once(" listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .1;
    let (listen, control) = rest
        .split_once(", control API on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    Servent {
        proc,
        listen: listen.to_string(),
        control: control.to_string(),
    }
}

/// Runs a client command against a servent's control API, bounded in time.
fn client(control: &str, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("gnutella")
        .args(args)
        .args(["--control", control])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait().expect("poll the client") {
            Some(_) => return child.wait_with_output().expect("client output"),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("client {args:?} did not finish within 30 s");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `servent gnutella peers` until `want(lines)` holds or `limit` passes.
fn peers_until(s: &Servent, limit: Duration, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let out = stdout(&client(&s.control, &["peers"]));
        if want(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn share_dir(root: &Path, name: &str, file: Option<&str>) -> String {
    let d = root.join(name);
    std::fs::create_dir_all(&d).expect("share dir");
    if let Some(f) = file {
        std::fs::write(d.join(f), b"gnutella 0.6 failover test").expect("shared file");
    }
    d.display().to_string()
}

#[test]
fn leaves_of_a_killed_ultrapeer_move_to_the_other_and_are_found_within_10_s() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up1 = run(&["--role", "ultrapeer"]);
    let up2 = run(&["--role", "ultrapeer", "--connect", &up1.listen]);
    let out = peers_until(&up1, Duration::from_secs(10), |o| o.contains("ultrapeer"));
    assert!(out.contains("\tultrapeer\t"), "up1 peers: {out}");

    // Leaves with one ultrapeer slot, bootstrapped from a file naming only up1.
    let boot = dir.path().join("bootstrap.txt");
    std::fs::write(&boot, format!("# known ultrapeers\n{}\n\n", up1.listen)).expect("bootstrap");
    let boot = boot.display().to_string();
    let mut leaves = Vec::new();
    for i in 0..3 {
        let file = format!("leaf{i} - {FILE}");
        let share = share_dir(dir.path(), &format!("leaf{i}"), (i == 1).then_some(&file));
        leaves.push(run(&[
            "--role",
            "leaf",
            "--max-ultrapeers",
            "1",
            "--bootstrap",
            &boot,
            "--share",
            &share,
        ]));
    }
    for l in &leaves {
        let out = peers_until(l, Duration::from_secs(10), |o| o.contains(&up1.listen));
        assert!(
            out.starts_with(&format!("{}\tultrapeer\t", up1.listen)),
            "leaf peers: {out}"
        );
    }
    let out = peers_until(&up1, Duration::from_secs(10), |o| {
        o.matches("\tleaf\t").count() == 3
    });
    assert_eq!(out.matches("\tleaf\tqrp ").count(), 3, "up1 peers: {out}");
    // The searcher is a leaf of up2.
    let seeker = run(&["--role", "leaf", "--connect", &up2.listen]);
    peers_until(&seeker, Duration::from_secs(10), |o| {
        o.contains(&up2.listen)
    });

    // kill -9 the ultrapeer the leaves use.
    let Servent { proc: mut p1, .. } = up1;
    p1.0.kill().expect("SIGKILL up1");
    let _ = p1.0.wait();
    let killed = Instant::now();

    // Within 10 s: every leaf is on up2, and a search from the seeker finds leaf 1's file.
    let mut found = String::new();
    while killed.elapsed() < Duration::from_secs(10) {
        let o = client(&seeker.control, &["search", "debaser", "--wait", "700ms"]);
        if o.status.success() {
            found = stdout(&o);
            break;
        }
    }
    let took = killed.elapsed();
    assert!(
        found.contains(&format!("leaf1 - {FILE}")),
        "no hit within 10 s: {found:?}"
    );
    for l in &leaves {
        let out = peers_until(l, Duration::from_secs(1), |o| o.contains(&up2.listen));
        assert!(
            out.contains(&format!("{}\tultrapeer\t", up2.listen)),
            "leaf peers: {out}"
        );
    }
    eprintln!("found again {took:?} after the kill");
}
