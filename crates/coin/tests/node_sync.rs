//! Coin nodes over the in-memory network: sync, catch-up, double spends, partitions.
use std::time::Duration;

use servent_coin::core::node::{Command, Event};
use servent_coin::harness::{Net, spend};
use servent_coin::wire::{Block, OutPoint};

fn all_at(net: &Net, nodes: &[usize], tip: [u8; 32]) -> bool {
    nodes.iter().all(|&i| net.tip(i) == tip)
}

fn mine_n(net: &mut Net, i: usize, n: usize) -> Vec<Block> {
    (0..n).map(|_| net.mine(i, Vec::new())).collect()
}

fn coinbase_out(b: &Block) -> OutPoint {
    OutPoint {
        txid: b.txs[0].txid(),
        vout: 0,
    }
}

fn tx_result(net: &Net, i: usize, id: u64) -> Option<Result<[u8; 32], String>> {
    net.events(i).iter().find_map(|e| match e {
        Event::TxResult { id: x, result } if *x == id => Some(result.clone()),
        _ => None,
    })
}

#[test]
fn three_nodes_sync_a_mined_chain_and_a_new_node_catches_up() {
    let mut net = Net::new(3, 1);
    net.connect(1, 0);
    net.connect(2, 1);
    net.drive_for(Duration::from_secs(1));
    let blocks = mine_n(&mut net, 0, 30);
    let tip = blocks[29].header.hash();
    assert!(
        net.drive_until(Duration::from_secs(60), |n| all_at(n, &[0, 1, 2], tip)),
        "heights {:?}",
        (0..3).map(|i| net.height(i)).collect::<Vec<_>>()
    );
    assert_eq!(net.height(2), 30);
    // A node that joins later downloads the whole chain, headers first.
    let mut rng = servent_core::Rng::new(9);
    let late = net.add_node(&mut rng);
    net.connect(late, 2);
    assert!(net.drive_until(Duration::from_secs(60), |n| n.tip(late) == tip));
    assert_eq!(net.utxos(late), net.utxos(0));
    assert_eq!(net.utxos(late), net.replayed_utxos(late));
}

#[test]
fn a_transaction_is_relayed_mined_and_a_double_spend_is_rejected_by_every_node() {
    let mut net = Net::new(3, 2);
    net.connect(1, 0);
    net.connect(2, 1);
    net.drive_for(Duration::from_secs(1));
    let blocks = mine_n(&mut net, 0, 101);
    let tip = blocks[100].header.hash();
    assert!(net.drive_until(Duration::from_secs(120), |n| all_at(n, &[0, 1, 2], tip)));
    // The first coinbase is mature now.
    let coin = coinbase_out(&blocks[0]);
    let pay = spend(coin.clone(), &[49 * 100_000_000]);
    let double = spend(coin, &[48 * 100_000_000]);
    let id = net.next_id();
    net.command(
        0,
        Command::SubmitTx {
            id,
            tx: pay.clone(),
        },
    );
    assert_eq!(tx_result(&net, 0, id), Some(Ok(pay.txid())));
    let txid = pay.txid();
    assert!(net.drive_until(Duration::from_secs(30), |n| {
        (0..3).all(|i| n.node(i).node.mempool().contains(&txid))
    }));
    for i in 0..3 {
        let id = net.next_id();
        net.command(
            i,
            Command::SubmitTx {
                id,
                tx: double.clone(),
            },
        );
        let r = tx_result(&net, i, id).expect("answered");
        assert!(
            r.as_ref().is_err_and(|e| e.contains("conflict")),
            "node {i}: {r:?}"
        );
    }
    // Node 2 mines the payment; every mempool empties.
    let b = net.mine(2, vec![pay]);
    let tip = b.header.hash();
    assert!(net.drive_until(Duration::from_secs(30), |n| all_at(n, &[0, 1, 2], tip)));
    assert!((0..3).all(|i| net.node(i).node.mempool().is_empty()));
    // Now the double spend's input is gone everywhere.
    for i in 0..3 {
        let id = net.next_id();
        net.command(
            i,
            Command::SubmitTx {
                id,
                tx: double.clone(),
            },
        );
        assert!(
            tx_result(&net, i, id).expect("answered").is_err(),
            "node {i}"
        );
    }
}

#[test]
fn a_block_with_a_double_spend_is_refused_by_every_node() {
    let mut net = Net::new(3, 3);
    net.connect(1, 0);
    net.connect(2, 1);
    net.drive_for(Duration::from_secs(1));
    let blocks = mine_n(&mut net, 0, 101);
    let tip = blocks[100].header.hash();
    assert!(net.drive_until(Duration::from_secs(120), |n| all_at(n, &[0, 1, 2], tip)));
    let coin = coinbase_out(&blocks[0]);
    let a = spend(coin.clone(), &[49 * 100_000_000]);
    let b = spend(coin, &[48 * 100_000_000]);
    // Node 0's store refuses the block; the other nodes never see it as their tip.
    let bad = net.mine(0, vec![a, b]);
    net.drive_for(Duration::from_secs(10));
    for i in 0..3 {
        assert_eq!(net.tip(i), tip, "node {i} kept its tip");
    }
    assert!(net.events(0).iter().any(|e| matches!(e,
        Event::BlockResult { result: Err(r), .. } if r.contains("invalid"))));
    let _ = bad;
}

#[test]
fn partitions_mine_apart_and_converge_on_the_heavier_chain() {
    let mut net = Net::new(4, 4);
    net.connect(1, 0);
    net.connect(3, 2);
    net.drive_for(Duration::from_secs(1));
    let common = mine_n(&mut net, 0, 3);
    net.connect(2, 1);
    let t = common[2].header.hash();
    assert!(net.drive_until(Duration::from_secs(30), |n| all_at(n, &[0, 1, 2, 3], t)));
    net.disconnect(2, 1);
    net.drive_for(Duration::from_secs(1));
    // Side A (0, 1) mines 3, side B (2, 3) mines 6, including a spend to touch the UTXO set.
    let a = mine_n(&mut net, 0, 3);
    let b = mine_n(&mut net, 3, 6);
    let ta = a[2].header.hash();
    let tb = b[5].header.hash();
    assert!(
        net.drive_until(Duration::from_secs(30), |n| all_at(n, &[0, 1], ta)
            && all_at(n, &[2, 3], tb))
    );
    net.connect(1, 2);
    assert!(
        net.drive_until(Duration::from_secs(60), |n| all_at(n, &[0, 1, 2, 3], tb)),
        "tips {:?}",
        (0..4).map(|i| net.height(i)).collect::<Vec<_>>()
    );
    for i in 0..4 {
        assert_eq!(net.height(i), 9);
        assert_eq!(net.utxos(i), net.replayed_utxos(i), "node {i}");
        assert_eq!(net.utxos(i), net.utxos(3));
    }
}

/// Mainnet blocks 1..=255 (shared/data/bitcoin/blocks1-256.bz2: magic, length, block).
#[allow(clippy::disallowed_methods)] // a test reads its fixture
fn mainnet_blocks() -> Vec<Block> {
    use std::io::Read;
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bitcoin/blocks1-256.bz2");
    let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = Vec::new();
    bzip2::read::BzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .expect("bzip2");
    let mut blocks = Vec::new();
    let mut rest = &out[..];
    while rest.len() >= 8 {
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        blocks.push(Block::decode(&rest[8..8 + len]).expect("real block"));
        rest = &rest[8 + len..];
    }
    blocks
}

#[test]
fn a_node_syncs_the_first_real_mainnet_blocks_headers_first() {
    let blocks = mainnet_blocks();
    assert_eq!(blocks.len(), 255);
    let params = servent_coin::Params::mainnet();
    let mut net = Net::with_params(3, 5, params, Default::default());
    for b in &blocks {
        let id = net.next_id();
        net.command(
            0,
            Command::SubmitBlock {
                id,
                block: b.clone(),
            },
        );
    }
    let tip = blocks[254].header.hash();
    assert_eq!(net.tip(0), tip);
    // Two nodes download in parallel from node 0 and from each other.
    net.connect(1, 0);
    net.connect(2, 0);
    net.connect(2, 1);
    assert!(net.drive_until(Duration::from_secs(120), |n| all_at(n, &[1, 2], tip)));
    assert_eq!(net.utxos(2), net.utxos(0));
    assert_eq!(net.utxos(2), net.replayed_utxos(2));
}
