//! kind clusters and the Docker containers beside them (LocalStack for kind cells).
//!
//! Every `kind` and `docker` command gets the Docker host of the chosen images: the
//! test bed's engine (its manifest's `docker.host`) with the bed's images, the user's
//! (DOCKER_HOST or Docker's default) with upstream images.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::local::manifest::{Image, Manifest};
use super::process::Supervisor;
pub use super::providers::ImageSource;
use crate::log::StepLog;
use testcontainers::ContainerAsync;
use testcontainers::ImageExt;
use testcontainers::bollard::models::PortBinding;
use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers_modules::localstack::LocalStack;

/// What a kind cell runs with, resolved from the image source and the manifest.
#[derive(Debug, Clone)]
pub struct KindSetup {
    pub kind_bin: PathBuf,
    pub docker_host: Option<String>,
    pub node_image: Option<String>,
    pub config: Option<PathBuf>,
    /// The bed's manifest when its images are used.
    pub bed: Option<Manifest>,
}

impl KindSetup {
    pub fn resolve(source: ImageSource) -> Result<KindSetup> {
        let manifest = Manifest::load().ok();
        let bed_has_images = manifest
            .as_ref()
            .is_some_and(|m| m.images.is_some() && m.kind.is_some() && m.docker.is_some());
        let use_bed = match source {
            ImageSource::Upstream => false,
            ImageSource::Auto => bed_has_images,
            ImageSource::Testbed if bed_has_images => true,
            ImageSource::Testbed => bail!(
                "--images testbed: the local test bed has no kind images; build them with `ci/testbed/setup.sh kind-node images`"
            ),
        };
        if !use_bed {
            return Ok(KindSetup {
                kind_bin: PathBuf::from("kind"),
                docker_host: None,
                node_image: None,
                config: None,
                bed: None,
            });
        }
        let m = manifest.expect("checked above");
        let kind = m.kind.clone().expect("checked above");
        Ok(KindSetup {
            kind_bin: kind.bin.clone(),
            docker_host: m.docker.as_ref().map(|d| d.host.clone()),
            node_image: kind.node_image.clone(),
            config: kind.config.clone(),
            bed: Some(m),
        })
    }

    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if let Some(h) = &self.docker_host {
            cmd.env("DOCKER_HOST", h);
        }
        cmd
    }

    pub fn kind(&self) -> Command {
        self.command(&self.kind_bin)
    }

    pub fn docker(&self) -> Command {
        self.command(Path::new("docker"))
    }

    /// Images of the bed to load into the cell's cluster: Velero (each version the cell
    /// may run) with its plugins, and the workload image. Empty with upstream images.
    pub fn images_to_load(&self, velero_versions: &[String]) -> Vec<Image> {
        let Some(images) = self.bed.as_ref().and_then(|m| m.images.as_ref()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in velero_versions {
            let Some(build) = self.bed.as_ref().and_then(|m| m.velero(v).ok()) else {
                continue;
            };
            if let Some(vi) = images.velero.get(&build.version) {
                out.push(vi.velero.clone());
                out.extend(vi.plugins.values().cloned());
            }
        }
        out.extend(images.workload.clone());
        out
    }

    /// The Velero image and plugin images for a version: the bed's, else none (upstream's).
    pub fn velero_images(&self, version: &str) -> Option<super::velero::Images> {
        let m = self.bed.as_ref()?;
        let vi = m.images.as_ref()?.velero.get(version)?;
        Some(super::velero::Images {
            velero: vi.velero.image.clone(),
            plugins: vi
                .plugins
                .iter()
                .map(|(k, i)| (k.clone(), i.image.clone()))
                .collect(),
        })
    }

    /// LocalStack's image: the bed's, else upstream's for the bed's pinned version.
    pub fn localstack_image(&self) -> String {
        if let Some(i) = self
            .bed
            .as_ref()
            .and_then(|m| m.images.as_ref())
            .and_then(|i| i.localstack.as_ref())
        {
            return i.image.clone();
        }
        let version = self
            .bed
            .as_ref()
            .or(Manifest::load().ok().as_ref())
            .and_then(|m| m.localstack.as_ref().map(|l| l.version.clone()))
            .unwrap_or_else(|| "latest".into());
        format!("localstack/localstack:{version}")
    }
}

async fn run(supervisor: &Supervisor, what: &str, cmd: Command) -> Result<String> {
    let out = supervisor
        .output(what, cmd)
        .await
        .with_context(|| format!("running `{what}` (is it installed, with Docker running?)"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Make sure the bed's engine has the node image as built (its data may have been
/// wiped, or another build may carry the name).
pub async fn ensure_node_image(
    setup: &KindSetup,
    supervisor: &Supervisor,
    log: &StepLog,
) -> Result<()> {
    let Some(kind) = setup.bed.as_ref().and_then(|m| m.kind.as_ref()) else {
        return Ok(());
    };
    let (Some(image), Some(id), Some(archive)) =
        (&kind.node_image, &kind.node_image_id, &kind.node_archive)
    else {
        return Ok(());
    };
    let mut cmd = setup.docker();
    cmd.args(["image", "inspect", "--format", "{{.Id}}", image]);
    let have = supervisor.output("docker", cmd).await?;
    if String::from_utf8_lossy(&have.stdout).trim() == id {
        return Ok(());
    }
    log.line(format!(
        "loading the node image {image} into the bed's engine"
    ));
    let mut cmd = setup.docker();
    cmd.arg("load").arg("-i").arg(archive);
    run(supervisor, "docker", cmd).await?;
    Ok(())
}

/// Create a kind cluster of its own name and kubeconfig (never ~/.kube/config).
pub async fn create_cluster(
    setup: &KindSetup,
    name: &str,
    kubeconfig: &Path,
    supervisor: &Supervisor,
    log: &StepLog,
) -> Result<Duration> {
    ensure_node_image(setup, supervisor, log).await?;
    let mut cmd = setup.kind();
    cmd.args(["create", "cluster", "--name", name, "--wait", "300s"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("KUBECONFIG", kubeconfig);
    if let Some(i) = &setup.node_image {
        cmd.args(["--image", i]);
    }
    if let Some(c) = &setup.config {
        cmd.arg("--config").arg(c);
    }
    log.line(format!(
        "creating kind cluster {name}{}",
        setup
            .node_image
            .as_deref()
            .map(|i| format!(" from {i}"))
            .unwrap_or_default()
    ));
    let t0 = Instant::now();
    run(supervisor, "kind", cmd)
        .await
        .context("kind create cluster")?;
    let took = t0.elapsed();
    log.line(format!(
        "kind cluster {name} up in {:.1} s",
        took.as_secs_f64()
    ));
    Ok(took)
}

/// Load image archives into the cluster's node.
pub async fn load_images(
    setup: &KindSetup,
    name: &str,
    images: &[Image],
    supervisor: &Supervisor,
    log: &StepLog,
) -> Result<()> {
    for i in images {
        let t0 = Instant::now();
        let mut cmd = setup.kind();
        cmd.args(["load", "image-archive"])
            .arg(&i.archive)
            .args(["--name", name]);
        run(supervisor, "kind", cmd)
            .await
            .with_context(|| format!("loading {} into kind cluster {name}", i.image))?;
        log.line(format!(
            "loaded {} in {:.1} s",
            i.image,
            t0.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

pub async fn delete_cluster(setup: &KindSetup, name: &str, supervisor: &Supervisor) -> Result<()> {
    let mut cmd = setup.kind();
    cmd.args(["delete", "cluster", "--name", name]);
    run(supervisor, "kind", cmd).await.map(|_| ())
}

/// The label on every container vdrill starts, with the run's id as its value.
pub const CONTAINER_LABEL: &str = "io.vdrill.run";

/// LocalStack (S3 + KMS) as a container on the `kind` Docker network, started through
/// testcontainers (its LocalStack module: the image's name and "Ready." as the signal):
/// Velero's pods reach it by its name, vdrill on a port published on 127.0.0.1 only.
pub struct LocalStackContainer {
    pub name: String,
    /// For vdrill: `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// For Velero's pods: `http://<name>:4566`.
    pub cluster_endpoint: String,
    /// Removed by `remove` (or by name at teardown); never by dropping it (see `start`).
    container: Option<ContainerAsync<LocalStack>>,
}

/// The bed's Docker engine (`ci/testbed/docker.sh`): a socket under the cache.
pub fn bed_docker_host() -> String {
    format!(
        "unix://{}",
        super::cache_dir().join("docker/docker.sock").display()
    )
}

/// The Docker engine for this process's testcontainers, which reach Docker only through
/// `DOCKER_HOST` (there is no client to hand them). `main` sets it before any thread
/// exists: the bed's engine when kind cells will run the bed's images (built by the
/// provisioning phase when missing), unless the user chose an engine.
pub fn docker_host_for_testcontainers(images: ImageSource) -> Option<String> {
    if images == ImageSource::Upstream || std::env::var_os("DOCKER_HOST").is_some() {
        return None;
    }
    let bed = Manifest::load().is_ok_and(|m| m.docker.is_some())
        || super::provision::setup_script().is_some();
    (images == ImageSource::Testbed || bed).then(bed_docker_host)
}

/// `name:tag` split for testcontainers (a registry's `host:port/` is part of the name).
fn name_and_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

impl LocalStackContainer {
    pub async fn start(
        setup: &KindSetup,
        name: &str,
        run_id: &str,
        log: &StepLog,
    ) -> Result<LocalStackContainer> {
        // testcontainers talks to the engine of DOCKER_HOST; the cluster is on the engine
        // of the chosen images: they must be one.
        let env_host = std::env::var("DOCKER_HOST").ok();
        if let Some(want) = &setup.docker_host
            && env_host.as_deref() != Some(want.as_str())
        {
            bail!(
                "LocalStack would start on another Docker engine ({}) than the kind cluster's ({want}): run with DOCKER_HOST={want}, or with `--images upstream`",
                env_host.as_deref().unwrap_or("Docker's default")
            );
        }
        let image = setup.localstack_image();
        let (image_name, tag) = name_and_tag(&image);
        log.line(format!(
            "starting LocalStack container {name} ({image}) through testcontainers"
        ));
        let t0 = Instant::now();
        let request = LocalStack::default()
            .with_name(image_name)
            .with_tag(tag)
            .with_container_name(name)
            .with_network("kind")
            .with_label(CONTAINER_LABEL, run_id)
            // As on the local bed: S3 and KMS, keys checked by S3, nothing that calls out.
            .with_env_var("SERVICES", "s3,kms")
            .with_env_var("S3_SKIP_KMS_KEY_VALIDATION", "0")
            .with_env_var("EAGER_SERVICE_LOADING", "1")
            .with_env_var("DISABLE_EVENTS", "1")
            .with_env_var("SKIP_SSL_CERT_DOWNLOAD", "1")
            .with_env_var("DNS_ADDRESS", "0")
            .with_mapped_port(0, 4566.tcp())
            // testcontainers publishes on every interface; this one on loopback only.
            .with_host_config_modifier(|hc| {
                hc.publish_all_ports = Some(false);
                hc.port_bindings = Some(
                    [(
                        "4566/tcp".to_string(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some(String::new()),
                        }]),
                    )]
                    .into_iter()
                    .collect(),
                );
            })
            .with_startup_timeout(Duration::from_secs(120));
        let container = request
            .start()
            .await
            .with_context(|| format!("starting the LocalStack container {name} ({image})"))?;
        let port = container
            .get_host_port_ipv4(4566.tcp())
            .await
            .context("LocalStack's published port")?;
        let hostport = format!("127.0.0.1:{port}");
        log.line(format!(
            "LocalStack ready in {:.1} s at {hostport} (in the cluster: {name}:4566)",
            t0.elapsed().as_secs_f64()
        ));
        Ok(LocalStackContainer {
            name: name.to_string(),
            endpoint: format!("http://{hostport}"),
            cluster_endpoint: format!("http://{name}:4566"),
            container: Some(container),
        })
    }

    /// Leave the container to the cell's teardown, which removes it by name (or to
    /// `vdrill testbed down` when the cell is kept): dropping a testcontainers handle
    /// would remove it at once.
    pub fn release(mut self) {
        if let Some(c) = self.container.take() {
            std::mem::forget(c);
        }
    }
}

pub async fn remove_container(
    setup: &KindSetup,
    name: &str,
    supervisor: &Supervisor,
) -> Result<()> {
    let mut cmd = setup.docker();
    cmd.args(["rm", "--force", "--volumes", name]);
    run(supervisor, "docker", cmd).await.map(|_| ())
}
