//! `servent coin`: the Bitcoin-compatible coin. Today: `verify-blocks`, full validation of
//! real blocks from a file with the consensus core (`servent_coin::core`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_coin::Params;
use servent_coin::core::block::{Chain, Coin, UtxoView, check_block, script_flags};
use servent_coin::wire::{Block, OutPoint, TxOut};

use crate::common;

#[derive(Args, Debug)]
#[command(after_help = common::EXIT_CODES_HELP)]
pub struct Cmd {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Validate blocks from a file with Bitcoin's consensus rules (before SegWit): proof of
    /// work, merkle root, every transaction and every signature. FILE is a blk*.dat-style file
    /// (magic, length, block; validated as a chain from the genesis of the network its magic
    /// names) or one raw serialized block (validated against `--utxos`); `.bz2` and `.zst`
    /// files are decompressed. Prints blocks, transactions, inputs and signatures checked, and
    /// the first failure with its reason (exit 1).
    VerifyBlocks {
        /// The block file.
        file: PathBuf,
        /// The outputs a raw block spends: a JSON list with one entry per non-coinbase input in
        /// block order, `{"txout": {"value": SAT, "script_pubkey": HEX}, "is_coinbase": BOOL,
        /// "creation_height": H}` (plain or .zst).
        #[arg(long)]
        utxos: Option<PathBuf>,
        /// The raw block's height (default: the height its coinbase states, BIP 34).
        #[arg(long)]
        height: Option<u32>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.cmd {
        Sub::VerifyBlocks {
            file,
            utxos,
            height,
            json,
        } => tokio::task::block_in_place(|| verify_blocks(&file, utxos.as_deref(), height, json)),
    }
}

/// Reads a file, decompressing `.bz2` and `.zst` by name, at most 4 GiB.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    const MAX: u64 = 4 << 30;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    let r: Box<dyn Read> = if name.ends_with(".bz2") {
        Box::new(bzip2::read::BzDecoder::new(f))
    } else if name.ends_with(".zst") {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(f)
                .map_err(|e| anyhow::anyhow!("{}: not zstd: {e}", path.display()))?,
        )
    } else {
        Box::new(f)
    };
    r.take(MAX + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {}", path.display()))?;
    if out.len() as u64 > MAX {
        bail!("{}: larger than 4 GiB", path.display());
    }
    Ok(out)
}

#[derive(Default)]
struct Counts {
    blocks: u64,
    txs: u64,
    inputs: u64,
    sigs: u64,
}

fn count(c: &mut Counts, b: &Block, sigs: usize) {
    c.blocks += 1;
    c.txs += b.txs.len() as u64;
    c.inputs += b
        .txs
        .iter()
        .skip(1)
        .map(|t| t.inputs.len() as u64)
        .sum::<u64>();
    c.sigs += sigs as u64;
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn verify_blocks(file: &Path, utxos: Option<&Path>, height: Option<u32>, json: bool) -> Result<()> {
    let data = read_file(file)?;
    let started = Instant::now();
    let mut c = Counts::default();
    let (network, outcome, tip) = if let Some(net) = blk_network(&data) {
        if utxos.is_some() {
            bail!(
                "--utxos is for one raw block; {} is a block file validated from genesis",
                file.display()
            );
        }
        let (name, params) = net;
        let mut chain = Chain::new(params.clone());
        let mut rest = &data[..];
        let mut outcome = Ok(());
        while !rest.is_empty() {
            let h = chain.height() + 1;
            let (block, used) = match next_record(rest, &params.magic) {
                Ok(x) => x,
                Err(e) => {
                    outcome = Err(format!("record {h}: {e}"));
                    break;
                }
            };
            rest = &rest[used..];
            match chain.accept(&block, now_unix()) {
                Ok(done) => count(&mut c, &block, done.sig_checks),
                Err(e) => {
                    outcome = Err(format!("block {h} ({}): {e}", block.header.hash_hex()));
                    break;
                }
            }
        }
        let tip = format!(
            "height {}, {} UTXOs holding {} sat",
            chain.height(),
            chain.view.len(),
            chain.view.total().map_or(-1, |a| a.to_sat())
        );
        (name, outcome, tip)
    } else {
        let block = Block::decode(&data).map_err(|e| {
            anyhow::anyhow!(
                "{}: neither a block file nor a raw block: {e}",
                file.display()
            )
        })?;
        let Some(utxos) = utxos else {
            bail!(
                "{} is one raw block: give the outputs it spends with --utxos FILE",
                file.display()
            );
        };
        let params = Params::mainnet();
        let h = match height {
            Some(h) => h,
            None => coinbase_height(&block)
                .context("the block's coinbase states no height (BIP 34): give it with --height")?,
        };
        let mut view = load_utxos(utxos, &block)?;
        let outcome = check_block(&block, &params, now_unix())
            .and_then(|()| {
                let flags = script_flags(&params, h, block.header.time);
                let secp = secp256k1::Secp256k1::verification_only();
                view.connect_block(&block, h, &params, flags, &secp)
            })
            .map(|done| count(&mut c, &block, done.sig_checks))
            .map_err(|e| format!("block {h} ({}): {e}", block.header.hash_hex()));
        ("mainnet", outcome, format!("height {h}"))
    };
    let secs = started.elapsed().as_secs_f64();
    let ok = outcome.is_ok();
    if json {
        common::print_json(&serde_json::json!({
            "network": network,
            "valid": ok,
            "blocks": c.blocks,
            "transactions": c.txs,
            "inputs": c.inputs,
            "signatures": c.sigs,
            "seconds": secs,
            "error": outcome.as_ref().err(),
        }));
    } else {
        println!(
            "{network}: {} blocks, {} transactions, {} inputs, {} signatures checked in {secs:.2} s; {tip}",
            c.blocks, c.txs, c.inputs, c.sigs
        );
    }
    match outcome {
        Ok(()) => {
            if !json {
                println!("all valid");
            }
            Ok(())
        }
        Err(e) => bail!("invalid: {e}"),
    }
}

/// The network a blk-format file's first magic names.
fn blk_network(data: &[u8]) -> Option<(&'static str, Params)> {
    let magic = data.get(..4)?;
    [
        ("mainnet", Params::mainnet()),
        ("regtest", Params::regtest()),
    ]
    .into_iter()
    .find(|(_, p)| p.magic == magic)
}

/// One `magic, length, block` record; the bytes it used.
fn next_record(rest: &[u8], magic: &[u8; 4]) -> Result<(Block, usize)> {
    if rest.len() < 8 {
        bail!("truncated record header");
    }
    if &rest[..4] != magic {
        bail!("bad magic {:02x?}", &rest[..4]);
    }
    let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
    let body = rest
        .get(8..8 + len)
        .with_context(|| format!("record of {len} bytes is truncated"))?;
    let block = Block::decode(body).map_err(|e| anyhow::anyhow!("block does not decode: {e}"))?;
    Ok((block, 8 + len))
}

/// BIP 34: the coinbase's scriptSig starts with a push of the height.
fn coinbase_height(b: &Block) -> Option<u32> {
    let script = &b.txs.first()?.inputs.first()?.script_sig;
    let n = usize::from(*script.first()?);
    if !(1..=4).contains(&n) {
        return None;
    }
    let bytes = script.get(1..1 + n)?;
    let mut v = 0u32;
    for (i, byte) in bytes.iter().enumerate() {
        v |= u32::from(*byte) << (8 * i);
    }
    Some(v)
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(s.as_bytes())
        .map_err(|e| anyhow::anyhow!("bad hex: {e}"))
}

/// The view holding the outputs the block spends, from the JSON list (one per non-coinbase
/// input in block order; outputs the block creates itself are left to it).
fn load_utxos(path: &Path, block: &Block) -> Result<UtxoView> {
    let v: serde_json::Value = serde_json::from_slice(&read_file(path)?)
        .with_context(|| format!("{}: not JSON", path.display()))?;
    let list = v
        .as_array()
        .with_context(|| format!("{}: not a JSON list", path.display()))?;
    let own: Vec<[u8; 32]> = block.txs.iter().map(|t| t.txid()).collect();
    let inputs: Vec<&OutPoint> = block
        .txs
        .iter()
        .skip(1)
        .flat_map(|t| t.inputs.iter().map(|i| &i.prevout))
        .collect();
    if inputs.len() != list.len() {
        bail!(
            "{}: {} entries for {} inputs",
            path.display(),
            list.len(),
            inputs.len()
        );
    }
    let mut view = UtxoView::default();
    for (i, (prevout, s)) in inputs.into_iter().zip(list).enumerate() {
        let bad = || anyhow::anyhow!("{}: entry {i} is malformed", path.display());
        let coin = Coin {
            out: TxOut {
                value: s["txout"]["value"].as_i64().ok_or_else(bad)?,
                script_pubkey: unhex(s["txout"]["script_pubkey"].as_str().ok_or_else(bad)?)?,
            },
            height: s["creation_height"]
                .as_u64()
                .and_then(|h| u32::try_from(h).ok())
                .ok_or_else(bad)?,
            coinbase: s["is_coinbase"].as_bool().ok_or_else(bad)?,
        };
        if !own.contains(&prevout.txid) {
            view.coins.insert(prevout.clone(), coin);
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coinbase_height_is_read_little_endian_from_the_first_push() {
        let mut b = Params::mainnet().genesis.clone();
        b.txs[0].inputs[0].script_sig = vec![3, 0x13, 0x9d, 0x05, 0xff];
        assert_eq!(coinbase_height(&b), Some(367_891));
        b.txs[0].inputs[0].script_sig = vec![0x4c, 1, 2];
        assert_eq!(coinbase_height(&b), None);
    }
}
