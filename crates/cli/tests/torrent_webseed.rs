//! BEP 19 web seeds: a torrent whose `url-list` points at a small HTTP server (in this test,
//! answering range requests) is downloaded by a `servent` process with no peer and no tracker,
//! and the file is compared byte for byte; a server that serves wrong bytes does not make a
//! download "succeed".

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::torrent::{arg, create_with};
use common::{Proc, content, run};

/// A download that has not finished by then has hung.
const GET_TIMEOUT: Duration = Duration::from_secs(90);

/// Serves `data` as every path, honouring `Range: bytes=a-b` with 206 (keep-alive); bytes at
/// `flip` are served wrong when given. Runs until the test ends.
fn http_server(data: Vec<u8>, flip: Option<usize>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let data = std::sync::Arc::new(data);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let data = data.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                loop {
                    head.clear();
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(1) => head.push(b[0]),
                            _ => return,
                        }
                    }
                    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let range = text
                        .lines()
                        .find_map(|l| l.strip_prefix("range: bytes="))
                        .and_then(|r| {
                            let (a, b) = r.trim().split_once('-')?;
                            Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                        });
                    let Some((a, z)) = range.filter(|(a, z)| a <= z && *z < data.len()) else {
                        let _ = s.write_all(
                            b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n",
                        );
                        continue;
                    };
                    let mut body = data[a..=z].to_vec();
                    if let Some(f) = flip.filter(|f| (a..=z).contains(f)) {
                        body[f - a] ^= 0xff;
                    }
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{z}/{}\r\nContent-Length: {}\r\n\r\n",
                        data.len(),
                        body.len()
                    );
                    if s.write_all(head.as_bytes())
                        .and_then(|_| s.write_all(&body))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A 1 MiB + 12345 bytes file with 64 KiB pieces and its torrent, web seed
/// `http://127.0.0.1:PORT/files/`, no tracker.
fn make_torrent(dir: &Path, port: u16) -> (PathBuf, Vec<u8>) {
    let src = dir.join("image.bin");
    let data = content(&src, (1 << 20) + 12345);
    let seed = format!("http://127.0.0.1:{port}/files/");
    let (torrent, _) = create_with(&src, "64K", &["--web-seed", &seed]);
    (torrent, data)
}

#[test]
fn a_torrent_with_a_web_seed_downloads_from_http_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = dir.path().join("probe.bin");
    let data = content(&probe, (1 << 20) + 12345);
    let port = http_server(data.clone(), None);
    let (torrent, same) = make_torrent(dir.path(), port);
    assert_eq!(same, data);
    let out = dir.path().join("down");
    let got = run(
        &["torrent", "get", arg(&torrent), "-o", arg(&out)],
        GET_TIMEOUT,
    );
    assert!(got.status.success(), "get failed: {}", common::text(&got));
    assert_eq!(
        std::fs::read(out.join("image.bin")).expect("downloaded"),
        data
    );
}

#[test]
fn a_web_seed_serving_wrong_bytes_does_not_complete_the_download() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = dir.path().join("probe.bin");
    let data = content(&probe, (1 << 20) + 12345);
    let port = http_server(data.clone(), Some(200_000));
    let (torrent, _) = make_torrent(dir.path(), port);
    let out = dir.path().join("down");
    let mut get = Proc::start(&["torrent", "get", arg(&torrent), "-o", arg(&out)]);
    // Every other piece verifies; the bad one never does, so `get` keeps waiting for peers.
    std::thread::sleep(Duration::from_secs(8));
    let still_running = get.running();
    get.kill9();
    assert!(still_running, "get must not finish without the bad piece");
    let got = std::fs::read(out.join("image.bin")).unwrap_or_default();
    assert_ne!(got, data);
}
