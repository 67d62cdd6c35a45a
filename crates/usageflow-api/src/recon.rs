//! Reconciliations: a provider uploads a workbook with the Connect record id (`record_id`
//! or `id`) and `external_billing_id` (optional `external_billing_note`) per row, typically
//! the chunk file with those columns filled in. Each row closes its record; the processed
//! workbook repeats the rows with their outcome.

use axum::response::Response;
use chrono::Utc;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use usageflow_files::RecordRequest;
use usageflow_model::{Reconciliation, ReconciliationNotes, ReconciliationStatus, Ref, StoredObject, UsageFile};

use crate::error::{ApiError, ApiResult};
use crate::listing::{Collection, page_response, select};
use crate::rql::Query;
use crate::{AppState, Principal, Role};

/// A reconciliation with its documents and owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredRecon {
    pub recon: Reconciliation,
    pub provider: String,
    pub uploaded: Option<StoredObject>,
    pub processed: Option<StoredObject>,
}

const RECONS: Collection = Collection {
    name: "reconciliations",
    fields: &[
        ("id", "id"),
        ("status", "status"),
        ("usagefile.id", "usagefile.id"),
        ("partusagefile.id", "partusagefile.id"),
        ("partusagefile.provider.id", "partusagefile.provider.id"),
        ("binding.hub.id", "binding.hub.id"),
    ],
    orderable: &["partusagefile.id", "usagefile.id", "id"],
    search: &["id", "usagefile.id"],
};

fn prefix() -> Path {
    Path::from("workflow/reconciliations")
}

pub(crate) fn recon_json(recon: &Reconciliation) -> Value {
    let mut v = serde_json::to_value(recon).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        let at = recon.uploaded_at.to_rfc3339();
        o.remove("uploaded_at");
        o.insert("events".into(), serde_json::json!({"created": {"at": at}, "uploaded": {"at": at}}));
    }
    v
}

/// The usage file a reconciliation workbook names in its `general` sheet.
pub(crate) fn file_named_in(bytes: &[u8]) -> ApiResult<String> {
    let book = usageflow_files::read_workbook(bytes, &usageflow_files::ReadLimits::default())
        .map_err(|e| ApiError::invalid(format!("the reconciliation file cannot be read: {e}")))?;
    book.general.get("report_id").or_else(|| book.general.get("usage_file_id")).cloned().ok_or_else(|| {
        ApiError::invalid("name the usage file: a `usagefile` form field or `report_id` in the general sheet")
    })
}

async fn all(state: &AppState) -> ApiResult<Vec<StoredRecon>> {
    let snapshots = state.service.snapshots();
    let mut out = Vec::new();
    for id in snapshots.children(&prefix()).await? {
        if let Some((_, r)) = snapshots.latest::<StoredRecon>(&prefix().join(id.as_str())).await? {
            out.push(r);
        }
    }
    Ok(out)
}

pub(crate) async fn visible(state: &AppState, who: &Principal, id: &str) -> ApiResult<StoredRecon> {
    let found = state.service.snapshots().latest::<StoredRecon>(&prefix().join(id)).await?;
    match found {
        Some((_, r)) if who.role == Role::Provider && r.provider == who.account => Ok(r),
        _ => Err(ApiError::not_found("reconciliation", id)),
    }
}

pub(crate) async fn list(state: &AppState, who: &Principal, query: &Query) -> ApiResult<Response> {
    RECONS.check(query)?;
    let items = if who.role == Role::Provider {
        all(state).await?.iter().filter(|r| r.provider == who.account).map(|r| recon_json(&r.recon)).collect()
    } else {
        Vec::new()
    };
    let (page, total) = select(items, query, &RECONS)?;
    Ok(page_response(page, query, total))
}

async fn save(state: &AppState, stored: &StoredRecon, version: u64) -> ApiResult<()> {
    if state.service.snapshots().put(&prefix().join(stored.recon.id.as_str()), version, stored).await? {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "USG_003",
            format!("reconciliation {} exists", stored.recon.id),
        ))
    }
}

/// Stores and processes a reconciliation upload for `file`.
pub(crate) async fn reconcile(
    state: &AppState,
    who: &Principal,
    file: &UsageFile,
    filename: &str,
    bytes: Vec<u8>,
    note: String,
) -> ApiResult<Reconciliation> {
    // Ids are `URC{file digits}-{n}`: the next n comes from the names alone.
    let stem = format!("URC{}-", file.id.trim_start_matches("UF"));
    let n = state.service.snapshots().children(&prefix()).await?.iter().filter(|c| c.starts_with(&stem)).count() + 1;
    let id = format!("{stem}{n:04}");
    let base = Path::from(format!("files/{}/{}/reconciliations", file.product.id, file.id));
    let uploaded =
        state.service.store_document(&base.clone().join(format!("{id}.xlsx")), bytes.clone(), filename).await?;
    let mut stored = StoredRecon {
        recon: Reconciliation {
            id: id.clone(),
            status: ReconciliationStatus::Uploaded,
            usagefile: Ref { id: file.id.clone(), name: file.name.clone() },
            partusagefile: None,
            binding: None,
            error: None,
            notes: ReconciliationNotes { uploaded: note, processing: String::new() },
            uploaded_at: Utc::now(),
        },
        provider: who.account.clone(),
        uploaded: Some(uploaded),
        processed: None,
    };
    save(state, &stored, 1).await?;
    stored.recon.status = ReconciliationStatus::Processing;
    let outcome = process(state, who, file, &bytes).await;
    match outcome {
        Ok((rows, columns, closed, failed)) => {
            let general = vec![
                ("reconciliation_id".to_owned(), id.clone()),
                ("report_id".to_owned(), file.id.clone()),
                ("closed_records".to_owned(), closed.to_string()),
                ("failed_records".to_owned(), failed.to_string()),
            ];
            let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
            let doc = usageflow_files::write_workbook(&general, &[], &cols, rows.iter())
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let processed = state
                .service
                .store_document(&base.join(format!("{id}-PROCESSED.xlsx")), doc, &format!("{id}-PROCESSED.xlsx"))
                .await?;
            stored.processed = Some(processed);
            stored.recon.status = ReconciliationStatus::Processed;
            stored.recon.notes.processing = format!("{closed} records closed, {failed} refused");
        }
        Err(e) => {
            stored.recon.status = ReconciliationStatus::Failed;
            stored.recon.error = Some(usageflow_model::ErrorDetail { detail: e.errors.join("; ") });
        }
    }
    save(state, &stored, 2).await?;
    Ok(stored.recon)
}

type Processed = (Vec<Vec<String>>, Vec<String>, usize, usize);

async fn process(state: &AppState, who: &Principal, file: &UsageFile, bytes: &[u8]) -> ApiResult<Processed> {
    let book = usageflow_files::read_workbook(bytes, &usageflow_files::ReadLimits::default())
        .map_err(|e| ApiError::invalid(format!("the reconciliation file cannot be read: {e}")))?;
    let id_column = ["record_id", "id"]
        .into_iter()
        .find(|c| book.columns.iter().any(|h| h == c))
        .ok_or_else(|| ApiError::invalid("the records sheet has no `record_id` (or `id`) column"))?;
    if !book.columns.iter().any(|h| h == "external_billing_id") {
        return Err(ApiError::invalid("the records sheet has no `external_billing_id` column"));
    }
    let requests: Vec<RecordRequest> = book
        .records
        .iter()
        .map(|r| RecordRequest::Close {
            id: r.get(id_column).unwrap_or_default().to_owned(),
            external_billing_id: r.get("external_billing_id").unwrap_or_default().to_owned(),
            external_billing_note: r.get("external_billing_note").map(str::to_owned),
        })
        .collect();
    let outcomes = state.service.change_records(&who.actor(), &file.id, &requests).await?;
    let mut columns = book.columns.clone();
    columns.extend(["status".to_owned(), "error".to_owned()]);
    let (mut closed, mut failed) = (0, 0);
    let rows = book
        .records
        .iter()
        .zip(&outcomes)
        .map(|(row, outcome)| {
            let mut cells: Vec<String> =
                book.columns.iter().map(|c| row.get(c).unwrap_or_default().to_owned()).collect();
            match &outcome.result {
                Ok(_) => {
                    closed += 1;
                    cells.extend(["closed".to_owned(), String::new()]);
                }
                Err(reason) => {
                    failed += 1;
                    cells.extend(["failed".to_owned(), reason.clone()]);
                }
            }
            cells
        })
        .collect();
    Ok((rows, columns, closed, failed))
}
