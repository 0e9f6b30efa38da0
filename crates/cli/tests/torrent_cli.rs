//! `servent torrent` as a user meets it, each party a separate process on 127.0.0.0/8:
//! progress and a summary when stdout is a pipe, complete data never fetched again, a seeder
//! that never creates or writes data, Ctrl-C of a seeder, `show` of a trackerless torrent and
//! `--json` (show, get, seed), `--bootstrap ADDR|FILE`, the peer-port limits, a plaintext leecher told why encrypted-only peers send nothing, and a peer that
//! answers with oversized blocks banned after the first.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::torrent::{create, seeder};
use common::{Proc, content, free_port, stdout};

const LIMIT: Duration = Duration::from_secs(90);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 2 MiB file with 64 KiB pieces and its torrent (tracker that never answers).
fn make(dir: &Path) -> (PathBuf, Vec<u8>, PathBuf) {
    let src = dir.join("image.bin");
    let data = content(&src, 2 << 20);
    let (torrent, _) = create(&src, "64K");
    (src, data, torrent)
}

#[test]
fn get_prints_progress_lines_and_a_summary_when_stdout_is_a_pipe_and_never_refetches() {
    let dir = tempfile::tempdir().unwrap();
    let (src, data, torrent) = make(dir.path());
    // 2 MiB at 300 kB/s: about 7 s, so at least one 5-second progress line.
    let (_seed, listen) = seeder(&torrent, &src, &["--upload-limit", "300000"]);
    let out = dir.path().join("dl");
    let got = common::run(
        &[
            "torrent",
            "get",
            s(&torrent),
            "-o",
            s(&out),
            "--peer",
            &listen,
        ],
        LIMIT,
    );
    let text = stdout(&got);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(std::fs::read(out.join("image.bin")).unwrap(), data);
    assert!(
        text.lines()
            .any(|l| l.starts_with("image.bin: ") && l.contains('%') && l.contains("/s")),
        "no plain progress line:\n{text}"
    );
    let summary = text.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("image.bin: complete: 2.0 MiB in ")
            && summary.contains("/s")
            && summary.contains("peers"),
        "no final summary (bytes, time, rate, peers):\n{text}"
    );

    // Run again: everything is verified already, so it exits at once with no peer at all.
    let t = Instant::now();
    let again = common::run(&["torrent", "get", s(&torrent), "-o", s(&out)], LIMIT);
    assert!(again.status.success(), "{again:?}");
    assert!(stdout(&again).contains("complete, every piece verified"));
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );

    // The same data copied into a fresh folder (no resume data): verified, not fetched.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(out.join("image.bin"), copy.join("image.bin")).unwrap();
    let from_copy = common::run(&["torrent", "get", s(&torrent), "-o", s(&copy)], LIMIT);
    assert!(from_copy.status.success(), "{from_copy:?}");
    assert!(stdout(&from_copy).contains("complete, every piece verified"));
}

/// The only line of a `--json` run's stdout, parsed.
fn one_json_object(text: &str) -> serde_json::Value {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "not one JSON line:\n{text}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn get_and_seed_with_json_print_only_one_summary_object() {
    let dir = tempfile::tempdir().unwrap();
    let (src, data, torrent) = make(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let seed = Proc::start(&[
        "torrent",
        "seed",
        s(&torrent),
        s(&src),
        "--listen",
        &listen,
        "--json",
    ]);
    // With --json the seeder prints nothing until it stops: wait for its port instead.
    common::retry(LIMIT, Duration::from_millis(100), || {
        TcpStream::connect(&listen).ok()
    })
    .expect("the seeder never listened");
    let out = dir.path().join("dl");
    let args = [
        "torrent",
        "get",
        s(&torrent),
        "-o",
        s(&out),
        "--peer",
        &listen,
        "--json",
    ];
    let got = common::run(&args, LIMIT);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(std::fs::read(out.join("image.bin")).unwrap(), data);
    let v = one_json_object(&stdout(&got));
    assert_eq!(v["outcome"], "complete", "{v}");
    assert_eq!(v["name"], "image.bin");
    assert_eq!(v["bytes"], 2 << 20);
    assert!(v["downloaded"].as_u64().unwrap() >= 2 << 20, "{v}");
    assert!(v["max_peers"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["seconds"].is_number() && v["rate"].is_number(), "{v}");
    assert_eq!(v["info_hash"].as_str().map(str::len), Some(40));

    let again = common::run(&args, LIMIT);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        one_json_object(&stdout(&again))["outcome"],
        "already complete"
    );

    let (code, rest) = seed.interrupt(LIMIT);
    assert_eq!(code, Some(0), "{rest}");
    let v = one_json_object(&rest);
    assert_eq!(v["outcome"], "stopped", "{v}");
    assert!(v["uploaded"].as_u64().unwrap() >= 2 << 20, "{v}");
}

/// Reads `c` until the peer closes it (`true`) or `limit` passes (`false`).
fn closed_within(c: &mut TcpStream, limit: Duration) -> bool {
    c.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_seeder_holds_one_ip_to_max_peers_per_ip_and_closes_silent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (src, data, torrent) = make(dir.path());
    let (seed, listen) = seeder(
        &torrent,
        &src,
        &["--max-peers-per-ip", "2", "--handshake-timeout", "2s"],
    );
    let mut a = TcpStream::connect(&listen).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut b = TcpStream::connect(&listen).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A third silent connection from the same IP: the oldest makes room.
    let mut c = TcpStream::connect(&listen).unwrap();
    assert!(
        closed_within(&mut a, Duration::from_secs(1)),
        "three silent connections from one IP were kept"
    );
    // A real leecher from that IP still gets in while two silent ones hold its slots.
    let out = dir.path().join("dl");
    let got = common::run(
        &[
            "torrent",
            "get",
            s(&torrent),
            "-o",
            s(&out),
            "--peer",
            &listen,
        ],
        LIMIT,
    );
    assert!(got.status.success(), "{got:?}");
    assert_eq!(std::fs::read(out.join("image.bin")).unwrap(), data);
    // Silent connections close at the handshake timeout.
    assert!(closed_within(&mut b, Duration::from_secs(20)));
    assert!(closed_within(&mut c, Duration::from_secs(20)));
    let (code, rest) = seed.interrupt(LIMIT);
    assert_eq!(code, Some(0), "{rest}");
    assert!(
        rest.contains("connections closed over limits"),
        "the summary does not count the limit closes:\n{rest}"
    );
}

#[test]
fn peer_limit_flags_are_range_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _data, torrent) = make(dir.path());
    for bad in [
        ["--max-peers-per-ip", "0"],
        ["--handshake-timeout", "0s"],
        ["--idle-timeout", "2h"],
    ] {
        let mut args = vec!["torrent", "seed", s(&torrent), s(&src)];
        args.extend_from_slice(&bad);
        let o = common::run(&args, LIMIT);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {o:?}");
    }
}

#[test]
fn seed_with_missing_data_says_no_such_file_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, _data, torrent) = make(dir.path());
    let missing = dir.path().join("nonexistent");
    let o = common::run(&["torrent", "seed", s(&torrent), s(&missing)], LIMIT);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no such file"), "{err}");
    assert!(!missing.exists(), "seeding created {}", missing.display());
    // A short file is refused and left as it is.
    let short = dir.path().join("short.bin");
    std::fs::write(&short, b"abc").unwrap();
    let o = common::run(&["torrent", "seed", s(&torrent), s(&short)], LIMIT);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(std::fs::read(&short).unwrap(), b"abc");
}

#[test]
fn ctrl_c_of_a_seeder_prints_a_summary_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _data, torrent) = make(dir.path());
    let before = std::fs::metadata(&src).unwrap().modified().unwrap();
    let (seed, _listen) = seeder(&torrent, &src, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let (code, rest) = seed.interrupt(LIMIT);
    assert_eq!(code, Some(0), "{rest}");
    assert!(
        rest.lines()
            .any(|l| l.contains("(seeding): stopped: ") && l.contains("peers")),
        "no summary after Ctrl-C:\n{rest}"
    );
    assert_eq!(std::fs::metadata(&src).unwrap().modified().unwrap(), before);
}

#[test]
fn show_of_a_trackerless_torrent_has_no_trackers_heading_and_json_is_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.bin");
    content(&src, 100_000);
    let torrent = dir.path().join("a.torrent");
    let o = common::run(
        &[
            "torrent",
            "create",
            s(&src),
            "--trackerless",
            "--bootstrap",
            "127.0.0.1:6890",
            "--torrent-file",
            s(&torrent),
        ],
        LIMIT,
    );
    assert!(o.status.success(), "{o:?}");
    let shown = stdout(&common::run(&["torrent", "show", s(&torrent)], LIMIT));
    assert!(!shown.contains("trackers:"), "{shown}");
    assert!(shown.contains("trackerless"), "{shown}");
    let j = common::run(&["torrent", "show", s(&torrent), "--json"], LIMIT);
    assert!(j.status.success());
    let text = stdout(&j);
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["name"], "a.bin");
    assert_eq!(v["size"], 100_000);
    assert_eq!(v["trackers"].as_array().map(|a| a.len()), Some(0));
    assert_eq!(v["nodes"][0], "127.0.0.1:6890");
    assert_eq!(v["info_hash"].as_str().map(|h| h.len()), Some(40));
}

#[test]
fn create_takes_bootstrap_nodes_from_a_file_and_keeps_the_old_flag_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.bin");
    content(&src, 50_000);
    let nodes = dir.path().join("nodes.txt");
    std::fs::write(
        &nodes,
        "# DHT routers\n127.0.0.1:6890\n\nrouter.example.org:6881\n",
    )
    .unwrap();
    let torrent = dir.path().join("a.torrent");
    let o = common::run(
        &[
            "torrent",
            "create",
            s(&src),
            "--trackerless",
            "--bootstrap",
            s(&nodes),
            "--dht-bootstrap",
            "127.0.0.2:7000",
            "--torrent-file",
            s(&torrent),
        ],
        LIMIT,
    );
    assert!(o.status.success(), "{o:?}");
    let j = common::run(&["torrent", "show", s(&torrent), "--json"], LIMIT);
    let v: serde_json::Value = serde_json::from_str(stdout(&j).trim()).unwrap();
    let got: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert_eq!(
        got,
        [
            "127.0.0.1:6890",
            "router.example.org:6881",
            "127.0.0.2:7000"
        ]
    );
    let bad = common::run(
        &[
            "torrent",
            "get",
            s(&torrent),
            "-o",
            s(&dir.path().join("dl")),
            "--bootstrap",
            "/no/such/bootstrap/file",
        ],
        LIMIT,
    );
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("/no/such/bootstrap/file"),
        "{bad:?}"
    );
}

#[test]
fn a_plaintext_leecher_says_why_peers_that_require_encryption_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _data, torrent) = make(dir.path());
    let (_seed, listen) = seeder(&torrent, &src, &["--encryption", "require"]);
    let out = dir.path().join("dl");
    let mut get = Proc::start(&[
        "torrent",
        "get",
        s(&torrent),
        "-o",
        s(&out),
        "--peer",
        &listen,
        "--encryption",
        "plaintext",
    ]);
    let l = get.wait_line(LIMIT, |l| l.contains("closed during the handshake"));
    assert!(l.contains("try --encryption prefer"), "{l}");
}

/// A peer that has every piece and answers each request with a block 200 000 bytes longer.
struct LyingPeer {
    addr: String,
    accepted: Arc<AtomicUsize>,
    /// Connections closed by the leecher right after our first oversized block.
    closed_after_first: Arc<AtomicUsize>,
}

fn lying_peer(pieces: usize) -> LyingPeer {
    let l = TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (a, c) = (accepted.clone(), closed.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { break };
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            std::thread::spawn(move || {
                if serve_lies(conn, pieces).unwrap_or(false) {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    LyingPeer {
        addr,
        accepted,
        closed_after_first: closed,
    }
}

/// Returns whether the other side closed after the first bad block.
fn serve_lies(mut c: TcpStream, pieces: usize) -> std::io::Result<bool> {
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut hs = [0u8; 68];
    c.read_exact(&mut hs)?;
    let mut reply = hs;
    reply[20..28].fill(0);
    reply[48..68].copy_from_slice(b"-XX0001-liarliarliar");
    c.write_all(&reply)?;
    let bits = pieces.div_ceil(8);
    let mut bf = ((1 + bits) as u32).to_be_bytes().to_vec();
    bf.push(5);
    let mut field = vec![0xFFu8; bits];
    if pieces % 8 != 0 {
        if let Some(last) = field.last_mut() {
            *last = 0xFF << (8 - pieces % 8);
        }
    }
    bf.extend_from_slice(&field);
    bf.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
    c.write_all(&bf)?;
    loop {
        let mut len = [0u8; 4];
        c.read_exact(&mut len)?;
        let n = u32::from_be_bytes(len) as usize;
        let mut msg = vec![0u8; n];
        c.read_exact(&mut msg)?;
        if msg.first() == Some(&6) && msg.len() == 13 {
            let want = u32::from_be_bytes(msg[9..13].try_into().unwrap()) as usize;
            let body = want + 200_000;
            let mut piece = ((9 + body) as u32).to_be_bytes().to_vec();
            piece.push(7);
            piece.extend_from_slice(&msg[1..9]);
            piece.resize(piece.len() + body, 0);
            c.write_all(&piece)?;
            // Only read from now on: the leecher must hang up.
            let mut sink = [0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                match c.read(&mut sink) {
                    Ok(0) => return Ok(true),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(true),
                    Err(_) => return Ok(false),
                }
            }
            return Ok(false);
        }
    }
}

#[test]
fn a_peer_sending_longer_blocks_than_requested_is_banned_after_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (src, data, torrent) = make(dir.path());
    let liar = lying_peer(32);
    // The honest seeder is slow, so the liar is surely asked for blocks too.
    let (_seed, listen) = seeder(&torrent, &src, &["--upload-limit", "400000"]);
    let out = dir.path().join("dl");
    let got = common::run(
        &[
            "torrent",
            "get",
            s(&torrent),
            "-o",
            s(&out),
            "--encryption",
            "plaintext",
            "--peer",
            &liar.addr,
            "--peer",
            &listen,
            "-v",
        ],
        LIMIT,
    );
    assert!(got.status.success(), "{got:?}");
    assert_eq!(std::fs::read(out.join("image.bin")).unwrap(), data);
    assert_eq!(
        liar.accepted.load(Ordering::SeqCst),
        1,
        "the liar was dialled again"
    );
    assert_eq!(liar.closed_after_first.load(Ordering::SeqCst), 1);
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(
        // Refused from the message head, before 200 000 bytes are buffered.
        err.contains("oversized message: message 7 of 216393 bytes is longer than its type allows"),
        "no typed reason at -v:\n{err}"
    );
}

fn announce(tracker: &str, port: u16) -> String {
    let mut c = TcpStream::connect(tracker).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let q = format!(
        "GET /announce?info_hash=%01%02%03%04%05%06%07%08%09%10%11%12%13%14%15%16%17%18%19%20\
         &peer_id=-SV0001-abcdefghijkl&port={port}&uploaded=0&downloaded=0&left=5&compact=1 \
         HTTP/1.1\r\nHost: {tracker}\r\n\r\n"
    );
    c.write_all(q.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_tracker_refuses_an_announce_flood_from_one_ip_and_checks_its_limits() {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut t = Proc::start(&[
        "torrent",
        "tracker",
        "--listen",
        &listen,
        "--announce-rate",
        "3",
    ]);
    t.wait_line(LIMIT, |l| l.starts_with("tracker: "));
    for i in 0..3 {
        let r = announce(&listen, 7000 + i);
        assert!(r.contains("8:intervali"), "announce {i} refused: {r}");
    }
    let r = announce(&listen, 7010);
    assert!(r.contains("announcing too often"), "{r}");
    let bad = common::run(&["torrent", "tracker", "--max-numwant", "500"], LIMIT);
    assert_eq!(bad.status.code(), Some(2));
}
