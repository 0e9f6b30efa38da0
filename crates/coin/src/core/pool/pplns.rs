//! PPLNS (pay per last N shares): a window of the last N accepted shares, each weighted by its
//! share difficulty (in units of the pool's share difficulty), and the split of a coinbase
//! value in proportion to the window's weights: integer satoshis, checked arithmetic, the
//! rounding remainder to the heaviest miner (ties: the first by name), so the payouts always
//! sum to exactly the value.
use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

/// Most miners paid in one coinbase (34 bytes an output; the rest of the window waits for a
/// later block, in which the heaviest are paid first).
pub const MAX_PAYEES: usize = 250;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayoutError {
    #[error("value {0} is not a valid amount")]
    BadValue(i64),
    #[error("fee of {0} basis points is above 100%")]
    BadFee(u32),
    #[error("no one to pay")]
    NoPayees,
    #[error("arithmetic overflow in the split")]
    Overflow,
}

/// The window: at most `n` shares, oldest evicted first.
#[derive(Debug, Clone)]
pub struct Pplns {
    n: usize,
    shares: VecDeque<(String, u64)>,
    totals: BTreeMap<String, u128>,
}

impl Pplns {
    /// A window of the last `n` shares (at least 1).
    pub fn new(n: usize) -> Pplns {
        Pplns {
            n: n.max(1),
            shares: VecDeque::new(),
            totals: BTreeMap::new(),
        }
    }
    pub fn window(&self) -> usize {
        self.n
    }
    /// Shares in the window now.
    pub fn len(&self) -> usize {
        self.shares.len()
    }
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }
    /// Credit `user` with a share of `weight`.
    pub fn push(&mut self, user: &str, weight: u64) {
        if self.shares.len() == self.n {
            if let Some((old, w)) = self.shares.pop_front() {
                if let Some(t) = self.totals.get_mut(&old) {
                    *t = t.saturating_sub(u128::from(w));
                    if *t == 0 {
                        self.totals.remove(&old);
                    }
                }
            }
        }
        *self.totals.entry(user.to_string()).or_insert(0) += u128::from(weight);
        self.shares.push_back((user.to_string(), weight));
    }
    /// Each user's weight in the window, by name.
    pub fn weights(&self) -> &BTreeMap<String, u128> {
        &self.totals
    }
}

/// Split `value` satoshis: `fee_bp` basis points to the fee payee (if `fee_to` is given), the
/// rest among `weights` in proportion (the [`MAX_PAYEES`] heaviest). Payees are listed
/// heaviest first (ties by key), the fee last; a payee whose share rounds to zero is left out.
/// The result always sums to `value`.
pub fn split<K: Clone + Ord>(
    value: i64,
    weights: &BTreeMap<K, u128>,
    fee_bp: u32,
    fee_to: Option<&K>,
) -> Result<Vec<(K, i64)>, PayoutError> {
    if crate::Amount::from_sat(value).is_none() {
        return Err(PayoutError::BadValue(value));
    }
    if fee_bp > 10_000 {
        return Err(PayoutError::BadFee(fee_bp));
    }
    let value = value as u128;
    let mut payees: Vec<(&K, u128)> = weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(k, w)| (k, *w))
        .collect();
    // Heaviest first; equal weights keep key order (the sort is stable).
    payees.sort_by_key(|p| std::cmp::Reverse(p.1));
    payees.truncate(MAX_PAYEES);
    let fee = match fee_to {
        Some(_) => {
            value
                .checked_mul(u128::from(fee_bp))
                .ok_or(PayoutError::Overflow)?
                / 10_000
        }
        None => 0,
    };
    let rest = value - fee;
    let mut out: Vec<(K, i64)> = Vec::with_capacity(payees.len() + 1);
    let total: u128 = payees
        .iter()
        .try_fold(0u128, |a, (_, w)| a.checked_add(*w))
        .ok_or(PayoutError::Overflow)?;
    if total == 0 {
        return match fee_to {
            Some(f) if value > 0 => Ok(vec![(f.clone(), value as i64)]),
            Some(_) => Ok(Vec::new()),
            None => Err(PayoutError::NoPayees),
        };
    }
    let mut paid: u128 = 0;
    let mut amounts: Vec<u128> = Vec::with_capacity(payees.len());
    for (_, w) in &payees {
        let a = rest.checked_mul(*w).ok_or(PayoutError::Overflow)? / total;
        paid += a;
        amounts.push(a);
    }
    // The remainder (less than one satoshi per payee) to the heaviest.
    amounts[0] += rest - paid;
    for ((k, _), a) in payees.iter().zip(amounts) {
        if a > 0 {
            out.push(((*k).clone(), a as i64));
        }
    }
    if let (Some(f), true) = (fee_to, fee > 0) {
        out.push((f.clone(), fee as i64));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_window_forgets_the_oldest_share() {
        let mut p = Pplns::new(3);
        for u in ["a", "a", "b", "c"] {
            p.push(u, 1);
        }
        let w: Vec<_> = p.weights().iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(w, [("a", 1), ("b", 1), ("c", 1)]);
    }

    #[test]
    fn the_remainder_goes_to_the_heaviest_miner() {
        let w: BTreeMap<&str, u128> = [("a", 1), ("b", 2)].into_iter().collect();
        assert_eq!(split(100, &w, 0, None), Ok(vec![("b", 67), ("a", 33)]));
        let fee = "pool";
        assert_eq!(
            split(1000, &w, 100, Some(&fee)),
            Ok(vec![("b", 660), ("a", 330), ("pool", 10)])
        );
    }

    proptest! {
        #[test]
        fn payouts_sum_to_the_coinbase_value(
            value in 0i64..=crate::MAX_MONEY,
            ws in proptest::collection::vec(0u128..1_000_000, 1..300),
            fee_bp in 0u32..=10_000,
            with_fee in any::<bool>(),
        ) {
            let weights: BTreeMap<usize, u128> = ws.iter().copied().enumerate().collect();
            let fee_to = usize::MAX;
            let r = split(value, &weights, fee_bp, with_fee.then_some(&fee_to));
            if ws.iter().all(|w| *w == 0) && !with_fee {
                prop_assert_eq!(r, Err(PayoutError::NoPayees));
            } else {
                let r = r.expect("a split");
                prop_assert_eq!(r.iter().map(|(_, a)| *a).sum::<i64>(), value);
                prop_assert!(r.iter().all(|(_, a)| *a > 0));
                prop_assert!(r.len() <= MAX_PAYEES + 1);
                // Proportional: within one satoshi of the exact share, but the heaviest.
                let total: u128 = {
                    let mut v: Vec<u128> = ws.iter().copied().filter(|w| *w > 0).collect();
                    v.sort_by_key(|w| std::cmp::Reverse(*w));
                    v.truncate(MAX_PAYEES);
                    v.iter().sum()
                };
                let fee = if with_fee { value as u128 * u128::from(fee_bp) / 10_000 } else { 0 };
                for (k, a) in r.iter().skip(1) {
                    if *k == usize::MAX { continue; }
                    let exact = (value as u128 - fee) * weights[k] / total;
                    prop_assert_eq!(*a as u128, exact);
                }
            }
        }
    }
}
