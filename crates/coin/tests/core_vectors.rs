//! Bitcoin Core's JSON test vectors (src/test/data at 9f713b83), read from
//! the shared data folder beside the checkout: every pre-SegWit case must
//! pass, with Core's exact error for the failing scripts.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use secp256k1::Secp256k1;
use serde_json::Value;
use servent_coin::core::script::{self, Flags, TxChecker, verify_script};
use servent_coin::core::{check_transaction, legacy_sighash};
use servent_coin::hash_hex;
use servent_coin::wire::{Encode, OutPoint, Transaction, TxIn, TxOut, WitnessTx};

fn data(name: &str) -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/bitcoin/core");
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("Core's vectors must be at {}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Array(v)) => v,
        other => panic!("{name}: not a JSON array: {other:?}"),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len() / 2)
        .map(|i| {
            u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s}"))
        })
        .collect()
}

fn opcode_names() -> BTreeMap<String, u8> {
    let names = [
        "NOP",
        "VER",
        "IF",
        "NOTIF",
        "VERIF",
        "VERNOTIF",
        "ELSE",
        "ENDIF",
        "VERIFY",
        "RETURN",
        "TOALTSTACK",
        "FROMALTSTACK",
        "2DROP",
        "2DUP",
        "3DUP",
        "2OVER",
        "2ROT",
        "2SWAP",
        "IFDUP",
        "DEPTH",
        "DROP",
        "DUP",
        "NIP",
        "OVER",
        "PICK",
        "ROLL",
        "ROT",
        "SWAP",
        "TUCK",
        "CAT",
        "SUBSTR",
        "LEFT",
        "RIGHT",
        "SIZE",
        "INVERT",
        "AND",
        "OR",
        "XOR",
        "EQUAL",
        "EQUALVERIFY",
        "RESERVED1",
        "RESERVED2",
        "1ADD",
        "1SUB",
        "2MUL",
        "2DIV",
        "NEGATE",
        "ABS",
        "NOT",
        "0NOTEQUAL",
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "MOD",
        "LSHIFT",
        "RSHIFT",
        "BOOLAND",
        "BOOLOR",
        "NUMEQUAL",
        "NUMEQUALVERIFY",
        "NUMNOTEQUAL",
        "LESSTHAN",
        "GREATERTHAN",
        "LESSTHANOREQUAL",
        "GREATERTHANOREQUAL",
        "MIN",
        "MAX",
        "WITHIN",
        "RIPEMD160",
        "SHA1",
        "SHA256",
        "HASH160",
        "HASH256",
        "CODESEPARATOR",
        "CHECKSIG",
        "CHECKSIGVERIFY",
        "CHECKMULTISIG",
        "CHECKMULTISIGVERIFY",
        "NOP1",
        "CHECKLOCKTIMEVERIFY",
        "CHECKSEQUENCEVERIFY",
        "NOP4",
        "NOP5",
        "NOP6",
        "NOP7",
        "NOP8",
        "NOP9",
        "NOP10",
        "CHECKSIGADD",
    ];
    let mut m = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        let op = 0x61 + i as u8;
        m.insert(n.to_string(), op);
        m.insert(format!("OP_{n}"), op);
    }
    for (n, op) in [("RESERVED", 0x50u8), ("NOP2", 0xb1), ("NOP3", 0xb2)] {
        m.insert(n.to_string(), op);
        m.insert(format!("OP_{n}"), op);
    }
    m
}

/// Core's `ParseScript` (the test-vector assembly).
fn parse_script(asm: &str, names: &BTreeMap<String, u8>) -> Vec<u8> {
    let mut out = Vec::new();
    for w in asm.split_whitespace() {
        let digits = w.strip_prefix('-').unwrap_or(w);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = w.parse().unwrap_or_else(|_| panic!("bad number {w}"));
            if n == -1 || (1..=16).contains(&n) {
                out.push((n + 0x50) as u8);
            } else if n == 0 {
                out.push(0);
            } else {
                script::push_data(&mut out, &script::num_encode(n));
            }
        } else if let Some(h) = w.strip_prefix("0x") {
            out.extend(unhex(h));
        } else if w.len() >= 2 && w.starts_with('\'') && w.ends_with('\'') {
            script::push_data(&mut out, &w.as_bytes()[1..w.len() - 1]);
        } else {
            out.push(
                *names
                    .get(w)
                    .unwrap_or_else(|| panic!("unknown opcode {w} in {asm}")),
            );
        }
    }
    out
}

fn segwit_flags(f: &str) -> bool {
    f.contains("WITNESS") || f.contains("TAPROOT")
}

/// Core's `TrimFlags` restricted to the legacy flags: CLEANSTACK needs P2SH.
fn trim(f: Flags) -> Flags {
    if f.has(Flags::P2SH) {
        f
    } else {
        f.without(Flags::CLEANSTACK)
    }
}

const ALL: &[&str] = &[
    "P2SH",
    "STRICTENC",
    "DERSIG",
    "LOW_S",
    "NULLDUMMY",
    "SIGPUSHONLY",
    "MINIMALDATA",
    "DISCOURAGE_UPGRADABLE_NOPS",
    "CLEANSTACK",
    "CHECKLOCKTIMEVERIFY",
    "CHECKSEQUENCEVERIFY",
    "NULLFAIL",
    "CONST_SCRIPTCODE",
];

fn all_flags() -> Flags {
    Flags::parse(&ALL.join(",")).expect("known flags")
}

#[test]
fn sighash_json_all_500_vectors_match_core() {
    let (mut passed, mut failed) = (0, 0);
    for v in data("sighash.json") {
        let Some(a) = v.as_array().filter(|a| a.len() == 5) else {
            continue;
        };
        let tx = Transaction::decode(&unhex(a[0].as_str().unwrap_or_default()))
            .expect("sighash tx decodes");
        let script = unhex(a[1].as_str().unwrap_or_default());
        let n_in = a[2].as_u64().expect("index") as usize;
        let ht = a[3].as_i64().expect("hash type") as i32;
        let got = hash_hex(&legacy_sighash(&tx, n_in, &script, ht));
        if got == a[4].as_str().unwrap_or_default() {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("sighash mismatch: {v}");
        }
    }
    println!("sighash.json: {passed} passed, {failed} failed");
    assert_eq!((passed, failed), (500, 0));
}

fn credit_spend(sig: Vec<u8>, pk: Vec<u8>) -> Transaction {
    let credit = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: [0; 32],
                vout: u32::MAX,
            },
            script_sig: vec![0, 0],
            sequence: u32::MAX,
        }],
        outputs: vec![TxOut {
            value: 0,
            script_pubkey: pk,
        }],
        lock_time: 0,
    };
    Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: credit.txid(),
                vout: 0,
            },
            script_sig: sig,
            sequence: u32::MAX,
        }],
        outputs: vec![TxOut {
            value: 0,
            script_pubkey: Vec::new(),
        }],
        lock_time: 0,
    }
}

#[test]
fn script_tests_json_every_pre_segwit_case_gives_cores_result() {
    let names = opcode_names();
    let secp = Secp256k1::verification_only();
    let (mut passed, mut skipped, mut failed) = (0, 0, 0);
    for v in data("script_tests.json") {
        let Some(a) = v.as_array().filter(|a| a.len() >= 4) else {
            continue;
        };
        if a[0].is_array() || segwit_flags(a[2].as_str().unwrap_or_default()) {
            skipped += 1;
            continue;
        }
        let sig = parse_script(a[0].as_str().expect("sig"), &names);
        let pk = parse_script(a[1].as_str().expect("pk"), &names);
        let flags =
            Flags::parse(a[2].as_str().expect("flags")).unwrap_or_else(|| panic!("flags of {v}"));
        let expected = a[3].as_str().expect("result");
        let spend = credit_spend(sig.clone(), pk.clone());
        let mut checker = TxChecker::new(&spend, 0, &secp);
        let got = match verify_script(&sig, &pk, flags, &mut checker) {
            Ok(()) => "OK",
            Err(e) => e.core_name(),
        };
        if got == expected {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("script_tests: got {got}, want {expected}: {v}");
        }
    }
    println!(
        "script_tests.json: {passed} passed, {skipped} skipped as segwit/taproot (flags or witness serialization), {failed} failed"
    );
    assert_eq!(failed, 0);
    assert!(passed >= 1077, "only {passed} pre-SegWit cases ran");
}

fn crate_txid(tx: &Transaction) -> [u8; 32] {
    servent_coin::sha256d(&tx.encode())
}

type Prevouts = BTreeMap<(Vec<u8>, u32), Vec<u8>>;

/// The case's transaction (either serialization: the witness, if any, is
/// decoded, kept for the round trip and ignored by the legacy rules, as
/// Core ignores it without SCRIPT_VERIFY_WITNESS) and its prevouts.
fn tx_case(a: &[Value], names: &BTreeMap<String, u8>) -> Option<(WitnessTx, Prevouts)> {
    let tx = match WitnessTx::decode(&unhex(a[1].as_str()?)) {
        Ok(tx) => tx,
        Err(e) => panic!("tx does not decode ({e}): {:?}", a),
    };
    let mut prev = BTreeMap::new();
    for p in a[0].as_array()? {
        let p = p.as_array()?;
        let mut txid = unhex(p[0].as_str()?);
        txid.reverse();
        let vout = p[1].as_i64()? as i32 as u32;
        prev.insert((txid, vout), parse_script(p[2].as_str()?, names));
    }
    Some((tx, prev))
}

fn scripts_valid(
    tx: &Transaction,
    prev: &Prevouts,
    flags: Flags,
    secp: &Secp256k1<secp256k1::VerifyOnly>,
) -> bool {
    tx.inputs.iter().enumerate().all(|(i, input)| {
        let Some(pk) = prev.get(&(input.prevout.txid.to_vec(), input.prevout.vout)) else {
            return false;
        };
        let mut checker = TxChecker::new(tx, i, secp);
        verify_script(&input.script_sig, pk, flags, &mut checker).is_ok()
    })
}

#[test]
fn tx_valid_json_every_pre_segwit_case_is_valid_under_all_flags_but_the_excluded() {
    let names = opcode_names();
    let secp = Secp256k1::verification_only();
    let (mut passed, mut skipped, mut failed, mut witness_serialized) = (0, 0, 0, 0);
    for v in data("tx_valid.json") {
        let Some(a) = v.as_array().filter(|a| a.len() == 3 && a[0].is_array()) else {
            continue;
        };
        let excluded = a[2].as_str().expect("flags");
        if segwit_flags(excluded) {
            skipped += 1;
            continue;
        }
        let (wtx, prev) = tx_case(a, &names).unwrap_or_else(|| panic!("malformed case {v}"));
        witness_serialized += usize::from(wtx.has_witness());
        let tx = &wtx.tx;
        let excl = Flags::parse(excluded).unwrap_or_else(|| panic!("flags of {v}"));
        // Core's TrimFlags also makes CLEANSTACK need WITNESS, which is never
        // set here: for these (SegWit) transactions Core's result without
        // WITNESS is the one without CLEANSTACK. Legacy ones keep the
        // stricter pre-SegWit pairing (CLEANSTACK with P2SH only).
        let trim = |f: Flags| {
            if wtx.has_witness() {
                f.without(Flags::CLEANSTACK)
            } else {
                trim(f)
            }
        };
        let flags = trim(all_flags().without(excl));
        let mut ok = check_transaction(tx).is_ok() && scripts_valid(tx, &prev, flags, &secp);
        // Removing any flag must not invalidate a valid transaction.
        for name in ALL {
            let f = Flags::parse(name).expect("known");
            ok &= scripts_valid(tx, &prev, trim(flags.without(f)), &secp);
        }
        if ok {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("tx_valid failed: {v}");
        }
        assert_eq!(
            wtx.encode(),
            unhex(a[1].as_str().unwrap_or_default()),
            "round trip"
        );
        assert_eq!(
            wtx.txid(),
            crate_txid(tx),
            "txid is the legacy serialization's hash"
        );
    }
    println!(
        "tx_valid.json: {passed} passed ({witness_serialized} of them witness-serialized), {skipped} skipped for segwit/taproot flags, {failed} failed"
    );
    assert_eq!(failed, 0);
    assert_eq!(
        witness_serialized, 27,
        "witness-serialized cases without segwit flags"
    );
    assert!(passed >= 118, "only {passed} cases ran");
}

#[test]
fn tx_invalid_json_every_pre_segwit_case_is_rejected() {
    let names = opcode_names();
    let secp = Secp256k1::verification_only();
    let (mut passed, mut skipped, mut failed, mut witness_serialized) = (0, 0, 0, 0);
    for v in data("tx_invalid.json") {
        let Some(a) = v.as_array().filter(|a| a.len() == 3 && a[0].is_array()) else {
            continue;
        };
        let fl = a[2].as_str().expect("flags");
        if segwit_flags(fl) {
            skipped += 1;
            continue;
        }
        let (wtx, prev) = tx_case(a, &names).unwrap_or_else(|| panic!("malformed case {v}"));
        witness_serialized += usize::from(wtx.has_witness());
        let tx = &wtx.tx;
        let ok = if check_transaction(tx).is_err() {
            fl == "BADTX"
        } else if fl == "BADTX" {
            false
        } else {
            let flags = Flags::parse(fl).unwrap_or_else(|| panic!("flags of {v}"));
            // Invalid under its flags, and adding any flag keeps it invalid.
            !scripts_valid(tx, &prev, flags, &secp)
                && ALL.iter().all(|n| {
                    let f = Flags::parse(n).expect("known");
                    let mut g = flags.with(f);
                    if g.has(Flags::CLEANSTACK) {
                        g = g.with(Flags::P2SH);
                    }
                    !scripts_valid(tx, &prev, g, &secp)
                })
        };
        if ok {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("tx_invalid accepted: {v}");
        }
    }
    println!(
        "tx_invalid.json: {passed} passed ({witness_serialized} of them witness-serialized), {skipped} skipped for segwit/taproot flags, {failed} failed"
    );
    assert_eq!(failed, 0);
    assert!(passed >= 78, "only {passed} legacy cases ran");
}
