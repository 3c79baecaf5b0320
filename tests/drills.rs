//! The shipped AWS drills, end to end on the local test bed, for each pinned
//! Velero version; and proof that a broken world fails them loudly.
//! JUnit and artifacts of every run are kept under $VDRILL_CI_ARTIFACTS.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::repo;

fn artifacts(name: &str) -> PathBuf {
    let root = std::env::var_os("VDRILL_CI_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| repo().join("target/ci-artifacts"));
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
    let dir = artifacts(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdrill"));
    cmd.current_dir(repo())
        .args(["run", scenario, "--matrix", &format!("velero={velero}"), "--artifacts"])
        .arg(&dir)
        .arg("--junit")
        .arg(dir.join(format!("{name}.junit.xml")))
        // The bed is provisioned by ci/setup.sh: the provisioning phase finds it cached.
        .env("CI", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vdrill");
    let report = std::fs::read(dir.join("run.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    Run { code: out.status.code(), report, stdout: format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)), dir }
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

fn drill(scenario: &str, velero: &str) {
    let name = format!("{scenario}-{velero}");
    let r = run(&format!("scenarios/{scenario}.yaml"), velero, &name, &[]);
    assert_eq!(r.code, Some(0), "{name} failed:\n{}\n{}\nartifacts: {}", failures(&r), r.stdout, r.dir.display());
    let cell = &r.report["cells"][0];
    assert_eq!(cell["status"], "passed");
    assert!(cell["velero_version"].as_str().unwrap().starts_with(&format!("v{velero}.")), "{}", cell["velero_version"]);
    assert!(r.dir.join(format!("{name}.junit.xml")).exists());
    let restores = cell["steps"].as_array().unwrap().iter().filter(|s| s["kind"] == "assert-restored").count();
    if restores > 0 {
        assert!(cell["rto"].as_f64().unwrap() > 0.0, "RTO recorded");
    }
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
    aws_kms_disable_midrun_1_17: "aws-kms-disable-midrun", "1.17";
    aws_kms_disable_midrun_1_18: "aws-kms-disable-midrun", "1.18";
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
    steps.into_iter().find(|s| s["kind"] == kind && s["status"] == "failed").unwrap_or_else(|| panic!("no failed {kind} step:\n{}", failures(r)))
}

#[test]
fn without_kms_key_id_in_the_location_assert_encryption_names_every_object() {
    let r = run("tests/scenarios/broken/no-kms-key-in-bsl.yaml", "1.18", "broken-no-kms-key", &[]);
    let step = assert_step(&r, "assert-encryption");
    let msg = step["message"].as_str().unwrap();
    for object in ["backups/unencrypted/velero-backup.json", "backups/unencrypted/unencrypted.tar.gz", "backups/unencrypted/unencrypted-logs.gz"] {
        assert!(msg.contains(object), "{object} is named in: {msg}");
    }
    assert!(msg.contains("every object is SSE-KMS") || msg.contains("no server-side encryption"), "{msg}");
}

#[test]
fn with_key_validation_off_in_localstack_assert_encryption_fails() {
    // LocalStack then ignores key state: objects claim the key but stay readable
    // with it disabled, so they are not bound to it.
    let r = run("scenarios/aws-kms-basic.yaml", "1.18", "broken-validation-off", &[("VDRILL_LOCALSTACK_ENV", "S3_SKIP_KMS_KEY_VALIDATION=1")]);
    let step = assert_step(&r, "assert-encryption");
    let msg = step["message"].as_str().unwrap();
    assert!(msg.contains("was still readable with the key disabled"), "{msg}");
    assert!(msg.contains("backups/nightly/velero-backup.json"), "the object is named: {msg}");
}

#[test]
fn two_drills_run_at_once_without_clashing() {
    // Same scenario, same bucket and key names, both Velero versions, side by side.
    let spawn = |velero: &'static str| {
        std::thread::spawn(move || run("scenarios/aws-kms-basic.yaml", velero, &format!("concurrent-{velero}"), &[]))
    };
    let (a, b) = (spawn("1.17"), spawn("1.18"));
    for r in [a.join().unwrap(), b.join().unwrap()] {
        assert_eq!(r.code, Some(0), "{}\n{}", failures(&r), r.stdout);
    }
}
