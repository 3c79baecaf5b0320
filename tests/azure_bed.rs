//! The Azure side of the local test bed, for real: Azurite, lowkey-vault and Velero with
//! its Azure plugin. Velero and vdrill's Blob provider must see the same blobs (what
//! the provider lists, Velero syncs back into the cluster through its plugin); a
//! deleted container must fail the next backup with a clear error; nothing listens
//! beyond loopback; teardown leaves no process and no data.
//! Needs the bed provisioned with `../shared` (`ci/setup.sh` does it).

mod common;

use std::time::{Duration, Instant};

use common::*;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use vdrill::env::CellDirs;
use vdrill::env::ledger::Kind;
use vdrill::env::process::{LogDirs, Supervisor, processes};
use vdrill::log::StepLog;
use vdrill::scenario::Step;
use vdrill::steps::{DrillState, StepCtx};

const BED: &str = r#"
apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {name: azure-bed-check}
environment: {cluster: local, storage: azurite}
keys:
  backup-key: {provider: azure-keyvault, name: azure-bed-check}
velero:
  version: "1.18"
  locations:
    - {name: default, provider: azure, bucket: azure-bed-check}
workloads:
  - {fixture: ../fixtures/workloads/shop.yaml, namespace: shop}
steps:
  - deploy: shop
  - backup: first
  - assert-encryption: {backup: first, key: backup-key}
  - backup: after-container-loss
"#;

fn in_groups(groups: &[i32]) -> Vec<i32> {
    processes()
        .iter()
        .filter(|p| groups.contains(&p.pgrp) && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    processes()
        .iter()
        .filter(|p| p.ppid == me && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velero_and_the_blob_provider_see_the_same_blobs_and_a_lost_container_fails_the_backup() {
    needs_azure_bed!();
    let cell = cells(BED).remove(0);
    let tmp = tempfile::tempdir().unwrap();
    let dirs = CellDirs {
        artifacts: tmp.path().join("artifacts"),
        work: tmp.path().join("work"),
    };
    let log = StepLog::discard();
    let before = children();
    let logs = LogDirs {
        raw: dirs.work.join("logs"),
        artifacts: dirs.artifacts.join("env"),
    };
    let supervisor = Supervisor::in_dir(
        &tmp.path().join("beds"),
        Kind::Cell,
        "azure-bed-test",
        "azure bed check",
        logs,
        log.redactor().clone(),
        false,
    )
    .unwrap();
    let started = vdrill::env::local::start(
        &vdrill::scenario::Storage::one(vdrill::scenario::StorageKind::Azurite),
        "us-east-1",
        &dirs,
        &supervisor,
        &log,
    )
    .await
    .unwrap_or_else(|e| panic!("the bed did not come up: {e:#}"));
    let env = started.environment.clone();
    let mut state = DrillState {
        work_dir: dirs.work.clone(),
        ..Default::default()
    };
    let steps = cell.scenario.steps.clone();
    let mut ctx = StepCtx {
        env: &env,
        state: &mut state,
        cell: &cell,
        log: &log,
    };
    vdrill::steps::setup::prepare(&mut ctx)
        .await
        .unwrap_or_else(|e| panic!("Velero did not come up: {e:#}\n{}", log.text()));
    for step in &steps[..3] {
        let out = vdrill::steps::run(step, &mut ctx)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", step.kind(), log.text()));
        if let Some(o) = &out.outcome {
            assert_eq!(o.phase, "Completed", "{}: {o:?}", step.kind());
        }
    }

    // What the provider lists is what Velero wrote, and what Velero hands out (a SAS URL
    // it signs through its plugin) is byte for byte what the provider reads.
    let names = env
        .store
        .list("azure-bed-check", "backups/first/")
        .await
        .unwrap();
    for file in [
        "velero-backup.json",
        "first.tar.gz",
        "first-logs.gz",
        "first-resource-list.json.gz",
    ] {
        assert!(
            names.contains(&format!("backups/first/{file}")),
            "{file} in {names:?}"
        );
    }
    let client = vdrill::env::kube::client_for(&started.kubeconfig, None)
        .await
        .unwrap();
    let (ar, _) =
        kube::discovery::pinned_kind(&client, &GroupVersionKind::gvk("velero.io", "v1", "Backup"))
            .await
            .unwrap();
    let backup = Api::<DynamicObject>::namespaced_with(client.clone(), "velero", &ar)
        .get("first")
        .await
        .unwrap();
    let items = backup.data["status"]["progress"]["itemsBackedUp"]
        .as_u64()
        .unwrap();
    assert!(items > 0, "{:?}", backup.data["status"]);
    // Velero reads back, through its plugin, what the provider lists: with the Backup
    // object gone from the cluster, its sync recreates it from the container.
    let bsl_gvk = GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation");
    let (bsl_ar, _) = kube::discovery::pinned_kind(&client, &bsl_gvk)
        .await
        .unwrap();
    let bsl: Api<DynamicObject> = Api::namespaced_with(client.clone(), "velero", &bsl_ar);
    let fast_sync = serde_json::json!({"spec": {"backupSyncPeriod": "2s"}});
    bsl.patch(
        "default",
        &PatchParams::default(),
        &Patch::Merge(&fast_sync),
    )
    .await
    .unwrap();
    let backups = Api::<DynamicObject>::namespaced_with(client.clone(), "velero", &ar);
    backups.delete("first", &Default::default()).await.unwrap();
    let started_sync = Instant::now();
    let synced = loop {
        if let Some(b) = backups.get_opt("first").await.unwrap()
            && b.metadata.uid != backup.metadata.uid
            && b.data["status"]["phase"] == "Completed"
        {
            break b;
        }
        assert!(
            started_sync.elapsed() < Duration::from_secs(120),
            "Velero did not sync backup `first` back from the container"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        synced.data["status"]["progress"]["itemsBackedUp"].as_u64(),
        Some(items),
        "the synced backup is the one the provider listed"
    );
    assert_eq!(
        synced
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("velero.io/storage-location"))
            .map(String::as_str),
        Some("default")
    );

    // Nothing of the bed listens beyond loopback in this network namespace.
    let groups: Vec<i32> = children()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let ss = std::process::Command::new("ss")
        .args(["-Hltnp"])
        .output()
        .unwrap();
    let ours = in_groups(&groups);
    let mut checked = 0;
    for line in String::from_utf8_lossy(&ss.stdout).lines() {
        if ours.iter().any(|p| line.contains(&format!("pid={p},"))) {
            let local = line.split_whitespace().nth(3).unwrap();
            assert!(
                local.starts_with("127.0.0.1:"),
                "bound beyond loopback: {line}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "the bed's listeners were found ({checked}):\n{}",
        String::from_utf8_lossy(&ss.stdout)
    );

    // Lose the container: the next backup fails, and says why.
    env.store
        .delete_bucket("azure-bed-check", &log)
        .await
        .unwrap();
    assert!(!env.store.bucket_exists("azure-bed-check").await.unwrap());
    let Step::Backup(_) = &steps[3] else {
        panic!("step 4 is a backup")
    };
    let out = vdrill::steps::run(&steps[3], &mut ctx).await.unwrap();
    let outcome = out.outcome.unwrap();
    assert_ne!(outcome.phase, "Completed", "{outcome:?}");
    let evidence = outcome.evidence();
    assert!(
        evidence.contains("ContainerNotFound") || evidence.contains("container does not exist"),
        "the failure names the lost container:\n{evidence}"
    );

    // Teardown: no process, no port, no data.
    vdrill::steps::setup::teardown(&mut ctx)
        .await
        .unwrap_or_else(|e| panic!("teardown failed: {e:#}"));
    env.stop.stop(&log).await.unwrap();
    drop(env);
    drop(started);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        in_groups(&groups).is_empty(),
        "processes left behind: {:?}",
        in_groups(&groups)
    );
    assert!(
        !dirs.work.exists(),
        "work data left behind in {}",
        dirs.work.display()
    );
    assert!(
        dirs.artifacts.join("env/azurite.log").exists()
            && dirs.artifacts.join("env/lowkey-vault.log").exists(),
        "process logs are kept"
    );
    assert!(
        vdrill::env::ledger::list(&tmp.path().join("beds")).is_empty(),
        "the ledger record is gone with the bed"
    );
}
