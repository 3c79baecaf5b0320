//! The local test bed: a real control plane, LocalStack, Azurite and the Key
//! Vault emulator, fake-gcs-server, as processes on loopback, with Velero as a process.
//! Ports, data directories and names are per cell, so drills can run side by
//! side; every process is started through the cell's [`Supervisor`].

pub mod azurite;
pub mod cluster;
pub mod fakegcs;
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
use super::azure::blob::{BlobStore, BlobTarget};
use super::azure::keyvault::{KeyVault, VaultTarget};
use super::gcp::gcs::{GcsStore, GcsTarget};
use super::gcp::kms::KeyNames;
use super::kube::KubeCluster;
use super::ledger::Kind;
use super::multi::{Keys, Stores};
use super::process::Supervisor;
use super::velero::{Build, Builds, Mode, VeleroProvider};
use super::{CellDirs, ClusterInfo, Environment, KeyManager, ObjectStore, Stop};
use crate::log::StepLog;
use crate::scenario::{KeyProvider, LocationProvider, Storage, StorageKind};
use azurite::Azurite;
use cluster::ControlPlane;
use fakegcs::FakeGcs;
use localstack::LocalStack;
use lowkey::LowkeyVault;
use manifest::Manifest;

/// Velero builds of the test bed.
pub struct BedBuilds(pub Manifest);

impl Builds for BedBuilds {
    fn resolve(&self, version: &str) -> Result<Build> {
        let b = self.0.velero(version)?;
        Ok(Build {
            version: b.version.clone(),
            bin: b.bin.clone(),
            plugin_dir: b.plugin_dir.clone(),
            plugins: b.plugins.clone(),
        })
    }
}

/// What runs for one cell, stopped in reverse order of starting.
pub struct Bed {
    pub plane: Mutex<Option<ControlPlane>>,
    pub localstack: Mutex<Option<LocalStack>>,
    pub azurite: Mutex<Option<Azurite>>,
    pub lowkey: Mutex<Option<LowkeyVault>>,
    pub fake_gcs: Mutex<Option<FakeGcs>>,
    pub supervisor: Supervisor,
    pub work: PathBuf,
    /// How to reach it, for `--keep`.
    pub summary: String,
}

#[async_trait]
impl Stop for Bed {
    async fn stop(&self, log: &StepLog) -> Result<()> {
        if let Some(mut ls) = self.localstack.lock().await.take() {
            log.line(format!(
                "localstack: peak RSS {} MiB",
                ls.process.peak_rss_kib() / 1024
            ));
            ls.stop().await?;
            log.line("LocalStack stopped");
        }
        if let Some(mut az) = self.azurite.lock().await.take() {
            log.line(format!(
                "azurite: peak RSS {} MiB",
                az.process.peak_rss_kib() / 1024
            ));
            az.stop().await?;
            log.line("Azurite stopped");
        }
        if let Some(mut kv) = self.lowkey.lock().await.take() {
            log.line(format!(
                "lowkey-vault: peak RSS {} MiB",
                kv.process.peak_rss_kib() / 1024
            ));
            kv.stop().await?;
            log.line("lowkey-vault stopped");
        }
        if let Some(mut fg) = self.fake_gcs.lock().await.take() {
            log.line(format!(
                "fake-gcs-server: peak RSS {} MiB",
                fg.process.peak_rss_kib() / 1024
            ));
            fg.stop().await?;
            log.line("fake-gcs-server stopped");
        }
        if let Some(mut plane) = self.plane.lock().await.take() {
            for p in &plane.processes {
                log.line(format!(
                    "{}: peak RSS {} MiB",
                    p.name,
                    p.peak_rss_kib() / 1024
                ));
            }
            plane.stop().await?;
            log.line("control plane stopped");
        }
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", self.work.display()))?;
        }
        self.supervisor.finish();
        Ok(())
    }

    async fn hand_over(&self, log: &StepLog) -> Result<String> {
        let record = self.supervisor.hand_over(Kind::Kept);
        log.line(format!(
            "handed over {} process(es) as `{}`",
            record.processes.len(),
            record.id
        ));
        Ok(format!(
            "{}; remove it with `vdrill testbed down {}`",
            self.summary, record.id
        ))
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

/// Start the bed with its processes under `supervisor`: the control plane and the
/// emulators of each storage in `storage` (one per cloud).
pub async fn start(
    storage: &Storage,
    region: &str,
    dirs: &CellDirs,
    supervisor: &Supervisor,
    log: &StepLog,
) -> Result<Started> {
    let manifest = Manifest::load()?;
    if let Some(k) = storage.kinds().iter().find(|k| !k.is_local()) {
        anyhow::bail!(
            "`storage: {}` does not run on the local test bed; use `localstack`, `azurite` or `fake-gcs`",
            k.as_str()
        );
    }
    let work = dirs.work.clone();
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(dirs.artifacts.join("env"))?;
    supervisor.add_dir(&work);
    log.line(format!(
        "work dir {}, process logs in {}",
        work.display(),
        dirs.artifacts.join("env").display()
    ));
    let redactor = supervisor.redactor().clone();

    // The control plane and the emulators start side by side.
    let want = |k: StorageKind| storage.contains(k);
    let (plane, localstack, azure, fake_gcs) = tokio::join!(
        ControlPlane::start(&manifest, &work, supervisor, log),
        async {
            if want(StorageKind::Localstack) {
                LocalStack::start(&manifest, &work, supervisor, log)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if !want(StorageKind::Azurite) {
                return Ok::<_, anyhow::Error>(None);
            }
            let (az, kv) = tokio::join!(
                Azurite::start(&manifest, &work, supervisor, log),
                LowkeyVault::start(&manifest, &work, supervisor, log)
            );
            Ok(Some((az?, kv?)))
        },
        async {
            if want(StorageKind::FakeGcs) {
                FakeGcs::start(&manifest, &work, supervisor, log)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
    );
    let (plane, localstack, azure, fake_gcs) = (plane?, localstack?, azure?, fake_gcs?);
    let info = ClusterInfo {
        kind: "local".into(),
        server: plane.server.clone(),
        kubeconfig: Some(plane.kubeconfig.clone()),
        version: Some(plane.version.clone()),
    };
    let cluster = Arc::new(KubeCluster::new(plane.client.clone(), info));
    let kubeconfig = plane.kubeconfig.clone();
    let server = plane.server.clone();
    supervisor.set_endpoint("kubeconfig", kubeconfig.display().to_string());
    supervisor.set_endpoint("api server", server.clone());
    supervisor.set_endpoint("logs", work.join("logs").display().to_string());

    let mut stores: Vec<(LocationProvider, Arc<dyn ObjectStore>)> = Vec::new();
    let mut managers: Vec<(KeyProvider, Arc<dyn KeyManager>)> = Vec::new();
    let mut reach = Vec::new();
    let mut s3_endpoint = None;
    if let Some(localstack) = &localstack {
        // LocalStack accepts any credentials; Velero gets a secret made for this bed.
        let secret_key = redactor.secret(super::hex(&super::random_bytes(20)?));
        let target = AwsTarget {
            endpoint: Some(localstack.endpoint.clone()),
            region: region.to_string(),
            static_credentials: Some(("test".into(), secret_key)),
            localstack: true,
            run_tag: supervisor.id(),
            cluster_endpoint: None,
        };
        stores.push((
            LocationProvider::Aws,
            Arc::new(S3Store::new(target.clone(), &redactor).await?),
        ));
        managers.push((KeyProvider::AwsKms, Arc::new(KmsKeys::new(target).await)));
        supervisor.set_endpoint("S3 + KMS (LocalStack)", localstack.endpoint.clone());
        reach.push(format!("S3 + KMS {}", localstack.endpoint));
        s3_endpoint = Some(localstack.endpoint.clone());
    }
    if let Some((az, kv)) = &azure {
        let target = BlobTarget {
            endpoint: az.blob_endpoint.clone(),
            account: az.account.clone(),
            key: az.key.clone(),
            emulator: true,
        };
        stores.push((
            LocationProvider::Azure,
            Arc::new(BlobStore::new(target, &redactor).await?),
        ));
        let vault = VaultTarget {
            url: kv.url.clone(),
            ca_pem: Some(kv.ca_pem.clone()),
            token: Some(kv.token.clone()),
            emulator: true,
        };
        managers.push((
            KeyProvider::AzureKeyvault,
            Arc::new(KeyVault::new(vault).await?),
        ));
        supervisor.set_endpoint("Azure Blob (Azurite)", az.blob_endpoint.clone());
        supervisor.set_endpoint("Key Vault (lowkey-vault)", kv.url.clone());
        reach.push(format!(
            "Azure Blob {}, Key Vault {}",
            az.blob_endpoint, kv.url
        ));
    }
    if let Some(fg) = &fake_gcs {
        let target = GcsTarget {
            endpoint: fg.endpoint.clone(),
            project: "vdrill".into(),
            emulator: true,
        };
        stores.push((
            LocationProvider::Gcp,
            Arc::new(GcsStore::new(target, &redactor).await?),
        ));
        managers.push((KeyProvider::GcpKms, Arc::new(KeyNames)));
        supervisor.set_endpoint("GCS (fake-gcs-server)", fg.endpoint.clone());
        reach.push(format!("GCS {}", fg.endpoint));
    }
    let (store, keys): (Arc<dyn ObjectStore>, Arc<dyn KeyManager>) = if stores.len() == 1 {
        (stores.remove(0).1, managers.remove(0).1)
    } else {
        (Arc::new(Stores::new(stores)), Arc::new(Keys::new(managers)))
    };
    let velero = Arc::new(VeleroProvider::new(
        cluster.clone(),
        plane.kubeconfig.clone(),
        store.clone(),
        Box::new(BedBuilds(manifest)),
        Mode::Process,
        work.clone(),
        supervisor.clone(),
    ));
    let summary = format!(
        "kubeconfig {}, API server {server}, {}, work dir {}",
        kubeconfig.display(),
        reach.join(", "),
        work.display()
    );
    let (azurite, lowkey) = match azure {
        Some((az, kv)) => (Some(az), Some(kv)),
        None => (None, None),
    };
    let bed = Arc::new(Bed {
        plane: Mutex::new(Some(plane)),
        localstack: Mutex::new(localstack),
        azurite: Mutex::new(azurite),
        lowkey: Mutex::new(lowkey),
        fake_gcs: Mutex::new(fake_gcs),
        supervisor: supervisor.clone(),
        work: work.clone(),
        summary,
    });
    let environment = Environment {
        cluster,
        store,
        keys,
        velero,
        stop: bed.clone(),
        watchdog: supervisor.watchdog(),
        disposable: true,
    };
    Ok(Started {
        environment,
        kubeconfig,
        server,
        s3_endpoint,
        bed,
    })
}
