//! `usageflow sql` (one query, the shell), `export-billing` and `api-key` as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn usageflow(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let root = &format!("{}/../..", std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_usageflow"));
    cmd.args(["--set", &format!("store.url={}", dir.join("store").display())])
        .args(["--set", &format!("catalog.dir={root}/config/catalog")])
        .args(["--set", &format!("api.keys_file={}", dir.join("keys.toml").display())])
        .args(args)
        .env_remove("USAGEFLOW_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn one_query_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let q = "SELECT id, vendor_id FROM products WHERE id = 'PRD-200-200-002'";
    let out = usageflow(dir.path(), &["sql", q, "--format", "csv"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "id,vendor_id\nPRD-200-200-002,VA-200-002\n");
    let out = usageflow(dir.path(), &["sql", q, "--format", "json"], None);
    assert_eq!(text(&out.stdout).trim(), r#"[{"id":"PRD-200-200-002","vendor_id":"VA-200-002"}]"#);
    let out = usageflow(dir.path(), &["sql", q], None);
    assert!(text(&out.stdout).contains("| PRD-200-200-002 | VA-200-002 |"), "{}", text(&out.stdout));
    let file = dir.path().join("out.parquet");
    let out = usageflow(dir.path(), &["sql", q, "--format", "parquet", "--out", file.to_str().unwrap()], None);
    assert!(out.status.success());
    assert!(std::fs::read(&file).unwrap().starts_with(b"PAR1"));
    // Scoped: a vendor sees its own products only.
    let out = usageflow(
        dir.path(),
        &["sql", "SELECT count(*) AS n FROM products", "--format", "csv", "--scope", "vendor:VA-200-002"],
        None,
    );
    assert_eq!(text(&out.stdout), "n\n1\n");
    let out = usageflow(dir.path(), &["sql", "DROP TABLE products"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not supported"), "{}", text(&out.stderr));
}

#[test]
fn the_shell_reads_statements_until_the_semicolon() {
    let dir = tempfile::tempdir().unwrap();
    let input = "\\d\nSELECT count(*) AS n\n  FROM marketplaces;\nSELECT nope;\nSELECT 1 AS one;\n";
    let out = usageflow(dir.path(), &["sql", "--format", "csv"], Some(input));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("usage_records\n") && stdout.contains("file_records\n"), "{stdout}");
    assert!(stdout.contains("n\n3\n"), "{stdout}");
    assert!(stdout.contains("one\n1\n"), "statements after an error still run: {stdout}");
    assert!(text(&out.stderr).contains("error:"), "{}", text(&out.stderr));
    assert!(!out.status.success(), "a failed statement in a script fails the run");
}

#[test]
fn api_keys_are_printed_once_and_listed_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        usageflow(dir.path(), &["api-key", "add", "--account", "VA-200-002", "--role", "vendor", "--name", "ci"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_owned();
    let (id, secret) = key.split_once('.').unwrap();
    let list = text(&usageflow(dir.path(), &["api-key", "list"], None).stdout);
    assert!(list.contains(id) && list.contains("VA-200-002") && !list.contains(secret), "{list}");
    assert!(!std::fs::read_to_string(dir.path().join("keys.toml")).unwrap().contains(secret));
    let out = usageflow(dir.path(), &["api-key", "add", "--account", "VA-999", "--role", "vendor"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not in the catalogue"), "{}", text(&out.stderr));
}

#[test]
fn billing_export_of_an_empty_period_is_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("billing.xlsx");
    let out = usageflow(
        dir.path(),
        &[
            "export-billing",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--format",
            "xlsx",
            "--out",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("0 accepted records"), "{}", text(&out.stderr));
    assert!(std::fs::read(&file).unwrap().starts_with(b"PK"));
}
