//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vdrill::log::Redactor;
use vdrill::report::artifacts::Artifacts;
use vdrill::runner::{Event, Reporter, RunOptions, Runner};
use vdrill::scenario::{self, Cell};

/// The checkout under test. Cargo and nextest name it at run time; the build-time
/// value is only a fallback, since a target folder shared by two clones can hold a
/// test binary built in the other one.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Load a scenario given as text, as if it lived in `scenarios/` (fixtures resolve from there).
pub fn cells(yaml: &str) -> Vec<Cell> {
    let dir = repo().join("scenarios");
    match scenario::load_str(&dir.join("inline-test.yaml"), &dir, yaml) {
        Ok(f) => f.cells,
        Err(d) => panic!("test scenario is invalid: {d:#?}"),
    }
}

/// A reporter that remembers what it was told.
#[derive(Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<String>>,
}

impl Reporter for Recorder {
    fn event(&self, event: &Event) {
        let line = match event {
            Event::StepFinished { cell, step } => {
                format!("{cell} {} {}", step.status.as_str(), step.title)
            }
            Event::CellFinished { cell } => format!("{} cell {}", cell.id, cell.status.as_str()),
            Event::Interrupted => "interrupted".into(),
            _ => return,
        };
        self.lines.lock().unwrap().push(line);
    }
}

pub struct Harness {
    pub artifacts: Arc<Artifacts>,
    pub root: tempfile::TempDir,
    pub redactor: Arc<Redactor>,
    pub recorder: Arc<Recorder>,
}

impl Harness {
    pub fn new() -> Harness {
        // SAFETY: set before the runtime reads it; every test sets the same value.
        unsafe { std::env::set_var("VDRILL_TEST_REPO_PASSWORD", REPO_PASSWORD) };
        let root = tempfile::tempdir().unwrap();
        let redactor = Redactor::new();
        // A run id of its own: the work folder (keys, data) is per run id, and tests run in parallel.
        let run_id = format!(
            "test-{}",
            root.path().file_name().unwrap().to_string_lossy()
        );
        let artifacts = Artifacts::create(root.path(), None, &run_id, redactor.clone()).unwrap();
        Harness {
            artifacts,
            root,
            redactor,
            recorder: Arc::default(),
        }
    }

    pub fn runner(
        &self,
        factory: Arc<dyn vdrill::env::EnvironmentFactory>,
        keep: bool,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Runner {
        Runner::new(
            factory,
            self.recorder.clone(),
            self.artifacts.clone(),
            self.redactor.clone(),
            RunOptions {
                run_id: "test-run".into(),
                keep,
                verbose: false,
                jobs: 1,
            },
            cancel,
        )
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn run_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path().join("run.json")).unwrap()).unwrap()
    }

    pub fn junit(&self) -> String {
        std::fs::read_to_string(self.path().join("junit.xml")).unwrap()
    }

    /// Every file under the artifacts folder, with its text.
    pub fn all_files(&self) -> Vec<(PathBuf, String)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push((
                        p.clone(),
                        String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), &mut out);
        out
    }
}

/// The repository password MIDRUN reads from the environment; must never reach an artifact.
pub const REPO_PASSWORD: &str = "pw-7f3a9c-do-not-leak";

pub const MIDRUN: &str = r#"
apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {name: midrun}
environment: {cluster: local, storage: localstack}
keys:
  backup-key: {provider: aws-kms, alias: alias/velero-backups}
velero:
  version: "1.18"
  repositoryPassword: {fromEnv: VDRILL_TEST_REPO_PASSWORD}
  locations:
    - {name: default, provider: aws, bucket: velero-encrypted, config: {region: us-east-1, kmsKeyId: "${keys.backup-key.alias}"}}
workloads:
  - {fixture: ../fixtures/workloads/shop.yaml, namespace: shop}
steps:
  - deploy: shop
  - backup: {name: before}
  - assert-encryption: {backup: before, key: backup-key}
  - disable-key: backup-key
  - backup: {name: while-disabled, expect: {phase: Failed, error: "KMS.DisabledException"}}
  - delete-namespace: shop
  - restore: {backup: before, name: r1, expect: {phase: Failed, error: "KMS\\.DisabledException"}}
  - enable-key: backup-key
  - restore: {backup: before, name: r2}
  - assert-restored: shop
finally:
  - enable-key: backup-key
"#;

/// Why this machine's bed cannot run the Azure drills, if it cannot: setup reports
/// lowkey-vault and Velero's Azure plugin `absent` where `../shared` (or Java 25) is
/// missing, and leaves them out of the manifest; the rest of the bed still works.
/// Tests that need them then say so and stop. (A failed build fails setup, and CI,
/// before any test runs.)
#[cfg(feature = "providers")]
pub fn azure_absent() -> Option<String> {
    use vdrill::env::provision::Need;
    let m = vdrill::env::local::manifest::Manifest::load().expect("the bed is provisioned");
    let plugin = |v: &str| Need::Plugin {
        velero: v.into(),
        plugin: "azure".into(),
    };
    let why: Vec<String> = [Need::LowkeyVault, plugin("1.17"), plugin("1.18")]
        .iter()
        .filter_map(|n| m.lacks(n))
        .collect();
    // Where the Azure side must be there (this project's CI sets it), its absence fails.
    if !why.is_empty() && std::env::var_os("VDRILL_REQUIRE_AZURE").is_some_and(|v| v == "1") {
        panic!(
            "VDRILL_REQUIRE_AZURE=1, but the test bed has no Azure side: {}",
            why.join("; ")
        );
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Stop the calling test when the bed has no Azure side, saying why.
#[cfg(feature = "providers")]
#[macro_export]
macro_rules! needs_azure_bed {
    () => {
        if let Some(why) = common::azure_absent() {
            eprintln!("not run: this machine's test bed has no Azure side: {why}");
            return;
        }
    };
}

/// A supervisor of its own for a test that starts one emulator of the bed: its
/// ledger, work folder (`<tmp>/work`) and logs (`<tmp>/work/logs`, redacted copies
/// in `<tmp>/env`) in a temporary folder.
#[cfg(feature = "providers")]
pub fn emulator_supervisor(
    name: &str,
    what: &str,
) -> (
    tempfile::TempDir,
    vdrill::env::process::Supervisor,
    vdrill::log::StepLog,
) {
    use vdrill::env::ledger::Kind;
    use vdrill::env::process::{LogDirs, Supervisor};
    let tmp = tempfile::tempdir().unwrap();
    let log = vdrill::log::StepLog::discard();
    let logs = LogDirs {
        raw: tmp.path().join("work/logs"),
        artifacts: tmp.path().join("env"),
    };
    let supervisor = Supervisor::in_dir(
        &tmp.path().join("beds"),
        Kind::Cell,
        name,
        what,
        logs,
        log.redactor().clone(),
        false,
    )
    .unwrap();
    (tmp, supervisor, log)
}
