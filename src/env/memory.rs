//! An in-memory environment: small fakes of the provider traits for unit tests
//! of the runner and steps. It models what the drills depend on (key state
//! gating writes and reads, SSE-C headers, namespaces that disappear), nothing
//! more. Integration tests use the real providers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail};
use async_trait::async_trait;
use serde_json::Value as Json;

use super::*;
use crate::fixture::Manifest;
use crate::scenario::Cell;

#[derive(Debug, Clone)]
struct Key {
    arn: String,
    state: KeyState,
}

#[derive(Debug, Clone)]
struct Object {
    data: Vec<u8>,
    enc: ObjectEncryption,
    /// ARN of the KMS key that encrypted it.
    kms_arn: Option<String>,
}

/// Everything the fakes share; tests read it to check what happened.
#[derive(Debug, Default)]
pub struct World {
    keys: BTreeMap<String, Key>,
    aliases: BTreeMap<String, String>,
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    objects: BTreeMap<ObjectRef, Json>,
    namespaces: Vec<String>,
    locations: Vec<ResolvedLocation>,
    pub version: String,
    /// Calls, in order, for tests to assert on ("stop", "velero.teardown", ...).
    pub calls: Vec<String>,
}

/// Knobs for tests.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Backups never finish (to test timeouts and interrupts).
    pub hang_backups: bool,
    /// Starting the environment fails.
    pub fail_start: bool,
}

#[derive(Clone, Default)]
pub struct MemoryFactory {
    pub world: Arc<Mutex<World>>,
    pub behaviour: Behaviour,
}

impl MemoryFactory {
    pub fn new(behaviour: Behaviour) -> MemoryFactory {
        MemoryFactory { world: Arc::default(), behaviour }
    }

    pub fn calls(&self) -> Vec<String> {
        self.world.lock().unwrap_or_else(|e| e.into_inner()).calls.clone()
    }
}

#[async_trait]
impl EnvironmentFactory for MemoryFactory {
    async fn start(&self, _cell: &Cell, _dirs: &CellDirs, log: &StepLog) -> Result<Environment> {
        self.world.lock().unwrap_or_else(|e| e.into_inner()).calls.push("start".into());
        if self.behaviour.fail_start {
            bail!("the in-memory environment was told to fail");
        }
        log.line("in-memory environment up");
        let m = Arc::new(Memory { world: self.world.clone(), behaviour: self.behaviour.clone() });
        Ok(Environment { cluster: m.clone(), store: m.clone(), keys: m.clone(), velero: m.clone(), stop: m })
    }
}

pub struct Memory {
    world: Arc<Mutex<World>>,
    behaviour: Behaviour,
}

impl Memory {
    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn kms_error(state: &KeyState, arn: &str) -> anyhow::Error {
    match state {
        KeyState::Disabled => anyhow!("KMS.DisabledException: {arn} is disabled."),
        KeyState::PendingDeletion => anyhow!("KMS.KMSInvalidStateException: {arn} is pending deletion."),
        other => anyhow!("KMS.KMSInvalidStateException: {arn} is {other:?}"),
    }
}

impl World {
    fn resolve(&self, reference: &str) -> Option<String> {
        if let Some(arn) = self.aliases.get(reference) {
            return Some(arn.clone());
        }
        self.keys.keys().find(|arn| *arn == reference || arn.ends_with(&format!("/{reference}"))).cloned()
    }

    fn usable(&self, arn: &str) -> Result<()> {
        let key = self.keys.get(arn).ok_or_else(|| anyhow!("KMS.NotFoundException: {arn}"))?;
        if key.state != KeyState::Enabled {
            return Err(kms_error(&key.state, arn));
        }
        Ok(())
    }

    /// Write an object the way the location's config says.
    fn put(&mut self, loc: &ResolvedLocation, key: String, data: Vec<u8>) -> Result<()> {
        let mut enc = ObjectEncryption::default();
        let mut kms_arn = None;
        if let Some(k) = loc.config.get("kmsKeyId") {
            let arn = self.resolve(k).ok_or_else(|| anyhow!("KMS.NotFoundException: {k}"))?;
            self.usable(&arn)?;
            enc.server_side_encryption = Some("aws:kms".into());
            enc.kms_key_id = Some(arn.clone());
            kms_arn = Some(arn);
        } else if let Some(file) = loc.config.get("customerKeyEncryptionFile") {
            let bytes = std::fs::read(file)?;
            enc.sse_customer_algorithm = Some("AES256".into());
            enc.sse_customer_key_md5 = Some(crate::assert::encryption::customer_key_md5(&bytes));
        }
        let bucket = self.buckets.get_mut(&loc.bucket).ok_or_else(|| anyhow!("NoSuchBucket: {}", loc.bucket))?;
        bucket.insert(key, Object { data, enc, kms_arn });
        Ok(())
    }

    fn get(&self, bucket: &str, key: &str, customer_key: Option<&[u8]>) -> Result<&Object> {
        let obj = self.buckets.get(bucket).and_then(|b| b.get(key)).ok_or_else(|| anyhow!("NoSuchKey: {key}"))?;
        if let Some(md5) = &obj.enc.sse_customer_key_md5 {
            match customer_key {
                None => bail!("400 Bad Request: the object was stored using a form of SSE-C"),
                Some(k) if &crate::assert::encryption::customer_key_md5(k) != md5 => bail!("403 Forbidden: wrong SSE-C key"),
                Some(_) => {}
            }
        }
        Ok(obj)
    }
}

#[async_trait]
impl Cluster for Memory {
    fn info(&self) -> ClusterInfo {
        ClusterInfo { kind: "memory".into(), server: "memory://".into(), kubeconfig: None, version: None }
    }

    async fn apply(&self, namespace: &str, manifests: &[Manifest], _log: &StepLog) -> Result<Vec<Json>> {
        let mut w = self.w();
        if !w.namespaces.iter().any(|n| n == namespace) {
            w.namespaces.push(namespace.to_string());
        }
        let mut out = Vec::new();
        for (i, m) in manifests.iter().enumerate() {
            let mut obj = m.object.clone();
            if obj["kind"] != "CustomResourceDefinition" {
                obj["metadata"]["namespace"] = Json::String(namespace.to_string());
            }
            obj["metadata"]["uid"] = Json::String(format!("uid-{i}"));
            obj["metadata"]["resourceVersion"] = Json::String("1".into());
            w.objects.insert(ObjectRef::of(&obj), obj.clone());
            out.push(obj);
        }
        Ok(out)
    }

    async fn get(&self, refs: &[ObjectRef]) -> Result<Vec<Option<Json>>> {
        let w = self.w();
        Ok(refs.iter().map(|r| w.objects.get(r).cloned()).collect())
    }

    async fn install_crds(&self, crds: &[Manifest], _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        for c in crds {
            w.objects.insert(ObjectRef::of(&c.object), c.object.clone());
        }
        w.calls.push("install_crds".into());
        Ok(())
    }

    async fn delete_namespace(&self, namespace: &str, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.namespaces.retain(|n| n != namespace);
        w.objects.retain(|r, _| r.namespace.as_deref() != Some(namespace));
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Memory {
    async fn create_bucket(&self, bucket: &str, _default_key: Option<&KeyInfo>, _log: &StepLog) -> Result<()> {
        self.w().buckets.entry(bucket.to_string()).or_default();
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let w = self.w();
        Ok(w.buckets.get(bucket).map(|b| b.keys().filter(|k| k.starts_with(prefix)).cloned().collect()).unwrap_or_default())
    }

    async fn head(&self, bucket: &str, key: &str, customer_key: Option<&[u8]>) -> Result<ObjectEncryption> {
        Ok(self.w().get(bucket, key, customer_key)?.enc.clone())
    }

    async fn read(&self, bucket: &str, key: &str, customer_key: Option<&[u8]>) -> Result<u64> {
        let w = self.w();
        let obj = w.get(bucket, key, customer_key)?;
        if let Some(arn) = &obj.kms_arn {
            w.usable(arn)?;
        }
        Ok(obj.data.len() as u64)
    }

    fn location_config(&self, _provider: LocationProvider) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn velero_credentials(&self) -> String {
        String::new()
    }

    async fn cleanup(&self, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.buckets.clear();
        w.calls.push("store.cleanup".into());
        Ok(())
    }
}

#[async_trait]
impl KeyManager for Memory {
    async fn create(&self, name: &str, spec: &KeySpec, _log: &StepLog) -> Result<KeyInfo> {
        let mut w = self.w();
        let id = format!("{:08}-key-{name}", w.keys.len() + 1);
        let arn = format!("arn:aws:kms:us-east-1:000000000000:key/{id}");
        w.keys.insert(arn.clone(), Key { arn: arn.clone(), state: KeyState::Enabled });
        if let Some(a) = &spec.alias {
            w.aliases.insert(a.clone(), arn.clone());
        }
        Ok(KeyInfo { name: name.into(), provider: spec.provider, id, arn, alias: spec.alias.clone(), version: None, file: None, customer_key: None })
    }

    async fn disable(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        self.set_state(&key.arn, KeyState::Disabled)
    }

    async fn enable(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        let k = w.keys.get_mut(&key.arn).ok_or_else(|| anyhow!("KMS.NotFoundException: {}", key.arn))?;
        if k.state == KeyState::PendingDeletion {
            bail!("KMS.KMSInvalidStateException: {} is pending deletion", k.arn);
        }
        k.state = KeyState::Enabled;
        Ok(())
    }

    async fn rotate(&self, key: &KeyInfo, mode: RotateMode, log: &StepLog) -> Result<KeyInfo> {
        match mode {
            RotateMode::OnDemand => Ok(key.clone()),
            RotateMode::NewKey => {
                let spec = KeySpec { provider: key.provider, alias: key.alias.clone(), name: None, vault: None, existing: false };
                self.create(&key.name, &spec, log).await
            }
        }
    }

    async fn schedule_deletion(&self, key: &KeyInfo, _days: u32, _log: &StepLog) -> Result<()> {
        self.set_state(&key.arn, KeyState::PendingDeletion)
    }

    async fn cancel_deletion(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        self.set_state(&key.arn, KeyState::Disabled)
    }

    async fn state(&self, key: &KeyInfo) -> Result<KeyState> {
        self.w().keys.get(&key.arn).map(|k| k.state.clone()).ok_or_else(|| anyhow!("KMS.NotFoundException: {}", key.arn))
    }

    async fn resolve(&self, reference: &str) -> Result<String> {
        self.w().resolve(reference).ok_or_else(|| anyhow!("KMS.NotFoundException: {reference}"))
    }

    async fn cleanup(&self, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.keys.clear();
        w.calls.push("keys.cleanup".into());
        Ok(())
    }
}

impl Memory {
    fn set_state(&self, arn: &str, state: KeyState) -> Result<()> {
        let mut w = self.w();
        let k = w.keys.get_mut(arn).ok_or_else(|| anyhow!("KMS.NotFoundException: {arn}"))?;
        k.state = state;
        Ok(())
    }

    fn location(&self, name: &str) -> Result<ResolvedLocation> {
        self.w().locations.iter().find(|l| l.name == name).cloned().ok_or_else(|| anyhow!("no location {name}"))
    }
}

fn prefix(loc: &ResolvedLocation) -> String {
    loc.prefix.as_ref().map(|p| format!("{p}/")).unwrap_or_default()
}

#[async_trait]
impl Velero for Memory {
    async fn install(&self, install: &VeleroInstall, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.version = install.version.clone();
        w.locations = install.locations.clone();
        w.calls.push("velero.install".into());
        Ok(())
    }

    async fn backup(&self, req: &BackupRequest, _log: &StepLog) -> Result<Outcome> {
        if self.behaviour.hang_backups {
            std::future::pending::<()>().await;
        }
        let loc = self.location(&req.location)?;
        let mut w = self.w();
        let objects: Vec<Json> =
            w.objects.iter().filter(|(r, _)| r.namespace.as_ref().is_some_and(|n| req.namespaces.contains(n))).map(|(_, o)| o.clone()).collect();
        let base = format!("{}backups/{}/", prefix(&loc), req.name);
        let tarball = serde_json::to_vec(&objects)?;
        let mut outcome = Outcome { phase: "Completed".into(), duration: Duration::from_millis(5), ..Default::default() };
        for (name, data) in [(format!("{}.tar.gz", req.name), tarball), ("velero-backup.json".to_string(), b"{}".to_vec())] {
            if let Err(e) = w.put(&loc, format!("{base}{name}"), data) {
                outcome.phase = "Failed".into();
                outcome.errors += 1;
                outcome.logs.push_str(&format!("level=error msg=\"Error uploading backup\" backup=velero/{} error=\"{e}\"\n", req.name));
                break;
            }
        }
        Ok(outcome)
    }

    async fn restore(&self, req: &RestoreRequest, _log: &StepLog) -> Result<Outcome> {
        let default = self.w().locations.iter().find(|l| l.default).cloned().ok_or_else(|| anyhow!("no default location"))?;
        let mut w = self.w();
        let key = format!("{}backups/{}/{}.tar.gz", prefix(&default), req.backup, req.backup);
        let read = w.get(&default.bucket, &key, None).and_then(|o| {
            if let Some(arn) = &o.kms_arn {
                w.usable(arn)?;
            }
            Ok(o.data.clone())
        });
        let mut outcome = Outcome { phase: "Completed".into(), duration: Duration::from_millis(5), ..Default::default() };
        match read {
            Ok(data) => {
                let objects: Vec<Json> = serde_json::from_slice(&data)?;
                for o in objects {
                    if let Some(ns) = o["metadata"]["namespace"].as_str()
                        && !w.namespaces.iter().any(|n| n == ns)
                    {
                        w.namespaces.push(ns.to_string());
                    }
                    let mut o = o;
                    o["metadata"]["uid"] = Json::String("restored".into());
                    w.objects.insert(ObjectRef::of(&o), o);
                }
            }
            Err(e) => {
                outcome.phase = "Failed".into();
                outcome.failure_reason = Some(format!("error downloading backup: {e}"));
            }
        }
        Ok(outcome)
    }

    async fn upgrade(&self, version: &str, _log: &StepLog) -> Result<()> {
        self.w().version = version.to_string();
        Ok(())
    }

    fn version(&self) -> String {
        self.w().version.clone()
    }

    async fn teardown(&self, _log: &StepLog) -> Result<()> {
        self.w().calls.push("velero.teardown".into());
        Ok(())
    }
}

#[async_trait]
impl Stop for Memory {
    async fn stop(&self, _log: &StepLog) -> Result<()> {
        self.w().calls.push("stop".into());
        Ok(())
    }
}
