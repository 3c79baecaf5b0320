//! Google Cloud Storage as an [`ObjectStore`], for fake-gcs-server and for GCS:
//! the JSON API (`/storage/v1`, uploads under `/upload/storage/v1`). The only
//! module that touches the GCS API.
//!
//! Written by hand over the HTTP client already in the tree: the maintained Rust
//! clients cost more than the five calls vdrill makes. `google-cloud-storage` 1.x
//! brings gRPC (tonic, prost) and Google's own auth and gax stacks, and
//! `gcloud-storage` a second reqwest (0.12) and ring, a second TLS stack.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::env::{KeyInfo, Limitation, ObjectEncryption, ObjectStore};
use crate::log::{Redactor, Secret, StepLog};
use crate::scenario::LocationProvider;

/// A GCS endpoint and how to reach it.
#[derive(Debug, Clone)]
pub struct GcsTarget {
    /// `http://127.0.0.1:<port>` (fake-gcs-server) or `https://storage.googleapis.com`.
    pub endpoint: String,
    /// The project new buckets belong to.
    pub project: String,
    /// fake-gcs-server: plain http, no authentication.
    pub emulator: bool,
}

pub struct GcsStore {
    http: reqwest::Client,
    base: Url,
    target: GcsTarget,
    credentials_file: Secret,
    page_size: Option<u32>,
}

/// An object resource, as the JSON API describes it (the fields vdrill reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    name: String,
    kms_key_name: Option<String>,
    customer_encryption: Option<CustomerEncryption>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerEncryption {
    key_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Objects {
    #[serde(default)]
    items: Vec<Object>,
    next_page_token: Option<String>,
}

/// The JSON API's error body: `{"error": {"code": 404, "message": "..."}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

impl GcsStore {
    /// The store, and the credentials file Velero will read (a secret, declared to
    /// `redactor`): a service-account key made for this run. On the emulator it
    /// authorizes nothing; Velero's GCP plugin needs one to start.
    pub async fn new(target: GcsTarget, redactor: &Redactor) -> Result<GcsStore> {
        let base = Url::parse(target.endpoint.trim_end_matches('/'))
            .with_context(|| format!("the GCS endpoint `{}`", target.endpoint))?;
        if base.cannot_be_a_base() || base.query().is_some() {
            bail!(
                "the GCS endpoint `{}` must be a plain http(s) URL",
                target.endpoint
            );
        }
        if !target.emulator {
            // Requests to real GCS need an OAuth token; vdrill does not obtain one yet.
            bail!(
                "`storage: gcp` (real Google Cloud Storage) is not implemented yet: vdrill obtains no Google credentials"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("creating the HTTP client")?;
        let credentials_file = redactor.secret(service_account_json(&target.project, redactor)?);
        Ok(GcsStore {
            http,
            base,
            target,
            credentials_file,
            page_size: None,
        })
    }

    /// List in pages of at most `n` objects (the service's default is 1000).
    pub fn with_page_size(mut self, n: u16) -> GcsStore {
        self.page_size = Some(u32::from(n.max(1)));
        self
    }

    /// `<endpoint>/<segments...>`, each segment percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new: a base URL")
            .pop_if_empty()
            .extend(segments);
        url
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<reqwest::Response> {
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{what}: no answer from {}", self.target.endpoint))?;
        Ok(resp)
    }

    /// The service's error for a failed response: `<message> (HTTP <status>)`.
    async fn error(resp: reqwest::Response, what: &str) -> anyhow::Error {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .ok()
            .and_then(|b| b.error.message)
            .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "));
        anyhow!("{what}: {message} (HTTP {})", status.as_u16())
    }

    /// Write an object (replacing one of the same name); `kms_key_name` as Velero's
    /// plugin asks for it.
    pub async fn put(
        &self,
        bucket: &str,
        name: &str,
        bytes: Vec<u8>,
        kms_key_name: Option<&str>,
    ) -> Result<()> {
        let mut url = self.url(&["upload", "storage", "v1", "b", bucket, "o"]);
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", name);
        if let Some(k) = kms_key_name {
            url.query_pairs_mut().append_pair("kmsKeyName", k);
        }
        let what = format!("uploading {bucket}/{name}");
        let resp = self.send(Method::POST, url, Some(bytes), &what).await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp, &what).await);
        }
        Ok(())
    }

    async fn delete_object(&self, bucket: &str, name: &str) -> Result<()> {
        let what = format!("deleting {bucket}/{name}");
        let resp = self
            .send(
                Method::DELETE,
                self.url(&["storage", "v1", "b", bucket, "o", name]),
                None,
                &what,
            )
            .await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(Self::error(resp, &what).await),
        }
    }
}

/// A service-account key file for `project`, with a fresh RSA key (PKCS#8 PEM)
/// that is declared to `redactor`.
fn service_account_json(project: &str, redactor: &Redactor) -> Result<String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .context("generating the service account's RSA key")?;
    let pem = key.serialize_pem();
    let _ = redactor.secret(pem.clone());
    let id = crate::env::hex(&crate::env::random_bytes(20)?);
    let _ = redactor.secret(id.clone());
    let doc = serde_json::json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": id,
        "private_key": pem,
        "client_email": format!("velero@{project}.iam.gserviceaccount.com"),
        "client_id": "0",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    Ok(serde_json::to_string_pretty(&doc)?)
}

#[async_trait]
impl ObjectStore for GcsStore {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let what = format!("getting bucket {bucket}");
        let resp = self
            .send(
                Method::GET,
                self.url(&["storage", "v1", "b", bucket]),
                None,
                &what,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Self::error(resp, &what).await),
        }
    }

    async fn create_bucket(
        &self,
        bucket: &str,
        default_key: Option<&KeyInfo>,
        log: &StepLog,
    ) -> Result<()> {
        let mut url = self.url(&["storage", "v1", "b"]);
        url.query_pairs_mut()
            .append_pair("project", &self.target.project);
        let mut body = serde_json::json!({"name": bucket});
        if let Some(k) = default_key {
            body["encryption"] = serde_json::json!({"defaultKmsKeyName": k.id});
        }
        let what = format!("creating bucket {bucket}");
        let resp = self
            .send(Method::POST, url, Some(serde_json::to_vec(&body)?), &what)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp, &what).await);
        }
        log.line(format!("created bucket {bucket}"));
        if let Some(k) = default_key {
            log.line(format!(
                "bucket {bucket}: default key `{}` ({}) requested; {}",
                k.name,
                k.id,
                Limitation::KmsKeyNameNotRecorded.reason()
            ));
        }
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url(&["storage", "v1", "b", bucket, "o"]);
            {
                let mut q = url.query_pairs_mut();
                if !prefix.is_empty() {
                    q.append_pair("prefix", prefix);
                }
                if let Some(n) = self.page_size {
                    q.append_pair("maxResults", &n.to_string());
                }
                if let Some(t) = &token {
                    q.append_pair("pageToken", t);
                }
            }
            let what = format!("listing {bucket}/{prefix}");
            let resp = self.send(Method::GET, url, None, &what).await?;
            if !resp.status().is_success() {
                return Err(Self::error(resp, &what).await);
            }
            let page: Objects = resp
                .json()
                .await
                .with_context(|| format!("{what}: reading the answer"))?;
            out.extend(page.items.into_iter().map(|o| o.name));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        _customer_key: Option<&Secret>,
    ) -> Result<ObjectEncryption> {
        let what = format!("getting object {bucket}/{key}");
        let resp = self
            .send(
                Method::GET,
                self.url(&["storage", "v1", "b", bucket, "o", key]),
                None,
                &what,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp, &what).await);
        }
        let o: Object = resp
            .json()
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        Ok(ObjectEncryption {
            kms_key_name: o.kms_key_name,
            encryption_key_sha256: o.customer_encryption.and_then(|c| c.key_sha256),
            ..Default::default()
        })
    }

    async fn read(&self, bucket: &str, key: &str, _customer_key: Option<&Secret>) -> Result<u64> {
        let mut url = self.url(&["storage", "v1", "b", bucket, "o", key]);
        url.query_pairs_mut().append_pair("alt", "media");
        let what = format!("reading {bucket}/{key}");
        let resp = self.send(Method::GET, url, None, &what).await?;
        if !resp.status().is_success() {
            return Err(Self::error(resp, &what).await);
        }
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("{what}: reading the body"))?;
        Ok(body.len() as u64)
    }

    fn location_config(&self, provider: LocationProvider) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if provider == LocationProvider::Gcp && self.target.emulator {
            // The plugin's storage client takes the JSON API root.
            m.insert(
                "storeEndpoint".to_string(),
                format!("{}/storage/v1/", self.target.endpoint.trim_end_matches('/')),
            );
        }
        m
    }

    fn velero_credentials(&self, _provider: LocationProvider) -> Secret {
        self.credentials_file.clone()
    }

    fn velero_env(&self) -> Vec<(String, String)> {
        if !self.target.emulator {
            return Vec::new();
        }
        // Google's storage client sends no credentials when this is set; with only
        // `storeEndpoint` it would first fetch an OAuth token from Google for the
        // service account, which no emulator answers.
        vec![(
            "STORAGE_EMULATOR_HOST".to_string(),
            self.target.endpoint.trim_end_matches('/').to_string(),
        )]
    }

    fn limitations(&self) -> Vec<Limitation> {
        if self.target.emulator {
            vec![Limitation::KmsKeyNameNotRecorded]
        } else {
            Vec::new()
        }
    }

    async fn delete_bucket(&self, bucket: &str, log: &StepLog) -> Result<()> {
        if !self.bucket_exists(bucket).await? {
            log.line(format!("bucket {bucket} was already gone"));
            return Ok(());
        }
        let objects = self.list(bucket, "").await?;
        for o in &objects {
            self.delete_object(bucket, o).await?;
        }
        let what = format!("deleting bucket {bucket}");
        let resp = self
            .send(
                Method::DELETE,
                self.url(&["storage", "v1", "b", bucket]),
                None,
                &what,
            )
            .await?;
        if !resp.status().is_success() && resp.status() != StatusCode::NOT_FOUND {
            return Err(Self::error(resp, &what).await);
        }
        log.line(format!(
            "deleted bucket {bucket} ({} objects)",
            objects.len()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(endpoint: &str) -> Result<GcsStore> {
        GcsStore::new(
            GcsTarget {
                endpoint: endpoint.to_string(),
                project: "vdrill".to_string(),
                emulator: true,
            },
            &Redactor::new(),
        )
        .await
    }

    #[tokio::test]
    async fn object_names_are_one_path_segment_and_the_endpoint_is_the_json_root() {
        let s = store("http://127.0.0.1:1/").await.unwrap();
        assert_eq!(
            s.url(&["storage", "v1", "b", "bk", "o", "backups/b 1/x.json"])
                .as_str(),
            "http://127.0.0.1:1/storage/v1/b/bk/o/backups%2Fb%201%2Fx.json"
        );
        let c = s.location_config(LocationProvider::Gcp);
        assert_eq!(
            c.get("storeEndpoint").map(String::as_str),
            Some("http://127.0.0.1:1/storage/v1/")
        );
        assert!(s.location_config(LocationProvider::Aws).is_empty());
    }

    #[tokio::test]
    async fn the_credentials_are_a_service_account_whose_key_is_redacted() {
        let r = Redactor::new();
        let s = GcsStore::new(
            GcsTarget {
                endpoint: "http://127.0.0.1:1".into(),
                project: "p1".into(),
                emulator: true,
            },
            &r,
        )
        .await
        .unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(s.velero_credentials(LocationProvider::Gcp).expose_str()).unwrap();
        assert_eq!(doc["type"], "service_account");
        assert_eq!(doc["client_email"], "velero@p1.iam.gserviceaccount.com");
        let pem = doc["private_key"].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let line = format!("key: {pem}");
        assert!(
            !r.redact(&line).contains("BEGIN PRIVATE KEY-----\n"),
            "{}",
            r.redact(&line)
        );
    }

    #[tokio::test]
    async fn real_gcs_is_refused_with_the_reason() {
        let e = GcsStore::new(
            GcsTarget {
                endpoint: "https://storage.googleapis.com".into(),
                project: "p".into(),
                emulator: false,
            },
            &Redactor::new(),
        )
        .await
        .err()
        .unwrap();
        assert!(e.to_string().contains("not implemented yet"), "{e}");
    }
}
