//! The usage-file workflow with its documents: create (after the prerequisite checks),
//! upload (store, process, validate, write the processed file, move to `ready` or `invalid`),
//! and the review steps, on top of the durable workflow store.
//!
//! Object layout (after Connect's own naming):
//! `files/{product}/{UF-id}/uploaded/{UF-id}-{n}.xlsx` and
//! `files/{product}/{UF-id}/processed/{UF-id}-{n}-PROCESSED.xlsx`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rust_decimal::Decimal;
use usageflow_model::{
    Actor, Catalogue, Environment, FileChange, NewFile, Period, Ref, ReportingSchema, StoredObject, UsageFile,
};
use usageflow_workflow::{CreateRequest, WorkflowStore};

use crate::validate::{FileContext, Validation, validate};
use crate::write::write_workbook;
use crate::xlsx::{ReadLimits, read_workbook};

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A prerequisite for creating the file is not met.
    #[error(transparent)]
    Prerequisite(#[from] usageflow_model::PrerequisiteError),
    /// The workflow refused the step, or the store failed.
    #[error(transparent)]
    Workflow(#[from] usageflow_workflow::Error),
    /// A document could not be stored or written.
    #[error("{0}")]
    Document(String),
    /// Compiling found nothing that the files already reported for the period lack.
    #[error("nothing to report: the lake holds no usage beyond what {files} already report for this period")]
    NothingNew { files: String },
}

/// What the vendor gives to create a file.
#[derive(Debug, Clone)]
pub struct CreateFile {
    /// Product.
    pub product: String,
    /// Distribution contract.
    pub contract: String,
    /// Period; `None` makes the period follow the records of the file's uploads until it is
    /// submitted (what Connect's older SDKs rely on: they send no period).
    pub period: Option<Period>,
    /// Name (defaults to the period).
    pub name: Option<String>,
    /// Description.
    pub description: String,
    /// Vendor's note.
    pub note: String,
    /// Vendor's reference. The same request (this reference and every other field) made again
    /// while the file it created is still the vendor's to change returns that file: the retry of
    /// a create whose answer was lost. A different request, or one after that file was
    /// submitted or deleted, creates a new file.
    pub external_id: String,
    /// Currency (defaults to the marketplace's for schemas with amounts).
    pub currency: Option<String>,
    /// The accepted file this one corrects (records reported after its acceptance).
    pub corrects: Option<String>,
}

/// The outcome of an upload.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// The file after processing (`ready` or `invalid`).
    pub file: UsageFile,
    /// Row-level results (empty when the workbook could not be read at all).
    pub validation: Validation,
    /// The other files of the same compilation, when a period holds more records than one
    /// workbook may (each of them valid on its own).
    pub parts: Vec<UsageFile>,
}

/// Usage files: workflow plus documents.
#[derive(Debug, Clone)]
pub struct FileService {
    store: Arc<dyn ObjectStore>,
    lake: usageflow_lake::DeltaLake,
    workflow: WorkflowStore,
    catalogue: Arc<Catalogue>,
    limits: ReadLimits,
    max_records_per_file: usize,
}

fn r(id: &str, name: &str) -> Ref {
    Ref { id: id.to_owned(), name: name.to_owned() }
}

impl FileService {
    /// A service over a store, a workflow store on the same store, and the catalogue. The
    /// lake's tables are read on `store` through its object-store interface; for a store on
    /// the local filesystem, give them with [`FileService::with_lake`].
    pub fn new(store: Arc<dyn ObjectStore>, workflow: WorkflowStore, catalogue: Arc<Catalogue>) -> Self {
        Self {
            lake: usageflow_lake::DeltaLake::new(store.clone(), None),
            store,
            workflow,
            catalogue,
            limits: ReadLimits::default(),
            max_records_per_file: crate::MAX_RECORDS_PER_SHEET,
        }
    }

    /// Limits compiled files to `n` records each (at most Excel's sheet limit); a period with
    /// more is compiled into several files.
    pub fn with_max_records_per_file(mut self, n: usize) -> Self {
        self.max_records_per_file = n.clamp(1, crate::MAX_RECORDS_PER_SHEET);
        self
    }

    /// Reads the lake's tables through `lake` (opened on the same store).
    pub fn with_lake(mut self, lake: usageflow_lake::DeltaLake) -> Self {
        self.lake = lake;
        self
    }

    /// The lake's tables.
    pub fn lake(&self) -> &usageflow_lake::DeltaLake {
        &self.lake
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The catalogue, shared.
    pub fn shared_catalogue(&self) -> Arc<Catalogue> {
        self.catalogue.clone()
    }

    /// The object store holding the documents.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The workflow store.
    pub fn workflow(&self) -> &WorkflowStore {
        &self.workflow
    }

    /// Creates a usage file after checking its prerequisites.
    pub async fn create(&self, actor: &Actor, req: CreateFile) -> Result<UsageFile, ServiceError> {
        let scope = self.catalogue.check_file_prerequisites(&req.product, &req.contract)?;
        let product = scope.product;
        let schema = product.capabilities.ppu.as_ref().map_or(ReportingSchema::Qt, |p| p.schema);
        let currency = req
            .currency
            .clone()
            .or_else(|| schema.requires_currency().then(|| scope.marketplace.map(|m| m.currency.clone())).flatten());
        let now = Utc::now();
        let period = req.period.unwrap_or_else(|| Period::month_of(now.date_naive()));
        let name = req.name.clone().unwrap_or_else(|| match req.period {
            Some(p) => format!("{} - {}", p.from.format("%m/%d/%Y"), p.to.format("%m/%d/%Y")),
            None => format!("Usage reported {}", now.format("%m/%d/%Y %H:%M")),
        });
        let vendor = scope.vendor.map_or_else(|| r(&product.vendor, ""), |a| r(&a.id, &a.name));
        let provider = scope.provider.map_or_else(|| r(&scope.contract.provider, ""), |a| r(&a.id, &a.name));
        let marketplace = scope.marketplace.map_or_else(|| r("", ""), |m| r(&m.id, &m.name));
        let key = if req.external_id.is_empty() {
            format!(
                "{}|{}|{}|{}",
                vendor.id,
                product.id,
                scope.contract.id,
                now.timestamp_nanos_opt().unwrap_or_default()
            )
        } else {
            // The whole request, so that reusing a reference for another file creates one; a
            // request without a period is the same only on the same day.
            let content = serde_json::json!({
                "name": req.name, "description": req.description, "note": req.note, "currency": req.currency,
                "period": req.period.map_or_else(|| format!("records of {}", now.date_naive()), |p| format!("{}..{}", p.from, p.to)),
                "corrects": req.corrects,
            });
            format!(
                "{}|{}|{}|{}|{}",
                vendor.id,
                product.id,
                scope.contract.id,
                req.external_id,
                &sha2_hex(content.to_string().as_bytes())[..16]
            )
        };
        let file = NewFile {
            id: String::new(),
            name,
            description: req.description,
            note: req.note,
            external_id: req.external_id,
            schema,
            currency,
            period,
            period_from_records: req.period.is_none(),
            environment: Environment::Production,
            vendor,
            provider,
            marketplace,
            contract: r(&scope.contract.id, &scope.contract.name),
            product: r(&product.id, &product.name),
            corrects: req.corrects,
        };
        Ok(self.workflow.create(CreateRequest { file, idempotency_key: key }, actor).await?)
    }

    /// Snapshots on the service's store (chunks).
    pub fn snapshots(&self) -> usageflow_workflow::Snapshots {
        usageflow_workflow::Snapshots::new(self.store.clone())
    }

    /// Stores a generated document.
    pub async fn store_document(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        filename: &str,
    ) -> Result<StoredObject, ServiceError> {
        self.put(path, bytes, filename).await
    }

    /// Sets the usage rules a provider applies to a product's files (replacing earlier ones).
    pub async fn set_rules(
        &self,
        actor: &Actor,
        product: &str,
        rules: Vec<usageflow_model::UsageRule>,
    ) -> Result<(), ServiceError> {
        let provider = actor.account.clone().unwrap_or_default();
        if actor.role != usageflow_model::ActorRole::Provider {
            return Err(ServiceError::Document("only providers set usage rules".to_owned()));
        }
        for rule in &rules {
            crate::rules::check_rule(rule).map_err(|e| ServiceError::Document(e.to_string()))?;
            if rule.account_id != provider || rule.product_id != product {
                return Err(ServiceError::Document(format!(
                    "rule {} belongs to {} / {}, not to {provider} / {product}",
                    rule.id, rule.account_id, rule.product_id
                )));
            }
        }
        let prefix = Path::from("workflow/rules").join(product).join(provider.as_str());
        let next = self.snapshots().latest::<Vec<usageflow_model::UsageRule>>(&prefix).await?.map_or(1, |(v, _)| v + 1);
        if self.snapshots().put(&prefix, next, &rules).await? {
            Ok(())
        } else {
            Err(ServiceError::Document("the rules changed while they were being written; try again".to_owned()))
        }
    }

    /// The usage rules a provider applies to a product's files.
    pub async fn rules(&self, product: &str, provider: &str) -> Result<Vec<usageflow_model::UsageRule>, ServiceError> {
        let prefix = Path::from("workflow/rules").join(product).join(provider);
        Ok(self.snapshots().latest(&prefix).await?.map(|(_, r)| r).unwrap_or_default())
    }

    /// Submits a ready file (vendor), then applies the provider's usage rules: the system
    /// accepts ("Auto Approved") or rejects it, or leaves it pending for a person.
    pub async fn submit(&self, actor: &Actor, file_id: &str) -> Result<UsageFile, ServiceError> {
        let file = self.workflow.act(file_id, FileChange::Submit, actor).await?;
        let rules = self.rules(&file.product.id, &file.provider.id).await?;
        if rules.is_empty() {
            return Ok(file);
        }
        let object =
            file.uploaded_file.as_ref().ok_or_else(|| ServiceError::Document(format!("{file_id} has no records")))?;
        let book = read_workbook(&self.document(object).await?, &self.limits)
            .map_err(|e| ServiceError::Document(e.to_string()))?;
        let ctx = self.context_of(&file);
        let valid = validate(&book, &ctx).valid;
        let system = Actor::system();
        match crate::rules::decide(&rules, &valid).map_err(|e| ServiceError::Document(e.to_string()))? {
            crate::rules::Decision::Accept { rule } => {
                self.accept(&system, file_id, &truncate(&format!("Auto Approved by usage rule {rule}"))).await
            }
            crate::rules::Decision::Reject { reason, .. } => Ok(self
                .workflow
                .act(file_id, FileChange::Reject { note: truncate(&format!("Auto Rejected: {reason}")) }, &system)
                .await?),
            crate::rules::Decision::Manual => Ok(file),
        }
    }

    /// Accepts a pending file (provider) and generates its chunks, one per hub.
    pub async fn accept(&self, actor: &Actor, file_id: &str, note: &str) -> Result<UsageFile, ServiceError> {
        let current = self.workflow.get(file_id).await?;
        let (_, changes) = self.record_changes(&current).await?;
        let rejected_records =
            changes.values().filter(|c| c.status == usageflow_model::RecordStatus::Rejected).count() as u64;
        let change = FileChange::Accept { note: note.to_owned(), rejected_records };
        let file = self.workflow.act(file_id, change, actor).await?;
        self.generate_chunks(file_id).await?;
        Ok(file)
    }

    async fn put(&self, path: &Path, bytes: Vec<u8>, filename: &str) -> Result<StoredObject, ServiceError> {
        let size = bytes.len() as u64;
        let digest = sha2_hex(&bytes);
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|e| ServiceError::Document(format!("cannot store {path}: {e}")))?;
        Ok(StoredObject { path: path.to_string(), size, sha256: digest, filename: filename.to_owned() })
    }

    /// What a file's records are validated against.
    fn context_of<'a>(&'a self, file: &'a UsageFile) -> FileContext<'a> {
        FileContext {
            catalogue: &self.catalogue,
            product_id: &file.product.id,
            contract_id: &file.contract.id,
            schema: file.schema,
            period: file.period,
        }
    }

    /// Uploads a workbook: stores it, processes and validates it, writes the processed file,
    /// and moves the file to `ready` (every row valid) or `invalid`.
    ///
    /// The workbook is stored under a name no other upload uses, and referenced only by the
    /// upload whose change the workflow accepts (two uploads at once: one wins, the other is
    /// refused and its object referenced by nothing). Processing runs on a task of its own: a
    /// caller that goes away (a client that disconnects, a request that times out) does not
    /// stop it, and a process that dies during it leaves the file for
    /// [`FileService::resume_interrupted`] to finish when it starts again.
    pub async fn upload(
        &self,
        actor: &Actor,
        file_id: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<UploadOutcome, ServiceError> {
        let file = self.workflow.get(file_id).await?;
        // Check the step before storing anything.
        UsageFile::check(Some(&file), &FileChange::Upload { object: placeholder() }, actor)
            .map_err(usageflow_workflow::Error::from)?;
        let n = file.version + 1;
        let base = Path::from(format!("files/{}/{}", file.product.id, file.id));
        let name = format!("{}-{n}-{}.xlsx", file.id, unique_suffix(&bytes));
        let uploaded = self.put(&base.clone().join("uploaded").join(name), bytes.clone(), filename).await?;
        self.workflow.act(file_id, FileChange::Upload { object: uploaded }, actor).await?;
        let system = Actor::system();
        self.workflow.act(file_id, FileChange::Stored, &system).await?;
        let service = self.clone();
        let id = file_id.to_owned();
        tokio::spawn(async move { service.process(&id, &bytes).await })
            .await
            .map_err(|e| ServiceError::Document(format!("processing the upload of {file_id} stopped: {e}")))?
    }

    /// Processes the stored upload of a file that is `uploaded` or `processing`: validates it,
    /// writes the processed workbook and the records, and moves the file to `ready` or
    /// `invalid`. A panic on the way (a workbook no parser should meet) ends the file `invalid`
    /// with a reason, never `processing`.
    async fn process(&self, file_id: &str, bytes: &[u8]) -> Result<UploadOutcome, ServiceError> {
        let system = Actor::system();
        let file = self.workflow.get(file_id).await?;
        let file = if file.status == usageflow_model::FileStatus::Processing {
            file
        } else {
            self.workflow.act(file_id, FileChange::ProcessingStarted, &system).await?
        };
        let (change, validation) = match self.validate_upload(&file, bytes).await {
            Ok(done) => done,
            Err(err) => {
                tracing::error!(file = %file_id, %err, "processing an upload failed");
                let change = FileChange::Processed {
                    valid: 0,
                    invalid: 0,
                    error_detail: Some(truncate(&format!("the upload could not be processed: {err}"))),
                    processed: None,
                    period: None,
                };
                (change, Validation::default())
            }
        };
        let file = self.workflow.act(file_id, change, &system).await?;
        Ok(UploadOutcome { file, validation, parts: Vec::new() })
    }

    /// Validates an upload and writes its processed workbook and records; the change that
    /// ends its processing.
    async fn validate_upload(&self, file: &UsageFile, bytes: &[u8]) -> Result<(FileChange, Validation), ServiceError> {
        let base = Path::from(format!("files/{}/{}", file.product.id, file.id));
        let book = match read_workbook(bytes, &self.limits) {
            Err(err) => {
                let change = FileChange::Processed {
                    valid: 0,
                    invalid: 0,
                    error_detail: Some(truncate(&err.to_string())),
                    processed: None,
                    period: None,
                };
                return Ok((change, Validation::default()));
            }
            Ok(book) => book,
        };
        // A file created without a period covers the days of its records.
        let period = file.period_from_records.then(|| records_period(&book)).flatten();
        let mut file = std::borrow::Cow::Borrowed(file);
        if let Some(p) = period {
            file.to_mut().set_period(p);
        }
        let file = file.as_ref();
        let ctx = self.context_of(file);
        let validation = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| validate(&book, &ctx)))
            .map_err(|_| ServiceError::Document("the workbook's rows could not be validated".into()))?;
        let processed = self.processed_workbook(file, &book, &validation)?;
        let name = format!("{}-{}-{}-PROCESSED.xlsx", file.id, file.version, unique_suffix(bytes));
        let stored =
            self.put(&base.join("processed").join(name), processed, &format!("{}-PROCESSED.xlsx", file.id)).await?;
        if let Some(records_path) = crate::records::records_object_path(&stored) {
            // An invalid upload has no records: nothing of it is listed, queried or billed.
            let batch = if validation.is_valid() {
                crate::records::records_batch(file, &book, &validation, &self.catalogue)?
            } else {
                arrow::array::RecordBatch::new_empty(crate::records::file_records_schema())
            };
            let bytes = usageflow_lake::tables::to_parquet(&batch)
                .map_err(|e| ServiceError::Document(format!("cannot write {records_path}: {e}")))?;
            self.put(&records_path, bytes.to_vec(), "records.parquet").await?;
        }
        let (valid, invalid) = counts(&book, &validation);
        let file_errors: Vec<&str> = validation.errors_of(0).iter().map(|e| e.reason.as_str()).collect();
        let error_detail = if !file_errors.is_empty() {
            Some(truncate(&file_errors.join("; ")))
        } else if invalid > 0 {
            Some(truncate(&format!("{invalid} of {} records are invalid; see the processed file", valid + invalid)))
        } else {
            None
        };
        let change = FileChange::Processed { valid, invalid, error_detail, processed: Some(stored), period };
        Ok((change, validation))
    }

    /// Finishes the uploads that a stopped process left part-way: every file still
    /// `uploading`, `uploaded` or `processing` is processed again from its stored workbook, or,
    /// when the workbook never reached the store, ends `invalid` with a reason. Returns the
    /// files it settled. `usageflow serve` calls it when it starts.
    pub async fn resume_interrupted(&self) -> Result<Vec<UsageFile>, ServiceError> {
        use usageflow_model::FileStatus;
        let system = Actor::system();
        let mut settled = Vec::new();
        for file in self.workflow.list().await? {
            if !matches!(file.status, FileStatus::Uploading | FileStatus::Uploaded | FileStatus::Processing) {
                continue;
            }
            let stored = match &file.uploaded_file {
                Some(object) => self.document(object).await.ok(),
                None => None,
            };
            let Some(bytes) = stored else {
                tracing::warn!(file = %file.id, "an interrupted upload was never stored; marking the file invalid");
                if file.status == FileStatus::Uploading {
                    self.workflow.act(&file.id, FileChange::Stored, &system).await?;
                }
                if file.status != FileStatus::Processing {
                    self.workflow.act(&file.id, FileChange::ProcessingStarted, &system).await?;
                }
                let change = FileChange::Processed {
                    valid: 0,
                    invalid: 0,
                    error_detail: Some(
                        "the upload was interrupted before the workbook was stored; upload it again".into(),
                    ),
                    processed: None,
                    period: None,
                };
                settled.push(self.workflow.act(&file.id, change, &system).await?);
                continue;
            };
            tracing::info!(file = %file.id, status = file.status.as_str(), "resuming an interrupted upload");
            if file.status == FileStatus::Uploading {
                self.workflow.act(&file.id, FileChange::Stored, &system).await?;
            }
            settled.push(self.process(&file.id, &bytes).await?.file);
        }
        Ok(settled)
    }

    /// The processed workbook: the uploaded records with `status` and `error` columns (times
    /// in Connect's `YYYY-MM-DD hh:mm:ss`). A problem of the whole file (a missing column, a
    /// bad `categories` sheet) is every row's: each row is `invalid` with it, and `general`
    /// lists each one as `error_1`, `error_2`, ….
    fn processed_workbook(
        &self,
        file: &UsageFile,
        book: &crate::xlsx::UsageWorkbook,
        validation: &Validation,
    ) -> Result<Vec<u8>, ServiceError> {
        let mut columns: Vec<&str> = book.columns.iter().map(String::as_str).collect();
        columns.extend(["status", "error"]);
        let file_errors: Vec<&str> = validation.errors_of(0).iter().map(|e| e.reason.as_str()).collect();
        let rows: Vec<Vec<String>> = book
            .records
            .iter()
            .map(|row| {
                let errors = validation.errors_of(row.row);
                let mut cells: Vec<String> = book
                    .columns
                    .iter()
                    .map(|c| crate::validate::normalized_cell(c, row.get(c).unwrap_or_default()).into_owned())
                    .collect();
                let reasons: Vec<String> = errors
                    .iter()
                    .map(|e| match &e.column {
                        Some(c) => format!("{c}: {}", e.reason),
                        None => e.reason.clone(),
                    })
                    .chain(file_errors.iter().map(|e| format!("file: {e}")))
                    .collect();
                cells.push(if reasons.is_empty() { "valid".into() } else { "invalid".into() });
                cells.push(reasons.join("; "));
                cells
            })
            .collect();
        let (valid, invalid) = counts(book, validation);
        let status = if validation.is_valid() { "valid" } else { "invalid" };
        let mut general = general_attributes(file, Some((status, valid as usize, invalid as usize)));
        general.extend(file_errors.iter().enumerate().map(|(i, e)| (format!("error_{}", i + 1), (*e).to_owned())));
        write_workbook(&general, &validation.categories, &columns, &rows)
            .map_err(|e| ServiceError::Document(e.to_string()))
    }

    /// Compiles the committed usage records of `product` under `contract` for `period` from
    /// the lake into a usage file (created once per period) and uploads it through the same
    /// validation as any vendor upload.
    pub async fn compile(
        &self,
        actor: &Actor,
        product: &str,
        contract: &str,
        period: Period,
    ) -> Result<UploadOutcome, ServiceError> {
        let state = self.lake.snapshot().await.map_err(|e| ServiceError::Document(e.to_string()))?;
        // Files compiled before for this period: once one is submitted, later usage goes into
        // a correction file holding only what the submitted files lack.
        let base_key = format!("compiled:{}:{}", period.from, period.to);
        let earlier: Vec<UsageFile> = self
            .workflow
            .list()
            .await?
            .into_iter()
            .filter(|f| f.product.id == product && f.contract.id == contract && f.external_id.starts_with(&base_key))
            .filter(|f| f.status != usageflow_model::FileStatus::Deleted)
            .collect();
        let reported: Vec<&UsageFile> = earlier
            .iter()
            .filter(|f| {
                use usageflow_model::FileStatus::{Accepted, Closed, Pending};
                matches!(f.status, Pending | Accepted | Closed)
            })
            .collect();
        let schema = self
            .catalogue
            .product(product)
            .and_then(|p| p.capabilities.ppu.as_ref().map(|c| c.schema))
            .unwrap_or(ReportingSchema::Qt);
        let mut compiled = crate::compile::compile_from_lake(&self.store, &state, product, contract, schema, period)
            .await
            .map_err(|e| ServiceError::Document(e.to_string()))?;
        let (external_id, corrects) = if reported.is_empty() {
            (base_key, None)
        } else {
            let columns = crate::write::record_columns(schema);
            let at = |name: &str| columns.iter().position(|c| *c == name);
            let (id_at, q_at, a_at) = (at("record_id"), at("quantity"), at("amount"));
            let mut already: HashMap<String, (Decimal, Decimal)> = HashMap::new();
            for file in &reported {
                let Some(object) = &file.uploaded_file else { continue };
                let book = read_workbook(&self.document(object).await?, &self.limits)
                    .map_err(|e| ServiceError::Document(e.to_string()))?;
                for row in &book.records {
                    let entry = already.entry(row.get("record_id").unwrap_or_default().to_owned()).or_default();
                    entry.0 += row.get("quantity").and_then(|q| q.parse::<Decimal>().ok()).unwrap_or_default();
                    entry.1 += row.get("amount").and_then(|q| q.parse::<Decimal>().ok()).unwrap_or_default();
                }
            }
            compiled.rows.retain_mut(|row| {
                let (Some(id_at), Some(q_at)) = (id_at, q_at) else { return true };
                let (q0, a0) = already.get(&row[id_at]).copied().unwrap_or_default();
                let q: Decimal = row[q_at].parse().unwrap_or_default();
                let delta = q - q0;
                if delta <= Decimal::ZERO {
                    return false;
                }
                row[q_at] = delta.to_string();
                if let Some(a_at) = a_at {
                    let a: Decimal = row[a_at].parse().unwrap_or_default();
                    row[a_at] = (a - a0).max(Decimal::ZERO).normalize().to_string();
                }
                true
            });
            if compiled.rows.is_empty() {
                let files: Vec<&str> = reported.iter().map(|f| f.id.as_str()).collect();
                return Err(ServiceError::NothingNew { files: files.join(", ") });
            }
            (format!("{base_key}:correction-{}", reported.len()), Some(reported[0].id.clone()))
        };
        let categories: Vec<usageflow_model::Category> = compiled
            .categories
            .iter()
            .map(|id| {
                if id == "generic_category" {
                    usageflow_model::Category::generic()
                } else {
                    usageflow_model::Category { id: id.clone(), name: id.clone(), description: None }
                }
            })
            .collect();
        let mut parts: Vec<&[Vec<String>]> = compiled.rows.chunks(self.max_records_per_file).collect();
        if parts.is_empty() {
            // A period without usage still gets its (empty) file.
            parts.push(&compiled.rows[..]);
        }
        let mut outcomes: Vec<UploadOutcome> = Vec::new();
        for (k, rows) in parts.iter().enumerate() {
            let req = CreateFile {
                product: product.to_owned(),
                contract: contract.to_owned(),
                period: Some(period),
                name: None,
                description: if corrects.is_some() {
                    "Correction compiled from the usage lake"
                } else {
                    "Compiled from the usage lake"
                }
                .to_owned(),
                note: if parts.len() > 1 { format!("part {} of {}", k + 1, parts.len()) } else { String::new() },
                external_id: if k == 0 { external_id.clone() } else { format!("{external_id}:part-{}", k + 1) },
                currency: None,
                corrects: corrects.clone(),
            };
            let file = self.create(actor, req).await?;
            let mut general = general_attributes(&file, None);
            general.push(("lake_version".to_owned(), state.records.version.unwrap_or_default().to_string()));
            general.push(("events".to_owned(), compiled.events.to_string()));
            let bytes = write_workbook(&general, &categories, &crate::write::record_columns(file.schema), rows.iter())
                .map_err(|e| ServiceError::Document(e.to_string()))?;
            outcomes.push(self.upload(actor, &file.id, &format!("{}-compiled.xlsx", file.id), bytes).await?);
        }
        let mut first = outcomes.remove(0);
        first.parts = outcomes.into_iter().map(|o| o.file).collect();
        Ok(first)
    }

    /// Reads a stored document (uploaded or processed workbook).
    pub async fn document(&self, object: &StoredObject) -> Result<Vec<u8>, ServiceError> {
        let path = Path::from(object.path.as_str());
        let got =
            self.store.get(&path).await.map_err(|e| ServiceError::Document(format!("cannot read {path}: {e}")))?;
        let bytes = got.bytes().await.map_err(|e| ServiceError::Document(format!("cannot read {path}: {e}")))?;
        Ok(bytes.to_vec())
    }
}

/// The `general` sheet of a usage file (the union of the attributes Connect's documents show);
/// `outcome` = (status, valid, invalid) for processed files.
pub fn general_attributes(file: &UsageFile, outcome: Option<(&str, usize, usize)>) -> Vec<(String, String)> {
    let time = |t: &chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let mut attributes =
        vec![("report_name", file.name.clone()), ("report_note", file.note.clone()), ("report_id", file.id.clone())];
    if let Some((status, valid, invalid)) = outcome {
        attributes.push(("status", status.to_owned()));
        attributes.push(("report_start_time_utc", time(&file.start_datetime_utc)));
        attributes.push(("report_end_time_utc", time(&file.end_datetime_utc)));
        attributes.push(("valid_records", valid.to_string()));
        attributes.push(("invalid_records", invalid.to_string()));
    } else {
        attributes.push(("report_start_time_utc", time(&file.start_datetime_utc)));
        attributes.push(("report_end_time_utc", time(&file.end_datetime_utc)));
    }
    attributes.extend([
        ("usage_schema", file.schema.sheet_name().to_owned()),
        ("currency", file.currency.clone().unwrap_or_default()),
        ("product_id", file.product.id.clone()),
        ("product_name", file.product.name.clone()),
        ("marketplace_id", file.marketplace.id.clone()),
        ("marketplace_name", file.marketplace.name.clone()),
        ("vendor_account_id", file.vendor.id.clone()),
        ("vendor_account_name", file.vendor.name.clone()),
        ("provider_account_id", file.provider.id.clone()),
        ("provider_account_name", file.provider.name.clone()),
        ("distribution_contract_id", file.contract.id.clone()),
        ("distribution_contract_name", file.contract.name.clone()),
    ]);
    attributes.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Valid and invalid records of an upload: with a problem of the whole file, every row is
/// invalid.
fn counts(book: &crate::xlsx::UsageWorkbook, validation: &Validation) -> (u64, u64) {
    if !validation.errors_of(0).is_empty() {
        (0, book.records.len() as u64)
    } else {
        (validation.valid.len() as u64, validation.invalid_rows() as u64)
    }
}

/// The days a workbook's records cover (their readable start and end times), if any.
fn records_period(book: &crate::xlsx::UsageWorkbook) -> Option<Period> {
    let times = |column: &'static str| {
        book.records.iter().filter_map(move |r| r.get(column).and_then(crate::validate::parse_utc))
    };
    Period::covering(times("start_time_utc"), times("end_time_utc"))
}

fn placeholder() -> StoredObject {
    StoredObject { path: String::new(), size: 0, sha256: String::new(), filename: String::new() }
}

/// Error details are limited to 200 characters in the Connect API.
/// A name part no other upload shares: the content's digest and the time, so that two
/// uploads at once never write the same object.
fn unique_suffix(bytes: &[u8]) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}-{nanos:x}", &sha2_hex(bytes)[..12])
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= 200 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(199).collect::<String>())
    }
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
