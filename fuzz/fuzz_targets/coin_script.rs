//! The legacy script interpreter on arbitrary scriptSig, scriptPubKey and
//! flags, inside a spending transaction (so signature and lock-time checks
//! run for real), plus the signature hash and FindAndDelete. Never a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use secp256k1::{Secp256k1, VerifyOnly};
use servent_coin::core::script::{self, Flags, TxChecker, verify_script};
use servent_coin::core::legacy_sighash;
use servent_coin::wire::{OutPoint, Transaction, TxIn, TxOut};

static SECP: OnceLock<Secp256k1<VerifyOnly>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let flags = Flags(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
    let lock_time = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    let rest = &data[9..];
    let split = usize::from(data[8]).min(rest.len());
    let (sig, pk) = rest.split_at(split);
    let spend = Transaction {
        version: 2,
        inputs: vec![TxIn {
            prevout: OutPoint { txid: [7; 32], vout: 0 },
            script_sig: sig.to_vec(),
            sequence: lock_time.rotate_left(8),
        }],
        outputs: vec![TxOut { value: 1, script_pubkey: Vec::new() }],
        lock_time,
    };
    let secp = SECP.get_or_init(Secp256k1::verification_only);
    let mut checker = TxChecker::new(&spend, 0, secp);
    let _ = verify_script(sig, pk, flags, &mut checker);
    let _ = legacy_sighash(&spend, usize::from(data[8] & 3), pk, i32::from_le_bytes([data[0], data[1], data[2], data[3]]));
    let mut code = pk.to_vec();
    let _ = script::find_and_delete(&mut code, sig);
    assert!(code.len() <= pk.len());
});
