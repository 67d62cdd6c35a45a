//! Query results as a table for people, CSV, JSON (an array of objects) or Parquet.

use std::str::FromStr;

use arrow::array::RecordBatch;

use crate::QueryError;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects (decimals as strings, exact).
    Json,
    /// Parquet (decimals stay Decimal128).
    Parquet,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!("unknown format `{other}`; use table, csv, json or parquet")),
        }
    }
}

/// A column as text (Arrow's own rendering: decimals with their scale, RFC 3339 times).
pub fn text_column(column: &arrow::array::ArrayRef) -> Result<arrow::array::StringArray, QueryError> {
    let cast = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)?;
    cast.as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .cloned()
        .ok_or_else(|| QueryError::Output("a column did not cast to text".to_owned()))
}

/// The rows of `batches` as text by column name; `None` for null.
pub fn text_rows(
    batches: &[RecordBatch],
) -> Result<Vec<std::collections::HashMap<String, Option<String>>>, QueryError> {
    use arrow::array::Array;
    let mut out = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| Ok((f.name().clone(), text_column(c)?)))
            .collect::<Result<Vec<_>, QueryError>>()?;
        for i in 0..batch.num_rows() {
            out.push(
                columns.iter().map(|(n, a)| (n.clone(), (!a.is_null(i)).then(|| a.value(i).to_owned()))).collect(),
            );
        }
    }
    Ok(out)
}

/// `batch` with every text cell that a spreadsheet would run as a formula neutralised
/// (`usageflow_files::write::csv_safe`); other columns unchanged.
fn csv_safe_batch(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::DataType;
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let text = matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            || matches!(field.data_type(), DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View));
        if !text {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let values = text_column(column)?;
        let safe: StringArray = (0..values.len())
            .map(|i| (!values.is_null(i)).then(|| usageflow_files::write::csv_safe(values.value(i)).into_owned()))
            .collect();
        fields.push(arrow::datatypes::Field::new(field.name(), DataType::Utf8, field.is_nullable()));
        columns.push(std::sync::Arc::new(safe));
    }
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Writes `batches` in `format`.
pub fn write(batches: &[RecordBatch], format: Format) -> Result<Vec<u8>, QueryError> {
    let out = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    match format {
        Format::Table => {
            let mut text = arrow::util::pretty::pretty_format_batches(batches).map_err(|e| out(&e))?.to_string();
            text.push('\n');
            Ok(text.into_bytes())
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut buf);
                for b in batches {
                    writer.write(&csv_safe_batch(b)?).map_err(|e| out(&e))?;
                }
            }
            Ok(buf)
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(Vec::new());
            for b in batches {
                writer.write(b).map_err(|e| out(&e))?;
            }
            writer.finish().map_err(|e| out(&e))?;
            let mut buf = writer.into_inner();
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            buf.push(b'\n');
            Ok(buf)
        }
        Format::Parquet => {
            let schema = batches
                .first()
                .map(|b| b.schema())
                .unwrap_or_else(|| std::sync::Arc::new(arrow::datatypes::Schema::empty()));
            let mut buf = Vec::new();
            {
                let mut writer = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).map_err(|e| out(&e))?;
                for b in batches {
                    writer.write(b).map_err(|e| out(&e))?;
                }
                writer.close().map_err(|e| out(&e))?;
            }
            Ok(buf)
        }
    }
}
