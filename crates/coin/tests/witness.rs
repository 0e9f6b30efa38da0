//! The BIP 144 (witness) serialization: what decodes, what is refused and
//! why, and that the txid never covers the witness.
use proptest::prelude::*;
use servent_coin::genesis_regtest;
use servent_coin::wire::{
    Block, DecodeError, Encode, OutPoint, Transaction, TxIn, TxOut, WitnessTx,
};

fn tx(inputs: usize) -> Transaction {
    Transaction {
        version: 2,
        inputs: (0..inputs)
            .map(|i| TxIn {
                prevout: OutPoint {
                    txid: [i as u8 + 1; 32],
                    vout: i as u32,
                },
                script_sig: Vec::new(),
                sequence: 0xffff_fffd,
            })
            .collect(),
        outputs: vec![TxOut {
            value: 50_000,
            script_pubkey: vec![
                0x00, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
            ],
        }],
        lock_time: 0,
    }
}

fn signed(inputs: usize) -> WitnessTx {
    WitnessTx {
        tx: tx(inputs),
        witness: (0..inputs)
            .map(|i| vec![vec![0x30; 71 + i], vec![0x02; 33]])
            .collect(),
    }
}

#[test]
fn a_witness_transaction_round_trips_and_its_txid_is_the_legacy_hash() {
    let w = signed(2);
    let bytes = w.encode();
    assert_eq!(
        bytes[4..6],
        [0x00, 0x01],
        "marker and flag after the version"
    );
    assert_eq!(WitnessTx::decode(&bytes), Ok(w.clone()));
    assert_eq!(w.txid(), w.tx.txid());
    assert_eq!(w.txid(), servent_coin::sha256d(&w.tx.encode()));
    assert_ne!(w.wtxid(), w.txid());
    // The legacy decoder refuses the marker, as before.
    assert_eq!(Transaction::decode(&bytes), Err(DecodeError::SegwitMarker));
    // A legacy transaction is a WitnessTx without witness, byte for byte.
    let legacy = w.tx.encode();
    let l = WitnessTx::decode(&legacy).expect("legacy decodes");
    assert!(l.witness.is_empty() && !l.has_witness());
    assert_eq!(l.encode(), legacy);
    assert_eq!(l.wtxid(), l.txid(), "no witness: wtxid = txid");
}

#[test]
fn a_witness_flag_with_only_empty_stacks_is_superfluous() {
    let mut w = signed(2);
    w.witness = vec![Vec::new(), Vec::new()];
    // Encoding drops the flag; write it by hand.
    let mut b = w.tx.version.to_le_bytes().to_vec();
    b.extend_from_slice(&[0x00, 0x01]);
    let legacy = w.tx.encode();
    b.extend_from_slice(&legacy[4..legacy.len() - 4]);
    b.extend_from_slice(&[0x00, 0x00]);
    b.extend_from_slice(&w.tx.lock_time.to_le_bytes());
    assert_eq!(WitnessTx::decode(&b), Err(DecodeError::SuperfluousWitness));
}

#[test]
fn flag_bits_other_than_the_witness_bit_are_refused() {
    let w = signed(1);
    let mut b = w.encode();
    b[5] = 0x03; // witness bit and an unknown one
    assert_eq!(
        WitnessTx::decode(&b),
        Err(DecodeError::UnknownOptionalData(0x02))
    );
    let legacy = w.tx.encode();
    let mut b = w.tx.version.to_le_bytes().to_vec();
    b.extend_from_slice(&[0x00, 0x02]);
    b.extend_from_slice(&legacy[4..]);
    assert_eq!(
        WitnessTx::decode(&b),
        Err(DecodeError::UnknownOptionalData(0x02))
    );
}

#[test]
fn no_inputs_and_no_outputs_reads_the_same_both_ways() {
    let mut b = 1i32.to_le_bytes().to_vec();
    b.extend_from_slice(&[0x00, 0x00, 0, 0, 0, 0]);
    let l = Transaction::decode(&b).expect("legacy");
    let w = WitnessTx::decode(&b).expect("witness-aware");
    assert_eq!(w.tx, l);
    assert!(l.inputs.is_empty() && l.outputs.is_empty());
    assert_eq!(w.encode(), b);
}

#[test]
fn every_truncation_is_an_error_and_huge_counts_are_refused_before_allocating() {
    let b = signed(3).encode();
    for n in 0..b.len() {
        assert!(WitnessTx::decode(&b[..n]).is_err(), "prefix of {n} bytes");
    }
    // One input whose witness stack claims 2^62 items.
    let w = signed(1);
    let legacy = w.tx.encode();
    let mut b = w.tx.version.to_le_bytes().to_vec();
    b.extend_from_slice(&[0x00, 0x01]);
    b.extend_from_slice(&legacy[4..legacy.len() - 4]);
    b.extend_from_slice(&[0xff, 0, 0, 0, 0, 0, 0, 0, 0x40]);
    assert!(matches!(
        WitnessTx::decode(&b),
        Err(DecodeError::Oversized(_))
    ));
    // A witness item longer than the input.
    let mut b = w.tx.version.to_le_bytes().to_vec();
    b.extend_from_slice(&[0x00, 0x01]);
    b.extend_from_slice(&legacy[4..legacy.len() - 4]);
    b.extend_from_slice(&[0x01, 0xfe, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
    assert!(matches!(
        WitnessTx::decode(&b),
        Err(DecodeError::Oversized(_))
    ));
}

#[test]
fn a_block_carrying_a_witness_is_refused_as_unexpected_witness() {
    let mut block = genesis_regtest();
    let w = signed(1);
    let mut raw = block.header.encode();
    raw.push(2);
    block.txs[0].encode_to(&mut raw);
    raw.extend_from_slice(&w.encode());
    assert_eq!(Block::decode(&raw), Err(DecodeError::UnexpectedWitness(1)));
    // Without the witness the same block decodes.
    block.txs.push(w.tx.clone());
    let stripped = block.encode();
    assert_eq!(Block::decode(&stripped), Ok(block));
}

fn arb_witness_tx() -> impl Strategy<Value = WitnessTx> {
    (1usize..4, any::<i32>(), any::<u32>()).prop_flat_map(|(n, version, lock_time)| {
        (
            proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4),
                n,
            ),
            proptest::collection::vec(any::<u8>(), 0..30),
        )
            .prop_map(move |(witness, script_sig)| {
                let mut t = tx(n);
                t.version = version;
                t.lock_time = lock_time;
                t.inputs[0].script_sig = script_sig;
                let witness = if witness.iter().all(Vec::is_empty) {
                    Vec::new()
                } else {
                    witness
                };
                WitnessTx { tx: t, witness }
            })
    })
}

proptest! {
    #[test]
    fn any_witness_tx_round_trips_with_a_txid_blind_to_the_witness(w in arb_witness_tx()) {
        let b = w.encode();
        prop_assert_eq!(WitnessTx::decode(&b), Ok(w.clone()));
        let mut bare = w.clone();
        bare.witness.clear();
        prop_assert_eq!(bare.txid(), w.txid());
    }
}
