//! The node core answering KRPC queries: tokens, storage bounds, implied_port, rate limits,
//! errors for bad input, and lookups between a few nodes in the simulator.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests are not cores

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{Core, Id, Input, Instant, Rng, Transmit};
use servent_kademlia::krpc::{self, Body, Message, Query, Response};
use servent_kademlia::{Command, Config, Dht, Event};
use servent_sim::{NodeId, NodeOpts, Sim, SimConfig};

fn node(seed: u64) -> Dht {
    Dht::new(Id([seed as u8; 20]), Config::default(), Rng::new(seed))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Hands `data` to `b` and returns what it sent back to `from`, decoded.
fn exchange(b: &mut Dht, now: Instant, from: SocketAddr, data: &[u8]) -> Vec<Message> {
    b.handle_input(now, Input::Datagram { from, data });
    let mut out = Vec::new();
    while let Some(t) = b.poll_transmit() {
        if let Transmit::Datagram { to, data } = t {
            let m = krpc::decode(&data).unwrap();
            // answers only (a new querier is also pinged before it may enter the table)
            if to == from && !matches!(m.body, Body::Query(_)) {
                out.push(m);
            }
        }
    }
    out
}

fn ask(b: &mut Dht, now: Instant, from: SocketAddr, q: Query) -> Vec<Message> {
    exchange(b, now, from, &Message::query(b"tt", q).encode())
}

const QUERIER: Id = Id([0x11; 20]);
const HASH: Id = Id([0x77; 20]);

fn token_for(b: &mut Dht, now: Instant, from: SocketAddr) -> Vec<u8> {
    let r = ask(
        b,
        now,
        from,
        Query::GetPeers {
            id: QUERIER,
            info_hash: HASH,
        },
    );
    match &r[0].body {
        Body::Response(Response { token: Some(t), .. }) => t.clone(),
        other => panic!("no token: {other:?}"),
    }
}

fn announce(
    b: &mut Dht,
    now: Instant,
    from: SocketAddr,
    token: Vec<u8>,
    port: u16,
    implied: bool,
) -> Message {
    ask(
        b,
        now,
        from,
        Query::AnnouncePeer {
            id: QUERIER,
            info_hash: HASH,
            port,
            token,
            implied_port: implied,
        },
    )
    .remove(0)
}

#[test]
fn announce_with_token_is_stored_and_returned_by_get_peers() {
    let mut b = node(2);
    let from = addr("127.0.0.9:7000");
    let t = token_for(&mut b, Instant::ZERO, from);
    let r = announce(&mut b, Instant::ZERO, from, t, 6881, false);
    assert!(matches!(r.body, Body::Response(_)), "{r:?}");
    assert_eq!(b.stored_peers(&HASH), vec![addr4("127.0.0.9:6881")]);
    assert!(matches!(
        b.poll_event(),
        Some(Event::PeerAnnounced {
            info_hash: HASH,
            ..
        })
    ));
    let r = ask(
        &mut b,
        Instant::ZERO,
        addr("127.0.0.10:1"),
        Query::GetPeers {
            id: Id([0x12; 20]),
            info_hash: HASH,
        },
    );
    match &r[0].body {
        Body::Response(resp) => assert_eq!(resp.values, vec![addr4("127.0.0.9:6881")]),
        other => panic!("{other:?}"),
    }
}

fn addr4(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

#[test]
fn implied_port_stores_the_udp_source_port() {
    let mut b = node(2);
    let from = addr("127.0.0.9:7000");
    let t = token_for(&mut b, Instant::ZERO, from);
    announce(&mut b, Instant::ZERO, from, t, 1, true);
    assert_eq!(b.stored_peers(&HASH), vec![addr4("127.0.0.9:7000")]);
}

#[test]
fn bad_or_foreign_token_is_refused_with_203() {
    let mut b = node(2);
    let from = addr("127.0.0.9:7000");
    let t = token_for(&mut b, Instant::ZERO, from);
    // a token handed to another address does not work from this one
    let r = announce(
        &mut b,
        Instant::ZERO,
        addr("127.0.0.8:7000"),
        t,
        6881,
        false,
    );
    assert!(matches!(r.body, Body::Error { code: 203, .. }), "{r:?}");
    let r = announce(&mut b, Instant::ZERO, from, b"forged".to_vec(), 6881, false);
    assert!(matches!(r.body, Body::Error { code: 203, .. }), "{r:?}");
    assert!(b.stored_peers(&HASH).is_empty());
    assert_eq!(b.stats().bad_tokens, 2);
}

#[test]
fn token_is_valid_for_one_rotation_and_not_two() {
    let mut b = node(2);
    let from = addr("127.0.0.9:7000");
    let t = token_for(&mut b, Instant::ZERO, from);
    // one rotation later (5 min) it still works
    let t1 = Instant::from_secs(301);
    b.handle_timeout(t1);
    let r = announce(&mut b, t1, from, t.clone(), 6881, false);
    assert!(matches!(r.body, Body::Response(_)), "{r:?}");
    // two rotations later (10 min) it does not
    let t2 = Instant::from_secs(602);
    b.handle_timeout(t2);
    let r = announce(&mut b, t2, from, t, 6881, false);
    assert!(matches!(r.body, Body::Error { code: 203, .. }), "{r:?}");
}

#[test]
fn stored_peers_are_bounded_per_infohash_and_expire() {
    let mut b = node(2);
    for i in 0..150u32 {
        let from = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 7000));
        let t = token_for(&mut b, Instant::ZERO, from);
        announce(&mut b, Instant::ZERO, from, t, 6881, false);
    }
    assert_eq!(
        b.stored_peers(&HASH).len(),
        Config::default().max_peers_per_hash
    );
    // a get_peers answer carries at most max_values peers
    let r = ask(
        &mut b,
        Instant::ZERO,
        addr("127.0.0.10:1"),
        Query::GetPeers {
            id: Id([0x12; 20]),
            info_hash: HASH,
        },
    );
    match &r[0].body {
        Body::Response(resp) => assert_eq!(resp.values.len(), Config::default().max_values),
        other => panic!("{other:?}"),
    }
    let later = Instant::from_secs(31 * 60 + 61);
    b.handle_timeout(later);
    b.handle_timeout(later + Duration::from_secs(61));
    assert!(b.stored_peers(&HASH).is_empty());
}

#[test]
fn flooding_address_is_rate_limited_and_others_still_served() {
    let mut b = node(2);
    let flood = addr("10.0.0.66:1");
    let mut answered = 0;
    for _ in 0..200 {
        answered += ask(&mut b, Instant::ZERO, flood, Query::Ping { id: QUERIER }).len();
    }
    let burst = Config::default().burst_per_ip as usize;
    assert_eq!(answered, burst);
    assert_eq!(b.stats().rate_limited, (200 - burst) as u64);
    assert_eq!(
        ask(
            &mut b,
            Instant::ZERO,
            addr("127.0.0.67:1"),
            Query::Ping { id: QUERIER }
        )
        .len(),
        1
    );
    // a second later the flooder has 20 more
    let mut later = 0;
    for _ in 0..100 {
        later += ask(
            &mut b,
            Instant::from_secs(1),
            flood,
            Query::Ping { id: QUERIER },
        )
        .len();
    }
    assert_eq!(later, 20);
}

#[test]
fn loopback_queriers_are_not_rate_limited() {
    let mut b = node(2);
    let local = addr("127.0.0.1:1");
    let answered: usize = (0..200)
        .map(|_| ask(&mut b, Instant::ZERO, local, Query::Ping { id: QUERIER }).len())
        .sum();
    assert_eq!(answered, 200);
}

#[test]
fn bootstrap_query_is_retried_before_giving_up() {
    let mut a = node(1);
    a.handle_input(
        Instant::ZERO,
        Input::Command(Command::Bootstrap {
            id: 3,
            nodes: vec![addr("127.0.0.2:6881")],
        }),
    );
    let mut sent = 0;
    let mut now = Instant::ZERO;
    for _ in 0..10 {
        while a.poll_transmit().is_some() {
            sent += 1;
        }
        if let Some(ev) = a.poll_event() {
            assert_eq!(ev, Event::Bootstrapped { id: 3, nodes: 0 });
            break;
        }
        now = a.poll_timeout().unwrap().max(now);
        a.handle_timeout(now);
    }
    assert_eq!(sent, 1 + usize::from(Config::default().retries));
}

#[test]
fn unknown_method_gets_204_and_garbage_gets_nothing() {
    let mut b = node(2);
    let from = addr("127.0.0.9:7000");
    let r = exchange(
        &mut b,
        Instant::ZERO,
        from,
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe",
    );
    assert!(matches!(&r[0].body, Body::Error { code: 204, .. }));
    assert_eq!(r[0].tid, b"xy");
    assert!(exchange(&mut b, Instant::ZERO, from, b"\xff\x00garbage").is_empty());
    assert!(exchange(&mut b, Instant::ZERO, from, b"d1:y1:qe").is_empty());
    assert_eq!(b.stats().malformed, 3);
}

#[test]
fn answer_from_another_address_is_ignored() {
    let mut a = node(1);
    let b_addr = addr("127.0.0.2:6881");
    a.handle_input(
        Instant::ZERO,
        Input::Command(Command::Ping {
            id: 5,
            addr: b_addr,
        }),
    );
    let Some(Transmit::Datagram { data, .. }) = a.poll_transmit() else {
        panic!("no ping");
    };
    let q = krpc::decode(&data).unwrap();
    let reply = Message::response(
        &q.tid,
        Response {
            id: Id([2; 20]),
            ..Response::default()
        },
    )
    .encode();
    // a spoofer guessing the transaction id from elsewhere gets nowhere
    a.handle_input(
        Instant::from_millis(5),
        Input::Datagram {
            from: addr("127.0.0.3:6881"),
            data: &reply,
        },
    );
    assert_eq!(a.poll_event(), None);
    assert_eq!(a.stats().unexpected, 1);
    a.handle_input(
        Instant::from_millis(10),
        Input::Datagram {
            from: b_addr,
            data: &reply,
        },
    );
    assert!(matches!(a.poll_event(), Some(Event::Pong { id: 5, .. })));
    assert_eq!(a.table().len(), 1);
}

#[test]
fn unanswered_ping_reports_unreachable_once() {
    let mut a = node(1);
    a.handle_input(
        Instant::ZERO,
        Input::Command(Command::Ping {
            id: 9,
            addr: addr("127.0.0.2:6881"),
        }),
    );
    let due = a.poll_timeout().unwrap();
    a.handle_timeout(due.max(Instant::from_secs(1)));
    let events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
    assert_eq!(events, vec![Event::Unreachable { id: 9 }]);
}

/// A small network built by real bootstraps (no warm start): everyone joins through node 0,
/// then one node announces and another finds it.
#[test]
fn nodes_bootstrap_announce_and_find_each_other_in_the_simulator() {
    let mut sim: Sim<Dht> = Sim::new(SimConfig {
        seed: 5,
        ..SimConfig::default()
    });
    let mut rng = Rng::new(5);
    let n = 40;
    for i in 0..n {
        sim.add_node(
            Dht::new(Id::random(&mut rng), Config::default(), Rng::new(100 + i)),
            NodeOpts::default(),
        );
    }
    let seed_addr = sim.addr(NodeId(0));
    for i in 1..n as u32 {
        sim.command_at(
            Instant::from_millis(u64::from(i) * 200),
            NodeId(i),
            Command::Bootstrap {
                id: u64::from(i),
                nodes: vec![seed_addr],
            },
        );
    }
    sim.run_until(Instant::from_secs(30));
    let boots = sim
        .take_events()
        .into_iter()
        .filter(|(_, _, e)| matches!(e, Event::Bootstrapped { nodes, .. } if *nodes > 0))
        .count();
    assert_eq!(boots, n as usize - 1);
    sim.command(
        NodeId(7),
        Command::Announce {
            id: 100,
            info_hash: HASH,
            port: 6881,
            implied_port: false,
        },
    );
    sim.run_for(Duration::from_secs(30));
    let announced: Vec<usize> = sim
        .take_events()
        .into_iter()
        .filter_map(|(_, _, e)| match e {
            Event::Announced {
                id: 100, stored_at, ..
            } => Some(stored_at),
            _ => None,
        })
        .collect();
    assert_eq!(announced, vec![8]);
    sim.command(
        NodeId(31),
        Command::GetPeers {
            id: 101,
            info_hash: HASH,
        },
    );
    sim.run_for(Duration::from_secs(30));
    let want = match sim.addr(NodeId(7)) {
        SocketAddr::V4(a) => SocketAddrV4::new(*a.ip(), 6881),
        SocketAddr::V6(_) => unreachable!(),
    };
    let found = sim.take_events().into_iter().any(|(_, n, e)| {
        n == NodeId(31) && matches!(&e, Event::Peers { id: 101, peers } if peers.contains(&want))
    });
    assert!(found);
}

/// Drains `a`'s datagrams: (to, decoded message).
fn sent(a: &mut Dht) -> Vec<(SocketAddr, Message)> {
    let mut out = Vec::new();
    while let Some(t) = a.poll_transmit() {
        if let Transmit::Datagram { to, data } = t {
            out.push((to, krpc::decode(&data).unwrap()));
        }
    }
    out
}

fn answer(a: &mut Dht, now: Instant, from: SocketAddr, tid: &[u8], id: Id) {
    let reply = Message::response(
        tid,
        Response {
            id,
            ..Response::default()
        },
    )
    .encode();
    a.handle_input(now, Input::Datagram { from, data: &reply });
}

#[test]
fn slow_lookup_query_frees_its_slot_early_and_its_late_answer_still_counts() {
    let mut a = node(1);
    // four nodes on private addresses (BEP 42 exempt), ids 0x80.., 0x81.., ...
    let nodes: Vec<(Id, SocketAddr)> = (0..4u8)
        .map(|i| {
            let mut id = [0u8; 20];
            id[0] = 0x80 + i;
            (Id(id), addr(&format!("10.0.0.{}:6881", i + 1)))
        })
        .collect();
    for (id, at) in &nodes {
        let SocketAddr::V4(v4) = at else { panic!() };
        a.add_node(
            servent_kademlia::NodeInfo { id: *id, addr: *v4 },
            Instant::ZERO,
        );
    }
    // one timed answer (20 ms) gives the node its first RTT estimate
    let (_, n0) = nodes[0];
    a.handle_input(
        Instant::ZERO,
        Input::Command(Command::Ping { id: 1, addr: n0 }),
    );
    let ping = sent(&mut a);
    answer(
        &mut a,
        Instant::from_millis(20),
        n0,
        &ping[0].1.tid,
        nodes[0].0,
    );
    assert!(matches!(a.poll_event(), Some(Event::Pong { id: 1, .. })));

    let t0 = Instant::from_millis(100);
    let target = Id([0x80; 20]);
    a.handle_input(t0, Input::Command(Command::FindNode { id: 2, target }));
    let first = sent(&mut a);
    assert_eq!(first.len(), 3, "alpha = 3 queries");
    // two answer at once, the third stays silent
    let (slow_to, slow_q) = first[2].clone();
    for (to, q) in &first[..2] {
        let id = nodes.iter().find(|(_, at)| at == to).unwrap().0;
        answer(&mut a, t0 + Duration::from_millis(20), *to, &q.tid, id);
    }
    // the fourth node is queried once the silent one outlives its adaptive timeout,
    // long before the 1 s query timeout
    let mut now = t0 + Duration::from_millis(20);
    let mut fourth = None;
    while fourth.is_none() {
        now = a.poll_timeout().unwrap().max(now);
        assert!(
            now < t0 + Duration::from_millis(500),
            "no early extra query"
        );
        a.handle_timeout(now);
        fourth = sent(&mut a)
            .into_iter()
            .find(|(to, _)| !first.iter().any(|(f, _)| f == to));
    }
    assert!(a.stats().late >= 1);
    let (fourth_to, fourth_q) = fourth.unwrap();
    let fourth_id = nodes.iter().find(|(_, at)| *at == fourth_to).unwrap().0;
    answer(&mut a, now, fourth_to, &fourth_q.tid, fourth_id);
    // the silent node's first query is answered late (its retry is still out): it counts
    let slow_id = nodes.iter().find(|(_, at)| *at == slow_to).unwrap().0;
    answer(
        &mut a,
        now + Duration::from_millis(50),
        slow_to,
        &slow_q.tid,
        slow_id,
    );
    match a.poll_event() {
        Some(Event::LookupDone {
            id: 2,
            closest,
            stats,
            ..
        }) => {
            assert_eq!(closest.len(), 4);
            assert!(closest.iter().any(|n| n.id == slow_id));
            assert!(stats.duration < Duration::from_millis(500), "{stats:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// Pings `to` and answers as node `id` saying it sees us at `seen`.
fn pong_with_ip(a: &mut Dht, now: Instant, to: SocketAddr, id: Id, seen: SocketAddrV4) {
    a.handle_input(now, Input::Command(Command::Ping { id: 77, addr: to }));
    let q = sent(a).pop().expect("ping sent").1;
    let mut m = Message::response(
        &q.tid,
        Response {
            id,
            ..Response::default()
        },
    );
    m.ip = Some(seen);
    a.handle_input(
        now,
        Input::Datagram {
            from: to,
            data: &m.encode(),
        },
    );
}

#[test]
fn own_id_follows_bep42_once_several_nodes_agree_on_our_address() {
    let mut a = node(1);
    let me: SocketAddrV4 = "21.1.2.3:6881".parse().unwrap();
    let old = a.id();
    assert!(!servent_kademlia::bep42::is_valid(&old, *me.ip()));
    // one node saying it many times is one vote
    for _ in 0..6 {
        pong_with_ip(
            &mut a,
            Instant::ZERO,
            addr("30.0.0.1:6881"),
            Id([9; 20]),
            me,
        );
    }
    // a liar's address does not count for the truth
    pong_with_ip(
        &mut a,
        Instant::ZERO,
        addr("30.0.0.9:6881"),
        Id([8; 20]),
        "22.2.2.2:1".parse().unwrap(),
    );
    for i in 2..=3u8 {
        pong_with_ip(
            &mut a,
            Instant::ZERO,
            addr(&format!("30.0.0.{i}:6881")),
            Id([i; 20]),
            me,
        );
    }
    assert_eq!(a.id(), old, "three agreeing nodes are not enough");
    pong_with_ip(
        &mut a,
        Instant::ZERO,
        addr("30.0.0.4:6881"),
        Id([4; 20]),
        me,
    );
    let changed = std::iter::from_fn(|| a.poll_event()).find_map(|e| match e {
        Event::IdChanged {
            old: o,
            new,
            external,
        } => Some((o, new, external)),
        _ => None,
    });
    let (o, new, external) = changed.expect("IdChanged");
    assert_eq!((o, external), (old, *me.ip()));
    assert_eq!(a.id(), new);
    assert_eq!(a.table().own_id(), new);
    assert!(servent_kademlia::bep42::is_valid(&new, *me.ip()));
    assert_eq!(a.external_ip(), Some(*me.ip()));
}

#[test]
fn a_full_rate_limiter_still_answers_a_newcomer() {
    // 5000 forged addresses, one query each at the same instant: more than the limiter
    // tracks, none of them refilled. Before the fix every later newcomer was refused.
    let mut b = node(2);
    for i in 0..5000u32 {
        let from = SocketAddr::V4(SocketAddrV4::new(
            std::net::Ipv4Addr::from(0x0a00_0000 + i),
            1,
        ));
        ask(&mut b, Instant::ZERO, from, Query::Ping { id: QUERIER });
    }
    let r = ask(
        &mut b,
        Instant::ZERO,
        addr("10.200.0.1:1"),
        Query::Ping { id: QUERIER },
    );
    assert_eq!(r.len(), 1, "the newcomer was refused");
}

#[test]
fn datagrams_over_the_configured_size_are_dropped_unread() {
    let cfg = Config {
        max_datagram: 600,
        ..Config::default()
    };
    let mut b = Dht::new(Id([2; 20]), cfg, Rng::new(2));
    let mut q = Message::query(b"tt", Query::Ping { id: QUERIER });
    q.version = Some(vec![b'x'; 16]);
    let small = q.encode();
    assert_eq!(
        exchange(&mut b, Instant::ZERO, addr("127.0.0.5:1"), &small).len(),
        1
    );
    // a valid ping padded with an unknown key to 700 bytes
    let mut big = small.clone();
    big.pop();
    big.extend_from_slice(format!("1:z{}:", 650).as_bytes());
    big.extend_from_slice(&[b'z'; 650]);
    big.push(b'e');
    assert!(krpc::decode(&big).is_ok());
    assert!(exchange(&mut b, Instant::ZERO, addr("127.0.0.5:1"), &big).is_empty());
    assert_eq!(b.stats().oversized, 1);
}

/// Info-hashes a peer picks so that their FxHash values all agree: the store (and the
/// lookups' peer sets, hashed under the node's secret key) must still take each one in
/// and answer for it, up to `max_hashes`.
#[test]
fn fx_colliding_info_hashes_are_stored_and_answered_up_to_max_hashes() {
    let cfg = Config {
        max_hashes: 3000,
        ..Config::default()
    };
    let mut b = Dht::new(Id([2; 20]), cfg, Rng::new(2));
    let from = addr("127.0.0.9:7000");
    let t = token_for(&mut b, Instant::ZERO, from);
    let hashes: Vec<Id> = servent_core::keyed::fx_colliding_words(4000, 0xdead_beef)
        .into_iter()
        .map(|w| {
            let mut id = [0u8; 20];
            id[..16].copy_from_slice(&w);
            Id(id)
        })
        .collect();
    let mut stored = 0;
    for h in &hashes {
        let r = ask(
            &mut b,
            Instant::ZERO,
            from,
            Query::AnnouncePeer {
                id: QUERIER,
                info_hash: *h,
                port: 6881,
                token: t.clone(),
                implied_port: false,
            },
        );
        if matches!(r.first().map(|m| &m.body), Some(Body::Response(_))) {
            stored += 1;
        }
        while b.poll_event().is_some() {}
    }
    assert_eq!(stored, 3000, "announces accepted until max_hashes");
    for h in &hashes[..3000] {
        assert_eq!(b.stored_peers(h), vec![addr4("127.0.0.9:6881")]);
    }
    for h in &hashes[3000..] {
        assert!(b.stored_peers(h).is_empty());
    }
}

/// Addresses chosen so that their FxHash values agree in the low 16 bits (the bucket index
/// of any table up to 65 536 slots): a get_peers lookup must take in and report each one
/// once, since its peer set is hashed under the node's secret key.
#[test]
fn fx_colliding_peer_addresses_in_get_peers_answers_are_each_reported_once() {
    use std::hash::{Hash, Hasher};
    fn fx(a: &SocketAddrV4) -> u64 {
        let mut h = servent_core::FxHasher::default();
        a.hash(&mut h);
        h.finish()
    }
    // FxHash's last step is h = (rotl(h, 5) ^ port) * SEED: from the hash with port 0 we
    // get rotl(h, 5), and choose the port that fixes the low 16 bits of the final hash.
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut inv = SEED;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(SEED.wrapping_mul(inv)));
    }
    let colliding: Vec<SocketAddrV4> = (0..2000u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i * 7);
            let x = fx(&SocketAddrV4::new(ip, 0)).wrapping_mul(inv);
            SocketAddrV4::new(ip, (x as u16) ^ 0x5a5a)
        })
        .collect();
    let low: std::collections::BTreeSet<u64> = colliding.iter().map(|a| fx(a) & 0xffff).collect();
    assert_eq!(
        low.len(),
        1,
        "the constructed addresses collide under FxHash"
    );
    // under a secret key (what the lookup's peer set hashes with) they spread over the
    // buckets like random keys: 2 000 keys in 65 536 buckets are nearly all distinct
    let keyed = servent_core::KeyedState::new(&mut Rng::new(5));
    let spread: std::collections::BTreeSet<u64> = colliding
        .iter()
        .map(|a| std::hash::BuildHasher::hash_one(&keyed, a) & 0xffff)
        .collect();
    assert!(spread.len() > 1900, "{}", spread.len());

    let mut a = node(1);
    let nodes: Vec<(Id, SocketAddr)> = (0..8u8)
        .map(|i| {
            let mut id = [0u8; 20];
            id[0] = 0x80 + i;
            (Id(id), addr(&format!("10.0.0.{}:6881", i + 1)))
        })
        .collect();
    for (id, at) in &nodes {
        let SocketAddr::V4(v4) = at else { panic!() };
        a.add_node(
            servent_kademlia::NodeInfo { id: *id, addr: *v4 },
            Instant::ZERO,
        );
    }
    a.handle_input(
        Instant::ZERO,
        Input::Command(Command::GetPeers {
            id: 9,
            info_hash: Id([0x80; 20]),
        }),
    );
    let mut reported = Vec::new();
    let mut answered = 0;
    let mut now = Instant::ZERO;
    for _ in 0..100 {
        let out = sent(&mut a);
        if out.is_empty() {
            break;
        }
        for (to, q) in out {
            let Some(i) = nodes.iter().position(|(_, at)| *at == to) else {
                continue;
            };
            // each node names its own 250 addresses, and 50 of its neighbour's again
            let mine = &colliding[i * 250..(i + 1) * 250];
            let again = &colliding[((i + 1) % 8) * 250..((i + 1) % 8) * 250 + 50];
            let reply = Message::response(
                &q.tid,
                Response {
                    id: nodes[i].0,
                    values: mine.iter().chain(again).copied().collect(),
                    token: Some(b"tok".to_vec()),
                    ..Response::default()
                },
            )
            .encode();
            now += Duration::from_millis(5);
            a.handle_input(
                now,
                Input::Datagram {
                    from: to,
                    data: &reply,
                },
            );
            answered += 1;
        }
        while let Some(e) = a.poll_event() {
            if let Event::Peers { id: 9, peers } = e {
                reported.extend(peers);
            }
        }
    }
    assert_eq!(answered, 8, "every node was asked once");
    let distinct: std::collections::BTreeSet<_> = reported.iter().collect();
    assert_eq!(reported.len(), 2000, "each address reported once");
    assert_eq!(distinct.len(), 2000);
}
