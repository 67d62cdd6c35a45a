//! Columns encoded directly, where the Arrow writer spends time the data does not need.
//!
//! * **Dictionary columns.** The Arrow writer encodes a dictionary array by looking every
//!   row's value up again in a dictionary of its own (a hash and a comparison of the string
//!   per row): it does not use the keys it is given. The raw events' catalogue columns
//!   (product, contract, asset, item, MPN, category) are such arrays, keys into the
//!   catalogue's names, and on the ingest path those lookups were the largest single cost of
//!   writing an events file. Here the chunk is written from the keys: the values the rows use,
//!   in the order of first use, as the dictionary page (a string is looked up once per key, so
//!   keys standing for the same string share an entry), and each row's position among them,
//!   RLE/bit-packed, as the data pages.
//! * **Wide decimals** (`Decimal128` of precision above 18, stored as fixed-length byte
//!   arrays): the Arrow writer makes a reference-counted buffer slice per value and compares
//!   values for statistics. Here each value's big-endian bytes are written straight into the
//!   page.
//!
//! Upstream: the Arrow writer's re-encoding of dictionary arrays is apache/arrow-rs#10465
//! ("Avoid re-encoding dictionaries when writing to Parquet", open; apache/arrow-rs#9520, a
//! pass-through, was closed unmerged, and apache/arrow-rs#10862 caches the per-row lookups).
//! For decimals, apache/arrow-rs#10364 (in the arrow 59 the workspace uses) replaced a
//! buffer per value with slices of one buffer, but still makes a 32-byte `Bytes` per value
//! before encoding it. The test
//! `the_arrow_writer_still_derives_its_own_dictionary_from_the_values` fails once the Arrow
//! writer uses the keys it is given: measure this module against it then (the `decode` and
//! `ingest_e2e` benchmarks) and remove it unless it is still at least 10 % faster end to end.
//!
//! Both produce what the Arrow writer would for the column: version 1 data pages with
//! RLE/bit-packed definition levels (a PLAIN dictionary page and `RLE_DICTIONARY` values, or
//! PLAIN values), the writer's page row limit and compression, and an offset index.
//! [`eligible`] says which columns are taken: those, when written without statistics or a
//! bloom filter, with Snappy or no compression, as the dictionary setting says; every other
//! column goes through the Arrow writer.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Decimal128Type, UInt32Type};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Whether [`encode`] writes this column: a dictionary of strings with `u32` keys (dictionary
/// encoding on) or a decimal stored as fixed-length bytes (dictionary encoding off, no other
/// encoding asked for); flat (no repetition, at most one definition level), at least one row
/// not null, no statistics, no bloom filter, version 1 pages, Snappy or no compression.
pub(crate) fn eligible(array: &ArrayRef, descr: &ColumnDescPtr, props: &WriterProperties) -> bool {
    let path = descr.path();
    let kind = match array.data_type() {
        DataType::Dictionary(key, value) => {
            **key == DataType::UInt32 && **value == DataType::Utf8 && props.dictionary_enabled(path)
        }
        DataType::Decimal128(..) => {
            descr.physical_type() == PhysicalType::FIXED_LEN_BYTE_ARRAY
                && (1..=16).contains(&descr.type_length())
                && !props.dictionary_enabled(path)
                && props.encoding(path).is_none_or(|e| e == Encoding::PLAIN)
        }
        _ => false,
    };
    kind && descr.max_rep_level() == 0
        && descr.max_def_level() <= 1
        && array.logical_null_count() < array.len()
        && props.statistics_enabled(path) == EnabledStatistics::None
        && props.bloom_filter_properties(path).is_none()
        && props.writer_version() == WriterVersion::PARQUET_1_0
        && matches!(props.compression(path), Compression::SNAPPY | Compression::UNCOMPRESSED)
}

/// Encodes an [`eligible`] column as one column chunk: its bytes (offsets in the metadata
/// relative to their start) and what closing a column writer would have returned, for
/// `SerializedRowGroupWriter::append_column`.
pub(crate) fn encode(
    array: &ArrayRef,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<(Bytes, ColumnCloseResult)> {
    let chunk = Chunk { descr, props, rows: array.len(), rows_per_page: props.data_page_row_count_limit().max(1) };
    if !chunk.nullable() && array.logical_null_count() > 0 {
        return Err(ParquetError::General(format!("column {} is required but holds nulls", descr.path())));
    }
    match array.data_type() {
        DataType::Decimal128(..) => chunk.decimals(array),
        _ => chunk.dictionary(array),
    }
}

/// One column chunk being encoded.
struct Chunk<'a> {
    descr: &'a ColumnDescPtr,
    props: &'a WriterProperties,
    rows: usize,
    rows_per_page: usize,
}

/// A data page before compression: its first row, its rows, and its bytes.
struct DataPage {
    first_row: usize,
    rows: usize,
    data: Vec<u8>,
}

impl Chunk<'_> {
    fn nullable(&self) -> bool {
        self.descr.max_def_level() == 1
    }

    /// The pages' row ranges.
    fn page_rows(&self) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let (rows, per_page) = (self.rows, self.rows_per_page);
        (0..rows).step_by(per_page).map(move |start| start..(start + per_page).min(rows))
    }

    /// A page's definition levels (for a nullable column), length-prefixed as version 1 pages
    /// have them.
    fn levels(&self, valid: impl Iterator<Item = bool>, levels: &mut Vec<u32>, out: &mut Vec<u8>) {
        if !self.nullable() {
            return;
        }
        levels.clear();
        levels.extend(valid.map(u32::from));
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        hybrid(levels, 1, out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn decimals(&self, array: &ArrayRef) -> Result<(Bytes, ColumnCloseResult)> {
        let values = array.as_primitive::<Decimal128Type>();
        let width = self.descr.type_length() as usize;
        let mut levels = Vec::new();
        let mut pages = Vec::new();
        for rows in self.page_rows() {
            let mut data = Vec::with_capacity(rows.len() * width + rows.len() / 4 + 16);
            self.levels(rows.clone().map(|r| values.is_valid(r)), &mut levels, &mut data);
            for row in rows.clone() {
                if values.is_valid(row) {
                    data.extend_from_slice(&values.value(row).to_be_bytes()[16 - width..]);
                }
            }
            pages.push(DataPage { first_row: rows.start, rows: rows.len(), data });
        }
        self.write(None, Encoding::PLAIN, pages)
    }

    fn dictionary(&self, array: &ArrayRef) -> Result<(Bytes, ColumnCloseResult)> {
        let dict = array.as_dictionary::<UInt32Type>();
        let names: &StringArray = dict.values().as_string();
        let keys = dict.keys();
        let valid = |row: usize| keys.is_valid(row) && names.is_valid(keys.values()[row] as usize);

        // Every non-null row's position in the file's dictionary (values in order of first
        // use), and per page its definition levels.
        let mut position = vec![u32::MAX; names.len()];
        let mut used: Vec<u32> = Vec::new();
        let mut first_of: HashMap<&str, u32> = HashMap::new();
        let mut positions = Vec::with_capacity(self.rows);
        let mut pages = Vec::new();
        let mut ends = Vec::new();
        let mut levels = Vec::new();
        for rows in self.page_rows() {
            let mut data = Vec::new();
            self.levels(rows.clone().map(valid), &mut levels, &mut data);
            for row in rows.clone().filter(|&r| valid(r)) {
                let key = keys.values()[row] as usize;
                if position[key] == u32::MAX {
                    // Keys standing for the same string share one dictionary entry.
                    position[key] = *first_of.entry(names.value(key)).or_insert_with(|| {
                        used.push(key as u32);
                        used.len() as u32 - 1
                    });
                }
                positions.push(position[key]);
            }
            ends.push(positions.len());
            pages.push(DataPage { first_row: rows.start, rows: rows.len(), data });
        }
        // The positions' bit width is known once the dictionary is complete.
        let width = bit_width(used.len().saturating_sub(1) as u32);
        let mut start = 0;
        for (page, end) in pages.iter_mut().zip(ends) {
            page.data.push(width);
            hybrid(&positions[start..end], width, &mut page.data);
            start = end;
        }
        let mut dictionary = Vec::with_capacity(used.len() * 24);
        for &key in &used {
            let value = names.value(key as usize).as_bytes();
            dictionary.extend_from_slice(&(value.len() as u32).to_le_bytes());
            dictionary.extend_from_slice(value);
        }
        self.write(Some((dictionary, used.len())), Encoding::RLE_DICTIONARY, pages)
    }

    /// Writes the dictionary page (if any) and the data pages, and describes the chunk.
    fn write(
        &self,
        dictionary: Option<(Vec<u8>, usize)>,
        encoding: Encoding,
        mut pages: Vec<DataPage>,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let compression = self.props.compression(self.descr.path());
        let mut sink = TrackedWrite::new(Vec::with_capacity(64 * 1024));
        let mut writer = SerializedPageWriter::new(&mut sink);
        let (mut compressed_size, mut uncompressed_size) = (0i64, 0i64);
        let mut stats = Vec::new();
        let mut data_offset = 0;
        let has_dictionary = dictionary.is_some();
        if let Some((values, count)) = dictionary {
            let size = values.len();
            let buf = compress(values, compression)?;
            let page =
                Page::DictionaryPage { buf, num_values: count as u32, encoding: Encoding::PLAIN, is_sorted: false };
            let spec = writer.write_page(CompressedPage::new(page, size))?;
            compressed_size += spec.compressed_size as i64;
            uncompressed_size += spec.uncompressed_size as i64;
            data_offset = spec.bytes_written as i64;
            stats.push(PageEncodingStats { page_type: PageType::DICTIONARY_PAGE, encoding: Encoding::PLAIN, count: 1 });
        }
        let mut locations = Vec::with_capacity(pages.len());
        for page in &mut pages {
            let size = page.data.len();
            let buf = compress(std::mem::take(&mut page.data), compression)?;
            let compressed = Page::DataPage {
                buf,
                num_values: page.rows as u32,
                encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            };
            let spec = writer.write_page(CompressedPage::new(compressed, size))?;
            compressed_size += spec.compressed_size as i64;
            uncompressed_size += spec.uncompressed_size as i64;
            locations.push(PageLocation {
                offset: spec.offset as i64,
                compressed_page_size: spec.compressed_size as i32,
                first_row_index: page.first_row as i64,
            });
        }
        writer.close()?;
        stats.push(PageEncodingStats { page_type: PageType::DATA_PAGE, encoding, count: pages.len() as i32 });
        let mut encodings = vec![Encoding::PLAIN, Encoding::RLE];
        if encoding != Encoding::PLAIN {
            encodings.push(encoding);
        }
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(compression)
            .set_encodings(encodings)
            .set_page_encoding_stats(stats)
            .set_total_compressed_size(compressed_size)
            .set_total_uncompressed_size(uncompressed_size)
            .set_num_values(self.rows as i64)
            .set_dictionary_page_offset(has_dictionary.then_some(0))
            .set_data_page_offset(data_offset)
            .build()?;
        let bytes = sink.into_inner()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: (!self.props.offset_index_disabled())
                .then_some(OffsetIndexMetaData { page_locations: locations, unencoded_byte_array_data_bytes: None }),
        };
        Ok((Bytes::from(bytes), close))
    }
}

/// `data` compressed as the column is.
fn compress(data: Vec<u8>, compression: Compression) -> Result<Bytes> {
    match compression {
        Compression::UNCOMPRESSED => Ok(Bytes::from(data)),
        Compression::SNAPPY => {
            let mut out = vec![0; snap::raw::max_compress_len(data.len())];
            let n = snap::raw::Encoder::new()
                .compress(&data, &mut out)
                .map_err(|e| ParquetError::General(format!("snappy: {e}")))?;
            out.truncate(n);
            Ok(Bytes::from(out))
        }
        other => Err(ParquetError::General(format!("{other} is not written here"))),
    }
}

/// Bits needed for values up to `max`.
fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Appends `values` in Parquet's RLE/bit-packed hybrid encoding at `width` bits: a run of
/// eight or more equal values as one RLE run, everything else in bit-packed groups of eight
/// (the last group padded with zeros; the page's value count says where the values end).
fn hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let value_bytes = usize::from(width).div_ceil(8);
    let mut packed_from: Option<usize> = None;
    let mut i = 0;
    while i < values.len() {
        let group = &values[i..(i + 8).min(values.len())];
        let first = group[0];
        if width == 0 || group.iter().all(|&v| v == first) {
            if let Some(from) = packed_from.take() {
                bit_packed(&values[from..i], width, out);
            }
            let mut end = i + group.len();
            while end < values.len() && values[end] == first {
                end += 1;
            }
            uleb128(((end - i) as u64) << 1, out);
            out.extend_from_slice(&first.to_le_bytes()[..value_bytes]);
            i = end;
        } else {
            packed_from.get_or_insert(i);
            i += group.len();
        }
    }
    if let Some(from) = packed_from {
        bit_packed(&values[from..], width, out);
    }
}

/// One bit-packed run of `values` (a multiple of eight of them, except at the end).
fn bit_packed(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let groups = values.len().div_ceil(8);
    uleb128(((groups as u64) << 1) | 1, out);
    out.reserve(groups * usize::from(width));
    let padding = groups * 8 - values.len();
    let mut acc = 0u64;
    let mut bits = 0u32;
    for &v in values.iter().chain(std::iter::repeat_n(&0, padding)) {
        acc |= u64::from(v) << bits;
        bits += u32::from(width);
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
}

fn uleb128(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::RecordBatchReader;
    use arrow::array::{Decimal128Array, DictionaryArray, Int64Array, RecordBatch, UInt32Array};
    use arrow::compute::{cast, concat_batches};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
    };
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::properties::WriterProperties;
    use proptest::prelude::*;

    use super::*;
    use crate::tables::write_parquet;

    /// A batch of a dictionary column `name` and a row number, the schema it is written with
    /// (the dictionary as its value type), and the strings it stands for.
    fn batch(keys: Vec<Option<u32>>, names: Vec<Option<String>>, nullable: bool) -> (RecordBatch, Arc<Schema>) {
        let rows = keys.len() as i64;
        let dict = DictionaryArray::<UInt32Type>::try_new(UInt32Array::from(keys), Arc::new(StringArray::from(names)))
            .unwrap();
        let columns: Vec<ArrayRef> = vec![Arc::new(dict), Arc::new(Int64Array::from_iter_values(0..rows))];
        let written = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, nullable),
            Field::new("row", DataType::Int64, false),
        ]));
        let own = Arc::new(Schema::new(vec![
            Field::new("name", columns[0].data_type().clone(), nullable),
            Field::new("row", DataType::Int64, false),
        ]));
        (RecordBatch::try_new(own, columns).unwrap(), written)
    }

    fn props(page_rows: usize, group_rows: usize, statistics: EnabledStatistics) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(page_rows.min(1024))
            .set_max_row_group_row_count(Some(group_rows))
            .set_statistics_enabled(statistics)
            .build()
    }

    fn read(bytes: Bytes, selection: Option<RowSelection>) -> RecordBatch {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let mut builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options).unwrap();
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        let reader = builder.build().unwrap();
        let schema = reader.schema();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        concat_batches(&schema, &batches).unwrap()
    }

    fn expected(batch: &RecordBatch) -> ArrayRef {
        cast(batch.column(0), &DataType::Utf8).unwrap()
    }

    #[test]
    fn writes_what_the_arrow_writer_reads_back_with_pages_and_row_groups() {
        // 45,001 rows: 3 row groups of at most 20,000 rows, pages of 700 rows; keys into 3,000
        // names of which some are null and most stand for the same string as two other keys
        // (as the contract of each asset does), and null keys.
        let names: Vec<Option<String>> =
            (0..3000).map(|i| (i % 97 != 5).then(|| format!("CTR-{:04}-{:04}", i % 1100, i % 1100 * 7))).collect();
        let keys: Vec<Option<u32>> =
            (0..45_001u32).map(|r| (r % 31 != 0).then_some((r.wrapping_mul(2_654_435_761) >> 7) % 3000)).collect();
        let (batch, schema) = batch(keys, names, true);
        let direct = props(700, 20_000, EnabledStatistics::None);
        let leaf = parquet::arrow::ArrowSchemaConverter::new().convert(&schema).unwrap().column(0);
        assert!(eligible(batch.column(0), &leaf, &direct));
        let bytes = write_parquet(&batch, schema.clone(), direct).unwrap();

        // The same batch through the Arrow writer (statistics make the column ineligible).
        let by_arrow = write_parquet(&batch, schema.clone(), props(700, 20_000, EnabledStatistics::Chunk)).unwrap();
        let ours = read(bytes.clone(), None);
        let theirs = read(by_arrow.clone(), None);
        assert_eq!(ours.num_rows(), 45_001);
        assert_eq!(ours.column(0).as_ref(), expected(&batch).as_ref());
        assert_eq!(ours.column(0).as_ref(), theirs.column(0).as_ref());
        assert_eq!(ours.column(1).as_ref(), batch.column(1).as_ref());

        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap().metadata().clone();
        let arrow_meta = ParquetRecordBatchReaderBuilder::try_new(by_arrow).unwrap().metadata().clone();
        assert_eq!(meta.num_row_groups(), 3);
        for (group, arrow_group) in meta.row_groups().iter().zip(arrow_meta.row_groups()) {
            let column = group.column(0);
            let arrow_column = arrow_group.column(0);
            assert_eq!(group.num_rows(), arrow_group.num_rows());
            assert_eq!(column.num_values(), arrow_column.num_values());
            assert!(column.dictionary_page_offset().is_some());
            assert_eq!(column.encodings().collect::<Vec<_>>(), arrow_column.encodings().collect::<Vec<_>>());
            // The same dictionary and positions, so sizes within a few percent of each other.
            let (ours, theirs) = (column.compressed_size() as f64, arrow_column.compressed_size() as f64);
            assert!((ours / theirs - 1.0).abs() < 0.1, "{ours} bytes against the Arrow writer's {theirs}");
        }

        // Skipping pages through the offset index lands on the right rows.
        let selection = RowSelection::from(vec![
            RowSelector::skip(20_000 + 700 * 5 + 3),
            RowSelector::select(1_500),
            RowSelector::skip(15_000),
            RowSelector::select(10),
        ]);
        let picked = read(bytes, Some(selection));
        let rows = picked.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(rows.len(), 1_510);
        let all = expected(&batch);
        let all = all.as_string::<i32>();
        let names = picked.column(0);
        let names = names.as_string::<i32>();
        for (i, row) in rows.iter().enumerate() {
            let row = row.unwrap() as usize;
            assert_eq!(names.is_null(i), all.is_null(row), "row {row}");
            if !all.is_null(row) {
                assert_eq!(names.value(i), all.value(row), "row {row}");
            }
        }
    }

    /// The reason this module exists, watched: the Arrow writer ignores a dictionary array's
    /// keys and interns every row's value again, so its dictionary page holds the values the
    /// rows use, once each, in first-use order, whatever the array's dictionary holds. Once it
    /// passes the dictionary through (apache/arrow-rs#10465), the page holds the array's own
    /// dictionary, this fails, and this module must earn its place again (see the module's
    /// documentation).
    #[test]
    fn the_arrow_writer_still_derives_its_own_dictionary_from_the_values() {
        use parquet::file::reader::{FileReader as _, SerializedFileReader};
        // A dictionary with an unused entry and a value twice; rows "b", "a", "b", "b".
        let names = vec![Some("unused".to_owned()), Some("b".into()), Some("a".into()), Some("b".into())];
        let (batch, schema) = batch(vec![Some(1), Some(2), Some(3), Some(1)], names, true);
        let by_arrow = write_parquet(&batch, schema, props(1000, 1000, EnabledStatistics::Chunk)).unwrap();
        let reader = SerializedFileReader::new(by_arrow).unwrap();
        let mut pages = reader.get_row_group(0).unwrap().get_column_page_reader(0).unwrap();
        match pages.get_next_page().unwrap() {
            Some(Page::DictionaryPage { num_values, .. }) => assert_eq!(
                num_values, 2,
                "the Arrow writer now keeps the array's dictionary ({num_values} entries, not the 2 values the rows \
                 use): apache/arrow-rs#10465 has landed; measure direct.rs against it"
            ),
            other => panic!("expected a dictionary page first, got {:?}", other.map(|p| p.page_type())),
        }
    }

    #[test]
    fn a_single_name_and_required_columns() {
        // One name: positions of zero bits.
        let (one, schema) = batch(vec![Some(0); 5000], vec![Some("PRD-1".into())], false);
        let bytes = write_parquet(&one, schema, props(1000, 1_000_000, EnabledStatistics::None)).unwrap();
        assert_eq!(read(bytes, None).column(0).as_ref(), expected(&one).as_ref());
        // A required column holding a null is refused, as the Arrow writer refuses it.
        let holed: ArrayRef = Arc::new(
            DictionaryArray::<UInt32Type>::try_new(
                UInt32Array::from(vec![Some(0), None]),
                one.column(0).as_any_dictionary().values().clone(),
            )
            .unwrap(),
        );
        let schema = Schema::new(vec![Field::new("name", DataType::Utf8, false)]);
        let leaf = parquet::arrow::ArrowSchemaConverter::new().convert(&schema).unwrap().column(0);
        let err = encode(&holed, &leaf, &props(1000, 1000, EnabledStatistics::None)).unwrap_err();
        assert!(err.to_string().contains("required"), "{err}");
    }

    #[test]
    fn hybrid_runs() {
        let mut out = Vec::new();
        hybrid(&[3; 20], 2, &mut out);
        assert_eq!(out, [40, 3], "one RLE run of 20 threes");
        out.clear();
        hybrid(&[1, 2, 3], 2, &mut out);
        assert_eq!(out, [3, 0b11_10_01, 0], "one bit-packed group, padded");
        out.clear();
        hybrid(&[0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 1, &mut out);
        assert_eq!(out, [3, 0b1010_1010, 18, 1]);
    }

    /// A batch of one decimal column of `precision` and a row number.
    fn decimal_batch(values: Vec<Option<i128>>, precision: u8) -> (RecordBatch, Arc<Schema>) {
        let rows = values.len() as i64;
        let decimals = Decimal128Array::from(values).with_precision_and_scale(precision, 8).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("quantity", DataType::Decimal128(precision, 8), true),
            Field::new("row", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![Arc::new(decimals), Arc::new(Int64Array::from_iter_values(0..rows))];
        (RecordBatch::try_new(schema.clone(), columns).unwrap(), schema)
    }

    fn decimal_props(page_rows: usize, statistics: EnabledStatistics) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(page_rows.min(1024))
            .set_max_row_group_row_count(Some(10_000))
            .set_statistics_enabled(statistics)
            .set_dictionary_enabled(false)
            .build()
    }

    #[test]
    fn wide_decimals_as_the_arrow_writer_writes_them() {
        // Precision 38 (16 bytes) and 20 (9 bytes): negative, large, zero and null values over
        // pages of 900 rows and row groups of 10,000.
        for precision in [38u8, 20] {
            let limit = 10i128.pow(u32::from(precision)) - 1;
            let values: Vec<Option<i128>> = (0..25_001i128)
                .map(|i| match i % 7 {
                    0 => None,
                    1 => Some(-i * 123_456_789),
                    2 => Some(limit - i),
                    3 => Some(-limit + i),
                    _ => Some(i * 100_000_000),
                })
                .collect();
            let (batch, schema) = decimal_batch(values, precision);
            let leaf = parquet::arrow::ArrowSchemaConverter::new().convert(&schema).unwrap().column(0);
            let direct = decimal_props(900, EnabledStatistics::None);
            assert!(eligible(batch.column(0), &leaf, &direct));
            let bytes = write_parquet(&batch, schema.clone(), direct).unwrap();
            let by_arrow = write_parquet(&batch, schema.clone(), decimal_props(900, EnabledStatistics::Chunk)).unwrap();
            let ours = read(bytes.clone(), None);
            assert_eq!(ours.column(0).as_ref(), batch.column(0).as_ref(), "precision {precision}");
            assert_eq!(ours.column(1).as_ref(), batch.column(1).as_ref());
            let meta = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap().metadata().clone();
            let arrow_meta = ParquetRecordBatchReaderBuilder::try_new(by_arrow).unwrap().metadata().clone();
            assert_eq!(meta.num_row_groups(), 3);
            for (group, arrow_group) in meta.row_groups().iter().zip(arrow_meta.row_groups()) {
                let (column, arrow_column) = (group.column(0), arrow_group.column(0));
                assert_eq!(column.encodings().collect::<Vec<_>>(), arrow_column.encodings().collect::<Vec<_>>());
                assert_eq!(column.dictionary_page_offset(), None);
                assert_eq!(column.num_values(), arrow_column.num_values());
                // The same bytes in the pages; only the page headers' statistics differ.
                let (ours, theirs) = (column.uncompressed_size() as f64, arrow_column.uncompressed_size() as f64);
                assert!((ours / theirs - 1.0).abs() < 0.02, "{ours} bytes against the Arrow writer's {theirs}");
            }
            let selection =
                RowSelection::from(vec![RowSelector::skip(10_000 + 900 * 3 + 7), RowSelector::select(2_000)]);
            let picked = read(bytes, Some(selection));
            assert_eq!(picked.column(0).as_ref(), batch.column(0).slice(10_000 + 900 * 3 + 7, 2_000).as_ref());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_keys_read_back(
            names in prop::collection::vec(prop::option::weighted(0.9, "[A-Z]{0,3}-[0-9]{1,5}"), 1..300),
            picks in prop::collection::vec((any::<u32>(), prop::bool::weighted(0.1), 0u32..20), 1..3000),
            page_rows in 1usize..600,
            group_rows in 50usize..2000,
        ) {
            // Runs of repeated keys now and then, so that RLE and bit-packed runs alternate.
            let mut keys = Vec::with_capacity(picks.len());
            for (pick, null, run) in picks {
                let key = (!null).then_some(pick % names.len() as u32);
                keys.extend(std::iter::repeat_n(key, 1 + (run / 16 * run) as usize));
            }
            let (batch, schema) = batch(keys, names, true);
            let bytes = write_parquet(&batch, schema, props(page_rows, group_rows, EnabledStatistics::None)).unwrap();
            let back = read(bytes, None);
            let want = expected(&batch);
            prop_assert_eq!(back.column(0).as_ref(), want.as_ref());
            prop_assert_eq!(back.column(1).as_ref(), batch.column(1).as_ref());
        }
    }
}
