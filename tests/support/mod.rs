//! Shared helpers of the integration tests: where the local stack is.
//!
//! The stack (deploy/stack.sh up) runs a real Kafka broker and an S3-compatible server on
//! 127.0.0.1. Tests read their addresses from `USAGEFLOW_TEST_KAFKA_BOOTSTRAP` and
//! `USAGEFLOW_TEST_S3_ENDPOINT`, or from the files the stack scripts write. A test that needs
//! a service that is not running fails and says how to start it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

fn stack_file(parts: &[&str]) -> Option<String> {
    let dir = std::env::var_os("USAGEFLOW_STACK_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/usageflow/stack")))?;
    let path = parts.iter().fold(dir, |p, part| p.join(part));
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Bootstrap address of the test Kafka broker.
pub fn kafka_bootstrap() -> String {
    std::env::var("USAGEFLOW_TEST_KAFKA_BOOTSTRAP").ok().or_else(|| stack_file(&["kafka", "bootstrap"])).expect(
        "no Kafka broker for the tests: run `deploy/stack.sh up` (or the README's test command), \
         or set USAGEFLOW_TEST_KAFKA_BOOTSTRAP",
    )
}

/// Endpoint URL of the test S3-compatible server.
pub fn s3_endpoint() -> String {
    std::env::var("USAGEFLOW_TEST_S3_ENDPOINT").ok().or_else(|| stack_file(&["s3", "endpoint"])).expect(
        "no S3-compatible server for the tests: run `deploy/stack.sh up` (or the README's test command), \
         or set USAGEFLOW_TEST_S3_ENDPOINT",
    )
}

/// A name no other test run uses: `prefix-<pid>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A store config for a fresh prefix in the test bucket of the S3 server.
pub fn s3_store_config(prefix: &str) -> usageflow_lake::StoreConfig {
    usageflow_lake::StoreConfig {
        url: format!("s3://usageflow-test/{}", unique(prefix)),
        s3: usageflow_lake::S3Options {
            endpoint: s3_endpoint(),
            allow_http: true,
            access_key_id: "usageflow".to_owned(),
            secret_access_key: "usageflow-secret".to_owned(),
            ..usageflow_lake::S3Options::default()
        },
    }
}
