//! Child processes of the local test bed: started with their output in a log
//! file, in their own process group, killed with vdrill if vdrill dies, and
//! stopped with SIGTERM then SIGKILL after a bound.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Short name used in logs and the log file name.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub log: PathBuf,
    /// Keep running after vdrill exits (`vdrill testbed up`); otherwise the
    /// kernel kills it when vdrill dies.
    pub detach: bool,
}

impl ProcessSpec {
    pub fn new(name: &str, program: impl Into<PathBuf>, log_dir: &Path) -> ProcessSpec {
        ProcessSpec {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            log: log_dir.join(format!("{name}.log")),
            detach: false,
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

/// A running child process (and its process group).
#[derive(Debug)]
pub struct Managed {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
    child: Option<tokio::process::Child>,
    stopped: bool,
}

impl Managed {
    pub fn spawn(spec: &ProcessSpec) -> Result<Managed> {
        if let Some(dir) = spec.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&spec.log).with_context(|| format!("opening {}", spec.log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = std::process::Command::new(&spec.program);
        cmd.args(&spec.args).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        // Its own process group, so stopping it also stops what it starts.
        cmd.process_group(0);
        if !spec.detach {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                    Ok(())
                });
            }
        }
        let child = tokio::process::Command::from(cmd)
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let pid = child.id().context("child has no pid")?;
        Ok(Managed { name: spec.name.clone(), pid, log: spec.log.clone(), child: Some(child), stopped: false })
    }

    /// Fails with the end of its log if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("{} exited ({status}); last log lines:\n{}", self.name, tail(&self.log, 15));
        }
        Ok(())
    }

    /// Peak resident memory (VmHWM) of the process and everything in its group, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        processes()
            .iter()
            .filter(|p| p.pgrp == self.pid as i32)
            .map(|p| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let group = Pid::from_raw(self.pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if let Some(mut child) = self.child.take() {
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    let _ = killpg(group, Signal::SIGKILL);
                    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                }
            }
        }
        // Anything the process started that ignored SIGTERM.
        let _ = killpg(group, Signal::SIGKILL);
        Ok(())
    }

    /// Leave the process running when this handle is dropped.
    pub fn release(mut self) -> u32 {
        self.stopped = true;
        self.child.take();
        self.pid
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (the kernel picks it; another process could take it
/// before we bind, so callers retry a failed start once).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Poll `check` until it returns true, the deadline passes, or a watched process dies.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, procs: &mut [&mut Managed], mut check: F) -> Result<Duration>
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
            let logs: Vec<String> = procs.iter().map(|p| format!("--- {} ---\n{}", p.name, tail(&p.log, 10))).collect();
            bail!("{what}: not ready after {}s\n{}", timeout.as_secs(), logs.join("\n"));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
pub async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
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
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may contain spaces; the fields after it are: state ppid pgrp ...
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            let mut f = rest.split_whitespace();
            let state = f.next()?.chars().next()?;
            let ppid = f.next()?.parse().ok()?;
            let pgrp = f.next()?.parse().ok()?;
            Some(ProcInfo { pid, state, ppid, pgrp })
        })
        .collect()
}
