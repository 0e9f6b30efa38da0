//! The key-value store over time: deletes leave tombstones, so a replica that missed a
//! delete cannot bring the key back; copies a node is no longer a replica for are dropped.

// Tests are not cores: they may touch the clock, disk and sockets.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use servent_chord::scenarios::ideal_sim;
use servent_chord::{ChordNode, Command, Config, Event, key_id, node_id};
use servent_core::{Id, Ring, Rng};
use servent_sim::{NodeId, NodeOpts, Sim};

/// The members in ring order (id, node).
fn members(s: &Sim<ChordNode>) -> Vec<(Id, NodeId)> {
    let mut v: Vec<(Id, NodeId)> = (0..s.len() as u32)
        .map(NodeId)
        .filter_map(|n| s.core(n).map(|c| (c.me().id, n)))
        .collect();
    v.sort();
    v
}

/// The key's `r` successors, the responsible node first.
fn successors_of(s: &Sim<ChordNode>, key: &[u8], r: usize) -> Vec<NodeId> {
    let m = members(s);
    let kid = key_id(Ring::FULL, key);
    let i = m.partition_point(|(id, _)| *id < kid);
    (0..r.min(m.len()))
        .map(|k| m[(i + k) % m.len()].1)
        .collect()
}

fn holders(s: &Sim<ChordNode>, key: &[u8]) -> Vec<NodeId> {
    members(s)
        .into_iter()
        .filter(|(_, n)| s.core(*n).is_some_and(|c| c.holds(key)))
        .map(|(_, n)| n)
        .collect()
}

#[test]
fn a_replica_that_missed_a_delete_does_not_bring_the_key_back() {
    let mut s = ideal_sim(12, 21, 3);
    s.run_for(Duration::from_secs(2));
    let key = b"doomed".to_vec();
    let succ = successors_of(&s, &key, 3);
    let (primary, first, second) = (succ[0], succ[1], succ[2]);
    let client = (0..12u32)
        .map(NodeId)
        .find(|n| !succ.contains(n))
        .unwrap_or(NodeId(0));
    s.command(
        client,
        Command::Put {
            id: 1,
            key: key.clone(),
            value: b"v1".to_vec(),
            start: None,
        },
    );
    s.run_for(Duration::from_secs(3));
    assert_eq!(holders(&s, &key), {
        let mut v = succ.clone();
        v.sort_by_key(|n| s.core(*n).map(|c| c.me().id));
        v
    });
    // The second replica is cut off while the key is deleted.
    s.partition(|n| u16::from(n == second));
    s.command(
        client,
        Command::Delete {
            id: 2,
            key: key.clone(),
            start: None,
        },
    );
    s.run_for(Duration::from_secs(3));
    assert!(s.take_events().iter().any(|(_, _, e)| matches!(
        e,
        Event::Deleted {
            id: 2,
            existed: true
        }
    )));
    assert!(s.core(second).unwrap().holds(&key), "it missed the delete");
    s.heal();
    s.run_for(Duration::from_secs(30));
    // The two nodes that saw the delete fail: the one that missed it is now responsible.
    s.kill(primary);
    s.kill(first);
    s.run_for(Duration::from_secs(30));
    s.command(
        client,
        Command::Get {
            id: 3,
            key: key.clone(),
            start: None,
        },
    );
    s.run_for(Duration::from_secs(5));
    let got: Vec<Option<Vec<u8>>> = s
        .take_events()
        .into_iter()
        .filter_map(|(_, _, e)| match e {
            Event::Got { id: 3, value, .. } => Some(value),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![None], "the deleted key came back");
    assert!(holders(&s, &key).is_empty(), "no live node holds it");
}

#[test]
fn a_put_after_a_delete_is_stored_and_replicated_again() {
    let mut s = ideal_sim(10, 22, 3);
    s.run_for(Duration::from_secs(2));
    let key = b"phoenix".to_vec();
    for (id, cmd) in [
        (
            1,
            Command::Put {
                id: 1,
                key: key.clone(),
                value: b"a".to_vec(),
                start: None,
            },
        ),
        (
            2,
            Command::Delete {
                id: 2,
                key: key.clone(),
                start: None,
            },
        ),
        (
            3,
            Command::Put {
                id: 3,
                key: key.clone(),
                value: b"b".to_vec(),
                start: None,
            },
        ),
    ] {
        assert!(id > 0);
        s.command(NodeId(0), cmd);
        s.run_for(Duration::from_secs(3));
    }
    s.run_for(Duration::from_secs(25));
    let mut want = successors_of(&s, &key, 3);
    want.sort_by_key(|n| s.core(*n).map(|c| c.me().id));
    assert_eq!(
        holders(&s, &key),
        want,
        "all three copies hold the new value"
    );
    s.command(
        NodeId(0),
        Command::Get {
            id: 4,
            key: key.clone(),
            start: None,
        },
    );
    s.run_for(Duration::from_secs(3));
    assert!(s.take_events().iter().any(|(_, _, e)| matches!(
        e,
        Event::Got { id: 4, value: Some(v), .. } if v == b"b"
    )));
}

#[test]
fn copies_a_node_no_longer_replicates_are_dropped_after_the_lease() {
    let r = 2;
    let mut s = ideal_sim(8, 23, r);
    s.run_for(Duration::from_secs(2));
    let keys: Vec<Vec<u8>> = (0..60).map(|k| format!("item-{k}").into_bytes()).collect();
    for (k, key) in keys.iter().enumerate() {
        s.command(
            NodeId(0),
            Command::Put {
                id: k as u64,
                key: key.clone(),
                value: b"v".to_vec(),
                start: None,
            },
        );
    }
    s.run_for(Duration::from_secs(5));
    // Eight more nodes join: most keys get new successors.
    let ring = Ring::FULL;
    for j in 0..8u64 {
        let addr = std::net::SocketAddr::from((
            std::net::Ipv4Addr::from(0x7f00_0001u32 + s.len() as u32),
            6000,
        ));
        let mut cfg = Config::new(ring, node_id(ring, addr), addr);
        cfg.succ_list_len = r;
        cfg.replicate_every = Duration::from_secs(10);
        let n = s.add_node(ChordNode::new(cfg, Rng::new(500 + j)), NodeOpts::default());
        assert_eq!(s.addr(n), addr);
        s.command(
            n,
            Command::Join {
                id: 100 + j,
                via: s.addr(NodeId(j as u32)),
            },
        );
        s.run_for(Duration::from_secs(2));
    }
    s.run_for(Duration::from_secs(120));
    let mut extra = 0;
    for key in &keys {
        let mut want = successors_of(&s, key, r);
        want.sort_by_key(|n| s.core(*n).map(|c| c.me().id));
        let have = holders(&s, key);
        for w in &want {
            assert!(
                have.contains(w),
                "a successor lost its copy: want {want:?} have {have:?} members {:?}",
                members(&s)
                    .iter()
                    .map(|(_, n)| (n.0, s.core(*n).map(|c| (c.is_member(), c.stored()))))
                    .collect::<Vec<_>>()
            );
        }
        extra += have.len() - want.len();
    }
    assert_eq!(
        extra, 0,
        "stale copies remain on nodes that are not among the r successors"
    );
}

mod single_node {
    use std::net::SocketAddr;
    use std::time::Duration;

    use servent_chord::{Body, ChordNode, Command, Config, Event, Item, Message};
    use servent_core::{Core, Input, Instant, Ring, Rng};

    fn node(max_tombstones: usize) -> ChordNode {
        let ring = Ring::new(16).unwrap_or(Ring::FULL);
        let addr = SocketAddr::from(([127, 0, 0, 1], 7000));
        let mut cfg = Config::new(ring, ring.id(100), addr);
        cfg.max_tombstones = max_tombstones;
        cfg.tombstone_ttl = Duration::from_secs(60);
        let mut n = ChordNode::new(cfg, Rng::new(3));
        n.create(Instant::ZERO);
        n
    }

    fn run(n: &mut ChordNode, now: Instant, cmd: Command) -> Vec<Event> {
        n.handle_input(now, Input::Command(cmd));
        while n.poll_transmit().is_some() {}
        std::iter::from_fn(|| n.poll_event()).collect()
    }

    fn transfer(n: &mut ChordNode, now: Instant, item: Item) {
        let data = Message {
            bits: 16,
            txid: 5,
            body: Body::Transfer { items: vec![item] },
        }
        .encode();
        let from = SocketAddr::from(([127, 0, 0, 1], 7001));
        n.handle_input(now, Input::Datagram { from, data: &data });
        while n.poll_transmit().is_some() {}
    }

    fn put(id: u64, key: &[u8], value: &[u8]) -> Command {
        Command::Put {
            id,
            key: key.to_vec(),
            value: value.to_vec(),
            start: None,
        }
    }

    fn delete(id: u64, key: &[u8]) -> Command {
        Command::Delete {
            id,
            key: key.to_vec(),
            start: None,
        }
    }

    #[test]
    fn a_stale_copy_pushed_after_a_delete_is_refused_and_a_newer_one_taken() {
        let mut n = node(100);
        let t = Instant::from_secs(1);
        run(&mut n, t, put(1, b"k", b"old")); // version 1
        let ev = run(&mut n, t, delete(2, b"k")); // tombstone at version 2
        assert!(ev.contains(&Event::Deleted {
            id: 2,
            existed: true
        }));
        for version in [1, 2] {
            transfer(
                &mut n,
                t,
                Item {
                    key: b"k".to_vec(),
                    version,
                    value: Some(b"old".to_vec()),
                },
            );
            assert!(!n.holds(b"k"), "version {version} brought the key back");
        }
        transfer(
            &mut n,
            t,
            Item {
                key: b"k".to_vec(),
                version: 3,
                value: Some(b"new".to_vec()),
            },
        );
        assert!(n.holds(b"k"), "a put after the delete is taken");
        assert_eq!(n.tombstones(), 0);
        // And an older tombstone does not delete the newer value.
        transfer(
            &mut n,
            t,
            Item {
                key: b"k".to_vec(),
                version: 2,
                value: None,
            },
        );
        assert!(n.holds(b"k"));
    }

    #[test]
    fn tombstones_are_bounded_in_number_and_expire() {
        let mut n = node(4);
        let t = Instant::from_secs(1);
        for k in 0..10u64 {
            run(&mut n, t, delete(k, format!("gone-{k}").as_bytes()));
            assert!(n.tombstones() <= 4, "{} tombstones", n.tombstones());
        }
        assert_eq!(n.tombstones(), 4);
        // The newest survive: a stale copy of the last key deleted is refused.
        transfer(
            &mut n,
            t,
            Item {
                key: b"gone-9".to_vec(),
                version: 1,
                value: Some(b"x".to_vec()),
            },
        );
        assert!(!n.holds(b"gone-9"));
        // After the TTL (60 s) the next replication period drops them all.
        let later = Instant::from_secs(70);
        n.handle_timeout(later);
        while n.poll_transmit().is_some() {}
        assert_eq!(n.tombstones(), 0);
    }
}
