//! Live progress: indicatif bars on a terminal, plain timestamped lines when
//! the output is not a terminal or `CI` is set.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Stage, Status, human};
use crate::runner::{Event, Reporter};

/// Bars when stderr is a terminal and `CI` is unset; lines otherwise.
pub fn auto() -> Box<dyn Reporter> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    if std::io::stderr().is_terminal() && !ci { Box::new(Bars::new()) } else { Box::new(Lines) }
}

fn mark(s: Status) -> &'static str {
    match s {
        Status::Passed => "PASS",
        Status::Failed => "FAIL",
        Status::Skipped => "SKIP",
    }
}

fn stage_prefix(stage: Stage) -> &'static str {
    match stage {
        Stage::Setup => "setup: ",
        Stage::Step => "",
        Stage::Finally => "finally: ",
        Stage::Teardown => "",
    }
}

/// Plain lines for logs and CI.
pub struct Lines;

impl Lines {
    fn say(&self, msg: &str) {
        eprintln!("{} {msg}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
    }
}

impl Reporter for Lines {
    fn event(&self, event: &Event) {
        match event {
            Event::RunStarted { cells } => self.say(&format!("running {cells} cell(s)")),
            Event::CellStarted { cell, steps } => self.say(&format!("[{}] start ({steps} steps)", cell.id)),
            Event::StepStarted { cell, stage, title } => self.say(&format!("[{cell}] {}{title} ...", stage_prefix(*stage))),
            Event::StepFinished { cell, step } => {
                let mut line = format!("[{cell}] {} {}{} ({})", mark(step.status), stage_prefix(step.stage), step.title, human(step.duration));
                if step.status != Status::Passed && !step.message.is_empty() {
                    line.push_str(&format!(": {}", step.message));
                }
                self.say(&line);
            }
            Event::LogLine { cell, line } => eprintln!("    [{cell}] {line}"),
            Event::CellFinished { cell } => {
                let rto = cell.rto.map(|r| format!(", RTO {}", human(r))).unwrap_or_default();
                self.say(&format!("[{}] {} in {}{rto}", cell.id, mark(cell.status), human(cell.duration)));
            }
            Event::Interrupted => self.say("interrupted: running finally steps and teardown"),
            Event::RunFinished { .. } => {}
        }
    }
}

/// One bar per cell, with the current step and its elapsed time.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), bars: Mutex::default() }
    }

    fn bar(&self, cell: &str) -> Option<ProgressBar> {
        self.bars.lock().unwrap_or_else(|e| e.into_inner()).get(cell).cloned()
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Reporter for Bars {
    fn event(&self, event: &Event) {
        match event {
            Event::RunStarted { .. } => {}
            Event::CellStarted { cell, steps } => {
                let bar = self.multi.add(ProgressBar::new(*steps as u64));
                bar.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} [{bar:24.cyan/blue}] {pos}/{len} {wide_msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_prefix(cell.id.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars.lock().unwrap_or_else(|e| e.into_inner()).insert(cell.id.clone(), bar);
            }
            Event::StepStarted { cell, stage, title } => {
                if let Some(bar) = self.bar(cell) {
                    bar.set_message(format!("{}{title}", stage_prefix(*stage)));
                }
            }
            Event::StepFinished { cell, step } => {
                if let Some(bar) = self.bar(cell) {
                    if matches!(step.stage, Stage::Step | Stage::Finally) {
                        bar.inc(1);
                    }
                    let mut line = format!("  {} {}{} ({})", mark(step.status), stage_prefix(step.stage), step.title, human(step.duration));
                    if step.status == Status::Failed && !step.message.is_empty() {
                        line.push_str(&format!("\n       {}", step.message));
                    }
                    bar.println(line);
                }
            }
            Event::LogLine { cell, line } => {
                if let Some(bar) = self.bar(cell) {
                    bar.println(format!("      {line}"));
                }
            }
            Event::CellFinished { cell } => {
                if let Some(bar) = self.bar(&cell.id) {
                    let rto = cell.rto.map(|r| format!(", RTO {}", human(r))).unwrap_or_default();
                    bar.finish_with_message(format!("{}{rto}", mark(cell.status)));
                }
            }
            Event::Interrupted => {
                let _ = self.multi.println("interrupted: running finally steps and teardown");
            }
            Event::RunFinished { .. } => {
                let _ = self.multi.clear();
            }
        }
    }
}
