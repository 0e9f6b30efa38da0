//! Amounts as the user writes them: BTC with up to 8 decimals (`0.5`, `12`,
//! `0.00000001`) or satoshis with a `sat` suffix (`1500sat`), and back.
use thiserror::Error;

use crate::MAX_MONEY;

/// Satoshis in one BTC.
pub const COIN: u64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AmountError {
    #[error("empty amount")]
    Empty,
    #[error("negative amounts are not allowed")]
    Negative,
    #[error("more than 8 decimals (1 sat is 0.00000001 BTC)")]
    TooManyDecimals,
    #[error("not a number: write BTC like 0.5 or satoshis like 50000sat")]
    NotANumber,
    #[error("amount larger than 21 million BTC")]
    TooLarge,
    #[error("amount is zero")]
    Zero,
}

/// Parses `AMOUNT` into satoshis: BTC with up to 8 decimals, or an integer
/// with a `sat` suffix. Zero, negative and more than 21 million BTC are errors.
pub fn parse_amount(s: &str) -> Result<u64, AmountError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    if s.starts_with('-') {
        return Err(AmountError::Negative);
    }
    let sat = if let Some(n) = s.strip_suffix("sat") {
        let n = n.trim_end();
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotANumber);
        }
        n.parse::<u64>().map_err(|_| AmountError::TooLarge)?
    } else {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (s.contains('.') && frac.is_empty() && int.is_empty())
        {
            return Err(AmountError::NotANumber);
        }
        if frac.len() > 8 {
            return Err(AmountError::TooManyDecimals);
        }
        let whole: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| AmountError::TooLarge)?
        };
        let mut f: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| AmountError::NotANumber)?
        };
        for _ in frac.len()..8 {
            f *= 10;
        }
        whole
            .checked_mul(COIN)
            .and_then(|w| w.checked_add(f))
            .ok_or(AmountError::TooLarge)?
    };
    if sat > MAX_MONEY as u64 {
        return Err(AmountError::TooLarge);
    }
    if sat == 0 {
        return Err(AmountError::Zero);
    }
    Ok(sat)
}

/// Satoshis as BTC with 8 decimals: `1.50000000`.
pub fn format_btc(sat: u64) -> String {
    format!("{}.{:08}", sat / COIN, sat % COIN)
}

/// A signed amount as BTC with 8 decimals: `-0.00010000`.
pub fn format_btc_signed(sat: i64) -> String {
    let sign = if sat < 0 { "-" } else { "" };
    format!("{sign}{}", format_btc(sat.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btc_and_sat_amounts_parse_to_satoshis() {
        assert_eq!(parse_amount("1"), Ok(COIN));
        assert_eq!(parse_amount("0.5"), Ok(50_000_000));
        assert_eq!(parse_amount(".5"), Ok(50_000_000));
        assert_eq!(parse_amount("1."), Ok(COIN));
        assert_eq!(parse_amount("0.00000001"), Ok(1));
        assert_eq!(parse_amount("21000000"), Ok(21_000_000 * COIN));
        assert_eq!(parse_amount("1500sat"), Ok(1500));
        assert_eq!(parse_amount("1500 sat"), Ok(1500));
    }

    #[test]
    fn bad_amounts_are_refused_with_their_reason() {
        assert_eq!(
            parse_amount("0.000000001"),
            Err(AmountError::TooManyDecimals)
        );
        assert_eq!(parse_amount("-1"), Err(AmountError::Negative));
        assert_eq!(parse_amount("-5sat"), Err(AmountError::Negative));
        assert_eq!(
            parse_amount("21000000.00000001"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            parse_amount("99999999999999999999"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(parse_amount("184467440737sat"), Ok(184_467_440_737));
        assert_eq!(
            parse_amount("18446744073709551616sat"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(parse_amount("0"), Err(AmountError::Zero));
        assert_eq!(parse_amount("."), Err(AmountError::NotANumber));
        assert_eq!(parse_amount("1e8"), Err(AmountError::NotANumber));
        assert_eq!(parse_amount("1.5sat"), Err(AmountError::NotANumber));
        assert_eq!(parse_amount(""), Err(AmountError::Empty));
        assert_eq!(parse_amount("+1"), Err(AmountError::NotANumber));
    }

    #[test]
    fn amounts_format_with_eight_decimals() {
        assert_eq!(format_btc(150_000_000), "1.50000000");
        assert_eq!(format_btc(1), "0.00000001");
        assert_eq!(format_btc_signed(-10_000), "-0.00010000");
    }
}
