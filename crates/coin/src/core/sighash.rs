//! The legacy signature hash (Core's `SignatureHash` for `SigVersion::BASE`).
use crate::wire::{Transaction, write_compact_size};

pub const SIGHASH_ALL: i32 = 1;
pub const SIGHASH_NONE: i32 = 2;
pub const SIGHASH_SINGLE: i32 = 3;
pub const SIGHASH_ANYONECANPAY: i32 = 0x80;

/// The hash Core returns for an input index past the inputs, or for
/// `SIGHASH_SINGLE` without a matching output: the number one, little-endian.
pub const ONE: [u8; 32] = {
    let mut h = [0u8; 32];
    h[0] = 1;
    h
};

/// Write `script` without its `OP_CODESEPARATOR`s, prefixed by its new length,
/// exactly as Core's `CTransactionSignatureSerializer::SerializeScriptCode`.
fn write_script_code(out: &mut Vec<u8>, script: &[u8]) {
    let mut seps = Vec::new();
    let mut pc = 0;
    while let Some(op) = super::script::get_op(script, &mut pc) {
        if op.opcode == super::script::OP_CODESEPARATOR {
            seps.push(pc - 1);
        }
    }
    write_compact_size(out, (script.len() - seps.len()) as u64);
    let mut from = 0;
    for s in seps {
        out.extend_from_slice(&script[from..s]);
        from = s + 1;
    }
    out.extend_from_slice(&script[from..]);
}

/// Legacy signature hash of input `n_in` of `tx` under `script_code` and
/// `hash_type` (the full 32-bit value is committed, as Core does), including
/// the `SIGHASH_SINGLE` bug: no matching output hashes to [`ONE`].
pub fn legacy_sighash(
    tx: &Transaction,
    n_in: usize,
    script_code: &[u8],
    hash_type: i32,
) -> [u8; 32] {
    if n_in >= tx.inputs.len() {
        return ONE;
    }
    let base = hash_type & 0x1f;
    let anyone = hash_type & SIGHASH_ANYONECANPAY != 0;
    let single = base == SIGHASH_SINGLE;
    let none = base == SIGHASH_NONE;
    if single && n_in >= tx.outputs.len() {
        return ONE;
    }
    let mut out = Vec::with_capacity(128 + script_code.len() + tx.inputs.len() * 41);
    out.extend_from_slice(&tx.version.to_le_bytes());
    let inputs: Vec<usize> = if anyone {
        vec![n_in]
    } else {
        (0..tx.inputs.len()).collect()
    };
    write_compact_size(&mut out, inputs.len() as u64);
    for i in inputs {
        let txin = &tx.inputs[i];
        out.extend_from_slice(&txin.prevout.txid);
        out.extend_from_slice(&txin.prevout.vout.to_le_bytes());
        if i == n_in {
            write_script_code(&mut out, script_code);
        } else {
            out.push(0);
        }
        let seq = if i != n_in && (single || none) {
            0
        } else {
            txin.sequence
        };
        out.extend_from_slice(&seq.to_le_bytes());
    }
    let n_out = if none {
        0
    } else if single {
        n_in + 1
    } else {
        tx.outputs.len()
    };
    write_compact_size(&mut out, n_out as u64);
    for (k, o) in tx.outputs.iter().take(n_out).enumerate() {
        if single && k != n_in {
            out.extend_from_slice(&(-1i64).to_le_bytes());
            out.push(0);
        } else {
            out.extend_from_slice(&o.value.to_le_bytes());
            write_compact_size(&mut out, o.script_pubkey.len() as u64);
            out.extend_from_slice(&o.script_pubkey);
        }
    }
    out.extend_from_slice(&tx.lock_time.to_le_bytes());
    out.extend_from_slice(&hash_type.to_le_bytes());
    crate::sha256d(&out)
}
