//! Resource Query Language, as the Connect API speaks it.
//!
//! A query string is a list of terms joined by `&`. A term is either an RQL expression
//! (`eq(status,ready)`, `in(product.id,(PRD-1,PRD-2))`, `and(..)`, `or(..)`, `not(..)`, a
//! parenthesised group with `,` for *and* and `|` for *or*), the simple form `field=value`,
//! or one of the listing controls `limit`, `offset`, `ordering(..)` / `ordering=..`,
//! `select(..)` and `search=..`. Values may be percent-encoded; `*` is the wildcard of
//! `like` and `ilike`.

use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `eq`.
    Eq,
    /// `ne`.
    Ne,
    /// `lt`.
    Lt,
    /// `le`.
    Le,
    /// `gt`.
    Gt,
    /// `ge`.
    Ge,
    /// `like` (`*` wildcard).
    Like,
    /// `ilike` (case-insensitive `like`).
    Ilike,
}

impl Op {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "like" => Op::Like,
            "ilike" => Op::Ilike,
            _ => return None,
        })
    }

    /// The RQL name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Like => "like",
            Op::Ilike => "ilike",
        }
    }
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// All must hold.
    And(Vec<Expr>),
    /// Any must hold.
    Or(Vec<Expr>),
    /// Must not hold.
    Not(Box<Expr>),
    /// `op(field, value)`.
    Cmp { op: Op, field: String, value: String },
    /// `in(field, (a, b))`, or `out(..)` when `negated`.
    In { field: String, values: Vec<String>, negated: bool },
    /// `null(field)`: the field is absent or null.
    Null { field: String },
    /// `empty(field)`: the field is absent, null or the empty string.
    Empty { field: String },
}

impl Expr {
    /// Every field the expression names.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.collect_fields(out)),
            Expr::Not(e) => e.collect_fields(out),
            Expr::Cmp { field, .. } | Expr::In { field, .. } | Expr::Null { field } | Expr::Empty { field } => {
                out.push(field)
            }
        }
    }
}

/// One ordering key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Field.
    pub field: String,
    /// Descending (`-field`).
    pub descending: bool,
}

/// A parsed listing query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The filter (all terms joined by *and*); `None` lists everything.
    pub filter: Option<Expr>,
    /// Ordering keys.
    pub ordering: Vec<Order>,
    /// `select(..)` fields: `-path` removes a field (or a nested one) from every object; `path`
    /// and `+path` add fields hidden by default, of which the usage objects have none.
    pub select: Vec<String>,
    /// `search=`.
    pub search: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// First item.
    pub offset: usize,
}

/// Why a query was refused: the position (in characters of the decoded query) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RqlError {
    /// Character position in the decoded query.
    pub at: usize,
    /// What is wrong.
    pub reason: String,
    /// The decoded query.
    pub query: String,
}

impl fmt::Display for RqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid RQL query at character {}: {} (query: `{}`)", self.at, self.reason, self.query)
    }
}

impl std::error::Error for RqlError {}

/// Percent-decodes a query string (`+` is a space in the simple `field=value` form only).
pub fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The largest page the listings return (`RQL1000Pagination`).
pub const MAX_LIMIT: usize = 1000;
/// The page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 100;

impl Query {
    /// The page size to use.
    pub fn page_size(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }
}

/// How long and how deep an RQL query may be (`api.rql_max_length`, `api.rql_max_depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RqlLimits {
    /// Bytes of the raw query string.
    pub max_length: usize,
    /// Nesting of calls and groups.
    pub max_depth: usize,
}

impl Default for RqlLimits {
    fn default() -> Self {
        Self { max_length: 8192, max_depth: 32 }
    }
}

/// Parses a raw (still percent-encoded) query string, within the default [`RqlLimits`].
pub fn parse(raw: &str) -> Result<Query, RqlError> {
    parse_limited(raw, RqlLimits::default())
}

/// Parses a raw (still percent-encoded) query string within `limits`: a longer or deeper
/// query is refused before it is parsed, so no query can exhaust the parser's stack.
pub fn parse_limited(raw: &str, limits: RqlLimits) -> Result<Query, RqlError> {
    if raw.len() > limits.max_length {
        return Err(RqlError {
            at: limits.max_length,
            reason: format!("the query is {} bytes long; at most {} are accepted", raw.len(), limits.max_length),
            query: String::new(),
        });
    }
    let deepest = raw
        .bytes()
        .scan(0usize, |d, b| {
            match b {
                b'(' => *d += 1,
                b')' => *d = d.saturating_sub(1),
                _ => {}
            }
            Some(*d)
        })
        .max()
        .unwrap_or(0);
    if deepest > limits.max_depth {
        return Err(RqlError {
            at: 0,
            reason: format!("the query nests {deepest} levels deep; at most {} are accepted", limits.max_depth),
            query: String::new(),
        });
    }
    // Split on `&` first (outside parentheses), then decode each term: an encoded `&` or
    // `,` inside a value stays part of the value.
    let mut query = Query::default();
    let mut filters = Vec::new();
    let mut depth = 0i32;
    let mut start = 0usize;
    let mut terms = Vec::new();
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '&' if depth == 0 => {
                terms.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&raw[start..]);
    for term in terms.into_iter().filter(|t| !t.is_empty()) {
        let simple = simple_pair(term);
        if let Some((key, value)) = simple {
            let value = percent_decode(&value.replace('+', " "));
            let key = percent_decode(key);
            let bad = |reason: String| RqlError { at: 0, reason, query: format!("{key}={value}") };
            match key.as_str() {
                "limit" => {
                    let n: usize = value.parse().map_err(|_| bad(format!("limit `{value}` is not a number")))?;
                    if n > MAX_LIMIT {
                        return Err(bad(format!("limit must be between 0 and {MAX_LIMIT}, not {n}")));
                    }
                    query.limit = Some(n);
                }
                "offset" => {
                    query.offset = value.parse().map_err(|_| bad(format!("offset `{value}` is not a number")))?;
                }
                "search" => query.search = Some(value),
                "ordering" => query.ordering.extend(orders(value.split(','))?),
                "select" => query.select.extend(value.split(',').map(str::to_owned)),
                _ => {
                    if key.is_empty() || !key.chars().all(is_field_char) {
                        return Err(bad(format!("`{key}` is not a field name")));
                    }
                    filters.push(Expr::Cmp { op: Op::Eq, field: key, value });
                }
            }
            continue;
        }
        let text = percent_decode(term);
        let mut p = Parser { chars: text.chars().collect(), pos: 0, text: &text };
        // A term is a list of expressions joined by `,` (and) and `|` (or), with the
        // listing controls allowed among them.
        let mut ors: Vec<Expr> = Vec::new();
        let mut ands: Vec<Expr> = Vec::new();
        loop {
            match p.group_or_call()? {
                Node::Filter(e) => ands.push(e),
                Node::Ordering(o) => query.ordering.extend(o),
                Node::Select(s) => query.select.extend(s),
                Node::Limit(limit, offset) => {
                    if limit > MAX_LIMIT {
                        return Err(p.error(format!("limit must be between 0 and {MAX_LIMIT}, not {limit}")));
                    }
                    query.limit = Some(limit);
                    query.offset = offset.unwrap_or(query.offset);
                }
            }
            if p.eat(',') {
                continue;
            }
            if p.eat('|') {
                ors.push(join(std::mem::take(&mut ands), Expr::And));
                continue;
            }
            break;
        }
        p.skip_ws();
        if p.pos < p.chars.len() {
            return Err(p.error(format!("unexpected `{}` after the expression", p.chars[p.pos])));
        }
        if !ors.is_empty() {
            ors.push(join(ands, Expr::And));
            filters.push(Expr::Or(ors));
        } else if !ands.is_empty() {
            filters.push(join(ands, Expr::And));
        }
    }
    query.filter = match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(Expr::And(filters)),
    };
    Ok(query)
}

fn join(mut items: Vec<Expr>, many: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 { items.pop().unwrap_or_else(|| many(Vec::new())) } else { many(items) }
}

/// `key=value` when the term is the simple form (a name, then `=`, outside any parentheses).
fn simple_pair(term: &str) -> Option<(&str, &str)> {
    let eq = term.find('=')?;
    let paren = term.find('(').unwrap_or(usize::MAX);
    (eq < paren).then(|| (&term[..eq], &term[eq + 1..]))
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn orders<'a>(fields: impl Iterator<Item = &'a str>) -> Result<Vec<Order>, RqlError> {
    let mut out = Vec::new();
    for f in fields.map(str::trim).filter(|f| !f.is_empty()) {
        let (descending, name) = match f.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, f.strip_prefix('+').unwrap_or(f)),
        };
        if !name.chars().all(is_field_char) {
            return Err(RqlError { at: 0, reason: format!("`{name}` is not a field name"), query: f.to_owned() });
        }
        out.push(Order { field: name.to_owned(), descending });
    }
    Ok(out)
}

enum Node {
    Filter(Expr),
    Ordering(Vec<Order>),
    Select(Vec<String>),
    Limit(usize, Option<usize>),
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, reason: String) -> RqlError {
        RqlError { at: self.pos, reason, query: self.text.to_owned() }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos] == ' ' {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn expect(&mut self, c: char) -> Result<(), RqlError> {
        self.skip_ws();
        match self.peek() {
            Some(got) if got == c => {
                self.pos += 1;
                Ok(())
            }
            Some(got) => Err(self.error(format!("expected `{c}`, found `{got}`"))),
            None => Err(self.error(format!("expected `{c}`, the query ended"))),
        }
    }

    fn ident(&mut self) -> Result<String, RqlError> {
        self.skip_ws();
        let start = self.pos;
        while self.peek().is_some_and(is_field_char) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(match self.peek() {
                Some(c) => self.error(format!("expected a name, found `{c}`")),
                None => self.error("expected a name, the query ended".to_owned()),
            });
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// A value: everything up to the next `,` `)` or `|` at this level (quotes allowed).
    fn value(&mut self) -> Result<String, RqlError> {
        self.skip_ws();
        if let Some(q @ ('"' | '\'')) = self.peek() {
            self.pos += 1;
            let start = self.pos;
            while self.peek().is_some_and(|c| c != q) {
                self.pos += 1;
            }
            if self.peek().is_none() {
                return Err(RqlError {
                    at: start - 1,
                    reason: "unterminated quoted value".into(),
                    query: self.text.into(),
                });
            }
            let v: String = self.chars[start..self.pos].iter().collect();
            self.pos += 1;
            return Ok(v);
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| !matches!(c, ',' | ')' | '(' | '|' | '&')) {
            self.pos += 1;
        }
        if self.peek() == Some('(') {
            return Err(self.error("a value cannot contain `(`; quote it".to_owned()));
        }
        Ok(self.chars[start..self.pos].iter().collect::<String>().trim().to_owned())
    }

    fn group_or_call(&mut self) -> Result<Node, RqlError> {
        self.skip_ws();
        if self.peek() == Some('(') {
            self.pos += 1;
            let e = self.group_body()?;
            self.expect(')')?;
            return Ok(Node::Filter(e));
        }
        let at = self.pos;
        let name = self.ident()?;
        self.expect('(')?;
        let node = match name.as_str() {
            "and" | "or" => {
                let mut items = vec![self.filter()?];
                while self.eat(',') {
                    items.push(self.filter()?);
                }
                Node::Filter(if name == "and" { Expr::And(items) } else { Expr::Or(items) })
            }
            "not" => Node::Filter(Expr::Not(Box::new(self.filter()?))),
            "in" | "out" => {
                let field = self.ident()?;
                self.expect(',')?;
                let values = if self.eat('(') {
                    let mut v = vec![self.value()?];
                    while self.eat(',') {
                        v.push(self.value()?);
                    }
                    self.expect(')')?;
                    v
                } else {
                    vec![self.value()?]
                };
                Node::Filter(Expr::In { field, values, negated: name == "out" })
            }
            "null" | "empty" => {
                let field = self.ident()?;
                Node::Filter(if name == "null" { Expr::Null { field } } else { Expr::Empty { field } })
            }
            "ordering" | "sort" => {
                let mut fields = Vec::new();
                loop {
                    self.skip_ws();
                    let sign = match self.peek() {
                        Some(c @ ('-' | '+')) => {
                            self.pos += 1;
                            c.to_string()
                        }
                        _ => String::new(),
                    };
                    fields.push(format!("{sign}{}", self.ident()?));
                    if !self.eat(',') {
                        break;
                    }
                }
                Node::Ordering(orders(fields.iter().map(String::as_str))?)
            }
            "select" => {
                // `+field` and `field` add a field, `-field` takes one away.
                let field = |p: &mut Self| -> Result<String, RqlError> {
                    p.eat('+');
                    p.ident()
                };
                let mut fields = vec![field(self)?];
                while self.eat(',') {
                    fields.push(field(self)?);
                }
                Node::Select(fields)
            }
            "limit" => {
                let n = self.number()?;
                let offset = if self.eat(',') { Some(self.number()?) } else { None };
                Node::Limit(n, offset)
            }
            other => {
                let Some(op) = Op::parse(other) else {
                    return Err(RqlError {
                        at,
                        reason: format!(
                            "unknown operator `{other}`; use eq, ne, lt, le, gt, ge, like, ilike, in, out, null, empty, \
                             and, or, not, select, ordering or limit"
                        ),
                        query: self.text.to_owned(),
                    });
                };
                let field = self.ident()?;
                self.expect(',')?;
                let value = self.value()?;
                Node::Filter(Expr::Cmp { op, field, value })
            }
        };
        self.expect(')')?;
        Ok(node)
    }

    fn number(&mut self) -> Result<usize, RqlError> {
        let v = self.value()?;
        v.parse().map_err(|_| self.error(format!("`{v}` is not a number")))
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn filter(&mut self) -> Result<Expr, RqlError> {
        let at = self.pos;
        match self.group_or_call()? {
            Node::Filter(e) => Ok(e),
            _ => Err(RqlError {
                at,
                reason: "ordering, select and limit cannot stand inside a filter".into(),
                query: self.text.into(),
            }),
        }
    }

    /// Inside `( .. )`: filters joined by `,` (and) and `|` (or); `,` binds tighter.
    fn group_body(&mut self) -> Result<Expr, RqlError> {
        let mut ors = Vec::new();
        loop {
            let mut ands = vec![self.filter()?];
            while self.eat(',') {
                ands.push(self.filter()?);
            }
            ors.push(join(ands, Expr::And));
            if !self.eat('|') {
                break;
            }
        }
        Ok(join(ors, Expr::Or))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(op: Op, f: &str, v: &str) -> Expr {
        Expr::Cmp { op, field: f.into(), value: v.into() }
    }

    #[test]
    fn real_queries_parse() {
        let q = parse(
            "eq(asset.id,AS-1),in(status,(approved,closed)),(and(ge(start_date,2024-01-01),lt(start_date,2024-02-01))|and(ge(end_date,2024-01-01),lt(end_date,2024-02-01)))",
        );
        let Some(Expr::And(items)) = &q.unwrap().filter else { panic!() };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[2], Expr::Or(o) if o.len() == 2));
        let q = parse(
            "and(eq(asset.id,AS-1),in(status,(approved,closed)),or(and(ge(start_date,2024-01-01),lt(start_date,2024-02-01)),ge(end_date,2024-01-01)))&limit=10&offset=20",
        )
        .unwrap();
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.offset, 20);
        let Some(Expr::And(items)) = &q.filter else { panic!("{q:?}") };
        assert_eq!(items[0], cmp(Op::Eq, "asset.id", "AS-1"));
        assert_eq!(
            items[1],
            Expr::In { field: "status".into(), values: vec!["approved".into(), "closed".into()], negated: false }
        );
        let q = parse("in(product_id,(PRD-1))&eq(name,Jan%202024)&status=ready&ordering(-created.at)").unwrap();
        let Some(Expr::And(items)) = &q.filter else { panic!() };
        assert_eq!(items.len(), 3);
        assert_eq!(items[1], cmp(Op::Eq, "name", "Jan 2024"));
        assert_eq!(items[2], cmp(Op::Eq, "status", "ready"));
        assert_eq!(q.ordering, vec![Order { field: "created.at".into(), descending: true }]);
    }

    #[test]
    fn deep_and_long_queries_are_refused_before_parsing() {
        let nested = format!("{}eq(status,ready){}", "(".repeat(100_000), ")".repeat(100_000));
        let limits = RqlLimits { max_length: usize::MAX, max_depth: 32 };
        let err = parse_limited(&nested, limits).unwrap_err();
        assert!(err.reason.contains("nests 100001 levels deep; at most 32"), "{err}");
        let calls = format!("{}eq(status,ready){}", "not(".repeat(33), ")".repeat(33));
        assert!(parse_limited(&calls, limits).is_err());
        let within = format!("{}eq(status,ready){}", "not(".repeat(31), ")".repeat(31));
        assert!(parse_limited(&within, limits).is_ok());
        let err = parse(&"a".repeat(9000)).unwrap_err();
        assert!(err.reason.contains("9000 bytes long; at most 8192"), "{err}");
    }

    /// Every input the fuzzer kept (fuzz/rql) parses or fails, without a panic.
    #[test]
    fn the_fuzz_corpus_parses_or_fails_cleanly() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/rql/corpus/rql_parse");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            if let Ok(text) = String::from_utf8(bytes) {
                let _ = parse_limited(&text, RqlLimits { max_length: 4096, max_depth: 32 });
                read += 1;
            }
        }
        assert!(read >= 10, "{read}");
    }

    #[test]
    fn groups_with_bars() {
        let q = parse("(eq(a,1),eq(b,2)|eq(c,3))").unwrap();
        assert_eq!(
            q.filter.unwrap(),
            Expr::Or(vec![Expr::And(vec![cmp(Op::Eq, "a", "1"), cmp(Op::Eq, "b", "2")]), cmp(Op::Eq, "c", "3")])
        );
        let q = parse("not(null(external_id))&empty(note)&like(name,*Jan*)").unwrap();
        let Some(Expr::And(items)) = q.filter else { panic!() };
        assert_eq!(items[0], Expr::Not(Box::new(Expr::Null { field: "external_id".into() })));
        assert_eq!(items[2], cmp(Op::Like, "name", "*Jan*"));
    }

    #[test]
    fn errors_say_where_and_why() {
        let e = parse("eq(status,ready").unwrap_err();
        assert_eq!(e.at, 15);
        assert!(e.reason.contains("expected `)`"), "{e}");
        let e = parse("eqq(status,ready)").unwrap_err();
        assert!(e.reason.contains("unknown operator `eqq`"), "{e}");
        let e = parse("eq(,ready)").unwrap_err();
        assert_eq!(e.at, 3);
        let e = parse("limit=5000").unwrap_err();
        assert!(e.reason.contains("between 0 and 1000"), "{e}");
        // `limit=0` is how Connect's clients count: an empty page and the total.
        assert_eq!(parse("limit=0&offset=0").unwrap().page_size(), 0);
        assert_eq!(parse("limit(0)").unwrap().limit, Some(0));
        assert_eq!(parse("select(-events,+stats,id)").unwrap().select, ["-events", "stats", "id"]);
        let e = parse("and(eq(a,1),ordering(b))").unwrap_err();
        assert!(e.reason.contains("cannot stand inside"), "{e}");
        let e = parse("eq(a,'open").unwrap_err();
        assert!(e.reason.contains("unterminated"), "{e}");
    }
}
