//! Hostile input is normal input: random sequences of datagrams (garbage and well-formed
//! messages with arbitrary contents), commands and timer firings never panic a ring member,
//! and its tables stay within their bounds.

// Tests are not cores: they may touch the clock, disk and sockets.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;

use proptest::prelude::*;
use servent_chord::{Body, ChordNode, Command, Config, Item, Message, NodeRef};
use servent_core::{Core, Id, Input, Instant, Ring, Rng};

#[derive(Debug, Clone)]
enum Op {
    Garbage(Vec<u8>),
    Msg(u8, Body),
    Lookup(u64),
    Put(Vec<u8>),
    Tick(u16),
}

fn arb_node() -> impl Strategy<Value = NodeRef> {
    (any::<u8>(), 1u16..6).prop_map(|(id, p)| NodeRef {
        id: Id::from_u64(u64::from(id)),
        addr: SocketAddr::from(([127, 0, 0, 1], 4000 + p)),
    })
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeRef>> {
    proptest::collection::vec(arb_node(), 0..6)
}

fn arb_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        arb_node().prop_map(|me| Body::Notify { me }),
        (arb_node(), proptest::option::of(arb_node()), arb_nodes())
            .prop_map(|(me, pred, succs)| Body::Neighbors { me, pred, succs }),
        (arb_node(), proptest::option::of(arb_node()), arb_nodes())
            .prop_map(|(me, pred, succs)| Body::Leaving { me, pred, succs }),
        (arb_node(), any::<bool>(), arb_nodes()).prop_map(|(me, done, nodes)| Body::StepReply {
            me,
            done,
            nodes
        }),
        any::<u8>().prop_map(|k| Body::FindStep {
            key: Id::from_u64(u64::from(k))
        }),
        (
            any::<u8>(),
            proptest::collection::vec(any::<u8>().prop_map(|b| Id::from_u64(u64::from(b))), 0..70)
        )
            .prop_map(|(k, path)| Body::FindRec {
                key: Id::from_u64(u64::from(k)),
                origin: SocketAddr::from(([127, 0, 0, 1], 4009)),
                path
            }),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 0..8),
                0u64..4,
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8))
            ),
            0..5
        )
        .prop_map(|items| Body::Transfer {
            items: items
                .into_iter()
                .map(|(key, version, value)| Item {
                    key,
                    version,
                    value
                })
                .collect()
        }),
        Just(Body::GetFingers),
        Just(Body::Ping),
        arb_node().prop_map(|me| Body::Pong { me }),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Garbage),
        (0u8..3, arb_body()).prop_map(|(b, m)| Op::Msg(b, m)),
        any::<u64>().prop_map(Op::Lookup),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Op::Put),
        any::<u16>().prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_inputs_never_panic_a_member_and_tables_stay_bounded(ops in proptest::collection::vec(arb_op(), 1..80)) {
        let ring = Ring::new(8).unwrap();
        let me: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 4000));
        let mut cfg = Config::new(ring, ring.id(100), me);
        cfg.succ_list_len = 4;
        cfg.max_tombstones = 3;
        let mut node = ChordNode::new(cfg, Rng::new(1));
        node.create(Instant::ZERO);
        let mut now = Instant::ZERO;
        for (i, op) in ops.into_iter().enumerate() {
            let from = SocketAddr::from(([127, 0, 0, 1], 4001 + (i % 5) as u16));
            match op {
                Op::Garbage(b) => node.handle_input(now, Input::Datagram { from, data: &b }),
                Op::Msg(bits, body) => {
                    // Responses get the txid of something we may have sent.
                    let data = Message { bits: [0, 8, 5][bits as usize % 3], txid: i as u64, body }.encode();
                    node.handle_input(now, Input::Datagram { from, data: &data });
                }
                Op::Lookup(k) => node.handle_input(now, Input::Command(Command::Lookup { id: i as u64, key: Id::from_u64(k), start: None })),
                Op::Put(k) => node.handle_input(now, Input::Command(Command::Put { id: i as u64, key: k.clone(), value: k, start: None })),
                Op::Tick(ms) => {
                    now += std::time::Duration::from_millis(u64::from(ms));
                    node.handle_timeout(now);
                }
            }
            let mut sent = 0;
            while node.poll_transmit().is_some() { sent += 1; }
            while node.poll_event().is_some() {}
            prop_assert!(sent < 10_000);
            prop_assert!(node.successors().len() <= 4);
            prop_assert_eq!(node.fingers().len(), 8);
            prop_assert!(node.in_flight() <= servent_chord::node::MAX_PENDING);
            prop_assert!(node.tombstones() <= 3);
        }
    }
}

#[test]
fn a_full_store_refuses_puts_instead_of_growing() {
    use servent_chord::harness::Harness;
    use servent_chord::{Event, FailReason};
    let ring = Ring::new(8).unwrap();
    let mut h = Harness::new(1, std::time::Duration::from_millis(1));
    let mut cfg = Config::new(ring, ring.id(1), h.next_addr());
    cfg.max_store_bytes = 100;
    let mut node = ChordNode::new(cfg, Rng::new(2));
    node.create(h.now());
    let i = h.add(node);
    for k in 0..10u64 {
        h.command(
            i,
            Command::Put {
                id: k,
                key: vec![k as u8; 10],
                value: vec![0; 30],
                start: None,
            },
        );
    }
    h.run_for(std::time::Duration::from_millis(100));
    let events: Vec<Event> = h.take_events().into_iter().map(|(_, _, e)| e).collect();
    let stored = events
        .iter()
        .filter(|e| matches!(e, Event::Stored { .. }))
        .count();
    let refused = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Failed {
                    reason: FailReason::Refused,
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        (stored, refused),
        (2, 8),
        "40 bytes per pair, 100 bytes allowed"
    );
    assert_eq!(h.node(i).map(|n| n.stored()), Some(2));
}
