//! Clusters vdrill does not run itself (kind, an existing kubeconfig) and real
//! cloud storage. Velero runs in the cluster from its install manifests, so its
//! images must be pullable there.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;

use super::aws::{AwsTarget, KmsKeys, S3Store};
use super::kube::{KubeCluster, client_for};
use super::ledger::Kind;
use super::process::Supervisor;
use super::velero::{Build, Builds, Mode, VeleroProvider};
use super::{CellDirs, ClusterInfo, Environment, Stop};
use crate::log::StepLog;
use crate::scenario::{Cell, ClusterKind, Storage, StorageKind};

/// The Velero CLI for in-cluster installs: the test bed's build of that version, else `velero` on PATH.
struct CliBuilds;

impl Builds for CliBuilds {
    fn resolve(&self, version: &str) -> Result<Build> {
        if let Ok(m) = super::local::manifest::Manifest::load()
            && let Ok(b) = m.velero(version)
        {
            return Ok(Build {
                version: b.version.clone(),
                bin: b.bin.clone(),
                plugin_dir: b.plugin_dir.clone(),
                plugins: b.plugins.clone(),
            });
        }
        let out = std::process::Command::new("velero")
            .args(["version", "--client-only"])
            .output()
            .context("no Velero build for this version in the test bed, and no `velero` on PATH")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let found = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        let want = version.trim_start_matches('v');
        if !found.trim_start_matches('v').starts_with(want) {
            bail!("`velero` on PATH is {found}, but the scenario asks for {version}");
        }
        Ok(Build {
            version: found,
            bin: PathBuf::from("velero"),
            plugin_dir: PathBuf::new(),
            plugins: Default::default(),
        })
    }
}

/// What a remote environment leaves to stop: a kind cluster this run created (and
/// deletes), or nothing for an existing cluster.
struct Remote {
    kind_cluster: Option<String>,
    supervisor: Supervisor,
    work: PathBuf,
    summary: String,
}

#[async_trait]
impl Stop for Remote {
    async fn stop(&self, log: &StepLog) -> Result<()> {
        if let Some(name) = &self.kind_cluster {
            let mut cmd = std::process::Command::new("kind");
            cmd.args(["delete", "cluster", "--name", name]);
            let out = self.supervisor.output("kind", cmd).await?;
            if !out.status.success() {
                bail!(
                    "kind delete cluster: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            log.line(format!("deleted kind cluster {name}"));
        }
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work)
                .with_context(|| format!("removing {}", self.work.display()))?;
        }
        self.supervisor.finish();
        Ok(())
    }

    async fn hand_over(&self, _log: &StepLog) -> Result<String> {
        let record = self.supervisor.hand_over(Kind::Kept);
        Ok(format!(
            "{}; remove it with `vdrill testbed down {}`",
            self.summary, record.id
        ))
    }
}

pub async fn start(
    cell: &Cell,
    cluster: ClusterKind,
    storage: &Storage,
    region: &str,
    dirs: &CellDirs,
    supervisor: &Supervisor,
    log: &StepLog,
) -> Result<Environment> {
    std::fs::create_dir_all(&dirs.work)?;
    supervisor.add_dir(&dirs.work);
    let env = &cell.scenario.environment;
    let (kubeconfig, context, kind_cluster) = match cluster {
        ClusterKind::Kind => {
            let name = format!("vdrill-{}", crate::report::slug(&supervisor.id()))
                .chars()
                .take(40)
                .collect::<String>()
                .to_lowercase();
            let kubeconfig = dirs.work.join("kubeconfig");
            log.line(format!("creating kind cluster {name}"));
            let mut cmd = std::process::Command::new("kind");
            cmd.args([
                "create",
                "cluster",
                "--name",
                &name,
                "--wait",
                "300s",
                "--kubeconfig",
            ])
            .arg(&kubeconfig);
            // Recorded before it exists, so a sweep after a crash deletes it too.
            supervisor.set_endpoint(super::ledger::KIND_CLUSTER, name.clone());
            let out = supervisor
                .output("kind", cmd)
                .await
                .context("running `kind` (is it installed, with Docker running?)")?;
            if !out.status.success() {
                bail!(
                    "kind create cluster failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            (kubeconfig, None, Some(name))
        }
        ClusterKind::Existing => {
            let path = env
                .kubeconfig
                .clone()
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
                .context("no kubeconfig: set environment.kubeconfig or KUBECONFIG")?;
            (path, env.context.clone(), None)
        }
        ClusterKind::Local => bail!("`cluster: local` is the local test bed"),
    };
    let client = client_for(&kubeconfig, context.as_deref()).await?;
    let server = client
        .apiserver_version()
        .await
        .context("reaching the cluster")?;
    let info = ClusterInfo {
        kind: cluster.as_str().into(),
        server: kubeconfig.display().to_string(),
        kubeconfig: Some(kubeconfig.clone()),
        version: Some(server.git_version),
    };
    let summary = format!("kubeconfig {}", kubeconfig.display());
    supervisor.set_endpoint("kubeconfig", kubeconfig.display().to_string());
    let kube_cluster = Arc::new(KubeCluster::new(client, info));
    let stop: Arc<dyn Stop> = Arc::new(Remote {
        kind_cluster,
        supervisor: supervisor.clone(),
        work: dirs.work.clone(),
        summary,
    });
    let kind = match storage.kinds() {
        [one] => *one,
        _ => bail!(
            "`storage: {}`: a `{}` cluster runs with one storage (several, one per cloud, run on the local test bed only)",
            storage.as_str(),
            cluster.as_str()
        ),
    };
    match kind {
        StorageKind::Aws => {
            let target = AwsTarget {
                endpoint: None,
                region: region.to_string(),
                static_credentials: None,
                localstack: false,
                run_tag: supervisor.id(),
            };
            let store = Arc::new(S3Store::new(target.clone(), supervisor.redactor()).await?);
            let keys = Arc::new(KmsKeys::new(target).await);
            let velero = Arc::new(VeleroProvider::new(
                kube_cluster.clone(),
                kubeconfig,
                store.clone(),
                Box::new(CliBuilds),
                Mode::InCluster,
                dirs.work.clone(),
                supervisor.clone(),
            ));
            // Keys and buckets are real and outlive even a kind cluster: never disposable.
            Ok(Environment {
                cluster: kube_cluster,
                store,
                keys,
                velero,
                stop,
                watchdog: supervisor.watchdog(),
                disposable: false,
            })
        }
        StorageKind::Azure => {
            bail!("`storage: azure` (real Azure Blob Storage + Key Vault) is not implemented yet")
        }
        StorageKind::Gcp => {
            bail!("`storage: gcp` (real Google Cloud Storage + Cloud KMS) is not implemented yet")
        }
        StorageKind::Localstack | StorageKind::Azurite | StorageKind::FakeGcs => {
            bail!(
                "`storage: {}` runs on this machine's loopback, which Velero inside a `{}` cluster cannot reach",
                kind.as_str(),
                cluster.as_str()
            )
        }
    }
}
