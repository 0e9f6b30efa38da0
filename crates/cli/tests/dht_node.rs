//! `servent dht` as a user runs it: `dht stats` asks the running node (not a state file),
//! one-shot clients are read-only and never kept in the node's table, "nothing found" is
//! exit 3, and the node's state survives `kill -9` at any moment.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_servent");

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// A running `servent dht run`, killed when dropped.
struct Node {
    child: Child,
    /// Its node id as printed at start.
    id: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(port: u16, data: &Path, extra: &[&str]) -> Node {
    let mut child = Command::new(BIN)
        .args(["dht", "run", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("dht run printed nothing");
    // "dht node <id> listening on udp <addr>"
    let id = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    // keep draining so the node never blocks on a full pipe
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Node { child, id }
}

/// Runs `servent ARGS` to completion (at most 30 s).
fn servent(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("servent {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stats(port: u16) -> serde_json::Value {
    let out = servent(&[
        "dht",
        "stats",
        "--node",
        &format!("127.0.0.1:{port}"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn stats_come_from_the_running_node_and_one_shot_clients_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let _node = start(port, &dir.path().join("a"), &["--save-every", "1h"]);
    let boot = format!("127.0.0.1:{port}");
    let hash = "ab".repeat(20);
    for _ in 0..3 {
        let out = servent(&[
            "dht",
            "lookup",
            &hash,
            "--bootstrap",
            &boot,
            "--timeout",
            "5s",
        ]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "nothing found is exit 3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = servent(&[
        "dht",
        "get",
        &"cd".repeat(20),
        "--bootstrap",
        &boot,
        "--timeout",
        "5s",
    ]);
    assert_eq!(out.status.code(), Some(3));
    // right away, with no state saved since the start: the node's own counters
    let s = stats(port);
    assert!(s["queries_in"].as_i64().unwrap() >= 4, "{s}");
    assert_eq!(
        s["nodes"].as_i64(),
        Some(0),
        "read-only clients entered the table: {s}"
    );
}

#[test]
fn lookup_json_prints_one_object_per_peer_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let _node = start(port, &dir.path().join("a"), &[]);
    let boot = format!("127.0.0.1:{port}");
    let hash = "5a".repeat(20);
    let out = servent(&[
        "dht",
        "announce",
        &hash,
        "--port",
        "7777",
        "--bootstrap",
        &boot,
        "--timeout",
        "5s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a bootstrap file instead of an address
    let file = dir.path().join("nodes.txt");
    std::fs::write(&file, format!("# our node\n{boot}\n")).unwrap();
    let out = servent(&[
        "dht",
        "lookup",
        &hash,
        "--bootstrap",
        file.to_str().unwrap(),
        "--timeout",
        "5s",
        "--json",
    ]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["peer"], "127.0.0.1:7777");
    assert_eq!(lines[1]["peers"], 1);
}

#[test]
fn node_state_survives_kill_9_at_any_moment() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let data = dir.path().join("a");
    let first = start(pa, &data, &["--save-every", "50ms"]);
    let _b = start(
        pb,
        &dir.path().join("b"),
        &["--bootstrap", &format!("127.0.0.1:{pa}")],
    );
    let state = data.join("dht.state");
    let t = Instant::now();
    while !state.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // B joined through A, and A verified B: A's saved table holds B
    std::thread::sleep(Duration::from_secs(2));
    let id = first.id.clone();
    drop(first); // SIGKILL
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..20 {
        let node = start(pa, &data, &["--save-every", "50ms"]);
        assert_eq!(node.id, id, "round {round}: the id was lost");
        // a random moment in the first 300 ms (saves every 50 ms)
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(x % 300));
        drop(node);
    }
    let _node = start(pa, &data, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let s = stats(pa);
    assert!(
        s["nodes"].as_i64().unwrap() >= 1,
        "the saved table was lost: {s}"
    );
}
