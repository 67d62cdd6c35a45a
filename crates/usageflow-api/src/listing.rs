//! Listing collections held in memory (files, chunks, rules, reconciliations, categories,
//! aggregates): RQL filters on the fields each collection allows, ordering, paging and the
//! `Content-Range` header.

use std::borrow::Borrow;
use std::cmp::Ordering;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::rql::{Expr, Op, Query};

/// The filterable and orderable fields of a collection: API name → dotted path in the object.
#[derive(Debug, Clone, Copy)]
pub struct Collection {
    /// Name in messages.
    pub name: &'static str,
    /// Filterable fields and their paths.
    pub fields: &'static [(&'static str, &'static str)],
    /// Fields that `ordering` accepts.
    pub orderable: &'static [&'static str],
    /// Paths that `search` looks in.
    pub search: &'static [&'static str],
}

impl Collection {
    fn path(&self, field: &str) -> ApiResult<&'static str> {
        self.fields.iter().find(|(f, _)| *f == field).map(|(_, p)| *p).ok_or_else(|| {
            let names: Vec<&str> = self.fields.iter().map(|(f, _)| *f).collect();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "RQL_002",
                format!("{} cannot be filtered by `{field}`; filterable fields: {}", self.name, names.join(", ")),
            )
        })
    }

    /// Checks that every field of the query may be used.
    pub fn check(&self, query: &Query) -> ApiResult<()> {
        if let Some(filter) = &query.filter {
            for f in filter.fields() {
                self.path(f)?;
            }
        }
        for o in &query.ordering {
            if !self.orderable.contains(&o.field.as_str()) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "RQL_003",
                    format!(
                        "{} cannot be ordered by `{}`; orderable fields: {}",
                        self.name,
                        o.field,
                        self.orderable.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The value at a dotted path.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, part| v.get(part)).filter(|v| !v.is_null())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

fn instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// A value read as a number, or else an instant, once; then compared like [`compare`].
struct SortKey<'a> {
    number: Option<Decimal>,
    instant: Option<DateTime<Utc>>,
    text: std::borrow::Cow<'a, str>,
}

impl<'a> SortKey<'a> {
    fn new(text: impl Into<std::borrow::Cow<'a, str>>) -> Self {
        let text = text.into();
        let number = text.parse::<Decimal>().ok();
        let instant = if number.is_none() { instant(&text) } else { None };
        Self { number, instant, text }
    }

    /// As numbers when both are, then as instants when both are, then as text.
    fn cmp(&self, other: &Self) -> Ordering {
        if let (Some(x), Some(y)) = (self.number, other.number) {
            return x.cmp(&y);
        }
        // A number that is also an instant (a bare year, say) is read as one only here.
        if let (Some(x), Some(y)) =
            (self.instant.or_else(|| instant(&self.text)), other.instant.or_else(|| instant(&other.text)))
        {
            return x.cmp(&y);
        }
        self.text.cmp(&other.text)
    }
}

/// Compares two values as numbers, then as instants, then as text.
pub fn compare(a: &str, b: &str) -> Ordering {
    SortKey::new(a).cmp(&SortKey::new(b))
}

/// `like` with `*` (and `%`) as wildcards.
pub fn like(value: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split(['*', '%']).collect();
    if parts.len() == 1 {
        return value == pattern;
    }
    let mut rest = value;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

fn matches(item: &Value, expr: &Expr, coll: &Collection) -> ApiResult<bool> {
    Ok(match expr {
        Expr::And(v) => {
            for e in v {
                if !matches(item, e, coll)? {
                    return Ok(false);
                }
            }
            true
        }
        Expr::Or(v) => {
            for e in v {
                if matches(item, e, coll)? {
                    return Ok(true);
                }
            }
            false
        }
        Expr::Not(e) => !matches(item, e, coll)?,
        Expr::Null { field } => lookup(item, coll.path(field)?).is_none(),
        Expr::Empty { field } => lookup(item, coll.path(field)?).and_then(text).is_none_or(|t| t.is_empty()),
        Expr::In { field, values, negated } => {
            let got = lookup(item, coll.path(field)?).and_then(text);
            let found = got.is_some_and(|g| values.iter().any(|v| compare(&g, v) == Ordering::Equal));
            found != *negated
        }
        Expr::Cmp { op, field, value } => {
            let got = lookup(item, coll.path(field)?).and_then(text);
            let value = if value == "null()" { None } else { Some(value.as_str()) };
            match (got, value) {
                (None, None) => matches!(op, Op::Eq | Op::Le | Op::Ge),
                (Some(_), None) => *op == Op::Ne,
                (None, Some(_)) => *op == Op::Ne,
                (Some(g), Some(v)) => match op {
                    Op::Eq => compare(&g, v) == Ordering::Equal,
                    Op::Ne => compare(&g, v) != Ordering::Equal,
                    Op::Lt => compare(&g, v) == Ordering::Less,
                    Op::Le => compare(&g, v) != Ordering::Greater,
                    Op::Gt => compare(&g, v) == Ordering::Greater,
                    Op::Ge => compare(&g, v) != Ordering::Less,
                    Op::Like => like(&g, v),
                    Op::Ilike => like(&g.to_lowercase(), &v.to_lowercase()),
                },
            }
        }
    })
}

/// Filters, orders and pages `items` (owned or borrowed JSON values); returns the page and the
/// total before paging. Sort keys are read once per item, not once per comparison.
pub fn select<T: Borrow<Value>>(mut items: Vec<T>, query: &Query, coll: &Collection) -> ApiResult<(Vec<T>, usize)> {
    coll.check(query)?;
    if let Some(filter) = &query.filter {
        let mut kept = Vec::with_capacity(items.len());
        for item in items {
            if matches(item.borrow(), filter, coll)? {
                kept.push(item);
            }
        }
        items = kept;
    }
    if let Some(search) = query.search.as_deref().map(str::to_lowercase).filter(|s| !s.is_empty()) {
        items.retain(|item| {
            coll.search
                .iter()
                .any(|p| lookup(item.borrow(), p).and_then(text).is_some_and(|t| t.to_lowercase().contains(&search)))
        });
    }
    if !query.ordering.is_empty() {
        let keys: Vec<(&'static str, bool)> =
            query.ordering.iter().map(|o| Ok((coll.path(&o.field)?, o.descending))).collect::<ApiResult<_>>()?;
        let mut keyed: Vec<(Vec<Option<SortKey>>, T)> = items
            .into_iter()
            .map(|item| {
                (
                    keys.iter().map(|(path, _)| lookup(item.borrow(), path).and_then(text).map(SortKey::new)).collect(),
                    item,
                )
            })
            .collect();
        keyed.sort_by(|(a, _), (b, _)| {
            for ((x, y), (_, desc)) in a.iter().zip(b).zip(&keys) {
                let o = match (x, y) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (x, y) => x.is_some().cmp(&y.is_some()),
                };
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        items = keyed.into_iter().map(|(_, item)| item).collect();
    }
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(query.offset).take(query.page_size()).collect();
    Ok((page, total))
}

/// The `Content-Range` value of a page.
pub fn content_range(offset: usize, count: usize, total: usize) -> String {
    if count == 0 { format!("items 0-0/{total}") } else { format!("items {}-{}/{}", offset, offset + count - 1, total) }
}

/// Removes the fields that `select(-path, …)` takes away from an object (a dotted path removes
/// a nested field). Fields named without `-` are added fields in Connect's RQL (`select(+x)`
/// asks for a field hidden by default); the usage objects hide none, so they change nothing.
pub fn apply_select(value: &mut Value, select: &[String]) {
    for path in select.iter().filter_map(|s| s.strip_prefix('-')) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let Some(last) = parts.pop() else { continue };
        let parent = parts.iter().try_fold(&mut *value, |v, part| v.get_mut(*part));
        if let Some(Value::Object(o)) = parent {
            o.remove(last);
        }
    }
}

/// A page as a response: the JSON array, with the query's `select` applied, and
/// `Content-Range`.
pub fn page_response<T: serde::Serialize>(page: Vec<T>, query: &Query, total: usize) -> Response {
    let range = content_range(query.offset, page.len(), total);
    let mut response = if query.select.iter().any(|s| s.starts_with('-')) {
        let items: Vec<Value> = page
            .into_iter()
            .map(|item| {
                let mut v = serde_json::to_value(item).unwrap_or(Value::Null);
                apply_select(&mut v, &query.select);
                v
            })
            .collect();
        Json(items).into_response()
    } else {
        Json(page).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&range) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rql::parse;
    use serde_json::json;

    const C: Collection = Collection {
        name: "things",
        fields: &[
            ("id", "id"),
            ("status", "status"),
            ("product.id", "product.id"),
            ("product_id", "product.id"),
            ("created.at", "events.created.at"),
            ("n", "n"),
            ("note", "note"),
        ],
        orderable: &["created.at", "n"],
        search: &["id", "note"],
    };

    fn items() -> Vec<Value> {
        (0..5)
            .map(|i| {
                json!({"id": format!("T-{i}"), "status": if i % 2 == 0 {"ready"} else {"draft"},
                    "product": {"id": format!("PRD-{}", i % 3)}, "n": i * 10,
                    "note": if i == 4 { Value::Null } else { json!(format!("note {i}")) },
                    "events": {"created": {"at": format!("2024-01-0{}T00:00:00+00:00", i + 1)}}})
            })
            .collect()
    }

    fn ids(q: &str) -> (Vec<String>, usize) {
        let (page, total) = select(items(), &parse(q).unwrap(), &C).unwrap();
        (page.iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect(), total)
    }

    #[test]
    fn filters_order_and_pages() {
        assert_eq!(ids("status=ready").0, ["T-0", "T-2", "T-4"]);
        assert_eq!(ids("in(product_id,(PRD-1,PRD-2))").0, ["T-1", "T-2", "T-4"]);
        assert_eq!(ids("out(product.id,(PRD-1,PRD-2))").0, ["T-0", "T-3"]);
        assert_eq!(ids("ge(n,20)&lt(n,40)").0, ["T-2", "T-3"]);
        assert_eq!(ids("gt(created.at,2024-01-03)").0, ["T-3", "T-4"]);
        assert_eq!(ids("null(note)").0, ["T-4"]);
        assert_eq!(ids("like(note,*e 1)").0, ["T-1"]);
        assert_eq!(ids("ilike(id,t-*)").1, 5);
        assert_eq!(ids("or(eq(id,T-0),not(eq(status,ready)))").0, ["T-0", "T-1", "T-3"]);
        assert_eq!(ids("ordering(-n)&limit=2&offset=1"), (vec!["T-3".to_owned(), "T-2".to_owned()], 5));
        assert_eq!(ids("search=NOTE 3").0, ["T-3"]);
    }

    #[test]
    fn unknown_fields_are_refused_with_the_allowed_ones() {
        let e = select(items(), &parse("eq(secret,1)").unwrap(), &C).unwrap_err();
        assert_eq!(e.code, "RQL_002");
        assert!(e.errors[0].contains("filterable fields: id, status"), "{e:?}");
        let e = select(items(), &parse("ordering(status)").unwrap(), &C).unwrap_err();
        assert_eq!(e.code, "RQL_003");
    }

    #[test]
    fn select_takes_fields_away() {
        let mut v = json!({"id": "T-1", "events": {"created": {"at": "x"}, "uploaded": 1}, "stats": {"n": 1}});
        apply_select(&mut v, &["-events.created".into(), "id".into(), "-stats".into(), "-no.such".into()]);
        assert_eq!(v, json!({"id": "T-1", "events": {"uploaded": 1}}));
        let response = page_response(vec![json!({"id": 1, "events": 2})], &parse("select(-events)").unwrap(), 1);
        assert_eq!(response.headers()[header::CONTENT_RANGE], "items 0-0/1");
    }

    #[test]
    fn content_range_is_connects() {
        assert_eq!(content_range(0, 0, 0), "items 0-0/0");
        assert_eq!(content_range(0, 10, 25), "items 0-9/25");
        assert_eq!(content_range(20, 5, 25), "items 20-24/25");
    }
}
