//! Decoding metering events: plain JSON, or CloudEvents 1.0 (structured JSON, or binary mode
//! with `ce_*` Kafka headers). Decoding borrows from the message bytes; nothing is copied
//! unless a string has JSON escapes. A one-pass scanner (the `scan` module) reads the usual
//! shapes; whatever it declines is decoded by `serde_json`, with the same result.
//!
//! The event format is documented in `docs/events.md`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use usageflow_model::ItemCriteria;

use crate::reject::{Code, Rejection};

/// How an event names its asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetRef<'a> {
    /// `asset.id` / `asset_id`.
    Id(Cow<'a, str>),
    /// `asset.parameter` + `asset.value`: the asset whose fulfilment parameter has this value.
    Parameter(Cow<'a, str>, Cow<'a, str>),
}

/// How an event names its item, with the descriptive fields of a dynamic item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRef<'a> {
    /// Which identifier `value` is.
    pub criteria: ItemCriteria,
    /// MPN, local id or global id.
    pub value: Cow<'a, str>,
    /// Dynamic items: display name.
    pub name: Option<Cow<'a, str>>,
    /// Dynamic items: unit.
    pub unit: Option<Cow<'a, str>>,
    /// Dynamic items: precision.
    pub precision: Option<Cow<'a, str>>,
}

/// A decoded event, before validation against the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent<'a> {
    /// Event id.
    pub id: Cow<'a, str>,
    /// Product id.
    pub product: Cow<'a, str>,
    /// Asset.
    pub asset: AssetRef<'a>,
    /// Item.
    pub item: ItemRef<'a>,
    /// Quantity (number text).
    pub quantity: &'a str,
    /// Amount (number text).
    pub amount: Option<&'a str>,
    /// Tier.
    pub tier: Option<i64>,
    /// Start (RFC 3339 string or epoch milliseconds).
    pub start: &'a str,
    /// End; equal to start when the event is a point in time.
    pub end: &'a str,
    /// Category id.
    pub category: Option<Cow<'a, str>>,
    /// Attributes object, as JSON text.
    pub attributes: Option<&'a str>,
}

#[derive(Deserialize, Default)]
pub(crate) struct WireAsset<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) parameter: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) value: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
pub(crate) struct WireItem<'a> {
    #[serde(borrow, default)]
    pub(crate) mpn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) local_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "id")]
    pub(crate) global_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) unit: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) precision: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "product_id")]
    product: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    asset: Option<WireAsset<'a>>,
    #[serde(borrow, default)]
    asset_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    item: Option<WireItem<'a>>,
    #[serde(borrow, default)]
    item_mpn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    item_local_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    item_global_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    quantity: Option<&'a RawValue>,
    #[serde(borrow, default)]
    amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tier: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "timestamp")]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    start_time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    end_time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    attributes: Option<&'a RawValue>,
    // CloudEvents structured mode.
    #[serde(borrow, default)]
    specversion: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The members of an event object; numbers and times as their JSON text. Filled by the fast
/// scanner (the `scan` module) for the common shapes, or from [`Wire`] by `serde_json`.
#[derive(Default)]
pub(crate) struct Fields<'a> {
    pub(crate) id: Option<Cow<'a, str>>,
    pub(crate) product: Option<Cow<'a, str>>,
    pub(crate) asset: Option<WireAsset<'a>>,
    pub(crate) asset_id: Option<Cow<'a, str>>,
    pub(crate) item: Option<WireItem<'a>>,
    pub(crate) item_mpn: Option<Cow<'a, str>>,
    pub(crate) item_local_id: Option<Cow<'a, str>>,
    pub(crate) item_global_id: Option<Cow<'a, str>>,
    pub(crate) quantity: Option<&'a str>,
    pub(crate) amount: Option<&'a str>,
    pub(crate) tier: Option<&'a str>,
    pub(crate) time: Option<&'a str>,
    pub(crate) start_time: Option<&'a str>,
    pub(crate) end_time: Option<&'a str>,
    pub(crate) category: Option<Cow<'a, str>>,
    pub(crate) attributes: Option<&'a str>,
    pub(crate) specversion: Option<Cow<'a, str>>,
    pub(crate) data: Option<&'a str>,
}

impl<'a> From<Wire<'a>> for Fields<'a> {
    fn from(w: Wire<'a>) -> Self {
        let raw = |v: Option<&'a RawValue>| v.map(RawValue::get);
        Fields {
            id: w.id,
            product: w.product,
            asset: w.asset,
            asset_id: w.asset_id,
            item: w.item,
            item_mpn: w.item_mpn,
            item_local_id: w.item_local_id,
            item_global_id: w.item_global_id,
            quantity: raw(w.quantity),
            amount: raw(w.amount),
            tier: raw(w.tier),
            time: raw(w.time),
            start_time: raw(w.start_time),
            end_time: raw(w.end_time),
            category: w.category,
            attributes: raw(w.attributes),
            specversion: w.specversion,
            data: raw(w.data),
        }
    }
}

/// CloudEvents binary-mode attributes from Kafka headers (`ce_id`, `ce_time`, ...).
#[derive(Debug, Clone, Copy, Default)]
pub struct CeHeaders<'a> {
    /// `ce_specversion`.
    pub specversion: Option<&'a str>,
    /// `ce_id`.
    pub id: Option<&'a str>,
    /// `ce_time`.
    pub time: Option<&'a str>,
}

fn missing(field: &str) -> Rejection {
    Rejection::new(Code::MissingField, format!("required field `{field}` is missing"))
}

fn null_to_none(value: Option<&str>) -> Option<&str> {
    value.filter(|v| *v != "null")
}

/// Decodes one message payload.
pub fn decode<'a>(payload: &'a [u8], ce: &CeHeaders<'a>) -> Result<RawEvent<'a>, Rejection> {
    decode_with(payload, ce, true)
}

/// The members of an event object: from the scanner (when `fast`), or from `serde_json`, whose
/// errors `rejection` explains.
fn fields_of<'a>(
    json: &'a [u8],
    fast: bool,
    out: &mut Fields<'a>,
    rejection: impl FnOnce(serde_json::Error) -> Rejection,
) -> Result<(), Rejection> {
    if fast && crate::scan::fields_into(json, out) {
        return Ok(());
    }
    *out = serde_json::from_slice::<Wire<'a>>(json).map(Fields::from).map_err(rejection)?;
    Ok(())
}

/// Decodes with the fast scanner first (when `fast`), `serde_json` for everything it declines.
/// Both give the same result for every input; the scanner only declines.
pub(crate) fn decode_with<'a>(payload: &'a [u8], ce: &CeHeaders<'a>, fast: bool) -> Result<RawEvent<'a>, Rejection> {
    let mut outer = Fields::default();
    fields_of(payload, fast, &mut outer, |e| {
        let code = if e.is_data() { Code::InvalidField } else { Code::MalformedJson };
        Rejection::new(code, format!("not a metering event: {e}"))
    })?;
    let mut ce_id: Option<Cow<'a, str>> = ce.id.map(Cow::Borrowed);
    let mut ce_time: Option<&'a str> = ce.time;
    if ce.specversion.is_some_and(|v| v != "1.0") {
        return Err(Rejection::new(Code::InvalidField, "only CloudEvents specversion 1.0 is supported"));
    }
    let mut inner = Fields::default();
    let wire = if let Some(version) = &outer.specversion {
        if version != "1.0" {
            return Err(Rejection::new(Code::InvalidField, format!("CloudEvents specversion `{version}` is not 1.0")));
        }
        ce_id = outer.id.take();
        ce_time = outer.time;
        let data = outer.data.ok_or_else(|| missing("data"))?;
        fields_of(data.as_bytes(), fast, &mut inner, |e| {
            Rejection::new(Code::InvalidField, format!("CloudEvents `data` is not a metering event: {e}"))
        })?;
        &mut inner
    } else {
        &mut outer
    };
    let id = wire.id.take().or(ce_id).filter(|s| !s.is_empty()).ok_or_else(|| missing("id"))?;
    if id.len() > 256 {
        return Err(Rejection::new(Code::InvalidField, "`id` is longer than 256 characters"));
    }
    let product = wire.product.take().filter(|s| !s.is_empty()).ok_or_else(|| missing("product"))?;
    let asset = match (wire.asset.take(), wire.asset_id.take()) {
        (Some(WireAsset { id: Some(id), .. }), _) | (None, Some(id)) => AssetRef::Id(id),
        (Some(WireAsset { parameter: Some(p), value: Some(v), .. }), _) => AssetRef::Parameter(p, v),
        (Some(_), _) => {
            return Err(Rejection::new(Code::InvalidField, "`asset` needs `id`, or `parameter` and `value`"));
        }
        (None, None) => return Err(missing("asset")),
    };
    let item = match wire.item.take() {
        Some(item) => {
            let (criteria, value) = match (item.mpn, item.local_id, item.global_id) {
                (Some(v), _, _) => (ItemCriteria::Mpn, v),
                (None, Some(v), _) => (ItemCriteria::LocalId, v),
                (None, None, Some(v)) => (ItemCriteria::GlobalId, v),
                (None, None, None) => {
                    return Err(Rejection::new(Code::InvalidField, "`item` needs `mpn`, `local_id` or `global_id`"));
                }
            };
            ItemRef { criteria, value, name: item.name, unit: item.unit, precision: item.precision }
        }
        None => {
            let (criteria, value) = match (wire.item_mpn.take(), wire.item_local_id.take(), wire.item_global_id.take())
            {
                (Some(v), _, _) => (ItemCriteria::Mpn, v),
                (None, Some(v), _) => (ItemCriteria::LocalId, v),
                (None, None, Some(v)) => (ItemCriteria::GlobalId, v),
                (None, None, None) => return Err(missing("item")),
            };
            ItemRef { criteria, value, name: None, unit: None, precision: None }
        }
    };
    let quantity = null_to_none(wire.quantity).ok_or_else(|| missing("quantity"))?;
    let amount = null_to_none(wire.amount);
    let tier = match null_to_none(wire.tier) {
        None => None,
        Some(raw) => Some(
            raw.trim_matches('"')
                .parse::<i64>()
                .map_err(|_| Rejection::new(Code::InvalidField, format!("`tier` {raw} is not an integer")))?,
        ),
    };
    let time = null_to_none(wire.time).or(ce_time);
    let start = null_to_none(wire.start_time).or(time).ok_or_else(|| missing("time"))?;
    let end = null_to_none(wire.end_time).unwrap_or(start);
    let attributes = null_to_none(wire.attributes);
    if let Some(a) = attributes
        && !a.starts_with('{')
    {
        return Err(Rejection::new(Code::InvalidField, "`attributes` must be an object"));
    }
    Ok(RawEvent {
        id,
        product,
        asset,
        item,
        quantity,
        amount,
        tier,
        start,
        end,
        category: wire.category.take().filter(|c| !c.is_empty()),
        attributes,
    })
}

/// Parses an RFC 3339 timestamp (JSON string) or epoch milliseconds (JSON number) to
/// microseconds since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if let Some(us) = rfc3339_micros(inner.as_bytes()) {
            return Some(us);
        }
        let parsed = chrono::DateTime::parse_from_rfc3339(inner).ok()?;
        return Some(parsed.timestamp_micros());
    }
    let millis: i64 = text.parse().ok()?;
    millis.checked_mul(1000)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// algorithm; `month` 1–12).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year and month (1–12) of a day counted from 1970-01-01 (the inverse of
/// [`days_from_civil`], same algorithm).
pub(crate) fn year_month_of(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month)
}

/// The common RFC 3339 shape, `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, read without chrono:
/// microseconds since the epoch (fractions truncated, as chrono's `timestamp_micros` does),
/// or `None` for anything else (leap seconds, other separators, out-of-range fields), which
/// `parse_time` then gives to chrono, so the two always agree.
fn rfc3339_micros(b: &[u8]) -> Option<i64> {
    fn num(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    }
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, minute, second) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0;
    if let Some((b'.', fraction)) = rest.split_first() {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let kept = &fraction[..digits.min(6)];
        micros = num(kept)? * 10i64.pow(6 - kept.len() as u32);
        rest = &fraction[digits..];
    }
    let offset = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset * 60;
    Some(seconds * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> RawEvent<'_> {
        decode(json.as_bytes(), &CeHeaders::default()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn err(json: &str) -> Rejection {
        decode(json.as_bytes(), &CeHeaders::default()).unwrap_err()
    }

    #[test]
    fn plain_json_in_both_shapes() {
        let e = ok(
            r#"{"id":"e1","product":"PRD-1","asset":{"id":"AS-1"},"item":{"mpn":"M"},"quantity":1.5,"time":"2026-11-25T10:00:00Z","category":"c","attributes":{"k":"v"}}"#,
        );
        assert_eq!(e.id, "e1");
        assert_eq!(e.asset, AssetRef::Id("AS-1".into()));
        assert_eq!((e.item.criteria, e.item.value.as_ref()), (ItemCriteria::Mpn, "M"));
        assert_eq!((e.quantity, e.start, e.end), ("1.5", "\"2026-11-25T10:00:00Z\"", "\"2026-11-25T10:00:00Z\""));
        assert_eq!(e.attributes, Some(r#"{"k":"v"}"#));
        let e = ok(
            r#"{"id":"e2","product_id":"PRD-1","asset":{"parameter":"iccid","value":"89"},"item_local_id":"l","quantity":"2","amount":"0.5","tier":1,"start_time":1764064800000,"end_time":1764068400000}"#,
        );
        assert_eq!(e.asset, AssetRef::Parameter("iccid".into(), "89".into()));
        assert_eq!(e.item.criteria, ItemCriteria::LocalId);
        assert_eq!((e.amount, e.tier), (Some("\"0.5\""), Some(1)));
        assert_eq!(parse_time(e.start), Some(1_764_064_800_000_000));
        assert_eq!(parse_time("\"2026-11-25T10:00:00+01:00\""), Some(1_795_597_200_000_000));
    }

    #[test]
    fn cloudevents_structured_and_binary() {
        let e = ok(
            r#"{"specversion":"1.0","id":"ce-1","source":"/gw/7","type":"com.usageflow.metering.v1","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":{"product":"PRD-1","asset_id":"AS-1","item_mpn":"M","quantity":3}}"#,
        );
        assert_eq!((e.id.as_ref(), e.start), ("ce-1", "\"2026-11-25T10:00:00Z\""));
        let headers = CeHeaders { specversion: Some("1.0"), id: Some("ce-2"), time: Some("\"2026-11-25T11:00:00Z\"") };
        let payload = br#"{"product":"PRD-1","asset_id":"AS-1","item_mpn":"M","quantity":3}"#;
        let e = decode(payload, &headers).unwrap();
        assert_eq!((e.id.as_ref(), e.start), ("ce-2", "\"2026-11-25T11:00:00Z\""));
        let err = decode(payload, &CeHeaders { specversion: Some("0.3"), ..headers }).unwrap_err();
        assert_eq!(err.code, Code::InvalidField);
    }

    #[test]
    fn bad_events_say_what_is_wrong() {
        assert_eq!(err("{not json").code, Code::MalformedJson);
        let e = err(r#"{"product":"P","asset_id":"A","item_mpn":"M","quantity":1,"time":"2026-11-25T10:00:00Z"}"#);
        assert_eq!((e.code, e.reason.as_str()), (Code::MissingField, "required field `id` is missing"));
        let e = err(r#"{"id":"x","product":"P","asset_id":"A","item_mpn":"M","time":"2026-11-25T10:00:00Z"}"#);
        assert_eq!(e.reason, "required field `quantity` is missing");
        let e = err(r#"{"id":"x","product":"P","asset":{"value":"1"},"item_mpn":"M","quantity":1,"time":"t"}"#);
        assert!(e.reason.contains("`asset` needs"), "{}", e.reason);
        let e = err(r#"{"id":"x","product":"P","asset_id":"A","item_mpn":"M","quantity":1,"tier":"one","time":"t"}"#);
        assert!(e.reason.contains("`tier` \"one\" is not an integer"), "{}", e.reason);
        let e = err(r#"{"id":5,"product":"P"}"#);
        assert_eq!(e.code, Code::InvalidField);
        assert_eq!(err("[1,2]").code, Code::InvalidField);
    }

    fn chrono_micros(text: &str) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_micros())
    }

    #[test]
    fn rfc3339_fast_path_edges() {
        for text in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "0000-03-01T00:00:00Z",
            "2000-02-29T12:00:00.5+05:30",
            "2024-02-29T23:59:59.123456789-11:45",
            "2026-11-25T10:00:00.1234567Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(rfc3339_micros(text.as_bytes()).is_some(), "{text}");
            assert_eq!(rfc3339_micros(text.as_bytes()), chrono_micros(text), "{text}");
        }
        // Not in the fast path's shape: chrono decides.
        for text in [
            "2026-11-25t10:00:00Z",
            "2026-11-25 10:00:00Z",
            "2026-11-25T10:00:00z",
            "2016-12-31T23:59:60Z",
            "2026-11-25T10:00:00.1234567890Z",
        ] {
            assert_eq!(rfc3339_micros(text.as_bytes()), None, "{text}");
            assert_eq!(parse_time(&format!("\"{text}\"")), chrono_micros(text), "{text}");
        }
        for text in
            ["2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-25T24:00:00Z", "2026-11-25T10:00:00+24:00"]
        {
            assert_eq!(parse_time(&format!("\"{text}\"")), None, "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_fast_path_agrees_with_chrono(
            year in 0u32..10_000,
            month in 0u32..14,
            day in 0u32..33,
            hour in 0u32..26,
            minute in 0u32..62,
            second in 0u32..62,
            fraction in proptest::option::of("[0-9]{0,11}"),
            offset in proptest::option::of((proptest::bool::ANY, 0u32..26, 0u32..62)),
            separator in proptest::sample::select(vec!['T', 't', ' ', 'x']),
        ) {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let zone = match offset {
                None => "Z".to_owned(),
                Some((minus, h, m)) => format!("{}{h:02}:{m:02}", if minus { '-' } else { '+' }),
            };
            let text = format!("{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}{fraction}{zone}");
            proptest::prop_assert_eq!(parse_time(&format!("\"{text}\"")), chrono_micros(&text), "{}", text);
            if let Some(fast) = rfc3339_micros(text.as_bytes()) {
                proptest::prop_assert_eq!(Some(fast), chrono_micros(&text), "{}", text);
            }
        }
    }
}
