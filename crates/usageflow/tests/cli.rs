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
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
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
