//! Backup storage location `config` keys as each Velero object-store plugin reads them.
//!
//! The plugins reject unknown keys when Velero validates the location; checking here
//! turns a failed drill twenty minutes in into an error on the scenario's line.

use std::collections::BTreeMap;

use super::model::{KeyProvider, KeySpec, LocationProvider, StorageKind};
use super::refs;

/// Keys velero-plugin-for-aws accepts (its `ValidateObjectStoreConfigKeys` list).
pub const AWS_KEYS: &[&str] = &[
    "region",
    "s3Url",
    "publicUrl",
    "kmsKeyId",
    "customerKeyEncryptionFile",
    "customerKeyEncryptionSecret",
    "s3ForcePathStyle",
    "signatureVersion",
    "credentialsFile",
    "profile",
    "serverSideEncryption",
    "insecureSkipTLSVerify",
    "enableSharedConfig",
    "tagging",
    "checksumAlgorithm",
];

/// Keys velero-plugin-for-microsoft-azure accepts for object storage.
pub const AZURE_KEYS: &[&str] = &[
    "resourceGroup",
    "storageAccount",
    "storageAccountKeyEnvVar",
    "subscriptionId",
    "storageAccountURI",
    "useAAD",
    "blockSizeInBytes",
    "credentialsFile",
];

/// Keys velero-plugin-for-gcp accepts for object storage.
pub const GCP_KEYS: &[&str] = &[
    "kmsKeyName",
    "serviceAccount",
    "credentialsFile",
    "storeEndpoint",
    "universeDomain",
];

/// Keys vdrill sets itself for the emulated stores; a scenario must leave them out.
pub const LOCALSTACK_MANAGED: &[&str] = &["s3Url", "s3ForcePathStyle", "publicUrl"];
pub const AZURITE_MANAGED: &[&str] = &[
    "storageAccountURI",
    "storageAccount",
    "storageAccountKeyEnvVar",
    "resourceGroup",
    "subscriptionId",
];
pub const FAKE_GCS_MANAGED: &[&str] = &[
    "storeEndpoint",
    "credentialsFile",
    "serviceAccount",
    "universeDomain",
];

const SSE_VALUES: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];
const BOOL_KEYS: &[&str] = &[
    "s3ForcePathStyle",
    "insecureSkipTLSVerify",
    "enableSharedConfig",
    "useAAD",
];

/// One problem with a location's config; `key` is the config key it is about, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: Option<String>,
    pub message: String,
}

fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: Some(key.to_string()),
        message: message.into(),
    }
}

/// The key named by a `${keys.<k>.<attr>}` value, if the whole value is such a reference.
fn key_ref(value: &str) -> Option<(String, String)> {
    let found = refs::find(value).ok()?;
    match found.as_slice() {
        [r] if r.start == 0
            && r.end == value.len()
            && r.parts.len() == 3
            && r.parts[0] == "keys" =>
        {
            Some((r.parts[1].clone(), r.parts[2].clone()))
        }
        _ => None,
    }
}

pub fn check(
    provider: LocationProvider,
    storage: StorageKind,
    config: &BTreeMap<String, String>,
    keys: &BTreeMap<String, KeySpec>,
) -> Vec<ConfigIssue> {
    let mut out = Vec::new();
    let allowed = match provider {
        LocationProvider::Aws => AWS_KEYS,
        LocationProvider::Azure => AZURE_KEYS,
        LocationProvider::Gcp => GCP_KEYS,
    };
    for key in config.keys() {
        if ["bucket", "prefix", "caCert"].contains(&key.as_str()) {
            out.push(issue(key, format!("`{key}` is set by Velero from the location itself; use the location's `{}` field instead", if key == "caCert" { "caCert" } else { key })));
            continue;
        }
        if !allowed.contains(&key.as_str()) {
            let mut msg = format!(
                "velero-plugin-for-{} rejects config key `{key}`",
                plugin_name(provider)
            );
            if let Some(best) = super::de::closest(key, allowed) {
                msg.push_str(&format!(" (did you mean `{best}`?)"));
            }
            msg.push_str(&format!(
                "; it accepts {}",
                allowed
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            out.push(issue(key, msg));
            continue;
        }
        let managed: &[&str] = match storage {
            StorageKind::Localstack => LOCALSTACK_MANAGED,
            StorageKind::Azurite => AZURITE_MANAGED,
            StorageKind::FakeGcs => FAKE_GCS_MANAGED,
            _ => &[],
        };
        if managed.contains(&key.as_str()) {
            out.push(issue(
                key,
                format!(
                    "`{key}` is set by vdrill for `storage: {}`; remove it",
                    storage.as_str()
                ),
            ));
        }
    }
    for key in BOOL_KEYS {
        if let Some(v) = config.get(*key)
            && !["true", "false"].contains(&v.to_lowercase().as_str())
        {
            out.push(issue(
                key,
                format!("expected `true` or `false`, found `{v}`"),
            ));
        }
    }

    if provider == LocationProvider::Aws {
        let sse_methods: Vec<&str> = [
            "kmsKeyId",
            "customerKeyEncryptionFile",
            "customerKeyEncryptionSecret",
        ]
        .into_iter()
        .filter(|k| config.contains_key(*k))
        .collect();
        if sse_methods.len() > 1 {
            out.push(issue(
                sse_methods[1],
                format!("the AWS plugin accepts only one of `kmsKeyId`, `customerKeyEncryptionFile`, `customerKeyEncryptionSecret`; found {}", sse_methods.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")),
            ));
        }
        if let Some(v) = config.get("serverSideEncryption") {
            if !SSE_VALUES.contains(&v.as_str()) {
                out.push(issue(
                    "serverSideEncryption",
                    format!("expected one of `AES256`, `aws:kms`, `aws:kms:dsse`, found `{v}`"),
                ));
            } else if v == "AES256" && config.contains_key("kmsKeyId") {
                out.push(issue(
                    "serverSideEncryption",
                    "`AES256` cannot be combined with `kmsKeyId`; use `aws:kms` or leave it out",
                ));
            }
        }
        if let Some(v) = config.get("kmsKeyId") {
            match key_ref(v) {
                Some((k, attr)) => match keys.get(&k) {
                    Some(spec) if spec.provider != KeyProvider::AwsKms => out.push(issue(
                        "kmsKeyId",
                        format!("key `{k}` is a `{}` key; `kmsKeyId` needs an `aws-kms` key", spec.provider.as_str()),
                    )),
                    Some(_) if !["alias", "arn", "id"].contains(&attr.as_str()) => {
                        out.push(issue("kmsKeyId", format!("`kmsKeyId` takes a key's `alias`, `arn` or `id`, not `{attr}`")))
                    }
                    _ => {}
                },
                None if v.trim().is_empty() => out.push(issue("kmsKeyId", "`kmsKeyId` is empty")),
                None if storage.is_local() => out.push(issue(
                    "kmsKeyId",
                    "on the local test bed keys are created per run; reference one as `${keys.<key>.alias}` or `${keys.<key>.arn}`",
                )),
                None => {}
            }
        }
        if let Some(v) = config.get("customerKeyEncryptionFile") {
            match key_ref(v) {
                Some((k, attr)) => match keys.get(&k) {
                    Some(spec) if spec.provider != KeyProvider::CustomerKey || attr != "file" => out.push(issue(
                        "customerKeyEncryptionFile",
                        "`customerKeyEncryptionFile` takes `${keys.<key>.file}` of a `customer-key` key",
                    )),
                    _ => {}
                },
                None if storage.is_local() => out.push(issue(
                    "customerKeyEncryptionFile",
                    "declare a `customer-key` key and write `${keys.<key>.file}`: vdrill generates the 32-byte key file for the run",
                )),
                None => {}
            }
        }
        if config.contains_key("customerKeyEncryptionSecret") && storage.is_local() {
            out.push(issue(
                "customerKeyEncryptionSecret",
                "`customerKeyEncryptionSecret` is read inside the cluster by a Velero pod; the local test bed runs Velero as a process, use `customerKeyEncryptionFile`",
            ));
        }
    }
    if provider == LocationProvider::Gcp
        && let Some(v) = config.get("kmsKeyName")
    {
        match key_ref(v) {
            Some((k, attr)) => match keys.get(&k) {
                Some(spec) if spec.provider != KeyProvider::GcpKms => out.push(issue(
                    "kmsKeyName",
                    format!(
                        "key `{k}` is a `{}` key; `kmsKeyName` needs a `gcp-kms` key",
                        spec.provider.as_str()
                    ),
                )),
                Some(_) if attr != "name" => out.push(issue(
                    "kmsKeyName",
                    format!("`kmsKeyName` takes a key's `name`, not `{attr}`"),
                )),
                _ => {}
            },
            None if !v.contains("${") && !is_cloud_kms_key(v) => out.push(issue(
                "kmsKeyName",
                "expected `projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`",
            )),
            None => {}
        }
    }
    out
}

/// Whether `name` is a Cloud KMS key's resource path,
/// `projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`.
pub fn is_cloud_kms_key(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 8
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "keyRings"
        && parts[6] == "cryptoKeys"
        && [1, 3, 5, 7].iter().all(|&i| {
            !parts[i].is_empty()
                && parts[i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        })
}

pub fn plugin_name(provider: LocationProvider) -> &'static str {
    match provider {
        LocationProvider::Aws => "aws",
        LocationProvider::Azure => "microsoft-azure",
        LocationProvider::Gcp => "gcp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn keys() -> BTreeMap<String, KeySpec> {
        let mut m = BTreeMap::new();
        m.insert(
            "k".to_string(),
            KeySpec {
                provider: KeyProvider::AwsKms,
                alias: Some("alias/x".into()),
                name: None,
                vault: None,
                existing: false,
            },
        );
        m
    }

    #[test]
    fn rejects_unknown_and_conflicting_keys() {
        let issues = check(
            LocationProvider::Aws,
            StorageKind::Aws,
            &cfg(&[
                ("kmsKeyID", "x"),
                ("kmsKeyId", "abc"),
                ("customerKeyEncryptionFile", "/k"),
            ]),
            &keys(),
        );
        assert!(
            issues[0]
                .message
                .contains("rejects config key `kmsKeyID` (did you mean `kmsKeyId`?)"),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.message.contains("only one of")),
            "{issues:?}"
        );
    }

    #[test]
    fn local_store_manages_endpoint_and_needs_key_refs() {
        let issues = check(
            LocationProvider::Aws,
            StorageKind::Localstack,
            &cfg(&[("s3Url", "http://x"), ("kmsKeyId", "alias/x")]),
            &keys(),
        );
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(issues[0].message.contains("set by vdrill"));
        assert!(issues[1].message.contains("${keys.<key>.alias}"));
        assert!(
            check(
                LocationProvider::Aws,
                StorageKind::Localstack,
                &cfg(&[("kmsKeyId", "${keys.k.alias}")]),
                &keys()
            )
            .is_empty()
        );
    }
}
