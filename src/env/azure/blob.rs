//! Azure Blob Storage as an [`ObjectStore`], for Azurite and for Azure Storage:
//! a bucket is a container. Requests are signed with the account key (Shared
//! Key, see `shared_key`). The only module that touches the Blob API.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RequestContent, RetryOptions, Url};
use azure_core::time::Duration;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesOptions,
    BlobClientGetPropertiesResultHeaders, BlobContainerClientListBlobsOptions,
    EncryptionAlgorithmType,
};
use azure_storage_blob::{BlobServiceClient, BlobServiceClientOptions, StorageError};
use base64::Engine as _;
use futures::TryStreamExt as _;

use super::shared_key::SharedKeyPolicy;
use crate::env::{AccountEncryption, KeyInfo, ObjectEncryption, ObjectStore};
use crate::log::{Redactor, Secret, StepLog};
use crate::scenario::LocationProvider;

/// The variable of Velero's credentials file that holds the account key
/// (`storageAccountKeyEnvVar` names it).
pub const ACCESS_KEY_VAR: &str = "AZURE_STORAGE_ACCOUNT_ACCESS_KEY";

/// A storage account and how to reach it.
#[derive(Debug, Clone)]
pub struct BlobTarget {
    /// The account URL: `http://127.0.0.1:<port>/<account>` (Azurite) or
    /// `https://<account>.blob.core.windows.net`.
    pub endpoint: String,
    pub account: String,
    /// The account key, base64 as Azure shows it.
    pub key: Secret,
    /// Azurite: plain http and a path-style URL are expected.
    pub emulator: bool,
}

pub struct BlobStore {
    service: BlobServiceClient,
    target: BlobTarget,
    credentials_file: Secret,
    page_size: Option<i32>,
}

/// `AuthenticationFailed: <message> (HTTP 403)` for service errors; the full chain otherwise.
fn err(e: azure_core::Error) -> anyhow::Error {
    if !matches!(e.kind(), ErrorKind::HttpResponse { .. }) {
        return anyhow::Error::new(e);
    }
    match StorageError::try_from(e) {
        Ok(se) => {
            let code = se
                .error_code
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "ServiceError".to_string());
            // Azure's messages end with RequestId and Time lines: keep them, on one line.
            let mut msg = se
                .message
                .clone()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(detail) = &se.authentication_error_detail {
                msg.push_str(&format!(
                    " ({})",
                    detail.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
            anyhow!("{code}: {msg} (HTTP {})", u16::from(se.status_code))
        }
        Err(e) => anyhow::Error::new(e),
    }
}

/// Whether an error is the service's answer with this status.
fn status_of(e: &azure_core::Error) -> Option<u16> {
    e.http_status().map(u16::from)
}

impl BlobStore {
    /// The store, and the credentials file Velero will read (a secret). The account key,
    /// its decoded bytes and the file are declared to `redactor`.
    pub async fn new(target: BlobTarget, redactor: &Redactor) -> Result<BlobStore> {
        let url = Url::parse(target.endpoint.trim_end_matches('/'))
            .with_context(|| format!("the account URL `{}`", target.endpoint))?;
        if url.cannot_be_a_base() || url.query().is_some() {
            bail!(
                "the account URL `{}` must be a plain http(s) URL",
                target.endpoint
            );
        }
        if !target.emulator && url.scheme() != "https" {
            bail!(
                "the account URL `{}` must use https (plain http is for the emulator only)",
                target.endpoint
            );
        }
        // Declared here too, in case the key was made by another run's redactor.
        let _ = redactor.secret(target.key.expose().to_vec());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(target.key.expose())
            .map_err(|_| {
                anyhow!(
                    "the key of storage account {} is not base64",
                    target.account
                )
            })?;
        let raw = redactor.secret(raw);
        let policy = SharedKeyPolicy::new(&target.account, &raw);
        // Fewer, shorter retries than the SDK's default (8 retries within 60 s per call):
        // a drill expects some calls to fail (a disabled key, an emulator's 500 for an
        // unsupported feature) and must report them in seconds, not minutes.
        let retry = RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: Duration::milliseconds(200),
            max_retries: 3,
            max_total_elapsed: Duration::seconds(15),
            max_delay: Duration::seconds(5),
        });
        let options = BlobServiceClientOptions {
            client_options: ClientOptions {
                per_try_policies: vec![Arc::new(policy)],
                retry,
                ..Default::default()
            },
            ..Default::default()
        };
        let service = BlobServiceClient::new(url, None, Some(options))
            .map_err(err)
            .context("creating the Blob service client")?;
        let credentials_file = redactor.secret(format!(
            "{ACCESS_KEY_VAR}={}\nAZURE_CLOUD_NAME=AzurePublicCloud\n",
            target.key.expose_str()
        ));
        Ok(BlobStore {
            service,
            target,
            credentials_file,
            page_size: None,
        })
    }

    /// List in pages of at most `n` names (the service's default is 5000).
    pub fn with_page_size(mut self, n: u16) -> BlobStore {
        self.page_size = Some(i32::from(n.max(1)));
        self
    }

    /// Write a block blob (replacing one of the same name).
    pub async fn put(&self, container: &str, name: &str, bytes: Vec<u8>) -> Result<()> {
        let blob = self.service.blob_client(container, name);
        blob.upload(RequestContent::from(bytes), None)
            .await
            .map_err(err)
            .with_context(|| format!("uploading blob {container}/{name}"))?;
        Ok(())
    }

    /// Customer-provided key headers: the key (base64), its SHA-256 (base64), AES256.
    fn cpk(key: Option<&Secret>) -> Option<(String, String)> {
        key.map(|k| {
            let b64 = base64::engine::general_purpose::STANDARD;
            let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, k.expose());
            (b64.encode(k.expose()), b64.encode(sha.as_ref()))
        })
    }

    /// The default public endpoint of the account; anything else needs `storageAccountURI`.
    fn default_endpoint(&self) -> String {
        format!("https://{}.blob.core.windows.net", self.target.account)
    }
}

#[async_trait]
impl ObjectStore for BlobStore {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        // Container names are scoped to the account: there is no one else's container to find.
        self.service
            .blob_container_client(bucket)
            .exists()
            .await
            .map_err(err)
            .with_context(|| format!("GetContainerProperties {bucket}"))
    }

    async fn create_bucket(
        &self,
        bucket: &str,
        default_key: Option<&KeyInfo>,
        log: &StepLog,
    ) -> Result<()> {
        self.service
            .blob_container_client(bucket)
            .create(None)
            .await
            .map_err(err)
            .with_context(|| format!("creating container {bucket}"))?;
        log.line(format!("created container {bucket}"));
        if let Some(key) = default_key {
            log.line(format!(
                "container {bucket}: default key `{}` ignored: Azure has no per-container key; a customer-managed key (Key Vault) is a property of the storage account, set through Azure Resource Manager",
                key.name
            ));
        }
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            maxresults: self.page_size,
            ..Default::default()
        };
        let container = self.service.blob_container_client(bucket);
        let mut pages = container
            .list_blobs(Some(options))
            .map_err(err)?
            .into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(err)
            .with_context(|| format!("listing {bucket}/{prefix}"))?
        {
            let page = page
                .into_model()
                .map_err(err)
                .context("reading a List Blobs page")?;
            out.extend(page.blob_items.into_iter().filter_map(|b| b.name));
        }
        Ok(out)
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        customer_key: Option<&Secret>,
    ) -> Result<ObjectEncryption> {
        let mut options = BlobClientGetPropertiesOptions::default();
        if let Some((k, sha)) = Self::cpk(customer_key) {
            options.encryption_algorithm = Some(EncryptionAlgorithmType::Aes256);
            options.encryption_key = Some(k);
            options.encryption_key_sha256 = Some(sha);
        }
        let h = self
            .service
            .blob_client(bucket, key)
            .get_properties(Some(options))
            .await
            .map_err(err)
            .with_context(|| format!("GetBlobProperties {bucket}/{key}"))?;
        Ok(ObjectEncryption {
            encryption_scope: h.encryption_scope().map_err(err)?,
            server_encrypted: h.is_server_encrypted().map_err(err)?,
            encryption_key_sha256: h.encryption_key_sha256().map_err(err)?,
            ..Default::default()
        })
    }

    async fn read(&self, bucket: &str, key: &str, customer_key: Option<&Secret>) -> Result<u64> {
        let mut options = BlobClientDownloadOptions::default();
        if let Some((k, sha)) = Self::cpk(customer_key) {
            options.encryption_algorithm = Some(EncryptionAlgorithmType::Aes256);
            options.encryption_key = Some(k);
            options.encryption_key_sha256 = Some(sha);
        }
        let what = || format!("GetBlob {bucket}/{key}");
        let out = self
            .service
            .blob_client(bucket, key)
            .download(Some(options))
            .await
            .map_err(err)
            .with_context(what)?;
        let body = out.body.collect().await.map_err(err).with_context(what)?;
        Ok(body.len() as u64)
    }

    fn location_config(&self, provider: LocationProvider) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if provider == LocationProvider::Azure {
            m.insert("storageAccount".to_string(), self.target.account.clone());
            // Velero's plugin reads the key from its credentials file under this name.
            m.insert(
                "storageAccountKeyEnvVar".to_string(),
                ACCESS_KEY_VAR.to_string(),
            );
            let endpoint = self.target.endpoint.trim_end_matches('/');
            if self.target.emulator || endpoint != self.default_endpoint() {
                m.insert("storageAccountURI".to_string(), endpoint.to_string());
            }
        }
        m
    }

    fn velero_credentials(&self, _provider: LocationProvider) -> Secret {
        self.credentials_file.clone()
    }

    async fn delete_bucket(&self, bucket: &str, log: &StepLog) -> Result<()> {
        // Deleting a container deletes its blobs.
        match self
            .service
            .blob_container_client(bucket)
            .delete(None)
            .await
        {
            Ok(_) => log.line(format!("deleted container {bucket}")),
            Err(e) if status_of(&e) == Some(404) => {
                log.line(format!("container {bucket} was already gone"))
            }
            Err(e) => return Err(err(e)).with_context(|| format!("DeleteContainer {bucket}")),
        }
        Ok(())
    }

    async fn account_encryption(&self) -> Result<Option<AccountEncryption>> {
        if self.target.emulator {
            return Ok(Some(AccountEncryption::Unknowable(
                EMULATOR_CMK.to_string(),
            )));
        }
        // A real account's key is read from Azure Resource Manager (super::account),
        // which needs an Entra ID token vdrill does not obtain yet.
        bail!(
            "reading the storage account's encryption settings needs Azure Resource Manager credentials, which vdrill does not support yet (see README)"
        )
    }
}

/// Why the account-key checks are skipped on Azurite.
pub const EMULATOR_CMK: &str = "Azurite ignores customer-managed keys: the Key Vault key of an Azure storage account is an account property (Azure Resource Manager), which the emulator does not have; checked only against real Azure";

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(endpoint: &str, emulator: bool) -> Result<BlobStore> {
        let r = Redactor::new();
        let key = r.secret(base64::engine::general_purpose::STANDARD.encode([7u8; 64]));
        BlobStore::new(
            BlobTarget {
                endpoint: endpoint.to_string(),
                account: "vdrilltest".to_string(),
                key,
                emulator,
            },
            &r,
        )
        .await
    }

    #[tokio::test]
    async fn real_azure_needs_https_and_gets_no_uri() {
        let e = store("http://vdrilltest.blob.core.windows.net", false)
            .await
            .err()
            .expect("http refused");
        assert!(e.to_string().contains("must use https"), "{e}");
        let s = store("https://vdrilltest.blob.core.windows.net/", false)
            .await
            .unwrap();
        let c = s.location_config(LocationProvider::Azure);
        assert_eq!(
            c.get("storageAccount").map(String::as_str),
            Some("vdrilltest")
        );
        assert_eq!(
            c.get("storageAccountKeyEnvVar").map(String::as_str),
            Some(ACCESS_KEY_VAR)
        );
        assert!(!c.contains_key("storageAccountURI"), "{c:?}");
        assert!(s.location_config(LocationProvider::Aws).is_empty());
        assert_eq!(
            s.service.blob_container_client("c").url().as_str(),
            "https://vdrilltest.blob.core.windows.net/c"
        );
    }

    #[tokio::test]
    async fn the_emulator_gets_its_uri_and_a_key_that_is_not_base64_is_refused() {
        let s = store("http://127.0.0.1:1/vdrilltest", true).await.unwrap();
        assert_eq!(
            s.location_config(LocationProvider::Azure)
                .get("storageAccountURI")
                .map(String::as_str),
            Some("http://127.0.0.1:1/vdrilltest")
        );
        assert_eq!(
            s.service
                .blob_client("c", "backups/b/x.json")
                .url()
                .as_str(),
            "http://127.0.0.1:1/vdrilltest/c/backups%2Fb%2Fx.json"
        );
        let r = Redactor::new();
        let key = r.secret("not base64 at all!");
        let e = BlobStore::new(
            BlobTarget {
                endpoint: "http://127.0.0.1:1/a".into(),
                account: "a".into(),
                key,
                emulator: true,
            },
            &r,
        )
        .await
        .err()
        .unwrap();
        assert!(
            !e.to_string().contains("not base64 at all"),
            "the key is not echoed: {e}"
        );
    }
}
