//! The test bed manifest `ci/testbed/setup.sh` writes: where each built component is.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub cache: PathBuf,
    pub kubernetes: Option<Kubernetes>,
    pub etcd: Option<Etcd>,
    #[serde(default)]
    pub velero: Vec<VeleroBuild>,
    pub localstack: Option<Localstack>,
    pub azurite: Option<Azurite>,
    pub lowkey_vault: Option<LowkeyVault>,
    pub fake_gcs: Option<FakeGcs>,
    /// The bed's Docker engine (ci/testbed/docker.sh).
    pub docker: Option<Docker>,
    /// kind and the node image built here (ci/testbed/kind-node.sh).
    pub kind: Option<Kind>,
    /// Images for kind cells built here (ci/testbed/images.sh).
    pub images: Option<Images>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Docker {
    /// DOCKER_HOST of the bed's engine, e.g. `unix:///…/docker.sock`.
    pub host: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Kind {
    pub version: String,
    pub bin: PathBuf,
    /// The kind Cluster config to create clusters with.
    pub config: Option<PathBuf>,
    pub node_image: Option<String>,
    pub node_image_id: Option<String>,
    pub node_archive: Option<PathBuf>,
}

/// An image built here: its name, its docker-save archive and the upstream image it stands for.
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    pub image: String,
    pub archive: PathBuf,
    pub upstream: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VeleroImages {
    #[serde(flatten)]
    pub velero: Image,
    #[serde(default)]
    pub plugins: std::collections::BTreeMap<String, Image>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Images {
    #[serde(default)]
    pub velero: std::collections::BTreeMap<String, VeleroImages>,
    pub workload: Option<Image>,
    pub localstack: Option<Image>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Kubernetes {
    pub version: String,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Etcd {
    pub version: String,
    pub bin: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VeleroBuild {
    pub version: String,
    pub bin: PathBuf,
    pub plugin_dir: PathBuf,
    #[serde(default)]
    pub plugins: std::collections::BTreeMap<String, String>,
    /// Pinned in `ci/testbed/versions.env` (false: built on demand for a run that asked for it).
    #[serde(default = "yes")]
    pub pinned: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct Localstack {
    pub version: String,
    pub python: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Azurite {
    pub version: String,
    pub blob_bin: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LowkeyVault {
    pub version: String,
    pub jar: PathBuf,
    pub java: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FakeGcs {
    pub version: String,
    pub bin: PathBuf,
}

pub use crate::env::cache_dir;

pub const SETUP_HINT: &str = "provision the local test bed with `vdrill testbed prepare` (it runs ci/testbed/setup.sh, which builds everything from the package registries)";

impl Manifest {
    pub fn load() -> Result<Manifest> {
        let path = cache_dir().join("testbed.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "the local test bed is not provisioned ({} is missing); {SETUP_HINT}",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a test bed manifest; {SETUP_HINT}",
                path.display()
            )
        })
    }

    /// The build for a version such as `1.18`, `v1.18` or `1.18.3`. A minor means its
    /// newest pinned patch; only when none is pinned, the newest built on demand (a
    /// version built for one run must not replace the pinned one in the next).
    pub fn velero(&self, version: &str) -> Result<&VeleroBuild> {
        let want = version.trim_start_matches('v');
        let mut matches: Vec<&VeleroBuild> = self
            .velero
            .iter()
            .filter(|b| {
                let have = b.version.trim_start_matches('v');
                have == want || have.starts_with(&format!("{want}."))
            })
            .collect();
        if matches.iter().any(|b| b.pinned) {
            matches.retain(|b| b.pinned || b.version.trim_start_matches('v') == want);
        }
        matches.sort_by_key(|b| {
            (
                b.version.trim_start_matches('v') == want,
                b.version
                    .trim_start_matches('v')
                    .split('.')
                    .map(|p| p.parse::<u32>().unwrap_or(0))
                    .collect::<Vec<_>>(),
            )
        });
        match matches.last() {
            Some(b) => Ok(b),
            None => {
                let have: Vec<&str> = self.velero.iter().map(|b| b.version.as_str()).collect();
                bail!(
                    "Velero {version} is not in the local test bed (it has {}); `vdrill run` builds it (provisioning phase), or `vdrill testbed prepare`",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                )
            }
        }
    }

    pub fn kubernetes(&self) -> Result<&Kubernetes> {
        self.kubernetes
            .as_ref()
            .with_context(|| format!("kube-apiserver is not in the local test bed; {SETUP_HINT}"))
    }

    pub fn etcd(&self) -> Result<&Etcd> {
        self.etcd
            .as_ref()
            .with_context(|| format!("etcd is not in the local test bed; {SETUP_HINT}"))
    }

    pub fn localstack(&self) -> Result<&Localstack> {
        self.localstack
            .as_ref()
            .with_context(|| format!("LocalStack is not in the local test bed; {SETUP_HINT}"))
    }
}

impl Manifest {
    /// Why the bed cannot serve `need`, if it cannot.
    pub fn lacks(&self, need: &crate::env::provision::Need) -> Option<String> {
        use crate::env::provision::Need;
        let missing =
            |what: &str| Some(format!("{what} is not in the local test bed; {SETUP_HINT}"));
        match need {
            Need::Kube if self.kubernetes.is_none() => missing("kube-apiserver"),
            Need::Etcd if self.etcd.is_none() => missing("etcd"),
            Need::Localstack if self.localstack.is_none() => missing("LocalStack"),
            Need::Azurite if self.azurite.is_none() => missing("Azurite"),
            Need::LowkeyVault if self.lowkey_vault.is_none() => {
                missing("lowkey-vault (the Key Vault emulator)")
            }
            Need::FakeGcs if self.fake_gcs.is_none() => {
                missing("fake-gcs-server (the GCS emulator)")
            }
            Need::Velero(v) => self.velero(v).err().map(|e| e.to_string()),
            Need::Plugin { velero, plugin } => match self.velero(velero) {
                Err(e) => Some(e.to_string()),
                Ok(b) if !b.plugins.contains_key(plugin) => Some(format!(
                    "Velero's {plugin} plugin is not built for Velero {} in the local test bed (see the provisioning log); {SETUP_HINT}",
                    b.version
                )),
                Ok(_) => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(version: &str, pinned: bool) -> VeleroBuild {
        VeleroBuild {
            version: version.into(),
            bin: format!("/c/{version}/velero").into(),
            plugin_dir: format!("/c/{version}/plugins").into(),
            plugins: Default::default(),
            pinned,
        }
    }

    fn manifest(builds: Vec<VeleroBuild>) -> Manifest {
        Manifest {
            cache: "/c".into(),
            kubernetes: None,
            etcd: None,
            velero: builds,
            localstack: None,
            azurite: None,
            lowkey_vault: None,
            fake_gcs: None,
            docker: None,
            kind: None,
            images: None,
        }
    }

    #[test]
    fn a_minor_means_its_pinned_patch_even_beside_a_newer_one_built_on_demand() {
        let m = manifest(vec![
            build("v1.18.3", true),
            build("v1.18.4", false),
            build("v1.18.2", false),
            build("v1.16.1", false),
            build("v1.16.3", false),
        ]);
        assert_eq!(m.velero("1.18").unwrap().version, "v1.18.3");
        assert_eq!(m.velero("v1.18").unwrap().version, "v1.18.3");
        assert_eq!(m.velero("1.18.2").unwrap().version, "v1.18.2");
        assert_eq!(m.velero("1.18.4").unwrap().version, "v1.18.4");
        // No pinned 1.16: the newest built.
        assert_eq!(m.velero("1.16").unwrap().version, "v1.16.3");
        let e = m.velero("1.17").unwrap_err().to_string();
        assert!(
            e.contains("Velero 1.17 is not in the local test bed"),
            "{e}"
        );
    }

    #[test]
    fn an_entry_without_pinned_is_pinned() {
        let m: Manifest = serde_json::from_str(
            r#"{"cache": "/c", "velero": [{"version": "v1.18.3", "bin": "/b", "plugin_dir": "/p"}]}"#,
        )
        .unwrap();
        assert!(m.velero[0].pinned);
    }
}
