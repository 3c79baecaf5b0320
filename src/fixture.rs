//! Workload fixtures: YAML files of Kubernetes manifests under `fixtures/`.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::scenario::yaml::{self, Node, Pos, ScalarKind, Value};

/// One manifest of a fixture, as JSON, with where it starts in its file.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub object: Json,
    pub pos: Pos,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct FixtureError {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    pub message: String,
}

/// Convert a node to JSON, typing scalars as YAML 1.2's core schema does.
pub fn to_json(node: &Node) -> Json {
    match &node.value {
        Value::Scalar { kind, text, .. } => match kind {
            ScalarKind::Null => Json::Null,
            ScalarKind::Bool => Json::Bool(text.eq_ignore_ascii_case("true")),
            ScalarKind::Int => text
                .parse::<i64>()
                .map(Json::from)
                .unwrap_or_else(|_| Json::String(text.clone())),
            ScalarKind::Float => {
                serde_json::Number::from_f64(text.parse::<f64>().unwrap_or(f64::NAN))
                    .map(Json::Number)
                    .unwrap_or_else(|| Json::String(text.clone()))
            }
            ScalarKind::Str => Json::String(text.clone()),
        },
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut m = serde_json::Map::new();
            for (k, v) in entries {
                m.insert(k.as_str().unwrap_or_default().to_string(), to_json(v));
            }
            Json::Object(m)
        }
    }
}

/// [`load`] for run time: all problems as one error.
pub fn load_all(path: &Path) -> anyhow::Result<Vec<Manifest>> {
    load(path).map_err(|errs| {
        anyhow::anyhow!(
            errs.iter()
                .map(|e| format!("{}: {}", e.file.display(), e.message))
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// Read a fixture file and check that every document is a Kubernetes object.
pub fn load(path: &Path) -> Result<Vec<Manifest>, Vec<FixtureError>> {
    let err = |pos: Option<Pos>, message: String| FixtureError {
        file: path.to_path_buf(),
        pos,
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![err(None, format!("cannot read fixture: {e}"))])?;
    let docs = yaml::parse_multi(&text).map_err(|e| vec![err(e.pos, e.message)])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for doc in docs {
        if matches!(
            &doc.value,
            Value::Scalar {
                kind: ScalarKind::Null,
                ..
            }
        ) {
            continue;
        }
        if doc.as_map().is_none() {
            errors.push(err(
                Some(doc.pos),
                format!(
                    "expected a Kubernetes object (a mapping), found {}",
                    doc.describe()
                ),
            ));
            continue;
        }
        let mut ok = true;
        for field in ["apiVersion", "kind"] {
            if doc.get(field).and_then(Node::as_str).is_none() {
                errors.push(err(Some(doc.pos), format!("manifest has no `{field}`")));
                ok = false;
            }
        }
        match doc.get("metadata") {
            Some(meta) if meta.get("name").and_then(Node::as_str).is_some() => {
                if let Some(ns) = meta.get("namespace") {
                    errors.push(err(
                        Some(ns.pos),
                        "leave `metadata.namespace` out: the scenario's workload decides the namespace".to_string(),
                    ));
                    ok = false;
                }
            }
            _ => {
                errors.push(err(
                    Some(doc.pos),
                    "manifest has no `metadata.name`".to_string(),
                ));
                ok = false;
            }
        }
        if ok {
            out.push(Manifest {
                object: to_json(&doc),
                pos: doc.pos,
            });
        }
    }
    if out.is_empty() && errors.is_empty() {
        errors.push(err(None, "fixture holds no manifests".to_string()));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
