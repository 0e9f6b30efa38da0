//! Real mainnet blocks validated from genesis (shared/data/bitcoin, see its README).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::Read;
use std::time::Instant;

use secp256k1::Secp256k1;
use servent_coin::core::block::{BlockError, Chain, Entry, UtxoView, check_block, script_flags};
use servent_coin::core::script::ScriptError;
use servent_coin::wire::Block;
use servent_coin::{Params, merkle_root};

#[path = "support/data.rs"]
mod data;
use data::{block_367891, read};

/// Mainnet blocks 1..=255 from the blk*.dat layout (magic, length, block).
fn blocks_1_255() -> Vec<Block> {
    let mut raw = Vec::new();
    bzip2::read::BzDecoder::new(&read("blocks1-256.bz2")[..])
        .read_to_end(&mut raw)
        .expect("bzip2");
    assert_eq!(raw.len(), 58_731);
    let mut out = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        assert_eq!(&rest[..4], &[0xf9, 0xbe, 0xb4, 0xd9], "mainnet magic");
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        out.push(Block::decode(&rest[8..8 + len]).expect("real block decodes"));
        rest = &rest[8 + len..];
    }
    out
}

fn chain_to(blocks: &[Block], height: usize) -> Chain {
    let mut c = Chain::new(Params::mainnet());
    for b in &blocks[..height] {
        c.accept(b, i64::from(b.header.time))
            .expect("real block valid");
    }
    c
}

#[test]
fn mainnet_blocks_1_to_255_validate_from_genesis_to_260_utxos_of_12750_btc_and_disconnect_back() {
    let blocks = blocks_1_255();
    assert_eq!(blocks.len(), 255);
    let started = Instant::now();
    let mut chain = Chain::new(Params::mainnet());
    let mut states = Vec::new();
    let mut sig_checks = 0;
    for b in &blocks {
        states.push((chain.view.len(), chain.view.total()));
        let c = chain
            .accept(b, i64::from(b.header.time))
            .expect("real block valid");
        sig_checks += c.sig_checks;
    }
    println!(
        "blocks 1-255: validated in {:?}, {sig_checks} signature checks",
        started.elapsed()
    );
    assert_eq!(chain.height(), 255);
    assert_eq!(
        servent_coin::hash_hex(&chain.entries[255].hash),
        "00000000d0a75c861fabf9ff7b92022f60e4afeed9331fe5aa073d8e4706fe3c"
    );
    assert_eq!(chain.view.len(), 260);
    assert_eq!(
        chain.view.total().map(|a| a.to_sat()),
        Some(12_750 * 100_000_000)
    );
    assert_eq!(sig_checks, 7, "the 7 P2PK spends");
    // A block already connected cannot be connected again.
    assert_eq!(
        chain.accept(&blocks[254], i64::from(blocks[254].header.time)),
        Err(BlockError::BadPrev)
    );
    for b in blocks.iter().rev() {
        assert!(chain.disconnect_tip(b));
        assert_eq!(Some((chain.view.len(), chain.view.total())), states.pop());
    }
    assert!(chain.view.is_empty());
    assert_eq!(chain.height(), 0);
}

#[test]
fn flipped_bits_in_block_170_are_rejected_with_the_right_reason() {
    let blocks = blocks_1_255();
    let chain = chain_to(&blocks, 169);
    let good = blocks[169].clone();
    let now = i64::from(good.header.time);
    let p = Params::mainnet();
    assert_eq!(check_block(&good, &p, now), Ok(()));

    // Any header bit changes the hash: proof of work fails first, as in Core.
    type Flip = (&'static str, fn(&mut Block));
    let flips: [Flip; 6] = [
        ("version", |b| b.header.version ^= 1 << 1),
        ("prev", |b| b.header.prev[5] ^= 1),
        ("merkle", |b| b.header.merkle_root[0] ^= 1),
        ("time", |b| b.header.time ^= 1),
        ("bits", |b| b.header.bits ^= 1),
        ("nonce", |b| b.header.nonce ^= 1 << 7),
    ];
    for (field, flip) in flips {
        let mut b = good.clone();
        flip(&mut b);
        assert_eq!(
            check_block(&b, &p, now),
            Err(BlockError::HighHash),
            "{field}"
        );
    }
    // An exponent past the pow limit is refused before hashing.
    let mut b = good.clone();
    b.header.bits ^= 1 << 25;
    assert_eq!(check_block(&b, &p, now), Err(BlockError::BadBits));
    // The header context, on its own: wrong prev, wrong nBits, time not after MTP.
    let mut h = good.header.clone();
    h.prev[0] ^= 1;
    assert_eq!(chain.check_header(&h), Err(BlockError::BadPrev));
    let mut h = good.header.clone();
    h.bits ^= 1;
    assert!(matches!(
        chain.check_header(&h),
        Err(BlockError::WrongBits { .. })
    ));
    let mut h = good.header.clone();
    h.time = chain.median_time_past();
    assert_eq!(chain.check_header(&h), Err(BlockError::TimeTooOld));
    // Too far in the future for the caller's clock.
    assert_eq!(
        check_block(&good, &p, now - 2 * 3600 - 1),
        Err(BlockError::TimeTooNew)
    );

    // A flipped bit in a transaction: the merkle root no longer matches.
    let mut b = good.clone();
    b.txs[1].outputs[0].value ^= 1 << 40;
    assert_eq!(check_block(&b, &p, now), Err(BlockError::BadMerkleRoot));
    // ... and with the root recomputed, connecting finds outputs above inputs.
    let remerkle = |b: &mut Block| {
        let ids: Vec<_> = b.txs.iter().map(|t| t.txid()).collect();
        b.header.merkle_root = merkle_root(&ids).0;
    };
    remerkle(&mut b);
    let secp = Secp256k1::verification_only();
    let flags = script_flags(&p, 170, good.header.time);
    let mut view = chain.view.clone();
    assert_eq!(
        view.connect_block(&b, 170, &p, flags, &secp),
        Err(BlockError::InBelowOut(1))
    );
    // A flipped bit in the signature: the script fails, the view is unchanged.
    let mut b = good.clone();
    let sig = &mut b.txs[1].inputs[0].script_sig;
    sig[10] ^= 1;
    remerkle(&mut b);
    assert_eq!(
        view.connect_block(&b, 170, &p, flags, &secp),
        Err(BlockError::Script {
            tx: 1,
            input: 0,
            err: ScriptError::EvalFalse
        })
    );
    assert_eq!(view.coins, chain.view.coins);
    // CVE-2012-2459: [cb, tx, x] and [cb, tx, x, x] share a merkle root, so
    // the duplicate keeps a valid header and must be refused as mutated.
    // (Mined here on regtest's easy target.)
    let rt = Params::regtest();
    let mut b = good.clone();
    let mut x = b.txs[1].clone();
    x.lock_time = 1;
    b.txs.push(x.clone());
    remerkle(&mut b);
    b.header.bits = rt.genesis.header.bits;
    let mined = (0..10_000u32).any(|n| {
        b.header.nonce = n;
        servent_coin::core::block::check_header(&b.header, &rt, now).is_ok()
    });
    assert!(mined, "no regtest nonce in 10 000 tries");
    let root = b.header.merkle_root;
    b.txs.push(x);
    assert_eq!(
        merkle_root(&b.txs.iter().map(|t| t.txid()).collect::<Vec<_>>()),
        (root, true)
    );
    assert_eq!(check_block(&b, &rt, now), Err(BlockError::MutatedMerkle));
    // The real block still connects.
    assert_eq!(
        view.connect_block(&good, 170, &p, flags, &secp)
            .map(|c| c.sig_checks),
        Ok(1)
    );
}

#[test]
fn mainnet_block_367891_validates_against_its_spent_outputs_with_824_signature_checks() {
    let (block, in_block, mut view) = block_367891();
    let p = Params::mainnet();
    let now = i64::from(block.header.time);
    let started = Instant::now();
    check_block(&block, &p, now).expect("context-free checks");
    let flags = script_flags(&p, 367_891, block.header.time);
    let secp = Secp256k1::verification_only();
    let c = view
        .connect_block(&block, 367_891, &p, flags, &secp)
        .expect("block 367 891 valid");
    println!(
        "block 367891: validated in {:?}, {} signature checks",
        started.elapsed(),
        c.sig_checks
    );
    assert_eq!(c.sig_checks, 824);
    assert_eq!(c.fees.to_sat(), 14_001_930);
    // Every spent output is gone; the block's outputs are there.
    let outputs: usize = block.txs.iter().map(|t| t.outputs.len()).sum();
    let spent_inside = block
        .txs
        .iter()
        .flat_map(|t| &t.inputs)
        .filter(|i| in_block.contains(&i.prevout.txid))
        .count();
    assert_eq!(view.len(), outputs - spent_inside);
    // The wrong height in the coinbase (BIP34) is refused.
    let mut v2 = UtxoView::default();
    assert_eq!(
        v2.connect_block(&block, 367_892, &p, flags, &secp),
        Err(BlockError::BadCoinbaseHeight)
    );
}

#[test]
fn double_spends_immature_coinbase_spends_and_overpaying_coinbases_are_refused() {
    let blocks = blocks_1_255();
    let chain = chain_to(&blocks, 169);
    let p = Params::mainnet();
    let secp = Secp256k1::verification_only();
    let good = &blocks[169];
    let flags = script_flags(&p, 170, good.header.time);
    let mut view = chain.view.clone();
    // The same spend twice in one block: the second finds its input gone.
    let mut b = good.clone();
    b.txs.push(good.txs[1].clone());
    assert_eq!(
        view.connect_block(&b, 170, &p, flags, &secp),
        Err(BlockError::MissingInput(2, 0))
    );
    // Block 170 spends block 9's coinbase: at height 108 it is 99 blocks old.
    assert_eq!(
        view.connect_block(good, 108, &p, flags, &secp),
        Err(BlockError::PrematureCoinbaseSpend(1, 0))
    );
    // A coinbase paying one satoshi more than subsidy + fees (block 170 has no fee).
    let mut b = good.clone();
    b.txs[0].outputs[0].value += 1;
    assert_eq!(
        view.connect_block(&b, 170, &p, flags, &secp),
        Err(BlockError::CoinbaseTooLarge)
    );
    assert_eq!(
        view.coins, chain.view.coins,
        "every refusal leaves the view as it was"
    );
    // Connected once, the spend cannot happen again against the view.
    view.connect_block(good, 170, &p, flags, &secp)
        .expect("valid");
    let mut again = good.clone();
    again.txs[0].inputs[0].script_sig.push(0x51); // a different coinbase
    assert_eq!(
        view.connect_block(&again, 171, &p, flags, &secp),
        Err(BlockError::MissingInput(1, 0))
    );
}

fn synthetic(params: Params, n: u32, time: impl Fn(u32) -> u32) -> Chain {
    let mut c = Chain::new(params);
    let bits = c.entries[0].bits;
    c.entries.clear();
    for h in 0..=n {
        c.entries.push(Entry {
            hash: [h as u8; 32],
            time: time(h),
            bits,
        });
    }
    c
}

#[test]
fn retarget_uses_the_block_2015_back_and_regtest_never_retargets() {
    // Core's mainnet case for block 32 256: the interval's first block is
    // 30 240 (2015 blocks before 32 255), not 30 239.
    let c = synthetic(Params::mainnet(), 32_255, |h| match h {
        30_240 => 1_261_130_161,
        32_255 => 1_262_152_739,
        _ => 1_000_000_000,
    });
    assert_eq!(c.next_bits(), 0x1d00d86a);
    // Between retargets the last nBits carries over.
    let c = synthetic(Params::mainnet(), 32_254, |h| 1_231_006_505 + h);
    assert_eq!(c.next_bits(), 0x1d00ffff);
    // Regtest: a wildly fast interval changes nothing.
    let c = synthetic(Params::regtest(), 2015, |h| 1_296_688_602 + h);
    assert_eq!(c.next_bits(), 0x207fffff);
}

#[test]
fn median_time_past_is_the_middle_of_the_last_11_times() {
    // Times out of order: the last 11 are 100..=110 shuffled.
    let order = [105u32, 101, 110, 103, 100, 108, 102, 109, 104, 107, 106];
    let c = synthetic(Params::regtest(), 20, |h| {
        if h < 10 { 1 } else { order[(h - 10) as usize] }
    });
    assert_eq!(c.median_time_past(), 105);
}

/// The script checks of block 367 891 on two threads give what one thread
/// gives; a broken signature fails the block with the same first error,
/// and leaves the view as it was.
#[cfg(feature = "runtime")]
#[test]
fn block_367891_script_checks_on_two_threads_match_one_thread() {
    use servent_coin::core::block::run_script_checks;
    use servent_coin::parallel::run_script_checks_parallel;

    let (block, _, view) = block_367891();
    let p = Params::mainnet();
    let flags = script_flags(&p, 367_891, block.header.time);
    let secp = Secp256k1::verification_only();
    for threads in [1, 2, 3] {
        let mut v = view.clone();
        let mut jobs = 0;
        let c = v
            .connect_block_with(&block, 367_891, &p, flags, |checks| {
                jobs = checks.len();
                run_script_checks_parallel(checks, threads, &secp)
            })
            .expect("valid");
        assert_eq!((jobs, c.sig_checks), (20_817, 824), "{threads} threads");
        assert_eq!(c.fees.to_sat(), 14_001_930);
    }
    // Break one signature byte in two different inputs that carry signatures.
    let signed: Vec<(usize, usize)> = block
        .txs
        .iter()
        .enumerate()
        .skip(1)
        .flat_map(|(ti, t)| {
            t.inputs
                .iter()
                .enumerate()
                .filter(|(_, i)| i.script_sig.len() > 70)
                .map(move |(ii, _)| (ti, ii))
        })
        .collect();
    assert!(signed.len() >= 2);
    let mut bad = block.clone();
    for &(ti, ii) in [signed[signed.len() / 3], signed[signed.len() - 1]].iter() {
        // Byte 10 lies inside the DER signature's r value.
        bad.txs[ti].inputs[ii].script_sig[10] ^= 1;
    }
    bad.header.merkle_root = merkle_root(&bad.txs.iter().map(|t| t.txid()).collect::<Vec<_>>()).0;
    let (ti, ii) = signed[signed.len() / 3];
    let mut serial = view.clone();
    let one = serial.connect_block_with(&bad, 367_891, &p, flags, |c| run_script_checks(c, &secp));
    assert!(
        matches!(one, Err(BlockError::Script { tx, input, .. }) if (tx, input) == (ti, ii)),
        "{one:?}"
    );
    let mut v = view.clone();
    let two = v.connect_block_with(&bad, 367_891, &p, flags, |c| {
        run_script_checks_parallel(c, 2, &secp)
    });
    assert_eq!(two, one);
    // (Compared as a flag: printing 20 000 coins helps nobody.)
    assert!(
        v.coins == view.coins,
        "a refused block leaves the view unchanged: {} coins, {} before",
        v.len(),
        view.len()
    );
}

/// Block 367 891 spends outputs made earlier in the block: disconnecting
/// it gives back exactly the view it was connected to.
#[test]
fn disconnecting_block_367891_restores_the_view_it_spent_from() {
    let (block, _, view) = block_367891();
    let p = Params::mainnet();
    let flags = script_flags(&p, 367_891, block.header.time);
    let secp = Secp256k1::verification_only();
    let mut v = view.clone();
    let c = v
        .connect_block(&block, 367_891, &p, flags, &secp)
        .expect("valid");
    assert_eq!(
        c.undo.spent.len(),
        20_817,
        "in-block spends are in the undo data"
    );
    v.disconnect_block(&block, &c.undo);
    assert!(
        v.coins == view.coins,
        "{} coins after disconnect, {} before",
        v.len(),
        view.len()
    );
}

/// `parallel::validate_block` (check_block beside the connect loop, script
/// checks on two threads) gives what check_block then connect_block give:
/// the block connects, check_block's refusal wins, and the view
/// of a refused block is unchanged.
#[cfg(feature = "runtime")]
#[test]
fn validating_block_367891_on_two_threads_equals_check_then_connect() {
    use servent_coin::parallel::validate_block;

    let (block, _, view) = block_367891();
    let p = Params::mainnet();
    let flags = script_flags(&p, 367_891, block.header.time);
    let now = i64::from(block.header.time);
    let secp = Secp256k1::verification_only();
    let mut v = view.clone();
    let c = validate_block(&mut v, &block, 367_891, &p, flags, now, 2, &secp).expect("valid");
    assert_eq!((c.sig_checks, c.fees.to_sat()), (824, 14_001_930));
    assert_eq!(c.undo.spent.len(), 20_817);

    // Another merkle root: a header hash above the target, check_block's
    // first refusal, while the connect loop on the other thread passes.
    let mut bad = block.clone();
    bad.header.merkle_root[0] ^= 1;
    let mut v = view.clone();
    assert_eq!(
        validate_block(&mut v, &bad, 367_891, &p, flags, now, 2, &secp).map(|c| c.sig_checks),
        Err(BlockError::HighHash)
    );
    assert!(v.coins == view.coins, "refused: view unchanged");
    // Wrong BIP34 height: connect fails before any script check, check_block passes.
    let mut v = view.clone();
    assert_eq!(
        validate_block(&mut v, &block, 367_892, &p, flags, now, 2, &secp).map(|c| c.sig_checks),
        Err(BlockError::BadCoinbaseHeight)
    );
    assert!(v.coins == view.coins, "refused: view unchanged");
}
