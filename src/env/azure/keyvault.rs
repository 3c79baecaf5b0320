//! Azure Key Vault keys, for real Key Vault and for lowkey-vault (the emulator).
//! The only module that touches the Key Vault API.
//!
//! A drill key is an RSA 2048 key; its "ARN" is the version-less key id
//! (`https://<vault>/keys/<name>`), its id the key id of the current version.
//! Key Vault has versions where KMS has key material: on-demand rotation makes a
//! new version, and disabling or enabling acts on the current version.
//!
//! State is read from the key's version list, not from a GET: lowkey-vault answers
//! a GET of a disabled version with 404 (real Key Vault returns it with
//! `enabled: false`), while both list disabled versions with their attributes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RetryOptions, StatusCode, Transport, Url};
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, EncryptionAlgorithm, Key, KeyAttributes, KeyClientGetKeyOptions,
    KeyClientUpdateKeyPropertiesOptions, KeyClientWrapKeyOptions, KeyOperation,
    KeyOperationParameters, KeyType, UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions, ResourceExt, ResourceId};
use futures::StreamExt;

use crate::env::{KeyInfo, KeyManager, KeyState};
use crate::log::{Secret, StepLog};
use crate::scenario::{KeyProvider, KeySpec, RotateMode};

/// How long recovery, deletion and purge may take to show (asynchronous on real Key Vault).
const SETTLE: Duration = Duration::from_secs(120);

/// Where the vault is and how to reach it.
#[derive(Debug, Clone)]
pub struct VaultTarget {
    /// `https://<vault>.vault.azure.net`, or the emulator's `https://localhost:<port>`.
    pub url: String,
    /// The only CA to trust for the emulator; for real Key Vault, one trusted besides the system's.
    pub ca_pem: Option<String>,
    /// A static bearer token (the emulator accepts any; for real Key Vault, one
    /// issued for `https://vault.azure.net`, valid about an hour).
    pub token: Option<Secret>,
    /// lowkey-vault: no challenge-resource check, no retries (a local emulator does
    /// not throttle, and it reports some refusals as 500, which would be retried).
    pub emulator: bool,
}

/// A bearer token handed to the SDK as is. Its `Debug` shows no secret.
#[derive(Debug)]
struct StaticToken(Secret);

#[async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let expires =
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1);
        Ok(AccessToken::new(self.0.expose_str().to_string(), expires))
    }
}

/// `Code: message (HTTP status)` for service errors (the code and message Key Vault
/// sent), the whole cause chain otherwise.
fn err(e: azure_core::Error) -> anyhow::Error {
    if let ErrorKind::HttpResponse {
        status,
        error_code,
        raw_response,
    } = e.kind()
    {
        let body: Option<serde_json::Value> = raw_response
            .as_ref()
            .and_then(|r| serde_json::from_slice(r.body()).ok());
        let field = |k: &str| {
            body.as_ref()
                .and_then(|b| b["error"][k].as_str())
                .map(str::to_string)
        };
        let code = field("code")
            .or_else(|| error_code.clone())
            .unwrap_or_else(|| "HttpError".to_string());
        let message = field("message").unwrap_or_else(|| e.to_string());
        return anyhow!("{code}: {message} (HTTP {})", u16::from(*status));
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    anyhow!(text)
}

fn not_found(e: &azure_core::Error) -> bool {
    e.http_status() == Some(StatusCode::NotFound)
}

/// Where a key name stands in the vault.
enum Found {
    /// Its versions, each with whether it is enabled.
    Live(Vec<(String, bool)>),
    /// Soft-deleted (recoverable or purgeable).
    Deleted,
    Missing,
}

pub struct KeyVault {
    client: KeyClient,
    /// The vault's origin, `https://host[:port]`.
    vault: String,
}

impl KeyVault {
    pub async fn new(target: VaultTarget) -> Result<KeyVault> {
        let url =
            Url::parse(&target.url).with_context(|| format!("Key Vault URL {}", target.url))?;
        if url.scheme() != "https" {
            bail!(
                "Key Vault URL {}: the SDK sends tokens over https only",
                target.url
            );
        }
        let token = match (&target.token, target.emulator) {
            (Some(t), _) => t.clone(),
            (None, true) => bail!("the Key Vault emulator needs a token (any non-empty one)"),
            (None, false) => bail!(
                "real Azure Key Vault credentials are not supported yet (no Entra ID credential is wired in); only a static bearer token issued for https://vault.azure.net works for now"
            ),
        };
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        if let Some(pem) = &target.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .context("the vault's CA certificate")?;
            http = if target.emulator {
                http.tls_certs_only(certs)
            } else {
                http.tls_certs_merge(certs)
            };
        }
        let http = http
            .build()
            .context("building the HTTPS client for Key Vault")?;
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry: if target.emulator {
                RetryOptions::none()
            } else {
                RetryOptions::default()
            },
            ..Default::default()
        };
        let options = KeyClientOptions {
            client_options,
            verify_challenge_resource: Some(!target.emulator),
            ..Default::default()
        };
        let client = KeyClient::new(url.as_str(), Arc::new(StaticToken(token)), Some(options))
            .map_err(err)?;
        Ok(KeyVault {
            client,
            vault: url.origin().ascii_serialization(),
        })
    }

    /// The vault's origin, `https://host[:port]`.
    pub fn vault(&self) -> &str {
        &self.vault
    }

    /// A key name, or a key id URL of this vault (with or without version).
    fn parse(&self, reference: &str) -> Result<(String, Option<String>)> {
        if !reference.contains("://") {
            if reference.is_empty()
                || !reference
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                bail!(
                    "`{reference}` is not a Key Vault key name (letters, digits and dashes) nor a key id URL"
                );
            }
            return Ok((reference.to_string(), None));
        }
        let id: ResourceId = reference
            .parse()
            .map_err(err)
            .with_context(|| format!("`{reference}` is not a Key Vault key id"))?;
        let origin = Url::parse(&id.vault_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        if origin != self.vault {
            bail!("key {reference} is not in the vault {}", self.vault);
        }
        Ok((id.name, id.version.filter(|v| !v.is_empty())))
    }

    /// The name and version a drill key stands for.
    fn name_version(&self, key: &KeyInfo) -> Result<(String, String)> {
        let (name, version) = self.parse(&key.id)?;
        let version = version
            .or_else(|| key.version.clone())
            .with_context(|| format!("key {}: no version known", key.id))?;
        Ok((name, version))
    }

    fn info(&self, scenario_name: &str, key: &Key) -> Result<KeyInfo> {
        let id = key
            .resource_id()
            .map_err(err)
            .context("Key Vault returned a key without an id")?;
        let version = id
            .version
            .clone()
            .filter(|v| !v.is_empty())
            .context("Key Vault returned a key id without a version")?;
        Ok(KeyInfo {
            name: scenario_name.to_string(),
            provider: KeyProvider::AzureKeyvault,
            id: id.source_id.clone(),
            arn: format!("{}/keys/{}", id.vault_url, id.name),
            alias: Some(id.name),
            version: Some(version),
            file: None,
            customer_key: None,
        })
    }

    async fn get(&self, name: &str, version: Option<&str>) -> azure_core::Result<Key> {
        let options = KeyClientGetKeyOptions {
            key_version: version.map(str::to_string),
            ..Default::default()
        };
        self.client.get_key(name, Some(options)).await?.into_model()
    }

    /// Every version of a live key with its `enabled` flag; None if there is no live key of that name.
    async fn versions(&self, name: &str) -> Result<Option<Vec<(String, bool)>>> {
        let mut pager = self
            .client
            .list_key_properties_versions(name, None)
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(item) = pager.next().await {
            match item {
                Ok(p) => {
                    let Some(kid) = p.kid.as_deref() else {
                        continue;
                    };
                    let version = kid.rsplit('/').next().unwrap_or_default().to_string();
                    out.push((
                        version,
                        p.attributes
                            .as_ref()
                            .and_then(|a| a.enabled)
                            .unwrap_or(false),
                    ));
                }
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => {
                    return Err(err(e))
                        .with_context(|| format!("listing the versions of key {name}"));
                }
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }

    /// Whether a soft-deleted key of that name exists. lowkey-vault answers a GET of a
    /// deleted key whose latest version is disabled with 404: the deleted-keys list
    /// settles that.
    async fn deleted(&self, name: &str) -> Result<bool> {
        match self.client.get_deleted_key(name, None).await {
            Ok(_) => return Ok(true),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(err(e)).with_context(|| format!("reading deleted key {name}")),
        }
        let mut pager = self.client.list_deleted_key_properties(None).map_err(err)?;
        while let Some(item) = pager.next().await {
            let p = item.map_err(err).context("listing deleted keys")?;
            if p.kid
                .as_deref()
                .and_then(|kid| kid.parse::<ResourceId>().ok())
                .is_some_and(|id| id.name == name)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn find(&self, name: &str) -> Result<Found> {
        if let Some(v) = self.versions(name).await? {
            return Ok(Found::Live(v));
        }
        Ok(if self.deleted(name).await? {
            Found::Deleted
        } else {
            Found::Missing
        })
    }

    /// Poll `check` every second until it holds, for at most [`SETTLE`].
    async fn settle<F, Fut>(&self, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            if check().await? {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{what}: not so after {}s", SETTLE.as_secs());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn set_enabled(&self, key: &KeyInfo, enabled: bool, log: &StepLog) -> Result<()> {
        let (name, version) = self.name_version(key)?;
        let params = UpdateKeyPropertiesParameters {
            key_attributes: Some(KeyAttributes {
                enabled: Some(enabled),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = KeyClientUpdateKeyPropertiesOptions {
            key_version: Some(version.clone()),
            ..Default::default()
        };
        let verb = if enabled { "enabling" } else { "disabling" };
        self.client
            .update_key_properties(&name, params.try_into().map_err(err)?, Some(options))
            .await
            .map_err(err)
            .with_context(|| format!("{verb} key {name} version {version}"))?;
        // Read back: the version must now say so.
        let now = self
            .versions(&name)
            .await?
            .and_then(|vs| vs.into_iter().find(|(v, _)| *v == version))
            .map(|(_, e)| e);
        if now != Some(enabled) {
            bail!(
                "{verb} key {name} version {version}: the vault still lists it as {}",
                match now {
                    Some(true) => "enabled",
                    Some(false) => "disabled",
                    None => "absent",
                }
            );
        }
        log.line(format!(
            "{} {} (version {version})",
            if enabled { "enabled" } else { "disabled" },
            key.arn
        ));
        Ok(())
    }

    /// Wrap `plain` (RSA-OAEP-256) with a version of the key (its current one if None);
    /// fails as the vault refuses (e.g. a disabled or deleted key).
    pub async fn wrap(
        &self,
        key: &KeyInfo,
        version: Option<&str>,
        plain: &[u8],
    ) -> Result<Vec<u8>> {
        let (name, current) = self.name_version(key)?;
        let version = version.map(str::to_string).unwrap_or(current);
        let params = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(plain.to_vec()),
            ..Default::default()
        };
        let options = KeyClientWrapKeyOptions {
            key_version: Some(version.clone()),
            ..Default::default()
        };
        let out = self
            .client
            .wrap_key(&name, params.try_into().map_err(err)?, Some(options))
            .await
            .map_err(err)
            .with_context(|| format!("wrapping with key {name} version {version}"))?
            .into_model()
            .map_err(err)?;
        out.result.context("the vault returned no wrapped key")
    }

    /// Unwrap what [`KeyVault::wrap`] returned, with the version that wrapped it.
    pub async fn unwrap(&self, key: &KeyInfo, version: &str, wrapped: &[u8]) -> Result<Vec<u8>> {
        let (name, _) = self.name_version(key)?;
        let params = KeyOperationParameters {
            algorithm: Some(EncryptionAlgorithm::RsaOaep256),
            value: Some(wrapped.to_vec()),
            ..Default::default()
        };
        let out = self
            .client
            .unwrap_key(&name, version, params.try_into().map_err(err)?, None)
            .await
            .map_err(err)
            .with_context(|| format!("unwrapping with key {name} version {version}"))?
            .into_model()
            .map_err(err)?;
        out.result.context("the vault returned no unwrapped key")
    }

    /// The key's current version as a GET returns it. Fails for a deleted key, and on
    /// lowkey-vault for a disabled version too (real Key Vault returns it).
    pub async fn read(&self, key: &KeyInfo) -> Result<KeyInfo> {
        let (name, version) = self.name_version(key)?;
        let got = self
            .get(&name, Some(&version))
            .await
            .map_err(err)
            .with_context(|| format!("reading key {name} version {version}"))?;
        self.info(&key.name, &got)
    }

    /// Every version of the key, with whether it is enabled (empty when it is not live).
    pub async fn key_versions(&self, key: &KeyInfo) -> Result<Vec<(String, bool)>> {
        let (name, _) = self.name_version(key)?;
        Ok(self.versions(&name).await?.unwrap_or_default())
    }
}

#[async_trait]
impl KeyManager for KeyVault {
    async fn create(&self, name: &str, spec: &KeySpec, log: &StepLog) -> Result<KeyInfo> {
        let key_name = spec
            .name
            .as_deref()
            .with_context(|| format!("key `{name}`: an azure-keyvault key needs `name`"))?;
        self.parse(key_name)?;
        if spec.existing {
            let key = self
                .get(key_name, None)
                .await
                .map_err(err)
                .with_context(|| format!("reading key {key_name} in {}", self.vault))?;
            return self.info(name, &key);
        }
        match self.find(key_name).await? {
            Found::Missing => {}
            Found::Live(_) => bail!(
                "key {key_name} already exists in {}; vdrill creates its keys under names that are free and never adds versions to a key it did not create: pick another name, or declare the key `existing: true`",
                self.vault
            ),
            Found::Deleted => bail!(
                "a deleted key named {key_name} is still held in {} (soft delete): pick another name, or recover or purge that key first",
                self.vault
            ),
        }
        let params = CreateKeyParameters {
            kty: Some(KeyType::Rsa),
            key_size: Some(2048),
            // Named explicitly: lowkey-vault grants none when none are asked for (Key Vault grants all).
            key_ops: Some(vec![
                KeyOperation::WrapKey,
                KeyOperation::UnwrapKey,
                KeyOperation::Encrypt,
                KeyOperation::Decrypt,
            ]),
            tags: Some(HashMap::from([
                ("created-by".to_string(), "vdrill".to_string()),
                ("vdrill-key".to_string(), name.to_string()),
            ])),
            ..Default::default()
        };
        let key = self
            .client
            .create_key(key_name, params.try_into().map_err(err)?, None)
            .await
            .map_err(err)
            .with_context(|| format!("creating key {key_name} in {}", self.vault))?
            .into_model()
            .map_err(err)?;
        let info = self.info(name, &key)?;
        log.line(format!(
            "created Key Vault key {} (RSA 2048, version {})",
            info.arn,
            info.version.as_deref().unwrap_or("?")
        ));
        Ok(info)
    }

    async fn exists(&self, reference: &str) -> Result<bool> {
        let (name, version) = self.parse(reference)?;
        Ok(match (self.find(&name).await?, version) {
            (Found::Live(vs), Some(v)) => vs.iter().any(|(x, _)| *x == v),
            (Found::Live(_), None) => true,
            // A soft-deleted key still holds its name.
            (Found::Deleted, _) => true,
            (Found::Missing, _) => false,
        })
    }

    async fn disable(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.set_enabled(key, false, log).await
    }

    async fn enable(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.set_enabled(key, true, log).await
    }

    async fn rotate(&self, key: &KeyInfo, mode: RotateMode, log: &StepLog) -> Result<KeyInfo> {
        if mode == RotateMode::NewKey {
            bail!(
                "rotate mode new-key is not available for Key Vault keys: Key Vault has no aliases to point at another key; rotate on demand (a new version of the same key)"
            );
        }
        let (name, old) = self.name_version(key)?;
        let rotated = self
            .client
            .rotate_key(&name, None)
            .await
            .map_err(err)
            .with_context(|| format!("rotating key {name}"))?
            .into_model()
            .map_err(err)?;
        let info = self.info(&key.name, &rotated)?;
        let new = info.version.clone().unwrap_or_default();
        if new == old {
            bail!("rotating key {name}: the vault returned the same version {old}");
        }
        log.line(format!("rotated {}: version {old} -> {new}", key.arn));
        Ok(info)
    }

    async fn schedule_deletion(&self, key: &KeyInfo, _days: u32, log: &StepLog) -> Result<()> {
        let (name, _) = self.name_version(key)?;
        let deleted = self
            .client
            .delete_key(&name, None)
            .await
            .map_err(err)
            .with_context(|| format!("deleting key {name}"))?
            .into_model()
            .map_err(err)?;
        let retention = deleted
            .attributes
            .as_ref()
            .and_then(|a| a.recoverable_days)
            .map(|d| format!("{d} days"))
            .unwrap_or_else(|| "the vault's".to_string());
        let purge = deleted
            .scheduled_purge_date
            .map(|d| format!(", purge scheduled for {d}"))
            .unwrap_or_default();
        log.line(format!(
            "{} is soft-deleted (recoverable; the vault's retention: {retention}{purge})",
            key.arn
        ));
        self.settle(&format!("key {name} reads as deleted"), || async {
            Ok(matches!(self.find(&name).await?, Found::Deleted))
        })
        .await
    }

    async fn cancel_deletion(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        let (name, version) = self.name_version(key)?;
        self.client
            .recover_deleted_key(&name, None)
            .await
            .map_err(err)
            .with_context(|| format!("recovering deleted key {name}"))?;
        // Recovery is asynchronous on real Key Vault: wait until the version is back.
        self.settle(
            &format!("key {name} readable again after recovery"),
            || async {
                Ok(self
                    .versions(&name)
                    .await?
                    .is_some_and(|vs| vs.iter().any(|(v, _)| *v == version)))
            },
        )
        .await?;
        log.line(format!("recovered {} (deletion cancelled)", key.arn));
        Ok(())
    }

    async fn state(&self, key: &KeyInfo) -> Result<KeyState> {
        let (name, version) = self.name_version(key)?;
        Ok(match self.find(&name).await? {
            Found::Live(vs) => match vs.iter().find(|(v, _)| *v == version) {
                Some((_, true)) => KeyState::Enabled,
                Some((_, false)) => KeyState::Disabled,
                None => KeyState::Other(format!("version {version} not found")),
            },
            Found::Deleted => KeyState::PendingDeletion,
            Found::Missing => KeyState::Other("not found".to_string()),
        })
    }

    async fn resolve(&self, reference: &str) -> Result<String> {
        let (name, _) = self.parse(reference)?;
        match self.find(&name).await? {
            Found::Missing => bail!("KeyNotFound: key {name} is not in {}", self.vault),
            _ => Ok(format!("{}/keys/{name}", self.vault)),
        }
    }

    async fn delete(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        let (name, _) = self.name_version(key)?;
        match self.client.delete_key(&name, None).await {
            Ok(_) => {}
            // Already soft-deleted (a drill that scheduled its deletion): purge it.
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(err(e)).with_context(|| format!("deleting key {name}")),
        }
        self.settle(&format!("key {name} reads as deleted"), || async {
            Ok(!matches!(self.find(&name).await?, Found::Live(_)))
        })
        .await?;
        // Real Key Vault may answer 409 while the deletion is still in progress.
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            match self.client.purge_deleted_key(&name, None).await {
                Ok(_) => break,
                Err(e)
                    if e.http_status() == Some(StatusCode::Conflict)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(err(e)).with_context(|| format!("purging deleted key {name}"));
                }
            }
        }
        self.settle(&format!("key {name} purged"), || async {
            Ok(matches!(self.find(&name).await?, Found::Missing))
        })
        .await?;
        log.line(format!("deleted and purged Key Vault key {}", key.arn));
        Ok(())
    }

    async fn delete_alias(&self, _alias: &str, _log: &StepLog) -> Result<()> {
        // Key Vault has no aliases: the key name goes with the key.
        Ok(())
    }
}
