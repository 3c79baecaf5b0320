//! A YAML document as a tree of nodes that remember where they came from.
//!
//! serde-saphyr does the parsing (with its resource budget against alias bombs,
//! deep nesting and huge inputs); this module keeps, for every node, its
//! line and column and, for scalars, the exact text the author wrote, so that
//! `1.20` stays `1.20` when a string is expected and every later error can
//! point at the place it is about.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// A 1-based position in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Pos {
    fn from_location(loc: &Location) -> Pos {
        Pos {
            line: loc.line().max(1),
            column: loc.column().max(1),
        }
    }
}

/// How YAML 1.2 (core schema) would type a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `text` is what the author wrote (without quotes for quoted strings).
    Scalar {
        kind: ScalarKind,
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys are kept in document order.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Node {
    pub fn scalar(pos: Pos, kind: ScalarKind, text: impl Into<String>) -> Node {
        Node {
            pos,
            value: Value::Scalar {
                kind,
                text: text.into(),
                plain: true,
            },
        }
    }

    /// The scalar text, for any scalar that is not null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { kind, text, .. } if *kind != ScalarKind::Null => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The entry of a mapping whose key is `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The entry's key node (for pointing at a field name rather than its value).
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    /// A short description of what the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Scalar {
                kind: ScalarKind::Null,
                ..
            } => "nothing (null)".into(),
            Value::Scalar {
                kind: ScalarKind::Bool,
                text,
                ..
            } => format!("boolean `{text}`"),
            Value::Scalar {
                kind: ScalarKind::Int,
                text,
                ..
            } => format!("integer `{text}`"),
            Value::Scalar {
                kind: ScalarKind::Float,
                text,
                ..
            } => format!("number `{text}`"),
            Value::Scalar {
                kind: ScalarKind::Str,
                text,
                ..
            } => {
                let short: String = text.chars().take(40).collect();
                if short.len() < text.len() {
                    format!("string \"{short}...\"")
                } else {
                    format!("string \"{short}\"")
                }
            }
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }

    /// Visit every node depth first, mutably.
    pub fn walk_mut(&mut self, f: &mut dyn FnMut(&mut Node)) {
        f(self);
        match &mut self.value {
            Value::Scalar { .. } => {}
            Value::Seq(items) => items.iter_mut().for_each(|n| n.walk_mut(f)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| v.walk_mut(f)),
        }
    }

    /// Visit every node depth first with its field path.
    pub fn walk(&self, path: &str, f: &mut dyn FnMut(&str, &Node)) {
        f(path, self);
        match &self.value {
            Value::Scalar { .. } => {}
            Value::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    n.walk(&format!("{path}[{i}]"), f);
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let key = k.as_str().unwrap_or("?");
                    let child = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    v.walk(&child, f);
                }
            }
        }
    }
}

/// Type a plain scalar the way YAML 1.2's core schema does.
pub fn infer_kind(text: &str) -> ScalarKind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return ScalarKind::Bool,
        ".inf" | "-.inf" | "+.inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN" => {
            return ScalarKind::Float;
        }
        _ => {}
    }
    if text.parse::<i64>().is_ok()
        || text
            .strip_prefix("0x")
            .is_some_and(|h| i64::from_str_radix(h, 16).is_ok())
        || text
            .strip_prefix("0o")
            .is_some_and(|o| i64::from_str_radix(o, 8).is_ok())
    {
        return ScalarKind::Int;
    }
    let numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if numeric && text.bytes().any(|b| b.is_ascii_digit()) && text.parse::<f64>().is_ok() {
        return ScalarKind::Float;
    }
    ScalarKind::Str
}

/// Why a document could not be read as YAML.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub pos: Option<Pos>,
    pub message: String,
}

/// Limits that keep a hostile or mistaken file from exhausting memory or stack.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
const MAX_DEPTH: usize = 48;

/// Parse one YAML document into a [`Node`] tree.
pub fn parse(source: &str) -> Result<Node, ParseError> {
    if source.len() > MAX_FILE_BYTES {
        return Err(ParseError {
            pos: None,
            message: format!(
                "file is {} bytes; scenario files are limited to {} bytes",
                source.len(),
                MAX_FILE_BYTES
            ),
        });
    }
    if source.trim().is_empty()
        || source
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ParseError {
            pos: Some(Pos { line: 1, column: 1 }),
            message: "file is empty".into(),
        });
    }
    let seed = NodeSeed { source };
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(source, options()) {
        Ok(spanned) => Ok(seed.finish(spanned)),
        Err(err) => Err(to_parse_error(&err)),
    }
}

/// Parse a stream of `---`-separated documents (fixtures).
pub fn parse_multi(source: &str) -> Result<Vec<Node>, ParseError> {
    if source.len() > MAX_FILE_BYTES {
        return Err(ParseError {
            pos: None,
            message: format!(
                "file is {} bytes; the limit is {}",
                source.len(),
                MAX_FILE_BYTES
            ),
        });
    }
    let seed = NodeSeed { source };
    match serde_saphyr::from_multiple_with_options::<Spanned<RawNode>>(source, options()) {
        Ok(docs) => Ok(docs.into_iter().map(|d| seed.finish(d)).collect()),
        Err(err) => Err(to_parse_error(&err)),
    }
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = 100_000;
    budget.max_aliases = 1_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.strict_booleans = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options
}

fn to_parse_error(err: &serde_saphyr::Error) -> ParseError {
    let pos = err
        .location()
        .map(|l| Pos::from_location(&l))
        .filter(|p| p.line > 0);
    // The plain message, without serde-saphyr's source snippet (we print our own location).
    let mut message = first_line(&err.without_snippet().to_string());
    // serde-saphyr's wording carries a hint for its API users; say it for scenario authors.
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        message = format!("duplicate key `{key}`: it is already set earlier in the same mapping");
    }
    ParseError { pos, message }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    // serde-saphyr appends " at line X column Y"; the position is reported separately.
    match line.rfind(" at line ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

/// What serde-saphyr hands us: values with spans, before we recover the raw text.
#[derive(Debug)]
enum RawNode {
    Null,
    Bool(bool),
    Int(String),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

struct NodeSeed<'a> {
    source: &'a str,
}

impl NodeSeed<'_> {
    fn finish(&self, spanned: Spanned<RawNode>) -> Node {
        let loc = spanned.referenced;
        let pos = Pos::from_location(&loc);
        let raw_text = || -> Option<String> {
            let span = loc.span();
            let start = span.byte_offset()? as usize;
            let len = span.byte_len()? as usize;
            self.source
                .get(start..start + len)
                .map(|s| s.trim().to_string())
        };
        let value = match spanned.value {
            RawNode::Null => Value::Scalar {
                kind: ScalarKind::Null,
                text: String::new(),
                plain: true,
            },
            RawNode::Bool(b) => Value::Scalar {
                kind: ScalarKind::Bool,
                text: raw_text().unwrap_or_else(|| b.to_string()),
                plain: true,
            },
            RawNode::Int(t) => Value::Scalar {
                kind: ScalarKind::Int,
                text: raw_text().unwrap_or(t),
                plain: true,
            },
            RawNode::Float(f) => Value::Scalar {
                kind: ScalarKind::Float,
                text: raw_text()
                    .filter(|t| t.parse::<f64>().is_ok())
                    .unwrap_or_else(|| f.to_string()),
                plain: true,
            },
            RawNode::Str(s) => {
                let plain = raw_text().is_some_and(|t| t == s);
                Value::Scalar {
                    kind: ScalarKind::Str,
                    text: s,
                    plain,
                }
            }
            RawNode::Seq(items) => Value::Seq(items.into_iter().map(|n| self.finish(n)).collect()),
            RawNode::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (self.finish(k), self.finish(v)))
                    .collect(),
            ),
        };
        Node { pos, value }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.to_string()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
        match std::str::from_utf8(v) {
            Ok(s) => Ok(RawNode::Str(s.to_string())),
            Err(_) => Err(E::custom("binary values are not supported")),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<RawNode>>()? {
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((key, value));
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_version_text_and_positions() {
        let n = parse("a: 1.20\nb:\n  - \"x\"\n  - yes\n").unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(a.as_str(), Some("1.20"));
        assert_eq!(a.pos, Pos { line: 1, column: 4 });
        let b = n.get("b").unwrap().as_seq().unwrap();
        assert_eq!(b[0].pos, Pos { line: 3, column: 5 });
        assert!(matches!(
            &b[0].value,
            Value::Scalar {
                kind: ScalarKind::Str,
                plain: false,
                ..
            }
        ));
        // YAML 1.2: `yes` is a string, not a boolean.
        assert!(matches!(
            &b[1].value,
            Value::Scalar {
                kind: ScalarKind::Str,
                ..
            }
        ));
    }

    #[test]
    fn infers_core_schema_kinds() {
        assert_eq!(infer_kind("7"), ScalarKind::Int);
        assert_eq!(infer_kind("1.17"), ScalarKind::Float);
        assert_eq!(infer_kind("true"), ScalarKind::Bool);
        assert_eq!(infer_kind("~"), ScalarKind::Null);
        assert_eq!(infer_kind("1.17.2"), ScalarKind::Str);
        assert_eq!(infer_kind("e"), ScalarKind::Str);
    }

    #[test]
    fn rejects_duplicate_keys_with_position() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.pos.map(|p| p.line), Some(2));
        assert!(
            e.message.to_lowercase().contains("duplicate"),
            "{}",
            e.message
        );
    }
}
