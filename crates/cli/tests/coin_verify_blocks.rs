//! `servent coin verify-blocks` on the real mainnet blocks in `../shared/data/bitcoin`
//! (issue 17): blocks 1–255 from genesis, block 367 891 against its spent outputs, and a copy
//! with one flipped bit refused with its reason.

use std::path::PathBuf;
use std::time::Duration;

mod common;
use common::{run, stdout, text};

const LIMIT: Duration = Duration::from_secs(120);

fn data(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bitcoin")
        .join(name);
    assert!(p.exists(), "the real block data must be at {}", p.display());
    p.to_str().unwrap().to_string()
}

#[test]
fn blocks_1_to_255_validate_from_genesis_to_260_utxos_of_12750_btc() {
    let o = run(&["coin", "verify-blocks", &data("blocks1-256.bz2")], LIMIT);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        out.contains("mainnet: 255 blocks, 262 transactions, 7 inputs, 7 signatures")
            && out.contains("7 signatures checked")
            && out.contains("height 255, 260 UTXOs holding 1275000000000 sat")
            && out.contains("all valid"),
        "{out}"
    );
}

#[test]
fn block_367891_validates_against_its_spent_outputs_with_824_signature_checks() {
    let o = run(
        &[
            "coin",
            "verify-blocks",
            &data("block_367891.raw.zst"),
            "--utxos",
            &data("block_367891.spent_utxos.json.zst"),
            "--json",
        ],
        LIMIT,
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["transactions"], 420);
    assert_eq!(v["inputs"], 20_817);
    assert_eq!(v["signatures"], 824);
}

#[test]
fn a_block_file_with_one_flipped_bit_is_refused_at_that_block_with_its_reason() {
    use std::io::Read;
    let mut raw = Vec::new();
    let f = std::fs::File::open(data("blocks1-256.bz2")).unwrap();
    bzip2::read::BzDecoder::new(f)
        .read_to_end(&mut raw)
        .unwrap();
    // Record 3 (height 3): flip a bit in its first transaction's output value, past the
    // 80-byte header and the transaction count.
    let mut at = 0;
    for _ in 0..2 {
        at += 8 + u32::from_le_bytes(raw[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    raw[at + 8 + 80 + 50] ^= 0x01;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("flipped.dat");
    std::fs::write(&p, &raw).unwrap();
    let o = run(&["coin", "verify-blocks", p.to_str().unwrap()], LIMIT);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let all = text(&o);
    assert!(
        all.contains("mainnet: 2 blocks")
            && all.contains("invalid: block 3 (")
            && all.contains("bad-txnmrklroot"),
        "{all}"
    );
}
