//! Key Vault keys against a real lowkey-vault (the Key Vault emulator), started the
//! way the bed starts it: in a network namespace of its own, behind a loopback relay,
//! under a Supervisor. Needs the bed provisioned (lowkey-vault in the manifest) and root.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use vdrill::env::azure::keyvault::{KeyVault, VaultTarget};
use vdrill::env::ledger::Kind;
use vdrill::env::local::lowkey::{LowkeyVault, netns_of};
use vdrill::env::local::manifest::Manifest;
use vdrill::env::process::{LogDirs, Supervisor, processes};
use vdrill::env::{KeyManager, KeyState};
use vdrill::log::StepLog;
use vdrill::scenario::{KeySpec, RotateMode};

struct Bed {
    tmp: tempfile::TempDir,
    supervisor: Supervisor,
    log: StepLog,
}

impl Bed {
    fn new(id: &str) -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        let log = StepLog::discard();
        // Raw logs outside the work folder, so the work folder's emptiness after stop means something.
        let logs = LogDirs {
            raw: tmp.path().join("raw"),
            artifacts: tmp.path().join("artifacts"),
        };
        let supervisor = Supervisor::in_dir(
            &tmp.path().join("beds"),
            Kind::Cell,
            id,
            "lowkey-vault check",
            logs,
            log.redactor().clone(),
            false,
        )
        .unwrap();
        Bed {
            tmp,
            supervisor,
            log,
        }
    }

    fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    async fn start(&self) -> LowkeyVault {
        let manifest = Manifest::load().expect("the bed is provisioned");
        LowkeyVault::start(&manifest, &self.work(), &self.supervisor, &self.log)
            .await
            .unwrap_or_else(|e| panic!("lowkey-vault did not come up: {e:#}"))
    }

    /// Every file under `dir`, read as text.
    fn texts(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(Bed::texts(&p));
            } else {
                out.push((
                    p.clone(),
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
                ));
            }
        }
        out
    }
}

fn spec(name: &str) -> KeySpec {
    serde_json::from_value(serde_json::json!({"provider": "azure-keyvault", "name": name})).unwrap()
}

async fn vault_client(v: &LowkeyVault) -> KeyVault {
    KeyVault::new(VaultTarget {
        url: v.url.clone(),
        ca_pem: Some(v.ca_pem.clone()),
        token: Some(v.token.clone()),
        emulator: true,
    })
    .await
    .unwrap()
}

/// Live processes in the given process groups.
fn in_groups(groups: &[i32]) -> Vec<i32> {
    processes()
        .iter()
        .filter(|p| groups.contains(&p.pgrp) && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lives_through_disable_rotate_soft_delete_recover_and_purge() {
    needs_azure_bed!();
    let bed = Bed::new("keyvault-lifecycle");
    let mut vault = bed.start().await;
    let log = &bed.log;
    let kv = vault_client(&vault).await;

    // Create: an RSA key named as the scenario says, ids in the vault's own spelling.
    let key = kv
        .create("backup-key", &spec("drill-key"), log)
        .await
        .unwrap_or_else(|e| panic!("create: {e:#}"));
    let v1 = key.version.clone().unwrap();
    assert_eq!(key.arn, format!("{}/keys/drill-key", vault.url));
    assert_eq!(key.id, format!("{}/keys/drill-key/{v1}", vault.url));
    assert_eq!(key.alias.as_deref(), Some("drill-key"));
    assert_eq!(key.name, "backup-key");
    for reference in ["drill-key", key.id.as_str(), key.arn.as_str()] {
        assert!(kv.exists(reference).await.unwrap(), "{reference} exists");
        assert_eq!(kv.resolve(reference).await.unwrap(), key.arn);
    }
    assert!(!kv.exists("no-such-key").await.unwrap());
    assert!(
        !kv.exists(&format!(
            "{}/keys/drill-key/0123456789abcdef0123456789abcdef",
            vault.url
        ))
        .await
        .unwrap(),
        "an unknown version"
    );
    let e = kv
        .create("backup-key", &spec("drill-key"), log)
        .await
        .expect_err("the name is taken");
    assert!(format!("{e:#}").contains("already exists"), "{e:#}");
    assert_eq!(kv.state(&key).await.unwrap(), KeyState::Enabled);

    let dek = b"a 32-byte data encryption key!!!".to_vec();
    let wrapped_v1 = kv
        .wrap(&key, None, &dek)
        .await
        .unwrap_or_else(|e| panic!("wrap: {e:#}"));
    assert_ne!(wrapped_v1, dek);
    assert_eq!(kv.unwrap(&key, &v1, &wrapped_v1).await.unwrap(), dek);

    // Disable: the version lists as disabled and refuses to wrap, with the vault's own words.
    kv.disable(&key, log)
        .await
        .unwrap_or_else(|e| panic!("disable: {e:#}"));
    assert_eq!(kv.state(&key).await.unwrap(), KeyState::Disabled);
    let refused = kv
        .wrap(&key, Some(&v1), &dek)
        .await
        .expect_err("a disabled key does not wrap");
    let text = format!("{refused:#}");
    assert!(
        text.contains("not enabled") && text.contains("HTTP 500"),
        "the service's code and message: {text}"
    );
    kv.enable(&key, log)
        .await
        .unwrap_or_else(|e| panic!("enable: {e:#}"));
    assert_eq!(kv.state(&key).await.unwrap(), KeyState::Enabled);
    assert_eq!(
        kv.unwrap(&key, &v1, &kv.wrap(&key, None, &dek).await.unwrap())
            .await
            .unwrap(),
        dek
    );

    // Rotate on demand: a new version of the same key; the old one stays and still unwraps.
    let rotated = kv
        .rotate(&key, RotateMode::OnDemand, log)
        .await
        .unwrap_or_else(|e| panic!("rotate: {e:#}"));
    let v2 = rotated.version.clone().unwrap();
    assert_ne!(v2, v1);
    assert_eq!(rotated.arn, key.arn);
    assert_eq!(rotated.id, format!("{}/keys/drill-key/{v2}", vault.url));
    let versions = kv.key_versions(&rotated).await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        versions.contains(&(v1.clone(), true)) && versions.contains(&(v2.clone(), true)),
        "{versions:?}"
    );
    assert_eq!(
        kv.unwrap(&key, &v1, &wrapped_v1).await.unwrap(),
        dek,
        "the old version still unwraps what it wrapped"
    );
    assert_eq!(
        kv.read(&rotated).await.unwrap().version.as_deref(),
        Some(v2.as_str())
    );
    let e = kv
        .rotate(&rotated, RotateMode::NewKey, log)
        .await
        .expect_err("Key Vault has no aliases");
    assert!(format!("{e:#}").contains("no aliases"), "{e:#}");

    // Soft delete: pending deletion, unreadable, unusable, its name still held.
    kv.schedule_deletion(&rotated, 7, log)
        .await
        .unwrap_or_else(|e| panic!("soft delete: {e:#}"));
    assert_eq!(kv.state(&rotated).await.unwrap(), KeyState::PendingDeletion);
    assert!(
        kv.read(&rotated).await.is_err(),
        "a deleted key cannot be read"
    );
    assert!(
        kv.wrap(&rotated, None, &dek).await.is_err(),
        "a deleted key does not wrap"
    );
    assert!(kv.key_versions(&rotated).await.unwrap().is_empty());
    assert!(
        kv.exists("drill-key").await.unwrap(),
        "a soft-deleted key keeps its name"
    );
    let e = kv
        .create("backup-key", &spec("drill-key"), log)
        .await
        .expect_err("a deleted key's name is taken");
    assert!(format!("{e:#}").contains("deleted key"), "{e:#}");

    // Recover: enabled again, with the same versions.
    kv.cancel_deletion(&rotated, log)
        .await
        .unwrap_or_else(|e| panic!("recover: {e:#}"));
    assert_eq!(kv.state(&rotated).await.unwrap(), KeyState::Enabled);
    let mut after = kv.key_versions(&rotated).await.unwrap();
    let mut before = versions.clone();
    after.sort();
    before.sort();
    assert_eq!(after, before, "the same versions after recovery");
    assert_eq!(kv.unwrap(&key, &v1, &wrapped_v1).await.unwrap(), dek);

    // Teardown: delete and purge; nothing holds the name any more.
    kv.delete(&rotated, log)
        .await
        .unwrap_or_else(|e| panic!("delete+purge: {e:#}"));
    assert!(!kv.exists("drill-key").await.unwrap(), "purged");
    assert_eq!(
        kv.state(&rotated).await.unwrap(),
        KeyState::Other("not found".into())
    );
    kv.delete_alias("drill-key", log).await.unwrap();

    let rss = vault.peak_rss_kib();
    eprintln!(
        "lowkey-vault: ready in {:.1}s, peak RSS {} MiB",
        vault.ready_in.as_secs_f64(),
        rss / 1024
    );
    vault.stop().await.unwrap();
    bed.supervisor.finish();

    // No secret in what is kept: the token, the Authorization header, the TLS private key.
    let token = vault.token.expose_str().to_string();
    let artifacts = Bed::texts(&bed.tmp.path().join("artifacts"));
    let vault_log = artifacts
        .iter()
        .find(|(p, _)| p.ends_with("lowkey-vault.log"))
        .map(|(_, t)| t.clone())
        .expect("the vault's log is kept");
    assert!(
        vault_log.contains("Started LowkeyVaultApp"),
        "the log holds the vault's output:\n{vault_log}"
    );
    let step_log = log.text();
    assert!(
        step_log.contains("rotated") && step_log.contains("deleted and purged"),
        "{step_log}"
    );
    for (path, text) in artifacts
        .iter()
        .chain([(PathBuf::from("step log"), step_log)].iter())
    {
        assert!(!text.contains(&token), "the token is in {}", path.display());
        assert!(
            !text.contains("PRIVATE KEY"),
            "a private key is in {}",
            path.display()
        );
        assert!(
            !text.to_lowercase().contains("authorization: bearer"),
            "an Authorization header is in {}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowkey_vault_is_off_the_network_and_leaves_nothing_behind() {
    needs_azure_bed!();
    let bed = Bed::new("keyvault-isolation");
    let mut vault = bed.start().await;
    let pid = vault.process.pid as i32;
    let port = vault.port;

    // The JVM runs in a network namespace of its own.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "java"
    );
    let (theirs, ours) = (
        netns_of(&pid.to_string()).unwrap(),
        netns_of("self").unwrap(),
    );
    assert_ne!(theirs, ours, "lowkey-vault shares our network namespace");

    // In ours, nothing of its process group listens; the only listener is the relay, on loopback.
    let ss = |prefix: &[&str]| {
        let out = std::process::Command::new(prefix.first().copied().unwrap_or("ss"))
            .args(prefix.iter().skip(1).chain(["-Hltnp"].iter()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let host = ss(&["ss"]);
    let group = in_groups(&[pid]);
    assert!(!group.is_empty());
    let theirs_here: Vec<&String> = host
        .iter()
        .filter(|l| group.iter().any(|p| l.contains(&format!("pid={p},"))))
        .collect();
    assert!(
        theirs_here.is_empty(),
        "lowkey-vault listens in the host's namespace: {theirs_here:?}"
    );
    let me = std::process::id();
    let relay: Vec<&String> = host
        .iter()
        .filter(|l| l.contains(&format!("pid={me},")) && l.contains(&format!(":{port} ")))
        .collect();
    assert_eq!(relay.len(), 1, "{host:?}");
    assert_eq!(
        relay[0].split_whitespace().nth(3).unwrap(),
        format!("127.0.0.1:{port}"),
        "the relay binds loopback only"
    );

    // Inside its namespace the token connector binds every interface (why the namespace
    // exists), and the vault listens on the relay's port number.
    let ns_path = format!("--net=/proc/{pid}/ns/net");
    let inside = ss(&["nsenter", ns_path.as_str(), "ss"]);
    let java: Vec<&String> = inside
        .iter()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .collect();
    assert!(
        java.iter()
            .any(|l| l.split_whitespace().nth(3).unwrap().starts_with("*:")),
        "{java:?}"
    );
    assert!(
        java.iter().any(|l| l
            .split_whitespace()
            .nth(3)
            .unwrap()
            .ends_with(&format!("127.0.0.1]:{port}"))
            || l.contains(&format!("127.0.0.1:{port} "))),
        "{java:?}"
    );

    // It serves through the relay, with our CA, and its TLS key is no longer on disk.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(vault.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/keys?api-version=7.5", vault.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "no Authorization, no access");
    let authed = client
        .get(format!("{}/keys?api-version=7.5", vault.url))
        .bearer_auth(vault.token.expose_str())
        .send()
        .await
        .unwrap();
    assert_eq!(authed.status().as_u16(), 200);
    let untrusting = reqwest::Client::builder().build().unwrap();
    assert!(
        untrusting.get(&vault.url).send().await.is_err(),
        "its certificate is not trusted without our CA"
    );
    let work = bed.work();
    assert!(work.join("lowkey-vault/tls/server.crt").exists());
    assert!(
        !work.join("lowkey-vault/tls/server.key").exists(),
        "the server key stays on disk"
    );
    let relay_threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "lowkey-netns")
            })
            .count()
    };
    assert_eq!(relay_threads(), 1);

    // Stop: no process, no relay (port closed, thread gone), no data.
    vault.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        in_groups(&[pid]).is_empty(),
        "left behind: {:?}",
        in_groups(&[pid])
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "relay port {port} still open"
    );
    assert_eq!(relay_threads(), 0, "the relay thread is gone");
    assert!(
        !work.join("lowkey-vault").exists(),
        "lowkey-vault's folder is left"
    );
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "data left in the work folder: {left:?}");
    assert!(
        !Path::new(&format!("/tmp/hsperfdata_root/{pid}")).exists(),
        "the JVM left its perf data in /tmp"
    );
    bed.supervisor.finish();
    assert!(
        vdrill::env::ledger::list(&bed.tmp.path().join("beds")).is_empty(),
        "the ledger record is gone"
    );
}
