//! The ledger: a record, on disk, of every environment vdrill has running and
//! of every child process it started, so that nothing outlives its owner.
//!
//! Each record (`<beds dir>/<id>.json`) names its owner (the vdrill process,
//! by pid *and* start time, so a reused pid is not mistaken for it), the
//! processes started for it (pid and start time), the folders to remove, and
//! the endpoints a user needs to reach a kept environment. Every child gets
//! `VDRILL_BED=<id>` in its environment, which its own children inherit: a
//! sweep finds even grandchildren that were never recorded (a `go build` under
//! `setup.sh`, a plugin under Velero) by that marker.
//!
//! A record whose owner is gone (a `kill -9`, a crash) is an orphan: the next
//! `vdrill run` or `vdrill testbed ...` sweeps it. A record handed over (`vdrill
//! testbed up`, `--keep`) has no owner and stays until `vdrill testbed down`.
//!
//! Hand-written: no maintained crate records and sweeps process trees by an
//! environment marker (the technique of Jenkins' ProcessTreeKiller).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The environment variable that marks every process started for a record.
pub const MARKER: &str = "VDRILL_BED";

/// The endpoint naming a kind cluster the record's environment created.
pub const KIND_CLUSTER: &str = "kind cluster";
/// The kind binary that made the cluster (default: `kind` on PATH).
pub const KIND_BIN: &str = "kind binary";
/// The Docker engine the cluster and containers live in (default: the user's).
pub const DOCKER_HOST: &str = "docker host";
/// A Docker container of the record (LocalStack beside a kind cluster).
pub const CONTAINER: &str = "docker container";

/// Where records live: `$VDRILL_BEDS_DIR`, else `<cache>/beds`.
pub fn dir() -> PathBuf {
    match std::env::var_os("VDRILL_BEDS_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => super::cache_dir().join("beds"),
    }
}

/// A process by pid and start time (clock ticks after boot, from /proc/<pid>/stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: u32,
    pub start: u64,
}

impl ProcId {
    /// This process.
    pub fn me() -> ProcId {
        let pid = std::process::id();
        ProcId {
            pid,
            start: stat(pid as i32).map(|s| s.start).unwrap_or(0),
        }
    }

    pub fn of(pid: u32) -> Option<ProcId> {
        stat(pid as i32).map(|s| ProcId {
            pid,
            start: s.start,
        })
    }

    /// Still the same process, and not a zombie.
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid as i32), Some(s) if s.start == self.start && !exited(self.pid as i32, &s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Children of a run that belong to no environment (provisioning, CLIs).
    Run,
    /// One cell's environment, torn down at the end of the cell.
    Cell,
    /// `vdrill testbed up`.
    Up,
    /// A failed cell's environment left up by `--keep`.
    Kept,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    #[serde(flatten)]
    pub id: ProcId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub kind: Kind,
    /// The cell id, or what the record is for.
    pub title: String,
    /// The vdrill process responsible; None once handed over to the user.
    pub owner: Option<ProcId>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub processes: Vec<Entry>,
    /// Folders removed with the environment (work data, never artifacts).
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// How to reach it: kubeconfig, API server, S3, logs...
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
}

impl Record {
    pub fn new(kind: Kind, id: &str, title: &str) -> Record {
        Record {
            id: id.to_string(),
            kind,
            title: title.to_string(),
            owner: Some(ProcId::me()),
            created_at: chrono::Utc::now(),
            processes: Vec::new(),
            dirs: Vec::new(),
            endpoints: BTreeMap::new(),
        }
    }

    pub fn path_in(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{}.json", crate::report::slug(id)))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Record::path_in(dir, &self.id);
        crate::report::artifacts::write_atomic(
            &path,
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
        .with_context(|| format!("writing {}", path.display()))
    }

    pub fn remove(&self, dir: &Path) {
        let _ = std::fs::remove_file(Record::path_in(dir, &self.id));
    }

    /// Whether the record's owner still runs (handed-over records have none).
    pub fn owner_alive(&self) -> bool {
        self.owner.is_some_and(|o| o.alive())
    }

    /// Owned by a vdrill that is gone.
    pub fn orphaned(&self) -> bool {
        self.owner.is_some() && !self.owner_alive()
    }

    /// The live processes that belong to this record: recorded ones that are still
    /// the same process, and any process carrying its marker.
    pub fn live_processes(&self) -> Vec<ProcId> {
        let mut out: Vec<ProcId> = self
            .processes
            .iter()
            .map(|e| e.id)
            .filter(ProcId::alive)
            .collect();
        for p in marked(&self.id) {
            if !out.iter().any(|o| o.pid == p.pid) {
                out.push(p);
            }
        }
        out
    }
}

/// Every record in the folder (unreadable ones are skipped with a warning).
pub fn list(dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Record> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            match serde_json::from_slice(&bytes) {
                Ok(r) => Some(r),
                Err(err) => {
                    eprintln!(
                        "vdrill: ignoring unreadable record {}: {err}",
                        e.path().display()
                    );
                    None
                }
            }
        })
        .collect();
    out.sort_by_key(|r| r.created_at);
    out
}

/// What a sweep did to one record.
#[derive(Debug, Clone)]
pub struct Swept {
    pub record: Record,
    pub killed: usize,
    pub removed_dirs: usize,
    pub problems: Vec<String>,
}

impl std::fmt::Display for Swept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match (self.record.kind, self.record.owner) {
            (_, Some(o)) => format!("its vdrill (pid {}) is gone", o.pid),
            (Kind::Up, None) => "started by `vdrill testbed up`".to_string(),
            _ => "kept by `--keep`".to_string(),
        };
        write!(
            f,
            "removed {} `{}` ({why}): {} process(es) stopped, {} folder(s) removed",
            match self.record.kind {
                Kind::Run => "the leftovers of run",
                Kind::Cell => "the environment of",
                Kind::Up => "the test bed",
                Kind::Kept => "the kept environment of",
            },
            self.record.title,
            self.killed,
            self.removed_dirs
        )?;
        for p in &self.problems {
            write!(f, "; {p}")?;
        }
        Ok(())
    }
}

/// Stop every process of a record (SIGTERM to it and its group, SIGKILL after
/// `grace`), remove its folders and the record itself.
pub fn tear_down(dir: &Path, record: &Record, grace: Duration) -> Swept {
    let mut problems = Vec::new();
    let live = record.live_processes();
    for p in &live {
        signal(p, nix::sys::signal::Signal::SIGTERM);
    }
    let until = Instant::now() + grace;
    while Instant::now() < until && record.live_processes().iter().any(ProcId::alive) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in record.live_processes() {
        signal(&p, nix::sys::signal::Signal::SIGKILL);
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && !record.live_processes().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Containers and a kind cluster live in Docker, beyond any process of ours: delete
    // them by name, in the engine they were made in.
    let docker_cmd = |program: &str| {
        let mut cmd = std::process::Command::new(program);
        if let Some(h) = record.endpoints.get(DOCKER_HOST) {
            cmd.env("DOCKER_HOST", h);
        }
        cmd
    };
    if let Some(name) = record.endpoints.get(CONTAINER) {
        match docker_cmd("docker")
            .args(["rm", "--force", "--volumes", name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => problems.push(format!(
                "docker rm --force {name}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => problems.push(format!("docker rm --force {name}: {e}")),
        }
    }
    if let Some(name) = record.endpoints.get(KIND_CLUSTER) {
        let kind = record
            .endpoints
            .get(KIND_BIN)
            .map(String::as_str)
            .unwrap_or("kind");
        match docker_cmd(kind)
            .args(["delete", "cluster", "--name", name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => problems.push(format!(
                "kind delete cluster --name {name}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => problems.push(format!("kind delete cluster --name {name}: {e}")),
        }
    }
    let left = record.live_processes();
    if !left.is_empty() {
        problems.push(format!(
            "{} process(es) would not die: {:?}",
            left.len(),
            left.iter().map(|p| p.pid).collect::<Vec<_>>()
        ));
    }
    let mut removed_dirs = 0;
    for d in &record.dirs {
        if d.exists() {
            match std::fs::remove_dir_all(d) {
                Ok(()) => removed_dirs += 1,
                Err(e) => problems.push(format!("removing {}: {e}", d.display())),
            }
            // The run's folder that held it goes too once nothing else is in it.
            if let Some(parent) = d.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
    if problems.is_empty() {
        record.remove(dir);
    }
    Swept {
        record: record.clone(),
        killed: live.len(),
        removed_dirs,
        problems,
    }
}

/// Sweep the records whose owner is gone; with `handed_over`, also those handed
/// over to the user (`vdrill testbed down`). Records of live runs are never touched.
pub fn sweep(dir: &Path, handed_over: bool, only: Option<&str>) -> Vec<Swept> {
    list(dir)
        .into_iter()
        .filter(|r| only.is_none_or(|id| r.id == id || crate::report::slug(&r.id) == id))
        .filter(|r| r.orphaned() || (handed_over && r.owner.is_none()))
        .map(|r| tear_down(dir, &r, Duration::from_secs(10)))
        .collect()
}

/// SIGTERM/SIGKILL a process after checking it is still the one recorded, and its
/// process group when it leads one.
fn signal(p: &ProcId, sig: nix::sys::signal::Signal) {
    use nix::unistd::Pid;
    let Some(s) = stat(p.pid as i32) else { return };
    if s.start != p.start {
        return;
    }
    if s.pgrp == p.pid as i32 {
        let _ = nix::sys::signal::killpg(Pid::from_raw(s.pgrp), sig);
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(p.pid as i32), sig);
}

/// The fields of /proc/<pid>/stat that matter here.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// Start time in clock ticks after boot.
    pub start: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parse a /proc/<pid>/stat line; the command name may contain spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) session(6) tty(7) tpgid(8) flags(9)
    // minflt(10) cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15) cutime(16)
    // cstime(17) priority(18) nice(19) threads(20) itrealvalue(21) starttime(22).
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// Whether a process has finished exiting. A multi-threaded process (Go, Java) whose
/// main thread is a zombie may still have threads tearing down, holding its sockets
/// open: it has exited only once it is a zombie with a single thread left.
fn exited(pid: i32, s: &Stat) -> bool {
    s.state == 'Z'
        && std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count() <= 1)
            .unwrap_or(true)
}

/// Live processes whose environment carries `VDRILL_BED=<id>`.
pub fn marked(id: &str) -> Vec<ProcId> {
    let needle = format!("{MARKER}={id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let found = environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes());
            let s = stat(pid as i32)?;
            (found && !exited(pid as i32, &s)).then_some(ProcId {
                pid,
                start: s.start,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 100";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.state, s.ppid, s.pgrp, s.start), ('S', 1, 4242, 987654));
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_start_time_is_not() {
        let me = ProcId::me();
        assert!(me.start > 0);
        assert!(me.alive());
        assert!(
            !ProcId {
                pid: me.pid,
                start: me.start + 1
            }
            .alive(),
            "a reused pid is not the recorded process"
        );
    }

    #[test]
    fn a_record_of_a_dead_owner_is_an_orphan_and_a_handed_over_one_is_not() {
        let mut r = Record::new(Kind::Cell, "t", "t");
        assert!(!r.orphaned());
        r.owner = Some(ProcId {
            pid: std::process::id(),
            start: 1,
        });
        assert!(r.orphaned());
        r.owner = None;
        assert!(!r.orphaned());
    }

    #[test]
    fn sweeping_kills_marked_processes_and_their_children_and_removes_folders() {
        let beds = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let id = format!("sweep-test-{}", std::process::id());
        // A child that starts a grandchild, both marked, in a group of their own.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300"])
            .env(MARKER, &id)
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while marked(&id).len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            marked(&id).len(),
            3,
            "sh and its two sleeps carry the marker"
        );
        let folder = work.path().join("data");
        std::fs::create_dir_all(&folder).unwrap();
        let mut r = Record::new(Kind::Cell, &id, "sweep test");
        r.owner = Some(ProcId {
            pid: std::process::id(),
            start: 1,
        }); // a dead owner
        r.dirs.push(folder.clone());
        r.save(beds.path()).unwrap();
        // A live run's record is left alone.
        let live = Record::new(Kind::Cell, "live", "live run");
        live.save(beds.path()).unwrap();

        let swept = sweep(beds.path(), false, None);
        let _ = child.wait();
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert!(swept[0].problems.is_empty(), "{}", swept[0]);
        assert!(marked(&id).is_empty(), "every marked process is gone");
        assert!(!folder.exists());
        let left: Vec<String> = list(beds.path()).into_iter().map(|r| r.id).collect();
        assert_eq!(left, ["live"]);
    }
}
