//! assert-encryption: every object a backup wrote is encrypted with the expected key.

use base64::Engine as _;

use super::{fail, offenders, pass, skip};
use crate::env::{AccountEncryption, ObjectEncryption};
use crate::report::AssertionReport;

/// What the objects must show.
#[derive(Debug, Clone)]
pub enum Expected {
    /// SSE-KMS with this key ARN. `arn_checkable` is false where the store cannot
    /// report the key faithfully (then the key binding is checked another way).
    Kms {
        arn: String,
        label: String,
        arn_checkable: Option<String>,
    },
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

/// The checks every store shares: the backup wrote objects, and each could be
/// described (`head_call` names the call). Returns the objects that could, or the
/// assertions to stop with when there are none.
fn described<'a>(
    objects: &'a [Observed],
    noun: &str,
    head_call: &str,
    out: &mut Vec<AssertionReport>,
) -> Option<Vec<(&'a Observed, &'a ObjectEncryption)>> {
    if objects.is_empty() {
        out.push(fail(
            "backup wrote objects",
            format!("no {noun} found under the backup's prefix"),
        ));
        return None;
    }
    out.push(pass(
        "backup wrote objects",
        format!("{} {noun}", objects.len()),
    ));
    let unreadable: Vec<String> = objects
        .iter()
        .filter_map(|o| o.head.as_ref().err().map(|e| format!("{}: {e}", o.key)))
        .collect();
    if !unreadable.is_empty() {
        out.push(fail(
            format!("{head_call} succeeds"),
            offenders(&unreadable),
        ));
    }
    Some(
        objects
            .iter()
            .filter_map(|o| o.head.as_ref().ok().map(|h| (o, h)))
            .collect(),
    )
}

/// Judge the objects of one backup.
/// `repository: not-under-key`: the Kopia repository's objects must all lack the SSE-KMS key
/// the backup's objects carry (Velero hands the location's `kmsKeyId` to its object-store
/// plugin only, not to Kopia). Passes naming them; fails naming any under the key, which
/// would show that Velero did pass it. With a store that cannot report the key behind an
/// alias, an SSE-KMS object counts as under the key.
pub fn judge_not_under_key(objects: &[Observed], expected: &Expected) -> AssertionReport {
    let Expected::Kms {
        arn,
        label,
        arn_checkable,
    } = expected
    else {
        return fail(
            "Kopia repository objects are not under the key",
            "only an SSE-KMS key can be checked this way",
        );
    };
    let name = format!("Kopia repository objects are not under key {label}");
    if objects.is_empty() {
        return fail(
            name,
            "no objects under kopia/: the backup wrote no file data",
        );
    }
    let mut under = Vec::new();
    let mut not_under = Vec::new();
    let mut unreadable = Vec::new();
    for o in objects {
        let h = match &o.head {
            Ok(h) => h,
            Err(e) => {
                unreadable.push(format!("{}: {e}", o.key));
                continue;
            }
        };
        let kms = h
            .server_side_encryption
            .as_deref()
            .is_some_and(|s| s.starts_with("aws:kms"));
        let key = o.resolved_arn.as_deref().or(h.kms_key_id.as_deref());
        let same_key = arn_checkable.is_some() || key == Some(arn.as_str());
        if kms && same_key {
            under.push(format!("{}: {}", o.key, key.unwrap_or("aws:kms")));
        } else {
            let how = match (h.server_side_encryption.as_deref(), key) {
                (Some(s), Some(k)) if s.starts_with("aws:kms") => format!("{s} with {k}"),
                (Some(s), _) => s.to_string(),
                (None, _) => "no server-side encryption".to_string(),
            };
            not_under.push(format!("{}: {how}", o.key));
        }
    }
    if !unreadable.is_empty() {
        return fail(name, format!("cannot describe: {}", offenders(&unreadable)));
    }
    if under.is_empty() {
        pass(
            name,
            format!(
                "all {} kopia/ objects are written without it: {}",
                not_under.len(),
                offenders(&not_under)
            ),
        )
    } else {
        fail(
            name,
            format!(
                "{} of {} kopia/ objects are under the key, so Velero handed it to Kopia: {}",
                under.len(),
                objects.len(),
                offenders(&under)
            ),
        )
    }
}

pub fn judge(objects: &[Observed], expected: &Expected) -> Vec<AssertionReport> {
    let mut out = Vec::new();
    let Some(heads) = described(objects, "objects", "HeadObject", &mut out) else {
        return out;
    };

    let unencrypted: Vec<String> = heads
        .iter()
        .filter(|(_, h)| h.server_side_encryption.is_none() && h.sse_customer_algorithm.is_none())
        .map(|(o, _)| format!("{}: no server-side encryption header", o.key))
        .collect();
    if !unencrypted.is_empty() {
        out.push(fail(
            "every object carries its own encryption",
            offenders(&unencrypted),
        ));
    }

    match expected {
        Expected::Kms {
            arn,
            label,
            arn_checkable,
        } => {
            let wrong_kind: Vec<String> = heads
                .iter()
                .filter(|(_, h)| {
                    h.server_side_encryption.as_deref() != Some("aws:kms")
                        && h.server_side_encryption.as_deref() != Some("aws:kms:dsse")
                })
                .filter(|(_, h)| {
                    h.server_side_encryption.is_some() || h.sse_customer_algorithm.is_some()
                })
                .map(|(o, h)| {
                    let found = h
                        .server_side_encryption
                        .clone()
                        .or_else(|| {
                            h.sse_customer_algorithm
                                .as_ref()
                                .map(|a| format!("SSE-C {a}"))
                        })
                        .unwrap_or_default();
                    format!("{}: {found}", o.key)
                })
                .collect();
            if wrong_kind.is_empty() && unencrypted.is_empty() {
                out.push(pass(
                    "every object is SSE-KMS",
                    format!("{} objects with aws:kms", heads.len()),
                ));
            } else if !wrong_kind.is_empty() {
                out.push(fail("every object is SSE-KMS", offenders(&wrong_kind)));
            }
            let name = format!("every object uses key {label}");
            match arn_checkable {
                Some(reason) => out.push(skip(name, reason.clone())),
                None => {
                    let wrong_key: Vec<String> = heads
                        .iter()
                        .filter(|(_, h)| {
                            h.server_side_encryption
                                .as_deref()
                                .is_some_and(|s| s.starts_with("aws:kms"))
                        })
                        .filter(|(o, h)| {
                            o.resolved_arn.as_deref().or(h.kms_key_id.as_deref())
                                != Some(arn.as_str())
                        })
                        .map(|(o, h)| {
                            format!(
                                "{}: {}",
                                o.key,
                                o.resolved_arn
                                    .clone()
                                    .or_else(|| h.kms_key_id.clone())
                                    .unwrap_or_else(|| "no key id".into())
                            )
                        })
                        .collect();
                    if wrong_key.is_empty() {
                        out.push(pass(name, format!("all report {arn}")));
                    } else {
                        out.push(fail(
                            name,
                            format!("expected {arn}; {}", offenders(&wrong_key)),
                        ));
                    }
                }
            }
        }
        Expected::CustomerKey { key_md5, label } => {
            let wrong: Vec<String> = heads
                .iter()
                .filter(|(_, h)| {
                    h.sse_customer_algorithm.as_deref() != Some("AES256")
                        || h.sse_customer_key_md5.as_deref() != Some(key_md5.as_str())
                })
                .map(|(o, h)| {
                    let found = match (&h.sse_customer_algorithm, &h.server_side_encryption) {
                        (Some(a), _) => format!(
                            "SSE-C {a} with key MD5 {}",
                            h.sse_customer_key_md5.clone().unwrap_or_default()
                        ),
                        (None, Some(s)) => s.clone(),
                        (None, None) => "no encryption".into(),
                    };
                    format!("{}: {found}", o.key)
                })
                .collect();
            let name = format!("every object is SSE-C with key {label}");
            if wrong.is_empty() {
                out.push(pass(
                    name,
                    format!("{} objects, key MD5 {key_md5}", heads.len()),
                ));
            } else {
                out.push(fail(name, offenders(&wrong)));
            }
        }
    }
    out
}

/// The Key Vault key an Azure storage account must encrypt with.
#[derive(Debug, Clone)]
pub struct KeyVaultKey {
    /// `https://<vault>.vault.azure.net` (no trailing slash).
    pub vault_uri: String,
    pub key_name: String,
    /// The key's version when the backup was taken.
    pub version: Option<String>,
    pub label: String,
}

impl KeyVaultKey {
    /// From a version-less key id, `https://<vault>/keys/<name>`.
    pub fn from_key_id(id: &str, version: Option<String>, label: String) -> Option<KeyVaultKey> {
        let (vault, rest) = id.split_once("/keys/")?;
        let key_name = rest.split('/').next()?.to_string();
        Some(KeyVaultKey {
            vault_uri: vault.trim_end_matches('/').to_string(),
            key_name,
            version,
            label,
        })
    }
}

/// The name of the account-binding assertion for `label`.
pub fn account_key_assertion(label: &str) -> String {
    format!("the storage account encrypts with key {label} (customer-managed)")
}

/// Judge the blobs of one backup on Azure storage, where the customer-managed key is
/// a property of the storage account: every blob must be encrypted by the service
/// under the account's key (no encryption scope or customer-provided key of its
/// own), and the account's key must be the expected Key Vault key.
pub fn judge_azure(
    objects: &[Observed],
    expected: &KeyVaultKey,
    account: &Result<AccountEncryption, String>,
) -> Vec<AssertionReport> {
    let mut out = Vec::new();
    let Some(heads) = described(objects, "blobs", "Get Blob Properties", &mut out) else {
        return out;
    };

    let plain: Vec<String> = heads
        .iter()
        .filter(|(_, h)| h.server_encrypted != Some(true))
        .map(|(o, h)| {
            format!(
                "{}: x-ms-server-encrypted {}",
                o.key,
                h.server_encrypted
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "absent".into())
            )
        })
        .collect();
    let name = "every blob is encrypted by the service (x-ms-server-encrypted)";
    if plain.is_empty() {
        out.push(pass(name, format!("{} blobs", heads.len())));
    } else {
        out.push(fail(name, offenders(&plain)));
    }

    // A blob written with an encryption scope or a customer-provided key is not under
    // the account's key, whatever the account says.
    let own_key: Vec<String> = heads
        .iter()
        .filter_map(|(o, h)| {
            if let Some(sha) = &h.encryption_key_sha256 {
                return Some(format!("{}: customer-provided key {sha}", o.key));
            }
            match h.encryption_scope.as_deref() {
                Some(scope) if scope != "$account-encryption-key" => {
                    Some(format!("{}: encryption scope {scope}", o.key))
                }
                _ => None,
            }
        })
        .collect();
    let name = "no blob overrides the account's key (encryption scope or customer-provided key)";
    if own_key.is_empty() {
        out.push(pass(
            name,
            format!("{} blobs use the account's key", heads.len()),
        ));
    } else {
        out.push(fail(name, offenders(&own_key)));
    }

    out.push(account_binding(expected, account));
    out
}

/// Judge the objects of one backup on GCS against the Cloud KMS key `key_name`
/// (`projects/.../cryptoKeys/<k>`; objects report it with `/cryptoKeyVersions/<n>`).
/// `unknowable`: why the store cannot tell an object's key (the emulator).
pub fn judge_gcs(
    objects: &[Observed],
    key_name: &str,
    label: &str,
    unknowable: Option<&str>,
) -> Vec<AssertionReport> {
    let mut out = Vec::new();
    let Some(heads) = described(objects, "objects", "objects.get", &mut out) else {
        return out;
    };
    let own_key: Vec<String> = heads
        .iter()
        .filter_map(|(o, h)| {
            h.encryption_key_sha256
                .as_ref()
                .map(|sha| format!("{}: customer-supplied key {sha}", o.key))
        })
        .collect();
    let name = "no object uses a customer-supplied key of its own";
    if own_key.is_empty() {
        out.push(pass(name, format!("{} objects", heads.len())));
    } else {
        out.push(fail(name, offenders(&own_key)));
    }
    let name = format!("every object is encrypted with Cloud KMS key {label} (kmsKeyName)");
    if let Some(why) = unknowable {
        out.push(skip(name, why));
        return out;
    }
    let wrong: Vec<String> = heads
        .iter()
        .filter(|(_, h)| {
            h.kms_key_name
                .as_deref()
                .map(|k| k.split("/cryptoKeyVersions/").next().unwrap_or(k))
                != Some(key_name)
        })
        .map(|(o, h)| {
            format!(
                "{}: {}",
                o.key,
                h.kms_key_name
                    .as_deref()
                    .unwrap_or("no kmsKeyName (Google-managed encryption)")
            )
        })
        .collect();
    if wrong.is_empty() {
        out.push(pass(
            name,
            format!("{} objects report {key_name}", heads.len()),
        ));
    } else {
        out.push(fail(
            name,
            format!("expected {key_name}; {}", offenders(&wrong)),
        ));
    }
    out
}

/// Whether the account's encryption settings name the expected key.
pub fn account_binding(
    expected: &KeyVaultKey,
    account: &Result<AccountEncryption, String>,
) -> AssertionReport {
    let name = account_key_assertion(&expected.label);
    match account {
        Err(e) => fail(
            name,
            format!("cannot read the storage account's encryption settings: {e}"),
        ),
        Ok(AccountEncryption::Unknowable(why)) => skip(name, why.clone()),
        Ok(AccountEncryption::PlatformManaged) => fail(
            name,
            format!(
                "the account encrypts with Microsoft-managed keys (key source Microsoft.Storage), not {}",
                expected.label
            ),
        ),
        Ok(AccountEncryption::KeyVault {
            vault_uri,
            key_name,
            key_version,
        }) => {
            let same_vault = vault_uri
                .trim_end_matches('/')
                .eq_ignore_ascii_case(&expected.vault_uri);
            let same_name = key_name.eq_ignore_ascii_case(&expected.key_name);
            let found = format!(
                "{}/keys/{key_name}{}",
                vault_uri.trim_end_matches('/'),
                key_version
                    .as_ref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            );
            if !same_vault || !same_name {
                return fail(
                    name,
                    format!(
                        "the account encrypts with {found}, expected {}/keys/{}",
                        expected.vault_uri, expected.key_name
                    ),
                );
            }
            match (key_version, &expected.version) {
                (Some(v), Some(want)) if v != want => fail(
                    name,
                    format!(
                        "the account is pinned to version {v} of the key; the backup was taken at version {want}"
                    ),
                ),
                (None, _) => pass(name, format!("{found} (follows the key's current version)")),
                _ => pass(name, found),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, sse: Option<&str>, kms: Option<&str>) -> Observed {
        Observed {
            key: key.into(),
            head: Ok(ObjectEncryption {
                server_side_encryption: sse.map(str::to_string),
                kms_key_id: kms.map(str::to_string),
                ..Default::default()
            }),
            resolved_arn: None,
        }
    }

    fn gcs(key: &str, kms: Option<&str>, csek: Option<&str>) -> Observed {
        Observed {
            key: key.into(),
            head: Ok(ObjectEncryption {
                kms_key_name: kms.map(str::to_string),
                encryption_key_sha256: csek.map(str::to_string),
                ..Default::default()
            }),
            resolved_arn: None,
        }
    }

    fn kms(checkable: bool) -> Expected {
        Expected::Kms {
            arn: "arn:k".into(),
            label: "k".into(),
            arn_checkable: (!checkable).then(|| "alias".to_string()),
        }
    }

    #[test]
    fn kopia_objects_without_the_key_pass_named_and_any_under_it_fails() {
        let mut with_other = obj("kopia/ns/q2", Some("aws:kms"), Some("arn:other"));
        with_other.resolved_arn = Some("arn:other".into());
        let apart = [
            obj("kopia/ns/p1", Some("AES256"), None),
            obj("kopia/ns/q1", None, None),
            with_other.clone(),
        ];
        let a = judge_not_under_key(&apart, &kms(true));
        assert_eq!(a.status, crate::report::Status::Passed, "{a:?}");
        assert!(a.message.contains("all 3 kopia/ objects"), "{}", a.message);
        assert!(a.message.contains("kopia/ns/p1: AES256"), "{}", a.message);
        assert!(
            a.message.contains("kopia/ns/q1: no server-side encryption"),
            "{}",
            a.message
        );
        assert!(
            a.message.contains("kopia/ns/q2: aws:kms with arn:other"),
            "{}",
            a.message
        );

        let under = [
            obj("kopia/ns/p1", Some("AES256"), None),
            obj("kopia/ns/p2", Some("aws:kms"), Some("arn:k")),
        ];
        let a = judge_not_under_key(&under, &kms(true));
        assert_eq!(a.status, crate::report::Status::Failed);
        assert!(a.message.contains("1 of 2"), "{}", a.message);
        assert!(a.message.contains("kopia/ns/p2: arn:k"), "{}", a.message);
        assert!(!a.message.contains("p1"), "{}", a.message);

        // A store that cannot name the key behind an alias: any SSE-KMS object counts as under it.
        let a = judge_not_under_key(&[with_other], &kms(false));
        assert_eq!(a.status, crate::report::Status::Failed, "{a:?}");

        let a = judge_not_under_key(&[], &kms(true));
        assert_eq!(a.status, crate::report::Status::Failed);
        assert!(
            a.message.contains("no objects under kopia/"),
            "{}",
            a.message
        );
    }

    #[test]
    fn gcs_objects_must_report_the_key_at_any_version_and_none_of_their_own() {
        let k = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
        let objects = [
            gcs("b/a.json", Some(&format!("{k}/cryptoKeyVersions/3")), None),
            gcs(
                "b/b.json",
                Some("projects/p/locations/global/keyRings/r/cryptoKeys/other/cryptoKeyVersions/1"),
                None,
            ),
            gcs("b/c.json", None, None),
            gcs(
                "b/d.json",
                Some(&format!("{k}/cryptoKeyVersions/1")),
                Some("c2hh"),
            ),
        ];
        let found = judge_gcs(&objects, k, "k", None);
        let by = |needle: &str| {
            found
                .iter()
                .find(|a| a.name.contains(needle))
                .unwrap_or_else(|| panic!("{needle}: {found:?}"))
        };
        let keyed = by("Cloud KMS key k");
        assert_eq!(keyed.status, crate::report::Status::Failed, "{found:?}");
        assert!(
            keyed
                .message
                .contains("b/b.json: projects/p/locations/global/keyRings/r/cryptoKeys/other"),
            "{}",
            keyed.message
        );
        assert!(
            keyed.message.contains("b/c.json: no kmsKeyName"),
            "{}",
            keyed.message
        );
        assert!(
            !keyed.message.contains("b/a.json") && !keyed.message.contains("b/d.json"),
            "{}",
            keyed.message
        );
        let own = by("customer-supplied");
        assert_eq!(own.status, crate::report::Status::Failed);
        assert!(
            own.message.contains("b/d.json") && !own.message.contains("b/a.json"),
            "{}",
            own.message
        );

        let good = judge_gcs(&objects[..1], k, "k", None);
        assert!(
            good.iter()
                .all(|a| a.status == crate::report::Status::Passed),
            "{good:?}"
        );
        // Where the store cannot tell, the key check is skipped with the reason, even
        // for objects that report no key at all.
        let blind = judge_gcs(&objects[2..3], k, "k", Some("the emulator keeps no key"));
        let keyed = blind
            .iter()
            .find(|a| a.name.contains("Cloud KMS key"))
            .unwrap();
        assert_eq!(keyed.status, crate::report::Status::Skipped);
        assert_eq!(keyed.message, "the emulator keeps no key");
        assert_eq!(
            judge_gcs(&[], k, "k", None)[0].status,
            crate::report::Status::Failed,
            "no objects fails"
        );
    }

    #[test]
    fn names_each_object_with_the_wrong_key_or_none() {
        let expected = Expected::Kms {
            arn: "arn:k1".into(),
            label: "k".into(),
            arn_checkable: None,
        };
        let found = judge(
            &[
                obj("b/a.json", Some("aws:kms"), Some("arn:k1")),
                obj("b/b.tar.gz", Some("aws:kms"), Some("arn:k2")),
                obj("b/c.gz", None, None),
            ],
            &expected,
        );
        let failed: Vec<_> = found
            .iter()
            .filter(|a| a.status == crate::report::Status::Failed)
            .collect();
        assert_eq!(failed.len(), 2, "{found:?}");
        assert!(
            failed[0]
                .message
                .contains("b/c.gz: no server-side encryption header")
        );
        assert!(failed[1].message.contains("b/b.tar.gz: arn:k2"));
        assert!(!failed[1].message.contains("b/a.json"));
    }

    fn blob(key: &str, encrypted: Option<bool>, scope: Option<&str>) -> Observed {
        Observed {
            key: key.into(),
            head: Ok(ObjectEncryption {
                server_encrypted: encrypted,
                encryption_scope: scope.map(str::to_string),
                ..Default::default()
            }),
            resolved_arn: None,
        }
    }

    fn vault_key() -> KeyVaultKey {
        KeyVaultKey::from_key_id(
            "https://v1.vault.azure.net/keys/backups",
            Some("aaa".into()),
            "k".into(),
        )
        .unwrap()
    }

    #[test]
    fn a_key_id_splits_into_vault_and_name() {
        let k = KeyVaultKey::from_key_id(
            "https://localhost:4443/keys/velero-backups",
            None,
            "k".into(),
        )
        .unwrap();
        assert_eq!(
            (k.vault_uri.as_str(), k.key_name.as_str()),
            ("https://localhost:4443", "velero-backups")
        );
        assert!(KeyVaultKey::from_key_id("arn:aws:kms:x", None, "k".into()).is_none());
    }

    #[test]
    fn azure_names_unencrypted_blobs_and_scoped_ones() {
        let account = Ok(AccountEncryption::KeyVault {
            vault_uri: "https://v1.vault.azure.net/".into(),
            key_name: "backups".into(),
            key_version: None,
        });
        let found = judge_azure(
            &[
                blob("b/a.json", Some(true), None),
                blob("b/b.tar.gz", Some(false), None),
                blob("b/c.gz", Some(true), Some("scope1")),
            ],
            &vault_key(),
            &account,
        );
        let failed: Vec<_> = found
            .iter()
            .filter(|a| a.status == crate::report::Status::Failed)
            .collect();
        assert_eq!(failed.len(), 2, "{found:?}");
        assert!(
            failed[0]
                .message
                .contains("b/b.tar.gz: x-ms-server-encrypted false")
                && !failed[0].message.contains("b/a.json")
        );
        assert!(
            failed[1]
                .message
                .contains("b/c.gz: encryption scope scope1")
        );
        assert_eq!(
            found.last().unwrap().status,
            crate::report::Status::Passed,
            "{found:?}"
        );
    }

    #[test]
    fn azure_account_binding_passes_fails_or_skips_with_the_reason() {
        let k = vault_key();
        let status = |a: Result<AccountEncryption, String>| account_binding(&k, &a);
        let other = status(Ok(AccountEncryption::KeyVault {
            vault_uri: "https://v1.vault.azure.net".into(),
            key_name: "other".into(),
            key_version: None,
        }));
        assert_eq!(other.status, crate::report::Status::Failed);
        assert!(other.message.contains("/keys/other"), "{}", other.message);
        let pinned = status(Ok(AccountEncryption::KeyVault {
            vault_uri: "https://V1.vault.azure.net".into(),
            key_name: "backups".into(),
            key_version: Some("bbb".into()),
        }));
        assert_eq!(pinned.status, crate::report::Status::Failed);
        assert!(pinned.message.contains("version bbb"), "{}", pinned.message);
        let same = status(Ok(AccountEncryption::KeyVault {
            vault_uri: "https://v1.vault.azure.net".into(),
            key_name: "backups".into(),
            key_version: Some("aaa".into()),
        }));
        assert_eq!(same.status, crate::report::Status::Passed);
        assert_eq!(
            status(Ok(AccountEncryption::PlatformManaged)).status,
            crate::report::Status::Failed
        );
        let emulator = status(Ok(AccountEncryption::Unknowable(
            "the emulator ignores it".into(),
        )));
        assert_eq!(
            (emulator.status, emulator.message.as_str()),
            (crate::report::Status::Skipped, "the emulator ignores it")
        );
        assert_eq!(
            status(Err("403".into())).status,
            crate::report::Status::Failed
        );
    }

    #[test]
    fn empty_backup_fails() {
        let expected = Expected::CustomerKey {
            key_md5: "x".into(),
            label: "c".into(),
        };
        assert_eq!(
            judge(&[], &expected)[0].status,
            crate::report::Status::Failed
        );
    }

    #[test]
    fn customer_key_md5_matches_s3() {
        // S3 documents the header as base64(md5(key)); check against a known digest.
        assert_eq!(customer_key_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
