//! Item precision: how many decimals a reported quantity may carry.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An item's precision. Connect spells it three ways (product API `Decimal(2)`, spreadsheet
/// `decimal(2)`, record payloads `decimal_2`); all parse, and it serializes in the product
/// API spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// Whole numbers only.
    Integer,
    /// One decimal place.
    Decimal1,
    /// Two decimal places.
    Decimal2,
    /// Four decimal places.
    Decimal4,
    /// Eight decimal places.
    Decimal8,
}

/// A quantity that has more decimals than its item allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantity {value} of item {item} has {found} decimal place(s); the item's precision {precision} allows {allowed}"
)]
pub struct PrecisionError {
    /// The item, as the caller named it (id, MPN...).
    pub item: String,
    /// The rejected value.
    pub value: Decimal,
    /// The item's precision.
    pub precision: Precision,
    /// Decimals allowed.
    pub allowed: u32,
    /// Decimals found (trailing zeros ignored).
    pub found: u32,
}

impl Precision {
    /// All precisions, narrowest first.
    pub const ALL: [Precision; 5] =
        [Precision::Integer, Precision::Decimal1, Precision::Decimal2, Precision::Decimal4, Precision::Decimal8];

    /// Number of decimal places allowed.
    pub fn scale(self) -> u32 {
        match self {
            Precision::Integer => 0,
            Precision::Decimal1 => 1,
            Precision::Decimal2 => 2,
            Precision::Decimal4 => 4,
            Precision::Decimal8 => 8,
        }
    }

    /// The factor that turns a quantity into an integer count of the smallest unit
    /// (1, 10, 100, 10 000, 100 000 000), as billing integrations use it.
    pub fn multiplier(self) -> u64 {
        10u64.pow(self.scale())
    }

    /// Product API spelling: `Integer`, `Decimal(2)`.
    pub fn api_name(self) -> &'static str {
        match self {
            Precision::Integer => "Integer",
            Precision::Decimal1 => "Decimal(1)",
            Precision::Decimal2 => "Decimal(2)",
            Precision::Decimal4 => "Decimal(4)",
            Precision::Decimal8 => "Decimal(8)",
        }
    }

    /// Spreadsheet spelling: `integer`, `decimal(2)`.
    pub fn sheet_name(self) -> &'static str {
        match self {
            Precision::Integer => "integer",
            Precision::Decimal1 => "decimal(1)",
            Precision::Decimal2 => "decimal(2)",
            Precision::Decimal4 => "decimal(4)",
            Precision::Decimal8 => "decimal(8)",
        }
    }

    /// Record payload spelling: `integer`, `decimal_2`.
    pub fn record_name(self) -> &'static str {
        match self {
            Precision::Integer => "integer",
            Precision::Decimal1 => "decimal_1",
            Precision::Decimal2 => "decimal_2",
            Precision::Decimal4 => "decimal_4",
            Precision::Decimal8 => "decimal_8",
        }
    }

    /// Checks that `value` fits this precision; `item` names the item in the error.
    pub fn check(self, item: &str, value: Decimal) -> Result<(), PrecisionError> {
        let found = value.normalize().scale();
        let allowed = self.scale();
        if found <= allowed {
            Ok(())
        } else {
            Err(PrecisionError { item: item.to_owned(), value, precision: self, allowed, found })
        }
    }

    /// `value` rescaled to exactly this precision's decimals (after [`Precision::check`]).
    pub fn rescale(self, mut value: Decimal) -> Decimal {
        value.rescale(self.scale());
        value
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// Text that is not a precision in any of Connect's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision `{0}`: expected integer, decimal(1), decimal(2), decimal(4) or decimal(8)")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String =
            s.trim().to_ascii_lowercase().chars().filter(|c| !matches!(c, '(' | ')' | '_' | ' ')).collect();
        match norm.as_str() {
            "integer" | "int" => Ok(Precision::Integer),
            "decimal1" => Ok(Precision::Decimal1),
            "decimal2" => Ok(Precision::Decimal2),
            "decimal4" => Ok(Precision::Decimal4),
            "decimal8" => Ok(Precision::Decimal8),
            _ => Err(UnknownPrecision(s.to_owned())),
        }
    }
}

impl Serialize for Precision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.api_name())
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn every_spelling_parses() {
        for p in Precision::ALL {
            assert_eq!(p.api_name().parse::<Precision>().unwrap(), p);
            assert_eq!(p.sheet_name().parse::<Precision>().unwrap(), p);
            assert_eq!(p.record_name().parse::<Precision>().unwrap(), p);
        }
        assert!("decimal(3)".parse::<Precision>().unwrap_err().to_string().contains("decimal(3)"));
    }

    #[test]
    fn check_counts_significant_decimals() {
        assert!(Precision::Integer.check("X", d("12")).is_ok());
        assert!(Precision::Integer.check("X", d("12.000")).is_ok());
        let err = Precision::Integer.check("MPN-1", d("12.5")).unwrap_err();
        assert_eq!(err.found, 1);
        assert_eq!(
            err.to_string(),
            "quantity 12.5 of item MPN-1 has 1 decimal place(s); the item's precision Integer allows 0"
        );
        assert!(Precision::Decimal2.check("X", d("0.01")).is_ok());
        assert!(Precision::Decimal2.check("X", d("0.001")).is_err());
        assert!(Precision::Decimal8.check("X", d("1.12345678")).is_ok());
        assert!(Precision::Decimal8.check("X", d("1.123456789")).is_err());
        assert_eq!(Precision::Decimal4.multiplier(), 10_000);
        assert_eq!(Precision::Decimal2.rescale(d("1.5")).to_string(), "1.50");
    }
}
