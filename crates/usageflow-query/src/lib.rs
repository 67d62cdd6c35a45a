//! SQL over the usage lake with DataFusion.
//!
//! [`records_session`] builds a session over the records of usage files: the Parquet object of
//! each file's current upload (written when the upload was processed; never the objects of
//! earlier uploads or of deleted files), the files themselves, and the changes made to single
//! records. Its `records` view joins them into the record as the API shows it, with the
//! record's status resolved. Filters, ordering and paging run inside DataFusion: only the
//! columns and row groups a query needs are read.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use usageflow_files::records::file_records_schema;
use usageflow_files::{RecordChanges, record_status_of};
use usageflow_model::UsageFile;

pub mod billing;
pub mod committed;
pub mod lake;
pub mod limits;
pub mod scoped;

pub use datafusion;
pub use lake::{
    Scope, Sources, analyst_session, bounded_analyst_session, load_file_sources_as_of, load_file_sources_of,
    load_lake_sources, load_lake_sources_as_of, load_reconciliations, load_sources, load_sources_as_of,
    load_sources_of, query, read_only,
};
pub mod output;
pub use output::Format;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// DataFusion refused or failed the query.
    #[error("query failed: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Arrow failed building a table.
    #[error("query failed: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A source (the lake's tables, workflow state) could not be read.
    #[error("{0}")]
    Source(String),
    /// The lake has no version for the `as_of` asked.
    #[error("{0}")]
    AsOf(String),
    /// Results could not be written in the asked format.
    #[error("cannot write the results: {0}")]
    Output(String),
}

/// The URL under which the lake's object store is registered in a session.
pub const LAKE_URL: &str = "usageflow://lake/";

/// A session with the lake's store registered under [`LAKE_URL`].
pub fn lake_context(store: Arc<dyn ObjectStore>) -> SessionContext {
    let ctx = SessionContext::new();
    let url = url::Url::parse(LAKE_URL).expect("a valid URL");
    ctx.runtime_env().register_object_store(&url, store);
    ctx
}

pub(crate) fn usage_files_table(files: &[&UsageFile]) -> Result<MemTable, QueryError> {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        s("name"),
        s("status"),
        s("record_status"),
        s("schema"),
        s("currency"),
        s("vendor_id"),
        s("provider_id"),
        s("marketplace_id"),
        s("contract_id"),
        s("product_id"),
        s("period_from"),
        s("period_to"),
        Field::new("created_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
    ]));
    let col = |f: &dyn Fn(&UsageFile) -> Option<String>| -> ArrayRef {
        Arc::new(files.iter().map(|file| f(file)).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        col(&|f| Some(f.id.clone())),
        col(&|f| Some(f.name.clone())),
        col(&|f| Some(f.status.as_str().to_owned())),
        col(&|f| Some(record_status_of(f).as_str().to_owned())),
        col(&|f| Some(f.schema.api_name().to_owned())),
        col(&|f| f.currency.clone()),
        col(&|f| Some(f.vendor.id.clone())),
        col(&|f| Some(f.provider.id.clone())),
        col(&|f| Some(f.marketplace.id.clone())),
        col(&|f| Some(f.contract.id.clone())),
        col(&|f| Some(f.product.id.clone())),
        col(&|f| Some(f.period.from.to_string())),
        col(&|f| Some(f.period.to.to_string())),
        Arc::new(
            files
                .iter()
                .map(|f| f.events.created.as_ref().map(|e| e.at.timestamp_micros()))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
    ];
    Ok(MemTable::try_new(schema.clone(), vec![vec![RecordBatch::try_new(schema, columns)?]])?)
}

fn record_changes_table(changes: &[(String, RecordChanges)]) -> Result<MemTable, QueryError> {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        s("status"),
        s("external_billing_id"),
        s("external_billing_note"),
        Field::new("closed_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        s("closed_by"),
    ]));
    let rows: Vec<(&String, &usageflow_files::RecordChange)> = changes.iter().flat_map(|(_, c)| c.iter()).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|(id, _)| Some(id.as_str())).collect::<StringArray>()),
        Arc::new(rows.iter().map(|(_, c)| Some(c.status.as_str())).collect::<StringArray>()),
        Arc::new(rows.iter().map(|(_, c)| c.external_billing_id.as_deref()).collect::<StringArray>()),
        Arc::new(rows.iter().map(|(_, c)| c.external_billing_note.as_deref()).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|(_, c)| c.closed_at.map(|t| t.timestamp_micros()))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(rows.iter().map(|(_, c)| c.closed_by.as_deref()).collect::<StringArray>()),
    ];
    Ok(MemTable::try_new(schema.clone(), vec![vec![RecordBatch::try_new(schema, columns)?]])?)
}

/// The columns of the `records` view.
pub const RECORD_VIEW: &str = "SELECT r.*, f.name AS usagefile_name, f.schema AS usagefile_schema, \
     f.currency AS usagefile_currency, f.status AS usagefile_status, f.vendor_id, f.provider_id, \
     f.marketplace_id, f.contract_id, f.period_from, f.period_to, f.created_time, \
     COALESCE(c.status, f.record_status) AS status, c.external_billing_id, c.external_billing_note, \
     c.closed_at, c.closed_by \
     FROM record_rows r JOIN usage_files f ON r.usagefile_id = f.id \
     LEFT JOIN record_changes c ON c.id = r.id";

/// A session over the records of `files` (deleted files and files without processed records
/// are left out) with the record changes of those files; it has the tables `record_rows`,
/// `usage_files`, `record_changes` and the view `records`.
pub async fn records_session(
    store: Arc<dyn ObjectStore>,
    files: &[UsageFile],
    changes: &[(String, RecordChanges)],
) -> Result<SessionContext, QueryError> {
    records_session_over(store, files, changes, record_rows_of(files)?).await
}

/// A tenant's records session: [`records_session_over`] holding only rows the tenant may
/// read, in every table the `records` view joins. For a reseller (`reseller` is its account)
/// the rows are cut at the scan to the records of the assets it resells
/// ([`scoped::ScopedTable`]), and the files and record changes to the files and records of
/// those rows; otherwise `files` must already be the tenant's files and `rows` their rows.
/// No expression of a caller's query can then see another tenant's record, file or change.
pub async fn tenant_records_session(
    store: Arc<dyn ObjectStore>,
    files: &[UsageFile],
    changes: &[(String, RecordChanges)],
    rows: Arc<dyn datafusion::datasource::TableProvider>,
    reseller: Option<&str>,
) -> Result<SessionContext, QueryError> {
    let Some(account) = reseller else { return records_session_over(store, files, changes, rows).await };
    use datafusion::prelude::{col, lit};
    let mine = col("tier1_id").eq(lit(account)).or(col("tier2_id").eq(lit(account)));
    let rows: Arc<dyn datafusion::datasource::TableProvider> = Arc::new(scoped::ScopedTable::new(rows, mine));
    // Which files and records those are: our own query over the cut rows.
    let probe = lake_context(store.clone());
    probe.register_table("rows", rows.clone())?;
    let ids = collect(&probe, "SELECT usagefile_id, id FROM rows").await?;
    let (mut file_ids, mut record_ids) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for batch in &ids {
        let text = |i: usize| batch.column(i).as_any().downcast_ref::<StringArray>().cloned();
        if let (Some(f), Some(r)) = (text(0), text(1)) {
            file_ids.extend(f.iter().flatten().map(str::to_owned));
            record_ids.extend(r.iter().flatten().map(str::to_owned));
        }
    }
    let files: Vec<UsageFile> = files.iter().filter(|f| file_ids.contains(&f.id)).cloned().collect();
    let changes: Vec<(String, RecordChanges)> = changes
        .iter()
        .filter(|(file, _)| file_ids.contains(file))
        .map(|(file, c)| {
            (
                file.clone(),
                c.iter().filter(|(id, _)| record_ids.contains(*id)).map(|(k, v)| (k.clone(), v.clone())).collect(),
            )
        })
        .collect();
    records_session_over(store, &files, &changes, rows).await
}

/// The record rows of `files`' current uploads (deleted files and files without processed
/// records left out), read from their Parquet objects.
pub fn record_rows_of(files: &[UsageFile]) -> Result<Arc<dyn datafusion::datasource::TableProvider>, QueryError> {
    let mut urls = Vec::new();
    for file in files.iter().filter(|f| f.status != usageflow_model::FileStatus::Deleted) {
        if let Some(path) = file.processed_file.as_ref().and_then(usageflow_files::records_object_path) {
            urls.push(ListingTableUrl::parse(format!("{LAKE_URL}{path}"))?);
        }
    }
    let schema = file_records_schema();
    let rows: Arc<dyn datafusion::datasource::TableProvider> = if urls.is_empty() {
        Arc::new(MemTable::try_new(schema, vec![vec![]])?)
    } else {
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
        Arc::new(ListingTable::try_new(config)?)
    };
    Ok(rows)
}

/// [`records_session`] with the record rows already at hand (`rows` has
/// [`usageflow_files::records::file_records_schema`] and holds the rows of `files`' current uploads).
pub async fn records_session_over(
    store: Arc<dyn ObjectStore>,
    files: &[UsageFile],
    changes: &[(String, RecordChanges)],
    rows: Arc<dyn datafusion::datasource::TableProvider>,
) -> Result<SessionContext, QueryError> {
    let ctx = lake_context(store);
    let live: Vec<&UsageFile> = files.iter().filter(|f| f.status != usageflow_model::FileStatus::Deleted).collect();
    ctx.register_table("record_rows", rows)?;
    ctx.register_table("usage_files", Arc::new(usage_files_table(&live)?))?;
    ctx.register_table("record_changes", Arc::new(record_changes_table(changes)?))?;
    ctx.sql(&format!("CREATE VIEW records AS {RECORD_VIEW}")).await?;
    Ok(ctx)
}

/// Runs a query and collects its batches.
pub async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Quotes a string as an SQL literal.
pub fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
