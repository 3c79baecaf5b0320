//! LocalStack (S3 + KMS) as a host process, with KMS key state enforced by S3.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::manifest::Manifest;
use crate::env::process::{Managed, ProcessSpec, Supervisor, free_port, wait_for};
use crate::log::StepLog;

/// Runs LocalStack with its S3 spill directory moved into the run's folder.
const S3_TMP_SHIM: &str = "import os, runpy\n\
import localstack.services.s3.provider as p\n\
p.DEFAULT_S3_TMP_DIR = os.environ['VDRILL_S3_TMP']\n\
runpy.run_module('localstack.runtime.main', run_name='__main__', alter_sys=True)\n";

pub struct LocalStack {
    pub endpoint: String,
    pub process: Managed,
}

async fn kms_running(client: &reqwest::Client, url: &str) -> bool {
    let Ok(resp) = client.get(url).send().await else {
        return false;
    };
    let Ok(v) = resp.json::<serde_json::Value>().await else {
        return false;
    };
    let up = |s: &serde_json::Value| matches!(s.as_str(), Some("running") | Some("available"));
    up(&v["services"]["kms"]) && up(&v["services"]["s3"])
}

/// What LocalStack logs when its gateway did not open its port in time.
const GATEWAY_GAVE_UP: &str = "gave up waiting for gateway server to start";

impl LocalStack {
    pub async fn start(
        m: &Manifest,
        work: &Path,
        supervisor: &Supervisor,
        log: &StepLog,
    ) -> Result<LocalStack> {
        let ls = m.localstack()?;
        let root = work.join("localstack");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let s3_tmp = root.join("s3");
        std::fs::create_dir_all(&s3_tmp)?;
        // LocalStack gives its gateway 15 s to open its port; now and then (about one
        // start in six with two beds starting at once) it never opens, and LocalStack
        // says so in its log and hangs. Such a start is abandoned and made once more.
        for attempt in 1..=2 {
            let port = free_port()?;
            let mut spec = ProcessSpec::new("localstack", &ls.python)
                // LocalStack spills object bodies to a fixed /tmp/localstack-s3-storage/<bucket>
                // (no setting moves it), so two runs with the same bucket name would share and
                // delete each other's data, and it outlives the process. Point that constant at
                // this run's folder before starting the runtime (see ci/testbed/NOTES.md).
                .args(["-c", S3_TMP_SHIM])
                .env("VDRILL_S3_TMP", s3_tmp.display().to_string())
                .env("SERVICES", "s3,kms")
                .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
                // Without hypercorn LocalStack binds 0.0.0.0 whatever GATEWAY_LISTEN says.
                .env("GATEWAY_SERVER", "hypercorn")
                .env("DNS_ADDRESS", "0")
                // S3 checks the KMS key's state on every SSE-KMS request (default: it does not).
                .env("S3_SKIP_KMS_KEY_VALIDATION", "0")
                .env("DISABLE_EVENTS", "1")
                .env("SKIP_SSL_CERT_DOWNLOAD", "1")
                .env("EAGER_SERVICE_LOADING", "1")
                .env("LOCALSTACK_HOST", format!("127.0.0.1:{port}"))
                .env("FILESYSTEM_ROOT", root.join("fs").display().to_string())
                // Large objects spill to the temp dir: keep them in this run's folder.
                .env("TMPDIR", tmp.display().to_string())
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .cwd(&root);
            // Extra settings, e.g. to show what a drill catches when the emulator is misconfigured:
            // VDRILL_LOCALSTACK_ENV="S3_SKIP_KMS_KEY_VALIDATION=1".
            if let Ok(extra) = std::env::var("VDRILL_LOCALSTACK_ENV") {
                for pair in extra.split([',', ' ']).filter(|p| !p.is_empty()) {
                    if let Some((k, v)) = pair.split_once('=') {
                        log.line(format!(
                            "LocalStack override from VDRILL_LOCALSTACK_ENV: {k}={v}"
                        ));
                        spec = spec.env(k, v);
                    }
                }
            }
            // The log is appended to: this attempt's lines start at its end now.
            let from = std::fs::metadata(supervisor.raw_log("localstack"))
                .map(|m| m.len() as usize)
                .unwrap_or(0);
            let mut process = supervisor.spawn(&spec)?;
            let endpoint = format!("http://127.0.0.1:{port}");
            let health = format!("{endpoint}/_localstack/health");
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?;
            let process_log = process.log.clone();
            let gave_up = move || {
                std::fs::read(&process_log).is_ok_and(|t| {
                    String::from_utf8_lossy(t.get(from..).unwrap_or_default())
                        .contains(GATEWAY_GAVE_UP)
                })
            };
            let gave_up_check = gave_up.clone();
            let took = wait_for(
                "LocalStack (S3 + KMS)",
                Duration::from_secs(90),
                &mut [&mut process],
                || {
                    let (client, health, gave_up) = (&client, &health, &gave_up_check);
                    async move { gave_up() || kms_running(client, health).await }
                },
            )
            .await?;
            if gave_up() {
                log.line(format!(
                    "LocalStack (attempt {attempt}): its gateway did not open port {port} (\"{GATEWAY_GAVE_UP}\"); stopping it"
                ));
                process.stop(Duration::from_secs(5)).await?;
                continue;
            }
            log.line(format!(
                "LocalStack {} ready at {endpoint} in {:.1}s",
                ls.version,
                took.as_secs_f64()
            ));
            return Ok(LocalStack { endpoint, process });
        }
        anyhow::bail!(
            "LocalStack (S3 + KMS): its gateway did not start, twice (\"{GATEWAY_GAVE_UP}\"; see env/localstack.log)"
        )
    }

    pub async fn stop(&mut self) -> Result<()> {
        // One shutdown was seen to hang for 50 s; 10 s of grace, then SIGKILL.
        self.process.stop(Duration::from_secs(10)).await
    }
}
