//! Contacts we hand out are nodes that answered us (issue 16): a node that only queried us
//! (a forged address, a short-lived client) is pinged first and stays out of every answer
//! until it replies; BEP 43 read-only queriers are answered but never stored; a read-only
//! node marks its queries `ro=1` and answers nothing.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests are not cores

use std::net::SocketAddr;

use servent_core::{Core, Id, Input, Instant, Rng, Transmit};
use servent_kademlia::krpc::{self, Body, Message, Query, Response};
use servent_kademlia::{Command, Config, Dht};

const B: Id = Id([0x20; 20]);
const Q: Id = Id([0x21; 20]);
const R: Id = Id([0x99; 20]);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Hands `m` to `b` from `from`; returns every datagram `b` sent (to, message).
fn send(b: &mut Dht, now: Instant, from: SocketAddr, m: &Message) -> Vec<(SocketAddr, Message)> {
    let data = m.encode();
    b.handle_input(now, Input::Datagram { from, data: &data });
    let mut out = Vec::new();
    while let Some(t) = b.poll_transmit() {
        if let Transmit::Datagram { to, data } = t {
            out.push((to, krpc::decode(&data).unwrap()));
        }
    }
    out
}

fn find_node(from: Id, target: Id, ro: bool) -> Message {
    let mut m = Message::query(b"fn", Query::FindNode { id: from, target });
    m.read_only = ro;
    m
}

fn answered_nodes(out: &[(SocketAddr, Message)], to: SocketAddr) -> Vec<Id> {
    out.iter()
        .find_map(|(t, m)| match &m.body {
            Body::Response(r) if *t == to && m.tid == b"fn" => {
                Some(r.nodes.iter().map(|n| n.id).collect())
            }
            _ => None,
        })
        .expect("an answer")
}

#[test]
fn a_node_that_only_queried_us_is_not_handed_out_until_it_answers_our_ping() {
    let mut b = Dht::new(B, Config::default(), Rng::new(1));
    let (q_addr, r_addr) = (addr("127.0.0.21:6881"), addr("127.0.0.99:6881"));
    let now = Instant::ZERO;
    // Q queries us: answered, and pinged
    let out = send(&mut b, now, q_addr, &find_node(Q, Q, false));
    let ping = out
        .iter()
        .find(|(to, m)| *to == q_addr && matches!(m.body, Body::Query(Query::Ping { .. })))
        .map(|(_, m)| m.tid.clone())
        .expect("the querier is pinged");
    // R asks for the nodes closest to Q: Q is not among them yet
    let out = send(&mut b, now, r_addr, &find_node(R, Q, false));
    assert!(!answered_nodes(&out, r_addr).contains(&Q));
    // Q answers the ping: now it is a verified contact
    let pong = Message::response(
        &ping,
        Response {
            id: Q,
            ..Response::default()
        },
    );
    send(&mut b, now, q_addr, &pong);
    let out = send(&mut b, now, r_addr, &find_node(R, Q, false));
    assert_eq!(answered_nodes(&out, r_addr).first(), Some(&Q));
}

#[test]
fn a_read_only_querier_is_answered_but_never_pinged_or_stored() {
    let mut b = Dht::new(B, Config::default(), Rng::new(1));
    let q_addr = addr("127.0.0.21:6881");
    let out = send(&mut b, Instant::ZERO, q_addr, &find_node(Q, Q, true));
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(matches!(out[0].1.body, Body::Response(_)));
    assert_eq!(b.table().len(), 0);
    assert_eq!(b.stats().verify_pings, 0);
}

#[test]
fn a_read_only_node_marks_its_queries_and_answers_none() {
    let cfg = Config {
        read_only: true,
        ..Config::default()
    };
    let mut a = Dht::new(Q, cfg, Rng::new(2));
    let other = addr("127.0.0.20:6881");
    a.handle_input(
        Instant::ZERO,
        Input::Command(Command::Ping { id: 1, addr: other }),
    );
    let Some(Transmit::Datagram { data, .. }) = a.poll_transmit() else {
        panic!("no ping sent");
    };
    let m = krpc::decode(&data).unwrap();
    assert!(
        m.read_only,
        "BEP 43: ro=1 in every query of a read-only node"
    );
    let out = send(&mut a, Instant::ZERO, other, &find_node(B, B, false));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(a.stats().read_only_dropped, 1);
}
