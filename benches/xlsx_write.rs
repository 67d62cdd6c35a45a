//! Writing a 1,000,000-record usage file (TR schema, 17 columns) as Connect-format XLSX,
//! against openpyxl (write-only mode, what vendors use through Connect's Python SDKs) in the
//! same run, on the same rows. Each writer runs in its own process so that its peak memory is
//! its own. Run: `cargo bench --bench xlsx_write` (`USAGEFLOW_BENCH_RECORDS` to change the count;
//! the openpyxl side needs `python3` and installs openpyxl from PyPI into
//! ~/.cache/usageflow/bench-venv on first use).
#![allow(clippy::print_stdout, clippy::float_arithmetic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use usageflow_files::{record_columns, write_workbook};
use usageflow_model::{Category, ReportingSchema};

fn records() -> usize {
    std::env::var("USAGEFLOW_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// The same rows as benches/openpyxl_write.py.
fn row(i: usize) -> Vec<String> {
    let day = 1 + i % 28;
    vec![
        format!("UR-2026-11-0001-0002-{:04}-{:04}", i / 10000, i % 10000),
        String::new(),
        "item.mpn".into(),
        format!("NIM-ITEM-{}", i % 5),
        format!("{}.{:02}", i % 997, i % 100),
        format!("{}.{:04}", i % 1013, i % 10000),
        format!("2026-11-{day:02} {:02}:00:00", i % 24),
        format!("2026-11-{day:02} {:02}:59:59", i % 24),
        "asset.id".into(),
        format!("AS-1000-{:04}-{:04}", i % 9973, i % 1200),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        "compute".into(),
        String::new(),
        (i % 3).to_string(),
    ]
}

fn usageflow_phase(n: usize, out: &str) {
    let start = Instant::now();
    let general = vec![("report_id".to_owned(), "UF-2026-11-0001-0002".to_owned())];
    let categories = vec![Category { id: "compute".into(), name: "Compute".into(), description: None }];
    let bytes = write_workbook(&general, &categories, &record_columns(ReportingSchema::Tr), (0..n).map(row)).unwrap();
    std::fs::write(out, &bytes).unwrap();
    println!("RESULT {:.3} {}", start.elapsed().as_secs_f64(), peak_rss_mib());
}

fn parse(stdout: &[u8]) -> (f64, f64) {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("no result: {text}"));
    let v: Vec<f64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

fn python() -> PathBuf {
    let venv = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/usageflow/bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap().success();
        assert!(ok, "cannot create {}", venv.display());
    }
    let has = Command::new(&python).args(["-c", "import openpyxl"]).status().unwrap().success();
    if !has {
        let ok =
            Command::new(&python).args(["-m", "pip", "install", "-q", "openpyxl==3.1.5"]).status().unwrap().success();
        assert!(ok, "cannot install openpyxl");
    }
    python
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("xlsx_write: benchmark");
        return;
    }
    let n = records();
    let dir = tempfile::tempdir().unwrap();
    if let Ok(out) = std::env::var("USAGEFLOW_BENCH_XLSX_OUT") {
        usageflow_phase(n, &out);
        return;
    }
    let ours = dir.path().join("usageflow.xlsx");
    let out = Command::new(std::env::current_exe().unwrap()).env("USAGEFLOW_BENCH_XLSX_OUT", &ours).output().unwrap();
    let (secs, rss) = parse(&out.stdout);
    let size = std::fs::metadata(&ours).unwrap().len();
    println!("# xlsx_write: {n} records, TR schema (17 columns), values as text");
    println!(
        "usageflow (rust_xlsxwriter, constant memory) {secs:>7.2} s  {:>9.0} rec/s  peak RSS {rss:>5.0} MiB  {:>6.1} MB",
        n as f64 / secs,
        size as f64 / 1e6
    );

    let theirs = dir.path().join("openpyxl.xlsx");
    let script =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("benches/openpyxl_write.py");
    let out = Command::new(python()).arg(script).arg(n.to_string()).arg(&theirs).output().unwrap();
    let (psecs, prss) = parse(&out.stdout);
    let psize = std::fs::metadata(&theirs).unwrap().len();
    println!(
        "openpyxl 3.1.5 (write_only)                  {psecs:>7.2} s  {:>9.0} rec/s  peak RSS {prss:>5.0} MiB  {:>6.1} MB",
        n as f64 / psecs,
        psize as f64 / 1e6
    );
    println!("usageflow is {:.1}x faster", psecs / secs);

    // Both files read back to the same records.
    let book = usageflow_files::read_workbook(&std::fs::read(&ours).unwrap(), &usageflow_files::ReadLimits::default())
        .unwrap();
    assert_eq!(book.records.len(), n);
    let other =
        usageflow_files::read_workbook(&std::fs::read(&theirs).unwrap(), &usageflow_files::ReadLimits::default())
            .unwrap();
    assert_eq!(other.records.len(), n);
    assert_eq!(book.records[n / 2].cells, other.records[n / 2].cells);
    println!("verified: both files read back to {n} identical records");
}
