//! Reporting schemas: what the vendor reports and what the distributor computes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A product's usage reporting schema.
///
/// The API spells it in lower case (`qt`), product capabilities and spreadsheets in upper case
/// (`QT`); both parse. It serializes in lower case (the usage API's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportingSchema {
    /// Quantity: the vendor reports quantities; the distributor computes all prices.
    Qt,
    /// Tiers rated: quantity and a price for each tier (0 customer, 1, 2).
    Tr,
    /// Price rated: quantity and the end-customer (tier 0) price.
    Pr,
    /// Cost rated: quantity and the distributor's cost.
    Cr,
}

impl ReportingSchema {
    /// All schemas.
    pub const ALL: [ReportingSchema; 4] =
        [ReportingSchema::Qt, ReportingSchema::Tr, ReportingSchema::Pr, ReportingSchema::Cr];

    /// `qt`, `tr`, `pr`, `cr`.
    pub fn api_name(self) -> &'static str {
        match self {
            ReportingSchema::Qt => "qt",
            ReportingSchema::Tr => "tr",
            ReportingSchema::Pr => "pr",
            ReportingSchema::Cr => "cr",
        }
    }

    /// `QT`, `TR`, `PR`, `CR`.
    pub fn sheet_name(self) -> &'static str {
        match self {
            ReportingSchema::Qt => "QT",
            ReportingSchema::Tr => "TR",
            ReportingSchema::Pr => "PR",
            ReportingSchema::Cr => "CR",
        }
    }

    /// Whether records carry an `amount`.
    pub fn requires_amount(self) -> bool {
        !matches!(self, ReportingSchema::Qt)
    }

    /// Whether records carry a `tier` (0, 1 or 2).
    pub fn requires_tier(self) -> bool {
        matches!(self, ReportingSchema::Tr)
    }

    /// Whether the usage file needs a currency.
    pub fn requires_currency(self) -> bool {
        self.requires_amount()
    }
}

impl fmt::Display for ReportingSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sheet_name())
    }
}

/// Text that is not a reporting schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reporting schema `{0}`: expected QT, TR, PR or CR")]
pub struct UnknownSchema(pub String);

impl FromStr for ReportingSchema {
    type Err = UnknownSchema;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "qt" => Ok(ReportingSchema::Qt),
            "tr" => Ok(ReportingSchema::Tr),
            "pr" => Ok(ReportingSchema::Pr),
            "cr" => Ok(ReportingSchema::Cr),
            _ => Err(UnknownSchema(s.to_owned())),
        }
    }
}

impl Serialize for ReportingSchema {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.api_name())
    }
}

impl<'de> Deserialize<'de> for ReportingSchema {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_cases_parse_and_the_api_spelling_is_lower_case() {
        for s in ReportingSchema::ALL {
            assert_eq!(s.api_name().parse::<ReportingSchema>().unwrap(), s);
            assert_eq!(s.sheet_name().parse::<ReportingSchema>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.api_name()));
        }
        assert!("xx".parse::<ReportingSchema>().is_err());
        assert!(ReportingSchema::Tr.requires_tier() && !ReportingSchema::Pr.requires_tier());
        assert!(!ReportingSchema::Qt.requires_amount() && ReportingSchema::Cr.requires_amount());
    }
}
