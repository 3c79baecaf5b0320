//! Clusters vdrill does not run itself (kind, an existing kubeconfig) and real
//! cloud storage. Velero runs in the cluster from its install manifests, so its
//! images must be pullable there.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;

use super::aws::{AwsTarget, KmsKeys, S3Store};
use super::kind::{
    ImageSource, KindSetup, LocalStackContainer, create_cluster, delete_cluster, load_images,
    remove_container,
};
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
    kind: Option<KindSetup>,
    /// A container of this cell beside the cluster (LocalStack).
    container: Option<String>,
    supervisor: Supervisor,
    work: PathBuf,
    summary: String,
}

#[async_trait]
impl Stop for Remote {
    async fn stop(&self, log: &StepLog) -> Result<()> {
        let setup = self.kind.clone().unwrap_or_else(|| {
            KindSetup::resolve(ImageSource::Upstream).expect("upstream needs no manifest")
        });
        if let Some(name) = &self.container {
            remove_container(&setup, name, &self.supervisor).await?;
            log.line(format!("removed container {name}"));
        }
        if let Some(name) = &self.kind_cluster {
            delete_cluster(&setup, name, &self.supervisor).await?;
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

/// What an in-cluster environment is made of besides its store.
struct InCluster<'a> {
    cluster: Arc<KubeCluster>,
    kubeconfig: PathBuf,
    dirs: &'a CellDirs,
    supervisor: &'a Supervisor,
    stop: Arc<dyn Stop>,
}

/// S3 + KMS (AWS or LocalStack) with Velero installed in the cluster.
async fn aws_environment(
    target: AwsTarget,
    images: std::collections::BTreeMap<String, super::velero::Images>,
    disposable: bool,
    p: InCluster<'_>,
) -> Result<Environment> {
    let store = Arc::new(S3Store::new(target.clone(), p.supervisor.redactor()).await?);
    let keys = Arc::new(KmsKeys::new(target).await);
    let velero = Arc::new(
        VeleroProvider::new(
            p.cluster.clone(),
            p.kubeconfig,
            store.clone(),
            Box::new(CliBuilds),
            Mode::InCluster,
            p.dirs.work.clone(),
            p.supervisor.clone(),
        )
        .with_images(images),
    );
    Ok(Environment {
        cluster: p.cluster,
        store,
        keys,
        velero,
        stop: p.stop,
        watchdog: p.supervisor.watchdog(),
        disposable,
    })
}

/// The Velero versions a cell may run: its own and those it upgrades to.
fn velero_versions(cell: &Cell) -> Vec<String> {
    let s = &cell.scenario;
    let mut out = vec![s.velero.version.clone()];
    for step in s.steps.iter().chain(&s.finally) {
        if let crate::scenario::Step::UpgradeVelero(u) = step {
            out.push(u.version.clone());
        }
    }
    out
}

/// Wait until the cluster's DNS (CoreDNS) serves: Velero reaches LocalStack by name.
async fn wait_dns(client: &kube::Client, log: &StepLog) -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "kube-system");
    let t0 = std::time::Instant::now();
    loop {
        let list = pods
            .list(&kube::api::ListParams::default().labels("k8s-app=kube-dns"))
            .await
            .context("listing the cluster's DNS pods")?;
        let ready = |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        if !list.items.is_empty() && list.items.iter().all(ready) {
            log.line(format!(
                "cluster DNS ready after {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if t0.elapsed() > std::time::Duration::from_secs(180) {
            bail!(
                "the cluster's DNS (pods k8s-app=kube-dns in kube-system) was not Ready within 180 s"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn start(
    cell: &Cell,
    cluster: ClusterKind,
    storage: &Storage,
    region: &str,
    dirs: &CellDirs,
    supervisor: &Supervisor,
    images: ImageSource,
    log: &StepLog,
) -> Result<Environment> {
    std::fs::create_dir_all(&dirs.work)
        .with_context(|| format!("creating the cell's work folder {}", dirs.work.display()))?;
    supervisor.add_dir(&dirs.work);
    let env = &cell.scenario.environment;
    let mut kind_setup = None;
    let (kubeconfig, context, kind_cluster) = match cluster {
        ClusterKind::Kind => {
            let setup = KindSetup::resolve(images)?;
            let name = format!("vdrill-{}", crate::report::slug(&supervisor.id()))
                .chars()
                .take(40)
                .collect::<String>()
                .to_lowercase();
            let kubeconfig = dirs.work.join("kubeconfig");
            // Recorded before it exists, so a sweep after a crash deletes it too.
            supervisor.set_endpoint(super::ledger::KIND_CLUSTER, name.clone());
            supervisor.set_endpoint(
                super::ledger::KIND_BIN,
                setup.kind_bin.display().to_string(),
            );
            if let Some(h) = &setup.docker_host {
                supervisor.set_endpoint(super::ledger::DOCKER_HOST, h.clone());
            }
            create_cluster(&setup, &name, &kubeconfig, supervisor, log).await?;
            let load = setup.images_to_load(&velero_versions(cell));
            load_images(&setup, &name, &load, supervisor, log).await?;
            kind_setup = Some(setup);
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
    if kind_setup.is_some() {
        wait_dns(&client, log).await?;
    }
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
    // With the bed's images, workloads written for upstream's busybox run the bed's.
    let workload_images = kind_setup
        .as_ref()
        .and_then(|k| k.bed.as_ref())
        .and_then(|m| m.images.as_ref())
        .and_then(|i| i.workload.as_ref())
        .map(|w| [(w.upstream.clone(), w.image.clone())].into())
        .unwrap_or_default();
    let kube_cluster = Arc::new(KubeCluster::new(client, info).with_images(workload_images));
    let kind = match storage.kinds() {
        [one] => *one,
        _ => bail!(
            "`storage: {}`: a `{}` cluster runs with one storage (several, one per cloud, run on the local test bed only)",
            storage.as_str(),
            cluster.as_str()
        ),
    };
    // LocalStack beside a kind cluster: a container on the cluster's Docker network.
    let container = match (&kind_cluster, kind) {
        (Some(name), StorageKind::Localstack) => {
            let c = format!("{name}-localstack");
            supervisor.set_endpoint(super::ledger::CONTAINER, c.clone());
            Some(c)
        }
        _ => None,
    };
    let stop: Arc<dyn Stop> = Arc::new(Remote {
        kind_cluster,
        kind: kind_setup.clone(),
        container: container.clone(),
        supervisor: supervisor.clone(),
        work: dirs.work.clone(),
        summary,
    });
    match kind {
        StorageKind::Aws => {
            let target = AwsTarget {
                endpoint: None,
                region: region.to_string(),
                static_credentials: None,
                localstack: false,
                run_tag: supervisor.id(),
                cluster_endpoint: None,
            };
            // Keys and buckets are real and outlive even a kind cluster: never disposable.
            let parts = InCluster {
                cluster: kube_cluster,
                kubeconfig,
                dirs,
                supervisor,
                stop,
            };
            aws_environment(target, Default::default(), false, parts).await
        }
        StorageKind::Azure => {
            bail!("`storage: azure` (real Azure Blob Storage + Key Vault) is not implemented yet")
        }
        StorageKind::Gcp => {
            bail!("`storage: gcp` (real Google Cloud Storage + Cloud KMS) is not implemented yet")
        }
        StorageKind::Localstack if container.is_some() => {
            let setup = kind_setup.clone().expect("a kind cell");
            let name = container.clone().expect("checked");
            let ls = LocalStackContainer::start(&setup, &name, &supervisor.id(), log).await?;
            let ls_endpoint = ls.endpoint.clone();
            let ls_cluster_endpoint = ls.cluster_endpoint.clone();
            // The cell's teardown (or `vdrill testbed down`) removes it by name.
            ls.release();
            supervisor.set_endpoint("S3 + KMS (LocalStack container)", ls_endpoint.clone());
            // LocalStack accepts any credentials; Velero gets a secret made for this cell.
            let secret_key = supervisor
                .redactor()
                .secret(super::hex(&super::random_bytes(20)?));
            let target = AwsTarget {
                endpoint: Some(ls_endpoint),
                region: region.to_string(),
                static_credentials: Some(("test".into(), secret_key)),
                localstack: true,
                run_tag: supervisor.id(),
                cluster_endpoint: Some(ls_cluster_endpoint),
            };
            let images = velero_versions(cell)
                .iter()
                .filter_map(|v| {
                    let built = setup.bed.as_ref()?.velero(v).ok()?.version.clone();
                    Some((built.clone(), setup.velero_images(&built)?))
                })
                .collect();
            // Everything here is this cell's: the cluster, LocalStack and its keys.
            let parts = InCluster {
                cluster: kube_cluster,
                kubeconfig,
                dirs,
                supervisor,
                stop,
            };
            aws_environment(target, images, true, parts).await
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
