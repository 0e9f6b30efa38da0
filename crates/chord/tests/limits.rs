//! The limits a member enforces on its peers: per-IP request rate, datagram size, garbage,
//! bounded tables under a flood from many (forged) sources.

// Tests are not cores: they may touch the clock, disk and sockets.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use servent_chord::{Body, ChordNode, Config, Message, NodeRef};
use servent_core::{Core, Input, Instant, Ring, Rng, Transmit};

fn member(tune: impl FnOnce(&mut Config)) -> ChordNode {
    let ring = Ring::new(16).unwrap();
    let at = |p: u16| SocketAddr::from(([10, 0, 0, 1], p));
    let members: Vec<NodeRef> = (0..8u16)
        .map(|i| NodeRef {
            id: ring.id(u64::from(i) * 8000 + 1),
            addr: at(4000 + i),
        })
        .collect();
    let mut cfg = Config::new(ring, members[0].id, members[0].addr);
    tune(&mut cfg);
    ChordNode::with_ideal_state(cfg, Rng::new(3), Instant::ZERO, &members)
}

fn ping(txid: u64) -> Vec<u8> {
    Message {
        bits: 16,
        txid,
        body: Body::Ping,
    }
    .encode()
}

/// Feeds `data` from `from` at `now`; returns the datagrams sent back to `from`.
fn feed(n: &mut ChordNode, now: Instant, from: SocketAddr, data: &[u8]) -> usize {
    n.handle_input(now, Input::Datagram { from, data });
    let mut back = 0;
    while let Some(t) = n.poll_transmit() {
        if matches!(t, Transmit::Datagram { to, .. } if to == from) {
            back += 1;
        }
    }
    back
}

#[test]
fn one_source_ip_is_held_to_its_burst_then_its_rate() {
    let mut n = member(|c| {
        c.rate_per_ip = 100.0;
        c.burst_per_ip = 200.0;
    });
    let src = SocketAddr::from(([192, 0, 2, 7], 5555));
    // 1000 requests at one instant (from several ports of the same IP): the burst passes.
    let answered: usize = (0..1000u64)
        .map(|i| {
            let from = SocketAddr::new(src.ip(), 5000 + (i % 50) as u16);
            feed(&mut n, Instant::ZERO, from, &ping(i))
        })
        .sum();
    assert_eq!(answered, 200);
    assert_eq!(n.stats().rate_limited, 800);
    // Half a second later, 50 more tokens.
    let t = Instant::ZERO + Duration::from_millis(500);
    let later: usize = (0..100u64)
        .map(|i| feed(&mut n, t, src, &ping(2000 + i)))
        .sum();
    assert_eq!(later, 50);
    // Another IP is not affected.
    let other = SocketAddr::from(([192, 0, 2, 8], 5555));
    assert_eq!(feed(&mut n, t, other, &ping(9)), 1);
}

#[test]
fn loopback_sources_are_exempt_unless_asked() {
    let lo = SocketAddr::from(([127, 0, 0, 1], 7000));
    let mut free = member(|c| c.burst_per_ip = 5.0);
    let sum: usize = (0..50)
        .map(|i| feed(&mut free, Instant::ZERO, lo, &ping(i)))
        .sum();
    assert_eq!(sum, 50);
    let mut strict = member(|c| {
        c.burst_per_ip = 5.0;
        c.limit_loopback = true;
    });
    let sum: usize = (0..50)
        .map(|i| feed(&mut strict, Instant::ZERO, lo, &ping(i)))
        .sum();
    assert_eq!(sum, 5);
}

#[test]
fn oversized_and_malformed_datagrams_are_dropped_unanswered_and_counted() {
    let mut n = member(|c| c.max_datagram = 512);
    let src = SocketAddr::from(([192, 0, 2, 9], 1));
    assert_eq!(feed(&mut n, Instant::ZERO, src, &vec![0x43; 513]), 0);
    assert_eq!(
        feed(&mut n, Instant::ZERO, src, b"garbage that is not chord"),
        0
    );
    assert_eq!(feed(&mut n, Instant::ZERO, src, &ping(1)[..9]), 0);
    let s = n.stats();
    assert_eq!((s.oversized, s.malformed), (1, 2));
    // A valid request from the same source is still served.
    assert_eq!(feed(&mut n, Instant::ZERO, src, &ping(2)), 1);
}

#[test]
fn a_flood_from_many_forged_sources_keeps_the_tables_bounded() {
    let mut n = member(|c| c.max_tracked_ips = 1000);
    let get = Message {
        bits: 16,
        txid: 1,
        body: Body::GetFingers,
    }
    .encode();
    for i in 0..20_000u32 {
        let ip = Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i));
        let from = SocketAddr::new(IpAddr::V6(ip), 6881);
        // A large answer to an unproven source: held behind a challenge, never sent.
        n.handle_input(Instant::ZERO, Input::Datagram { from, data: &get });
        while n.poll_transmit().is_some() {}
    }
    assert!(n.tracked_ips() <= 1000, "{}", n.tracked_ips());
    assert!(n.in_flight() <= servent_chord::node::MAX_PENDING);
    assert_eq!(n.stats().requests_in, 20_000);
}
