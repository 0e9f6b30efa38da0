//! A KRPC flood with forged sender addresses (issue 13): it must not fill the flooded
//! node's routing table, must not stop legitimate lookups through it, and must not turn
//! the node into an amplifier (what it sends to the forged addresses stays within
//! `AMPLIFICATION` times what it received from them, plus the node's small budget; before
//! the fix a `get` of a stored 1000-byte item answered 11 times its query's size).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests are not cores

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use servent_core::{Id, Rng};
use servent_kademlia::harness::Harness;
use servent_kademlia::krpc::{Message, Query};
use servent_kademlia::{Command, Config, Dht, Event};

#[test]
fn a_forged_find_node_flood_neither_fills_the_table_nor_stops_lookups_nor_amplifies() {
    let mut h = Harness::new();
    let mut rng = Rng::new(13);
    let first = h.add(Dht::new(
        Id::random(&mut rng),
        Config::default(),
        rng.fork(1),
    ));
    let mut nodes = vec![first];
    for i in 0..40u64 {
        let a = h.add(Dht::new(
            Id::random(&mut rng),
            Config::default(),
            rng.fork(100 + i),
        ));
        h.command(
            a,
            Command::Bootstrap {
                id: i,
                nodes: vec![first],
            },
        );
        h.drive_for(Duration::from_millis(200));
        nodes.push(a);
    }
    h.drive_for(Duration::from_secs(5));
    let hash = Id([0x5a; 20]);
    h.command(
        nodes[7],
        Command::Announce {
            id: 500,
            info_hash: hash,
            port: 7777,
            implied_port: false,
        },
    );
    h.drive_for(Duration::from_secs(5));
    // a BEP 44 item of ~1000 bytes: the largest answer a node gives
    let value = format!("990:{}", "x".repeat(990)).into_bytes();
    let target = servent_kademlia::bep44::immutable_target(&value);
    h.command(
        nodes[3],
        Command::Put {
            id: 501,
            value,
            key: None,
        },
    );
    h.drive_for(Duration::from_secs(5));
    // the flooded node: one that stores the item
    let first = *nodes
        .iter()
        .find(|a| {
            h.node(**a)
                .is_some_and(|n| n.stored_item(&target).is_some())
        })
        .expect("someone stores the item");
    let stray_before = h.stray();

    // 20 000 find_node queries to the first node over 2 s, each from another forged
    // address (10.x.y.z, another random id); meanwhile a newcomer joins through that node
    // and looks the announced peer up.
    let newcomer = h.add(Dht::new(
        Id::random(&mut rng),
        Config::default(),
        rng.fork(999),
    ));
    let mut flood_bytes = 0u64;
    for i in 0..20_000u32 {
        let from = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 6881));
        let id = Id::random(&mut rng);
        let q = if i % 2 == 0 {
            Query::FindNode {
                id,
                target: Id::random(&mut rng),
            }
        } else {
            Query::Get {
                id,
                target,
                seq: None,
            }
        };
        let q = Message::query(&i.to_be_bytes()[2..], q).encode();
        flood_bytes += q.len() as u64;
        h.inject(from, first, &q);
        if i == 2_000 {
            h.command(
                newcomer,
                Command::Bootstrap {
                    id: 600,
                    nodes: vec![first],
                },
            );
        }
        if i == 10_000 {
            h.command(
                newcomer,
                Command::GetPeers {
                    id: 601,
                    info_hash: hash,
                },
            );
        }
        if i == 14_000 {
            h.command(
                newcomer,
                Command::Get {
                    id: 602,
                    target,
                    salt: Vec::new(),
                    seq: None,
                },
            );
        }
        h.drive_for(Duration::from_micros(100));
    }
    h.drive_for(Duration::from_secs(10));

    let events = h.take_events();
    let joined = events.iter().any(|(n, e)| {
        *n == newcomer && matches!(e, Event::Bootstrapped { id: 600, nodes } if *nodes > 0)
    });
    assert!(joined, "the newcomer could not join during the flood");
    let want: SocketAddrV4 = match nodes[7] {
        SocketAddr::V4(a) => SocketAddrV4::new(*a.ip(), 7777),
        SocketAddr::V6(_) => unreachable!(),
    };
    let found = events.iter().any(|(n, e)| {
        *n == newcomer && matches!(e, Event::Peers { id: 601, peers } if peers.contains(&want))
    });
    if !found {
        for (n, e) in &events {
            if *n == newcomer || *n == nodes[7] {
                println!("{e:?}");
            }
        }
    }
    assert!(
        found,
        "the lookup during the flood did not find the announced peer"
    );

    let got = events.iter().any(|(n, e)| {
        *n == newcomer
            && matches!(
                e,
                Event::Got {
                    id: 602,
                    item: Some(_),
                    ..
                }
            )
    });
    assert!(got, "the BEP 44 get during the flood found nothing");

    let f = h.node(first).unwrap();
    let forged_in_table = f
        .table()
        .entries()
        .filter(|e| e.info.addr.ip().octets()[0] == 10)
        .count();
    assert_eq!(
        forged_in_table, 0,
        "forged queriers entered the routing table"
    );

    let sent = h.stray().bytes - stray_before.bytes;
    let ratio = sent as f64 / flood_bytes as f64;
    println!(
        "flood {flood_bytes} bytes in, {sent} bytes out to forged addresses ({ratio:.2}x); stats {:?}",
        f.stats()
    );
    assert!(ratio <= 3.3, "amplification {ratio:.2}x");
}
