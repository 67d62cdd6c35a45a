//! Loads the product catalogue from a directory and checks it.
//!
//! A catalogue directory holds `catalog.toml` (accounts, marketplaces, hubs, products with
//! their items and capabilities, contracts, listings; the format is documented at the top of
//! `config/catalog/catalog.toml`) and, optionally, `assets.csv` with one asset per row.
//! Every reference must resolve; the first problem is reported with its file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;
use usageflow_model::{Asset, AssetStatus, AssetTiers, Catalogue, CatalogueData, CatalogueError, Environment, Ref};

/// Why a catalogue could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `catalog.toml` is not valid.
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    /// A row of `assets.csv` is not valid.
    #[error("{path}, line {line}: {message}")]
    Csv { path: PathBuf, line: u64, message: String },
    /// The objects are inconsistent.
    #[error("catalogue in {dir}: {source}")]
    Inconsistent {
        dir: PathBuf,
        #[source]
        source: CatalogueError,
    },
}

/// Result of catalogue loading.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the catalogue is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Directory with `catalog.toml` and `assets.csv`.
    pub dir: PathBuf,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("config/catalog") }
    }
}

/// The name of the objects file in a catalogue directory.
pub const CATALOG_FILE: &str = "catalog.toml";
/// The name of the assets file in a catalogue directory.
pub const ASSETS_FILE: &str = "assets.csv";

/// One row of `assets.csv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetRow {
    id: String,
    product: String,
    contract: String,
    marketplace: String,
    hub: String,
    #[serde(default)]
    external_id: String,
    #[serde(default)]
    external_uid: String,
    #[serde(default)]
    recon_id: String,
    /// `name=value;name=value`.
    #[serde(default)]
    params: String,
    customer_id: String,
    #[serde(default)]
    customer_name: String,
    #[serde(default)]
    tier1_id: String,
    #[serde(default)]
    tier1_name: String,
    #[serde(default)]
    tier2_id: String,
    #[serde(default)]
    tier2_name: String,
    #[serde(default)]
    status: Option<AssetStatus>,
    #[serde(default)]
    environment: Option<Environment>,
    #[serde(default)]
    terminated_at: Option<NaiveDate>,
}

fn optional_ref(id: String, name: String) -> Option<Ref> {
    (!id.is_empty()).then_some(Ref { id, name })
}

impl AssetRow {
    fn into_asset(self) -> std::result::Result<Asset, String> {
        let mut params = BTreeMap::new();
        for pair in self.params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) =
                pair.split_once('=').ok_or_else(|| format!("params entry `{pair}` is not name=value"))?;
            params.insert(name.trim().to_owned(), value.trim().to_owned());
        }
        Ok(Asset {
            id: self.id,
            product: self.product,
            contract: self.contract,
            marketplace: self.marketplace,
            hub: self.hub,
            external_id: self.external_id,
            external_uid: self.external_uid,
            recon_id: (!self.recon_id.is_empty()).then_some(self.recon_id),
            params,
            tiers: AssetTiers {
                customer: Ref { id: self.customer_id, name: self.customer_name },
                tier1: optional_ref(self.tier1_id, self.tier1_name),
                tier2: optional_ref(self.tier2_id, self.tier2_name),
            },
            status: self.status.unwrap_or_default(),
            environment: self.environment.unwrap_or_default(),
            terminated_at: self.terminated_at,
        })
    }
}

/// Reads `assets.csv`.
pub fn read_assets(path: &Path) -> Result<Vec<Asset>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
    let csv_error = |line: u64, e: csv::Error| Error::Csv {
        path: path.to_owned(),
        line,
        message: match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
            _ => e.to_string(),
        },
    };
    let headers = reader.headers().map_err(|e| csv_error(1, e))?.clone();
    let mut assets = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(e.position().map_or(0, csv::Position::line), e))?;
        let line = record.position().map_or(0, csv::Position::line);
        let row: AssetRow = record.deserialize(Some(&headers)).map_err(|e| csv_error(line, e))?;
        assets.push(row.into_asset().map_err(|message| Error::Csv { path: path.to_owned(), line, message })?);
    }
    Ok(assets)
}

/// Parses the objects of `catalog.toml`.
pub fn parse_objects(path: &Path, text: &str) -> Result<CatalogueData> {
    toml::from_str(text).map_err(|e| Error::Toml { path: path.to_owned(), message: e.to_string() })
}

/// Loads and checks the catalogue in `dir`.
pub fn load_dir(dir: &Path) -> Result<Catalogue> {
    let toml_path = dir.join(CATALOG_FILE);
    let text = std::fs::read_to_string(&toml_path).map_err(|source| Error::Read { path: toml_path.clone(), source })?;
    let mut data = parse_objects(&toml_path, &text)?;
    let assets_path = dir.join(ASSETS_FILE);
    if assets_path.exists() {
        data.assets.extend(read_assets(&assets_path)?);
    }
    Catalogue::new(data).map_err(|source| Error::Inconsistent { dir: dir.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_dir() -> PathBuf {
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog")
    }

    #[test]
    fn the_sample_catalogue_loads() {
        let catalogue = load_dir(&sample_dir()).unwrap();
        let data = catalogue.data();
        assert!(data.assets.len() >= 3000, "{} assets", data.assets.len());
        let vendors = data.accounts.iter().filter(|a| a.role == usageflow_model::AccountRole::Vendor).count();
        assert!(vendors >= 3);
        let schemas: std::collections::BTreeSet<_> =
            data.products.iter().filter_map(|p| p.capabilities.ppu.as_ref().map(|c| c.schema)).collect();
        assert_eq!(schemas.len(), 4, "one product per reporting schema");
        assert!(data.products.iter().any(|p| p.capabilities.dynamic_items()));
        assert!(data.marketplaces.len() >= 3);
        for product in &data.products {
            assert!(data.assets.iter().any(|a| a.product == product.id), "{} has no assets", product.id);
        }
        let asset = catalogue.asset("AS-1000-7919-0001").unwrap();
        let param = asset.params.get("instance_uuid").unwrap();
        let criteria = usageflow_model::AssetCriteria::Parameter("instance_uuid".into());
        assert_eq!(catalogue.find_asset(&asset.product, &criteria, param).unwrap().id, asset.id);
    }

    fn write_dir(toml: &str, csv: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CATALOG_FILE), toml).unwrap();
        if let Some(csv) = csv {
            std::fs::write(dir.path().join(ASSETS_FILE), csv).unwrap();
        }
        dir
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = write_dir("[[accounts]]\nid = \"VA-1\"\nname = \"V\"\nrole = \"vendor\"\ncolour = \"red\"\n", None);
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("catalog.toml") && err.contains("unknown field `colour`"), "{err}");

        let base = std::fs::read_to_string(sample_dir().join(CATALOG_FILE)).unwrap();
        let header = std::fs::read_to_string(sample_dir().join(ASSETS_FILE)).unwrap();
        let header = header.lines().next().unwrap();
        let row =
            "AS-1,PRD-100-100-001,CRD-10001-10001-00001,MP-10001,HB-9999-9999,1,u,,,TA-1,C,,,,,active,production,";
        let dir = write_dir(&base, Some(&format!("{header}\n{row}\n")));
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("asset AS-1 refers to unknown hub `HB-9999-9999`"), "{err}");

        let row = "AS-1,PRD-100-100-001,CRD-10001-10001-00001,MP-10001,HB-0001-0001,1,u,,,TA-1,C,,,,,gone,production,";
        let dir = write_dir(&base, Some(&format!("{header}\n{row}\n")));
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("assets.csv, line 2") && err.contains("unknown variant `gone`"), "{err}");
    }
}
