//! Safe on real accounts: with `cluster: existing` and AWS storage, a run never
//! changes or deletes keys, aliases, buckets, namespaces or a Velero it did not
//! create; using a pre-existing key or bucket is an explicit choice; a check
//! that disables a key enables it again on every path, a timeout or Ctrl-C
//! included. Against the in-memory environment seeded with what "already
//! exists", so that every decision tested here is vdrill's own.

mod common;

use std::sync::Arc;

use common::*;
use tokio_util::sync::CancellationToken;
use vdrill::env::KeyState;
use vdrill::env::memory::{Behaviour, MemoryFactory};
use vdrill::report::Status;

/// A drill on an existing cluster and real AWS, with everything named as given.
fn aws_drill(
    key: &str,
    bucket: &str,
    extra_keys: &str,
    location_extra: &str,
    steps: &str,
    finally: &str,
) -> String {
    format!(
        r#"
apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {{name: real}}
environment: {{cluster: existing, storage: aws}}
keys:
  k: {{provider: aws-kms, alias: {key}{extra_keys}}}
velero:
  version: "1.18"
  locations:
    - {{name: default, provider: aws, bucket: {bucket}, config: {{region: us-east-1, kmsKeyId: "${{keys.k.alias}}"}}{location_extra}}}
workloads:
  - {{fixture: ../fixtures/workloads/shop.yaml, namespace: shop}}
steps:
{steps}
finally:
{finally}
"#
    )
}

const STEPS: &str = "  - deploy: shop\n  - backup: b1\n  - delete-namespace: shop\n  - restore: {backup: b1, name: r1}\n  - assert-restored: shop";

async fn run(factory: &Arc<MemoryFactory>, yaml: &str) -> vdrill::report::CellReport {
    let h = Harness::new();
    let mut report = h
        .runner(factory.clone(), false, CancellationToken::new())
        .run(&cells(yaml))
        .await;
    report.cells.remove(0)
}

fn setup_error(cell: &vdrill::report::CellReport) -> String {
    let failed: Vec<_> = cell
        .steps
        .iter()
        .filter(|s| matches!(s.status, Status::Failed | Status::Error))
        .collect();
    assert_eq!(failed.len(), 1, "one step fails: {failed:#?}");
    failed[0].message.clone()
}

#[tokio::test]
async fn an_alias_that_exists_is_neither_taken_over_nor_deleted() {
    let factory = Arc::new(MemoryFactory::default());
    let theirs = factory.with_world(|w| w.add_key("alias/theirs"));
    let cell = run(
        &factory,
        &aws_drill(
            "alias/theirs",
            "drill-bucket",
            "",
            "",
            STEPS,
            "  - enable-key: k",
        ),
    )
    .await;
    assert!(
        setup_error(&cell).contains(
            "alias alias/theirs already exists; vdrill creates its keys under aliases that are free"
        ),
        "{}",
        setup_error(&cell)
    );
    factory.with_world(|w| {
        assert_eq!(
            w.alias_target("alias/theirs").as_deref(),
            Some(theirs.as_str()),
            "the alias still points at their key"
        );
        assert_eq!(w.key_state(&theirs), Some(KeyState::Enabled));
    });
    let calls = factory.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("alias/theirs") || c.contains(&theirs)),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_bucket_that_exists_is_neither_used_nor_emptied_nor_deleted() {
    let factory = Arc::new(MemoryFactory::default());
    factory.with_world(|w| w.add_bucket("their-bucket", "their/object"));
    let cell = run(
        &factory,
        &aws_drill(
            "alias/drill",
            "their-bucket",
            "",
            "",
            STEPS,
            "  - enable-key: k",
        ),
    )
    .await;
    assert!(
        setup_error(&cell)
            .contains("bucket their-bucket already exists; vdrill only uses buckets it creates"),
        "{}",
        setup_error(&cell)
    );
    factory.with_world(|w| {
        assert_eq!(
            w.bucket_objects("their-bucket"),
            Some(vec!["their/object".to_string()])
        )
    });
    assert!(
        !factory.calls().iter().any(|c| c.contains("their-bucket")),
        "{:?}",
        factory.calls()
    );
    // What the run did create (its key and alias) is removed.
    assert!(
        factory
            .calls()
            .iter()
            .any(|c| c == "delete_alias alias/drill"),
        "{:?}",
        factory.calls()
    );
}

#[tokio::test]
async fn a_namespace_that_exists_is_neither_deployed_into_nor_deleted() {
    let factory = Arc::new(MemoryFactory::default());
    factory.with_world(|w| w.add_namespace("shop"));
    let cell = run(
        &factory,
        &aws_drill(
            "alias/drill",
            "drill-bucket",
            "",
            "",
            STEPS,
            "  - enable-key: k",
        ),
    )
    .await;
    let deploy = cell
        .steps
        .iter()
        .find(|s| s.title == "deploy shop")
        .unwrap();
    assert_eq!(deploy.status, Status::Failed);
    assert!(
        deploy
            .message
            .contains("namespace shop already exists; a drill deploys into namespaces it creates"),
        "{}",
        deploy.message
    );
    factory.with_world(|w| {
        assert!(w.has_namespace("shop"));
        assert!(
            w.has_object("ConfigMap", Some("shop"), "theirs"),
            "their objects are untouched"
        );
        assert!(
            !w.has_object("Secret", Some("shop"), "shop-db"),
            "nothing was applied into it"
        );
    });
    assert!(
        !factory
            .calls()
            .iter()
            .any(|c| c.starts_with("delete_namespace")),
        "{:?}",
        factory.calls()
    );
}

#[tokio::test]
async fn a_velero_that_exists_is_not_replaced() {
    let factory = Arc::new(MemoryFactory::default());
    factory.with_world(|w| w.add_crd("backups.velero.io"));
    let cell = run(
        &factory,
        &aws_drill(
            "alias/drill",
            "drill-bucket",
            "",
            "",
            STEPS,
            "  - enable-key: k",
        ),
    )
    .await;
    assert!(
        setup_error(&cell).contains("the cluster already has a Velero install"),
        "{}",
        setup_error(&cell)
    );
    assert!(
        !factory
            .calls()
            .iter()
            .any(|c| c.starts_with("velero.install")),
        "{:?}",
        factory.calls()
    );
    factory.with_world(|w| {
        assert!(w.has_object("CustomResourceDefinition", None, "backups.velero.io"))
    });
}

#[tokio::test]
async fn existing_key_and_bucket_are_used_when_declared_and_left_as_they_were() {
    let factory = Arc::new(MemoryFactory::default());
    let prod = factory.with_world(|w| {
        w.add_bucket("prod-bucket", "their/object");
        w.add_key("alias/prod")
    });
    let steps = format!(
        "{STEPS}\n  - disable-key: k\n  - backup: {{name: b2, expect: {{phase: Failed, error: DisabledException}}}}"
    );
    let yaml = aws_drill(
        "alias/prod",
        "prod-bucket",
        ", existing: true",
        ", existing: true, prefix: drill",
        &steps,
        "  - enable-key: k",
    );
    // The plan says what will be touched.
    let plan = vdrill::scenario::load_str(
        &repo().join("scenarios/inline.yaml"),
        &repo().join("scenarios"),
        &yaml,
    )
    .unwrap()
    .cells[0]
        .scenario
        .touches_existing();
    assert!(
        plan.iter()
            .any(|l| l.starts_with("key `k` (alias/prod, existing): disable-key, enable-key")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|l| l.starts_with("bucket `prod-bucket` (existing)")),
        "{plan:?}"
    );

    let cell = run(&factory, &yaml).await;
    assert_eq!(cell.status, Status::Passed, "{:#?}", cell.steps);
    factory.with_world(|w| {
        assert_eq!(
            w.key_state(&prod),
            Some(KeyState::Enabled),
            "finally enabled it again"
        );
        assert_eq!(w.alias_target("alias/prod").as_deref(), Some(prod.as_str()));
        let objects = w.bucket_objects("prod-bucket").unwrap();
        assert!(objects.contains(&"their/object".to_string()), "{objects:?}");
        assert!(
            objects.iter().any(|o| o.starts_with("drill/backups/b1/")),
            "the drill's backups stay: {objects:?}"
        );
    });
    let calls = factory.calls();
    // Only what the scenario declared it would do to them: disable and enable the key.
    let touched: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains(&prod) || c.contains("alias/prod") || c.contains("prod-bucket"))
        .collect();
    assert_eq!(
        touched,
        [
            &format!("disable_key {prod}"),
            &format!("enable_key {prod}")
        ],
        "{calls:?}"
    );
    // The namespace it created and its CRD are removed (the cluster is not thrown away).
    assert!(
        calls.contains(&"delete_crd storefronts.shop.vdrill.dev".to_string()),
        "{calls:?}"
    );
}

/// A drill whose assert-encryption checks the key binding by disabling the key,
/// with reads of a disabled key's objects hanging: the check is cut short.
fn binding_drill(timeout: &str) -> String {
    format!(
        r#"
apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {{name: binding}}
environment: {{cluster: existing, storage: aws}}
keys:
  k: {{provider: aws-kms, alias: alias/binding}}
velero:
  version: "1.18"
  locations:
    - {{name: default, provider: aws, bucket: binding-bucket, config: {{region: us-east-1, kmsKeyId: "${{keys.k.alias}}"}}}}
workloads:
  - {{fixture: ../fixtures/workloads/shop.yaml, namespace: shop}}
steps:
  - deploy: shop
  - backup: b1
  - assert-encryption: {{backup: b1, key: k, timeout: {timeout}}}
"#
    )
}

fn hanging_binding_factory() -> Arc<MemoryFactory> {
    Arc::new(MemoryFactory::new(Behaviour {
        alias_key_id_not_reported: true,
        hang_disabled_reads: true,
        ..Default::default()
    }))
}

fn key_left(factory: &MemoryFactory) -> KeyState {
    factory
        .with_world(|w| w.key_state("arn:aws:kms:us-east-1:000000000000:key/00000001-key-k"))
        .expect("the key exists")
}

#[tokio::test]
async fn a_key_disabled_by_a_check_is_enabled_again_after_a_timeout() {
    let factory = hanging_binding_factory();
    let cell = run(&factory, &binding_drill("500ms")).await;
    let check = cell
        .steps
        .iter()
        .find(|s| s.kind == "assert-encryption")
        .unwrap();
    assert_eq!(check.failure_type.as_deref(), Some("timeout"));
    let undo = cell
        .steps
        .iter()
        .find(|s| s.kind == "undo")
        .expect("an undo step ran");
    assert_eq!(undo.status, Status::Passed, "{}", undo.message);
    assert_eq!(
        undo.title,
        "enable-key k (left disabled by an interrupted check)"
    );
    assert_enabled_before_deleted(&factory);
}

/// The key was disabled by the check, enabled again, and only then (being the
/// run's own) deleted at teardown.
fn assert_enabled_before_deleted(factory: &MemoryFactory) {
    let key = "arn:aws:kms:us-east-1:000000000000:key/00000001-key-k";
    let calls: Vec<String> = factory
        .calls()
        .into_iter()
        .filter(|c| c.ends_with(key))
        .collect();
    assert_eq!(
        calls,
        [
            format!("disable_key {key}"),
            format!("enable_key {key}"),
            format!("delete_key {key}")
        ]
    );
}

#[tokio::test]
async fn a_key_disabled_by_a_check_is_enabled_again_after_ctrl_c() {
    let factory = hanging_binding_factory();
    let h = Harness::new();
    let cancel = CancellationToken::new();
    let runner = h.runner(factory.clone(), false, cancel.clone());
    let cells = cells(&binding_drill("5m"));
    let f = factory.clone();
    tokio::spawn(async move {
        // Cancel once the check has disabled the key.
        while key_left(&f) != KeyState::Disabled {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        cancel.cancel();
    });
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), runner.run(&cells))
        .await
        .expect("the run stops");
    let cell = &report.cells[0];
    let check = cell
        .steps
        .iter()
        .find(|s| s.kind == "assert-encryption")
        .unwrap();
    assert_eq!(check.failure_type.as_deref(), Some("interrupted"));
    let undo = cell
        .steps
        .iter()
        .find(|s| s.kind == "undo")
        .expect("an undo step ran");
    assert_eq!(undo.status, Status::Passed, "{}", undo.message);
    assert_enabled_before_deleted(&factory);
}
