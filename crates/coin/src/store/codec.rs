//! Byte layouts of the store's values (all little-endian):
//! outpoint = txid (32) ‖ vout (4);
//! coin = value (8) ‖ height (4) ‖ coinbase (1) ‖ script_pubkey (rest);
//! undo = count (4) ‖ count × (outpoint (36) ‖ coin length (4) ‖ coin).
use super::StoreError;
use crate::core::block::{Coin, Undo};
use crate::wire::{OutPoint, TxOut};

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored {what} malformed"))
}

pub(super) fn array<const N: usize>(v: &[u8]) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|_| corrupt("field"))
}

pub(super) fn encode_outpoint(op: &OutPoint) -> Vec<u8> {
    let mut v = Vec::with_capacity(36);
    v.extend_from_slice(&op.txid);
    v.extend_from_slice(&op.vout.to_le_bytes());
    v
}

pub(super) fn decode_outpoint(v: &[u8]) -> Result<OutPoint, StoreError> {
    if v.len() != 36 {
        return Err(corrupt("outpoint"));
    }
    Ok(OutPoint {
        txid: array(&v[..32])?,
        vout: u32::from_le_bytes(array(&v[32..])?),
    })
}

pub(super) fn encode_coin(c: &Coin) -> Vec<u8> {
    let mut v = Vec::with_capacity(13 + c.out.script_pubkey.len());
    v.extend_from_slice(&c.out.value.to_le_bytes());
    v.extend_from_slice(&c.height.to_le_bytes());
    v.push(u8::from(c.coinbase));
    v.extend_from_slice(&c.out.script_pubkey);
    v
}

pub(super) fn decode_coin(v: &[u8]) -> Result<Coin, StoreError> {
    if v.len() < 13 || v[12] > 1 {
        return Err(corrupt("coin"));
    }
    Ok(Coin {
        out: TxOut {
            value: i64::from_le_bytes(array(&v[..8])?),
            script_pubkey: v[13..].to_vec(),
        },
        height: u32::from_le_bytes(array(&v[8..12])?),
        coinbase: v[12] == 1,
    })
}

pub(super) fn encode_undo(u: &Undo) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(u.spent.len() as u32).to_le_bytes());
    for (op, coin) in &u.spent {
        v.extend_from_slice(&encode_outpoint(op));
        let c = encode_coin(coin);
        v.extend_from_slice(&(c.len() as u32).to_le_bytes());
        v.extend_from_slice(&c);
    }
    v
}

pub(super) fn decode_undo(v: &[u8]) -> Result<Undo, StoreError> {
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, StoreError> {
        if rest.len() < n {
            return Err(corrupt("undo"));
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Ok(a.to_vec())
    };
    let mut rest = v;
    let n = u32::from_le_bytes(array(&take(&mut rest, 4)?)?) as usize;
    // Each entry is at least 36 + 4 + 13 bytes: bound the allocation by the input.
    if n > rest.len() / 53 {
        return Err(corrupt("undo"));
    }
    let mut spent = Vec::with_capacity(n);
    for _ in 0..n {
        let op = decode_outpoint(&take(&mut rest, 36)?)?;
        let len = u32::from_le_bytes(array(&take(&mut rest, 4)?)?) as usize;
        let coin = decode_coin(&take(&mut rest, len)?)?;
        spent.push((op, coin));
    }
    if !rest.is_empty() {
        return Err(corrupt("undo"));
    }
    Ok(Undo { spent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_round_trips_and_truncations_are_errors() {
        let u = Undo {
            spent: vec![(
                OutPoint {
                    txid: [7; 32],
                    vout: 3,
                },
                Coin {
                    out: TxOut {
                        value: 5_000_000_000,
                        script_pubkey: vec![0x51, 0xac],
                    },
                    height: 170,
                    coinbase: true,
                },
            )],
        };
        let b = encode_undo(&u);
        assert_eq!(decode_undo(&b).ok(), Some(u));
        for n in 0..b.len() {
            assert!(decode_undo(&b[..n]).is_err(), "truncated at {n}");
        }
        let mut huge = b.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_undo(&huge).is_err());
    }
}
