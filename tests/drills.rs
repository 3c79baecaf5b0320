//! The shipped drills (AWS on LocalStack, Azure on Azurite + lowkey-vault, GCP on
//! fake-gcs-server, and all three in one Velero), end to end on the local test bed, for each pinned
//! Velero version; and proof that a broken world fails them loudly.
//! JUnit and artifacts of every run are kept under $VDRILL_CI_ARTIFACTS.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::repo;

fn artifacts(name: &str) -> PathBuf {
    let root = std::env::var_os("VDRILL_CI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-artifacts"));
    let dir = root.join("drills").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct Run {
    code: Option<i32>,
    report: serde_json::Value,
    stdout: String,
    dir: PathBuf,
}

fn run(scenario: &str, velero: &str, name: &str, env: &[(&str, &str)]) -> Run {
    let junit = artifacts(name).join(format!("{name}.junit.xml"));
    let velero = format!("velero={velero}");
    let junit = junit.to_str().unwrap();
    run_with(
        &[scenario, "--matrix", &velero, "--junit", junit],
        name,
        env,
    )
}

/// `vdrill run` with these arguments and environment (from the repository), its
/// artifacts under `name`. The bed is provisioned by ci/setup.sh: the provisioning
/// phase finds it cached.
fn run_with(args: &[&str], name: &str, env: &[(&str, &str)]) -> Run {
    let dir = artifacts(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdrill"));
    cmd.current_dir(repo())
        .arg("run")
        .args(args)
        .arg("--artifacts")
        .arg(&dir)
        .env("CI", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vdrill");
    let report = std::fs::read(dir.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Run {
        code: out.status.code(),
        report,
        stdout: format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        dir,
    }
}

fn failures(r: &Run) -> String {
    let mut s = String::new();
    for cell in r.report["cells"].as_array().into_iter().flatten() {
        for step in cell["steps"].as_array().into_iter().flatten() {
            if step["status"] == "failed" {
                s.push_str(&format!("{}: {}\n", step["title"], step["message"]));
            }
        }
    }
    s
}

fn drill(scenario: &str, velero: &str) -> Run {
    drill_on(scenario, velero, None)
}

/// A drill's cell of one Velero version, and of one cluster when the scenario has a
/// `cluster` dimension.
fn drill_on(scenario: &str, velero: &str, cluster: Option<&str>) -> Run {
    let name = match cluster {
        Some(c) => format!("{scenario}-{velero}-{c}"),
        None => format!("{scenario}-{velero}"),
    };
    let junit = artifacts(&name).join(format!("{name}.junit.xml"));
    let velero_pair = format!("velero={velero}");
    let cluster_pair = cluster.map(|c| format!("cluster={c}"));
    let junit = junit.to_str().unwrap().to_string();
    let mut args = vec![
        format!("scenarios/{scenario}.yaml"),
        "--matrix".into(),
        velero_pair,
    ];
    if let Some(c) = cluster_pair {
        args.extend(["--matrix".into(), c]);
    }
    args.extend(["--junit".into(), junit]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run_with(&args, &name, &[]);
    assert_eq!(
        r.code,
        Some(0),
        "{name} failed:\n{}\n{}\nartifacts: {}",
        failures(&r),
        r.stdout,
        r.dir.display()
    );
    let cell = &r.report["cells"][0];
    assert_eq!(cell["status"], "passed");
    assert!(
        cell["velero_version"]
            .as_str()
            .unwrap()
            .starts_with(&format!("v{velero}.")),
        "{}",
        cell["velero_version"]
    );
    assert!(r.dir.join(format!("{name}.junit.xml")).exists());
    let restores = cell["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "assert-restored")
        .count();
    if restores > 0 {
        assert!(cell["rto"].as_f64().unwrap() > 0.0, "RTO recorded");
    }
    r
}

/// An Azure drill: it passes, the plugin version is reported, and what Azurite cannot
/// show (the account's customer-managed key) is skipped with that reason, never passed.
fn azure_drill(scenario: &str, velero: &str) {
    needs_azure_bed!();
    let r = drill(scenario, velero);
    let cell = &r.report["cells"][0];
    let plugin = cell["velero_plugins"]["azure"]
        .as_str()
        .unwrap_or_else(|| panic!("the azure plugin version is reported: {cell}"));
    assert!(plugin.starts_with("v1."), "{plugin}");
    let junit =
        std::fs::read_to_string(r.dir.join(format!("{scenario}-{velero}.junit.xml"))).unwrap();
    assert!(
        junit.contains(&format!(r#"name="velero.plugin.azure" value="{plugin}""#)),
        "{junit}"
    );
    let assertions: Vec<&serde_json::Value> = cell["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "assert-encryption")
        .flat_map(|s| s["assertions"].as_array().unwrap().iter())
        .collect();
    assert!(!assertions.is_empty());
    let named = |needle: &str| {
        assertions
            .iter()
            .filter(|a| a["name"].as_str().unwrap().contains(needle))
            .copied()
            .collect::<Vec<_>>()
    };
    for a in named("storage account encrypts with key")
        .into_iter()
        .chain(named("blobs are bound to key"))
    {
        assert_eq!(a["status"], "skipped", "{a}");
        assert!(
            a["message"].as_str().unwrap().contains("Azurite"),
            "the reason names the emulator: {a}"
        );
    }
    assert!(
        named("storage account encrypts with key").len() == named("backup wrote objects").len(),
        "{assertions:?}"
    );
    for a in named("encrypted by the service")
        .into_iter()
        .chain(named("is enabled in the key manager"))
    {
        assert_eq!(a["status"], "passed", "{a}");
    }
    assert!(
        junit.contains("<skipped message=") && junit.contains("Azurite"),
        "skipped checks carry their reason in JUnit"
    );
    // The key's version as each backup saw it: a rotation must change it.
    let versions: Vec<String> = named("is enabled in the key manager")
        .iter()
        .map(|a| {
            a["message"]
                .as_str()
                .unwrap()
                .rsplit("(version ")
                .next()
                .unwrap()
                .trim_end_matches(')')
                .to_string()
        })
        .collect();
    if scenario == "azure-keyvault-rotate" {
        assert_eq!(versions.len(), 2);
        assert_ne!(versions[0], versions[1], "the rotation made a new version");
    } else {
        assert!(
            versions.windows(2).all(|w| w[0] == w[1]),
            "no rotation, one version: {versions:?}"
        );
    }
}

macro_rules! azure_drills {
    ($($test:ident: $scenario:literal, $velero:literal;)*) => {$(
        #[test]
        fn $test() {
            azure_drill($scenario, $velero);
        }
    )*};
}

azure_drills! {
    azure_keyvault_basic_1_17: "azure-keyvault-basic", "1.17";
    azure_keyvault_basic_1_18: "azure-keyvault-basic", "1.18";
    azure_keyvault_rotate_1_17: "azure-keyvault-rotate", "1.17";
    azure_keyvault_rotate_1_18: "azure-keyvault-rotate", "1.18";
    azure_keyvault_soft_delete_1_17: "azure-keyvault-soft-delete", "1.17";
    azure_keyvault_soft_delete_1_18: "azure-keyvault-soft-delete", "1.18";
}

/// The encryption assertions of a run's first cell, by a part of their name.
fn assertions_named(r: &Run, needle: &str) -> Vec<serde_json::Value> {
    r.report["cells"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "assert-encryption")
        .flat_map(|s| s["assertions"].as_array().unwrap().iter())
        .filter(|a| a["name"].as_str().unwrap().contains(needle))
        .cloned()
        .collect()
}

/// A GCS audit on fake-gcs-server: the objects are there and described, and the
/// key checks the emulator cannot make are skipped with that reason, never passed.
fn gcs_audit_skipped(r: &Run) {
    let keyed = assertions_named(r, "encrypted with Cloud KMS key");
    assert!(!keyed.is_empty(), "{}", r.report);
    for a in keyed
        .iter()
        .chain(&assertions_named(r, "is enabled in the key manager"))
        .filter(|a| a["name"].as_str().unwrap().contains("projects/"))
    {
        assert_eq!(a["status"], "skipped", "{a}");
        assert!(
            a["message"].as_str().unwrap().contains("fake-gcs-server"),
            "the reason names the emulator: {a}"
        );
    }
    for a in assertions_named(r, "backup wrote objects")
        .iter()
        .chain(&assertions_named(r, "customer-supplied key"))
    {
        assert_eq!(a["status"], "passed", "{a}");
    }
}

fn gcp_drill(velero: &str) {
    let r = drill("gcp-kms-basic", velero);
    let cell = &r.report["cells"][0];
    let plugin = cell["velero_plugins"]["gcp"]
        .as_str()
        .unwrap_or_else(|| panic!("the gcp plugin version is reported: {cell}"));
    assert!(plugin.starts_with("v1."), "{plugin}");
    gcs_audit_skipped(&r);
    let junit =
        std::fs::read_to_string(r.dir.join(format!("gcp-kms-basic-{velero}.junit.xml"))).unwrap();
    assert!(
        junit.contains(&format!(r#"name="velero.plugin.gcp" value="{plugin}""#)),
        "{junit}"
    );
    assert!(
        junit.contains("<skipped message=") && junit.contains("fake-gcs-server keeps no record"),
        "skipped checks carry their reason in JUnit"
    );
}

#[test]
fn gcp_kms_basic_1_17() {
    gcp_drill("1.17");
}

#[test]
fn gcp_kms_basic_1_18() {
    gcp_drill("1.18");
}

/// S3, Azure and GCS locations in one Velero: a backup to each, each audited against
/// its own key in its own store, each restored.
fn multi_cloud(velero: &str) {
    needs_azure_bed!();
    let r = drill("multi-cloud", velero);
    let cell = &r.report["cells"][0];
    for plugin in ["aws", "azure", "gcp"] {
        assert!(
            cell["velero_plugins"][plugin].is_string(),
            "{plugin} plugin reported: {cell}"
        );
    }
    let wrote = assertions_named(&r, "backup wrote objects");
    assert_eq!(wrote.len(), 3, "{wrote:?}");
    assert!(
        assertions_named(&r, "every object is SSE-KMS")
            .iter()
            .all(|a| a["status"] == "passed")
    );
    assert!(
        assertions_named(&r, "encrypted by the service")
            .iter()
            .all(|a| a["status"] == "passed")
    );
    gcs_audit_skipped(&r);
    let steps = cell["steps"].as_array().unwrap();
    let audited: Vec<String> = steps
        .iter()
        .filter(|s| s["kind"] == "assert-encryption")
        .map(|s| std::fs::read_to_string(r.dir.join(s["log_file"].as_str().unwrap())).unwrap())
        .collect();
    for bucket in ["vdrill-multi-s3", "vdrill-multi-azure", "vdrill-multi-gcs"] {
        assert!(
            audited
                .iter()
                .any(|l| l.contains(&format!("in bucket {bucket}"))),
            "{bucket} audited: {audited:?}"
        );
    }
    assert_eq!(
        steps
            .iter()
            .filter(|s| s["kind"] == "assert-restored" && s["status"] == "passed")
            .count(),
        3
    );
}

#[test]
fn multi_cloud_1_17() {
    multi_cloud("1.17");
}

#[test]
fn multi_cloud_1_18() {
    multi_cloud("1.18");
}

#[test]
fn without_kms_key_name_the_gcs_audit_on_the_emulator_cannot_tell_and_says_so() {
    // The same verdict as with the key: fake-gcs-server records none either way.
    let r = run(
        "tests/scenarios/broken/gcs-no-kms-key-name.yaml",
        "1.18",
        "broken-gcs-no-kms-key-name",
        &[],
    );
    assert_eq!(
        r.code,
        Some(0),
        "{}
{}",
        failures(&r),
        r.stdout
    );
    gcs_audit_skipped(&r);
    let keyed = assertions_named(&r, "encrypted with Cloud KMS key");
    assert_eq!(keyed.len(), 1);
    assert_ne!(keyed[0]["status"], "passed");
    let cell = &r.report["cells"][0];
    for kind in ["disable-key", "enable-key"] {
        let step = cell["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} ran: {cell}"));
        assert_eq!(step["status"], "skipped", "{step}");
        assert!(
            step["message"]
                .as_str()
                .unwrap()
                .contains("exists only on real GCP"),
            "{step}"
        );
    }
}

/// The same scenario on the local bed and on kind (Velero and its node-agent in the
/// cluster, LocalStack in a container on the kind network): the same verdict.
macro_rules! drills_on_clusters {
    ($($test:ident: $scenario:literal, $velero:literal, $cluster:literal;)*) => {$(
        #[test]
        fn $test() {
            let r = drill_on($scenario, $velero, Some($cluster));
            assert_eq!(r.report["cells"][0]["cluster"], $cluster);
        }
    )*};
}

/// A file-system (Kopia) backup drill on kind: it passes, the volume's data came back
/// file by file, and each of `also` names an assertion that passed.
fn fsb_drill(scenario: &str, velero: &str, also: &[&str]) -> Vec<serde_json::Value> {
    let r = drill(scenario, velero);
    let cell = &r.report["cells"][0];
    assert_eq!(cell["cluster"], "kind");
    let assertions: Vec<serde_json::Value> = cell["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["assertions"].as_array().into_iter().flatten())
        .cloned()
        .collect();
    let passed = |prefix: &str| {
        assertions.iter().any(|a| {
            a["name"].as_str().unwrap_or("").starts_with(prefix) && a["status"] == "passed"
        })
    };
    for name in ["volume of pod fsb/fsb-writer restored byte for byte"]
        .iter()
        .chain(also)
    {
        assert!(passed(name), "{name}: {assertions:#?}");
    }
    assertions
}

fn message_of<'a>(assertions: &'a [serde_json::Value], prefix: &str) -> &'a str {
    assertions
        .iter()
        .find(|a| a["name"].as_str().unwrap_or("").starts_with(prefix))
        .and_then(|a| a["message"].as_str())
        .unwrap_or_else(|| panic!("no assertion {prefix}: {assertions:#?}"))
}

macro_rules! fsb_drills {
    ($($test:ident: $scenario:literal, $velero:literal, $check:path;)*) => {$(
        #[test]
        fn $test() {
            $check(fsb_drill($scenario, $velero, &[]));
        }
    )*};
}

fn kms_basic(a: Vec<serde_json::Value>) {
    assert!(
        a.iter().any(|x| x["name"]
            .as_str()
            .unwrap_or("")
            .starts_with("canary absent from every object")
            && x["status"] == "passed"),
        "{a:#?}"
    );
}

/// The audit names the Kopia objects written without the location's key.
fn kopia_without_bucket_key(a: Vec<serde_json::Value>) {
    kms_basic(a.clone());
    let m = message_of(&a, "Kopia repository objects are not under key backup-key");
    assert!(m.starts_with("all "), "{m}");
    assert!(m.contains("kopia/fsb/"), "{m}");
    let backups = message_of(&a, "every object is SSE-KMS");
    assert!(!backups.is_empty());
}

/// The file-system backup with the key disabled failed with the KMS error in its
/// PodVolumeBackup; the restore of the good backup failed with KMS.DisabledException.
fn kms_disable_midrun(a: Vec<serde_json::Value>) {
    let passed = |prefix: &str| {
        a.iter()
            .find(|x| {
                x["name"].as_str().unwrap_or("").starts_with(prefix) && x["status"] == "passed"
            })
            .and_then(|x| x["message"].as_str())
            .unwrap_or_else(|| panic!("no passed {prefix}: {a:#?}"))
            .to_string()
    };
    let pvb = passed("error matches /PodVolumeBackup");
    assert!(pvb.contains("PodVolumeBackup while-disabled-"), "{pvb}");
    assert!(pvb.contains("is disabled"), "{pvb}");
    let restore = passed("error matches /KMS.DisabledException/");
    assert!(restore.contains("KMS.DisabledException"), "{restore}");
}

/// The restore with another repository password failed with Kopia's error.
fn wrong_repository_password(a: Vec<serde_json::Value>) {
    let m = message_of(&a, "error matches /invalid repository password/");
    assert!(m.contains("invalid repository password"), "{m}");
}

fsb_drills! {
    fsb_kms_basic_1_17: "fsb-kms-basic", "1.17", kms_basic;
    fsb_kms_basic_1_18: "fsb-kms-basic", "1.18", kms_basic;
    fsb_kopia_without_bucket_key_1_17: "fsb-kopia-without-bucket-key", "1.17", kopia_without_bucket_key;
    fsb_kopia_without_bucket_key_1_18: "fsb-kopia-without-bucket-key", "1.18", kopia_without_bucket_key;
    fsb_kms_disable_midrun_1_17: "fsb-kms-disable-midrun", "1.17", kms_disable_midrun;
    fsb_kms_disable_midrun_1_18: "fsb-kms-disable-midrun", "1.18", kms_disable_midrun;
    fsb_wrong_repository_password_1_17: "fsb-wrong-repository-password", "1.17", wrong_repository_password;
    fsb_wrong_repository_password_1_18: "fsb-wrong-repository-password", "1.18", wrong_repository_password;
}

drills_on_clusters! {
    aws_kms_disable_midrun_1_17: "aws-kms-disable-midrun", "1.17", "local";
    aws_kms_disable_midrun_1_18: "aws-kms-disable-midrun", "1.18", "local";
    aws_kms_disable_midrun_kind_1_17: "aws-kms-disable-midrun", "1.17", "kind";
    aws_kms_disable_midrun_kind_1_18: "aws-kms-disable-midrun", "1.18", "kind";
}

macro_rules! drills {
    ($($test:ident: $scenario:literal, $velero:literal;)*) => {$(
        #[test]
        fn $test() {
            drill($scenario, $velero);
        }
    )*};
}

drills! {
    aws_kms_basic_1_17: "aws-kms-basic", "1.17";
    aws_kms_basic_1_18: "aws-kms-basic", "1.18";
    aws_kms_rotate_1_17: "aws-kms-rotate", "1.17";
    aws_kms_rotate_1_18: "aws-kms-rotate", "1.18";
    aws_kms_pending_deletion_1_17: "aws-kms-pending-deletion", "1.17";
    aws_kms_pending_deletion_1_18: "aws-kms-pending-deletion", "1.18";
    aws_sse_c_1_17: "aws-sse-c", "1.17";
    aws_sse_c_1_18: "aws-sse-c", "1.18";
}

fn assert_step(r: &Run, kind: &str) -> serde_json::Value {
    assert_eq!(r.code, Some(1), "the drill must fail:\n{}", r.stdout);
    let steps = r.report["cells"][0]["steps"].as_array().unwrap().clone();
    steps
        .into_iter()
        .find(|s| s["kind"] == kind && s["status"] == "failed")
        .unwrap_or_else(|| panic!("no failed {kind} step:\n{}", failures(r)))
}

#[test]
fn without_kms_key_id_in_the_location_assert_encryption_names_every_object() {
    let r = run(
        "tests/scenarios/broken/no-kms-key-in-bsl.yaml",
        "1.18",
        "broken-no-kms-key",
        &[],
    );
    let step = assert_step(&r, "assert-encryption");
    let msg = step["message"].as_str().unwrap();
    for object in [
        "backups/unencrypted/velero-backup.json",
        "backups/unencrypted/unencrypted.tar.gz",
        "backups/unencrypted/unencrypted-logs.gz",
    ] {
        assert!(msg.contains(object), "{object} is named in: {msg}");
    }
    assert!(
        msg.contains("every object is SSE-KMS") || msg.contains("no server-side encryption"),
        "{msg}"
    );
}

#[test]
fn with_key_validation_off_in_localstack_assert_encryption_fails() {
    // LocalStack then ignores key state: objects claim the key but stay readable
    // with it disabled, so they are not bound to it.
    let r = run(
        "scenarios/aws-kms-basic.yaml",
        "1.18",
        "broken-validation-off",
        &[("VDRILL_LOCALSTACK_ENV", "S3_SKIP_KMS_KEY_VALIDATION=1")],
    );
    let step = assert_step(&r, "assert-encryption");
    let msg = step["message"].as_str().unwrap();
    assert!(
        msg.contains("was still readable with the key disabled"),
        "{msg}"
    );
    assert!(
        msg.contains("backups/nightly/velero-backup.json"),
        "the object is named: {msg}"
    );
}

#[test]
fn two_drills_run_at_once_without_clashing() {
    // Same scenario, same bucket and key names, both Velero versions, side by side.
    let spawn = |velero: &'static str| {
        std::thread::spawn(move || {
            run(
                "scenarios/aws-kms-basic.yaml",
                velero,
                &format!("concurrent-{velero}"),
                &[],
            )
        })
    };
    let (a, b) = (spawn("1.17"), spawn("1.18"));
    for r in [a.join().unwrap(), b.join().unwrap()] {
        assert_eq!(r.code, Some(0), "{}\n{}", failures(&r), r.stdout);
    }
}

#[test]
fn with_j2_both_velero_versions_run_side_by_side_in_one_vdrill() {
    let r = run_args(&["scenarios/aws-kms-basic.yaml", "-j", "2"], "jobs-2");
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    let (report, stdout) = (&r.report, &r.stdout);
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(
        cells
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["aws-kms-basic[velero=1.17]", "aws-kms-basic[velero=1.18]"]
    );
    let span = |c: &serde_json::Value| {
        let start =
            chrono::DateTime::parse_from_rfc3339(c["started_at"].as_str().unwrap()).unwrap();
        (
            start,
            start
                + chrono::Duration::milliseconds((c["duration"].as_f64().unwrap() * 1000.0) as i64),
        )
    };
    let (a, b) = (span(&cells[0]), span(&cells[1]));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "the two cells overlapped: {a:?} {b:?}"
    );
    // Lines in CI are prefixed with their cell.
    assert!(
        stdout.contains("[aws-kms-basic[velero=1.17]]")
            && stdout.contains("[aws-kms-basic[velero=1.18]]"),
        "{stdout}"
    );
}

/// `vdrill run` with these arguments (from the repository), its artifacts under `name`.
fn run_args(args: &[&str], name: &str) -> Run {
    run_with(args, name, &[])
}

fn steps_of(r: &Run) -> Vec<serde_json::Value> {
    r.report["cells"][0]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn step_log(r: &Run, step: &serde_json::Value) -> String {
    std::fs::read_to_string(r.dir.join(step["log_file"].as_str().unwrap())).unwrap()
}

/// The upgrade drills from 1.17 to 1.18: the backups of 1.17 restore on 1.18, the new
/// backup is under the key, and the upgrade went CRDs first, then the server.
fn upgrade_drill(scenario: &str) -> Run {
    let r = run_args(
        &[
            &format!("scenarios/{scenario}.yaml"),
            "--matrix",
            "from=1.17",
            "--matrix",
            "to=1.18",
        ],
        &format!("{scenario}-1.17-1.18"),
    );
    assert_eq!(
        r.code,
        Some(0),
        "{}\n{}\nartifacts: {}",
        failures(&r),
        r.stdout,
        r.dir.display()
    );
    let cell = &r.report["cells"][0];
    assert_eq!(cell["id"], format!("{scenario}[from=1.17,to=1.18]"));
    // The report names the version the cell was installed with.
    assert!(
        cell["velero_version"]
            .as_str()
            .unwrap()
            .starts_with("v1.17."),
        "{}",
        cell["velero_version"]
    );
    // ... and the one it was upgraded to, in run.json and JUnit.
    let upgraded = cell["velero_upgraded_to"].as_str().unwrap_or_default();
    assert!(upgraded.starts_with("v1.18."), "{cell}");
    let junit = std::fs::read_to_string(r.dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains(&format!(
            r#"name="velero.version.upgraded" value="{upgraded}""#
        )),
        "{junit}"
    );
    let steps = steps_of(&r);
    let upgrade = steps
        .iter()
        .find(|s| s["kind"] == "upgrade-velero")
        .expect("an upgrade step");
    assert_eq!(upgrade["status"], "passed", "{upgrade}");
    let summary = upgrade["message"].as_str().unwrap();
    assert!(
        summary.starts_with("Velero v1.17.") && summary.contains(" -> v1.18."),
        "{summary}"
    );
    let log = step_log(&r, upgrade);
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` in the upgrade log:\n{log}"))
    };
    assert!(log.contains("upgrading Velero v1.17."), "{log}");
    // CRDs first, read back as 1.18 ships them; then the Deployment; then the server.
    let crds = at("CRDs of Velero v1.18.");
    assert!(at("--crds-only") < crds);
    assert!(crds < at("apply Deployment velero"));
    assert!(at("apply Deployment velero") < at("velero server started"));
    assert!(at("velero server started") < at("the server answers as Velero v1.18."));
    assert!(
        log.contains("has the same 1 location(s) and repository password as before the upgrade"),
        "{log}"
    );
    // Every step after the upgrade ran and passed on the new version.
    let after: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|s| s["stage"] == "step")
        .skip_while(|s| s["kind"] != "upgrade-velero")
        .skip(1)
        .collect();
    assert!(
        after.iter().any(|s| s["kind"] == "assert-restored"),
        "{after:?}"
    );
    assert!(
        after.iter().any(|s| s["kind"] == "assert-encryption"),
        "{after:?}"
    );
    assert!(after.iter().all(|s| s["status"] == "passed"), "{after:?}");
    r
}

#[test]
fn velero_upgrade_1_17_to_1_18() {
    let r = upgrade_drill("velero-upgrade");
    let restored = steps_of(&r)
        .into_iter()
        .filter(|s| s["kind"] == "assert-restored" && s["status"] == "passed")
        .count();
    assert_eq!(restored, 2, "both backups of 1.17 restored on 1.18");
}

#[test]
fn velero_upgrade_key_rotated_1_17_to_1_18() {
    let r = upgrade_drill("velero-upgrade-key-rotated");
    let steps = steps_of(&r);
    let rotate = steps
        .iter()
        .position(|s| s["kind"] == "rotate-key")
        .unwrap();
    let upgrade = steps
        .iter()
        .position(|s| s["kind"] == "upgrade-velero")
        .unwrap();
    assert!(rotate < upgrade, "the key is rotated before the upgrade");
}

#[test]
fn an_upgrade_whose_location_loses_kms_key_id_names_it_and_the_new_backup_is_unencrypted() {
    let r = run_args(
        &["tests/scenarios/broken/upgrade-loses-kms-key-id.yaml"],
        "broken-upgrade-loses-kms-key-id",
    );
    assert_eq!(r.code, Some(1), "the drill fails:\n{}", r.stdout);
    let steps = steps_of(&r);
    let upgrade = steps
        .iter()
        .find(|s| s["kind"] == "upgrade-velero")
        .unwrap();
    // The step's check found the change (expected here, so the drill went on).
    assert_eq!(upgrade["status"], "passed", "{upgrade}");
    let log = step_log(&r, upgrade);
    assert!(
        log.contains("location default lost config kmsKeyId (was \"alias/vdrill-broken-upgrade\")"),
        "{log}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["kind"] == "assert-restored" && s["status"] == "passed"),
        "the old backup still restores: {steps:?}"
    );
    let step = assert_step(&r, "assert-encryption");
    let msg = step["message"].as_str().unwrap();
    assert!(
        msg.contains("backups/after-upgrade/velero-backup.json"),
        "the new backup's objects are named: {msg}"
    );
}

#[test]
fn an_upgrade_with_another_repository_password_fails_naming_it() {
    let r = run_args(
        &["tests/scenarios/broken/upgrade-new-repository-password.yaml"],
        "broken-upgrade-new-repository-password",
    );
    let step = assert_step(&r, "upgrade-velero");
    let msg = step["message"].as_str().unwrap();
    assert!(
        msg.contains("the repository password (secret velero-repo-credentials) is not the one the install made the repository with"),
        "{msg}"
    );
    // The drill's steps after it are skipped: the upgrade is the verdict.
    let steps = steps_of(&r);
    let after: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|s| s["stage"] == "step")
        .skip_while(|s| s["kind"] != "upgrade-velero")
        .skip(1)
        .collect();
    assert_eq!(after.len(), 3, "{steps:?}");
    assert!(after.iter().all(|s| s["status"] == "skipped"), "{after:?}");
}

/// A Velero nobody pinned, asked for on the command line: provisioning builds it from
/// the Go module proxy (or finds it built by an earlier run) with its plugins, the
/// drill runs on it, and the pinned 1.18 stays what `1.18` means.
#[test]
fn a_velero_version_that_is_not_pinned_is_built_and_drilled() {
    const VERSION: &str = "1.18.2"; // served by the Go module proxy, not pinned
    let pinned = std::fs::read_to_string(repo().join("ci/testbed/versions.env")).unwrap();
    assert!(
        !pinned.contains(&format!(" v{VERSION}:")),
        "v{VERSION} must not be pinned for this test"
    );
    let r = run_args(
        &["scenarios/aws-kms-basic.yaml", "--velero", VERSION],
        "on-demand-velero",
    );
    assert_eq!(
        r.code,
        Some(0),
        "{}\n{}\nartifacts: {}",
        failures(&r),
        r.stdout,
        r.dir.display()
    );
    let cells = r.report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0]["id"], format!("aws-kms-basic[velero={VERSION}]"));
    assert_eq!(cells[0]["velero_version"], format!("v{VERSION}"));
    assert_eq!(cells[0]["velero_plugins"]["aws"], "v1.14.3");
    let provision = std::fs::read_to_string(r.dir.join("provision.log")).unwrap_or_default();
    assert!(
        r.stdout.contains(&format!("velero-v{VERSION}"))
            || provision.contains(&format!("velero-v{VERSION}")),
        "provisioning names it:\n{}",
        r.stdout
    );
    // Built by setup.sh (its build log), listed as not pinned, and `1.18` still
    // means the pinned patch.
    let cache = std::env::var_os("VDRILL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vdrill"));
    let build_log =
        std::fs::read_to_string(cache.join(format!("logs/velero-v{VERSION}.log"))).unwrap();
    assert!(
        build_log.contains(&format!("\n== velero v{VERSION}: build at ")),
        "{build_log}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("testbed.json")).unwrap()).unwrap();
    let entry = |v: &str| {
        manifest["velero"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["version"] == v)
            .cloned()
            .unwrap_or_else(|| panic!("{v} in {manifest}"))
    };
    assert_eq!(entry(&format!("v{VERSION}"))["pinned"], false);
    assert_eq!(entry("v1.18.3")["pinned"], true);
    let again = run_args(
        &["scenarios/aws-kms-basic.yaml", "--matrix", "velero=1.18"],
        "on-demand-velero-pinned-default",
    );
    assert_eq!(again.code, Some(0), "{}", again.stdout);
    assert_eq!(again.report["cells"][0]["velero_version"], "v1.18.3");
}

#[test]
fn a_velero_version_the_go_proxy_does_not_serve_is_a_setup_error_naming_it() {
    // v1.18.4: the Go module proxy here answers 403.
    let r = run_args(
        &["scenarios/aws-kms-basic.yaml", "--velero", "1.18.4"],
        "on-demand-velero-refused",
    );
    assert_eq!(r.code, Some(vdrill::exit::ENVIRONMENT), "{}", r.stdout);
    let m = r.report["cells"][0]["steps"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        m.contains("velero-v1.18.4 is not available")
            && m.contains(
                "the Go module proxy does not serve github.com/vmware-tanzu/velero@v1.18.4"
            ),
        "{m}"
    );
}
