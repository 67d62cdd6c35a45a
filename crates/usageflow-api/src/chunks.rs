//! `/usage/chunks`: the per-hub parts of accepted files, for the provider that bills them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use usageflow_model::{Chunk, ChunkStep};

use crate::error::{ApiError, ApiResult};
use crate::files::{parse_json, xlsx_response};
use crate::listing::{Collection, page_response, select};
use crate::{AppState, Principal, Role};

const CHUNKS: Collection = Collection {
    name: "chunks",
    fields: &[
        ("id", "id"),
        ("status", "status"),
        ("provider.id", "provider.id"),
        ("binding.hub.id", "binding.hub.id"),
        ("usagefile.id", "usagefile.id"),
        ("marketplace.id", "marketplace.id"),
    ],
    orderable: &["usagefile.id", "id", "status"],
    search: &["id", "usagefile.id", "binding.hub.id"],
};

fn chunk_json(chunk: &Chunk) -> Value {
    let mut v = serde_json::to_value(chunk).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("document");
        o.remove("version");
        o.entry("external_id").or_insert_with(|| Value::String(chunk.binding.external_id.clone()));
    }
    v
}

/// Chunks belong to the provider that bills them; nobody else sees them.
async fn visible(state: &AppState, who: &Principal, id: &str) -> ApiResult<Chunk> {
    match state.service.chunk(id).await {
        Ok(c) if who.role == Role::Provider && c.provider.id == who.account => Ok(c),
        _ => Err(ApiError::not_found("chunk", id)),
    }
}

/// The latest version of every chunk: listed at most once a second, and again after any call
/// of this server that may change chunks.
async fn chunk_versions(state: &AppState) -> ApiResult<Arc<std::collections::BTreeMap<String, u64>>> {
    if let Some((at, versions)) =
        state.chunk_versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
        && at.elapsed() < std::time::Duration::from_secs(1)
    {
        return Ok(versions.clone());
    }
    let versions = Arc::new(state.service.all_chunk_versions().await?);
    *state.chunk_versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((std::time::Instant::now(), versions.clone()));
    Ok(versions)
}

/// The chunks of `file_ids`, in chunk id order. Chunk versions never change once written: only
/// versions not read before are read.
pub(crate) async fn chunks_of<'a>(
    state: &AppState,
    file_ids: impl IntoIterator<Item = &'a str>,
) -> ApiResult<Vec<Arc<Chunk>>> {
    let all = chunk_versions(state).await?;
    let versions = usageflow_files::chunks_of_files(&all, file_ids);
    let missing: Vec<(String, u64)> = {
        let cache = state.chunks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        versions.iter().filter(|(id, v)| cache.get(id).is_none_or(|(c, _)| c != v)).cloned().collect()
    };
    let service = &state.service;
    let read: Vec<(String, u64, Chunk)> = futures::stream::iter(missing.into_iter().map(|(id, v)| async move {
        let chunk = service.chunk_version(&id, v).await?;
        Ok::<_, usageflow_files::ServiceError>((id, v, chunk))
    }))
    .buffer_unordered(16)
    .try_collect()
    .await?;
    let mut cache = state.chunks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (id, v, chunk) in read {
        cache.insert(id, (v, Arc::new(chunk)));
    }
    Ok(versions.iter().filter_map(|(id, _)| cache.get(id)).map(|(_, c)| c.clone()).collect())
}

pub(crate) async fn list(State(state): State<AppState>, who: Principal, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    CHUNKS.check(&query)?;
    let mut items = Vec::new();
    if who.role == Role::Provider {
        let files = state.files.files().await?;
        let billed =
            files.iter().filter(|f| f.provider.id == who.account && f.status.is_billed()).map(|f| f.id.as_str());
        items.extend(chunks_of(&state, billed).await?.iter().map(|c| chunk_json(c)));
    }
    let (page, total) = select(items, &query, &CHUNKS)?;
    Ok(page_response(page, &query, total))
}

pub(crate) async fn detail(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(chunk_json(&visible(&state, &who, &id).await?)))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    visible(&state, &who, &id).await?;
    let body: Value = parse_json(&body)?;
    let external_id = body
        .get("external_id")
        .or_else(|| body.get("binding").and_then(|b| b.get("external_id")))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("external_id is required"))?;
    Ok(Json(chunk_json(&state.service.set_chunk_external_id(&who.actor(), &id, external_id).await?)))
}

pub(crate) async fn download(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let chunk = visible(&state, &who, &id).await?;
    let object = chunk.document.as_ref().ok_or_else(|| ApiError::not_found("document of chunk", &id))?;
    Ok(xlsx_response(state.service.document(object).await?, &object.filename))
}

pub(crate) async fn close(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    visible(&state, &who, &id).await?;
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { parse_json(&body)? };
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    if s("external_billing_id").trim().is_empty() {
        return Err(ApiError::invalid(
            "external_billing_id is required to close a chunk: the body is {\"external_billing_id\": \"…\", \"external_billing_note\": \"…\"}",
        ));
    }
    let step = ChunkStep::Close {
        external_billing_id: s("external_billing_id"),
        external_billing_note: s("external_billing_note"),
    };
    Ok(Json(chunk_json(&state.service.chunk_step(&who.actor(), &id, step).await?)))
}

pub(crate) async fn regenerate(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    visible(&state, &who, &id).await?;
    Ok(Json(chunk_json(&state.service.chunk_step(&who.actor(), &id, ChunkStep::Regenerate).await?)))
}
