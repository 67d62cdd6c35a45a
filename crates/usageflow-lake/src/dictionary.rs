//! Dictionary columns encoded from their keys.
//!
//! The Arrow writer encodes a dictionary array by looking every row's value up again in a
//! dictionary of its own (a hash and a comparison of the string per row): it does not use the
//! keys it is given. The raw events' catalogue columns (product, contract, asset, item, MPN,
//! category) are such arrays, keys into the catalogue's names, and on the ingest path those
//! lookups were the largest single cost of writing an events file.
//!
//! [`encode`] writes such a column chunk from the keys: the values the rows use, in the order
//! of first use, as the dictionary page (a string is looked up once per key, so keys standing
//! for the same string share an entry), and each row's position among them as the data
//! pages. It produces what the Arrow writer would for the column: a PLAIN dictionary page,
//! version 1 data pages encoded `RLE_DICTIONARY` with RLE/bit-packed definition levels, the
//! writer's page row limit and compression, and an offset index. [`eligible`] says which
//! columns it takes: dictionaries of strings with `u32` keys, written without statistics or a
//! bloom filter, with Snappy or no compression; every other column goes through the Arrow
//! writer as before.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, UInt32Type};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Whether [`encode`] writes this column: a dictionary of strings with `u32` keys, at least
/// one row not null, a flat column (no repetition, at most one definition level), and
/// properties it reproduces exactly (dictionary encoding on, no statistics, no bloom filter,
/// version 1 pages, Snappy or no compression).
pub(crate) fn eligible(array: &ArrayRef, descr: &ColumnDescPtr, props: &WriterProperties) -> bool {
    let DataType::Dictionary(key, value) = array.data_type() else { return false };
    if **key != DataType::UInt32 || **value != DataType::Utf8 {
        return false;
    }
    let path = descr.path();
    descr.max_rep_level() == 0
        && descr.max_def_level() <= 1
        && array.logical_null_count() < array.len()
        && props.dictionary_enabled(path)
        && props.statistics_enabled(path) == EnabledStatistics::None
        && props.bloom_filter_properties(path).is_none()
        && props.writer_version() == WriterVersion::PARQUET_1_0
        && matches!(props.compression(path), Compression::SNAPPY | Compression::UNCOMPRESSED)
}

/// Encodes an [`eligible`] dictionary column as one column chunk: its bytes (offsets in the
/// metadata relative to their start) and what closing a column writer would have returned,
/// for `SerializedRowGroupWriter::append_column`.
pub(crate) fn encode(
    array: &ArrayRef,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<(Bytes, ColumnCloseResult)> {
    let dict = array.as_dictionary::<UInt32Type>();
    let names: &StringArray = dict.values().as_string();
    let keys = dict.keys();
    let nullable = descr.max_def_level() == 1;
    if !nullable && array.logical_null_count() > 0 {
        return Err(ParquetError::General(format!("column {} is required but holds nulls", descr.path())));
    }
    let compression = props.compression(descr.path());
    let rows = array.len();
    let rows_per_page = props.data_page_row_count_limit().max(1);

    // Every non-null row's position in the file's dictionary (values in order of first use),
    // and per page its definition levels, encoded.
    let mut position = vec![u32::MAX; names.len()];
    let mut used: Vec<u32> = Vec::new();
    let mut first_of: HashMap<&str, u32> = HashMap::new();
    let mut positions = Vec::with_capacity(rows);
    let mut pages: Vec<(usize, usize, Vec<u8>)> = Vec::with_capacity(rows.div_ceil(rows_per_page));
    let mut levels = Vec::new();
    for start in (0..rows).step_by(rows_per_page) {
        let end = (start + rows_per_page).min(rows);
        let first_position = positions.len();
        levels.clear();
        for row in start..end {
            let key = keys.values()[row] as usize;
            let valid = keys.is_valid(row) && names.is_valid(key);
            if nullable {
                levels.push(u32::from(valid));
            }
            if valid {
                if position[key] == u32::MAX {
                    // Keys standing for the same string share one dictionary entry.
                    let name = names.value(key);
                    position[key] = *first_of.entry(name).or_insert_with(|| {
                        used.push(key as u32);
                        used.len() as u32 - 1
                    });
                }
                positions.push(position[key]);
            }
        }
        let mut head = Vec::new();
        if nullable {
            head.extend_from_slice(&[0; 4]);
            hybrid(&levels, 1, &mut head);
            let len = (head.len() - 4) as u32;
            head[..4].copy_from_slice(&len.to_le_bytes());
        }
        pages.push((start, first_position, head));
    }

    let mut dictionary = Vec::with_capacity(used.len() * 24);
    for &key in &used {
        let value = names.value(key as usize).as_bytes();
        dictionary.extend_from_slice(&(value.len() as u32).to_le_bytes());
        dictionary.extend_from_slice(value);
    }
    let width = bit_width(used.len().saturating_sub(1) as u32);

    let mut sink = TrackedWrite::new(Vec::with_capacity(64 * 1024));
    let mut writer = SerializedPageWriter::new(&mut sink);
    let dictionary_page = Page::DictionaryPage {
        buf: Bytes::new(),
        num_values: used.len() as u32,
        encoding: Encoding::PLAIN,
        is_sorted: false,
    };
    let dictionary_spec = writer.write_page(compressed(dictionary_page, dictionary, compression)?)?;
    let mut compressed_size = dictionary_spec.compressed_size as i64;
    let mut uncompressed_size = dictionary_spec.uncompressed_size as i64;
    let mut locations = Vec::with_capacity(pages.len());
    let page_count = pages.len();
    for n in 0..page_count {
        let (start, first_position) = (pages[n].0, pages[n].1);
        let mut data = std::mem::take(&mut pages[n].2);
        let end = (start + rows_per_page).min(rows);
        let last_position = pages.get(n + 1).map_or(positions.len(), |p| p.1);
        data.push(width);
        hybrid(&positions[first_position..last_position], width, &mut data);
        let page = Page::DataPage {
            buf: Bytes::new(),
            num_values: (end - start) as u32,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = writer.write_page(compressed(page, data, compression)?)?;
        compressed_size += spec.compressed_size as i64;
        uncompressed_size += spec.uncompressed_size as i64;
        locations.push(PageLocation {
            offset: spec.offset as i64,
            compressed_page_size: spec.compressed_size as i32,
            first_row_index: start as i64,
        });
    }
    writer.close()?;

    let metadata = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(compression)
        .set_encodings(vec![Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY])
        .set_page_encoding_stats(vec![
            PageEncodingStats { page_type: PageType::DICTIONARY_PAGE, encoding: Encoding::PLAIN, count: 1 },
            PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::RLE_DICTIONARY,
                count: page_count as i32,
            },
        ])
        .set_total_compressed_size(compressed_size)
        .set_total_uncompressed_size(uncompressed_size)
        .set_num_values(rows as i64)
        .set_dictionary_page_offset(Some(0))
        .set_data_page_offset(dictionary_spec.bytes_written as i64)
        .build()?;
    let bytes = sink.into_inner()?;
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: rows as u64,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: (!props.offset_index_disabled())
            .then_some(OffsetIndexMetaData { page_locations: locations, unencoded_byte_array_data_bytes: None }),
    };
    Ok((Bytes::from(bytes), close))
}

/// A page holding `data`, compressed as the column is.
fn compressed(page: Page, data: Vec<u8>, compression: Compression) -> Result<CompressedPage> {
    let size = data.len();
    let buf = match compression {
        Compression::UNCOMPRESSED => Bytes::from(data),
        Compression::SNAPPY => {
            let mut out = vec![0; snap::raw::max_compress_len(size)];
            let n = snap::raw::Encoder::new()
                .compress(&data, &mut out)
                .map_err(|e| ParquetError::General(format!("snappy: {e}")))?;
            out.truncate(n);
            Bytes::from(out)
        }
        other => return Err(ParquetError::General(format!("{other} is not written here"))),
    };
    let page = match page {
        Page::DataPage { num_values, encoding, def_level_encoding, rep_level_encoding, statistics, .. } => {
            Page::DataPage { buf, num_values, encoding, def_level_encoding, rep_level_encoding, statistics }
        }
        Page::DictionaryPage { num_values, encoding, is_sorted, .. } => {
            Page::DictionaryPage { buf, num_values, encoding, is_sorted }
        }
        Page::DataPageV2 { .. } => return Err(ParquetError::General("version 2 pages are not written here".into())),
    };
    Ok(CompressedPage::new(page, size))
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
    use arrow::array::{DictionaryArray, Int64Array, RecordBatch, UInt32Array};
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
