//! Live progress: indicatif bars on a terminal, plain timestamped lines when
//! the output is not a terminal or `CI` is set.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::event::{Event, Reporter};
use super::{Stage, Status, human};
use crate::env::provision::{self, State};

/// Bars when stderr is a terminal and `CI` is unset; lines otherwise.
pub fn auto() -> Box<dyn Reporter> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    if std::io::stderr().is_terminal() && !ci {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::stderr())
    }
}

fn mark(s: Status) -> &'static str {
    match s {
        Status::Passed => "PASS",
        Status::Failed => "FAIL",
        Status::Error => "ERROR",
        Status::Skipped => "SKIP",
    }
}

/// ` (first build usually ~7m)`
fn usually(expected: Option<Duration>) -> String {
    expected
        .map(|d| format!(" (first build usually ~{})", human_rounded(d)))
        .unwrap_or_default()
}

fn human_rounded(d: Duration) -> String {
    if d.as_secs() >= 90 {
        format!("{}m", (d.as_secs() + 30) / 60)
    } else {
        format!("{}s", d.as_secs())
    }
}

/// One line describing a provisioning event.
pub fn provision_line(e: &provision::Event, expected: Option<Duration>) -> String {
    match &e.state {
        State::Start { what, expected } => format!("{}: {what}{}", e.component, usually(*expected)),
        State::Step(text) => format!("{}: {text}{}", e.component, usually(expected)),
        State::Cached => format!("{}: cached", e.component),
        State::Done { seconds, text } => format!(
            "{}: built in {} {text}",
            e.component,
            human(Duration::from_secs_f64(seconds.max(0.0)))
        )
        .trim_end()
        .to_string(),
        State::Failed { log, message } => format!(
            "{}: FAILED: {message} (log: {})",
            e.component,
            log.display()
        ),
        // A refused plugin: its name here, the registry's answer in the provisioning log.
        State::Unavailable(why) if why.starts_with("plugin ") => {
            format!(
                "{}: {} is not available (see the provisioning log)",
                e.component,
                why.split([' ', '(', ':'])
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
        State::Unavailable(why) => format!("{}: not available: {why}", e.component),
        // Something this machine lacks: the cells that need it are skipped, with why.
        State::Absent(why) => format!("{}: not built here: {why}", e.component),
        State::Wait(who) => format!("waiting: {who}"),
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
pub struct Lines {
    out: Mutex<Box<dyn Write + Send>>,
    /// A component's `start`, printed only once it turns out to need work.
    pending: Mutex<HashMap<String, provision::Event>>,
}

impl Lines {
    pub fn stderr() -> Lines {
        Lines::to(Box::new(std::io::stderr()))
    }

    /// Lines into any writer (tests read what a console would show).
    pub fn to(out: Box<dyn Write + Send>) -> Lines {
        Lines {
            out: Mutex::new(out),
            pending: Mutex::default(),
        }
    }

    fn raw(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{text}");
    }

    fn say(&self, msg: &str) {
        self.raw(&format!(
            "{} {msg}",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
}

impl Reporter for Lines {
    fn event(&self, event: &Event) {
        match event {
            Event::RunStarted { cells } => self.say(&format!("running {cells} cell(s)")),
            Event::ProvisionStarted => self.say("[provision] the local test bed: building what is missing (once; later runs reuse the cache)"),
            // The first-build estimate is on the start line only; a bar shows it throughout.
            Event::Provision(e) => {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                match &e.state {
                    State::Start { .. } => {
                        pending.insert(e.component.clone(), (*e).clone());
                        return;
                    }
                    State::Cached => {
                        pending.remove(&e.component);
                    }
                    _ => {
                        if let Some(start) = pending.remove(&e.component) {
                            self.say(&format!("[provision] {}", provision_line(&start, None)));
                        }
                    }
                }
                drop(pending);
                self.say(&format!("[provision] {}", provision_line(e, None)));
            }
            Event::ProvisionFinished { duration } => self.say(&format!("[provision] done in {}", human(*duration))),
            Event::CellStarted { cell, steps } => self.say(&format!("[{}] start ({steps} steps)", cell.id)),
            Event::StepStarted { cell, stage, title } => self.say(&format!("[{cell}] {}{title} ...", stage_prefix(*stage))),
            Event::StepFinished { cell, step } => {
                let mut line = format!("[{cell}] {} {}{} ({})", mark(step.status), stage_prefix(step.stage), step.title, human(step.duration));
                if step.status != Status::Passed && !step.message.is_empty() {
                    line.push_str(&format!(": {}", step.message));
                }
                self.say(&line);
            }
            Event::LogLine { cell, line } => self.raw(&format!("    [{cell}] {line}")),
            Event::CellFinished { cell } => {
                let rto = cell.rto.map(|r| format!(", RTO {}", human(r))).unwrap_or_default();
                self.say(&format!("[{}] {} in {}{rto}", cell.id, mark(cell.status), human(cell.duration)));
                if let Some(v) = &cell.verdict {
                    self.say(&format!("[{}] {v}", cell.id));
                }
                if let Some(k) = &cell.kept {
                    self.say(&format!("[{}] kept: {k}", cell.id));
                }
            }
            Event::Interrupted => self.say("interrupted: running finally steps and teardown"),
            Event::RunFinished { .. } => {}
        }
    }
}

/// One bar per cell, with the current step and its elapsed time; during
/// provisioning, one spinner per component with what it is doing.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    components: Mutex<HashMap<String, (ProgressBar, Option<Duration>)>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::default(),
            components: Mutex::default(),
        }
    }

    fn bar(&self, cell: &str) -> Option<ProgressBar> {
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cell)
            .cloned()
    }

    fn component(&self, e: &provision::Event) {
        let mut components = self.components.lock().unwrap_or_else(|p| p.into_inner());
        let (bar, expected) = components
            .entry(e.component.clone())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{:<16}", e.component));
                bar.enable_steady_tick(Duration::from_millis(120));
                (bar, None)
            })
            .clone();
        if let State::Start {
            expected: Some(d), ..
        } = &e.state
        {
            components.insert(e.component.clone(), (bar.clone(), Some(*d)));
        }
        let expected = match &e.state {
            State::Start { expected, .. } => *expected,
            _ => expected,
        };
        let line = provision_line(e, expected);
        let text = line
            .strip_prefix(&format!("{}: ", e.component))
            .unwrap_or(&line)
            .to_string();
        if e.is_final() {
            bar.finish_with_message(text);
        } else {
            bar.set_message(text);
        }
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
            Event::ProvisionStarted => {
                let _ = self
                    .multi
                    .println("provisioning the local test bed (once; later runs reuse the cache)");
            }
            Event::Provision(e) => self.component(e),
            Event::ProvisionFinished { duration } => {
                for (bar, _) in self
                    .components
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                {
                    if !bar.is_finished() {
                        bar.finish();
                    }
                }
                let _ = self
                    .multi
                    .println(format!("provisioned in {}", human(*duration)));
            }
            Event::CellStarted { cell, steps } => {
                let bar = self.multi.add(ProgressBar::new(*steps as u64));
                bar.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} [{bar:24.cyan/blue}] {pos}/{len} {wide_msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_prefix(cell.id.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(cell.id.clone(), bar);
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
                    let mut line = format!(
                        "  {} {}{} ({})",
                        mark(step.status),
                        stage_prefix(step.stage),
                        step.title,
                        human(step.duration)
                    );
                    if matches!(step.status, Status::Failed | Status::Error)
                        && !step.message.is_empty()
                    {
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
                    let rto = cell
                        .rto
                        .map(|r| format!(", RTO {}", human(r)))
                        .unwrap_or_default();
                    bar.finish_with_message(format!("{}{rto}", mark(cell.status)));
                    if let Some(v) = &cell.verdict {
                        bar.println(format!("  {v}"));
                    }
                    if let Some(k) = &cell.kept {
                        bar.println(format!("  kept: {k}"));
                    }
                }
            }
            Event::Interrupted => {
                let _ = self
                    .multi
                    .println("interrupted: running finally steps and teardown");
            }
            Event::RunFinished { .. } => {
                let _ = self.multi.clear();
            }
        }
    }
}
