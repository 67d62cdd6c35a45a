//! Why an event is rejected: a stable code (the `usageflow-error-code` header on the
//! dead-letter topic, and the `reason` label of the rejection metric) and a sentence.

use std::fmt;

/// Rejection codes. The set is closed so that metric labels stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// Not JSON.
    MalformedJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or shape.
    InvalidField,
    /// The product is not in the catalogue.
    UnknownProduct,
    /// The product has no usage capability, or not for this item type.
    UsageNotEnabled,
    /// No asset of the product matches.
    UnknownAsset,
    /// The asset was terminated before the usage.
    AssetTerminated,
    /// No item of the product matches, and dynamic items are off.
    UnknownItem,
    /// More decimals than the item's precision.
    PrecisionExceeded,
    /// Quantity or amount below zero.
    NegativeValue,
    /// Quantity or amount beyond what any item plausibly reports.
    AbsurdValue,
    /// Rated schema without `amount`.
    AmountRequired,
    /// `amount` on a QT product.
    AmountNotAllowed,
    /// TR product without `tier`.
    TierRequired,
    /// Tier not 0, 1 or 2, or tier on a non-TR product.
    InvalidTier,
    /// Timestamps missing, unreadable or start after end.
    InvalidTime,
    /// Usage older than the product allows.
    LateEvent,
    /// Usage further in the future than the product allows.
    FutureEvent,
}

impl Code {
    /// All codes.
    pub const ALL: [Code; 18] = [
        Code::MalformedJson,
        Code::MissingField,
        Code::InvalidField,
        Code::UnknownProduct,
        Code::UsageNotEnabled,
        Code::UnknownAsset,
        Code::AssetTerminated,
        Code::UnknownItem,
        Code::PrecisionExceeded,
        Code::NegativeValue,
        Code::AbsurdValue,
        Code::AmountRequired,
        Code::AmountNotAllowed,
        Code::TierRequired,
        Code::InvalidTier,
        Code::InvalidTime,
        Code::LateEvent,
        Code::FutureEvent,
    ];

    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MalformedJson => "malformed_json",
            Code::MissingField => "missing_field",
            Code::InvalidField => "invalid_field",
            Code::UnknownProduct => "unknown_product",
            Code::UsageNotEnabled => "usage_not_enabled",
            Code::UnknownAsset => "unknown_asset",
            Code::AssetTerminated => "asset_terminated",
            Code::UnknownItem => "unknown_item",
            Code::PrecisionExceeded => "precision_exceeded",
            Code::NegativeValue => "negative_value",
            Code::AbsurdValue => "absurd_value",
            Code::AmountRequired => "amount_required",
            Code::AmountNotAllowed => "amount_not_allowed",
            Code::TierRequired => "tier_required",
            Code::InvalidTier => "invalid_tier",
            Code::InvalidTime => "invalid_time",
            Code::LateEvent => "late_event",
            Code::FutureEvent => "future_event",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected event's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Code.
    pub code: Code,
    /// What is wrong, naming the field and value.
    pub reason: String,
}

impl Rejection {
    /// A rejection.
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}
