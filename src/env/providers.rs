//! Picks the providers a cell's `environment` asks for.

use async_trait::async_trait;

use super::{CellDirs, Environment, EnvironmentFactory, Result};
use crate::runner::log::StepLog;
use crate::scenario::{Cell, ClusterKind, StorageKind};

/// The real providers, chosen per cell.
pub struct Providers {
    pub run_id: String,
}

impl Providers {
    pub fn new(run_id: &str) -> Providers {
        Providers { run_id: run_id.to_string() }
    }
}

#[async_trait]
impl EnvironmentFactory for Providers {
    async fn start(&self, cell: &Cell, dirs: &CellDirs, log: &StepLog) -> Result<Environment> {
        let env = &cell.scenario.environment;
        let region = env.region.clone().unwrap_or_else(|| "us-east-1".to_string());
        #[cfg(feature = "providers")]
        match (env.cluster, env.storage) {
            (ClusterKind::Local, storage) => {
                let tag = format!("vdrill-{}", self.run_id);
                return Ok(super::local::start(Some(cell), storage, &region, dirs, &tag, false, log).await?.environment);
            }
            (ClusterKind::Kind | ClusterKind::Existing, StorageKind::Localstack | StorageKind::Azurite) => anyhow::bail!(
                "`storage: {}` runs on this machine's loopback, which Velero inside a `{}` cluster cannot reach; use `cluster: local`, or real `aws`/`azure` storage",
                env.storage.as_str(),
                env.cluster.as_str()
            ),
            (cluster, storage) => return super::remote::start(cell, cluster, storage, &region, dirs, &self.run_id, log).await,
        }
        #[cfg(not(feature = "providers"))]
        {
            let _ = (dirs, log, region, ClusterKind::Local, StorageKind::Localstack);
            anyhow::bail!("this vdrill was built without the `providers` feature; it cannot start `cluster: {}`", env.cluster.as_str())
        }
    }
}
