//! Money: integer atomic units, and exact decimal prices converted to them once, at config load.
//!
//! A price is written by a human (`"$0.04"`, `"0.5 USDC"`); an offer asks for an amount of one asset in its
//! atomic units (USDC has 6 decimals, so $0.04 is `40000`). The conversion is exact or it is an error: a price
//! that an asset cannot represent (`$0.0000001` in a 6-decimal token) is refused rather than rounded, so
//! what the operator wrote is what the payer pays.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of some asset in its smallest unit. Serialized as a decimal string, as both protocols do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AtomicAmount(pub u128);

impl fmt::Display for AtomicAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for AtomicAmount {
    type Err = MoneyError;

    /// Strict: ASCII digits only, no sign, no leading `+`, no exponent, at most 39 digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::NotAnAmount(s.to_owned()));
        }
        s.parse::<u128>().map(AtomicAmount).map_err(|_| MoneyError::NotAnAmount(s.to_owned()))
    }
}

impl Serialize for AtomicAmount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AtomicAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An exact non-negative decimal: `digits / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub digits: u128,
    pub scale: u32,
}

impl Decimal {
    /// Parses `12`, `0.04`, `.5`; refuses signs, exponents, and more than 30 fractional digits.
    pub fn parse(text: &str) -> Result<Decimal, MoneyError> {
        let bad = || MoneyError::NotADecimal(text.to_owned());
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 30 {
            return Err(bad());
        }
        let mut digits: u128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            digits = digits.checked_mul(10).and_then(|d| d.checked_add(u128::from(b - b'0'))).ok_or_else(bad)?;
        }
        Ok(Decimal { digits, scale: frac.len() as u32 })
    }

    /// The same value in units of `10^-decimals`, only if that is exact.
    pub fn to_atomic(self, decimals: u8) -> Result<AtomicAmount, MoneyError> {
        let decimals = u32::from(decimals);
        if self.scale <= decimals {
            let factor = 10u128.checked_pow(decimals - self.scale).ok_or(MoneyError::Overflow)?;
            return self.digits.checked_mul(factor).map(AtomicAmount).ok_or(MoneyError::Overflow);
        }
        let divisor = 10u128.pow(self.scale - decimals);
        if !self.digits.is_multiple_of(divisor) {
            return Err(MoneyError::NotRepresentable { decimals: decimals as u8 });
        }
        Ok(AtomicAmount(self.digits / divisor))
    }

    /// Whether this is at least `other`.
    pub fn at_least(self, other: Decimal) -> bool {
        let scale = self.scale.max(other.scale);
        let widen = |d: Decimal| 10u128.checked_pow(scale - d.scale).and_then(|f| d.digits.checked_mul(f));
        match (widen(self), widen(other)) {
            (Some(a), Some(b)) => a >= b,
            (None, _) => true,
            (_, None) => false,
        }
    }

    pub fn is_zero(self) -> bool {
        self.digits == 0
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_units(self.digits, self.scale, f)
    }
}

fn format_units(value: u128, scale: u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if scale == 0 {
        return write!(f, "{value}");
    }
    let divisor = 10u128.pow(scale);
    let frac = format!("{:0width$}", value % divisor, width = scale as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() { write!(f, "{}", value / divisor) } else { write!(f, "{}.{frac}", value / divisor) }
}

/// `amount` atomic units of an asset with `decimals` decimals, written in whole units (`40000`, 6 → `0.04`).
pub fn format_atomic(amount: AtomicAmount, decimals: u8) -> String {
    struct Units(u128, u32);
    impl fmt::Display for Units {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            format_units(self.0, self.1, f)
        }
    }
    Units(amount.0, u32::from(decimals)).to_string()
}

/// A price as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Price {
    /// US dollars: `"$0.04"`. Paid in USD stablecoins one to one.
    Usd(Decimal),
    /// Units of a named asset: `"0.5 USDC"`.
    Asset { amount: Decimal, symbol: String },
}

/// The smallest price paygate accepts in USD: below a tenth of a cent, settlement costs more than it earns.
pub const MIN_USD_PRICE: Decimal = Decimal { digits: 1, scale: 3 };

impl Price {
    /// Parses `$0.04`, `0.04 USD`, or `0.5 USDC`.
    pub fn parse(text: &str) -> Result<Price, MoneyError> {
        let text = text.trim();
        if let Some(usd) = text.strip_prefix('$') {
            return Ok(Price::Usd(Decimal::parse(usd.trim())?));
        }
        let not_a_price = || MoneyError::NotAPrice(text.to_owned());
        let (amount, unit) = text.split_once(char::is_whitespace).ok_or_else(not_a_price)?;
        let amount = Decimal::parse(amount).map_err(|_| not_a_price())?;
        let unit = unit.trim();
        if unit.eq_ignore_ascii_case("usd") {
            return Ok(Price::Usd(amount));
        }
        if unit.is_empty() || !unit.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
            return Err(MoneyError::NotAPrice(text.to_owned()));
        }
        Ok(Price::Asset { amount, symbol: unit.to_owned() })
    }

    /// Whether the price is nothing at all (`"$0"`).
    pub fn is_zero(&self) -> bool {
        match self {
            Price::Usd(d) | Price::Asset { amount: d, .. } => d.is_zero(),
        }
    }

    /// Checks the operator's price is worth charging: at least [`MIN_USD_PRICE`] when in USD, and not zero.
    pub fn check_minimum(&self) -> Result<(), MoneyError> {
        match self {
            Price::Usd(d) if !d.at_least(MIN_USD_PRICE) => Err(MoneyError::BelowMinimum(d.to_string())),
            Price::Asset { amount, .. } if amount.is_zero() => Err(MoneyError::BelowMinimum(amount.to_string())),
            _ => Ok(()),
        }
    }

    /// The amount of an asset this price asks for: USD prices in a USD stablecoin one to one, asset prices only
    /// in that asset. Exact or an error.
    pub fn in_asset(&self, asset_symbol: &str, asset_is_usd: bool, decimals: u8) -> Result<AtomicAmount, MoneyError> {
        match self {
            Price::Usd(d) if asset_is_usd => d.to_atomic(decimals),
            Price::Usd(_) => Err(MoneyError::NotUsd(asset_symbol.to_owned())),
            Price::Asset { amount, symbol } if symbol.eq_ignore_ascii_case(asset_symbol) => amount.to_atomic(decimals),
            Price::Asset { symbol, .. } => {
                Err(MoneyError::AssetMismatch { price: symbol.clone(), asset: asset_symbol.to_owned() })
            }
        }
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Price::Usd(d) => write!(f, "${d}"),
            Price::Asset { amount, symbol } => write!(f, "{amount} {symbol}"),
        }
    }
}

/// Why an amount or price is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not an amount of atomic units (digits only)")]
    NotAnAmount(String),
    #[error("{0:?} is not a decimal number")]
    NotADecimal(String),
    #[error("{0:?} is not a price; write \"$0.04\" or \"0.5 USDC\"")]
    NotAPrice(String),
    #[error("the price cannot be paid exactly in an asset with {decimals} decimals")]
    NotRepresentable { decimals: u8 },
    #[error("the amount overflows")]
    Overflow,
    #[error("{0} is below the minimum price of $0.001")]
    BelowMinimum(String),
    #[error("a USD price cannot be paid in {0}, which is not a USD stablecoin")]
    NotUsd(String),
    #[error("a price in {price} cannot be paid in {asset}")]
    AssetMismatch { price: String, asset: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_prices_convert_exactly() {
        let p = Price::parse("$0.04").unwrap();
        assert_eq!(p.in_asset("USDC", true, 6).unwrap(), AtomicAmount(40_000));
        assert_eq!(p.in_asset("DAI", true, 18).unwrap(), AtomicAmount(40_000_000_000_000_000));
        assert_eq!(Price::parse("$1").unwrap().in_asset("USDC", true, 6).unwrap(), AtomicAmount(1_000_000));
        assert_eq!(Price::parse("0.01 USD").unwrap(), Price::Usd(Decimal { digits: 1, scale: 2 }));
        assert_eq!(Price::parse("$0.0400000").unwrap().in_asset("USDC", true, 6).unwrap(), AtomicAmount(40_000));
    }

    #[test]
    fn unrepresentable_and_tiny_prices_are_errors() {
        let p = Price::parse("$0.0000001").unwrap();
        assert_eq!(p.in_asset("USDC", true, 6), Err(MoneyError::NotRepresentable { decimals: 6 }));
        assert!(Price::parse("$0.0009").unwrap().check_minimum().is_err());
        assert!(Price::parse("$0.001").unwrap().check_minimum().is_ok());
        assert!(Price::parse("0 USDC").unwrap().check_minimum().is_err());
    }

    #[test]
    fn malformed_prices_are_refused() {
        for bad in ["", "$", "$-1", "$1e3", "$0.1.2", "4 cents!", "$ 0,04", "1"] {
            assert!(Price::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(Price::parse("ten cents"), Err(MoneyError::NotAPrice(_))));
    }

    #[test]
    fn asset_prices_only_pay_in_that_asset() {
        let p = Price::parse("0.5 USDC").unwrap();
        assert_eq!(p.in_asset("usdc", true, 6).unwrap(), AtomicAmount(500_000));
        assert!(p.in_asset("USDT", true, 6).is_err());
        assert!(Price::parse("$1").unwrap().in_asset("WETH", false, 18).is_err());
    }

    #[test]
    fn atomic_amounts_are_strict_and_format_in_units() {
        assert_eq!("10000".parse::<AtomicAmount>().unwrap(), AtomicAmount(10_000));
        for bad in ["", "-1", "+1", "1e3", "0x10", " 1", "1".repeat(40).as_str()] {
            assert!(bad.parse::<AtomicAmount>().is_err(), "{bad}");
        }
        assert_eq!(format_atomic(AtomicAmount(40_000), 6), "0.04");
        assert_eq!(format_atomic(AtomicAmount(1_000_000), 6), "1");
        assert_eq!(format_atomic(AtomicAmount(5), 0), "5");
    }

    #[test]
    fn decimal_overflow_is_an_error() {
        assert!(Decimal::parse(&"9".repeat(40)).is_err());
        assert_eq!(Decimal::parse("1").unwrap().to_atomic(38), Ok(AtomicAmount(10u128.pow(38))));
        assert_eq!(Decimal::parse("10").unwrap().to_atomic(38), Err(MoneyError::Overflow));
    }
}
