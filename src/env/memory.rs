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

/// Everything the fakes share; tests read it to check what happened, and seed
/// it with resources that exist before a run (as on a real account).
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
    /// During backups the named environment process dies (reported to the
    /// watchdog as a real bed would), and the backup then hangs.
    pub die_during_backup: Option<String>,
    /// Backups run this shell command through the environment's supervisor and
    /// wait for it (to test that a timeout leaves no process behind).
    pub backup_runs: Option<String>,
    /// Report made-up key ids for objects written through an alias, as LocalStack
    /// does (assert-encryption then checks the binding by disabling the key).
    pub alias_key_id_not_reported: bool,
    /// Reads of an object whose key is disabled never return.
    pub hang_disabled_reads: bool,
}

#[derive(Clone, Default)]
pub struct MemoryFactory {
    pub world: Arc<Mutex<World>>,
    pub behaviour: Behaviour,
    /// Where the supervisor of `backup_runs` keeps its ledger record.
    pub beds: Option<std::path::PathBuf>,
}

impl MemoryFactory {
    pub fn new(behaviour: Behaviour) -> MemoryFactory {
        MemoryFactory {
            world: Arc::default(),
            behaviour,
            beds: None,
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.world
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .clone()
    }

    /// Read or seed the world.
    pub fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl EnvironmentFactory for MemoryFactory {
    async fn start(&self, cell: &Cell, dirs: &CellDirs, log: &StepLog) -> Result<Environment> {
        self.world
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .push("start".into());
        if self.behaviour.fail_start {
            bail!("the in-memory environment was told to fail");
        }
        log.line("in-memory environment up");
        let supervisor = match &self.beds {
            Some(beds) => {
                let logs = process::LogDirs {
                    raw: dirs.work.join("logs"),
                    artifacts: dirs.artifacts.join("env"),
                };
                Some(process::Supervisor::in_dir(
                    beds,
                    ledger::Kind::Cell,
                    &format!("memory-{}", crate::report::slug(&cell.id)),
                    &cell.id,
                    logs,
                    log.redactor().clone(),
                    false,
                )?)
            }
            None => None,
        };
        let watchdog = supervisor
            .as_ref()
            .map(process::Supervisor::watchdog)
            .unwrap_or_else(|| process::Watchdog::new(log.redactor().clone()));
        let credentials = log
            .redactor()
            .secret("[default]\naws_secret_access_key=memory-secret-key\n");
        let m = Arc::new(Memory {
            world: self.world.clone(),
            behaviour: self.behaviour.clone(),
            watchdog: watchdog.clone(),
            supervisor,
            credentials,
        });
        Ok(Environment {
            cluster: m.clone(),
            store: m.clone(),
            keys: m.clone(),
            velero: m.clone(),
            stop: m,
            watchdog,
            disposable: false,
        })
    }
}

pub struct Memory {
    world: Arc<Mutex<World>>,
    behaviour: Behaviour,
    watchdog: process::Watchdog,
    supervisor: Option<process::Supervisor>,
    credentials: crate::log::Secret,
}

impl Memory {
    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn kms_error(state: &KeyState, arn: &str) -> anyhow::Error {
    match state {
        KeyState::Disabled => anyhow!("KMS.DisabledException: {arn} is disabled."),
        KeyState::PendingDeletion => {
            anyhow!("KMS.KMSInvalidStateException: {arn} is pending deletion.")
        }
        other => anyhow!("KMS.KMSInvalidStateException: {arn} is {other:?}"),
    }
}

impl World {
    /// A key (with its alias) that exists before the run; returns its ARN.
    pub fn add_key(&mut self, alias: &str) -> String {
        let arn = format!(
            "arn:aws:kms:us-east-1:000000000000:key/pre-existing-{}",
            self.keys.len() + 1
        );
        self.keys.insert(
            arn.clone(),
            Key {
                arn: arn.clone(),
                state: KeyState::Enabled,
            },
        );
        self.aliases.insert(alias.to_string(), arn.clone());
        arn
    }

    /// A bucket with one object in it, existing before the run.
    pub fn add_bucket(&mut self, bucket: &str, object: &str) {
        let obj = Object {
            data: b"someone else's data".to_vec(),
            enc: ObjectEncryption::default(),
            kms_arn: None,
        };
        self.buckets
            .entry(bucket.to_string())
            .or_default()
            .insert(object.to_string(), obj);
    }

    /// A namespace with a ConfigMap in it, existing before the run.
    pub fn add_namespace(&mut self, namespace: &str) {
        self.namespaces.push(namespace.to_string());
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "theirs", "namespace": namespace}, "data": {"k": "v"}});
        self.objects.insert(ObjectRef::of(&cm), cm);
    }

    /// A CustomResourceDefinition, as a Velero install leaves them.
    pub fn add_crd(&mut self, name: &str) {
        let crd = serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name}});
        self.objects.insert(ObjectRef::of(&crd), crd);
    }

    pub fn key_state(&self, arn: &str) -> Option<KeyState> {
        self.keys.get(arn).map(|k| k.state.clone())
    }

    pub fn alias_target(&self, alias: &str) -> Option<String> {
        self.aliases.get(alias).cloned()
    }

    pub fn bucket_objects(&self, bucket: &str) -> Option<Vec<String>> {
        self.buckets
            .get(bucket)
            .map(|b| b.keys().cloned().collect())
    }

    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
    }

    pub fn has_object(&self, kind: &str, namespace: Option<&str>, name: &str) -> bool {
        self.objects
            .keys()
            .any(|r| r.kind == kind && r.namespace.as_deref() == namespace && r.name == name)
    }

    fn resolve(&self, reference: &str) -> Option<String> {
        if let Some(arn) = self.aliases.get(reference) {
            return Some(arn.clone());
        }
        self.keys
            .keys()
            .find(|arn| *arn == reference || arn.ends_with(&format!("/{reference}")))
            .cloned()
    }

    fn usable(&self, arn: &str) -> Result<()> {
        let key = self
            .keys
            .get(arn)
            .ok_or_else(|| anyhow!("KMS.NotFoundException: {arn}"))?;
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
            let arn = self
                .resolve(k)
                .ok_or_else(|| anyhow!("KMS.NotFoundException: {k}"))?;
            self.usable(&arn)?;
            enc.server_side_encryption = Some("aws:kms".into());
            enc.kms_key_id = Some(arn.clone());
            kms_arn = Some(arn);
        } else if let Some(file) = loc.config.get("customerKeyEncryptionFile") {
            let bytes = std::fs::read(file)?;
            enc.sse_customer_algorithm = Some("AES256".into());
            enc.sse_customer_key_md5 = Some(crate::assert::encryption::customer_key_md5(&bytes));
        }
        let bucket = self
            .buckets
            .get_mut(&loc.bucket)
            .ok_or_else(|| anyhow!("NoSuchBucket: {}", loc.bucket))?;
        bucket.insert(key, Object { data, enc, kms_arn });
        Ok(())
    }

    fn get(&self, bucket: &str, key: &str, customer_key: Option<&[u8]>) -> Result<&Object> {
        let obj = self
            .buckets
            .get(bucket)
            .and_then(|b| b.get(key))
            .ok_or_else(|| anyhow!("NoSuchKey: {key}"))?;
        if let Some(md5) = &obj.enc.sse_customer_key_md5 {
            match customer_key {
                None => bail!("400 Bad Request: the object was stored using a form of SSE-C"),
                Some(k) if &crate::assert::encryption::customer_key_md5(k) != md5 => {
                    bail!("403 Forbidden: wrong SSE-C key")
                }
                Some(_) => {}
            }
        }
        Ok(obj)
    }
}

#[async_trait]
impl Cluster for Memory {
    fn info(&self) -> ClusterInfo {
        ClusterInfo {
            kind: "memory".into(),
            server: "memory://".into(),
            kubeconfig: None,
            // What a report shows as the Kubernetes version of an in-memory cell.
            version: Some("memory".into()),
        }
    }

    async fn apply(
        &self,
        namespace: &str,
        manifests: &[Manifest],
        _log: &StepLog,
    ) -> Result<Vec<Json>> {
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
        w.calls.push(format!("delete_namespace {namespace}"));
        w.namespaces.retain(|n| n != namespace);
        w.objects
            .retain(|r, _| r.namespace.as_deref() != Some(namespace));
        Ok(())
    }

    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        Ok(self.w().has_namespace(namespace))
    }

    async fn crd_exists(&self, name: &str) -> Result<bool> {
        Ok(self.w().has_object("CustomResourceDefinition", None, name))
    }

    async fn delete_crd(&self, name: &str, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.calls.push(format!("delete_crd {name}"));
        w.objects
            .retain(|r, _| !(r.kind == "CustomResourceDefinition" && r.name == name));
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Memory {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        Ok(self.w().buckets.contains_key(bucket))
    }

    /// Like S3 in us-east-1: creating a bucket you already own succeeds silently.
    async fn create_bucket(
        &self,
        bucket: &str,
        _default_key: Option<&KeyInfo>,
        _log: &StepLog,
    ) -> Result<()> {
        self.w().buckets.entry(bucket.to_string()).or_default();
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let w = self.w();
        Ok(w.buckets
            .get(bucket)
            .map(|b| {
                b.keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        customer_key: Option<&Secret>,
    ) -> Result<ObjectEncryption> {
        Ok(self
            .w()
            .get(bucket, key, customer_key.map(Secret::expose))?
            .enc
            .clone())
    }

    async fn read(&self, bucket: &str, key: &str, customer_key: Option<&Secret>) -> Result<u64> {
        let result = {
            let w = self.w();
            let obj = w.get(bucket, key, customer_key.map(Secret::expose))?;
            obj.kms_arn
                .as_ref()
                .map(|arn| w.usable(arn))
                .transpose()
                .map(|_| obj.data.len() as u64)
        };
        if result.is_err() && self.behaviour.hang_disabled_reads {
            std::future::pending::<()>().await;
        }
        result
    }

    fn location_config(&self, _provider: LocationProvider) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn velero_credentials(&self, _provider: LocationProvider) -> Secret {
        self.credentials.clone()
    }

    async fn delete_bucket(&self, bucket: &str, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.buckets
            .remove(bucket)
            .ok_or_else(|| anyhow!("NoSuchBucket: {bucket}"))?;
        w.calls.push(format!("delete_bucket {bucket}"));
        Ok(())
    }
}

#[async_trait]
impl KeyManager for Memory {
    async fn create(&self, name: &str, spec: &KeySpec, _log: &StepLog) -> Result<KeyInfo> {
        let mut w = self.w();
        if spec.existing {
            let alias = spec
                .alias
                .clone()
                .ok_or_else(|| anyhow!("an existing key needs an alias"))?;
            let arn = w
                .resolve(&alias)
                .ok_or_else(|| anyhow!("KMS.NotFoundException: {alias}"))?;
            let id = arn.rsplit('/').next().unwrap_or_default().to_string();
            return Ok(KeyInfo {
                name: name.into(),
                provider: spec.provider,
                id,
                arn,
                alias: Some(alias),
                version: None,
                file: None,
                customer_key: None,
            });
        }
        if let Some(a) = &spec.alias
            && w.aliases.contains_key(a)
        {
            bail!("KMS.AlreadyExistsException: An alias with the name {a} already exists");
        }
        let id = format!("{:08}-key-{name}", w.keys.len() + 1);
        let arn = format!("arn:aws:kms:us-east-1:000000000000:key/{id}");
        w.keys.insert(
            arn.clone(),
            Key {
                arn: arn.clone(),
                state: KeyState::Enabled,
            },
        );
        if let Some(a) = &spec.alias {
            w.aliases.insert(a.clone(), arn.clone());
        }
        Ok(KeyInfo {
            name: name.into(),
            provider: spec.provider,
            id,
            arn,
            alias: spec.alias.clone(),
            version: None,
            file: None,
            customer_key: None,
        })
    }

    async fn disable(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        self.w().calls.push(format!("disable_key {}", key.arn));
        self.set_state(&key.arn, KeyState::Disabled)
    }

    async fn enable(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.calls.push(format!("enable_key {}", key.arn));
        let k = w
            .keys
            .get_mut(&key.arn)
            .ok_or_else(|| anyhow!("KMS.NotFoundException: {}", key.arn))?;
        if k.state == KeyState::PendingDeletion {
            bail!(
                "KMS.KMSInvalidStateException: {} is pending deletion",
                k.arn
            );
        }
        k.state = KeyState::Enabled;
        Ok(())
    }

    async fn rotate(&self, key: &KeyInfo, mode: RotateMode, log: &StepLog) -> Result<KeyInfo> {
        match mode {
            RotateMode::OnDemand => Ok(key.clone()),
            RotateMode::NewKey => {
                let alias = key
                    .alias
                    .clone()
                    .ok_or_else(|| anyhow!("a new-key rotation needs the key's alias"))?;
                let spec = KeySpec {
                    provider: key.provider,
                    alias: None,
                    name: None,
                    vault: None,
                    existing: false,
                };
                let mut new = self.create(&key.name, &spec, log).await?;
                self.w().aliases.insert(alias.clone(), new.arn.clone());
                new.alias = Some(alias);
                Ok(new)
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
        self.w()
            .keys
            .get(&key.arn)
            .map(|k| k.state.clone())
            .ok_or_else(|| anyhow!("KMS.NotFoundException: {}", key.arn))
    }

    async fn resolve(&self, reference: &str) -> Result<String> {
        self.w()
            .resolve(reference)
            .ok_or_else(|| anyhow!("KMS.NotFoundException: {reference}"))
    }

    async fn exists(&self, reference: &str) -> Result<bool> {
        Ok(self.w().resolve(reference).is_some())
    }

    fn limitations(&self) -> Vec<Limitation> {
        if self.behaviour.alias_key_id_not_reported {
            vec![Limitation::AliasKeyIdNotReported]
        } else {
            Vec::new()
        }
    }

    async fn delete(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.calls.push(format!("delete_key {}", key.arn));
        let k = w
            .keys
            .get_mut(&key.arn)
            .ok_or_else(|| anyhow!("KMS.NotFoundException: {}", key.arn))?;
        k.state = KeyState::PendingDeletion;
        Ok(())
    }

    async fn delete_alias(&self, alias: &str, _log: &StepLog) -> Result<()> {
        let mut w = self.w();
        w.calls.push(format!("delete_alias {alias}"));
        w.aliases
            .remove(alias)
            .ok_or_else(|| anyhow!("KMS.NotFoundException: alias {alias}"))?;
        Ok(())
    }
}

impl Memory {
    fn set_state(&self, arn: &str, state: KeyState) -> Result<()> {
        let mut w = self.w();
        let k = w
            .keys
            .get_mut(arn)
            .ok_or_else(|| anyhow!("KMS.NotFoundException: {arn}"))?;
        k.state = state;
        Ok(())
    }

    fn location(&self, name: &str) -> Result<ResolvedLocation> {
        self.w()
            .locations
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .ok_or_else(|| anyhow!("no location {name}"))
    }
}

fn prefix(loc: &ResolvedLocation) -> String {
    loc.prefix
        .as_ref()
        .map(|p| format!("{p}/"))
        .unwrap_or_default()
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
        if let Some(name) = &self.behaviour.die_during_backup {
            self.watchdog.report(process::Died {
                name: name.clone(),
                status: "signal: 9 (SIGKILL)".into(),
                tail: format!("{name} was here"),
            });
            std::future::pending::<()>().await;
        }
        if let (Some(script), Some(sup)) = (&self.behaviour.backup_runs, &self.supervisor) {
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", script]);
            sup.output("backup-helper", cmd).await?;
        }
        if self.behaviour.hang_backups {
            std::future::pending::<()>().await;
        }
        let loc = self.location(&req.location)?;
        let mut w = self.w();
        let objects: Vec<Json> = w
            .objects
            .iter()
            .filter(|(r, _)| {
                r.namespace
                    .as_ref()
                    .is_some_and(|n| req.namespaces.contains(n))
            })
            .map(|(_, o)| o.clone())
            .collect();
        let base = format!("{}backups/{}/", prefix(&loc), req.name);
        let tarball = serde_json::to_vec(&objects)?;
        let mut outcome = Outcome {
            phase: "Completed".into(),
            duration: Duration::from_millis(5),
            ..Default::default()
        };
        for (name, data) in [
            (format!("{}.tar.gz", req.name), tarball),
            ("velero-backup.json".to_string(), b"{}".to_vec()),
        ] {
            if let Err(e) = w.put(&loc, format!("{base}{name}"), data) {
                outcome.phase = "Failed".into();
                outcome.errors += 1;
                outcome.logs.push_str(&format!(
                    "level=error msg=\"Error uploading backup\" backup=velero/{} error=\"{e}\"\n",
                    req.name
                ));
                break;
            }
        }
        Ok(outcome)
    }

    async fn restore(&self, req: &RestoreRequest, _log: &StepLog) -> Result<Outcome> {
        let mut w = self.w();
        // The location the backup went to (found by its metadata object, as Velero syncs it).
        let loc = w
            .locations
            .iter()
            .find(|l| {
                w.buckets.get(&l.bucket).is_some_and(|b| {
                    b.contains_key(&format!(
                        "{}backups/{}/velero-backup.json",
                        prefix(l),
                        req.backup
                    ))
                })
            })
            .cloned()
            .ok_or_else(|| anyhow!("backup {} is in no location", req.backup))?;
        let key = format!(
            "{}backups/{}/{}.tar.gz",
            prefix(&loc),
            req.backup,
            req.backup
        );
        let read = w.get(&loc.bucket, &key, None).and_then(|o| {
            if let Some(arn) = &o.kms_arn {
                w.usable(arn)?;
            }
            Ok(o.data.clone())
        });
        let mut outcome = Outcome {
            phase: "Completed".into(),
            duration: Duration::from_millis(5),
            ..Default::default()
        };
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

    async fn upgrade(&self, req: &super::UpgradeRequest, _log: &StepLog) -> Result<()> {
        self.w().version = req.version.clone();
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
        if let Some(s) = &self.supervisor {
            s.finish();
        }
        Ok(())
    }

    async fn hand_over(&self, _log: &StepLog) -> Result<String> {
        self.w().calls.push("hand_over".into());
        Ok("the in-memory environment".into())
    }
}
