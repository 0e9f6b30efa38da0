//! Hostile peers are banned (24 h) while the node keeps serving honest ones.
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use servent_coin::Params;
use servent_coin::core::node::Event;
use servent_coin::harness::{Net, spend};
use servent_coin::wire::p2p::{self, Inv, Message, NetAddr, Version};
use servent_coin::wire::{Block, BlockHeader, OutPoint};
use servent_coin::{hash_meets_target, target_from_compact};

const EVIL: Ipv4Addr = Ipv4Addr::new(10, 6, 6, 6);

fn frame(m: &Message) -> Vec<u8> {
    p2p::frame(Params::regtest().magic, m)
}

fn version() -> Message {
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
        nonce: 77,
        user_agent: "/evil/".into(),
        start_height: 0,
        relay: true,
    })
}

/// Two honest nodes (1 syncs from 0) and an evil peer with a completed handshake on node 0.
fn setup(seed: u64) -> (Net, usize) {
    let mut net = Net::new(2, seed);
    net.connect(1, 0);
    net.drive_for(Duration::from_secs(1));
    let evil = net.raw_connect(0, EVIL);
    net.drive_for(Duration::from_millis(100));
    net.raw_send(evil, frame(&version()));
    net.raw_send(evil, frame(&Message::Verack));
    net.drive_for(Duration::from_secs(1));
    // The node answered with its version and verack.
    let got = &net.raw(evil).received;
    let (first, _) = p2p::parse(got, Params::regtest().magic)
        .expect("valid")
        .expect("a message");
    assert!(matches!(first, Message::Version(_)));
    (net, evil)
}

/// The evil peer was banned and closed; honest sync goes on; the address stays refused.
fn assert_banned_and_serving(net: &mut Net, evil: usize) {
    assert!(
        net.drive_until(Duration::from_secs(10), |n| n.raw(evil).closed),
        "evil peer not disconnected"
    );
    let ip = IpAddr::V4(EVIL);
    assert!(net.node(0).node.is_banned(&ip));
    assert!(
        net.events(0)
            .iter()
            .any(|e| matches!(e, Event::Banned { ip: x, .. } if *x == ip))
    );
    let b = net.mine(0, Vec::new());
    let tip = b.header.hash();
    assert!(
        net.drive_until(Duration::from_secs(30), |n| n.tip(1) == tip),
        "honest peer still served"
    );
    let again = net.raw_connect(0, EVIL);
    assert!(
        net.drive_until(Duration::from_secs(5), |n| n.raw(again).closed),
        "ban holds"
    );
    // The ban lasts 24 hours.
    net.drive_for(Duration::from_secs(23 * 3600));
    assert!(net.node(0).node.is_banned(&ip));
    net.drive_for(Duration::from_secs(2 * 3600));
    assert!(!net.node(0).node.is_banned(&ip));
}

#[test]
fn an_oversized_message_bans() {
    let (mut net, evil) = setup(11);
    let mut m = frame(&Message::Ping(1));
    m[16..20].copy_from_slice(&4_000_001u32.to_le_bytes());
    net.raw_send(evil, m);
    assert_banned_and_serving(&mut net, evil);
}

#[test]
fn a_garbled_command_bans() {
    let (mut net, evil) = setup(12);
    let mut m = frame(&Message::Ping(1));
    m[5] = 0x01;
    net.raw_send(evil, m);
    assert_banned_and_serving(&mut net, evil);
}

#[test]
fn a_bad_checksum_bans() {
    let (mut net, evil) = setup(13);
    let mut m = frame(&Message::Ping(1));
    m[20] ^= 0xff;
    net.raw_send(evil, m);
    assert_banned_and_serving(&mut net, evil);
}

#[test]
fn headers_that_do_not_connect_ban_after_fifty() {
    let (mut net, evil) = setup(14);
    for k in 0..49u8 {
        let h = BlockHeader {
            version: 4,
            prev: [k + 1; 32],
            merkle_root: [0; 32],
            time: 1_700_000_000,
            bits: 0x207f_ffff,
            nonce: 0,
        };
        net.raw_send(evil, frame(&Message::Headers(vec![h])));
    }
    net.drive_for(Duration::from_secs(2));
    assert!(
        !net.raw(evil).closed,
        "49 unconnecting headers are tolerated (Core: 20 points per 10)"
    );
    let h = BlockHeader {
        version: 4,
        prev: [0xee; 32],
        merkle_root: [0; 32],
        time: 1_700_000_000,
        bits: 0x207f_ffff,
        nonce: 0,
    };
    net.raw_send(evil, frame(&Message::Headers(vec![h])));
    assert_banned_and_serving(&mut net, evil);
}

#[test]
fn a_header_with_invalid_proof_of_work_bans() {
    let (mut net, evil) = setup(15);
    let genesis = Params::regtest().genesis.header;
    let mut h = BlockHeader {
        version: 4,
        prev: genesis.hash(),
        merkle_root: [3; 32],
        time: genesis.time + 600,
        bits: 0x207f_ffff,
        nonce: 0,
    };
    let target = target_from_compact(h.bits).target;
    while hash_meets_target(&h.hash(), &target) {
        h.nonce += 1;
    }
    net.raw_send(evil, frame(&Message::Headers(vec![h])));
    assert_banned_and_serving(&mut net, evil);
}

#[test]
fn an_inv_flood_bans() {
    let (mut net, evil) = setup(16);
    let inv: Vec<Inv> = (0..50_001u32)
        .map(|i| {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&i.to_le_bytes());
            Inv { kind: 1, hash }
        })
        .collect();
    net.raw_send(evil, frame(&Message::Inv(inv)));
    assert_banned_and_serving(&mut net, evil);
}

#[test]
fn a_block_spending_one_coin_twice_bans_and_the_tip_stays() {
    let (mut net, evil) = setup(17);
    let blocks: Vec<Block> = (0..101).map(|_| net.mine(0, Vec::new())).collect();
    let tip = blocks[100].header.hash();
    assert!(net.drive_until(Duration::from_secs(60), |n| n.tip(1) == tip));
    let coin = OutPoint {
        txid: blocks[0].txs[0].txid(),
        vout: 0,
    };
    // Build the bad block on a scratch network with the same chain, so node 0 never sees it.
    let mut scratch = Net::new(1, 99);
    for b in &blocks {
        let id = scratch.next_id();
        scratch.command(
            0,
            servent_coin::core::node::Command::SubmitBlock {
                id,
                block: b.clone(),
            },
        );
    }
    assert_eq!(scratch.tip(0), tip);
    let bad = scratch.mine(
        0,
        vec![
            spend(coin.clone(), &[49 * 100_000_000]),
            spend(coin, &[48 * 100_000_000]),
        ],
    );
    net.raw_send(evil, frame(&Message::Headers(vec![bad.header.clone()])));
    net.raw_send(evil, frame(&Message::Block(bad)));
    assert!(net.drive_until(Duration::from_secs(10), |n| n.raw(evil).closed));
    assert_eq!(net.tip(0), tip);
    assert_banned_and_serving(&mut net, evil);
}

#[test]
fn a_transaction_without_inputs_bans() {
    let (mut net, evil) = setup(18);
    let tx = servent_coin::wire::Transaction {
        version: 1,
        inputs: Vec::new(),
        outputs: vec![servent_coin::wire::TxOut {
            value: 1,
            script_pubkey: vec![0x51],
        }],
        lock_time: 0,
    };
    net.raw_send(evil, frame(&Message::Tx(tx)));
    assert_banned_and_serving(&mut net, evil);
}

#[test]
fn many_small_messages_in_one_read_are_all_answered() {
    let (mut net, evil) = setup(19);
    let mut burst = Vec::new();
    for n in 0..20_000u64 {
        burst.extend(frame(&Message::Ping(n)));
    }
    let before = net.raw(evil).received.len();
    net.raw_send(evil, burst);
    net.drive_for(Duration::from_secs(1));
    let mut rest = &net.raw(evil).received[before..];
    let mut pongs = 0;
    while let Ok(Some((m, used))) = p2p::parse(rest, Params::regtest().magic) {
        if matches!(m, Message::Pong(_)) {
            pongs += 1;
        }
        rest = &rest[used..];
    }
    assert_eq!(pongs, 20_000);
    assert!(!net.raw(evil).closed);
}

mod random_input {
    use proptest::prelude::*;

    use super::*;

    const COMMANDS: &[&str] = &[
        "version",
        "verack",
        "ping",
        "pong",
        "addr",
        "getaddr",
        "inv",
        "getdata",
        "notfound",
        "getheaders",
        "getblocks",
        "headers",
        "block",
        "tx",
        "sendheaders",
        "feefilter",
        "xyz",
    ];

    /// A well-framed message of `command` with an arbitrary payload.
    fn framed(command: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Params::regtest().magic.to_vec();
        let mut cmd = [0u8; 12];
        cmd[..command.len()].copy_from_slice(command.as_bytes());
        out.extend_from_slice(&cmd);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&servent_coin::sha256d(payload)[..4]);
        out.extend_from_slice(payload);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Whatever a peer sends after the handshake — random payloads under every command,
        /// in any order — the node neither panics nor stops serving its honest peer.
        #[test]
        fn random_messages_never_stop_the_node(
            msgs in proptest::collection::vec((0..COMMANDS.len(), proptest::collection::vec(any::<u8>(), 0..200)), 1..20),
            seed in 0u64..1000,
        ) {
            let (mut net, evil) = setup(1000 + seed);
            for (c, payload) in &msgs {
                net.raw_send(evil, framed(COMMANDS[*c], payload));
            }
            net.drive_for(Duration::from_secs(2));
            let b = net.mine(0, Vec::new());
            let tip = b.header.hash();
            prop_assert!(net.drive_until(Duration::from_secs(30), |n| n.tip(1) == tip));
        }
    }
}
