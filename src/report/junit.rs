//! JUnit XML in the shape Jenkins, GitLab and other dashboards read: one testsuite
//! per scenario cell, one testcase per step and per assertion.
//!
//! Names are stable across runs, so a dashboard can follow a test from night to
//! night: the suite is the cell id (`aws-kms-basic[velero=1.18]`), a case's
//! `classname` is the scenario (`aws-kms-basic`: no dots, which readers would take
//! for a package path) and its name the step (`step 05: backup while-disabled`),
//! followed by the cell's matrix values (`[velero=1.18]`) when the scenario has a
//! matrix, so that classname + name is unique in a report. Run ids, times and
//! generated key ids go into attributes and properties, never into names.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{CellReport, RunReport, Stage, Status, StepReport};

/// `step 05: backup before`.
pub fn case_name(step: &StepReport) -> String {
    let stage = match step.stage {
        Stage::Setup => "setup",
        Stage::Step => "step",
        Stage::Finally => "finally",
        Stage::Teardown => "teardown",
    };
    format!("{stage} {:02}: {}", step.index, step.title)
}

/// The matrix part of a cell's name (`[velero=1.18]`), empty without a matrix.
fn matrix_suffix(cell: &CellReport) -> String {
    if cell.matrix.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = cell
        .matrix
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(" [{}]", pairs.join(","))
}

/// Longest failure or skip `message` attribute; the element's body has it all.
const HEADLINE_CHARS: usize = 200;

/// The first line of a message, shortened: what dashboards show in a list.
pub fn headline(message: &str) -> String {
    let first = message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    if first.chars().count() > HEADLINE_CHARS {
        format!(
            "{}...",
            first.chars().take(HEADLINE_CHARS).collect::<String>()
        )
    } else {
        first.to_string()
    }
}

fn status(s: Status, message: &str, ty: Option<&str>) -> TestCaseStatus {
    match s {
        Status::Passed => TestCaseStatus::success(),
        Status::Failed | Status::Error => {
            // <error>: the test could not run to a verdict (the environment broke, an
            // internal error, an interrupt); <failure>: it ran and found a problem.
            let kind = if s == Status::Error || ty == Some("error") || ty == Some("interrupted") {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut st = TestCaseStatus::non_success(kind);
            st.set_message(headline(message));
            st.set_type(ty.unwrap_or("failure"));
            st.set_description(message);
            st
        }
        Status::Skipped => {
            let mut st = TestCaseStatus::skipped();
            st.set_message(headline(message));
            if message.trim() != headline(message) {
                st.set_description(message);
            }
            st
        }
    }
}

/// vdrill's own share of a cell's time, in percent.
pub fn share_percent(cell: &CellReport) -> f64 {
    100.0 * cell.overhead.as_secs_f64() / cell.duration.as_secs_f64().max(1e-9)
}

pub fn render(run: &RunReport) -> String {
    let mut report = Report::new("vdrill");
    report.set_timestamp(run.started_at);
    report.set_time(run.duration);
    for cell in &run.cells {
        let mut suite = TestSuite::new(cell.id.as_str());
        suite.set_timestamp(cell.started_at);
        suite.set_time(cell.duration);
        let mut props = vec![
            ("scenario", cell.scenario.clone()),
            ("scenario.file", cell.file.display().to_string()),
            ("velero.version", cell.velero_version.clone()),
            ("cluster", cell.cluster.clone()),
            ("storage", cell.storage.clone()),
            ("run.id", run.run_id.clone()),
            ("artifacts", cell.artifacts.clone()),
        ];
        if let Some(v) = &cell.velero_upgraded_to {
            props.push(("velero.version.upgraded", v.clone()));
        }
        if let Some(v) = &cell.kubernetes_version {
            props.push(("kubernetes.version", v.clone()));
        }
        if !cell.key_providers.is_empty() {
            props.push(("key.provider", cell.key_providers.join(",")));
        }
        for (k, v) in &cell.matrix {
            props.push(("matrix", format!("{k}={v}")));
        }
        let plugins: Vec<(String, String)> = cell
            .velero_plugins
            .iter()
            .map(|(k, v)| (format!("velero.plugin.{k}"), v.clone()))
            .collect();
        if let Some(rto) = cell.rto {
            props.push(("rto.seconds", format!("{:.3}", rto.as_secs_f64())));
        }
        props.push((
            "vdrill.overhead.seconds",
            format!("{:.3}", cell.overhead.as_secs_f64()),
        ));
        props.push((
            "vdrill.share.percent",
            format!("{:.2}", share_percent(cell)),
        ));
        props.push(("status", cell.status.as_str().to_string()));
        if let Some(v) = &cell.verdict {
            props.push(("verdict", headline(v)));
        }
        if let Some(k) = &cell.kept {
            props.push(("kept", k.clone()));
        }
        for (k, v) in props {
            suite.add_property(Property::new(k, v));
        }
        for (k, v) in plugins {
            suite.add_property(Property::new(k, v));
        }
        let suffix = matrix_suffix(cell);
        for step in &cell.steps {
            let name = case_name(step);
            let mut case = TestCase::new(
                format!("{name}{suffix}"),
                status(step.status, &step.message, step.failure_type.as_deref()),
            );
            case.set_classname(cell.scenario.as_str());
            case.set_time(step.duration);
            case.set_assertions(step.assertions.len());
            if !step.log.is_empty() {
                case.set_system_out(step.log.as_str());
            }
            suite.add_test_case(case);
            for a in &step.assertions {
                let ty = (a.status == Status::Failed).then_some("assertion");
                let mut case = TestCase::new(
                    format!("{name} / {}{suffix}", a.name),
                    status(a.status, &a.message, ty),
                );
                case.set_classname(cell.scenario.as_str());
                case.set_time(std::time::Duration::ZERO);
                if a.status == Status::Passed && !a.message.is_empty() {
                    case.set_system_out(a.message.as_str());
                }
                suite.add_test_case(case);
            }
        }
        report.add_test_suite(suite);
    }
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- failed to render JUnit: {e} -->"))
}
