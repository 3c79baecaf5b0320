//! Results people look at: JUnit as dashboards read it (stable names, properties,
//! short failure messages; read by a real JUnit consumer, junitparser), the shard
//! matrix for GitHub Actions, `vdrill report merge` (shards merge into what one
//! unsharded run reports, cell for cell) and the HTML page in headless Chromium.
//!
//! Runs here use the in-memory environment (through the real runner and report
//! writers) or `vdrill run` itself on cells that stop at provisioning, so they take
//! seconds and need no test bed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::*;
use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use tokio_util::sync::CancellationToken;
use vdrill::env::memory::{Behaviour, MemoryFactory};
use vdrill::log::Redactor;
use vdrill::report::artifacts::Artifacts;
use vdrill::report::{RunReport, Status};
use vdrill::runner::{RunOptions, Runner};
use vdrill::scenario::{self, Cell, ScenarioFile};

const VDRILL: &str = env!("CARGO_BIN_EXE_vdrill");

fn cache() -> PathBuf {
    std::env::var_os("VDRILL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vdrill"))
}

/// MIDRUN over two Velero versions: two passing cells.
fn passing() -> String {
    MIDRUN
        .replace(
            "metadata: {name: midrun}",
            "metadata: {name: midrun}\nmatrix: {velero: [\"1.17\", \"1.18\"]}",
        )
        .replace("version: \"1.18\"", "version: ${matrix.velero}")
}

/// The same drill expecting the wrong error: two failing cells.
fn failing() -> String {
    passing()
        .replace("{name: midrun}", "{name: midrun-failing}")
        .replace(
            "error: \"KMS.DisabledException\"}}",
            "error: \"NotThisError\"}}",
        )
}

fn file(name: &str, yaml: &str) -> ScenarioFile {
    let dir = repo().join("scenarios");
    match scenario::load_str(&dir.join(format!("{name}.yaml")), &dir, yaml) {
        Ok(f) => f,
        Err(d) => panic!("test scenario is invalid: {d:#?}"),
    }
}

fn files() -> Vec<ScenarioFile> {
    vec![
        file("midrun", &passing()),
        file("midrun-failing", &failing()),
    ]
}

/// Run cells on the in-memory environment into `dir`, as `vdrill run` would write them.
async fn run_memory(cells: &[Cell], dir: &Path, run_id: &str) -> RunReport {
    // SAFETY: every test of this binary sets the same value before its runtime reads it.
    unsafe { std::env::set_var("VDRILL_TEST_REPO_PASSWORD", REPO_PASSWORD) };
    let redactor = Redactor::new();
    let artifacts = Artifacts::create(dir, None, run_id, redactor.clone()).unwrap();
    let runner = Runner::new(
        Arc::new(MemoryFactory::new(Behaviour::default())),
        Arc::new(Recorder::default()),
        artifacts,
        redactor,
        RunOptions {
            run_id: run_id.into(),
            keep: false,
            verbose: false,
            jobs: 1,
        },
        CancellationToken::new(),
    );
    runner.run(cells).await
}

/// A run id no other test uses (work folders are per run id).
fn run_id(tmp: &tempfile::TempDir, what: &str) -> String {
    format!(
        "test-{}-{what}",
        tmp.path().file_name().unwrap().to_string_lossy()
    )
}

fn vdrill(args: &[&str]) -> Output {
    Command::new(VDRILL).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_junit(path: &Path) -> Report {
    Report::deserialize_from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn xmllint(xml: &Path) -> Output {
    Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(repo().join("tests/junit/junit.xsd"))
        .arg(xml)
        .output()
        .expect("xmllint is installed by ci/setup.sh (Debian package libxml2-utils)")
}

fn property<'a>(suite: &'a quick_junit::TestSuite, name: &str) -> Option<&'a str> {
    suite
        .properties
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.as_str())
}

/// What a JUnit report says about each cell, without what differs from run to run
/// (times, timestamps, the run id, measured seconds): suite name, the properties
/// that describe the cell, and each case's classname, name, outcome and message.
fn cells_of(report: &Report) -> Vec<String> {
    const PER_RUN: &[&str] = &[
        "run.id",
        "rto.seconds",
        "vdrill.overhead.seconds",
        "vdrill.share.percent",
        "scenario.file",
    ];
    report
        .test_suites
        .iter()
        .map(|s| {
            let mut out = format!(
                "suite {} tests={} failures={} errors={} skipped={}\n",
                s.name.as_str(),
                s.tests,
                s.failures,
                s.errors,
                s.skipped
            );
            for p in &s.properties {
                if !PER_RUN.contains(&p.name.as_str()) {
                    out.push_str(&format!("  {}={}\n", p.name.as_str(), p.value.as_str()));
                }
            }
            for c in &s.test_cases {
                let outcome = match &c.status {
                    TestCaseStatus::Success { .. } => "passed".to_string(),
                    TestCaseStatus::NonSuccess {
                        kind,
                        message,
                        ty,
                        description,
                        ..
                    } => format!(
                        "{kind:?} type={:?} message={:?} body={:?}",
                        ty.as_ref().map(|t| t.as_str()),
                        message.as_ref().map(|t| t.as_str()),
                        description.as_ref().map(|t| t.as_str())
                    ),
                    TestCaseStatus::Skipped { message, .. } => {
                        format!("skipped message={:?}", message.as_ref().map(|t| t.as_str()))
                    }
                };
                out.push_str(&format!(
                    "  case {} :: {} -> {outcome}\n",
                    c.classname.as_ref().map(|c| c.as_str()).unwrap_or("-"),
                    c.name.as_str()
                ));
            }
            out
        })
        .collect()
}

// ---------------------------------------------------------------- JUnit

#[tokio::test]
async fn junit_names_are_stable_across_runs_and_carry_what_dashboards_group_by() {
    let tmp = tempfile::tempdir().unwrap();
    let cells: Vec<Cell> = files().into_iter().flat_map(|f| f.cells).collect();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    run_memory(&cells, &a, &run_id(&tmp, "a")).await;
    run_memory(&cells, &b, &run_id(&tmp, "b")).await;
    let (ja, jb) = (
        read_junit(&a.join("junit.xml")),
        read_junit(&b.join("junit.xml")),
    );

    let names = |r: &Report| -> Vec<(String, String, String)> {
        r.test_suites
            .iter()
            .flat_map(|s| {
                s.test_cases.iter().map(|c| {
                    (
                        s.name.as_str().to_string(),
                        c.classname.as_ref().unwrap().as_str().to_string(),
                        c.name.as_str().to_string(),
                    )
                })
            })
            .collect()
    };
    let (na, nb) = (names(&ja), names(&jb));
    assert_eq!(
        na, nb,
        "the same cells have the same suite and case names in two runs"
    );
    // Nothing of a run in a name: not its id, not a date or time of day.
    let when = regex::Regex::new(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}").unwrap();
    for (suite, class, case) in &na {
        for text in [suite, class, case] {
            assert!(
                !text.contains(&run_id(&tmp, "a")) && !text.contains(&run_id(&tmp, "b")),
                "run id in a name: {text}"
            );
            assert!(!when.is_match(text), "a timestamp in a name: {text}");
        }
    }
    // classname is the scenario; the suite the cell; classname + name unique in a report.
    let suite = ja
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "midrun[velero=1.17]")
        .expect("a suite per cell");
    assert!(
        suite
            .test_cases
            .iter()
            .all(|c| c.classname.as_ref().unwrap().as_str() == "midrun"),
        "classname = scenario"
    );
    assert!(
        suite
            .test_cases
            .iter()
            .any(|c| c.name.as_str() == "step 02: backup before [velero=1.17]"),
        "{:?}",
        na.iter().take(5).collect::<Vec<_>>()
    );
    let mut unique: Vec<_> = na.iter().map(|(_, c, n)| (c, n)).collect();
    let total = unique.len();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), total, "classname + name identify one case");

    // The properties dashboards show.
    for (name, want) in [
        ("scenario", Some("midrun")),
        ("velero.version", Some("1.17")),
        ("kubernetes.version", Some("memory")),
        ("storage", Some("localstack")),
        ("key.provider", Some("aws-kms")),
        ("status", Some("passed")),
        ("rto.seconds", None),
        ("vdrill.overhead.seconds", None),
        ("vdrill.share.percent", None),
        ("run.id", Some(run_id(&tmp, "a").as_str())),
    ] {
        let got = property(suite, name).unwrap_or_else(|| panic!("no property {name}"));
        if let Some(want) = want {
            assert_eq!(got, want, "property {name}");
        } else {
            let v: f64 = got.parse().unwrap_or_else(|_| panic!("{name}={got}"));
            assert!(v >= 0.0);
        }
    }
    // Failures: one short line in `message`, the whole story in the body.
    let failed = ja
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "midrun-failing[velero=1.18]")
        .unwrap();
    let mut seen = 0;
    for c in &failed.test_cases {
        if let TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Failure,
            message,
            description,
            ..
        } = &c.status
        {
            seen += 1;
            let m = message.as_ref().unwrap().as_str();
            let body = description.as_ref().unwrap().as_str();
            assert!(!m.contains('\n') && m.chars().count() <= 203, "{m:?}");
            assert!(
                body.starts_with(m.trim_end_matches("...")),
                "the body begins with the headline: {m:?} / {body:?}"
            );
        }
    }
    assert!(seen >= 2, "the step and its assertion failed");
}

#[test]
fn a_long_multi_line_failure_gets_a_one_line_message_and_the_whole_body() {
    use vdrill::report::junit::headline;
    let long = format!("{}\nsecond line with the evidence", "x".repeat(500));
    let h = headline(&long);
    assert_eq!(h.chars().count(), 203);
    assert!(h.ends_with("...") && !h.contains('\n'));
    assert_eq!(headline("\n  first real line  \nmore"), "first real line");
}

/// Where junitparser lives (ci/setup-report.sh); a missing venv is said clearly.
fn junitparser_python() -> PathBuf {
    let py = cache().join("report-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run ci/setup-report.sh (ci/setup.sh does) to install junitparser from PyPI",
        py.display()
    );
    py
}

/// What junitparser (a JUnit consumer from PyPI) makes of a JUnit file, as JSON.
fn junitparser_view(junit: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from junitparser import JUnitXml
xml = JUnitXml.fromfile(sys.argv[1])
out = []
for suite in xml:
    cases = []
    for case in suite:
        results = [{"kind": type(r).__name__, "message": r.message, "text": r.text} for r in case.result]
        cases.append({"classname": case.classname, "name": case.name, "results": results})
    out.append({
        "name": suite.name, "tests": suite.tests, "failures": suite.failures,
        "errors": suite.errors, "skipped": suite.skipped,
        "properties": {p.name: p.value for p in suite.properties()},
        "cases": cases,
    })
print(json.dumps(out))
"#;
    let out = Command::new(junitparser_python())
        .arg("-c")
        .arg(script)
        .arg(junit)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn junitparser_reads_the_cells_properties_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let cells: Vec<Cell> = files().into_iter().flat_map(|f| f.cells).collect();
    let dir = tmp.path().join("run");
    let report = run_memory(&cells, &dir, &run_id(&tmp, "jp")).await;
    assert_eq!(report.counts(), (2, 2, 0, 0));

    let seen = junitparser_view(&dir.join("junit.xml"));
    let suites = seen.as_array().unwrap();
    let names: Vec<&str> = suites.iter().map(|s| s["name"].as_str().unwrap()).collect();
    let ids: Vec<&str> = report.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(names, ids);
    assert!(names.contains(&"midrun-failing[velero=1.18]"), "{names:?}");
    for (s, cell) in suites.iter().zip(&report.cells) {
        assert_eq!(
            s["properties"]["velero.version"],
            cell.velero_version.as_str()
        );
        assert_eq!(s["properties"]["kubernetes.version"], "memory");
        assert_eq!(s["properties"]["key.provider"], "aws-kms");
        assert_eq!(s["properties"]["status"], cell.status.as_str());
        let cases = s["cases"].as_array().unwrap();
        let expected_cases: usize = cell.steps.iter().map(|st| 1 + st.assertions.len()).sum();
        assert_eq!(cases.len(), expected_cases, "{}", s["name"]);
        assert_eq!(s["tests"].as_u64().unwrap() as usize, expected_cases);
        let failures: Vec<&serde_json::Value> = cases
            .iter()
            .flat_map(|c| c["results"].as_array().unwrap())
            .filter(|r| r["kind"] == "Failure")
            .collect();
        assert_eq!(s["failures"].as_u64().unwrap() as usize, failures.len());
        if cell.status == Status::Failed {
            let step = cell
                .steps
                .iter()
                .find(|st| st.status == Status::Failed)
                .unwrap();
            assert!(
                failures
                    .iter()
                    .any(|f| f["text"].as_str() == Some(step.message.as_str())),
                "junitparser sees the failing step's whole message in the body: {failures:?}"
            );
            assert!(
                failures
                    .iter()
                    .all(|f| !f["message"].as_str().unwrap().contains('\n')),
                "{failures:?}"
            );
        } else {
            assert!(failures.is_empty(), "{failures:?}");
            assert!(s["properties"]["rto.seconds"].is_string());
        }
    }
}

// ---------------------------------------------------------------- shards and merge

#[test]
fn plan_prints_the_shards_as_a_github_matrix_that_matches_run_shard() {
    let dir = tempfile::tempdir().unwrap();
    write_scenarios(dir.path());
    let out = vdrill(&[
        "plan",
        dir.path().to_str().unwrap(),
        "--format",
        "github-matrix",
        "--shards",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim().lines().count(),
        1,
        "one line for $GITHUB_OUTPUT"
    );
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let include = m["include"].as_array().unwrap();
    assert_eq!(include.len(), 3);
    let loaded = vdrill::cli::load_all(&[dir.path().to_path_buf()]).unwrap();
    let mut all = Vec::new();
    for (k, entry) in include.iter().enumerate() {
        let i = k + 1;
        assert_eq!(entry["shard"], format!("{i}/3"));
        assert_eq!(entry["index"], i);
        assert_eq!(entry["total"], 3);
        let want: Vec<String> = vdrill::cli::select_cells(&loaded, &[], &[], Some((i, 3)))
            .into_iter()
            .map(|c| c.id)
            .collect();
        let got: Vec<String> = entry["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            got, want,
            "shard {i}/3 lists what `vdrill run --shard {i}/3` runs"
        );
        all.extend(got);
    }
    all.sort();
    let every: Vec<String> = vdrill::cli::select_cells(&loaded, &[], &[], None)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(all, every, "every cell in exactly one shard");

    // More shards than cells: empty shards are left out; filters apply as in `run`.
    let out = vdrill(&[
        "plan",
        dir.path().to_str().unwrap(),
        "--format",
        "github-matrix",
        "--shards",
        "9",
        "--matrix",
        "velero=1.18",
    ]);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let include = m["include"].as_array().unwrap();
    assert_eq!(include.len(), 2, "{m}");
    assert!(include.iter().all(|e| e["total"] == 9));
    // Usage errors exit 2 and say why.
    let out = vdrill(&[
        "plan",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
        "--shards",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--format github-matrix"),
        "{}",
        stderr(&out)
    );
    let out = vdrill(&[
        "plan",
        dir.path().to_str().unwrap(),
        "--format",
        "github-matrix",
        "--shards",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = vdrill(&[
        "plan",
        dir.path().to_str().unwrap(),
        "--format",
        "github-matrix",
        "--tag",
        "no-such-tag",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no scenario cells match"),
        "{}",
        stderr(&out)
    );
}

/// Two scenarios of two cells on disk (fixtures by absolute path).
fn write_scenarios(dir: &Path) {
    let fixture = repo().join("fixtures/workloads/shop.yaml");
    for (name, yaml) in [("midrun", passing()), ("midrun-failing", failing())] {
        let yaml = yaml
            .replace("../fixtures/workloads/shop.yaml", fixture.to_str().unwrap())
            .replace("{fromEnv: VDRILL_TEST_REPO_PASSWORD}", "{generate: true}")
            .replace(
                &format!("{{name: {name}}}"),
                &format!("{{name: {name}, tags: [nightly]}}"),
            );
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
    }
}

#[tokio::test]
async fn two_shards_merge_into_what_one_run_reports_cell_for_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let files = files();
    let shard = |i| vdrill::cli::select_cells(&files, &[], &[], i);
    let (one, two, all) = (shard(Some((1, 2))), shard(Some((2, 2))), shard(None));
    assert!(!one.is_empty() && !two.is_empty());
    let (d1, d2, da, out) = (
        tmp.path().join("shard-1"),
        tmp.path().join("shard-2"),
        tmp.path().join("all"),
        tmp.path().join("merged"),
    );
    run_memory(&one, &d1, &run_id(&tmp, "s1")).await;
    run_memory(&two, &d2, &run_id(&tmp, "s2")).await;
    let unsharded = run_memory(&all, &da, &run_id(&tmp, "all")).await;
    assert_eq!(unsharded.counts(), (2, 2, 0, 0), "passed and failed cells");

    let o = vdrill(&[
        "report",
        "merge",
        d2.to_str().unwrap(),
        d1.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 cell(s): 2 passed, 2 failed"));

    // JUnit: the same suites, in the same order, with the same cases and outcomes.
    let merged = read_junit(&out.join("junit.xml"));
    let single = read_junit(&da.join("junit.xml"));
    assert_eq!(cells_of(&merged), cells_of(&single));
    assert_eq!(
        (merged.tests, merged.failures, merged.errors, merged.skipped),
        (single.tests, single.failures, single.errors, single.skipped)
    );
    // Each suite says which shard ran it.
    let from: Vec<&str> = merged
        .test_suites
        .iter()
        .map(|s| property(s, "run.id").unwrap())
        .collect();
    assert!(
        from.contains(&run_id(&tmp, "s1").as_str()) && from.contains(&run_id(&tmp, "s2").as_str())
    );
    let lint = xmllint(&out.join("junit.xml"));
    assert!(lint.status.success(), "{}", stderr(&lint));

    // run.json: the same cells with the same verdicts and steps; the shards named.
    // (Key ARNs are made per run: the in-memory key manager numbers them.)
    let arn = regex::Regex::new(r"key/\d{8}-key").unwrap();
    let mj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    let sj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(da.join("run.json")).unwrap()).unwrap();
    let strip = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c["id"], "status": c["status"], "verdict": c["verdict"],
                    "velero_version": c["velero_version"], "kubernetes_version": c["kubernetes_version"],
                    "has_rto": c["rto"].is_number(),
                    "steps": c["steps"].as_array().unwrap().iter().map(|s| serde_json::json!([s["stage"], s["index"], s["title"], s["status"], arn.replace_all(s["message"].as_str().unwrap(), "key/N-key"), s["log_file"]])).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    assert_eq!(strip(&mj), strip(&sj));
    assert_eq!(
        mj["merged_from"],
        serde_json::json!([run_id(&tmp, "s2"), run_id(&tmp, "s1")])
    );
    // The cells' artifacts came along: every step log run.json names is there.
    for c in mj["cells"].as_array().unwrap() {
        for s in c["steps"].as_array().unwrap() {
            if let Some(f) = s["log_file"].as_str() {
                assert!(out.join(f).is_file(), "{f} was copied");
            }
        }
    }

    // The same folder twice is the same result: kept once.
    let again = tmp.path().join("again");
    let o = vdrill(&[
        "report",
        "merge",
        d1.to_str().unwrap(),
        d1.to_str().unwrap(),
        d2.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        cells_of(&read_junit(&again.join("junit.xml"))),
        cells_of(&single)
    );

    // A cell with two results (a shard and the unsharded run) is a conflict.
    let o = vdrill(&[
        "report",
        "merge",
        d1.to_str().unwrap(),
        da.to_str().unwrap(),
        "--out",
        tmp.path().join("conflict").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("cell `{}` has two results", one[0].id))
            && e.contains(d1.to_str().unwrap())
            && e.contains(da.to_str().unwrap()),
        "{e}"
    );
    assert!(!tmp.path().join("conflict/run.json").exists());
}

#[tokio::test]
async fn merge_refuses_bad_input_naming_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    run_memory(&files()[0].cells, &good, &run_id(&tmp, "good")).await;
    let merge = |dir: &Path| {
        vdrill(&[
            "report",
            "merge",
            good.to_str().unwrap(),
            dir.to_str().unwrap(),
            "--out",
            tmp.path().join("out").to_str().unwrap(),
        ])
    };
    let copy = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["run.json", "junit.xml"] {
            std::fs::copy(good.join(f), d.join(f)).unwrap();
        }
        d
    };
    // No run.json.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = merge(&empty);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{}: missing", empty.join("run.json").display())),
        "{}",
        stderr(&o)
    );
    // A field of the wrong type: file and field named.
    let bad = copy("bad-field");
    let text = std::fs::read_to_string(bad.join("run.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cells"][0]["duration"] = serde_json::json!("soon");
    std::fs::write(bad.join("run.json"), v.to_string()).unwrap();
    let o = merge(&bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "{}: cells[0].duration",
            bad.join("run.json").display()
        )),
        "{}",
        stderr(&o)
    );
    // An artifacts path leading out of the folder.
    let escape = copy("escape");
    v["cells"][0]["duration"] = serde_json::json!(1.0);
    v["cells"][0]["artifacts"] = serde_json::json!("../../etc");
    std::fs::write(escape.join("run.json"), v.to_string()).unwrap();
    let o = merge(&escape);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cells[0].artifacts"), "{}", stderr(&o));
    // JUnit that is not JUnit, and JUnit of other cells.
    let broken = copy("broken-xml");
    std::fs::write(broken.join("junit.xml"), "<testsuites><testsuite").unwrap();
    let o = merge(&broken);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&broken.join("junit.xml").display().to_string()),
        "{}",
        stderr(&o)
    );
    let other = copy("other-cells");
    let xml = std::fs::read_to_string(other.join("junit.xml")).unwrap();
    std::fs::write(
        other.join("junit.xml"),
        xml.replace("name=\"midrun[velero=1.17]\"", "name=\"elsewhere\""),
    )
    .unwrap();
    let o = merge(&other);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`elsewhere` is not a cell of"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"));
}

/// `vdrill run` itself, sharded as the nightly workflow runs it, on cells that stop
/// at provisioning (the test bed is left unprovisioned on purpose: an empty cache and
/// no setup), so each cell is an environment error within milliseconds.
#[test]
fn vdrill_run_in_two_shards_and_report_merge_equal_one_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = tmp.path().join("scenarios");
    std::fs::create_dir_all(&sc).unwrap();
    write_scenarios(&sc);
    let empty_cache = tmp.path().join("cache");
    let beds = tmp.path().join("beds");
    std::fs::create_dir_all(&empty_cache).unwrap();
    let run = |args: &[&str]| {
        Command::new(VDRILL)
            .arg("run")
            .arg(&sc)
            .args(["--tag", "nightly"])
            .args(args)
            .env("VDRILL_NO_PROVISION", "1")
            .env("VDRILL_CACHE", &empty_cache)
            .env("VDRILL_BEDS_DIR", &beds)
            .env("CI", "true")
            .output()
            .unwrap()
    };
    let m = vdrill(&[
        "plan",
        sc.to_str().unwrap(),
        "--format",
        "github-matrix",
        "--shards",
        "2",
        "--tag",
        "nightly",
    ]);
    let matrix: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    let mut shard_dirs = Vec::new();
    for entry in matrix["include"].as_array().unwrap() {
        let i = entry["index"].as_u64().unwrap();
        let dir = tmp.path().join(format!("shard-{i}"));
        let junit = tmp.path().join(format!("junit-{i}.xml"));
        let o = run(&[
            "--shard",
            entry["shard"].as_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--artifacts",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(
            o.status.code(),
            Some(3),
            "environment errors: {}",
            stderr(&o)
        );
        assert!(junit.is_file());
        shard_dirs.push(dir);
    }
    assert_eq!(shard_dirs.len(), 2);
    let all = tmp.path().join("all");
    let o = run(&["--artifacts", all.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));

    let out = tmp.path().join("merged");
    let o = vdrill(&[
        "report",
        "merge",
        shard_dirs[0].to_str().unwrap(),
        shard_dirs[1].to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--junit",
        tmp.path().join("merged.xml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = read_junit(&out.join("junit.xml"));
    let single = read_junit(&all.join("junit.xml"));
    assert_eq!(merged.test_suites.len(), 4);
    assert_eq!(cells_of(&merged), cells_of(&single));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("merged.xml")).unwrap(),
        std::fs::read_to_string(out.join("junit.xml")).unwrap()
    );
    assert!(xmllint(&out.join("junit.xml")).status.success());

    // junitparser reads `vdrill run`'s own JUnit: each cell, its environment error
    // (one line in `message`, the whole reason in the body) and its skipped steps.
    let seen = junitparser_view(&all.join("junit.xml"));
    let suites = seen.as_array().unwrap();
    assert_eq!(suites.len(), 4);
    for s in suites {
        assert_eq!(s["errors"], 1, "{s}");
        assert_eq!(
            s["skipped"].as_u64().unwrap() + 1,
            s["tests"].as_u64().unwrap()
        );
        assert_eq!(s["properties"]["status"], "error");
        let error = s["cases"][0]["results"][0].clone();
        assert_eq!(error["kind"], "Error", "{s}");
        let (m, body) = (
            error["message"].as_str().unwrap(),
            error["text"].as_str().unwrap(),
        );
        assert!(!m.contains('\n') && m.chars().count() <= 203, "{m}");
        assert!(body.contains("testbed.json is missing"), "{body}");
        assert!(
            s["cases"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["classname"] == s["properties"]["scenario"]),
            "{s}"
        );
    }
}

// ---------------------------------------------------------------- the HTML page

/// Chromium from Debian (ci/setup-report.sh installs it); a machine without it is told so.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "chromium is not installed: the HTML report test needs headless Chromium (Debian package \
             `chromium`); run ci/setup-report.sh (ci/setup.sh and .ci/run do)"
        )
    })
}

fn headless(args: &[&str], page: &Path) -> Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            // Nothing from the network: the page must stand alone.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_report_page_renders_cells_failures_and_the_rto_chart_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let cells: Vec<Cell> = files().into_iter().flat_map(|f| f.cells).collect();
    let (r1, r2) = (tmp.path().join("run-1"), tmp.path().join("run-2"));
    run_memory(&cells, &r1, &run_id(&tmp, "r1")).await;
    // The second run: the passing cells again.
    let passing_cells: Vec<Cell> = cells
        .iter()
        .filter(|c| !c.id.contains("failing"))
        .cloned()
        .collect();
    run_memory(&passing_cells, &r2, &run_id(&tmp, "r2")).await;
    let page = tmp.path().join("report.html");
    let o = vdrill(&[
        "report",
        r1.to_str().unwrap(),
        r2.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    // Stands alone: nothing loaded from anywhere.
    for needle in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(needle), "the page loads something: {needle}");
    }
    assert!(!html.contains(REPO_PASSWORD));

    // Measure the page as Chromium lays it out: a copy with a script that writes each
    // element's rendered box into the DOM, dumped after load.
    let probe = tmp.path().join("probe.html");
    let script = r#"<script>
const out = [];
for (const a of document.querySelectorAll('article.cell')) {
  const r = a.getBoundingClientRect();
  out.push(['cell', a.dataset.cell, a.dataset.status, Math.round(r.width), Math.round(r.height)]);
}
for (const b of document.querySelectorAll('#rto-chart rect.bar')) {
  const r = b.getBoundingClientRect();
  out.push(['bar', b.dataset.cell, b.dataset.run, Number(b.dataset.rto), r.width, r.height]);
}
out.push(['attention', document.querySelectorAll('#attention li.failed').length]);
const c = document.getElementById('rto-chart').getBoundingClientRect();
out.push(['chart', Math.round(c.width), Math.round(c.height)]);
const p = document.createElement('pre'); p.id = 'layout'; p.textContent = JSON.stringify(out);
document.body.appendChild(p);
</script></body>"#;
    std::fs::write(&probe, html.replace("</body>", script)).unwrap();
    let o = headless(&["--dump-dom"], &probe);
    assert!(o.status.success(), "{}", stderr(&o));
    let dom = String::from_utf8_lossy(&o.stdout);
    let layout = dom
        .split("<pre id=\"layout\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("the probe did not run: {dom}"));
    let layout: Vec<serde_json::Value> = serde_json::from_str(&html_unescape(layout)).unwrap();
    let rendered = |kind: &str| -> Vec<&serde_json::Value> {
        layout.iter().filter(|e| e[0] == kind).collect()
    };

    // Every cell of both runs is on the page, with its verdict, and has a size.
    let shown: Vec<(String, String)> = rendered("cell")
        .iter()
        .map(|e| {
            (
                e[1].as_str().unwrap().to_string(),
                e[2].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(shown.len(), 4 + 2);
    assert!(shown.contains(&("midrun-failing[velero=1.17]".into(), "failed".into())));
    assert!(shown.contains(&("midrun[velero=1.18]".into(), "passed".into())));
    assert!(
        rendered("cell")
            .iter()
            .all(|e| e[3].as_u64().unwrap() > 100 && e[4].as_u64().unwrap() > 50)
    );

    // The cells that did not pass come first: run 1's two failing ones.
    assert_eq!(rendered("attention")[0][1], 2, "{layout:?}");

    // The chart: one bar per cell with an RTO in each run, widths in proportion.
    let bars = rendered("bar");
    let with_rto = 2 /* run 1 */ + 2 /* run 2 */;
    assert_eq!(bars.len(), with_rto, "{bars:?}");
    // The longest RTO spans the plot (480 px), the others in proportion (at least 1 px).
    let max = bars
        .iter()
        .map(|b| b[3].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(max > 0.0);
    for b in &bars {
        let want = (b[3].as_f64().unwrap() / max * 480.0).max(1.0);
        let got = b[4].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1.5,
            "bar width {got} px for {want} px: {bars:?}"
        );
        assert!(b[5].as_f64().unwrap() > 5.0, "bars have a height: {bars:?}");
    }
    let runs: std::collections::BTreeSet<&str> =
        bars.iter().map(|b| b[2].as_str().unwrap()).collect();
    assert_eq!(runs.len(), 2, "bars of both runs");
    let chart = rendered("chart");
    assert!(chart[0][1].as_u64().unwrap() > 300 && chart[0][2].as_u64().unwrap() > 50);

    // Failures with their evidence: the failing step's message and its log.
    assert!(dom.contains("class=\"failure failed\""));
    assert!(
        dom.contains("NotThisError"),
        "the failed expectation is shown"
    );
    assert!(
        dom.contains("steps/step-05-backup.log"),
        "the step's log is shown"
    );

    // A screenshot renders (kept next to the CI artifacts for a look).
    let png = tmp.path().join("report.png");
    let o = headless(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,900",
        ],
        &page,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    if let Some(dir) = std::env::var_os("VDRILL_CI_ARTIFACTS") {
        let _ = std::fs::copy(&png, Path::new(&dir).join("report-test.png"));
    }
}

#[test]
fn report_refuses_a_folder_that_is_not_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let o = vdrill(&[
        "report",
        tmp.path().to_str().unwrap(),
        "-o",
        tmp.path().join("x.html").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "{}: missing",
            tmp.path().join("run.json").display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("x.html").exists());
    let o = vdrill(&["report"]);
    assert_eq!(o.status.code(), Some(2));
}

fn html_unescape(s: &str) -> String {
    html_escape::decode_html_entities(s).into_owned()
}
