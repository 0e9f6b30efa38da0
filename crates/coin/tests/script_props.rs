//! The interpreter on arbitrary input: never a panic, always the same answer,
//! the limits hold whatever the flags.
use proptest::prelude::*;
use secp256k1::Secp256k1;
use servent_coin::core::script::{
    self, Flags, NoChecker, ScriptError, TxChecker, eval_script, verify_script,
};
use servent_coin::wire::{OutPoint, Transaction, TxIn, TxOut};

fn spend(sig: &[u8], lock_time: u32) -> Transaction {
    Transaction {
        version: 2,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: [7; 32],
                vout: 0,
            },
            script_sig: sig.to_vec(),
            sequence: 0,
        }],
        outputs: vec![TxOut {
            value: 1,
            script_pubkey: Vec::new(),
        }],
        lock_time,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn arbitrary_scripts_and_flags_never_panic_and_are_deterministic(
        sig in proptest::collection::vec(any::<u8>(), 0..200),
        pk in proptest::collection::vec(any::<u8>(), 0..400),
        flags in any::<u32>(),
        lock_time in any::<u32>(),
    ) {
        let secp = Secp256k1::verification_only();
        let tx = spend(&sig, lock_time);
        let a = verify_script(&sig, &pk, Flags(flags), &mut TxChecker::new(&tx, 0, &secp));
        let b = verify_script(&sig, &pk, Flags(flags), &mut TxChecker::new(&tx, 0, &secp));
        prop_assert_eq!(a, b);
        let mut code = pk.clone();
        let _ = script::find_and_delete(&mut code, &sig);
        prop_assert!(code.len() <= pk.len());
    }

    #[test]
    fn opcode_soup_never_panics(ops in proptest::collection::vec(0x4fu8..=0xba, 0..300), flags in any::<u32>()) {
        let mut stack = Vec::new();
        let _ = eval_script(&mut stack, &ops, Flags(flags), &mut NoChecker);
        prop_assert!(stack.len() <= script::MAX_STACK_SIZE);
    }
}

#[test]
fn limits_are_enforced_exactly() {
    let run = |s: &[u8]| eval_script(&mut Vec::new(), s, Flags::NONE, &mut NoChecker);
    // 10 000 bytes run, 10 001 do not.
    let mut big = Vec::new();
    for _ in 0..19 {
        big.extend([script::OP_PUSHDATA2, 0x08, 0x02]);
        big.extend([1u8; 520]);
    }
    big.extend([0x51; 63]);
    assert_eq!(big.len(), 10_000);
    assert_eq!(run(&big), Ok(()));
    big.push(0x51);
    assert_eq!(run(&big), Err(ScriptError::ScriptSize));
    // 201 counted opcodes run, 202 do not.
    assert_eq!(run(&[0x61; 201]), Ok(()));
    assert_eq!(run(&[0x61; 202]), Err(ScriptError::OpCount));
    // A 520-byte push is fine, 521 is not.
    let mut p = vec![script::OP_PUSHDATA2, 0x08, 0x02];
    p.extend([1u8; 520]);
    assert_eq!(run(&p), Ok(()));
    let mut p = vec![script::OP_PUSHDATA2, 0x09, 0x02];
    p.extend([1u8; 521]);
    assert_eq!(run(&p), Err(ScriptError::PushSize));
    // 1 000 stack items are fine, 1 001 are not.
    assert_eq!(run(&[0x51; 1_000]), Ok(()));
    assert_eq!(run(&[0x51; 1_001]), Err(ScriptError::StackSize));
    // Disabled opcodes fail even in an unexecuted branch.
    assert_eq!(
        run(&[0x00, script::OP_IF, 0x7e, script::OP_ENDIF]),
        Err(ScriptError::DisabledOpcode)
    );
}
