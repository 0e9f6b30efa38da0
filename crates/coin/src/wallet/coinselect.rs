//! Coin selection as Bitcoin Core does it: branch and bound for a set of
//! coins that pays the target and its fee without a change output (within the
//! cost of making change), and when none exists, largest-first with change.
//!
//! Sizes are those of P2PKH: an input signed with a compressed key is at
//! most [`P2PKH_INPUT_VSIZE`] bytes, an output [`P2PKH_OUTPUT_VSIZE`].
use thiserror::Error;

/// Bytes of a P2PKH input with a compressed key and the largest DER signature.
pub const P2PKH_INPUT_VSIZE: u64 = 148;
/// Bytes of a P2PKH output.
pub const P2PKH_OUTPUT_VSIZE: u64 = 34;
/// Version, input and output counts (one byte each up to 252), lock time.
pub const TX_OVERHEAD_VSIZE: u64 = 10;
/// Smallest P2PKH output Core relays (its dust limit at 3 sat/vB).
pub const DUST_LIMIT: u64 = 546;
/// Branch-and-bound gives up after this many steps, as Core does.
pub const BNB_MAX_TRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SelectError {
    #[error("insufficient funds: {available} sat spendable, {needed} sat needed with the fee")]
    InsufficientFunds { available: u64, needed: u64 },
    #[error("amount overflow")]
    Overflow,
}

/// What was chosen: indexes into the candidates, the fee, and the change
/// (0: no change output; the excess goes to the fee).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub inputs: Vec<usize>,
    pub fee: u64,
    pub change: u64,
    /// The size the fee was computed for (an upper bound of the signed size).
    pub vsize: u64,
}

/// The request: pay `target` satoshis in outputs of `outputs_vsize` bytes in
/// all, at `fee_rate` sat/vB, from coins of `values`.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub target: u64,
    pub outputs_vsize: u64,
    pub fee_rate: u64,
}

fn mul(a: u64, b: u64) -> Result<u64, SelectError> {
    a.checked_mul(b).ok_or(SelectError::Overflow)
}
fn add(a: u64, b: u64) -> Result<u64, SelectError> {
    a.checked_add(b).ok_or(SelectError::Overflow)
}

/// Selects coins for `t` from `values`; every coin is a P2PKH output.
pub fn select(values: &[u64], t: Target) -> Result<Selection, SelectError> {
    let input_fee = mul(t.fee_rate, P2PKH_INPUT_VSIZE)?;
    let base_vsize = add(TX_OVERHEAD_VSIZE, t.outputs_vsize)?;
    let need_nochange = add(t.target, mul(t.fee_rate, base_vsize)?)?;
    // Making change costs its output now and spending it later.
    let cost_of_change = add(mul(t.fee_rate, P2PKH_OUTPUT_VSIZE)?, input_fee)?;
    // Coins worth less than the fee to spend them are never chosen.
    let mut eff: Vec<(usize, u64)> = values
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v > input_fee)
        .map(|(i, &v)| (i, v - input_fee))
        .collect();
    eff.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut total = 0u64;
    for &(_, v) in &eff {
        total = add(total, v)?;
    }
    if let Some(chosen) = bnb(&eff, need_nochange, cost_of_change) {
        return finish(values, chosen, t);
    }
    // Largest first, until the change is worth making (or nothing is left).
    let want = add(
        add(need_nochange, mul(t.fee_rate, P2PKH_OUTPUT_VSIZE)?)?,
        DUST_LIMIT,
    )?;
    let mut chosen = Vec::new();
    let mut sum = 0u64;
    for &(i, v) in &eff {
        chosen.push(i);
        sum = add(sum, v)?;
        if sum >= want {
            break;
        }
    }
    if sum < need_nochange {
        return Err(SelectError::InsufficientFunds {
            available: values.iter().fold(0u64, |a, &v| a.saturating_add(v)),
            needed: add(need_nochange, input_fee)?,
        });
    }
    finish(values, chosen, t)
}

/// Core's depth-first search over coins sorted by effective value, largest
/// first: the selection whose effective value lands in
/// `[need, need + cost_of_change]` with the least excess.
fn bnb(eff: &[(usize, u64)], need: u64, cost_of_change: u64) -> Option<Vec<usize>> {
    let upper = need.checked_add(cost_of_change)?;
    let mut remaining: u64 = eff.iter().map(|e| e.1).sum();
    if remaining < need {
        return None;
    }
    let mut best: Option<(u64, Vec<bool>)> = None;
    let mut sel = vec![false; eff.len()];
    let mut value = 0u64;
    let mut depth = 0usize;
    let mut tries = 0;
    while tries < BNB_MAX_TRIES {
        tries += 1;
        let mut backtrack = false;
        if value.saturating_add(remaining) < need || value > upper {
            backtrack = true;
        } else if value >= need {
            let excess = value - need;
            if best.as_ref().is_none_or(|(b, _)| excess < *b) {
                best = Some((excess, sel.clone()));
                if excess == 0 {
                    break;
                }
            }
            backtrack = true;
        }
        if depth == eff.len() {
            backtrack = true;
        }
        if backtrack {
            // Walk back to the last included coin, and try without it.
            loop {
                if depth == 0 {
                    return best.map(|(_, s)| pick(eff, &s));
                }
                depth -= 1;
                if depth < eff.len() && sel[depth] {
                    sel[depth] = false;
                    value -= eff[depth].1;
                    depth += 1;
                    break;
                }
                if depth < eff.len() {
                    remaining += eff[depth].1;
                }
            }
            continue;
        }
        // Include the coin at `depth`.
        remaining -= eff[depth].1;
        sel[depth] = true;
        value += eff[depth].1;
        depth += 1;
    }
    best.map(|(_, s)| pick(eff, &s))
}

fn pick(eff: &[(usize, u64)], sel: &[bool]) -> Vec<usize> {
    eff.iter()
        .zip(sel)
        .filter(|(_, s)| **s)
        .map(|(e, _)| e.0)
        .collect()
}

fn finish(values: &[u64], mut chosen: Vec<usize>, t: Target) -> Result<Selection, SelectError> {
    chosen.sort_unstable();
    let mut sum = 0u64;
    for &i in &chosen {
        sum = add(sum, values[i])?;
    }
    let n = chosen.len() as u64;
    let vsize_nochange = add(
        add(TX_OVERHEAD_VSIZE, t.outputs_vsize)?,
        mul(n, P2PKH_INPUT_VSIZE)?,
    )?;
    let vsize_change = add(vsize_nochange, P2PKH_OUTPUT_VSIZE)?;
    let fee_change = mul(t.fee_rate, vsize_change)?;
    let fee_nochange = mul(t.fee_rate, vsize_nochange)?;
    let after = sum.checked_sub(t.target);
    match after {
        Some(left) if left >= fee_change && left - fee_change >= DUST_LIMIT => Ok(Selection {
            inputs: chosen,
            fee: fee_change,
            change: left - fee_change,
            vsize: vsize_change,
        }),
        Some(left) if left >= fee_nochange => Ok(Selection {
            inputs: chosen,
            fee: left,
            change: 0,
            vsize: vsize_nochange,
        }),
        _ => Err(SelectError::InsufficientFunds {
            available: sum,
            needed: add(t.target, fee_nochange)?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(target: u64, fee_rate: u64) -> Target {
        Target {
            target,
            outputs_vsize: P2PKH_OUTPUT_VSIZE,
            fee_rate,
        }
    }

    #[test]
    fn branch_and_bound_finds_the_exact_match_without_change() {
        // At 1 sat/vB: the fee without change for one input is 10 + 34 + 148 = 192.
        let values = [50_000, 30_000 + 148, 20_000 + 148, 7_000];
        // 30k + 20k plus two inputs' and the base fee: exactly coins 1 and 2.
        let target = 50_000 - 44;
        let s = select(&values, t(target, 1)).expect("select");
        assert_eq!(s.inputs, vec![1, 2]);
        assert_eq!(s.change, 0);
        assert_eq!(s.fee, values[1] + values[2] - target);
    }

    #[test]
    fn without_an_exact_match_largest_first_makes_change_above_dust() {
        let values = [100_000, 2_000, 70_000];
        let s = select(&values, t(120_000, 2)).expect("select");
        assert_eq!(s.inputs, vec![0, 2]);
        let vsize = TX_OVERHEAD_VSIZE + 2 * P2PKH_OUTPUT_VSIZE + 2 * P2PKH_INPUT_VSIZE;
        assert_eq!(s.vsize, vsize);
        assert_eq!(s.fee, 2 * vsize);
        assert_eq!(s.change, 170_000 - 120_000 - 2 * vsize);
        assert!(s.change >= DUST_LIMIT);
    }

    #[test]
    fn change_below_dust_goes_to_the_fee() {
        // One coin, the payment leaves 300 sat after the fee with change: no change output.
        let fee_change = 10 + 2 * 34 + 148;
        let values = [10_000 + fee_change + 300];
        let s = select(&values, t(10_000, 1)).expect("select");
        assert_eq!(s.change, 0);
        assert_eq!(s.fee, fee_change + 300);
    }

    #[test]
    fn not_enough_is_insufficient_funds_and_uneconomic_coins_are_skipped() {
        assert!(matches!(
            select(&[1_000, 2_000], t(5_000, 1)),
            Err(SelectError::InsufficientFunds { .. })
        ));
        // A coin below the cost of spending it (148 sat at 1 sat/vB) is not used.
        let s = select(&[100, 100_000], t(50_000, 1)).expect("select");
        assert_eq!(s.inputs, vec![1]);
    }

    #[test]
    fn selection_always_pays_the_target_and_the_fee_for_its_size() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..300 {
            let mut values = Vec::new();
            for _ in 0..(1 + round % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                values.push(1_000 + x % 5_000_000);
            }
            let rate = 1 + x % 20;
            let target = 1_000 + x % 8_000_000;
            match select(&values, t(target, rate)) {
                Ok(s) => {
                    let sum: u64 = s.inputs.iter().map(|&i| values[i]).sum();
                    assert_eq!(sum, target + s.fee + s.change);
                    assert!(s.fee >= rate * s.vsize);
                    assert!(s.change == 0 || s.change >= DUST_LIMIT);
                }
                Err(SelectError::InsufficientFunds { .. }) => {
                    let all: u64 = values.iter().sum();
                    let min_fee = rate * (10 + 34 + 148 * values.len() as u64);
                    assert!(all < target + min_fee, "round {round}");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}
