//! SQL over 10M+ usage records: a billing export and a reconciliation join, with DataFusion
//! (Usageflow's engine) and DuckDB running the same SQL on the same Parquet in the same run.
//!
//! ```sh
//! USAGEFLOW_BENCH_RECORDS=10000000 cargo bench --bench sql_vs_duckdb
//! ```
//! The data (records of 600 usage files over three months, and billing lines for 90 % of the
//! records with 1 % quantity mismatches and 50,000 unknown lines) is generated once into
//! ~/.cache/usageflow/bench-sql/; DuckDB comes from PyPI into ~/.cache/usageflow/bench-venv.
//! Both engines use every core and write their result to Parquet; the row counts must agree.
#![allow(clippy::print_stdout, clippy::float_arithmetic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, Decimal128Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use usageflow_query::billing::{Selection, billing_export_sql, reconciliation_sql};

const FILES: u64 = 600;
const PER_PART: u64 = 1_000_000;

fn schema() -> Arc<Schema> {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let dec = |n: &str| Field::new(n, DataType::Decimal128(38, 8), true);
    let ts = |n: &str| Field::new(n, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false);
    Arc::new(Schema::new(vec![
        s("id"),
        s("vendor_record_id"),
        s("usagefile_id"),
        s("hub_id"),
        s("marketplace_id"),
        s("product_id"),
        s("contract_id"),
        s("customer_id"),
        s("customer_name"),
        s("tier1_id"),
        s("tier2_id"),
        s("asset_id"),
        s("asset_external_id"),
        s("asset_external_uid"),
        s("item_id"),
        s("item_mpn"),
        s("item_name"),
        s("item_unit"),
        s("item_precision"),
        s("category_id"),
        s("period_from"),
        s("period_to"),
        ts("start_date"),
        ts("end_date"),
        dec("usage"),
        dec("amount"),
        Field::new("tier", DataType::UInt8, true),
        Field::new("multiplier", DataType::UInt64, false),
        s("usagefile_currency"),
        s("status"),
        s("external_billing_id"),
    ]))
}

/// A cheap deterministic hash for the generator.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn record_id(i: u64) -> String {
    format!(
        "UR-2026-{:02}-{:04}-{:04}-{:04}-{:04}",
        9 + i % 3,
        (i / 100_000_000) % 10_000,
        (i / 10_000) % 10_000,
        i % 10_000,
        i % 7
    )
}

fn generate(dir: &Path, n: u64) {
    let records = dir.join("file_records");
    let billing = dir.join("billing");
    if records.join("done").exists() {
        return;
    }
    std::fs::create_dir_all(&records).unwrap();
    std::fs::create_dir_all(&billing).unwrap();
    let started = Instant::now();
    let months = [("2026-09-01", "2026-09-30"), ("2026-10-01", "2026-10-31"), ("2026-11-01", "2026-11-30")];
    for part in 0..n.div_ceil(PER_PART) {
        let lo = part * PER_PART;
        let hi = (lo + PER_PART).min(n);
        let rows = (hi - lo) as usize;
        let mut strings: Vec<StringBuilder> = (0..22).map(|_| StringBuilder::with_capacity(rows, rows * 16)).collect();
        let mut tail: Vec<StringBuilder> = (0..3).map(|_| StringBuilder::with_capacity(rows, rows * 8)).collect();
        let ts = || TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
        let (mut start, mut end) = (ts(), ts());
        let dec = || Decimal128Builder::with_capacity(rows).with_precision_and_scale(38, 8).unwrap();
        let (mut usage, mut amount) = (dec(), dec());
        let mut tier = UInt8Builder::with_capacity(rows);
        let mut multiplier = UInt64Builder::with_capacity(rows);
        let mut b_id = StringBuilder::new();
        let mut b_q = Decimal128Builder::new().with_precision_and_scale(38, 8).unwrap();
        let mut b_ext = StringBuilder::new();
        for i in lo..hi {
            let h = mix(i);
            let file = h % FILES;
            let month = (file % 3) as usize;
            let asset = mix(h) % 3_300;
            let item = h % 10;
            let product = file % 4;
            let rated = product == 0;
            let status = match h % 100 {
                0..=84 => "approved",
                85..=89 => "closed",
                _ => "valid",
            };
            let q = (h % 100_000) as i128 * 1_000_000; // up to 1000.00 with two decimals
            let values = [
                record_id(i),
                format!("r{i}"),
                format!("UF-2026-{:02}-0000-{file:04}", 9 + month),
                format!("HB-000{}-0001", file % 3),
                format!("MP-1000{}", file % 3),
                format!("PRD-{product}00-{product}00-00{product}"),
                format!("CRD-{file:05}"),
                format!("TA-{asset:05}"),
                format!("Customer {asset}"),
                format!("RA-700-{:03}", asset % 50),
                String::new(),
                format!("AS-1000-{asset:04}-{:04}", asset % 97),
                asset.to_string(),
                format!("uid-{asset:06}"),
                format!("PRD-{product}00-{product}00-00{product}-000{item}"),
                format!("MPN-{item}"),
                format!("Item {item}"),
                "unit".to_owned(),
                "Decimal(2)".to_owned(),
                "generic_category".to_owned(),
                months[month].0.to_owned(),
                months[month].1.to_owned(),
            ];
            for (b, v) in strings.iter_mut().zip(values) {
                if v.is_empty() { b.append_null() } else { b.append_value(v) }
            }
            tail[0].append_option(rated.then_some("USD"));
            tail[1].append_value(status);
            tail[2].append_option((status == "closed").then(|| format!("INV-{}", file)));
            let day = 1_790_000_000_000_000 + (month as i64) * 2_600_000_000_000 + (h % 2_500_000_000_000) as i64;
            start.append_value(day);
            end.append_value(day + 3_600_000_000);
            usage.append_value(q);
            amount.append_option(rated.then_some(q * 2));
            tier.append_option(rated.then_some((h % 3) as u8));
            multiplier.append_value(100);
            // Billing lines: 90 % of the records, 1 % of them off by one unit.
            if !h.is_multiple_of(10) {
                b_id.append_value(record_id(i));
                b_q.append_value(if h % 100 == 1 { q + 1_000_000 } else { q });
                b_ext.append_value(format!("BILL-{}", file));
            }
            if i.is_multiple_of(200) {
                b_id.append_value(format!("UR-0000-00-0000-0000-0000-{i:010}"));
                b_q.append_value(100_000_000);
                b_ext.append_value("BILL-X");
            }
        }
        let mut columns: Vec<ArrayRef> = strings.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef).collect();
        columns.push(Arc::new(start.finish()));
        columns.push(Arc::new(end.finish()));
        columns.push(Arc::new(usage.finish()));
        columns.push(Arc::new(amount.finish()));
        columns.push(Arc::new(tier.finish()));
        columns.push(Arc::new(multiplier.finish()));
        columns.extend(tail.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef));
        let batch = RecordBatch::try_new(schema(), columns).unwrap();
        std::fs::write(
            records.join(format!("part-{part:03}.parquet")),
            usageflow_lake::tables::to_parquet(&batch).unwrap(),
        )
        .unwrap();
        let bschema = Arc::new(Schema::new(vec![
            Field::new("record_id", DataType::Utf8, true),
            Field::new("billed_quantity", DataType::Decimal128(38, 8), true),
            Field::new("external_billing_id", DataType::Utf8, true),
        ]));
        let bill = RecordBatch::try_new(
            bschema,
            vec![Arc::new(b_id.finish()), Arc::new(b_q.finish()), Arc::new(b_ext.finish())],
        )
        .unwrap();
        std::fs::write(
            billing.join(format!("part-{part:03}.parquet")),
            usageflow_lake::tables::to_parquet(&bill).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(records.join("done"), b"").unwrap();
    println!("generated {n} records in {:.1} s", started.elapsed().as_secs_f64());
}

fn python() -> PathBuf {
    let venv = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/usageflow/bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        assert!(Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap().success());
    }
    if !Command::new(&python).args(["-c", "import duckdb"]).status().unwrap().success() {
        let ok =
            Command::new(&python).args(["-m", "pip", "install", "-q", "duckdb==1.4.2"]).status().unwrap().success();
        assert!(ok, "cannot install duckdb from PyPI");
    }
    python
}

fn count(path: &Path) -> usize {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    reader.metadata().file_metadata().num_rows() as usize
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: u64 = std::env::var("USAGEFLOW_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    let data = home.join(format!(".cache/usageflow/bench-sql/{n}"));
    generate(&data, n);
    let out = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(cores));
    let opts = || ParquetReadOptions::default();
    ctx.register_parquet("file_records", data.join("file_records").to_str().unwrap(), opts()).await.unwrap();
    ctx.register_parquet("billing", data.join("billing").to_str().unwrap(), opts()).await.unwrap();
    let selection = Selection {
        from: chrono::NaiveDate::from_ymd_opt(2026, 9, 1),
        to: chrono::NaiveDate::from_ymd_opt(2026, 11, 30),
        ..Selection::default()
    };
    let queries = [
        ("billing_export", billing_export_sql(&selection)),
        ("reconciliation", reconciliation_sql(&ctx, &selection).await.unwrap()),
    ];
    let mut args = Vec::new();
    for (name, sql) in &queries {
        let path = out.path().join(format!("{name}.sql"));
        std::fs::write(&path, sql).unwrap();
        args.push(format!("{name}={}", path.display()));
    }
    println!("{n} usage records, {cores} cores");
    println!("| query | engine | seconds | rows |");
    println!("|---|---|---:|---:|");
    let mut ours = Vec::new();
    for (name, sql) in &queries {
        let target = out.path().join(format!("datafusion-{name}.parquet"));
        let started = Instant::now();
        ctx.sql(sql)
            .await
            .unwrap()
            .write_parquet(target.to_str().unwrap(), DataFrameWriteOptions::new().with_single_file_output(true), None)
            .await
            .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let rows = count(&target);
        println!("| {name} | DataFusion | {seconds:.2} | {rows} |");
        ours.push((name.to_string(), seconds, rows));
    }
    let script =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("benches/duckdb_sql.py");
    let result = Command::new(python()).arg(script).arg(&data).arg(out.path()).args(&args).output().unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    for line in String::from_utf8_lossy(&result.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = v["name"].as_str().unwrap();
        let (seconds, rows) = (v["seconds"].as_f64().unwrap(), v["rows"].as_u64().unwrap() as usize);
        println!("| {name} | DuckDB | {seconds:.2} | {rows} |");
        let (_, our_seconds, our_rows) = ours.iter().find(|(n, _, _)| n == name).unwrap();
        assert_eq!(*our_rows, rows, "{name}: the engines disagree on the row count");
        println!("| {name} | DataFusion / DuckDB time | {:.2} | |", our_seconds / seconds);
    }
}
