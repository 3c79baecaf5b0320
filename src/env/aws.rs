//! AWS S3 and KMS, for LocalStack and for real AWS. The only module that
//! touches the AWS APIs.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::types::KeyState as AwsKeyState;
use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use base64::Engine as _;

use super::{KeyInfo, KeyManager, KeyState, Limitation, ObjectEncryption, ObjectStore};
use crate::log::{Redactor, Secret, StepLog};
use crate::scenario::{KeyProvider, KeySpec, LocationProvider, RotateMode};

/// Where the AWS APIs are: LocalStack on a local port, or AWS itself.
#[derive(Debug, Clone)]
pub struct AwsTarget {
    pub endpoint: Option<String>,
    pub region: String,
    /// Static credentials (LocalStack accepts any): access key id and secret key;
    /// None for the default AWS chain.
    pub static_credentials: Option<(String, Secret)>,
    /// LocalStack diverges from AWS in documented ways (see `limitations`).
    pub localstack: bool,
    /// A tag put on created keys and buckets, to find leftovers.
    pub run_tag: String,
    /// The endpoint as Velero reaches it when that differs from vdrill's (LocalStack in
    /// a container: `http://<name>:4566` from the cluster, a loopback port from here).
    pub cluster_endpoint: Option<String>,
}

pub async fn sdk_config(t: &AwsTarget) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(t.region.clone()));
    if let Some(url) = &t.endpoint {
        loader = loader.endpoint_url(url);
    }
    if let Some((ak, sk)) = &t.static_credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            ak,
            sk.expose_str(),
            None,
            None,
            "vdrill",
        ));
    }
    loader.load().await
}

/// `KMS.DisabledException: <message> (HTTP 400)` for service errors; the full chain otherwise.
fn err<E>(
    e: aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> anyhow::Error
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(se) = e.as_service_error() {
        let code = se.code().unwrap_or("ServiceError");
        let msg = se.message().unwrap_or_default();
        let status = e
            .raw_response()
            .map(|r| format!(" (HTTP {})", r.status().as_u16()))
            .unwrap_or_default();
        return anyhow!("{code}: {msg}{status}");
    }
    anyhow!("{}", DisplayErrorContext(e))
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
    target: AwsTarget,
    credentials_file: Secret,
}

impl S3Store {
    /// The store, and the credentials file Velero will read. The secret key and
    /// session token are declared secrets (made by the redactor), as is the file.
    pub async fn new(target: AwsTarget, redactor: &Redactor) -> Result<S3Store> {
        let conf = sdk_config(&target).await;
        let s3conf = aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(target.endpoint.is_some())
            .build();
        let credentials_file = match &target.static_credentials {
            Some((ak, sk)) => format!(
                "[default]\naws_access_key_id={ak}\naws_secret_access_key={}\n",
                sk.expose_str()
            ),
            None => {
                use aws_credential_types::provider::ProvideCredentials;
                let provider = conf
                    .credentials_provider()
                    .context("no AWS credentials found (set AWS_PROFILE or the AWS_* variables)")?;
                let c = provider
                    .provide_credentials()
                    .await
                    .context("resolving AWS credentials")?;
                let secret_key = redactor.secret(c.secret_access_key());
                let mut s = format!(
                    "[default]\naws_access_key_id={}\naws_secret_access_key={}\n",
                    c.access_key_id(),
                    secret_key.expose_str()
                );
                if let Some(tok) = c.session_token() {
                    let token = redactor.secret(tok);
                    s.push_str(&format!("aws_session_token={}\n", token.expose_str()));
                }
                s
            }
        };
        let credentials_file = redactor.secret(credentials_file);
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(s3conf),
            target,
            credentials_file,
        })
    }

    fn sse_c(key: Option<&Secret>) -> Option<(String, String)> {
        key.map(|k| {
            let b64 = base64::engine::general_purpose::STANDARD;
            (
                b64.encode(k.expose()),
                crate::assert::encryption::customer_key_md5(k.expose()),
            )
        })
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => Ok(false),
                // Someone else's bucket: it exists.
                Some(403) => Ok(true),
                _ => Err(err(e)).with_context(|| format!("HeadBucket {bucket}")),
            },
        }
    }

    async fn create_bucket(
        &self,
        bucket: &str,
        default_key: Option<&KeyInfo>,
        log: &StepLog,
    ) -> Result<()> {
        let mut req = self.client.create_bucket().bucket(bucket);
        if self.target.region != "us-east-1" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        self.target.region.as_str(),
                    ))
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(err)
            .with_context(|| format!("creating bucket {bucket}"))?;
        log.line(format!("created bucket {bucket}"));
        if let Some(key) = default_key {
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::AwsKms)
                        .kms_master_key_id(&key.arn)
                        .build()?,
                )
                .build();
            self.client
                .put_bucket_encryption()
                .bucket(bucket)
                .server_side_encryption_configuration(
                    ServerSideEncryptionConfiguration::builder()
                        .rules(rule)
                        .build()?,
                )
                .send()
                .await
                .map_err(err)?;
            log.line(format!(
                "bucket {bucket}: default encryption with {}",
                key.arn
            ));
        }
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(err)
                .with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(out)
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        customer_key: Option<&Secret>,
    ) -> Result<ObjectEncryption> {
        let mut req = self.client.head_object().bucket(bucket).key(key);
        if let Some((k, md5)) = Self::sse_c(customer_key) {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k)
                .sse_customer_key_md5(md5);
        }
        let h = req
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("HeadObject s3://{bucket}/{key}"))?;
        Ok(ObjectEncryption {
            server_side_encryption: h.server_side_encryption().map(|s| s.as_str().to_string()),
            kms_key_id: h.ssekms_key_id().map(str::to_string),
            sse_customer_algorithm: h.sse_customer_algorithm().map(str::to_string),
            sse_customer_key_md5: h.sse_customer_key_md5().map(str::to_string),
            ..Default::default()
        })
    }

    async fn read(&self, bucket: &str, key: &str, customer_key: Option<&Secret>) -> Result<u64> {
        Ok(self.fetch(bucket, key, customer_key).await?.len() as u64)
    }

    async fn fetch(
        &self,
        bucket: &str,
        key: &str,
        customer_key: Option<&Secret>,
    ) -> Result<Vec<u8>> {
        let mut req = self.client.get_object().bucket(bucket).key(key);
        if let Some((k, md5)) = Self::sse_c(customer_key) {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(k)
                .sse_customer_key_md5(md5);
        }
        let out = req
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("GetObject s3://{bucket}/{key}"))?;
        let body = out
            .body
            .collect()
            .await
            .context("reading the object body")?;
        Ok(body.into_bytes().to_vec())
    }

    fn location_config(&self, provider: LocationProvider) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if provider == LocationProvider::Aws {
            m.insert("region".to_string(), self.target.region.clone());
            if let Some(url) = self
                .target
                .cluster_endpoint
                .as_ref()
                .or(self.target.endpoint.as_ref())
            {
                m.insert("s3Url".to_string(), url.clone());
                m.insert("s3ForcePathStyle".to_string(), "true".to_string());
            }
        }
        m
    }

    fn velero_credentials(&self, _provider: LocationProvider) -> Secret {
        self.credentials_file.clone()
    }

    async fn delete_bucket(&self, bucket: &str, log: &StepLog) -> Result<()> {
        for key in self.list(bucket, "").await? {
            self.client
                .delete_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .map_err(err)?;
        }
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("DeleteBucket {bucket}"))?;
        log.line(format!("deleted bucket {bucket}"));
        Ok(())
    }
}

pub struct KmsKeys {
    client: aws_sdk_kms::Client,
    target: AwsTarget,
}

impl KmsKeys {
    pub async fn new(target: AwsTarget) -> KmsKeys {
        let conf = sdk_config(&target).await;
        KmsKeys {
            client: aws_sdk_kms::Client::new(&conf),
            target,
        }
    }

    async fn describe(&self, reference: &str) -> Result<aws_sdk_kms::types::KeyMetadata> {
        let out = self
            .client
            .describe_key()
            .key_id(reference)
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("DescribeKey {reference}"))?;
        out.key_metadata.context("DescribeKey returned no metadata")
    }

    async fn new_key(&self, name: &str) -> Result<aws_sdk_kms::types::KeyMetadata> {
        let out = self
            .client
            .create_key()
            .description(format!(
                "vdrill drill key `{name}` ({})",
                self.target.run_tag
            ))
            .tags(
                aws_sdk_kms::types::Tag::builder()
                    .tag_key("vdrill-run")
                    .tag_value(&self.target.run_tag)
                    .build()?,
            )
            .send()
            .await
            .map_err(err)
            .context("CreateKey")?;
        out.key_metadata.context("CreateKey returned no metadata")
    }

    fn info(name: &str, alias: Option<String>, md: &aws_sdk_kms::types::KeyMetadata) -> KeyInfo {
        KeyInfo {
            name: name.to_string(),
            provider: KeyProvider::AwsKms,
            id: md.key_id().to_string(),
            arn: md.arn().unwrap_or_default().to_string(),
            alias,
            version: None,
            file: None,
            customer_key: None,
        }
    }
}

#[async_trait]
impl KeyManager for KmsKeys {
    async fn create(&self, name: &str, spec: &KeySpec, log: &StepLog) -> Result<KeyInfo> {
        let alias = spec.alias.clone();
        if spec.existing {
            let md = self
                .describe(
                    alias
                        .as_deref()
                        .context("an existing aws-kms key needs an alias")?,
                )
                .await?;
            return Ok(Self::info(name, alias, &md));
        }
        let md = self.new_key(name).await?;
        if let Some(a) = &alias {
            // Never takes over an alias that exists (it is someone else's): CreateAlias fails then.
            if let Err(e) = self
                .client
                .create_alias()
                .alias_name(a)
                .target_key_id(md.key_id())
                .send()
                .await
            {
                let _ = self
                    .client
                    .schedule_key_deletion()
                    .key_id(md.key_id())
                    .pending_window_in_days(7)
                    .send()
                    .await;
                return Err(err(e)).with_context(|| format!("CreateAlias {a}"));
            }
        }
        log.line(format!(
            "created KMS key {} ({})",
            md.arn().unwrap_or_default(),
            alias.as_deref().unwrap_or("no alias")
        ));
        Ok(Self::info(name, alias, &md))
    }

    async fn disable(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.client
            .disable_key()
            .key_id(&key.id)
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("DisableKey {}", key.arn))?;
        log.line(format!("disabled {}", key.arn));
        Ok(())
    }

    async fn enable(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.client
            .enable_key()
            .key_id(&key.id)
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("EnableKey {}", key.arn))?;
        log.line(format!("enabled {}", key.arn));
        Ok(())
    }

    async fn rotate(&self, key: &KeyInfo, mode: RotateMode, log: &StepLog) -> Result<KeyInfo> {
        match mode {
            RotateMode::OnDemand => {
                self.client
                    .rotate_key_on_demand()
                    .key_id(&key.id)
                    .send()
                    .await
                    .map_err(err)
                    .with_context(|| format!("RotateKeyOnDemand {}", key.arn))?;
                log.line(format!(
                    "rotated {} on demand (same key id, new key material)",
                    key.arn
                ));
                Ok(key.clone())
            }
            RotateMode::NewKey => {
                let alias = key
                    .alias
                    .clone()
                    .context("a new-key rotation needs the key's alias")?;
                let md = self.new_key(&key.name).await?;
                self.client
                    .update_alias()
                    .alias_name(&alias)
                    .target_key_id(md.key_id())
                    .send()
                    .await
                    .map_err(err)
                    .with_context(|| format!("UpdateAlias {alias}"))?;
                log.line(format!(
                    "{alias} now points at {} (was {})",
                    md.arn().unwrap_or_default(),
                    key.arn
                ));
                Ok(Self::info(&key.name, Some(alias), &md))
            }
        }
    }

    async fn schedule_deletion(&self, key: &KeyInfo, days: u32, log: &StepLog) -> Result<()> {
        self.client
            .schedule_key_deletion()
            .key_id(&key.id)
            .pending_window_in_days(days as i32)
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("ScheduleKeyDeletion {}", key.arn))?;
        log.line(format!("{} is pending deletion ({days} days)", key.arn));
        Ok(())
    }

    async fn cancel_deletion(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.client
            .cancel_key_deletion()
            .key_id(&key.id)
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("CancelKeyDeletion {}", key.arn))?;
        log.line(format!("deletion of {} cancelled", key.arn));
        Ok(())
    }

    async fn state(&self, key: &KeyInfo) -> Result<KeyState> {
        let md = self.describe(&key.id).await?;
        Ok(match md.key_state() {
            Some(AwsKeyState::Enabled) => KeyState::Enabled,
            Some(AwsKeyState::Disabled) => KeyState::Disabled,
            Some(AwsKeyState::PendingDeletion) => KeyState::PendingDeletion,
            other => KeyState::Other(format!("{other:?}")),
        })
    }

    async fn exists(&self, reference: &str) -> Result<bool> {
        match self.client.describe_key().key_id(reference).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(err(e)).with_context(|| format!("DescribeKey {reference}")),
        }
    }

    async fn resolve(&self, reference: &str) -> Result<String> {
        Ok(self
            .describe(reference)
            .await?
            .arn()
            .unwrap_or_default()
            .to_string())
    }

    fn limitations(&self) -> Vec<Limitation> {
        if self.target.localstack {
            vec![
                Limitation::AliasKeyIdNotReported,
                Limitation::DefaultEncryptionIgnoresKeyState,
            ]
        } else {
            Vec::new()
        }
    }

    async fn delete(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        // AWS keeps keys for at least 7 days; a key already pending deletion is fine.
        match self
            .client
            .schedule_key_deletion()
            .key_id(&key.id)
            .pending_window_in_days(7)
            .send()
            .await
        {
            Ok(_) => log.line(format!(
                "scheduled deletion of KMS key {} (7 days)",
                key.arn
            )),
            Err(e)
                if DisplayErrorContext(&e)
                    .to_string()
                    .contains("pending deletion") => {}
            Err(e) => {
                return Err(err(e)).with_context(|| format!("ScheduleKeyDeletion {}", key.arn));
            }
        }
        Ok(())
    }

    async fn delete_alias(&self, alias: &str, log: &StepLog) -> Result<()> {
        self.client
            .delete_alias()
            .alias_name(alias)
            .send()
            .await
            .map_err(err)
            .with_context(|| format!("DeleteAlias {alias}"))?;
        log.line(format!("deleted alias {alias}"));
        Ok(())
    }
}
