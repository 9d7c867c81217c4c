//! Money as integer micro-USD: no float ever touches a balance or a price.

use serde::{Deserialize, Serialize};

/// An amount of US dollars in millionths (1 USD = 1_000_000). Signed so refunds and credits subtract.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct MicroUsd(pub i64);

impl MicroUsd {
    pub const ZERO: MicroUsd = MicroUsd(0);

    pub fn from_dollars_str(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || frac.len() > 6
            || !whole
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(format!(
                "{raw:?} is not an amount of dollars with at most 6 decimals"
            ));
        }
        let whole: i64 = whole.parse().map_err(|_| format!("{raw:?} is too large"))?;
        let frac: i64 = format!("{frac:0<6}")
            .parse()
            .map_err(|_| format!("{raw:?} is malformed"))?;
        let micros = whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(frac))
            .ok_or(format!("{raw:?} is too large"))?;
        Ok(MicroUsd(if neg { -micros } else { micros }))
    }

    /// Dollars for JSON output (the API shows dollars; only display ever becomes a float).
    pub fn as_dollars(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }

    /// The cost of `tokens` at `price_per_1k` per 1,000 tokens, rounded up to the next micro-dollar so
    /// usage is never under-charged by rounding.
    pub fn for_tokens(tokens: u64, price_per_1k: MicroUsd) -> MicroUsd {
        let product = tokens as i128 * price_per_1k.0 as i128;
        let micros = (product + 999).div_euclid(1000);
        MicroUsd(micros.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }

    pub fn saturating_add(self, other: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_add(other.0))
    }
}

impl std::fmt::Display for MicroUsd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}${}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_dollars() {
        assert_eq!(MicroUsd::from_dollars_str("0.00002").unwrap(), MicroUsd(20));
        assert_eq!(
            MicroUsd::from_dollars_str("12").unwrap(),
            MicroUsd(12_000_000)
        );
        assert_eq!(
            MicroUsd::from_dollars_str("-1.5").unwrap(),
            MicroUsd(-1_500_000)
        );
        assert!(MicroUsd::from_dollars_str("1.0000001").is_err());
        assert!(MicroUsd::from_dollars_str("abc").is_err());
        assert!(MicroUsd::from_dollars_str(".5").is_err());
        assert_eq!(MicroUsd(1_234_567).to_string(), "$1.234567");
        assert_eq!(MicroUsd(-5).to_string(), "-$0.000005");
    }

    #[test]
    fn token_costs_round_up() {
        // text-embedding-3-small: $0.00002 per 1K tokens = 20 micro-USD.
        assert_eq!(MicroUsd::for_tokens(1000, MicroUsd(20)), MicroUsd(20));
        assert_eq!(MicroUsd::for_tokens(1, MicroUsd(20)), MicroUsd(1));
        assert_eq!(MicroUsd::for_tokens(0, MicroUsd(20)), MicroUsd(0));
        assert_eq!(MicroUsd::for_tokens(1_500, MicroUsd(150)), MicroUsd(225));
    }
}
