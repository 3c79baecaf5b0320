//! Results of a run and the ways they are reported: JUnit XML, run.json and
//! per-step logs in the artifacts folder, and live progress on the terminal.

pub mod artifacts;
pub mod event;
pub mod html;
pub mod junit;
pub mod merge;
pub mod progress;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    /// The drill found something wrong (an assertion or expectation did not hold).
    Failed,
    /// The environment broke (a bed process died, provisioning failed): no verdict.
    Error,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}

/// Which part of a cell a step result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Setup,
    Step,
    Finally,
    Teardown,
}

/// One named check inside a step: an assertion or an `expect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionReport {
    pub name: String,
    pub status: Status,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// 1-based position within its stage.
    pub index: usize,
    pub stage: Stage,
    pub kind: String,
    pub title: String,
    pub status: Status,
    /// Why it failed or was skipped; a summary when it passed.
    pub message: String,
    /// `timeout`, `interrupted`, `expectation`, `assertion`, `error`, `environment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_type: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(with = "secs")]
    pub duration: Duration,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<AssertionReport>,
    /// The step's captured log (redacted).
    #[serde(skip)]
    pub log: String,
    /// Relative to the artifacts folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellReport {
    pub id: String,
    pub scenario: String,
    pub file: PathBuf,
    pub matrix: Vec<(String, String)>,
    pub cluster: String,
    pub storage: String,
    pub velero_version: String,
    /// Velero's plugins in this cell and their versions (`azure` -> `v1.13.2`).
    #[serde(default)]
    pub velero_plugins: std::collections::BTreeMap<String, String>,
    /// The Velero version an `upgrade-velero` step moved the cell to (`velero_version`
    /// is the one it was installed with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velero_upgraded_to: Option<String>,
    /// The Kubernetes API server's version (`v1.34.3`), once the cluster is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The providers of the scenario's keys (`aws-kms`, `customer-key`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_providers: Vec<String>,
    pub status: Status,
    /// Why the cell did not pass, in one sentence: the first failure, or what broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Recovery time: from the start of the disaster step to the end of a clean assert-restored.
    #[serde(default, with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub rto: Option<Duration>,
    /// Time spent in vdrill itself rather than waiting on Velero, Kubernetes or the emulators.
    #[serde(with = "secs")]
    pub overhead: Duration,
    pub steps: Vec<StepReport>,
    /// Relative to the artifacts folder.
    pub artifacts: String,
    /// Kept up after a failure (`--keep`): where to find it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub vdrill_version: String,
    pub started_at: DateTime<Utc>,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub interrupted: bool,
    /// For a report made by `vdrill report merge`: the run ids it was merged from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    pub cells: Vec<CellReport>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        !self.interrupted && self.cells.iter().all(|c| c.status == Status::Passed)
    }

    /// Cells passed, failed, errored (environment broke) and skipped.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let count = |s| self.cells.iter().filter(|c| c.status == s).count();
        (
            count(Status::Passed),
            count(Status::Failed),
            count(Status::Error),
            count(Status::Skipped),
        )
    }

    /// The exit code of `vdrill run` for this report.
    pub fn exit_code(&self) -> i32 {
        let (_, failed, errored, _) = self.counts();
        if self.interrupted {
            crate::exit::INTERRUPTED
        } else if failed > 0 {
            crate::exit::DRILL_FAILED
        } else if errored > 0 {
            crate::exit::ENVIRONMENT
        } else {
            // Passed, or skipped because this machine lacks what the cell needs (said
            // in the report): neither fails the run.
            crate::exit::OK
        }
    }
}

/// Durations as seconds with millisecond precision.
mod secs {
    use serde::Deserialize;
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!(
                "{secs} is not a duration in seconds (need a number >= 0)"
            ))
        })
    }
}

mod opt_secs {
    use serde::Deserialize;
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            None => Ok(None),
            Some(secs) => Duration::try_from_secs_f64(secs).map(Some).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{secs} is not a duration in seconds (need a number >= 0)"
                ))
            }),
        }
    }
}

/// A file-name-safe form of an id such as `aws-kms-basic[velero=1.18]`.
pub fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

/// `12.3s`, `2m05s`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}
