//! The lifecycle of environments on the real local test bed, through the
//! `vdrill` binary: a bed process killed mid-step is an environment error
//! naming it; `kill -9` of vdrill leaves a record that `vdrill testbed down`
//! or the next run sweeps (processes, ports, folders); `--keep` hands a working
//! bed over until `vdrill testbed down`; locations keep their names.
//! Each test keeps its ledger in a folder of its own (`VDRILL_BEDS_DIR`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::repo;
use vdrill::env::ledger::{self, Kind, Record};

/// A `vdrill` child whose stderr is collected as it comes.
struct Vdrill {
    child: Child,
    stderr: Arc<Mutex<String>>,
    artifacts: PathBuf,
}

fn artifacts_dir(name: &str) -> PathBuf {
    let root = std::env::var_os("VDRILL_CI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-artifacts"));
    let dir = root.join("lifecycle").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn command(beds: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdrill"));
    cmd.current_dir(repo())
        .args(args)
        .env("CI", "1")
        .env("VDRILL_BEDS_DIR", beds)
        .env("VDRILL_NO_PROVISION", "1");
    cmd
}

fn start(beds: &Path, name: &str, scenario: &Path, extra: &[&str]) -> Vdrill {
    let artifacts = artifacts_dir(name);
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--run-id",
        name,
        "--artifacts",
        artifacts.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut child = command(beds, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vdrill");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (err, sink) = (child.stderr.take().unwrap(), stderr.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    Vdrill {
        child,
        stderr,
        artifacts,
    }
}

impl Vdrill {
    fn wait_for_line(&self, needle: &str, timeout: Duration) {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.stderr.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no `{needle}` within {timeout:?}:\n{}",
            self.stderr.lock().unwrap()
        );
    }

    fn finish(mut self) -> (Option<i32>, String, serde_json::Value) {
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let report = std::fs::read(self.artifacts.join("run.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        (status.code(), self.stderr.lock().unwrap().clone(), report)
    }
}

/// A scenario file written for one test, next to the shipped ones' fixtures.
fn scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let text = format!(
        "apiVersion: vdrill.dev/v1alpha1\nkind: Scenario\nmetadata: {{name: {name}}}\nenvironment: {{cluster: local, storage: localstack}}\n\
         keys:\n  k: {{provider: aws-kms, alias: alias/{name}}}\n\
         workloads:\n  - {{fixture: {}, namespace: shop}}\n{body}",
        repo().join("fixtures/workloads/shop.yaml").display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

const ONE_LOCATION: &str = "velero:\n  version: \"1.18\"\n  locations:\n    - {name: default, provider: aws, bucket: lifecycle, config: {region: us-east-1, kmsKeyId: \"${keys.k.alias}\"}}\n";

fn the_record(beds: &Path) -> Record {
    let records: Vec<Record> = ledger::list(beds)
        .into_iter()
        .filter(|r| r.kind != Kind::Run)
        .collect();
    assert_eq!(records.len(), 1, "{records:#?}");
    records.into_iter().next().unwrap()
}

/// Wait until the cell's environment has this many processes running.
fn wait_for_processes(beds: &Path, n: usize) -> Record {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(r) = ledger::list(beds)
            .into_iter()
            .find(|r| r.kind == Kind::Cell)
            && r.processes.iter().filter(|p| p.id.alive()).count() >= n
        {
            return r;
        }
        assert!(Instant::now() < until, "the bed did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ports the given processes listen on.
fn listening(pids: &[u32]) -> Vec<u16> {
    let out = Command::new("ss").args(["-Hltnp"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| pids.iter().any(|p| l.contains(&format!("pid={p},"))))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(3)?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn assert_gone(id: &str, ports: &[u16], dirs: &[PathBuf]) {
    let until = Instant::now() + Duration::from_secs(10);
    while !ledger::marked(id).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ledger::marked(id).is_empty(),
        "processes left: {:?}",
        ledger::marked(id)
    );
    for p in ports {
        let who = || {
            String::from_utf8_lossy(
                &Command::new("ss")
                    .args(["-Hltnp", &format!("sport = :{p}")])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .into_owned()
        };
        assert!(!port_open(*p), "port {p} is still open: {}", who());
    }
    for d in dirs {
        assert!(!d.exists(), "{} is left", d.display());
        assert!(
            !d.parent().unwrap().exists(),
            "the run's folder {} is left",
            d.parent().unwrap().display()
        );
    }
}

fn kill(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// Kill one bed process while a step waits; the step must end as an environment error naming it.
fn killed_mid_step(process: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    let steps = "steps:\n  - deploy: shop\n  - backup: b1\n  - wait: 90s\n  - restore: {backup: b1, name: r1}\nfinally:\n  - enable-key: k\n";
    let file = scenario(tmp.path(), "killed", &format!("{ONE_LOCATION}{steps}"));
    let name = format!("killed-{process}");
    let run = start(&beds, &name, &file, &[]);
    run.wait_for_line("wait 90s ...", Duration::from_secs(180));
    let record = the_record(&beds);
    let victim = record
        .processes
        .iter()
        .find(|p| p.name == process)
        .unwrap_or_else(|| panic!("no {process} in {record:#?}"));
    let started = Instant::now();
    kill(victim.id.pid, nix::sys::signal::Signal::SIGKILL);
    let (code, stderr, report) = run.finish();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the step ended when {process} died, not at its timeout"
    );
    assert_eq!(code, Some(vdrill::exit::ENVIRONMENT), "{stderr}");
    let cell = &report["cells"][0];
    assert_eq!(cell["status"], "error", "{stderr}");
    let wait = cell["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "wait")
        .unwrap();
    assert_eq!(wait["status"], "error");
    assert_eq!(wait["failure_type"], "environment");
    let message = wait["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("the environment broke: {process} exited (signal: 9 (SIGKILL))\nlast lines of its log:\n")), "{message}");
    assert!(
        cell["verdict"]
            .as_str()
            .unwrap()
            .contains("the drill says nothing about Velero")
    );
    let restore = cell["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "restore")
        .unwrap();
    assert_eq!(restore["status"], "skipped");
    let junit = std::fs::read_to_string(run_artifacts(&name).join("junit.xml")).unwrap();
    assert!(junit.contains(&format!("<error message=\"the environment broke: {process} exited (signal: 9 (SIGKILL))\" type=\"environment\">")), "{junit}");
    // Teardown ran and left nothing.
    let teardown = cell["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "teardown")
        .unwrap();
    assert_eq!(teardown["status"], "passed", "{teardown}");
    assert_gone(&record.id, &[], &record.dirs);
    assert!(ledger::list(&beds).is_empty());
}

fn run_artifacts(name: &str) -> PathBuf {
    let root = std::env::var_os("VDRILL_CI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-artifacts"));
    root.join("lifecycle").join(name)
}

#[test]
fn etcd_killed_mid_step_is_an_environment_error() {
    killed_mid_step("etcd");
}

#[test]
fn kube_apiserver_killed_mid_step_is_an_environment_error() {
    killed_mid_step("kube-apiserver");
}

#[test]
fn kube_controller_manager_killed_mid_step_is_an_environment_error() {
    killed_mid_step("kube-controller-manager");
}

#[test]
fn localstack_killed_mid_step_is_an_environment_error() {
    killed_mid_step("localstack");
}

#[test]
fn velero_killed_mid_step_is_an_environment_error() {
    killed_mid_step("velero");
}

const LONG_WAIT: &str = "steps:\n  - deploy: shop\n  - backup: b1\n  - wait: 10m\n";

/// Start a drill, let it reach its long wait, `kill -9` vdrill; returns what it had.
fn killed_vdrill(beds: &Path, dir: &Path, name: &str, extra: &[&str]) -> (Record, Vec<u16>) {
    let file = scenario(dir, "orphaned", &format!("{ONE_LOCATION}{LONG_WAIT}"));
    let run = start(beds, name, &file, extra);
    run.wait_for_line("wait 10m ...", Duration::from_secs(180));
    let record = wait_for_processes(beds, 5);
    let pids: Vec<u32> = ledger::marked(&record.id).iter().map(|p| p.pid).collect();
    let ports = listening(&pids);
    assert!(
        ports.len() >= 4,
        "etcd, kube-apiserver, LocalStack and Velero listen: {ports:?}"
    );
    assert!(
        !record.dirs.is_empty() && record.dirs.iter().all(|d| d.exists()),
        "{record:#?}"
    );
    kill(run.child.id(), nix::sys::signal::Signal::SIGKILL);
    let (code, _, _) = run.finish();
    assert_eq!(code, None, "killed by a signal");
    (record, ports)
}

#[test]
fn after_kill_9_testbed_down_removes_every_leftover_process_port_and_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    let (record, ports) = killed_vdrill(&beds, tmp.path(), "kill9-down", &[]);
    // The bed's direct children die with vdrill (parent-death signal); its record and
    // folders stay, and whatever else carried the marker.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        ledger::list(&beds)
            .iter()
            .any(|r| r.id == record.id && r.orphaned()),
        "the record says its vdrill is gone"
    );
    assert!(
        record.dirs.iter().any(|d| d.exists()),
        "the work folder is still there before the sweep"
    );
    let status = command(&beds, &["testbed", "status"]).output().unwrap();
    let listed = String::from_utf8_lossy(&status.stdout);
    assert!(
        listed.contains(&format!(
            "{}  [drill] orphaned: LEFT OVER (its vdrill, pid",
            record.id
        )),
        "{listed}"
    );
    let out = command(&beds, &["testbed", "down"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("removed the environment of `orphaned`"),
        "{text}"
    );
    assert_gone(&record.id, &ports, &record.dirs);
    assert!(ledger::list(&beds).iter().all(|r| r.id != record.id));
}

#[test]
fn after_kill_9_of_a_keep_run_the_next_run_removes_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    // With --keep nothing dies with vdrill: every process is left running.
    let (record, ports) = killed_vdrill(&beds, tmp.path(), "kill9-next", &["--keep"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        ledger::marked(&record.id).len() >= 5,
        "all bed processes outlived vdrill: {:?}",
        ledger::marked(&record.id)
    );
    assert!(ports.iter().all(|p| port_open(*p)));
    // The next run sweeps before it starts its own cells.
    let file = scenario(
        tmp.path(),
        "next",
        &format!("{ONE_LOCATION}steps:\n  - deploy: shop\n"),
    );
    let (code, stderr, _) = start(&beds, "kill9-next-run", &file, &[]).finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("removed the environment of `orphaned` (its vdrill (pid"),
        "{stderr}"
    );
    assert_gone(&record.id, &ports, &record.dirs);
    assert!(ledger::list(&beds).is_empty(), "{:#?}", ledger::list(&beds));
}

#[test]
fn keep_hands_a_working_bed_over_until_testbed_down() {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    // A drill that fails: the backup completes, but the scenario expects it to fail.
    let file = scenario(
        tmp.path(),
        "kept",
        &format!(
            "{ONE_LOCATION}steps:\n  - deploy: shop\n  - backup: {{name: b1, expect: {{phase: Failed}}}}\n"
        ),
    );
    let (code, stderr, report) = start(&beds, "keep", &file, &["--keep"]).finish();
    assert_eq!(code, Some(vdrill::exit::DRILL_FAILED), "{stderr}");
    let cell = &report["cells"][0];
    let kept = cell["kept"].as_str().unwrap_or_else(|| panic!("{cell}"));
    assert!(
        kept.contains("kubeconfig ") && kept.contains("vdrill testbed down keep-kept"),
        "{kept}"
    );
    assert!(
        stderr.contains("kept: kubeconfig"),
        "the console says where it is: {stderr}"
    );
    let record = the_record(&beds);
    assert_eq!(record.kind, Kind::Kept);
    assert!(record.owner.is_none(), "handed over");
    // It works after vdrill is gone: the API server answers, Velero runs, LocalStack is healthy.
    let kubeconfig = PathBuf::from(&record.endpoints["kubeconfig"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = vdrill::env::kube::client_for(&kubeconfig, None)
            .await
            .unwrap();
        let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        assert!(
            ns.get("shop").await.is_ok(),
            "the drill's namespace is there"
        );
        assert!(ns.get("velero").await.is_ok());
        let s3 = &record.endpoints["S3 + KMS (LocalStack)"];
        let health = reqwest::get(format!("{s3}/_localstack/health"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            health.contains("\"kms\": \"running\"") || health.contains("\"kms\":\"running\""),
            "{health}"
        );
    });
    let live: Vec<String> = record
        .processes
        .iter()
        .filter(|p| p.id.alive())
        .map(|p| p.name.clone())
        .collect();
    for name in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "localstack",
        "velero",
    ] {
        assert!(live.iter().any(|n| n == name), "{name} runs: {live:?}");
    }
    let pids: Vec<u32> = ledger::marked(&record.id).iter().map(|p| p.pid).collect();
    let ports = listening(&pids);
    // status lists it; down removes it.
    let status = command(&beds, &["testbed", "status"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("[kept (--keep)] kept: handed over"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let out = command(&beds, &["testbed", "down", &record.id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed the kept environment of `kept`"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_gone(&record.id, &ports, &record.dirs);
    assert!(ledger::list(&beds).is_empty());
}

#[test]
fn locations_keep_their_names_whichever_is_first_or_default() {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    let velero = "velero:\n  version: \"1.18\"\n  locations:\n\
        \x20   - {name: primary, provider: aws, bucket: lifecycle-primary, config: {region: us-east-1, kmsKeyId: \"${keys.k.alias}\"}}\n\
        \x20   - {name: archive, default: true, provider: aws, bucket: lifecycle-archive, config: {region: us-east-1, kmsKeyId: \"${keys.k.alias}\"}}\n";
    let steps = "steps:\n  - deploy: shop\n  - backup: {name: to-primary, location: primary}\n  - backup: to-default\n\
        \x20 - assert-encryption: {backup: to-primary, key: k}\n  - assert-encryption: {backup: to-default, key: k}\n\
        \x20 - delete-namespace: shop\n  - restore: {backup: to-primary, name: from-primary}\n  - assert-restored: shop\n";
    let file = scenario(tmp.path(), "locations", &format!("{velero}{steps}"));
    let (code, stderr, report) = start(&beds, "locations", &file, &[]).finish();
    assert_eq!(code, Some(0), "{stderr}");
    let steps = report["cells"][0]["steps"].as_array().unwrap();
    let checked: Vec<&str> = steps
        .iter()
        .filter(|s| s["kind"] == "assert-encryption")
        .map(|s| s["message"].as_str().unwrap())
        .collect();
    assert_eq!(checked.len(), 2);
    for m in checked {
        assert!(
            !m.starts_with("0 objects"),
            "each backup wrote to its own location: {m}"
        );
    }
    let install = std::fs::read_to_string(
        run_artifacts("locations").join("locations/steps/setup-02-setup.log"),
    )
    .unwrap();
    assert!(
        install.contains(r#"backup storage locations ["primary", "archive"] Available"#),
        "{install}"
    );
}

/// `vdrill run` with its provisioning phase (the bed is cached: ci/setup.sh built it).
fn provisioned_run(
    beds: &Path,
    name: &str,
    scenario: &Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String, serde_json::Value, Duration) {
    let artifacts = artifacts_dir(name);
    let mut cmd = command(
        beds,
        &[
            "run",
            scenario.to_str().unwrap(),
            "--run-id",
            name,
            "--artifacts",
            artifacts.to_str().unwrap(),
        ],
    );
    cmd.env_remove("VDRILL_NO_PROVISION");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let report = std::fs::read(artifacts.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, report, started.elapsed())
}

#[test]
fn provisioning_is_a_phase_of_its_own_outside_every_step_and_cell_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    // The cell may take 20 s; provisioning is made to take 25 s (a slow first build).
    let file = scenario(
        tmp.path(),
        "slow-setup",
        &format!(
            "{ONE_LOCATION}timeout: 20s\nsteps:\n  - deploy: shop\n  - backup: b1\n  - assert-encryption: {{backup: b1, key: k}}\n"
        ),
    );
    let (code, text, report, took) = provisioned_run(
        &beds,
        "slow-setup",
        &file,
        &[("VDRILL_SETUP_DELAY", "etcd:25")],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(took >= Duration::from_secs(25), "{took:?}");
    assert!(
        text.contains("[provision] etcd: test delay (VDRILL_SETUP_DELAY)"),
        "{text}"
    );
    assert!(
        report["cells"][0]["duration"].as_f64().unwrap() < 20.0,
        "the cell's own time excludes provisioning: {}",
        report["cells"][0]["duration"]
    );
    // Provisioning comes before the cell starts.
    let provisioned = text.find("[provision] done in").expect("the phase ends");
    let cell_start = text.find("[slow-setup] start").expect("the cell starts");
    assert!(provisioned < cell_start, "{text}");
}

#[test]
fn a_component_that_fails_to_build_makes_every_cell_that_needs_it_an_environment_error() {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    let cache = tmp.path().join("cache");
    // An empty cache and a Go toolchain that fails: kube, etcd and Velero cannot be
    // built; LocalStack's Python is missing too.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let go = bin.join("go");
    std::fs::write(
        &go,
        "#!/bin/sh\necho 'go: simulated toolchain failure' >&2\nexit 1\n",
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&go).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&go, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let matrix = ONE_LOCATION.replace("version: \"1.18\"", "version: ${matrix.velero}");
    let file = scenario(
        tmp.path(),
        "unbuildable",
        &format!("matrix: {{velero: [\"1.17\", \"1.18\"]}}\n{matrix}steps:\n  - deploy: shop\n"),
    );
    let env = [
        ("VDRILL_CACHE", cache.to_str().unwrap()),
        ("PATH", path.as_str()),
        ("VDRILL_PYTHON313", "/bin/false"),
    ];
    let (code, text, report, took) = provisioned_run(&beds, "unbuildable", &file, &env);
    assert!(took < Duration::from_secs(120), "{took:?}");
    assert_eq!(code, Some(vdrill::exit::ENVIRONMENT), "{text}");
    let log = cache.join("logs/kube.log");
    assert!(log.exists());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("simulated toolchain failure")
    );
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for cell in cells {
        assert_eq!(cell["status"], "error", "{cell}");
        let first = &cell["steps"][0];
        assert_eq!(first["title"], "provision the local test bed");
        assert_eq!(first["failure_type"], "environment");
        let m = first["message"].as_str().unwrap();
        assert!(
            m.contains("provisioning kube failed: ")
                && m.contains(&format!("(log: {})", log.display())),
            "{m}"
        );
        assert!(
            cell["steps"].as_array().unwrap()[1..]
                .iter()
                .all(|s| s["status"] == "skipped")
        );
    }
    assert!(text.contains("[provision] kube: FAILED: "), "{text}");
}

#[test]
fn a_velero_version_that_is_neither_pinned_nor_served_is_an_environment_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    let file = scenario(
        tmp.path(),
        "unpinned",
        &format!(
            "{}steps:\n  - deploy: shop\n",
            ONE_LOCATION.replace("\"1.18\"", "\"1.99\"")
        ),
    );
    let (code, text, report, _) = provisioned_run(&beds, "unpinned", &file, &[]);
    assert_eq!(code, Some(vdrill::exit::ENVIRONMENT), "{text}");
    let m = report["cells"][0]["steps"][0]["message"].as_str().unwrap();
    assert!(
        m.contains(
            "velero-v1.99 is not available: Velero v1.99 is not pinned in ci/testbed/versions.env"
        ) && m.contains("the Go module proxy serves no v1.99.x release"),
        "{m}"
    );
}

#[test]
fn cells_that_need_what_this_machine_lacks_are_skipped_with_the_reason_and_the_run_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    // A provisioning script as setup.sh answers on a machine without ../shared: the
    // Azure plugin and lowkey-vault are `absent`, the rest is cached.
    let setup = tmp.path().join("setup.sh");
    std::fs::write(
        &setup,
        "#!/bin/bash\nfor a in \"$@\"; do case $a in\n\
         lowkey-vault) echo '::vdrill-event lowkey-vault absent lowkey-vault 7.3.74 needs /x/shared/sources/lowkey-vault (set VDRILL_SHARED)' ;;\n\
         velero@*) echo '::vdrill-event velero-v1.18.3 absent plugin azure v1.14.0-rc.1: the Azure plugin needs /x/shared/goproxy'; echo '::vdrill-event velero-v1.18.3 cached' ;;\n\
         *) echo \"::vdrill-event $a cached\" ;;\n\
         esac; done\n",
    )
    .unwrap();
    let scenario = repo().join("scenarios/azure-keyvault-basic.yaml");
    let name = "absent-azure";
    let artifacts = artifacts_dir(name);
    let junit = artifacts.join("junit.xml");
    let mut cmd = command(
        &beds,
        &[
            "run",
            scenario.to_str().unwrap(),
            "--matrix",
            "velero=1.18",
            "--run-id",
            name,
            "--artifacts",
            artifacts.to_str().unwrap(),
        ],
    );
    cmd.env_remove("VDRILL_NO_PROVISION")
        .env("VDRILL_SETUP", &setup)
        .arg("--junit")
        .arg(&junit);
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "a skipped cell does not fail the run:\n{text}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifacts.join("run.json")).unwrap()).unwrap();
    let cell = &report["cells"][0];
    assert_eq!(cell["status"], "skipped", "{cell}");
    let verdict = cell["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("/x/shared/goproxy") && verdict.contains("/x/shared/sources/lowkey-vault"),
        "both reasons: {verdict}"
    );
    assert!(
        cell["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "skipped"
                && s["message"].as_str().unwrap().contains("/x/shared"))
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<skipped") && xml.contains("/x/shared/goproxy"),
        "JUnit carries the reason: {xml}"
    );
    assert!(
        text.contains("[provision] velero-v1.18.3: not built here: plugin azure"),
        "{text}"
    );
}

#[test]
fn testbed_up_azure_leaves_a_reachable_key_vault_behind_its_relay_and_down_removes_it() {
    needs_azure_bed!();
    let tmp = tempfile::tempdir().unwrap();
    let beds = tmp.path().join("beds");
    let out = command(&beds, &["testbed", "up", "--azure"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let record = ledger::list(&beds)
        .into_iter()
        .find(|r| r.kind == Kind::Up)
        .expect("the up bed is recorded");
    let names: Vec<&str> = record.processes.iter().map(|p| p.name.as_str()).collect();
    assert!(
        names.contains(&"lowkey-vault")
            && names.contains(&"lowkey-vault-relay")
            && names.contains(&"azurite"),
        "{names:?}"
    );
    // vdrill has exited: the vault answers through the relay process, with the CA and token from the files.
    let vault = record.endpoints["Key Vault (lowkey-vault)"].clone();
    let url = vault.split_whitespace().next().unwrap().to_string();
    let file = |name: &str| {
        vault
            .split([' ', ';', ')'])
            .find(|w| w.ends_with(name))
            .unwrap()
            .to_string()
    };
    let token = std::fs::read_to_string(file("lowkey-vault-token")).unwrap();
    let curl = |auth: bool| {
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &file("lowkey-vault-ca.pem"),
            &format!("{url}/keys?api-version=7.5"),
        ]);
        if auth {
            c.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    assert_eq!(curl(true), "200", "the vault answers after vdrill exited");
    assert_eq!(curl(false), "401", "and asks for a token without one");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let ss = String::from_utf8_lossy(
        &Command::new("ss")
            .args(["-Hltnp", &format!("sport = :{port}")])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        ss.lines().count() == 1 && ss.contains("127.0.0.1:") && ss.contains("\"vdrill\""),
        "only the relay, on loopback: {ss}"
    );
    assert!(!text.contains(token.trim()), "the token is not printed");

    let down = command(&beds, &["testbed", "down"]).output().unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_gone(&record.id, &[port], &[]);
    assert!(record.dirs.iter().all(|d| !d.exists()), "{:?}", record.dirs);
}
