//! The GCS object store against a real fake-gcs-server (from the local test bed),
//! and what that emulator records of a Cloud KMS key: nothing.
//! Needs the bed provisioned (`ci/setup.sh` does it).

mod common;

use vdrill::env::gcp::gcs::{GcsStore, GcsTarget};
use vdrill::env::local::fakegcs::FakeGcs;
use vdrill::env::process::Supervisor;
use vdrill::env::{KeyInfo, Limitation, ObjectStore};
use vdrill::log::StepLog;
use vdrill::scenario::{KeyProvider, LocationProvider};

const KEY: &str = "projects/vdrill/locations/global/keyRings/velero/cryptoKeys/backups";

struct Bed {
    _tmp: tempfile::TempDir,
    supervisor: Supervisor,
    fg: FakeGcs,
    log: StepLog,
}

impl Bed {
    async fn start(name: &str) -> Bed {
        let manifest =
            vdrill::env::local::manifest::Manifest::load().expect("the bed is provisioned");
        let (tmp, supervisor, log) = common::emulator_supervisor(name, "gcs check");
        let fg = FakeGcs::start(&manifest, &tmp.path().join("work"), &supervisor, &log)
            .await
            .unwrap_or_else(|e| panic!("fake-gcs-server did not come up: {e:#}"));
        Bed {
            _tmp: tmp,
            supervisor,
            fg,
            log,
        }
    }

    async fn store(&self) -> GcsStore {
        GcsStore::new(
            GcsTarget {
                endpoint: self.fg.endpoint.clone(),
                project: "vdrill".into(),
                emulator: true,
            },
            self.log.redactor(),
        )
        .await
        .unwrap()
    }
}

fn key() -> KeyInfo {
    KeyInfo {
        name: "backup-key".into(),
        provider: KeyProvider::GcpKms,
        id: KEY.into(),
        arn: KEY.into(),
        alias: Some(KEY.into()),
        version: None,
        file: None,
        customer_key: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_store_round_trip_on_fake_gcs_server() {
    let mut bed = Bed::start("gcs-test").await;
    let store = bed.store().await.with_page_size(2);
    let log = bed.log.clone();
    let bucket = format!(
        "drill-{}",
        vdrill::env::hex(&vdrill::env::random_bytes(6).unwrap())
    );

    assert!(!store.bucket_exists(&bucket).await.unwrap());
    store.create_bucket(&bucket, None, &log).await.unwrap();
    assert!(store.bucket_exists(&bucket).await.unwrap());
    let again = store
        .create_bucket(&bucket, None, &log)
        .await
        .expect_err("a second create fails");
    assert!(
        vdrill::log::error_text(&again).contains("HTTP 409"),
        "{again:#}"
    );

    // Five objects under one prefix (names with spaces and slashes), two elsewhere;
    // listed in pages of two.
    let mut under = Vec::new();
    for i in 0..5 {
        let name = format!("backups/b1/part {i}.json");
        store
            .put(
                &bucket,
                &name,
                format!("{{\"part\":{i}}}").into_bytes(),
                Some(KEY),
            )
            .await
            .unwrap();
        under.push(name);
    }
    store
        .put(&bucket, "backups/b2/x.json", b"x".to_vec(), None)
        .await
        .unwrap();
    store
        .put(&bucket, "kopia/repo/p1", vec![7u8; 70_000], None)
        .await
        .unwrap();
    let mut listed = store.list(&bucket, "backups/b1/").await.unwrap();
    listed.sort();
    assert_eq!(listed, under);
    assert_eq!(store.list(&bucket, "").await.unwrap().len(), 7);
    assert_eq!(
        store.read(&bucket, "kopia/repo/p1", None).await.unwrap(),
        70_000
    );
    assert_eq!(store.read(&bucket, &under[3], None).await.unwrap(), 10);

    // What the emulator records of the key an upload asked for: nothing. An object
    // written with kmsKeyName looks exactly like one written without it, so an audit
    // on this emulator cannot tell them apart (hence the store's limitation).
    let with_key = store.head(&bucket, &under[0], None).await.unwrap();
    let without_key = store
        .head(&bucket, "backups/b2/x.json", None)
        .await
        .unwrap();
    assert_eq!(
        with_key.kms_key_name, None,
        "fake-gcs-server now records kmsKeyName: audit it instead of skipping"
    );
    assert_eq!(with_key, without_key);
    assert_eq!(store.limitations(), vec![Limitation::KmsKeyNameNotRecorded]);

    let missing = store
        .head(&bucket, "backups/b1/nope.json", None)
        .await
        .expect_err("no such object");
    let text = vdrill::log::error_text(&missing);
    assert!(
        text.contains("backups/b1/nope.json") && text.contains("HTTP 404"),
        "{text}"
    );

    // Velero's plugin reaches the emulator through storeEndpoint, without credentials.
    let cfg = store.location_config(LocationProvider::Gcp);
    assert_eq!(
        cfg.get("storeEndpoint"),
        Some(&format!("{}/storage/v1/", bed.fg.endpoint))
    );
    assert!(
        store
            .velero_env()
            .contains(&("STORAGE_EMULATOR_HOST".to_string(), bed.fg.endpoint.clone()))
    );

    // A bucket default key is only logged (the emulator keeps no encryption config).
    let other = format!("{bucket}-k");
    store
        .create_bucket(&other, Some(&key()), &log)
        .await
        .unwrap();
    assert!(
        log.text()
            .contains(&format!("bucket {other}: default key `backup-key`")),
        "{}",
        log.text()
    );

    for b in [&bucket, &other] {
        store.delete_bucket(b, &log).await.unwrap();
        assert!(!store.bucket_exists(b).await.unwrap());
    }
    store.delete_bucket(&bucket, &log).await.unwrap();
    assert!(
        log.text()
            .contains(&format!("bucket {bucket} was already gone"))
    );

    bed.fg.stop().await.unwrap();
    bed.supervisor.finish();
}
