//! Runs the expanded plan: one cell at a time, steps in order, each under its
//! timeout; the first failure marks the rest skipped; `finally` steps and
//! teardown always run, also after Ctrl-C / SIGTERM.

pub mod expect;
pub mod log;
pub mod signal;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::env::{Environment, EnvironmentFactory};
use crate::report::artifacts::Artifacts;
use crate::report::{CellReport, RunReport, Stage, Status, StepReport, slug};
use crate::scenario::{Cell, Step};
use crate::steps;
use log::{Redactor, StepLog};
pub use state::DrillState;

/// Timeouts of the phases around the steps.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(600);
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(120);
pub const CELL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Clone)]
pub struct RunOptions {
    pub run_id: String,
    /// Leave the environment up when a cell fails.
    pub keep: bool,
    /// Print step logs live.
    pub verbose: bool,
}

/// What the runner tells reporters as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    RunStarted { cells: usize },
    CellStarted { cell: &'a Cell, steps: usize },
    StepStarted { cell: &'a str, stage: Stage, title: &'a str },
    StepFinished { cell: &'a str, step: &'a StepReport },
    LogLine { cell: &'a str, line: &'a str },
    CellFinished { cell: &'a CellReport },
    Interrupted,
    RunFinished { report: &'a RunReport },
}

pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
}

/// Everything a step needs.
pub struct StepCtx<'a> {
    pub env: &'a Environment,
    pub state: &'a mut DrillState,
    pub cell: &'a Cell,
    pub log: &'a StepLog,
}

/// What a step produced when it ran to its end.
#[derive(Debug, Default)]
pub struct StepOutput {
    pub summary: String,
    pub assertions: Vec<crate::report::AssertionReport>,
    /// For backup and restore: how the Velero operation ended.
    pub outcome: Option<crate::env::Outcome>,
}

pub struct Runner {
    factory: Arc<dyn EnvironmentFactory>,
    reporter: Arc<dyn Reporter>,
    artifacts: Arc<Artifacts>,
    redactor: Arc<Redactor>,
    options: RunOptions,
    cancel: CancellationToken,
}

/// Default timeout of each step kind.
pub fn default_timeout(step: &Step) -> Duration {
    let mins = |m: u64| Duration::from_secs(m * 60);
    match step {
        Step::Deploy(_) => mins(2),
        Step::Backup(_) | Step::Restore(_) => mins(10),
        Step::DeleteNamespace(_) => mins(5),
        Step::UpgradeVelero(_) => mins(10),
        Step::Wait(w) => humantime::parse_duration(&w.duration).unwrap_or_default() + Duration::from_secs(10),
        Step::AssertEncryption(_) => mins(5),
        Step::AssertRestored(_) => mins(2),
        Step::RotateKey(_)
        | Step::DisableKey(_)
        | Step::EnableKey(_)
        | Step::ScheduleKeyDeletion(_)
        | Step::CancelKeyDeletion(_) => mins(1),
    }
}

/// CPU time this process has used (all threads), for vdrill's own share of a run.
pub fn cpu_time() -> Duration {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, (tv.tv_usec() as u32) * 1000);
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

enum Ran {
    Done(anyhow::Result<StepOutput>),
    TimedOut(Duration),
    Interrupted,
}

impl Runner {
    pub fn new(
        factory: Arc<dyn EnvironmentFactory>,
        reporter: Arc<dyn Reporter>,
        artifacts: Arc<Artifacts>,
        redactor: Arc<Redactor>,
        options: RunOptions,
        cancel: CancellationToken,
    ) -> Runner {
        Runner { factory, reporter, artifacts, redactor, options, cancel }
    }

    pub async fn run(&self, cells: &[Cell]) -> RunReport {
        let started = Instant::now();
        let report = Arc::new(Mutex::new(RunReport {
            run_id: self.options.run_id.clone(),
            vdrill_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: Utc::now(),
            duration: Duration::ZERO,
            interrupted: false,
            cells: Vec::new(),
        }));
        self.reporter.event(&Event::RunStarted { cells: cells.len() });
        for cell in cells {
            let cell_report = if self.cancel.is_cancelled() {
                self.skipped_cell(cell, "the run was interrupted before this cell started")
            } else {
                self.run_cell(cell, &report).await
            };
            self.reporter.event(&Event::CellFinished { cell: &cell_report });
            let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
            r.cells.push(cell_report);
            r.duration = started.elapsed();
            r.interrupted = self.cancel.is_cancelled();
            self.artifacts.write_report(&r);
        }
        let mut r = report.lock().unwrap_or_else(|e| e.into_inner()).clone();
        r.duration = started.elapsed();
        r.interrupted = self.cancel.is_cancelled();
        self.artifacts.write_report(&r);
        self.reporter.event(&Event::RunFinished { report: &r });
        r
    }

    fn skipped_cell(&self, cell: &Cell, why: &str) -> CellReport {
        let mut c = self.new_cell_report(cell);
        c.status = Status::Skipped;
        for (i, step) in cell.scenario.steps.iter().enumerate() {
            c.steps.push(skipped(i + 1, Stage::Step, step.kind(), &step.title(), why));
        }
        c
    }

    fn new_cell_report(&self, cell: &Cell) -> CellReport {
        let s = &cell.scenario;
        CellReport {
            id: cell.id.clone(),
            scenario: s.metadata.name.clone(),
            file: cell.path.clone(),
            matrix: cell.matrix.clone(),
            cluster: s.environment.cluster.as_str().to_string(),
            storage: s.environment.storage.as_str().to_string(),
            velero_version: s.velero.version.clone(),
            status: Status::Passed,
            started_at: Utc::now(),
            duration: Duration::ZERO,
            rto: None,
            overhead: Duration::ZERO,
            steps: Vec::new(),
            artifacts: slug(&cell.id),
            kept: None,
        }
    }

    fn step_log(&self, cell: &str) -> StepLog {
        let log = StepLog::new(self.redactor.clone());
        if self.options.verbose {
            let reporter = self.reporter.clone();
            let cell = cell.to_string();
            log.with_echo(Arc::new(move |line: &str| reporter.event(&Event::LogLine { cell: &cell, line })))
        } else {
            log
        }
    }

    /// Run one unit of work under a timeout, stopping early on interrupt (unless `uninterruptible`).
    async fn guarded<'f>(
        &self,
        timeout: Duration,
        uninterruptible: bool,
        fut: futures::future::BoxFuture<'f, anyhow::Result<StepOutput>>,
    ) -> Ran {
        let timed = tokio::time::timeout(timeout, std::panic::AssertUnwindSafe(fut).catch_unwind());
        let finished = if uninterruptible {
            timed.await
        } else {
            tokio::select! {
                r = timed => r,
                _ = self.cancel.cancelled() => return Ran::Interrupted,
            }
        };
        match finished {
            Ok(Ok(r)) => Ran::Done(r),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Ran::Done(Err(anyhow::anyhow!("internal error (a bug in vdrill): {what}")))
            }
            Err(_) => Ran::TimedOut(timeout),
        }
    }

    async fn run_cell(&self, cell: &Cell, run: &Arc<Mutex<RunReport>>) -> CellReport {
        let cell_started = Instant::now();
        let cpu_started = cpu_time();
        let mut report = self.new_cell_report(cell);
        let budget = cell.scenario.timeout.map(|t| t.0).unwrap_or(CELL_TIMEOUT);
        let deadline = cell_started + budget;
        let total = cell.scenario.steps.len() + cell.scenario.finally.len();
        self.reporter.event(&Event::CellStarted { cell, steps: total });
        let dirs = self.artifacts.cell_dirs(&cell.id);
        let mut state = DrillState { work_dir: dirs.work.clone(), ..DrillState::default() };

        // Setup: the environment, then keys, buckets and Velero.
        let env: Option<Environment>;
        let mut failed: Option<String> = None;
        {
            let log = self.step_log(&cell.id);
            let title = format!("environment up ({} cluster, {} storage)", report.cluster, report.storage);
            self.reporter.event(&Event::StepStarted { cell: &cell.id, stage: Stage::Setup, title: &title });
            let started = Instant::now();
            let at = Utc::now();
            let factory = self.factory.clone();
            let mut started_env = None;
            let ran = {
                let fut = async {
                    started_env = Some(factory.start(cell, &dirs, &log).await?);
                    Ok(StepOutput { summary: "environment is up".into(), ..Default::default() })
                }
                .boxed();
                self.guarded(SETUP_TIMEOUT, false, fut).await
            };
            env = started_env;
            let step = self.finish(1, Stage::Setup, "setup", &title, ran, None, at, started, &log, &report);
            if step.status != Status::Passed {
                failed = Some(format!("setup failed: {}", step.message));
            }
            self.record(&mut report, step, run);
        }
        if let (Some(environment), None) = (&env, &failed) {
            let log = self.step_log(&cell.id);
            let title = format!("install Velero {}", cell.scenario.velero.version);
            self.reporter.event(&Event::StepStarted { cell: &cell.id, stage: Stage::Setup, title: &title });
            let (started, at) = (Instant::now(), Utc::now());
            let ran = {
                let mut ctx = StepCtx { env: environment, state: &mut state, cell, log: &log };
                let fut = async move { steps::setup::prepare(&mut ctx).await }.boxed();
                self.guarded(SETUP_TIMEOUT, false, fut).await
            };
            let step = self.finish(2, Stage::Setup, "setup", &title, ran, None, at, started, &log, &report);
            if step.status != Status::Passed {
                failed = Some(format!("setup failed: {}", step.message));
            }
            self.record(&mut report, step, run);
            report.velero_version = environment.velero.version();
        }

        // The drill.
        let mut disaster_at: Option<Instant> = None;
        for (i, step) in cell.scenario.steps.iter().enumerate() {
            let title = step.title();
            if let Some(why) = &failed {
                let reason = format!("skipped: {why}");
                self.record(&mut report, skipped(i + 1, Stage::Step, step.kind(), &title, &reason), run);
                continue;
            }
            if self.cancel.is_cancelled() {
                failed = Some("the run was interrupted".into());
                self.record(&mut report, skipped(i + 1, Stage::Step, step.kind(), &title, "skipped: the run was interrupted"), run);
                continue;
            }
            let environment = env.as_ref().expect("setup passed");
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = step.timeout().unwrap_or_else(|| default_timeout(step)).min(remaining.max(Duration::from_millis(1)));
            let log = self.step_log(&cell.id);
            self.reporter.event(&Event::StepStarted { cell: &cell.id, stage: Stage::Step, title: &title });
            let (started, at) = (Instant::now(), Utc::now());
            if matches!(step, Step::DeleteNamespace(_)) {
                disaster_at.get_or_insert(started);
            }
            let ran = {
                let mut ctx = StepCtx { env: environment, state: &mut state, cell, log: &log };
                let fut = async move { steps::run(step, &mut ctx).await }.boxed();
                self.guarded(timeout, false, fut).await
            };
            let ran = match ran {
                Ran::TimedOut(_) if Instant::now() >= deadline => Ran::Done(Err(anyhow::anyhow!(
                    "the cell's time budget of {} ran out (raise the scenario's `timeout`)",
                    humantime::format_duration(budget)
                ))),
                other => other,
            };
            let out = self.finish(i + 1, Stage::Step, step.kind(), &title, ran, Some(step), at, started, &log, &report);
            if out.status == Status::Failed {
                failed = Some(if out.failure_type.as_deref() == Some("interrupted") {
                    "the run was interrupted".to_string()
                } else {
                    format!("step {} ({}) failed", i + 1, title)
                });
            }
            if let (Step::AssertRestored(_), Status::Passed, Some(t0)) = (step, out.status, disaster_at)
                && report.rto.is_none()
            {
                report.rto = Some(t0.elapsed());
            }
            self.record(&mut report, out, run);
        }
        if failed.is_some() && self.cancel.is_cancelled() {
            self.reporter.event(&Event::Interrupted);
        }

        // finally: always, unless the environment never came up.
        for (i, step) in cell.scenario.finally.iter().enumerate() {
            let title = step.title();
            let Some(environment) = env.as_ref() else {
                self.record(&mut report, skipped(i + 1, Stage::Finally, step.kind(), &title, "skipped: no environment"), run);
                continue;
            };
            let log = self.step_log(&cell.id);
            self.reporter.event(&Event::StepStarted { cell: &cell.id, stage: Stage::Finally, title: &title });
            let (started, at) = (Instant::now(), Utc::now());
            let timeout = step.timeout().unwrap_or_else(|| default_timeout(step));
            let ran = {
                let mut ctx = StepCtx { env: environment, state: &mut state, cell, log: &log };
                let fut = async move { steps::run(step, &mut ctx).await }.boxed();
                self.guarded(timeout, true, fut).await
            };
            let out = self.finish(i + 1, Stage::Finally, step.kind(), &title, ran, Some(step), at, started, &log, &report);
            self.record(&mut report, out, run);
        }

        // Teardown: always, unless asked to keep a failed environment.
        let cell_failed = report.steps.iter().any(|s| s.status == Status::Failed) || self.cancel.is_cancelled();
        if let Some(environment) = env {
            if self.options.keep && cell_failed {
                let info = environment.cluster.info();
                let kept = format!(
                    "environment kept for inspection: kubeconfig {}, work dir {}",
                    info.kubeconfig.map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
                    dirs.work.display()
                );
                report.kept = Some(kept.clone());
                self.record(&mut report, skipped(1, Stage::Teardown, "teardown", "teardown", &format!("skipped (--keep): {kept}")), run);
                // The processes stay up only while vdrill runs; hand them over by not stopping them.
                std::mem::forget(environment);
            } else {
                let log = self.step_log(&cell.id);
                let title = "teardown".to_string();
                self.reporter.event(&Event::StepStarted { cell: &cell.id, stage: Stage::Teardown, title: &title });
                let (started, at) = (Instant::now(), Utc::now());
                let ran = {
                    let mut ctx = StepCtx { env: &environment, state: &mut state, cell, log: &log };
                    let fut = async move { steps::setup::teardown(&mut ctx).await }.boxed();
                    self.guarded(TEARDOWN_TIMEOUT, true, fut).await
                };
                let out = self.finish(1, Stage::Teardown, "teardown", &title, ran, None, at, started, &log, &report);
                self.record(&mut report, out, run);
            }
        }

        report.duration = cell_started.elapsed();
        report.overhead = cpu_time().saturating_sub(cpu_started);
        report.status = if report.steps.iter().any(|s| s.status == Status::Failed) || self.cancel.is_cancelled() {
            Status::Failed
        } else {
            Status::Passed
        };
        report
    }

    /// Turn what happened into a step report, applying the step's `expect`.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        index: usize,
        stage: Stage,
        kind: &str,
        title: &str,
        ran: Ran,
        step: Option<&Step>,
        at: chrono::DateTime<Utc>,
        started: Instant,
        log: &StepLog,
        cell: &CellReport,
    ) -> StepReport {
        let (status, message, failure_type, assertions) = match ran {
            Ran::Interrupted => {
                log.line("interrupted");
                (Status::Failed, "interrupted by a signal".to_string(), Some("interrupted".to_string()), Vec::new())
            }
            Ran::TimedOut(d) => {
                log.line(format!("timed out after {}", humantime::format_duration(d)));
                (Status::Failed, format!("timed out after {}", humantime::format_duration(d)), Some("timeout".to_string()), Vec::new())
            }
            Ran::Done(result) => {
                let judged = expect::judge(step, result);
                for a in &judged.assertions {
                    log.line(format!("{}: {} {}", a.status.as_str(), a.name, a.message));
                }
                (judged.status, judged.message, judged.failure_type, judged.assertions)
            }
        };
        let mut report = StepReport {
            index,
            stage,
            kind: kind.to_string(),
            title: title.to_string(),
            status,
            message: self.redactor.redact(&message),
            failure_type,
            started_at: at,
            duration: started.elapsed(),
            assertions: assertions
                .into_iter()
                .map(|mut a| {
                    a.message = self.redactor.redact(&a.message);
                    a
                })
                .collect(),
            log: log.text(),
            log_file: None,
        };
        report.log_file = self.artifacts.write_step_log(cell, &report);
        report
    }

    fn record(&self, cell: &mut CellReport, step: StepReport, run: &Arc<Mutex<RunReport>>) {
        self.reporter.event(&Event::StepFinished { cell: &cell.id, step: &step });
        cell.steps.push(step);
        // Keep run.json and JUnit current, so even a hard exit leaves what was done.
        let mut snapshot = run.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut partial = cell.clone();
        partial.status = if partial.steps.iter().any(|s| s.status == Status::Failed) { Status::Failed } else { Status::Passed };
        snapshot.cells.push(partial);
        snapshot.interrupted = self.cancel.is_cancelled();
        self.artifacts.write_report(&snapshot);
    }
}

fn skipped(index: usize, stage: Stage, kind: &str, title: &str, why: &str) -> StepReport {
    StepReport {
        index,
        stage,
        kind: kind.to_string(),
        title: title.to_string(),
        status: Status::Skipped,
        message: why.to_string(),
        failure_type: None,
        started_at: Utc::now(),
        duration: Duration::ZERO,
        assertions: Vec::new(),
        log: String::new(),
        log_file: None,
    }
}
