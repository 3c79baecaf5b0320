//! SIGINT during a drill: the current step stops, the rest is skipped, finally
//! and teardown run, and the reports are written. (Its own test binary: it
//! signals its own process.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use vdrill::env::memory::{Behaviour, MemoryFactory};
use vdrill::report::Status;

#[tokio::test]
async fn sigint_stops_the_step_runs_cleanup_and_writes_the_report() {
    let h = Harness::new();
    let factory = Arc::new(MemoryFactory::new(Behaviour {
        hang_backups: true,
        ..Default::default()
    }));
    let cancel = vdrill::runner::signal::install(Arc::new(|_: &str| {})).unwrap();
    let runner = h.runner(factory.clone(), false, cancel);
    let cells = cells(MIDRUN);
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGINT).unwrap();
    });
    let report = tokio::time::timeout(Duration::from_secs(60), runner.run(&cells))
        .await
        .expect("the run stops after SIGINT");

    assert!(report.interrupted);
    let cell = &report.cells[0];
    let backup = cell
        .steps
        .iter()
        .find(|s| s.title == "backup before")
        .unwrap();
    assert_eq!(backup.status, Status::Failed);
    assert_eq!(backup.failure_type.as_deref(), Some("interrupted"));
    let later = cell
        .steps
        .iter()
        .find(|s| s.title == "assert-restored shop")
        .unwrap();
    assert_eq!(later.status, Status::Skipped);
    assert_eq!(later.message, "skipped: the run was interrupted");
    assert!(
        cell.steps
            .iter()
            .any(|s| s.stage == vdrill::report::Stage::Finally && s.status == Status::Passed)
    );
    assert!(
        factory.calls().contains(&"stop".to_string()),
        "teardown ran: {:?}",
        factory.calls()
    );

    let run = h.run_json();
    assert_eq!(run["interrupted"], true);
    assert_eq!(run["cells"][0]["status"], "failed");
    assert!(h.junit().contains("type=\"interrupted\""));
}
