//! The records of usage files as a table: every upload writes its valid records as one Parquet
//! object beside the workbooks (`files/{product}/{UF}/records/{UF}-{n}.parquet`), with the
//! Connect record id, the item, the asset with its hub and customer tiers, quantities as
//! `Decimal128(38, 8)` and the record period. Record statuses follow their file; changes made
//! to single records (a provider approving, rejecting or closing one) are kept in a versioned
//! map per file (`workflow/records/{UF}/`), so that the Parquet objects never change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use object_store::path::Path;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use usageflow_lake::tables::{DECIMAL_PRECISION, DECIMAL_SCALE};
use usageflow_model::{Catalogue, FileStatus, RecordStatus, StoredObject, UsageFile, ids};

use crate::ServiceError;
use crate::validate::Validation;
use crate::xlsx::UsageWorkbook;

/// Columns of the file-records table.
pub fn file_records_schema() -> SchemaRef {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    let ts = |name: &str| Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false);
    let dec = |name: &str, nullable| Field::new(name, DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE), nullable);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("usagefile_id", DataType::Utf8, false),
        s("vendor_record_id"),
        s("record_note"),
        s("product_id"),
        s("item_id"),
        s("item_local_id"),
        s("item_name"),
        s("item_unit"),
        s("item_mpn"),
        s("item_precision"),
        s("item_type"),
        s("asset_id"),
        s("asset_external_id"),
        s("asset_external_uid"),
        s("asset_recon_id"),
        s("hub_id"),
        s("customer_id"),
        s("customer_name"),
        s("tier1_id"),
        s("tier2_id"),
        s("category_id"),
        s("category_name"),
        Field::new("tier", DataType::UInt8, true),
        dec("usage", false),
        dec("amount", true),
        Field::new("multiplier", DataType::UInt64, false),
        ts("start_date"),
        ts("end_date"),
        s("params"),
    ]))
}

/// Where an upload's records table lives, next to its processed workbook.
pub fn records_object_path(processed: &StoredObject) -> Option<Path> {
    let path = processed.path.strip_suffix("-PROCESSED.xlsx")?;
    let (base, name) = path.rsplit_once("/processed/")?;
    Some(Path::from(format!("{base}/records/{name}.parquet")))
}

fn to_i128(value: Decimal) -> i128 {
    let mut v = value;
    v.rescale(DECIMAL_SCALE as u32);
    v.mantissa()
}

/// The valid records of an upload as a batch.
pub fn records_batch(
    file: &UsageFile,
    book: &UsageWorkbook,
    validation: &Validation,
    catalogue: &Catalogue,
) -> Result<RecordBatch, ServiceError> {
    let position: HashMap<u32, u64> = book.records.iter().enumerate().map(|(i, r)| (r.row, i as u64)).collect();
    let categories: HashMap<&str, &str> =
        validation.categories.iter().map(|c| (c.id.as_str(), c.name.as_str())).collect();
    let n = validation.valid.len();
    let mut strings: Vec<StringBuilder> = (0..28).map(|_| StringBuilder::with_capacity(n, n * 16)).collect();
    let mut tier = UInt8Builder::with_capacity(n);
    let dec = || {
        Decimal128Builder::with_capacity(n)
            .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)
            .map_err(|e| ServiceError::Document(e.to_string()))
    };
    let (mut usage, mut amount) = (dec()?, dec()?);
    let mut multiplier = UInt64Builder::with_capacity(n);
    let ts = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut start, mut end) = (ts(), ts());
    for record in &validation.valid {
        let pos = position.get(&record.row).copied().unwrap_or(u64::from(record.row.saturating_sub(2)));
        let asset = catalogue.asset(&record.asset_id);
        let tiers = asset.map(|a| &a.tiers);
        let item = &record.item;
        let params = if record.params.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&record.params).map_err(|e| ServiceError::Document(e.to_string()))?)
        };
        let values: [Option<String>; 23] = [
            Some(ids::record_id(&file.id, pos)),
            Some(file.id.clone()),
            Some(record.record_id.clone()),
            record.record_note.clone(),
            Some(file.product.id.clone()),
            item.id.clone(),
            Some(item.local_id.clone()),
            Some(item.name.clone()),
            Some(item.unit.clone()),
            Some(item.mpn.clone()),
            Some(item.precision.api_name().to_owned()),
            Some(item.item_type.record_name().to_owned()),
            Some(record.asset_id.clone()),
            asset.map(|a| a.external_id.clone()),
            asset.map(|a| a.external_uid.clone()),
            asset.and_then(|a| a.recon_id.clone()),
            asset.map(|a| a.hub.clone()),
            tiers.map(|t| t.customer.id.clone()),
            tiers.map(|t| t.customer.name.clone()),
            tiers.and_then(|t| t.tier1.as_ref().map(|r| r.id.clone())),
            tiers.and_then(|t| t.tier2.as_ref().map(|r| r.id.clone())),
            Some(record.category_id.clone()),
            categories.get(record.category_id.as_str()).map(|n| (*n).to_owned()),
        ];
        for (b, v) in strings.iter_mut().zip(values) {
            b.append_option(v);
        }
        strings[23].append_option(params);
        tier.append_option(record.tier);
        usage.append_value(to_i128(record.quantity));
        amount.append_option(record.amount.map(to_i128));
        multiplier.append_value(item.precision.multiplier());
        start.append_value(record.start.timestamp_micros());
        end.append_value(record.end.timestamp_micros());
    }
    let mut s = strings.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut columns: Vec<ArrayRef> = s.by_ref().take(23).collect();
    columns.push(Arc::new(tier.finish()));
    columns.push(Arc::new(usage.finish()));
    columns.push(Arc::new(amount.finish()));
    columns.push(Arc::new(multiplier.finish()));
    columns.push(Arc::new(start.finish()));
    columns.push(Arc::new(end.finish()));
    columns.extend(s.take(1));
    RecordBatch::try_new(file_records_schema(), columns).map_err(|e| ServiceError::Document(e.to_string()))
}

/// A change made to one record after its file's processing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChange {
    /// The record's status now.
    pub status: RecordStatus,
    /// Billing reference (closed records).
    #[serde(default)]
    pub external_billing_id: Option<String>,
    /// Billing note (closed records).
    #[serde(default)]
    pub external_billing_note: Option<String>,
    /// When it was closed.
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    /// Who closed it.
    #[serde(default)]
    pub closed_by: Option<String>,
    /// The upload it was made on (the path of that upload's processed workbook). A decision
    /// belongs to one upload: a new upload's records start undecided.
    #[serde(default)]
    pub upload: Option<String>,
}

/// The current upload of a file, as [`RecordChange::upload`] names it.
fn upload_of(file: &UsageFile) -> Option<&str> {
    file.processed_file.as_ref().map(|o| o.path.as_str())
}

/// The record changes of one file, by record id.
pub type RecordChanges = BTreeMap<String, RecordChange>;

/// The status a file's records have when no change was made to them.
pub fn record_status_of(file: &UsageFile) -> RecordStatus {
    match file.status {
        FileStatus::Accepted => RecordStatus::Approved,
        FileStatus::Closed => RecordStatus::Closed,
        FileStatus::Rejected => RecordStatus::Rejected,
        FileStatus::Pending if file.all_approved => RecordStatus::Approved,
        FileStatus::Invalid => RecordStatus::Invalid,
        _ => RecordStatus::Valid,
    }
}

pub(crate) fn changes_prefix(file_id: &str) -> Path {
    Path::from("workflow/records").join(file_id)
}

/// A change asked for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordRequest {
    /// `PUT /usage/records/{id}` with `{status}`: a provider approves or rejects one record of a
    /// pending file.
    SetStatus {
        /// Record id.
        id: String,
        /// `approved` or `rejected`.
        status: RecordStatus,
    },
    /// Close an approved record of an accepted file with its billing reference.
    Close {
        /// Record id.
        id: String,
        /// Billing reference (required).
        external_billing_id: String,
        /// Billing note.
        external_billing_note: Option<String>,
    },
}

impl RecordRequest {
    /// The record id.
    pub fn id(&self) -> &str {
        match self {
            RecordRequest::SetStatus { id, .. } | RecordRequest::Close { id, .. } => id,
        }
    }
}

/// The outcome for one record of a bulk change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Record id.
    pub id: String,
    /// The new status, or why the change was refused.
    pub result: Result<RecordStatus, String>,
    /// The record's status after the request (unchanged when refused); `None` for a record
    /// that does not exist.
    pub status: Option<RecordStatus>,
}

impl crate::FileService {
    /// The record changes of a file's current upload, with the version of the file's record
    /// changes (0 when none were ever made). Changes made on an earlier upload are left out:
    /// a record decided before a reject and a new upload is undecided in the new one.
    pub async fn record_changes(&self, file: &UsageFile) -> Result<(u64, RecordChanges), ServiceError> {
        let (version, mut changes) =
            self.snapshots().latest::<RecordChanges>(&changes_prefix(&file.id)).await?.unwrap_or_default();
        let current = upload_of(file);
        changes.retain(|_, c| c.upload.as_deref() == current);
        Ok((version, changes))
    }

    /// The record changes of each of `files` that has any. One listing finds the files with
    /// changes, so that only those are read (most files never have a single record changed).
    pub async fn record_changes_of(&self, files: &[UsageFile]) -> Result<Vec<(String, RecordChanges)>, ServiceError> {
        let changed: std::collections::HashSet<String> =
            self.snapshots().children(&Path::from("workflow/records")).await?.into_iter().collect();
        let mut out = Vec::new();
        for f in files.iter().filter(|f| changed.contains(&f.id)) {
            let (version, changes) = self.record_changes(f).await?;
            if version > 0 && !changes.is_empty() {
                out.push((f.id.clone(), changes));
            }
        }
        Ok(out)
    }

    /// The record ids of a file's current upload.
    pub async fn record_ids(&self, file: &UsageFile) -> Result<Vec<String>, ServiceError> {
        let Some(path) = file.processed_file.as_ref().and_then(records_object_path) else { return Ok(Vec::new()) };
        let batches = usageflow_lake::tables::read_parquet(self.object_store(), path.as_ref())
            .await
            .map_err(|e| ServiceError::Document(e.to_string()))?;
        let mut ids = Vec::new();
        for batch in batches {
            let column = batch
                .column_by_name("id")
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
                .ok_or_else(|| ServiceError::Document(format!("{path} has no id column")))?;
            ids.extend(column.iter().flatten().map(str::to_owned));
        }
        Ok(ids)
    }

    /// Applies record changes to the records of one file; each record succeeds or fails on its
    /// own, and the successful ones are stored together. Closing the last open record of an
    /// accepted file closes the file.
    pub async fn change_records(
        &self,
        actor: &usageflow_model::Actor,
        file_id: &str,
        requests: &[RecordRequest],
    ) -> Result<Vec<RecordOutcome>, ServiceError> {
        use usageflow_model::ActorRole;
        for _attempt in 0..5 {
            let file = self.workflow().get(file_id).await?;
            let known: std::collections::HashSet<String> = self.record_ids(&file).await?.into_iter().collect();
            let (version, mut changes) = self.record_changes(&file).await?;
            let upload = upload_of(&file).map(str::to_owned);
            let base = record_status_of(&file);
            let mut outcomes = Vec::with_capacity(requests.len());
            let mut closed = 0u64;
            for request in requests {
                let id = request.id();
                let current = changes.get(id).map_or(base, |c| c.status);
                let result = if !known.contains(id) {
                    Err(format!("record {id} is not a record of {file_id}"))
                } else if actor.role != ActorRole::Provider && actor.role != ActorRole::System {
                    Err(format!("only the provider of {file_id} changes its records"))
                } else {
                    match request {
                        RecordRequest::SetStatus { status, .. } => {
                            if file.status != FileStatus::Pending {
                                Err(format!(
                                    "records are approved or rejected while their file is pending; {file_id} is {}",
                                    file.status
                                ))
                            } else if !matches!(status, RecordStatus::Approved | RecordStatus::Rejected) {
                                Err(format!("a record's status can be set to approved or rejected, not {status:?}"))
                            } else {
                                changes.insert(
                                    id.to_owned(),
                                    RecordChange {
                                        status: *status,
                                        external_billing_id: None,
                                        external_billing_note: None,
                                        closed_at: None,
                                        closed_by: None,
                                        upload: upload.clone(),
                                    },
                                );
                                Ok(*status)
                            }
                        }
                        RecordRequest::Close { external_billing_id, external_billing_note, .. } => {
                            if external_billing_id.trim().is_empty() {
                                Err(format!("record {id} cannot close without an external_billing_id"))
                            } else if file.status != FileStatus::Accepted {
                                Err(format!("records close when their file is accepted; {file_id} is {}", file.status))
                            } else if current != RecordStatus::Approved {
                                Err(format!("record {id} is {current:?}; only approved records close"))
                            } else {
                                changes.insert(
                                    id.to_owned(),
                                    RecordChange {
                                        status: RecordStatus::Closed,
                                        external_billing_id: Some(external_billing_id.clone()),
                                        external_billing_note: external_billing_note.clone(),
                                        closed_at: Some(Utc::now()),
                                        closed_by: actor.by.as_ref().map(|b| b.id.clone()),
                                        upload: upload.clone(),
                                    },
                                );
                                closed += 1;
                                Ok(RecordStatus::Closed)
                            }
                        }
                    }
                };
                let status = match &result {
                    Ok(s) => Some(*s),
                    Err(_) => known.contains(id).then_some(current),
                };
                outcomes.push(RecordOutcome { id: id.to_owned(), result, status });
            }
            if outcomes.iter().all(|o| o.result.is_err()) {
                return Ok(outcomes);
            }
            if !self.snapshots().put(&changes_prefix(file_id), version + 1, &changes).await? {
                continue; // Another change won the race: read again and re-check.
            }
            if closed > 0 {
                let system = usageflow_model::Actor::system();
                let file = self
                    .workflow()
                    .act(file_id, usageflow_model::FileChange::RecordsClosed { count: closed }, &system)
                    .await?;
                if file.should_auto_close() {
                    self.workflow().act(file_id, usageflow_model::FileChange::Close, &system).await?;
                }
                self.settle_chunks(file_id).await?;
            }
            return Ok(outcomes);
        }
        Err(ServiceError::Document(format!("the records of {file_id} kept changing; try again")))
    }
}
