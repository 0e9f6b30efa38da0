//! The node over real UDP sockets on 127.0.0.1: bootstrap, announce, get_peers, and the
//! routing table saved on shutdown and loaded on the next start.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests are not cores
#![cfg(feature = "runtime")]

use std::time::Duration;

use servent_core::Id;
use servent_kademlia::client::{ClientOpts, DhtClient, SavedState};

fn opts(seed: u64) -> ClientOpts {
    let mut o = ClientOpts::new("127.0.0.1:0".parse().unwrap(), seed);
    o.timeout = Duration::from_secs(20);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_peer_is_found_over_udp_and_table_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = DhtClient::start(opts(1)).await.unwrap();
    let mut nodes = Vec::new();
    // 50 nodes share 127.0.0.1 and join through one: more than a per-IP burst allows
    for i in 0..50 {
        let mut o = opts(10 + i);
        if i == 0 {
            o.state = Some(dir.path().join("b.state"));
        }
        let mut n = DhtClient::start(o).await.unwrap();
        let got = n.bootstrap(vec![a.local]).await.unwrap();
        assert!(got >= 1, "node {i} bootstrapped with an empty table");
        nodes.push(n);
    }
    let hash = Id([0x5a; 20]);
    let (stored_at, _) = nodes[3].announce(hash, 7777, false).await.unwrap();
    assert!(stored_at >= 3, "stored at {stored_at}");
    let found = nodes[45].get_peers(hash).await.unwrap();
    let want: std::net::SocketAddrV4 = "127.0.0.1:7777".parse().unwrap();
    assert!(found.peers.contains(&want), "{found:?}");

    // the first node saves its table and comes back with the same id and nodes
    let b = nodes.remove(0);
    let b_id = b.id;
    let (saved, _) = b.shutdown().await.unwrap();
    assert!(!saved.nodes.is_empty());
    let loaded = SavedState::load(&dir.path().join("b.state"))
        .unwrap()
        .unwrap();
    assert_eq!(loaded, saved);
    let mut o = opts(99);
    o.state = Some(dir.path().join("b.state"));
    let mut b2 = DhtClient::start(o).await.unwrap();
    assert_eq!(b2.id, b_id);
    // no bootstrap address given: the saved nodes are enough
    assert!(b2.bootstrap(Vec::new()).await.unwrap() >= 1);
    b2.shutdown().await.unwrap();
    for n in nodes {
        n.shutdown().await.unwrap();
    }
    a.shutdown().await.unwrap();
}
