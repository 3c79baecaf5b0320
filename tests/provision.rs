//! `ci/testbed/setup.sh` itself: one builder per cache, stamps that rebuild when
//! an input changes, events as the only stdout, the test-delay hook, and what a
//! failed build reports. Each test builds etcd (a small Go build) into a cache of
//! its own; needs go, jq, curl and flock, like the script.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EVENT: &str = "::vdrill-event ";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    /// The events, as (component, state, detail).
    fn events(&self) -> Vec<(String, String, String)> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(EVENT))
            .map(|e| {
                let mut f = e.splitn(3, ' ');
                let mut next = || f.next().unwrap_or("").to_string();
                (next(), next(), next())
            })
            .collect()
    }

    fn has(&self, prefix: &str) -> bool {
        self.stdout.lines().any(|l| l.starts_with(prefix))
    }

    fn ok(&self, what: &str) {
        assert_eq!(
            self.code, 0,
            "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
    }
}

fn command(script: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.arg(script)
        .args(args)
        .env("VDRILL_CACHE", cache)
        .env_remove("VDRILL_SETUP_DELAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn finish(child: Child, started: Instant) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

fn run_with(mut cmd: Command) -> Run {
    let started = Instant::now();
    finish(cmd.spawn().expect("bash runs"), started)
}

fn run(script: &Path, cache: &Path, args: &[&str]) -> Run {
    run_with(command(script, cache, args))
}

fn script() -> PathBuf {
    repo().join("ci/testbed/setup.sh")
}

/// A bash expression evaluated with ci/testbed/versions.env sourced.
fn pinned(expr: &str) -> String {
    let versions = repo().join("ci/testbed/versions.env");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source \"$1\"; {expr}"))
        .arg("_")
        .arg(versions)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn etcd_version() -> String {
    pinned("echo \"$ETCD_VERSION\"")
}

fn pinned_velero() -> Vec<String> {
    pinned("for e in $VELERO_VERSIONS; do echo \"${e%%:*}\"; done")
        .lines()
        .map(str::to_string)
        .collect()
}

fn manifest(cache: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(cache.join("testbed.json")).expect("testbed.json written");
    serde_json::from_str(&text).unwrap()
}

/// The manifest lists etcd at the pinned version, and that binary runs.
fn assert_etcd_runs(cache: &Path) {
    let want = etcd_version();
    let m = manifest(cache);
    assert_eq!(m["etcd"]["version"], want.as_str(), "manifest: {m}");
    let bin = m["etcd"]["bin"].as_str().unwrap();
    let out = Command::new(bin).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(want.trim_start_matches('v')),
        "{bin} --version: {text}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn two_provisionings_on_one_empty_cache_build_once() {
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let a = command(&script(), cache.path(), &["etcd"]).spawn().unwrap();
    let b = command(&script(), cache.path(), &["etcd"]).spawn().unwrap();
    let (a_pid, b_pid) = (a.id(), b.id());
    let (a, b) = (finish(a, started), finish(b, started));
    a.ok("first");
    b.ok("second");

    let (builder, waiter, builder_pid) = match (
        a.has("::vdrill-event etcd done "),
        b.has("::vdrill-event etcd done "),
    ) {
        (true, false) => (&a, &b, a_pid),
        (false, true) => (&b, &a, b_pid),
        other => panic!(
            "exactly one run builds etcd, got {other:?}\nA:\n{}\nB:\n{}",
            a.stdout, b.stdout
        ),
    };
    assert!(
        !builder.has("::vdrill-event setup wait"),
        "the builder did not wait:\n{}",
        builder.stdout
    );
    assert!(
        waiter.has("::vdrill-event setup wait "),
        "the other one waited:\n{}",
        waiter.stdout
    );
    let says = format!("waiting for another setup.sh (pid {builder_pid}, started ");
    assert!(
        waiter.stderr.contains(&says),
        "the wait names the builder ({says}):\n{}",
        waiter.stderr
    );
    assert!(
        waiter.stderr.contains("building: etcd)"),
        "and what it builds:\n{}",
        waiter.stderr
    );
    assert!(
        waiter.has("::vdrill-event etcd cached"),
        "then reused its etcd:\n{}",
        waiter.stdout
    );
    assert_etcd_runs(cache.path());
    assert!(
        !cache.path().join(".setup.owner").exists(),
        "the owner file goes with its run"
    );
}

#[test]
fn a_changed_input_rebuilds() {
    let work = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let testbed = work.path().join("testbed");
    copy_dir(&repo().join("ci/testbed"), &testbed);
    let copy = testbed.join("setup.sh");

    let first = run(&copy, cache.path(), &["etcd"]);
    first.ok("first build");
    assert!(first.has("::vdrill-event etcd done "), "{}", first.stdout);

    let again = run(&copy, cache.path(), &["etcd"]);
    again.ok("second run");
    assert!(
        again.has("::vdrill-event etcd cached"),
        "same inputs: cached\n{}",
        again.stdout
    );
    assert!(!again.has("::vdrill-event etcd done"), "{}", again.stdout);

    // One input changed: the link flags.
    let text = std::fs::read_to_string(&copy).unwrap();
    let base = "GO_LDFLAGS_BASE=\"-s -w\"";
    assert!(text.contains(base), "setup.sh sets {base}");
    std::fs::write(
        &copy,
        text.replace(base, "GO_LDFLAGS_BASE=\"-s -w -X main.vdrillTest=1\""),
    )
    .unwrap();
    let changed = run(&copy, cache.path(), &["etcd"]);
    changed.ok("changed link flags");
    assert!(
        changed.has("::vdrill-event etcd done "),
        "changed link flags rebuild:\n{}",
        changed.stdout
    );
    assert!(
        changed.stderr.contains("stamp changed (ldflags)"),
        "and say why:\n{}",
        changed.stderr
    );

    // The original script's flags differ from the last build's: it rebuilds too.
    let back = run(&script(), cache.path(), &["etcd"]);
    back.ok("original script");
    assert!(back.has("::vdrill-event etcd done "), "{}", back.stdout);
    assert!(back.stderr.contains("stamp changed"), "{}", back.stderr);
    assert_etcd_runs(cache.path());
}

#[test]
fn events_are_the_only_stdout() {
    let cache = tempfile::tempdir().unwrap();
    let r = run(&script(), cache.path(), &["etcd"]);
    r.ok("etcd");
    for line in r.stdout.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with(EVENT),
            "stdout carries only events, got: {line:?}"
        );
    }
    let events = r.events();
    let states: Vec<&str> = events.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(states.first(), Some(&"start"), "{}", r.stdout);
    assert_eq!(states.last(), Some(&"done"), "{}", r.stdout);
    assert!(states.contains(&"step"), "{}", r.stdout);
    for (component, state, detail) in &events {
        assert_eq!(component, "etcd");
        if state == "start" || state == "done" {
            let secs = detail.split(' ').next().unwrap();
            assert!(
                secs.parse::<u64>().is_ok(),
                "{state} starts with seconds: {detail:?}"
            );
        }
    }
    assert!(
        r.stderr.contains("[setup "),
        "the human log is on stderr:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("== vdrill test bed"),
        "so is the summary:\n{}",
        r.stderr
    );
    let log =
        std::fs::read_to_string(cache.path().join("logs/etcd.log")).expect("etcd's build log");
    assert!(
        log.starts_with("== etcd ") && log.contains("stamp "),
        "the log starts with a header:\n{log}"
    );

    // Not a version at all: a usage error.
    let bad = run(&script(), cache.path(), &["velero@latest"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert_eq!(bad.stdout, "");
    assert!(
        bad.stderr
            .contains("velero@latest: expected velero@<major>.<minor>[.<patch>]"),
        "{}",
        bad.stderr
    );
    // A version nobody pinned and the Go module proxy does not serve: the component
    // is unavailable, naming both.
    let gone = run(&script(), cache.path(), &["velero@9.9"]);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    let events = gone.events();
    let (_, _, why) = events
        .iter()
        .find(|(c, s, _)| c == "velero-v9.9" && s == "unavailable")
        .unwrap_or_else(|| panic!("velero-v9.9 unavailable: {events:?}"));
    let says = format!(
        "Velero v9.9 is not pinned in ci/testbed/versions.env (pinned: {}), and the Go module proxy serves no v9.9.x release",
        pinned_velero().join(" ")
    );
    assert!(why.contains(&says), "{says}\ngot: {why}");
    assert!(
        !cache.path().join("velero/v9.9.0").exists(),
        "nothing is built for it"
    );
}

#[test]
fn the_delay_hook_sleeps_in_the_named_component() {
    let cache = tempfile::tempdir().unwrap();
    run(&script(), cache.path(), &["etcd"]).ok("build");
    let mut cmd = command(&script(), cache.path(), &["etcd"]);
    cmd.env("VDRILL_SETUP_DELAY", "etcd:2");
    let r = run_with(cmd);
    r.ok("delayed");
    assert!(r.took >= Duration::from_secs(2), "took {:?}", r.took);
    let states: Vec<String> = r
        .events()
        .into_iter()
        .map(|(c, s, d)| format!("{c} {s} {d}").trim_end().to_string())
        .collect();
    let delay = states
        .iter()
        .position(|e| e == "etcd step test delay (VDRILL_SETUP_DELAY)");
    let cached = states.iter().position(|e| e == "etcd cached");
    assert!(
        matches!((delay, cached), (Some(d), Some(c)) if d < c),
        "{states:#?}"
    );
}

/// With a `go` that fails, velero@<minor> fails with exit 1 and names its log.
#[test]
fn a_failed_build_names_its_log() {
    let cache = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let go = bin.path().join("go");
    std::fs::write(
        &go,
        "#!/bin/sh\ncase \"$1\" in\n  version) echo 'go version go0.0-fake linux/amd64' ;;\n  env) echo v1 ;;\n  *) echo 'go: simulated failure' >&2; exit 1 ;;\nesac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&go, std::fs::Permissions::from_mode(0o755)).unwrap();

    // velero@<major.minor> of the first pinned version: the newest pinned of that minor.
    let pins = pinned_velero();
    let minor: String = pins[0]
        .trim_start_matches('v')
        .splitn(3, '.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let key = |v: &str| {
        v.trim_start_matches('v')
            .split('.')
            .map(|p| p.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    let want = pins
        .iter()
        .filter(|v| v.trim_start_matches('v').starts_with(&format!("{minor}.")))
        .max_by_key(|v| key(v))
        .unwrap();

    let mut cmd = command(&script(), cache.path(), &[&format!("velero@{minor}")]);
    cmd.env(
        "PATH",
        format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap()
        ),
    );
    let r = run_with(cmd);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let component = format!("velero-{want}");
    let events = r.events();
    assert!(
        events.iter().all(|(c, _, _)| *c == component),
        "only {component}: {events:?}"
    );
    let (_, _, detail) = events
        .iter()
        .find(|(_, s, _)| s == "failed")
        .unwrap_or_else(|| panic!("a failed event: {events:?}"));
    let log = cache.path().join(format!("logs/{component}.log"));
    assert!(
        detail.starts_with(&format!("{} exit 1", log.display())),
        "failed <log> <message>: {detail}"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("go mod download"),
        "the log has the output"
    );
    assert!(
        r.stderr
            .contains(&format!("last lines of {}", log.display())),
        "{}",
        r.stderr
    );
    assert_eq!(
        manifest(cache.path())["velero"],
        serde_json::json!([]),
        "nothing half-built in the manifest"
    );
}

#[test]
fn without_the_shared_folder_lowkey_vault_is_absent_with_the_reason_and_the_rest_goes_on() {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = command(&script(), cache.path(), &["lowkey-vault", "etcd"]);
    cmd.env("VDRILL_SHARED", "/nonexistent-shared");
    let r = run_with(cmd);
    r.ok("a machine without ../shared still provisions the rest");
    let events = r.events();
    let (_, _, why) = events
        .iter()
        .find(|(c, s, _)| c == "lowkey-vault" && s == "absent")
        .unwrap_or_else(|| panic!("absent: {events:?}"));
    assert!(
        why.contains("/nonexistent-shared/sources/lowkey-vault is missing")
            && why.contains("VDRILL_SHARED"),
        "{why}"
    );
    assert!(
        events
            .iter()
            .any(|(c, s, _)| c == "etcd" && (s == "done" || s == "cached")),
        "{events:?}"
    );
    let m = manifest(cache.path());
    assert!(
        m.get("lowkey_vault").is_none(),
        "no lowkey-vault in the manifest: {m}"
    );
    assert_etcd_runs(cache.path());
}

/// The checkout under test (named at run time: see tests/common's `repo`).
fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
