//! Usage rules: the provider's automatic review, applied when a vendor submits a file.
//!
//! The Connect API leaves the rule syntax open (spec gap 7); Usageflow's is a conjunction of
//! comparisons with exact decimals:
//!
//! ```text
//! rule      := "" | condition ("and" condition)*
//! condition := field op number
//! field     := quantity | amount                       (scope `record`: each record)
//!            | total_quantity | total_amount | records (scope `file`: the item's totals)
//! op        := < | <= | > | >= | == | !=
//! ```
//!
//! A rule applies to the records of its item (or of every item when it names none). Rules
//! are evaluated in ascending `gravity`:
//! 1. a `reject` rule that matches (any record, or the totals) rejects the file;
//! 2. otherwise a `manual` rule that matches keeps the file for a person;
//! 3. otherwise, when the file's items are all covered by `accept` rules and every one of them
//!    matches (all records, or the totals), the file is accepted;
//! 4. otherwise the file stays pending. An empty rule always matches.

use std::str::FromStr;

use rust_decimal::Decimal;
use usageflow_model::{RuleAction, RuleScope, RuleStatus, UsageRule};

use crate::validate::ValidRecord;

/// A rule that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("usage rule `{rule}`: {reason}")]
pub struct RuleError {
    /// The rule text.
    pub rule: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Quantity,
    Amount,
    TotalQuantity,
    TotalAmount,
    Records,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    field: Field,
    op: Op,
    value: Decimal,
}

fn parse(rule: &str, scope: RuleScope) -> Result<Vec<Condition>, RuleError> {
    let err = |reason: String| RuleError { rule: rule.to_owned(), reason };
    let tokens: Vec<&str> = rule.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !out.is_empty() {
            if !tokens[i].eq_ignore_ascii_case("and") {
                return Err(err(format!("expected `and`, found `{}`", tokens[i])));
            }
            i += 1;
        }
        let [field, op, value] = tokens
            .get(i..i + 3)
            .and_then(|t| <[&str; 3]>::try_from(t).ok())
            .ok_or_else(|| err("a condition is `field op number`, e.g. `quantity <= 1000`".to_owned()))?;
        let field = match (field, scope) {
            ("quantity", RuleScope::Record) => Field::Quantity,
            ("amount", RuleScope::Record) => Field::Amount,
            ("total_quantity", RuleScope::File) => Field::TotalQuantity,
            ("total_amount", RuleScope::File) => Field::TotalAmount,
            ("records", RuleScope::File) => Field::Records,
            (f, RuleScope::Record) => return Err(err(format!("`{f}` is not a record field (quantity, amount)"))),
            (f, RuleScope::File) => {
                return Err(err(format!("`{f}` is not a file field (total_quantity, total_amount, records)")));
            }
        };
        let op = match op {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" | "=" => Op::Eq,
            "!=" => Op::Ne,
            o => return Err(err(format!("`{o}` is not a comparison (<, <=, >, >=, ==, !=)"))),
        };
        let value = Decimal::from_str(value).map_err(|_| err(format!("`{value}` is not a number")))?;
        out.push(Condition { field, op, value });
        i += 3;
    }
    Ok(out)
}

/// Checks a rule's syntax for its scope.
pub fn check_rule(rule: &UsageRule) -> Result<(), RuleError> {
    parse(rule.rule.as_deref().unwrap_or(""), rule.scope).map(|_| ())
}

fn holds(op: Op, left: Decimal, right: Decimal) -> bool {
    match op {
        Op::Lt => left < right,
        Op::Le => left <= right,
        Op::Gt => left > right,
        Op::Ge => left >= right,
        Op::Eq => left == right,
        Op::Ne => left != right,
    }
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accept, by this rule.
    Accept { rule: String },
    /// Reject, by this rule.
    Reject { rule: String, reason: String },
    /// Leave it for a person.
    Manual,
}

/// Whether a rule matches the records it applies to (`all` = every record must match).
fn matches(conditions: &[Condition], records: &[&ValidRecord], scope: RuleScope, all: bool) -> bool {
    match scope {
        RuleScope::Record => {
            let one = |r: &&ValidRecord| {
                conditions.iter().all(|c| {
                    let left = match c.field {
                        Field::Quantity => r.quantity,
                        _ => r.amount.unwrap_or_default(),
                    };
                    holds(c.op, left, c.value)
                })
            };
            if all { records.iter().all(one) } else { records.iter().any(one) }
        }
        RuleScope::File => {
            let total_quantity: Decimal = records.iter().map(|r| r.quantity).sum();
            let total_amount: Decimal = records.iter().filter_map(|r| r.amount).sum();
            conditions.iter().all(|c| {
                let left = match c.field {
                    Field::TotalQuantity => total_quantity,
                    Field::TotalAmount => total_amount,
                    _ => Decimal::from(records.len()),
                };
                holds(c.op, left, c.value)
            })
        }
    }
}

/// Applies the active rules to a submitted file's records.
pub fn decide(rules: &[UsageRule], records: &[ValidRecord]) -> Result<Decision, RuleError> {
    let mut active: Vec<&UsageRule> = rules.iter().filter(|r| r.status == RuleStatus::Active).collect();
    active.sort_by_key(|r| r.gravity);
    let applies = |rule: &UsageRule| -> Vec<&ValidRecord> {
        records
            .iter()
            .filter(|r| {
                rule.item.as_ref().is_none_or(|i| r.item.id.as_deref() == Some(i.id.as_str()) || r.item.mpn == i.id)
            })
            .collect()
    };
    let mut parsed = Vec::new();
    for rule in &active {
        parsed.push((rule, parse(rule.rule.as_deref().unwrap_or(""), rule.scope)?, applies(rule)));
    }
    for (rule, conditions, subset) in &parsed {
        if rule.action == RuleAction::Reject && !subset.is_empty() && matches(conditions, subset, rule.scope, false) {
            return Ok(Decision::Reject {
                rule: rule.id.clone(),
                reason: format!("usage rule {} ({}) matched", rule.id, rule.rule.as_deref().unwrap_or("always")),
            });
        }
    }
    for (rule, conditions, subset) in &parsed {
        if rule.action == RuleAction::Manual && !subset.is_empty() && matches(conditions, subset, rule.scope, false) {
            return Ok(Decision::Manual);
        }
    }
    let accepts: Vec<_> = parsed.iter().filter(|(r, ..)| r.action == RuleAction::Accept).collect();
    if accepts.is_empty() {
        return Ok(Decision::Manual);
    }
    let covered =
        records.iter().all(|rec| accepts.iter().any(|(_, _, subset)| subset.iter().any(|s| std::ptr::eq(*s, rec))));
    let all_match = accepts
        .iter()
        .all(|(rule, conditions, subset)| subset.is_empty() || matches(conditions, subset, rule.scope, true));
    if covered && all_match {
        Ok(Decision::Accept { rule: accepts.iter().map(|(r, ..)| r.id.as_str()).collect::<Vec<_>>().join(", ") })
    } else {
        Ok(Decision::Manual)
    }
}
