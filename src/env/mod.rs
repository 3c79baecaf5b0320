//! Environment providers: the cluster, the object store, the key manager and
//! Velero, each behind a small trait. Steps reach the world only through these
//! traits; each cloud API is touched only inside its provider module.

#[cfg(feature = "providers")]
pub mod aws;
#[cfg(feature = "providers")]
pub mod azure;
#[cfg(feature = "providers")]
pub mod gcp;
#[cfg(feature = "providers")]
pub mod kind;
#[cfg(feature = "providers")]
pub mod kube;
pub mod ledger;
#[cfg(feature = "providers")]
pub mod local;
pub mod memory;
pub mod multi;
pub mod pod_volumes;
pub mod process;
pub mod providers;
pub mod provision;
#[cfg(feature = "providers")]
pub mod remote;
#[cfg(feature = "providers")]
pub mod velero;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value as Json;

use crate::fixture::Manifest;
use crate::log::{Secret, StepLog};
use crate::scenario::{Cell, KeyProvider, KeySpec, LocationProvider, RotateMode};

pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// Write a file only its owner can read (keys, credentials, certificates' private keys).
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Random bytes from the operating system.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(buf)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache folder of the local test bed's builds: `$VDRILL_CACHE`, else `~/.cache/vdrill`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VDRILL_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("vdrill")
}

/// A key as the key manager holds it. The only secret material is `customer_key`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// The scenario's name for the key.
    pub name: String,
    pub provider: KeyProvider,
    /// Provider id (KMS key id, Key Vault key id URL).
    pub id: String,
    /// Full ARN for AWS keys (same as `id` elsewhere).
    pub arn: String,
    /// The alias (AWS) or key name (Azure) the scenario addresses it by.
    pub alias: Option<String>,
    /// Key Vault key version, when the provider has versions.
    pub version: Option<String>,
    /// For customer keys: the file holding the 32 key bytes (mode 0600).
    pub file: Option<PathBuf>,
    #[serde(skip)]
    pub customer_key: Option<Secret>,
}

impl KeyInfo {
    /// The value of `${keys.<name>.<attr>}`.
    pub fn attribute(&self, attr: &str) -> Option<String> {
        match attr {
            "alias" | "name" => self.alias.clone(),
            "arn" => Some(self.arn.clone()),
            "id" => Some(self.id.clone()),
            "version" => self.version.clone(),
            "file" => self.file.as_ref().map(|p| p.display().to_string()),
            _ => None,
        }
    }
}

/// The state of a managed key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    Other(String),
}

/// Key managers, object stores and clusters do what they are told and nothing
/// more: the steps decide what may be created and deleted (only what the run
/// created; see `steps::setup`), so the same rules hold for every provider.
#[async_trait]
pub trait KeyManager: Send + Sync {
    /// Create the key `name` of the scenario (with its alias, which must not exist
    /// yet), or, with `existing`, look it up.
    async fn create(&self, name: &str, spec: &KeySpec, log: &StepLog) -> Result<KeyInfo>;
    /// Whether an id, alias or ARN names a key.
    async fn exists(&self, reference: &str) -> Result<bool>;
    async fn disable(&self, key: &KeyInfo, log: &StepLog) -> Result<()>;
    async fn enable(&self, key: &KeyInfo, log: &StepLog) -> Result<()>;
    /// Rotate; `NewKey` creates a new key, points the alias at it and returns it.
    async fn rotate(&self, key: &KeyInfo, mode: RotateMode, log: &StepLog) -> Result<KeyInfo>;
    async fn schedule_deletion(&self, key: &KeyInfo, days: u32, log: &StepLog) -> Result<()>;
    async fn cancel_deletion(&self, key: &KeyInfo, log: &StepLog) -> Result<()>;
    async fn state(&self, key: &KeyInfo) -> Result<KeyState>;
    /// The canonical id (ARN) an id, alias or ARN refers to.
    async fn resolve(&self, reference: &str) -> Result<String>;
    /// Whether this provider reports object key ids faithfully (LocalStack does not for aliases).
    fn limitations(&self) -> Vec<Limitation> {
        Vec::new()
    }
    /// Remove a key the run created (AWS: schedule its deletion, the shortest wait).
    async fn delete(&self, key: &KeyInfo, log: &StepLog) -> Result<()>;
    /// Remove an alias the run created.
    async fn delete_alias(&self, alias: &str, log: &StepLog) -> Result<()>;
}

/// An operation this environment cannot perform at all (an emulator without the
/// service behind it, e.g. Cloud KMS next to fake-gcs-server): the step that asked
/// for it is reported skipped with this reason, never passed or failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotHere(pub String);

/// A way an emulator diverges from the real service; assertions that depend on it are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limitation {
    /// HeadObject reports a made-up key ARN for objects written with an alias.
    AliasKeyIdNotReported,
    /// Bucket default encryption and copies ignore key state.
    DefaultEncryptionIgnoresKeyState,
    /// Objects report no Cloud KMS key (`kmsKeyName`), whatever the upload asked for.
    KmsKeyNameNotRecorded,
}

impl Limitation {
    /// Why the assertions that depend on it are skipped.
    pub fn reason(self) -> &'static str {
        match self {
            Limitation::AliasKeyIdNotReported => {
                "this store reports a made-up key id for objects written through an alias (a LocalStack divergence from AWS)"
            }
            Limitation::DefaultEncryptionIgnoresKeyState => {
                "this store's bucket default encryption ignores the key's state (a LocalStack divergence from AWS)"
            }
            Limitation::KmsKeyNameNotRecorded => {
                "fake-gcs-server keeps no record of an object's Cloud KMS key: it ignores the `kmsKeyName` an upload asks for and reports no `kmsKeyName` for any object (and there is no Cloud KMS emulator); checked only against real GCP"
            }
        }
    }
}

/// Encryption metadata of one stored object, as HeadObject reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectEncryption {
    /// `AES256`, `aws:kms`, `aws:kms:dsse`, or None.
    pub server_side_encryption: Option<String>,
    pub kms_key_id: Option<String>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key_md5: Option<String>,
    /// Azure: the blob's encryption scope (`x-ms-encryption-scope`).
    pub encryption_scope: Option<String>,
    /// Azure: whether the service reports the blob encrypted at rest (`x-ms-server-encrypted`).
    pub server_encrypted: Option<bool>,
    /// Azure: SHA-256 (base64) of the customer-provided key the blob was written
    /// with (`x-ms-encryption-key-sha256`); GCS: `customerEncryption.keySha256`.
    pub encryption_key_sha256: Option<String>,
    /// GCS: the Cloud KMS key (resource name, with version) the object is encrypted with.
    pub kms_key_name: Option<String>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Whether the bucket (container) exists, whoever owns it.
    async fn bucket_exists(&self, bucket: &str) -> Result<bool>;
    /// Create the bucket (container), with default KMS encryption if a key is given.
    async fn create_bucket(
        &self,
        bucket: &str,
        default_key: Option<&KeyInfo>,
        log: &StepLog,
    ) -> Result<()>;
    /// Every object key under `prefix`.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>>;
    /// HeadObject; `customer_key` is sent as SSE-C headers when given.
    async fn head(
        &self,
        bucket: &str,
        key: &str,
        customer_key: Option<&Secret>,
    ) -> Result<ObjectEncryption>;
    /// GetObject, reading the whole body; returns its length. Fails as the store fails
    /// (e.g. with the KMS error when the object's key is disabled).
    async fn read(&self, bucket: &str, key: &str, customer_key: Option<&Secret>) -> Result<u64>;
    /// GetObject, returning the body (to search it, e.g. for a canary string).
    async fn fetch(
        &self,
        bucket: &str,
        key: &str,
        _customer_key: Option<&Secret>,
    ) -> Result<Vec<u8>> {
        anyhow::bail!("this store cannot return s3://{bucket}/{key}'s bytes")
    }
    /// Config entries Velero's plugin needs to reach this store (e.g. `s3Url`).
    fn location_config(&self, provider: LocationProvider) -> BTreeMap<String, String>;
    /// The credentials file Velero's plugin for `provider` reads.
    fn velero_credentials(&self, provider: LocationProvider) -> Secret;
    /// Route `bucket` to the store of `provider` (stores of several clouds in one
    /// environment, see `multi`); called before the bucket is used. One store: nothing to do.
    fn route(&self, _bucket: &str, _provider: LocationProvider) -> Result<()> {
        Ok(())
    }
    /// Where this store diverges from the real service.
    fn limitations(&self) -> Vec<Limitation> {
        Vec::new()
    }
    /// Environment variables the Velero server process needs for this store.
    fn velero_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Empty and remove a bucket the run created.
    async fn delete_bucket(&self, bucket: &str, log: &StepLog) -> Result<()>;
    /// How the storage account encrypts at rest, where that is a property of the
    /// account (Azure: a customer-managed key in Key Vault) rather than of each
    /// object. `None` where objects carry their own key (S3).
    async fn account_encryption(&self) -> Result<Option<AccountEncryption>> {
        Ok(None)
    }
}

/// A storage account's encryption at rest, as the account reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AccountEncryption {
    /// The store cannot say (an emulator that ignores the setting): why.
    Unknowable(String),
    /// Keys the platform manages (`Microsoft.Storage`).
    PlatformManaged,
    /// A customer-managed key in Key Vault (`Microsoft.Keyvault`). No version:
    /// the account follows the key's current version.
    KeyVault {
        vault_uri: String,
        key_name: String,
        key_version: Option<String>,
    },
}

/// A Kubernetes object reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl ObjectRef {
    pub fn of(obj: &Json) -> ObjectRef {
        ObjectRef {
            api_version: obj["apiVersion"].as_str().unwrap_or_default().to_string(),
            kind: obj["kind"].as_str().unwrap_or_default().to_string(),
            namespace: obj["metadata"]["namespace"].as_str().map(str::to_string),
            name: obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub kind: String,
    pub server: String,
    pub kubeconfig: Option<PathBuf>,
    pub version: Option<String>,
}

#[async_trait]
pub trait Cluster: Send + Sync {
    fn info(&self) -> ClusterInfo;
    /// Create the namespace if needed and server-side apply the manifests into it.
    /// Returns the objects as the API server stored them.
    async fn apply(
        &self,
        namespace: &str,
        manifests: &[Manifest],
        log: &StepLog,
    ) -> Result<Vec<Json>>;
    /// The live objects (None where absent).
    async fn get(&self, refs: &[ObjectRef]) -> Result<Vec<Option<Json>>>;
    /// Delete a namespace and wait until it is gone.
    async fn delete_namespace(&self, namespace: &str, log: &StepLog) -> Result<()>;
    async fn namespace_exists(&self, namespace: &str) -> Result<bool>;
    /// Whether a CustomResourceDefinition (e.g. `backups.velero.io`) exists.
    async fn crd_exists(&self, name: &str) -> Result<bool>;
    /// Delete a CustomResourceDefinition the run created.
    async fn delete_crd(&self, name: &str, log: &StepLog) -> Result<()>;
    /// Apply cluster-wide CustomResourceDefinitions and wait until they are served.
    async fn install_crds(&self, crds: &[Manifest], log: &StepLog) -> Result<()>;
    /// On a cluster with a kubelet: wait until every pod of the namespace is Ready, then
    /// read the checksums each pod printed of its volumes' files (the lines between
    /// `vdrill-checksums-begin` and `vdrill-checksums-end` of its log, in `sha256sum`
    /// form), by pod. A cluster without a kubelet (the local bed) runs no pods: empty.
    async fn volume_checksums(
        &self,
        _namespace: &str,
        _timeout: std::time::Duration,
        _log: &StepLog,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        Ok(BTreeMap::new())
    }
    /// The values pods of the namespace printed as `<key>: <value>` lines in their logs
    /// (e.g. `vdrill-canary: …`). Empty where the cluster runs no pods.
    async fn pod_log_values(&self, _namespace: &str, _key: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// What Velero is asked to install, with every reference resolved.
#[derive(Debug, Clone)]
pub struct VeleroInstall {
    pub version: String,
    pub namespace: String,
    pub plugins: Vec<String>,
    pub features: Vec<String>,
    pub locations: Vec<ResolvedLocation>,
    pub repository_password: Secret,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedLocation {
    pub name: String,
    pub provider: LocationProvider,
    pub bucket: String,
    pub prefix: Option<String>,
    pub default: bool,
    pub config: BTreeMap<String, String>,
}

/// An `upgrade-velero` step, with every reference resolved.
#[derive(Debug, Clone, Default)]
pub struct UpgradeRequest {
    pub version: String,
    /// Locations whose config the upgraded install changes (a rehearsed mistake).
    pub locations: BTreeMap<String, BTreeMap<String, String>>,
    /// A repository password the upgraded install replaces the old one with (ditto).
    pub repository_password: Option<Secret>,
    /// Put back the repository password of the install (after a rehearsed change).
    pub original_password: bool,
}

#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub name: String,
    pub namespaces: Vec<String>,
    pub location: String,
    pub file_system_backup: bool,
}

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub name: String,
    pub backup: String,
}

/// How a Velero backup or restore ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub phase: String,
    pub errors: u64,
    pub warnings: u64,
    pub failure_reason: Option<String>,
    pub validation_errors: Vec<String>,
    /// The Velero server's log lines written while the operation ran.
    pub logs: String,
    pub duration: Duration,
}

impl Outcome {
    /// Text an `expect.error` pattern is matched against.
    pub fn evidence(&self) -> String {
        let mut s = String::new();
        if let Some(r) = &self.failure_reason {
            s.push_str(r);
            s.push('\n');
        }
        for e in &self.validation_errors {
            s.push_str(e);
            s.push('\n');
        }
        s.push_str(&self.logs);
        s
    }
}

#[async_trait]
pub trait Velero: Send + Sync {
    async fn install(&self, install: &VeleroInstall, log: &StepLog) -> Result<()>;
    /// Create a Backup and follow it to a terminal phase.
    async fn backup(&self, req: &BackupRequest, log: &StepLog) -> Result<Outcome>;
    /// Create a Restore and follow it to a terminal phase.
    async fn restore(&self, req: &RestoreRequest, log: &StepLog) -> Result<Outcome>;
    /// Upgrade the running Velero to another version as Velero's upgrade guide does
    /// (CRDs first, then the server; same locations and repository password), then
    /// check that the upgraded Velero kept them, failing with every difference.
    async fn upgrade(&self, req: &UpgradeRequest, log: &StepLog) -> Result<()>;
    /// The version currently running.
    fn version(&self) -> String;
    /// Its plugins (`aws`, `azure`) and their versions.
    fn plugins(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Stop Velero and remove what install created.
    async fn teardown(&self, log: &StepLog) -> Result<()>;
}

/// One cell's environment.
#[derive(Clone)]
pub struct Environment {
    pub cluster: Arc<dyn Cluster>,
    pub store: Arc<dyn ObjectStore>,
    pub keys: Arc<dyn KeyManager>,
    pub velero: Arc<dyn Velero>,
    /// Stops what `EnvironmentFactory::start` started (processes, temp dirs).
    pub stop: Arc<dyn Stop>,
    /// Reports a process of the environment that died unasked.
    pub watchdog: process::Watchdog,
    /// Everything in it is thrown away by `stop` (the local bed): keys, buckets and
    /// namespaces need not be deleted one by one first.
    pub disposable: bool,
}

#[async_trait]
pub trait Stop: Send + Sync {
    async fn stop(&self, log: &StepLog) -> Result<()>;
    /// Leave the environment running for the user (`--keep`); returns how to reach
    /// it and how to remove it.
    async fn hand_over(&self, log: &StepLog) -> Result<String>;
}

/// Where a cell's environment writes its artifacts.
#[derive(Debug, Clone)]
pub struct CellDirs {
    /// Per-cell artifacts (process logs go under `env/`).
    pub artifacts: PathBuf,
    /// Scratch space for data dirs, certificates and key files; removed on teardown.
    pub work: PathBuf,
}

/// Brings up the environment a cell asks for.
#[async_trait]
pub trait EnvironmentFactory: Send + Sync {
    /// Build or fetch what the cells need before any of them runs (outside every
    /// step and cell budget). Returns why each cell that cannot run cannot.
    async fn provision(
        &self,
        _cells: &[Cell],
        _progress: &provision::Progress,
        _cancel: &tokio_util::sync::CancellationToken,
    ) -> provision::Report {
        provision::Report::default()
    }
    async fn start(&self, cell: &Cell, dirs: &CellDirs, log: &StepLog) -> Result<Environment>;
}
