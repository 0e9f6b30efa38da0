//! Block templates and the proof-of-work search: what a template holds
//! (fee order, parents first, limits, coinbase value) and that what is
//! mined is a block the chain takes.
use proptest::prelude::*;
use secp256k1::Secp256k1;
use servent_coin::core::block::{
    Chain, Coin, MAX_BLOCK_SIGOPS, MAX_BLOCK_SIZE, UtxoView, check_block, legacy_sigops,
};
use servent_coin::core::mempool::{Mempool, MempoolConfig};
use servent_coin::mine::{Template, block_template, search};
use servent_coin::wire::{Block, BlockHeader, Encode, OutPoint, Transaction, TxIn, TxOut};
use servent_coin::{Amount, Params, hash_meets_target, sha256d, subsidy, target_from_compact};

const OP_TRUE: u8 = 0x51;
/// Far enough in the future that no regtest block time is "too new".
const NOW: i64 = 4_000_000_000;

fn pool() -> Mempool {
    Mempool::new(MempoolConfig::default())
}

fn spend(from: &[OutPoint], outs: &[i64]) -> Transaction {
    spend_to(from, outs, &[OP_TRUE])
}

fn spend_to(from: &[OutPoint], outs: &[i64], script: &[u8]) -> Transaction {
    Transaction {
        version: 1,
        inputs: from
            .iter()
            .map(|p| TxIn {
                prevout: p.clone(),
                script_sig: Vec::new(),
                sequence: u32::MAX,
            })
            .collect(),
        outputs: outs
            .iter()
            .map(|&value| TxOut {
                value,
                script_pubkey: script.to_vec(),
            })
            .collect(),
        lock_time: 0,
    }
}

fn op(tx: &Transaction, vout: u32) -> OutPoint {
    OutPoint {
        txid: tx.txid(),
        vout,
    }
}

/// `n` confirmed OP_TRUE coins of `value` (txids 1.., vout 0).
fn view(n: u32, value: i64) -> UtxoView {
    let mut v = UtxoView::default();
    for i in 0..n {
        v.coins.insert(coin(i), {
            Coin {
                out: TxOut {
                    value,
                    script_pubkey: vec![OP_TRUE],
                },
                height: 1,
                coinbase: false,
            }
        });
    }
    v
}

fn coin(i: u32) -> OutPoint {
    let mut txid = [0xc0; 32];
    txid[..4].copy_from_slice(&(i + 1).to_le_bytes());
    OutPoint { txid, vout: 0 }
}

fn template_at(height: u32, pool: &Mempool) -> Template {
    let p = Params::regtest();
    block_template(
        &p,
        [1; 32],
        height,
        p.pow_limit_bits,
        1_700_000_000,
        pool,
        &[OP_TRUE],
    )
    .expect("template")
}

/// Mine the chain's next block from `pool` with the single-threaded search.
fn mine_next(chain: &mut Chain, pool: &Mempool) -> (Template, Block) {
    let tip = chain.entries[chain.entries.len() - 1].clone();
    let height = chain.height() + 1;
    let mut t = block_template(
        &chain.params,
        tip.hash,
        height,
        chain.next_bits(),
        tip.time + 1,
        pool,
        &[OP_TRUE],
    )
    .expect("template");
    t.header.nonce = search(&t.header, 0..10_000).expect("regtest nonce in 10 000 tries");
    let b = t.block();
    (t, b)
}

fn txids(t: &Template) -> Vec<[u8; 32]> {
    t.txs.iter().map(Transaction::txid).collect()
}

#[test]
fn mined_regtest_templates_carrying_pool_transactions_are_accepted_by_the_chain() {
    let secp = Secp256k1::verification_only();
    let mut chain = Chain::new(Params::regtest());
    let empty = pool();
    let mut coinbases = Vec::new();
    for _ in 0..101 {
        let (_, b) = mine_next(&mut chain, &empty);
        check_block(&b, &chain.params, NOW).expect("check_block");
        chain.accept(&b, NOW).expect("accept");
        coinbases.push(b.txs[0].clone());
    }
    assert_eq!(chain.height(), 101);
    // Block 1's and 2's coinbases are mature for block 102.
    let value = coinbases[0].outputs[0].value;
    assert_eq!(value, 50 * 100_000_000);
    let parent = spend(&[op(&coinbases[0], 0)], &[value - 1_000]);
    let child = spend(&[op(&parent, 0)], &[value - 1_000 - 9_000]);
    let other = spend(&[op(&coinbases[1], 0)], &[value - 4_000]);
    let mut p = pool();
    for tx in [&parent, &child, &other] {
        p.accept(tx.clone(), &chain.view, 101, u32::MAX, &secp)
            .expect("pool accepts");
    }
    let (t, b) = mine_next(&mut chain, &p);
    assert_eq!(t.fees.to_sat(), 1_000 + 9_000 + 4_000);
    assert_eq!(
        t.coinbase.outputs[0].value,
        subsidy(102, 150).to_sat() + 14_000
    );
    // `other` pays more per byte than `parent`: first; the child follows its parent.
    assert_eq!(txids(&t), vec![other.txid(), parent.txid(), child.txid()]);
    let c = chain
        .accept(&b, NOW)
        .expect("the chain takes the mined block");
    assert_eq!(c.fees, t.fees);
    assert_eq!(chain.height(), 102);
    assert_eq!(chain.entries[102].hash, b.header.hash());
}

#[test]
fn transactions_come_highest_fee_rate_first() {
    let secp = Secp256k1::verification_only();
    let v = view(5, 100_000);
    let mut p = pool();
    let fees = [300, 5_000, 100, 2_000, 800];
    for (i, fee) in fees.iter().enumerate() {
        let tx = spend(&[coin(i as u32)], &[100_000 - fee]);
        p.accept(tx, &v, 10, 0, &secp).expect("accept");
    }
    let t = template_at(11, &p);
    let got: Vec<i64> = t
        .txs
        .iter()
        .map(|tx| 100_000 - tx.outputs[0].value)
        .collect();
    assert_eq!(got, vec![5_000, 2_000, 800, 300, 100]);
    assert_eq!(t.fees.to_sat(), fees.iter().sum::<i64>());
}

#[test]
fn a_high_fee_child_waits_for_its_low_fee_parent_and_follows_it() {
    let secp = Secp256k1::verification_only();
    let v = view(2, 1_000_000);
    let mut p = pool();
    let parent = spend(&[coin(0)], &[1_000_000 - 100]);
    let child = spend(&[op(&parent, 0)], &[1_000_000 - 100 - 50_000]);
    let grandchild = spend(&[op(&child, 0)], &[1_000_000 - 100 - 50_000 - 40_000]);
    let middle = spend(&[coin(1)], &[1_000_000 - 1_000]);
    for tx in [&parent, &child, &grandchild, &middle] {
        p.accept(tx.clone(), &v, 10, 0, &secp).expect("accept");
    }
    let t = template_at(11, &p);
    assert_eq!(
        txids(&t),
        vec![
            middle.txid(),
            parent.txid(),
            child.txid(),
            grandchild.txid()
        ]
    );
}

#[test]
fn the_coinbase_claims_subsidy_plus_fees_and_carries_the_height_and_an_extra_nonce() {
    // 149 and 150 have the top bit set: a second byte keeps the number positive.
    for (height, want, prefix) in [
        // 1..=16 are OP_1..OP_16, as Core's `CScript() << height` writes them
        (1, 5_000_000_000, &[0x51][..]),
        (16, 5_000_000_000, &[0x60][..]),
        (17, 5_000_000_000, &[0x01, 0x11][..]),
        (149, 5_000_000_000, &[0x02, 0x95, 0x00][..]),
        (150, 2_500_000_000, &[0x02, 0x96, 0x00][..]),
        (70_000, 0, &[0x03, 0x70, 0x11, 0x01][..]),
    ] {
        let mut t = template_at(height, &pool());
        assert_eq!(t.fees, Amount::ZERO);
        assert_eq!(t.coinbase.outputs[0].value, want);
        assert_eq!(t.coinbase.outputs[0].script_pubkey, vec![OP_TRUE]);
        let sig = t.coinbase.inputs[0].script_sig.clone();
        assert!(sig.starts_with(prefix), "BIP34 height push");
        assert_eq!(t.extra_nonce(), Some(0));
        let root = t.header.merkle_root;
        t.set_extra_nonce(7);
        assert_eq!(t.extra_nonce(), Some(7));
        let after = &t.coinbase.inputs[0].script_sig;
        assert_eq!(after.len(), sig.len(), "rolling keeps the size");
        assert_ne!(t.header.merkle_root, root, "a new coinbase, a new root");
        assert_eq!(t.header.merkle_root, t.coinbase.txid(), "root of one tx");
    }
}

#[test]
fn a_pool_bigger_than_a_block_fills_it_to_at_most_1_000_000_bytes() {
    let secp = Secp256k1::verification_only();
    let v = view(30, 10_000_000);
    let mut p = pool();
    // 30 transactions of about 50 kB: 1.5 MB in all.
    let big = vec![0x6a; 50_000];
    for i in 0..30 {
        let tx = spend_to(&[coin(i)], &[10_000_000 - 100_000 - i64::from(i)], &big);
        p.accept(tx, &v, 10, 0, &secp).expect("accept");
    }
    assert!(p.bytes() > MAX_BLOCK_SIZE);
    let t = template_at(11, &p);
    let b = t.block();
    let size = b.encode().len();
    assert!(size <= MAX_BLOCK_SIZE, "{size} bytes");
    assert_eq!(t.txs.len(), 19, "19 × 50 kB fit, 20 do not");
    let mut b = b;
    b.header.nonce = search(&b.header, 0..10_000).expect("nonce");
    check_block(&b, &Params::regtest(), NOW).expect("check_block takes it");
}

#[test]
fn sigops_above_the_block_limit_are_left_out() {
    let secp = Secp256k1::verification_only();
    let v = view(10, 10_000_000);
    let mut p = pool();
    // 2 500 OP_CHECKSIG in an output: 2 500 legacy sigops per transaction.
    let checksigs = vec![0xac; 2_500];
    for i in 0..10 {
        let tx = spend_to(
            &[coin(i)],
            &[10_000_000 - 10_000 - i64::from(i)],
            &checksigs,
        );
        p.accept(tx, &v, 10, 0, &secp).expect("accept");
    }
    let t = template_at(11, &p);
    assert_eq!(t.txs.len(), 8);
    let mut b = t.block();
    let sigops: usize = b
        .txs
        .iter()
        .flat_map(|tx| tx.outputs.iter().map(|o| legacy_sigops(&o.script_pubkey)))
        .sum();
    assert!(sigops <= MAX_BLOCK_SIGOPS);
    b.header.nonce = search(&b.header, 0..10_000).expect("nonce");
    check_block(&b, &Params::regtest(), NOW).expect("check_block takes it");
}

#[test]
fn a_transaction_not_final_at_the_template_height_waits() {
    let secp = Secp256k1::verification_only();
    let v = view(1, 100_000);
    let mut p = pool();
    let mut tx = spend(&[coin(0)], &[90_000]);
    tx.lock_time = 11; // final from height 12
    tx.inputs[0].sequence = 0;
    p.accept(tx.clone(), &v, 11, 0, &secp)
        .expect("final for block 12");
    assert!(template_at(11, &p).txs.is_empty());
    assert_eq!(txids(&template_at(12, &p)), vec![tx.txid()]);
}

#[test]
fn a_coinbase_script_too_large_for_a_block_is_an_error() {
    let p = Params::regtest();
    let huge = vec![OP_TRUE; MAX_BLOCK_SIZE];
    let r = block_template(&p, [0; 32], 1, p.pow_limit_bits, 0, &pool(), &huge);
    assert!(r.is_err());
}

fn naive(header: &BlockHeader, nonces: std::ops::Range<u32>) -> Option<u32> {
    let t = target_from_compact(header.bits);
    if t.negative || t.overflow {
        return None;
    }
    nonces.into_iter().find(|&n| {
        let mut h = header.clone();
        h.nonce = n;
        hash_meets_target(&sha256d(&h.encode()), &t.target)
    })
}

fn arb_bits() -> impl Strategy<Value = u32> {
    prop_oneof![
        // Targets met by 1/2 .. 1/2^16 of hashes, so ranges of a few hundred hit.
        Just(0x207f_ffffu32),
        Just(0x2000_ffffu32),
        Just(0x1f00_ffffu32),
        Just(0x1f7f_ffffu32),
        Just(0x2100_00ffu32),
        any::<u32>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn search_finds_the_same_first_nonce_as_hashing_every_header(
        version in any::<i32>(),
        prev in any::<[u8; 32]>(),
        merkle_root in any::<[u8; 32]>(),
        time in any::<u32>(),
        bits in arb_bits(),
        nonce in any::<u32>(),
        start in prop_oneof![any::<u32>(), Just(u32::MAX - 100)],
        len in 0u32..300,
    ) {
        let h = BlockHeader { version, prev, merkle_root, time, bits, nonce };
        let end = start.saturating_add(len);
        prop_assert_eq!(search(&h, start..end), naive(&h, start..end));
    }

    /// Any pool of chained spends: every transaction is taken and none
    /// comes before a parent.
    #[test]
    fn parents_always_precede_children(
        shape in proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>(), 100i64..50_000), 1..40),
    ) {
        let secp = Secp256k1::verification_only();
        let v = view(40, 100_000_000);
        let mut p = pool();
        let mut made: Vec<Transaction> = Vec::new();
        for (i, (pick, fresh, fee)) in shape.iter().enumerate() {
            // Spend a confirmed coin, or output `i % 2` of an earlier pool transaction.
            let (from, value) = if *fresh || made.is_empty() {
                (coin(i as u32), 100_000_000)
            } else {
                let parent = &made[pick.index(made.len())];
                let vout = (i % 2) as u32;
                (op(parent, vout), parent.outputs[vout as usize].value)
            };
            let rest = value - fee;
            let tx = spend(&[from], &[rest - rest / 2, rest / 2]);
            if p.accept(tx.clone(), &v, 10, 0, &secp).is_ok() {
                made.push(tx);
            }
        }
        let t = template_at(11, &p);
        prop_assert_eq!(t.txs.len(), p.len());
        let order = txids(&t);
        for (pos, tx) in t.txs.iter().enumerate() {
            for input in &tx.inputs {
                if let Some(ppos) = order.iter().position(|id| *id == input.prevout.txid) {
                    prop_assert!(ppos < pos, "parent at {} after child at {}", ppos, pos);
                }
            }
        }
    }
}

#[cfg(feature = "runtime")]
#[test]
fn the_threaded_miner_finds_a_block_the_chain_accepts_and_stops_when_told() {
    use servent_coin::mine::mine;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let mut chain = Chain::new(Params::regtest());
    let g = chain.entries[0].clone();
    let t = block_template(
        &chain.params,
        g.hash,
        1,
        chain.next_bits(),
        g.time + 1,
        &pool(),
        &[OP_TRUE],
    )
    .expect("template");
    let hashed = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let b = mine(t.clone(), 2, &stop, &|n| {
        hashed.fetch_add(n, Ordering::Relaxed);
    })
    .expect("a regtest block");
    assert!(hashed.load(Ordering::Relaxed) >= 1);
    chain.accept(&b, NOW).expect("accept");

    // A target no hash meets in practice: only `stop` ends the search,
    // here raised by the progress callback after 2^20 headers.
    let mut hard = t;
    hard.header.bits = 0x0300_0001;
    let stop = AtomicBool::new(false);
    let seen = AtomicU64::new(0);
    let r = mine(hard, 2, &stop, &|n| {
        if seen.fetch_add(n, Ordering::Relaxed) + n >= 1 << 20 {
            stop.store(true, Ordering::Relaxed);
        }
    });
    assert!(r.is_none());
}
