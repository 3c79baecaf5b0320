//! Azurite (Azure Blob Storage emulator) as a host process on a free loopback port,
//! with an account of its own: a random name and a random key, declared secret.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;

use super::manifest::Manifest;
use crate::env::process::{Managed, ProcessSpec, Supervisor, free_port, port_open, wait_for};
use crate::log::{Secret, StepLog};

pub struct Azurite {
    /// `http://127.0.0.1:<port>/<account>`
    pub blob_endpoint: String,
    /// `vdrill` and 16 hex digits (Azure account names are 3-24 lower-case letters and digits).
    pub account: String,
    /// The account key, base64 (of 64 random bytes), as Azure shows keys.
    pub key: Secret,
    pub process: Managed,
}

impl Azurite {
    pub async fn start(
        m: &Manifest,
        work: &Path,
        supervisor: &Supervisor,
        log: &StepLog,
    ) -> Result<Azurite> {
        let az = m
            .azurite
            .as_ref()
            .context("Azurite is not in the local test bed; run ci/testbed/setup.sh azurite")?;
        let port = free_port()?;
        let data = work.join("azurite");
        std::fs::create_dir_all(&data)?;
        let account = format!("vdrill{}", crate::env::hex(&crate::env::random_bytes(8)?));
        // Both the raw bytes and their base64 are declared, so either is redacted.
        let raw = supervisor.redactor().secret(crate::env::random_bytes(64)?);
        let key = supervisor
            .redactor()
            .secret(base64::engine::general_purpose::STANDARD.encode(raw.expose()));
        let spec = ProcessSpec::new("azurite", &az.blob_bin)
            .args([
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
            ])
            // Only this account exists (not the documented development one).
            .env(
                "AZURITE_ACCOUNTS",
                format!("{account}:{}", key.expose_str()),
            );
        let mut process = supervisor.spawn(&spec)?;
        let took = wait_for(
            "Azurite",
            Duration::from_secs(30),
            &mut [&mut process],
            || port_open(port),
        )
        .await?;
        let blob_endpoint = format!("http://127.0.0.1:{port}/{account}");
        log.line(format!(
            "Azurite {} ready at {blob_endpoint} in {:.1}s",
            az.version,
            took.as_secs_f64()
        ));
        Ok(Azurite {
            blob_endpoint,
            account,
            key,
            process,
        })
    }

    pub async fn stop(&mut self) -> Result<()> {
        self.process.stop(Duration::from_secs(5)).await
    }
}
