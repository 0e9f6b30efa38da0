//! The chain store: real mainnet blocks, regtest reorganisations, and
//! `kill -9` at random points.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use servent_coin::core::block::{BlockError, Chain, Coin};
use servent_coin::core::script::push_data;
use servent_coin::store::{Store, StoreError};
use servent_coin::wire::{Block, BlockHeader, OutPoint, Transaction, TxIn, TxOut};
use servent_coin::{Params, hash_meets_target, merkle_root, target_from_compact};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bitcoin")
        .join(name)
}

fn blocks_1_255() -> Vec<Block> {
    let p = data("blocks1-256.bz2");
    let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = Vec::new();
    bzip2::read::BzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .expect("bzip2");
    let mut blocks = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        blocks.push(Block::decode(&rest[8..8 + len]).expect("real block"));
        rest = &rest[8 + len..];
    }
    blocks
}

fn utxos(s: &Store) -> BTreeMap<OutPoint, Coin> {
    let mut m = BTreeMap::new();
    s.for_each_utxo(|op, c| {
        m.insert(op, c);
    })
    .expect("walk utxos");
    m
}

/// The UTXO set a fresh in-memory replay of `blocks` gives.
fn replay(params: Params, blocks: &[Block]) -> BTreeMap<OutPoint, Coin> {
    let mut c = Chain::new(params);
    for b in blocks {
        c.accept(b, i64::from(u32::MAX)).expect("replay");
    }
    c.view.coins
}

/// Store, counters and active chain agree with a replay of `path`.
fn assert_consistent(s: &Store, params: &Params, path: &[Block]) {
    let set = utxos(s);
    let want = replay(params.clone(), path);
    if set != want {
        let extra = set.keys().filter(|k| !want.contains_key(k)).count();
        let missing = want.keys().filter(|k| !set.contains_key(k)).count();
        panic!(
            "utxo set at height {} differs from a replay: {extra} extra, {missing} missing, {} stored vs {} replayed",
            s.height(),
            set.len(),
            want.len()
        );
    }
    assert_eq!(s.utxo_count().unwrap(), set.len() as u64, "utxo counter");
    let total: i64 = set.values().map(|c| c.out.value).sum();
    assert_eq!(
        s.utxo_total().unwrap().to_sat(),
        total,
        "utxo total counter"
    );
    assert_eq!(s.height() as usize, path.len());
    for (i, b) in path.iter().enumerate() {
        assert_eq!(
            s.hash_at(i as u32 + 1),
            Some(b.header.hash()),
            "chain at {}",
            i + 1
        );
    }
}

#[test]
fn mainnet_blocks_1_to_255_persist_and_reopen_with_260_utxos_of_12750_btc() {
    let blocks = blocks_1_255();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chain.db");
    let started = Instant::now();
    {
        let mut s = Store::open(&db, Params::mainnet()).unwrap();
        for (i, b) in blocks.iter().enumerate() {
            let a = s.accept_block(b, i64::from(b.header.time)).unwrap();
            assert!(a.connected && !a.reorged && !a.known);
            assert_eq!(a.height, i as u32 + 1);
        }
        // A block seen again changes nothing.
        let again = s.accept_block(&blocks[100], i64::from(u32::MAX)).unwrap();
        assert!(again.known && again.connected);
    }
    let took = started.elapsed();
    let s = Store::open(&db, Params::mainnet()).unwrap();
    println!("stored 255 mainnet blocks in {took:?}");
    assert_eq!(s.height(), 255);
    assert_eq!(
        servent_coin::hash_hex(&s.tip()),
        "00000000d0a75c861fabf9ff7b92022f60e4afeed9331fe5aa073d8e4706fe3c"
    );
    assert_eq!(s.utxo_count().unwrap(), 260);
    assert_eq!(s.utxo_total().unwrap().to_sat(), 12_750 * 100_000_000);
    assert_consistent(&s, &Params::mainnet(), &blocks);
    // Block 170 spent block 9's coinbase output: gone from the set.
    let b9 = blocks[8].txs[0].txid();
    assert_eq!(s.utxo(&OutPoint { txid: b9, vout: 0 }).unwrap(), None);
    assert_eq!(
        s.block(&blocks[169].header.hash()).unwrap().as_ref(),
        Some(&blocks[169])
    );
    // getheaders: from a locator, the next headers of the active chain.
    let loc = s.locator();
    assert_eq!(loc[0], s.tip());
    assert_eq!(loc.last(), Some(&Params::mainnet().genesis.header.hash()));
    let hs = s
        .headers_after(&[blocks[9].header.hash()], &[0; 32], 5)
        .unwrap();
    let want: Vec<BlockHeader> = blocks[10..15].iter().map(|b| b.header.clone()).collect();
    assert_eq!(hs, want);
    let stop = blocks[12].header.hash();
    assert_eq!(
        s.headers_after(&[blocks[9].header.hash()], &stop, 2000)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        s.headers_after(&[[9; 32]], &[0; 32], 2000).unwrap().len(),
        255
    );
    // Another network's store is refused.
    drop(s);
    assert!(matches!(
        Store::open(&db, Params::regtest()),
        Err(StoreError::WrongNetwork { .. })
    ));
}

#[test]
fn a_block_without_its_parent_or_failing_checks_is_refused_and_not_stored() {
    let blocks = blocks_1_255();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path().join("c.db"), Params::mainnet()).unwrap();
    assert!(matches!(
        s.accept_block(&blocks[1], i64::from(u32::MAX)),
        Err(StoreError::UnknownParent(_))
    ));
    let mut bad = blocks[0].clone();
    bad.header.nonce ^= 1;
    assert!(matches!(
        s.accept_block(&bad, i64::from(u32::MAX)),
        Err(StoreError::Invalid {
            err: BlockError::HighHash,
            ..
        })
    ));
    assert!(!s.has_block(&bad.header.hash()).unwrap());
    assert_eq!(s.height(), 0);
}

// ---- regtest chains mined in the test (regtest PoW: about two tries a block) ----

const OP_TRUE: u8 = 0x51;

fn coinbase(height: u32, tag: u8, value: i64) -> Transaction {
    let mut sig = servent_coin::core::block::bip34_prefix(height);
    push_data(&mut sig, &[tag]);
    Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: [0; 32],
                vout: u32::MAX,
            },
            script_sig: sig,
            sequence: u32::MAX,
        }],
        outputs: vec![TxOut {
            value,
            script_pubkey: vec![OP_TRUE],
        }],
        lock_time: 0,
    }
}

/// A spend of an OP_TRUE output into two OP_TRUE outputs.
fn spend(op: OutPoint, value: i64, fee: i64) -> Transaction {
    let half = (value - fee) / 2;
    Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: op,
            script_sig: vec![],
            sequence: u32::MAX,
        }],
        outputs: vec![
            TxOut {
                value: half,
                script_pubkey: vec![OP_TRUE],
            },
            TxOut {
                value: value - fee - half,
                script_pubkey: vec![OP_TRUE],
            },
        ],
        lock_time: 0,
    }
}

fn mine(prev: &BlockHeader, height: u32, txs: Vec<Transaction>) -> Block {
    let ids: Vec<[u8; 32]> = txs.iter().map(Transaction::txid).collect();
    let mut header = BlockHeader {
        version: 4,
        prev: prev.hash(),
        merkle_root: merkle_root(&ids).0,
        time: prev.time + 600,
        bits: 0x207f_ffff,
        nonce: 0,
    };
    let target = target_from_compact(header.bits).target;
    let _ = height;
    while !hash_meets_target(&header.hash(), &target) {
        header.nonce += 1;
    }
    Block { header, txs }
}

/// `n` blocks after `base` (a path from genesis), tagged `tag`; from height
/// 101 each spends the first output of the coinbase 100 blocks back, paying
/// a fee that depends on the tag (so branches differ in their UTXO sets).
fn extend(base: &[Block], n: usize, tag: u8) -> Vec<Block> {
    let params = Params::regtest();
    let mut path = base.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let height = path.len() as u32 + 1;
        let prev = path
            .last()
            .map_or(params.genesis.header.clone(), |b| b.header.clone());
        let mut txs = vec![];
        let mut fees = 0;
        if height > 100 {
            let src = &path[height as usize - 101].txs[0];
            let fee = 1000 * i64::from(tag);
            txs.push(spend(
                OutPoint {
                    txid: src.txid(),
                    vout: 0,
                },
                src.outputs[0].value,
                fee,
            ));
            fees += fee;
        }
        let reward = servent_coin::subsidy(height, params.halving_interval).to_sat() + fees;
        txs.insert(0, coinbase(height, tag, reward));
        let b = mine(&prev, height, txs);
        path.push(b.clone());
        out.push(b);
    }
    out
}

const NOW: i64 = u32::MAX as i64;

#[test]
fn regtest_reorg_to_the_heavier_branch_then_an_invalid_heavier_branch_leaves_the_tip() {
    let params = Params::regtest();
    let prefix = extend(&[], 101, 1);
    let a = extend(&prefix, 2, 2);
    let b = extend(&prefix, 3, 3);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut s = Store::open(&db, params.clone()).unwrap();
    for blk in prefix.iter().chain(&a) {
        assert!(s.accept_block(blk, NOW).unwrap().connected);
    }
    let path_a: Vec<Block> = prefix.iter().chain(&a).cloned().collect();
    assert_consistent(&s, &params, &path_a);
    // Equal work: the first seen stays.
    for blk in &b[..2] {
        let r = s.accept_block(blk, NOW).unwrap();
        assert!(!r.connected && !r.reorged);
    }
    assert_eq!(s.tip(), a[1].header.hash());
    // More work: reorganise, disconnecting A's two blocks.
    let started = Instant::now();
    let r = s.accept_block(&b[2], NOW).unwrap();
    println!("reorg of 2 -> 3 blocks in {:?}", started.elapsed());
    assert!(r.connected && r.reorged);
    assert_eq!(r.height, 104);
    let gone: Vec<[u8; 32]> = r.disconnected.iter().map(|x| x.header.hash()).collect();
    assert_eq!(gone, vec![a[1].header.hash(), a[0].header.hash()]);
    let path_b: Vec<Block> = prefix.iter().chain(&b).cloned().collect();
    assert_consistent(&s, &params, &path_b);

    // A heavier branch A whose last block overpays its coinbase: A3 is
    // valid (equal work to B, so no switch), A4 fails on connect.
    let a3 = extend(&path_a, 1, 2);
    let path_a3: Vec<Block> = path_a.iter().chain(&a3).cloned().collect();
    let mut a4 = extend(&path_a3, 1, 2).remove(0);
    a4.txs[0].outputs[0].value += 1;
    let ids: Vec<[u8; 32]> = a4.txs.iter().map(Transaction::txid).collect();
    a4.header.merkle_root = merkle_root(&ids).0;
    let prev = a3[0].header.clone();
    let a4 = mine(&prev, 105, a4.txs);
    assert!(!s.accept_block(&a3[0], NOW).unwrap().connected);
    match s.accept_block(&a4, NOW) {
        Err(StoreError::Invalid { err, .. }) => assert_eq!(err, BlockError::CoinbaseTooLarge),
        other => panic!("overpaying block accepted: {other:?}"),
    }
    assert!(s.is_invalid(&a4.header.hash()).unwrap());
    assert_eq!(s.tip(), b[2].header.hash(), "old tip stays");
    assert_consistent(&s, &params, &path_b);
    // Offered again, it is refused without revalidation; its descendants are refused too.
    assert!(matches!(
        s.accept_block(&a4, NOW),
        Err(StoreError::KnownInvalid(_))
    ));
    let a5 = mine(&a4.header, 106, vec![coinbase(106, 2, 1)]);
    assert!(matches!(
        s.accept_block(&a5, NOW),
        Err(StoreError::InvalidParent(_))
    ));
    drop(s);
    let s = Store::open(&db, params.clone()).unwrap();
    assert_eq!(s.tip(), b[2].header.hash());
    assert_consistent(&s, &params, &path_b);
}

// ---- kill -9 ----

const CHILD_ENV: &str = "SERVENT_COIN_STORE_CRASH_CHILD";

const X_LEN: usize = 380;
const FORK: usize = 330;
const Y_LEN: usize = 60;

/// The feed the child connects: main chain X (380 blocks), then a branch Y
/// forking at 330 and overtaking X at its 51st block (a 50-block reorg in
/// one transaction).
fn crash_feed() -> (Vec<Block>, Vec<Block>) {
    let x = extend(&[], X_LEN, 1);
    let y = extend(&x[..FORK], Y_LEN, 4);
    (x, y)
}

fn child(db: &Path) {
    let (x, y) = crash_feed();
    let mut s = Store::open(db, Params::regtest()).expect("child opens");
    for b in x.iter().chain(&y) {
        let a = s.accept_block(b, NOW).expect("child accepts");
        if !a.known {
            println!("accepted {}", a.height);
        }
    }
}

#[test]
fn kill_9_at_20_random_points_leaves_a_consistent_store_that_resumes() {
    let dir_env = std::env::var_os(CHILD_ENV);
    if let Some(dir) = dir_env {
        child(Path::new(&dir));
        return;
    }
    let params = Params::regtest();
    let (x, y) = crash_feed();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let exe = std::env::current_exe().unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut seen_heights = Vec::new();
    for round in 0..20 {
        let mut c = std::process::Command::new(&exe)
            .args([
                "--exact",
                "kill_9_at_20_random_points_leaves_a_consistent_store_that_resumes",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_ENV, &db)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let the child accept 1..=45 new blocks, then kill it within 0..3 ms:
        // in the middle of its next block's (or the reorg's) transaction.
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let wanted = 1 + (seed >> 33) % 45;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(c.stdout.take().unwrap()));
        let mut got = 0;
        while got < wanted {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("accepted ") => got += 1,
                Some(Ok(_)) => {}
                _ => break, // the child finished the feed
            }
        }
        std::thread::sleep(Duration::from_micros((seed >> 20) % 3000));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let s = Store::open(&db, params.clone()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let h = s.height() as usize;
        // The tip is on X or (after the reorg) on Y.
        let path: Vec<Block> =
            if s.hash_at(h as u32) == x.get(h.wrapping_sub(1)).map(|b| b.header.hash()) {
                x[..h].to_vec()
            } else {
                x[..FORK].iter().chain(&y[..h - FORK]).cloned().collect()
            };
        assert_consistent(&s, &params, &path);
        seen_heights.push(h);
    }
    println!("heights at the 20 kills: {seen_heights:?}");
    // The last run completes and ends where an uninterrupted one does.
    let st = std::process::Command::new(&exe)
        .args([
            "--exact",
            "kill_9_at_20_random_points_leaves_a_consistent_store_that_resumes",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &db)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let s = Store::open(&db, params.clone()).unwrap();
    let path: Vec<Block> = x[..FORK].iter().chain(&y).cloned().collect();
    assert_eq!(s.tip(), y[Y_LEN - 1].header.hash());
    assert_consistent(&s, &params, &path);
    assert!(
        seen_heights.iter().filter(|&&h| h < FORK + Y_LEN).count() >= 10,
        "some kill landed mid-sync: {seen_heights:?}"
    );
}
