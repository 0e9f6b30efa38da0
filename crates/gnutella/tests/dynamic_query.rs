//! Dynamic querying on real ultrapeer cores in the in-memory harness (10 ms per hop): a
//! leaf's query is probed with a low TTL to a few ultrapeers, then widened one connection
//! per round with the TTL the results so far call for, and stops when enough results came
//! back, when every connection was used, or when its lifetime is over. Also the query
//! status vendor message (BEAR 11) codec.

// A test, not a core: it may use the disk, sockets and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use proptest::prelude::*;
use servent_gnutella::harness::Net;
use servent_gnutella::servent::Role;
use servent_gnutella::wire::{
    HEADER_LEN, QUERY_STATUS_STOP, VendorError, VendorHead, encode_query_status, query_status,
};
use servent_gnutella::{Command, Config, Event, Guid, Hit, SharedFile};

const U: Role = Role::Ultrapeer;
const L: Role = Role::Leaf;

/// Node 0: the ultrapeer under test; node 1: its leaf, which searches; nodes 2..=7: the
/// ultrapeer's six mesh neighbours.
const FIRST: std::ops::RangeInclusive<usize> = 2..=7;

fn share(net: &mut Net, n: usize, name: &str) {
    net.command(
        n,
        Command::Share {
            id: 0,
            files: vec![SharedFile {
                index: 1,
                name: name.into(),
                size: 1000,
                sha1: None,
            }],
        },
    );
}

fn build(roles: &[Role], tweak: impl Fn(usize, &mut Config)) -> Net {
    Net::new(roles.len(), 7, |i, c| {
        c.role = roles[i];
        c.qrp_slots = 1 << 12;
        // Raw vendor messages are written by the test: no compression.
        c.deflate = false;
        c.dq_hop_wait = Duration::from_secs(1);
        tweak(i, c);
    })
}

fn seen(net: &Net, nodes: impl IntoIterator<Item = usize>) -> usize {
    nodes
        .into_iter()
        .filter(|n| net.node(*n).stats().queries_seen > 0)
        .count()
}

fn hits(net: &Net, node: usize, search: u64) -> Vec<Hit> {
    net.events
        .iter()
        .filter(|(_, n, _)| *n == node)
        .filter_map(|(_, _, e)| match e {
            Event::Hit { search: s, hit } if *s == search => Some(hit.clone()),
            _ => None,
        })
        .collect()
}

fn search(net: &mut Net, node: usize, id: u64, ttl: u8) -> Guid {
    net.command(
        node,
        Command::Search {
            id,
            query: "pixies debaser".into(),
            ttl: Some(ttl),
        },
    );
    net.events
        .iter()
        .rev()
        .find_map(|(_, n, e)| match e {
            Event::SearchStarted { id: i, guid, .. } if *n == node && *i == id => Some(*guid),
            _ => None,
        })
        .unwrap_or(Guid([0; 16]))
}

/// Six neighbours, each with a leaf sharing the file (nodes 8..=13).
fn popular(tweak: impl Fn(usize, &mut Config)) -> Net {
    let mut roles = vec![U, L];
    roles.extend([U; 6]);
    roles.extend([L; 6]);
    let mut net = build(&roles, tweak);
    for k in 8..=13 {
        share(&mut net, k, "Pixies - Debaser.mp3");
    }
    net.link(1, 0);
    for k in FIRST {
        net.link(0, k);
        net.link(k + 6, k);
    }
    // Handshakes, leaf tables, then the ultrapeers' merged tables on their 5 s tick.
    net.run_for(Duration::from_secs(12));
    net
}

/// Six neighbours (2..=7), each the head of a chain of two more ultrapeers (8..=13 behind
/// them, 14..=19 behind those); only the third hop (14..=19) shares the file, so a copy
/// finds it only with TTL 3.
fn rare(tweak: impl Fn(usize, &mut Config)) -> Net {
    let mut roles = vec![U, L];
    roles.extend([U; 18]);
    let mut net = build(&roles, tweak);
    for k in 14..=19 {
        share(&mut net, k, "Pixies - Debaser.mp3");
    }
    net.link(1, 0);
    for k in FIRST {
        net.link(0, k);
        net.link(k, k + 6);
        net.link(k + 6, k + 12);
    }
    net.run_for(Duration::from_secs(12));
    net
}

#[test]
fn a_popular_query_stops_after_the_probe_when_enough_hits_come_back() {
    let mut net = popular(|i, c| {
        if i == 0 {
            c.dq_leaf_results = 3;
        }
    });
    search(&mut net, 1, 1, 4);
    net.run_for(Duration::from_millis(500));
    // The probe: TTL 1 to the 3 first neighbours whose last-hop tables match.
    assert_eq!(seen(&net, FIRST), 3);
    assert_eq!(hits(&net, 1, 1).len(), 3);
    net.run_for(Duration::from_secs(30));
    let s = net.node(0).stats();
    assert_eq!(s.dq_started, 1);
    assert_eq!(s.dq_satisfied, 1);
    assert_eq!(s.dq_round_copies, 0, "no round after the probe");
    assert_eq!(seen(&net, FIRST), 3, "no further connection used");
    assert_eq!(hits(&net, 1, 1).len(), 3);
}

#[test]
fn a_rare_query_widens_round_by_round_with_a_higher_ttl_until_every_connection_is_used() {
    let mut net = rare(|_, _| {});
    // TTL 4 from the leaf: copies from its ultrapeer carry at most TTL 3.
    search(&mut net, 1, 1, 4);
    net.run_for(Duration::from_millis(500));
    // No neighbour's table matches: the probe goes with TTL 2 to 3 of them; the third hop
    // (the holders) does not see it.
    assert_eq!(seen(&net, FIRST), 3);
    assert_eq!(seen(&net, 14..=19), 0);
    assert!(hits(&net, 1, 1).is_empty());
    // The probe waits 2 hops x 1 s; then one connection per round with TTL 3 (no results
    // yet: the whole remaining horizon is needed), 3 s apart.
    net.run_for(Duration::from_secs(2));
    assert_eq!(seen(&net, FIRST), 4);
    assert_eq!(seen(&net, 14..=19), 1, "TTL 3 reached the third hop");
    assert_eq!(hits(&net, 1, 1).len(), 1);
    net.run_for(Duration::from_secs(3));
    assert_eq!(seen(&net, FIRST), 5);
    assert_eq!(hits(&net, 1, 1).len(), 2);
    net.run_for(Duration::from_secs(3));
    assert_eq!(seen(&net, FIRST), 6);
    net.run_for(Duration::from_secs(30));
    assert_eq!(seen(&net, FIRST), 6);
    let s = net.node(0).stats();
    assert_eq!(s.dq_round_copies, 3);
    assert_eq!(s.dq_satisfied, 0);
    // The hits came back along the reverse path: leaf <- 0 <- first <- second <- holder.
    let h = hits(&net, 1, 1);
    assert_eq!(h.len(), 3);
    assert!(
        h.iter()
            .all(|h| h.hops == 4 && h.name == "Pixies - Debaser.mp3")
    );
}

#[test]
fn a_dynamic_query_stops_widening_when_its_lifetime_is_over() {
    let mut net = rare(|i, c| {
        if i == 0 {
            c.dq_lifetime = Duration::from_secs(4);
        }
    });
    search(&mut net, 1, 1, 4);
    // Probe at 0, one round at 2 s; the next would be at 5 s, past the 4 s lifetime.
    net.run_for(Duration::from_secs(30));
    assert_eq!(seen(&net, FIRST), 4);
    assert_eq!(net.node(0).stats().dq_round_copies, 1);
    assert_eq!(hits(&net, 1, 1).len(), 1);
}

#[test]
fn without_dynamic_querying_a_leaf_query_goes_to_every_neighbour_at_once() {
    let mut net = rare(|_, c| c.dynamic_query = false);
    search(&mut net, 1, 1, 4);
    net.run_for(Duration::from_millis(500));
    assert_eq!(seen(&net, FIRST), 6);
    assert_eq!(hits(&net, 1, 1).len(), 6);
    assert_eq!(net.node(0).stats().dq_started, 0);
}

fn status_message(guid: Guid, kept: u16) -> Vec<u8> {
    let payload = encode_query_status(kept);
    let mut m = Vec::with_capacity(HEADER_LEN + payload.len());
    m.extend_from_slice(&guid.0);
    m.extend_from_slice(&[0x31, 1, 0]);
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(&payload);
    m
}

#[test]
fn a_leaf_reporting_enough_kept_hits_ends_its_dynamic_query() {
    let mut net = rare(|_, _| {});
    let guid = search(&mut net, 1, 1, 4);
    net.run_for(Duration::from_millis(500));
    assert_eq!(seen(&net, FIRST), 3);
    // The leaf kept 150 hits from its (assumed 3) ultrapeers: 50 count here, the target.
    let conn = net.node(1).peers()[0].0;
    net.send_raw(1, conn, &status_message(guid, 150));
    net.run_for(Duration::from_secs(30));
    let s = net.node(0).stats();
    assert_eq!(s.dq_status_rx, 1);
    assert_eq!(s.dq_satisfied, 1);
    assert_eq!(seen(&net, FIRST), 3, "no round after the status");
}

#[test]
fn a_leaf_query_status_of_ffff_cancels_its_dynamic_query() {
    let mut net = rare(|_, _| {});
    let guid = search(&mut net, 1, 1, 4);
    net.run_for(Duration::from_millis(500));
    let conn = net.node(1).peers()[0].0;
    net.send_raw(1, conn, &status_message(guid, QUERY_STATUS_STOP));
    net.run_for(Duration::from_secs(30));
    assert_eq!(seen(&net, FIRST), 3);
    assert_eq!(net.node(0).stats().dq_round_copies, 0);
    assert_eq!(net.node(0).stats().dq_satisfied, 0);
}

#[test]
fn an_ultrapeers_own_search_is_a_dynamic_query_too() {
    let mut net = popular(|i, c| {
        if i == 0 {
            c.dq_local_results = 2;
        }
    });
    search(&mut net, 0, 1, 4);
    net.run_for(Duration::from_secs(30));
    assert_eq!(seen(&net, FIRST), 3);
    assert_eq!(hits(&net, 0, 1).len(), 3);
    assert_eq!(net.node(0).stats().dq_satisfied, 1);
}

#[test]
fn query_status_golden_bytes() {
    let p = encode_query_status(0x0123);
    assert_eq!(&p, b"BEAR\x0b\x00\x01\x00\x23\x01");
    assert_eq!(query_status(&p), Ok(Some(0x0123)));
    assert_eq!(query_status(b"LIME\x0b\x00\x02\x00\x05\x00"), Ok(Some(5)));
    // Another vendor message is not a query status.
    assert_eq!(query_status(b"BEAR\x04\x00\x01\x00\x05\x00"), Ok(None));
    assert_eq!(query_status(b"GTKG\x0b\x00\x01\x00\x05\x00"), Ok(None));
    assert_eq!(
        query_status(b"BEAR\x0b\x00\x01\x00\x05"),
        Err(VendorError::Truncated { need: 10, have: 9 })
    );
    assert_eq!(
        VendorHead::decode(b"BEAR\x0b"),
        Err(VendorError::Truncated { need: 8, have: 5 })
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_vendor_decoders(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = query_status(&data);
        if let Ok(h) = VendorHead::decode(&data) {
            prop_assert_eq!(h.data.len() + 8, data.len());
        }
    }

    #[test]
    fn query_status_round_trips(kept in any::<u16>()) {
        prop_assert_eq!(query_status(&encode_query_status(kept)), Ok(Some(kept)));
    }
}
