//! Gnutella 0.6 over real sockets on 127.0.0.1: ultrapeers and leaves with deflated links
//! and QRP find a leaf's file; the holder serves `GET /uri-res/N2R?urn:sha1:...` with the
//! same checks as `GET /get/`.

// A test, not a core: it may use the disk, sockets and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![cfg(feature = "runtime")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use servent_gnutella::library::sha1_urn;
use servent_gnutella::node::{Node, NodeOptions};
use servent_gnutella::servent::{PeerRole, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn node(role: Role, share: Option<&Path>, connect: &[SocketAddr], seed: u64) -> Node {
    let mut o = NodeOptions::new("127.0.0.1:0".parse().unwrap());
    o.share = share.map(Path::to_path_buf);
    o.connect = connect.to_vec();
    o.seed = Some(seed);
    o.role = role;
    Node::start(o).await.unwrap()
}

async fn raw_get(to: SocketAddr, req: &str) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn leaves_find_each_other_through_two_ultrapeers_and_download_by_urn() {
    let share = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(share.path().join("Pixies - Debaser.mp3"), &data).unwrap();
    let up1 = node(Role::Ultrapeer, None, &[], 1).await;
    let up2 = node(Role::Ultrapeer, None, &[up1.local], 2).await;
    let holder = node(Role::Leaf, Some(share.path()), &[up1.local], 3).await;
    let seeker = node(Role::Leaf, None, &[up2.local], 4).await;
    assert_eq!(up1.wait_peers(2, Duration::from_secs(5)).await.unwrap(), 2);
    assert_eq!(
        seeker.wait_peers(1, Duration::from_secs(5)).await.unwrap(),
        1
    );
    let (role, infos) = up1.peer_infos().await.unwrap();
    assert_eq!(role, Role::Ultrapeer);
    assert!(infos.iter().any(|p| p.role == PeerRole::Ultrapeer));
    assert!(
        infos
            .iter()
            .any(|p| p.role == PeerRole::Leaf && p.deflate_in && p.deflate_out)
    );

    // The holder's QRP table reaches up1 right after its handshake.
    let mut hits = Vec::new();
    for _ in 0..10 {
        hits = seeker
            .search("debaser", None, Duration::from_millis(500))
            .await
            .unwrap();
        if !hits.is_empty() {
            break;
        }
    }
    assert_eq!(hits.len(), 1, "{hits:?}");
    let sha1 = hits[0].sha1.expect("the hit carries urn:sha1");
    let out = tempfile::tempdir().unwrap();
    let path = seeker.download(&hits[0], out.path(), None).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);

    let got = raw_get(
        holder.local,
        &format!(
            "GET /uri-res/N2R?{} HTTP/1.1\r\nConnection: close\r\nRange: bytes=100-\r\n\r\n",
            sha1_urn(&sha1)
        ),
    )
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 206 Partial Content\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[..40.min(got.len())])
    );
    assert!(got.ends_with(&data[100..]));
    let missing = raw_get(
        holder.local,
        &format!("GET /uri-res/N2R?{} HTTP/1.1\r\n\r\n", sha1_urn(&[7; 20])),
    )
    .await;
    assert!(missing.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
    for n in [up1, up2, holder, seeker] {
        n.shutdown().await;
    }
}

/// `--compression off`: a servent that neither offers nor accepts deflate gets plain links
/// both ways, even to a peer that would compress (readable captures).
#[tokio::test]
async fn compression_off_gives_plain_links_both_ways() {
    let up = node(Role::Ultrapeer, None, &[], 11).await;
    let mut o = NodeOptions::new("127.0.0.1:0".parse().unwrap());
    o.connect = vec![up.local];
    o.seed = Some(12);
    o.role = Role::Leaf;
    o.deflate = false;
    let leaf = Node::start(o).await.unwrap();
    assert_eq!(leaf.wait_peers(1, Duration::from_secs(5)).await.unwrap(), 1);
    for n in [&up, &leaf] {
        let (_, infos) = n.peer_infos().await.unwrap();
        assert_eq!(infos.len(), 1);
        assert!(!infos[0].deflate_in && !infos[0].deflate_out, "{infos:?}");
    }
    up.shutdown().await;
    leaf.shutdown().await;
}

#[tokio::test]
async fn a_leaf_dials_again_a_given_ultrapeer_it_could_not_reach_while_it_has_another_link() {
    // up2's address is known to the leaf before up2 listens: the first dial fails.
    let up2_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up1 = node(Role::Ultrapeer, None, &[], 11).await;
    let leaf = node(Role::Leaf, None, &[up1.local, up2_addr], 12).await;
    assert_eq!(leaf.wait_peers(1, Duration::from_secs(5)).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut o = NodeOptions::new(up2_addr);
    o.role = Role::Ultrapeer;
    o.seed = Some(13);
    let up2 = Node::start(o).await.unwrap();
    // With one link up, the leaf still tries the other given ultrapeer again (with backoff),
    // instead of only when it has no link at all.
    assert_eq!(
        leaf.wait_peers(2, Duration::from_secs(15)).await.unwrap(),
        2,
        "the leaf never dialled the second ultrapeer again"
    );
    let peers = leaf.peers().await.unwrap();
    assert!(
        peers.contains(&up1.local) && peers.contains(&up2.local),
        "{peers:?}"
    );
}
