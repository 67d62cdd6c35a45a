//! The usage-file workflow with its documents: create (after the prerequisite checks),
//! upload (store, process, validate, write the processed file, move to `ready` or `invalid`),
//! and the review steps, on top of the durable workflow store.
//!
//! Object layout (after Connect's own naming):
//! `files/{product}/{UF-id}/uploaded/{UF-id}-{n}.xlsx` and
//! `files/{product}/{UF-id}/processed/{UF-id}-{n}-PROCESSED.xlsx`.

use std::sync::Arc;

use chrono::Utc;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
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
}

/// What the vendor gives to create a file.
#[derive(Debug, Clone)]
pub struct CreateFile {
    /// Product.
    pub product: String,
    /// Distribution contract.
    pub contract: String,
    /// Period.
    pub period: Period,
    /// Name (defaults to the period).
    pub name: Option<String>,
    /// Description.
    pub description: String,
    /// Vendor's note.
    pub note: String,
    /// Vendor's reference; creating twice with the same reference returns the first file.
    pub external_id: String,
    /// Currency (defaults to the marketplace's for schemas with amounts).
    pub currency: Option<String>,
}

/// The outcome of an upload.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    /// The file after processing (`ready` or `invalid`).
    pub file: UsageFile,
    /// Row-level results (empty when the workbook could not be read at all).
    pub validation: Validation,
}

/// Usage files: workflow plus documents.
#[derive(Debug, Clone)]
pub struct FileService {
    store: Arc<dyn ObjectStore>,
    workflow: WorkflowStore,
    catalogue: Arc<Catalogue>,
    limits: ReadLimits,
}

fn r(id: &str, name: &str) -> Ref {
    Ref { id: id.to_owned(), name: name.to_owned() }
}

impl FileService {
    /// A service over a store, a workflow store on the same store, and the catalogue.
    pub fn new(store: Arc<dyn ObjectStore>, workflow: WorkflowStore, catalogue: Arc<Catalogue>) -> Self {
        Self { store, workflow, catalogue, limits: ReadLimits::default() }
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
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
        let name = req.name.clone().unwrap_or_else(|| {
            format!("{} - {}", req.period.from.format("%m/%d/%Y"), req.period.to.format("%m/%d/%Y"))
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
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            )
        } else {
            format!("{}|{}|{}|{}", vendor.id, product.id, scope.contract.id, req.external_id)
        };
        let file = NewFile {
            id: String::new(),
            name,
            description: req.description,
            note: req.note,
            external_id: req.external_id,
            schema,
            currency,
            period: req.period,
            environment: Environment::Production,
            vendor,
            provider,
            marketplace,
            contract: r(&scope.contract.id, &scope.contract.name),
            product: r(&product.id, &product.name),
            corrects: None,
        };
        Ok(self.workflow.create(CreateRequest { file, idempotency_key: key }, actor).await?)
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

    /// Uploads a workbook: stores it, processes and validates it, writes the processed file,
    /// and moves the file to `ready` (every row valid) or `invalid`.
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
        let uploaded = self
            .put(&base.clone().join("uploaded").join(format!("{}-{n}.xlsx", file.id)), bytes.clone(), filename)
            .await?;
        self.workflow.act(file_id, FileChange::Upload { object: uploaded }, actor).await?;
        let system = Actor::system();
        self.workflow.act(file_id, FileChange::Stored, &system).await?;
        let file = self.workflow.act(file_id, FileChange::ProcessingStarted, &system).await?;

        let (change, validation) = match read_workbook(&bytes, &self.limits) {
            Err(err) => (
                FileChange::Processed {
                    valid: 0,
                    invalid: 0,
                    error_detail: Some(truncate(&err.to_string())),
                    processed: None,
                },
                Validation::default(),
            ),
            Ok(book) => {
                let ctx = FileContext {
                    catalogue: &self.catalogue,
                    product_id: &file.product.id,
                    contract_id: &file.contract.id,
                    schema: file.schema,
                    period: file.period,
                };
                let validation = validate(&book, &ctx);
                let processed = self.processed_workbook(&file, &book, &validation)?;
                let path = base.join("processed").join(format!("{}-{n}-PROCESSED.xlsx", file.id));
                let stored = self.put(&path, processed, &format!("{}-PROCESSED.xlsx", file.id)).await?;
                let invalid = validation.invalid_rows() as u64;
                let file_errors: Vec<&str> =
                    validation.errors.iter().filter(|e| e.row == 0).map(|e| e.reason.as_str()).collect();
                let error_detail = if !file_errors.is_empty() {
                    Some(truncate(&file_errors.join("; ")))
                } else if invalid > 0 {
                    Some(truncate(&format!(
                        "{invalid} of {} records are invalid; see the processed file",
                        validation.valid.len() as u64 + invalid
                    )))
                } else {
                    None
                };
                let change = FileChange::Processed {
                    valid: validation.valid.len() as u64,
                    invalid,
                    error_detail,
                    processed: Some(stored),
                };
                (change, validation)
            }
        };
        let file = self.workflow.act(file_id, change, &system).await?;
        Ok(UploadOutcome { file, validation })
    }

    /// The processed workbook: the uploaded records with `status` and `error` columns.
    fn processed_workbook(
        &self,
        file: &UsageFile,
        book: &crate::xlsx::UsageWorkbook,
        validation: &Validation,
    ) -> Result<Vec<u8>, ServiceError> {
        let mut columns: Vec<&str> = book.columns.iter().map(String::as_str).collect();
        columns.extend(["status", "error"]);
        let rows: Vec<Vec<String>> = book
            .records
            .iter()
            .map(|row| {
                let errors = validation.errors_of(row.row);
                let mut cells: Vec<String> =
                    book.columns.iter().map(|c| row.get(c).unwrap_or_default().to_owned()).collect();
                cells.push(if errors.is_empty() { "valid".into() } else { "invalid".into() });
                cells.push(
                    errors
                        .iter()
                        .map(|e| match &e.column {
                            Some(c) => format!("{c}: {}", e.reason),
                            None => e.reason.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                cells
            })
            .collect();
        let invalid = validation.invalid_rows();
        let general: Vec<(String, String)> = [
            ("report_name", file.name.clone()),
            ("report_note", file.note.clone()),
            ("report_id", file.id.clone()),
            ("status", if validation.is_valid() { "valid".into() } else { "invalid".into() }),
            ("report_start_time_utc", file.start_datetime_utc.format("%Y-%m-%d %H:%M:%S").to_string()),
            ("report_end_time_utc", file.end_datetime_utc.format("%Y-%m-%d %H:%M:%S").to_string()),
            ("valid_records", validation.valid.len().to_string()),
            ("invalid_records", invalid.to_string()),
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
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
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
        let state = usageflow_lake::Manifests::new(self.store.clone(), "compile")
            .state()
            .await
            .map_err(|e| ServiceError::Document(e.to_string()))?;
        let req = CreateFile {
            product: product.to_owned(),
            contract: contract.to_owned(),
            period,
            name: None,
            description: "Compiled from the usage lake".to_owned(),
            note: String::new(),
            external_id: format!("compiled:{}:{}", period.from, period.to),
            currency: None,
        };
        let file = self.create(actor, req).await?;
        let compiled = crate::compile::compile_from_lake(&self.store, &state, product, contract, file.schema, period)
            .await
            .map_err(|e| ServiceError::Document(e.to_string()))?;
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
        let general = vec![
            ("report_id".to_owned(), file.id.clone()),
            ("usage_schema".to_owned(), file.schema.sheet_name().to_owned()),
            ("lake_version".to_owned(), state.version.to_string()),
            ("events".to_owned(), compiled.events.to_string()),
        ];
        let bytes = write_workbook(&general, &categories, &crate::write::record_columns(file.schema), &compiled.rows)
            .map_err(|e| ServiceError::Document(e.to_string()))?;
        self.upload(actor, &file.id, &format!("{}-compiled.xlsx", file.id), bytes).await
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

fn placeholder() -> StoredObject {
    StoredObject { path: String::new(), size: 0, sha256: String::new(), filename: String::new() }
}

/// Error details are limited to 200 characters in the Connect API.
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
