//! The runner against the in-memory environment: reports, expectations,
//! skip-after-failure, timeouts, cleanup.

mod common;

use std::sync::Arc;

use common::*;
use tokio_util::sync::CancellationToken;
use vdrill::env::memory::{Behaviour, MemoryFactory};

fn statuses(report: &vdrill::report::CellReport) -> Vec<(String, &'static str)> {
    report
        .steps
        .iter()
        .map(|s| (s.title.clone(), s.status.as_str()))
        .collect()
}

#[tokio::test]
async fn a_full_drill_passes_and_writes_junit_run_json_and_logs() {
    let h = Harness::new();
    let factory = Arc::new(MemoryFactory::new(Behaviour::default()));
    let report = h
        .runner(factory.clone(), false, CancellationToken::new())
        .run(&cells(MIDRUN))
        .await;

    let cell = &report.cells[0];
    assert!(report.passed(), "{:#?}", statuses(cell));
    assert_eq!(
        cell.steps
            .iter()
            .filter(|s| s.stage == vdrill::report::Stage::Step)
            .count(),
        10
    );
    assert!(
        cell.rto.is_some(),
        "RTO is measured from delete-namespace to assert-restored"
    );
    // The expected failures were matched against Velero's evidence.
    let while_disabled = cell
        .steps
        .iter()
        .find(|s| s.title == "backup while-disabled")
        .unwrap();
    assert_eq!(while_disabled.assertions[0].name, "phase is Failed");
    assert_eq!(
        while_disabled.assertions[1].name,
        "error matches /KMS.DisabledException/"
    );
    // Teardown ran, in order, and removed exactly what the run created (the restored
    // namespace, the workload's CRD, the alias, the key, the bucket).
    assert_eq!(
        factory.calls(),
        [
            "start",
            "install_crds",
            "velero.install",
            "disable_key arn:aws:kms:us-east-1:000000000000:key/00000001-key-backup-key",
            "delete_namespace shop",
            "enable_key arn:aws:kms:us-east-1:000000000000:key/00000001-key-backup-key",
            // finally
            "enable_key arn:aws:kms:us-east-1:000000000000:key/00000001-key-backup-key",
            "velero.teardown",
            "delete_namespace shop",
            "delete_crd storefronts.shop.vdrill.dev",
            "delete_alias alias/velero-backups",
            "delete_key arn:aws:kms:us-east-1:000000000000:key/00000001-key-backup-key",
            "delete_bucket velero-encrypted",
            "stop"
        ]
    );

    let run = h.run_json();
    assert_eq!(run["cells"][0]["status"], "passed");
    assert_eq!(
        run["cells"][0]["steps"].as_array().unwrap().len(),
        2 + 10 + 1 + 1
    );
    let junit = h.junit();
    assert!(junit.contains("<testsuite name=\"midrun\""), "{junit}");
    assert!(
        junit.contains("step 05: backup while-disabled / error matches /KMS.DisabledException/")
    );
    assert!(junit.contains("<property name=\"velero.version\" value=\"1.18\"/>"));
    assert!(junit.contains("<property name=\"rto.seconds\""));
    let files = h.all_files();
    assert!(
        files
            .iter()
            .any(|(p, _)| p.ends_with("midrun/steps/step-02-backup.log")),
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    // The repository password never reaches an artifact.
    for (p, text) in &files {
        assert!(!text.contains(REPO_PASSWORD), "secret in {}", p.display());
    }
}

#[tokio::test]
async fn a_failed_step_skips_the_rest_with_a_reason_and_finally_and_teardown_still_run() {
    let yaml = MIDRUN.replace(
        r#"  - backup: {name: while-disabled, expect: {phase: Failed, error: "KMS.DisabledException"}}"#,
        r#"  - backup: {name: while-disabled, expect: {phase: Failed, error: "SomethingElse"}}"#,
    );
    let h = Harness::new();
    let factory = Arc::new(MemoryFactory::new(Behaviour::default()));
    let report = h
        .runner(factory.clone(), false, CancellationToken::new())
        .run(&cells(&yaml))
        .await;
    let cell = &report.cells[0];
    assert!(!report.passed());
    let failed = cell
        .steps
        .iter()
        .find(|s| s.title == "backup while-disabled")
        .unwrap();
    assert_eq!(failed.failure_type.as_deref(), Some("expectation"));
    assert!(
        failed.message.contains("error matches /SomethingElse/"),
        "{}",
        failed.message
    );
    let after: Vec<_> = cell
        .steps
        .iter()
        .filter(|s| s.stage == vdrill::report::Stage::Step)
        .skip(5)
        .collect();
    assert_eq!(after.len(), 5);
    for s in after {
        assert_eq!(s.status, vdrill::report::Status::Skipped, "{}", s.title);
        assert_eq!(s.message, "skipped: step 5 (backup while-disabled) failed");
    }
    let fin = cell
        .steps
        .iter()
        .find(|s| s.stage == vdrill::report::Stage::Finally)
        .unwrap();
    assert_eq!(fin.status, vdrill::report::Status::Passed);
    assert!(
        factory
            .calls()
            .ends_with(&["delete_bucket velero-encrypted".into(), "stop".into()]),
        "{:?}",
        factory.calls()
    );
    assert!(factory.calls().contains(&"velero.teardown".into()));
    assert!(
        h.junit()
            .contains("<skipped message=\"skipped: step 5 (backup while-disabled) failed\"/>")
    );
}

#[tokio::test]
async fn a_step_that_hangs_times_out_and_cleanup_runs() {
    let yaml = MIDRUN.replace(
        "  - backup: {name: before}",
        "  - backup: {name: before, timeout: 300ms}",
    );
    let h = Harness::new();
    let factory = Arc::new(MemoryFactory::new(Behaviour {
        hang_backups: true,
        ..Default::default()
    }));
    let report = h
        .runner(factory.clone(), false, CancellationToken::new())
        .run(&cells(&yaml))
        .await;
    let step = report.cells[0]
        .steps
        .iter()
        .find(|s| s.title == "backup before")
        .unwrap();
    assert_eq!(step.failure_type.as_deref(), Some("timeout"));
    assert_eq!(step.message, "timed out after 300ms");
    assert!(step.duration >= std::time::Duration::from_millis(300));
    assert!(factory.calls().contains(&"stop".to_string()));
    assert!(h.junit().contains("type=\"timeout\""));
}

#[tokio::test]
async fn a_failed_environment_start_skips_every_step_and_reports_why() {
    let h = Harness::new();
    let factory = Arc::new(MemoryFactory::new(Behaviour {
        fail_start: true,
        ..Default::default()
    }));
    let report = h
        .runner(factory, false, CancellationToken::new())
        .run(&cells(MIDRUN))
        .await;
    let cell = &report.cells[0];
    // The environment not coming up is an environment error, not a failed drill.
    assert_eq!(cell.steps[0].status, vdrill::report::Status::Error);
    assert_eq!(cell.steps[0].failure_type.as_deref(), Some("environment"));
    assert!(cell.steps[0].message.contains("told to fail"));
    let skipped = cell
        .steps
        .iter()
        .filter(|s| s.status == vdrill::report::Status::Skipped)
        .count();
    assert_eq!(skipped, 10 + 1, "every step and the finally step");
    assert_eq!(h.run_json()["cells"][0]["status"], "error");
    assert_eq!(report.exit_code(), vdrill::exit::ENVIRONMENT);
    assert!(
        h.junit().contains(
            "<error message=\"the in-memory environment was told to fail\" type=\"environment\""
        ),
        "{}",
        h.junit()
    );
}

#[tokio::test]
async fn keep_leaves_a_failed_environment_up() {
    let yaml = MIDRUN.replace(
        "  - backup: {name: before}",
        "  - backup: {name: before, timeout: 200ms}",
    );
    let h = Harness::new();
    let factory = Arc::new(MemoryFactory::new(Behaviour {
        hang_backups: true,
        ..Default::default()
    }));
    let report = h
        .runner(factory.clone(), true, CancellationToken::new())
        .run(&cells(&yaml))
        .await;
    assert!(!factory.calls().contains(&"stop".to_string()));
    assert!(
        factory.calls().contains(&"hand_over".to_string()),
        "{:?}",
        factory.calls()
    );
    assert!(
        !factory.calls().iter().any(|c| c.starts_with("delete_")),
        "nothing is removed from a kept environment: {:?}",
        factory.calls()
    );
    let teardown = report.cells[0].steps.last().unwrap();
    assert_eq!(teardown.status, vdrill::report::Status::Skipped);
    assert_eq!(
        teardown.message,
        "skipped (--keep): environment kept: the in-memory environment"
    );
    assert_eq!(
        report.cells[0].kept.as_deref(),
        Some("the in-memory environment")
    );
    assert!(
        h.junit()
            .contains("<property name=\"kept\" value=\"the in-memory environment\"/>")
    );
}

#[tokio::test]
async fn a_process_dying_mid_step_is_an_environment_error_not_a_failed_drill() {
    let h = Harness::new();
    let factory = Arc::new(MemoryFactory::new(Behaviour {
        die_during_backup: Some("localstack".into()),
        ..Default::default()
    }));
    let started = std::time::Instant::now();
    let report = h
        .runner(factory.clone(), false, CancellationToken::new())
        .run(&cells(MIDRUN))
        .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the step ends when the process dies, not at its timeout"
    );
    let cell = &report.cells[0];
    let backup = cell
        .steps
        .iter()
        .find(|s| s.title == "backup before")
        .unwrap();
    assert_eq!(backup.status, vdrill::report::Status::Error);
    assert_eq!(backup.failure_type.as_deref(), Some("environment"));
    assert_eq!(
        backup.message,
        "the environment broke: localstack exited (signal: 9 (SIGKILL))\nlast lines of its log:\nlocalstack was here"
    );
    // The rest is skipped, finally too (the bed is thrown away whole), teardown runs.
    let rest: Vec<_> = cell
        .steps
        .iter()
        .filter(|s| s.stage != vdrill::report::Stage::Teardown)
        .skip_while(|s| s.title != "backup before")
        .skip(1)
        .collect();
    assert!(
        rest.iter()
            .all(|s| s.status == vdrill::report::Status::Skipped),
        "{rest:#?}"
    );
    assert!(
        rest.iter()
            .any(|s| s.stage == vdrill::report::Stage::Finally)
    );
    assert!(factory.calls().contains(&"stop".to_string()));
    assert_eq!(cell.status, vdrill::report::Status::Error);
    let verdict = cell.verdict.as_deref().unwrap();
    assert_eq!(
        verdict,
        "the environment broke: localstack exited (signal: 9 (SIGKILL)) during step 2 (backup before); the drill says nothing about Velero"
    );
    assert_eq!(report.exit_code(), vdrill::exit::ENVIRONMENT);
    let junit = h.junit();
    assert!(junit.contains("<error message=\"the environment broke: localstack exited (signal: 9 (SIGKILL))\" type=\"environment\">"), "{junit}");
    assert!(
        junit.contains(
            "<property name=\"verdict\" value=\"the environment broke: localstack exited"
        ),
        "{junit}"
    );
    assert!(
        !junit.contains("<failure"),
        "an environment error is not a failure: {junit}"
    );
    assert_eq!(h.run_json()["cells"][0]["status"], "error");
}

#[tokio::test]
async fn a_step_timeout_leaves_no_process_behind_not_even_a_grandchild() {
    let beds = tempfile::tempdir().unwrap();
    let yaml = MIDRUN.replace(
        "  - backup: {name: before}",
        "  - backup: {name: before, timeout: 1s}",
    );
    let h = Harness::new();
    let mut factory = MemoryFactory::new(Behaviour {
        backup_runs: Some("sleep 300 & sleep 300; echo never".into()),
        ..Default::default()
    });
    factory.beds = Some(beds.path().to_path_buf());
    let factory = Arc::new(factory);
    let report = h
        .runner(factory.clone(), false, CancellationToken::new())
        .run(&cells(&yaml))
        .await;
    let step = report.cells[0]
        .steps
        .iter()
        .find(|s| s.title == "backup before")
        .unwrap();
    assert_eq!(
        step.failure_type.as_deref(),
        Some("timeout"),
        "{}",
        step.message
    );
    // The helper and its background child carried the environment's marker: none is left.
    let id = "memory-midrun";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !vdrill::env::ledger::marked(id).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        vdrill::env::ledger::marked(id).is_empty(),
        "left behind: {:?}",
        vdrill::env::ledger::marked(id)
    );
    assert!(
        vdrill::env::ledger::list(beds.path()).is_empty(),
        "the environment's record went with its teardown"
    );
}

fn encryption_scenario(config: &str, asserts: &str) -> String {
    format!(
        r#"
apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {{name: enc}}
environment: {{cluster: local, storage: localstack}}
keys:
  k1: {{provider: aws-kms, alias: alias/k1}}
  k2: {{provider: aws-kms, alias: alias/k2}}
  ck: {{provider: customer-key}}
velero:
  version: "1.18"
  locations:
    - {{name: default, provider: aws, bucket: velero-c, config: {config}}}
workloads:
  - {{fixture: ../fixtures/workloads/shop.yaml, namespace: shop}}
steps:
  - deploy: shop
  - backup: b1
{asserts}
"#
    )
}

#[tokio::test]
async fn assert_encryption_checks_sse_c_and_that_the_key_is_needed() {
    let yaml = encryption_scenario(
        r#"{customerKeyEncryptionFile: "${keys.ck.file}"}"#,
        "  - assert-encryption: {backup: b1, key: ck}",
    );
    let h = Harness::new();
    let report = h
        .runner(
            Arc::new(MemoryFactory::new(Behaviour::default())),
            false,
            CancellationToken::new(),
        )
        .run(&cells(&yaml))
        .await;
    let step = report.cells[0]
        .steps
        .iter()
        .find(|s| s.title == "assert-encryption b1 with ck")
        .unwrap();
    assert_eq!(
        step.status,
        vdrill::report::Status::Passed,
        "{}",
        step.message
    );
    let names: Vec<&str> = step.assertions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "backup wrote objects",
            "every object is SSE-C with key ck",
            "HeadObject without the customer key fails"
        ]
    );
}

#[tokio::test]
async fn assert_encryption_names_every_object_with_the_wrong_key() {
    let yaml = encryption_scenario(
        r#"{kmsKeyId: "${keys.k1.arn}"}"#,
        "  - assert-encryption: {backup: b1, key: k1}\n  - assert-encryption: {backup: b1, key: k2}",
    );
    let h = Harness::new();
    let report = h
        .runner(
            Arc::new(MemoryFactory::new(Behaviour::default())),
            false,
            CancellationToken::new(),
        )
        .run(&cells(&yaml))
        .await;
    let steps = &report.cells[0].steps;
    let ok = steps
        .iter()
        .find(|s| s.title == "assert-encryption b1 with k1")
        .unwrap();
    assert_eq!(ok.status, vdrill::report::Status::Passed, "{}", ok.message);
    let bad = steps
        .iter()
        .find(|s| s.title == "assert-encryption b1 with k2")
        .unwrap();
    assert_eq!(bad.status, vdrill::report::Status::Failed);
    assert_eq!(bad.failure_type.as_deref(), Some("assertion"));
    assert!(
        bad.message
            .starts_with("every object uses key k2 (alias/k2): expected arn:aws:kms:"),
        "{}",
        bad.message
    );
    assert!(
        bad.message.contains(
            "backups/b1/b1.tar.gz: arn:aws:kms:us-east-1:000000000000:key/00000001-key-k1"
        ),
        "{}",
        bad.message
    );
    assert!(
        bad.message.contains("backups/b1/velero-backup.json: arn:"),
        "{}",
        bad.message
    );
}

#[tokio::test]
async fn a_failure_found_before_the_environment_broke_stays_the_verdict() {
    // The drill fails at step 2; then, in `finally`, a process dies.
    let yaml = MIDRUN
        .replace(
            "  - deploy: shop\n",
            "  - deploy: shop\n  - disable-key: {key: backup-key, expect: {error: NeverSeen}}\n",
        )
        .replace(
            "finally:\n  - enable-key: backup-key",
            "finally:\n  - backup: last-words",
        );
    let h = Harness::new();
    let factory = Arc::new(MemoryFactory::new(Behaviour {
        die_during_backup: Some("velero".into()),
        ..Default::default()
    }));
    let report = h
        .runner(factory, false, CancellationToken::new())
        .run(&cells(&yaml))
        .await;
    let cell = &report.cells[0];
    let fin = cell
        .steps
        .iter()
        .find(|s| s.stage == vdrill::report::Stage::Finally)
        .unwrap();
    assert_eq!(fin.status, vdrill::report::Status::Error, "{}", fin.message);
    assert_eq!(cell.status, vdrill::report::Status::Failed);
    assert!(cell.verdict.as_deref().unwrap().starts_with("disable-key backup-key: fails with /NeverSeen/: the step succeeded, but it was expected to fail"), "{:?}", cell.verdict);
    assert_eq!(report.exit_code(), vdrill::exit::DRILL_FAILED);
    assert_eq!(h.run_json()["cells"][0]["status"], "failed");
}

const SIDE_BY_SIDE: &str = r#"
apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {name: side-by-side}
matrix: {n: ["a", "b", "c"]}
environment: {cluster: local, storage: localstack}
velero:
  version: "1.18"
  repositoryPassword: {fromEnv: VDRILL_TEST_REPO_PASSWORD}
  locations:
    - {name: default, provider: aws, bucket: "vdrill-${matrix.n}", config: {region: us-east-1}}
steps:
  - wait: 1s
"#;

/// Whether any two cells' runs overlapped in time (from their reported start and duration).
fn overlapping(report: &vdrill::report::RunReport) -> bool {
    let spans: Vec<_> = report
        .cells
        .iter()
        .map(|c| {
            (
                c.started_at,
                c.started_at + chrono::Duration::from_std(c.duration).unwrap(),
            )
        })
        .collect();
    spans
        .iter()
        .enumerate()
        .any(|(i, a)| spans[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_jobs_cells_run_side_by_side_and_the_report_keeps_the_plan_order() {
    let plan = cells(SIDE_BY_SIDE);
    let ids: Vec<String> = plan.iter().map(|c| c.id.clone()).collect();
    for jobs in [1, 3] {
        let h = Harness::new();
        let factory = Arc::new(MemoryFactory::new(Behaviour::default()));
        let mut runner = h.runner(factory, false, CancellationToken::new());
        runner.set_jobs(jobs);
        let report = runner.run(&plan).await;
        assert!(report.passed(), "{report:#?}");
        assert_eq!(
            report
                .cells
                .iter()
                .map(|c| c.id.clone())
                .collect::<Vec<_>>(),
            ids,
            "plan order"
        );
        assert_eq!(
            overlapping(&report),
            jobs > 1,
            "jobs {jobs}: {:?}",
            report
                .cells
                .iter()
                .map(|c| (c.started_at, c.duration))
                .collect::<Vec<_>>()
        );
        let written = h.run_json();
        assert_eq!(written["cells"].as_array().unwrap().len(), 3);
        assert_eq!(written["cells"][2]["id"], ids[2].as_str());
    }
}
