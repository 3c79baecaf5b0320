//! Scenario files: parse, validate, expand the matrix into cells.
//!
//! `load` reads a file into a tree that remembers positions ([`yaml`]), checks
//! every `${...}` reference, expands the matrix, deserializes each section and
//! each step on its own ([`de`]) and runs the semantic checks ([`validate`]),
//! so that all mistakes in a file are reported together, each with its
//! file, line, column and field path.

pub mod bsl;
pub mod de;
pub mod diagnostic;
pub mod model;
pub mod refs;
pub mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diagnostic::Diagnostic;
pub use model::*;
use yaml::{Node, Pos, ScalarKind, Value};

/// A scenario file, validated and expanded.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub path: PathBuf,
    /// The directory fixture paths are relative to.
    pub dir: PathBuf,
    pub metadata: Metadata,
    pub cells: Vec<Cell>,
}

/// One combination of matrix values: an independent run.
#[derive(Debug, Clone)]
pub struct Cell {
    /// `<scenario>` or `<scenario>[velero=1.18,...]`.
    pub id: String,
    pub matrix: Vec<(String, String)>,
    /// The scenario with matrix values and plan-time key attributes substituted.
    /// Run-time references such as `${keys.k.arn}` remain for the runner.
    pub scenario: Scenario,
    pub path: PathBuf,
    pub dir: PathBuf,
}

const TOP_LEVEL: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "matrix",
    "environment",
    "keys",
    "velero",
    "workloads",
    "steps",
    "finally",
    "timeout",
];

/// Cells a matrix may expand into; beyond this a scenario is almost surely a mistake.
const MAX_CELLS: usize = 256;

/// Load, validate and expand one scenario file.
pub fn load(path: &Path) -> Result<ScenarioFile, Vec<Diagnostic>> {
    load_with(path, &[])
}

/// [`load`], with matrix values from the command line (`--matrix to=1.18.2`): each
/// replaces the values of its dimension, so a value the file does not list (a Velero
/// version nobody pinned) makes cells too. Dimensions the file lacks are ignored here.
pub fn load_with(
    path: &Path,
    overrides: &[(String, String)],
) -> Result<ScenarioFile, Vec<Diagnostic>> {
    let bytes = read_regular(path).map_err(|msg| vec![Diagnostic::new(path, None, None, msg)])?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let source = decode(path, &bytes)?;
    load_str_with(path, &dir, &source, overrides)
}

/// Load from raw bytes (checked for size and UTF-8 first).
pub fn load_bytes(path: &Path, dir: &Path, bytes: &[u8]) -> Result<ScenarioFile, Vec<Diagnostic>> {
    let source = decode(path, bytes)?;
    load_str(path, dir, &source)
}

/// Load from text already in memory (`path` names it in diagnostics; `dir` resolves fixtures).
pub fn load_str(path: &Path, dir: &Path, source: &str) -> Result<ScenarioFile, Vec<Diagnostic>> {
    load_str_with(path, dir, source, &[])
}

/// [`load_str`] with command-line matrix values (see [`load_with`]).
pub fn load_str_with(
    path: &Path,
    dir: &Path,
    source: &str,
    overrides: &[(String, String)],
) -> Result<ScenarioFile, Vec<Diagnostic>> {
    let diag = |pos: Option<Pos>, p: &str, msg: String| {
        Diagnostic::new(path, pos, Some(p.to_string()), msg)
    };
    let root =
        yaml::parse(source).map_err(|e| vec![Diagnostic::new(path, e.pos, None, e.message)])?;
    let Some(entries) = root.as_map() else {
        return Err(vec![diag(
            Some(root.pos),
            "",
            format!(
                "expected a scenario (a mapping with `apiVersion`, `kind`, `metadata`, ...), found {}",
                root.describe()
            ),
        )]);
    };

    let mut diags = Vec::new();
    for (key, _) in entries {
        match key.as_str() {
            Some(k) if TOP_LEVEL.contains(&k) => {}
            Some(k) => {
                let mut msg = format!("unknown field `{k}`");
                if let Some(best) = de::closest(k, TOP_LEVEL) {
                    msg.push_str(&format!(" (did you mean `{best}`?)"));
                }
                msg.push_str(&format!(
                    "; expected one of {}",
                    TOP_LEVEL
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                diags.push(diag(Some(key.pos), k, msg));
            }
            None => diags.push(diag(
                Some(key.pos),
                "",
                format!("expected a field name, found {}", key.describe()),
            )),
        }
    }

    let mut matrix = read_matrix(path, &root, &mut diags);
    let key_names = read_key_names(&root);
    check_references(path, &root, &matrix.dims, &key_names, &mut diags);
    if !diags.is_empty() {
        // Still report the structural mistakes of the file as written.
        diags.append(&mut typed(path, &root).diags);
        return Err(diagnostic::tidy(diags));
    }

    matrix.set(overrides);
    let combos = matrix.combinations();
    if combos.len() > MAX_CELLS {
        return Err(vec![diag(
            root.get("matrix").map(|n| n.pos),
            "matrix",
            format!(
                "the matrix expands into {} cells; at most {MAX_CELLS} are allowed",
                combos.len()
            ),
        )]);
    }

    let mut cells = Vec::new();
    let mut metadata = None;
    for combo in combos {
        // Validate with key references still visible (so `kmsKeyId: ${keys.k.alias}` can be
        // checked against the key's provider), then substitute what is known before the run.
        let tree = substitute_matrix(&root, &combo);
        let mut t = typed(path, &tree);
        let mut found = check_partial(path, dir, &tree, &t);
        diags.append(&mut t.diags);
        diags.append(&mut found);
        if !diags.is_empty() {
            continue;
        }
        let resolved = typed(path, &substitute_key_statics(&tree));
        if let Some(scenario) = resolved.scenario.filter(|_| resolved.diags.is_empty()) {
            metadata.get_or_insert_with(|| scenario.metadata.clone());
            let id = cell_id(&scenario.metadata.name, &combo);
            cells.push(Cell {
                id,
                matrix: combo,
                scenario,
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        } else {
            diags.extend(resolved.diags);
        }
    }
    if !diags.is_empty() {
        return Err(diagnostic::tidy(diags));
    }
    let metadata = metadata.expect("at least one cell");
    Ok(ScenarioFile {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        metadata,
        cells,
    })
}

pub fn cell_id(name: &str, combo: &[(String, String)]) -> String {
    if combo.is_empty() {
        name.to_string()
    } else {
        format!(
            "{name}[{}]",
            combo
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

/// The contents of a regular file. Anything else (a FIFO, a socket, a device, a
/// directory) is refused from its metadata, before it is opened, and the file is
/// opened without blocking, so a FIFO swapped in meanwhile cannot hang the read.
fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let meta = std::fs::metadata(path).map_err(|e| unreadable(path, &e))?;
    if let Some(what) = not_regular(&meta) {
        return Err(format!(
            "cannot read file: it is {what}, not a regular file"
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read file: {e}"))?;
    if let Some(what) = not_regular(&meta) {
        return Err(format!(
            "cannot read file: it is {what}, not a regular file"
        ));
    }
    if meta.len() > yaml::MAX_FILE_BYTES as u64 {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    // One byte past the limit is enough to tell a file that grew meanwhile.
    file.by_ref()
        .take(yaml::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read file: {e}"))?;
    Ok(bytes)
}

fn too_big(len: u64) -> String {
    format!(
        "file is {len} bytes; scenario files are limited to {} bytes",
        yaml::MAX_FILE_BYTES
    )
}

/// What a file system entry is when it is not a regular file: "a directory", "a FIFO (named pipe)", ...
fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;

    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("not a file")
    }
}

/// Why `path` cannot be used, from the error of following it: a missing path,
/// a broken symbolic link, a symbolic link loop, a permission problem.
fn unreadable(path: &Path, e: &std::io::Error) -> String {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match (is_link, e.kind()) {
        (true, std::io::ErrorKind::NotFound) => match std::fs::read_link(path) {
            Ok(target) => format!("broken symbolic link: its target `{}` does not exist", target.display()),
            Err(_) => "broken symbolic link: its target does not exist".to_string(),
        },
        (true, _) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            "symbolic link loop: following it leads back to itself (too many levels of symbolic links)".to_string()
        }
        (true, _) => format!("cannot follow symbolic link: {e}"),
        (false, std::io::ErrorKind::NotFound) => "no such file or directory".to_string(),
        (false, _) => format!("cannot read: {e}"),
    }
}

/// The scenario files `paths` name: files as given, directories by their `*.yaml` and
/// `*.yml` entries (sorted, not recursive). Every path that cannot be used gets a
/// diagnostic naming it: a missing path, a directory without scenario files, an entry
/// that is not a regular file (a directory named `x.yaml`, a FIFO, a socket, a broken
/// symbolic link, a symbolic link loop). Nothing is opened, so a FIFO cannot block.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let mut refuse = |p: &Path, msg: String| errs.push(Diagnostic::new(p, None, None, msg));
    for p in paths {
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => {
                refuse(p, unreadable(p, &e));
                continue;
            }
        };
        if !meta.is_dir() {
            match not_regular(&meta) {
                None => out.push(p.clone()),
                Some(what) => refuse(p, format!("{what}, not a scenario file")),
            }
            continue;
        }
        let entries = match files_in(p) {
            Ok(entries) => entries,
            Err(e) => {
                refuse(p, format!("cannot read directory: {e}"));
                continue;
            }
        };
        if entries.is_empty() {
            refuse(
                p,
                format!("no scenario files (*.yaml, *.yml) in {}", p.display()),
            );
        }
        for entry in entries {
            match std::fs::metadata(&entry) {
                Ok(m) => match not_regular(&m) {
                    None => out.push(entry),
                    Some("a directory") => refuse(&entry, "a directory named like a scenario file; scenario files are regular files (directories are not searched recursively)".into()),
                    Some(what) => refuse(&entry, format!("{what}, not a scenario file")),
                },
                Err(e) => refuse(&entry, unreadable(&entry, &e)),
            }
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// Reject non-UTF-8 input with the position of the first bad byte.
fn decode(path: &Path, bytes: &[u8]) -> Result<String, Vec<Diagnostic>> {
    if bytes.len() > yaml::MAX_FILE_BYTES {
        return Err(vec![Diagnostic::new(
            path,
            None,
            None,
            too_big(bytes.len() as u64),
        )]);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            if let Some(i) = s.find('\0') {
                let pos = position_of(s, i);
                return Err(vec![Diagnostic::new(
                    path,
                    Some(pos),
                    None,
                    "file contains a NUL byte; is it a binary file?",
                )]);
            }
            Ok(s.to_string())
        }
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let text = String::from_utf8_lossy(valid);
            let pos = position_of(&text, text.len());
            Err(vec![Diagnostic::new(
                path,
                Some(pos),
                None,
                "file is not valid UTF-8 text; is it a binary file?",
            )])
        }
    }
}

fn position_of(text: &str, byte: usize) -> Pos {
    let before = &text[..byte];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0) as u64
        + 1;
    Pos { line, column }
}

/// The matrix as written: dimensions in document order, then `exclude` and `include`.
#[derive(Debug, Default, Clone)]
struct MatrixSpec {
    dims: Vec<(String, Vec<String>)>,
    exclude: Vec<Vec<(String, String)>>,
    include: Vec<Vec<(String, String)>>,
}

/// Names the matrix keeps for itself (not dimensions).
const MATRIX_KEYWORDS: &[&str] = &["include", "exclude"];

impl MatrixSpec {
    /// Command-line values: each replaces its dimension's values; `include` entries
    /// with another value for it go.
    fn set(&mut self, overrides: &[(String, String)]) {
        for (name, value) in overrides {
            let Some((_, values)) = self.dims.iter_mut().find(|(n, _)| n == name) else {
                continue;
            };
            *values = vec![value.clone()];
            self.include
                .retain(|c| c.iter().all(|(n, v)| n != name || v == value));
        }
    }

    /// Every combination of the dimensions' values (only those given by `include`
    /// when no dimension has a list), without those `exclude` matches, then `include`.
    fn combinations(&self) -> Vec<Vec<(String, String)>> {
        let lists: Vec<&(String, Vec<String>)> =
            self.dims.iter().filter(|(_, v)| !v.is_empty()).collect();
        let mut out: Vec<Vec<(String, String)>> = if lists.is_empty() && !self.include.is_empty() {
            Vec::new()
        } else {
            vec![Vec::new()]
        };
        for (name, values) in lists {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push((name.clone(), v.clone()));
                        next
                    })
                })
                .collect();
        }
        out.retain(|combo| {
            !self
                .exclude
                .iter()
                .any(|ex| ex.iter().all(|pair| combo.contains(pair)))
        });
        for inc in &self.include {
            // In the dimensions' order.
            let combo: Vec<(String, String)> = self
                .dims
                .iter()
                .filter_map(|(n, _)| inc.iter().find(|(k, _)| k == n).cloned())
                .collect();
            if !out.contains(&combo) {
                out.push(combo);
            }
        }
        out
    }
}

/// The matrix, in document order.
fn read_matrix(path: &Path, root: &Node, diags: &mut Vec<Diagnostic>) -> MatrixSpec {
    let mut out = MatrixSpec::default();
    let Some(node) = root.get("matrix") else {
        return out;
    };
    let Some(entries) = node.as_map() else {
        diags.push(Diagnostic::new(
            path,
            Some(node.pos),
            Some("matrix".into()),
            format!(
                "expected a mapping of dimension names to lists of values, found {}",
                node.describe()
            ),
        ));
        return out;
    };
    let err = |diags: &mut Vec<Diagnostic>, pos: Pos, p: &str, msg: String| {
        diags.push(Diagnostic::new(path, Some(pos), Some(p.to_string()), msg))
    };
    let mut combos_at: Vec<(&str, &Node)> = Vec::new();
    for (k, v) in entries {
        let name = k.as_str().unwrap_or_default().to_string();
        let p = format!("matrix.{name}");
        if MATRIX_KEYWORDS.contains(&name.as_str()) {
            combos_at.push((
                if name == "include" {
                    "include"
                } else {
                    "exclude"
                },
                v,
            ));
            continue;
        }
        if !valid_ident(&name) {
            diags.push(Diagnostic::new(
                path,
                Some(k.pos),
                Some(p.clone()),
                "dimension names use letters, digits, `_` and `-`, starting with a letter",
            ));
        }
        let Some(items) = v.as_seq() else {
            diags.push(Diagnostic::new(
                path,
                Some(v.pos),
                Some(p),
                format!("expected a list of values, found {}", v.describe()),
            ));
            continue;
        };
        if items.is_empty() {
            diags.push(Diagnostic::new(
                path,
                Some(v.pos),
                Some(p),
                "a matrix dimension needs at least one value",
            ));
            continue;
        }
        let mut values: Vec<String> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            match item.as_str() {
                Some(s) if item.as_map().is_none() && item.as_seq().is_none() => {
                    if values.iter().any(|x| x == s) {
                        diags.push(Diagnostic::new(
                            path,
                            Some(item.pos),
                            Some(ip),
                            format!("duplicate value `{s}`"),
                        ));
                    } else {
                        values.push(s.to_string());
                    }
                }
                _ => diags.push(Diagnostic::new(
                    path,
                    Some(item.pos),
                    Some(ip),
                    format!("expected a plain value, found {}", item.describe()),
                )),
            }
        }
        out.dims.push((name, values));
    }
    // `exclude` first (document order does not matter): it is checked against the lists.
    combos_at.sort_by_key(|(kw, _)| *kw != "exclude");
    for (kw, v) in combos_at {
        let p = format!("matrix.{kw}");
        let Some(items) = v.as_seq() else {
            err(
                diags,
                v.pos,
                &p,
                format!(
                    "expected a list of combinations such as `- {{from: \"1.17\", to: \"1.18\"}}`, found {}",
                    v.describe()
                ),
            );
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let Some(pairs) = item.as_map().filter(|m| !m.is_empty()) else {
                err(
                    diags,
                    item.pos,
                    &ip,
                    format!(
                        "expected a combination of dimension values such as `{{from: \"1.17\", to: \"1.18\"}}`, found {}",
                        item.describe()
                    ),
                );
                continue;
            };
            // An include-only matrix: the first combination names the dimensions.
            if kw == "include" && out.dims.is_empty() {
                for (k, _) in pairs {
                    if let Some(name) = k.as_str().filter(|n| valid_ident(n)) {
                        out.dims.push((name.to_string(), Vec::new()));
                    }
                }
            }
            let dim_names: Vec<String> = out.dims.iter().map(|(n, _)| n.clone()).collect();
            let mut combo = Vec::new();
            let mut ok = true;
            for (k, val) in pairs {
                let name = k.as_str().unwrap_or_default();
                let kp = format!("{ip}.{name}");
                let Some(value) = val
                    .as_str()
                    .filter(|_| val.as_map().is_none() && val.as_seq().is_none())
                else {
                    err(
                        diags,
                        val.pos,
                        &kp,
                        format!("expected a plain value, found {}", val.describe()),
                    );
                    ok = false;
                    continue;
                };
                let Some((_, values)) = out.dims.iter().find(|(n, _)| n == name) else {
                    err(
                        diags,
                        k.pos,
                        &kp,
                        format!(
                            "the matrix has no dimension `{name}`; it has {}",
                            dim_names
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    ok = false;
                    continue;
                };
                if kw == "exclude" && !values.iter().any(|v| v == value) {
                    err(
                        diags,
                        val.pos,
                        &kp,
                        format!(
                            "`{value}` is not a value of `{name}` ({}): this exclusion never matches",
                            values
                                .iter()
                                .map(|v| format!("`{v}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    ok = false;
                }
                combo.push((name.to_string(), value.to_string()));
            }
            if kw == "include" {
                for name in &dim_names {
                    if !combo.iter().any(|(n, _)| n == name) && ok {
                        err(
                            diags,
                            item.pos,
                            &ip,
                            format!(
                                "an included combination gives every dimension; this one has no `{name}`"
                            ),
                        );
                        ok = false;
                    }
                }
            }
            if ok {
                if kw == "include" {
                    out.include.push(combo);
                } else {
                    out.exclude.push(combo);
                }
            }
        }
    }
    out
}

fn valid_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Declared key names with their provider (as written), for reference checks.
fn read_key_names(root: &Node) -> BTreeMap<String, Option<KeyProvider>> {
    let mut out = BTreeMap::new();
    if let Some(entries) = root.get("keys").and_then(Node::as_map) {
        for (k, v) in entries {
            if let Some(name) = k.as_str() {
                let provider = v.get("provider").and_then(Node::as_str).and_then(|p| {
                    de::from_node::<KeyProvider>(&Node::scalar(v.pos, ScalarKind::Str, p), "").ok()
                });
                out.insert(name.to_string(), provider);
            }
        }
    }
    out
}

/// Every `${...}` in the file must name a matrix dimension or a key attribute.
fn check_references(
    path: &Path,
    root: &Node,
    matrix: &[(String, Vec<String>)],
    keys: &BTreeMap<String, Option<KeyProvider>>,
    diags: &mut Vec<Diagnostic>,
) {
    root.walk("", &mut |p, node| {
        let Value::Scalar { kind: ScalarKind::Str, text, .. } = &node.value else { return };
        let found = match refs::find(text) {
            Ok(found) => found,
            Err(msg) => {
                diags.push(Diagnostic::new(path, Some(node.pos), Some(p.to_string()), msg));
                return;
            }
        };
        for r in found {
            let shown = format!("${{{}}}", r.parts.join("."));
            let problem = match r.parts[0].as_str() {
                "matrix" if r.parts.len() != 2 => Some(format!("`{shown}`: write `${{matrix.<dimension>}}`")),
                "matrix" => {
                    let names: Vec<&str> = matrix.iter().map(|(n, _)| n.as_str()).collect();
                    (!names.contains(&r.parts[1].as_str())).then(|| {
                        if names.is_empty() {
                            format!("`{shown}` refers to the matrix, but the scenario has no `matrix`")
                        } else {
                            format!("`{shown}`: the matrix has no dimension `{}`; it has {}", r.parts[1], names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
                        }
                    })
                }
                "keys" if r.parts.len() != 3 => Some(format!("`{shown}`: write `${{keys.<key>.<attribute>}}`")),
                "keys" if p.starts_with("keys.") => Some("keys cannot reference other keys".to_string()),
                "keys" => match keys.get(&r.parts[1]) {
                    None => {
                        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
                        let mut msg = format!("`{shown}`: no key named `{}` is declared in `keys`", r.parts[1]);
                        if let Some(best) = de::closest(&r.parts[1], &names) {
                            msg.push_str(&format!(" (did you mean `{best}`?)"));
                        }
                        Some(msg)
                    }
                    Some(Some(provider)) => {
                        let attrs: Vec<&str> = provider.attributes().iter().map(|(a, _)| *a).collect();
                        (!attrs.contains(&r.parts[2].as_str())).then(|| {
                            format!(
                                "`{shown}`: a `{}` key has no attribute `{}`; it has {}",
                                provider.as_str(),
                                r.parts[2],
                                attrs.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                            )
                        })
                    }
                    Some(None) => None, // the key's own provider error is reported elsewhere
                },
                other => Some(format!("`{shown}`: unknown reference `{other}`; references start with `matrix.` or `keys.`")),
            };
            if let Some(msg) = problem {
                diags.push(Diagnostic::new(path, Some(node.pos), Some(p.to_string()), msg));
            }
        }
    });
}

/// Substitute the cell's matrix values.
fn substitute_matrix(root: &Node, combo: &[(String, String)]) -> Node {
    let mut tree = root.clone();
    let matrix_lookup = |parts: &[String]| -> Option<String> {
        (parts[0] == "matrix")
            .then(|| {
                combo
                    .iter()
                    .find(|(k, _)| *k == parts[1])
                    .map(|(_, v)| v.clone())
            })
            .flatten()
    };
    substitute_all(&mut tree, &matrix_lookup);
    tree
}

/// Substitute key attributes known before the run (`alias`, `name`).
fn substitute_key_statics(tree: &Node) -> Node {
    let mut tree = tree.clone();
    let statics: BTreeMap<(String, String), String> = tree
        .get("keys")
        .and_then(Node::as_map)
        .map(|entries| {
            entries
                .iter()
                .flat_map(|(k, v)| {
                    let name = k.as_str().unwrap_or_default().to_string();
                    ["alias", "name"]
                        .into_iter()
                        .filter_map(move |attr| {
                            v.get(attr)
                                .and_then(Node::as_str)
                                .map(|s| ((name.clone(), attr.to_string()), s.to_string()))
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    let key_lookup = |parts: &[String]| -> Option<String> {
        (parts[0] == "keys")
            .then(|| statics.get(&(parts[1].clone(), parts[2].clone())).cloned())
            .flatten()
    };
    substitute_all(&mut tree, &key_lookup);
    tree
}

fn substitute_all(tree: &mut Node, lookup: &dyn Fn(&[String]) -> Option<String>) {
    tree.walk_mut(&mut |node| {
        if let Value::Scalar { kind, text, plain } = &mut node.value
            && *kind == ScalarKind::Str
            && text.contains("${")
        {
            *text = refs::substitute(text, lookup, false);
            if *plain && !text.contains("${") {
                *kind = yaml::infer_kind(text);
            }
        }
    });
}

/// What deserializing a tree gave: the scenario (with the steps that parsed),
/// the errors, and which steps failed (semantic checks then stop before them).
struct Typed {
    scenario: Option<Scenario>,
    diags: Vec<Diagnostic>,
    first_bad_step: Option<usize>,
    bad_finally: bool,
}

/// Deserialize each section (and each step) on its own, collecting every error.
fn typed(path: &Path, root: &Node) -> Typed {
    let mut diags = Vec::new();

    fn section<T: serde::de::DeserializeOwned>(
        path: &Path,
        root: &Node,
        name: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Result<Option<T>, ()> {
        let Some(node) = root.get(name) else {
            return Ok(None);
        };
        match de::from_node::<T>(node, name) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                diags.push(Diagnostic::new(path, e.pos, e.path, e.message));
                Err(())
            }
        }
    }
    /// The items that parsed, and the index of the first that did not.
    fn items<T: serde::de::DeserializeOwned>(
        path: &Path,
        root: &Node,
        name: &str,
        diags: &mut Vec<Diagnostic>,
        step: bool,
    ) -> Result<(Vec<T>, Option<usize>), ()> {
        let Some(node) = root.get(name) else {
            return Ok((Vec::new(), None));
        };
        let Some(list) = node.as_seq() else {
            diags.push(Diagnostic::new(
                path,
                Some(node.pos),
                Some(name.to_string()),
                format!("expected a list, found {}", node.describe()),
            ));
            return Err(());
        };
        let mut out = Vec::new();
        let mut first_bad = None;
        for (i, item) in list.iter().enumerate() {
            let p = format!("{name}[{i}]");
            match de::from_node::<T>(item, &p) {
                Ok(v) => out.push(v),
                Err(mut e) => {
                    first_bad.get_or_insert(i);
                    if step {
                        explain_step_error(item, &mut e);
                    }
                    diags.push(Diagnostic::new(path, e.pos, e.path, e.message));
                }
            }
        }
        Ok((out, first_bad))
    }

    let mut sections_ok = true;
    for name in [
        "apiVersion",
        "kind",
        "metadata",
        "environment",
        "velero",
        "steps",
    ] {
        if root.get(name).is_none() {
            diags.push(Diagnostic::new(
                path,
                Some(root.pos),
                None,
                format!("missing required field `{name}`"),
            ));
            sections_ok = false;
        }
    }
    fn ok<T>(r: Result<Option<T>, ()>, sections_ok: &mut bool) -> Option<T> {
        r.unwrap_or_else(|()| {
            *sections_ok = false;
            None
        })
    }
    let api_version: Option<String> = ok(
        section(path, root, "apiVersion", &mut diags),
        &mut sections_ok,
    );
    let kind: Option<String> = ok(section(path, root, "kind", &mut diags), &mut sections_ok);
    let metadata: Option<Metadata> = ok(
        section(path, root, "metadata", &mut diags),
        &mut sections_ok,
    );
    // The matrix was read (and its errors reported) by `read_matrix`.
    let spec = read_matrix(path, root, &mut Vec::new());
    let pairs = |cs: Vec<Vec<(String, String)>>| -> Vec<BTreeMap<String, String>> {
        cs.into_iter().map(|c| c.into_iter().collect()).collect()
    };
    let matrix = Matrix {
        dimensions: spec
            .dims
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect(),
        exclude: pairs(spec.exclude),
        include: pairs(spec.include),
    };
    let environment: Option<Environment> = ok(
        section(path, root, "environment", &mut diags),
        &mut sections_ok,
    );
    let keys: Option<BTreeMap<String, KeySpec>> =
        ok(section(path, root, "keys", &mut diags), &mut sections_ok);
    let velero: Option<VeleroSpec> =
        ok(section(path, root, "velero", &mut diags), &mut sections_ok);
    let timeout: Option<HumanDuration> =
        ok(section(path, root, "timeout", &mut diags), &mut sections_ok);
    let workloads = items::<Workload>(path, root, "workloads", &mut diags, false);
    let steps = items::<Step>(path, root, "steps", &mut diags, true);
    let finally = items::<Step>(path, root, "finally", &mut diags, true);

    if let Some(v) = &api_version
        && v != API_VERSION
        && let Some(node) = root.get("apiVersion")
    {
        diags.push(Diagnostic::new(
            path,
            Some(node.pos),
            Some("apiVersion".into()),
            format!("unsupported apiVersion `{v}`; this vdrill reads `{API_VERSION}`"),
        ));
    }
    if let Some(k) = &kind
        && k != KIND
        && let Some(node) = root.get("kind")
    {
        diags.push(Diagnostic::new(
            path,
            Some(node.pos),
            Some("kind".into()),
            format!("unsupported kind `{k}`; expected `{KIND}`"),
        ));
    }

    let (Ok((workloads, None)), Ok((steps, first_bad_step)), Ok((finally, bad_finally))) =
        (workloads, steps, finally)
    else {
        return Typed {
            scenario: None,
            diags,
            first_bad_step: None,
            bad_finally: false,
        };
    };
    let scenario = match (sections_ok, metadata, environment, velero) {
        (true, Some(metadata), Some(environment), Some(velero)) => Some(Scenario {
            api_version: api_version.unwrap_or_default(),
            kind: kind.unwrap_or_default(),
            metadata,
            matrix,
            environment,
            keys: keys.unwrap_or_default(),
            velero,
            workloads,
            steps,
            finally,
            timeout,
        }),
        _ => None,
    };
    Typed {
        scenario,
        diags,
        first_bad_step,
        bad_finally: bad_finally.is_some(),
    }
}

/// Semantic checks on what parsed. Step checks look backwards (a restore needs an
/// earlier backup), so they are kept only for steps before the first that failed.
fn check_partial(path: &Path, dir: &Path, tree: &Node, t: &Typed) -> Vec<Diagnostic> {
    let Some(scenario) = &t.scenario else {
        return Vec::new();
    };
    let found = validate::check(path, dir, tree, scenario);
    if t.first_bad_step.is_none() && !t.bad_finally {
        return found;
    }
    found
        .into_iter()
        .filter(|d| match d.path.as_deref() {
            Some(p) if p.starts_with("finally") => false,
            Some(p) if p.starts_with("steps[") => {
                let index: Option<usize> = p["steps[".len()..]
                    .split(']')
                    .next()
                    .and_then(|n| n.parse().ok());
                matches!((index, t.first_bad_step), (Some(i), Some(bad)) if i < bad)
                    || t.first_bad_step.is_none()
            }
            Some("steps") => false,
            _ => true,
        })
        .collect()
}

/// Turn serde's generic wording into step vocabulary.
fn explain_step_error(item: &Node, e: &mut de::DeError) {
    // A value deeper in the step (`steps[2].backup.x`) keeps serde's wording.
    let at_kind = e.path.as_deref().is_none_or(|p| {
        p.rsplit_once(']')
            .is_none_or(|(_, rest)| rest.matches('.').count() <= 1)
    });
    if at_kind && e.message.starts_with("unknown value") {
        e.message = e.message.replacen("unknown value", "unknown step kind", 1);
    } else if e.message.starts_with("expected exactly one key here") {
        let key = |i: usize| {
            item.as_map()
                .and_then(|m| m.get(i))
                .and_then(|(k, _)| k.as_str())
                .unwrap_or_default()
        };
        let (kind, extra) = (key(0), key(1));
        e.message = format!(
            "a step is a single key naming its kind; `{extra}` belongs inside the step's mapping: `- {kind}: {{..., {extra}: ...}}`"
        );
    } else if e
        .message
        .starts_with("expected a name or a single-key mapping")
    {
        e.message = format!(
            "expected a step such as `- backup: {{name: b1}}`, found {}",
            item.describe()
        );
    }
}

/// All `*.yaml` / `*.yml` files directly in `dir`, sorted.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    out.sort();
    Ok(out)
}

/// The JSON Schema of the scenario format.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Scenario);
    let mut v = serde_json::to_value(schema).expect("schema serializes");
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "$id".into(),
            serde_json::Value::String("https://vdrill.dev/schema/v1alpha1/scenario.json".into()),
        );
    }
    v
}
