//! Before a usage file can be created: each unmet prerequisite is its own error.

use std::path::PathBuf;

use usageflow_model::{
    Catalogue, CatalogueData, Contract, ContractKind, ContractStatus, ListingStatus, PpuCapability, PrerequisiteError,
    Product, ReportingSchema,
};

fn sample() -> CatalogueData {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../config/catalog");
    usageflow_catalog::load_dir(&dir).unwrap().data().clone()
}

fn check(data: CatalogueData, product: &str, contract: &str) -> Result<String, PrerequisiteError> {
    let catalogue = Catalogue::new(data).unwrap();
    catalogue.check_file_prerequisites(product, contract).map(|scope| scope.listing.id.clone())
}

#[test]
fn a_listed_product_under_an_active_contract_may_report() {
    let scope = check(sample(), "PRD-100-100-001", "CRD-10001-10001-00001").unwrap();
    assert_eq!(scope, "LST-100-10001");
    assert_eq!(check(sample(), "PRD-300-300-004", "CRD-30001-10002-00002").unwrap(), "LST-304-10002");
}

#[test]
fn each_unmet_prerequisite_has_its_own_error() {
    let err = check(sample(), "PRD-999", "CRD-10001-10001-00001").unwrap_err();
    assert_eq!(err, PrerequisiteError::UnknownProduct("PRD-999".into()));
    let err = check(sample(), "PRD-100-100-001", "CRD-404").unwrap_err();
    assert_eq!(err, PrerequisiteError::UnknownContract("CRD-404".into()));
    let err = check(sample(), "PRD-100-100-001", "CRP-00100-00500-00001").unwrap_err();
    assert_eq!(err.to_string(), "contract CRP-00100-00500-00001 is not a distribution contract");
    let err = check(sample(), "PRD-200-200-002", "CRD-20001-10003-00001").unwrap_err();
    assert_eq!(err.to_string(), "distribution contract CRD-20001-10003-00001 is terminated, not active");
    let err = check(sample(), "PRD-200-200-002", "CRD-10001-10001-00001").unwrap_err();
    assert!(matches!(err, PrerequisiteError::OtherVendor { .. }), "{err}");
    let err = check(sample(), "PRD-100-100-001", "CRD-10001-10002-00002").unwrap_err();
    assert_eq!(
        err.to_string(),
        "program contract CRP-00100-00500-00002 of distribution contract CRD-10001-10002-00002 is terminated, not active"
    );

    // Listing missing, then unlisted.
    let mut data = sample();
    data.contracts.push(Contract {
        id: "CRD-10001-10001-00009".into(),
        name: "Second Nimbus contract".into(),
        kind: ContractKind::Distribution,
        status: ContractStatus::Active,
        vendor: "VA-100-001".into(),
        provider: "PA-500-001".into(),
        marketplace: Some("MP-10001".into()),
        program: None,
    });
    let err = check(data, "PRD-100-100-001", "CRD-10001-10001-00009").unwrap_err();
    assert!(matches!(err, PrerequisiteError::NoListing { .. }), "{err}");
    let mut data = sample();
    data.listings.iter_mut().find(|l| l.id == "LST-100-10001").unwrap().status = ListingStatus::Unlisted;
    let err = check(data, "PRD-100-100-001", "CRD-10001-10001-00001").unwrap_err();
    assert_eq!(
        err.to_string(),
        "listing LST-100-10001 of product PRD-100-100-001 is unlisted; reporting needs an active listing"
    );

    // Capability off; capability on but nothing to report.
    let mut data = sample();
    data.products.push(Product {
        id: "PRD-100-100-009".into(),
        name: "No usage".into(),
        vendor: "VA-100-001".into(),
        capabilities: Default::default(),
        aggregation: Default::default(),
        items: vec![],
    });
    let err = check(data.clone(), "PRD-100-100-009", "CRD-10001-10001-00001").unwrap_err();
    assert_eq!(err, PrerequisiteError::UsageDisabled("PRD-100-100-009".into()));
    data.products.last_mut().unwrap().capabilities.ppu = Some(PpuCapability {
        schema: ReportingSchema::Qt,
        dynamic: false,
        future: false,
        late: false,
        predictive: false,
        required_custom_fields: vec![],
    });
    let err = check(data, "PRD-100-100-009", "CRD-10001-10001-00001").unwrap_err();
    assert_eq!(err, PrerequisiteError::NoItems("PRD-100-100-009".into()));
}

#[test]
fn item_precision_errors_name_the_item_and_value() {
    let data = sample();
    let catalogue = Catalogue::new(data).unwrap();
    let item = catalogue.find_item("PRD-200-200-002", usageflow_model::ItemCriteria::Mpn, "FL-SMS").unwrap();
    let err = item.precision.check(&item.mpn, "3.5".parse().unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "quantity 3.5 of item FL-SMS has 1 decimal place(s); the item's precision Integer allows 0"
    );
    let item = catalogue.find_item("PRD-200-200-002", usageflow_model::ItemCriteria::LocalId, "data_mb").unwrap();
    assert!(item.precision.check(&item.mpn, "1024.25".parse().unwrap()).is_ok());
}
