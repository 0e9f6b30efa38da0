//! Peer management of the coin node: handshake and ping timeouts, addr/getaddr, a peer that
//! stalls a block download, and determinism of a whole run.
use std::net::Ipv4Addr;
use std::time::Duration;

use servent_coin::Params;
use servent_coin::core::node::{Command, Event};
use servent_coin::harness::Net;
use servent_coin::wire::p2p::{self, Message, NetAddr, Version};

fn frame(m: &Message) -> Vec<u8> {
    p2p::frame(Params::regtest().magic, m)
}

fn messages(buf: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut rest = buf;
    while let Ok(Some((m, used))) = p2p::parse(rest, Params::regtest().magic) {
        out.push(m);
        rest = &rest[used..];
    }
    out
}

fn version(nonce: u64) -> Message {
    let a = NetAddr {
        services: 0,
        ip: [0; 16],
        port: 0,
    };
    Message::Version(Version {
        version: 70_015,
        services: 1,
        timestamp: 1_700_000_000,
        receiver: a.clone(),
        sender: a,
        nonce,
        user_agent: "/script/".into(),
        start_height: 0,
        relay: true,
    })
}

fn handshake(net: &mut Net, node: usize, ip: Ipv4Addr) -> usize {
    let k = net.raw_connect(node, ip);
    net.drive_for(Duration::from_millis(100));
    net.raw_send(k, frame(&version(1000 + k as u64)));
    net.raw_send(k, frame(&Message::Verack));
    net.drive_for(Duration::from_millis(200));
    k
}

#[test]
fn a_peer_that_never_sends_version_is_closed_after_60_s_without_a_ban() {
    let mut net = Net::new(1, 21);
    let ip = Ipv4Addr::new(10, 9, 0, 1);
    let k = net.raw_connect(0, ip);
    net.drive_for(Duration::from_secs(59));
    assert!(!net.raw(k).closed);
    assert!(net.drive_until(Duration::from_secs(2), |n| n.raw(k).closed));
    assert!(!net.node(0).node.is_banned(&ip.into()));
}

#[test]
fn a_peer_that_does_not_answer_pings_is_dropped_after_20_minutes() {
    let mut net = Net::new(1, 22);
    let k = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 0, 2));
    net.drive_for(Duration::from_secs(121));
    let pings: Vec<u64> = messages(&net.raw(k).received)
        .into_iter()
        .filter_map(|m| match m {
            Message::Ping(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(pings.len(), 1, "one ping after the 2-minute interval");
    net.drive_for(Duration::from_secs(18 * 60));
    assert!(
        !net.raw(k).closed,
        "still inside the 20-minute ping timeout"
    );
    assert!(net.drive_until(Duration::from_secs(3 * 60), |n| n.raw(k).closed));
    // A peer that answers stays.
    let j = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 0, 3));
    for _ in 0..12 {
        net.drive_for(Duration::from_secs(121));
        let last = messages(&net.raw(j).received)
            .into_iter()
            .rev()
            .find_map(|m| match m {
                Message::Ping(n) => Some(n),
                _ => None,
            });
        if let Some(n) = last {
            net.raw_send(j, frame(&Message::Pong(n)));
        }
    }
    assert!(!net.raw(j).closed);
}

#[test]
fn addresses_a_peer_announces_are_served_to_getaddr_once_per_connection() {
    let mut net = Net::new(1, 23);
    let a = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 1, 1));
    let list: Vec<(u32, NetAddr)> = (1..=3u8)
        .map(|i| {
            let mut ip = [0u8; 16];
            ip[10] = 0xff;
            ip[11] = 0xff;
            ip[12..].copy_from_slice(&[192, 0, 2, i]);
            (
                1_700_000_000,
                NetAddr {
                    services: 1,
                    ip,
                    port: 18444,
                },
            )
        })
        .collect();
    net.raw_send(a, frame(&Message::Addr(list.clone())));
    net.drive_for(Duration::from_secs(1));
    assert_eq!(net.node(0).node.addr_count(), 3);
    let b = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 1, 2));
    net.raw_send(b, frame(&Message::GetAddr));
    net.raw_send(b, frame(&Message::GetAddr));
    net.drive_for(Duration::from_secs(1));
    let answers: Vec<Vec<(u32, NetAddr)>> = messages(&net.raw(b).received)
        .into_iter()
        .filter_map(|m| match m {
            Message::Addr(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1, "answered once");
    let mut got: Vec<NetAddr> = answers[0].iter().map(|(_, a)| a.clone()).collect();
    got.sort_by_key(|a| a.ip);
    let want: Vec<NetAddr> = list.into_iter().map(|(_, a)| a).collect();
    assert_eq!(got, want);
}

#[test]
fn a_peer_that_stalls_the_block_download_is_dropped_and_another_serves_the_blocks() {
    // The chain, mined apart.
    let mut source = Net::new(1, 24);
    let blocks: Vec<_> = (0..20).map(|_| source.mine(0, Vec::new())).collect();
    let tip = blocks[19].header.hash();
    let mut net = Net::new(2, 25);
    for b in &blocks {
        let id = net.next_id();
        net.command(
            1,
            Command::SubmitBlock {
                id,
                block: b.clone(),
            },
        );
    }
    assert_eq!(net.tip(1), tip);
    // A peer announces the headers, then never sends a block.
    let ip = Ipv4Addr::new(10, 9, 2, 1);
    let k = handshake(&mut net, 0, ip);
    let headers = blocks.iter().map(|b| b.header.clone()).collect();
    net.raw_send(k, frame(&Message::Headers(headers)));
    net.drive_for(Duration::from_secs(1));
    let asked: usize = messages(&net.raw(k).received)
        .into_iter()
        .map(|m| match m {
            Message::GetData(l) => l.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(
        asked, 16,
        "the in-flight window per peer bounds the request"
    );
    assert!(
        net.drive_until(Duration::from_secs(61), |n| n.raw(k).closed),
        "stalling peer dropped"
    );
    assert!(
        !net.node(0).node.is_banned(&ip.into()),
        "stalling is not misbehaviour"
    );
    net.connect(0, 1);
    assert!(net.drive_until(Duration::from_secs(30), |n| n.tip(0) == tip));
}

fn scenario(seed: u64) -> String {
    let mut net = Net::new(3, seed);
    net.connect(1, 0);
    net.connect(2, 0);
    net.connect(2, 1);
    net.drive_for(Duration::from_secs(1));
    for _ in 0..10 {
        net.mine(0, Vec::new());
        net.drive_for(Duration::from_millis(300));
        net.mine(2, Vec::new());
        net.drive_for(Duration::from_secs(5));
    }
    let mut log = String::new();
    for i in 0..net.len() {
        for e in net.events(i) {
            if !matches!(e, Event::Store(_)) {
                log.push_str(&format!("{e:?}\n"));
            }
        }
    }
    log.push_str(&format!(
        "{:?}",
        (0..3).map(|i| net.tip(i)).collect::<Vec<_>>()
    ));
    log
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = scenario(31);
    let b = scenario(31);
    assert!(a.contains("Tip"), "the run moved the tips");
    assert_eq!(
        servent_coin::sha256d(a.as_bytes()),
        servent_coin::sha256d(b.as_bytes())
    );
}

#[test]
fn inbound_and_outbound_peers_are_limited() {
    let cfg = servent_coin::core::node::NodeConfig {
        max_inbound: 2,
        max_outbound: 1,
        ..Default::default()
    };
    let mut net = Net::with_config(3, 26, cfg);
    let a = net.raw_connect(0, Ipv4Addr::new(10, 9, 3, 1));
    let b = net.raw_connect(0, Ipv4Addr::new(10, 9, 3, 2));
    let c = net.raw_connect(0, Ipv4Addr::new(10, 9, 3, 3));
    net.drive_for(Duration::from_secs(1));
    assert!(!net.raw(a).closed && !net.raw(b).closed);
    assert!(net.raw(c).closed, "third inbound refused");
    assert_eq!(net.node(0).node.peer_count(), 2);
    net.connect(1, 2);
    net.connect(1, 0);
    net.drive_for(Duration::from_secs(1));
    assert_eq!(net.node(1).node.peer_count(), 1, "one outbound slot");
    assert_eq!(net.node(2).node.peer_count(), 1, "the first dial got it");
    assert_eq!(
        net.node(0).node.peer_count(),
        2,
        "the second was never dialed"
    );
}

#[test]
fn a_transaction_announced_and_never_sent_is_asked_from_another_peer_after_60_s() {
    let mut net = Net::new(1, 27);
    let blocks: Vec<_> = (0..101).map(|_| net.mine(0, Vec::new())).collect();
    let tx = servent_coin::harness::spend(
        servent_coin::wire::OutPoint {
            txid: blocks[0].txs[0].txid(),
            vout: 0,
        },
        &[49 * 100_000_000],
    );
    let txid = tx.txid();
    let inv = Message::Inv(vec![servent_coin::wire::p2p::Inv {
        kind: 1,
        hash: txid,
    }]);
    let a = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 4, 1));
    let b = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 4, 2));
    let asked = |net: &Net, k: usize| {
        messages(&net.raw(k).received)
            .into_iter()
            .any(|m| matches!(m, Message::GetData(l) if l.iter().any(|i| i.hash == txid)))
    };
    net.raw_send(a, frame(&inv));
    net.drive_for(Duration::from_secs(1));
    assert!(asked(&net, a));
    net.raw_send(b, frame(&inv));
    net.drive_for(Duration::from_secs(30));
    assert!(
        !asked(&net, b),
        "not asked twice while the first request runs"
    );
    net.drive_for(Duration::from_secs(31));
    net.raw_send(b, frame(&inv));
    net.drive_for(Duration::from_secs(1));
    assert!(asked(&net, b), "asked from the second peer after 60 s");
    net.raw_send(b, frame(&Message::Tx(tx)));
    net.drive_for(Duration::from_secs(1));
    assert!(net.node(0).node.mempool().contains(&txid));
}

#[test]
fn getdata_is_answered_with_the_block_or_notfound() {
    let mut net = Net::new(1, 28);
    let b = net.mine(0, Vec::new());
    let k = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 5, 1));
    let inv = |kind, hash| servent_coin::wire::p2p::Inv { kind, hash };
    net.raw_send(
        k,
        frame(&Message::GetData(vec![
            inv(2, b.header.hash()),
            inv(2, [9; 32]),
            inv(1, [8; 32]),
        ])),
    );
    net.drive_for(Duration::from_secs(1));
    let got = messages(&net.raw(k).received);
    assert!(
        got.iter()
            .any(|m| matches!(m, Message::Block(x) if *x == b))
    );
    let missing: Vec<[u8; 32]> = got
        .iter()
        .filter_map(|m| match m {
            Message::NotFound(l) => Some(l.iter().map(|i| i.hash).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(missing.len(), 2);
    assert!(missing.contains(&[9; 32]) && missing.contains(&[8; 32]));
}

#[test]
fn coin_lookups_at_the_store_are_bounded_while_it_lags() {
    use servent_coin::core::node::{MAX_COINS_OUT, Request};
    let mut net = Net::new(1, 29);
    let blocks: Vec<_> = (0..101).map(|_| net.mine(0, Vec::new())).collect();
    let cb = servent_coin::wire::OutPoint {
        txid: blocks[0].txs[0].txid(),
        vout: 0,
    };
    let split = servent_coin::harness::spend(cb, &[20_000_000; 200]);
    let kids: Vec<_> = (0..200u32)
        .map(|v| {
            servent_coin::harness::spend(
                servent_coin::wire::OutPoint {
                    txid: split.txid(),
                    vout: v,
                },
                &[19_990_000],
            )
        })
        .collect();
    let k = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 6, 1));
    net.node_mut(0).hold_store = true;
    net.raw_send(k, frame(&Message::Tx(split)));
    for t in &kids {
        net.raw_send(k, frame(&Message::Tx(t.clone())));
    }
    net.drive_for(Duration::from_secs(1));
    let waiting = net
        .node(0)
        .held
        .iter()
        .filter(|r| matches!(r, Request::Coins { .. }))
        .count();
    assert_eq!(waiting, MAX_COINS_OUT, "the rest wait inside the node");
    net.release_store(0);
    net.drive_for(Duration::from_secs(1));
    assert_eq!(
        net.node(0).node.mempool().len(),
        201,
        "every transaction was taken in the end"
    );
}

#[test]
fn a_node_fills_its_outbound_slots_from_addresses_it_learned() {
    let cfg = servent_coin::core::node::NodeConfig {
        dial_from_table: true,
        ..Default::default()
    };
    let mut net = Net::with_config(3, 30, cfg);
    // A line: 2 dials 1, 1 dials 0. Node 2 learns 0's address from 1's getaddr answer.
    net.connect(1, 0);
    net.drive_for(Duration::from_secs(1));
    net.connect(2, 1);
    assert!(
        net.drive_until(Duration::from_secs(120), |n| n.node(0).node.peer_count()
            == 2),
        "node 2 dialed node 0 on its own"
    );
    net.drive_for(Duration::from_secs(1));
    assert_eq!(net.node(2).node.peer_count(), 2);
    assert_eq!(net.node(1).node.peer_count(), 2, "no duplicate connections");
}

#[test]
fn a_child_that_arrives_before_its_parent_waits_as_an_orphan() {
    let mut net = Net::new(2, 31);
    net.connect(1, 0);
    net.drive_for(Duration::from_secs(1));
    let blocks: Vec<_> = (0..101).map(|_| net.mine(0, Vec::new())).collect();
    let tip = blocks[100].header.hash();
    assert!(net.drive_until(Duration::from_secs(60), |n| n.tip(1) == tip));
    let parent = servent_coin::harness::spend(
        servent_coin::wire::OutPoint {
            txid: blocks[0].txs[0].txid(),
            vout: 0,
        },
        &[49 * 100_000_000],
    );
    let child = servent_coin::harness::spend(
        servent_coin::wire::OutPoint {
            txid: parent.txid(),
            vout: 0,
        },
        &[48 * 100_000_000],
    );
    let k = handshake(&mut net, 0, Ipv4Addr::new(10, 9, 7, 1));
    net.raw_send(k, frame(&Message::Tx(child.clone())));
    net.drive_for(Duration::from_secs(1));
    assert!(!net.node(0).node.mempool().contains(&child.txid()));
    net.raw_send(k, frame(&Message::Tx(parent.clone())));
    let (p, c) = (parent.txid(), child.txid());
    assert!(
        net.drive_until(Duration::from_secs(10), |n| {
            (0..2).all(|i| {
                n.node(i).node.mempool().contains(&p) && n.node(i).node.mempool().contains(&c)
            })
        }),
        "both pooled on node 0 and relayed to node 1"
    );
}
