//! assert-encryption: every object a backup wrote is encrypted with the expected key.

use base64::Engine as _;

use super::{fail, offenders, pass, skip};
use crate::env::ObjectEncryption;
use crate::report::AssertionReport;

/// What the objects must show.
#[derive(Debug, Clone)]
pub enum Expected {
    /// SSE-KMS with this key ARN. `arn_checkable` is false where the store cannot
    /// report the key faithfully (then the key binding is checked another way).
    Kms { arn: String, label: String, arn_checkable: Option<String> },
    /// SSE-C with a key whose MD5 (base64) is this.
    CustomerKey { key_md5: String, label: String },
}

/// Base64 MD5 of a customer key, as S3 reports `SSECustomerKeyMD5`.
pub fn customer_key_md5(key: &[u8]) -> String {
    use md5_digest::compute;
    base64::engine::general_purpose::STANDARD.encode(compute(key))
}

mod md5_digest {
    // aws-lc-rs (already our TLS crypto provider) has no MD5; the `md-5` crate
    // from RustCrypto is the maintained implementation.
    pub fn compute(data: &[u8]) -> [u8; 16] {
        use md5::Digest;
        md5::Md5::digest(data).into()
    }
}

/// One object and what HeadObject said (or why it failed), after key ids were resolved to ARNs.
#[derive(Debug, Clone)]
pub struct Observed {
    pub key: String,
    pub head: Result<ObjectEncryption, String>,
    /// The ARN `kms_key_id` resolves to, when it could be resolved.
    pub resolved_arn: Option<String>,
}

/// Judge the objects of one backup.
pub fn judge(objects: &[Observed], expected: &Expected) -> Vec<AssertionReport> {
    let mut out = Vec::new();
    if objects.is_empty() {
        out.push(fail("backup wrote objects", "no objects found under the backup's prefix"));
        return out;
    }
    out.push(pass("backup wrote objects", format!("{} objects", objects.len())));

    let unreadable: Vec<String> = objects.iter().filter_map(|o| o.head.as_ref().err().map(|e| format!("{}: {e}", o.key))).collect();
    let heads: Vec<(&Observed, &ObjectEncryption)> = objects.iter().filter_map(|o| o.head.as_ref().ok().map(|h| (o, h))).collect();
    if !unreadable.is_empty() {
        out.push(fail("HeadObject succeeds", offenders(&unreadable)));
    }

    let unencrypted: Vec<String> = heads
        .iter()
        .filter(|(_, h)| h.server_side_encryption.is_none() && h.sse_customer_algorithm.is_none())
        .map(|(o, _)| format!("{}: no server-side encryption header", o.key))
        .collect();
    if !unencrypted.is_empty() {
        out.push(fail("every object carries its own encryption", offenders(&unencrypted)));
    }

    match expected {
        Expected::Kms { arn, label, arn_checkable } => {
            let wrong_kind: Vec<String> = heads
                .iter()
                .filter(|(_, h)| h.server_side_encryption.as_deref() != Some("aws:kms") && h.server_side_encryption.as_deref() != Some("aws:kms:dsse"))
                .filter(|(_, h)| h.server_side_encryption.is_some() || h.sse_customer_algorithm.is_some())
                .map(|(o, h)| {
                    let found = h.server_side_encryption.clone().or_else(|| h.sse_customer_algorithm.as_ref().map(|a| format!("SSE-C {a}"))).unwrap_or_default();
                    format!("{}: {found}", o.key)
                })
                .collect();
            if wrong_kind.is_empty() && unencrypted.is_empty() {
                out.push(pass("every object is SSE-KMS", format!("{} objects with aws:kms", heads.len())));
            } else if !wrong_kind.is_empty() {
                out.push(fail("every object is SSE-KMS", offenders(&wrong_kind)));
            }
            let name = format!("every object uses key {label}");
            match arn_checkable {
                Some(reason) => out.push(skip(name, reason.clone())),
                None => {
                    let wrong_key: Vec<String> = heads
                        .iter()
                        .filter(|(_, h)| h.server_side_encryption.as_deref().is_some_and(|s| s.starts_with("aws:kms")))
                        .filter(|(o, h)| o.resolved_arn.as_deref().or(h.kms_key_id.as_deref()) != Some(arn.as_str()))
                        .map(|(o, h)| format!("{}: {}", o.key, o.resolved_arn.clone().or_else(|| h.kms_key_id.clone()).unwrap_or_else(|| "no key id".into())))
                        .collect();
                    if wrong_key.is_empty() {
                        out.push(pass(name, format!("all report {arn}")));
                    } else {
                        out.push(fail(name, format!("expected {arn}; {}", offenders(&wrong_key))));
                    }
                }
            }
        }
        Expected::CustomerKey { key_md5, label } => {
            let wrong: Vec<String> = heads
                .iter()
                .filter(|(_, h)| h.sse_customer_algorithm.as_deref() != Some("AES256") || h.sse_customer_key_md5.as_deref() != Some(key_md5.as_str()))
                .map(|(o, h)| {
                    let found = match (&h.sse_customer_algorithm, &h.server_side_encryption) {
                        (Some(a), _) => format!("SSE-C {a} with key MD5 {}", h.sse_customer_key_md5.clone().unwrap_or_default()),
                        (None, Some(s)) => s.clone(),
                        (None, None) => "no encryption".into(),
                    };
                    format!("{}: {found}", o.key)
                })
                .collect();
            let name = format!("every object is SSE-C with key {label}");
            if wrong.is_empty() {
                out.push(pass(name, format!("{} objects, key MD5 {key_md5}", heads.len())));
            } else {
                out.push(fail(name, offenders(&wrong)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, sse: Option<&str>, kms: Option<&str>) -> Observed {
        Observed {
            key: key.into(),
            head: Ok(ObjectEncryption { server_side_encryption: sse.map(str::to_string), kms_key_id: kms.map(str::to_string), ..Default::default() }),
            resolved_arn: None,
        }
    }

    #[test]
    fn names_each_object_with_the_wrong_key_or_none() {
        let expected = Expected::Kms { arn: "arn:k1".into(), label: "k".into(), arn_checkable: None };
        let found = judge(
            &[obj("b/a.json", Some("aws:kms"), Some("arn:k1")), obj("b/b.tar.gz", Some("aws:kms"), Some("arn:k2")), obj("b/c.gz", None, None)],
            &expected,
        );
        let failed: Vec<_> = found.iter().filter(|a| a.status == crate::report::Status::Failed).collect();
        assert_eq!(failed.len(), 2, "{found:?}");
        assert!(failed[0].message.contains("b/c.gz: no server-side encryption header"));
        assert!(failed[1].message.contains("b/b.tar.gz: arn:k2"));
        assert!(!failed[1].message.contains("b/a.json"));
    }

    #[test]
    fn empty_backup_fails() {
        let expected = Expected::CustomerKey { key_md5: "x".into(), label: "c".into() };
        assert_eq!(judge(&[], &expected)[0].status, crate::report::Status::Failed);
    }

    #[test]
    fn customer_key_md5_matches_s3() {
        // S3 documents the header as base64(md5(key)); check against a known digest.
        assert_eq!(customer_key_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
