//! Typed deserialization from a [`Node`] tree, with errors that carry the
//! position and field path of the node they are about.
//!
//! Written by hand: serde-saphyr reports a position only for the first error of
//! a whole document, while validation here deserializes each section and each
//! step on its own so that every mistake in a file is reported in one pass.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::yaml::{Node, Pos, ScalarKind, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub pos: Option<Pos>,
    pub path: Option<String>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            pos: None,
            path: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut msg = format!("unknown field `{field}`");
        if let Some(best) = closest(field, expected) {
            msg.push_str(&format!(" (did you mean `{best}`?)"));
        }
        if expected.is_empty() {
            msg.push_str("; no fields are allowed here");
        } else {
            msg.push_str(&format!("; expected one of {}", list(expected)));
        }
        de::Error::custom(msg)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut msg = format!("unknown value `{variant}`");
        if let Some(best) = closest(variant, expected) {
            msg.push_str(&format!(" (did you mean `{best}`?)"));
        }
        msg.push_str(&format!("; expected one of {}", list(expected)));
        de::Error::custom(msg)
    }

    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format!("missing required field `{field}`"))
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Deserialize `T` from `node`, whose field path is `path`.
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_string(),
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Attach a position and path to an error that does not have one yet.
fn locate(mut e: DeError, pos: Pos, path: &str) -> DeError {
    if e.pos.is_none() {
        e.pos = Some(pos);
        e.path = Some(path.to_string());
    }
    e
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn fail<T>(&self, expected: &str) -> Result<T, DeError> {
        Err(DeError {
            message: format!("expected {expected}, found {}", self.node.describe()),
            pos: Some(self.node.pos),
            path: Some(self.path.clone()),
        })
    }

    fn scalar(&self) -> Option<(ScalarKind, &'a str)> {
        match &self.node.value {
            Value::Scalar { kind, text, .. } => Some((*kind, text.as_str())),
            _ => None,
        }
    }

    fn number<T: std::str::FromStr>(&self, what: &str) -> Result<T, DeError> {
        match self.scalar() {
            Some((ScalarKind::Int, t)) => t.parse::<T>().or_else(|_| self.fail(what)),
            _ => self.fail(what),
        }
    }

    fn done<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| locate(e, self.node.pos, &self.path))
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty, $what:expr) => {
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            let n: $ty = self.number($what)?;
            let r = v.$visit(n);
            self.done(r)
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Scalar {
                kind: ScalarKind::Null,
                ..
            } => v.visit_unit(),
            Value::Scalar {
                kind: ScalarKind::Bool,
                text,
                ..
            } => v.visit_bool(text.eq_ignore_ascii_case("true")),
            // Numbers go to self-describing targets as the text the author wrote, so a
            // short form like `upgrade-velero: 1.20` keeps its trailing zero. Typed
            // targets (u32, f64, ...) use the typed methods below.
            Value::Scalar { text, .. } => v.visit_str(text),
            Value::Seq(_) => return self.deserialize_seq(v),
            Value::Map(_) => return self.deserialize_map(v),
        };
        self.done(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((ScalarKind::Bool, t)) => {
                let r = v.visit_bool(t.eq_ignore_ascii_case("true"));
                self.done(r)
            }
            _ => self.fail("`true` or `false`"),
        }
    }

    int_method!(deserialize_i8, visit_i8, i8, "a small integer");
    int_method!(deserialize_i16, visit_i16, i16, "an integer");
    int_method!(deserialize_i32, visit_i32, i32, "an integer");
    int_method!(deserialize_i64, visit_i64, i64, "an integer");
    int_method!(deserialize_u8, visit_u8, u8, "a whole number from 0 to 255");
    int_method!(
        deserialize_u16,
        visit_u16,
        u16,
        "a whole number from 0 to 65535"
    );
    int_method!(
        deserialize_u32,
        visit_u32,
        u32,
        "a whole number (0 or more)"
    );
    int_method!(
        deserialize_u64,
        visit_u64,
        u64,
        "a whole number (0 or more)"
    );

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((ScalarKind::Int | ScalarKind::Float, t)) => match t.parse::<f64>() {
                Ok(f) => {
                    let r = v.visit_f64(f);
                    self.done(r)
                }
                Err(_) => self.fail("a number"),
            },
            _ => self.fail("a number"),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((kind, t)) if kind != ScalarKind::Null => {
                let r = v.visit_str(t);
                self.done(r)
            }
            _ => self.fail("a string"),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((ScalarKind::Null, _)) => {
                let r = v.visit_none();
                self.done(r)
            }
            _ => {
                let pos = self.node.pos;
                let path = self.path.clone();
                v.visit_some(self).map_err(|e| locate(e, pos, &path))
            }
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((ScalarKind::Null, _)) => {
                let r = v.visit_unit();
                self.done(r)
            }
            _ => self.fail("nothing"),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let path = self.path.clone();
        v.visit_newtype_struct(self)
            .map_err(|e| locate(e, pos, &path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => {
                let r = v.visit_seq(SeqDe {
                    items: items.iter().enumerate(),
                    path: &self.path,
                });
                self.done(r)
            }
            _ => self.fail("a list"),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => {
                let r = v.visit_map(MapDe {
                    entries: entries.iter(),
                    value: None,
                    path: &self.path,
                });
                self.done(r)
            }
            _ => self.fail("a mapping"),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar {
                kind: ScalarKind::Str,
                text,
                ..
            } => {
                let r = v.visit_enum(text.as_str().into_deserializer());
                self.done(r)
            }
            Value::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                let r = v.visit_enum(EnumDe {
                    key,
                    value,
                    path: &self.path,
                });
                self.done(r)
            }
            Value::Map(entries) if entries.len() > 1 => Err(DeError {
                message: format!(
                    "expected exactly one key here, found {}: {}",
                    entries.len(),
                    entries
                        .iter()
                        .filter_map(|(k, _)| k.as_str())
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                pos: Some(entries[1].0.pos),
                path: Some(self.path.clone()),
            }),
            _ => self.fail("a name or a single-key mapping"),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct SeqDe<'a, I> {
    items: I,
    path: &'a str,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> de::SeqAccess<'de> for SeqDe<'a, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => {
                let path = format!("{}[{i}]", self.path);
                seed.deserialize(NodeDe {
                    node,
                    path: path.clone(),
                })
                .map(Some)
                .map_err(|e| locate(e, node.pos, &path))
            }
            None => Ok(None),
        }
    }
}

struct MapDe<'a, I> {
    entries: I,
    value: Option<(&'a Node, String)>,
    path: &'a str,
}

impl<'de, 'a, I: Iterator<Item = &'a (Node, Node)>> de::MapAccess<'de> for MapDe<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                let name = key.as_str().unwrap_or("?").to_string();
                let path = join(self.path, &name);
                self.value = Some((value, path.clone()));
                seed.deserialize(NodeDe {
                    node: key,
                    path: path.clone(),
                })
                .map(Some)
                .map_err(|e| locate(e, key.pos, &path))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, path) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value requested before key"))?;
        seed.deserialize(NodeDe {
            node,
            path: path.clone(),
        })
        .map_err(|e| locate(e, node.pos, &path))
    }
}

struct EnumDe<'a> {
    key: &'a Node,
    value: &'a Node,
    path: &'a str,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDe<'a> {
    type Error = DeError;
    type Variant = VariantDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'a>), DeError> {
        let name = self.key.as_str().unwrap_or("?");
        let path = join(self.path, name);
        let v = seed
            .deserialize(NodeDe {
                node: self.key,
                path: path.clone(),
            })
            .map_err(|e| locate(e, self.key.pos, &path))?;
        Ok((
            v,
            VariantDe {
                node: self.value,
                path,
            },
        ))
    }
}

struct VariantDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'de, 'a> de::VariantAccess<'de> for VariantDe<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match &self.node.value {
            Value::Scalar {
                kind: ScalarKind::Null,
                ..
            } => Ok(()),
            _ => Err(DeError {
                message: format!("expected nothing here, found {}", self.node.describe()),
                pos: Some(self.node.pos),
                path: Some(self.path),
            }),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let pos = self.node.pos;
        let path = self.path.clone();
        seed.deserialize(NodeDe {
            node: self.node,
            path: self.path,
        })
        .map_err(|e| locate(e, pos, &path))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(
            NodeDe {
                node: self.node,
                path: self.path,
            },
            v,
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(
            NodeDe {
                node: self.node,
                path: self.path,
            },
            v,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::yaml::parse;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        version: String,
        #[serde(default)]
        days: Option<u32>,
    }

    #[test]
    fn unknown_field_points_at_the_key_with_a_suggestion() {
        let n = parse("outer:\n  version: 1.20\n  dayz: 3\n").unwrap();
        let e = from_node::<Inner>(n.get("outer").unwrap(), "outer").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 3, column: 3 }));
        assert_eq!(e.path.as_deref(), Some("outer.dayz"));
        assert!(
            e.message
                .starts_with("unknown field `dayz` (did you mean `days`?)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn numbers_become_strings_verbatim_and_type_errors_are_located() {
        let n = parse("version: 1.20\ndays: seven\n").unwrap();
        let e = from_node::<Inner>(&n, "").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 2, column: 7 }));
        assert_eq!(
            e.message,
            "expected a whole number (0 or more), found string \"seven\""
        );
        let ok: Inner = from_node(&parse("version: 1.20\ndays: 7\n").unwrap(), "").unwrap();
        assert_eq!(ok.version, "1.20");
        assert_eq!(ok.days, Some(7));
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let n = parse("x:\n  days: 1\n").unwrap();
        let e = from_node::<Inner>(n.get("x").unwrap(), "x").unwrap_err();
        assert_eq!(e.message, "missing required field `version`");
        assert_eq!(e.pos, Some(Pos { line: 2, column: 3 }));
    }
}
