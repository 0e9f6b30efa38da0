//! Gnutella 0.6 on real cores in the in-memory harness: the handshake and deflate stream
//! wired into `Servent`, leaf and ultrapeer roles and their slots, 503 with
//! X-Try-Ultrapeers, QRP on live links (leaf tables, merged tables on the last hop), pong
//! caching, Bye and vendor messages, Push through an ultrapeer, 0.4 peers in a 0.6 mesh.

// A test, not a core: it may use the disk, sockets and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Duration;

use servent_gnutella::harness::{Net, addr_of};
use servent_gnutella::servent::{KIND_BYE, PeerRole, Role};
use servent_gnutella::wire::HEADER_LEN;
use servent_gnutella::{Command, Config, DownReason, Event, Kind, SharedFile};

fn share(net: &mut Net, n: usize, names: &[&str]) {
    let files = names
        .iter()
        .enumerate()
        .map(|(i, name)| SharedFile {
            index: i as u32 + 1,
            name: (*name).into(),
            size: 1000,
            sha1: None,
        })
        .collect();
    net.command(n, Command::Share { id: 0, files });
}

fn search(net: &mut Net, n: usize, id: u64, q: &str, ttl: Option<u8>) {
    net.command(
        n,
        Command::Search {
            id,
            query: q.into(),
            ttl,
        },
    );
    net.run_for(Duration::from_secs(2));
}

fn hits(net: &Net, node: usize, search: u64) -> Vec<servent_gnutella::Hit> {
    net.events
        .iter()
        .filter(|(_, n, _)| *n == node)
        .filter_map(|(_, _, e)| match e {
            Event::Hit { search: s, hit } if *s == search => Some(hit.clone()),
            _ => None,
        })
        .collect()
}

/// `roles[i]` is node i's role; small QRP tables keep the tests quick.
fn net(roles: &[Role], seed: u64, mut tweak: impl FnMut(usize, &mut Config)) -> Net {
    Net::new(roles.len(), seed, |i, c| {
        c.role = roles[i];
        c.qrp_slots = 1 << 12;
        tweak(i, c);
    })
}

fn queries_seen(net: &Net) -> Vec<u64> {
    net.nodes().map(|n| n.stats().queries_seen).collect()
}

const U: Role = Role::Ultrapeer;
const L: Role = Role::Leaf;

#[test]
fn leaf_and_ultrapeer_agree_on_roles_and_a_deflate_stream_both_ways() {
    let mut net = net(&[U, L], 1, |_, _| {});
    share(&mut net, 1, &["Pixies - Debaser.mp3"]);
    net.link(1, 0);
    net.run_for(Duration::from_secs(1));
    let up = net.node(0).peer_infos();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].role, PeerRole::Leaf);
    assert!(up[0].deflate_in && up[0].deflate_out);
    assert!(
        up[0]
            .user_agent
            .as_deref()
            .unwrap_or("")
            .starts_with("servent/")
    );
    // The leaf's table arrived (RESET + PATCH over the compressed stream).
    let fill = up[0].qrp_fill.expect("the leaf sent its QRP table");
    assert!(fill > 0.0 && fill < 0.01, "fill {fill}");
    let leaf = net.node(1).peer_infos();
    assert_eq!(leaf[0].role, PeerRole::Ultrapeer);
    assert!(leaf[0].deflate_in && leaf[0].deflate_out);
    assert!(net.node(1).stats().qrp_tx >= 2);
}

#[test]
fn without_deflate_on_one_side_the_link_is_plain_and_still_works() {
    let mut net = net(&[U, L], 2, |i, c| c.deflate = i == 0);
    share(&mut net, 1, &["debaser.mp3"]);
    net.link(1, 0);
    net.run_for(Duration::from_secs(1));
    let up = net.node(0).peer_infos();
    assert!(!up[0].deflate_in && !up[0].deflate_out);
    search(&mut net, 0, 5, "debaser", None);
    assert_eq!(hits(&net, 0, 5).len(), 1);
}

#[test]
fn a_query_for_a_keyword_no_leaf_shares_reaches_no_leaf() {
    // Ultrapeer 0 with leaves 1..=4; leaf 5 searches.
    let mut net = net(&[U, L, L, L, L, L], 3, |_, _| {});
    share(&mut net, 1, &["Pixies - Debaser.mp3"]);
    share(&mut net, 2, &["Neutral Milk Hotel - Holland 1945.ogg"]);
    share(&mut net, 3, &["Slint - Good Morning Captain.flac"]);
    share(
        &mut net,
        4,
        &[
            "Pavement - Gold Soundz.mp3",
            "Pixies - Wave of Mutilation.mp3",
        ],
    );
    for leaf in 1..=5 {
        net.link(leaf, 0);
    }
    net.run_for(Duration::from_secs(1));
    search(&mut net, 5, 1, "radiohead creep", None);
    assert_eq!(queries_seen(&net), vec![1, 0, 0, 0, 0, 0]);
    assert!(net.node(0).stats().qrp_blocked >= 4);
    assert!(hits(&net, 5, 1).is_empty());

    // Every keyword must be in the leaf's table: "pixies" alone matches leaves 1 and 4,
    // "pixies debaser" only leaf 1.
    search(&mut net, 5, 2, "pixies debaser", None);
    assert_eq!(queries_seen(&net), vec![2, 1, 0, 0, 0, 0]);
    let h = hits(&net, 5, 2);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].addr, addr_of(1));
    search(&mut net, 5, 3, "pixies", None);
    assert_eq!(queries_seen(&net), vec![3, 2, 0, 0, 1, 0]);
    assert_eq!(hits(&net, 5, 3).len(), 2);
}

#[test]
fn a_leaf_share_change_updates_its_table_at_the_ultrapeer() {
    let mut net = net(&[U, L, L], 4, |_, _| {});
    share(&mut net, 1, &["old song.mp3"]);
    net.link(1, 0);
    net.link(2, 0);
    net.run_for(Duration::from_secs(1));
    search(&mut net, 2, 1, "debaser", None);
    assert!(hits(&net, 2, 1).is_empty());
    assert_eq!(net.node(1).stats().queries_seen, 0);
    share(&mut net, 1, &["old song.mp3", "Pixies - Debaser.mp3"]);
    net.run_for(Duration::from_secs(1));
    search(&mut net, 2, 2, "debaser", None);
    assert_eq!(hits(&net, 2, 2).len(), 1);
    // And a removed file's keywords leave the table again (a PATCH of the difference).
    share(&mut net, 1, &["old song.mp3"]);
    net.run_for(Duration::from_secs(1));
    let before = net.node(1).stats().queries_seen;
    search(&mut net, 2, 3, "debaser", None);
    assert_eq!(net.node(1).stats().queries_seen, before);
}

#[test]
fn ultrapeers_use_a_neighbours_merged_table_only_on_the_last_hop() {
    // Mesh 0 - 1 - 2 of ultrapeers; leaf 3 on 0 searches, leaf 4 on 2 shares.
    let mut net = net(&[U, U, U, L, L], 5, |_, _| {});
    share(&mut net, 4, &["Pixies - Debaser.mp3"]);
    net.link(0, 1);
    net.link(1, 2);
    net.link(3, 0);
    net.link(4, 2);
    // Merged tables go out on the housekeeping tick.
    net.run_for(Duration::from_secs(12));
    assert!(net.node(1).qrp_table().is_some_and(|t| t.fill() == 0.0));
    assert!(net.node(2).qrp_table().is_some_and(|t| t.fill() > 0.0));

    // TTL 2 from the leaf: ultrapeer 0 sends it to 1 with TTL 1 — the last hop — and 1's
    // merged table (no leaves, no files) rules it out.
    search(&mut net, 3, 1, "debaser", Some(2));
    assert_eq!(queries_seen(&net), vec![1, 0, 0, 0, 0]);
    // TTL 3: 0 → 1 (TTL 2, not the last hop: no table check) → 2 (TTL 1, last hop, its
    // table has the word) → leaf 4.
    search(&mut net, 3, 2, "debaser", Some(3));
    assert_eq!(queries_seen(&net), vec![2, 1, 1, 0, 1]);
    let h = hits(&net, 3, 2);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].addr, addr_of(4));
    assert_eq!(h[0].hops, 4);
    // A word nobody shares stops before the last hop.
    search(&mut net, 3, 3, "nirvana", Some(3));
    assert_eq!(queries_seen(&net), vec![3, 2, 1, 0, 1]);
}

#[test]
fn ultrapeers_forward_to_matching_leaves_when_the_ttl_ran_out() {
    let mut net = net(&[U, U, L, L], 6, |_, _| {});
    share(&mut net, 3, &["debaser.mp3"]);
    net.link(0, 1);
    net.link(2, 0);
    net.link(3, 1);
    net.run_for(Duration::from_secs(12));
    // TTL 2: 0 sends it to 1 with TTL 1; 1 cannot send it further in the mesh but still
    // passes it to its matching leaf.
    search(&mut net, 2, 1, "debaser", Some(2));
    assert_eq!(hits(&net, 2, 1).len(), 1);
}

#[test]
fn mesh_queries_travel_at_most_mesh_ttl_hops() {
    // A line of 6 ultrapeers, node 0 searches with TTL 7: it is cut to 4.
    // Node 4 shares the word, so its merged table lets the last hop through.
    let mut net = net(&[U, U, U, U, U, U], 7, |_, _| {});
    share(&mut net, 4, &["anything.txt"]);
    for i in 0..5 {
        net.link(i, i + 1);
    }
    net.run_for(Duration::from_secs(12));
    search(&mut net, 0, 1, "anything", Some(7));
    assert_eq!(queries_seen(&net), vec![0, 1, 1, 1, 1, 0]);
    assert_eq!(hits(&net, 0, 1).len(), 1);
}

#[test]
fn a_full_ultrapeer_refuses_with_x_try_ultrapeers_and_the_newcomer_goes_there() {
    // Ultrapeer 0 has one leaf slot; ultrapeer 1 is its mesh neighbour.
    let mut net = net(&[U, U, L, L], 8, |i, c| {
        if i == 0 {
            c.up_leaves = 1;
        }
        if i == 3 {
            c.want_conns = 1;
        }
    });
    net.link(0, 1);
    net.link(2, 0);
    net.run_for(Duration::from_secs(1));
    net.command(
        3,
        Command::Connect {
            id: 9,
            addr: SocketAddr::V4(addr_of(0)),
        },
    );
    net.run_for(Duration::from_secs(2));
    assert!(
        net.events
            .iter()
            .any(|(_, n, e)| *n == 3 && matches!(e, Event::ConnectFailed { cmd: Some(9), .. }))
    );
    // It learnt ultrapeer 1 from the refusal and connected there at once.
    let peers = net.node(3).peer_infos();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].addr, SocketAddr::V4(addr_of(1)));
    assert_eq!(peers[0].role, PeerRole::Ultrapeer);
    assert_eq!(net.node(0).peer_infos().len(), 2);
}

#[test]
fn a_leaf_keeps_at_most_its_ultrapeer_slots_and_accepts_no_connection() {
    let mut net = net(&[L, U, U, U, U, L], 9, |i, c| {
        if i == 0 {
            c.leaf_ultrapeers = 2;
        }
    });
    for up in 1..=4 {
        net.link(0, up);
    }
    net.link(5, 0);
    net.run_for(Duration::from_secs(1));
    let peers = net.node(0).peer_infos();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.role == PeerRole::Ultrapeer));
    assert!(net.node(5).peer_infos().is_empty());
}

#[test]
fn a_04_peer_joins_an_ultrapeer_mesh_and_finds_a_leafs_file() {
    let mut net = net(&[U, Role::Flat04, L], 10, |_, _| {});
    share(&mut net, 2, &["Pixies - Debaser.mp3"]);
    net.link(1, 0);
    net.link(2, 0);
    net.run_for(Duration::from_secs(1));
    let up = net.node(0).peer_infos();
    assert!(
        up.iter()
            .any(|p| p.role == PeerRole::Legacy && !p.deflate_out)
    );
    search(&mut net, 1, 1, "debaser", Some(7));
    let h = hits(&net, 1, 1);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].addr, addr_of(2));
}

#[test]
fn ultrapeers_answer_pings_from_their_pong_cache() {
    // Ultrapeers 1 and 2 are neighbours of 0; leaf 3 pings 0 with TTL 3.
    let mut net = net(&[U, U, U, L], 11, |i, c| {
        c.ping_ttl = if i == 3 { 0 } else { 1 };
    });
    net.link(1, 0);
    net.link(2, 0);
    net.run_for(Duration::from_secs(1));
    net.link(3, 0);
    net.run_for(Duration::from_secs(1));
    let pings_at = |net: &Net, n: usize| net.node(n).stats().rx[Kind::Ping.index()];
    let before = (pings_at(&net, 1), pings_at(&net, 2));
    net.command(3, Command::Ping { id: 1, ttl: 3 });
    net.run_for(Duration::from_secs(1));
    // The ping went no further than 0 ...
    assert_eq!((pings_at(&net, 1), pings_at(&net, 2)), before);
    // ... which answered for itself and for 1 and 2 from its cache.
    let known: Vec<_> = net.node(3).host_cache().copied().collect();
    for n in 0..3 {
        assert!(known.contains(&addr_of(n)), "{n} missing from {known:?}");
    }
    assert!(net.node(0).stats().cached_pongs >= 2);
}

#[test]
fn vendor_messages_are_ignored_and_bye_closes_cleanly() {
    let mut net = net(&[U, L], 12, |_, c| c.deflate = false);
    net.link(1, 0);
    net.run_for(Duration::from_secs(1));
    let conn = net.node(1).peer_infos()[0].conn;
    let msg = |kind: u8, payload: &[u8]| {
        let mut m = vec![7u8; 16];
        m.extend_from_slice(&[kind, 1, 0]);
        m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        m.extend_from_slice(payload);
        m
    };
    // "Messages Supported" (LIME 0/0) and a standard vendor message.
    net.send_raw(1, conn, &msg(0x31, b"\0\0\0\0\0\0\0\0\x00\x00"));
    net.send_raw(1, conn, &msg(0x32, b"GTKG\x07\x00\x01\x00"));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.node(0).stats().ignored, 2);
    assert_eq!(net.node(0).peer_infos().len(), 1);
    let mut bye = 200u16.to_le_bytes().to_vec();
    bye.extend_from_slice(b"Shutting down\0");
    net.send_raw(1, conn, &msg(KIND_BYE, &bye));
    net.run_for(Duration::from_secs(1));
    assert!(net.events.iter().any(|(_, n, e)| *n == 0
        && matches!(e, Event::PeerDown { reason: DownReason::Bye { code: 200, message }, .. } if message == "Shutting down")));
    assert!(net.node(0).peer_infos().is_empty());
    let _ = HEADER_LEN;
}

#[test]
fn a_malformed_qrp_update_from_a_leaf_closes_its_connection() {
    let mut net = net(&[U, L], 13, |_, c| c.deflate = false);
    net.link(1, 0);
    net.run_for(Duration::from_secs(1));
    let conn = net.node(1).peer_infos()[0].conn;
    // A RESET announcing a table of 3 slots (not a power of two).
    let mut m = vec![9u8; 16];
    m.extend_from_slice(&[0x30, 1, 0, 6, 0, 0, 0]);
    m.extend_from_slice(&[0, 3, 0, 0, 0, 7]);
    net.send_raw(1, conn, &m);
    net.run_for(Duration::from_secs(1));
    assert!(net.node(0).peer_infos().is_empty());
    assert!(net.events.iter().any(|(_, n, e)| *n == 0
        && matches!(
            e,
            Event::PeerDown {
                reason: DownReason::Protocol(_),
                ..
            }
        )));
}

#[test]
fn push_reaches_a_firewalled_leaf_through_its_ultrapeer() {
    let mut net = net(&[U, L, L], 14, |i, c| c.firewalled = i == 2);
    share(&mut net, 2, &["debaser.mp3"]);
    net.link(1, 0);
    net.link(2, 0);
    net.run_for(Duration::from_secs(1));
    search(&mut net, 1, 1, "debaser", None);
    let h = hits(&net, 1, 1);
    assert_eq!(h.len(), 1);
    assert!(h[0].push);
    net.command(
        1,
        Command::Push {
            id: 2,
            servent_id: h[0].servent_id,
            index: h[0].index,
        },
    );
    net.run_for(Duration::from_secs(1));
    assert!(net.events.iter().any(|(_, n, e)| *n == 2
        && matches!(e, Event::PushRequested { index: 1, to } if *to == addr_of(1))));
}

#[test]
fn leaves_of_a_vanished_ultrapeer_reconnect_to_another_from_their_cache() {
    let mut net = net(&[U, U, L], 15, |i, c| {
        if i == 2 {
            c.want_conns = 1;
        }
    });
    net.link(0, 1);
    net.run_for(Duration::from_secs(1));
    net.link(2, 0);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.node(2).peer_infos()[0].addr, SocketAddr::V4(addr_of(0)));
    // Ultrapeer 0 goes: every connection of it closes.
    let conns: Vec<_> = net.node(0).peer_infos().iter().map(|p| p.conn).collect();
    for c in conns {
        net.command(0, Command::Disconnect { id: 0, conn: c });
    }
    net.run_for(Duration::from_secs(1));
    let peers = net.node(2).peer_infos();
    // It learnt ultrapeer 1 from 0's handshake (X-Try-Ultrapeers) and went there.
    assert!(
        peers.iter().any(|p| p.addr == SocketAddr::V4(addr_of(1))),
        "{peers:?}"
    );
}

#[test]
fn hits_carry_urn_sha1_and_urn_queries_route_to_the_holder() {
    let mut net = net(&[U, L, L], 16, |_, _| {});
    // (Not a repeating pattern: the QRP hash XORs 4-byte chunks, so periodic base32 text
    // would cancel out.)
    let sha1: [u8; 20] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(1));
    net.command(
        1,
        Command::Share {
            id: 0,
            files: vec![SharedFile {
                index: 4,
                name: "Pixies - Debaser.mp3".into(),
                size: 1000,
                sha1: Some(sha1),
            }],
        },
    );
    net.link(1, 0);
    net.link(2, 0);
    net.run_for(Duration::from_secs(1));
    search(&mut net, 2, 1, "debaser", None);
    let h = hits(&net, 2, 1);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].sha1, Some(sha1));

    // A query by URN alone (criteria "\" as LimeWire sends, the URN in the extension area)
    // passes the leaf's QRP table and is answered.
    let urn = servent_gnutella::library::sha1_urn(&sha1);
    search(&mut net, 2, 2, &format!("\\\0{urn}"), None);
    let h = hits(&net, 2, 2);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].index, 4);
    // Another URN is not passed to the leaf.
    let seen = net.node(1).stats().queries_seen;
    let other = servent_gnutella::library::sha1_urn(&std::array::from_fn(|i| {
        (i as u8).wrapping_mul(91) ^ 0x5c
    }));
    search(&mut net, 2, 3, &format!("\\\0{other}"), None);
    assert_eq!(net.node(1).stats().queries_seen, seen);
}

fn role_changes(net: &Net, node: usize) -> usize {
    net.events
        .iter()
        .filter(|(_, n, e)| *n == node && matches!(e, Event::RoleChanged { .. }))
        .count()
}

#[test]
fn an_auto_leaf_becomes_an_ultrapeer_when_capable_and_asked() {
    // Ultrapeer 0 has two leaf slots: with one taken it says X-Ultrapeer-Needed: True.
    let mut net = net(&[U, Role::Auto, L], 17, |i, c| {
        if i == 0 {
            c.up_leaves = 2;
        }
        if i == 1 {
            c.want_conns = 3;
            c.promote_uptime = Duration::from_secs(30);
        }
    });
    net.link(1, 0);
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.node(1).config().role, Role::Leaf);
    assert_eq!(net.node(0).peer_infos()[0].role, PeerRole::Leaf);
    // Past the uptime threshold the next tick promotes it; it reconnects as an ultrapeer.
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.node(1).config().role, Role::Ultrapeer);
    assert_eq!(role_changes(&net, 1), 1);
    let seen_by_0 = net.node(0).peer_infos();
    assert_eq!(seen_by_0.len(), 1, "{seen_by_0:?}");
    assert_eq!(seen_by_0[0].role, PeerRole::Ultrapeer);
    // It now takes leaves, and they find its files.
    share(&mut net, 1, &["Pixies - Debaser.mp3"]);
    net.link(2, 1);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.node(2).peer_infos()[0].role, PeerRole::Ultrapeer);
    search(&mut net, 2, 1, "debaser", None);
    assert_eq!(hits(&net, 2, 1).len(), 1);
}

#[test]
fn an_auto_leaf_stays_a_leaf_when_not_asked_or_not_capable() {
    // Three ultrapeers with room: nobody asks. Node 4 is asked but firewalled; node 5 is
    // asked but too slow.
    let mut net = net(
        &[U, U, U, Role::Auto, Role::Auto, Role::Auto, U],
        18,
        |i, c| {
            c.promote_uptime = Duration::from_secs(10);
            if i == 6 {
                c.up_leaves = 1;
            }
            if i == 4 {
                c.firewalled = true;
            }
            if i == 5 {
                c.speed_kbps = 56;
            }
        },
    );
    for up in 0..3 {
        net.link(3, up);
    }
    net.link(4, 6);
    net.link(5, 6);
    net.run_for(Duration::from_secs(60));
    for n in 3..=5 {
        assert_eq!(net.node(n).config().role, Role::Leaf, "node {n}");
        assert_eq!(role_changes(&net, n), 0);
    }
    assert_eq!(net.node(3).peer_infos().len(), 3);
}

#[test]
fn a_refusal_offers_other_ultrapeers_never_the_refuser() {
    use servent_core::{ConnId, Core, Input, Instant};
    let mut net = net(&[U, U], 19, |i, c| {
        if i == 0 {
            c.up_leaves = 0;
        }
    });
    net.link(0, 1);
    net.run_for(Duration::from_secs(1));
    // A raw leaf handshake to ultrapeer 0, which has no leaf slot.
    let up = net.node_mut(0);
    let conn = ConnId::inbound(77);
    let t = Instant::from_micros(5_000_000);
    up.handle_input(
        t,
        Input::Connected {
            conn,
            peer: "127.0.0.50:40000".parse().unwrap(),
        },
    );
    up.handle_input(
        t,
        Input::Received {
            conn,
            data: b"GNUTELLA CONNECT/0.6\r\nX-Ultrapeer: False\r\n\r\n",
        },
    );
    let mut out = Vec::new();
    while let Some(tx) = up.poll_transmit() {
        if let servent_core::Transmit::Send { conn: c, data } = tx {
            if c == conn {
                out.extend_from_slice(&data);
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("GNUTELLA/0.6 503 "), "{text}");
    assert!(
        text.contains(&format!("X-Try-Ultrapeers: {}\r\n", addr_of(1))),
        "{text}"
    );
    assert!(!text.contains(&addr_of(0).to_string()), "{text}");
}

/// The answer ultrapeer 0 gives to a raw 0.6 handshake from `headers`.
fn raw_handshake_answer(net: &mut Net, node: usize, headers: &str) -> String {
    use servent_core::{ConnId, Core, Input, Instant};
    let up = net.node_mut(node);
    let conn = ConnId::inbound(78);
    let t = Instant::from_micros(5_000_000);
    up.handle_input(
        t,
        Input::Connected {
            conn,
            peer: "127.0.0.51:40000".parse().unwrap(),
        },
    );
    let hello = format!("GNUTELLA CONNECT/0.6\r\n{headers}\r\n");
    up.handle_input(
        t,
        Input::Received {
            conn,
            data: hello.as_bytes(),
        },
    );
    let mut out = Vec::new();
    while let Some(tx) = up.poll_transmit() {
        if let servent_core::Transmit::Send { conn: c, data } = tx {
            if c == conn {
                out.extend_from_slice(&data);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn an_ultrapeer_short_of_ultrapeer_links_tells_an_ultrapeer_it_is_needed() {
    // gtk-gnutella connecting as an ultrapeer to ours with no ultrapeer link: an answer of
    // X-Ultrapeer-Needed: False asks it to become a leaf, and it gives up (403).
    let mut net = net(&[U], 20, |_, _| {});
    net.run_for(Duration::from_secs(1));
    let text = raw_handshake_answer(
        &mut net,
        0,
        "User-Agent: gtk-gnutella/1.2.3\r\nX-Ultrapeer: True\r\nX-Query-Routing: 0.2\r\n",
    );
    assert!(text.starts_with("GNUTELLA/0.6 200 "), "{text}");
    assert!(text.contains("X-Ultrapeer-Needed: True\r\n"), "{text}");
}
