//! What the runner tells reporters as it goes (the runner emits, reporters
//! listen: the console bars and lines, tests' recorders).

use std::time::Duration;

use super::{CellReport, RunReport, Stage, StepReport};
use crate::env::provision;
use crate::scenario::Cell;

/// What the runner tells reporters as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    RunStarted {
        cells: usize,
    },
    /// Provisioning begins (only when some cell needs the local test bed).
    ProvisionStarted,
    Provision(&'a provision::Event),
    ProvisionFinished {
        duration: Duration,
    },
    CellStarted {
        cell: &'a Cell,
        steps: usize,
    },
    StepStarted {
        cell: &'a str,
        stage: Stage,
        title: &'a str,
    },
    StepFinished {
        cell: &'a str,
        step: &'a StepReport,
    },
    LogLine {
        cell: &'a str,
        line: &'a str,
    },
    CellFinished {
        cell: &'a CellReport,
    },
    Interrupted,
    RunFinished {
        report: &'a RunReport,
    },
}

pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
}
