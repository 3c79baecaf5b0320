//! Scenario files: the shipped ones validate and plan; every bad file gives
//! its exact errors (file:line:column, field, message) and exit code 2; hostile
//! input never panics.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo;

fn vdrill(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vdrill"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run vdrill")
}

fn shipped() -> Vec<PathBuf> {
    vdrill::scenario::files_in(&repo().join("scenarios")).unwrap()
}

#[test]
fn every_shipped_scenario_validates_and_plans() {
    let files = shipped();
    assert!(files.len() >= 5, "five AWS drills are shipped");
    for f in &files {
        let loaded =
            vdrill::scenario::load(f).unwrap_or_else(|d| panic!("{}: {d:#?}", f.display()));
        assert!(!loaded.cells.is_empty());
        for c in &loaded.cells {
            assert!(!c.scenario.steps.is_empty());
            assert!(
                !c.scenario.velero.version.contains("${"),
                "matrix substituted in {}",
                c.id
            );
        }
        let out = vdrill(&["plan", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for c in &loaded.cells {
            assert!(text.contains(&c.id), "plan shows cell {}", c.id);
            assert!(
                c.scenario.touches_existing().is_empty(),
                "{} uses only what it creates",
                c.id
            );
        }
        assert!(
            !text.contains("touches resources it did not create"),
            "{text}"
        );
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in [
        "aws-kms-basic",
        "aws-kms-disable-midrun",
        "aws-kms-rotate",
        "aws-kms-pending-deletion",
        "aws-sse-c",
        "azure-keyvault-basic",
        "azure-keyvault-rotate",
        "azure-keyvault-soft-delete",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} is shipped");
    }
    let out = vdrill(&["validate", "scenarios"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_matrix_expands_into_cells_with_substituted_versions() {
    let f = vdrill::scenario::load(&repo().join("scenarios/aws-kms-disable-midrun.yaml")).unwrap();
    let ids: Vec<&str> = f.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "aws-kms-disable-midrun[velero=1.17,cluster=local]",
            "aws-kms-disable-midrun[velero=1.17,cluster=kind]",
            "aws-kms-disable-midrun[velero=1.18,cluster=local]",
            "aws-kms-disable-midrun[velero=1.18,cluster=kind]"
        ]
    );
    assert_eq!(f.cells[2].scenario.velero.version, "1.18");
    assert_eq!(
        f.cells[1].scenario.environment.cluster,
        vdrill::scenario::ClusterKind::Kind
    );
    assert_eq!(
        f.cells[0].scenario.velero.locations[0].config["kmsKeyId"],
        "alias/velero-backups"
    );
}

/// Diagnostics as `<file name>:<line>:<col>: <path>: <message>`.
fn render(diags: &[vdrill::scenario::Diagnostic]) -> Vec<String> {
    diags
        .iter()
        .map(|d| {
            let name = d.file.file_name().unwrap().to_string_lossy();
            let pos = d
                .pos
                .map(|p| format!(":{}:{}", p.line, p.column))
                .unwrap_or_default();
            let path = d
                .path
                .as_ref()
                .map(|p| format!("{p}: "))
                .unwrap_or_default();
            format!("{name}{pos}: {path}{}", d.message)
        })
        .collect()
}

fn expectations(path: &Path) -> Vec<String> {
    if path.file_name().unwrap() == "02-binary.yaml" {
        return vec!["02-binary.yaml:1:7: file contains a NUL byte; is it a binary file?".into()];
    }
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: ").map(str::to_string))
        .collect()
}

#[test]
fn every_bad_scenario_reports_its_exact_errors() {
    let dir = repo().join("tests/scenarios/bad");
    let files = vdrill::scenario::files_in(&dir).unwrap();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    for f in files {
        let expected = expectations(&f);
        assert!(
            !expected.is_empty(),
            "{} declares its expected errors",
            f.display()
        );
        let diags = match vdrill::scenario::load(&f) {
            Ok(_) => panic!("{} should be invalid", f.display()),
            Err(d) => d,
        };
        assert_eq!(render(&diags), expected, "{}", f.display());
    }
}

#[test]
fn validate_exits_2_and_prints_every_error_with_its_position() {
    let f = "tests/scenarios/bad/28-many-errors-at-once.yaml";
    let out = vdrill(&["validate", f]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 9, "{stderr}");
    assert!(
        lines[0].starts_with(
            "tests/scenarios/bad/28-many-errors-at-once.yaml:11:18: error: metadata.name: "
        ),
        "{stderr}"
    );
    assert_eq!(lines[8], "8 error(s) in 1 file(s)");
    // run refuses invalid input the same way, before starting anything.
    let out = vdrill(&[
        "run",
        f,
        "--artifacts",
        std::env::temp_dir().join("vdrill-never").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(vdrill(&["run", "--shard", "0/2"]).status.code(), Some(2));
    assert_eq!(vdrill(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        vdrill(&["validate", "does/not/exist.yaml"]).status.code(),
        Some(2)
    );
}

fn check_hostile(name: &str, bytes: &[u8], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let diags = vdrill::scenario::load(&path).expect_err(name);
    let text = render(&diags).join("\n");
    assert!(text.contains(expect), "{name}: {text}");
    let out = Command::new(env!("CARGO_BIN_EXE_vdrill"))
        .args(["validate", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hostile_input_gives_errors_not_panics() {
    check_hostile(
        "huge.yaml",
        &vec![b'#'; 50 * 1024 * 1024],
        "scenario files are limited to 4194304 bytes",
    );
    check_hostile(
        "deep.yaml",
        format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000)).as_bytes(),
        "huge.yaml".replace("huge.yaml", "deep.yaml:1:").as_str(),
    );
    check_hostile(
        "latin1.yaml",
        b"apiVersion: caf\xe9\n",
        "latin1.yaml:1:16: file is not valid UTF-8 text",
    );
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    check_hostile("bomb.yaml", bomb.as_bytes(), "bomb.yaml:");
    check_hostile(
        "scalar.yaml",
        b"just a string",
        "found string \"just a string\"",
    );
    check_hostile("tabs.yaml", b"a:\n\t- b\n", "tabs.yaml:2:");
}

#[test]
fn the_shipped_schema_is_current_and_scenarios_reference_it() {
    let shipped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("scenarios/schema.json")).unwrap())
            .unwrap();
    assert_eq!(
        shipped,
        vdrill::scenario::json_schema(),
        "regenerate with `vdrill schema > scenarios/schema.json`"
    );
    let out = vdrill(&["schema"]);
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, shipped);
    // Step kinds are all in the schema.
    let text = shipped.to_string();
    for kind in vdrill::scenario::STEP_KINDS {
        assert!(
            text.contains(&format!("\"{kind}\"")),
            "schema lists step kind {kind}"
        );
    }
    for f in shipped_files_text() {
        assert!(
            f.starts_with("# yaml-language-server: $schema=schema.json"),
            "scenarios reference the schema"
        );
    }
}

fn shipped_files_text() -> Vec<String> {
    shipped()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

#[test]
fn cells_are_selected_by_tag_matrix_value_and_shard() {
    let files = vdrill::cli::load_all(&[repo().join("scenarios")]).unwrap();
    let all = vdrill::cli::select_cells(&files, &[], &[], None);
    assert_eq!(all.len(), 32);
    let sorted: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
    let mut expect = sorted.clone();
    expect.sort();
    assert_eq!(sorted, expect, "cells run in a stable order");
    let sse_c = vdrill::cli::select_cells(&files, &["sse-c".into()], &[], None);
    assert_eq!(
        sse_c.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["aws-sse-c[velero=1.17]", "aws-sse-c[velero=1.18]"]
    );
    let v117 = vdrill::cli::select_cells(&files, &[], &[("velero".into(), "1.17".into())], None);
    assert_eq!(v117.len(), 15);
    assert!(
        v117.iter()
            .all(|c| c.id.ends_with("[velero=1.17]") || c.id.contains("[velero=1.17,"))
    );
    // Shards partition the cells: disjoint, and together all of them.
    let shards: Vec<Vec<String>> = (1..=3)
        .map(|i| {
            vdrill::cli::select_cells(&files, &[], &[], Some((i, 3)))
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
        .collect();
    let mut union: Vec<String> = shards.concat();
    union.sort();
    assert_eq!(
        union,
        expect.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(
        shards.iter().map(Vec::len).collect::<Vec<_>>(),
        [11, 11, 10]
    );
}

fn upgrade_matrix(matrix: &str) -> String {
    format!(
        r#"apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {{name: up}}
matrix:
{matrix}
environment: {{cluster: local, storage: localstack}}
keys:
  k: {{provider: aws-kms, alias: alias/k}}
velero:
  version: ${{matrix.from}}
  locations:
    - {{name: default, provider: aws, bucket: velero-b, config: {{kmsKeyId: "${{keys.k.alias}}"}}}}
workloads:
  - {{fixture: ../fixtures/workloads/shop.yaml, namespace: shop}}
steps:
  - deploy: shop
  - backup: b1
  - upgrade-velero: ${{matrix.to}}
"#
    )
}

fn ids_and_versions(cells: &[vdrill::scenario::Cell]) -> Vec<String> {
    cells
        .iter()
        .map(|c| {
            let to = c
                .scenario
                .steps
                .iter()
                .find_map(|s| match s {
                    vdrill::scenario::Step::UpgradeVelero(u) => Some(u.version.clone()),
                    _ => None,
                })
                .unwrap();
            format!("{} {}->{to}", c.id, c.scenario.velero.version)
        })
        .collect()
}

#[test]
fn the_matrix_takes_pairs_with_exclude_and_include() {
    let cells = common::cells(&upgrade_matrix(
        r#"  from: ["1.16", "1.17"]
  to: ["1.18", "1.19"]
  exclude:
    - {from: "1.17", to: "1.19"}
  include:
    - {to: "1.18", from: "1.15"}
    - {from: "1.16", to: "1.18"}"#,
    ));
    assert_eq!(
        ids_and_versions(&cells),
        [
            "up[from=1.16,to=1.18] 1.16->1.18",
            "up[from=1.16,to=1.19] 1.16->1.19",
            "up[from=1.17,to=1.18] 1.17->1.18",
            "up[from=1.15,to=1.18] 1.15->1.18",
        ]
    );
    // Only `include`: exactly those combinations.
    let cells = common::cells(&upgrade_matrix(
        r#"  include:
    - {from: "1.17", to: "1.18"}
    - {from: "1.18.2", to: "1.18"}"#,
    ));
    assert_eq!(
        ids_and_versions(&cells),
        [
            "up[from=1.17,to=1.18] 1.17->1.18",
            "up[from=1.18.2,to=1.18] 1.18.2->1.18"
        ]
    );
}

#[test]
fn a_command_line_matrix_value_the_file_does_not_list_makes_its_cells() {
    let path = repo().join("scenarios/velero-upgrade.yaml");
    let over = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files = vec![vdrill::scenario::load_with(&path, &pairs).unwrap()];
        ids_and_versions(&vdrill::cli::select_cells(&files, &[], &pairs, None))
    };
    assert_eq!(
        over(&[("from", "1.17"), ("to", "1.18")]),
        ["velero-upgrade[from=1.17,to=1.18] 1.17->1.18"]
    );
    assert_eq!(
        over(&[("from", "1.17"), ("to", "1.18.2")]),
        ["velero-upgrade[from=1.17,to=1.18.2] 1.17->1.18.2"]
    );
    // The file's exclusion of 1.18 -> 1.18 still holds.
    assert_eq!(
        over(&[("to", "1.18")]),
        ["velero-upgrade[from=1.17,to=1.18] 1.17->1.18"]
    );
    assert_eq!(
        over(&[("from", "1.18.2")]),
        ["velero-upgrade[from=1.18.2,to=1.18] 1.18.2->1.18"]
    );
    // A dimension the file lacks selects nothing from it.
    assert!(over(&[("velero", "1.18.2")]).is_empty());
    // A value that is no version is a validation error naming the field.
    let err = vdrill::scenario::load_with(&path, &[("to".into(), "latest".into())]).unwrap_err();
    let text: Vec<String> = err.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("upgrade-velero.version: `latest` is not a Velero version")),
        "{text:?}"
    );
}

#[test]
fn run_takes_a_velero_version_and_refuses_what_is_not_one() {
    let out = vdrill(&["run", "scenarios/aws-kms-basic.yaml", "--velero", "latest"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`latest` is not a Velero version"), "{err}");
}

/// A drill on real AWS that uses a key and a bucket it did not create, in an existing cluster.
fn touching_scenario() -> String {
    let fixture = repo().join("fixtures/workloads/shop.yaml");
    format!(
        r#"apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {{name: touches}}
environment: {{cluster: existing, storage: aws, context: staging}}
keys:
  prod: {{provider: aws-kms, alias: alias/prod, existing: true}}
  fresh: {{provider: aws-kms, alias: alias/drill-fresh}}
velero:
  version: "1.18"
  locations:
    - {{name: default, provider: aws, bucket: velero-prod, existing: true, prefix: drill, config: {{region: us-east-1, kmsKeyId: "${{keys.prod.alias}}"}}}}
    - {{name: scratch, provider: aws, bucket: drill-scratch, config: {{region: us-east-1, kmsKeyId: "${{keys.fresh.alias}}"}}}}
workloads:
  - {{fixture: {}, namespace: shop}}
steps:
  - deploy: shop
  - backup: b1
  - disable-key: prod
  - disable-key: fresh
  - delete-namespace: shop
  - enable-key: prod
  - restore: b1
finally:
  - enable-key: prod
"#,
        fixture.display()
    )
}

#[test]
fn the_plan_lists_what_a_drill_does_to_resources_it_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("touches.yaml");
    std::fs::write(&path, touching_scenario()).unwrap();
    let f = vdrill::scenario::load(&path).unwrap_or_else(|d| panic!("{d:#?}"));
    let lines = f.cells[0].scenario.touches_existing();
    assert_eq!(
        lines,
        [
            "cluster (context `staging`, existing): Velero is installed in namespace `velero`, which is deleted at teardown; workloads are deployed into namespace(s) `shop`; namespace(s) `shop` are deleted with everything in them",
            "key `prod` (alias/prod, existing): disable-key, enable-key",
            "bucket `velero-prod` (existing): the drill writes its backups under prefix `drill/` and leaves them; it creates and deletes nothing",
        ]
    );

    let out = vdrill(&["plan", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "  touches resources it did not create:\n    - cluster (context `staging`, existing): "
        ),
        "{text}"
    );
    for l in &lines {
        assert!(text.contains(&format!("    - {l}\n")), "{text}");
    }

    let out = vdrill(&["plan", path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["cells"][0]["touches_existing"],
        serde_json::json!(lines)
    );
    assert_eq!(
        plan["cells"][0]["scenario"]["velero"]["locations"][0]["existing"],
        true
    );
    assert_eq!(
        plan["cells"][0]["scenario"]["velero"]["locations"][1].get("existing"),
        None,
        "false is left out"
    );
}

#[test]
fn plan_takes_a_directory() {
    let out = vdrill(&["plan", "scenarios"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "aws-kms-basic",
        "aws-kms-disable-midrun",
        "aws-kms-rotate",
        "aws-kms-pending-deletion",
        "aws-sse-c",
    ] {
        assert!(
            text.contains(&format!("{name}[velero=1.18]"))
                || text.contains(&format!("{name}[velero=1.18,cluster=local]")),
            "{name}: {text}"
        );
    }
    let out = vdrill(&["plan", "scenarios", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plans = plans.as_array().expect("an array of plans for a directory");
    assert_eq!(plans.len(), shipped().len());
    for p in plans {
        for c in p["cells"].as_array().unwrap() {
            assert_eq!(c["touches_existing"], serde_json::json!([]), "{}", c["id"]);
        }
    }
}

/// Runs vdrill with `args` in `dir`, failing the test (and killing vdrill) if it takes
/// more than a few seconds: nothing here may block, for instance on a FIFO.
fn vdrill_promptly(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_vdrill"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vdrill {args:?} did not return within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "vdrill {args:?} panicked: {stderr}"
    );
    (out.status.code(), stderr)
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn an_empty_directory_is_an_error_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    std::fs::write(dir.path().join("empty/README.md"), "not a scenario").unwrap();
    for args in [
        &["plan", "empty"][..],
        &["plan", "empty", "--format", "json"],
        &["validate", "empty"],
        &["list", "empty"],
        &["run", "empty", "--artifacts", "artifacts"],
    ] {
        let (code, stderr) = vdrill_promptly(dir.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("empty: error: no scenario files (*.yaml, *.yml) in empty"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!dir.path().join("artifacts").exists(), "run starts nothing");
    let diags = vdrill::scenario::collect(&[dir.path().join("empty")]).unwrap_err();
    assert_eq!(diags.len(), 1, "{diags:?}");
}

#[test]
fn paths_that_are_not_scenario_files_are_named_not_opened() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mkfifo(&d.join("s.yaml"));
    std::fs::create_dir(d.join("d.yaml")).unwrap();
    symlink("gone.yaml", d.join("broken.yaml")).unwrap();
    symlink("b.yaml", d.join("a.yaml")).unwrap();
    symlink("a.yaml", d.join("b.yaml")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(d.join("sock.yaml")).unwrap();
    std::fs::write(d.join("ok.yaml"), touching_scenario()).unwrap();

    let cases = [
        (
            "missing.yaml",
            "missing.yaml: error: no such file or directory",
        ),
        (
            "s.yaml",
            "s.yaml: error: a FIFO (named pipe), not a scenario file",
        ),
        (
            "broken.yaml",
            "broken.yaml: error: broken symbolic link: its target `gone.yaml` does not exist",
        ),
        (
            "a.yaml",
            "a.yaml: error: symbolic link loop: following it leads back to itself (too many levels of symbolic links)",
        ),
        (
            "sock.yaml",
            "sock.yaml: error: a socket, not a scenario file",
        ),
    ];
    for (name, expect) in cases {
        for cmd in ["validate", "plan"] {
            let (code, stderr) = vdrill_promptly(d, &[cmd, name]);
            assert_eq!(code, Some(2), "{cmd} {name}: {stderr}");
            assert!(stderr.contains(expect), "{cmd} {name}: {stderr}");
        }
    }

    // A directory holding all of them: each named, the good file aside.
    let (code, stderr) = vdrill_promptly(d, &["validate", "."]);
    assert_eq!(code, Some(2), "{stderr}");
    for expect in [
        "./a.yaml: error: symbolic link loop",
        "./b.yaml: error: symbolic link loop",
        "./broken.yaml: error: broken symbolic link",
        "./d.yaml: error: a directory named like a scenario file; scenario files are regular files (directories are not searched recursively)",
        "./s.yaml: error: a FIFO (named pipe), not a scenario file",
        "./sock.yaml: error: a socket, not a scenario file",
        "6 error(s) in 6 file(s)",
    ] {
        assert!(stderr.contains(expect), "{expect}: {stderr}");
    }
    assert!(!stderr.contains("ok.yaml"), "{stderr}");
    let (code, stderr) = vdrill_promptly(d, &["list", "."]);
    assert_eq!(code, Some(2), "{stderr}");

    // The loader refuses them too, from their metadata, without opening a FIFO.
    let fifo = d.join("s.yaml");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(vdrill::scenario::load(&fifo).map(|_| ())));
    let diags = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("load returns promptly on a FIFO")
        .unwrap_err();
    assert_eq!(
        render(&diags),
        ["s.yaml: cannot read file: it is a FIFO (named pipe), not a regular file"]
    );
    let diags = vdrill::scenario::load(&d.join("d.yaml")).unwrap_err();
    assert_eq!(
        render(&diags),
        ["d.yaml: cannot read file: it is a directory, not a regular file"]
    );
    let diags = vdrill::scenario::load(&d.join("missing.yaml")).unwrap_err();
    assert_eq!(render(&diags), ["missing.yaml: no such file or directory"]);
    assert!(vdrill::scenario::load(&d.join("ok.yaml")).is_ok());
}

/// File-system backups are refused on `cluster: local` (corpus entry 34) and accepted on
/// a cluster with a kubelet; the fixture for them loads as a workload.
#[test]
fn file_system_backup_is_accepted_on_kind_with_the_fsb_fixture() {
    let fixture = repo().join("fixtures/workloads/fsb-data.yaml");
    let text = format!(
        r#"apiVersion: vdrill.dev/v1alpha1
kind: Scenario
metadata: {{name: fsb}}
environment: {{cluster: kind, storage: aws}}
keys:
  k: {{provider: aws-kms, alias: alias/fsb}}
velero:
  version: "1.18"
  locations:
    - {{name: default, provider: aws, bucket: fsb-b, config: {{region: us-east-1, kmsKeyId: "${{keys.k.alias}}"}}}}
workloads:
  - {{fixture: {}, namespace: fsb}}
steps:
  - deploy: fsb
  - backup: {{name: b1, fileSystemBackup: true}}
"#,
        fixture.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fsb.yaml");
    std::fs::write(&path, text).unwrap();
    vdrill::scenario::load(&path).unwrap_or_else(|d| panic!("{d:#?}"));
}
