//! Applying a step's `expect` to what happened.

use regex::Regex;

use crate::log::error_text;
use crate::report::{AssertionReport, Status};
use crate::scenario::{Phase, Step};
use crate::steps::StepOutput;

pub struct Judged {
    pub status: Status,
    pub message: String,
    pub failure_type: Option<String>,
    pub assertions: Vec<AssertionReport>,
}

fn assertion(name: impl Into<String>, ok: bool, message: impl Into<String>) -> AssertionReport {
    AssertionReport {
        name: name.into(),
        status: if ok { Status::Passed } else { Status::Failed },
        message: message.into(),
    }
}

/// A short excerpt of `text` around the first match of `re`, for the report.
fn excerpt(re: &Regex, text: &str) -> String {
    match re.find(text) {
        Some(m) => {
            let line_start = text[..m.start()].rfind('\n').map(|i| i + 1).unwrap_or(0);
            let line_end = text[m.end()..]
                .find('\n')
                .map(|i| m.end() + i)
                .unwrap_or(text.len());
            // At most 300 characters of the line, the match kept in view.
            let before: Vec<char> = text[line_start..m.start()].chars().collect();
            let matched = &text[m.start()..m.end()];
            let after: Vec<char> = text[m.end()..line_end].chars().collect();
            let room = 300usize.saturating_sub(matched.chars().count());
            let keep_before = before.len().min(room / 2);
            let keep_after = after.len().min(room - keep_before);
            let keep_before = before.len().min(room - keep_after);
            let mut line = String::new();
            if keep_before < before.len() {
                line.push('…');
            }
            line.extend(&before[before.len() - keep_before..]);
            line.push_str(matched);
            line.extend(&after[..keep_after]);
            if keep_after < after.len() {
                line.push('…');
            }
            format!("found in: {line}")
        }
        None => String::new(),
    }
}

pub fn judge(step: Option<&Step>, result: anyhow::Result<StepOutput>) -> Judged {
    let expect = step.and_then(Step::expect).cloned().unwrap_or_default();
    let pattern = expect.error.as_deref().and_then(|p| Regex::new(p).ok());
    let velero_op = matches!(step, Some(Step::Backup(_) | Step::Restore(_)));

    match result {
        Ok(out) => {
            let mut assertions = out.assertions;
            if let (true, Some(outcome)) = (velero_op, &out.outcome) {
                let want = expect.phase.unwrap_or(if expect.error.is_some() {
                    Phase::Failed
                } else {
                    Phase::Completed
                });
                let ok = outcome.phase == want.as_str();
                let mut detail = format!("phase {}", outcome.phase);
                if let Some(r) = &outcome.failure_reason {
                    detail.push_str(&format!(", failure reason: {r}"));
                }
                if outcome.errors > 0 {
                    detail.push_str(&format!(", {} errors", outcome.errors));
                }
                if !outcome.validation_errors.is_empty() {
                    detail.push_str(&format!(
                        ", validation errors: {}",
                        outcome.validation_errors.join("; ")
                    ));
                }
                assertions.insert(
                    0,
                    assertion(format!("phase is {}", want.as_str()), ok, detail),
                );
                if let (Some(p), Some(re)) = (&expect.error, &pattern) {
                    let evidence = outcome.evidence();
                    let found = re.is_match(&evidence);
                    let msg = if found {
                        excerpt(re, &evidence)
                    } else {
                        "not found in the failure reason, validation errors or Velero's logs of this operation".to_string()
                    };
                    assertions.insert(1, assertion(format!("error matches /{p}/"), found, msg));
                }
            } else if let Some(p) = &expect.error {
                assertions.insert(
                    0,
                    assertion(
                        format!("fails with /{p}/"),
                        false,
                        "the step succeeded, but it was expected to fail",
                    ),
                );
            }
            let failed: Vec<&AssertionReport> = assertions
                .iter()
                .filter(|a| a.status == Status::Failed)
                .collect();
            if failed.is_empty() {
                let skipped = assertions
                    .iter()
                    .filter(|a| a.status == Status::Skipped)
                    .count();
                let mut message = out.summary;
                if skipped > 0 {
                    message.push_str(&format!(" ({skipped} assertion(s) skipped)"));
                }
                Judged {
                    status: Status::Passed,
                    message,
                    failure_type: None,
                    assertions,
                }
            } else {
                let is_expectation = failed.iter().all(|a| {
                    a.name.starts_with("phase is")
                        || a.name.starts_with("error matches")
                        || a.name.starts_with("fails with")
                });
                let message = failed
                    .iter()
                    .map(|a| format!("{}: {}", a.name, a.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Judged {
                    status: Status::Failed,
                    message,
                    failure_type: Some(
                        if is_expectation {
                            "expectation"
                        } else {
                            "assertion"
                        }
                        .to_string(),
                    ),
                    assertions,
                }
            }
        }
        Err(e) if e.downcast_ref::<crate::env::NotHere>().is_some() => Judged {
            status: Status::Skipped,
            message: format!("skipped: {}", error_text(&e)),
            failure_type: None,
            assertions: Vec::new(),
        },
        Err(e) => {
            let text = error_text(&e);
            match (&expect.error, &pattern) {
                (Some(p), Some(re)) if re.is_match(&text) => Judged {
                    status: Status::Passed,
                    message: format!("failed as expected: {text}"),
                    failure_type: None,
                    assertions: vec![assertion(
                        format!("fails with /{p}/"),
                        true,
                        excerpt(re, &text),
                    )],
                },
                (Some(p), _) => Judged {
                    status: Status::Failed,
                    message: format!("failed, but not with /{p}/: {text}"),
                    failure_type: Some("expectation".into()),
                    assertions: vec![assertion(format!("fails with /{p}/"), false, text.clone())],
                },
                (None, _) => Judged {
                    status: Status::Failed,
                    message: text,
                    failure_type: Some("error".into()),
                    assertions: Vec::new(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_the_environment_cannot_do_is_skipped_with_its_reason_and_others_fail() {
        let j = judge(
            None,
            Err(
                anyhow::Error::new(crate::env::NotHere("no KMS here".into()))
                    .context("disabling key k"),
            ),
        );
        assert_eq!(j.status, Status::Skipped);
        assert!(j.message.contains("no KMS here"), "{}", j.message);
        let j = judge(None, Err(anyhow::anyhow!("no KMS here")));
        assert_eq!(j.status, Status::Failed, "a plain error is a failure");
    }

    #[test]
    fn the_excerpt_keeps_a_late_match_in_view() {
        let re = Regex::new("invalid repository password").unwrap();
        let line = format!(
            "first line\nPodVolumeRestore r: {}: invalid repository password{}\nlast",
            "x".repeat(400),
            "y".repeat(400)
        );
        let e = excerpt(&re, &line);
        assert!(e.contains("invalid repository password"), "{e}");
        assert!(e.starts_with("found in: …x") && e.ends_with("y…"), "{e}");
        assert!(e.chars().count() <= "found in: ".len() + 302, "{}", e.len());
        assert!(!e.contains("first line") && !e.contains("last"), "{e}");
        assert_eq!(
            excerpt(&re, "short: invalid repository password."),
            "found in: short: invalid repository password."
        );
    }
}
