//! The transaction memory pool, sans-IO: first seen wins (no replacement),
//! fee = inputs − outputs checked, a minimum relay fee rate, and a byte
//! bound that evicts the lowest fee rate first (with the transactions that
//! spend it). Inputs come from the confirmed [`UtxoView`] or from parents
//! already in the pool.
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use secp256k1::{Secp256k1, VerifyOnly};
use thiserror::Error;

use super::block::{COINBASE_MATURITY, UtxoView};
use super::script::{Flags, ScriptError, TxChecker, verify_script};
use super::tx::{TxError, check_transaction};
use crate::Amount;
use crate::wire::{Encode, OutPoint, Transaction, TxOut};

/// Why the pool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MempoolError {
    #[error("{0}")]
    Invalid(TxError),
    #[error("coinbase: only valid in a block")]
    Coinbase,
    #[error("txn-already-in-mempool")]
    AlreadyKnown,
    #[error(
        "txn-mempool-conflict: input {0} already spent by a pool transaction (first seen wins)"
    )]
    Conflict(usize),
    #[error("missing-inputs: input {0}")]
    MissingInput(usize),
    #[error("bad-txns-premature-spend-of-coinbase: input {0}")]
    PrematureCoinbaseSpend(usize),
    #[error("bad-txns-inputvalues-outofrange")]
    ValuesOutOfRange,
    #[error("bad-txns-in-belowout")]
    InBelowOut,
    #[error("min relay fee not met: {fee} sat < {need} sat")]
    FeeTooLow { fee: i64, need: i64 },
    #[error("mempool full: fee rate below every transaction kept")]
    Full,
    #[error("non-final: lock time not reached")]
    NonFinal,
    #[error("script failed on input {input}: {err}")]
    Script { input: usize, err: ScriptError },
}

/// A pooled transaction.
#[derive(Debug, Clone)]
pub struct PoolEntry {
    pub tx: Transaction,
    pub fee: Amount,
    pub size: usize,
    /// Arrival order.
    pub seq: u64,
}

impl PoolEntry {
    /// Satoshis per 1 000 000 bytes (exact enough to order by, integer).
    fn rate(&self) -> u64 {
        (self.fee.to_sat() as u64).saturating_mul(1_000_000) / self.size.max(1) as u64
    }
}

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct MempoolConfig {
    /// The most serialized bytes kept.
    pub max_bytes: usize,
    /// Minimum fee, satoshis per 1 000 bytes (Core's default 1 000).
    pub min_relay_per_kb: i64,
    /// Script flags for admission (policy is at least the consensus flags).
    pub flags: Flags,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: 300 * 1024 * 1024,
            min_relay_per_kb: 1_000,
            flags: Flags::P2SH
                .with(Flags::STRICTENC)
                .with(Flags::DERSIG)
                .with(Flags::LOW_S)
                .with(Flags::NULLDUMMY)
                .with(Flags::MINIMALDATA)
                .with(Flags::DISCOURAGE_UPGRADABLE_NOPS)
                .with(Flags::CLEANSTACK)
                .with(Flags::CHECKLOCKTIMEVERIFY)
                .with(Flags::NULLFAIL),
        }
    }
}

/// The pool. Keys are txids and outpoints of transactions whose scripts
/// were verified, in ordered maps.
#[derive(Debug)]
pub struct Mempool {
    pub config: MempoolConfig,
    entries: BTreeMap<[u8; 32], PoolEntry>,
    /// Which pool transaction spends each outpoint.
    spenders: BTreeMap<OutPoint, [u8; 32]>,
    by_rate: BTreeSet<(u64, Reverse<u64>, [u8; 32])>,
    bytes: usize,
    next_seq: u64,
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
            spenders: BTreeMap::new(),
            by_rate: BTreeSet::new(),
            bytes: 0,
            next_seq: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn get(&self, txid: &[u8; 32]) -> Option<&PoolEntry> {
        self.entries.get(txid)
    }
    /// Every pool transaction's txid, in txid order.
    pub fn txids(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.entries.keys()
    }
    pub fn contains(&self, txid: &[u8; 32]) -> bool {
        self.entries.contains_key(txid)
    }

    fn output(&self, op: &OutPoint) -> Option<&TxOut> {
        self.entries.get(&op.txid)?.tx.outputs.get(op.vout as usize)
    }

    /// Admit `tx` for the block after `tip_height` (whose time is at least
    /// `time`); returns the txids evicted to make room.
    pub fn accept(
        &mut self,
        tx: Transaction,
        view: &UtxoView,
        tip_height: u32,
        time: u32,
        secp: &Secp256k1<VerifyOnly>,
    ) -> Result<Vec<[u8; 32]>, MempoolError> {
        check_transaction(&tx).map_err(MempoolError::Invalid)?;
        if tx.is_coinbase() {
            return Err(MempoolError::Coinbase);
        }
        let txid = tx.txid();
        if self.entries.contains_key(&txid) {
            return Err(MempoolError::AlreadyKnown);
        }
        let height = tip_height.saturating_add(1);
        let lock_ok = tx.lock_time == 0
            || (i64::from(tx.lock_time) < super::script::LOCKTIME_THRESHOLD
                && tx.lock_time < height)
            || (i64::from(tx.lock_time) >= super::script::LOCKTIME_THRESHOLD
                && tx.lock_time < time)
            || tx
                .inputs
                .iter()
                .all(|i| i.sequence == super::script::SEQUENCE_FINAL);
        if !lock_ok {
            return Err(MempoolError::NonFinal);
        }
        let mut value_in = Amount::ZERO;
        let mut prev = Vec::with_capacity(tx.inputs.len());
        for (i, input) in tx.inputs.iter().enumerate() {
            if self.spenders.contains_key(&input.prevout) {
                return Err(MempoolError::Conflict(i));
            }
            let out = if let Some(coin) = view.coins.get(&input.prevout) {
                if coin.coinbase && height.saturating_sub(coin.height) < COINBASE_MATURITY {
                    return Err(MempoolError::PrematureCoinbaseSpend(i));
                }
                &coin.out
            } else {
                self.output(&input.prevout)
                    .ok_or(MempoolError::MissingInput(i))?
            };
            value_in = Amount::from_sat(out.value)
                .and_then(|v| value_in.checked_add(v))
                .ok_or(MempoolError::ValuesOutOfRange)?;
            prev.push(out.script_pubkey.clone());
        }
        let value_out = tx
            .outputs
            .iter()
            .try_fold(Amount::ZERO, |a, o| {
                a.checked_add(Amount::from_sat(o.value)?)
            })
            .ok_or(MempoolError::ValuesOutOfRange)?;
        let fee = value_in
            .checked_sub(value_out)
            .ok_or(MempoolError::InBelowOut)?;
        let size = tx.encode().len();
        let need = self.config.min_relay_per_kb.saturating_mul(size as i64) / 1000;
        if fee.to_sat() < need {
            return Err(MempoolError::FeeTooLow {
                fee: fee.to_sat(),
                need,
            });
        }
        for (i, (input, pk)) in tx.inputs.iter().zip(&prev).enumerate() {
            let mut checker = TxChecker::new(&tx, i, secp);
            verify_script(&input.script_sig, pk, self.config.flags, &mut checker)
                .map_err(|err| MempoolError::Script { input: i, err })?;
        }
        let entry = PoolEntry {
            tx,
            fee,
            size,
            seq: self.next_seq,
        };
        let evict = self.room_for(&entry)?;
        let mut evicted = Vec::new();
        for t in evict {
            evicted.extend(self.remove_with_descendants(&t));
        }
        self.next_seq += 1;
        self.insert(txid, entry);
        Ok(evicted)
    }

    /// Which pool transactions (lowest fee rate first, strictly below the
    /// newcomer's, never one it spends from) must go, with their
    /// descendants, for `e` to fit; `Full` if it cannot fit. Nothing changes.
    fn room_for(&self, e: &PoolEntry) -> Result<Vec<[u8; 32]>, MempoolError> {
        let mut bytes = self.bytes + e.size;
        if bytes <= self.config.max_bytes {
            return Ok(Vec::new());
        }
        let parents: BTreeSet<[u8; 32]> = e.tx.inputs.iter().map(|i| i.prevout.txid).collect();
        let rate = e.rate();
        let mut chosen: BTreeSet<[u8; 32]> = BTreeSet::new();
        let mut roots = Vec::new();
        for &(r, _, t) in &self.by_rate {
            if r >= rate {
                break;
            }
            if chosen.contains(&t) {
                continue;
            }
            let group = self.descendants(&t);
            if group.iter().any(|g| parents.contains(g)) {
                continue;
            }
            for g in group {
                if chosen.insert(g) {
                    bytes -= self.entries.get(&g).map_or(0, |x| x.size);
                }
            }
            roots.push(t);
            if bytes <= self.config.max_bytes {
                return Ok(roots);
            }
        }
        Err(MempoolError::Full)
    }

    /// `txid` and every pool transaction spending from it, transitively.
    fn descendants(&self, txid: &[u8; 32]) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        let mut todo = vec![*txid];
        let mut seen = BTreeSet::new();
        while let Some(t) = todo.pop() {
            if !seen.insert(t) {
                continue;
            }
            let Some(e) = self.entries.get(&t) else {
                continue;
            };
            for vout in 0..e.tx.outputs.len() {
                if let Some(child) = self.spenders.get(&OutPoint {
                    txid: t,
                    vout: vout as u32,
                }) {
                    todo.push(*child);
                }
            }
            out.push(t);
        }
        out
    }

    fn insert(&mut self, txid: [u8; 32], e: PoolEntry) {
        for i in &e.tx.inputs {
            self.spenders.insert(i.prevout.clone(), txid);
        }
        self.by_rate.insert((e.rate(), Reverse(e.seq), txid));
        self.bytes += e.size;
        self.entries.insert(txid, e);
    }

    /// Remove `txid` and everything in the pool spending its outputs; returns what was removed.
    pub fn remove_with_descendants(&mut self, txid: &[u8; 32]) -> Vec<[u8; 32]> {
        let mut removed = Vec::new();
        let mut todo = vec![*txid];
        while let Some(t) = todo.pop() {
            let Some(e) = self.entries.remove(&t) else {
                continue;
            };
            for i in &e.tx.inputs {
                self.spenders.remove(&i.prevout);
            }
            self.by_rate.remove(&(e.rate(), Reverse(e.seq), t));
            self.bytes -= e.size;
            for vout in 0..e.tx.outputs.len() {
                if let Some(child) = self.spenders.get(&OutPoint {
                    txid: t,
                    vout: vout as u32,
                }) {
                    todo.push(*child);
                }
            }
            removed.push(t);
        }
        removed
    }

    /// A block confirmed `txs`: drop them, and drop every pool transaction
    /// that conflicts with them (spends an outpoint they spent) with its
    /// descendants. Returns the conflicts removed.
    pub fn remove_for_block(&mut self, txs: &[Transaction]) -> Vec<[u8; 32]> {
        let mut conflicts = Vec::new();
        for tx in txs {
            let txid = tx.txid();
            if let Some(e) = self.entries.remove(&txid) {
                for i in &e.tx.inputs {
                    self.spenders.remove(&i.prevout);
                }
                self.by_rate.remove(&(e.rate(), Reverse(e.seq), txid));
                self.bytes -= e.size;
            }
            for i in &tx.inputs {
                if let Some(other) = self.spenders.get(&i.prevout).copied() {
                    conflicts.extend(self.remove_with_descendants(&other));
                }
            }
        }
        conflicts
    }

    /// A reorganisation disconnected `txs` (a block's transactions, in
    /// block order; `view` is the UTXO set after the disconnect): offer
    /// every non-coinbase one back to the pool. Returns how many came back;
    /// the rest (now invalid, conflicting or too cheap) are dropped.
    pub fn readd_disconnected(
        &mut self,
        txs: &[Transaction],
        view: &UtxoView,
        tip_height: u32,
        time: u32,
        secp: &Secp256k1<VerifyOnly>,
    ) -> usize {
        txs.iter()
            .filter(|t| !t.is_coinbase())
            .filter(|t| {
                self.accept((*t).clone(), view, tip_height, time, secp)
                    .is_ok()
            })
            .count()
    }

    /// Pool transactions from the highest fee rate down.
    pub fn by_fee_rate(&self) -> impl Iterator<Item = &PoolEntry> {
        self.by_rate
            .iter()
            .rev()
            .filter_map(|(_, _, t)| self.entries.get(t))
    }
}
