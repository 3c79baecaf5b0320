//! The nightly workflow users copy (ci/github/nightly.yml): actionlint accepts it,
//! and every vdrill command in it is one the current command line accepts.

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;

/// The checkout under test (named at run time: see tests/common's `repo`).
fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn workflow() -> PathBuf {
    repo().join("ci/github/nightly.yml")
}

/// actionlint, built by ci/setup-report.sh into the cache.
fn actionlint() -> PathBuf {
    let cache = std::env::var_os("VDRILL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vdrill"));
    let bin = cache.join("bin/actionlint");
    assert!(
        bin.is_file(),
        "{} is missing: run ci/setup-report.sh (ci/setup.sh does) to build actionlint from the Go module proxy",
        bin.display()
    );
    bin
}

#[test]
fn actionlint_accepts_the_nightly_workflow_and_rejects_a_broken_one() {
    let out = Command::new(actionlint())
        .arg("-no-color")
        .arg(workflow())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Not a rubber stamp: the drill jobs reading an output the plan job does not set.
    let text = std::fs::read_to_string(workflow()).unwrap();
    let broken = text.replace("needs.plan.outputs.matrix", "needs.plan.outputs.shards");
    assert_ne!(broken, text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nightly.yml");
    std::fs::write(&path, broken).unwrap();
    let out = Command::new(actionlint())
        .arg("-no-color")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("shards"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The vdrill command lines of the workflow's `run:` scripts, with the workflow's
/// variables given example values.
fn vdrill_commands(text: &str) -> Vec<Vec<String>> {
    let vars = [
        ("$SCENARIOS", "scenarios"),
        ("$TAG", "nightly"),
        ("$SHARDS", "2"),
        ("$SHARD", "1/2"),
        ("$INDEX", "1"),
        ("$RUN_ID", "nightly-1-1"),
    ];
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(at) = line.find("vdrill ") else {
            continue;
        };
        let before = &line[..at];
        // A command: at the start of a line or a one-line `run:`, after `$(`, or a
        // path ending in /vdrill.
        let starts = before.trim().is_empty()
            || before.trim() == "run:"
            || before.ends_with("$(")
            || before.ends_with('/') && !before.trim_start().starts_with('#');
        if !starts || line.trim_start().starts_with('#') || line.contains("name:") {
            continue;
        }
        let mut cmd = line[at..].trim_end().trim_end_matches(')').to_string();
        // Longest names first ($SHARDS before $SHARD).
        let mut vars = vars.to_vec();
        vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        for (k, v) in vars {
            cmd = cmd.replace(k, v);
        }
        assert!(
            !cmd.contains('$'),
            "a variable the test does not know: {cmd}"
        );
        out.push(
            cmd.replace('"', "")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        );
    }
    out
}

#[test]
fn every_vdrill_command_in_the_workflow_parses() {
    let text = std::fs::read_to_string(workflow()).unwrap();
    let commands = vdrill_commands(&text);
    let subcommands: Vec<String> = commands.iter().map(|c| c[1..3].join(" ")).collect();
    for want in [
        "plan scenarios",
        "testbed prepare",
        "run scenarios",
        "report merge",
        "report merged",
    ] {
        assert!(
            subcommands.iter().any(|s| s == want),
            "the workflow runs `vdrill {want}`: {subcommands:?}"
        );
    }
    for cmd in &commands {
        if let Err(e) = vdrill::cli::Cli::try_parse_from(cmd) {
            panic!("`{}` does not parse: {e}", cmd.join(" "));
        }
    }
    // The shards come from the plan, and each runs with --shard, JUnit and artifacts.
    let plan = commands.iter().find(|c| c[1] == "plan").unwrap();
    assert!(plan.windows(2).any(|w| w == ["--format", "github-matrix"]));
    let run = commands.iter().find(|c| c[1] == "run").unwrap();
    for flag in ["--shard", "--junit", "--artifacts", "--tag"] {
        assert!(run.iter().any(|a| a == flag), "vdrill run {flag}: {run:?}");
    }
    // The bed is cached by the hash of ci/testbed/.
    assert!(text.contains("hashFiles('ci/testbed/**')"));
}

#[test]
fn a_command_line_the_cli_does_not_know_fails_to_parse() {
    // The parse check above can fail: an unknown flag is refused.
    let bad = vdrill_commands("          vdrill run \"$SCENARIOS\" --shards 1/2\n");
    assert_eq!(bad.len(), 1);
    assert!(vdrill::cli::Cli::try_parse_from(&bad[0]).is_err());
}
