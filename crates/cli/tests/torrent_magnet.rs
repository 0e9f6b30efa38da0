//! Magnet links and trackerless torrents end to end, every party a separate `servent`
//! process on 127.0.0.1: a leecher given only a magnet link fetches the info dictionary from
//! a seeder (BEP 10 + BEP 9) and downloads the file; `share` publishes a file through the DHT
//! alone and `get MAGNET` finds it there, with no tracker running anywhere.

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

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_leecher_with_only_a_magnet_link_fetches_the_metadata_and_the_file_from_a_seeder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("image.bin");
    let data = content(&src, 3 << 20);
    let torrent = dir.path().join("image.torrent");
    // A tracker URL nobody answers: the magnet's peer comes from x.pe.
    let created = run(&[
        "torrent",
        "create",
        src.to_str().unwrap(),
        "-t",
        "http://127.0.0.1:1/announce",
        "--piece-size",
        "64K",
        "-o",
        torrent.to_str().unwrap(),
    ]);
    assert!(created.status.success(), "{created:?}");
    let magnet = stdout_of(&created)
        .lines()
        .find_map(|l| {
            l.strip_prefix("magnet:")
                .and_then(|rest| rest.split_whitespace().last())
                .map(str::to_string)
        })
        .expect("create prints the magnet link");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_seeder, _) = start(&[
        "torrent",
        "seed",
        torrent.to_str().unwrap(),
        "--data",
        src.to_str().unwrap(),
        "--listen",
        &listen,
    ]);
    let out = dir.path().join("down");
    let link = format!("{magnet}&x.pe={listen}");
    // The seeder may still be hashing: the leecher retries the peer until it answers.
    let got = run(&["torrent", "get", &link, "-o", out.to_str().unwrap()]);
    assert!(
        got.status.success(),
        "get failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("image.bin")).expect("downloaded"),
        data
    );
}

#[test]
fn share_publishes_through_the_dht_and_get_magnet_downloads_with_no_tracker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("boot.state");
    let (_boot, lines) = start(&[
        "dht",
        "run",
        "--listen",
        "127.0.0.1:0",
        "--state",
        state.to_str().unwrap(),
    ]);
    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the DHT node reports its address");
    let boot = first
        .rsplit_once("listening on udp ")
        .map(|(_, a)| a.trim().to_string())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let folder = dir.path().join("album");
    std::fs::create_dir_all(folder.join("cd1")).expect("mkdir");
    let a = content(&folder.join("cd1").join("a.bin"), 700_000);
    let b = content(&folder.join("b.bin"), 1 << 20);
    let (_share, lines) = start(&[
        "torrent",
        "share",
        folder.to_str().unwrap(),
        "--dht-bootstrap",
        &boot,
    ]);
    let magnet = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("share prints the magnet link first");
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"), "{magnet:?}");
    assert!(!magnet.contains("tr="), "no tracker: {magnet:?}");
    let out = dir.path().join("down");
    let got = run(&[
        "torrent",
        "get",
        &magnet,
        "-o",
        out.to_str().unwrap(),
        "--dht-bootstrap",
        &boot,
    ]);
    assert!(
        got.status.success(),
        "get failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(out.join("album/cd1/a.bin")).expect("a"), a);
    assert_eq!(std::fs::read(out.join("album/b.bin")).expect("b"), b);
}
