//! The JUnit report validates against the JUnit schema CI servers read
//! (tests/junit/junit.xsd), with passed, failed, errored and skipped cases.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use tokio_util::sync::CancellationToken;
use vdrill::env::memory::{Behaviour, MemoryFactory};

fn xmllint(xml: &std::path::Path) -> std::process::Output {
    Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(repo().join("tests/junit/junit.xsd"))
        .arg(xml)
        .output()
        .expect("xmllint is installed by ci/setup.sh (Debian package libxml2-utils)")
}

#[tokio::test]
async fn junit_report_validates_against_the_schema() {
    // One passing cell, one with a failure, skipped steps and a timed-out (errored) step.
    let failing = MIDRUN
        .replace(
            "metadata: {name: midrun}",
            "metadata: {name: midrun-failing}",
        )
        .replace(
            "error: \"KMS.DisabledException\"}}",
            "error: \"NotThisError\"}}",
        );
    let h = Harness::new();
    let mut cells = cells(MIDRUN);
    cells.extend(common::cells(&failing));
    let report = h
        .runner(
            Arc::new(MemoryFactory::new(Behaviour::default())),
            false,
            CancellationToken::new(),
        )
        .run(&cells)
        .await;
    assert!(!report.passed());

    let path = h.path().join("junit.xml");
    let out = xmllint(&path);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.junit()
    );
    let xml = h.junit();
    assert!(xml.contains("<failure"), "a failure is reported");
    assert!(xml.contains("<skipped"), "skipped steps are reported");

    // The schema is not a rubber stamp: a report missing a required attribute fails it.
    let broken = xml.replacen("<testsuite name=", "<testsuite nom=", 1);
    let bad = h.path().join("broken.xml");
    std::fs::write(&bad, broken).unwrap();
    assert!(!xmllint(&bad).status.success());
}
