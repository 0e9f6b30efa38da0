//! Chord over real UDP sockets on 127.0.0.1 (needs the `runtime` feature): the lecture's
//! rings built by joins and checked through the client, and a 50-node ring that loses a
//! fifth of its nodes without losing a key.

// Tests are not cores: they may touch the clock, disk and sockets.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Duration;

use servent_chord::driver::{Client, Member, MemberOpts, start_member};
use servent_core::{Id, Ring};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn ring_of(ids: &[Option<u64>], bits: u32, r: usize) -> Vec<Member> {
    let ring = Ring::new(bits).unwrap();
    let mut members: Vec<Member> = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let mut o = MemberOpts::new(loopback());
        o.bits = bits;
        o.id = id.map(|v| ring.id(v));
        o.succ_list_len = r;
        o.stabilize_every = Duration::from_millis(50);
        o.fix_fingers_every = Duration::from_millis(10);
        o.seed = Some(1000 + k as u64);
        o.bootstrap = members.first().map(|m| m.me.addr).into_iter().collect();
        members.push(start_member(o).await.expect("member starts"));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    members
}

fn addr_of(members: &[Member], id: u64) -> SocketAddr {
    members
        .iter()
        .find(|m| m.me.id == Id::from_u64(id))
        .map(|m| m.me.addr)
        .unwrap()
}

/// Node 8's table as (entry, start, node).
async fn table(c: &mut Client, node: SocketAddr) -> Vec<(u32, u64, u64)> {
    match c.fingers(node).await {
        Ok(t) => t
            .rows
            .iter()
            .map(|(i, s, n)| (*i, s.low_u64(), n.map_or(99, |n| n.id.low_u64())))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn route(c: &mut Client, at: SocketAddr, key: u64) -> (Vec<u64>, u64) {
    match c.lookup(at, Id::from_u64(key)).await {
        Ok(r) => (
            r.route.iter().map(|i| i.low_u64()).collect(),
            r.responsible.id.low_u64(),
        ),
        Err(_) => (Vec::new(), 0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lecture_rings_over_real_sockets() {
    let a = ring_of(&[1, 4, 8, 11, 14, 17].map(Some), 5, 3).await;
    let n8 = addr_of(&a, 8);
    let mut c = Client::new(n8).await.unwrap();
    let want = vec![
        (1, 9, 11),
        (2, 10, 11),
        (3, 12, 14),
        (4, 16, 17),
        (5, 24, 1),
    ];
    // Bounded wait for stabilization: at most 150 polls of 100 ms.
    let mut got = Vec::new();
    for _ in 0..150 {
        got = table(&mut c, n8).await;
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        got, want,
        "node 8's finger table converges to the lecture's"
    );
    assert_eq!(route(&mut c, n8, 3).await, (vec![8, 1], 4));
    let ring: Vec<u64> = c
        .ring(n8, 100)
        .await
        .unwrap()
        .iter()
        .map(|n| n.id.low_u64())
        .collect();
    assert_eq!(ring, vec![8, 11, 14, 17, 1, 4]);
    c.close().await.unwrap();
    for m in a {
        m.kill().await.unwrap();
    }

    let b = ring_of(&[1, 4, 9, 11, 14, 18, 20, 21, 28].map(Some), 5, 3).await;
    let (n1, n28) = (addr_of(&b, 1), addr_of(&b, 28));
    let mut c = Client::new(n1).await.unwrap();
    let want = ((vec![1, 18, 20, 21], 28), (vec![28, 4, 9, 11], 14));
    let mut got = Default::default();
    for _ in 0..150 {
        got = (route(&mut c, n1, 26).await, route(&mut c, n28, 12).await);
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        got, want,
        "lookups of 26 at 1 and 12 at 28 follow the lecture's routes"
    );
    c.close().await.unwrap();
    for m in b {
        m.kill().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_found_after_killing_a_fifth_of_a_50_node_ring() {
    let mut members = ring_of(&[None; 50], 160, 6).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let entry = members[0].me.addr;
    let mut c = Client::new(entry).await.unwrap();
    for k in 0..100 {
        c.put(
            entry,
            format!("key-{k}").as_bytes(),
            format!("value-{k}").as_bytes(),
        )
        .await
        .unwrap();
    }
    // Crash 10 of the 50 (never the entry node), without any hand-over.
    let victims: Vec<Member> = (0..10).map(|k| members.remove(1 + k * 4)).collect();
    for v in victims {
        v.kill().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut missing = Vec::new();
    for k in 0..100 {
        match c.get(entry, format!("key-{k}").as_bytes()).await {
            Ok((Some(v), _)) => assert_eq!(v, format!("value-{k}").into_bytes()),
            other => missing.push((k, format!("{other:?}"))),
        }
    }
    assert!(missing.is_empty(), "keys not found: {missing:?}");
    c.close().await.unwrap();
    for m in members {
        m.kill().await.unwrap();
    }
}
