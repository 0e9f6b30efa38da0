//! The pool's admission and eviction rules, on transactions spending
//! `OP_1` outputs (valid with an empty scriptSig).
use secp256k1::Secp256k1;
use servent_coin::core::block::{Coin, UtxoView};
use servent_coin::core::mempool::{Mempool, MempoolConfig, MempoolError};
use servent_coin::wire::{Encode, OutPoint, Transaction, TxIn, TxOut};

const OP_TRUE: u8 = 0x51;

fn view(n: u8, value: i64) -> UtxoView {
    let mut v = UtxoView::default();
    for i in 0..n {
        v.coins.insert(
            OutPoint {
                txid: [i + 1; 32],
                vout: 0,
            },
            Coin {
                out: TxOut {
                    value,
                    script_pubkey: vec![OP_TRUE],
                },
                height: 1,
                coinbase: false,
            },
        );
    }
    v
}

fn spend(from: &[OutPoint], outs: &[i64]) -> Transaction {
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
                script_pubkey: vec![OP_TRUE],
            })
            .collect(),
        lock_time: 0,
    }
}

fn coin(i: u8) -> OutPoint {
    OutPoint {
        txid: [i + 1; 32],
        vout: 0,
    }
}

fn pool(max_bytes: usize) -> Mempool {
    Mempool::new(MempoolConfig {
        max_bytes,
        min_relay_per_kb: 1_000,
        ..MempoolConfig::default()
    })
}

#[test]
fn first_seen_wins_and_a_higher_fee_double_spend_is_refused() {
    let secp = Secp256k1::verification_only();
    let v = view(1, 100_000);
    let mut p = pool(1 << 20);
    let a = spend(&[coin(0)], &[90_000]);
    let b = spend(&[coin(0)], &[10_000]);
    assert_eq!(p.accept(a.clone(), &v, 10, 0, &secp), Ok(vec![]));
    assert_eq!(
        p.accept(b, &v, 10, 0, &secp),
        Err(MempoolError::Conflict(0))
    );
    assert_eq!(
        p.accept(a.clone(), &v, 10, 0, &secp),
        Err(MempoolError::AlreadyKnown)
    );
    assert_eq!(p.len(), 1);
    assert_eq!(p.get(&a.txid()).map(|e| e.fee.to_sat()), Some(10_000));
}

#[test]
fn fee_is_inputs_minus_outputs_and_must_meet_the_min_relay_rate() {
    let secp = Secp256k1::verification_only();
    let v = view(3, 100_000);
    let mut p = pool(1 << 20);
    let over = spend(&[coin(0)], &[100_001]);
    assert_eq!(
        p.accept(over, &v, 10, 0, &secp),
        Err(MempoolError::InBelowOut)
    );
    // 61 bytes at 1 000 sat/kB need 61 sat.
    let cheap = spend(&[coin(1)], &[100_000 - 60]);
    assert_eq!(cheap.encode().len(), 61);
    assert_eq!(
        p.accept(cheap, &v, 10, 0, &secp),
        Err(MempoolError::FeeTooLow { fee: 60, need: 61 })
    );
    let enough = spend(&[coin(1)], &[100_000 - 61]);
    assert_eq!(p.accept(enough, &v, 10, 0, &secp), Ok(vec![]));
    let missing = spend(&[coin(9)], &[1]);
    assert_eq!(
        p.accept(missing, &v, 10, 0, &secp),
        Err(MempoolError::MissingInput(0))
    );
    assert!(!p.is_empty() && p.len() == 1);
}

#[test]
fn a_full_pool_evicts_the_lowest_fee_rate_with_its_children_and_refuses_lower_newcomers() {
    let secp = Secp256k1::verification_only();
    let v = view(4, 100_000);
    // Room for three 61-byte transactions.
    let mut p = pool(183);
    let low = spend(&[coin(0)], &[99_000]); // 1 000 sat
    let child = spend(
        &[OutPoint {
            txid: low.txid(),
            vout: 0,
        }],
        &[97_000],
    ); // 2 000 sat
    let mid = spend(&[coin(1)], &[95_000]); // 5 000 sat
    assert_eq!(p.accept(low.clone(), &v, 10, 0, &secp), Ok(vec![]));
    assert_eq!(p.accept(child.clone(), &v, 10, 0, &secp), Ok(vec![]));
    assert_eq!(p.accept(mid.clone(), &v, 10, 0, &secp), Ok(vec![]));
    assert_eq!(p.bytes(), 183);
    // Below everything kept: refused, nothing changes.
    let lower = spend(&[coin(2)], &[99_500]);
    assert_eq!(p.accept(lower, &v, 10, 0, &secp), Err(MempoolError::Full));
    assert_eq!(p.len(), 3);
    // A better one evicts the lowest rate, and the child that spends it.
    let high = spend(&[coin(3)], &[90_000]);
    let mut evicted = p.accept(high.clone(), &v, 10, 0, &secp).expect("admitted");
    evicted.sort();
    let mut want = vec![low.txid(), child.txid()];
    want.sort();
    assert_eq!(evicted, want);
    assert!(p.contains(&high.txid()) && p.contains(&mid.txid()) && !p.contains(&child.txid()));
    let order: Vec<_> = p.by_fee_rate().map(|e| e.fee.to_sat()).collect();
    assert_eq!(order, vec![10_000, 5_000]);
    assert!(p.bytes() <= 183);
}

#[test]
fn a_block_removes_its_transactions_and_their_conflicts() {
    let secp = Secp256k1::verification_only();
    let v = view(2, 100_000);
    let mut p = pool(1 << 20);
    let a = spend(&[coin(0)], &[90_000]);
    let a_child = spend(
        &[OutPoint {
            txid: a.txid(),
            vout: 0,
        }],
        &[80_000],
    );
    let b = spend(&[coin(1)], &[90_000]);
    for t in [&a, &a_child, &b] {
        p.accept(t.clone(), &v, 10, 0, &secp).expect("admitted");
    }
    // The block confirms b and a different spend of coin 0.
    let rival = spend(&[coin(0)], &[50_000]);
    let mut gone = p.remove_for_block(&[b.clone(), rival]);
    gone.sort();
    let mut want = vec![a.txid(), a_child.txid()];
    want.sort();
    assert_eq!(gone, want);
    assert!(p.is_empty());
    assert_eq!(p.bytes(), 0);
}

#[test]
fn failing_scripts_immature_coinbases_and_coinbases_are_refused() {
    let secp = Secp256k1::verification_only();
    let mut v = view(1, 100_000);
    let mut p = pool(1 << 20);
    let mut bad = spend(&[coin(0)], &[90_000]);
    bad.inputs[0].script_sig = vec![0x00]; // pushes false; OP_1 then leaves 2 items (CLEANSTACK)
    assert!(matches!(
        p.accept(bad, &v, 10, 0, &secp),
        Err(MempoolError::Script { input: 0, .. })
    ));
    let cb_out = OutPoint {
        txid: [0xcc; 32],
        vout: 0,
    };
    v.coins.insert(
        cb_out.clone(),
        Coin {
            out: TxOut {
                value: 50_000,
                script_pubkey: vec![OP_TRUE],
            },
            height: 10,
            coinbase: true,
        },
    );
    let young = spend(std::slice::from_ref(&cb_out), &[40_000]);
    assert_eq!(
        p.accept(young.clone(), &v, 108, 0, &secp),
        Err(MempoolError::PrematureCoinbaseSpend(0))
    );
    assert_eq!(p.accept(young, &v, 109, 0, &secp), Ok(vec![]));
    let mut cb = spend(
        &[OutPoint {
            txid: [0; 32],
            vout: u32::MAX,
        }],
        &[1],
    );
    cb.inputs[0].script_sig = vec![1, 1];
    assert_eq!(p.accept(cb, &v, 10, 0, &secp), Err(MempoolError::Coinbase));
}

#[test]
fn a_reorg_returns_disconnected_transactions_to_the_pool() {
    let secp = Secp256k1::verification_only();
    let v = view(2, 100_000);
    let mut p = pool(1 << 20);
    let a = spend(&[coin(0)], &[90_000]);
    let child = spend(
        &[OutPoint {
            txid: a.txid(),
            vout: 0,
        }],
        &[80_000],
    );
    let cb = {
        let mut t = spend(
            &[OutPoint {
                txid: [0; 32],
                vout: u32::MAX,
            }],
            &[50_000],
        );
        t.inputs[0].script_sig = vec![1, 1];
        t
    };
    // The disconnected block held a coinbase, a and its child; the view is
    // back to before it, so a and child are spendable again, the coinbase is not.
    assert_eq!(
        p.readd_disconnected(&[cb, a.clone(), child.clone()], &v, 10, 0, &secp),
        2
    );
    assert!(p.contains(&a.txid()) && p.contains(&child.txid()));
}
