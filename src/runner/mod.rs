//! Runs the expanded plan: first provisioning (once, for every cell, outside
//! every budget), then the cells (one at a time, or up to `jobs` side by side,
//! each with its own environment), each cell's steps in order, each under its
//! timeout and watched for the environment breaking; the first failure marks
//! the rest skipped; `finally` steps, pending undos and teardown always run,
//! also after Ctrl-C / SIGTERM.

pub mod expect;
pub mod signal;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::env::process::{Died, Watchdog};
use crate::env::{Environment, EnvironmentFactory, provision};
use crate::log::{Redactor, StepLog};
use crate::report::artifacts::Artifacts;
use crate::report::{CellReport, RunReport, Stage, Status, StepReport, slug};
use crate::scenario::{Cell, Step};
use crate::steps::{self, DrillState, StepCtx, StepOutput};

/// Timeouts of the phases around the steps.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(600);
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(120);
pub const CELL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `failure_type` of a step stopped because the environment broke.
pub const ENVIRONMENT: &str = "environment";

#[derive(Clone)]
pub struct RunOptions {
    pub run_id: String,
    /// Hand a failed cell's environment over to the user instead of tearing it down.
    pub keep: bool,
    /// Print step logs live.
    pub verbose: bool,
    /// Cells run side by side (at least 1).
    pub jobs: usize,
}

/// A run id: a timestamp and a random suffix.
pub fn run_id() -> String {
    let now = Utc::now();
    let suffix = crate::env::random_bytes(2)
        .map(|b| crate::env::hex(&b))
        .unwrap_or_default();
    format!("{}-{suffix}", now.format("%Y%m%d-%H%M%S"))
}

pub use crate::report::event::{Event, Reporter};

pub struct Runner {
    factory: Arc<dyn EnvironmentFactory>,
    reporter: Arc<dyn Reporter>,
    artifacts: Arc<Artifacts>,
    redactor: Arc<Redactor>,
    options: RunOptions,
    cancel: CancellationToken,
    /// Cells still running (with `jobs` > 1, several), as far as they got.
    live: Mutex<std::collections::BTreeMap<String, CellReport>>,
}

/// Default timeout of each step kind.
pub fn default_timeout(step: &Step) -> Duration {
    let mins = |m: u64| Duration::from_secs(m * 60);
    match step {
        Step::Deploy(_) => mins(2),
        Step::Backup(_) | Step::Restore(_) => mins(10),
        Step::DeleteNamespace(_) => mins(5),
        Step::UpgradeVelero(_) => mins(10),
        Step::Wait(w) => {
            humantime::parse_duration(&w.duration).unwrap_or_default() + Duration::from_secs(10)
        }
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
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::new(tv.tv_sec() as u64, (tv.tv_usec() as u32) * 1000)
            };
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

enum Ran {
    Done(anyhow::Result<StepOutput>),
    TimedOut(Duration),
    Interrupted,
    /// A process of the environment died while the step ran.
    Broke(Died),
}

/// One unit of a cell's work (a setup phase, a step, a finally step, teardown).
struct Phase<'a> {
    stage: Stage,
    index: usize,
    kind: &'a str,
    title: String,
    step: Option<&'a Step>,
    timeout: Duration,
    /// Runs to its end even after Ctrl-C (finally, undo, teardown).
    uninterruptible: bool,
    /// Watch the environment while it runs.
    watchdog: Option<Watchdog>,
    /// A failure here means the environment broke rather than the drill failed.
    environment: bool,
    /// The cell's deadline and budget: a timeout past it is the budget running out.
    budget: Option<(Instant, Duration)>,
}

impl Phase<'_> {
    fn new(stage: Stage, index: usize, kind: &str, title: String, timeout: Duration) -> Phase<'_> {
        Phase {
            stage,
            index,
            kind,
            title,
            step: None,
            timeout,
            uninterruptible: false,
            watchdog: None,
            environment: false,
            budget: None,
        }
    }
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
        Runner {
            factory,
            reporter,
            artifacts,
            redactor,
            options,
            cancel,
            live: Mutex::default(),
        }
    }

    /// Run up to `jobs` cells side by side (at least one).
    pub fn set_jobs(&mut self, jobs: usize) {
        self.options.jobs = jobs.max(1);
    }

    pub async fn run(&self, cells: &[Cell]) -> RunReport {
        let started = Instant::now();
        let report = Arc::new(Mutex::new(RunReport {
            run_id: self.options.run_id.clone(),
            vdrill_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: Utc::now(),
            duration: Duration::ZERO,
            interrupted: false,
            merged_from: Vec::new(),
            cells: Vec::new(),
        }));
        self.reporter
            .event(&Event::RunStarted { cells: cells.len() });
        let provisioned = self.provision(cells).await;
        let provisioned = &provisioned;
        // Up to `jobs` cells at once; the report keeps the plan's order.
        let order: std::collections::HashMap<&str, usize> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect();
        let order = &order;
        let report_ref = &report;
        let each = cells.iter().map(|cell| async move {
            let report = report_ref;
            let cell_report = if self.cancel.is_cancelled() {
                self.skipped_cell(cell, "the run was interrupted before this cell started")
            } else if let Some(why) = provisioned.unavailable.get(&cell.id) {
                self.unavailable_cell(cell, why)
            } else if let Some(why) = provisioned.skipped.get(&cell.id) {
                let mut c = self.skipped_cell(cell, &format!("skipped: {why}"));
                c.verdict = Some(format!("not run: {why}"));
                c
            } else {
                self.run_cell(cell, report).await
            };
            self.reporter
                .event(&Event::CellFinished { cell: &cell_report });
            // (`live` before `report`, in the order `record` takes them.)
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            live.remove(&cell_report.id);
            let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
            drop(live);
            r.cells.push(cell_report);
            r.cells
                .sort_by_key(|c| order.get(c.id.as_str()).copied().unwrap_or(usize::MAX));
            r.duration = started.elapsed();
            r.interrupted = self.cancel.is_cancelled();
            self.artifacts.write_report(&r);
        });
        futures::stream::iter(each)
            .buffer_unordered(self.options.jobs.max(1))
            .collect::<Vec<()>>()
            .await;
        let mut r = report.lock().unwrap_or_else(|e| e.into_inner()).clone();
        r.duration = started.elapsed();
        r.interrupted = self.cancel.is_cancelled();
        self.artifacts.write_report(&r);
        self.artifacts.remove_empty_work_root();
        self.reporter.event(&Event::RunFinished { report: &r });
        r
    }

    /// The provisioning phase: one call for every cell; returns why cells cannot run.
    async fn provision(&self, cells: &[Cell]) -> provision::Report {
        if cells.iter().all(|c| provision::needs(c).is_empty()) {
            return Default::default();
        }
        let started = Instant::now();
        self.reporter.event(&Event::ProvisionStarted);
        let reporter = self.reporter.clone();
        let progress = move |e: &provision::Event| reporter.event(&Event::Provision(e));
        let report = self.factory.provision(cells, &progress, &self.cancel).await;
        self.reporter.event(&Event::ProvisionFinished {
            duration: started.elapsed(),
        });
        report
    }

    fn skipped_cell(&self, cell: &Cell, why: &str) -> CellReport {
        let mut c = self.new_cell_report(cell);
        c.status = Status::Skipped;
        for (i, step) in cell.scenario.steps.iter().enumerate() {
            c.steps
                .push(skipped(i + 1, Stage::Step, step.kind(), &step.title(), why));
        }
        c
    }

    /// A cell whose environment could not be provisioned: an environment error.
    fn unavailable_cell(&self, cell: &Cell, why: &str) -> CellReport {
        let mut c = self.new_cell_report(cell);
        self.reporter.event(&Event::CellStarted {
            cell,
            steps: cell.scenario.steps.len() + cell.scenario.finally.len(),
        });
        let mut step = skipped(
            1,
            Stage::Setup,
            "provision",
            "provision the local test bed",
            why,
        );
        step.status = Status::Error;
        step.failure_type = Some(ENVIRONMENT.into());
        step.message = self.redactor.redact(why);
        self.reporter.event(&Event::StepFinished {
            cell: &cell.id,
            step: &step,
        });
        c.steps.push(step);
        for (i, s) in cell.scenario.steps.iter().enumerate() {
            c.steps.push(skipped(
                i + 1,
                Stage::Step,
                s.kind(),
                &s.title(),
                "skipped: the environment could not be provisioned",
            ));
        }
        c.status = Status::Error;
        c.verdict = Some(format!(
            "the environment could not be provisioned: {}",
            c.steps[0].message
        ));
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
            velero_plugins: Default::default(),
            kubernetes_version: None,
            velero_upgraded_to: None,
            key_providers: s
                .keys
                .values()
                .map(|k| k.provider.as_str().to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            status: Status::Passed,
            verdict: None,
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
            log.with_echo(Arc::new(move |line: &str| {
                reporter.event(&Event::LogLine { cell: &cell, line })
            }))
        } else {
            log
        }
    }

    /// Run one unit of work under a timeout, stopping early on interrupt (unless
    /// uninterruptible) or when the environment breaks (when watched).
    async fn guarded(&self, p: &Phase<'_>, fut: BoxFuture<'_, anyhow::Result<StepOutput>>) -> Ran {
        let timed =
            tokio::time::timeout(p.timeout, std::panic::AssertUnwindSafe(fut).catch_unwind());
        let died = async {
            match &p.watchdog {
                Some(w) => w.died().await,
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            if p.uninterruptible {
                std::future::pending().await
            } else {
                self.cancel.cancelled().await
            }
        };
        let finished = tokio::select! {
            r = timed => r,
            d = died => return Ran::Broke(d),
            _ = cancelled => return Ran::Interrupted,
        };
        // A process that died while the step ran broke it, whatever the step made of it
        // (a restore failing with `connection refused` is the emulator's death, not Velero's).
        if let Some(w) = &p.watchdog
            && let Some(d) = w.check().await
        {
            return Ran::Broke(d);
        }
        match finished {
            Ok(Ok(r)) => Ran::Done(r),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Ran::Done(Err(anyhow::anyhow!(
                    "internal error (a bug in vdrill): {what}"
                )))
            }
            Err(_) => Ran::TimedOut(p.timeout),
        }
    }

    /// Announce, run, judge, log and record one phase: the scaffolding every part of a cell shares.
    async fn phase(
        &self,
        report: &mut CellReport,
        run: &Arc<Mutex<RunReport>>,
        log: &StepLog,
        p: Phase<'_>,
        fut: BoxFuture<'_, anyhow::Result<StepOutput>>,
    ) -> StepReport {
        self.reporter.event(&Event::StepStarted {
            cell: &report.id,
            stage: p.stage,
            title: &p.title,
        });
        let (started, at) = (Instant::now(), Utc::now());
        let ran = self.guarded(&p, fut).await;
        let out = self.finish(&p, ran, at, started, log, report);
        self.record(report, out.clone(), run);
        out
    }

    async fn run_cell(&self, cell: &Cell, run: &Arc<Mutex<RunReport>>) -> CellReport {
        let cell_started = Instant::now();
        let cpu_started = cpu_time();
        let mut report = self.new_cell_report(cell);
        let budget = cell.scenario.timeout.map(|t| t.0).unwrap_or(CELL_TIMEOUT);
        let deadline = cell_started + budget;
        let total = cell.scenario.steps.len() + cell.scenario.finally.len();
        self.reporter
            .event(&Event::CellStarted { cell, steps: total });
        let dirs = self.artifacts.cell_dirs(&cell.id);
        let mut state = DrillState {
            work_dir: dirs.work.clone(),
            ..DrillState::default()
        };
        // Why the rest of the drill is skipped.
        let mut failed: Option<String> = None;
        // The environment broke: no verdict on Velero from here on.
        let mut broke: Option<String> = None;

        // Setup: the environment, then keys, buckets and Velero.
        let env: Option<Environment> = {
            let log = self.step_log(&cell.id);
            let title = format!(
                "environment up ({} cluster, {} storage)",
                report.cluster, report.storage
            );
            let mut started_env = None;
            let fut = async {
                started_env = Some(self.factory.start(cell, &dirs, &log).await?);
                Ok(StepOutput {
                    summary: "environment is up".into(),
                    ..Default::default()
                })
            }
            .boxed();
            let mut p = Phase::new(Stage::Setup, 1, "setup", title, SETUP_TIMEOUT);
            p.environment = true;
            let step = self.phase(&mut report, run, &log, p, fut).await;
            if let Some(e) = &started_env {
                report.kubernetes_version = e.cluster.info().version;
            }
            if step.status != Status::Passed {
                failed = Some(format!("setup failed: {}", step.message));
                broke = Some(format!("the environment did not come up: {}", step.message));
            }
            started_env
        };
        if let (Some(environment), None) = (&env, &failed) {
            let log = self.step_log(&cell.id);
            let mut p = Phase::new(
                Stage::Setup,
                2,
                "setup",
                format!("install Velero {}", cell.scenario.velero.version),
                SETUP_TIMEOUT,
            );
            p.watchdog = Some(environment.watchdog.clone());
            let fut = {
                let mut ctx = StepCtx {
                    env: environment,
                    state: &mut state,
                    cell,
                    log: &log,
                };
                async move { steps::setup::prepare(&mut ctx).await }.boxed()
            };
            let step = self.phase(&mut report, run, &log, p, fut).await;
            if step.status != Status::Passed {
                failed = Some(format!("setup failed: {}", step.message));
            }
            if step.status == Status::Error {
                broke = Some(step.message.clone());
            }
            report.velero_version = environment.velero.version();
            report.velero_plugins = environment.velero.plugins();
        }

        // The drill.
        let mut disaster_at: Option<Instant> = None;
        for (i, step) in cell.scenario.steps.iter().enumerate() {
            let title = step.title();
            if let Some(why) = &failed {
                self.record(
                    &mut report,
                    skipped(
                        i + 1,
                        Stage::Step,
                        step.kind(),
                        &title,
                        &format!("skipped: {why}"),
                    ),
                    run,
                );
                continue;
            }
            if self.cancel.is_cancelled() {
                failed = Some("the run was interrupted".into());
                self.record(
                    &mut report,
                    skipped(
                        i + 1,
                        Stage::Step,
                        step.kind(),
                        &title,
                        "skipped: the run was interrupted",
                    ),
                    run,
                );
                continue;
            }
            let environment = env.as_ref().expect("setup passed");
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = step
                .timeout()
                .unwrap_or_else(|| default_timeout(step))
                .min(remaining.max(Duration::from_millis(1)));
            let log = self.step_log(&cell.id);
            if matches!(step, Step::DeleteNamespace(_)) {
                disaster_at.get_or_insert(Instant::now());
            }
            let mut p = Phase::new(Stage::Step, i + 1, step.kind(), title.clone(), timeout);
            p.step = Some(step);
            p.watchdog = Some(environment.watchdog.clone());
            p.budget = Some((deadline, budget));
            let fut = {
                let mut ctx = StepCtx {
                    env: environment,
                    state: &mut state,
                    cell,
                    log: &log,
                };
                async move { steps::run(step, &mut ctx).await }.boxed()
            };
            let out = self.phase(&mut report, run, &log, p, fut).await;
            if matches!(step, Step::UpgradeVelero(_)) && out.status == Status::Passed {
                report.velero_upgraded_to = Some(environment.velero.version());
            }
            match out.status {
                Status::Error => {
                    failed = Some(format!(
                        "the environment broke during step {} ({title})",
                        i + 1
                    ));
                    broke = Some(format!(
                        "{} during step {} ({title})",
                        out.message.lines().next().unwrap_or_default(),
                        i + 1
                    ));
                }
                Status::Failed if out.failure_type.as_deref() == Some("interrupted") => {
                    failed = Some("the run was interrupted".to_string())
                }
                Status::Failed => failed = Some(format!("step {} ({title}) failed", i + 1)),
                _ => {}
            }
            if let (Step::AssertRestored(_), Status::Passed, Some(t0)) =
                (step, out.status, disaster_at)
                && report.rto.is_none()
            {
                report.rto = Some(t0.elapsed());
            }
        }
        if failed.is_some() && self.cancel.is_cancelled() {
            self.reporter.event(&Event::Interrupted);
        }

        // finally, then what steps left to undo: always, unless the environment never
        // came up or broke (a bed that broke is thrown away whole).
        let finally_count = cell.scenario.finally.len();
        for (i, step) in cell.scenario.finally.iter().enumerate() {
            let title = step.title();
            let environment = match (&env, &broke) {
                (Some(e), None) => e,
                (None, _) => {
                    self.record(
                        &mut report,
                        skipped(
                            i + 1,
                            Stage::Finally,
                            step.kind(),
                            &title,
                            "skipped: no environment",
                        ),
                        run,
                    );
                    continue;
                }
                (Some(_), Some(why)) => {
                    self.record(
                        &mut report,
                        skipped(
                            i + 1,
                            Stage::Finally,
                            step.kind(),
                            &title,
                            &format!("skipped: {why}"),
                        ),
                        run,
                    );
                    continue;
                }
            };
            if let Some(k) = step.key().filter(|k| !state.keys.contains_key(*k)) {
                let why =
                    format!("skipped: key `{k}` was never created (setup did not get that far)");
                self.record(
                    &mut report,
                    skipped(i + 1, Stage::Finally, step.kind(), &title, &why),
                    run,
                );
                continue;
            }
            let log = self.step_log(&cell.id);
            let mut p = Phase::new(
                Stage::Finally,
                i + 1,
                step.kind(),
                title,
                step.timeout().unwrap_or_else(|| default_timeout(step)),
            );
            p.step = Some(step);
            p.uninterruptible = true;
            p.watchdog = Some(environment.watchdog.clone());
            let fut = {
                let mut ctx = StepCtx {
                    env: environment,
                    state: &mut state,
                    cell,
                    log: &log,
                };
                async move { steps::run(step, &mut ctx).await }.boxed()
            };
            let out = self.phase(&mut report, run, &log, p, fut).await;
            if out.status == Status::Error {
                broke.get_or_insert(out.message.clone());
            }
        }
        if let (Some(environment), None) = (&env, &broke) {
            for (i, undo) in std::mem::take(&mut state.undo).into_iter().enumerate() {
                let log = self.step_log(&cell.id);
                let mut p = Phase::new(
                    Stage::Finally,
                    finally_count + i + 1,
                    "undo",
                    undo.title(),
                    Duration::from_secs(60),
                );
                p.uninterruptible = true;
                let fut = {
                    let mut ctx = StepCtx {
                        env: environment,
                        state: &mut state,
                        cell,
                        log: &log,
                    };
                    async move { steps::setup::undo(&mut ctx, &undo).await }.boxed()
                };
                self.phase(&mut report, run, &log, p, fut).await;
            }
        }

        // Teardown: always, unless asked to keep a failed environment.
        let cell_failed = report
            .steps
            .iter()
            .any(|s| matches!(s.status, Status::Failed | Status::Error))
            || self.cancel.is_cancelled();
        if let Some(environment) = env {
            let log = self.step_log(&cell.id);
            if self.options.keep && cell_failed {
                match environment.stop.hand_over(&log).await {
                    Ok(kept) => {
                        report.kept = Some(kept.clone());
                        let mut s = skipped(
                            1,
                            Stage::Teardown,
                            "teardown",
                            "teardown",
                            &format!("skipped (--keep): environment kept: {kept}"),
                        );
                        s.log = log.text();
                        self.record(&mut report, s, run);
                    }
                    Err(e) => {
                        let p = Phase::new(
                            Stage::Teardown,
                            1,
                            "teardown",
                            "hand over (--keep)".into(),
                            TEARDOWN_TIMEOUT,
                        );
                        let fut =
                            async move { Err(e.context("handing the environment over")) }.boxed();
                        self.phase(&mut report, run, &log, p, fut).await;
                    }
                }
            } else {
                let mut p = Phase::new(
                    Stage::Teardown,
                    1,
                    "teardown",
                    "teardown".into(),
                    TEARDOWN_TIMEOUT,
                );
                p.uninterruptible = true;
                let fut = {
                    let mut ctx = StepCtx {
                        env: &environment,
                        state: &mut state,
                        cell,
                        log: &log,
                    };
                    async move { steps::setup::teardown(&mut ctx).await }.boxed()
                };
                self.phase(&mut report, run, &log, p, fut).await;
            }
        }

        report.duration = cell_started.elapsed();
        // Process-wide: with `jobs` > 1 it includes the other running cells' share,
        // so it is an upper bound there.
        report.overhead = cpu_time().saturating_sub(cpu_started);
        // A failure the drill found before anything broke stands; a break after it
        // (in `finally`, say) does not hide it.
        (report.status, report.verdict) = match cell_status(&report.steps) {
            Status::Failed => {
                let s = report
                    .steps
                    .iter()
                    .find(|s| s.status == Status::Failed)
                    .expect("a failed step");
                (
                    Status::Failed,
                    Some(format!(
                        "{}: {}",
                        s.title,
                        s.message.lines().next().unwrap_or_default()
                    )),
                )
            }
            Status::Error => {
                let why = broke.unwrap_or_else(|| "the environment broke during cleanup".into());
                (
                    Status::Error,
                    Some(format!("{why}; the drill says nothing about Velero")),
                )
            }
            _ if self.cancel.is_cancelled() => (Status::Failed, Some("interrupted".into())),
            status => (status, None),
        };
        report
    }

    /// Turn what happened into a step report, applying the step's `expect`.
    fn finish(
        &self,
        p: &Phase<'_>,
        ran: Ran,
        at: chrono::DateTime<Utc>,
        started: Instant,
        log: &StepLog,
        cell: &CellReport,
    ) -> StepReport {
        let (mut status, message, mut failure_type, assertions) = match ran {
            Ran::Interrupted => {
                log.line("interrupted");
                (
                    Status::Failed,
                    "interrupted by a signal".to_string(),
                    Some("interrupted".to_string()),
                    Vec::new(),
                )
            }
            Ran::TimedOut(_)
                if p.budget
                    .is_some_and(|(deadline, _)| Instant::now() >= deadline) =>
            {
                let budget = p.budget.map(|(_, b)| b).unwrap_or_default();
                let msg = format!(
                    "the cell's time budget of {} ran out (raise the scenario's `timeout`)",
                    humantime::format_duration(budget)
                );
                log.line(&msg);
                (Status::Failed, msg, Some("timeout".to_string()), Vec::new())
            }
            Ran::TimedOut(d) => {
                log.line(format!("timed out after {}", humantime::format_duration(d)));
                (
                    Status::Failed,
                    format!("timed out after {}", humantime::format_duration(d)),
                    Some("timeout".to_string()),
                    Vec::new(),
                )
            }
            Ran::Broke(died) => {
                log.line(format!("the environment broke: {died}"));
                (
                    Status::Error,
                    format!("the environment broke: {died}"),
                    Some(ENVIRONMENT.to_string()),
                    Vec::new(),
                )
            }
            Ran::Done(result) => {
                let judged = expect::judge(p.step, result);
                for a in &judged.assertions {
                    log.line(format!("{}: {} {}", a.status.as_str(), a.name, a.message));
                }
                (
                    judged.status,
                    judged.message,
                    judged.failure_type,
                    judged.assertions,
                )
            }
        };
        if p.environment
            && status == Status::Failed
            && failure_type.as_deref() != Some("interrupted")
        {
            status = Status::Error;
            failure_type = Some(ENVIRONMENT.to_string());
        }
        let mut report = StepReport {
            index: p.index,
            stage: p.stage,
            kind: p.kind.to_string(),
            title: p.title.clone(),
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
        self.reporter.event(&Event::StepFinished {
            cell: &cell.id,
            step: &step,
        });
        cell.steps.push(step);
        // Keep run.json and JUnit current, so even a hard exit leaves what was done:
        // the finished cells and, as far as they got, every cell still running.
        let mut partial = cell.clone();
        partial.status = cell_status(&partial.steps);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.insert(partial.id.clone(), partial);
        let mut snapshot = run.lock().unwrap_or_else(|e| e.into_inner()).clone();
        snapshot.cells.extend(live.values().cloned());
        snapshot.interrupted = self.cancel.is_cancelled();
        self.artifacts.write_report(&snapshot);
    }
}

/// A cell's status from its steps: a failure the drill found, else an environment
/// error, else passed.
fn cell_status(steps: &[StepReport]) -> Status {
    if steps.iter().any(|s| s.status == Status::Failed) {
        Status::Failed
    } else if steps.iter().any(|s| s.status == Status::Error) {
        Status::Error
    } else {
        Status::Passed
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
