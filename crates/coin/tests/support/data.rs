//! The real block data in shared/data/bitcoin (see its README), for the
//! tests and benches that `#[path]`-include this file.
#![allow(dead_code, clippy::disallowed_methods)]

use std::io::Read;
use std::path::PathBuf;

use servent_coin::core::block::{Coin, UtxoView};
use servent_coin::wire::{Block, Encode, TxOut};

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/bitcoin")
        .join(name)
}

pub fn read(name: &str) -> Vec<u8> {
    let p = path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("block data must be at {}: {e}", p.display()))
}

pub fn unzstd(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    ruzstd::decoding::StreamingDecoder::new(&read(name)[..])
        .expect("zstd frame")
        .read_to_end(&mut out)
        .expect("zstd");
    out
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Block 367 891, its txids, and a view holding the outputs it spends
/// from earlier blocks.
pub fn block_367891() -> (Block, Vec<[u8; 32]>, UtxoView) {
    let raw = unzstd("block_367891.raw.zst");
    assert_eq!(raw.len(), 999_994);
    let block = Block::decode(&raw).expect("block decodes");
    assert_eq!(block.encode(), raw);
    assert_eq!(
        block.header.hash_hex(),
        "000000000000000012ea0ca9579299ec120e3f57e7c309216884872592b29970"
    );
    let spent: serde_json::Value =
        serde_json::from_slice(&unzstd("block_367891.spent_utxos.json.zst")).expect("json");
    let spent = spent.as_array().expect("list");
    let mut view = UtxoView::default();
    let inputs = block.txs.iter().skip(1).flat_map(|t| t.inputs.iter());
    let mut n = 0;
    let in_block: Vec<[u8; 32]> = block.txs.iter().map(|t| t.txid()).collect();
    for (input, s) in inputs.zip(spent) {
        let out = TxOut {
            value: s["txout"]["value"].as_i64().expect("value"),
            script_pubkey: unhex(s["txout"]["script_pubkey"].as_str().expect("script")),
        };
        let coin = Coin {
            out,
            height: s["creation_height"].as_u64().expect("height") as u32,
            coinbase: s["is_coinbase"].as_bool().expect("flag"),
        };
        n += 1;
        // Outputs made earlier in this block are the block's own to create.
        if !in_block.contains(&input.prevout.txid) {
            view.coins.insert(input.prevout.clone(), coin);
        }
    }
    assert_eq!((n, spent.len()), (20_817, 20_817));
    (block, in_block, view)
}
