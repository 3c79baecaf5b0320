//! The Azure Blob object store against a real Azurite (from the local test bed),
//! with Azurite's own random account and key, signed with Shared Key.
//! Needs the bed provisioned (`ci/setup.sh` does it).

mod common;

use std::path::PathBuf;

use base64::Engine as _;
use vdrill::env::azure::blob::{BlobStore, BlobTarget};
use vdrill::env::local::azurite::Azurite;
use vdrill::env::process::Supervisor;
use vdrill::env::{KeyInfo, ObjectStore};
use vdrill::log::{REDACTED, StepLog};
use vdrill::scenario::{KeyProvider, LocationProvider};

/// Azurite's documented development account and key (public, in Microsoft's docs).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

struct Bed {
    tmp: tempfile::TempDir,
    supervisor: Supervisor,
    az: Azurite,
    log: StepLog,
}

impl Bed {
    async fn start(name: &str) -> Bed {
        let manifest =
            vdrill::env::local::manifest::Manifest::load().expect("the bed is provisioned");
        let (tmp, supervisor, log) = common::emulator_supervisor(name, "azure blob check");
        let az = Azurite::start(&manifest, &tmp.path().join("work"), &supervisor, &log)
            .await
            .unwrap_or_else(|e| panic!("Azurite did not come up: {e:#}"));
        Bed {
            tmp,
            supervisor,
            az,
            log,
        }
    }

    fn target(&self) -> BlobTarget {
        BlobTarget {
            endpoint: self.az.blob_endpoint.clone(),
            account: self.az.account.clone(),
            key: self.az.key.clone(),
            emulator: true,
        }
    }

    async fn store(&self) -> BlobStore {
        BlobStore::new(self.target(), self.log.redactor())
            .await
            .unwrap()
    }

    fn artifact_log(&self) -> PathBuf {
        self.tmp.path().join("env/azurite.log")
    }

    fn raw_log(&self) -> PathBuf {
        self.tmp.path().join("work/logs/azurite.log")
    }
}

fn container_name() -> String {
    format!(
        "drill-{}",
        vdrill::env::hex(&vdrill::env::random_bytes(6).unwrap())
    )
}

fn error_text(e: &anyhow::Error) -> String {
    vdrill::log::error_text(e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_store_round_trip_on_azurite_with_its_own_account() {
    let mut bed = Bed::start("azure-blob-test").await;
    let store = bed.store().await.with_page_size(2);
    let log = bed.log.clone();
    let c = container_name();

    // Container lifecycle. A default key is not a container property on Azure: logged, not fatal.
    assert!(!store.bucket_exists(&c).await.unwrap());
    let key = KeyInfo {
        name: "backup-key".into(),
        provider: KeyProvider::AzureKeyvault,
        id: "https://vault.example/keys/k/1".into(),
        arn: "https://vault.example/keys/k/1".into(),
        alias: Some("k".into()),
        version: Some("1".into()),
        file: None,
        customer_key: None,
    };
    store.create_bucket(&c, Some(&key), &log).await.unwrap();
    assert!(store.bucket_exists(&c).await.unwrap());
    assert!(
        log.text()
            .contains(&format!("container {c}: default key `backup-key` ignored")),
        "{}",
        log.text()
    );
    let again = store
        .create_bucket(&c, None, &log)
        .await
        .expect_err("a second create fails");
    assert!(
        error_text(&again).contains("ContainerAlreadyExists")
            && error_text(&again).contains("HTTP 409"),
        "{again:#}"
    );

    // Blobs: five under one prefix, two elsewhere; one of 9 MiB, which the SDK uploads in
    // 4 MiB blocks (block ids in the query string) and downloads in parallel ranges.
    let big: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut under = Vec::new();
    for i in 0..5 {
        let name = format!("backups/b1/part {i}.json");
        let body = if i == 0 {
            big.clone()
        } else {
            format!("{{\"part\":{i}}}").into_bytes()
        };
        store
            .put(&c, &name, body)
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e:#}"));
        under.push(name);
    }
    for name in ["restores/r1/restore-r1-logs.gz", "backups-other/x"] {
        store.put(&c, name, b"elsewhere".to_vec()).await.unwrap();
    }

    // Listing in pages of two: every name, and only those under the prefix.
    let mut listed = store.list(&c, "backups/b1/").await.unwrap();
    listed.sort();
    assert_eq!(listed, under, "all five, over three pages");
    assert_eq!(store.list(&c, "").await.unwrap().len(), 7);
    assert!(store.list(&c, "nothing/").await.unwrap().is_empty());

    // Properties: what Azurite reports for a blob written without scope or customer key.
    let head = store
        .head(&c, "backups/b1/part 1.json", None)
        .await
        .unwrap();
    assert_eq!(
        head.server_encrypted,
        Some(true),
        "Azurite reports x-ms-server-encrypted: true: {head:?}"
    );
    assert_eq!(head.encryption_scope, None);
    assert_eq!(head.encryption_key_sha256, None);
    assert_eq!(head.server_side_encryption, None);
    let missing = store
        .head(&c, "backups/b1/none", None)
        .await
        .expect_err("no such blob");
    assert!(
        error_text(&missing).contains("BlobNotFound") && error_text(&missing).contains("HTTP 404"),
        "{missing:#}"
    );

    // A customer-provided key: Azurite (strict) refuses the feature with a 500, which the
    // client retries, briefly.
    let cpk = log
        .redactor()
        .secret(vdrill::env::random_bytes(32).unwrap());
    let started = std::time::Instant::now();
    let refused = store
        .read(&c, "backups/b1/part 1.json", Some(&cpk))
        .await
        .expect_err("Azurite has no customer-provided keys");
    assert!(error_text(&refused).contains("FeatureNotSupported: x-ms-encryption-key header or parameter is not supported in Azurite strict mode"), "{refused:#}");
    assert!(error_text(&refused).contains("HTTP 500"), "{refused:#}");
    let refused = store
        .head(&c, "backups/b1/part 1.json", Some(&cpk))
        .await
        .expect_err("Azurite has no customer-provided keys");
    assert!(
        error_text(&refused).contains("FeatureNotSupported"),
        "{refused:#}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "retries are bounded: {:?}",
        started.elapsed()
    );

    // Reading: the whole body, its length; errors carry the service's code and message.
    assert_eq!(
        store
            .read(&c, "backups/b1/part 0.json", None)
            .await
            .unwrap(),
        big.len() as u64
    );
    assert_eq!(
        store
            .read(&c, "backups/b1/part 3.json", None)
            .await
            .unwrap(),
        b"{\"part\":3}".len() as u64
    );
    let gone = store
        .read(&c, "backups/b1/none", None)
        .await
        .expect_err("no such blob");
    let text = error_text(&gone);
    assert!(
        text.contains("BlobNotFound: The specified blob does not exist.")
            && text.contains("HTTP 404"),
        "{text}"
    );

    // What Velero's Azure plugin is given.
    let config = store.location_config(LocationProvider::Azure);
    assert_eq!(config.get("storageAccount"), Some(&bed.az.account));
    assert_eq!(
        config.get("storageAccountKeyEnvVar").map(String::as_str),
        Some("AZURE_STORAGE_ACCOUNT_ACCESS_KEY")
    );
    assert_eq!(config.get("storageAccountURI"), Some(&bed.az.blob_endpoint));
    assert_eq!(config.len(), 3, "{config:?}");
    let creds = store.velero_credentials(vdrill::scenario::LocationProvider::Azure);
    assert_eq!(
        creds.expose_str(),
        format!(
            "AZURE_STORAGE_ACCOUNT_ACCESS_KEY={}\nAZURE_CLOUD_NAME=AzurePublicCloud\n",
            bed.az.key.expose_str()
        )
    );

    // Deleting the container deletes its blobs.
    store.delete_bucket(&c, &log).await.unwrap();
    assert!(log.text().contains(&format!("deleted container {c}")));
    assert!(!store.bucket_exists(&c).await.unwrap());
    store
        .delete_bucket(&c, &log)
        .await
        .expect("deleting a container that is gone is not an error");
    assert!(
        log.text()
            .contains(&format!("container {c} was already gone")),
        "{}",
        log.text()
    );
    let listing = store.list(&c, "").await.expect_err("the container is gone");
    assert!(
        error_text(&listing).contains("ContainerNotFound"),
        "{listing:#}"
    );

    // No secret anywhere: the key is not on Azurite's command line (it is in its
    // environment), nor in its logs, the ledger record or the step log; and what
    // would leak is redacted, in every form (base64, raw bytes' base64 and hex).
    let pid = bed.az.process.pid;
    let key_b64 = bed.az.key.expose_str().to_string();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&key_b64)
        .unwrap();
    let raw_hex = vdrill::env::hex(&raw);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&key_b64),
        "the key is on the command line"
    );
    let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap())
        .into_owned();
    assert!(
        environ.contains(&format!("AZURITE_ACCOUNTS={}:{key_b64}", bed.az.account)),
        "Azurite runs with its own account"
    );
    log.line(format!(
        "leak test: key {key_b64}, raw {raw_hex}, credentials {}",
        creds.expose_str()
    ));
    bed.az.stop().await.unwrap();
    bed.supervisor.copy_logs();
    let step_log = log.text();
    let artifact = std::fs::read_to_string(bed.artifact_log()).unwrap();
    let raw_log = std::fs::read_to_string(bed.raw_log()).unwrap();
    let mut ledger = String::new();
    for entry in std::fs::read_dir(bed.tmp.path().join("beds")).unwrap() {
        ledger.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    for (what, text) in [
        ("step log", &step_log),
        ("Azurite's artifact log", &artifact),
        ("Azurite's raw log", &raw_log),
        ("ledger", &ledger),
    ] {
        assert!(!text.contains(&key_b64), "the key is in the {what}");
        assert!(
            !text.contains(&raw_hex),
            "the raw key (hex) is in the {what}"
        );
    }
    assert!(
        step_log.contains(&format!(
            "leak test: key {REDACTED}, raw {REDACTED}, credentials {REDACTED}"
        )),
        "{step_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_and_the_development_account_is_gone() {
    let mut bed = Bed::start("azure-blob-auth-test").await;
    let good = bed.store().await;
    let c = container_name();
    good.create_bucket(&c, None, &bed.log).await.unwrap();
    good.put(&c, "backups/a", b"data".to_vec()).await.unwrap();

    // The same account with another key: every call is refused with 403. Azurite names
    // a bad signature `AuthorizationFailure` (Azure Storage says `AuthenticationFailed`).
    let other = bed.log.redactor().secret(
        base64::engine::general_purpose::STANDARD.encode(vdrill::env::random_bytes(64).unwrap()),
    );
    let wrong = BlobStore::new(
        BlobTarget {
            key: other,
            ..bed.target()
        },
        bed.log.redactor(),
    )
    .await
    .unwrap();
    let e = wrong
        .list(&c, "")
        .await
        .expect_err("a wrong key is refused");
    let text = error_text(&e);
    assert!(
        text.contains("AuthorizationFailure: Server failed to authenticate the request")
            && text.contains("HTTP 403"),
        "{text}"
    );
    let e = wrong
        .read(&c, "backups/a", None)
        .await
        .expect_err("a wrong key is refused");
    assert!(
        error_text(&e).contains("AuthorizationFailure") && error_text(&e).contains("HTTP 403"),
        "{e:#}"
    );
    let e = wrong
        .bucket_exists(&c)
        .await
        .expect_err("a refusal is not a missing container");
    assert!(error_text(&e).contains("HTTP 403"), "{e:#}");
    let e = wrong
        .delete_bucket(&c, &bed.log)
        .await
        .expect_err("nor may it delete");
    assert!(error_text(&e).contains("AuthorizationFailure"), "{e:#}");
    assert!(
        good.bucket_exists(&c).await.unwrap(),
        "the container is still there"
    );

    // The documented development account does not exist on this Azurite.
    let port_url = bed
        .az
        .blob_endpoint
        .trim_end_matches(&format!("/{}", bed.az.account))
        .to_string();
    let dev_key = bed.log.redactor().secret(DEV_KEY);
    let dev = BlobStore::new(
        BlobTarget {
            endpoint: format!("{port_url}/{DEV_ACCOUNT}"),
            account: DEV_ACCOUNT.into(),
            key: dev_key,
            emulator: true,
        },
        bed.log.redactor(),
    )
    .await
    .unwrap();
    let e = dev
        .list(&c, "")
        .await
        .expect_err("the development account is refused");
    assert!(
        error_text(&e).contains("ResourceNotFound") && error_text(&e).contains("HTTP 404"),
        "{e:#}"
    );

    bed.az.stop().await.unwrap();
}
