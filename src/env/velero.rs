//! Velero: installed from what `velero install --dry-run -o yaml` prints for
//! the version under test, then run either as a local process against the
//! kubeconfig (the local test bed: no kubelet, so no Deployment) or in the
//! cluster (kind, existing). Backups and restores are Velero objects followed
//! with a watch to a terminal phase.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::wait::await_condition;
use serde_json::{Value as Json, json};
use tokio::sync::Mutex;

use super::kube::KubeCluster;
use super::process::{Managed, ProcessSpec, Supervisor, free_port, wait_for};
use super::{
    BackupRequest, ObjectStore, Outcome, ResolvedLocation, RestoreRequest, UpgradeRequest, Velero,
    VeleroInstall,
};
use crate::log::{Secret, StepLog};
use crate::scenario::LocationProvider;

/// The secret `velero install --secret-file` makes (key `cloud`).
const CLOUD_SECRET: &str = "cloud-credentials";

/// The pod-volume kind of a Velero `Backup` or `Restore`, and the label naming its operation.
fn pod_volume_kind(kind: &str) -> (&'static str, &'static str) {
    if kind == "Backup" {
        ("PodVolumeBackup", "velero.io/backup-name")
    } else {
        ("PodVolumeRestore", "velero.io/restore-name")
    }
}

pub const BACKUP_DONE: &[&str] = &["Completed", "PartiallyFailed", "Failed", "FailedValidation"];

/// How the Velero server runs.
#[derive(Clone)]
pub enum Mode {
    /// `velero server` as a child process of vdrill.
    Process,
    /// The Deployment from the install manifests (needs images from a registry).
    InCluster,
}

/// A Velero binary (CLI and server are one) with its plugins.
#[derive(Debug, Clone)]
pub struct Build {
    pub version: String,
    pub bin: PathBuf,
    pub plugin_dir: PathBuf,
    /// Plugin versions by provider (`aws` -> `v1.14.3`), for in-cluster images.
    pub plugins: std::collections::BTreeMap<String, String>,
}

/// Finds the Velero build for a version.
pub trait Builds: Send + Sync {
    fn resolve(&self, version: &str) -> Result<Build>;
}

struct Running {
    build: Build,
    process: Option<Managed>,
    install: VeleroInstall,
    /// The repository password of the install (the repository's own), whatever upgrades did.
    original_password: Secret,
    /// Cluster-scoped objects the install created (in-cluster mode), removed at teardown.
    cluster_objects: Vec<Json>,
}

pub struct VeleroProvider {
    cluster: Arc<KubeCluster>,
    kubeconfig: PathBuf,
    store: Arc<dyn ObjectStore>,
    builds: Box<dyn Builds>,
    mode: Mode,
    work: PathBuf,
    supervisor: Supervisor,
    running: Mutex<Option<Running>>,
    version: std::sync::Mutex<String>,
    /// The plugins the running Velero uses, with their versions.
    plugins: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// In-cluster installs: the images of each Velero version when they are not
    /// upstream's (the test bed's), by version.
    images: std::collections::BTreeMap<String, Images>,
}

/// The images of one Velero version built elsewhere than upstream (the test bed's).
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub velero: String,
    /// Plugin (`aws`, `azure`, `gcp`) to its image.
    pub plugins: std::collections::BTreeMap<String, String>,
}

/// What Velero's upgrade guide keeps across an upgrade. The password is compared,
/// never shown.
struct KeptState {
    locations: std::collections::BTreeMap<String, Json>,
    password: Option<Vec<u8>>,
}

impl KeptState {
    /// Every way `after` differs from `self`, in words (no secret values).
    fn differences(&self, after: &KeptState) -> Vec<String> {
        let mut out = Vec::new();
        for (name, was) in &self.locations {
            let Some(now) = after.locations.get(name) else {
                out.push(format!("location {name} is gone"));
                continue;
            };
            for field in ["provider", "bucket", "prefix", "credential"] {
                if was[field] != now[field] {
                    out.push(format!(
                        "location {name}: {field} was {} and is {}",
                        was[field], now[field]
                    ));
                }
            }
            let empty = serde_json::Map::new();
            let (wc, nc) = (
                was["config"].as_object().unwrap_or(&empty),
                now["config"].as_object().unwrap_or(&empty),
            );
            for (k, v) in wc {
                match nc.get(k) {
                    None => out.push(format!("location {name} lost config {k} (was {v})")),
                    Some(n) if n != v => {
                        out.push(format!("location {name}: config {k} was {v} and is {n}"))
                    }
                    _ => {}
                }
            }
            for (k, v) in nc.iter().filter(|(k, _)| !wc.contains_key(*k)) {
                out.push(format!("location {name} gained config {k} ({v})"));
            }
        }
        for name in after.locations.keys() {
            if !self.locations.contains_key(name) {
                out.push(format!("location {name} appeared"));
            }
        }
        match (&self.password, &after.password) {
            (Some(a), Some(b)) if a != b => out.push(
                "the repository password (secret velero-repo-credentials) is not the one the install made the repository with: Kopia data written with it would not open".into(),
            ),
            (Some(_), None) => out.push("the repository password secret (velero-repo-credentials) is gone".into()),
            _ => {}
        }
        out
    }
}

/// A short random suffix for object names.
fn hex_suffix() -> String {
    super::random_bytes(4)
        .map(|b| super::hex(&b))
        .unwrap_or_else(|_| std::process::id().to_string())
}

/// A CRD's versions with their schemas: what an upgrade of the CRD changes.
fn crd_versions(crd: &Json) -> Json {
    Json::Array(
        crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| json!({"name": v["name"], "schema": v["schema"]}))
            .collect(),
    )
}

fn gvk(kind: &str) -> GroupVersionKind {
    GroupVersionKind::gvk("velero.io", "v1", kind)
}

fn phase(o: &DynamicObject) -> String {
    o.data["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `velero install` takes the location config as `k=v,k=v`.
fn config_flag(config: &std::collections::BTreeMap<String, String>) -> Result<String> {
    let mut parts = Vec::new();
    for (k, v) in config {
        if v.contains(',') || v.contains('=') {
            bail!(
                "location config `{k}` contains `,` or `=`, which `velero install --backup-location-config` cannot carry"
            );
        }
        parts.push(format!("{k}={v}"));
    }
    Ok(parts.join(","))
}

/// The scenario's default location: the one marked `default`, else the first.
fn default_location(install: &VeleroInstall) -> Option<&ResolvedLocation> {
    install
        .locations
        .iter()
        .find(|l| l.default)
        .or(install.locations.first())
}

fn plugin_image(provider: &str, version: &str) -> String {
    match provider {
        "aws" => format!("velero/velero-plugin-for-aws:{version}"),
        "azure" => format!("velero/velero-plugin-for-microsoft-azure:{version}"),
        "gcp" => format!("velero/velero-plugin-for-gcp:{version}"),
        other => other.to_string(),
    }
}

/// Objects from `velero install --dry-run -o yaml` (a List, or several documents).
pub fn parse_manifests(text: &str) -> Result<Vec<Json>> {
    let docs = crate::scenario::yaml::parse_multi(text)
        .map_err(|e| anyhow!("velero install printed unreadable YAML: {}", e.message))?;
    let mut out = Vec::new();
    for d in docs {
        let v = crate::fixture::to_json(&d);
        if v.is_null() {
            continue;
        }
        if v["kind"] == "List" {
            out.extend(v["items"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(v);
        }
    }
    Ok(out)
}

/// The plugins an install uses, with the versions the build has of them.
fn used_plugins(
    build: &Build,
    install: &VeleroInstall,
) -> std::collections::BTreeMap<String, String> {
    install
        .plugins
        .iter()
        .map(|p| {
            (
                p.clone(),
                build
                    .plugins
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
            )
        })
        .collect()
}

impl VeleroProvider {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: Arc<KubeCluster>,
        kubeconfig: PathBuf,
        store: Arc<dyn ObjectStore>,
        builds: Box<dyn Builds>,
        mode: Mode,
        work: PathBuf,
        supervisor: Supervisor,
    ) -> VeleroProvider {
        VeleroProvider {
            cluster,
            kubeconfig,
            store,
            builds,
            mode,
            work,
            supervisor,
            running: Mutex::new(None),
            version: std::sync::Mutex::default(),
            plugins: std::sync::Mutex::default(),
            images: Default::default(),
        }
    }

    /// In-cluster installs run these images for these Velero versions instead of upstream's.
    pub fn with_images(mut self, images: std::collections::BTreeMap<String, Images>) -> Self {
        self.images = images;
        self
    }

    fn server_log(&self) -> PathBuf {
        self.supervisor.raw_log("velero")
    }

    async fn velero_cli(&self, bin: &Path, args: &[String], log: &StepLog) -> Result<String> {
        log.line(format!("velero {}", args.join(" ")));
        let mut cmd = std::process::Command::new(bin);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig);
        let out = self.supervisor.output("velero-cli", cmd).await?;
        if !out.status.success() {
            bail!(
                "velero {} failed: {}",
                args.first().map(String::as_str).unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The credentials file of `provider`'s plugin (`credentials` for the default
    /// location's provider, `credentials-<provider>` for the others).
    fn credentials_file(
        &self,
        provider: LocationProvider,
        install: &VeleroInstall,
    ) -> Result<PathBuf> {
        let name = if Some(provider) == default_location(install).map(|l| l.provider) {
            "credentials".to_string()
        } else {
            format!("credentials-{}", provider.as_str())
        };
        let path = self.work.join("velero").join(name);
        super::write_private(&path, self.store.velero_credentials(provider).expose())?;
        Ok(path)
    }

    /// The install manifests for `install` with the default location, from the binary itself.
    async fn manifests(
        &self,
        build: &Build,
        install: &VeleroInstall,
        crds_only: bool,
        log: &StepLog,
    ) -> Result<Vec<Json>> {
        let bin = &build.bin;
        let default = default_location(install).context("no backup storage location")?;
        let mut args: Vec<String> = vec![
            "install".into(),
            "--dry-run".into(),
            "-o".into(),
            "yaml".into(),
            "--namespace".into(),
            install.namespace.clone(),
        ];
        if crds_only {
            args.push("--crds-only".into());
        } else {
            let images = self.images.get(&build.version);
            let plugins: Vec<String> = install
                .plugins
                .iter()
                .map(|p| {
                    images
                        .and_then(|i| i.plugins.get(p).cloned())
                        .unwrap_or_else(|| {
                            plugin_image(
                                p,
                                build.plugins.get(p).map(String::as_str).unwrap_or("latest"),
                            )
                        })
                })
                .collect();
            args.extend([
                "--provider".into(),
                default.provider.as_str().into(),
                "--plugins".into(),
                plugins.join(","),
                "--bucket".into(),
                default.bucket.clone(),
                "--backup-location-config".into(),
                config_flag(&default.config)?,
                "--secret-file".into(),
                self.credentials_file(default.provider, install)?
                    .display()
                    .to_string(),
                "--use-volume-snapshots=false".into(),
            ]);
            if let Some(p) = &default.prefix {
                args.extend(["--prefix".into(), p.clone()]);
            }
            if matches!(self.mode, Mode::InCluster) {
                // File-system (Kopia) backups need the node-agent DaemonSet.
                args.push("--use-node-agent".into());
                if let Some(i) = images {
                    args.extend(["--image".into(), i.velero.clone()]);
                }
            }
            if !install.features.is_empty() {
                args.extend(["--features".into(), install.features.join(",")]);
            }
        }
        let text = self.velero_cli(bin, &args, log).await?;
        parse_manifests(&text)
    }

    /// A location beyond the default one; its credentials are `velero install`'s
    /// secret when it is of the default location's cloud, else the secret of its cloud
    /// (`cloud_secrets`).
    fn bsl_object(
        namespace: &str,
        l: &ResolvedLocation,
        default_provider: Option<LocationProvider>,
    ) -> Json {
        let secret = if Some(l.provider) == default_provider {
            CLOUD_SECRET.to_string()
        } else {
            format!("{CLOUD_SECRET}-{}", l.provider.as_str())
        };
        let mut os = json!({"bucket": l.bucket});
        if let Some(p) = &l.prefix {
            os["prefix"] = json!(p);
        }
        json!({
            "apiVersion": "velero.io/v1",
            "kind": "BackupStorageLocation",
            "metadata": {"name": l.name, "namespace": namespace},
            "spec": {"provider": l.provider.as_str(), "objectStorage": os, "config": l.config, "default": l.default,
                     "credential": {"name": secret, "key": "cloud"}},
        })
    }

    async fn start_server(
        &self,
        bin: &Path,
        plugin_dir: &Path,
        install: &VeleroInstall,
        log: &StepLog,
    ) -> Result<Managed> {
        let home = self.work.join("velero").join("home");
        let mut tmp = self.work.join("velero").join("tmp");
        // Velero's plugins listen on Unix sockets in $TMPDIR (`plugin` + 10 digits), and a
        // socket path has at most 107 bytes: a long cell id (an upgrade matrix's) would
        // pass it, and every plugin would fail to start ("bind: invalid argument").
        if tmp.as_os_str().len() + "/plugin0123456789".len() > 100 {
            tmp = std::env::temp_dir().join(format!("vdrill-velero-{}", hex_suffix()));
            self.supervisor.add_dir(&tmp);
        }
        std::fs::create_dir_all(&home)?;
        std::fs::create_dir_all(&tmp)?;
        let mut spec = ProcessSpec::new("velero", bin)
            .args([
                "server".to_string(),
                format!("--kubeconfig={}", self.kubeconfig.display()),
                format!("--namespace={}", install.namespace),
                format!("--plugin-dir={}", plugin_dir.display()),
                // Loopback only, and free ports so that two drills can run side by side.
                format!("--metrics-address=127.0.0.1:{}", free_port()?),
                // No profiler (its default is a fixed port, which two servers would share).
                "--profiler-address=".to_string(),
                "--uploader-type=kopia".to_string(),
                "--log-level=info".to_string(),
            ])
            .env("HOME", home.display().to_string())
            // Velero writes credential files under $TMPDIR/credentials/<namespace>: one per run.
            .env("TMPDIR", tmp.display().to_string())
            .env(
                "VELERO_SCRATCH_DIR",
                self.work
                    .join("velero")
                    .join("scratch")
                    .display()
                    .to_string(),
            )
            .env("VELERO_NAMESPACE", &install.namespace)
            .env("POD_NAMESPACE", &install.namespace)
            .cwd(&self.work);
        if !install.features.is_empty() {
            spec = spec.arg(format!("--features={}", install.features.join(",")));
        }
        // Each plugin finds its cloud's credentials file through its variable (a
        // location's own `credential` secret takes precedence).
        let mut providers: Vec<LocationProvider> =
            install.locations.iter().map(|l| l.provider).collect();
        providers.sort_by_key(|p| p.as_str());
        providers.dedup();
        for provider in providers {
            let var = match provider {
                LocationProvider::Aws => "AWS_SHARED_CREDENTIALS_FILE",
                LocationProvider::Azure => "AZURE_CREDENTIALS_FILE",
                LocationProvider::Gcp => "GOOGLE_APPLICATION_CREDENTIALS",
            };
            spec = spec.env(
                var,
                self.credentials_file(provider, install)?
                    .display()
                    .to_string(),
            );
        }
        for (k, v) in self.store.velero_env() {
            spec = spec.env(&k, v);
        }
        let process = self.supervisor.spawn(&spec)?;
        log.line(format!(
            "velero server started (pid {}), log {}",
            process.pid,
            process.log.display()
        ));
        Ok(process)
    }

    async fn wait_locations_available(
        &self,
        install: &VeleroInstall,
        process: Option<&mut Managed>,
        log: &StepLog,
    ) -> Result<()> {
        let (api, _) = self
            .cluster
            .api_for(&gvk("BackupStorageLocation"), Some(&install.namespace))
            .await?;
        let names: Vec<String> = install.locations.iter().map(|l| l.name.clone()).collect();
        let mut procs: Vec<&mut Managed> = process.into_iter().collect();
        let started = Instant::now();
        let check = || {
            let api = api.clone();
            let names = names.clone();
            async move {
                for n in &names {
                    match api.get_opt(n).await {
                        Ok(Some(o)) if phase(&o) == "Available" => {}
                        _ => return false,
                    }
                }
                true
            }
        };
        match wait_for(
            "backup storage locations Available",
            Duration::from_secs(120),
            &mut procs,
            check,
        )
        .await
        {
            Ok(_) => {
                log.line(format!(
                    "backup storage locations {names:?} Available after {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
                Ok(())
            }
            Err(e) => {
                let mut msg = e.to_string();
                for n in &names {
                    if let Ok(Some(o)) = api.get_opt(n).await {
                        msg.push_str(&format!(
                            "\nlocation {n}: phase {:?}, message {:?}",
                            phase(&o),
                            o.data["status"]["message"].as_str().unwrap_or("")
                        ));
                    }
                }
                Err(anyhow!(msg))
            }
        }
    }

    /// Create a Velero object and follow it to a terminal phase; Velero's log lines
    /// written meanwhile are the operation's evidence.
    async fn run_op(&self, kind: &str, name: &str, spec: Json, log: &StepLog) -> Result<Outcome> {
        let namespace = {
            let running = self.running.lock().await;
            running
                .as_ref()
                .context("Velero is not installed")?
                .install
                .namespace
                .clone()
        };
        let (api, _) = self.cluster.api_for(&gvk(kind), Some(&namespace)).await?;
        let log_path = self.server_log();
        let offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "velero.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec,
        }))?;
        let started = Instant::now();
        api.create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating {kind} {name}"))?;
        log.line(format!("{kind} {name} created; watching it"));
        let done =
            |o: Option<&DynamicObject>| o.is_some_and(|o| BACKUP_DONE.contains(&phase(o).as_str()));
        let watch = await_condition(api.clone(), name, done);
        tokio::pin!(watch);
        let finished = loop {
            tokio::select! {
                r = &mut watch => break r.context("watching the operation")?,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    let mut running = self.running.lock().await;
                    if let Some(p) = running.as_mut().and_then(|r| r.process.as_mut()) {
                        p.check_alive()?;
                    }
                }
            }
        };
        let o = finished.context("the object disappeared while being watched")?;
        let status = &o.data["status"];
        let mut logs = String::new();
        if let Ok(bytes) = std::fs::read(&log_path) {
            let start = (offset as usize).min(bytes.len());
            logs = String::from_utf8_lossy(&bytes[start..]).into_owned();
        }
        if matches!(self.mode, Mode::InCluster) {
            // The server runs in a pod: its log lines of the operation's time.
            let since = started.elapsed().as_secs() as i64 + 2;
            logs.push_str(&self.server_pod_logs(&namespace, since).await);
        }
        // File-system backups: each PodVolumeBackup/Restore's phase and, for a failed one, its
        // message (where Kopia's and the object store's errors end up).
        let pod_volumes = self.pod_volumes(kind, name, &namespace).await;
        let (pv_kind, _) = pod_volume_kind(kind);
        match super::pod_volumes::progress(pv_kind, &pod_volumes) {
            super::pod_volumes::Progress::Completed(lines) => {
                for l in &lines {
                    log.line(l.clone());
                }
            }
            super::pod_volumes::Progress::Failed(msg) => {
                log.line(log.redactor().redact(&msg));
                // First in the evidence: the excerpt of a match shows the volume's own error.
                logs.insert_str(0, &format!("{msg}\n"));
            }
            super::pod_volumes::Progress::Running => log.line(format!(
                "{} pod volume operation(s) of {kind} {name} still running",
                pod_volumes.len()
            )),
        }
        let outcome = Outcome {
            phase: phase(&o),
            errors: status["errors"].as_u64().unwrap_or(0),
            warnings: status["warnings"].as_u64().unwrap_or(0),
            failure_reason: status["failureReason"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            validation_errors: status["validationErrors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            logs: log.redactor().redact(&logs),
            duration: started.elapsed(),
        };
        for line in outcome
            .logs
            .lines()
            .filter(|l| l.contains("level=error") || l.contains("level=warning"))
        {
            log.line(format!("velero: {line}"));
        }
        Ok(outcome)
    }

    /// The PodVolumeBackups of backup `name` or PodVolumeRestores of restore `name`
    /// (none when the operation copied no volume, or the cluster cannot say).
    async fn pod_volumes(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Vec<super::pod_volumes::PodVolume> {
        let (pv_kind, label) = pod_volume_kind(kind);
        let Ok((api, _)) = self.cluster.api_for(&gvk(pv_kind), Some(namespace)).await else {
            return Vec::new();
        };
        let lp = kube::api::ListParams::default().labels(&format!("{label}={name}"));
        let Ok(list) = api.list(&lp).await else {
            return Vec::new();
        };
        list.items
            .iter()
            .map(|o| {
                let spec = &o.data["spec"];
                let status = &o.data["status"];
                super::pod_volumes::PodVolume {
                    name: o.metadata.name.clone().unwrap_or_default(),
                    volume: format!(
                        "{}/{}:{}",
                        spec["pod"]["namespace"].as_str().unwrap_or("?"),
                        spec["pod"]["name"].as_str().unwrap_or("?"),
                        spec["volume"].as_str().unwrap_or("?")
                    ),
                    phase: status["phase"].as_str().unwrap_or_default().to_string(),
                    message: status["message"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect()
    }

    /// The last `since_seconds` of the in-cluster server's and node-agents' logs, one
    /// line prefixed by its pod (empty where a pod's log cannot be read).
    async fn server_pod_logs(&self, namespace: &str, since_seconds: i64) -> String {
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.cluster.client.clone(), namespace);
        let mut out = String::new();
        for selector in ["deploy=velero", "name=node-agent"] {
            let Ok(list) = pods
                .list(&kube::api::ListParams::default().labels(selector))
                .await
            else {
                continue;
            };
            for p in list.items {
                let pod = p.metadata.name.unwrap_or_default();
                let lp = kube::api::LogParams {
                    since_seconds: Some(since_seconds),
                    ..Default::default()
                };
                if let Ok(text) = pods.logs(&pod, &lp).await {
                    for line in text.lines() {
                        out.push_str(&pod);
                        out.push_str(": ");
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// Ask the server which version it is (a ServerStatusRequest, as `velero version`
    /// does) and wait until it answers `want`: the upgraded server is up and serving.
    async fn wait_server_version(
        &self,
        namespace: &str,
        want: &str,
        process: Option<&mut Managed>,
        log: &StepLog,
    ) -> Result<()> {
        let (api, _) = self
            .cluster
            .api_for(&gvk("ServerStatusRequest"), Some(namespace))
            .await?;
        let name = format!("vdrill-version-{}", hex_suffix());
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "velero.io/v1", "kind": "ServerStatusRequest",
            "metadata": {"name": name, "namespace": namespace}, "spec": {},
        }))?;
        api.create(&PostParams::default(), &obj)
            .await
            .context("creating a ServerStatusRequest")?;
        let mut procs: Vec<&mut Managed> = process.into_iter().collect();
        let answer = std::sync::Mutex::new(Json::Null);
        let waited = wait_for(
            "the upgraded Velero server to answer a ServerStatusRequest",
            Duration::from_secs(120),
            &mut procs,
            || {
                let api = api.clone();
                let name = name.clone();
                let answer = &answer;
                async move {
                    match api.get_opt(&name).await {
                        Ok(Some(o)) if o.data["status"]["phase"] == "Processed" => {
                            *answer.lock().unwrap_or_else(|e| e.into_inner()) =
                                o.data["status"].clone();
                            true
                        }
                        _ => false,
                    }
                }
            },
        )
        .await;
        let _ = api.delete(&name, &Default::default()).await;
        let waited = waited?;
        let status = answer.into_inner().unwrap_or_else(|e| e.into_inner());
        let version = status["serverVersion"].as_str().unwrap_or("?");
        let plugins = status["plugins"].as_array().map_or(0, Vec::len);
        if version != want {
            bail!("the upgraded Velero server says it is {version}, not {want}");
        }
        log.line(format!(
            "the server answers as Velero {version} with {plugins} plugin entries, {:.1}s after it started",
            waited.as_secs_f64()
        ));
        Ok(())
    }

    /// The versions (with their schemas) of each CRD in `crds` as the cluster has it (Null if absent).
    async fn crd_specs(&self, crds: &[Json]) -> Result<Vec<Json>> {
        let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(self.cluster.client.clone());
        let mut out = Vec::new();
        for crd in crds {
            let name = crd["metadata"]["name"].as_str().unwrap_or_default();
            let found = api
                .get_opt(name)
                .await
                .with_context(|| format!("reading CRD {name}"))?;
            out.push(match found {
                Some(c) => crd_versions(&serde_json::to_value(c)?),
                None => Json::Null,
            });
        }
        Ok(out)
    }

    /// What an upgrade must keep, as the cluster has it now: every location's
    /// provider, bucket, prefix, config and credential, and the repository password.
    async fn kept_state(&self, namespace: &str) -> Result<KeptState> {
        let (api, _) = self
            .cluster
            .api_for(&gvk("BackupStorageLocation"), Some(namespace))
            .await?;
        let mut locations = std::collections::BTreeMap::new();
        for o in api
            .list(&Default::default())
            .await
            .context("listing backup storage locations")?
        {
            let spec = &o.data["spec"];
            locations.insert(
                o.metadata.name.clone().unwrap_or_default(),
                json!({
                    "provider": spec["provider"],
                    "bucket": spec["objectStorage"]["bucket"],
                    "prefix": spec["objectStorage"]["prefix"],
                    "credential": spec["credential"],
                    "config": spec["config"],
                }),
            );
        }
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.cluster.client.clone(), namespace);
        let password = secrets
            .get_opt("velero-repo-credentials")
            .await
            .context("reading velero-repo-credentials")?
            .and_then(|s| s.data)
            .and_then(|d| d.get("repository-password").map(|b| b.0.clone()));
        Ok(KeptState {
            locations,
            password,
        })
    }

    /// Apply the install manifests; returns the cluster-scoped objects among them.
    async fn apply_install(
        &self,
        build: &Build,
        install: &VeleroInstall,
        log: &StepLog,
    ) -> Result<Vec<Json>> {
        let objects = self.manifests(build, install, false, log).await?;
        let keep: Vec<Json> = objects
            .into_iter()
            .filter(|o| match self.mode {
                Mode::Process => o["kind"] != "DaemonSet",
                Mode::InCluster => true,
            })
            .map(|mut o| {
                // Velero reads its own Deployment (restore helper image, maintenance jobs);
                // with the server running as a process it exists but runs no pods.
                if matches!(self.mode, Mode::Process) && o["kind"] == "Deployment" {
                    o["spec"]["replicas"] = json!(0);
                }
                // `velero install` names the location it makes `default`; it is the
                // scenario's default location, under the scenario's name for it.
                if o["kind"] == "BackupStorageLocation"
                    && let Some(default) = default_location(install)
                {
                    o["metadata"]["name"] = json!(default.name);
                    o["spec"]["default"] = json!(true);
                }
                o
            })
            .collect();
        let kinds: Vec<String> = keep
            .iter()
            .map(|o| {
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap_or("?"),
                    o["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect();
        log.line(format!(
            "applying {} objects from velero install: {}",
            keep.len(),
            kinds.join(", ")
        ));
        self.cluster
            .apply_all(&keep, None, &StepLog::new(log.redactor().clone()))
            .await?;
        // The Kopia repository password.
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "velero-repo-credentials", "namespace": install.namespace},
            "type": "Opaque", "stringData": {"repository-password": install.repository_password.expose_str()},
        });
        self.cluster
            .apply_one(&secret, None)
            .await
            .context("creating velero-repo-credentials")?;
        // Credentials of the clouds other than the default location's, one secret each.
        let default_provider = default_location(install).map(|l| l.provider);
        let mut others: Vec<LocationProvider> = install
            .locations
            .iter()
            .map(|l| l.provider)
            .filter(|p| Some(*p) != default_provider)
            .collect();
        others.sort_by_key(|p| p.as_str());
        others.dedup();
        for provider in others {
            let creds = self.store.velero_credentials(provider);
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{CLOUD_SECRET}-{}", provider.as_str()), "namespace": install.namespace},
                "type": "Opaque", "stringData": {"cloud": creds.expose_str()},
            });
            self.cluster
                .apply_one(&secret, None)
                .await
                .with_context(|| {
                    format!("creating the {} credentials secret", provider.as_str())
                })?;
        }
        // Locations beyond the default one.
        let default = default_location(install).map(|l| l.name.clone());
        for l in install
            .locations
            .iter()
            .filter(|l| Some(&l.name) != default.as_ref())
        {
            self.cluster
                .apply_one(
                    &Self::bsl_object(&install.namespace, l, default_provider),
                    None,
                )
                .await
                .with_context(|| format!("creating location {}", l.name))?;
        }
        if install
            .locations
            .iter()
            .any(|l| l.provider != LocationProvider::Aws && l.default)
        {
            log.line("note: the default location is not AWS; its plugin config comes from the install flags");
        }
        Ok(keep
            .into_iter()
            .filter(|o| {
                matches!(
                    o["kind"].as_str(),
                    Some("CustomResourceDefinition" | "ClusterRoleBinding" | "Namespace")
                )
            })
            .collect())
    }
}

#[async_trait]
impl Velero for VeleroProvider {
    async fn install(&self, install: &VeleroInstall, log: &StepLog) -> Result<()> {
        let build = self.builds.resolve(&install.version)?;
        log.line(format!("Velero {}: {}", build.version, build.bin.display()));
        let cluster_objects = self.apply_install(&build, install, log).await?;
        let mut process = match self.mode {
            Mode::Process => Some(
                self.start_server(&build.bin, &build.plugin_dir, install, log)
                    .await?,
            ),
            Mode::InCluster => None,
        };
        // Recorded before waiting, so teardown removes what was applied even if Velero never gets ready.
        let cluster_objects = if matches!(self.mode, Mode::InCluster) {
            cluster_objects
        } else {
            Vec::new()
        };
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = build.version.clone();
        *self.plugins.lock().unwrap_or_else(|e| e.into_inner()) = used_plugins(&build, install);
        *self.running.lock().await = Some(Running {
            build,
            process: None,
            install: install.clone(),
            original_password: install.repository_password.clone(),
            cluster_objects,
        });
        let ready = self
            .wait_locations_available(install, process.as_mut(), log)
            .await;
        if let Some(r) = self.running.lock().await.as_mut() {
            r.process = process;
        }
        ready
    }

    async fn backup(&self, req: &BackupRequest, log: &StepLog) -> Result<Outcome> {
        let spec = json!({
            "includedNamespaces": req.namespaces,
            "storageLocation": req.location,
            "snapshotVolumes": false,
            "defaultVolumesToFsBackup": req.file_system_backup,
            "ttl": "720h0m0s",
        });
        self.run_op("Backup", &req.name, spec, log).await
    }

    async fn restore(&self, req: &RestoreRequest, log: &StepLog) -> Result<Outcome> {
        self.run_op("Restore", &req.name, json!({"backupName": req.backup}), log)
            .await
    }

    async fn upgrade(&self, req: &UpgradeRequest, log: &StepLog) -> Result<()> {
        let mut guard = self.running.lock().await;
        let running = guard.as_mut().context("Velero is not installed")?;
        let build = self.builds.resolve(&req.version)?;
        log.line(format!(
            "upgrading Velero {} -> {} as Velero's upgrade guide does: CRDs, then the server",
            running.build.version, build.version
        ));
        let namespace = running.install.namespace.clone();
        let mut before = self.kept_state(&namespace).await?;
        // The password the repository was made with is what must be kept, whatever an
        // earlier (rehearsed) upgrade put in the secret.
        before.password = Some(running.original_password.expose().to_vec());
        let mut install = running.install.clone();
        install.version = req.version.clone();

        // 1. The new version's CRDs (`velero install --crds-only --dry-run -o yaml | kubectl apply -f -`).
        let crds = self.manifests(&build, &install, true, log).await?;
        let old_crds = self.crd_specs(&crds).await?;
        self.cluster.apply_all(&crds, None, log).await?;
        let new_crds = self.crd_specs(&crds).await?;
        let mut changed = Vec::new();
        for (crd, (old, new)) in crds.iter().zip(old_crds.iter().zip(&new_crds)) {
            let name = crd["metadata"]["name"].as_str().unwrap_or("?");
            if *new != crd_versions(crd) {
                bail!(
                    "CRD {name} on the cluster is not the one Velero {} ships after applying it",
                    build.version
                );
            }
            if old != new {
                changed.push(name.to_string());
            }
        }
        log.line(format!(
            "{} CRDs of Velero {} applied and read back; {} changed from the running version's{}",
            crds.len(),
            build.version,
            changed.len(),
            if changed.is_empty() {
                String::new()
            } else {
                format!(": {}", changed.join(", "))
            }
        ));

        // What this upgrade changes on purpose (a rehearsed mistake), before the server starts.
        for (name, config) in &req.locations {
            let l = install
                .locations
                .iter_mut()
                .find(|l| &l.name == name)
                .with_context(|| format!("no location {name}"))?;
            let mut config = config.clone();
            for (k, v) in self.store.location_config(l.provider) {
                config.entry(k).or_insert(v);
            }
            l.config = config.clone();
            log.line(format!(
                "the upgrade replaces the config of location {name}"
            ));
            let (api, _) = self
                .cluster
                .api_for(&gvk("BackupStorageLocation"), Some(&namespace))
                .await?;
            api.patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"config": null}})),
            )
            .await
            .with_context(|| format!("clearing the config of location {name}"))?;
            api.patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"config": config}})),
            )
            .await
            .with_context(|| format!("changing the config of location {name}"))?;
        }
        let password = if req.original_password {
            log.line("the upgrade puts back the repository password of the install");
            Some(running.original_password.clone())
        } else {
            req.repository_password.clone()
        };
        if let Some(pw) = &password {
            if !req.original_password {
                log.line("the upgrade replaces the repository password");
            }
            install.repository_password = pw.clone();
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "velero-repo-credentials", "namespace": namespace},
                "type": "Opaque", "stringData": {"repository-password": pw.expose_str()},
            });
            self.cluster
                .apply_one(&secret, None)
                .await
                .context("replacing velero-repo-credentials")?;
        }

        // 2. The server: its Deployment gets the new images (`kubectl set image`); on the
        // bed the server is a process, so the old one stops and the new one starts.
        let deployment: Vec<Json> = self
            .manifests(&build, &install, false, log)
            .await?
            .into_iter()
            .filter(|o| {
                o["kind"] == "Deployment"
                    || (matches!(self.mode, Mode::InCluster) && o["kind"] == "DaemonSet")
            })
            .map(|mut o| {
                if matches!(self.mode, Mode::Process) && o["kind"] == "Deployment" {
                    o["spec"]["replicas"] = json!(0);
                }
                o
            })
            .collect();
        self.cluster
            .apply_all(&deployment, None, log)
            .await
            .context("updating the Velero Deployment")?;
        if let Some(p) = running.process.as_mut() {
            p.stop(Duration::from_secs(15)).await?;
            log.line(format!("velero {} stopped", running.build.version));
        }
        running.process = match self.mode {
            Mode::Process => Some(
                self.start_server(&build.bin, &build.plugin_dir, &install, log)
                    .await?,
            ),
            Mode::InCluster => None,
        };
        let new_version = build.version.clone();
        *self.plugins.lock().unwrap_or_else(|e| e.into_inner()) = used_plugins(&build, &install);
        running.build = build;
        running.install = install.clone();
        let mut process = running.process.as_mut();
        self.wait_server_version(&namespace, &new_version, process.as_deref_mut(), log)
            .await?;
        self.wait_locations_available(&install, process, log)
            .await?;
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = new_version.clone();

        // 3. What the guide keeps must be kept.
        let after = self.kept_state(&namespace).await?;
        let differences = before.differences(&after);
        if differences.is_empty() {
            log.line(format!(
                "Velero {new_version} has the same {} location(s) and repository password as before the upgrade",
                after.locations.len()
            ));
            Ok(())
        } else {
            bail!(
                "the upgrade to Velero {new_version} did not keep what Velero's upgrade guide keeps: {}",
                differences.join("; ")
            )
        }
    }

    fn version(&self) -> String {
        self.version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn plugins(&self) -> std::collections::BTreeMap<String, String> {
        self.plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn teardown(&self, log: &StepLog) -> Result<()> {
        let mut guard = self.running.lock().await;
        if let Some(mut r) = guard.take() {
            if let Some(p) = r.process.as_mut() {
                log.line(format!(
                    "velero (with plugins): peak RSS {} MiB",
                    p.peak_rss_kib() / 1024
                ));
                p.stop(Duration::from_secs(10)).await?;
                log.line("velero server stopped");
            }
            if matches!(self.mode, Mode::InCluster) {
                // Only what this run's install created: `setup` refuses a cluster that
                // already has a Velero.
                let ns: Api<k8s_openapi::api::core::v1::Namespace> =
                    Api::all(self.cluster.client.clone());
                let _ = ns.delete(&r.install.namespace, &Default::default()).await;
                log.line(format!("deleted namespace {}", r.install.namespace));
                for o in r
                    .cluster_objects
                    .iter()
                    .rev()
                    .filter(|o| o["kind"] != "Namespace")
                {
                    let (Ok(gvk), Some(name)) =
                        (super::kube::gvk_of(o), o["metadata"]["name"].as_str())
                    else {
                        continue;
                    };
                    if let Ok((api, _)) = self.cluster.api_for(&gvk, None).await {
                        match api.delete(name, &Default::default()).await {
                            Ok(_) => log.line(format!("deleted {} {name}", gvk.kind)),
                            Err(e) => {
                                log.line(format!("could not delete {} {name}: {e}", gvk.kind))
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
