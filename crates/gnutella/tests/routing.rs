//! The routing rules of Gnutella 0.4, each on real cores: TTL/hops, duplicate drop,
//! reverse-path routing of Pong and QueryHit, Push routing, dropping of unroutable replies,
//! handshakes and the payload limit.

// A test, not a core: it may use the disk, sockets and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use servent_core::{ConnId, Core, Input, Instant, Rng, Transmit};
use servent_gnutella::harness::{Net, addr_of};
use servent_gnutella::wire::{
    Body, CONNECT_04, HEADER_LEN, Header, HitRecord, OK_04, Pong, Push, Query, QueryHit,
};
use servent_gnutella::{
    Command, Config, DownReason, Event, Guid, HandoffKind, Kind, Message, Servent, SharedFile,
};

fn share(net: &mut Net, n: usize, name: &str) {
    net.command(
        n,
        Command::Share {
            id: 0,
            files: vec![SharedFile {
                index: 3,
                name: name.into(),
                size: 1234,
                sha1: None,
            }],
        },
    );
}

fn line(n: usize, seed: u64, tweak: impl FnMut(usize, &mut Config)) -> Net {
    let mut net = Net::new(n, seed, tweak);
    for i in 0..n - 1 {
        net.link(i, i + 1);
    }
    net.run_for(Duration::from_secs(1));
    net
}

fn search(net: &mut Net, n: usize, id: u64, q: &str, ttl: u8) {
    net.command(
        n,
        Command::Search {
            id,
            query: q.into(),
            ttl: Some(ttl),
        },
    );
    net.run_for(Duration::from_secs(2));
}

fn hits(net: &Net, node: usize) -> Vec<servent_gnutella::Hit> {
    net.events
        .iter()
        .filter(|(_, n, _)| *n == node)
        .filter_map(|(_, _, e)| match e {
            Event::Hit { hit, .. } => Some(hit.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn query_travels_exactly_ttl_hops() {
    let mut net = line(5, 1, |_, _| {});
    search(&mut net, 0, 9, "anything", 3);
    let seen: Vec<u64> = net.nodes().map(|n| n.stats().queries_seen).collect();
    assert_eq!(seen, vec![0, 1, 1, 1, 0]);
    // Node 3 received it with TTL 1 and did not forward it.
    assert!(net.node(3).stats().ttl_expired >= 1);
}

#[test]
fn queryhit_returns_on_the_reverse_path_with_hop_count() {
    let mut net = line(4, 2, |_, _| {});
    share(&mut net, 3, "Pixies - Debaser.mp3");
    search(&mut net, 0, 42, "debaser", 7);
    let got: Vec<_> = net
        .events
        .iter()
        .filter_map(|(_, n, e)| match e {
            Event::Hit { search, hit } => Some((*n, *search, hit.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1);
    let (node, search_id, hit) = &got[0];
    assert_eq!((*node, *search_id), (0, 42));
    assert_eq!(hit.name, "Pixies - Debaser.mp3");
    assert_eq!(hit.index, 3);
    assert_eq!(hit.size, 1234);
    assert_eq!(hit.hops, 3);
    assert_eq!(hit.addr, addr_of(3));
    assert_eq!(hit.vendor, Some(*b"SRVT"));
    assert!(!hit.push);
    // Each intermediate forwarded the QueryHit once; no one else sent one.
    let qh: Vec<u64> = net
        .nodes()
        .map(|n| n.stats().tx[Kind::QueryHit.index()])
        .collect();
    assert_eq!(qh, vec![0, 1, 1, 1]);
}

#[test]
fn no_queryhit_when_nothing_matches() {
    let mut net = line(3, 3, |_, _| {});
    share(&mut net, 2, "notes.txt");
    search(&mut net, 0, 1, "debaser", 7);
    assert!(hits(&net, 0).is_empty());
    assert_eq!(net.node(2).stats().tx[Kind::QueryHit.index()], 0);
}

#[test]
fn duplicates_are_dropped_in_a_cycle() {
    // A ring of 4: the query reaches node 2 both ways.
    let mut net = Net::new(4, 4, |_, _| {});
    for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        net.link(a, b);
    }
    net.run_for(Duration::from_secs(1));
    share(&mut net, 2, "ring.txt");
    search(&mut net, 0, 5, "ring", 7);
    for (i, n) in net.nodes().enumerate() {
        let expect = u64::from(i != 0);
        assert_eq!(n.stats().queries_seen, expect, "node {i}");
        // Node 2 answers once although the query arrives twice.
        if i == 2 {
            assert_eq!(n.stats().queries_answered, 1);
        }
    }
    let dups: u64 = net.nodes().map(|n| n.stats().duplicates).sum();
    assert!(dups >= 2, "dups {dups}");
    assert_eq!(hits(&net, 0).len(), 1);
}

#[test]
fn pong_routes_back_and_fills_the_host_cache() {
    let mut net = line(4, 5, |_, _| {});
    net.command(0, Command::Ping { id: 7, ttl: 7 });
    net.run_for(Duration::from_secs(2));
    let cache: Vec<_> = net.node(0).host_cache().copied().collect();
    for i in 1..4 {
        assert!(cache.contains(&addr_of(i)), "missing {i} in {cache:?}");
    }
    assert!(!cache.contains(&addr_of(0)));
    assert_eq!(net.node(1).stats().tx[Kind::Pong.index()], 3);
}

#[test]
fn push_follows_the_queryhit_path_and_the_holder_gives() {
    // Node 2 is firewalled: it connected out to 1 but refuses inbound connections.
    let mut net = Net::new(3, 6, |i, c| c.firewalled = i == 2);
    net.link(0, 1);
    net.link(2, 1);
    net.run_for(Duration::from_secs(1));
    share(&mut net, 2, "behind-the-wall.ogg");
    search(&mut net, 0, 1, "wall", 7);
    let h = hits(&net, 0);
    assert_eq!(h.len(), 1);
    assert!(h[0].push, "firewalled holder sets the push flag");
    net.command(
        0,
        Command::Push {
            id: 77,
            servent_id: h[0].servent_id,
            index: h[0].index,
        },
    );
    net.run_for(Duration::from_secs(1));
    let ev = net.take_events();
    assert!(ev.iter().any(|(_, n, e)| *n == 0
        && *e
            == Event::PushSent {
                id: 77,
                routed: true
            }));
    assert!(ev.iter().any(|(_, n, e)| *n == 2
        && matches!(e, Event::PushRequested { index: 3, to } if *to == addr_of(0))));
    let giv = ev
        .iter()
        .find_map(|(_, n, e)| match e {
            Event::Handoff {
                kind: HandoffKind::Giv { giv, .. },
                ..
            } if *n == 0 => Some(giv.clone()),
            _ => None,
        })
        .expect("GIV reached the downloader");
    assert_eq!(giv.index, 3);
    assert_eq!(giv.servent_id, h[0].servent_id);
    assert_eq!(giv.name, "behind-the-wall.ogg");
    assert!(ev.iter().any(|(_, n, e)| *n == 2
        && matches!(
            e,
            Event::Handoff {
                kind: HandoffKind::Pushed { index: 3 },
                ..
            }
        )));
    // Node 1 forwarded the Push; nobody else sent one.
    assert_eq!(net.node(1).stats().tx[Kind::Push.index()], 1);
}

#[test]
fn push_without_a_route_is_not_sent() {
    let mut net = line(2, 7, |_, _| {});
    net.command(
        0,
        Command::Push {
            id: 5,
            servent_id: Guid([9; 16]),
            index: 0,
        },
    );
    assert!(net.events.iter().any(|(_, _, e)| *e
        == Event::PushSent {
            id: 5,
            routed: false
        }));
    assert_eq!(net.node(0).stats().tx[Kind::Push.index()], 0);
}

/// A core with one established inbound overlay connection, for byte-level tests.
fn established(conns: u64) -> (Servent, Vec<ConnId>) {
    let cfg = Config::new(Guid([0xee; 16]), addr_of(100));
    let mut s = Servent::new(cfg, Rng::new(1));
    let mut ids = Vec::new();
    for i in 0..conns {
        let conn = ConnId::inbound(i);
        s.handle_input(
            Instant::ZERO,
            Input::Connected {
                conn,
                peer: SocketAddr::V4(addr_of(i as usize)),
            },
        );
        s.handle_input(
            Instant::ZERO,
            Input::Received {
                conn,
                data: CONNECT_04,
            },
        );
        ids.push(conn);
    }
    drain(&mut s);
    (s, ids)
}

fn drain(s: &mut Servent) -> (Vec<Transmit>, Vec<Event>) {
    let mut t = Vec::new();
    while let Some(x) = s.poll_transmit() {
        t.push(x);
    }
    let mut e = Vec::new();
    while let Some(x) = s.poll_event() {
        e.push(x);
    }
    (t, e)
}

fn feed(s: &mut Servent, conn: ConnId, bytes: &[u8]) -> (Vec<Transmit>, Vec<Event>) {
    s.handle_input(Instant::from_secs(1), Input::Received { conn, data: bytes });
    drain(s)
}

fn sent_headers(t: &[Transmit]) -> Vec<(ConnId, Header)> {
    t.iter()
        .filter_map(|t| match t {
            Transmit::Send { conn, data } => Header::decode(data).ok().map(|h| (*conn, h)),
            _ => None,
        })
        .collect()
}

fn query(id: u8, ttl: u8, hops: u8, q: &str) -> Vec<u8> {
    Message {
        id: Guid([id; 16]),
        ttl,
        hops,
        body: Body::Query(Query {
            min_speed: [0, 0],
            criteria: q.as_bytes().to_vec(),
            extensions: vec![],
        }),
    }
    .encode()
}

#[test]
fn forwarding_decrements_ttl_and_increments_hops_on_every_other_connection() {
    let (mut s, c) = established(3);
    let (t, _) = feed(&mut s, c[0], &query(1, 3, 1, "x"));
    let h = sent_headers(&t);
    assert_eq!(h.len(), 2);
    for (conn, hd) in &h {
        assert_ne!(*conn, c[0]);
        assert_eq!((hd.ttl, hd.hops, hd.kind), (2, 2, Kind::Query));
    }
    // The payload is forwarded unchanged.
    let Transmit::Send { data, .. } = &t[0] else {
        panic!()
    };
    assert_eq!(&data[HEADER_LEN..], &query(1, 3, 1, "x")[HEADER_LEN..]);
}

#[test]
fn ttl_one_is_not_forwarded_and_ttl_zero_is_dropped() {
    let (mut s, c) = established(2);
    let (t, _) = feed(&mut s, c[0], &query(1, 1, 0, "x"));
    assert!(sent_headers(&t).is_empty());
    assert_eq!(s.stats().queries_seen, 1);
    let (t, _) = feed(&mut s, c[0], &query(2, 0, 0, "x"));
    assert!(sent_headers(&t).is_empty());
    assert_eq!(s.stats().queries_seen, 1);
    assert_eq!(s.stats().ttl_expired, 2);
}

#[test]
fn excessive_ttl_is_lowered_to_the_maximum() {
    let (mut s, c) = established(2);
    let (t, _) = feed(&mut s, c[0], &query(1, 200, 0, "x"));
    let h = sent_headers(&t);
    assert_eq!(h[0].1.ttl, 6);
}

#[test]
fn duplicate_descriptor_id_is_dropped() {
    let (mut s, c) = established(3);
    feed(&mut s, c[0], &query(1, 5, 0, "x"));
    let (t, _) = feed(&mut s, c[1], &query(1, 5, 0, "x"));
    assert!(sent_headers(&t).is_empty());
    assert_eq!(s.stats().duplicates, 1);
    // After the route memory expires the same id is new again.
    s.handle_timeout(Instant::from_secs(400));
    s.handle_input(
        Instant::from_secs(400),
        Input::Received {
            conn: c[1],
            data: &query(1, 5, 0, "x"),
        },
    );
    let (t, _) = drain(&mut s);
    assert_eq!(sent_headers(&t).len(), 2);
}

#[test]
fn replies_without_a_route_are_dropped() {
    let (mut s, c) = established(2);
    let hit = Message {
        id: Guid([5; 16]),
        ttl: 5,
        hops: 0,
        body: Body::QueryHit(QueryHit {
            port: 1,
            ip: "1.2.3.4".parse().unwrap(),
            speed: 0,
            results: vec![HitRecord {
                index: 0,
                size: 1,
                name: b"a".to_vec(),
                extension: vec![],
            }],
            trailer: None,
            servent_id: Guid([6; 16]),
        }),
    }
    .encode();
    let pong = Message {
        id: Guid([7; 16]),
        ttl: 5,
        hops: 0,
        body: Body::Pong(Pong {
            port: 1,
            ip: "1.2.3.4".parse().unwrap(),
            files: 0,
            kbytes: 0,
        }),
    }
    .encode();
    let push = Message {
        id: Guid([8; 16]),
        ttl: 5,
        hops: 0,
        body: Body::Push(Push {
            servent_id: Guid([9; 16]),
            index: 0,
            ip: "1.2.3.4".parse().unwrap(),
            port: 1,
        }),
    }
    .encode();
    for m in [&hit, &pong, &push] {
        let (t, _) = feed(&mut s, c[0], m);
        assert!(t.is_empty(), "{t:?}");
    }
    assert_eq!(s.stats().unroutable, 3);
}

#[test]
fn queryhit_goes_only_to_the_query_connection() {
    let (mut s, c) = established(3);
    feed(&mut s, c[0], &query(1, 5, 0, "x"));
    let hit = Message {
        id: Guid([1; 16]),
        ttl: 5,
        hops: 0,
        body: Body::QueryHit(QueryHit {
            port: 1,
            ip: "1.2.3.4".parse().unwrap(),
            speed: 0,
            results: vec![],
            trailer: None,
            servent_id: Guid([6; 16]),
        }),
    }
    .encode();
    let (t, _) = feed(&mut s, c[2], &hit);
    let h = sent_headers(&t);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].0, c[0]);
    assert_eq!((h[0].1.ttl, h[0].1.hops), (4, 1));
    // A Push for that servent now goes to c[2], where its QueryHit came from.
    let push = Message {
        id: Guid([2; 16]),
        ttl: 5,
        hops: 0,
        body: Body::Push(Push {
            servent_id: Guid([6; 16]),
            index: 0,
            ip: "1.2.3.4".parse().unwrap(),
            port: 1,
        }),
    }
    .encode();
    let (t, _) = feed(&mut s, c[0], &push);
    let h = sent_headers(&t);
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].0, h[0].1.kind), (c[2], Kind::Push));
}

#[test]
fn payload_over_the_limit_closes_with_a_reason() {
    let (mut s, c) = established(1);
    let mut h = Header {
        id: Guid([1; 16]),
        kind: Kind::Query,
        ttl: 1,
        hops: 0,
        len: 64 * 1024 + 1,
    }
    .to_bytes()
    .to_vec();
    h.push(0);
    let (t, e) = feed(&mut s, c[0], &h);
    assert_eq!(t, vec![Transmit::Close { conn: c[0] }]);
    let Some(Event::PeerDown {
        reason: DownReason::Protocol(why),
        ..
    }) = e.first()
    else {
        panic!("{e:?}")
    };
    assert_eq!(why, "payload length 65537 over the limit of 65536");
}

#[test]
fn malformed_payload_closes_the_connection() {
    let (mut s, c) = established(1);
    let bad = Header {
        id: Guid([1; 16]),
        kind: Kind::Pong,
        ttl: 1,
        hops: 0,
        len: 3,
    }
    .to_bytes()
    .iter()
    .chain(&[1, 2, 3])
    .copied()
    .collect::<Vec<_>>();
    let (t, e) = feed(&mut s, c[0], &bad);
    assert_eq!(t, vec![Transmit::Close { conn: c[0] }]);
    assert!(matches!(
        e.first(),
        Some(Event::PeerDown {
            reason: DownReason::Protocol(_),
            ..
        })
    ));
}

#[test]
fn handshake_accepts_0_4_and_sniffs_transfers() {
    let cfg = Config::new(Guid([1; 16]), addr_of(0));
    let mut s = Servent::new(cfg, Rng::new(1));
    let peer = SocketAddr::V4(addr_of(5));
    let (a, b, g, x) = (
        ConnId::inbound(1),
        ConnId::inbound(2),
        ConnId::inbound(3),
        ConnId::inbound(4),
    );
    for c in [a, b, g, x] {
        s.handle_input(Instant::ZERO, Input::Connected { conn: c, peer });
    }
    // Split across reads.
    let (t, _) = feed(&mut s, a, &CONNECT_04[..7]);
    assert!(t.is_empty());
    let (t, e) = feed(&mut s, a, &CONNECT_04[7..]);
    assert_eq!(
        t.first(),
        Some(&Transmit::Send {
            conn: a,
            data: OK_04.to_vec()
        })
    );
    assert!(matches!(e[0], Event::PeerUp { conn, .. } if conn == a));
    let (_, e) = feed(&mut s, b, b"GET /get/1/x/ HTTP/1.0\r\n");
    assert!(
        matches!(&e[0], Event::Handoff { conn, kind: HandoffKind::Http { head }, .. }
        if *conn == b && head.starts_with(b"GET /get/1/"))
    );
    let (_, e) = feed(
        &mut s,
        g,
        b"GIV 1:0101010101010101010101010101010A/f\n\nGET",
    );
    assert!(
        matches!(&e[0], Event::Handoff { kind: HandoffKind::Giv { giv, rest }, .. }
        if giv.index == 1 && rest == b"GET")
    );
    let (t, _) = feed(&mut s, x, b"HELLO\n\n");
    assert_eq!(t, vec![Transmit::Close { conn: x }]);
    assert_eq!(s.peers().len(), 1);
}

#[test]
fn outbound_handshake_refused_reports_connect_failed() {
    let cfg = Config::new(Guid([1; 16]), addr_of(0));
    let mut s = Servent::new(cfg, Rng::new(1));
    let to = SocketAddr::V4(addr_of(1));
    s.handle_input(
        Instant::ZERO,
        Input::Command(Command::Connect { id: 3, addr: to }),
    );
    let (t, _) = drain(&mut s);
    let Some(Transmit::Connect { conn, .. }) = t.first().cloned() else {
        panic!()
    };
    s.handle_input(Instant::ZERO, Input::Connected { conn, peer: to });
    let (t, _) = drain(&mut s);
    assert_eq!(
        t,
        vec![Transmit::Send {
            conn,
            data: CONNECT_04.to_vec()
        }]
    );
    let (t, e) = feed(&mut s, conn, b"GNUTELLA/0.6 503 Busy\r\n\r\n");
    assert_eq!(t, vec![Transmit::Close { conn }]);
    assert_eq!(
        e,
        vec![Event::ConnectFailed {
            cmd: Some(3),
            addr: to
        }]
    );
}

#[test]
fn connection_limit_refuses_extra_inbound_peers() {
    let (mut s, _) = established(5);
    let conn = ConnId::inbound(99);
    s.handle_input(
        Instant::ZERO,
        Input::Connected {
            conn,
            peer: SocketAddr::V4(addr_of(99)),
        },
    );
    let (t, e) = feed(&mut s, conn, CONNECT_04);
    assert_eq!(t, vec![Transmit::Close { conn }]);
    assert!(e.is_empty());
    assert_eq!(s.peers().len(), 5);
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut net = Net::new(12, 99, |_, _| {});
        for i in 0..12 {
            net.link(i, (i * 5 + 3) % 12);
        }
        net.run_for(Duration::from_secs(1));
        share(&mut net, 7, "x.bin");
        search(&mut net, 0, 1, "x", 7);
        format!("{:?}", net.take_events())
    };
    assert_eq!(run(), run());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_core(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let (mut s, c) = established(2);
        for ch in &chunks {
            s.handle_input(Instant::from_secs(1), Input::Received { conn: c[0], data: ch });
            drain(&mut s);
        }
        prop_assert!(s.peers().len() <= 2);
    }

    #[test]
    fn valid_descriptor_streams_split_anywhere_route_the_same(cut in 0usize..80) {
        let mut stream = query(1, 3, 0, "abc");
        stream.extend(query(2, 3, 0, "def"));
        let cut = cut.min(stream.len());
        let (mut s, c) = established(2);
        let (t1, _) = feed(&mut s, c[0], &stream[..cut]);
        let (t2, _) = feed(&mut s, c[0], &stream[cut..]);
        let all: Vec<_> = t1.into_iter().chain(t2).collect();
        prop_assert_eq!(sent_headers(&all).len(), 2);
        prop_assert_eq!(s.stats().queries_seen, 2);
    }
}

/// Both servents dial each other at the same moment (0.4 and 0.6): each closes the same
/// one of the two links, so one link per pair remains, and a query crosses it once.
#[test]
fn servents_dialling_each_other_keep_exactly_one_link() {
    for role in [
        servent_gnutella::servent::Role::Flat04,
        servent_gnutella::servent::Role::Ultrapeer,
    ] {
        let mut net = Net::new(2, 41, |_, c| {
            c.role = role;
            c.ping_ttl = 1;
        });
        net.link(0, 1);
        net.link(1, 0);
        net.run_for(Duration::from_secs(3));
        for n in 0..2 {
            let peers = net.node(n).peer_infos();
            assert_eq!(peers.len(), 1, "{role:?} node {n}: {peers:?}");
        }
        let closed: u64 = net.nodes().map(|n| n.stats().duplicate_links).sum();
        assert!(closed >= 1, "{role:?}");
        share(&mut net, 1, "Pixies - Debaser.mp3");
        net.command(
            0,
            Command::Search {
                id: 9,
                query: "debaser".into(),
                ttl: Some(3),
            },
        );
        net.run_for(Duration::from_secs(2));
        assert_eq!(net.node(1).stats().queries_seen, 1, "{role:?}");
        assert_eq!(net.node(0).stats().duplicates, 0, "{role:?}");
    }
}

/// 2 000 idle sockets from one address cost at most `max_pending_per_ip` slots; another
/// address still gets in until `max_pending` is reached; a finished handshake frees its slot.
#[test]
fn pending_handshakes_are_bounded_per_ip_and_in_all() {
    let mut s = Servent::new(
        {
            let mut c = Config::new(Guid([1; 16]), "127.0.0.1:6346".parse().unwrap());
            c.max_pending = 20;
            c.max_pending_per_ip = 16;
            c
        },
        Rng::new(3),
    );
    let t = Instant::from_secs(1);
    let mut closed = std::collections::BTreeSet::new();
    let drain = |s: &mut Servent, closed: &mut std::collections::BTreeSet<ConnId>| {
        while let Some(tx) = s.poll_transmit() {
            if let Transmit::Close { conn } = tx {
                closed.insert(conn);
            }
        }
    };
    for i in 0..2000u64 {
        let peer: SocketAddr = format!("127.0.0.9:{}", 1024 + i).parse().unwrap();
        s.handle_input(
            t,
            Input::Connected {
                conn: ConnId::inbound(i),
                peer,
            },
        );
    }
    drain(&mut s, &mut closed);
    assert_eq!(closed.len(), 2000 - 16);
    assert!(!closed.contains(&ConnId::inbound(15)));
    assert!(closed.contains(&ConnId::inbound(16)));
    for i in 0..10u64 {
        let peer: SocketAddr = format!("127.0.0.10:{}", 1024 + i).parse().unwrap();
        s.handle_input(
            t,
            Input::Connected {
                conn: ConnId::inbound(5000 + i),
                peer,
            },
        );
    }
    drain(&mut s, &mut closed);
    // 4 more fit under max_pending = 20; the other 6 were closed.
    assert_eq!(closed.len(), 2000 - 16 + 6);
    assert_eq!(s.stats().refused_pending, 2000 - 16 + 6);
    // One of them finishes a 0.4 handshake: its slot is free again.
    s.handle_input(
        t,
        Input::Received {
            conn: ConnId::inbound(0),
            data: CONNECT_04,
        },
    );
    drain(&mut s, &mut closed);
    s.handle_input(
        t,
        Input::Connected {
            conn: ConnId::inbound(9000),
            peer: "127.0.0.11:1".parse().unwrap(),
        },
    );
    drain(&mut s, &mut closed);
    assert!(!closed.contains(&ConnId::inbound(9000)));
}

fn ping(id: u32) -> Vec<u8> {
    let mut g = [0u8; 16];
    g[..4].copy_from_slice(&id.to_le_bytes());
    Message {
        id: Guid(g),
        ttl: 7,
        hops: 0,
        body: Body::Ping,
    }
    .encode()
}

#[test]
fn a_link_flooding_pings_gets_its_allowance_answered_then_is_closed_as_a_flooder() {
    let (mut s, c) = established(2);
    let allowance = Config::new(Guid([0; 16]), addr_of(0)).max_pings_per_sec;
    // 3x the allowance in one second: the allowance is answered and forwarded, the rest
    // dropped and counted; the link stays up.
    let burst: Vec<u8> = (0..3 * allowance).flat_map(ping).collect();
    let (t, e) = feed(&mut s, c[0], &burst);
    let h = sent_headers(&t);
    let pongs = h
        .iter()
        .filter(|(to, hd)| *to == c[0] && hd.kind == Kind::Pong);
    let forwarded = h
        .iter()
        .filter(|(to, hd)| *to == c[1] && hd.kind == Kind::Ping);
    assert_eq!(pongs.count() as u32, allowance);
    assert_eq!(forwarded.count() as u32, allowance);
    assert_eq!(s.stats().throttled, u64::from(2 * allowance));
    assert!(
        e.iter().all(|e| !matches!(e, Event::PeerDown { .. })),
        "{e:?}"
    );
    // A second later the allowance is back.
    s.handle_input(
        Instant::from_secs(2),
        Input::Received {
            conn: c[0],
            data: &ping(1_000_000),
        },
    );
    let (t, _) = drain(&mut s);
    assert_eq!(sent_headers(&t).len(), 2);
    // Past FLOOD_FACTOR times the allowance in one second the link is closed, with its reason.
    let flood: Vec<u8> = (0..=servent_gnutella::servent::FLOOD_FACTOR * allowance)
        .flat_map(|i| ping(2_000_000 + i))
        .collect();
    s.handle_input(
        Instant::from_secs(2),
        Input::Received {
            conn: c[0],
            data: &flood,
        },
    );
    let (t, e) = drain(&mut s);
    assert!(t.contains(&Transmit::Close { conn: c[0] }), "{t:?}");
    let why = e.iter().find_map(|e| match e {
        Event::PeerDown {
            reason: DownReason::Protocol(why),
            ..
        } => Some(why.clone()),
        _ => None,
    });
    assert_eq!(
        why.as_deref(),
        Some(
            format!(
                "ping flood: {} in one second, allowance {allowance}",
                10 * allowance + 1
            )
            .as_str()
        )
    );
    assert_eq!(s.stats().flooders_closed, 1);
    // Its address is refused for `flood_ban` (reconnecting buys no fresh allowance); other
    // addresses are not, and after the ban it may come back.
    let ban = Config::new(Guid([0; 16]), addr_of(0)).flood_ban;
    let flooder = SocketAddr::V4(addr_of(0));
    let arrive = |s: &mut Servent, at: Instant, n: u64, peer: SocketAddr| {
        let conn = ConnId::inbound(n);
        s.handle_input(at, Input::Connected { conn, peer });
        let (t, _) = drain(s);
        t.contains(&Transmit::Close { conn })
    };
    assert!(arrive(&mut s, Instant::from_secs(3), 10, flooder));
    assert_eq!(s.stats().refused_banned, 1);
    assert!(!arrive(
        &mut s,
        Instant::from_secs(3),
        11,
        SocketAddr::V4(addr_of(7))
    ));
    let after = Instant::from_secs(2) + ban + Duration::from_secs(1);
    assert!(!arrive(&mut s, after, 12, flooder));
    assert_eq!(s.stats().refused_banned, 1);
}

#[test]
fn a_link_flooding_queries_past_its_allowance_has_the_excess_dropped_not_forwarded() {
    let (mut s, c) = established(2);
    let allowance = Config::new(Guid([0; 16]), addr_of(0)).max_queries_per_sec;
    let mut burst = Vec::new();
    for i in 0..2 * allowance {
        let mut q = query(0, 3, 0, "x");
        q[..4].copy_from_slice(&i.to_le_bytes());
        burst.extend_from_slice(&q);
    }
    let (t, e) = feed(&mut s, c[0], &burst);
    let forwarded = sent_headers(&t)
        .into_iter()
        .filter(|(to, hd)| *to == c[1] && hd.kind == Kind::Query)
        .count();
    assert_eq!(forwarded as u32, allowance);
    assert_eq!(s.stats().queries_seen, u64::from(allowance));
    assert_eq!(s.stats().throttled, u64::from(allowance));
    assert!(
        e.iter().all(|e| !matches!(e, Event::PeerDown { .. })),
        "{e:?}"
    );
}
