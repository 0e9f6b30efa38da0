//! Block validation, sans-IO: context-free checks ([`check_block`]),
//! header context ([`Chain::check_header`]), and connecting a block to an
//! in-memory UTXO view with undo data ([`UtxoView::connect_block`],
//! [`UtxoView::disconnect_block`]). The clock is an input (`now`).
use std::collections::BTreeMap;

use secp256k1::{Secp256k1, VerifyOnly};
use thiserror::Error;

use super::pow::{RETARGET_INTERVAL, U256, next_target};
use super::script::{self, Flags, ScriptError, TxChecker, verify_script};
use super::tx::{TxError, check_transaction};
use crate::wire::{Block, BlockHeader, Encode, OutPoint, Transaction, TxOut};
use crate::{Amount, Params, hash_meets_target, merkle_root, subsidy, target_from_compact};

pub const MAX_BLOCK_SIZE: usize = 1_000_000;
pub const MAX_BLOCK_SIGOPS: usize = 20_000;
pub const COINBASE_MATURITY: u32 = 100;
pub const MAX_FUTURE_BLOCK_TIME: i64 = 2 * 60 * 60;
/// BIP16 (P2SH) is enforced for blocks whose time is at least this.
pub const BIP16_TIME: u32 = 1_333_238_400;

/// Why a block is invalid; Core's reject reason is the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("high-hash: proof of work does not meet nBits")]
    HighHash,
    #[error("bad-diffbits: nBits negative, overflowing, zero or above the pow limit")]
    BadBits,
    #[error("time-too-new: more than 2 hours in the future")]
    TimeTooNew,
    #[error("bad-blk-length: empty or larger than 1 000 000 bytes")]
    BadLength,
    #[error("bad-cb-missing: first transaction is not a coinbase")]
    NoCoinbase,
    #[error("bad-cb-multiple: coinbase at index {0}")]
    MultipleCoinbase(usize),
    #[error("bad-txnmrklroot: merkle root mismatch")]
    BadMerkleRoot,
    #[error("bad-txns-duplicate: merkle tree mutated (CVE-2012-2459)")]
    MutatedMerkle,
    #[error("bad-blk-sigops: more than 20 000 signature operations")]
    TooManySigops,
    #[error("transaction {0}: {1}")]
    Tx(usize, TxError),
    #[error("prev-blk-not-found: previous block is not the tip")]
    BadPrev,
    #[error("bad-diffbits: nBits {got:#010x}, expected {want:#010x}")]
    WrongBits { got: u32, want: u32 },
    #[error("time-too-old: not after the median time past")]
    TimeTooOld,
    #[error("bad-version: version {0} obsolete at this height")]
    BadVersion(i32),
    #[error("bad-cb-height: coinbase does not start with the block height")]
    BadCoinbaseHeight,
    #[error("bad-txns-nonfinal: transaction {0} is not final")]
    NonFinal(usize),
    #[error("bad-txns-inputs-missingorspent: transaction {0} input {1}")]
    MissingInput(usize, usize),
    #[error("bad-txns-premature-spend-of-coinbase: transaction {0} input {1}")]
    PrematureCoinbaseSpend(usize, usize),
    #[error("bad-txns-inputvalues-outofrange: transaction {0}")]
    InputValuesOutOfRange(usize),
    #[error("bad-txns-in-belowout: transaction {0}")]
    InBelowOut(usize),
    #[error("bad-cb-amount: coinbase pays more than subsidy + fees")]
    CoinbaseTooLarge,
    #[error("bad-txns-BIP30: transaction {0} overwrites an unspent output")]
    Overwrite(usize),
    #[error("mandatory-script-verify-flag-failed: transaction {tx} input {input}: {err}")]
    Script {
        tx: usize,
        input: usize,
        err: ScriptError,
    },
}

/// Core's legacy `GetSigOpCount(false)`: CHECKSIG 1, CHECKMULTISIG 20.
pub fn legacy_sigops(script: &[u8]) -> usize {
    count_sigops(script, false)
}

fn count_sigops(s: &[u8], accurate: bool) -> usize {
    let mut n = 0;
    let mut pc = 0;
    let mut last = 0xffu8;
    while let Some(op) = script::get_op(s, &mut pc) {
        match op.opcode {
            script::OP_CHECKSIG | script::OP_CHECKSIGVERIFY => n += 1,
            script::OP_CHECKMULTISIG | script::OP_CHECKMULTISIGVERIFY => {
                n += if accurate && (script::OP_1..=script::OP_16).contains(&last) {
                    usize::from(last - script::OP_1 + 1)
                } else {
                    20
                };
            }
            _ => {}
        }
        last = op.opcode;
    }
    n
}

/// Sigops of a P2SH redeem script (the scriptSig's last push), counted
/// accurately; 0 if the scriptSig is not push-only.
pub fn p2sh_sigops(script_sig: &[u8]) -> usize {
    let mut pc = 0;
    let mut last: &[u8] = &[];
    while let Some(op) = script::get_op(script_sig, &mut pc) {
        if op.opcode > script::OP_16 {
            return 0;
        }
        last = op.data;
    }
    count_sigops(last, true)
}

/// Check a header's proof of work against its own nBits and the pow limit,
/// and its time against `now` (Core's `CheckBlockHeader`).
pub fn check_header(h: &BlockHeader, params: &Params, now: i64) -> Result<(), BlockError> {
    let t = target_from_compact(h.bits);
    let target = U256::from_be_bytes(&t.target);
    if t.negative || t.overflow || target.is_zero() || target > params.pow_limit() {
        return Err(BlockError::BadBits);
    }
    if !hash_meets_target(&h.hash(), &t.target) {
        return Err(BlockError::HighHash);
    }
    if i64::from(h.time) > now + MAX_FUTURE_BLOCK_TIME {
        return Err(BlockError::TimeTooNew);
    }
    Ok(())
}

/// Context-free block checks (Core's `CheckBlock`): header, merkle root
/// (and CVE-2012-2459 mutation), size, coinbase first and only, every
/// transaction's own checks, legacy sigops.
pub fn check_block(b: &Block, params: &Params, now: i64) -> Result<(), BlockError> {
    check_header(&b.header, params, now)?;
    let txids: Vec<[u8; 32]> = b.txs.iter().map(Transaction::txid).collect();
    let (root, mutated) = merkle_root(&txids);
    if root != b.header.merkle_root {
        return Err(BlockError::BadMerkleRoot);
    }
    if mutated {
        return Err(BlockError::MutatedMerkle);
    }
    if b.txs.is_empty() || b.encode().len() > MAX_BLOCK_SIZE {
        return Err(BlockError::BadLength);
    }
    if !b.txs[0].is_coinbase() {
        return Err(BlockError::NoCoinbase);
    }
    if let Some(i) = b.txs.iter().skip(1).position(Transaction::is_coinbase) {
        return Err(BlockError::MultipleCoinbase(i + 1));
    }
    let mut sigops = 0;
    for (i, tx) in b.txs.iter().enumerate() {
        check_transaction(tx).map_err(|e| BlockError::Tx(i, e))?;
        for input in &tx.inputs {
            sigops += legacy_sigops(&input.script_sig);
        }
        for o in &tx.outputs {
            sigops += legacy_sigops(&o.script_pubkey);
        }
    }
    if sigops > MAX_BLOCK_SIGOPS {
        return Err(BlockError::TooManySigops);
    }
    Ok(())
}

/// An unspent output and where it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    pub out: TxOut,
    pub height: u32,
    pub coinbase: bool,
}

/// What disconnecting a block needs: the coins it spent, in spend order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undo {
    pub spent: Vec<(OutPoint, Coin)>,
}

/// What connecting a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub undo: Undo,
    pub fees: Amount,
    /// ECDSA verifications performed.
    pub sig_checks: usize,
    pub sigops: usize,
}

/// Script flags in force for a block (BIP16 by time, BIP66/BIP65 by height on mainnet).
pub fn script_flags(params: &Params, height: u32, time: u32) -> Flags {
    let mut f = Flags::NONE;
    if time >= BIP16_TIME || params.no_retarget {
        f = f.with(Flags::P2SH);
    }
    if height >= params.bip66_height {
        f = f.with(Flags::DERSIG);
    }
    if height >= params.bip65_height {
        f = f.with(Flags::CHECKLOCKTIMEVERIFY);
    }
    f
}

/// Whether `tx` may be in a block at `height` with time `time` (lock time
/// passed, or every input final).
pub fn is_final(tx: &Transaction, height: u32, time: u32) -> bool {
    if tx.lock_time == 0 {
        return true;
    }
    let limit = if i64::from(tx.lock_time) < script::LOCKTIME_THRESHOLD {
        height
    } else {
        time
    };
    tx.lock_time < limit
        || tx
            .inputs
            .iter()
            .all(|i| i.sequence == script::SEQUENCE_FINAL)
}

/// What a coinbase scriptSig must start with at `height` once BIP34 is
/// active: Core's `CScript() << height`, so OP_0 for 0, the one-byte OP_1..OP_16
/// for 1..=16 (regtest's first blocks), else the height as a pushed script number.
pub fn bip34_prefix(height: u32) -> Vec<u8> {
    match height {
        0 => vec![0x00],
        1..=16 => vec![0x50 + height as u8],
        _ => {
            let mut want = Vec::new();
            script::push_data(&mut want, &script::num_encode(i64::from(height)));
            want
        }
    }
}

/// One input's script verification: `tx.inputs[input].script_sig` against
/// the spent output's `script_pubkey` under `flags`. The checks of a block
/// are independent of each other.
#[derive(Debug, Clone, Copy)]
pub struct ScriptCheck<'a> {
    /// Index of `tx` in its block.
    pub tx_index: usize,
    pub input: usize,
    pub tx: &'a Transaction,
    pub script_pubkey: &'a [u8],
    pub flags: Flags,
}

impl ScriptCheck<'_> {
    /// Verify; the number of ECDSA verifications it took, or why it failed.
    pub fn run(&self, secp: &Secp256k1<VerifyOnly>) -> Result<usize, BlockError> {
        let script_sig = self
            .tx
            .inputs
            .get(self.input)
            .map(|i| i.script_sig.as_slice())
            .unwrap_or_default();
        let mut checker = TxChecker::new(self.tx, self.input, secp);
        verify_script(script_sig, self.script_pubkey, self.flags, &mut checker).map_err(|err| {
            BlockError::Script {
                tx: self.tx_index,
                input: self.input,
                err,
            }
        })?;
        Ok(checker.sig_checks)
    }
}

/// Run `checks` in order on this thread: the total ECDSA verifications, or
/// the first failure.
pub fn run_script_checks(
    checks: &[ScriptCheck<'_>],
    secp: &Secp256k1<VerifyOnly>,
) -> Result<usize, BlockError> {
    checks.iter().try_fold(0, |n, c| Ok(n + c.run(secp)?))
}

/// An in-memory UTXO set (outpoints are block data checked by proof of
/// work, so an ordered map: no hashing to attack).
#[derive(Debug, Clone, Default)]
pub struct UtxoView {
    pub coins: BTreeMap<OutPoint, Coin>,
}

impl UtxoView {
    pub fn len(&self) -> usize {
        self.coins.len()
    }
    pub fn is_empty(&self) -> bool {
        self.coins.is_empty()
    }
    /// Sum of every unspent output.
    pub fn total(&self) -> Option<Amount> {
        self.coins.values().try_fold(Amount::ZERO, |a, c| {
            a.checked_add(Amount::from_sat(c.out.value)?)
        })
    }

    /// Spend and create the outputs of `b` at `height`: inputs exist and are
    /// unspent (also within the block), coinbase maturity, value ranges,
    /// fee = in − out, coinbase ≤ subsidy + fees, finality, BIP34 height,
    /// sigops including P2SH, and every input's script under `flags`. On
    /// error the view is unchanged.
    pub fn connect_block(
        &mut self,
        b: &Block,
        height: u32,
        params: &Params,
        flags: Flags,
        secp: &Secp256k1<VerifyOnly>,
    ) -> Result<Connected, BlockError> {
        self.connect_block_with(b, height, params, flags, |checks| {
            run_script_checks(checks, secp)
        })
    }

    /// [`UtxoView::connect_block`] with the script checks left to
    /// `check_scripts`: once every value, sigop and coinbase rule has
    /// passed, it gets one [`ScriptCheck`] per input of every transaction
    /// but the coinbase (independent of each other, so it may run them on
    /// several threads) and returns the number of ECDSA verifications, or
    /// the error of the first failing check in list order (as
    /// [`run_script_checks`]). On any error the view is unchanged.
    pub fn connect_block_with<F>(
        &mut self,
        b: &Block,
        height: u32,
        params: &Params,
        flags: Flags,
        check_scripts: F,
    ) -> Result<Connected, BlockError>
    where
        F: FnOnce(&[ScriptCheck<'_>]) -> Result<usize, BlockError>,
    {
        let mut undo = Undo::default();
        let mut created = Vec::new();
        let r = self.connect_inner(
            b,
            height,
            params,
            flags,
            check_scripts,
            &mut undo,
            &mut created,
        );
        if r.is_err() {
            // Roll back what was done so far: the view is as before. The
            // spent coins first: an output made and spent in this block is
            // in both lists and must end up absent.
            for (op, coin) in undo.spent.drain(..).rev() {
                self.coins.insert(op, coin);
            }
            for op in created.iter().rev() {
                self.coins.remove(op);
            }
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn connect_inner<F>(
        &mut self,
        b: &Block,
        height: u32,
        params: &Params,
        flags: Flags,
        check_scripts: F,
        undo: &mut Undo,
        created: &mut Vec<OutPoint>,
    ) -> Result<Connected, BlockError>
    where
        F: FnOnce(&[ScriptCheck<'_>]) -> Result<usize, BlockError>,
    {
        let mut fees = Amount::ZERO;
        let mut sigops = 0;
        // (transaction, first entry of its inputs in `undo.spent`), for the script checks.
        let mut spends: Vec<(usize, usize)> = Vec::new();
        if height >= params.bip34_height {
            let want = bip34_prefix(height);
            let first = b
                .txs
                .first()
                .and_then(|t| t.inputs.first())
                .map(|i| i.script_sig.as_slice())
                .unwrap_or_default();
            if !first.starts_with(&want) {
                return Err(BlockError::BadCoinbaseHeight);
            }
        }
        for (ti, tx) in b.txs.iter().enumerate() {
            if !is_final(tx, height, b.header.time) {
                return Err(BlockError::NonFinal(ti));
            }
            for i in &tx.inputs {
                sigops += legacy_sigops(&i.script_sig);
            }
            for o in &tx.outputs {
                sigops += legacy_sigops(&o.script_pubkey);
            }
            if ti > 0 {
                let mut value_in = Amount::ZERO;
                for (ii, input) in tx.inputs.iter().enumerate() {
                    let coin = self
                        .coins
                        .remove(&input.prevout)
                        .ok_or(BlockError::MissingInput(ti, ii))?;
                    // Into the undo log first, so a refusal below restores it.
                    undo.spent.push((input.prevout.clone(), coin));
                    let coin = &undo.spent[undo.spent.len() - 1].1;
                    if coin.coinbase && height.saturating_sub(coin.height) < COINBASE_MATURITY {
                        return Err(BlockError::PrematureCoinbaseSpend(ti, ii));
                    }
                    value_in = Amount::from_sat(coin.out.value)
                        .and_then(|v| value_in.checked_add(v))
                        .ok_or(BlockError::InputValuesOutOfRange(ti))?;
                    if flags.has(Flags::P2SH) && script::is_p2sh(&coin.out.script_pubkey) {
                        sigops += p2sh_sigops(&input.script_sig);
                    }
                }
                let value_out = tx
                    .outputs
                    .iter()
                    .try_fold(Amount::ZERO, |a, o| {
                        a.checked_add(Amount::from_sat(o.value)?)
                    })
                    .ok_or(BlockError::InputValuesOutOfRange(ti))?;
                let fee = value_in
                    .checked_sub(value_out)
                    .ok_or(BlockError::InBelowOut(ti))?;
                fees = fees
                    .checked_add(fee)
                    .ok_or(BlockError::InputValuesOutOfRange(ti))?;
                // Scripts after every value check of the block, as Core's check queue.
                spends.push((ti, undo.spent.len() - tx.inputs.len()));
            }
            if sigops > MAX_BLOCK_SIGOPS {
                return Err(BlockError::TooManySigops);
            }
            let txid = tx.txid();
            for (vout, o) in tx.outputs.iter().enumerate() {
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                let coin = Coin {
                    out: o.clone(),
                    height,
                    coinbase: ti == 0,
                };
                if self.coins.contains_key(&op) && !params.bip30_exceptions.contains(&height) {
                    return Err(BlockError::Overwrite(ti));
                }
                self.coins.insert(op.clone(), coin);
                created.push(op);
            }
        }
        let coinbase = b.txs.first().ok_or(BlockError::BadLength)?;
        let paid = coinbase
            .outputs
            .iter()
            .try_fold(Amount::ZERO, |a, o| {
                a.checked_add(Amount::from_sat(o.value)?)
            })
            .ok_or(BlockError::CoinbaseTooLarge)?;
        let allowed = subsidy(height, params.halving_interval).checked_add(fees);
        if allowed.is_none_or(|a| paid > a) {
            return Err(BlockError::CoinbaseTooLarge);
        }
        let mut checks = Vec::with_capacity(undo.spent.len());
        for &(ti, first) in &spends {
            let tx = &b.txs[ti];
            for (ii, (_, coin)) in undo.spent[first..first + tx.inputs.len()]
                .iter()
                .enumerate()
            {
                checks.push(ScriptCheck {
                    tx_index: ti,
                    input: ii,
                    tx,
                    script_pubkey: &coin.out.script_pubkey,
                    flags,
                });
            }
        }
        let sig_checks = check_scripts(&checks)?;
        Ok(Connected {
            undo: std::mem::take(undo),
            fees,
            sig_checks,
            sigops,
        })
    }

    /// Undo [`UtxoView::connect_block`]: remove the block's outputs and
    /// restore the coins it spent.
    pub fn disconnect_block(&mut self, b: &Block, undo: &Undo) {
        // Restore first, then remove: an output both made and spent in the
        // block is in the undo data too, and must end up absent (Core
        // walks the transactions backwards to the same effect).
        for (op, coin) in undo.spent.iter().rev() {
            self.coins.insert(op.clone(), coin.clone());
        }
        for tx in b.txs.iter().rev() {
            let txid = tx.txid();
            for vout in 0..tx.outputs.len() {
                self.coins.remove(&OutPoint {
                    txid,
                    vout: vout as u32,
                });
            }
        }
    }
}

/// What the chain remembers of a connected block.
#[derive(Debug, Clone)]
pub struct Entry {
    pub hash: [u8; 32],
    pub time: u32,
    pub bits: u32,
}

/// Median of the last 11 times of `entries` (a chain from genesis), as
/// Core's `GetMedianTimePast`; 0 for an empty slice.
pub fn median_time_past(entries: &[Entry]) -> u32 {
    let mut t: Vec<u32> = entries.iter().rev().take(11).map(|e| e.time).collect();
    t.sort_unstable();
    t.get(t.len() / 2).copied().unwrap_or(0)
}

/// nBits the block after `entries` (a chain from genesis, index = height)
/// must carry: the last block's, or a retarget every 2016 blocks.
pub fn next_bits(params: &Params, entries: &[Entry]) -> u32 {
    let Some(last) = entries.last() else {
        return params.pow_limit_bits;
    };
    let next = entries.len() as u32;
    if params.no_retarget || next % RETARGET_INTERVAL != 0 {
        return last.bits;
    }
    let first = &entries[(next - RETARGET_INTERVAL) as usize];
    next_target(last.bits, first.time, last.time, params.pow_limit())
}

/// Header checks of `h` as the block after `entries` (a chain from
/// genesis, index = height): prev hash, nBits, time after the median time
/// past, version by the BIP34/66/65 heights.
pub fn check_header_context(
    params: &Params,
    entries: &[Entry],
    h: &BlockHeader,
) -> Result<(), BlockError> {
    let height = entries.len() as u32;
    if entries.last().map(|e| e.hash) != Some(h.prev) {
        return Err(BlockError::BadPrev);
    }
    let want = next_bits(params, entries);
    if h.bits != want {
        return Err(BlockError::WrongBits { got: h.bits, want });
    }
    if h.time <= median_time_past(entries) {
        return Err(BlockError::TimeTooOld);
    }
    if (h.version < 2 && height >= params.bip34_height)
        || (h.version < 3 && height >= params.bip66_height)
        || (h.version < 4 && height >= params.bip65_height)
    {
        return Err(BlockError::BadVersion(h.version));
    }
    Ok(())
}

/// The best chain from genesis with its UTXO view: accepts the next block.
#[derive(Debug)]
pub struct Chain {
    pub params: Params,
    pub entries: Vec<Entry>,
    pub view: UtxoView,
    pub undo: Vec<Undo>,
    secp: Secp256k1<VerifyOnly>,
}

impl Chain {
    /// A chain holding only genesis (whose coinbase is unspendable, as in Core).
    pub fn new(params: Params) -> Self {
        let g = &params.genesis.header;
        let entries = vec![Entry {
            hash: g.hash(),
            time: g.time,
            bits: g.bits,
        }];
        Self {
            params,
            entries,
            view: UtxoView::default(),
            undo: Vec::new(),
            secp: Secp256k1::verification_only(),
        }
    }
    pub fn height(&self) -> u32 {
        self.entries.len() as u32 - 1
    }
    /// Median of the last 11 block times (Core's `GetMedianTimePast`).
    pub fn median_time_past(&self) -> u32 {
        median_time_past(&self.entries)
    }
    /// nBits the next block must carry.
    pub fn next_bits(&self) -> u32 {
        next_bits(&self.params, &self.entries)
    }
    /// Header checks against the tip: prev hash, nBits, time after MTP, version.
    pub fn check_header(&self, h: &BlockHeader) -> Result<(), BlockError> {
        check_header_context(&self.params, &self.entries, h)
    }
    /// Validate `b` as the next block and connect it; `now` is the caller's clock (unix seconds).
    pub fn accept(&mut self, b: &Block, now: i64) -> Result<Connected, BlockError> {
        self.accept_inner(b, now, run_script_checks)
    }
    /// [`Chain::accept`] with the script checks left to `check_scripts`
    /// (see [`UtxoView::connect_block_with`]).
    pub fn accept_with<F>(
        &mut self,
        b: &Block,
        now: i64,
        check_scripts: F,
    ) -> Result<Connected, BlockError>
    where
        F: FnOnce(&[ScriptCheck<'_>]) -> Result<usize, BlockError>,
    {
        self.accept_inner(b, now, |checks, _| check_scripts(checks))
    }
    fn accept_inner<F>(
        &mut self,
        b: &Block,
        now: i64,
        check_scripts: F,
    ) -> Result<Connected, BlockError>
    where
        F: FnOnce(&[ScriptCheck<'_>], &Secp256k1<VerifyOnly>) -> Result<usize, BlockError>,
    {
        check_block(b, &self.params, now)?;
        self.check_header(&b.header)?;
        let height = self.height() + 1;
        let flags = script_flags(&self.params, height, b.header.time);
        let secp = &self.secp;
        let c = self
            .view
            .connect_block_with(b, height, &self.params, flags, |checks| {
                check_scripts(checks, secp)
            })?;
        self.entries.push(Entry {
            hash: b.header.hash(),
            time: b.header.time,
            bits: b.header.bits,
        });
        self.undo.push(c.undo.clone());
        Ok(c)
    }
    /// Disconnect the tip block `b` (which must be the tip) with its undo data.
    pub fn disconnect_tip(&mut self, b: &Block) -> bool {
        if self.entries.len() < 2 || self.entries[self.entries.len() - 1].hash != b.header.hash() {
            return false;
        }
        let Some(undo) = self.undo.pop() else {
            return false;
        };
        self.view.disconnect_block(b, &undo);
        self.entries.pop();
        true
    }
}
