//! A node must not be usable as a UDP amplifier: to a source that has not proven it
//! receives at its address, no reply is more than 3× the request (or 48 bytes), and a
//! recursive lookup's answer goes only to an origin that has proven it.

// Tests are not cores: they may touch the clock, disk and sockets.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;

use servent_chord::{Body, ChordNode, Config, Message, NodeRef};
use servent_core::{Core, Id, Input, Instant, Ring, Rng, Transmit};

const BUDGET_FACTOR: usize = 3;
const BUDGET_FLOOR: usize = 48;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A member of a stabilized 160-bit ring of 40 nodes (its finger table is full).
fn member() -> ChordNode {
    let ring = Ring::FULL;
    let members: Vec<NodeRef> = (0..40u16)
        .map(|i| NodeRef {
            id: servent_chord::node_id(ring, addr(5000 + i)),
            addr: addr(5000 + i),
        })
        .collect();
    let cfg = Config::new(ring, members[0].id, members[0].addr);
    ChordNode::with_ideal_state(cfg, Rng::new(7), Instant::ZERO, &members)
}

fn drain(node: &mut ChordNode) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        if let Transmit::Datagram { to, data } = t {
            out.push((to, data));
        }
    }
    out
}

fn send(node: &mut ChordNode, from: SocketAddr, msg: &Message) -> Vec<(SocketAddr, Vec<u8>)> {
    let data = msg.encode();
    node.handle_input(Instant::ZERO, Input::Datagram { from, data: &data });
    drain(node)
}

fn bytes_to(out: &[(SocketAddr, Vec<u8>)], to: SocketAddr) -> usize {
    out.iter()
        .filter(|(a, _)| *a == to)
        .map(|(_, d)| d.len())
        .sum()
}

#[test]
fn get_fingers_from_an_unverified_source_draws_no_more_than_three_times_its_size() {
    let mut node = member();
    let _ = drain(&mut node);
    let victim = addr(9999);
    let req = Message {
        bits: 0,
        txid: 42,
        body: Body::GetFingers,
    };
    let len = req.encode().len();
    let out = send(&mut node, victim, &req);
    let sent = bytes_to(&out, victim);
    assert!(
        sent <= (BUDGET_FACTOR * len).max(BUDGET_FLOOR),
        "{len}-byte request drew {sent} bytes"
    );
    // What it did send is a challenge, not the table.
    assert!(
        out.iter()
            .all(|(_, d)| matches!(Message::decode(d).map(|m| m.body), Ok(Body::Ping)))
    );
}

#[test]
fn every_request_type_from_an_unverified_source_stays_within_the_budget() {
    let mut node = member();
    let _ = drain(&mut node);
    let victim = addr(9998);
    let bodies = vec![
        Body::Ping,
        Body::GetNeighbors,
        Body::GetFingers,
        Body::FindStep { key: Id::ZERO },
        Body::FindStep {
            key: node.successor().map(|s| s.id).unwrap_or(Id::ZERO),
        },
        Body::Get { key: b"k".to_vec() },
        Body::Put {
            key: b"k".to_vec(),
            value: vec![7; 4000],
        },
        Body::Get { key: b"k".to_vec() },
        Body::Delete {
            key: b"k".to_vec(),
            propagate: true,
        },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let req = Message {
            bits: 0,
            txid: 100 + i as u64,
            body: body.clone(),
        };
        let len = req.encode().len();
        let out = send(&mut node, victim, &req);
        let sent = bytes_to(&out, victim);
        assert!(
            sent <= (BUDGET_FACTOR * len).max(BUDGET_FLOOR),
            "{body:?}: {len}-byte request drew {sent} bytes"
        );
    }
}

#[test]
fn a_source_that_answers_the_challenge_gets_the_full_answer() {
    let mut node = member();
    let _ = drain(&mut node);
    let client = addr(9997);
    let req = Message {
        bits: 0,
        txid: 42,
        body: Body::GetFingers,
    };
    let out = send(&mut node, client, &req);
    let ping = out
        .iter()
        .filter(|(a, _)| *a == client)
        .find_map(|(_, d)| Message::decode(d).ok())
        .filter(|m| m.body == Body::Ping);
    let Some(ping) = ping else {
        panic!("no challenge Ping sent: {out:?}");
    };
    // A forged Pong with another transaction id proves nothing.
    let forged = Message {
        bits: 0,
        txid: ping.txid ^ 1,
        body: Body::Pong {
            me: NodeRef {
                id: Id::ZERO,
                addr: client,
            },
        },
    };
    assert!(bytes_to(&send(&mut node, client, &forged), client) == 0);
    let pong = Message {
        bits: 0,
        txid: ping.txid,
        body: Body::Pong {
            me: NodeRef {
                id: Id::ZERO,
                addr: client,
            },
        },
    };
    let out = send(&mut node, client, &pong);
    let fingers = out
        .iter()
        .filter(|(a, _)| *a == client)
        .find_map(|(_, d)| Message::decode(d).ok());
    match fingers {
        Some(Message {
            txid: 42,
            body: Body::Fingers { entries, .. },
            ..
        }) => assert_eq!(entries.len(), 160),
        other => panic!("expected the finger table, got {other:?}"),
    }
    assert!(node.is_verified(Instant::ZERO, client));
    // Verified now: the next request is answered at once.
    let out = send(&mut node, client, &Message { txid: 43, ..req });
    assert!(out.iter().any(|(a, d)| *a == client && d.len() > 1000));
}

#[test]
fn a_recursive_answer_goes_to_an_unproven_origin_only_after_it_answers_a_ping() {
    let mut node = member();
    let _ = drain(&mut node);
    let hop = addr(5001); // a ring member forwarding the query
    let victim = addr(9996);
    let succ = node.successor().map(|s| s.id).unwrap_or(Id::ZERO);
    let req = Message {
        bits: 160,
        txid: 77,
        body: Body::FindRec {
            key: succ,
            origin: victim,
            path: vec![Id::ZERO; 40],
        },
    };
    let out = send(&mut node, hop, &req);
    assert_eq!(
        bytes_to(&out, hop),
        0,
        "nothing goes back to the forwarding hop"
    );
    let to_victim: Vec<Message> = out
        .iter()
        .filter(|(a, _)| *a == victim)
        .filter_map(|(_, d)| Message::decode(d).ok())
        .collect();
    assert!(
        to_victim.iter().all(|m| m.body == Body::Ping),
        "answer sent to an unproven origin: {to_victim:?}"
    );
    let Some(ping) = to_victim.first() else {
        panic!("no challenge sent to the origin");
    };
    let pong = Message {
        bits: 0,
        txid: ping.txid,
        body: Body::Pong {
            me: NodeRef {
                id: Id::ZERO,
                addr: victim,
            },
        },
    };
    let out = send(&mut node, victim, &pong);
    let answered = out
        .iter()
        .filter(|(a, _)| *a == victim)
        .filter_map(|(_, d)| Message::decode(d).ok())
        .any(|m| m.txid == 77 && matches!(m.body, Body::RecDone { .. }));
    assert!(answered, "origin proved itself but got no answer: {out:?}");
}

#[test]
fn clients_and_joining_nodes_answer_pings() {
    let mut client = ChordNode::new(Config::client(addr(9000)), Rng::new(1));
    let out = send(
        &mut client,
        addr(5000),
        &Message {
            bits: 160,
            txid: 9,
            body: Body::Ping,
        },
    );
    assert!(out.iter().any(|(a, d)| *a == addr(5000)
        && matches!(
            Message::decode(d),
            Ok(Message {
                txid: 9,
                body: Body::Pong { .. },
                ..
            })
        )));
}

#[test]
fn a_newcomer_is_still_verified_while_forged_sources_fill_the_challenge_table() {
    // The abuse suite's finding: 500 000 GetFingers from forged 127.x sources filled the
    // table of held requests (and the pending table with their challenges), so a real
    // client's first request was dropped unanswered and its lookup failed.
    let mut node = member();
    let _ = drain(&mut node);
    let req = |txid| Message {
        bits: 0,
        txid,
        body: Body::GetFingers,
    };
    for i in 0..6000u32 {
        let forged = SocketAddr::from(([127, 1, (i >> 8) as u8, i as u8], 1000));
        let out = send(&mut node, forged, &req(u64::from(i)));
        // Whatever state is left, a forged source draws no more than a 13-byte Ping.
        assert!(bytes_to(&out, forged) <= 13, "{i}");
    }
    let client = addr(9996);
    let out = send(&mut node, client, &req(77));
    assert!(bytes_to(&out, client) <= 13);
    let ping = out
        .iter()
        .filter(|(a, _)| *a == client)
        .find_map(|(_, d)| Message::decode(d).ok())
        .filter(|m| m.body == Body::Ping)
        .expect("the newcomer is challenged even with the tables full");
    let pong = Message {
        bits: 0,
        txid: ping.txid,
        body: Body::Pong {
            me: NodeRef {
                id: Id::ZERO,
                addr: client,
            },
        },
    };
    let _ = send(&mut node, client, &pong);
    assert!(node.is_verified(Instant::ZERO, client));
    // Its retry of the same request is answered in full.
    let out = send(&mut node, client, &req(77));
    assert!(out.iter().any(|(a, d)| *a == client && d.len() > 1000));
}
