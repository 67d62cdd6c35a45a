//! Validating decoded events against the catalogue.
//!
//! Validation is deterministic: it depends on the event, the catalogue and the Kafka
//! timestamp of the message (never the wall clock), so replaying a partition after a crash
//! rejects exactly the same events with the same reasons.

use chrono::{DateTime, NaiveDate, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use usageflow_model::{
    AggregationPeriod, AssetStatus, CatalogueData, ItemCriteria, ItemType, Precision, ReportingSchema,
};

use crate::decode::{AssetRef, RawEvent, days_from_civil, parse_time, year_month_of};
use crate::fixed::{self, FixedError, ONE};
use crate::names::Names;
use crate::reject::{Code, Rejection};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// Limits that decide which events are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Usage may start this long before the message's Kafka timestamp on any product.
    pub late_grace_hours: u32,
    /// Products with late charges accept usage up to this many days old.
    pub late_max_days: u32,
    /// Usage may end this far after the Kafka timestamp on any product (clock skew).
    pub future_tolerance_secs: u32,
    /// Products with future charges accept usage ending up to this many days ahead.
    pub future_max_days: u32,
    /// Longest interval one event may cover.
    pub max_event_span_days: u32,
    /// Largest quantity one event may report.
    pub max_quantity: u64,
    /// Largest amount one event may report.
    pub max_amount: u64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            late_grace_hours: 48,
            late_max_days: 92,
            future_tolerance_secs: 600,
            future_max_days: 62,
            max_event_span_days: 31,
            max_quantity: 1_000_000_000_000,
            max_amount: 1_000_000_000,
        }
    }
}

/// A catalogue item as ingestion sees it.
#[derive(Debug, Clone)]
pub struct ItemInfo {
    /// Global id; `None` for dynamic items.
    pub id: Option<String>,
    /// MPN.
    pub mpn: String,
    /// Allowed decimals.
    pub scale: u32,
    /// PPU or reservation.
    pub item_type: ItemType,
}

/// A product as ingestion sees it.
#[derive(Debug, Clone)]
pub struct ProductInfo {
    /// Id.
    pub id: String,
    /// Reporting schema (PPU on).
    pub schema: Option<ReportingSchema>,
    /// Reservation consumption on.
    pub reservation: bool,
    /// Dynamic items allowed.
    pub dynamic: bool,
    /// Late charges allowed.
    pub late: bool,
    /// Future charges allowed.
    pub future: bool,
    /// Record bucket size.
    pub aggregation: AggregationPeriod,
    /// Declared items.
    pub items: Vec<ItemInfo>,
    by_mpn: Names,
    by_local: Names,
    by_global: Names,
    by_param: FxHashMap<String, FxHashMap<String, u32>>,
}

/// An asset as ingestion sees it.
#[derive(Debug, Clone)]
pub struct AssetInfo {
    /// Id.
    pub id: String,
    /// Product index.
    pub product: u32,
    /// Contract.
    pub contract: String,
    /// Marketplace.
    pub marketplace: String,
    /// Hub.
    pub hub: String,
    /// Vendor.
    pub vendor: String,
    /// Provider.
    pub provider: String,
    /// Tier accounts present (0 always, 1, 2).
    pub tiers: [bool; 3],
    /// Usage starting at or after this instant (µs) is refused.
    pub terminated_from: Option<i64>,
    /// A fulfilment parameter (name, value) that identifies the asset within its product.
    pub param: Option<(String, String)>,
}

/// The catalogue indexed for the ingest hot path: lookups by `&str`, no allocation.
#[derive(Debug, Clone)]
pub struct Index {
    /// Products.
    pub products: Vec<ProductInfo>,
    /// Assets.
    pub assets: Vec<AssetInfo>,
    product_ids: Names,
    asset_ids: Names,
}

impl Index {
    /// Indexes a (checked) catalogue.
    pub fn new(data: &CatalogueData) -> Self {
        let mut products = Vec::new();
        let mut product_ids = Names::default();
        for product in &data.products {
            let mut info = ProductInfo {
                id: product.id.clone(),
                schema: product.capabilities.ppu.as_ref().map(|p| p.schema),
                reservation: product.capabilities.reservation_consumption(),
                dynamic: product.capabilities.dynamic_items(),
                late: product.capabilities.ppu.as_ref().is_some_and(|p| p.late),
                future: product.capabilities.ppu.as_ref().is_some_and(|p| p.future),
                aggregation: product.aggregation,
                items: Vec::new(),
                by_mpn: Names::default(),
                by_local: Names::default(),
                by_global: Names::default(),
                by_param: FxHashMap::default(),
            };
            for (i, item) in product.items.iter().enumerate() {
                let i = i as u32;
                info.by_mpn.insert(&item.mpn, i);
                info.by_local.insert(&item.local_id, i);
                info.by_global.insert(&item.id, i);
                info.items.push(ItemInfo {
                    id: Some(item.id.clone()),
                    mpn: item.mpn.clone(),
                    scale: item.precision.scale(),
                    item_type: item.item_type,
                });
            }
            product_ids.insert(&product.id, products.len() as u32);
            products.push(info);
        }
        let contracts: FxHashMap<&str, (&str, &str)> =
            data.contracts.iter().map(|c| (c.id.as_str(), (c.vendor.as_str(), c.provider.as_str()))).collect();
        let mut assets = Vec::new();
        let mut asset_ids = Names::default();
        for asset in &data.assets {
            let Some(product) = product_ids.get(&asset.product) else { continue };
            let (vendor, provider) = contracts.get(asset.contract.as_str()).copied().unwrap_or(("", ""));
            let idx = assets.len() as u32;
            for (param, value) in &asset.params {
                products[product as usize].by_param.entry(param.clone()).or_default().insert(value.clone(), idx);
            }
            let terminated_from = match (asset.status, asset.terminated_at) {
                (AssetStatus::Terminated, Some(day)) => day.succ_opt().map(day_start),
                (AssetStatus::Terminated, None) => Some(i64::MIN),
                _ => None,
            };
            asset_ids.insert(&asset.id, idx);
            assets.push(AssetInfo {
                id: asset.id.clone(),
                product,
                contract: asset.contract.clone(),
                marketplace: asset.marketplace.clone(),
                hub: asset.hub.clone(),
                vendor: vendor.to_owned(),
                provider: provider.to_owned(),
                tiers: [true, asset.tiers.tier1.is_some(), asset.tiers.tier2.is_some()],
                terminated_from,
                param: asset.params.iter().next().map(|(k, v)| (k.clone(), v.clone())),
            });
        }
        Self { products, assets, product_ids, asset_ids }
    }
}

fn day_start(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros()
}

/// The item of an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKey {
    /// Index into the product's declared items.
    Declared(u32),
    /// Index into the processor's dynamic-item table.
    Dynamic(u32),
}

/// Items that are not in the catalogue but were reported to products with dynamic items.
#[derive(Debug, Clone, Default)]
pub struct DynamicItems {
    /// The items, by [`ItemKey::Dynamic`] index.
    pub items: Vec<(u32, ItemInfo)>,
    /// Per product, MPN → index (looked up without allocating).
    by_key: FxHashMap<u32, Names>,
}

impl DynamicItems {
    fn get_or_insert(&mut self, product: u32, mpn: &str, scale: u32) -> u32 {
        let by_mpn = self.by_key.entry(product).or_default();
        if let Some(i) = by_mpn.get(mpn) {
            return i;
        }
        let i = self.items.len() as u32;
        self.items.push((product, ItemInfo { id: None, mpn: mpn.to_owned(), scale, item_type: ItemType::Ppu }));
        by_mpn.insert(mpn, i);
        i
    }

    /// The item behind a key.
    pub fn info<'a>(&'a self, index: &'a Index, product: u32, key: ItemKey) -> &'a ItemInfo {
        match key {
            ItemKey::Declared(i) => &index.products[product as usize].items[i as usize],
            ItemKey::Dynamic(i) => &self.items[i as usize].1,
        }
    }
}

/// An accepted event, resolved against the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    /// Product index.
    pub product: u32,
    /// Asset index.
    pub asset: u32,
    /// Item.
    pub item: ItemKey,
    /// Quantity (10^-8 units).
    pub quantity: i128,
    /// Amount (10^-8 units).
    pub amount: Option<i128>,
    /// Tier.
    pub tier: Option<i8>,
    /// Start (µs).
    pub start: i64,
    /// End (µs).
    pub end: i64,
    /// Start of the record period the event falls in (µs).
    pub period_start: i64,
    /// End of that period, exclusive (µs).
    pub period_end: i64,
}

fn iso(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us).map_or_else(|| us.to_string(), |t| t.to_rfc3339())
}

/// Start and end (exclusive) of the period containing `us`.
pub fn period_of(aggregation: AggregationPeriod, us: i64) -> (i64, i64) {
    match aggregation {
        AggregationPeriod::Hour => {
            let start = us.div_euclid(HOUR_US) * HOUR_US;
            (start, start + HOUR_US)
        }
        AggregationPeriod::Day => {
            let start = us.div_euclid(DAY_US) * DAY_US;
            (start, start + DAY_US)
        }
        AggregationPeriod::Month => {
            let (year, month) = year_month_of(us.div_euclid(DAY_US));
            let next = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
            (days_from_civil(year, month, 1) * DAY_US, days_from_civil(next.0, next.1, 1) * DAY_US)
        }
    }
}

/// Checks events against the catalogue and the limits.
#[derive(Debug)]
pub struct Validator {
    index: std::sync::Arc<Index>,
    config: ValidationConfig,
    /// Dynamic items seen so far.
    pub dynamic: DynamicItems,
}

impl Validator {
    /// A validator over `index`.
    pub fn new(index: std::sync::Arc<Index>, config: ValidationConfig) -> Self {
        Self { index, config, dynamic: DynamicItems::default() }
    }

    /// The catalogue index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Validates one event; `kafka_ts` is the message's Kafka timestamp (µs).
    pub fn validate(&mut self, event: &RawEvent<'_>, kafka_ts: i64) -> Result<Valid, Rejection> {
        let index: &Index = &self.index;
        let c = &self.config;
        let product_idx = index.product_ids.get(event.product.as_ref()).ok_or_else(|| {
            Rejection::new(Code::UnknownProduct, format!("product `{}` is not in the catalogue", event.product))
        })?;
        let product = &index.products[product_idx as usize];
        if product.schema.is_none() && !product.reservation {
            return Err(Rejection::new(
                Code::UsageNotEnabled,
                format!("product {} has no usage capability enabled", product.id),
            ));
        }
        let asset_idx = match &event.asset {
            AssetRef::Id(id) => index
                .asset_ids
                .get(id.as_ref())
                .filter(|&a| index.assets[a as usize].product == product_idx)
                .ok_or_else(|| {
                    Rejection::new(
                        Code::UnknownAsset,
                        format!("asset `{id}` is not an asset of product {}", product.id),
                    )
                })?,
            AssetRef::Parameter(param, value) => {
                product.by_param.get(param.as_ref()).and_then(|values| values.get(value.as_ref())).copied().ok_or_else(
                    || {
                        Rejection::new(
                            Code::UnknownAsset,
                            format!("no asset of product {} has parameter {param} = `{value}`", product.id),
                        )
                    },
                )?
            }
        };
        let asset = &index.assets[asset_idx as usize];

        let item_value = event.item.value.as_ref();
        let declared = match event.item.criteria {
            ItemCriteria::Mpn => product.by_mpn.get(item_value),
            ItemCriteria::LocalId => product.by_local.get(item_value),
            ItemCriteria::GlobalId => product.by_global.get(item_value),
        };
        let item = match declared {
            Some(i) => ItemKey::Declared(i),
            None if product.dynamic && event.item.criteria == ItemCriteria::Mpn => {
                let scale = match &event.item.precision {
                    None => 8,
                    Some(p) => p
                        .parse::<Precision>()
                        .map_err(|e| Rejection::new(Code::InvalidField, format!("item.precision: {e}")))?
                        .scale(),
                };
                ItemKey::Dynamic(self.dynamic.get_or_insert(product_idx, item_value, scale))
            }
            None => {
                let hint = if product.dynamic {
                    "; dynamic items must be named by item.mpn"
                } else {
                    " and the product does not allow dynamic items"
                };
                return Err(Rejection::new(
                    Code::UnknownItem,
                    format!(
                        "item {}=`{item_value}` is not in product {}{hint}",
                        event.item.criteria.as_str(),
                        product.id
                    ),
                ));
            }
        };
        let info = self.dynamic.info(index, product_idx, item);
        match info.item_type {
            ItemType::Reservation if !product.reservation => {
                return Err(Rejection::new(
                    Code::UsageNotEnabled,
                    format!(
                        "item {} is a reservation item and product {} does not report reservation consumption",
                        info.mpn, product.id
                    ),
                ));
            }
            ItemType::Ppu if product.schema.is_none() => {
                return Err(Rejection::new(
                    Code::UsageNotEnabled,
                    format!("item {} is pay-as-you-go and product {} has pay-as-you-go off", info.mpn, product.id),
                ));
            }
            _ => {}
        }

        let number = |field: &str, text: &str, max: u64| -> Result<fixed::Fixed, Rejection> {
            let parsed = fixed::parse(text).map_err(|e| {
                let code = match e {
                    FixedError::NotANumber => Code::InvalidField,
                    FixedError::TooPrecise(_) => Code::PrecisionExceeded,
                    FixedError::TooLarge => Code::AbsurdValue,
                };
                Rejection::new(code, format!("{field} {text} {e}"))
            })?;
            if parsed.units < 0 {
                return Err(Rejection::new(Code::NegativeValue, format!("{field} {text} is negative")));
            }
            if parsed.units > i128::from(max) * ONE {
                return Err(Rejection::new(Code::AbsurdValue, format!("{field} {text} exceeds the limit of {max}")));
            }
            Ok(parsed)
        };
        let quantity = number("quantity", event.quantity, c.max_quantity)?;
        if quantity.decimals > info.scale {
            return Err(Rejection::new(
                Code::PrecisionExceeded,
                format!(
                    "quantity {} of item {} has {} decimal place(s); the item's precision allows {}",
                    fixed::format(quantity.units),
                    info.mpn,
                    quantity.decimals,
                    info.scale
                ),
            ));
        }
        let quantity = quantity.units;
        let schema = product.schema.unwrap_or(ReportingSchema::Qt);
        let amount = match (event.amount, schema.requires_amount()) {
            (Some(text), true) => Some(number("amount", text, c.max_amount)?.units),
            (None, true) => {
                return Err(Rejection::new(
                    Code::AmountRequired,
                    format!("product {} reports schema {schema}, which needs an amount", product.id),
                ));
            }
            (Some(_), false) => {
                return Err(Rejection::new(
                    Code::AmountNotAllowed,
                    format!("product {} reports schema QT (quantities only); remove `amount`", product.id),
                ));
            }
            (None, false) => None,
        };
        let tier = match (event.tier, schema.requires_tier()) {
            (None, true) => {
                return Err(Rejection::new(
                    Code::TierRequired,
                    format!("product {} reports schema TR, which needs a tier (0, 1 or 2)", product.id),
                ));
            }
            (Some(t), true) => {
                if !(0..=2).contains(&t) {
                    return Err(Rejection::new(Code::InvalidTier, format!("tier {t} is not 0, 1 or 2")));
                }
                if !asset.tiers[t as usize] {
                    return Err(Rejection::new(
                        Code::InvalidTier,
                        format!("asset {} has no tier-{t} reseller", asset.id),
                    ));
                }
                Some(t as i8)
            }
            (Some(t), false) => {
                return Err(Rejection::new(
                    Code::InvalidTier,
                    format!("tier {t} given, but product {} reports schema {schema}; tiers are for TR", product.id),
                ));
            }
            (None, false) => None,
        };

        let start = parse_time(event.start).ok_or_else(|| {
            Rejection::new(Code::InvalidTime, format!("start {} is not RFC 3339 or epoch milliseconds", event.start))
        })?;
        // Events with a single timestamp carry the same text twice.
        let end = if event.end == event.start { Some(start) } else { parse_time(event.end) };
        let end = end.ok_or_else(|| {
            Rejection::new(Code::InvalidTime, format!("end {} is not RFC 3339 or epoch milliseconds", event.end))
        })?;
        if start > end {
            return Err(Rejection::new(Code::InvalidTime, format!("start {} is after end {}", iso(start), iso(end))));
        }
        if end - start > i64::from(c.max_event_span_days) * DAY_US {
            return Err(Rejection::new(
                Code::InvalidTime,
                format!("the event covers more than {} days ({} to {})", c.max_event_span_days, iso(start), iso(end)),
            ));
        }
        let grace = i64::from(c.late_grace_hours) * HOUR_US;
        if start < kafka_ts - grace {
            if !product.late {
                return Err(Rejection::new(
                    Code::LateEvent,
                    format!(
                        "usage starting {} is more than {} h older than its message and product {} does not accept late charges",
                        iso(start),
                        c.late_grace_hours,
                        product.id
                    ),
                ));
            }
            if start < kafka_ts - i64::from(c.late_max_days) * DAY_US {
                return Err(Rejection::new(
                    Code::LateEvent,
                    format!("usage starting {} is more than {} days old", iso(start), c.late_max_days),
                ));
            }
        }
        let tolerance = i64::from(c.future_tolerance_secs) * 1_000_000;
        if end > kafka_ts + tolerance {
            if !product.future {
                return Err(Rejection::new(
                    Code::FutureEvent,
                    format!(
                        "usage ending {} lies in the future and product {} does not accept future charges",
                        iso(end),
                        product.id
                    ),
                ));
            }
            if end > kafka_ts + i64::from(c.future_max_days) * DAY_US {
                return Err(Rejection::new(
                    Code::FutureEvent,
                    format!("usage ending {} is more than {} days ahead", iso(end), c.future_max_days),
                ));
            }
        }
        if asset.terminated_from.is_some_and(|t| start >= t) {
            return Err(Rejection::new(
                Code::AssetTerminated,
                format!("asset {} was terminated before {}", asset.id, iso(start)),
            ));
        }
        if let Some(category) = &event.category
            && category.len() > 255
        {
            return Err(Rejection::new(Code::InvalidField, "category is longer than 255 characters"));
        }
        let (period_start, period_end) = period_of(product.aggregation, start);
        Ok(Valid {
            product: product_idx,
            asset: asset_idx,
            item,
            quantity,
            amount,
            tier,
            start,
            end,
            period_start,
            period_end,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, TimeZone};
    use proptest::prelude::*;

    use super::*;

    /// The month containing `us`, through chrono's calendar.
    fn month_by_chrono(us: i64) -> (i64, i64) {
        let t = DateTime::<Utc>::from_timestamp_micros(us).unwrap();
        let first = Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).unwrap();
        let next = if t.month() == 12 {
            Utc.with_ymd_and_hms(t.year() + 1, 1, 1, 0, 0, 0)
        } else {
            Utc.with_ymd_and_hms(t.year(), t.month() + 1, 1, 0, 0, 0)
        }
        .unwrap();
        (first.timestamp_micros(), next.timestamp_micros())
    }

    #[test]
    fn periods_at_their_edges() {
        let us = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
        let month = |s| period_of(AggregationPeriod::Month, us(s));
        assert_eq!(month("2024-02-29T23:59:59.999999Z"), (us("2024-02-01T00:00:00Z"), us("2024-03-01T00:00:00Z")));
        assert_eq!(month("2026-12-31T12:00:00Z"), (us("2026-12-01T00:00:00Z"), us("2027-01-01T00:00:00Z")));
        assert_eq!(month("2027-01-01T00:00:00Z"), (us("2027-01-01T00:00:00Z"), us("2027-02-01T00:00:00Z")));
        assert_eq!(month("1969-12-31T23:59:59Z"), (us("1969-12-01T00:00:00Z"), us("1970-01-01T00:00:00Z")));
        assert_eq!(period_of(AggregationPeriod::Day, us("1969-12-31T23:00:00Z")).0, us("1969-12-31T00:00:00Z"));
        assert_eq!(period_of(AggregationPeriod::Hour, us("2026-11-30T07:59:59Z")).0, us("2026-11-30T07:00:00Z"));
    }

    proptest! {
        /// Months agree with chrono's calendar from year 1600 to 2400.
        #[test]
        fn months_agree_with_chrono(us in -11_676_096_000_000_000i64..13_569_465_600_000_000) {
            prop_assert_eq!(period_of(AggregationPeriod::Month, us), month_by_chrono(us));
        }
    }
}
