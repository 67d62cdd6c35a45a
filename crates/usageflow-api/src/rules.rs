//! `/products/{product_pk}/usage/rules`: a provider's usage rules for a product. The product's
//! vendor may read the rules that apply to its files; only the provider writes them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};
use usageflow_model::{Ref, RuleStatus, UsageRule};

use crate::error::{ApiError, ApiResult};
use crate::files::{parse_json, provides};
use crate::listing::{Collection, page_response, select};
use crate::{AppState, Principal, Role};

const RULES: Collection = Collection {
    name: "usage rules",
    fields: &[
        ("id", "id"),
        ("action", "action"),
        ("scope", "scope"),
        ("status", "status"),
        ("rule", "rule"),
        ("item.id", "item.id"),
        ("item.name", "item.name"),
    ],
    orderable: &["item.id", "id"],
    search: &["id", "rule", "item.name"],
};

fn rule_json(rule: &UsageRule) -> Value {
    let at = rule.created_at.to_rfc3339();
    json!({
        "id": rule.id,
        "action": rule.action,
        "scope": rule.scope,
        "rule": rule.rule,
        "status": rule.status,
        "item": rule.item.as_ref().map(|i| json!({"id": i.id, "name": i.name})),
        "gravity": rule.gravity,
        "product": {"id": rule.product_id},
        "account": {"id": rule.account_id},
        "events": {"created": {"at": at}, "updated": {"at": at}},
    })
}

/// The rules the caller may read for `product`: a provider its own, the vendor all.
async fn readable(state: &AppState, who: &Principal, product: &str) -> ApiResult<Vec<UsageRule>> {
    let p = state.catalogue.product(product).ok_or_else(|| ApiError::not_found("product", product))?;
    match who.role {
        Role::Provider if provides(state, &who.account, product) => {
            Ok(state.service.rules(product, &who.account).await?)
        }
        Role::Vendor if p.vendor == who.account => {
            let mut all = Vec::new();
            let mut providers: Vec<&str> = state
                .catalogue
                .data()
                .listings
                .iter()
                .filter(|l| l.product == product)
                .filter_map(|l| state.catalogue.contract(&l.contract).map(|c| c.provider.as_str()))
                .collect();
            providers.sort_unstable();
            providers.dedup();
            for provider in providers {
                all.extend(state.service.rules(product, provider).await?);
            }
            Ok(all)
        }
        _ => Err(ApiError::not_found("product", product)),
    }
}

fn writer(state: &AppState, who: &Principal, product: &str) -> ApiResult<()> {
    if state.catalogue.product(product).is_none() {
        return Err(ApiError::not_found("product", product));
    }
    match who.role {
        Role::Provider if provides(state, &who.account, product) => Ok(()),
        Role::Vendor if state.catalogue.product(product).is_some_and(|p| p.vendor == who.account) => {
            Err(ApiError::forbidden("usage rules are set by the product's providers"))
        }
        _ => Err(ApiError::not_found("product", product)),
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(product): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    RULES.check(&query)?;
    let items = readable(&state, &who, &product).await?.iter().map(rule_json).collect();
    let (page, total) = select(items, &query, &RULES)?;
    Ok(page_response(page, &query, total))
}

pub(crate) async fn detail(
    State(state): State<AppState>,
    who: Principal,
    Path((product, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let rules = readable(&state, &who, &product).await?;
    let rule = rules.iter().find(|r| r.id == id).ok_or_else(|| ApiError::not_found("usage rule", &id))?;
    Ok(Json(rule_json(rule)))
}

fn field<T: serde::de::DeserializeOwned>(body: &Value, key: &str) -> ApiResult<Option<T>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            serde_json::from_value(v.clone()).map(Some).map_err(|e| ApiError::invalid(format!("invalid `{key}`: {e}")))
        }
    }
}

fn apply(rule: &mut UsageRule, body: &Value, state: &AppState) -> ApiResult<()> {
    if let Some(item) =
        body.get("item").and_then(|i| i.get("id")).or_else(|| body.get("item_id")).and_then(Value::as_str)
    {
        let found = state
            .catalogue
            .product(&rule.product_id)
            .and_then(|p| p.items.iter().find(|i| i.id == item))
            .ok_or_else(|| ApiError::invalid(format!("item {item} is not an item of {}", rule.product_id)))?;
        rule.item = Some(Ref { id: found.id.clone(), name: found.name.clone() });
    }
    if let Some(a) = field(body, "action")? {
        rule.action = a;
    }
    if let Some(s) = field(body, "scope")? {
        rule.scope = s;
    }
    if let Some(s) = field(body, "status")? {
        rule.status = s;
    }
    if body.get("rule").is_some() {
        rule.rule = field(body, "rule")?;
    }
    if let Some(g) = body.get("gravity").and_then(|g| g.get("after").or(Some(g))).and_then(Value::as_i64) {
        rule.gravity = g;
    }
    usageflow_files::rules::check_rule(rule).map_err(|e| ApiError::invalid(e.to_string()))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    who: Principal,
    Path(product): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    writer(&state, &who, &product)?;
    let body: Value = parse_json(&body)?;
    let mut rules = state.service.rules(&product, &who.account).await?;
    let next = rules.iter().filter_map(|r| r.id.rsplit('-').next()?.parse::<u32>().ok()).max().unwrap_or(0) + 1;
    let mut rule = UsageRule {
        id: format!("UIR-{}-{next:04}", product.trim_start_matches("PRD-")),
        product_id: product.clone(),
        account_id: who.account.clone(),
        item: None,
        action: field(&body, "action")?.ok_or_else(|| ApiError::invalid("action is required"))?,
        scope: field(&body, "scope")?.unwrap_or(usageflow_model::RuleScope::Record),
        rule: None,
        status: RuleStatus::Active,
        gravity: i64::from(next) * 10,
        created_at: Utc::now(),
    };
    apply(&mut rule, &body, &state)?;
    rules.push(rule.clone());
    state.service.set_rules(&who.actor(), &product, rules).await?;
    Ok((StatusCode::CREATED, Json(rule_json(&rule))).into_response())
}

async fn modify(
    state: &AppState,
    who: &Principal,
    product: &str,
    id: &str,
    change: impl FnOnce(&mut UsageRule) -> ApiResult<()>,
) -> ApiResult<UsageRule> {
    let mut rules = readable(state, who, product).await?;
    writer(state, who, product)?;
    let rule = rules.iter_mut().find(|r| r.id == id).ok_or_else(|| ApiError::not_found("usage rule", id))?;
    change(rule)?;
    let out = rule.clone();
    state.service.set_rules(&who.actor(), product, rules).await?;
    Ok(out)
}

pub(crate) async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path((product, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: Value = parse_json(&body)?;
    let rule = modify(&state, &who, &product, &id, |r| apply(r, &body, &state)).await?;
    Ok(Json(rule_json(&rule)))
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    who: Principal,
    Path((product, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    modify(&state, &who, &product, &id, |r| {
        r.status = RuleStatus::Deleted;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
