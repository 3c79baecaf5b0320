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

pub use crate::env::cache_dir;

pub const SETUP_HINT: &str = "provision the local test bed with `ci/testbed/setup.sh` (it builds everything from the package registries)";

impl Manifest {
    pub fn load() -> Result<Manifest> {
        let path = cache_dir().join("testbed.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("the local test bed is not provisioned ({} is missing); {SETUP_HINT}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a test bed manifest; {SETUP_HINT}", path.display()))
    }

    /// The build for a version such as `1.18`, `v1.18` or `1.18.3` (the newest patch of a minor).
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
        matches.sort_by_key(|b| b.version.trim_start_matches('v').split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>());
        match matches.last() {
            Some(b) => Ok(b),
            None => {
                let have: Vec<&str> = self.velero.iter().map(|b| b.version.as_str()).collect();
                bail!("Velero {version} is not in the local test bed (it has {}); add it to ci/testbed/versions.env and run ci/testbed/setup.sh velero", if have.is_empty() { "none".to_string() } else { have.join(", ") })
            }
        }
    }

    pub fn kubernetes(&self) -> Result<&Kubernetes> {
        self.kubernetes.as_ref().with_context(|| format!("kube-apiserver is not in the local test bed; {SETUP_HINT}"))
    }

    pub fn etcd(&self) -> Result<&Etcd> {
        self.etcd.as_ref().with_context(|| format!("etcd is not in the local test bed; {SETUP_HINT}"))
    }

    pub fn localstack(&self) -> Result<&Localstack> {
        self.localstack.as_ref().with_context(|| format!("LocalStack is not in the local test bed; {SETUP_HINT}"))
    }
}

/// The provisioning script: `$VDRILL_SETUP`, else `ci/testbed/setup.sh` of this checkout.
pub fn setup_script() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VDRILL_SETUP").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    [PathBuf::from("ci/testbed/setup.sh"), PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ci/testbed/setup.sh")]
        .into_iter()
        .find(|p| p.is_file())
}

impl Manifest {
    /// Load the manifest, provisioning the missing components first (the first run
    /// builds them from the package registries, which takes a while; later runs reuse them).
    pub async fn ensure(velero_version: Option<&str>, log: &crate::runner::log::StepLog) -> Result<Manifest> {
        let missing = |m: &Manifest| -> Vec<&'static str> {
            let mut c = Vec::new();
            if m.kubernetes.is_none() {
                c.push("kube");
            }
            if m.etcd.is_none() {
                c.push("etcd");
            }
            if m.localstack.is_none() {
                c.push("localstack");
            }
            if velero_version.is_some_and(|v| m.velero(v).is_err()) {
                c.push("velero");
            }
            c
        };
        let components = match Manifest::load() {
            Ok(m) if missing(&m).is_empty() => return Ok(m),
            Ok(m) => missing(&m),
            Err(_) => vec!["kube", "etcd", "localstack", "velero"],
        };
        if std::env::var_os("VDRILL_NO_PROVISION").is_some() {
            return Manifest::load().and_then(|m| {
                let still = missing(&m);
                if still.is_empty() { Ok(m) } else { bail!("the local test bed lacks {}; {SETUP_HINT}", still.join(", ")) }
            });
        }
        let Some(script) = setup_script() else {
            bail!("the local test bed lacks {} and no setup script was found; {SETUP_HINT}", components.join(", "));
        };
        log.line(format!("provisioning the local test bed ({}) with {}; the first time this builds from source and takes a while", components.join(", "), script.display()));
        eprintln!("vdrill: provisioning the local test bed ({}) with {} ...", components.join(", "), script.display());
        let status = tokio::process::Command::new("bash")
            .arg(&script)
            .args(&components)
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .status()
            .await
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
        let m = Manifest::load()?;
        let still = missing(&m);
        if !still.is_empty() {
            bail!("after provisioning, the local test bed still lacks {}", still.join(", "));
        }
        Ok(m)
    }
}
