//! A fast scanner for the common shapes of metering events.
//!
//! It reads an event object in one pass without building any intermediate value, and
//! declines (returns `None`) whenever the input is anything but plainly well-formed: a string
//! with an escape or a control character, a `null` or a value of another type where a string
//! is expected, a repeated member, nesting deeper than eight levels, invalid UTF-8 or trailing
//! text. Declined input goes to `serde_json`, so errors are always `serde_json`'s and an
//! accepted event decodes to exactly what `serde_json` would give (a property test checks
//! this on generated and mutated events).

use std::borrow::Cow;

use crate::decode::{Fields, WireAsset, WireItem};

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

/// Sets a member once; a repeated member declines (serde reports it).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

impl<'a> Scanner<'a> {
    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// The next byte after white space.
    fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.byte() {
            self.at += 1;
        }
        self.byte()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string without escapes or control characters: its content.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            match self.byte()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        Some(&self.text[start..self.at - 1])
    }

    fn cow(&mut self) -> Option<Cow<'a, str>> {
        self.string().map(Cow::Borrowed)
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.byte().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// A number in JSON's grammar: its text.
    fn number(&mut self) -> Option<&'a str> {
        self.peek()?;
        let start = self.at;
        if self.byte() == Some(b'-') {
            self.at += 1;
        }
        match self.byte()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.byte() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.byte() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.byte() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(&self.text[start..self.at])
    }

    /// A string (with its quotes) or a number: its JSON text.
    fn scalar(&mut self) -> Option<&'a str> {
        if self.peek()? == b'"' {
            let start = self.at;
            self.string()?;
            return Some(&self.text[start..self.at]);
        }
        self.number()
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.at..].starts_with(word).then(|| self.at += word.len())
    }

    /// Any JSON value (strings without escapes): its text.
    fn value(&mut self, depth: u8) -> Option<&'a str> {
        if depth > 8 {
            return None;
        }
        let first = self.peek()?;
        let start = self.at;
        match first {
            b'"' => {
                self.string()?;
            }
            b'{' => {
                self.at += 1;
                self.members(|s, _| s.value(depth + 1).map(drop))?;
            }
            b'[' => {
                self.at += 1;
                if self.peek()? == b']' {
                    self.at += 1;
                } else {
                    loop {
                        self.value(depth + 1)?;
                        match self.peek()? {
                            b',' => self.at += 1,
                            b']' => {
                                self.at += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
            }
            b't' => self.literal("true")?,
            b'f' => self.literal("false")?,
            b'n' => self.literal("null")?,
            _ => {
                self.number()?;
            }
        }
        Some(&self.text[start..self.at])
    }

    /// The members of an object whose `{` was read, each value read by `member`.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Reads an `asset` object into `slot` (empty before: a repeated member is refused),
    /// in place: the object is returned through the event's fields, not copied into them.
    fn asset(&mut self, slot: &mut Option<WireAsset<'a>>) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        self.eat(b'{')?;
        let a = slot.insert(WireAsset::default());
        self.members(|s, key| match key {
            "id" => once(&mut a.id, s.cow()?),
            "parameter" => once(&mut a.parameter, s.cow()?),
            "value" => once(&mut a.value, s.cow()?),
            _ => s.value(1).map(drop),
        })
    }

    /// Reads an `item` object into `slot`, as [`Self::asset`] does.
    fn item(&mut self, slot: &mut Option<WireItem<'a>>) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        self.eat(b'{')?;
        let i = slot.insert(WireItem::default());
        self.members(|s, key| match key {
            "mpn" => once(&mut i.mpn, s.cow()?),
            "local_id" => once(&mut i.local_id, s.cow()?),
            "global_id" | "id" => once(&mut i.global_id, s.cow()?),
            "name" => once(&mut i.name, s.cow()?),
            "unit" => once(&mut i.unit, s.cow()?),
            "precision" => once(&mut i.precision, s.cow()?),
            _ => s.value(1).map(drop),
        })
    }
}

/// The members of an event object, or `None` when `serde_json` should decide.
#[cfg(test)]
pub(crate) fn fields(payload: &[u8]) -> Option<Fields<'_>> {
    let mut f = Fields::default();
    fields_into(payload, &mut f).then_some(f)
}

/// The members of an event object, read into `f` (which must start empty): whether the scanner read the payload.
/// When it declines, `f` holds whatever it read before declining. Filling the caller's
/// `Fields` in place spares copies of a large structure per event.
pub(crate) fn fields_into<'a>(payload: &'a [u8], f: &mut Fields<'a>) -> bool {
    scan_into(payload, f).is_some()
}

fn scan_into<'a>(payload: &'a [u8], f: &mut Fields<'a>) -> Option<()> {
    let text = simdutf8::basic::from_utf8(payload).ok()?;
    let mut s = Scanner { text, at: 0 };
    s.eat(b'{')?;
    s.members(|s, key| match key {
        "id" => once(&mut f.id, s.cow()?),
        "product" | "product_id" => once(&mut f.product, s.cow()?),
        "asset" => s.asset(&mut f.asset),
        "asset_id" => once(&mut f.asset_id, s.cow()?),
        "item" => s.item(&mut f.item),
        "item_mpn" => once(&mut f.item_mpn, s.cow()?),
        "item_local_id" => once(&mut f.item_local_id, s.cow()?),
        "item_global_id" => once(&mut f.item_global_id, s.cow()?),
        "quantity" => once(&mut f.quantity, s.scalar()?),
        "amount" => once(&mut f.amount, s.scalar()?),
        "tier" => once(&mut f.tier, s.scalar()?),
        "time" | "timestamp" => once(&mut f.time, s.scalar()?),
        "start_time" => once(&mut f.start_time, s.scalar()?),
        "end_time" => once(&mut f.end_time, s.scalar()?),
        "category" => once(&mut f.category, s.cow()?),
        "attributes" => once(&mut f.attributes, s.value(1)?),
        "specversion" => once(&mut f.specversion, s.cow()?),
        "data" => once(&mut f.data, s.value(1)?),
        _ => s.value(1).map(drop),
    })?;
    s.peek().is_none().then_some(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::fields;
    use crate::decode::{CeHeaders, RawEvent, decode_with};

    fn both(payload: &[u8]) -> [Result<RawEvent<'_>, (crate::reject::Code, String)>; 2] {
        [true, false].map(|fast| decode_with(payload, &CeHeaders::default(), fast).map_err(|e| (e.code, e.reason)))
    }

    #[test]
    fn the_usual_shapes_are_scanned() {
        let plain = br#"{"id":"e-1","product":"PRD-1","asset":{"id":"AS-1"},"item":{"mpn":"M"},"quantity":1.25,"time":"2026-11-25T10:00:00.000Z","category":"roaming","amount":"0.50","tier":1,"attributes":{"gateway":"gw-7"}}"#;
        let ce = br#"{"specversion":"1.0","id":"ce-1","source":"/loadgen/42","type":"com.usageflow.metering.v1","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":{"product":"PRD-1","asset":{"parameter":"iccid","value":"89"},"item":{"global_id":"PRD-1-0001"},"quantity":3}}"#;
        for payload in [&plain[..], &ce[..]] {
            assert!(fields(payload).is_some(), "{}", String::from_utf8_lossy(payload));
            let [fast, slow] = both(payload);
            assert!(fast.is_ok());
            assert_eq!(fast, slow);
        }
        // Declined: escapes, null, repeated members, trailing text, a non-object.
        for payload in [
            r#"{"id":"e\"1"}"#,
            r#"{"id":null}"#,
            r#"{"id":"a","id":"b"}"#,
            r#"{"product":"a","product_id":"b"}"#,
            r#"{"id":"a"} x"#,
            r#"[1]"#,
            r#"{"quantity":01}"#,
        ] {
            assert!(fields(payload.as_bytes()).is_none(), "{payload}");
        }
    }

    const KEYS: &[&str] = &[
        "id",
        "product",
        "product_id",
        "asset",
        "asset_id",
        "item",
        "item_mpn",
        "item_local_id",
        "item_global_id",
        "quantity",
        "amount",
        "tier",
        "time",
        "timestamp",
        "start_time",
        "end_time",
        "category",
        "attributes",
        "specversion",
        "data",
        "source",
        "x\\ny",
    ];

    const VALUES: &[&str] = &[
        r#""e-1""#,
        r#""PRD-1""#,
        r#""""#,
        r#""1.0""#,
        r#""2026-11-25T10:00:00Z""#,
        r#""a\"b""#,
        r#""\u00e9""#,
        "\"tab\there\"",
        "1",
        "1.5",
        "-3",
        "0",
        "01",
        "1.",
        "1e5",
        "2E-3",
        "1e400",
        "-",
        "123456789012345678901234567890",
        "null",
        "true",
        "false",
        r#"{"id":"AS-1"}"#,
        r#"{"id":"AS-1","id":"AS-2"}"#,
        r#"{"parameter":"iccid","value":"89"}"#,
        r#"{"mpn":"M","precision":"2","name":"n","unit":"u"}"#,
        r#"{"global_id":"G","id":"G"}"#,
        r#"{"local_id":"L","extra":[1,{"k":null}]}"#,
        r#"{"product":"PRD-1","asset_id":"AS-1","item_mpn":"M","quantity":3,"id":"d"}"#,
        r#"{}"#,
        "[]",
        r#"[1, "two", {"three": [3]}]"#,
        r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{}}}}}}}}}}"#,
    ];

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        let member = (0..KEYS.len(), 0..VALUES.len(), 0..4usize);
        (prop::collection::vec(member, 0..12), any::<u16>(), any::<u8>(), 0..4u8).prop_map(
            |(members, at, byte, mutation)| {
                let spaces = ["", " ", "\n\t", "\r\n  "];
                let body: Vec<String> = members
                    .iter()
                    .map(|&(k, v, ws)| format!("{s}\"{}\"{s}:{s}{}{s}", KEYS[k], VALUES[v], s = spaces[ws]))
                    .collect();
                let mut bytes = format!("{{{}}}", body.join(",")).into_bytes();
                let at = usize::from(at) % (bytes.len() + 1);
                match mutation {
                    0 => bytes.truncate(at),
                    1 => bytes.insert(at, byte),
                    2 => {
                        let tokens = b" ,:{}[]\"\\0-e.";
                        bytes.insert(at, tokens[usize::from(byte) % tokens.len()]);
                    }
                    _ => {}
                }
                bytes
            },
        )
    }

    /// One member: a key and one of its candidate values (mostly valid ones).
    fn member(keys: &'static [&'static str], values: &'static [&'static str]) -> impl Strategy<Value = String> {
        (prop::sample::select(keys), prop::sample::select(values)).prop_map(|(k, v)| format!("\"{k}\":{v}"))
    }

    /// Events that are mostly valid: the required members in any order, some optional ones,
    /// and now and then one byte changed.
    fn event() -> impl Strategy<Value = Vec<u8>> {
        let times: &[&str] = &[r#""2026-11-25T10:00:00Z""#, "1764064800000", r#""2026-11-25T10:00:00.123+01:00""#];
        let members = (
            member(&["id"], &[r#""e-1""#, r#""x-2""#, r#""""#, r#""a\"b""#, "7"]),
            member(&["product", "product_id"], &[r#""PRD-1""#, r#""""#, "null"]),
            prop_oneof![
                member(&["asset_id"], &[r#""AS-1""#]),
                member(&["asset"], &[r#"{"id":"AS-1"}"#, r#"{"parameter":"iccid","value":"89"}"#, r#"{"value":"1"}"#]),
            ],
            prop_oneof![
                member(&["item_mpn", "item_local_id", "item_global_id"], &[r#""M""#]),
                member(
                    &["item"],
                    &[r#"{"mpn":"M"}"#, r#"{"id":"G","unit":"u"}"#, r#"{"local_id":"L","precision":"2"}"#]
                ),
            ],
            member(&["quantity"], &["1", "1.5", r#""2.25""#, "-3", "1e3", "0.000000001"]),
            member(&["time", "timestamp", "start_time"], times),
            prop::collection::vec(
                prop_oneof![
                    member(&["amount"], &[r#""0.50""#, "12", "null"]),
                    member(&["tier"], &["0", "2", r#""1""#, r#""one""#]),
                    member(&["end_time"], times),
                    member(&["category"], &[r#""roaming""#, r#""""#]),
                    member(&["attributes"], &[r#"{"gw":"g-1","n":[1,2.5,true,null]}"#, "[]", r#""s""#]),
                    member(&["source", "type"], &[r#""/gw/7""#, r#"{"nested":{}}"#]),
                ],
                0..4,
            ),
        );
        (members, any::<u16>(), any::<u8>(), 0..8u8, 0..4usize).prop_flat_map(
            |((a, b, c, d, e, f, rest), at, byte, mutation, ws)| {
                let mut all = vec![a, b, c, d, e, f];
                all.extend(rest);
                Just(all).prop_shuffle().prop_map(move |all| {
                    let space = ["", " ", "\n\t", "\r\n  "][ws];
                    let mut bytes = format!("{{{space}{}{space}}}", all.join(&format!("{space},{space}"))).into_bytes();
                    let at = usize::from(at) % (bytes.len() + 1);
                    match mutation {
                        0 => bytes.truncate(at),
                        1 => bytes.insert(at, byte),
                        _ => {}
                    }
                    bytes
                })
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Whatever the scanner accepts decodes exactly as with serde_json alone.
        #[test]
        fn the_scanner_agrees_with_serde(payload in payload()) {
            let [fast, slow] = both(&payload);
            prop_assert_eq!(fast, slow, "{}", String::from_utf8_lossy(&payload));
        }

        /// The same on mostly valid events, which the scanner mostly accepts.
        #[test]
        fn the_scanner_agrees_with_serde_on_events(payload in event()) {
            let [fast, slow] = both(&payload);
            prop_assert_eq!(fast, slow, "{}", String::from_utf8_lossy(&payload));
        }
    }

    #[test]
    fn most_generated_events_are_scanned_and_valid() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut scanned, mut decoded) = (0, 0);
        for _ in 0..2000 {
            let payload = event().new_tree(&mut runner).unwrap().current();
            if fields(&payload).is_some() {
                scanned += 1;
                decoded += usize::from(both(&payload)[0].is_ok());
            }
        }
        // The property above is only worth something if the scanner's results are compared.
        assert!(scanned > 300 && decoded > 60, "scanned {scanned}, decoded {decoded} of 2000");
    }
}
