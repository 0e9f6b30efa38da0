//! Mining: block templates from the mempool and the proof-of-work search.
//!
//! - [`block_template`] fills a block from a [`Mempool`]: transactions by
//!   fee rate, a parent always before its children, within the block size
//!   and sigop limits, and a coinbase paying subsidy + fees whose scriptSig
//!   is the BIP34 height followed by an 8-byte extra nonce.
//! - [`search`] scans a nonce range with the SHA-256 midstate: the first 64
//!   header bytes are compressed once, then each nonce costs two
//!   compressions (the header's last block and the second hash), through
//!   `sha2::compress256`, which uses the CPU's SHA extensions when present.
//! - `mine` (cargo feature `runtime`) runs [`search`] on several threads
//!   and rolls the extra nonce when the nonce space is exhausted.
//!
//! Everything here but `mine` is pure: the caller passes the chain tip,
//! the time and the pool.
//!
//! ```
//! use servent_coin::core::block::Chain;
//! use servent_coin::core::mempool::{Mempool, MempoolConfig};
//! use servent_coin::mine::{block_template, search};
//! use servent_coin::Params;
//!
//! let params = Params::regtest();
//! let chain = Chain::new(params.clone());
//! let tip = chain.entries[0].clone();
//! let pool = Mempool::new(MempoolConfig::default());
//! let mut t = block_template(&params, tip.hash, 1, chain.next_bits(), tip.time + 1, &pool, &[0x51])
//!     .expect("an empty template fits");
//! t.header.nonce = search(&t.header, 0..1_000).expect("regtest needs about two tries");
//! let mut chain = chain;
//! assert!(chain.accept(&t.block(), i64::from(tip.time) + 60).is_ok());
//! ```
#[cfg(feature = "runtime")]
mod threads;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use sha2::digest::generic_array::GenericArray;
use thiserror::Error;

use crate::core::block::{
    MAX_BLOCK_SIGOPS, MAX_BLOCK_SIZE, bip34_prefix, is_final, legacy_sigops, p2sh_sigops,
};
use crate::core::mempool::{Mempool, PoolEntry};
use crate::core::script::push_data;
use crate::wire::{Block, BlockHeader, Encode, OutPoint, Transaction, TxIn, TxOut};
use crate::{Amount, Params, hash_meets_target, merkle_root, subsidy, target_from_compact};

#[cfg(feature = "runtime")]
pub use threads::mine;

/// Block version of templates: BIP9's top bits, no deployment signalled
/// (as Core's miner; at least 4, so BIP34/66/65 are satisfied).
pub const TEMPLATE_VERSION: i32 = 0x2000_0000;

/// Bytes reserved for the transaction count (a CompactSize below 65 536;
/// a 1 000 000-byte block holds fewer than 17 000 transactions).
const TX_COUNT_BYTES: usize = 3;

/// Why no template could be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MineError {
    #[error("coinbase script of {0} bytes leaves no room in a block")]
    CoinbaseTooLarge(usize),
    #[error("fees of the selected transactions leave the money range")]
    FeesOutOfRange,
    #[error("subsidy + fees leave the money range")]
    CoinbaseValueOutOfRange,
}

/// A block to mine: the header (nonce 0) commits to `coinbase` followed by
/// `txs`. The coinbase scriptSig is the BIP34 height push then an 8-byte
/// push of the extra nonce, which [`Template::set_extra_nonce`] rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub height: u32,
    pub header: BlockHeader,
    pub coinbase: Transaction,
    /// The block's other transactions, parents before children.
    pub txs: Vec<Transaction>,
    /// What `txs` pay in fees (the coinbase claims them).
    pub fees: Amount,
}

impl Template {
    /// The block as it stands (with the header's current nonce).
    pub fn block(&self) -> Block {
        let mut txs = Vec::with_capacity(self.txs.len() + 1);
        txs.push(self.coinbase.clone());
        txs.extend(self.txs.iter().cloned());
        Block {
            header: self.header.clone(),
            txs,
        }
    }

    /// The extra nonce in the coinbase scriptSig.
    pub fn extra_nonce(&self) -> Option<u64> {
        let s = &self.coinbase.inputs.first()?.script_sig;
        let tail = s.get(s.len().checked_sub(8)?..)?;
        Some(u64::from_le_bytes(tail.try_into().ok()?))
    }

    /// Put `n` in the coinbase's extra-nonce field and recompute the merkle
    /// root (the block size does not change). The nonce is reset to 0.
    pub fn set_extra_nonce(&mut self, n: u64) {
        if let Some(input) = self.coinbase.inputs.first_mut() {
            let s = &mut input.script_sig;
            if let Some(start) = s.len().checked_sub(8) {
                s[start..].copy_from_slice(&n.to_le_bytes());
            }
        }
        self.header.merkle_root = self.merkle_root();
        self.header.nonce = 0;
    }

    fn merkle_root(&self) -> [u8; 32] {
        let ids: Vec<[u8; 32]> = std::iter::once(&self.coinbase)
            .chain(&self.txs)
            .map(Transaction::txid)
            .collect();
        merkle_root(&ids).0
    }
}

fn coinbase(height: u32, extra_nonce: u64, value: i64, script: &[u8]) -> Transaction {
    let mut script_sig = bip34_prefix(height);
    push_data(&mut script_sig, &extra_nonce.to_le_bytes());
    Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: [0; 32],
                vout: u32::MAX,
            },
            script_sig,
            sequence: u32::MAX,
        }],
        outputs: vec![TxOut {
            value,
            script_pubkey: script.to_vec(),
        }],
        lock_time: 0,
    }
}

/// An upper bound of the sigops `tx` adds to a block: legacy counts, plus
/// each input's redeem-script count as if it spent a P2SH output (the pool
/// does not keep the spent scripts; a P2SH spend counts exactly this).
fn sigops_bound(tx: &Transaction) -> usize {
    tx.inputs
        .iter()
        .map(|i| legacy_sigops(&i.script_sig) + p2sh_sigops(&i.script_sig))
        .chain(tx.outputs.iter().map(|o| legacy_sigops(&o.script_pubkey)))
        .sum()
}

/// A template for the block at `height` on top of `prev_hash`: pool
/// transactions that are final at `height`/`time`, highest fee rate first,
/// a transaction waiting for its pool parents and following right after
/// the last of them is taken; one that would overflow the block size or
/// the sigop limit is skipped (and so are its descendants). The coinbase
/// pays subsidy + fees to `coinbase_script`.
pub fn block_template(
    params: &Params,
    prev_hash: [u8; 32],
    height: u32,
    bits: u32,
    time: u32,
    pool: &Mempool,
    coinbase_script: &[u8],
) -> Result<Template, MineError> {
    let subsidy = subsidy(height, params.halving_interval);
    // Value and extra nonce have fixed widths: the final coinbase has this size.
    let probe = coinbase(height, 0, subsidy.to_sat(), coinbase_script);
    let mut size = 80 + TX_COUNT_BYTES + probe.encode().len();
    let mut sigops = sigops_bound(&probe);
    if size > MAX_BLOCK_SIZE || sigops > MAX_BLOCK_SIGOPS {
        return Err(MineError::CoinbaseTooLarge(coinbase_script.len()));
    }

    let mut chosen: Vec<&PoolEntry> = Vec::new();
    let mut taken: BTreeSet<[u8; 32]> = BTreeSet::new();
    // Pool transactions waiting for a pool parent, keyed by that parent.
    let mut waiting: BTreeMap<[u8; 32], Vec<&PoolEntry>> = BTreeMap::new();
    let mut fees = Amount::ZERO;
    for entry in pool.by_fee_rate() {
        let mut ready = vec![entry];
        while let Some(e) = ready.pop() {
            let missing =
                e.tx.inputs
                    .iter()
                    .map(|i| i.prevout.txid)
                    .find(|p| pool.contains(p) && !taken.contains(p));
            if let Some(parent) = missing {
                waiting.entry(parent).or_default().push(e);
                continue;
            }
            let ops = sigops_bound(&e.tx);
            if size + e.size > MAX_BLOCK_SIZE
                || sigops + ops > MAX_BLOCK_SIGOPS
                || !is_final(&e.tx, height, time)
            {
                continue;
            }
            size += e.size;
            sigops += ops;
            fees = fees.checked_add(e.fee).ok_or(MineError::FeesOutOfRange)?;
            let txid = e.tx.txid();
            taken.insert(txid);
            chosen.push(e);
            if let Some(children) = waiting.remove(&txid) {
                // Highest fee rate first: `ready` pops from the back.
                ready.extend(children.into_iter().rev());
            }
        }
    }

    let value = subsidy
        .checked_add(fees)
        .ok_or(MineError::CoinbaseValueOutOfRange)?;
    let mut t = Template {
        height,
        header: BlockHeader {
            version: TEMPLATE_VERSION,
            prev: prev_hash,
            merkle_root: [0; 32],
            time,
            bits,
            nonce: 0,
        },
        coinbase: coinbase(height, 0, value.to_sat(), coinbase_script),
        txs: chosen.into_iter().map(|e| e.tx.clone()).collect(),
        fees,
    };
    t.header.merkle_root = t.merkle_root();
    Ok(t)
}

const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

/// The midstate search of one header: the first 64 bytes compressed once,
/// the last block and the second hash's block pre-padded.
#[derive(Debug, Clone)]
pub(crate) struct Midstate {
    mid: [u32; 8],
    tail: [u8; 64],
    target: [u8; 32],
    /// The target's most significant 32 bits.
    target_top: u32,
}

impl Midstate {
    /// `None` if `bits` is negative or overflows (no hash meets it).
    pub(crate) fn new(header: &BlockHeader) -> Option<Self> {
        let t = target_from_compact(header.bits);
        if t.negative || t.overflow {
            return None;
        }
        Some(Self::with_target(header, t.target))
    }

    pub(crate) fn with_target(header: &BlockHeader, target: [u8; 32]) -> Self {
        let bytes = header.encode();
        let mut first = [0u8; 64];
        first.copy_from_slice(&bytes[..64]);
        let mut mid = IV;
        compress(&mut mid, &first);
        let mut tail = [0u8; 64];
        tail[..16].copy_from_slice(&bytes[64..80]);
        tail[16] = 0x80;
        // Message length: 640 bits, big-endian.
        tail[62] = 0x02;
        tail[63] = 0x80;
        let target_top = u32::from_be_bytes([target[0], target[1], target[2], target[3]]);
        Self {
            mid,
            tail,
            target,
            target_top,
        }
    }

    /// The first nonce in `first..=last` whose header hash meets the target.
    pub(crate) fn scan(&self, first: u32, last: u32) -> Option<u32> {
        let mut tail = self.tail;
        let mut second = [0u8; 64];
        second[32] = 0x80;
        // Message length: 256 bits.
        second[62] = 0x01;
        let mut nonce = first;
        loop {
            tail[12..16].copy_from_slice(&nonce.to_le_bytes());
            let mut s = self.mid;
            compress(&mut s, &tail);
            for (chunk, w) in second[..32].chunks_exact_mut(4).zip(s) {
                chunk.copy_from_slice(&w.to_be_bytes());
            }
            let mut h = IV;
            compress(&mut h, &second);
            // The hash is a little-endian number: its top 32 bits are the
            // last word's bytes reversed.
            let top = h[7].swap_bytes();
            if top <= self.target_top && (top < self.target_top || self.full_check(&h)) {
                return Some(nonce);
            }
            if nonce == last {
                return None;
            }
            nonce += 1;
        }
    }

    fn full_check(&self, h: &[u32; 8]) -> bool {
        let mut hash = [0u8; 32];
        for (chunk, w) in hash.chunks_exact_mut(4).zip(h) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        hash_meets_target(&hash, &self.target)
    }
}

/// The first nonce in `nonces` for which `header` meets its own nBits
/// target; `None` if there is none in the range (or nBits is negative or
/// overflows). Equals trying `sha256d` of every header in turn, faster.
pub fn search(header: &BlockHeader, nonces: Range<u32>) -> Option<u32> {
    if nonces.is_empty() {
        return None;
    }
    Midstate::new(header)?.scan(nonces.start, nonces.end - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(nonce: u32) -> BlockHeader {
        BlockHeader {
            version: 4,
            prev: [7; 32],
            merkle_root: [9; 32],
            time: 1_600_000_000,
            bits: 0x1d00_ffff,
            nonce,
        }
    }

    #[test]
    fn a_hash_equal_to_the_target_in_its_top_word_is_decided_by_the_rest() {
        let h = header(5);
        let mut exact = h.hash();
        exact.reverse(); // big-endian, as targets are
        let hit = Midstate::with_target(&h, exact);
        assert_eq!(hit.scan(5, 5), Some(5), "hash == target meets it");
        let mut below = exact;
        // Lower the least significant byte that is not zero.
        let Some(i) = below.iter().rposition(|&b| b != 0) else {
            panic!("hash is zero");
        };
        below[i] -= 1;
        let miss = Midstate::with_target(&h, below);
        assert_eq!(
            miss.scan(5, 5),
            None,
            "a target just below the hash is missed"
        );
    }

    #[test]
    fn the_scan_covers_the_last_nonce_of_the_space() {
        let h = header(0);
        let mut with = h.clone();
        with.nonce = u32::MAX;
        let mut exact = with.hash();
        exact.reverse();
        let m = Midstate::with_target(&h, exact);
        assert_eq!(m.scan(u32::MAX, u32::MAX), Some(u32::MAX));
    }
}
