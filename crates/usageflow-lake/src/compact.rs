//! Compaction: folds the many small `records` files of a product and month (one per flush
//! and partition) into one file with one row per usage record.
//!
//! Compaction is Delta's OPTIMIZE: one commit removes the old files and adds the new one
//! (`dataChange: false`), without touching Kafka positions; readers see either the old files
//! or the new one, at consecutive versions. Each compaction claims the product and month it
//! folds (an application transaction of its own, see `TableCommit::claims`): if another
//! compaction of one of them committed first, Delta's conflict check refuses the commit and
//! nothing changes. (Delta's check alone would let both remove the same files, as neither
//! changes data.) Ingestion may commit
//! concurrently: its commits only add files, which do not conflict.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Decimal128Type, Int8Type, Int32Type, Int64Type, TimestampMicrosecondType};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::delta::{DeltaError, DeltaLake, Table, TableCommit, TableFile, compaction_claim, encode_file};
use crate::paths;
use crate::tables::{ReadError, RecordRow, RecordsBuilder, read_parquet};

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// (product, month) groups compacted.
    pub groups: usize,
    /// Files replaced.
    pub files_removed: usize,
    /// Rows before.
    pub rows_before: u64,
    /// Rows after.
    pub rows_after: u64,
}

/// Why compaction failed.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Reading a file failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing the new file failed.
    #[error("writing {path}: {reason}")]
    Write { path: String, reason: String },
    /// The commit was refused or failed.
    #[error(transparent)]
    Commit(#[from] DeltaError),
}

/// The full identity of a usage record, as the `records` table stores it (ordered, so that
/// anything built from a map of them is deterministic).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Product.
    pub product: String,
    /// Contract.
    pub contract: String,
    /// Marketplace.
    pub marketplace: String,
    /// Hub.
    pub hub: String,
    /// Vendor.
    pub vendor: String,
    /// Provider.
    pub provider: String,
    /// Asset.
    pub asset: String,
    /// Item global id (`None` for dynamic items).
    pub item: Option<String>,
    /// Item MPN.
    pub mpn: String,
    /// Item precision (decimal places).
    pub precision: i8,
    /// Tier.
    pub tier: Option<i8>,
    /// Category.
    pub category: Option<String>,
    /// Period start (µs).
    pub period_start: i64,
    /// Period end, exclusive (µs).
    pub period_end: i64,
}

/// A usage record's sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    /// Quantity (10^-8 units).
    pub quantity: i128,
    /// Amount (10^-8 units).
    pub amount: Option<i128>,
    /// Events.
    pub count: i64,
    /// Earliest event start (µs).
    pub first: i64,
    /// Latest event end (µs).
    pub last: i64,
    /// Lowest source partition.
    pub partition: i32,
}

/// Reads `files` (of the `records` table) and sums their rows per usage record.
pub async fn sum_records<'a>(
    store: &Arc<dyn ObjectStore>,
    files: impl IntoIterator<Item = &'a TableFile>,
) -> Result<BTreeMap<Key, Sum>, ReadError> {
    let mut sums = BTreeMap::new();
    for file in files {
        for batch in read_parquet(store, &file.location()).await? {
            fold(&batch, &mut sums);
        }
    }
    Ok(sums)
}

fn fold(batch: &RecordBatch, into: &mut BTreeMap<Key, Sum>) {
    let s = |n: &str| batch.column_by_name(n).expect("records column").as_string::<i32>();
    let (product, contract, marketplace, hub, vendor, provider, asset, item, mpn, category) = (
        s("product_id"),
        s("contract_id"),
        s("marketplace_id"),
        s("hub_id"),
        s("vendor_id"),
        s("provider_id"),
        s("asset_id"),
        s("item_id"),
        s("item_mpn"),
        s("category_id"),
    );
    let col = |n: &str| batch.column_by_name(n).expect("records column");
    let precision = col("item_precision").as_primitive::<Int8Type>();
    let tier = col("tier").as_primitive::<Int8Type>();
    let ts = |n: &str| col(n).as_primitive::<TimestampMicrosecondType>();
    let (ps, pe, first, last) = (ts("period_start"), ts("period_end"), ts("first_event_at"), ts("last_event_at"));
    let quantity = col("quantity").as_primitive::<Decimal128Type>();
    let amount = col("amount").as_primitive::<Decimal128Type>();
    let count = col("event_count").as_primitive::<Int64Type>();
    let partition = col("kafka_partition").as_primitive::<Int32Type>();
    let opt = |a: &arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
    for i in 0..batch.num_rows() {
        let key = Key {
            product: product.value(i).to_owned(),
            contract: contract.value(i).to_owned(),
            marketplace: marketplace.value(i).to_owned(),
            hub: hub.value(i).to_owned(),
            vendor: vendor.value(i).to_owned(),
            provider: provider.value(i).to_owned(),
            asset: asset.value(i).to_owned(),
            item: opt(item, i),
            mpn: mpn.value(i).to_owned(),
            precision: precision.value(i),
            tier: tier.is_valid(i).then(|| tier.value(i)),
            category: opt(category, i),
            period_start: ps.value(i),
            period_end: pe.value(i),
        };
        let row = Sum {
            quantity: quantity.value(i),
            amount: amount.is_valid(i).then(|| amount.value(i)),
            count: count.value(i),
            first: first.value(i),
            last: last.value(i),
            partition: partition.value(i),
        };
        into.entry(key)
            .and_modify(|s| {
                s.quantity += row.quantity;
                s.amount = match (s.amount, row.amount) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
                s.count += row.count;
                s.first = s.first.min(row.first);
                s.last = s.last.max(row.last);
                s.partition = s.partition.min(row.partition);
            })
            .or_insert(row);
    }
}

fn nonce() -> u128 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    nanos ^ (u128::from(std::process::id()) << 64)
}

/// Compacts every (product, month) group of `records` that has at least `min_files` files.
pub async fn compact_records(lake: &DeltaLake, min_files: usize) -> Result<CompactionReport, CompactError> {
    let store = lake.store();
    let state = lake.state(Table::Records).await?;
    let mut groups: BTreeMap<(String, String), Vec<&TableFile>> = BTreeMap::new();
    for file in state.files.values() {
        let key = (
            file.partition("product").unwrap_or_default().to_owned(),
            file.partition("month").unwrap_or_default().to_owned(),
        );
        groups.entry(key).or_default().push(file);
    }
    let mut report = CompactionReport::default();
    let mut request = TableCommit { operation: "compact".to_owned(), ..TableCommit::default() };
    for ((product, month), files) in groups {
        if files.len() < min_files.max(2) {
            continue;
        }
        let sums = sum_records(store, files.iter().copied()).await?;
        for file in &files {
            report.rows_before += file.rows;
            request.remove.push(file.path.clone());
        }
        let mut builder = RecordsBuilder::default();
        for (k, v) in &sums {
            builder.push(&RecordRow {
                product_id: &k.product,
                contract_id: &k.contract,
                marketplace_id: &k.marketplace,
                hub_id: &k.hub,
                vendor_id: &k.vendor,
                provider_id: &k.provider,
                asset_id: &k.asset,
                item_id: k.item.as_deref(),
                item_mpn: &k.mpn,
                item_precision: k.precision,
                tier: k.tier,
                category_id: k.category.as_deref(),
                period_start: k.period_start,
                period_end: k.period_end,
                quantity: v.quantity,
                amount: v.amount,
                event_count: v.count,
                first_event_at: v.first,
                last_event_at: v.last,
                kafka_partition: v.partition,
            });
        }
        let batch = builder.finish();
        let name = format!(
            "product={product}/month={month}/compacted-v{:020}-{:x}.parquet",
            state.version.unwrap_or_default() + 1,
            nonce()
        );
        let path = object_store::path::Path::from(format!("{}/{name}", paths::records_prefix()));
        let partition = [("product", product.as_str()), ("month", month.as_str())];
        let (file, bytes) = encode_file(Table::Records, name, &partition, &batch)
            .map_err(|e| CompactError::Write { path: path.to_string(), reason: e.to_string() })?;
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| CompactError::Write { path: path.to_string(), reason: e.to_string() })?;
        request.claims.push(compaction_claim(Table::Records, &file.partition_values));
        request.add.push(file);
        report.groups += 1;
        report.files_removed += files.len();
        report.rows_after += batch.num_rows() as u64;
    }
    if report.groups > 0 {
        lake.commit(Table::Records, &request).await?;
    }
    Ok(report)
}
