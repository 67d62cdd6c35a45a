//! config/usageflow.toml documents every key with its default: it must parse, equal the
//! compiled-in defaults, and name every key the program knows.

use std::collections::BTreeSet;
use std::path::PathBuf;

use toml::Value;
use usageflow::Config;

fn example() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/usageflow.toml")
}

fn keys(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Table(table) = value {
        for (key, child) in table {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            out.insert(path.clone());
            keys(child, &path, out);
        }
    }
}

#[test]
fn example_config_parses_to_the_defaults() {
    let config = usageflow::config::load(&[example()], Vec::new(), &[]).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn example_config_documents_every_key() {
    let file = Value::Table(usageflow::config::read_file(&example()).unwrap());
    let defaults = Value::try_from(Config::default()).unwrap();
    let (mut documented, mut known) = (BTreeSet::new(), BTreeSet::new());
    keys(&file, "", &mut documented);
    keys(&defaults, "", &mut known);
    let missing: Vec<_> = known.difference(&documented).collect();
    assert!(missing.is_empty(), "keys missing from config/usageflow.toml: {missing:?}");
}
