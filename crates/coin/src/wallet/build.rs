//! Building and signing a payment: P2PKH inputs signed with the legacy
//! signature hash (`SIGHASH_ALL`), one output to the payee and, when it is
//! worth more than the dust limit, one change output to a fresh address.
use secp256k1::{Message, Secp256k1};
use thiserror::Error;

use super::coinselect::{self, DUST_LIMIT, SelectError, Target};
use super::keys::PrivateKey;
use crate::core::script::push_data;
use crate::core::sighash::{SIGHASH_ALL, legacy_sighash};
use crate::wire::{Encode, OutPoint, Transaction, TxIn, TxOut};

/// Highest fee rate accepted (sat/vB): anything above is a typo.
pub const MAX_FEE_RATE: u64 = 10_000;
/// Highest absolute fee accepted (Core's `-maxtxfee`, 0.1 BTC).
pub const MAX_FEE: u64 = 10_000_000;
/// Lowest fee rate our nodes relay (sat/vB).
pub const MIN_FEE_RATE: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("the amount {0} sat is below the dust limit ({DUST_LIMIT} sat)")]
    Dust(u64),
    #[error("fee rate {0} sat/vB is outside {MIN_FEE_RATE}..={MAX_FEE_RATE}")]
    FeeRate(u64),
    #[error("the fee would be {0} sat, more than the {MAX_FEE} sat this wallet pays")]
    AbsurdFee(u64),
    #[error(transparent)]
    Select(#[from] SelectError),
}

/// A coin the wallet can spend, with the key of the P2PKH script it pays.
#[derive(Debug, Clone)]
pub struct Coin {
    pub outpoint: OutPoint,
    pub value: u64,
    pub script_pubkey: Vec<u8>,
    pub key: PrivateKey,
}

/// A signed payment.
#[derive(Debug, Clone)]
pub struct Payment {
    pub tx: Transaction,
    pub fee: u64,
    /// The change output's index, if there is one.
    pub change_vout: Option<u32>,
    /// The coins spent (indexes into the coins given).
    pub spent: Vec<usize>,
}

/// What to pay.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub to_script: Vec<u8>,
    pub amount: u64,
    pub fee_rate: u64,
    pub change_script: Vec<u8>,
    /// The transaction's lock time (Core sets the tip's height, against fee sniping).
    pub lock_time: u32,
    /// Decides whether change comes first or second, so it cannot be told by position;
    /// the caller passes a random bit.
    pub change_first: bool,
}

/// Selects coins, builds and signs the payment. The fee pays `fee_rate` for
/// the size of the signed transaction (at most what coin selection assumed).
pub fn build_payment(coins: &[Coin], req: &PaymentRequest) -> Result<Payment, BuildError> {
    if !(MIN_FEE_RATE..=MAX_FEE_RATE).contains(&req.fee_rate) {
        return Err(BuildError::FeeRate(req.fee_rate));
    }
    if req.amount < DUST_LIMIT {
        return Err(BuildError::Dust(req.amount));
    }
    let values: Vec<u64> = coins.iter().map(|c| c.value).collect();
    let out_vsize = 9 + req.to_script.len() as u64;
    let sel = coinselect::select(
        &values,
        Target {
            target: req.amount,
            outputs_vsize: out_vsize,
            fee_rate: req.fee_rate,
        },
    )?;
    if sel.fee > MAX_FEE {
        return Err(BuildError::AbsurdFee(sel.fee));
    }
    let to_value = i64::try_from(req.amount).map_err(|_| SelectError::Overflow)?;
    let mut outputs = vec![TxOut {
        value: to_value,
        script_pubkey: req.to_script.clone(),
    }];
    let mut change_vout = None;
    if sel.change > 0 {
        let change = TxOut {
            value: i64::try_from(sel.change).map_err(|_| SelectError::Overflow)?,
            script_pubkey: req.change_script.clone(),
        };
        if req.change_first {
            outputs.insert(0, change);
            change_vout = Some(0);
        } else {
            outputs.push(change);
            change_vout = Some(1);
        }
    }
    let mut tx = Transaction {
        version: 2,
        inputs: sel
            .inputs
            .iter()
            .map(|&i| TxIn {
                prevout: coins[i].outpoint.clone(),
                script_sig: Vec::new(),
                sequence: 0xffff_fffe,
            })
            .collect(),
        outputs,
        lock_time: req.lock_time,
    };
    sign(
        &mut tx,
        &sel.inputs.iter().map(|&i| &coins[i]).collect::<Vec<_>>(),
    );
    debug_assert!(tx.encode().len() as u64 <= sel.vsize);
    Ok(Payment {
        tx,
        fee: sel.fee,
        change_vout,
        spent: sel.inputs,
    })
}

/// Signs every input `i` of `tx` with `coins[i]`'s key (P2PKH, `SIGHASH_ALL`).
pub fn sign(tx: &mut Transaction, coins: &[&Coin]) {
    let secp = Secp256k1::signing_only();
    let mut script_sigs = Vec::with_capacity(coins.len());
    for (i, c) in coins.iter().enumerate() {
        let h = legacy_sighash(tx, i, &c.script_pubkey, SIGHASH_ALL);
        let sig = secp.sign_ecdsa(&Message::from_digest(h), &c.key.secret_key());
        let mut der = sig.serialize_der().to_vec();
        der.push(SIGHASH_ALL as u8);
        let mut ss = Vec::with_capacity(107);
        push_data(&mut ss, &der);
        push_data(&mut ss, &c.key.public_key_bytes());
        script_sigs.push(ss);
    }
    for (txin, ss) in tx.inputs.iter_mut().zip(script_sigs) {
        txin.script_sig = ss;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::script::{Flags, TxChecker, verify_script};

    fn key(n: u8) -> PrivateKey {
        PrivateKey::from_bytes([n; 32], true).expect("key")
    }

    fn coin(n: u8, value: u64) -> Coin {
        let k = key(n);
        Coin {
            outpoint: OutPoint {
                txid: [n; 32],
                vout: u32::from(n),
            },
            value,
            script_pubkey: k.address().script_pubkey(),
            key: k,
        }
    }

    fn req(amount: u64, fee_rate: u64) -> PaymentRequest {
        PaymentRequest {
            to_script: key(99).address().script_pubkey(),
            amount,
            fee_rate,
            change_script: key(98).address().script_pubkey(),
            lock_time: 101,
            change_first: false,
        }
    }

    #[test]
    fn a_payment_verifies_and_pays_the_fee_rate_for_its_real_size() {
        let coins = [coin(1, 60_000), coin(2, 70_000), coin(3, 5_000)];
        let p = build_payment(&coins, &req(100_000, 3)).expect("build");
        let size = p.tx.encode().len() as u64;
        assert!(p.fee >= 3 * size, "fee {} for {size} bytes", p.fee);
        assert!(p.fee <= 3 * (size + 2 * p.tx.inputs.len() as u64));
        let secp = Secp256k1::verification_only();
        for (i, &ci) in p.spent.iter().enumerate() {
            let mut checker = TxChecker::new(&p.tx, i, &secp);
            let flags = Flags::STRICTENC
                .with(Flags::DERSIG)
                .with(Flags::LOW_S)
                .with(Flags::SIGPUSHONLY)
                .with(Flags::CLEANSTACK);
            verify_script(
                &p.tx.inputs[i].script_sig,
                &coins[ci].script_pubkey,
                flags,
                &mut checker,
            )
            .expect("signature verifies");
        }
        let out: i64 = p.tx.outputs.iter().map(|o| o.value).sum();
        let spent: u64 = p.spent.iter().map(|&i| coins[i].value).sum();
        assert_eq!(spent, out as u64 + p.fee);
        assert_eq!(p.change_vout, Some(1));
        assert_eq!(p.tx.outputs[1].script_pubkey, req(0, 1).change_script);
    }

    #[test]
    fn dust_absurd_fees_and_overspending_are_refused() {
        let coins = [coin(1, 60_000)];
        assert_eq!(
            build_payment(&coins, &req(500, 1)).err(),
            Some(BuildError::Dust(500))
        );
        assert_eq!(
            build_payment(&coins, &req(10_000, 0)).err(),
            Some(BuildError::FeeRate(0))
        );
        assert_eq!(
            build_payment(&coins, &req(10_000, 50_000)).err(),
            Some(BuildError::FeeRate(50_000))
        );
        // Ten inputs at 9000 sat/vB: a fee above 0.1 BTC.
        let many: Vec<Coin> = (1..=10).map(|n| coin(n, 5_000_000)).collect();
        assert!(matches!(
            build_payment(&many, &req(30_000_000, 9_000)),
            Err(BuildError::AbsurdFee(_))
        ));
        assert!(matches!(
            build_payment(&coins, &req(60_000, 1)),
            Err(BuildError::Select(SelectError::InsufficientFunds { .. }))
        ));
    }
}
