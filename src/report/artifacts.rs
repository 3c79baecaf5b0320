//! The artifacts folder: run.json, junit.xml, per-step logs and per-cell
//! environment logs.
//!
//! ```text
//! <artifacts>/run.json
//! <artifacts>/junit.xml
//! <artifacts>/<cell>/steps/<stage>-<NN>-<kind>.log
//! <artifacts>/<cell>/env/<process>.log
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{CellReport, RunReport, StepReport, junit, slug};
use crate::env::CellDirs;
use crate::log::Redactor;

pub struct Artifacts {
    root: PathBuf,
    work_root: PathBuf,
    junit: Option<PathBuf>,
    redactor: Arc<Redactor>,
    /// Serializes report writes from concurrent cells.
    lock: Mutex<()>,
    errors: Mutex<Vec<String>>,
}

impl Artifacts {
    /// `root` is created if needed; `junit` is an extra copy of junit.xml (`--junit`).
    pub fn create(
        root: &Path,
        junit: Option<PathBuf>,
        run_id: &str,
        redactor: Arc<Redactor>,
    ) -> std::io::Result<Arc<Artifacts>> {
        std::fs::create_dir_all(root)?;
        let work_root = std::env::temp_dir().join("vdrill").join(run_id);
        Ok(Arc::new(Artifacts {
            root: root.to_path_buf(),
            work_root,
            junit,
            redactor,
            lock: Mutex::new(()),
            errors: Mutex::default(),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn junit_path(&self) -> PathBuf {
        self.junit
            .clone()
            .unwrap_or_else(|| self.root.join("junit.xml"))
    }

    /// Problems writing artifacts (reported at the end, never fatal to the drill).
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note_error(&self, what: String) {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    /// Remove the run's work folder once its cells have removed theirs (a kept
    /// environment's stays).
    pub fn remove_empty_work_root(&self) {
        let _ = std::fs::remove_dir(&self.work_root);
    }

    pub fn cell_dirs(&self, cell_id: &str) -> CellDirs {
        let s = slug(cell_id);
        CellDirs {
            artifacts: self.root.join(&s),
            work: self.work_root.join(&s),
        }
    }

    /// Write a step's log; returns its path relative to the root.
    pub fn write_step_log(&self, cell: &CellReport, step: &StepReport) -> Option<String> {
        if step.log.is_empty() {
            return None;
        }
        let stage = serde_json::to_value(step.stage).ok()?.as_str()?.to_string();
        let rel = format!(
            "{}/steps/{stage}-{:02}-{}.log",
            cell.artifacts,
            step.index,
            slug(&step.kind)
        );
        let path = self.root.join(&rel);
        let text = self
            .redactor
            .redact(&format!("# {}\n{}", step.title, step.log));
        match write_atomic(&path, text.as_bytes()) {
            Ok(()) => Some(rel),
            Err(e) => {
                self.note_error(format!("{}: {e}", path.display()));
                None
            }
        }
    }

    /// Write run.json and junit.xml (and the `--junit` copy).
    pub fn write_report(&self, report: &RunReport) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let json = serde_json::to_string_pretty(report)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        let json = self.redactor.redact(&json);
        if let Err(e) = write_atomic(&self.root.join("run.json"), json.as_bytes()) {
            self.note_error(format!("run.json: {e}"));
        }
        let xml = self.redactor.redact(&junit::render(report));
        let mut targets = vec![self.root.join("junit.xml")];
        if let Some(extra) = &self.junit {
            targets.push(extra.clone());
        }
        for t in targets {
            if let Err(e) = write_atomic(&t, xml.as_bytes()) {
                self.note_error(format!("{}: {e}", t.display()));
            }
        }
    }
}

/// Write via a temporary file and rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data().ok();
    }
    std::fs::rename(&tmp, path)
}

/// The default artifacts folder: `target/vdrill/<run-id>` inside a cargo
/// checkout, else `<tmp>/vdrill-artifacts/<run-id>`.
pub fn default_root(run_id: &str) -> PathBuf {
    if Path::new("Cargo.toml").exists() || Path::new("target").is_dir() {
        PathBuf::from("target").join("vdrill").join(run_id)
    } else {
        std::env::temp_dir().join("vdrill-artifacts").join(run_id)
    }
}
