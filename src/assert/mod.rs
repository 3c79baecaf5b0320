//! Assertions: what the drill checks about encryption and about restores.
//! Pure logic over what the providers report, so it is testable on its own.

pub mod canary;
pub mod encryption;
pub mod file_data;
pub mod restored;

use crate::report::{AssertionReport, Status};

pub fn pass(name: impl Into<String>, message: impl Into<String>) -> AssertionReport {
    AssertionReport {
        name: name.into(),
        status: Status::Passed,
        message: message.into(),
    }
}

pub fn fail(name: impl Into<String>, message: impl Into<String>) -> AssertionReport {
    AssertionReport {
        name: name.into(),
        status: Status::Failed,
        message: message.into(),
    }
}

pub fn skip(name: impl Into<String>, message: impl Into<String>) -> AssertionReport {
    AssertionReport {
        name: name.into(),
        status: Status::Skipped,
        message: message.into(),
    }
}

/// A bounded list of offenders for a message: `a (x); b (y); ... and 3 more`.
pub fn offenders(items: &[String]) -> String {
    const SHOW: usize = 20;
    let mut s = items
        .iter()
        .take(SHOW)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > SHOW {
        s.push_str(&format!("; ... and {} more", items.len() - SHOW));
    }
    s
}
