//! `/me` and `/products`: who the caller is and the products it may report or bill usage of,
//! with their usage capabilities, items and the contracts they are distributed under.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use usageflow_model::Product;

use crate::files::provides;
use crate::{AppState, Principal, Role};

/// `GET /me`: the caller's key, account and role, and a provider's hubs.
pub(crate) async fn me(State(state): State<AppState>, who: Principal) -> Json<Value> {
    let name = state.catalogue.account(&who.account).map_or_else(|| who.account.clone(), |a| a.name.clone());
    let hubs: Vec<Value> = state
        .catalogue
        .data()
        .hubs
        .iter()
        .filter(|h| who.role == Role::Provider && h.provider == who.account)
        .map(|h| json!({"id": h.id, "name": h.name}))
        .collect();
    Json(json!({
        "key": {"id": who.key_id, "name": who.key_name},
        "account": {"id": who.account, "name": name},
        "role": who.role.as_str(),
        "hubs": hubs,
    }))
}

/// Whether `who` may see `product`.
pub(crate) fn sees_product(state: &AppState, who: &Principal, product: &Product) -> bool {
    match who.role {
        Role::Vendor => product.vendor == who.account,
        Role::Provider => provides(state, &who.account, &product.id),
        Role::Reseller => false,
    }
}

fn product_json(state: &AppState, who: &Principal, p: &Product) -> Value {
    let vendor = state.catalogue.account(&p.vendor).map_or("", |a| a.name.as_str());
    let contracts: Vec<Value> = state
        .catalogue
        .data()
        .listings
        .iter()
        .filter(|l| l.product == p.id)
        .filter_map(|l| state.catalogue.contract(&l.contract).map(|c| (l, c)))
        .filter(|(_, c)| who.role != Role::Provider || c.provider == who.account)
        .map(|(l, c)| {
            let provider = state.catalogue.account(&c.provider).map_or("", |a| a.name.as_str());
            json!({
                "id": c.id,
                "name": c.name,
                "status": c.status,
                "marketplace": {"id": l.marketplace},
                "provider": {"id": c.provider, "name": provider},
            })
        })
        .collect();
    let ppu = p.capabilities.ppu.as_ref();
    json!({
        "id": p.id,
        "name": p.name,
        "vendor": {"id": p.vendor, "name": vendor},
        "aggregation": p.aggregation,
        "capabilities": {
            "usage_enabled": p.capabilities.usage_enabled(),
            "ppu": ppu.map(|c| json!({
                "schema": c.schema.sheet_name(),
                "dynamic": c.dynamic,
                "future": c.future,
                "late": c.late,
                "predictive": c.predictive,
                "required_custom_fields": c.required_custom_fields,
            })),
            "reservation": p.capabilities.reservation.as_ref().map(|r| json!({"consumption": r.consumption})),
        },
        "items": p.items.iter().map(|i| json!({
            "id": i.id,
            "local_id": i.local_id,
            "mpn": i.mpn,
            "name": i.name,
            "type": i.item_type,
            "unit": i.unit,
            "precision": i.precision,
            "period": i.period,
            "dynamic": i.dynamic,
        })).collect::<Vec<_>>(),
        "contracts": contracts,
    })
}

/// `GET /products`: the products the caller reports (vendor) or distributes (provider).
pub(crate) async fn products(State(state): State<AppState>, who: Principal) -> Json<Vec<Value>> {
    Json(
        state
            .catalogue
            .data()
            .products
            .iter()
            .filter(|p| sees_product(&state, &who, p))
            .map(|p| product_json(&state, &who, p))
            .collect(),
    )
}
