//! The scenario format, `vdrill.dev/v1alpha1`, as Rust types.
//!
//! These types are deserialized section by section (see `loader`) and also
//! produce the JSON Schema that `vdrill schema` prints.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub const API_VERSION: &str = "vdrill.dev/v1alpha1";
pub const KIND: &str = "Scenario";

/// A disaster-recovery drill: an environment, keys, a Velero install,
/// workloads and the ordered steps to run against them.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "vdrill scenario", extend("additionalProperties" = false))]
pub struct Scenario {
    /// Always `vdrill.dev/v1alpha1`.
    #[schemars(extend("const" = "vdrill.dev/v1alpha1"))]
    pub api_version: String,
    /// Always `Scenario`.
    #[schemars(extend("const" = "Scenario"))]
    pub kind: String,
    pub metadata: Metadata,
    /// Dimensions to expand: every combination of values is one independent run (a cell).
    /// Reference a value as `${matrix.<name>}`. `exclude` and `include` adjust the
    /// combinations as in CI matrices.
    #[serde(default, skip_serializing_if = "Matrix::is_empty")]
    pub matrix: Matrix,
    pub environment: Environment,
    /// Named encryption keys the drill creates (or uses) and manipulates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, KeySpec>,
    pub velero: VeleroSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<Workload>,
    /// The drill, in order. The first failing step marks the rest skipped.
    pub steps: Vec<Step>,
    /// Steps that always run after `steps`, even after a failure or an interrupt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<Step>,
    /// Upper bound for one whole cell (default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

/// The matrix: dimensions with their values, then `exclude` (combinations to drop, each
/// a partial match) and `include` (combinations to add, each giving every dimension).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Matrix {
    /// `<dimension>: [values]`.
    #[serde(flatten)]
    pub dimensions: BTreeMap<String, Vec<String>>,
    /// Combinations to drop: every one that has all the given values (e.g. `{from: "1.18", to: "1.17"}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<BTreeMap<String, String>>,
    /// Combinations to add after `exclude`, each with a value for every dimension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<BTreeMap<String, String>>,
}

impl Matrix {
    pub fn is_empty(&self) -> bool {
        self.dimensions.is_empty() && self.include.is_empty()
    }
}

impl Scenario {
    /// The scenario key a location encrypts with: its `kmsKeyId`,
    /// `customerKeyEncryptionFile` or `kmsKeyName`, as a reference or as a
    /// key's alias or name substituted at plan time.
    pub fn location_key(&self, location: &LocationSpec) -> Option<String> {
        // Azure: the key is a property of the storage account, not of the location;
        // with one Key Vault key in the scenario, that is the one.
        if location.provider == LocationProvider::Azure {
            let mut vault_keys = self
                .keys
                .iter()
                .filter(|(_, k)| k.provider == KeyProvider::AzureKeyvault);
            return match (vault_keys.next(), vault_keys.next()) {
                (Some((name, _)), None) => Some(name.clone()),
                _ => None,
            };
        }
        ["kmsKeyId", "customerKeyEncryptionFile", "kmsKeyName"]
            .iter()
            .find_map(|field| {
                let value = location.config.get(*field)?;
                if let Some(r) = super::refs::find(value)
                    .ok()?
                    .first()
                    .filter(|r| r.parts[0] == "keys")
                {
                    return Some(r.parts[1].clone());
                }
                self.keys
                    .iter()
                    .find(|(_, k)| {
                        k.alias.as_deref() == Some(value.as_str())
                            || k.name.as_deref() == Some(value.as_str())
                    })
                    .map(|(name, _)| name.clone())
            })
    }

    /// What the drill does to resources it did not create (`existing: true` keys and
    /// buckets, a `cluster: existing`), one line each; empty when it uses none.
    pub fn touches_existing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.environment.cluster == ClusterKind::Existing {
            let mut which = Vec::new();
            if let Some(ctx) = &self.environment.context {
                which.push(format!("context `{ctx}`"));
            }
            if let Some(kc) = &self.environment.kubeconfig {
                which.push(format!("kubeconfig `{kc}`"));
            }
            let which = if which.is_empty() {
                "the current kubeconfig context".to_string()
            } else {
                which.join(" of ")
            };
            let ns = self.velero.namespace.as_deref().unwrap_or("velero");
            let mut line = format!(
                "cluster ({which}, existing): Velero is installed in namespace `{ns}`, which is deleted at teardown"
            );
            let steps = || self.steps.iter().chain(&self.finally);
            let mut deployed: Vec<&str> = Vec::new();
            let mut deleted: Vec<&str> = Vec::new();
            for step in steps() {
                match step {
                    Step::Deploy(d) => {
                        if let Some(w) = self.workloads.iter().find(|w| w.id() == d.workload)
                            && !deployed.contains(&w.namespace.as_str())
                        {
                            deployed.push(&w.namespace);
                        }
                    }
                    Step::DeleteNamespace(d) if !deleted.contains(&d.namespace.as_str()) => {
                        deleted.push(&d.namespace)
                    }
                    _ => {}
                }
            }
            let quoted = |v: &[&str]| {
                v.iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !deployed.is_empty() {
                line.push_str(&format!(
                    "; workloads are deployed into namespace(s) {}",
                    quoted(&deployed)
                ));
            }
            if !deleted.is_empty() {
                line.push_str(&format!(
                    "; namespace(s) {} are deleted with everything in them",
                    quoted(&deleted)
                ));
            }
            out.push(line);
        }
        for (name, key) in self.keys.iter().filter(|(_, k)| k.existing) {
            let mut actions: Vec<String> = Vec::new();
            for step in self.steps.iter().chain(&self.finally) {
                if step.key() != Some(name.as_str()) || matches!(step, Step::AssertEncryption(_)) {
                    continue;
                }
                let action = match step {
                    Step::RotateKey(r) if r.mode == RotateMode::OnDemand => {
                        "rotate-key (on-demand: new key material, cannot be undone)".to_string()
                    }
                    Step::RotateKey(_) => "rotate-key (new key: repoints the alias)".to_string(),
                    other => other.kind().to_string(),
                };
                if !actions.contains(&action) {
                    actions.push(action);
                }
            }
            let address = key
                .alias
                .as_deref()
                .or(key.name.as_deref())
                .map(|a| format!("{a}, "))
                .unwrap_or_default();
            let what = if actions.is_empty() {
                "used, never changed".to_string()
            } else {
                actions.join(", ")
            };
            out.push(format!("key `{name}` ({address}existing): {what}"));
        }
        for loc in self.velero.locations.iter().filter(|l| l.existing) {
            let place = match &loc.prefix {
                Some(p) => format!("under prefix `{p}/`"),
                None => "at the top of the bucket (no `prefix`)".to_string(),
            };
            let line = format!(
                "bucket `{}` (existing): the drill writes its backups {place} and leaves them; it creates and deletes nothing",
                loc.bucket
            );
            if !out.contains(&line) {
                out.push(line);
            }
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Lower-case letters, digits and `-`; unique among the scenarios of a run.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form labels used by `vdrill run --tag` and `vdrill list`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterKind {
    /// kube-apiserver, etcd and kube-controller-manager as local processes (no Docker).
    Local,
    /// A kind cluster created for the run (needs Docker and a registry).
    Kind,
    /// An existing cluster from a kubeconfig.
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StorageKind {
    /// LocalStack S3 + KMS as a local process.
    Localstack,
    /// Azurite blob storage and the lowkey-vault Key Vault emulator as local processes.
    Azurite,
    /// Real AWS S3 + KMS (credentials from the usual AWS chain).
    Aws,
    /// Real Azure Blob Storage + Key Vault.
    Azure,
    /// fake-gcs-server (Google Cloud Storage emulator) as a local process; no Cloud KMS.
    FakeGcs,
    /// Real Google Cloud Storage + Cloud KMS.
    Gcp,
}

impl StorageKind {
    pub fn is_aws(self) -> bool {
        matches!(self, StorageKind::Localstack | StorageKind::Aws)
    }
    pub fn is_azure(self) -> bool {
        matches!(self, StorageKind::Azurite | StorageKind::Azure)
    }
    pub fn is_gcp(self) -> bool {
        matches!(self, StorageKind::FakeGcs | StorageKind::Gcp)
    }
    pub fn is_local(self) -> bool {
        matches!(
            self,
            StorageKind::Localstack | StorageKind::Azurite | StorageKind::FakeGcs
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            StorageKind::Localstack => "localstack",
            StorageKind::Azurite => "azurite",
            StorageKind::Aws => "aws",
            StorageKind::Azure => "azure",
            StorageKind::FakeGcs => "fake-gcs",
            StorageKind::Gcp => "gcp",
        }
    }
}

/// `storage: localstack`, or one storage per cloud for a Velero with locations in
/// several clouds: `storage: [localstack, azurite, fake-gcs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage(pub Vec<StorageKind>);

impl Storage {
    pub fn one(kind: StorageKind) -> Storage {
        Storage(vec![kind])
    }
    pub fn kinds(&self) -> &[StorageKind] {
        &self.0
    }
    /// Whether it has AWS storage (`localstack` or `aws`).
    pub fn is_aws(&self) -> bool {
        self.0.iter().any(|k| k.is_aws())
    }
    pub fn is_azure(&self) -> bool {
        self.0.iter().any(|k| k.is_azure())
    }
    pub fn is_gcp(&self) -> bool {
        self.0.iter().any(|k| k.is_gcp())
    }
    /// Whether any of it is an emulator on this machine.
    pub fn is_local(&self) -> bool {
        self.0.iter().any(|k| k.is_local())
    }
    pub fn contains(&self, kind: StorageKind) -> bool {
        self.0.contains(&kind)
    }
    /// The storage that serves locations of `provider`.
    pub fn for_provider(&self, provider: LocationProvider) -> Option<StorageKind> {
        self.0.iter().copied().find(|k| match provider {
            LocationProvider::Aws => k.is_aws(),
            LocationProvider::Azure => k.is_azure(),
            LocationProvider::Gcp => k.is_gcp(),
        })
    }
    /// `localstack`, or `localstack+azurite+fake-gcs`.
    pub fn as_str(&self) -> String {
        self.0
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }
}

impl<'de> Deserialize<'de> for Storage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Storage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a storage (`localstack`, `azurite`, `fake-gcs`, `aws`, `azure`, `gcp`) or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Storage, E> {
                Ok(Storage::one(StorageKind::deserialize(
                    de::value::StrDeserializer::<E>::new(s),
                )?))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Storage, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = seq.next_element::<StorageKind>()? {
                    out.push(k);
                }
                Ok(Storage(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Storage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl JsonSchema for Storage {
    fn schema_name() -> Cow<'static, str> {
        "Storage".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let kind = generator.subschema_for::<StorageKind>();
        json_schema!({
            "description": "Object storage and key management: one, or one per cloud for locations in several clouds (`[localstack, azurite, fake-gcs]`).",
            "oneOf": [kind, {"type": "array", "items": kind, "minItems": 1, "uniqueItems": true}]
        })
    }
}

impl ClusterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Local => "local",
            ClusterKind::Kind => "kind",
            ClusterKind::Existing => "existing",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Environment {
    pub cluster: ClusterKind,
    pub storage: Storage,
    /// For `cluster: existing`: the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// For `cluster: existing`: the kubeconfig context (default: the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Cloud region (default `us-east-1` for AWS and LocalStack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProvider {
    /// A symmetric AWS KMS key (LocalStack or AWS), addressed by an alias.
    AwsKms,
    /// An RSA key in Azure Key Vault (or the lowkey-vault emulator).
    AzureKeyvault,
    /// A 32-byte SSE-C customer key that vdrill generates; reference its file as `${keys.<k>.file}`.
    CustomerKey,
    /// A Cloud KMS key, named by its resource path
    /// (`projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`), for GCS `kmsKeyName`.
    GcpKms,
}

impl KeyProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyProvider::AwsKms => "aws-kms",
            KeyProvider::AzureKeyvault => "azure-keyvault",
            KeyProvider::CustomerKey => "customer-key",
            KeyProvider::GcpKms => "gcp-kms",
        }
    }

    /// Attributes that `${keys.<k>.<attr>}` may reference, and whether each is known before the run.
    pub fn attributes(self) -> &'static [(&'static str, bool)] {
        match self {
            KeyProvider::AwsKms => &[("alias", true), ("arn", false), ("id", false)],
            KeyProvider::AzureKeyvault => &[
                ("name", true),
                ("id", false),
                ("version", false),
                ("vault", false),
            ],
            KeyProvider::CustomerKey => &[("file", false)],
            KeyProvider::GcpKms => &[("name", true)],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeySpec {
    pub provider: KeyProvider,
    /// For `aws-kms`: the alias, starting with `alias/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// For `azure-keyvault`: the key name. For `gcp-kms`: the key's resource path,
    /// `projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `azure-keyvault` on real Azure: the vault name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Use a key that already exists instead of creating one (real clouds only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VeleroSpec {
    /// Velero version under test: `1.18`, `1.18.3` or `${matrix.velero}`.
    pub version: String,
    /// Namespace Velero runs in (default `velero`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object-store plugins to install (default: those the locations need).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<String>,
    /// Velero feature flags (`--features`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// The Kopia repository password (secret `velero-repo-credentials`). Default: generated per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_password: Option<SecretSource>,
    /// Backup storage locations, with encryption configured exactly as the Velero plugin spells it.
    pub locations: Vec<LocationSpec>,
}

/// Where a secret comes from. Secrets are never written into scenario files.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretSource {
    /// Read the secret from this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_env: Option<String>,
    /// Generate a random secret for the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generate: bool,
    /// `upgrade-velero` only: the repository password Velero was installed with at the start
    /// of the run (gives the repository its own password back after a rehearsed change).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub original: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LocationProvider {
    Aws,
    Azure,
    Gcp,
}

impl LocationProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationProvider::Aws => "aws",
            LocationProvider::Azure => "azure",
            LocationProvider::Gcp => "gcp",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocationSpec {
    pub name: String,
    pub provider: LocationProvider,
    pub bucket: String,
    /// Use a bucket that already exists (real clouds only). vdrill then neither creates
    /// nor deletes it, nor any object in it that it did not write.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The default location for backups (default: the first location).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Bucket default encryption vdrill sets when it creates the bucket: a key name from `keys`.
    /// Kopia's repository objects are encrypted at rest only through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_default_key: Option<String>,
    /// The plugin's config, e.g. `kmsKeyId`, `serverSideEncryption`, `customerKeyEncryptionFile`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    /// The id steps use (default: the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A YAML file of Kubernetes manifests, relative to the scenario file.
    pub fixture: String,
    /// Namespace the fixture's namespaced objects are created in.
    pub namespace: String,
}

impl Workload {
    pub fn id(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.namespace)
    }
}

/// A duration written as `30s`, `5m`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match humantime::parse_duration(&s) {
            Ok(v) if !v.is_zero() => Ok(HumanDuration(v)),
            Ok(_) => Err(de::Error::custom("a duration must be longer than zero")),
            Err(_) => Err(de::Error::custom(format!(
                "`{s}` is not a duration; write it like `30s`, `5m` or `1h30m`"
            ))),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as `30s`, `5m` or `1h30m`.",
            "pattern": "^([0-9]+(ns|us|ms|s|m|h|d)\\s*)+$"
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// The terminal phase a Velero backup or restore is expected to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Completed,
    PartiallyFailed,
    Failed,
    FailedValidation,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Completed => "Completed",
            Phase::PartiallyFailed => "PartiallyFailed",
            Phase::Failed => "Failed",
            Phase::FailedValidation => "FailedValidation",
        }
    }
}

/// What a step is expected to do. Without `expect` a step must succeed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// For backup and restore: the terminal phase (default `Completed`, or `Failed` when `error` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// A regular expression that must match the failure: the failure reason, errors and
    /// Velero's logs for a backup or restore, the error message for other steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Expect {
    pub fn expects_failure(&self) -> bool {
        self.error.is_some() || self.phase.is_some_and(|p| p != Phase::Completed)
    }
}

/// A step body that may also be written as a plain string (its main field).
pub trait ShortForm: Sized {
    const SHORT: &'static str;
    fn from_short(value: String) -> Self;
}

/// Accepts `kind: value` as well as `kind: {field: value, ...}`.
#[derive(Debug, Clone)]
pub struct Short<T>(pub T);

impl<'de, T: ShortForm + Deserialize<'de>> Deserialize<'de> for Short<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: ShortForm + Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Short<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{} or a mapping", T::SHORT)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Short<T>, E> {
                Ok(Short(T::from_short(s.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Short<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(m)).map(Short)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<T: Serialize> Serialize for Short<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<T: JsonSchema + ShortForm> JsonSchema for Short<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("{}OrShort", T::schema_name()).into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let full = g.subschema_for::<T>();
        json_schema!({
            "anyOf": [ { "type": "string", "description": T::SHORT }, full ]
        })
    }
}

impl<T> std::ops::Deref for Short<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

macro_rules! short_form {
    ($ty:ident, $field:ident, $what:literal) => {
        impl ShortForm for $ty {
            const SHORT: &'static str = $what;
            #[allow(clippy::needless_update)] // some step bodies have no field besides the short one
            fn from_short(value: String) -> Self {
                $ty {
                    $field: value,
                    ..Default::default()
                }
            }
        }
    };
}

/// `deploy: <workload>`: apply a workload's fixture and record what was created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeployStep {
    pub workload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}
short_form!(DeployStep, workload, "the workload to deploy");

/// `backup: {name: ...}`: create a Velero Backup and follow it to a terminal phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupStep {
    /// Name of the Backup object (unique in the scenario).
    pub name: String,
    /// Workloads whose namespaces to include (default: all workloads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
    /// Backup storage location (default: the default location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Back up pod volumes with Kopia (file-system backup).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub file_system_backup: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}
short_form!(BackupStep, name, "the backup name");

/// `restore: {backup: ...}`: restore a backup taken earlier in the drill.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestoreStep {
    pub backup: String,
    /// Name of the Restore object (default: `<backup>-restore-<n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}
short_form!(RestoreStep, backup, "the backup to restore");

/// `delete-namespace: <namespace>`: the disaster. Waits until the namespace is gone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteNamespaceStep {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}
short_form!(DeleteNamespaceStep, namespace, "the namespace to delete");

/// How `rotate-key` rotates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RotateMode {
    /// The provider's own rotation: new key material, same key id.
    #[default]
    OnDemand,
    /// Create a new key and point the alias (or name) at it.
    NewKey,
}

/// `rotate-key: <key>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateKeyStep {
    pub key: String,
    #[serde(default)]
    pub mode: RotateMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}
short_form!(RotateKeyStep, key, "the key to rotate");

/// `disable-key`, `enable-key`, `cancel-key-deletion`: `<key>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyStep {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}
short_form!(KeyStep, key, "the key");

/// `schedule-key-deletion: {key, days}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleKeyDeletionStep {
    pub key: String,
    /// Waiting period in days (AWS accepts 7 to 30; default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}
short_form!(ScheduleKeyDeletionStep, key, "the key");

/// `upgrade-velero: <version>`: upgrade the running Velero to another version the way
/// Velero's upgrade guide does it: the new version's CRDs first, then the server (and
/// its Deployment), keeping every backup storage location and the repository password.
/// The step then checks that the upgraded Velero has the same locations and password,
/// and fails naming every difference.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradeVeleroStep {
    pub version: String,
    /// Rehearse an upgrade that changes locations: each named location gets this
    /// `config` instead of its own (a re-install or chart upgrade with other values
    /// does this). The step then fails naming the change, unless it `expect`s that.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: BTreeMap<String, UpgradeLocation>,
    /// Rehearse an upgrade that replaces the repository password (`velero-repo-credentials`):
    /// the step then fails naming the change, unless it `expect`s that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_password: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}
short_form!(UpgradeVeleroStep, version, "the Velero version");

/// A location as an `upgrade-velero` step changes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradeLocation {
    /// The plugin config the location has after the upgrade (replaces its whole `config`).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `wait: 30s`: pause (prefer steps that wait on a condition).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaitStep {
    pub duration: String,
}
short_form!(WaitStep, duration, "how long to wait, e.g. `10s`");

/// `assert-encryption: {backup, key}`: every object the backup wrote is encrypted with `key`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AssertEncryptionStep {
    pub backup: String,
    /// The key every object must be encrypted with (a name from `keys`).
    pub key: String,
    /// What the Kopia repository's objects (`kopia/`, written by file-system backups) must show:
    /// `under-key` (the default: like the backup's own objects), `not-under-key` (the audit must
    /// find every one of them written without the key, and names them), or `ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryAudit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

/// How `assert-encryption` treats the Kopia repository's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RepositoryAudit {
    /// Every `kopia/` object is under the expected key, like the backup's objects.
    #[default]
    UnderKey,
    /// No `kopia/` object is under the expected key (Velero does not hand the location's
    /// `kmsKeyId` to Kopia): the audit passes naming them, and fails naming any that is.
    NotUnderKey,
    /// The repository is not audited.
    Ignore,
}

/// `assert-restored: <workload>`: the restored objects equal the deployed ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AssertRestoredStep {
    pub workload: String,
    /// Extra field paths to ignore when comparing, e.g. `spec.clusterIP`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}
short_form!(AssertRestoredStep, workload, "the workload to compare");

/// One step of a drill: a single key naming its kind.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Deploy(Short<DeployStep>),
    Backup(Short<BackupStep>),
    Restore(Short<RestoreStep>),
    DeleteNamespace(Short<DeleteNamespaceStep>),
    RotateKey(Short<RotateKeyStep>),
    DisableKey(Short<KeyStep>),
    EnableKey(Short<KeyStep>),
    ScheduleKeyDeletion(Short<ScheduleKeyDeletionStep>),
    CancelKeyDeletion(Short<KeyStep>),
    UpgradeVelero(Short<UpgradeVeleroStep>),
    Wait(Short<WaitStep>),
    AssertEncryption(AssertEncryptionStep),
    AssertRestored(Short<AssertRestoredStep>),
}

pub const STEP_KINDS: &[&str] = &[
    "deploy",
    "backup",
    "restore",
    "delete-namespace",
    "rotate-key",
    "disable-key",
    "enable-key",
    "schedule-key-deletion",
    "cancel-key-deletion",
    "upgrade-velero",
    "wait",
    "assert-encryption",
    "assert-restored",
];

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Deploy(_) => "deploy",
            Step::Backup(_) => "backup",
            Step::Restore(_) => "restore",
            Step::DeleteNamespace(_) => "delete-namespace",
            Step::RotateKey(_) => "rotate-key",
            Step::DisableKey(_) => "disable-key",
            Step::EnableKey(_) => "enable-key",
            Step::ScheduleKeyDeletion(_) => "schedule-key-deletion",
            Step::CancelKeyDeletion(_) => "cancel-key-deletion",
            Step::UpgradeVelero(_) => "upgrade-velero",
            Step::Wait(_) => "wait",
            Step::AssertEncryption(_) => "assert-encryption",
            Step::AssertRestored(_) => "assert-restored",
        }
    }

    /// The step's main argument, for titles: `backup before`, `disable-key backup-key`.
    pub fn subject(&self) -> String {
        match self {
            Step::Deploy(s) => s.workload.clone(),
            Step::Backup(s) => s.name.clone(),
            Step::Restore(s) => s
                .name
                .clone()
                .unwrap_or_else(|| format!("from {}", s.backup)),
            Step::DeleteNamespace(s) => s.namespace.clone(),
            Step::RotateKey(s) => match s.mode {
                RotateMode::OnDemand => s.key.clone(),
                RotateMode::NewKey => format!("{} (new key)", s.key),
            },
            Step::DisableKey(s) | Step::EnableKey(s) | Step::CancelKeyDeletion(s) => s.key.clone(),
            Step::ScheduleKeyDeletion(s) => s.key.clone(),
            Step::UpgradeVelero(s) => s.version.clone(),
            Step::Wait(s) => s.duration.clone(),
            Step::AssertEncryption(s) => format!("{} with {}", s.backup, s.key),
            Step::AssertRestored(s) => s.workload.clone(),
        }
    }

    pub fn title(&self) -> String {
        format!("{} {}", self.kind(), self.subject())
    }

    pub fn timeout(&self) -> Option<Duration> {
        let t = match self {
            Step::Deploy(s) => s.timeout,
            Step::Backup(s) => s.timeout,
            Step::Restore(s) => s.timeout,
            Step::DeleteNamespace(s) => s.timeout,
            Step::RotateKey(s) => s.timeout,
            Step::DisableKey(s) | Step::EnableKey(s) | Step::CancelKeyDeletion(s) => s.timeout,
            Step::ScheduleKeyDeletion(s) => s.timeout,
            Step::UpgradeVelero(s) => s.timeout,
            Step::Wait(_) => None,
            Step::AssertEncryption(s) => s.timeout,
            Step::AssertRestored(s) => s.timeout,
        };
        t.map(|d| d.0)
    }

    pub fn expect(&self) -> Option<&Expect> {
        match self {
            Step::Deploy(s) => s.expect.as_ref(),
            Step::Backup(s) => s.expect.as_ref(),
            Step::Restore(s) => s.expect.as_ref(),
            Step::DeleteNamespace(s) => s.expect.as_ref(),
            Step::RotateKey(s) => s.expect.as_ref(),
            Step::DisableKey(s) | Step::EnableKey(s) | Step::CancelKeyDeletion(s) => {
                s.expect.as_ref()
            }
            Step::ScheduleKeyDeletion(s) => s.expect.as_ref(),
            Step::UpgradeVelero(s) => s.expect.as_ref(),
            Step::Wait(_) | Step::AssertEncryption(_) | Step::AssertRestored(_) => None,
        }
    }

    /// The key a key step acts on.
    pub fn key(&self) -> Option<&str> {
        match self {
            Step::RotateKey(s) => Some(&s.key),
            Step::DisableKey(s) | Step::EnableKey(s) | Step::CancelKeyDeletion(s) => Some(&s.key),
            Step::ScheduleKeyDeletion(s) => Some(&s.key),
            Step::AssertEncryption(s) => Some(&s.key),
            _ => None,
        }
    }
}
