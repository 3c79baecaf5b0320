//! The local test bed: a real control plane, LocalStack, Azurite and the Key
//! Vault emulator as processes on loopback, with Velero as a process.
//! Ports, data directories and names are per run, so drills can run side by side.

pub mod azurite;
pub mod cluster;
pub mod localstack;
pub mod manifest;
pub mod pki;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::aws::{AwsTarget, KmsKeys, S3Store};
use super::kube::KubeCluster;
use super::velero::{Build, Builds, Mode, VeleroProvider};
use super::{CellDirs, ClusterInfo, Environment, Stop};
use crate::runner::log::StepLog;
use crate::scenario::{Cell, StorageKind};
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
#[derive(Default)]
pub struct Bed {
    pub plane: Mutex<Option<ControlPlane>>,
    pub localstack: Mutex<Option<LocalStack>>,
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
        Ok(())
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

/// Start the bed for `cell` (or, with `detach`, for `vdrill testbed up`).
pub async fn start(cell: Option<&Cell>, storage: StorageKind, region: &str, dirs: &CellDirs, run_tag: &str, detach: bool, log: &StepLog) -> Result<Started> {
    // Provisions what is missing; fails before starting anything if a Velero version cannot be had.
    let manifest = Manifest::ensure(cell.map(|c| c.scenario.velero.version.as_str()), log).await?;
    if storage != StorageKind::Localstack {
        anyhow::bail!(
            "`storage: {}` on the local test bed is not available: velero-plugin-for-microsoft-azure cannot be built here (the Go module proxy refuses it); see ci/testbed/NOTES.md",
            storage.as_str()
        );
    }
    let work = dirs.work.clone();
    let logs = dirs.artifacts.join("env");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&logs)?;
    log.line(format!("work dir {}, process logs in {}", work.display(), logs.display()));

    let (plane, localstack) = tokio::join!(
        ControlPlane::start(&manifest, &work, &logs, detach, log),
        LocalStack::start(&manifest, &work, &logs, detach, log)
    );
    let (plane, localstack) = (plane?, localstack?);
    let info = ClusterInfo { kind: "local".into(), server: plane.server.clone(), kubeconfig: Some(plane.kubeconfig.clone()), version: Some(plane.version.clone()) };
    let cluster = Arc::new(KubeCluster::new(plane.client.clone(), info));
    let target = AwsTarget {
        endpoint: Some(localstack.endpoint.clone()),
        region: region.to_string(),
        static_credentials: Some(("test".into(), "test".into())),
        localstack: true,
        run_tag: run_tag.to_string(),
    };
    let store: Arc<S3Store> = Arc::new(S3Store::new(target.clone()).await?);
    let keys = Arc::new(KmsKeys::new(target).await);
    let velero = Arc::new(VeleroProvider::new(
        cluster.clone(),
        plane.kubeconfig.clone(),
        store.clone(),
        Box::new(BedBuilds(manifest)),
        Mode::Process { detach },
        work.clone(),
        logs,
    ));
    let kubeconfig = plane.kubeconfig.clone();
    let server = plane.server.clone();
    let s3_endpoint = Some(localstack.endpoint.clone());
    let bed = Arc::new(Bed { plane: Mutex::new(Some(plane)), localstack: Mutex::new(Some(localstack)) });
    let environment = Environment { cluster, store, keys, velero, stop: bed.clone() };
    Ok(Started { environment, kubeconfig, server, s3_endpoint, bed })
}
