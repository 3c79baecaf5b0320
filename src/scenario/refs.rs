//! `${matrix.x}` and `${keys.k.attr}` references inside scenario strings.

/// One `${...}` occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// Byte range of `${...}` in the string.
    pub start: usize,
    pub end: usize,
    /// The dotted parts inside the braces.
    pub parts: Vec<String>,
}

/// Find the references in `s`. `$${` is an escaped literal `${`.
pub fn find(s: &str) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            let close = s[i + 2..].find('}').ok_or_else(|| {
                format!("unterminated reference `{}`: add the closing `}}`", &s[i..])
            })?;
            let inner = &s[i + 2..i + 2 + close];
            let parts: Vec<String> = inner.split('.').map(|p| p.trim().to_string()).collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(format!(
                    "malformed reference `${{{inner}}}`; write `${{matrix.<name>}}` or `${{keys.<key>.<attribute>}}`"
                ));
            }
            out.push(Ref {
                start: i,
                end: i + 3 + close,
                parts,
            });
            i += 3 + close;
            continue;
        }
        i += 1;
    }
    Ok(out)
}

/// Replace the references for which `lookup` returns a value; leave the others as written.
/// Escaped `$${` becomes `${` only when `unescape` is set (the last substitution pass).
pub fn substitute(s: &str, lookup: &dyn Fn(&[String]) -> Option<String>, unescape: bool) -> String {
    let Ok(refs) = find(s) else {
        return s.to_string();
    };
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for r in refs {
        out.push_str(&s[last..r.start]);
        match lookup(&r.parts) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&s[r.start..r.end]),
        }
        last = r.end;
    }
    out.push_str(&s[last..]);
    if unescape {
        out.replace("$${", "${")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_substitutes() {
        let refs = find("v${matrix.velero}-${keys.k.alias}").unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1].parts, vec!["keys", "k", "alias"]);
        let out = substitute(
            "v${matrix.velero}/${keys.k.arn}",
            &|p| (p[0] == "matrix").then(|| "1.18".to_string()),
            false,
        );
        assert_eq!(out, "v1.18/${keys.k.arn}");
    }

    #[test]
    fn escapes_and_errors() {
        assert!(find("$${not}").unwrap().is_empty());
        assert_eq!(substitute("$${x}", &|_| None, true), "${x}");
        assert!(
            find("${matrix.velero")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(find("${matrix.}").unwrap_err().contains("malformed"));
    }
}
