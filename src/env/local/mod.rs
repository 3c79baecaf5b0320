//! The local test bed: a real control plane, LocalStack, Azurite and the Key
//! Vault emulator as processes on loopback, with Velero as a process.
//! Ports, data directories and names are per cell, so drills can run side by
//! side; every process is started through the cell's [`Supervisor`].

pub mod azurite;
pub mod cluster;
pub mod localstack;
pub mod lowkey;
pub mod manifest;
pub mod pki;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::aws::{AwsTarget, KmsKeys, S3Store};
use super::kube::KubeCluster;
use super::ledger::Kind;
use super::process::Supervisor;
use super::velero::{Build, Builds, Mode, VeleroProvider};
use super::{CellDirs, ClusterInfo, Environment, Stop};
use crate::log::StepLog;
use crate::scenario::StorageKind;
use cluster::ControlPlane;
use localstack::LocalStack;
use manifest::Manifest;

/// Velero builds of the test bed.
pub struct BedBuilds(pub Manifest);

impl Builds for BedBuilds {
    fn resolve(&self, version: &str) -> Result<Build> {
        let b = self.0.velero(version)?;
        Ok(Build { version: b.version.clone(), bin: b.bin.clone(), plugin_dir: b.plugin_dir.clone(), plugins: b.plugins.clone() })
    }
}

/// What runs for one cell, stopped in reverse order of starting.
pub struct Bed {
    pub plane: Mutex<Option<ControlPlane>>,
    pub localstack: Mutex<Option<LocalStack>>,
    pub supervisor: Supervisor,
    pub work: PathBuf,
    /// How to reach it, for `--keep`.
    pub summary: String,
}

#[async_trait]
impl Stop for Bed {
    async fn stop(&self, log: &StepLog) -> Result<()> {
        if let Some(mut ls) = self.localstack.lock().await.take() {
            log.line(format!("localstack: peak RSS {} MiB", ls.process.peak_rss_kib() / 1024));
            ls.stop().await?;
            log.line("LocalStack stopped");
        }
        if let Some(mut plane) = self.plane.lock().await.take() {
            for p in &plane.processes {
                log.line(format!("{}: peak RSS {} MiB", p.name, p.peak_rss_kib() / 1024));
            }
            plane.stop().await?;
            log.line("control plane stopped");
        }
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work).map_err(|e| anyhow::anyhow!("removing {}: {e}", self.work.display()))?;
        }
        self.supervisor.finish();
        Ok(())
    }

    async fn hand_over(&self, log: &StepLog) -> Result<String> {
        let record = self.supervisor.hand_over(Kind::Kept);
        log.line(format!("handed over {} process(es) as `{}`", record.processes.len(), record.id));
        Ok(format!("{}; remove it with `vdrill testbed down {}`", self.summary, record.id))
    }
}

/// The parts of a started bed that callers use.
pub struct Started {
    pub environment: Environment,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub s3_endpoint: Option<String>,
    pub bed: Arc<Bed>,
}

/// Start the bed with its processes under `supervisor`. `velero` is off for
/// `vdrill testbed up` (which starts no Velero).
pub async fn start(storage: StorageKind, region: &str, dirs: &CellDirs, supervisor: &Supervisor, log: &StepLog) -> Result<Started> {
    let manifest = Manifest::load()?;
    if storage != StorageKind::Localstack {
        anyhow::bail!(
            "`storage: {}` on the local test bed is not available: velero-plugin-for-microsoft-azure and the Key Vault emulator are not built here yet; see ci/testbed/NOTES.md",
            storage.as_str()
        );
    }
    let work = dirs.work.clone();
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(dirs.artifacts.join("env"))?;
    supervisor.add_dir(&work);
    log.line(format!("work dir {}, process logs in {}", work.display(), dirs.artifacts.join("env").display()));

    let (plane, localstack) = tokio::join!(ControlPlane::start(&manifest, &work, supervisor, log), LocalStack::start(&manifest, &work, supervisor, log));
    let (plane, localstack) = (plane?, localstack?);
    let info = ClusterInfo { kind: "local".into(), server: plane.server.clone(), kubeconfig: Some(plane.kubeconfig.clone()), version: Some(plane.version.clone()) };
    let cluster = Arc::new(KubeCluster::new(plane.client.clone(), info));
    let redactor = supervisor.redactor().clone();
    // LocalStack accepts any credentials; Velero gets a secret made for this bed.
    let secret_key = redactor.secret(super::hex(&super::random_bytes(20)?));
    let target = AwsTarget {
        endpoint: Some(localstack.endpoint.clone()),
        region: region.to_string(),
        static_credentials: Some(("test".into(), secret_key)),
        localstack: true,
        run_tag: supervisor.id(),
    };
    let store: Arc<S3Store> = Arc::new(S3Store::new(target.clone(), &redactor).await?);
    let keys = Arc::new(KmsKeys::new(target).await);
    let velero = Arc::new(VeleroProvider::new(
        cluster.clone(),
        plane.kubeconfig.clone(),
        store.clone(),
        Box::new(BedBuilds(manifest)),
        Mode::Process,
        work.clone(),
        supervisor.clone(),
    ));
    let kubeconfig = plane.kubeconfig.clone();
    let server = plane.server.clone();
    let s3_endpoint = Some(localstack.endpoint.clone());
    supervisor.set_endpoint("kubeconfig", kubeconfig.display().to_string());
    supervisor.set_endpoint("api server", server.clone());
    supervisor.set_endpoint("S3 + KMS (LocalStack)", localstack.endpoint.clone());
    supervisor.set_endpoint("logs", work.join("logs").display().to_string());
    let summary = format!("kubeconfig {}, API server {server}, S3 + KMS {}, work dir {}", kubeconfig.display(), localstack.endpoint, work.display());
    let bed = Arc::new(Bed { plane: Mutex::new(Some(plane)), localstack: Mutex::new(Some(localstack)), supervisor: supervisor.clone(), work: work.clone(), summary });
    let environment =
        Environment { cluster, store, keys, velero, stop: bed.clone(), watchdog: supervisor.watchdog(), disposable: true };
    Ok(Started { environment, kubeconfig, server, s3_endpoint, bed })
}
