//! The local test bed, for real: kube-apiserver, etcd, kube-controller-manager,
//! LocalStack and Velero as processes. Brings it up, uses it through kube-rs
//! and Velero, tears it down and checks nothing is left behind.
//! Needs the bed provisioned (`ci/setup.sh` does it).

mod common;

use std::time::Duration;

use common::*;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use vdrill::env::CellDirs;
use vdrill::env::ledger::Kind;
use vdrill::env::process::{LogDirs, Supervisor, processes};
use vdrill::log::StepLog;
use vdrill::steps::{DrillState, StepCtx};

const BED: &str = r#"
apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {name: testbed-check}
environment: {cluster: local, storage: localstack}
keys:
  backup-key: {provider: aws-kms, alias: alias/testbed-check}
velero:
  version: "1.18"
  locations:
    - {name: default, provider: aws, bucket: testbed-check, config: {region: us-east-1, kmsKeyId: "${keys.backup-key.alias}"}}
workloads:
  - {fixture: ../fixtures/workloads/shop.yaml, namespace: shop}
steps:
  - deploy: shop
"#;

/// Live child processes of this test process (the bed's servers).
fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    processes()
        .iter()
        .filter(|p| p.ppid == me && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// Live processes in the given process groups (a server and whatever it started).
fn in_groups(groups: &[i32]) -> Vec<i32> {
    processes()
        .iter()
        .filter(|p| groups.contains(&p.pgrp) && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bed_runs_velero_against_localstack_and_leaves_nothing_behind() {
    let cell = cells(BED).remove(0);
    let tmp = tempfile::tempdir().unwrap();
    let dirs = CellDirs {
        artifacts: tmp.path().join("artifacts"),
        work: tmp.path().join("work"),
    };
    let log = StepLog::discard();
    let before = children();
    // LocalStack's default spill folder for this test's bucket (must stay unused).
    let spill = std::path::Path::new("/tmp/localstack-s3-storage/testbed-check");
    let _ = std::fs::remove_dir_all(spill);

    let logs = LogDirs {
        raw: dirs.work.join("logs"),
        artifacts: dirs.artifacts.join("env"),
    };
    let supervisor = Supervisor::in_dir(
        &tmp.path().join("beds"),
        Kind::Cell,
        "testbed-test",
        "testbed check",
        logs,
        log.redactor().clone(),
        false,
    )
    .unwrap();
    let started = vdrill::env::local::start(
        &vdrill::scenario::Storage::one(vdrill::scenario::StorageKind::Localstack),
        "us-east-1",
        &dirs,
        &supervisor,
        &log,
    )
    .await
    .unwrap_or_else(|e| panic!("the bed did not come up: {e:#}"));
    let env = started.environment.clone();
    let api_port = port_of(&started.server);
    let s3_port = port_of(started.s3_endpoint.as_deref().unwrap());

    // Keys, bucket and Velero (and the workload's CRD first); install returns once the
    // location is Available.
    let mut state = DrillState {
        work_dir: dirs.work.clone(),
        ..Default::default()
    };
    let mut ctx = StepCtx {
        env: &env,
        state: &mut state,
        cell: &cell,
        log: &log,
    };
    vdrill::steps::setup::prepare(&mut ctx)
        .await
        .unwrap_or_else(|e| panic!("Velero did not come up: {e:#}\n{}", log.text()));
    let key_arn = state.keys["backup-key"].arn.clone();
    assert!(key_arn.starts_with("arn:aws:kms:us-east-1:"), "{key_arn}");

    // Kubernetes through kube-rs: a namespace and the fixture's objects, read back.
    let manifests = vdrill::fixture::load(&repo().join("fixtures/workloads/shop.yaml")).unwrap();
    let applied = env.cluster.apply("shop", &manifests, &log).await.unwrap();
    assert_eq!(applied.len(), manifests.len());
    let refs: Vec<vdrill::env::ObjectRef> =
        applied.iter().map(vdrill::env::ObjectRef::of).collect();
    let live = env.cluster.get(&refs).await.unwrap();
    assert!(
        live.iter().all(Option::is_some),
        "every applied object is served"
    );
    let secret = refs
        .iter()
        .zip(&live)
        .find(|(r, _)| r.kind == "Secret")
        .unwrap()
        .1
        .as_ref()
        .unwrap();
    assert_eq!(
        secret["data"]["canary"], "dmRyaWxsLWNhbmFyeS01YjFmMGM3ZQ==",
        "stringData became data"
    );

    let kubeconfig = started.kubeconfig.clone();
    let client = vdrill::env::kube::client_for(&kubeconfig, None)
        .await
        .unwrap();
    let (ar, _) = kube::discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
    )
    .await
    .unwrap();
    let bsl: Api<DynamicObject> = Api::namespaced_with(client, "velero", &ar);
    let default = bsl.get("default").await.unwrap();
    assert_eq!(default.data["status"]["phase"], "Available");
    assert_eq!(
        default.data["spec"]["config"]["kmsKeyId"],
        "alias/testbed-check"
    );
    assert!(
        default.data["spec"]["config"]["s3Url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );

    // Everything listens on loopback only.
    let running = children();
    let groups: Vec<i32> = running
        .iter()
        .copied()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        groups.len() >= 5,
        "etcd, kube-apiserver, kube-controller-manager, LocalStack and Velero run: {groups:?}"
    );
    let ss = std::process::Command::new("ss")
        .args(["-Hltnp"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&ss.stdout).lines() {
        if in_groups(&groups)
            .iter()
            .any(|p| line.contains(&format!("pid={p},")))
        {
            let local = line.split_whitespace().nth(3).unwrap();
            assert!(
                local.starts_with("127.0.0.1:"),
                "bound beyond loopback: {line}"
            );
        }
    }

    // Teardown.
    let mut ctx = StepCtx {
        env: &env,
        state: &mut state,
        cell: &cell,
        log: &log,
    };
    vdrill::steps::setup::teardown(&mut ctx)
        .await
        .unwrap_or_else(|e| panic!("teardown failed: {e:#}"));
    drop(env);
    drop(started);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        in_groups(&groups).is_empty(),
        "processes left behind: {:?}",
        in_groups(&groups)
    );
    for port in [api_port, s3_port] {
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "port {port} still open"
        );
    }
    assert!(
        !dirs.work.exists(),
        "work data left behind in {}",
        dirs.work.display()
    );
    assert!(
        !spill.exists(),
        "LocalStack spilled object data to {}",
        spill.display()
    );
    assert!(
        dirs.artifacts.join("env/kube-apiserver.log").exists(),
        "process logs are kept as artifacts"
    );
    assert!(
        vdrill::env::ledger::list(&tmp.path().join("beds")).is_empty(),
        "the ledger record is gone with the bed"
    );
}

#[tokio::test]
async fn azurite_runs_on_loopback_with_its_log_and_stops_cleanly() {
    let manifest = vdrill::env::local::manifest::Manifest::load().expect("the bed is provisioned");
    let tmp = tempfile::tempdir().unwrap();
    let log = StepLog::discard();
    let logs = LogDirs {
        raw: tmp.path().join("work/logs"),
        artifacts: tmp.path().join("env"),
    };
    let supervisor = Supervisor::in_dir(
        &tmp.path().join("beds"),
        Kind::Cell,
        "azurite-test",
        "azurite check",
        logs,
        log.redactor().clone(),
        false,
    )
    .unwrap();
    let mut az = vdrill::env::local::azurite::Azurite::start(
        &manifest,
        &tmp.path().join("work"),
        &supervisor,
        &log,
    )
    .await
    .unwrap_or_else(|e| panic!("Azurite did not come up: {e:#}"));
    // Its own account: a fresh name, and a key registered as a secret.
    assert!(
        az.account.len() <= 24
            && az.account.starts_with("vdrill")
            && az
                .account
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{}",
        az.account
    );
    assert!(
        az.blob_endpoint.starts_with("http://127.0.0.1:")
            && az.blob_endpoint.ends_with(&format!("/{}", az.account)),
        "{}",
        az.blob_endpoint
    );
    assert_eq!(
        log.redactor().redact(az.key.expose_str()),
        vdrill::log::REDACTED
    );
    let port = port_of(
        az.blob_endpoint
            .trim_end_matches(&format!("/{}", az.account)),
    );
    // It answers (unauthenticated requests are refused, which proves the service is up).
    let resp = reqwest::get(format!("{}?comp=list", az.blob_endpoint))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let ss = std::process::Command::new("ss")
        .args(["-Hltnp"])
        .output()
        .unwrap();
    let mine: Vec<String> = String::from_utf8_lossy(&ss.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={},", az.process.pid)))
        .map(str::to_string)
        .collect();
    assert!(
        !mine.is_empty()
            && mine.iter().all(|l| l
                .split_whitespace()
                .nth(3)
                .unwrap()
                .starts_with("127.0.0.1:")),
        "{mine:?}"
    );
    let pid = az.process.pid as i32;
    az.stop().await.unwrap();
    assert!(
        in_groups(&[pid]).is_empty(),
        "Azurite left processes behind"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    assert!(
        tmp.path().join("env/azurite.log").exists(),
        "its redacted log is in the artifacts"
    );
}
