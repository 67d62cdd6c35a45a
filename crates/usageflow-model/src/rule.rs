//! Usage rules: how a provider's review is automated when a vendor submits.
//!
//! A rule applies to one item of a product (or, with no item, to every item). `scope`
//! says whether it judges each record or the file as a whole; `action` is what happens
//! when it matches: `accept`, `reject`, or `manual` (leave the file for a person).
//! `rule` is a condition over the records; the evaluation lives with the files code,
//! which documents its syntax. Rules are tried in ascending `gravity`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Ref;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Accept the file.
    Accept,
    /// Reject the file.
    Reject,
    /// Leave it for manual review.
    Manual,
}

/// What a rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleScope {
    /// Each record of the item.
    Record,
    /// The file's totals for the item.
    File,
}

/// Rule status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    /// In force.
    Active,
    /// Deleted.
    Deleted,
}

/// A usage rule (`usage.UsageItemRule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRule {
    /// Rule id.
    pub id: String,
    /// Product.
    pub product_id: String,
    /// Provider account that owns the rule.
    pub account_id: String,
    /// Item the rule is for; `None` = every item.
    #[serde(default)]
    pub item: Option<Ref>,
    /// What happens on a match.
    pub action: RuleAction,
    /// Record or file.
    pub scope: RuleScope,
    /// Condition (≤2000 characters); empty = always matches.
    #[serde(default)]
    pub rule: Option<String>,
    /// Status.
    pub status: RuleStatus,
    /// Order of evaluation (lower first).
    #[serde(default)]
    pub gravity: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}
