//! The core under `servent-sim`: the lecture's rings built by joins, replicated keys
//! surviving failures, determinism, and the scenarios at small sizes.

// Tests are not cores: they may touch the clock, disk and sockets.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use servent_chord::scenarios::{churn_run, ideal_sim};
use servent_chord::{ChordNode, Command, Config, Event, node_id};
use servent_core::{Id, Instant, Ring, Rng};
use servent_sim::{Dist, NodeId, NodeOpts, ScenarioOpts, Sim, SimConfig};

fn sim(seed: u64) -> Sim<ChordNode> {
    Sim::new(SimConfig {
        seed,
        latency_ms: Dist::lognormal_median(20.0, 0.3),
        trace: true,
        ..SimConfig::default()
    })
}

fn addr_of(i: usize) -> std::net::SocketAddr {
    std::net::SocketAddr::from((std::net::Ipv4Addr::from(0x7f00_0001u32 + i as u32), 6000))
}

/// Adds nodes with the given ids (or hashed addresses when `ids` is `None`) one by one, each
/// joining through node 0, and runs until stable.
fn join_ring(sim: &mut Sim<ChordNode>, ring: Ring, ids: &[Option<u64>], r: usize) {
    for (k, id) in ids.iter().enumerate() {
        let addr = addr_of(sim.len());
        let id = id
            .map(|v| ring.id(v))
            .unwrap_or_else(|| node_id(ring, addr));
        let mut cfg = Config::new(ring, id, addr);
        cfg.succ_list_len = r;
        cfg.rpc_timeout = Duration::from_millis(400);
        // One finger per 250 ms (the default is 100 ms) converges well within the 40 s
        // below and keeps the 50-node test cheap to simulate.
        cfg.fix_fingers_every = Duration::from_millis(250);
        let mut node = ChordNode::new(cfg, Rng::new(77).fork(k as u64));
        if k == 0 {
            node.create(sim.now());
        }
        let n = sim.add_node(node, NodeOpts::default());
        assert_eq!(sim.addr(n), addr);
        if k > 0 {
            sim.command(
                n,
                Command::Join {
                    id: k as u64,
                    via: sim.addr(NodeId(0)),
                },
            );
            sim.run_for(Duration::from_millis(1500));
        }
    }
    sim.run_for(Duration::from_secs(40));
}

/// Runs for at most `max` of simulated time, in 250 ms steps, stopping once `want` of the
/// events taken match `counts`; returns every event taken. (The outcomes are those of the
/// full run; only the idle maintenance afterwards is skipped.)
fn run_until_events(
    sim: &mut Sim<ChordNode>,
    max: Duration,
    want: usize,
    counts: impl Fn(&Event) -> bool,
) -> Vec<(Instant, NodeId, Event)> {
    let end = sim.now() + max;
    let mut out = Vec::new();
    let mut seen = 0;
    while sim.now() < end && seen < want {
        sim.run_for(Duration::from_millis(250));
        for ev in sim.take_events() {
            if counts(&ev.2) {
                seen += 1;
            }
            out.push(ev);
        }
    }
    out
}

fn lookup(sim: &mut Sim<ChordNode>, at: usize, key: Id) -> (Vec<u64>, u64) {
    sim.command(
        NodeId(at as u32),
        Command::Lookup {
            id: 99,
            key,
            start: None,
        },
    );
    sim.run_for(Duration::from_secs(2));
    sim.take_events()
        .into_iter()
        .find_map(|(_, _, e)| match e {
            Event::LookupDone {
                id: 99,
                route,
                responsible,
                ..
            } => Some((
                route.iter().map(|r| r.low_u64()).collect(),
                responsible.id.low_u64(),
            )),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn lecture_rings_converge_and_route_in_the_simulator() {
    let ring = Ring::new(5).unwrap();
    let mut s = sim(1);
    let a: Vec<Option<u64>> = [1, 4, 8, 11, 14, 17].into_iter().map(Some).collect();
    join_ring(&mut s, ring, &a, 3);
    let n8 = s.core(NodeId(2)).unwrap();
    let table: Vec<(u64, u64)> = (0..5)
        .map(|i| {
            (
                n8.finger_start(i).low_u64(),
                n8.fingers()[i as usize].map_or(99, |f| f.id.low_u64()),
            )
        })
        .collect();
    assert_eq!(table, vec![(9, 11), (10, 11), (12, 14), (16, 17), (24, 1)]);
    assert_eq!(lookup(&mut s, 2, ring.id(3)), (vec![8, 1], 4));

    let mut s = sim(2);
    let b: Vec<Option<u64>> = [1, 4, 9, 11, 14, 18, 20, 21, 28]
        .into_iter()
        .map(Some)
        .collect();
    join_ring(&mut s, ring, &b, 3);
    assert_eq!(lookup(&mut s, 0, ring.id(26)), (vec![1, 18, 20, 21], 28));
    assert_eq!(lookup(&mut s, 8, ring.id(12)), (vec![28, 4, 9, 11], 14));
}

#[test]
fn every_key_survives_killing_a_fifth_of_a_50_node_ring() {
    let ring = Ring::FULL;
    let mut s = sim(3);
    join_ring(&mut s, ring, &[None; 50], 6);
    let keys = 200u64;
    for k in 0..keys {
        let at = NodeId((k % 50) as u32);
        s.command(
            at,
            Command::Put {
                id: k,
                key: format!("key-{k}").into_bytes(),
                value: format!("value-{k}").into_bytes(),
                start: None,
            },
        );
    }
    let stored = run_until_events(&mut s, Duration::from_secs(15), keys as usize, |e| {
        matches!(e, Event::Stored { .. } | Event::Failed { .. })
    })
    .iter()
    .filter(|(_, _, e)| matches!(e, Event::Stored { .. }))
    .count();
    assert_eq!(stored, keys as usize);
    // Replication of the last puts is under way: give it the period the full run gave.
    s.run_for(Duration::from_secs(6));
    let mut order: Vec<u32> = (1..50).collect();
    Rng::new(5).shuffle(&mut order);
    for &v in order.iter().take(10) {
        s.kill(NodeId(v));
    }
    s.run_for(Duration::from_secs(30));
    let live: Vec<u32> = (0..50).filter(|&i| s.is_alive(NodeId(i))).collect();
    for k in 0..keys {
        let at = NodeId(live[(k as usize) % live.len()]);
        s.command(
            at,
            Command::Get {
                id: 1000 + k,
                key: format!("key-{k}").into_bytes(),
                start: None,
            },
        );
    }
    let events = run_until_events(&mut s, Duration::from_secs(20), keys as usize, |e| {
        matches!(e, Event::Got { .. } | Event::Failed { .. })
    });
    let mut found = 0;
    for (_, _, e) in events {
        if let Event::Got {
            id, value: Some(v), ..
        } = e
        {
            assert_eq!(v, format!("value-{}", id - 1000).into_bytes());
            found += 1;
        }
    }
    assert_eq!(found, keys);
}

#[test]
fn graceful_leave_hands_keys_to_the_successor() {
    let ring = Ring::FULL;
    let mut s = sim(4);
    join_ring(&mut s, ring, &[None; 8], 1); // r = 1: no replicas, only the hand-over keeps keys
    for k in 0..40u64 {
        s.command(
            NodeId(0),
            Command::Put {
                id: k,
                key: format!("k{k}").into_bytes(),
                value: vec![k as u8],
                start: None,
            },
        );
    }
    s.run_for(Duration::from_secs(5));
    let leaver = (1..8u32)
        .max_by_key(|&i| s.core(NodeId(i)).map_or(0, |c| c.stored()))
        .unwrap();
    assert!(s.core(NodeId(leaver)).unwrap().stored() > 0);
    s.command(NodeId(leaver), Command::Leave { id: 500 });
    s.run_for(Duration::from_secs(10));
    assert!(
        s.take_events()
            .iter()
            .any(|(_, _, e)| matches!(e, Event::Left { id: 500 }))
    );
    s.kill(NodeId(leaver));
    s.run_for(Duration::from_secs(10));
    for k in 0..40u64 {
        s.command(
            NodeId(0),
            Command::Get {
                id: 100 + k,
                key: format!("k{k}").into_bytes(),
                start: None,
            },
        );
    }
    s.run_for(Duration::from_secs(10));
    let found = s
        .take_events()
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::Got { value: Some(_), .. }))
        .count();
    assert_eq!(found, 40);
}

#[test]
fn same_seed_gives_the_same_run() {
    let run = || {
        let mut s = ideal_sim(64, 9, 6);
        for k in 0..50 {
            s.command(
                NodeId(k % 64),
                Command::Lookup {
                    id: k.into(),
                    key: Id::hash(&[k as u8]),
                    start: None,
                },
            );
        }
        s.run_until(Instant::from_secs(20));
        s.trace_hash()
    };
    let _ = SimConfig::default();
    assert_eq!(run(), run());
}

#[test]
fn lookups_on_an_ideal_ring_are_all_correct_and_short() {
    let mut s = ideal_sim(256, 11, 16);
    let mut members: Vec<(Id, u32)> = (0..256)
        .map(|i| (s.core(NodeId(i)).unwrap().me().id, i))
        .collect();
    members.sort();
    let mut rng = Rng::new(12);
    let mut want = Vec::new();
    for k in 0..300u64 {
        let key = Id::random(&mut rng);
        let i = members.partition_point(|(id, _)| *id < key);
        want.push(members.get(i).unwrap_or(&members[0]).0);
        s.command(
            NodeId((k % 256) as u32),
            Command::Lookup {
                id: k,
                key,
                start: None,
            },
        );
    }
    let events = run_until_events(&mut s, Duration::from_secs(10), 300, |e| {
        matches!(e, Event::LookupDone { .. } | Event::Failed { .. })
    });
    let mut hops = 0;
    let mut done = 0;
    for (_, _, e) in events {
        if let Event::LookupDone {
            id,
            route,
            responsible,
            ..
        } = e
        {
            assert_eq!(responsible.id, want[id as usize]);
            hops += route.len() - 1;
            done += 1;
        }
    }
    assert_eq!(done, 300);
    let mean = hops as f64 / 300.0;
    assert!(
        (3.0..5.0).contains(&mean),
        "mean path length {mean} for N = 256 (½·log2 N = 4)"
    );
}

#[test]
fn churn_at_small_scale_keeps_most_lookups_correct() {
    let r = churn_run(48, 0.02, 5, 240);
    assert!(r.lookups >= 150);
    assert!((r.failed as f64) < 0.2 * r.lookups as f64, "{r:?}");
}

#[test]
fn scenarios_run_at_small_sizes() {
    let dir = std::env::temp_dir().join(format!("servent-chord-scen-{}", std::process::id()));
    for (sc, nodes) in servent_chord::scenarios()
        .into_iter()
        .zip([16usize, 8, 100, 16])
    {
        let opts = ScenarioOpts {
            params: Default::default(),
            nodes: Some(nodes),
            seed: 1,
            out: dir.clone(),
        };
        if sc.name() == "chord-churn" {
            continue; // minutes of simulated time per rate; exercised by churn_run above
        }
        let rep = sc
            .run(&opts)
            .unwrap_or_else(|e| panic!("{}: {e}", sc.name()));
        assert!(!rep.headline.is_empty(), "{}", sc.name());
        rep.write(&dir).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lookups_right_after_a_tenth_of_the_ring_crashes_still_find_the_live_successor() {
    let n = 200;
    let mut s = ideal_sim(n, 3, 16);
    s.run_for(Duration::from_secs(3));
    let mut order: Vec<u32> = (0..n as u32).collect();
    Rng::new(4).shuffle(&mut order);
    for &v in order.iter().take(n / 10) {
        s.kill(NodeId(v));
    }
    let mut live: Vec<(Id, u32)> = (0..n as u32)
        .filter_map(|i| s.core(NodeId(i)).map(|c| (c.me().id, i)))
        .collect();
    live.sort();
    let mut rng = Rng::new(5);
    let mut want = Vec::new();
    for k in 0..300u64 {
        let (_, at) = live[rng.below(live.len() as u64) as usize];
        let key = Id::random(&mut rng);
        let i = live.partition_point(|(id, _)| *id < key);
        want.push(live.get(i).unwrap_or(&live[0]).0);
        s.command(
            NodeId(at),
            Command::Lookup {
                id: k,
                key,
                start: None,
            },
        );
    }
    let events = run_until_events(&mut s, Duration::from_secs(30), 300, |e| {
        matches!(e, Event::LookupDone { .. } | Event::Failed { .. })
    });
    let mut correct = 0;
    for (_, _, e) in events {
        if let Event::LookupDone {
            id, responsible, ..
        } = e
        {
            assert_eq!(responsible.id, want[id as usize], "lookup {id}");
            correct += 1;
        }
    }
    assert_eq!(
        correct, 300,
        "every lookup ends at the key's live successor"
    );
}

#[test]
fn a_joining_node_receives_the_keys_it_becomes_responsible_for() {
    let ring = Ring::FULL;
    let mut s = sim(6);
    join_ring(&mut s, ring, &[None; 8], 2);
    let keys: Vec<Vec<u8>> = (0..80).map(|k| format!("item-{k}").into_bytes()).collect();
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
    // A ninth node joins; its id is chosen to take over part of the ring.
    let addr = addr_of(s.len());
    let mut cfg = Config::new(ring, node_id(ring, addr), addr);
    cfg.succ_list_len = 2;
    let new = s.add_node(ChordNode::new(cfg, Rng::new(99)), NodeOpts::default());
    s.command(
        new,
        Command::Join {
            id: 900,
            via: s.addr(NodeId(3)),
        },
    );
    s.run_for(Duration::from_secs(20));
    let mut members: Vec<(Id, NodeId)> = (0..s.len() as u32)
        .map(NodeId)
        .filter_map(|n| s.core(n).map(|c| (c.me().id, n)))
        .collect();
    members.sort();
    let mut moved = 0;
    for key in &keys {
        let kid = servent_chord::key_id(ring, key);
        let i = members.partition_point(|(id, _)| *id < kid);
        let owner = members.get(i).unwrap_or(&members[0]).1;
        assert!(
            s.core(owner).unwrap().holds(key),
            "the key's successor holds it"
        );
        if owner == new {
            moved += 1;
        }
    }
    let held = s.core(new).unwrap().stored();
    assert!(
        moved == 0 || held >= moved,
        "the new node got its {moved} keys (holds {held})"
    );
    assert!(
        moved > 0,
        "this seed gives the new node a share of the keys"
    );
}

#[test]
fn chord_scale_joins_stabilizes_and_routes_at_600_nodes() {
    let opts = ScenarioOpts::new(Some(600), 3, std::env::temp_dir())
        .with_param("phase_s", "12")
        .with_param("lookups", "200")
        .with_param("joins", "0.05")
        .with_param("memory_mib", "4096");
    let scale = servent_chord::scenarios()
        .into_iter()
        .find(|s| s.name() == "chord-scale")
        .unwrap();
    let rep = scale.run(&opts).unwrap();
    let f = |k: &str| rep.get(k).unwrap().parse::<f64>().unwrap();
    assert_eq!(f("joined"), f("joiners"), "every protocol join completes");
    assert!(f("failed_after_joins") < 0.01, "{:?}", rep.headline);
    assert!(f("failed_after_stabilizing") < 0.01, "{:?}", rep.headline);
    let (h, want) = (f("mean_hops_after_stabilizing"), f("half_log2_live"));
    assert!((h - want).abs() < 0.6, "mean path {h} vs ½·log2 N = {want}");
    // A run that cannot fit is refused with the figure, not started.
    let big = ScenarioOpts::new(Some(1_000_000), 3, std::env::temp_dir())
        .with_param("memory_mib", "1024");
    let e = scale.run(&big).err().unwrap().to_string();
    assert!(e.contains("more than the 1024 MiB available"), "{e}");
}

#[test]
fn a_two_node_ring_split_by_a_partition_joins_again_when_it_heals() {
    // scripts/abuse.d/chord.py's finding: a flood that fills the socket buffers makes two
    // neighbours time each other out; each then believed itself alone for good.
    let ring = Ring::new(5).unwrap();
    let mut s = sim(21);
    join_ring(&mut s, ring, &[Some(1), Some(4)], 3);
    let succ = |s: &Sim<ChordNode>, i: u32| {
        s.core(NodeId(i))
            .and_then(|c| c.successor())
            .map(|n| n.id.low_u64())
    };
    assert_eq!((succ(&s, 0), succ(&s, 1)), (Some(4), Some(1)));
    s.partition(|n| n.0 as u16);
    s.run_for(Duration::from_secs(10));
    let pred = |s: &Sim<ChordNode>, i: u32| s.core(NodeId(i)).and_then(|c| c.predecessor());
    assert_eq!(
        (pred(&s, 0), pred(&s, 1)),
        (None, None),
        "each timed the other out"
    );
    s.heal();
    s.run_for(Duration::from_secs(10));
    assert_eq!(
        (succ(&s, 0), succ(&s, 1)),
        (Some(4), Some(1)),
        "the ring is whole again"
    );
}
