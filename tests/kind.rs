//! kind cells on the test bed's Docker engine: whatever a kind drill started (cluster,
//! LocalStack container, kubeconfig, volumes, networks) is gone after it, whether the
//! drill failed or was interrupted; and nothing it runs listens beyond loopback.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::repo;

fn cache() -> PathBuf {
    std::env::var_os("VDRILL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vdrill"))
}

fn manifest() -> Option<serde_json::Value> {
    let cache = cache();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("testbed.json")).ok()?).ok()?;
    (m["kind"].is_object() && m["images"].is_object() && m["docker"].is_object()).then_some(m)
}

/// The bed's kind images, or None with the reason printed (a machine without them).
fn bed() -> Option<serde_json::Value> {
    let m = manifest();
    if m.is_none() {
        eprintln!(
            "not run: the test bed has no kind images (ci/testbed/setup.sh kind-node images)"
        );
    }
    m
}

fn docker(m: &serde_json::Value, args: &[&str]) -> String {
    let out = Command::new("docker")
        .env("DOCKER_HOST", m["docker"]["host"].as_str().unwrap())
        .args(args)
        .output()
        .expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// What Docker and kind hold, to compare before and after a drill.
#[derive(Debug, PartialEq)]
struct DockerState {
    containers: Vec<String>,
    volumes: Vec<String>,
    networks: Vec<String>,
    clusters: Vec<String>,
}

fn state(m: &serde_json::Value) -> DockerState {
    let kind = Command::new(m["kind"]["bin"].as_str().unwrap())
        .env("DOCKER_HOST", m["docker"]["host"].as_str().unwrap())
        .args(["get", "clusters"])
        .output()
        .expect("kind");
    DockerState {
        containers: lines(&docker(m, &["ps", "-a", "--format", "{{.Names}}"])),
        volumes: lines(&docker(m, &["volume", "ls", "-q"])),
        networks: lines(&docker(m, &["network", "ls", "--format", "{{.Name}}"])),
        clusters: lines(&String::from_utf8_lossy(&kind.stdout)),
    }
}

fn artifacts(name: &str) -> PathBuf {
    let root = std::env::var_os("VDRILL_CI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-artifacts"));
    let dir = root.join("kind").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn vdrill(scenario: &str, run_id: &str, dir: &PathBuf) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdrill"));
    cmd.current_dir(repo())
        .args([
            "run",
            scenario,
            "--images",
            "testbed",
            "--run-id",
            run_id,
            "--artifacts",
        ])
        .arg(dir)
        .env("CI", "1");
    cmd
}

/// Names of the run's Docker objects and folders that are still there.
fn leftovers(m: &serde_json::Value, before: &DockerState, run_id: &str) -> Vec<String> {
    let after = state(m);
    let mut left = Vec::new();
    for c in &after.containers {
        if !before.containers.contains(c) {
            left.push(format!("container {c}"));
        }
    }
    for v in &after.volumes {
        if !before.volumes.contains(v) {
            left.push(format!("volume {v}"));
        }
    }
    for n in &after.networks {
        if !before.networks.contains(n) && n != "kind" {
            left.push(format!("network {n}"));
        }
    }
    for c in &after.clusters {
        if !before.clusters.contains(c) {
            left.push(format!("kind cluster {c}"));
        }
    }
    // The cell's work folder held its kubeconfig.
    let work = std::env::temp_dir().join("vdrill").join(run_id);
    if work.exists() {
        left.push(format!("folder {} (kubeconfig)", work.display()));
    }
    left
}

#[test]
fn a_failed_kind_drill_leaves_no_container_volume_network_cluster_or_kubeconfig() {
    let Some(m) = bed() else { return };
    let before = state(&m);
    let run_id = format!("kindfail-{}", std::process::id());
    let dir = artifacts("failed");
    let out = vdrill(
        "tests/scenarios/broken/kind-backup-expected-to-fail.yaml",
        &run_id,
        &dir,
    )
    .output()
    .expect("vdrill");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "the drill fails: {text}");
    assert!(text.contains("phase is Failed"), "{text}");
    assert!(dir.join("junit.xml").exists(), "JUnit written");
    assert_eq!(leftovers(&m, &before, &run_id), Vec::<String>::new());
}

#[test]
fn an_interrupted_kind_drill_leaves_nothing_and_binds_only_loopback() {
    let Some(m) = bed() else { return };
    let before = state(&m);
    let run_id = format!("kindint-{}", std::process::id());
    let dir = artifacts("interrupted");
    let log = dir.with_extension("log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut child = vdrill("scenarios/fsb-kms-basic.yaml", &run_id, &dir)
        .args(["--matrix", "velero=1.18", "-v"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
        .spawn()
        .expect("vdrill");
    // Interrupt once the cluster and LocalStack are up and Velero is being installed.
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("install Velero") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the drill did not get to installing Velero: {text}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "vdrill ended early: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // While it runs: nothing listens beyond loopback (LocalStack's and the API server's
    // ports are published on 127.0.0.1 only).
    let ss = Command::new("ss").args(["-Hltnp"]).output().expect("ss");
    for line in String::from_utf8_lossy(&ss.stdout).lines() {
        if line.contains("docker-proxy") {
            assert!(
                line.contains("127.0.0.1:"),
                "published beyond loopback: {line}"
            );
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().expect("vdrill exits");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_ne!(status.code(), Some(0), "{text}");
    assert!(dir.join("junit.xml").exists(), "JUnit written: {text}");
    assert_eq!(
        leftovers(&m, &before, &run_id),
        Vec::<String>::new(),
        "{text}"
    );
}

/// The bed's dockerd, started by ci/testbed/setup.sh, keeps none of setup's descriptors:
/// holding the cache's build lock (setup's fd 9), it made every later setup wait forever.
#[test]
fn the_beds_dockerd_holds_no_descriptor_of_the_setup_lock() {
    let Some(_m) = bed() else { return };
    let cache = cache();
    let pid = std::fs::read_to_string(cache.join("docker/dockerd.pid")).expect("dockerd.pid");
    let pid = pid.trim();
    let lock = cache
        .join(".setup.lock")
        .canonicalize()
        .expect("setup's lock file exists");
    let mut seen = 0;
    let mut held = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("dockerd runs") {
        let fd = fd.unwrap();
        seen += 1;
        if std::fs::read_link(fd.path()).ok().as_deref() == Some(lock.as_path()) {
            held.push(fd.file_name());
        }
    }
    assert!(seen > 3, "dockerd's descriptors were read ({seen})");
    assert!(
        held.is_empty(),
        "dockerd (pid {pid}) holds {} as fd {held:?}",
        lock.display()
    );
}
