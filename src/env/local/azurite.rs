//! Azurite (Azure Blob Storage emulator) as a host process on a free loopback port.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::manifest::Manifest;
use crate::env::process::{Managed, ProcessSpec, Supervisor, free_port, port_open, wait_for};
use crate::log::StepLog;

/// Azurite's well-known development account (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";

pub struct Azurite {
    /// `http://127.0.0.1:<port>/devstoreaccount1`
    pub blob_endpoint: String,
    pub process: Managed,
}

impl Azurite {
    pub async fn start(m: &Manifest, work: &Path, supervisor: &Supervisor, log: &StepLog) -> Result<Azurite> {
        let az = m.azurite.as_ref().context("Azurite is not in the local test bed; run ci/testbed/setup.sh azurite")?;
        let port = free_port()?;
        let data = work.join("azurite");
        std::fs::create_dir_all(&data)?;
        let spec = ProcessSpec::new("azurite", &az.blob_bin).args([
            "--blobHost".to_string(),
            "127.0.0.1".to_string(),
            "--blobPort".to_string(),
            port.to_string(),
            "--location".to_string(),
            data.display().to_string(),
            "--silent".to_string(),
            // Newer clients send API versions this Azurite does not know yet.
            "--skipApiVersionCheck".to_string(),
            "--disableTelemetry".to_string(),
        ]);
        let mut process = supervisor.spawn(&spec)?;
        let took = wait_for("Azurite", Duration::from_secs(30), &mut [&mut process], || port_open(port)).await?;
        let blob_endpoint = format!("http://127.0.0.1:{port}/{ACCOUNT}");
        log.line(format!("Azurite {} ready at {blob_endpoint} in {:.1}s", az.version, took.as_secs_f64()));
        Ok(Azurite { blob_endpoint, process })
    }

    pub async fn stop(&mut self) -> Result<()> {
        self.process.stop(Duration::from_secs(5)).await
    }
}
