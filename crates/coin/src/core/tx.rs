//! Context-free transaction checks (Core's `CheckTransaction`).
use thiserror::Error;

use crate::MAX_MONEY;
use crate::wire::{Encode, OutPoint, Transaction};

/// Why a transaction is invalid on its own, with Core's reject reason in the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    #[error("bad-txns-vin-empty")]
    NoInputs,
    #[error("bad-txns-vout-empty")]
    NoOutputs,
    #[error("bad-txns-oversize")]
    Oversize,
    #[error("bad-txns-vout-negative")]
    NegativeOutput,
    #[error("bad-txns-vout-toolarge")]
    OutputTooLarge,
    #[error("bad-txns-txouttotal-toolarge")]
    OutputTotalTooLarge,
    #[error("bad-txns-inputs-duplicate")]
    DuplicateInput,
    #[error("bad-cb-length")]
    CoinbaseLength,
    #[error("bad-txns-prevout-null")]
    NullPrevout,
}

/// The largest serialized legacy transaction (a block's whole weight / 4).
pub const MAX_TX_SIZE: usize = 1_000_000;

impl OutPoint {
    /// The coinbase's outpoint: zero txid, index 0xffff_ffff.
    pub fn is_null(&self) -> bool {
        self.txid == [0; 32] && self.vout == u32::MAX
    }
}

impl Transaction {
    /// One input spending the null outpoint.
    pub fn is_coinbase(&self) -> bool {
        self.inputs.len() == 1 && self.inputs[0].prevout.is_null()
    }
}

/// Core's `CheckTransaction`: shape, value ranges, duplicate inputs, coinbase script length.
pub fn check_transaction(tx: &Transaction) -> Result<(), TxError> {
    if tx.inputs.is_empty() {
        return Err(TxError::NoInputs);
    }
    if tx.outputs.is_empty() {
        return Err(TxError::NoOutputs);
    }
    if tx.encode().len() > MAX_TX_SIZE {
        return Err(TxError::Oversize);
    }
    let mut total: i64 = 0;
    for o in &tx.outputs {
        if o.value < 0 {
            return Err(TxError::NegativeOutput);
        }
        if o.value > MAX_MONEY {
            return Err(TxError::OutputTooLarge);
        }
        total = total
            .checked_add(o.value)
            .filter(|t| *t <= MAX_MONEY)
            .ok_or(TxError::OutputTotalTooLarge)?;
    }
    let mut seen: Vec<(&[u8; 32], u32)> = tx
        .inputs
        .iter()
        .map(|i| (&i.prevout.txid, i.prevout.vout))
        .collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(TxError::DuplicateInput);
    }
    if tx.is_coinbase() {
        if !(2..=100).contains(&tx.inputs[0].script_sig.len()) {
            return Err(TxError::CoinbaseLength);
        }
    } else if tx.inputs.iter().any(|i| i.prevout.is_null()) {
        return Err(TxError::NullPrevout);
    }
    Ok(())
}
