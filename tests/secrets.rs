//! No secret reaches an artifact or the console: an SSE-C drill on the real
//! local test bed, with LocalStack logging every request's headers (so the
//! customer key does reach a raw process log), and an Azure drill (Azurite with
//! its own account key, lowkey-vault), are scanned file by file, JUnit and
//! run.json included, and so is everything the console showed, for the Kopia
//! repository password, the customer key (raw, base64, hex), the cloud
//! credentials and the workload's Secret values. The values are taken from what
//! the real providers handed to Velero, by a factory that wraps them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use common::*;
use tokio_util::sync::CancellationToken;
use vdrill::env::provision::{Progress, Report};
use vdrill::env::{
    BackupRequest, CellDirs, Environment, EnvironmentFactory, Outcome, RestoreRequest, Velero,
    VeleroInstall,
};
use vdrill::log::{Redactor, StepLog};
use vdrill::report::artifacts::Artifacts;
use vdrill::runner::{RunOptions, Runner};
use vdrill::scenario::{Cell, LocationProvider};

type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The real providers, with Velero wrapped to see what it is given.
struct Spy {
    inner: vdrill::env::providers::Providers,
    seen: Seen,
}

struct SpyVelero {
    inner: Arc<dyn Velero>,
    seen: Seen,
}

#[async_trait]
impl Velero for SpyVelero {
    async fn install(&self, install: &VeleroInstall, log: &StepLog) -> anyhow::Result<()> {
        {
            let mut seen = self.seen.lock().unwrap();
            seen.push((
                "repository password".into(),
                install.repository_password.expose().to_vec(),
            ));
            for l in &install.locations {
                if let Some(file) = l.config.get("customerKeyEncryptionFile") {
                    seen.push(("customer key".into(), std::fs::read(file).unwrap()));
                }
            }
        }
        self.inner.install(install, log).await
    }
    async fn backup(&self, req: &BackupRequest, log: &StepLog) -> anyhow::Result<Outcome> {
        self.inner.backup(req, log).await
    }
    async fn restore(&self, req: &RestoreRequest, log: &StepLog) -> anyhow::Result<Outcome> {
        self.inner.restore(req, log).await
    }
    async fn upgrade(
        &self,
        req: &vdrill::env::UpgradeRequest,
        log: &StepLog,
    ) -> anyhow::Result<()> {
        self.inner.upgrade(req, log).await
    }
    fn version(&self) -> String {
        self.inner.version()
    }
    async fn teardown(&self, log: &StepLog) -> anyhow::Result<()> {
        self.inner.teardown(log).await
    }
}

#[async_trait]
impl EnvironmentFactory for Spy {
    async fn provision(
        &self,
        cells: &[Cell],
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Report {
        self.inner.provision(cells, progress, cancel).await
    }
    async fn start(
        &self,
        cell: &Cell,
        dirs: &CellDirs,
        log: &StepLog,
    ) -> anyhow::Result<Environment> {
        let mut env = self.inner.start(cell, dirs, log).await?;
        for location in &cell.scenario.velero.locations {
            let creds = env.store.velero_credentials(location.provider);
            let text = creds.expose_str().to_string();
            let secret_key = match location.provider {
                LocationProvider::Gcp => {
                    let doc: serde_json::Value =
                        serde_json::from_str(&text).expect("a service account key file");
                    doc["private_key"]
                        .as_str()
                        .expect("a private key")
                        .to_string()
                }
                _ => text
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("aws_secret_access_key=")
                            .or_else(|| l.strip_prefix("AZURE_STORAGE_ACCOUNT_ACCESS_KEY="))
                    })
                    .expect("a secret key")
                    .to_string(),
            };
            self.seen.lock().unwrap().push((
                format!("{} cloud secret key", location.provider.as_str()),
                secret_key.into_bytes(),
            ));
        }
        env.velero = Arc::new(SpyVelero {
            inner: env.velero,
            seen: self.seen.clone(),
        });
        Ok(env)
    }
}

/// The forms a secret travels in.
fn forms(value: &[u8]) -> Vec<String> {
    let mut out = vec![
        base64::engine::general_purpose::STANDARD.encode(value),
        value.iter().map(|b| format!("{b:02x}")).collect(),
        value.iter().map(|b| format!("{b:02X}")).collect(),
    ];
    if let Ok(s) = std::str::from_utf8(value) {
        out.push(s.to_string());
    }
    out
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out)
        } else {
            out.push(p)
        }
    }
}

/// Console output, captured.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Console {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_an_artifact_or_the_console() {
    // LocalStack logs each request with its headers, the SSE-C key among them.
    // SAFETY: the only test of this binary; set before anything reads it.
    unsafe { std::env::set_var("VDRILL_LOCALSTACK_ENV", "LS_LOG=trace") };
    let root = std::env::var_os("VDRILL_CI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-artifacts"))
        .join("secrets");
    let _ = std::fs::remove_dir_all(&root);
    let beds = tempfile::tempdir().unwrap();
    // SAFETY: as above.
    unsafe { std::env::set_var("VDRILL_BEDS_DIR", beds.path()) };
    let redactor = Redactor::new();
    let run_id = format!("secrets-{}", std::process::id());
    let artifacts = Artifacts::create(&root, None, &run_id, redactor.clone()).unwrap();
    let seen: Seen = Arc::default();
    let spy = Arc::new(Spy {
        inner: vdrill::env::providers::Providers::new(
            &run_id,
            false,
            root.clone(),
            redactor.clone(),
        ),
        seen: seen.clone(),
    });
    let console = Console::default();
    let reporter = Arc::new(vdrill::report::progress::Lines::to(Box::new(
        console.clone(),
    )));
    let cells = [
        "scenarios/aws-sse-c.yaml",
        "scenarios/azure-keyvault-basic.yaml",
        "scenarios/gcp-kms-basic.yaml",
    ]
    .iter()
    .flat_map(|f| vdrill::scenario::load(&repo().join(f)).unwrap().cells)
    .filter(|c| c.id.contains("1.18"))
    .collect::<Vec<_>>();
    // Without the bed's Azure side (no ../shared here), the AWS drill alone.
    let azure = common::azure_absent().is_none();
    if !azure {
        eprintln!(
            "the Azure drill is left out: {}",
            common::azure_absent().unwrap_or_default()
        );
    }
    let cells: Vec<_> = cells
        .into_iter()
        .filter(|c| azure || !c.id.starts_with("azure"))
        .collect();
    // SAFETY: as above; the bed is provisioned by ci/setup.sh.
    unsafe { std::env::set_var("VDRILL_NO_PROVISION", "1") };
    let runner = Runner::new(
        spy,
        reporter,
        artifacts.clone(),
        redactor,
        RunOptions {
            run_id,
            keep: false,
            verbose: true,
            jobs: 1,
        },
        CancellationToken::new(),
    );
    let report = runner.run(&cells).await;
    drop(runner);
    let mut summary = Vec::new();
    vdrill::cli::print_summary(&mut summary, &report, &root, &artifacts.junit_path());
    let console = [console.0.lock().unwrap().clone(), summary].concat();
    let console = String::from_utf8_lossy(&console).into_owned();
    assert!(report.passed(), "{console}");

    let mut secrets = seen.lock().unwrap().clone();
    let kinds: Vec<&str> = secrets.iter().map(|(k, _)| k.as_str()).collect();
    let mut expected = vec![
        "aws cloud secret key",
        "repository password",
        "customer key",
    ];
    if azure {
        expected.extend(["azure cloud secret key", "repository password"]);
    }
    // The GCP service account's private key.
    expected.extend(["gcp cloud secret key", "repository password"]);
    assert_eq!(kinds, expected);
    for v in ["vdrill-canary-5b1f0c7e", "not-a-real-token-0123456789"] {
        secrets.push(("workload Secret value".into(), v.as_bytes().to_vec()));
    }
    let mut all = Vec::new();
    files(&root, &mut all);
    assert!(
        all.iter().any(|p| p.ends_with("junit.xml")) && all.iter().any(|p| p.ends_with("run.json"))
    );
    assert!(
        all.iter().any(|p| p.ends_with("env/localstack.log"))
            && all.iter().any(|p| p.ends_with("env/velero.log"))
    );
    assert!(
        !azure
            || (all.iter().any(|p| p.ends_with("env/azurite.log"))
                && all.iter().any(|p| p.ends_with("env/lowkey-vault.log")))
    );
    assert!(all.iter().any(|p| p.ends_with("env/fake-gcs-server.log")));
    let mut texts: Vec<(String, String)> = all
        .iter()
        .map(|p| {
            (
                p.display().to_string(),
                String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned(),
            )
        })
        .collect();
    texts.push(("the console".into(), console));
    for (what, value) in &secrets {
        for form in forms(value) {
            for (name, text) in &texts {
                assert!(!text.contains(&form), "the {what} ({form}) is in {name}");
            }
        }
    }
    // The redactor did have something to do: LocalStack logged the SSE-C key header.
    let ls = texts
        .iter()
        .find(|(n, _)| n.ends_with("env/localstack.log"))
        .unwrap();
    assert!(
        ls.1.contains("x-amz-server-side-encryption-customer-key")
            || ls.1.contains("X-Amz-Server-Side-Encryption-Customer-Key"),
        "LocalStack logged request headers"
    );
    assert!(
        ls.1.contains("[redacted]"),
        "and the key in them was redacted"
    );
}
