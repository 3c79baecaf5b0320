//! Volume contents after a file-system restore: the `sha256sum` listing taken in the
//! restored pod against the manifest the workload wrote before the backup, file by file.

use super::{fail, pass};
use crate::report::AssertionReport;
use std::collections::BTreeMap;

/// Parses `sha256sum` output (`<64 hex>  <path>`, or `<64 hex> *<path>` in binary mode)
/// into path -> digest. A line that is not of that shape is an error naming its number.
pub fn parse_sha256sum(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (digest, rest) = line
            .split_once(' ')
            .ok_or_else(|| format!("line {}: not `<sha256>  <path>`", i + 1))?;
        let path = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .ok_or_else(|| format!("line {}: not `<sha256>  <path>`", i + 1))?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "line {}: `{digest}` is not a SHA-256 digest",
                i + 1
            ));
        }
        let path = path.strip_prefix("./").unwrap_or(path);
        if path.is_empty() {
            return Err(format!("line {}: no path", i + 1));
        }
        out.insert(path.to_string(), digest.to_ascii_lowercase());
    }
    Ok(out)
}

/// What differs between the files before the backup and after the restore.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub missing: Vec<String>,
    pub changed: Vec<String>,
    pub extra: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.changed.is_empty() && self.extra.is_empty()
    }
}

pub fn diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Diff {
    let mut d = Diff::default();
    for (path, digest) in before {
        match after.get(path) {
            None => d.missing.push(path.clone()),
            Some(a) if a != digest => d.changed.push(path.clone()),
            Some(_) => {}
        }
    }
    d.extra = after
        .keys()
        .filter(|p| !before.contains_key(*p))
        .cloned()
        .collect();
    d
}

/// One assertion per volume: passes when every file of the manifest is back with its
/// digest; names the missing and changed files otherwise (extra files are reported, not
/// failed: the workload may write more after the restore).
pub fn assert_volume(
    volume: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> AssertionReport {
    let name = format!("volume {volume} restored byte for byte");
    let d = diff(before, after);
    let extra = if d.extra.is_empty() {
        String::new()
    } else {
        format!("; not in the manifest: {}", d.extra.join(", "))
    };
    if d.missing.is_empty() && d.changed.is_empty() {
        return pass(
            name,
            format!("{} file(s) with their SHA-256{extra}", before.len()),
        );
    }
    let mut parts = Vec::new();
    if !d.missing.is_empty() {
        parts.push(format!("missing: {}", d.missing.join(", ")));
    }
    if !d.changed.is_empty() {
        parts.push(format!("different content: {}", d.changed.join(", ")));
    }
    fail(name, format!("{}{extra}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn parses_busybox_sha256sum_output() {
        let m = parse_sha256sum(&format!(
            "{A}  ./canary.txt\n{B}  ./nested/small.txt\n{A} *random.bin\n\n"
        ))
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["canary.txt"], A);
        assert_eq!(m["nested/small.txt"], B);
        assert_eq!(m["random.bin"], A);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse_sha256sum(&format!("{A}  x\nnonsense\n")).unwrap_err(),
            "line 2: not `<sha256>  <path>`"
        );
        assert_eq!(
            parse_sha256sum("abc  x\n").unwrap_err(),
            "line 1: `abc` is not a SHA-256 digest"
        );
    }

    #[test]
    fn names_missing_and_changed_files_and_reports_extra_ones() {
        let before = parse_sha256sum(&format!("{A}  a\n{A}  b\n{A}  c\n")).unwrap();
        let after = parse_sha256sum(&format!("{A}  a\n{B}  b\n{A}  d\n")).unwrap();
        let r = assert_volume("data", &before, &after);
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.message,
            "missing: c; different content: b; not in the manifest: d"
        );
        let ok = assert_volume("data", &before, &before);
        assert_eq!(ok.status, Status::Passed);
        assert_eq!(ok.message, "3 file(s) with their SHA-256");
    }
}
