//! Message Stream Encryption between separate `servent` processes on 127.0.0.1: a seeder that
//! requires MSE serves a leecher with the default policy (prefer), and a plaintext-only
//! leecher downloads from a default seeder (which accepts both).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_servent");
/// A download that has not finished by then has hung.
const GET_TIMEOUT: Duration = Duration::from_secs(90);

/// A long-running process, SIGKILLed when dropped so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `args` and returns it with a receiver of its stdout lines.
fn start(args: &[&str]) -> (Proc, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    (Proc(child), rx)
}

/// Runs `args` to completion with a bounded wait.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn servent");
    let deadline = Instant::now() + GET_TIMEOUT;
    loop {
        match child.try_wait().expect("poll servent") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{args:?} did not finish within {GET_TIMEOUT:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn content(path: &Path, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, &data).expect("write content");
    data
}

fn seed_and_get(seed_enc: &str, get_enc: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("image.bin");
    let data = content(&src, 2 << 20);
    let torrent = dir.path().join("image.torrent");
    let created = run(&[
        "torrent",
        "create",
        src.to_str().unwrap(),
        "-t",
        "http://127.0.0.1:1/announce",
        "-o",
        torrent.to_str().unwrap(),
    ]);
    assert!(created.status.success(), "{created:?}");
    let listen = format!("127.0.0.1:{}", free_port());
    let (_seeder, _) = start(&[
        "torrent",
        "seed",
        torrent.to_str().unwrap(),
        "--data",
        src.to_str().unwrap(),
        "--listen",
        &listen,
        "--encryption",
        seed_enc,
    ]);
    let out = dir.path().join("down");
    let got = run(&[
        "torrent",
        "get",
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--peer",
        &listen,
        "--encryption",
        get_enc,
    ]);
    assert!(
        got.status.success(),
        "seed {seed_enc} / get {get_enc}: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("image.bin")).expect("downloaded"),
        data
    );
}

#[test]
fn a_seeder_that_requires_mse_serves_a_default_leecher() {
    seed_and_get("require", "prefer");
}

#[test]
fn a_plaintext_only_leecher_downloads_from_a_default_seeder() {
    seed_and_get("prefer", "plaintext");
}
