//! The `usageflow` binary: help, configuration layering and errors, as a user sees them.

use std::process::{Command, Output};

fn usageflow(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_usageflow"));
    cmd.args(args).env_remove("USAGEFLOW_CONFIG").env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_explains_every_subcommand() {
    let out = usageflow(&["--help"], &[]);
    assert!(out.status.success());
    let help = stdout(&out);
    for sub in ["config", "doctor"] {
        assert!(help.contains(sub), "--help does not mention `{sub}`:\n{help}");
    }
    assert!(help.contains("--set"), "{help}");
}

#[test]
fn config_show_reflects_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(&file, "[kafka]\ntopic = \"from-file\"\ngroup_id = \"from-file\"\n").unwrap();
    let out = usageflow(
        &["--config", file.to_str().unwrap(), "--set", "log.level=debug", "config", "show"],
        &[("USAGEFLOW__KAFKA__GROUP_ID", "from-env")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: toml::Table = stdout(&out).parse().unwrap();
    assert_eq!(shown["kafka"]["topic"].as_str(), Some("from-file"));
    assert_eq!(shown["kafka"]["group_id"].as_str(), Some("from-env"));
    assert_eq!(shown["log"]["level"].as_str(), Some("debug"));
}

#[test]
fn unknown_key_fails_with_its_name_and_origin() {
    let out = usageflow(&["config", "check"], &[("USAGEFLOW__STORE__BUCKET", "x")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("USAGEFLOW__STORE__BUCKET") && err.contains("store.bucket"), "{err}");
}

/// A value of the right type that cannot work stops every command before it starts (here
/// `ingest`, which would otherwise retry a doomed subscription forever), naming the key.
#[test]
fn a_value_that_cannot_work_stops_the_command_with_its_key() {
    let started = std::time::Instant::now();
    let out = usageflow(&["--set", "kafka.topic=", "ingest", "--idle-exit-secs", "5"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("key `kafka.topic`: a topic name is required"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    let out = usageflow(&["config", "check"], &[("USAGEFLOW__INGEST__VALIDATION__LATE_MAX_DAYS", "200")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("key `ingest.dedupe_window_days`"), "{err}");
}

/// A batch run (`--idle-exit-secs`) that cannot reach the broker gives up once its wait for
/// an assignment is over, exits non-zero and says why, after its summary line.
#[test]
fn ingest_stopped_while_failing_exits_non_zero() {
    let lake = tempfile::tempdir().unwrap();
    let catalog = format!("catalog.dir={}/../../config/catalog", env!("CARGO_MANIFEST_DIR"));
    let out = usageflow(
        &[
            "--set",
            &catalog,
            "--set",
            "kafka.bootstrap_servers=127.0.0.1:1",
            "--set",
            "ingest.transaction_timeout_ms=1000",
            "--set",
            "ingest.metrics_listen=",
            "--set",
            &format!("store.url={}", lake.path().display()),
            "ingest",
            "--idle-exit-secs",
            "1",
            "--assign-timeout-secs",
            "3",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("ingested 0 messages"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("no partition of topic `usage-events` was assigned"), "{err}");
    assert!(err.contains("every run failed, the last with: Kafka"), "{err}");
}

#[test]
fn doctor_reports_an_unreachable_store_and_fails() {
    let out = usageflow(
        &["doctor", "--timeout-secs", "2", "--set", "kafka.bootstrap_servers=127.0.0.1:1", "--set", "store.url=gs://x"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    assert!(report.contains("kafka   FAIL"), "{report}");
    assert!(report.contains("store   FAIL") && report.contains("unsupported scheme `gs`"), "{report}");
}

#[test]
fn catalog_check_and_prerequisites() {
    let root = &format!("{}/../..", std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let dir = format!("catalog.dir={root}/config/catalog");
    let out = usageflow(&["--set", &dir, "catalog", "check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("is valid") && text.contains("3300 assets"), "{text}");
    let out = usageflow(
        &[
            "--set",
            &dir,
            "catalog",
            "prerequisites",
            "--product",
            "PRD-200-200-002",
            "--contract",
            "CRD-20001-10003-00001",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("is terminated, not active"), "{}", stdout(&out));
}

#[test]
fn files_workflow_from_the_command_line() {
    let root = &format!("{}/../..", std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let dir = tempfile::tempdir().unwrap();
    let store = format!("store.url={}", dir.path().join("store").display());
    let catalog = format!("catalog.dir={root}/config/catalog");
    let run = |args: &[&str]| {
        let mut all = vec!["--set", store.as_str(), "--set", catalog.as_str(), "files"];
        all.extend_from_slice(args);
        usageflow(&all, &[])
    };
    let out = run(&[
        "create",
        "--product",
        "PRD-200-200-002",
        "--contract",
        "CRD-20001-10001-00001",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("UF-2026-11-"), "{}", stdout(&out));

    let columns = usageflow_files::REQUIRED_COLUMNS;
    let rows = [[
        "r1",
        "item.mpn",
        "FL-SMS",
        "7",
        "2026-11-03 00:00:00",
        "2026-11-03 23:59:59",
        "asset.id",
        "AS-1000-0719-1201",
    ]];
    let bytes = usageflow_files::write_workbook(&[], &[], &columns, rows.iter().map(|r| r.to_vec())).unwrap();
    let upload = dir.path().join("november.xlsx");
    std::fs::write(&upload, bytes).unwrap();
    let processed = dir.path().join("processed.xlsx");
    let out = run(&["upload", &id, upload.to_str().unwrap(), "--processed", processed.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(" ready "), "{}", stdout(&out));
    assert!(processed.exists());

    let out = run(&["accept", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("only pending files can be reviewed"), "{}", stderr(&out));
    assert!(run(&["submit", &id]).status.success());
    let out = run(&["accept", &id, "--note", "fine"]);
    assert!(stdout(&out).contains(" accepted "), "{}{}", stdout(&out), stderr(&out));
    let chunks = stdout(&run(&["chunks", &id]));
    let chunk = chunks.split_whitespace().next().unwrap().to_owned();
    assert!(chunk.starts_with("UFC-") && chunks.contains(" ready hub HB-0001-0001 records 1"), "{chunks}");
    let out = run(&["chunk-close", &chunk, "--billing-id", "BATCH-1"]);
    assert!(stdout(&out).contains(" closed"), "{}{}", stdout(&out), stderr(&out));

    let history = stdout(&run(&["history", &id]));
    let steps: Vec<_> = history.lines().map(|l| l.split_whitespace().nth(3).unwrap_or("").to_owned()).collect();
    assert_eq!(
        steps,
        ["Create", "Upload", "Stored", "ProcessingStarted", "Processed", "Submit", "Accept"],
        "{history}"
    );
    assert!(stdout(&run(&["list"])).contains(&id));
    let csv_out = dir.path().join("records.csv");
    let out = run(&["export", &id, "--format", "csv", "--out", csv_out.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv_text = std::fs::read_to_string(&csv_out).unwrap();
    assert!(
        csv_text.starts_with("record_id,item_search_criteria") && csv_text.contains("r1,item.mpn,FL-SMS,7,"),
        "{csv_text}"
    );
}

/// `usageflow lake history`, `lake status`, `sql --as-of` and `lake vacuum` on a lake of two
/// commits.
#[test]
fn lake_history_time_travel_and_vacuum_from_the_command_line() {
    use usageflow_lake::tables::{RecordRow, RecordsBuilder};
    use usageflow_lake::{DeltaLake, Table};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lake = DeltaLake::open_store(&usageflow_lake::StoreConfig::local(&store)).unwrap();
    let day = chrono::DateTime::parse_from_rfc3339("2026-11-03T00:00:00Z").unwrap().timestamp_micros();
    for (n, quantity) in [(1u64, 2i128), (2, 3)] {
        let mut b = RecordsBuilder::default();
        b.push(&RecordRow { tier: Some(n as i8), ..RecordRow::sample(day, quantity) });
        let partition = [("product", "PRD-200-200-002"), ("month", "2026-11")];
        let name = format!("part-{n}.parquet");
        let file = rt.block_on(lake.write_file(Table::Records, &b.finish(), &partition, &name)).unwrap();
        assert_eq!(rt.block_on(lake.append(Table::Records, vec![file])).unwrap(), n);
    }
    let catalog = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog");
    let env =
        [("USAGEFLOW__STORE__URL", store.to_str().unwrap()), ("USAGEFLOW__CATALOG__DIR", catalog.to_str().unwrap())];

    let out = usageflow(&["lake", "history"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let history = stdout(&out);
    let versions: Vec<&str> = history.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(versions, ["2", "1", "0"], "{history}");
    assert!(history.lines().next().unwrap().contains("append"), "{history}");
    let out = usageflow(&["lake", "status"], &env);
    assert!(stdout(&out).contains("records@2"), "{}", stdout(&out));

    let sum = "SELECT CAST(sum(quantity) AS VARCHAR) AS q FROM usage_records";
    let out = usageflow(&["sql", sum, "--format", "csv"], &env);
    assert_eq!(stdout(&out), "q\n5.00000000\n", "{}", stderr(&out));
    let out = usageflow(&["sql", sum, "--format", "csv", "--as-of", "1"], &env);
    assert_eq!(stdout(&out), "q\n2.00000000\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("records@1"), "{}", stderr(&out));
    let out = usageflow(&["sql", sum, "--as-of", "9"], &env);
    assert!(!out.status.success() && stderr(&out).contains("no version 9"), "{}", stderr(&out));
    let out = usageflow(&["sql", sum, "--as-of", "soon"], &env);
    assert!(!out.status.success() && stderr(&out).contains("--as-of soon"), "{}", stderr(&out));

    let out = usageflow(&["lake", "vacuum", "--retention-hours", "1"], &env);
    assert!(!out.status.success(), "a retention under a week is refused");
    assert!(stderr(&out).contains("168 h") && stderr(&out).contains("nothing was deleted"), "{}", stderr(&out));
    let out = usageflow(&["lake", "vacuum", "--dry-run"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("records: would delete 0 file(s)"), "{}", stdout(&out));
    // The tables' own settings, and `configure` giving them others.
    let out = usageflow(&["lake", "status"], &env);
    let status = stdout(&out);
    assert!(status.contains("delta.checkpointInterval=100 delta.logRetentionDuration=interval 720 hours"), "{status}");
    assert!(!status.contains("not the [lake] settings"), "{status}");
    let mut other = env.to_vec();
    other.push(("USAGEFLOW__LAKE__LOG_RETENTION_HOURS", "336"));
    let out = usageflow(&["lake", "status"], &other);
    assert!(stdout(&out).contains("not the [lake] settings: `usageflow lake configure`"), "{}", stdout(&out));
    let out = usageflow(&["lake", "configure"], &other);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "records: set delta.checkpointInterval=100 delta.logRetentionDuration=interval 336 hours (version 3)"
        ),
        "{}",
        stdout(&out)
    );
    let out = usageflow(&["lake", "configure"], &other);
    assert!(stdout(&out).contains("records: already has"), "{}", stdout(&out));
    let mut short = env.to_vec();
    short.push(("USAGEFLOW__LAKE__LOG_RETENTION_HOURS", "24"));
    let out = usageflow(&["lake", "configure"], &short);
    assert!(!out.status.success() && stderr(&out).contains("lake.log_retention_hours"), "{}", stderr(&out));

    let out = usageflow(&["lake", "history", "--table", "nope"], &env);
    assert!(!out.status.success() && stderr(&out).contains("`records` and `events`"), "{}", stderr(&out));
}
