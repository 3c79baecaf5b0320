//! fake-gcs-server (Google Cloud Storage emulator) as a host process on a free
//! loopback port, plain http, objects in the cell's work folder.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::manifest::Manifest;
use crate::env::process::{Managed, ProcessSpec, Supervisor, free_port, port_open, wait_for};
use crate::log::StepLog;

pub struct FakeGcs {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub process: Managed,
}

impl FakeGcs {
    pub async fn start(
        m: &Manifest,
        work: &Path,
        supervisor: &Supervisor,
        log: &StepLog,
    ) -> Result<FakeGcs> {
        let fg = m.fake_gcs.as_ref().context(
            "fake-gcs-server is not in the local test bed; run ci/testbed/setup.sh fake-gcs",
        )?;
        let port = free_port()?;
        let data = work.join("fake-gcs");
        std::fs::create_dir_all(&data)?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let spec = ProcessSpec::new("fake-gcs-server", &fg.bin).args([
            "-scheme".to_string(),
            "http".to_string(),
            "-host".to_string(),
            "127.0.0.1".to_string(),
            "-port".to_string(),
            port.to_string(),
            "-backend".to_string(),
            "filesystem".to_string(),
            "-filesystem-root".to_string(),
            data.display().to_string(),
            // Upload URLs it hands out point back here, not at storage.googleapis.com.
            "-public-host".to_string(),
            format!("127.0.0.1:{port}"),
            "-external-url".to_string(),
            endpoint.clone(),
            "-log-level".to_string(),
            "warn".to_string(),
        ]);
        let mut process = supervisor.spawn(&spec)?;
        let took = wait_for(
            "fake-gcs-server",
            Duration::from_secs(30),
            &mut [&mut process],
            || port_open(port),
        )
        .await?;
        log.line(format!(
            "fake-gcs-server {} ready at {endpoint} in {:.1}s",
            fg.version,
            took.as_secs_f64()
        ));
        Ok(FakeGcs { endpoint, process })
    }

    pub async fn stop(&mut self) -> Result<()> {
        self.process.stop(Duration::from_secs(5)).await
    }
}
