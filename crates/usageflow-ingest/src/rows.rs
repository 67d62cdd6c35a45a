//! The raw accepted events of one partition's batch, as a worker keeps them: the event's own
//! values (id, attributes, exact decimals, times, offsets) in Arrow builders, and the
//! catalogue entries (product, contract, asset, item, category) as indexes. The flusher hands
//! the catalogue columns to the Parquet writer as dictionaries, the indexes as keys and the
//! catalogue's names as values ([`EventRows::take_batch`]), so no name is copied per event.
//!
//! Copying the five catalogue names of each event into string builders took the worker
//! threads, the pipeline's busiest, about 1.8 s of CPU per 10 million events (of 11.7 s in
//! all, and of some 2.6 s for every column of the raw events; `benches/README.md`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Builder, DictionaryArray, Int8Builder, Int32Array, Int64Builder, StringArray, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Array,
};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{Field, Schema, UInt32Type};
use arrow::record_batch::RecordBatch;
use usageflow_lake::tables::{DECIMAL_PRECISION, DECIMAL_SCALE, events_schema};

use crate::validate::{DynamicItems, Index, ItemKey, Valid};

/// Raw accepted events, in the order they were accepted.
#[derive(Debug, Default)]
pub(crate) struct EventRows {
    ids: StringBuilder,
    attributes: StringBuilder,
    assets: Vec<u32>,
    items: Vec<ItemKey>,
    /// 0 for none, else 1 + the index of the category name.
    categories: Vec<u32>,
    tier: Int8Builder,
    quantity: Decimal128Builder,
    amount: Decimal128Builder,
    /// Start, end, Kafka timestamp.
    times: [TimestampMicrosecondBuilder; 3],
    offset: Int64Builder,
}

/// What a raw event holds besides its validated fields.
pub(crate) struct Extra<'a> {
    pub(crate) id: &'a str,
    /// 0 for none, else 1 + the index of the category name.
    pub(crate) category: u32,
    pub(crate) attributes: Option<&'a str>,
    pub(crate) offset: i64,
    pub(crate) kafka_ts: i64,
}

impl EventRows {
    pub(crate) fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Adds an accepted event.
    pub(crate) fn push(&mut self, valid: &Valid, extra: &Extra<'_>) {
        self.ids.append_value(extra.id);
        self.attributes.append_option(extra.attributes);
        self.assets.push(valid.asset);
        self.items.push(valid.item);
        self.categories.push(extra.category);
        self.tier.append_option(valid.tier);
        self.quantity.append_value(valid.quantity);
        self.amount.append_option(valid.amount);
        self.times[0].append_value(valid.start);
        self.times[1].append_value(valid.end);
        self.times[2].append_value(extra.kafka_ts);
        self.offset.append_value(extra.offset);
    }

    /// The events as the lake's `events` columns; the rows are taken. `dynamic` and
    /// `categories` are those of the worker that accepted the events (their indexes are that
    /// worker's). The catalogue columns come as dictionaries of the names (the events' indexes
    /// as keys); [`usageflow_lake::tables::to_parquet`] writes them as the names, under
    /// [`events_schema`].
    pub(crate) fn take_batch(
        &mut self,
        index: &Index,
        dynamic: &DynamicItems,
        categories: &[String],
        partition: i32,
    ) -> RecordBatch {
        let n = self.assets.len();
        let assets = ScalarBuffer::from(std::mem::take(&mut self.assets));
        let products: Vec<u32> = assets.iter().map(|&a| index.assets[a as usize].product).collect();
        // Items: every product's declared items, then the dynamic ones.
        let mut first_item = Vec::with_capacity(index.products.len());
        let mut item_infos = Vec::new();
        for product in &index.products {
            first_item.push(item_infos.len() as u32);
            item_infos.extend(product.items.iter());
        }
        let first_dynamic = item_infos.len() as u32;
        item_infos.extend(dynamic.items.iter().map(|(_, info)| info));
        let items: Vec<u32> = products
            .iter()
            .zip(&self.items)
            .map(|(&p, item)| match *item {
                ItemKey::Declared(i) => first_item[p as usize] + i,
                ItemKey::Dynamic(i) => first_dynamic + i,
            })
            .collect();
        self.items.clear();
        let items = ScalarBuffer::from(items);
        let category_keys =
            UInt32Array::from_iter(std::mem::take(&mut self.categories).into_iter().map(|c| c.checked_sub(1)));

        let names = |keys: UInt32Array, values: StringArray| -> ArrayRef {
            Arc::new(DictionaryArray::<UInt32Type>::try_new(keys, Arc::new(values)).expect("keys within the names"))
        };
        let all = |keys: &ScalarBuffer<u32>| UInt32Array::new(keys.clone(), None);
        let utc = || Some(Arc::<str>::from("UTC"));
        let decimals = |b: &mut Decimal128Builder| {
            Arc::new(b.finish().with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE).expect("valid decimal type"))
        };
        let [start, end, kafka_ts] = &mut self.times;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ids.finish()),
            names(UInt32Array::from(products), index.products.iter().map(|p| Some(p.id.as_str())).collect()),
            names(all(&assets), index.assets.iter().map(|a| Some(a.contract.as_str())).collect()),
            names(all(&assets), index.assets.iter().map(|a| Some(a.id.as_str())).collect()),
            names(all(&items), item_infos.iter().map(|i| i.id.as_deref()).collect()),
            names(all(&items), item_infos.iter().map(|i| Some(i.mpn.as_str())).collect()),
            Arc::new(self.tier.finish()),
            names(category_keys, categories.iter().map(|c| Some(c.as_str())).collect()),
            decimals(&mut self.quantity),
            decimals(&mut self.amount),
            Arc::new(start.finish().with_timezone_opt(utc())),
            Arc::new(end.finish().with_timezone_opt(utc())),
            Arc::new(self.attributes.finish()),
            Arc::new(Int32Array::from_value(partition, n)),
            Arc::new(self.offset.finish()),
            Arc::new(kafka_ts.finish().with_timezone_opt(utc())),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .zip(events_schema().fields())
            .map(|(column, field)| field.as_ref().clone().with_data_type(column.data_type().clone()))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("events columns match their fields")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use usageflow_lake::tables::{EventRow, EventsBuilder, to_parquet};

    use super::*;
    use crate::decode::{CeHeaders, decode};
    use crate::validate::{ValidationConfig, Validator};

    /// 2026-11-25T10:00:00Z in µs.
    const TS: i64 = 1_795_600_800_000_000;

    /// The same events through the rows and through the lake's row-by-row builder give the
    /// same batch: every column, nulls included (no amount, tier, item id, category or
    /// attributes), dynamic items, several products, and ids with escapes.
    #[test]
    fn rows_give_the_batch_of_the_row_builder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog");
        let catalogue = usageflow_catalog::load_dir(&dir).unwrap();
        let index = Arc::new(Index::new(catalogue.data()));
        let mut validator = Validator::new(index.clone(), ValidationConfig::default());
        let events = [
            r#"{"id":"q-1","product":"PRD-200-200-002","asset_id":"AS-1000-0719-1201","item_mpn":"FL-DATA-MB","quantity":"10.25","time":"2026-11-25T09:00:00Z"}"#,
            r#"{"id":"t-\u00e9-2","product":"PRD-100-100-001","asset_id":"AS-1000-7919-0001","item_mpn":"NIM-VCPU-H","quantity":"2","amount":"0.40","tier":0,"time":"2026-11-25T09:30:00Z","category":"compute","attributes":{"region":"eu"}}"#,
            r#"{"id":"d-3","product":"PRD-100-100-001","asset_id":"AS-1000-7919-0001","item":{"mpn":"NIM-NEW-GPU","name":"GPU","precision":"integer"},"quantity":"7","amount":"1.5","tier":1,"start_time":"2026-11-25T08:00:00Z","end_time":"2026-11-25T08:59:00Z"}"#,
            r#"{"id":"q-4","product":"PRD-200-200-002","asset_id":"AS-1000-0719-1201","item_mpn":"FL-DATA-MB","quantity":"0.5","time":"2026-11-25T09:10:00Z","category":"storage","attributes":{}}"#,
        ];
        let mut categories: Vec<String> = Vec::new();
        let mut rows = EventRows::default();
        let mut builder = EventsBuilder::default();
        for (n, json) in events.iter().enumerate() {
            let event = decode(json.as_bytes(), &CeHeaders::default()).unwrap();
            let valid = validator.validate(&event, TS).unwrap_or_else(|r| panic!("{json}: {r:?}"));
            let category = match event.category.as_deref() {
                None => 0,
                Some(c) => match categories.iter().position(|k| k == c) {
                    Some(i) => i as u32 + 1,
                    None => {
                        categories.push(c.to_owned());
                        categories.len() as u32
                    }
                },
            };
            let (offset, kafka_ts) = (100 + n as i64, TS + n as i64);
            let extra = Extra { id: &event.id, category, attributes: event.attributes, offset, kafka_ts };
            rows.push(&valid, &extra);
            let asset = &index.assets[valid.asset as usize];
            let item = validator.dynamic.info(&index, valid.product, valid.item);
            builder.push(&EventRow {
                event_id: &event.id,
                product_id: &index.products[valid.product as usize].id,
                contract_id: &asset.contract,
                asset_id: &asset.id,
                item_id: item.id.as_deref(),
                item_mpn: &item.mpn,
                tier: valid.tier,
                category_id: event.category.as_deref(),
                quantity: valid.quantity,
                amount: valid.amount,
                start_time: valid.start,
                end_time: valid.end,
                attributes: event.attributes,
                kafka_partition: 3,
                kafka_offset: offset,
                kafka_timestamp: kafka_ts,
            });
        }
        assert_eq!(rows.assets.len(), events.len());
        let expected = builder.finish();
        let got = rows.take_batch(&index, &validator.dynamic, &categories, 3);
        assert!(rows.is_empty(), "the rows are taken");
        // Written, the dictionaries are the strings they stand for.
        let file = to_parquet(&got).unwrap();
        let read: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().collect::<Result<_, _>>().unwrap();
        let expected_read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(to_parquet(&expected).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read, vec![expected.clone()]);
        assert_eq!(read, expected_read);
        assert_eq!(read[0].schema(), events_schema());
        assert!(expected.column(4).null_count() > 0 && expected.column(9).null_count() > 0, "nulls are kept");
        assert_eq!(got.column(7).null_count(), expected.column(7).null_count(), "no category is a null key");
        assert_eq!(EventRows::default().take_batch(&index, &validator.dynamic, &[], 0).num_rows(), 0);
    }
}
