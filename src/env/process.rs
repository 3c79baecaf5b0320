//! Every child process vdrill starts, through one [`Supervisor`] per
//! environment (and one per run for what belongs to no environment):
//!
//! - each child leads a process group of its own, so stopping it stops what it
//!   started; the group is killed on timeout, cancel, error and drop;
//! - each child carries the supervisor's ledger marker ([`ledger::MARKER`]) and is
//!   recorded in its ledger record, so a `kill -9` of vdrill leaves nothing that
//!   the next vdrill cannot find and sweep;
//! - unless the environment may be kept (`--keep`, `testbed up`), children get
//!   the parent-death signal and die with vdrill at once;
//! - long-running processes are watched: one that exits while nobody asked it to
//!   is reported to the [`Watchdog`], which the runner turns into an environment
//!   error for the step that was running;
//! - their output goes to a raw log in the environment's private work folder;
//!   the artifacts get a copy that went through the run's redactor.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use super::ledger::{self, Entry, Kind, ProcId, Record};
use crate::log::Redactor;

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Short name used in logs and the log file name.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

impl ProcessSpec {
    pub fn new(name: &str, program: impl Into<PathBuf>) -> ProcessSpec {
        ProcessSpec {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_string(), v.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
}

/// A watched process that exited while nobody had asked it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Died {
    pub name: String,
    /// `exit status: 1`, `signal: 9 (SIGKILL)`.
    pub status: String,
    /// The last lines of its log, redacted.
    pub tail: String,
}

impl Died {
    /// One line: `localstack exited (signal: 9 (SIGKILL))`.
    pub fn summary(&self) -> String {
        format!("{} exited ({})", self.name, self.status)
    }
}

impl std::fmt::Display for Died {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nlast lines of its log:\n{}",
            self.summary(),
            self.tail
        )
    }
}

struct Watched {
    name: String,
    id: ProcId,
    log: PathBuf,
    stopping: Arc<AtomicBool>,
}

struct WatchInner {
    first: watch::Sender<Option<Died>>,
    procs: Mutex<Vec<Watched>>,
    redactor: Arc<Redactor>,
}

/// Tells when a process of an environment dies unasked. Cloning shares it.
#[derive(Clone)]
pub struct Watchdog {
    inner: Arc<WatchInner>,
}

impl Watchdog {
    pub fn new(redactor: Arc<Redactor>) -> Watchdog {
        Watchdog {
            inner: Arc::new(WatchInner {
                first: watch::Sender::new(None),
                procs: Mutex::default(),
                redactor,
            }),
        }
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        self.inner.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a death (the first one is kept).
    pub fn report(&self, died: Died) {
        self.inner.first.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(died);
                true
            } else {
                false
            }
        });
    }

    /// Resolves at the first unasked death.
    pub async fn died(&self) -> Died {
        let mut rx = self.inner.first.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(d) => d.clone().expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    }

    /// A death already reported, or one the process table shows but the reaper has
    /// not reported yet (then its exit status is awaited briefly).
    pub async fn check(&self) -> Option<Died> {
        if let Some(d) = self.inner.first.borrow().clone() {
            return Some(d);
        }
        let gone: Option<(String, PathBuf)> = self
            .procs()
            .iter()
            .find(|w| !w.stopping.load(Ordering::SeqCst) && !w.id.alive())
            .map(|w| (w.name.clone(), w.log.clone()));
        let (name, log) = gone?;
        match tokio::time::timeout(Duration::from_secs(2), self.died()).await {
            Ok(d) => Some(d),
            Err(_) => Some(Died {
                name,
                status: "gone from the process table".into(),
                tail: self.inner.redactor.redact(&tail(&log, 15)),
            }),
        }
    }
}

/// Folders of one supervisor: raw logs (private) and their redacted copies (artifacts).
#[derive(Debug, Clone)]
pub struct LogDirs {
    pub raw: PathBuf,
    pub artifacts: PathBuf,
}

struct Shared {
    beds: PathBuf,
    record: Mutex<Record>,
    redactor: Arc<Redactor>,
    keep: bool,
    handed_over: AtomicBool,
    logs: LogDirs,
    watchdog: Watchdog,
    /// Names of the processes whose logs are copied to the artifacts.
    log_names: Mutex<Vec<String>>,
}

impl Shared {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self) {
        if let Err(e) = self.record().save(&self.beds) {
            eprintln!("vdrill: {e:#}");
        }
    }

    fn raw_log(&self, name: &str) -> PathBuf {
        self.logs.raw.join(format!("{name}.log"))
    }

    /// The redacted copy of one process's log in the artifacts.
    fn copy_log(&self, name: &str) {
        let raw = self.raw_log(name);
        let Ok(bytes) = std::fs::read(&raw) else {
            return;
        };
        let text = self.redactor.redact_bytes(&bytes);
        let _ = crate::report::artifacts::write_atomic(
            &self.logs.artifacts.join(format!("{name}.log")),
            text.as_bytes(),
        );
    }
}

/// Starts, records, watches and stops the child processes of one environment.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// A supervisor with a ledger record of its own (written now, in the ledger folder).
    /// `keep`: children survive vdrill (no parent-death signal), for `--keep` and `testbed up`.
    pub fn new(
        kind: Kind,
        id: &str,
        title: &str,
        logs: LogDirs,
        redactor: Arc<Redactor>,
        keep: bool,
    ) -> Result<Supervisor> {
        Supervisor::in_dir(&ledger::dir(), kind, id, title, logs, redactor, keep)
    }

    pub fn in_dir(
        beds: &Path,
        kind: Kind,
        id: &str,
        title: &str,
        logs: LogDirs,
        redactor: Arc<Redactor>,
        keep: bool,
    ) -> Result<Supervisor> {
        std::fs::create_dir_all(beds).with_context(|| format!("creating {}", beds.display()))?;
        let shared = Shared {
            beds: beds.to_path_buf(),
            record: Mutex::new(Record::new(kind, id, title)),
            watchdog: Watchdog::new(redactor.clone()),
            redactor,
            keep,
            handed_over: AtomicBool::new(false),
            logs,
            log_names: Mutex::default(),
        };
        shared.record().save(beds)?;
        Ok(Supervisor {
            shared: Arc::new(shared),
        })
    }

    pub fn id(&self) -> String {
        self.shared.record().id.clone()
    }

    pub fn watchdog(&self) -> Watchdog {
        self.shared.watchdog.clone()
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.shared.redactor
    }

    /// The raw log of a process started by [`Supervisor::spawn`] under `name`.
    pub fn raw_log(&self, name: &str) -> PathBuf {
        self.shared.raw_log(name)
    }

    pub fn keeps_children(&self) -> bool {
        self.shared.keep
    }

    /// A folder removed with the environment (and by a sweep after a crash).
    pub fn add_dir(&self, dir: &Path) {
        let mut r = self.shared.record();
        if !r.dirs.iter().any(|d| d == dir) {
            r.dirs.push(dir.to_path_buf());
        }
        drop(r);
        self.shared.save();
    }

    /// How to reach the environment (shown when it is handed over).
    pub fn set_endpoint(&self, key: &str, value: impl Into<String>) {
        self.shared
            .record()
            .endpoints
            .insert(key.to_string(), value.into());
        self.shared.save();
    }

    /// Mark, group and (unless kept) tie a command to vdrill's life.
    fn prepare(&self, cmd: &mut std::process::Command) {
        cmd.env(ledger::MARKER, self.id()).process_group(0);
        if !self.shared.keep {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                        .map_err(std::io::Error::from)?;
                    Ok(())
                });
            }
        }
    }

    fn record_child(&self, name: &str, pid: u32) -> ProcId {
        let id = ProcId::of(pid).unwrap_or(ProcId { pid, start: 0 });
        self.shared.record().processes.push(Entry {
            name: name.to_string(),
            id,
        });
        self.shared.save();
        id
    }

    fn forget_child(&self, pid: u32) {
        self.shared.record().processes.retain(|e| e.id.pid != pid);
        self.shared.save();
    }

    /// Start a long-running, watched process with its output in its raw log.
    pub fn spawn(&self, spec: &ProcessSpec) -> Result<Managed> {
        let raw = self.shared.raw_log(&spec.name);
        if let Some(dir) = raw.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&raw)
            .with_context(|| format!("opening {}", raw.display()))?;
        let err = out.try_clone()?;
        let mut cmd = std::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        self.prepare(&mut cmd);
        let mut child = tokio::process::Command::from(cmd)
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let pid = child.id().context("child has no pid")?;
        let id = self.record_child(&spec.name, pid);
        {
            let mut names = self
                .shared
                .log_names
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !names.contains(&spec.name) {
                names.push(spec.name.clone());
            }
        }
        let stopping = Arc::new(AtomicBool::new(false));
        self.shared.watchdog.procs().push(Watched {
            name: spec.name.clone(),
            id,
            log: raw.clone(),
            stopping: stopping.clone(),
        });
        let (exit_tx, exit_rx) = watch::channel(None);
        // The reaper: waits for the child and tells the watchdog if nobody asked it to go.
        let shared = self.shared.clone();
        let (name, flag) = (spec.name.clone(), stopping.clone());
        tokio::spawn(async move {
            let status = child.wait().await;
            let text = match &status {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = exit_tx.send(status.ok());
            if !flag.load(Ordering::SeqCst) && !shared.handed_over.load(Ordering::SeqCst) {
                let tail = shared.redactor.redact(&tail(&shared.raw_log(&name), 15));
                shared.copy_log(&name);
                shared.watchdog.report(Died {
                    name,
                    status: text,
                    tail,
                });
            }
        });
        Ok(Managed {
            name: spec.name.clone(),
            pid,
            log: raw,
            exit: exit_rx,
            stopping,
            shared: self.shared.clone(),
            stopped: false,
        })
    }

    /// Start a command to run to its end: stdout piped, stderr as given, marked,
    /// grouped and recorded; the guard kills its group when dropped.
    fn start_command(
        &self,
        name: &str,
        mut cmd: std::process::Command,
        stderr: Stdio,
    ) -> Result<(tokio::process::Child, u32, GroupGuard)> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        self.prepare(&mut cmd);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = tokio::process::Command::from(cmd)
            .spawn()
            .with_context(|| format!("starting {name} ({program})"))?;
        let pid = child.id().context("child has no pid")?;
        self.record_child(name, pid);
        Ok((child, pid, GroupGuard(pid)))
    }

    /// Run a command to its end and collect its output. Its process group is
    /// killed if this future is dropped (timeout, cancel) and after it exits
    /// (whatever it left running in the background, which would otherwise hold
    /// its output open).
    pub async fn output(
        &self,
        name: &str,
        cmd: std::process::Command,
    ) -> Result<std::process::Output> {
        use tokio::io::AsyncReadExt;
        let (mut child, pid, guard) = self.start_command(name, cmd, Stdio::piped())?;
        let (mut out, mut err) = (
            child.stdout.take().context("no stdout")?,
            child.stderr.take().context("no stderr")?,
        );
        let read_out = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b).await;
            b
        });
        let read_err = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b).await;
            b
        });
        let status = child
            .wait()
            .await
            .with_context(|| format!("waiting for {name}"));
        drop(guard);
        self.forget_child(pid);
        let (stdout, stderr) = (
            read_out.await.unwrap_or_default(),
            read_err.await.unwrap_or_default(),
        );
        Ok(std::process::Output {
            status: status?,
            stdout,
            stderr,
        })
    }

    /// Run a command to its end, handing each line of its stdout to `line` as it
    /// comes and appending its stderr to `log`. Killed like [`Supervisor::output`].
    pub async fn stream(
        &self,
        name: &str,
        cmd: std::process::Command,
        log: &Path,
        mut line: impl FnMut(&str),
    ) -> Result<ExitStatus> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let (mut child, pid, guard) = self.start_command(name, cmd, Stdio::from(err))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut open = true;
        let status = loop {
            tokio::select! {
                l = lines.next_line(), if open => match l {
                    Ok(Some(l)) => line(&l),
                    _ => open = false,
                },
                status = child.wait() => break status?,
            }
        };
        // Leftovers in its group would hold stdout open: stop them, then read what is left.
        drop(guard);
        while open {
            match lines.next_line().await {
                Ok(Some(l)) => line(&l),
                _ => open = false,
            }
        }
        self.forget_child(pid);
        Ok(status)
    }

    /// Copy every process log, redacted, into the artifacts.
    pub fn copy_logs(&self) {
        let names = self
            .shared
            .log_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for n in names {
            self.shared.copy_log(&n);
        }
    }

    /// Leave everything running for the user: processes are no longer stopped when
    /// their handles drop, and the record loses its owner (only `vdrill testbed
    /// down` removes it). Returns the record as saved.
    pub fn hand_over(&self, kind: Kind) -> Record {
        self.shared.handed_over.store(true, Ordering::SeqCst);
        self.copy_logs();
        let mut r = self.shared.record();
        r.owner = None;
        r.kind = kind;
        r.processes.retain(|e| e.id.alive());
        let saved = r.clone();
        drop(r);
        self.shared.save();
        saved
    }

    /// Everything was stopped and removed: drop the record.
    pub fn finish(&self) {
        self.copy_logs();
        let r = self.shared.record().clone();
        r.remove(&self.shared.beds);
    }
}

/// Kills a process group when dropped.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
    }
}

/// A running child process (and its process group).
pub struct Managed {
    pub name: String,
    pub pid: u32,
    /// The raw (unredacted) log, in the private work folder.
    pub log: PathBuf,
    exit: watch::Receiver<Option<ExitStatus>>,
    stopping: Arc<AtomicBool>,
    shared: Arc<Shared>,
    stopped: bool,
}

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Managed {
    /// Fails with the end of its log if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let status = *self.exit.borrow();
        if let Some(status) = status {
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                self.tail(15)
            );
        }
        Ok(())
    }

    /// The last lines of its log, redacted.
    pub fn tail(&self, n: usize) -> String {
        self.shared.redactor.redact(&tail(&self.log, n))
    }

    /// Peak resident memory (VmHWM) of the process and everything in its group, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        processes()
            .iter()
            .filter(|p| p.pgrp == self.pid as i32)
            .map(|p| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`; the log's redacted
    /// copy goes to the artifacts.
    pub async fn stop(&mut self, grace: Duration) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        self.stopping.store(true, Ordering::SeqCst);
        let group = Pid::from_raw(self.pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let mut exit = self.exit.clone();
        if tokio::time::timeout(grace, exit.wait_for(Option::is_some))
            .await
            .is_err()
        {
            let _ = killpg(group, Signal::SIGKILL);
            let _ =
                tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some)).await;
        }
        // Anything the process started that ignored SIGTERM.
        let _ = killpg(group, Signal::SIGKILL);
        self.shared.copy_log(&self.name);
        Ok(())
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        if self.stopped || self.shared.handed_over.load(Ordering::SeqCst) {
            return;
        }
        self.stopping.store(true, Ordering::SeqCst);
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        self.shared.copy_log(&self.name);
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on 127.0.0.1, for a server about to be started on it.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`): a port
/// the kernel hands out for `bind(0)` is one it also hands out as the source port of
/// outgoing connections, so between picking it and the server binding it, any
/// process's connection could take it (seen: etcd failing with "address already in
/// use"). Below the range only servers bind; this process never hands a port out twice.
pub fn free_port() -> Result<u16> {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    const LOW: u16 = 10000;
    if ephemeral_low > LOW + 1000 {
        let span = (ephemeral_low - LOW) as u32;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..200 {
            let r = super::random_bytes(4)?;
            let port = LOW + (u32::from_le_bytes([r[0], r[1], r[2], r[3]]) % span) as u16;
            if given.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return Ok(port);
            }
        }
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Poll `check` until it returns true, the deadline passes, or a watched process dies.
pub async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    procs: &mut [&mut Managed],
    mut check: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        for p in procs.iter_mut() {
            p.check_alive()?;
        }
        if check().await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| format!("--- {} ---\n{}", p.name, p.tail(10)))
                .collect();
            bail!(
                "{what}: not ready after {}s\n{}",
                timeout.as_secs(),
                logs.join("\n")
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
pub async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// One row of the process table.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo {
    pub pid: i32,
    /// `R`, `S`, `Z` (zombie), ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Every process on the machine, from /proc/<pid>/stat.
pub fn processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let s = ledger::stat(pid)?;
            Some(ProcInfo {
                pid,
                state: s.state,
                ppid: s.ppid,
                pgrp: s.pgrp,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor(dir: &Path) -> Supervisor {
        let logs = LogDirs {
            raw: dir.join("raw"),
            artifacts: dir.join("artifacts"),
        };
        Supervisor::in_dir(
            &dir.join("beds"),
            Kind::Run,
            &format!("proc-test-{}", rand_id()),
            "test",
            logs,
            Redactor::new(),
            false,
        )
        .unwrap()
    }

    fn rand_id() -> String {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn live_marked(s: &Supervisor) -> Vec<ProcId> {
        ledger::marked(&s.id())
    }

    #[tokio::test]
    async fn a_timed_out_command_leaves_no_process_behind_not_even_its_child() {
        let tmp = tempfile::tempdir().unwrap();
        let s = supervisor(tmp.path());
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "sleep 300 & sleep 300"]);
        let r = tokio::time::timeout(Duration::from_millis(500), s.output("sleeper", cmd)).await;
        assert!(r.is_err(), "timed out");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !live_marked(&s).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            live_marked(&s).is_empty(),
            "left behind: {:?}",
            live_marked(&s)
        );
    }

    #[tokio::test]
    async fn background_leftovers_of_a_finished_command_are_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let s = supervisor(tmp.path());
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "sleep 300 & echo started"]);
        let out = s.output("bg", cmd).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "started");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !live_marked(&s).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(live_marked(&s).is_empty());
    }

    #[tokio::test]
    async fn an_unasked_death_is_reported_with_its_signal_and_redacted_log_but_a_stop_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let s = supervisor(tmp.path());
        let secret = s.redactor().secret("hunter2-hunter2");
        let spec = ProcessSpec::new("victim", "sh").args([
            "-c",
            &format!("echo ready {}; exec sleep 300", secret.expose_str()),
        ]);
        let p = s.spawn(&spec).unwrap();
        let calm = s
            .spawn(&ProcessSpec::new("calm", "sleep").arg("300"))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut calm = calm;
        calm.stop(Duration::from_secs(2)).await.unwrap();
        assert!(
            s.watchdog().check().await.is_none(),
            "a requested stop is not a death"
        );
        nix::sys::signal::kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL).unwrap();
        let died = tokio::time::timeout(Duration::from_secs(5), s.watchdog().died())
            .await
            .expect("reported");
        assert_eq!(died.name, "victim");
        assert!(died.status.contains("SIGKILL"), "{}", died.status);
        assert!(died.tail.contains("ready [redacted]"), "{}", died.tail);
        let artifact = std::fs::read_to_string(tmp.path().join("artifacts/victim.log")).unwrap();
        assert!(
            artifact.contains("ready [redacted]") && !artifact.contains("hunter2"),
            "{artifact}"
        );
        let raw = std::fs::read_to_string(tmp.path().join("raw/victim.log")).unwrap();
        assert!(
            raw.contains("hunter2"),
            "the raw log, private to the work folder, is untouched"
        );
    }

    #[tokio::test]
    async fn dropping_a_handle_kills_the_group_unless_handed_over() {
        let tmp = tempfile::tempdir().unwrap();
        let s = supervisor(tmp.path());
        let p = s
            .spawn(&ProcessSpec::new("dropped", "sh").args(["-c", "sleep 300 & exec sleep 300"]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(p);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !live_marked(&s).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(live_marked(&s).is_empty());

        let kept = supervisor(tmp.path());
        let p = kept
            .spawn(&ProcessSpec::new("kept", "sleep").arg("300"))
            .unwrap();
        let record = kept.hand_over(Kind::Kept);
        assert!(record.owner.is_none());
        drop(p);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            live_marked(&kept).len(),
            1,
            "a handed-over process survives its handle"
        );
        let swept = ledger::sweep(&tmp.path().join("beds"), true, Some(&kept.id()));
        assert_eq!(swept.len(), 1);
        assert!(live_marked(&kept).is_empty());
    }
}
