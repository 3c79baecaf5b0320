//! A storage account's encryption settings, from Azure Resource Manager: the
//! customer-managed key of Azure Storage is a property of the account (key source
//! `Microsoft.Keyvault`, vault URI, key name, optional version), not of a blob.
//!
//! The request and the parsing of its answer live here as plain functions, tested
//! on the shapes ARM documents (Storage Accounts - Get Properties, api-version
//! 2023-05-01). They have not run against a live account here: Azurite has no
//! management plane and ignores the setting, so on the local bed the store answers
//! [`AccountEncryption::Unknowable`] instead.

use anyhow::{Context, Result, bail};
use serde_json::Value as Json;

use crate::env::AccountEncryption;

/// The ARM API version whose response shape `parse` reads.
pub const API_VERSION: &str = "2023-05-01";

/// Where an account's properties are read (GET, with an ARM bearer token).
pub fn properties_url(subscription: &str, resource_group: &str, account: &str) -> String {
    format!(
        "https://management.azure.com/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Storage/storageAccounts/{account}?api-version={API_VERSION}"
    )
}

/// The account's encryption at rest, from the body of a Get Properties answer.
pub fn parse(body: &Json) -> Result<AccountEncryption> {
    let encryption = body
        .pointer("/properties/encryption")
        .context("the answer has no properties.encryption")?;
    let source = encryption["keySource"]
        .as_str()
        .context("properties.encryption.keySource is missing")?;
    match source.to_ascii_lowercase().as_str() {
        "microsoft.storage" => Ok(AccountEncryption::PlatformManaged),
        "microsoft.keyvault" => {
            let kv = &encryption["keyvaultproperties"];
            let vault_uri = kv["keyvaulturi"]
                .as_str()
                .filter(|s| !s.is_empty())
                .context("keyvaultproperties.keyvaulturi is missing")?;
            let key_name = kv["keyname"]
                .as_str()
                .filter(|s| !s.is_empty())
                .context("keyvaultproperties.keyname is missing")?;
            // An empty version means the account follows the key's current version.
            let key_version = kv["keyversion"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            Ok(AccountEncryption::KeyVault {
                vault_uri: vault_uri.trim_end_matches('/').to_string(),
                key_name: key_name.to_string(),
                key_version,
            })
        }
        other => bail!("unknown key source `{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_request_names_the_account_and_the_api_version() {
        assert_eq!(
            properties_url("00000000-1111", "rg-backups", "velerobackups"),
            "https://management.azure.com/subscriptions/00000000-1111/resourceGroups/rg-backups/providers/Microsoft.Storage/storageAccounts/velerobackups?api-version=2023-05-01"
        );
    }

    #[test]
    fn a_customer_managed_key_is_read_with_or_without_a_version() {
        // As ARM documents it (trimmed).
        let body = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/velerobackups",
            "properties": {"encryption": {
                "services": {"blob": {"enabled": true, "keyType": "Account"}},
                "keySource": "Microsoft.Keyvault",
                "keyvaultproperties": {"keyvaulturi": "https://backups-vault.vault.azure.net/", "keyname": "velero", "keyversion": "3c7a"}
            }}
        });
        assert_eq!(
            parse(&body).unwrap(),
            AccountEncryption::KeyVault {
                vault_uri: "https://backups-vault.vault.azure.net".into(),
                key_name: "velero".into(),
                key_version: Some("3c7a".into())
            }
        );
        let mut auto = body.clone();
        auto["properties"]["encryption"]["keyvaultproperties"]["keyversion"] = json!("");
        assert!(matches!(
            parse(&auto).unwrap(),
            AccountEncryption::KeyVault {
                key_version: None,
                ..
            }
        ));
    }

    #[test]
    fn platform_keys_and_broken_answers() {
        assert_eq!(
            parse(&json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}))
                .unwrap(),
            AccountEncryption::PlatformManaged
        );
        assert!(
            parse(&json!({"properties": {}}))
                .unwrap_err()
                .to_string()
                .contains("properties.encryption")
        );
        let no_name = json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": "https://v"}}}});
        assert!(parse(&no_name).unwrap_err().to_string().contains("keyname"));
        assert!(parse(&json!({"properties": {"encryption": {"keySource": "Other"}}})).is_err());
    }
}
