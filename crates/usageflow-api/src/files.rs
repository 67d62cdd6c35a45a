//! `/usage/files`: the usage-file workflow.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use usageflow_files::CreateFile;
use usageflow_model::{FileChange, FileUpdate, Period, StoredObject, UsageFile};

use crate::error::{ApiError, ApiResult};
use crate::listing::{Collection, page_response, select};
use crate::{AppState, Principal, Role, sees_file};

pub(crate) const FILES: Collection = Collection {
    name: "usage files",
    fields: &[
        ("id", "id"),
        ("name", "name"),
        ("external_id", "external_id"),
        ("contract.id", "contract.id"),
        ("distribution_contract_id", "contract.id"),
        ("contract.name", "contract.name"),
        ("product.id", "product.id"),
        ("product_id", "product.id"),
        ("product.name", "product.name"),
        ("marketplace.id", "marketplace.id"),
        ("marketplace_id", "marketplace.id"),
        ("marketplace.name", "marketplace.name"),
        ("provider.id", "provider.id"),
        ("provider_id", "provider.id"),
        ("provider.name", "provider.name"),
        ("vendor.id", "vendor.id"),
        ("vendor_id", "vendor.id"),
        ("vendor.name", "vendor.name"),
        ("environment", "environment"),
        ("schema", "schema"),
        ("status", "status"),
        ("created.at", "events.created.at"),
        ("period.from", "period.from"),
        ("period.to", "period.to"),
    ],
    orderable: &[
        "contract.name",
        "product.name",
        "marketplace.name",
        "provider.name",
        "vendor.name",
        "environment",
        "schema",
        "status",
        "created.at",
        "name",
        "id",
    ],
    search: &["id", "name", "external_id", "description", "product.name", "contract.name"],
};

/// A JSON body, with a clear error when it is not one.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let syntax =
            matches!(e.inner().classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof);
        if syntax || path == "." || path.is_empty() {
            ApiError::invalid(format!("the body is not valid JSON: {}", e.inner()))
        } else {
            ApiError::invalid(format!("invalid `{path}`: {}", e.inner()))
        }
    })
}

fn uri(file: &UsageFile, what: &str, object: &Option<StoredObject>) -> Value {
    object.as_ref().map_or(Value::Null, |_| json!(format!("/public/v1/usage/files/{}/{what}", file.id)))
}

/// A file as the API shows it (`usage.UsageFileDetail`).
pub(crate) fn file_json(file: &UsageFile) -> Value {
    let mut v = serde_json::to_value(file).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        for internal in ["uploaded_file", "processed_file", "version", "all_approved", "period_from_records"] {
            o.remove(internal);
        }
        o.insert("usage_file_uri".into(), uri(file, "usagefile", &file.uploaded_file));
        o.insert("processed_file_uri".into(), uri(file, "processedfile", &file.processed_file));
        if let Some(p) = o.get_mut("product").and_then(Value::as_object_mut) {
            p.entry("icon").or_insert(Value::Null);
        }
    }
    v
}

/// The file `id` if the caller may see it; 404 otherwise.
pub(crate) async fn visible_file(state: &AppState, who: &Principal, id: &str) -> ApiResult<UsageFile> {
    match state.service.workflow().get(id).await {
        Ok(file) if sees_file(who, &file) => Ok(file),
        Ok(_) => Err(ApiError::not_found("usage file", id)),
        Err(usageflow_workflow::Error::Workflow(usageflow_model::WorkflowError::NotFound { .. })) => {
            Err(ApiError::not_found("usage file", id))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn list(State(state): State<AppState>, who: Principal, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    FILES.check(&query)?;
    let (files, json) = state.file_listing().await?;
    let visible: Vec<&Value> =
        files.iter().zip(json.iter()).filter(|(f, _)| sees_file(&who, f)).map(|(_, v)| v).collect();
    let (page, total) = select(visible, &query, &FILES)?;
    Ok(page_response(page, &query, total))
}

pub(crate) async fn detail(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(file_json(&visible_file(&state, &who, &id).await?)))
}

fn text_of<'a>(body: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        let v = body.get(*k)?;
        v.get("id").and_then(Value::as_str).or_else(|| v.as_str())
    })
}

/// The period of a create or update body: `period: {from, to}` (the spec's), or the older
/// SDKs' `period_from` / `period_to`; absent when neither is given.
fn period_of(body: &Value) -> ApiResult<Option<Period>> {
    let nested = body.get("period").filter(|p| !p.is_null());
    let flat = ["period_from", "period_to"].iter().any(|k| body.get(*k).is_some_and(|v| !v.is_null()));
    if nested.is_none() && !flat {
        return Ok(None);
    }
    let day = |k: &str| -> ApiResult<chrono::NaiveDate> {
        let value = match nested {
            Some(p) => p.get(k),
            None => body.get(format!("period_{k}").as_str()),
        };
        let name = if nested.is_some() { format!("period.{k}") } else { format!("period_{k}") };
        let t = value
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(format!("{name} is required with the other end of the period")))?;
        chrono::NaiveDate::parse_from_str(t.get(..10).unwrap_or(t), "%Y-%m-%d")
            .map_err(|_| ApiError::invalid(format!("{name} is not a date (YYYY-MM-DD)")))
    };
    Ok(Some(Period { from: day("from")?, to: day("to")? }))
}

pub(crate) async fn create(State(state): State<AppState>, who: Principal, body: Bytes) -> ApiResult<Response> {
    if who.role != Role::Vendor {
        return Err(ApiError::forbidden("only vendors create usage files"));
    }
    let body: Value = parse_json(&body)?;
    let product =
        text_of(&body, &["product", "product_id"]).ok_or_else(|| ApiError::invalid("product.id is required"))?;
    let contract = text_of(&body, &["contract", "distribution_contract", "distribution_contract_id"])
        .ok_or_else(|| ApiError::invalid("contract.id is required"))?;
    match state.catalogue.product(product) {
        Some(p) if p.vendor == who.account => {}
        _ => return Err(ApiError::not_found("product", product)),
    }
    // Without a period, the period follows the records uploaded (see `CreateFile::period`).
    let period = period_of(&body)?;
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let req = CreateFile {
        product: product.to_owned(),
        contract: contract.to_owned(),
        period,
        name: s("name"),
        description: s("description").unwrap_or_default(),
        note: s("note").unwrap_or_default(),
        external_id: s("external_id").unwrap_or_default(),
        currency: s("currency"),
        corrects: None,
    };
    let file = state.service.create(&who.actor(), req).await?;
    Ok((StatusCode::CREATED, Json(file_json(&file))).into_response())
}

pub(crate) async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    visible_file(&state, &who, &id).await?;
    let body: Value = parse_json(&body)?;
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let change = FileUpdate {
        name: s("name"),
        description: s("description"),
        note: s("note"),
        external_id: s("external_id"),
        currency: s("currency"),
        period: period_of(&body)?,
    };
    let file = state.service.workflow().act(&id, FileChange::Update(change), &who.actor()).await?;
    Ok(Json(file_json(&file)))
}

/// A multipart upload: the file part and the form's other (text) fields.
pub(crate) struct Upload {
    /// The file's name as sent.
    pub filename: String,
    /// The file.
    pub bytes: Vec<u8>,
    /// Other fields by name.
    pub fields: std::collections::HashMap<String, String>,
}

impl Upload {
    /// The first of `names` the form has.
    pub fn field(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.fields.get(*n)).map(String::as_str)
    }
}

/// Reads a multipart upload whose file part has one of `names` (aliases).
pub(crate) async fn multipart_file(mut form: Multipart, names: &[&str]) -> ApiResult<Upload> {
    let mut found = None;
    let mut fields = std::collections::HashMap::new();
    // A body over `api.max_body_bytes` is a 413 (its message is the server's), not a bad body.
    let unreadable = |e: axum::extract::multipart::MultipartError, what: String| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "REQ_001", "the request body is too large")
        } else {
            ApiError::invalid(format!("{what} cannot be read: {e}"))
        }
    };
    while let Some(field) = form.next_field().await.map_err(|e| unreadable(e, "the multipart body".to_owned()))? {
        let name = field.name().unwrap_or_default().to_owned();
        if names.contains(&name.as_str()) {
            let filename = field.file_name().unwrap_or("upload.xlsx").to_owned();
            let bytes = field.bytes().await.map_err(|e| unreadable(e, format!("part `{name}`")))?;
            found = Some((filename, bytes.to_vec()));
        } else if let Ok(text) = field.text().await {
            fields.insert(name, text);
        }
    }
    let (filename, bytes) =
        found.ok_or_else(|| ApiError::invalid(format!("the multipart body has no `{}` part", names[0])))?;
    Ok(Upload { filename, bytes, fields })
}

pub(crate) async fn upload(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    form: Multipart,
) -> ApiResult<Response> {
    visible_file(&state, &who, &id).await?;
    let upload = multipart_file(form, &["usage_file", "file"]).await?;
    let outcome = state.service.upload(&who.actor(), &id, &upload.filename, upload.bytes).await?;
    Ok((StatusCode::CREATED, Json(file_json(&outcome.file))).into_response())
}

async fn step(state: &AppState, who: &Principal, id: &str, change: FileChange) -> ApiResult<Json<Value>> {
    visible_file(state, who, id).await?;
    Ok(Json(file_json(&state.service.workflow().act(id, change, &who.actor()).await?)))
}

fn note(body: &[u8], key: &str) -> ApiResult<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = parse_json(body)?;
    Ok(v.get(key).and_then(Value::as_str).map(str::to_owned))
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    visible_file(&state, &who, &id).await?;
    Ok(Json(file_json(&state.service.submit(&who.actor(), &id).await?)))
}

pub(crate) async fn accept(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    visible_file(&state, &who, &id).await?;
    let note = note(&body, "acceptance_note")?.unwrap_or_default();
    Ok(Json(file_json(&state.service.accept(&who.actor(), &id, &note).await?)))
}

pub(crate) async fn reject(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let note = note(&body, "rejection_note")?.unwrap_or_default();
    step(&state, &who, &id, FileChange::Reject { note }).await
}

pub(crate) async fn approve_all(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    step(&state, &who, &id, FileChange::ApproveAll).await
}

pub(crate) async fn close(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let closed = step(&state, &who, &id, FileChange::Close).await?;
    // The file's records closed with it, and so do its chunks.
    state.service.settle_chunks(&id).await?;
    Ok(closed)
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    step(&state, &who, &id, FileChange::Delete).await
}

pub(crate) async fn reprocess(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let file = visible_file(&state, &who, &id).await?;
    state.service.workflow().act(&id, FileChange::Reprocess, &who.actor()).await?;
    // Regenerating re-reads the stored processed workbook: the records did not change, so the
    // output is the stored one.
    let done = FileChange::Reprocessed { processed: file.processed_file.clone() };
    Ok(Json(file_json(&state.service.workflow().act(&id, done, &usageflow_model::Actor::system()).await?)))
}

pub(crate) const CATEGORIES: Collection = Collection {
    name: "categories",
    fields: &[("id", "id"), ("name", "name")],
    orderable: &["name", "id"],
    search: &["id", "name", "description"],
};

pub(crate) async fn categories(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    let file = visible_file(&state, &who, &id).await?;
    let mut items = Vec::new();
    if let Some(object) = &file.uploaded_file {
        let bytes = state.service.document(object).await?;
        if let Ok(book) = usageflow_files::read_workbook(&bytes, &usageflow_files::ReadLimits::default()) {
            items = book
                .categories
                .iter()
                .map(|c| json!({"id": c.id, "name": c.name, "description": c.description}))
                .collect();
        }
    }
    let (page, total) = select(items, &query, &CATEGORIES)?;
    Ok(page_response(page, &query, total))
}

pub(crate) fn xlsx_response(bytes: Vec<u8>, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", filename.replace('"', ""))),
        ],
        bytes,
    )
        .into_response()
}

async fn document(state: &AppState, who: &Principal, id: &str, processed: bool) -> ApiResult<Response> {
    let file = visible_file(state, who, id).await?;
    let object = if processed { &file.processed_file } else { &file.uploaded_file };
    let object = object.as_ref().ok_or_else(|| ApiError::not_found("document of usage file", id))?;
    Ok(xlsx_response(state.service.document(object).await?, &object.filename))
}

pub(crate) async fn uploaded_document(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(&state, &who, &id, false).await
}

pub(crate) async fn processed_document(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(&state, &who, &id, true).await
}

fn template_product<'a>(state: &'a AppState, who: &Principal, id: &str) -> ApiResult<&'a usageflow_model::Product> {
    state
        .catalogue
        .product(id)
        .filter(|p| crate::catalog::sees_product(state, who, p))
        .ok_or_else(|| ApiError::not_found("product", id))
}

pub(crate) async fn template(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    template_product(&state, &who, &id)?;
    Ok(Json(json!({ "template_link": format!("/public/v1/usage/products/{id}/template/download") })))
}

pub(crate) async fn template_download(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let product = template_product(&state, &who, &id)?;
    let schema = product.capabilities.ppu.as_ref().map_or(usageflow_model::ReportingSchema::Qt, |p| p.schema);
    let general = vec![
        ("product_id".to_owned(), product.id.clone()),
        ("usage_schema".to_owned(), schema.sheet_name().to_owned()),
    ];
    let columns = usageflow_files::write::record_columns(schema);
    let bytes = usageflow_files::write_workbook(&general, &[], &columns, std::iter::empty::<Vec<String>>())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(xlsx_response(bytes, &format!("{id}-usage-template.xlsx")))
}

/// Whether `account` is the provider of a listing of `product`.
pub(crate) fn provides(state: &AppState, account: &str, product: &str) -> bool {
    state
        .catalogue
        .data()
        .listings
        .iter()
        .any(|l| l.product == product && state.catalogue.contract(&l.contract).is_some_and(|c| c.provider == account))
}

/// `GET /usage/files/{id}/history`: the file's audit trail, one entry per workflow step with
/// who made it, when, and the status it left the file in.
pub(crate) async fn history(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    visible_file(&state, &who, &id).await?;
    let (_, log) = state.service.workflow().history(&id).await?;
    let mut current: Option<UsageFile> = None;
    let mut steps = Vec::with_capacity(log.len());
    for event in log {
        current = Some(UsageFile::apply(current, &event).map_err(|e| ApiError::internal(e.to_string()))?);
        let mut change = serde_json::to_value(&event.change).unwrap_or(Value::Null);
        let kind = change.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(o) = change.as_object_mut() {
            // Internal storage locations are not part of the API.
            for internal in ["type", "object", "processed", "file"] {
                o.remove(internal);
            }
        }
        steps.push(json!({
            "seq": event.seq,
            "at": event.at,
            "type": kind,
            "actor": event.actor,
            "detail": change,
            "status": current.as_ref().map(|f| f.status),
        }));
    }
    Ok(Json(steps))
}

/// `GET /usage/files/{id}/errors`: every reason the last upload is invalid. First the
/// problems of the whole file, as rows numbered 0 (a missing column, a bad `categories` sheet,
/// a workbook that cannot be read at all), then the invalid rows with their reasons (read from
/// the processed workbook's `status` and `error` columns).
pub(crate) async fn errors(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let query = state.rql(q.as_deref())?;
    let file = visible_file(&state, &who, &id).await?;
    let file_problem = |reason: &str| {
        json!({"row": 0, "record_id": null, "asset_search_value": null, "item_search_value": null,
            "quantity": null, "error": reason})
    };
    let mut rows = Vec::new();
    if let Some(object) = &file.processed_file {
        let bytes = state.service.document(object).await?;
        let book = usageflow_files::read_workbook(&bytes, &usageflow_files::ReadLimits::default())
            .map_err(|e| ApiError::internal(format!("the processed file cannot be read: {e}")))?;
        let mut file_errors: Vec<(u32, &String)> =
            book.general.iter().filter_map(|(k, v)| Some((k.strip_prefix("error_")?.parse().ok()?, v))).collect();
        file_errors.sort();
        rows.extend(file_errors.into_iter().map(|(_, reason)| file_problem(reason)));
        for row in book.records.iter().filter(|r| r.get("status") == Some("invalid")) {
            let cell = |c: &str| row.get(c).map_or(Value::Null, |v| json!(v));
            rows.push(json!({
                "row": row.row,
                "record_id": cell("record_id"),
                "asset_search_value": cell("asset_search_value"),
                "item_search_value": cell("item_search_value"),
                "quantity": cell("quantity"),
                "error": cell("error"),
            }));
        }
    } else if file.status == usageflow_model::FileStatus::Invalid
        && let Some(detail) = &file.error_detail
    {
        // The workbook could not be read: its reason is the only one.
        rows.push(file_problem(detail));
    }
    let (page, total) = select(rows, &query, &ERRORS)?;
    let mut response = page_response(page, &query, total);
    if let Some(detail) = &file.error_detail
        && let Ok(value) = axum::http::HeaderValue::from_str(&detail.replace(['\r', '\n'], " "))
    {
        response.headers_mut().insert("X-Usage-File-Error", value);
    }
    Ok(response)
}

pub(crate) const ERRORS: Collection = Collection {
    name: "invalid rows",
    fields: &[("row", "row"), ("record_id", "record_id"), ("error", "error")],
    orderable: &["row", "record_id"],
    search: &["record_id", "asset_search_value", "item_search_value", "error"],
};
