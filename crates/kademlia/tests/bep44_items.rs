//! BEP 44 put/get: a node's checks on `put` (token, signature, seq, cas, size) and
//! immutable and mutable items stored and found across a simulated network.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests are not cores

use std::net::SocketAddr;
use std::time::Duration;

use servent_core::{Core, Id, Input, Instant, Rng, Transmit};
use servent_kademlia::bep44::{self, Item};
use servent_kademlia::krpc::{self, Body, Message, Query, Response};
use servent_kademlia::{Command, Config, Dht, Event, MutableKey};
use servent_sim::{NodeId, NodeOpts, Sim, SimConfig};

const QUERIER: Id = Id([0x11; 20]);

fn ask(b: &mut Dht, now: Instant, from: SocketAddr, q: Query) -> Message {
    b.handle_input(
        now,
        Input::Datagram {
            from,
            data: &Message::query(b"tt", q).encode(),
        },
    );
    let mut out = None;
    while let Some(t) = b.poll_transmit() {
        if let Transmit::Datagram { to, data } = t {
            let m = krpc::decode(&data).unwrap();
            // our answer (a new querier is also pinged, with a transaction id of ours)
            if to == from && m.tid == b"tt" {
                out = Some(m);
            }
        }
    }
    out.expect("an answer")
}

fn get(b: &mut Dht, from: SocketAddr, target: Id, seq: Option<i64>) -> Response {
    match ask(
        b,
        Instant::ZERO,
        from,
        Query::Get {
            id: QUERIER,
            target,
            seq,
        },
    )
    .body
    {
        Body::Response(r) => r,
        other => panic!("{other:?}"),
    }
}

fn put(b: &mut Dht, from: SocketAddr, item: Item, cas: Option<i64>) -> Result<(), i64> {
    let token = get(b, from, item.target(), None).token.unwrap();
    match ask(
        b,
        Instant::ZERO,
        from,
        Query::Put {
            id: QUERIER,
            token,
            item,
            cas,
        },
    )
    .body
    {
        Body::Response(_) => Ok(()),
        Body::Error { code, .. } => Err(code),
        Body::Query(q) => panic!("{q:?}"),
    }
}

fn node() -> Dht {
    Dht::new(Id([2; 20]), Config::default(), Rng::new(2))
}

fn mutable(seed: u8, salt: &[u8], seq: i64, v: &[u8]) -> Item {
    Item {
        v: v.to_vec(),
        mutable: Some(bep44::sign(&[seed; 32], salt, seq, v)),
    }
}

#[test]
fn immutable_put_is_stored_under_its_hash_and_returned_by_get() {
    let mut b = node();
    let from: SocketAddr = "127.0.0.5:7000".parse().unwrap();
    let item = Item::immutable(b"12:Hello World!".to_vec());
    put(&mut b, from, item.clone(), None).unwrap();
    let r = get(&mut b, from, item.target(), None);
    assert_eq!(r.v.as_deref(), Some(&b"12:Hello World!"[..]));
    assert!(r.nodes.is_empty(), "value answers carry no nodes");
    assert_eq!(b.stored_items(), 1);
}

#[test]
fn put_without_a_valid_token_is_refused() {
    let mut b = node();
    let from: SocketAddr = "127.0.0.5:7000".parse().unwrap();
    let m = ask(
        &mut b,
        Instant::ZERO,
        from,
        Query::Put {
            id: QUERIER,
            token: b"forged!!".to_vec(),
            item: Item::immutable(b"1:x".to_vec()),
            cas: None,
        },
    );
    assert!(matches!(m.body, Body::Error { code: 203, .. }));
    assert_eq!(b.stored_items(), 0);
}

#[test]
fn mutable_put_checks_signature_seq_and_cas() {
    let mut b = node();
    let from: SocketAddr = "127.0.0.5:7000".parse().unwrap();
    let v1 = mutable(9, b"salt", 5, b"2:v1");
    let target = v1.target();
    put(&mut b, from, v1.clone(), None).unwrap();
    // forged: signature of another value
    let mut forged = mutable(9, b"salt", 6, b"2:v2");
    forged.v = b"2:v3".to_vec();
    assert_eq!(put(&mut b, from, forged, None), Err(206));
    // lower seq
    assert_eq!(
        put(&mut b, from, mutable(9, b"salt", 4, b"2:v0"), None),
        Err(302)
    );
    // cas that does not match the stored seq
    assert_eq!(
        put(&mut b, from, mutable(9, b"salt", 6, b"2:v2"), Some(4)),
        Err(301)
    );
    put(&mut b, from, mutable(9, b"salt", 6, b"2:v2"), Some(5)).unwrap();
    let r = get(&mut b, from, target, None);
    assert_eq!(r.v.as_deref(), Some(&b"2:v2"[..]));
    assert_eq!(r.seq, Some(6));
    assert!(bep44::verify(
        &r.k.unwrap(),
        &r.sig.unwrap(),
        b"salt",
        6,
        b"2:v2"
    ));
    // asking with the current seq: no value, seq only
    let r = get(&mut b, from, target, Some(6));
    assert_eq!((r.v, r.seq), (None, Some(6)));
}

#[test]
fn item_storage_is_bounded_and_items_expire() {
    let mut b = Dht::new(
        Id([2; 20]),
        Config {
            max_items: 3,
            ..Config::default()
        },
        Rng::new(2),
    );
    let from: SocketAddr = "127.0.0.5:7000".parse().unwrap();
    for i in 0..3 {
        put(
            &mut b,
            from,
            Item::immutable(format!("i{i}e").into_bytes()),
            None,
        )
        .unwrap();
    }
    assert_eq!(
        put(&mut b, from, Item::immutable(b"i9e".to_vec()), None),
        Err(202)
    );
    assert_eq!(b.stored_items(), 3);
    let later = Instant::ZERO + Config::default().item_ttl + Duration::from_secs(120);
    b.handle_timeout(later);
    assert_eq!(b.stored_items(), 0);
}

#[test]
fn put_of_a_value_that_is_not_bencoded_is_refused_locally() {
    let mut a = node();
    a.handle_input(
        Instant::ZERO,
        Input::Command(Command::Put {
            id: 1,
            value: b"not bencode".to_vec(),
            key: None,
        }),
    );
    assert!(matches!(a.poll_event(), Some(Event::Refused { id: 1, .. })));
}

fn network(n: u32) -> Sim<Dht> {
    let mut sim: Sim<Dht> = Sim::new(SimConfig {
        seed: 8,
        ..SimConfig::default()
    });
    let mut rng = Rng::new(8);
    for i in 0..n {
        sim.add_node(
            Dht::new(
                Id::random(&mut rng),
                Config::default(),
                Rng::new(200 + u64::from(i)),
            ),
            NodeOpts::default(),
        );
    }
    let seed_addr = sim.addr(NodeId(0));
    for i in 1..n {
        sim.command_at(
            Instant::from_millis(u64::from(i) * 100),
            NodeId(i),
            Command::Bootstrap {
                id: u64::from(i),
                nodes: vec![seed_addr],
            },
        );
    }
    sim.run_until(Instant::from_secs(20));
    sim.take_events();
    sim
}

fn stored(sim: &mut Sim<Dht>, id: u64) -> (Id, Option<i64>, usize) {
    sim.take_events()
        .into_iter()
        .find_map(|(_, _, e)| match e {
            Event::Stored {
                id: i,
                target,
                seq,
                stored_at,
                ..
            } if i == id => Some((target, seq, stored_at)),
            _ => None,
        })
        .expect("put finished")
}

fn got(sim: &mut Sim<Dht>, id: u64) -> Option<Item> {
    sim.take_events()
        .into_iter()
        .find_map(|(_, _, e)| match e {
            Event::Got { id: i, item, .. } if i == id => Some(item),
            _ => None,
        })
        .expect("get finished")
}

#[test]
fn immutable_and_mutable_items_are_put_and_found_across_the_network() {
    let mut sim = network(40);
    sim.command(
        NodeId(3),
        Command::Put {
            id: 1,
            value: b"5:hello".to_vec(),
            key: None,
        },
    );
    sim.run_for(Duration::from_secs(20));
    let (target, seq, at) = stored(&mut sim, 1);
    assert_eq!(
        (target, seq, at),
        (bep44::immutable_target(b"5:hello"), None, 8)
    );
    sim.command(
        NodeId(30),
        Command::Get {
            id: 2,
            target,
            salt: Vec::new(),
            seq: None,
        },
    );
    sim.run_for(Duration::from_secs(20));
    assert_eq!(got(&mut sim, 2), Some(Item::immutable(b"5:hello".to_vec())));

    // mutable: two puts with the same key, the second picks seq 2 (and cas 1) by itself
    let key = MutableKey {
        seed: [4; 32],
        salt: b"name".to_vec(),
        seq: None,
    };
    for (id, v) in [(3, &b"2:v1"[..]), (4, &b"2:v2"[..])] {
        sim.command(
            NodeId(5),
            Command::Put {
                id,
                value: v.to_vec(),
                key: Some(key.clone()),
            },
        );
        sim.run_for(Duration::from_secs(20));
    }
    let (target, seq, at) = stored(&mut sim, 4);
    assert_eq!(
        target,
        bep44::mutable_target(&bep44::public_key(&[4; 32]), b"name")
    );
    assert_eq!(seq, Some(2));
    assert!(at >= 7, "stored at {at}");
    sim.command(
        NodeId(21),
        Command::Get {
            id: 5,
            target,
            salt: b"name".to_vec(),
            seq: None,
        },
    );
    sim.run_for(Duration::from_secs(20));
    let item = got(&mut sim, 5).expect("found");
    assert_eq!(item.v, b"2:v2");
    assert_eq!(item.mutable.unwrap().seq, 2);
    // the wrong salt finds nothing valid
    sim.command(
        NodeId(21),
        Command::Get {
            id: 6,
            target,
            salt: b"other".to_vec(),
            seq: None,
        },
    );
    sim.run_for(Duration::from_secs(20));
    assert_eq!(got(&mut sim, 6), None);
}
