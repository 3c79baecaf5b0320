//! Picks the providers a cell's `environment` asks for, provisions the local
//! test bed before the cells run, and gives every environment its supervisor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::ledger::Kind;
use super::process::{LogDirs, Supervisor};
use super::provision::{self, Need, Progress};
use super::{CellDirs, Environment, EnvironmentFactory, Result};
use crate::log::{Redactor, StepLog};
use crate::scenario::{Cell, ClusterKind};

/// Which images a kind cell runs: the upstream ones (a machine with a registry) or the
/// ones the test bed built (`ci/testbed/setup.sh kind-node images`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ImageSource {
    /// The bed's images when its manifest lists them, else upstream's.
    #[default]
    Auto,
    /// velero/velero, velero/velero-plugin-for-*, localstack/localstack, kind's node image.
    Upstream,
    /// The images the test bed built (no registry needed).
    Testbed,
}

/// The real providers, chosen per cell.
pub struct Providers {
    pub run_id: String,
    /// Children survive vdrill, so a failed cell's environment can be handed over (`--keep`).
    pub keep: bool,
    /// The run's artifacts folder (the provisioning log goes there).
    pub artifacts: PathBuf,
    redactor: std::sync::Arc<Redactor>,
    /// Children of the run that belong to no cell (the provisioning script).
    run: OnceLock<Supervisor>,
    /// Which images kind cells run (`--images`).
    pub images: ImageSource,
}

impl Providers {
    pub fn new(
        run_id: &str,
        keep: bool,
        artifacts: PathBuf,
        redactor: std::sync::Arc<Redactor>,
    ) -> Providers {
        Providers {
            run_id: run_id.to_string(),
            keep,
            artifacts,
            redactor,
            run: OnceLock::new(),
            images: ImageSource::default(),
        }
    }

    fn run_supervisor(&self) -> Result<&Supervisor> {
        if let Some(s) = self.run.get() {
            return Ok(s);
        }
        let logs = LogDirs {
            raw: self.artifacts.join("logs"),
            artifacts: self.artifacts.join("logs"),
        };
        let s = Supervisor::new(
            Kind::Run,
            &format!("run-{}", self.run_id),
            &self.run_id,
            logs,
            self.redactor.clone(),
            false,
        )?;
        Ok(self.run.get_or_init(|| s))
    }
}

impl Drop for Providers {
    fn drop(&mut self) {
        if let Some(s) = self.run.get() {
            s.finish();
        }
    }
}

#[async_trait]
impl EnvironmentFactory for Providers {
    async fn provision(
        &self,
        cells: &[Cell],
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> provision::Report {
        let mut report = provision::Report::default();
        let per_cell: BTreeMap<&str, BTreeSet<Need>> = cells
            .iter()
            .map(|c| (c.id.as_str(), provision::needs_with(c, self.images)))
            .collect();
        let all: BTreeSet<Need> = per_cell.values().flatten().cloned().collect();
        if all.is_empty() {
            return report;
        }
        let mut outcome = provision::Outcome::default();
        if std::env::var_os("VDRILL_NO_PROVISION").is_none() {
            match (provision::setup_script(), self.run_supervisor()) {
                (Some(script), Ok(sup)) => {
                    let log = self.artifacts.join("provision.log");
                    outcome = provision::run(&script, &all, sup, &log, progress, cancel).await;
                }
                (None, _) => {
                    outcome.failure = Some(
                        "no provisioning script (ci/testbed/setup.sh, or $VDRILL_SETUP) was found"
                            .into(),
                    )
                }
                (_, Err(e)) => outcome.failure = Some(format!("{e:#}")),
            }
        }
        #[cfg(feature = "providers")]
        let manifest = super::local::manifest::Manifest::load();
        for (cell, needs) in per_cell {
            // What the script said about this cell's components; else what the bed lacks
            // (with why the script failed, if it did). A cell whose components are all
            // there runs, even if the script failed for another cell's.
            let problems: Vec<provision::Problem> =
                needs.iter().filter_map(|n| outcome.problem(n)).collect();
            if !problems.is_empty()
                && problems
                    .iter()
                    .all(|p| matches!(p, provision::Problem::Absent(_)))
            {
                let why: Vec<&str> = problems.iter().map(|p| p.text()).collect();
                report.skipped.insert(
                    cell.to_string(),
                    format!("this machine cannot provide it: {}", why.join("; ")),
                );
                continue;
            }
            let mut why: Vec<String> = problems
                .iter()
                .filter(|p| matches!(p, provision::Problem::Error(_)))
                .map(|p| p.text().to_string())
                .collect();
            if why.is_empty() && !needs.is_empty() {
                #[cfg(feature = "providers")]
                match &manifest {
                    Ok(m) => why.extend(needs.iter().filter_map(|n| m.lacks(n))),
                    Err(e) => why.push(format!("{e:#}")),
                }
                #[cfg(not(feature = "providers"))]
                why.push("this vdrill was built without the `providers` feature".into());
                if !why.is_empty()
                    && let Some(f) = &outcome.failure
                {
                    why.insert(0, format!("provisioning failed: {f}"));
                }
            }
            if !why.is_empty() {
                report.unavailable.insert(cell.to_string(), why.join("; "));
            }
        }
        report
    }

    async fn start(&self, cell: &Cell, dirs: &CellDirs, log: &StepLog) -> Result<Environment> {
        let env = &cell.scenario.environment;
        let region = env
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_string());
        let id = format!("{}-{}", self.run_id, crate::report::slug(&cell.id));
        let logs = LogDirs {
            raw: dirs.work.join("logs"),
            artifacts: dirs.artifacts.join("env"),
        };
        let supervisor = Supervisor::new(
            Kind::Cell,
            &id,
            &cell.id,
            logs,
            log.redactor().clone(),
            self.keep,
        )?;
        supervisor.add_dir(&dirs.work);
        // Cleans up if the start fails or is abandoned (a timeout drops this future).
        let guard = StartGuard {
            supervisor: supervisor.clone(),
            work: dirs.work.clone(),
            armed: true,
        };
        let started: Result<Environment> = async {
            #[cfg(feature = "providers")]
            match env.cluster {
                ClusterKind::Local => Ok(super::local::start(&env.storage, &region, dirs, &supervisor, log).await?.environment),
                cluster => super::remote::start(cell, cluster, &env.storage, &region, dirs, &supervisor, self.images, log).await,
            }
            #[cfg(not(feature = "providers"))]
            {
                let _ = (&region, ClusterKind::Local);
                anyhow::bail!("this vdrill was built without the `providers` feature; it cannot start `cluster: {}`", env.cluster.as_str())
            }
        }
        .await;
        let mut guard = guard;
        guard.armed = started.is_err();
        started
    }
}

struct StartGuard {
    supervisor: Supervisor,
    work: PathBuf,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if self.armed {
            // What did start was stopped as its handles dropped; nothing else to keep.
            let _ = std::fs::remove_dir_all(&self.work);
            self.supervisor.finish();
        }
    }
}
