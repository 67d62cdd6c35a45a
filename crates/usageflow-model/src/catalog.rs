//! The catalogue: who sells what to whom, and where.
//!
//! Accounts (vendors, providers/distributors, resellers), marketplaces, hubs, products with
//! their usage capabilities and items, distribution and program contracts, listings and
//! assets. [`Catalogue`] indexes them for the lookups that validation needs.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{CatalogueError, Precision, ReportingSchema};

/// A reference to another object: `{id, name}` as the Connect API embeds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ref {
    /// Object id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
}

/// What an account is in the usage flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountRole {
    /// Reports usage (`VA-…`).
    Vendor,
    /// Distributor / provider: reviews, accepts, bills (`PA-…`).
    Provider,
    /// Tier-1 or tier-2 reseller of an asset.
    Reseller,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// `VA-…`, `PA-…`, or a reseller id.
    pub id: String,
    /// Company name.
    pub name: String,
    /// Role in the usage flow.
    pub role: AccountRole,
}

/// A marketplace: a region with a currency where products are sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marketplace {
    /// `MP-…`.
    pub id: String,
    /// Name, e.g. `Germany`.
    pub name: String,
    /// ISO 4217 currency that the marketplace presets for usage files.
    pub currency: String,
}

/// A provider's hub: the integration point that billing data is exported through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    /// `HB-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// The provider account that owns the hub.
    pub provider: String,
}

/// Pay-as-you-go capability of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpuCapability {
    /// The product's one reporting schema.
    pub schema: ReportingSchema,
    /// Records may name items not declared in the product; they are created on the fly.
    #[serde(default)]
    pub dynamic: bool,
    /// Usage for periods after the file's period (future charges) is accepted.
    #[serde(default)]
    pub future: bool,
    /// Usage for periods before the file's period (late charges) is accepted.
    #[serde(default)]
    pub late: bool,
    /// Predictive estimates: a forecast of the period's usage before the file is due.
    #[serde(default)]
    pub predictive: bool,
    /// Custom record columns (`v.*`/`p.*`) that every record must carry.
    #[serde(default)]
    pub required_custom_fields: Vec<String>,
}

/// Reservation capability of a product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationCapability {
    /// Consumption reporting for reservation items (near-real-time per-asset totals).
    #[serde(default)]
    pub consumption: bool,
}

/// A product's usage capabilities; both are off (absent) by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Pay-as-you-go; `None` = disabled.
    #[serde(default)]
    pub ppu: Option<PpuCapability>,
    /// Reservation consumption; `None` = disabled.
    #[serde(default)]
    pub reservation: Option<ReservationCapability>,
}

impl Capabilities {
    /// Whether usage files may be created at all.
    pub fn usage_enabled(&self) -> bool {
        self.ppu.is_some() || self.reservation_consumption()
    }

    /// Whether reservation items may be reported.
    pub fn reservation_consumption(&self) -> bool {
        self.reservation.as_ref().is_some_and(|r| r.consumption)
    }

    /// Whether items not in the product may be reported.
    pub fn dynamic_items(&self) -> bool {
        self.ppu.as_ref().is_some_and(|p| p.dynamic)
    }
}

/// Kind of item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ItemType {
    /// Pay-per-use.
    #[serde(rename = "PPU", alias = "ppu")]
    Ppu,
    /// Reservation (committed quantity).
    #[serde(rename = "Reservation", alias = "reservation")]
    Reservation,
}

impl ItemType {
    /// `ppu` / `reservation`, as record payloads spell it.
    pub fn record_name(self) -> &'static str {
        match self {
            ItemType::Ppu => "ppu",
            ItemType::Reservation => "reservation",
        }
    }
}

/// A product item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Global id, e.g. `PRD-838-787-106-0003` (`item.global_id`).
    pub id: String,
    /// Local id (`item.local_id`).
    pub local_id: String,
    /// Manufacturer part number (`item.mpn`).
    pub mpn: String,
    /// Display name.
    pub name: String,
    /// PPU or reservation.
    #[serde(rename = "type")]
    pub item_type: ItemType,
    /// Unit, e.g. `GB-hour`.
    pub unit: String,
    /// Decimals allowed in reported quantities.
    pub precision: Precision,
    /// Billing period, e.g. `Monthly`.
    #[serde(default = "default_period")]
    pub period: String,
    /// Created from dynamic reporting rather than declared.
    #[serde(default)]
    pub dynamic: bool,
}

fn default_period() -> String {
    "Monthly".to_owned()
}

/// How usage records of a product are bucketed in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregationPeriod {
    /// One record per hour.
    Hour,
    /// One record per UTC day.
    #[default]
    Day,
    /// One record per calendar month.
    Month,
}

/// A product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// `PRD-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Vendor account id.
    pub vendor: String,
    /// Usage capabilities.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// How ingested usage is bucketed into records.
    #[serde(default)]
    pub aggregation: AggregationPeriod,
    /// Declared items.
    #[serde(default)]
    pub items: Vec<Item>,
}

/// Kind of contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContractKind {
    /// Vendor ↔ provider distribution of products in a marketplace (`CRD-…`).
    Distribution,
    /// The vendor's program agreement with the provider.
    Program,
}

/// Contract status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContractStatus {
    /// Being negotiated.
    Pending,
    /// In force.
    Active,
    /// Ended.
    Terminated,
}

/// A contract between a vendor and a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// `CRD-…` (distribution) or `CRP-…` (program).
    pub id: String,
    /// Name.
    pub name: String,
    /// Distribution or program.
    #[serde(rename = "type")]
    pub kind: ContractKind,
    /// Status.
    pub status: ContractStatus,
    /// Vendor account id.
    pub vendor: String,
    /// Provider account id.
    pub provider: String,
    /// Marketplace id (distribution contracts).
    #[serde(default)]
    pub marketplace: Option<String>,
    /// The program contract a distribution contract runs under.
    #[serde(default)]
    pub program: Option<String>,
}

/// Listing status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListingStatus {
    /// Offered in the marketplace.
    Listed,
    /// Withdrawn.
    Unlisted,
}

/// A product listed in a marketplace under a distribution contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// `LST-…`.
    pub id: String,
    /// Product id.
    pub product: String,
    /// Distribution contract id.
    pub contract: String,
    /// Marketplace id.
    pub marketplace: String,
    /// Status.
    pub status: ListingStatus,
}

/// Environment of a contract, file or asset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Vendor testing.
    Test,
    /// Internal testing; files are not delivered to distributors.
    Preview,
    /// Production.
    #[default]
    Production,
}

/// Asset status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetStatus {
    /// In use.
    #[default]
    Active,
    /// Suspended; usage is still accepted.
    Suspended,
    /// Ended; no usage is accepted after `terminated_at`.
    Terminated,
}

/// The accounts of an asset's tier chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetTiers {
    /// The end customer (tier 0).
    pub customer: Ref,
    /// Tier-1 reseller.
    #[serde(default)]
    pub tier1: Option<Ref>,
    /// Tier-2 reseller.
    #[serde(default)]
    pub tier2: Option<Ref>,
}

impl AssetTiers {
    /// The account of tier `tier` (0 customer, 1, 2).
    pub fn account(&self, tier: u8) -> Option<&Ref> {
        match tier {
            0 => Some(&self.customer),
            1 => self.tier1.as_ref(),
            2 => self.tier2.as_ref(),
            _ => None,
        }
    }
}

/// A subscription of a customer to a product: what usage is reported against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    /// `AS-…`.
    pub id: String,
    /// Product id.
    pub product: String,
    /// Distribution contract id.
    pub contract: String,
    /// Marketplace id.
    pub marketplace: String,
    /// Hub id through which the asset is billed.
    pub hub: String,
    /// Provider-side id.
    #[serde(default)]
    pub external_id: String,
    /// Provider-side unique id.
    #[serde(default)]
    pub external_uid: String,
    /// Vendor's reconciliation id: the value of the parameter flagged `reconciliation`.
    #[serde(default)]
    pub recon_id: Option<String>,
    /// Fulfilment parameter values by parameter id (for `parameter.{id}` lookups).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Customer and resellers.
    pub tiers: AssetTiers,
    /// Status.
    #[serde(default)]
    pub status: AssetStatus,
    /// Environment.
    #[serde(default)]
    pub environment: Environment,
    /// When a terminated asset stopped accepting usage.
    #[serde(default)]
    pub terminated_at: Option<NaiveDate>,
}

/// All catalogue objects, as a file holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueData {
    /// Accounts.
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// Marketplaces.
    #[serde(default)]
    pub marketplaces: Vec<Marketplace>,
    /// Hubs.
    #[serde(default)]
    pub hubs: Vec<Hub>,
    /// Products with their items.
    #[serde(default)]
    pub products: Vec<Product>,
    /// Contracts.
    #[serde(default)]
    pub contracts: Vec<Contract>,
    /// Listings.
    #[serde(default)]
    pub listings: Vec<Listing>,
    /// Assets.
    #[serde(default)]
    pub assets: Vec<Asset>,
}

/// How a record or event names its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ItemCriteria {
    /// `item.mpn`.
    #[serde(rename = "item.mpn")]
    Mpn,
    /// `item.local_id`.
    #[serde(rename = "item.local_id")]
    LocalId,
    /// `item.global_id` (the `PRD-…-NNNN` id).
    #[serde(rename = "item.global_id")]
    GlobalId,
}

impl ItemCriteria {
    /// Parses `item.mpn`, `item.local_id`, `item.global_id`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "item.mpn" => Some(ItemCriteria::Mpn),
            "item.local_id" => Some(ItemCriteria::LocalId),
            "item.global_id" | "item.id" => Some(ItemCriteria::GlobalId),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemCriteria::Mpn => "item.mpn",
            ItemCriteria::LocalId => "item.local_id",
            ItemCriteria::GlobalId => "item.global_id",
        }
    }
}

/// How a record or event names its asset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssetCriteria {
    /// `asset.id`.
    Id,
    /// `parameter.{param_id}`: the asset whose parameter has the value.
    Parameter(String),
}

impl AssetCriteria {
    /// Parses `asset.id` or `parameter.{param_id}`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "asset.id" {
            return Some(AssetCriteria::Id);
        }
        text.strip_prefix("parameter.").filter(|p| !p.is_empty()).map(|p| AssetCriteria::Parameter(p.to_owned()))
    }

    /// The wire spelling.
    pub fn to_wire(&self) -> String {
        match self {
            AssetCriteria::Id => "asset.id".to_owned(),
            AssetCriteria::Parameter(p) => format!("parameter.{p}"),
        }
    }
}

/// The catalogue with its indexes. Built once with [`Catalogue::new`], which checks every
/// cross-reference.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    data: CatalogueData,
    accounts: HashMap<String, usize>,
    marketplaces: HashMap<String, usize>,
    hubs: HashMap<String, usize>,
    products: HashMap<String, usize>,
    contracts: HashMap<String, usize>,
    assets: HashMap<String, usize>,
    /// (product, criteria, value) → item index in the product.
    items: HashMap<(String, ItemCriteria, String), usize>,
    /// (product, param id, value) → asset index.
    asset_params: HashMap<(String, String, String), usize>,
}

fn index<T>(
    kind: &'static str,
    objects: &[T],
    id: impl Fn(&T) -> &str,
) -> Result<HashMap<String, usize>, CatalogueError> {
    let mut map = HashMap::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        if map.insert(id(object).to_owned(), i).is_some() {
            return Err(CatalogueError::Duplicate { kind, id: id(object).to_owned() });
        }
    }
    Ok(map)
}

impl Catalogue {
    /// Indexes the data and checks that every reference resolves.
    pub fn new(data: CatalogueData) -> Result<Self, CatalogueError> {
        let accounts = index("account", &data.accounts, |a| &a.id)?;
        let marketplaces = index("marketplace", &data.marketplaces, |m| &m.id)?;
        let hubs = index("hub", &data.hubs, |h| &h.id)?;
        let products = index("product", &data.products, |p| &p.id)?;
        let contracts = index("contract", &data.contracts, |c| &c.id)?;
        let assets = index("asset", &data.assets, |a| &a.id)?;

        let missing = |kind: &'static str, id: &str, from: String| CatalogueError::MissingReference {
            kind,
            id: id.to_owned(),
            from,
        };
        let expect_role = |id: &str, role: AccountRole, from: String| -> Result<(), CatalogueError> {
            let account =
                accounts.get(id).map(|&i| &data.accounts[i]).ok_or_else(|| missing("account", id, from.clone()))?;
            if account.role != role {
                return Err(CatalogueError::WrongRole { id: id.to_owned(), expected: role, found: account.role, from });
            }
            Ok(())
        };

        for hub in &data.hubs {
            expect_role(&hub.provider, AccountRole::Provider, format!("hub {}", hub.id))?;
        }
        let mut items = HashMap::new();
        for product in &data.products {
            expect_role(&product.vendor, AccountRole::Vendor, format!("product {}", product.id))?;
            if product.capabilities.ppu.is_none() && product.items.iter().any(|i| i.item_type == ItemType::Ppu) {
                return Err(CatalogueError::Invalid {
                    object: format!("product {}", product.id),
                    reason: "declares PPU items but pay-as-you-go (capabilities.ppu) is off".to_owned(),
                });
            }
            for (ii, item) in product.items.iter().enumerate() {
                for (criteria, value) in [
                    (ItemCriteria::GlobalId, &item.id),
                    (ItemCriteria::LocalId, &item.local_id),
                    (ItemCriteria::Mpn, &item.mpn),
                ] {
                    if value.is_empty() {
                        continue;
                    }
                    if items.insert((product.id.clone(), criteria, value.clone()), ii).is_some() {
                        return Err(CatalogueError::Duplicate {
                            kind: "item",
                            id: format!("{} {}={}", product.id, criteria.as_str(), value),
                        });
                    }
                }
            }
        }
        for contract in &data.contracts {
            let from = format!("contract {}", contract.id);
            expect_role(&contract.vendor, AccountRole::Vendor, from.clone())?;
            expect_role(&contract.provider, AccountRole::Provider, from.clone())?;
            if let Some(mp) = &contract.marketplace {
                marketplaces.get(mp).ok_or_else(|| missing("marketplace", mp, from.clone()))?;
            }
            if let Some(program) = &contract.program {
                contracts.get(program).ok_or_else(|| missing("contract", program, from.clone()))?;
            }
        }
        for listing in &data.listings {
            let from = format!("listing {}", listing.id);
            products.get(&listing.product).ok_or_else(|| missing("product", &listing.product, from.clone()))?;
            contracts.get(&listing.contract).ok_or_else(|| missing("contract", &listing.contract, from.clone()))?;
            marketplaces.get(&listing.marketplace).ok_or_else(|| missing("marketplace", &listing.marketplace, from))?;
        }
        let mut asset_params = HashMap::new();
        for (ai, asset) in data.assets.iter().enumerate() {
            let from = format!("asset {}", asset.id);
            products.get(&asset.product).ok_or_else(|| missing("product", &asset.product, from.clone()))?;
            contracts.get(&asset.contract).ok_or_else(|| missing("contract", &asset.contract, from.clone()))?;
            marketplaces
                .get(&asset.marketplace)
                .ok_or_else(|| missing("marketplace", &asset.marketplace, from.clone()))?;
            hubs.get(&asset.hub).ok_or_else(|| missing("hub", &asset.hub, from.clone()))?;
            for (param, value) in &asset.params {
                let key = (asset.product.clone(), param.clone(), value.clone());
                if let Some(other) = asset_params.insert(key, ai) {
                    return Err(CatalogueError::Invalid {
                        object: from,
                        reason: format!(
                            "parameter {param}={value} is also held by asset {} of the same product",
                            data.assets[other].id
                        ),
                    });
                }
            }
        }
        Ok(Self { data, accounts, marketplaces, hubs, products, contracts, assets, items, asset_params })
    }

    /// The underlying objects.
    pub fn data(&self) -> &CatalogueData {
        &self.data
    }

    /// An account by id.
    pub fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.get(id).map(|&i| &self.data.accounts[i])
    }

    /// A marketplace by id.
    pub fn marketplace(&self, id: &str) -> Option<&Marketplace> {
        self.marketplaces.get(id).map(|&i| &self.data.marketplaces[i])
    }

    /// A hub by id.
    pub fn hub(&self, id: &str) -> Option<&Hub> {
        self.hubs.get(id).map(|&i| &self.data.hubs[i])
    }

    /// A product by id.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.get(id).map(|&i| &self.data.products[i])
    }

    /// A contract by id.
    pub fn contract(&self, id: &str) -> Option<&Contract> {
        self.contracts.get(id).map(|&i| &self.data.contracts[i])
    }

    /// An asset by id.
    pub fn asset(&self, id: &str) -> Option<&Asset> {
        self.assets.get(id).map(|&i| &self.data.assets[i])
    }

    /// Finds an item of `product` by criteria and value.
    pub fn find_item(&self, product: &str, criteria: ItemCriteria, value: &str) -> Option<&Item> {
        let i = *self.items.get(&(product.to_owned(), criteria, value.to_owned()))?;
        self.product(product).map(|p| &p.items[i])
    }

    /// Finds an asset of `product` by criteria and value.
    pub fn find_asset(&self, product: &str, criteria: &AssetCriteria, value: &str) -> Option<&Asset> {
        match criteria {
            AssetCriteria::Id => self.asset(value).filter(|a| a.product == product),
            AssetCriteria::Parameter(param) => self
                .asset_params
                .get(&(product.to_owned(), param.clone(), value.to_owned()))
                .map(|&i| &self.data.assets[i]),
        }
    }

    /// Assets of a product under a contract.
    pub fn assets_of<'a>(&'a self, product: &'a str, contract: &'a str) -> impl Iterator<Item = &'a Asset> + 'a {
        self.data.assets.iter().filter(move |a| a.product == product && a.contract == contract)
    }

    /// The listing of `product` under `contract`, if any.
    pub fn listing(&self, product: &str, contract: &str) -> Option<&Listing> {
        self.data.listings.iter().find(|l| l.product == product && l.contract == contract)
    }
}
