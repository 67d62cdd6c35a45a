//! The lake's tables: Arrow schemas, row builders, Parquet encoding and readers.
//!
//! Quantities and amounts are exact decimals: Arrow `Decimal128(38, 8)`, i.e. an `i128`
//! count of 10^-8 units. Timestamps are microseconds, UTC.
//!
//! `records` rows are deltas: the usage record for a key (product, contract, asset, item,
//! tier, category, period) is the sum of its rows across files, which compaction folds
//! into one row.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, Decimal128Builder, Int8Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Decimal128Type, Field, Int8Type, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::delta::{LakeState, Table, TableFile};
use crate::direct;

/// Scale of every decimal column: 8 places, the finest item precision.
pub const DECIMAL_SCALE: i8 = 8;
/// Precision of every decimal column.
pub const DECIMAL_PRECISION: u8 = 38;
/// 10^8: one unit in the decimal columns' representation.
pub const DECIMAL_ONE: i128 = 100_000_000;

fn decimal() -> DataType {
    DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Schema of the `records` table.
pub fn records_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Utf8, false),
        Field::new("contract_id", DataType::Utf8, false),
        Field::new("marketplace_id", DataType::Utf8, false),
        Field::new("hub_id", DataType::Utf8, false),
        Field::new("vendor_id", DataType::Utf8, false),
        Field::new("provider_id", DataType::Utf8, false),
        Field::new("asset_id", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, true),
        Field::new("item_mpn", DataType::Utf8, false),
        Field::new("item_precision", DataType::Int8, false),
        Field::new("tier", DataType::Int8, true),
        Field::new("category_id", DataType::Utf8, true),
        Field::new("period_start", timestamp(), false),
        Field::new("period_end", timestamp(), false),
        Field::new("quantity", decimal(), false),
        Field::new("amount", decimal(), true),
        Field::new("event_count", DataType::Int64, false),
        Field::new("first_event_at", timestamp(), false),
        Field::new("last_event_at", timestamp(), false),
        Field::new("kafka_partition", DataType::Int32, false),
    ]))
}

/// Schema of the `events` table.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("product_id", DataType::Utf8, false),
        Field::new("contract_id", DataType::Utf8, false),
        Field::new("asset_id", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, true),
        Field::new("item_mpn", DataType::Utf8, false),
        Field::new("tier", DataType::Int8, true),
        Field::new("category_id", DataType::Utf8, true),
        Field::new("quantity", decimal(), false),
        Field::new("amount", decimal(), true),
        Field::new("start_time", timestamp(), false),
        Field::new("end_time", timestamp(), false),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_timestamp", timestamp(), false),
    ]))
}

/// One `records` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow<'a> {
    /// Product.
    pub product_id: &'a str,
    /// Distribution contract.
    pub contract_id: &'a str,
    /// Marketplace.
    pub marketplace_id: &'a str,
    /// Hub.
    pub hub_id: &'a str,
    /// Vendor.
    pub vendor_id: &'a str,
    /// Provider.
    pub provider_id: &'a str,
    /// Asset.
    pub asset_id: &'a str,
    /// Item global id; `None` for dynamic items.
    pub item_id: Option<&'a str>,
    /// Item MPN.
    pub item_mpn: &'a str,
    /// Item precision (decimal places).
    pub item_precision: i8,
    /// Tier.
    pub tier: Option<i8>,
    /// Category.
    pub category_id: Option<&'a str>,
    /// Period start (µs).
    pub period_start: i64,
    /// Period end, exclusive (µs).
    pub period_end: i64,
    /// Quantity in 10^-8 units.
    pub quantity: i128,
    /// Amount in 10^-8 units.
    pub amount: Option<i128>,
    /// Events summed.
    pub event_count: i64,
    /// Earliest event start (µs).
    pub first_event_at: i64,
    /// Latest event end (µs).
    pub last_event_at: i64,
    /// Source partition.
    pub kafka_partition: i32,
}

impl RecordRow<'static> {
    /// One day's usage of the sample catalogue's Fieldlink SMS item (`config/catalog`) by its
    /// first asset, from `period_start` (µs), of `units` whole units: a row for examples and
    /// tests, whose fields a caller changes with struct update syntax.
    pub fn sample(period_start: i64, units: i128) -> Self {
        RecordRow {
            product_id: "PRD-200-200-002",
            contract_id: "CRD-20001-10001-00001",
            marketplace_id: "MP-10001",
            hub_id: "HB-0001-0001",
            vendor_id: "VA-200-002",
            provider_id: "PA-500-001",
            asset_id: "AS-1000-0719-1201",
            item_id: Some("PRD-200-200-002-0002"),
            item_mpn: "FL-SMS",
            item_precision: 0,
            tier: None,
            category_id: None,
            period_start,
            period_end: period_start + 86_400_000_000,
            quantity: units * DECIMAL_ONE,
            amount: None,
            event_count: 1,
            first_event_at: period_start,
            last_event_at: period_start,
            kafka_partition: 0,
        }
    }
}

/// Builds `records` batches.
#[derive(Debug)]
pub struct RecordsBuilder {
    strings: [StringBuilder; 11],
    precision: Int8Builder,
    tier: Int8Builder,
    times: [TimestampMicrosecondBuilder; 4],
    quantity: Decimal128Builder,
    amount: Decimal128Builder,
    count: Int64Builder,
    partition: Int32Builder,
}

impl Default for RecordsBuilder {
    fn default() -> Self {
        Self {
            strings: std::array::from_fn(|_| StringBuilder::new()),
            precision: Int8Builder::new(),
            tier: Int8Builder::new(),
            times: std::array::from_fn(|_| TimestampMicrosecondBuilder::new()),
            quantity: Decimal128Builder::new(),
            amount: Decimal128Builder::new(),
            count: Int64Builder::new(),
            partition: Int32Builder::new(),
        }
    }
}

impl RecordsBuilder {
    /// Rows so far.
    pub fn len(&self) -> usize {
        self.count.len()
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a row.
    pub fn push(&mut self, row: &RecordRow<'_>) {
        let s = &mut self.strings;
        s[0].append_value(row.product_id);
        s[1].append_value(row.contract_id);
        s[2].append_value(row.marketplace_id);
        s[3].append_value(row.hub_id);
        s[4].append_value(row.vendor_id);
        s[5].append_value(row.provider_id);
        s[6].append_value(row.asset_id);
        s[7].append_option(row.item_id);
        s[8].append_value(row.item_mpn);
        s[9].append_option(row.category_id);
        self.precision.append_value(row.item_precision);
        self.tier.append_option(row.tier);
        self.times[0].append_value(row.period_start);
        self.times[1].append_value(row.period_end);
        self.times[2].append_value(row.first_event_at);
        self.times[3].append_value(row.last_event_at);
        self.quantity.append_value(row.quantity);
        self.amount.append_option(row.amount);
        self.count.append_value(row.event_count);
        self.partition.append_value(row.kafka_partition);
    }

    /// The batch of all rows added.
    pub fn finish(&mut self) -> RecordBatch {
        let [product, contract, marketplace, hub, vendor, provider, asset, item, mpn, category, _] = &mut self.strings;
        let utc = || Some(Arc::<str>::from("UTC"));
        let [ps, pe, first, last] = &mut self.times;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(product.finish()),
            Arc::new(contract.finish()),
            Arc::new(marketplace.finish()),
            Arc::new(hub.finish()),
            Arc::new(vendor.finish()),
            Arc::new(provider.finish()),
            Arc::new(asset.finish()),
            Arc::new(item.finish()),
            Arc::new(mpn.finish()),
            Arc::new(self.precision.finish()),
            Arc::new(self.tier.finish()),
            Arc::new(category.finish()),
            Arc::new(ps.finish().with_timezone_opt(utc())),
            Arc::new(pe.finish().with_timezone_opt(utc())),
            Arc::new(self.quantity.finish().with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE).expect("valid")),
            Arc::new(self.amount.finish().with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE).expect("valid")),
            Arc::new(self.count.finish()),
            Arc::new(first.finish().with_timezone_opt(utc())),
            Arc::new(last.finish().with_timezone_opt(utc())),
            Arc::new(self.partition.finish()),
        ];
        RecordBatch::try_new(records_schema(), columns).expect("records columns match the schema")
    }
}

/// One `events` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow<'a> {
    /// Producer's event id.
    pub event_id: &'a str,
    /// Product.
    pub product_id: &'a str,
    /// Contract.
    pub contract_id: &'a str,
    /// Asset.
    pub asset_id: &'a str,
    /// Item global id (`None` for dynamic items).
    pub item_id: Option<&'a str>,
    /// Item MPN.
    pub item_mpn: &'a str,
    /// Tier.
    pub tier: Option<i8>,
    /// Category.
    pub category_id: Option<&'a str>,
    /// Quantity in 10^-8 units.
    pub quantity: i128,
    /// Amount in 10^-8 units.
    pub amount: Option<i128>,
    /// Start (µs).
    pub start_time: i64,
    /// End (µs).
    pub end_time: i64,
    /// Attributes as JSON.
    pub attributes: Option<&'a str>,
    /// Source partition.
    pub kafka_partition: i32,
    /// Source offset.
    pub kafka_offset: i64,
    /// Kafka timestamp (µs).
    pub kafka_timestamp: i64,
}

/// Builds `events` batches.
#[derive(Debug)]
pub struct EventsBuilder {
    strings: [StringBuilder; 8],
    tier: Int8Builder,
    quantity: Decimal128Builder,
    amount: Decimal128Builder,
    times: [TimestampMicrosecondBuilder; 3],
    partition: Int32Builder,
    offset: Int64Builder,
}

impl Default for EventsBuilder {
    fn default() -> Self {
        Self {
            strings: std::array::from_fn(|_| StringBuilder::new()),
            tier: Int8Builder::new(),
            quantity: Decimal128Builder::new(),
            amount: Decimal128Builder::new(),
            times: std::array::from_fn(|_| TimestampMicrosecondBuilder::new()),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
        }
    }
}

impl EventsBuilder {
    /// Rows so far.
    pub fn len(&self) -> usize {
        self.offset.len()
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a row.
    pub fn push(&mut self, row: &EventRow<'_>) {
        let s = &mut self.strings;
        s[0].append_value(row.event_id);
        s[1].append_value(row.product_id);
        s[2].append_value(row.contract_id);
        s[3].append_value(row.asset_id);
        s[4].append_option(row.item_id);
        s[5].append_value(row.item_mpn);
        s[6].append_option(row.category_id);
        s[7].append_option(row.attributes);
        self.tier.append_option(row.tier);
        self.quantity.append_value(row.quantity);
        self.amount.append_option(row.amount);
        self.times[0].append_value(row.start_time);
        self.times[1].append_value(row.end_time);
        self.times[2].append_value(row.kafka_timestamp);
        self.partition.append_value(row.kafka_partition);
        self.offset.append_value(row.kafka_offset);
    }

    /// The batch of all rows added.
    pub fn finish(&mut self) -> RecordBatch {
        let [event, product, contract, asset, item, mpn, category, attributes] = &mut self.strings;
        let utc = || Some(Arc::<str>::from("UTC"));
        let [start, end, ts] = &mut self.times;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(event.finish()),
            Arc::new(product.finish()),
            Arc::new(contract.finish()),
            Arc::new(asset.finish()),
            Arc::new(item.finish()),
            Arc::new(mpn.finish()),
            Arc::new(self.tier.finish()),
            Arc::new(category.finish()),
            Arc::new(self.quantity.finish().with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE).expect("valid")),
            Arc::new(self.amount.finish().with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE).expect("valid")),
            Arc::new(start.finish().with_timezone_opt(utc())),
            Arc::new(end.finish().with_timezone_opt(utc())),
            Arc::new(attributes.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(ts.finish().with_timezone_opt(utc())),
        ];
        RecordBatch::try_new(events_schema(), columns).expect("events columns match the schema")
    }
}

/// Columns whose values are (nearly) all distinct: a dictionary would only cost time before
/// the writer falls back to plain encoding.
const DISTINCT_COLUMNS: [&str; 6] =
    ["event_id", "kafka_offset", "attributes", "start_time", "end_time", "kafka_timestamp"];

/// Integer columns of (nearly) increasing values: delta-encoded, a few bits per value.
const DELTA_COLUMNS: [&str; 4] = ["kafka_offset", "start_time", "end_time", "kafka_timestamp"];

/// Columns without statistics: random ids and JSON text, whose minimum and maximum prune
/// nothing but cost a string comparison per value to keep.
const NO_STATISTICS_COLUMNS: [&str; 2] = ["event_id", "attributes"];

/// Columns without statistics in the raw events table (the batches with an `event_id`
/// column): an events file holds one Kafka partition's batch, every product, contract, asset
/// and size of event mixed, so the minimum and maximum of these prune nothing there. Usage
/// records files, one per product and month, keep them. Without statistics, the catalogue
/// columns and the decimals are encoded directly (`direct`).
const EVENTS_NO_STATISTICS_COLUMNS: [&str; 8] =
    ["product_id", "contract_id", "asset_id", "item_id", "item_mpn", "category_id", "quantity", "amount"];

/// Decimal columns without a dictionary in the raw events table: event sizes repeat too
/// little for one to pay.
const EVENTS_NO_DICTIONARY_COLUMNS: [&str; 2] = ["quantity", "amount"];

/// Encodes a batch as a Parquet file (Snappy, one row group per million rows): dictionary
/// encoding except for the columns of distinct values, delta encoding for offsets and event
/// times, page statistics except where they prune nothing (see the lists above). A dictionary
/// column is written as the values it stands for: readers see the value type. Dictionary
/// and wide decimal columns without statistics (the raw events' catalogue columns, quantity
/// and amount) are encoded directly (`direct`).
pub fn to_parquet(batch: &RecordBatch) -> Result<Bytes, parquet::errors::ParquetError> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => f.as_ref().clone().with_data_type(value.as_ref().clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, batch.schema().metadata().clone()));
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1_000_000))
        .set_created_by("usageflow".to_owned());
    for column in DISTINCT_COLUMNS {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    for column in DELTA_COLUMNS {
        props = props.set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    let events = schema.column_with_name("event_id").is_some();
    let (no_statistics, no_dictionary): (&[&str], &[&str]) =
        if events { (&EVENTS_NO_STATISTICS_COLUMNS, &EVENTS_NO_DICTIONARY_COLUMNS) } else { (&[], &[]) };
    for column in NO_STATISTICS_COLUMNS.iter().chain(no_statistics) {
        props = props.set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::None);
    }
    for column in no_dictionary {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    write_parquet(batch, schema, props.build())
}

/// Encodes `batch` with `schema` (its dictionary fields given as their value types) and
/// `props`. The columns that `direct::eligible` accepts are encoded directly (see the
/// module), the other columns by the Arrow writer.
pub(crate) fn write_parquet(
    batch: &RecordBatch,
    schema: SchemaRef,
    props: WriterProperties,
) -> Result<Bytes, parquet::errors::ParquetError> {
    let mut buffer = Vec::with_capacity(1 << 20);
    let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(props.clone()))?;
    let leaves: Vec<_> = {
        let parquet = ArrowSchemaConverter::new().convert(&schema)?;
        (0..parquet.num_columns()).map(|i| parquet.column(i)).collect()
    };
    let flat = leaves.len() == batch.num_columns();
    if !(flat && batch.columns().iter().zip(&leaves).any(|(c, d)| direct::eligible(c, d, &props))) {
        writer.write(batch)?;
        writer.close()?;
        return Ok(Bytes::from(buffer));
    }
    // Column by column, so that the columns `direct` takes are encoded there.
    let (mut file, factory) = writer.into_serialized_writer()?;
    let rows_per_group = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
    for (group, start) in (0..batch.num_rows()).step_by(rows_per_group).enumerate() {
        let slice = batch.slice(start, rows_per_group.min(batch.num_rows() - start));
        let writers = factory.create_column_writers(group)?;
        let mut row_group = file.next_row_group()?;
        for (((column, field), mut writer), descr) in
            slice.columns().iter().zip(schema.fields()).zip(writers).zip(&leaves)
        {
            if direct::eligible(column, descr, &props) {
                let (bytes, close) = direct::encode(column, descr, &props)?;
                row_group.append_column(&bytes, close)?;
            } else {
                for leaf in compute_leaves(field, column)? {
                    writer.write(&leaf)?;
                }
                writer.close()?.append_to_row_group(&mut row_group)?;
            }
        }
        row_group.close()?;
    }
    file.close()?;
    Ok(Bytes::from(buffer))
}

/// Errors reading the lake's tables.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Object store failure.
    #[error("reading {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// Not a readable Parquet file of the expected shape.
    #[error("reading {path}: {reason}")]
    Format { path: String, reason: String },
}

/// Reads every batch of a Parquet object.
pub async fn read_parquet(store: &Arc<dyn ObjectStore>, path: &str) -> Result<Vec<RecordBatch>, ReadError> {
    let location = Path::from(path);
    let store_err = |source| ReadError::Store { path: path.to_owned(), source };
    let bytes = store.get(&location).await.map_err(store_err)?.bytes().await.map_err(store_err)?;
    let format_err = |e: &dyn std::fmt::Display| ReadError::Format { path: path.to_owned(), reason: e.to_string() };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| format_err(&e))?
        .build()
        .map_err(|e| format_err(&e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| format_err(&e))
}

/// The identity of a usage record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    /// Product.
    pub product_id: String,
    /// Contract.
    pub contract_id: String,
    /// Asset.
    pub asset_id: String,
    /// Item MPN.
    pub item_mpn: String,
    /// Tier.
    pub tier: Option<i8>,
    /// Category.
    pub category_id: Option<String>,
    /// Period start (µs).
    pub period_start: i64,
}

/// A usage record's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordTotals {
    /// Quantity in 10^-8 units.
    pub quantity: i128,
    /// Amount in 10^-8 units.
    pub amount: Option<i128>,
    /// Events.
    pub event_count: i64,
    /// Earliest event start (µs).
    pub first_event_at: i64,
    /// Latest event end (µs).
    pub last_event_at: i64,
}

impl RecordTotals {
    /// Folds another delta of the same record in.
    pub fn merge(&mut self, other: &RecordTotals) {
        if self.event_count == 0 {
            *self = *other;
            return;
        }
        self.quantity += other.quantity;
        self.amount = match (self.amount, other.amount) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.event_count += other.event_count;
        self.first_event_at = self.first_event_at.min(other.first_event_at);
        self.last_event_at = self.last_event_at.max(other.last_event_at);
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch.column_by_name(name).unwrap_or_else(|| panic!("records file without column {name}"))
}

/// Sums the committed `records` files of a lake state into per-record totals.
pub async fn record_totals(
    store: &Arc<dyn ObjectStore>,
    state: &LakeState,
) -> Result<BTreeMap<RecordKey, RecordTotals>, ReadError> {
    let mut totals: BTreeMap<RecordKey, RecordTotals> = BTreeMap::new();
    for file in state.files_of(Table::Records) {
        for batch in read_parquet(store, &file.location()).await? {
            let s = |n| column(&batch, n).as_string::<i32>();
            let (product, contract, asset, mpn, category) =
                (s("product_id"), s("contract_id"), s("asset_id"), s("item_mpn"), s("category_id"));
            let tier = column(&batch, "tier").as_primitive::<Int8Type>();
            let ts = |n| column(&batch, n).as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let (period, first, last) = (ts("period_start"), ts("first_event_at"), ts("last_event_at"));
            let quantity = column(&batch, "quantity").as_primitive::<Decimal128Type>();
            let amount = column(&batch, "amount").as_primitive::<Decimal128Type>();
            let count = column(&batch, "event_count").as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                let key = RecordKey {
                    product_id: product.value(i).to_owned(),
                    contract_id: contract.value(i).to_owned(),
                    asset_id: asset.value(i).to_owned(),
                    item_mpn: mpn.value(i).to_owned(),
                    tier: tier.is_valid(i).then(|| tier.value(i)),
                    category_id: category.is_valid(i).then(|| category.value(i).to_owned()),
                    period_start: period.value(i),
                };
                let delta = RecordTotals {
                    quantity: quantity.value(i),
                    amount: amount.is_valid(i).then(|| amount.value(i)),
                    event_count: count.value(i),
                    first_event_at: first.value(i),
                    last_event_at: last.value(i),
                };
                totals.entry(key).or_default().merge(&delta);
            }
        }
    }
    Ok(totals)
}

/// Event ids (with their Kafka partition and product) of the committed `events` files of the
/// given partitions: `partitions` maps each to the offset below which its events are read, so
/// that what is read is exactly a prefix of each partition.
pub async fn event_ids(
    store: &Arc<dyn ObjectStore>,
    files: impl IntoIterator<Item = &TableFile>,
    partitions: &BTreeMap<i32, i64>,
    mut each: impl FnMut(i32, &str, &str),
) -> Result<u64, ReadError> {
    let mut n = 0;
    for file in files {
        if file.kafka_partition().is_some_and(|p| !partitions.contains_key(&p)) {
            continue;
        }
        for batch in read_parquet(store, &file.location()).await? {
            let ids = column(&batch, "event_id").as_string::<i32>();
            let products = column(&batch, "product_id").as_string::<i32>();
            let parts = column(&batch, "kafka_partition").as_primitive::<Int32Type>();
            let offsets = column(&batch, "kafka_offset").as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                match partitions.get(&parts.value(i)) {
                    Some(&below) if offsets.value(i) < below => {}
                    _ => continue,
                }
                each(parts.value(i), products.value(i), ids.value(i));
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// Per column of the file's only row group: (name, has statistics, encodings).
    fn columns(bytes: Bytes) -> Vec<(String, bool, Vec<Encoding>)> {
        let reader = SerializedFileReader::new(bytes).unwrap();
        let group = reader.metadata().row_group(0);
        group
            .columns()
            .iter()
            .map(|c| (c.column_path().string(), c.statistics().is_some(), c.encodings().collect()))
            .collect()
    }

    #[test]
    fn events_files_skip_useless_statistics_and_delta_encode_offsets_and_times() {
        let mut events = EventsBuilder::default();
        for n in 0..100i64 {
            let id = format!("ev-{n}");
            events.push(&EventRow {
                event_id: &id,
                product_id: if n % 2 == 0 { "PRD-1" } else { "PRD-2" },
                contract_id: "CTR-1",
                asset_id: "AS-1",
                item_id: Some("PRD-1-0001"),
                item_mpn: "M",
                tier: None,
                category_id: None,
                quantity: 100_000_000,
                amount: None,
                start_time: 1_764_064_800_000_000 + n,
                end_time: 1_764_064_800_000_000 + n,
                attributes: None,
                kafka_partition: 0,
                kafka_offset: n,
                kafka_timestamp: 1_764_064_800_000_000,
            });
        }
        let cols = columns(to_parquet(&events.finish()).unwrap());
        let stats = |name: &str| cols.iter().find(|c| c.0 == name).unwrap().1;
        let encodings = |name: &str| cols.iter().find(|c| c.0 == name).unwrap().2.clone();
        for name in ["event_id", "attributes", "product_id", "contract_id", "asset_id", "item_mpn", "quantity"] {
            assert!(!stats(name), "{name} has statistics");
        }
        for name in ["start_time", "end_time", "kafka_offset", "kafka_timestamp"] {
            assert!(stats(name), "{name} lacks statistics");
        }
        for name in ["kafka_offset", "start_time"] {
            assert!(encodings(name).contains(&Encoding::DELTA_BINARY_PACKED), "{name}: {:?}", encodings(name));
        }
        assert!(encodings("product_id").contains(&Encoding::RLE_DICTIONARY), "{:?}", encodings("product_id"));

        // Records files (one product and month each) keep their catalogue statistics.
        let mut records = RecordsBuilder::default();
        records.push(&RecordRow {
            product_id: "PRD-1",
            contract_id: "CTR-1",
            marketplace_id: "MP-1",
            hub_id: "HB-1",
            vendor_id: "VA-1",
            provider_id: "PA-1",
            asset_id: "AS-1",
            item_id: Some("PRD-1-0001"),
            item_mpn: "M",
            item_precision: 0,
            tier: None,
            category_id: None,
            period_start: 0,
            period_end: 1,
            quantity: 1,
            amount: None,
            event_count: 1,
            first_event_at: 0,
            last_event_at: 0,
            kafka_partition: 0,
        });
        let cols = columns(to_parquet(&records.finish()).unwrap());
        for name in ["product_id", "asset_id", "item_mpn"] {
            assert!(cols.iter().any(|c| c.0 == name && c.1), "records' {name} lacks statistics");
        }
    }
}
