//! Real sockets on 127.0.0.1: several nodes search and download, directly and through
//! Push; a partial download resumes; path traversal over the wire is refused.

// A test, not a core: it may use the disk, sockets and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(feature = "runtime")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use servent_gnutella::node::{Node, NodeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

async fn node(share: Option<&Path>, connect: &[SocketAddr], firewalled: bool, seed: u64) -> Node {
    let mut o = NodeOptions::new("127.0.0.1:0".parse().unwrap());
    o.share = share.map(Path::to_path_buf);
    o.connect = connect.to_vec();
    o.firewalled = firewalled;
    o.seed = Some(seed);
    o.want_conns = 0;
    Node::start(o).await.unwrap()
}

#[tokio::test]
async fn three_nodes_search_and_download_directly() {
    let share = tempfile::tempdir().unwrap();
    let data = content(300_000);
    std::fs::write(share.path().join("Pixies - Debaser.mp3"), &data).unwrap();
    std::fs::write(share.path().join("other.txt"), b"x").unwrap();
    let a = node(Some(share.path()), &[], false, 1).await;
    let b = node(None, &[a.local], false, 2).await;
    let c = node(None, &[b.local], false, 3).await;
    assert_eq!(c.wait_peers(1, Duration::from_secs(5)).await.unwrap(), 1);
    assert_eq!(b.wait_peers(2, Duration::from_secs(5)).await.unwrap(), 2);
    let hits = c
        .search("debaser", None, Duration::from_millis(800))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].name, "Pixies - Debaser.mp3");
    assert_eq!(hits[0].hops, 2);
    assert!(!hits[0].push);
    let out = tempfile::tempdir().unwrap();
    let path = c.download(&hits[0], out.path(), None).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let stats = b.stats().await.unwrap();
    assert!(stats.tx_total() >= 2);
    for n in [a, b, c] {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn firewalled_holder_serves_through_push() {
    let share = tempfile::tempdir().unwrap();
    let data = content(100_000);
    std::fs::write(share.path().join("behind.ogg"), &data).unwrap();
    let hub = node(None, &[], false, 10).await;
    let holder = node(Some(share.path()), &[hub.local], true, 11).await;
    let seeker = node(None, &[hub.local], false, 12).await;
    assert_eq!(hub.wait_peers(2, Duration::from_secs(5)).await.unwrap(), 2);
    let hits = seeker
        .search("behind", None, Duration::from_millis(800))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].push, "firewalled holder sets the push flag");
    // The holder refuses inbound connections.
    let refused = tokio::net::TcpStream::connect(holder.local).await;
    if let Ok(mut s) = refused {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap_or(0), 0);
    }
    let out = tempfile::tempdir().unwrap();
    let path = seeker.download(&hits[0], out.path(), None).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    for n in [hub, holder, seeker] {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn partial_download_resumes_and_size_is_verified() {
    let share = tempfile::tempdir().unwrap();
    let data = content(200_000);
    std::fs::write(share.path().join("big.bin"), &data).unwrap();
    let a = node(Some(share.path()), &[], false, 20).await;
    let b = node(None, &[a.local], false, 21).await;
    b.wait_peers(1, Duration::from_secs(5)).await.unwrap();
    let hits = b
        .search("big", None, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("big.bin.part"), &data[..77_777]).unwrap();
    let path = b.download(&hits[0], out.path(), None).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(!out.path().join("big.bin.part").exists());
    a.shutdown().await;
    b.shutdown().await;
}

async fn raw_get(to: SocketAddr, req: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn traversal_and_mismatched_names_get_404_over_the_wire() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("a.txt"), b"hello").unwrap();
    let a = node(Some(share.path()), &[], false, 30).await;
    for req in [
        "GET /get/0/../../etc/passwd/ HTTP/1.0\r\n\r\n",
        "GET /get/0/..%2F..%2Fetc%2Fpasswd/ HTTP/1.0\r\n\r\n",
        "GET /get/0/b.txt/ HTTP/1.0\r\n\r\n",
        "GET /get/9/a.txt/ HTTP/1.0\r\n\r\n",
    ] {
        let r = raw_get(a.local, req).await;
        assert!(
            r.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{req:?} -> {r:?}"
        );
    }
    let ok = raw_get(
        a.local,
        "GET /get/0/a.txt/ HTTP/1.0\r\nRange: bytes=1-\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{ok:?}");
    assert!(ok.ends_with("\r\n\r\nello"), "{ok:?}");
    a.shutdown().await;
}

#[tokio::test]
async fn control_api_searches_and_downloads_by_hit_id() {
    use servent_gnutella::control;
    use std::sync::Arc;
    let share = tempfile::tempdir().unwrap();
    let data = content(50_000);
    std::fs::write(share.path().join("Debaser.mp3"), &data).unwrap();
    let a = node(Some(share.path()), &[], false, 40).await;
    let b = Arc::new(node(None, &[a.local], false, 41).await);
    b.wait_peers(1, Duration::from_secs(5)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ctl = listener.local_addr().unwrap();
    let server = tokio::spawn(control::serve(b.clone(), listener));
    let mut peers = Vec::new();
    control::request(ctl, "/peers", |v| peers.push(v))
        .await
        .unwrap();
    assert_eq!(peers[0]["peers"][0], a.local.to_string());
    let mut found = Vec::new();
    control::request(ctl, "/search?q=debaser&wait=500", |v| found.push(v))
        .await
        .unwrap();
    let hit = &found[0]["hits"][0];
    assert_eq!(hit["name"], "Debaser.mp3");
    let out = tempfile::tempdir().unwrap();
    let path = format!(
        "/get?hit={}&out={}",
        hit["id"],
        control::encode_param(&out.path().display().to_string())
    );
    let mut lines = Vec::new();
    control::request(ctl, &path, |v| lines.push(v))
        .await
        .unwrap();
    let last = lines.last().unwrap();
    assert!(last.get("path").is_some(), "{lines:?}");
    assert_eq!(std::fs::read(out.path().join("Debaser.mp3")).unwrap(), data);
    let mut stats = Vec::new();
    control::request(ctl, "/stats", |v| stats.push(v))
        .await
        .unwrap();
    assert!(stats[0]["tx"]["query"].as_u64().unwrap() >= 1);
    server.abort();
    a.shutdown().await;
}

#[tokio::test]
async fn servent_rejoins_a_bootstrap_peer_that_started_later() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let later = probe.local_addr().unwrap();
    drop(probe);
    let b = node(None, &[later], false, 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.peers().await.unwrap().is_empty());
    let mut o = NodeOptions::new(later);
    o.seed = Some(51);
    o.want_conns = 0;
    let a = Node::start(o).await.unwrap();
    assert_eq!(b.wait_peers(1, Duration::from_secs(8)).await.unwrap(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// curl (what a user tries first) downloads a whole file and a range from our servent; it
/// refuses the 0.4 versionless status line, so this guards the HTTP/1.1 status line.
#[tokio::test]
async fn curl_downloads_from_our_servent() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl is not installed; the raw-socket tests check the status line");
        return;
    }
    let share = tempfile::tempdir().unwrap();
    let data = content(70_000);
    std::fs::write(share.path().join("a b.bin"), &data).unwrap();
    let a = node(Some(share.path()), &[], false, 31).await;
    let base = format!("http://{}", a.local);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-sS", "--fail", "--max-time", "10"])
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let out = run(vec![format!("{base}/get/0/a%20b.bin")]).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
    let out = run(vec![
        "-r".into(),
        "100-".into(),
        "-D".into(),
        "-".into(),
        format!("{base}/get/0/a%20b.bin"),
    ])
    .await
    .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.starts_with(b"HTTP/1.1 206 Partial Content\r\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout[..60.min(out.stdout.len())])
    );
    assert!(out.stdout.ends_with(&data[100..]));
    a.shutdown().await;
}

/// The quickstart: one servent dials another and both keep asking for more connections.
/// The first learns the second's listen address from its Pong; it must not dial it back
/// (that made two links and every query crossed the pair twice).
#[tokio::test]
async fn quickstart_servents_end_with_one_link() {
    let mut o = NodeOptions::new("127.0.0.1:0".parse().unwrap());
    o.seed = Some(40);
    let a = Node::start(o).await.unwrap();
    let mut o = NodeOptions::new("127.0.0.1:0".parse().unwrap());
    o.connect = vec![a.local];
    o.seed = Some(41);
    let b = Node::start(o).await.unwrap();
    assert_eq!(b.wait_peers(1, Duration::from_secs(5)).await.unwrap(), 1);
    // Past the first refill round of both servents (the core ticks every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(a.peers().await.unwrap().len(), 1);
    assert_eq!(b.peers().await.unwrap().len(), 1);
    a.shutdown().await;
    b.shutdown().await;
}
