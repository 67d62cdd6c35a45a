//! Metering events: what producers send, once decoded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{AssetCriteria, ItemCriteria};

/// One unit of reported usage: who (asset), what (item), how much, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeteringEvent {
    /// Producer-assigned id; events with the same id are counted once.
    pub id: String,
    /// Product id.
    pub product: String,
    /// How the asset is named.
    pub asset_criteria: AssetCriteria,
    /// The asset id or parameter value.
    pub asset_value: String,
    /// How the item is named.
    pub item_criteria: ItemCriteria,
    /// The MPN, local id or global id.
    pub item_value: String,
    /// Quantity consumed.
    pub quantity: Decimal,
    /// Amount (rated schemas).
    pub amount: Option<Decimal>,
    /// Tier (TR schema): 0 customer, 1, 2.
    pub tier: Option<u8>,
    /// Start of the usage interval (inclusive).
    pub start: DateTime<Utc>,
    /// End of the usage interval (equal to `start` for a point in time).
    pub end: DateTime<Utc>,
    /// Category id.
    pub category: Option<String>,
    /// Free-form attributes carried to the raw-event table.
    pub attributes: BTreeMap<String, String>,
}
