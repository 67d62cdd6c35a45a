//! The analyst session: every table of Usageflow in one DataFusion session, scoped to a
//! tenant.
//!
//! | Table | What |
//! |---|---|
//! | `events` | raw accepted metering events (committed lake files) |
//! | `usage_records` | per-period usage records aggregated by the ingester (deltas: a record is the sum of its rows) |
//! | `usage_files` | usage files with their status, period, parties and record counts |
//! | `file_records` | the records of usage files with their status and billing references |
//! | `chunks` | per-hub parts of accepted files |
//! | `reconciliations` | reconciliation uploads and their outcome |
//! | `products`, `items`, `assets`, `contracts`, `accounts`, `marketplaces`, `hubs` | the catalogue |
//!
//! A scoped session holds only the tenant's rows, cut before any expression of the caller can
//! run (see [`analyst_session`]); tables of other tenants' rows are not in it at all.
//! Statements other than queries (DDL, DML, `SET`, `EXPLAIN`) are refused.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::{Datelike, NaiveDate};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use usageflow_lake::{LakeState, Table};
use usageflow_model::{Catalogue, Chunk, UsageFile};

use crate::committed::{Bound, CommittedFile, CommittedTable};
use crate::limits::{QueryLimits, SharedMemory};
use crate::scoped::ScopedTable;
use crate::{LAKE_URL, QueryError, lake_context, sql_string};

/// Whose rows a session shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything (the operator's command line).
    All,
    /// A vendor account: its products' usage.
    Vendor(String),
    /// A provider (distributor) account: usage under its contracts.
    Provider(String),
    /// A reseller account: usage of the assets it resells.
    Reseller(String),
}

/// Everything a session reads besides the lake files.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The lake's tables at the version read (their Delta snapshots).
    pub lake: LakeState,
    /// The catalogue.
    pub catalogue: Arc<Catalogue>,
    /// Usage files.
    pub files: Vec<UsageFile>,
    /// Record changes per file.
    pub changes: Vec<(String, usageflow_files::RecordChanges)>,
    /// Chunks.
    pub chunks: Vec<Chunk>,
    /// Reconciliations as stored (JSON objects with `recon` and `provider`).
    pub reconciliations: Vec<serde_json::Value>,
}

fn month_bounds(month: &str) -> Option<(i64, i64)> {
    let start = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    let next = if start.month() == 12 {
        NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)?
    };
    let us = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_micros());
    Some((us(start)?, us(next)? - 1))
}

fn day_start(day: &str) -> Option<i64> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_micros())
}

/// A timestamp statistic of a Delta `add` (`"2026-11-01T10:00:00.123Z"`) in µs.
fn stat_time(value: &serde_json::Value) -> Option<i64> {
    Some(chrono::DateTime::parse_from_rfc3339(value.as_str()?).ok()?.timestamp_micros())
}

/// What a committed file's partition values and Delta statistics say about its columns, for
/// pruning: statistics first (tighter), the partition's bounds where a file has none.
fn committed(lake: &LakeState, table: Table) -> Vec<CommittedFile> {
    lake.files_of(table)
        .map(|f| {
            let mut bounds = Vec::new();
            let time_stats = |bounds: &mut Vec<Bound>, column: &'static str| {
                let (min, max) = f.min_max(column)?;
                bounds.push(Bound::Time { column, min: stat_time(&min)?, max: Some(stat_time(&max)?) });
                Some(())
            };
            let single_text = |bounds: &mut Vec<Bound>, column: &'static str| {
                let (min, max) = f.min_max(column)?;
                if min == max {
                    bounds.push(Bound::Text { column, value: min.as_str()?.to_owned() });
                }
                Some(())
            };
            match table {
                Table::Records => {
                    if let Some(p) = f.partition("product") {
                        bounds.push(Bound::Text { column: "product_id", value: p.to_owned() });
                    }
                    single_text(&mut bounds, "contract_id");
                    single_text(&mut bounds, "asset_id");
                    if time_stats(&mut bounds, "period_start").is_none()
                        && let Some((min, max)) = f.partition("month").and_then(month_bounds)
                    {
                        bounds.push(Bound::Time { column: "period_start", min, max: Some(max) });
                    }
                }
                Table::Events => {
                    time_stats(&mut bounds, "start_time");
                    // Without statistics: the day of the first Kafka timestamp of the batch
                    // (later rows may be later).
                    if time_stats(&mut bounds, "kafka_timestamp").is_none()
                        && let Some(min) = f.partition("date").and_then(day_start)
                    {
                        bounds.push(Bound::Time { column: "kafka_timestamp", min, max: None });
                    }
                }
            }
            CommittedFile { path: f.location(), rows: f.rows, bounds }
        })
        .collect()
}

/// A table of text columns.
fn text_table(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> Result<MemTable, QueryError> {
    let schema =
        Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| Arc::new(rows.iter().map(|r| r[i].as_deref()).collect::<StringArray>()) as ArrayRef)
        .collect();
    Ok(MemTable::try_new(schema.clone(), vec![vec![RecordBatch::try_new(schema, arrays)?]])?)
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn catalogue_tables(ctx: &SessionContext, catalogue: &Catalogue) -> Result<(), QueryError> {
    let data = catalogue.data();
    let products = data
        .products
        .iter()
        .map(|p| {
            vec![
                s(&p.id),
                s(&p.name),
                s(&p.vendor),
                p.capabilities.ppu.as_ref().map(|c| c.schema.api_name().to_owned()),
                s(&format!("{:?}", p.aggregation).to_lowercase()),
            ]
        })
        .collect();
    ctx.register_table(
        "products",
        Arc::new(text_table(&["id", "name", "vendor_id", "schema", "aggregation"], products)?),
    )?;
    let items = data
        .products
        .iter()
        .flat_map(|p| {
            p.items.iter().map(move |i| {
                vec![
                    s(&i.id),
                    s(&p.id),
                    s(&i.local_id),
                    s(&i.mpn),
                    s(&i.name),
                    s(&i.unit),
                    s(i.precision.api_name()),
                    s(i.item_type.record_name()),
                ]
            })
        })
        .collect();
    ctx.register_table(
        "items",
        Arc::new(text_table(&["id", "product_id", "local_id", "mpn", "name", "unit", "precision", "type"], items)?),
    )?;
    let assets = data
        .assets
        .iter()
        .map(|a| {
            let t = &a.tiers;
            vec![
                s(&a.id),
                s(&a.product),
                s(&a.contract),
                s(&a.marketplace),
                s(&a.hub),
                s(&a.external_id),
                s(&a.external_uid),
                a.recon_id.clone(),
                s(&t.customer.id),
                s(&t.customer.name),
                t.tier1.as_ref().map(|r| r.id.clone()),
                t.tier1.as_ref().map(|r| r.name.clone()),
                t.tier2.as_ref().map(|r| r.id.clone()),
                t.tier2.as_ref().map(|r| r.name.clone()),
                s(&format!("{:?}", a.status).to_lowercase()),
            ]
        })
        .collect();
    ctx.register_table(
        "assets",
        Arc::new(text_table(
            &[
                "id",
                "product_id",
                "contract_id",
                "marketplace_id",
                "hub_id",
                "external_id",
                "external_uid",
                "recon_id",
                "customer_id",
                "customer_name",
                "tier1_id",
                "tier1_name",
                "tier2_id",
                "tier2_name",
                "status",
            ],
            assets,
        )?),
    )?;
    let contracts = data
        .contracts
        .iter()
        .map(|c| vec![s(&c.id), s(&c.name), s(&c.vendor), s(&c.provider), c.marketplace.clone()])
        .collect();
    ctx.register_table(
        "contracts",
        Arc::new(text_table(&["id", "name", "vendor_id", "provider_id", "marketplace_id"], contracts)?),
    )?;
    let accounts =
        data.accounts.iter().map(|a| vec![s(&a.id), s(&a.name), s(&format!("{:?}", a.role).to_lowercase())]).collect();
    ctx.register_table("accounts", Arc::new(text_table(&["id", "name", "role"], accounts)?))?;
    let marketplaces = data.marketplaces.iter().map(|m| vec![s(&m.id), s(&m.name), s(&m.currency)]).collect();
    ctx.register_table("marketplaces", Arc::new(text_table(&["id", "name", "currency"], marketplaces)?))?;
    let hubs = data.hubs.iter().map(|h| vec![s(&h.id), s(&h.name), s(&h.provider)]).collect();
    ctx.register_table("hubs", Arc::new(text_table(&["id", "name", "provider_id"], hubs)?))?;
    Ok(())
}

fn chunk_table(chunks: &[Chunk]) -> Result<MemTable, QueryError> {
    let rows = chunks
        .iter()
        .map(|c| {
            vec![
                s(&c.id),
                s(&c.usagefile.id),
                s(&c.status.to_string()),
                s(&c.binding.hub.id),
                s(&c.binding.external_id),
                s(&c.provider.id),
                s(&c.marketplace.id),
                s(&c.stats.accepted.to_string()),
                c.external_billing_id.clone(),
                c.external_billing_note.clone(),
            ]
        })
        .collect();
    text_table(
        &[
            "id",
            "usagefile_id",
            "status",
            "hub_id",
            "external_id",
            "provider_id",
            "marketplace_id",
            "records",
            "external_billing_id",
            "external_billing_note",
        ],
        rows,
    )
}

fn recon_table(recons: &[serde_json::Value]) -> Result<MemTable, QueryError> {
    let t = |v: &serde_json::Value, path: &[&str]| {
        path.iter().try_fold(v, |v, k| v.get(k)).and_then(|v| v.as_str()).map(str::to_owned)
    };
    let rows = recons
        .iter()
        .map(|r| {
            vec![
                t(r, &["recon", "id"]),
                t(r, &["recon", "usagefile", "id"]),
                t(r, &["recon", "status"]),
                t(r, &["provider"]),
                t(r, &["recon", "uploaded_at"]),
                t(r, &["recon", "notes", "uploaded"]),
                t(r, &["recon", "notes", "processing"]),
                t(r, &["recon", "error", "detail"]),
            ]
        })
        .collect();
    text_table(&["id", "usagefile_id", "status", "provider_id", "uploaded_at", "upload_note", "outcome", "error"], rows)
}

/// The private session with every table, unscoped.
async fn full_session(store: Arc<dyn ObjectStore>, sources: &Sources) -> Result<SessionContext, QueryError> {
    let ctx = crate::records_session(store, &sources.files, &sources.changes).await?;
    let view = ctx.table("records").await?.into_view();
    ctx.deregister_table("records")?;
    ctx.register_table("file_records", view)?;
    ctx.register_table(
        "usage_records",
        Arc::new(CommittedTable::new(
            LAKE_URL,
            usageflow_lake::tables::records_schema(),
            committed(&sources.lake, Table::Records),
        )),
    )?;
    ctx.register_table(
        "events",
        Arc::new(CommittedTable::new(
            LAKE_URL,
            usageflow_lake::tables::events_schema(),
            committed(&sources.lake, Table::Events),
        )),
    )?;
    ctx.register_table("chunks", Arc::new(chunk_table(&sources.chunks)?))?;
    ctx.register_table("reconciliations", Arc::new(recon_table(&sources.reconciliations)?))?;
    catalogue_tables(&ctx, &sources.catalogue)?;
    Ok(ctx)
}

/// The public tables.
pub const TABLES: [&str; 13] = [
    "events",
    "usage_records",
    "usage_files",
    "file_records",
    "chunks",
    "reconciliations",
    "products",
    "items",
    "assets",
    "contracts",
    "accounts",
    "marketplaces",
    "hubs",
];

fn list(values: impl IntoIterator<Item = String>) -> String {
    let v: BTreeSet<String> = values.into_iter().collect();
    if v.is_empty() {
        "(NULL)".to_owned()
    } else {
        format!("({})", v.iter().map(|x| sql_string(x)).collect::<Vec<_>>().join(", "))
    }
}

/// The row predicate of each public table for a scope.
fn predicates(scope: &Scope, catalogue: &Catalogue) -> Vec<(&'static str, String)> {
    let data = catalogue.data();
    let all = |p: &str| TABLES.iter().map(|t| (*t, p.to_owned())).collect::<Vec<_>>();
    match scope {
        Scope::All => all("TRUE"),
        Scope::Vendor(v) => {
            let me = sql_string(v);
            let products = list(data.products.iter().filter(|p| &p.vendor == v).map(|p| p.id.clone()));
            let parties =
                list(data.contracts.iter().filter(|c| &c.vendor == v).map(|c| c.provider.clone()).chain([v.clone()]));
            vec![
                ("events", format!("product_id IN {products}")),
                ("usage_records", format!("vendor_id = {me} AND product_id IN {products}")),
                ("usage_files", format!("vendor_id = {me}")),
                ("file_records", format!("vendor_id = {me}")),
                ("chunks", "FALSE".into()),
                ("reconciliations", "FALSE".into()),
                ("products", format!("vendor_id = {me}")),
                ("items", format!("product_id IN {products}")),
                ("assets", format!("product_id IN {products}")),
                ("contracts", format!("vendor_id = {me}")),
                ("accounts", format!("id IN {parties}")),
                ("marketplaces", "TRUE".into()),
                ("hubs", "TRUE".into()),
            ]
        }
        Scope::Provider(p) => {
            let me = sql_string(p);
            let contracts: Vec<String> =
                data.contracts.iter().filter(|c| &c.provider == p).map(|c| c.id.clone()).collect();
            let products =
                list(data.listings.iter().filter(|l| contracts.contains(&l.contract)).map(|l| l.product.clone()));
            let parties =
                list(data.contracts.iter().filter(|c| &c.provider == p).map(|c| c.vendor.clone()).chain([p.clone()]));
            let contracts = list(contracts);
            vec![
                ("events", format!("contract_id IN {contracts}")),
                ("usage_records", format!("provider_id = {me}")),
                ("usage_files", format!("provider_id = {me}")),
                ("file_records", format!("provider_id = {me}")),
                ("chunks", format!("provider_id = {me}")),
                ("reconciliations", format!("provider_id = {me}")),
                ("products", format!("id IN {products}")),
                ("items", format!("product_id IN {products}")),
                ("assets", format!("contract_id IN {contracts}")),
                ("contracts", format!("provider_id = {me}")),
                ("accounts", format!("id IN {parties}")),
                ("marketplaces", "TRUE".into()),
                ("hubs", format!("provider_id = {me}")),
            ]
        }
        Scope::Reseller(r) => {
            let me = sql_string(r);
            let resold = |a: &&usageflow_model::Asset| {
                a.tiers.tier1.as_ref().is_some_and(|t| &t.id == r) || a.tiers.tier2.as_ref().is_some_and(|t| &t.id == r)
            };
            let assets = list(data.assets.iter().filter(resold).map(|a| a.id.clone()));
            let products = list(data.assets.iter().filter(resold).map(|a| a.product.clone()));
            vec![
                ("events", format!("asset_id IN {assets}")),
                ("usage_records", format!("asset_id IN {assets}")),
                ("usage_files", "FALSE".into()),
                ("file_records", format!("(tier1_id = {me} OR tier2_id = {me})")),
                ("chunks", "FALSE".into()),
                ("reconciliations", "FALSE".into()),
                ("products", format!("id IN {products}")),
                ("items", format!("product_id IN {products}")),
                ("assets", format!("id IN {assets}")),
                ("contracts", "FALSE".into()),
                ("accounts", format!("id = {me}")),
                ("marketplaces", "TRUE".into()),
                ("hubs", "FALSE".into()),
            ]
        }
    }
}

/// A session over everything `scope` may read.
///
/// A scoped session holds only the tenant's rows, cut before any query of the caller runs:
/// the in-memory tables (files, chunks, reconciliations, the catalogue) are built from the
/// tenant's rows only; `file_records` joins tables that hold only the tenant's files, records
/// and changes ([`crate::tenant_records_session`]); the lake tables (`events`,
/// `usage_records`) are cut at the scan ([`ScopedTable`]). So no predicate, join, projection or
/// function of the caller is evaluated on another tenant's row, whatever the optimizer does.
pub async fn analyst_session(
    store: Arc<dyn ObjectStore>,
    sources: &Sources,
    scope: &Scope,
) -> Result<SessionContext, QueryError> {
    bounded_analyst_session(store, sources, scope, None).await
}

/// [`analyst_session`] whose queries are held to `bounds` (memory per query and for the
/// server, the size of the values functions build); see [`crate::limits`].
pub async fn bounded_analyst_session(
    store: Arc<dyn ObjectStore>,
    sources: &Sources,
    scope: &Scope,
    bounds: Option<(&QueryLimits, &SharedMemory)>,
) -> Result<SessionContext, QueryError> {
    if *scope == Scope::All && bounds.is_none() {
        return full_session(store, sources).await;
    }
    let live = |f: &&UsageFile| f.status != usageflow_model::FileStatus::Deleted;
    let (files, reseller): (Vec<UsageFile>, Option<&str>) = match scope {
        Scope::Vendor(v) => (sources.files.iter().filter(live).filter(|f| &f.vendor.id == v).cloned().collect(), None),
        Scope::Provider(p) => {
            (sources.files.iter().filter(live).filter(|f| &f.provider.id == p).cloned().collect(), None)
        }
        Scope::Reseller(r) => (sources.files.iter().filter(live).cloned().collect(), Some(r.as_str())),
        Scope::All => (sources.files.iter().filter(live).cloned().collect(), None),
    };
    let ids: BTreeSet<&str> = files.iter().map(|f| f.id.as_str()).collect();
    let changes: Vec<(String, usageflow_files::RecordChanges)> =
        sources.changes.iter().filter(|(f, _)| ids.contains(f.as_str())).cloned().collect();
    let rows = crate::record_rows_of(&files)?;
    let records = crate::tenant_records_session(store.clone(), &files, &changes, rows, reseller).await?;

    let public = match bounds {
        Some((limits, shared)) => {
            let ctx = crate::limits::bounded_context(limits, shared)?;
            let url = url::Url::parse(LAKE_URL).expect("a valid URL");
            ctx.runtime_env().register_object_store(&url, store.clone());
            ctx
        }
        None => lake_context(store.clone()),
    };
    public.register_table("file_records", records.table("records").await?.into_view())?;
    let usage_files: Arc<dyn TableProvider> = match reseller {
        Some(_) => Arc::new(crate::usage_files_table(&[])?),
        None => records.table_provider("usage_files").await?,
    };
    public.register_table("usage_files", usage_files)?;

    // The small tables: our own predicate evaluated in a private session, the result kept.
    let private = lake_context(store);
    private.register_table("chunks", Arc::new(chunk_table(&sources.chunks)?))?;
    private.register_table("reconciliations", Arc::new(recon_table(&sources.reconciliations)?))?;
    catalogue_tables(&private, &sources.catalogue)?;
    let predicates = predicates(scope, &sources.catalogue);
    for (table, predicate) in &predicates {
        match *table {
            "events" | "usage_records" | "usage_files" | "file_records" => continue,
            _ => {}
        }
        let df = private.sql(&format!("SELECT * FROM {table} WHERE {predicate}")).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        public.register_table(*table, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    }

    // The lake tables: cut at the scan.
    let lake_table = |table: Table, schema: arrow::datatypes::SchemaRef| {
        Arc::new(CommittedTable::new(LAKE_URL, schema, committed(&sources.lake, table))) as Arc<dyn TableProvider>
    };
    for (name, table, schema) in [
        ("events", Table::Events, usageflow_lake::tables::events_schema()),
        ("usage_records", Table::Records, usageflow_lake::tables::records_schema()),
    ] {
        let predicate = predicates.iter().find(|(t, _)| *t == name).map(|(_, p)| p.as_str()).unwrap_or("FALSE");
        let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())?;
        let predicate = private.parse_sql_expr(predicate, &df_schema)?;
        public.register_table(name, Arc::new(ScopedTable::new(lake_table(table, schema), predicate)))?;
    }
    Ok(public)
}

/// Read-only statement options: queries only.
pub fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// Runs one read-only query.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(ctx.sql_with_options(sql, read_only()).await?.collect().await?)
}

/// What [`analyst_session`] reads of the lake and the catalogue only, without the usage files:
/// enough for `events`, `usage_records` and the catalogue tables (the file tables are empty).
pub async fn load_lake_sources(service: &usageflow_files::FileService) -> Result<Sources, QueryError> {
    load_lake_sources_as_of(service, usageflow_lake::AsOf::Latest).await
}

/// [`load_lake_sources`] with the lake's tables as of `as_of` (time travel).
pub async fn load_lake_sources_as_of(
    service: &usageflow_files::FileService,
    as_of: usageflow_lake::AsOf,
) -> Result<Sources, QueryError> {
    let lake = service.lake().snapshot_as_of(as_of).await.map_err(|e| match e {
        usageflow_lake::DeltaError::NoSuchVersion { .. } => QueryError::AsOf(e.to_string()),
        e => QueryError::Source(format!("cannot read the lake: {e}")),
    })?;
    Ok(Sources {
        lake,
        catalogue: service.shared_catalogue(),
        files: Vec::new(),
        changes: Vec::new(),
        chunks: Vec::new(),
        reconciliations: Vec::new(),
    })
}

/// Everything [`analyst_session`] reads: the lake's tables, the catalogue, every usage file with
/// its record changes, the chunks of accepted files and the reconciliations.
pub async fn load_sources(service: &usageflow_files::FileService) -> Result<Sources, QueryError> {
    load_sources_as_of(service, usageflow_lake::AsOf::Latest).await
}

/// [`load_sources`] with the lake's tables as of `as_of` (the usage files as they are now).
pub async fn load_sources_as_of(
    service: &usageflow_files::FileService,
    as_of: usageflow_lake::AsOf,
) -> Result<Sources, QueryError> {
    let files = service.workflow().list().await.map_err(|e| QueryError::Source(e.to_string()))?;
    load_sources_of_as_of(service, files, as_of).await
}

/// What `usage_files` and `file_records` need (the lake, the catalogue, the files and their
/// record changes), without chunks and reconciliations: enough for billing exports, and
/// cheaper on accounts with many accepted files (chunks are listed per file).
pub async fn load_file_sources_of(
    service: &usageflow_files::FileService,
    files: Vec<UsageFile>,
) -> Result<Sources, QueryError> {
    load_file_sources_as_of(service, files, usageflow_lake::AsOf::Latest).await
}

/// [`load_file_sources_of`] with the lake's tables as of `as_of`.
pub async fn load_file_sources_as_of(
    service: &usageflow_files::FileService,
    files: Vec<UsageFile>,
    as_of: usageflow_lake::AsOf,
) -> Result<Sources, QueryError> {
    let mut sources = load_lake_sources_as_of(service, as_of).await?;
    sources.changes = service.record_changes_of(&files).await.map_err(|e| QueryError::Source(e.to_string()))?;
    sources.files = files;
    Ok(sources)
}

/// [`load_sources`] with the usage files already at hand (from an index).
pub async fn load_sources_of(
    service: &usageflow_files::FileService,
    files: Vec<UsageFile>,
) -> Result<Sources, QueryError> {
    load_sources_of_as_of(service, files, usageflow_lake::AsOf::Latest).await
}

/// [`load_sources_of`] with the lake's tables as of `as_of`.
async fn load_sources_of_as_of(
    service: &usageflow_files::FileService,
    files: Vec<UsageFile>,
    as_of: usageflow_lake::AsOf,
) -> Result<Sources, QueryError> {
    let mut sources = load_file_sources_as_of(service, files, as_of).await?;
    let source = |e: &dyn std::fmt::Display| QueryError::Source(e.to_string());
    let billed = sources.files.iter().filter(|f| f.status.is_billed()).map(|f| f.id.as_str());
    sources.chunks = service.chunks_of(billed).await.map_err(|e| source(&e))?;
    sources.reconciliations = load_reconciliations(service).await?;
    Ok(sources)
}

/// Every reconciliation as stored (the latest version of each).
pub async fn load_reconciliations(
    service: &usageflow_files::FileService,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let source = |e: &dyn std::fmt::Display| QueryError::Source(e.to_string());
    let snapshots = service.snapshots();
    let prefix = object_store::path::Path::from("workflow/reconciliations");
    let mut out = Vec::new();
    for id in snapshots.children(&prefix).await.map_err(|e| source(&e))? {
        if let Some((_, r)) =
            snapshots.latest::<serde_json::Value>(&prefix.clone().join(id.as_str())).await.map_err(|e| source(&e))?
        {
            out.push(r);
        }
    }
    Ok(out)
}
