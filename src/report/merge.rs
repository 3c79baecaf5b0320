//! Reading run folders back, and `vdrill report merge`: the run.json and junit.xml
//! of several runs (a CI matrix's shards) made into one run folder.
//!
//! A cell is known by its stable name (its id, `aws-kms-basic[velero=1.18]`, which
//! is also its JUnit suite's name). The same result seen twice (one folder given
//! twice, or a shard's results downloaded twice) is kept once; the same cell with
//! two different results (two runs of it) is a conflict and an error, since
//! either would be a guess.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use quick_junit::{Report, TestSuite};

use super::{CellReport, RunReport};

/// A run folder as `vdrill run` leaves it.
#[derive(Debug, Clone)]
pub struct RunFolder {
    pub dir: PathBuf,
    pub run: RunReport,
}

/// A run folder with its JUnit report.
#[derive(Debug, Clone)]
pub struct JunitFolder {
    pub folder: RunFolder,
    pub junit: Report,
}

/// Bad input: the message names the file and, where there is one, the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

fn err(path: &Path, what: impl std::fmt::Display) -> InputError {
    InputError(format!("{}: {what}", path.display()))
}

/// Whether a path taken from a report stays inside its folder (relative, no `..`).
pub fn inside(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Read `DIR/run.json`.
pub fn load_run(dir: &Path) -> Result<RunFolder, InputError> {
    let path = dir.join("run.json");
    if !dir.is_dir() {
        return Err(err(
            dir,
            "not a folder (expected a run folder with run.json and junit.xml)",
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            err(
                &path,
                "missing: not a run folder of `vdrill run` (see --artifacts)",
            )
        } else {
            err(&path, format!("cannot read: {e}"))
        }
    })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let run: RunReport = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if field == "." {
            err(
                &path,
                format!("line {} column {}: {inner}", inner.line(), inner.column()),
            )
        } else {
            err(
                &path,
                format!(
                    "{field}: line {} column {}: {inner}",
                    inner.line(),
                    inner.column()
                ),
            )
        }
    })?;
    for (i, cell) in run.cells.iter().enumerate() {
        if !inside(&cell.artifacts) {
            return Err(err(
                &path,
                format!(
                    "cells[{i}].artifacts: `{}` is not a folder inside the run folder",
                    cell.artifacts
                ),
            ));
        }
        for (j, step) in cell.steps.iter().enumerate() {
            if let Some(f) = &step.log_file
                && !inside(f)
            {
                return Err(err(
                    &path,
                    format!(
                        "cells[{i}].steps[{j}].log_file: `{f}` is not a file inside the run folder"
                    ),
                ));
            }
        }
        if let Some(first) = run.cells[..i].iter().position(|c| c.id == cell.id) {
            return Err(err(
                &path,
                format!("cells[{i}].id: cell `{}` is also cells[{first}]", cell.id),
            ));
        }
    }
    Ok(RunFolder {
        dir: dir.to_path_buf(),
        run,
    })
}

/// Read `DIR/run.json` and `DIR/junit.xml`, which must describe the same cells.
pub fn load_with_junit(dir: &Path) -> Result<JunitFolder, InputError> {
    let folder = load_run(dir)?;
    let path = dir.join("junit.xml");
    let text =
        std::fs::read_to_string(&path).map_err(|e| err(&path, format!("cannot read: {e}")))?;
    let junit = Report::deserialize_from_str(&text).map_err(|e| err(&path, e))?;
    for (i, suite) in junit.test_suites.iter().enumerate() {
        if !folder.run.cells.iter().any(|c| c.id == suite.name.as_str()) {
            return Err(err(
                &path,
                format!(
                    "testsuite[{i}] `{}` is not a cell of {}",
                    suite.name.as_str(),
                    dir.join("run.json").display()
                ),
            ));
        }
    }
    for c in &folder.run.cells {
        let n = junit
            .test_suites
            .iter()
            .filter(|s| s.name.as_str() == c.id)
            .count();
        if n != 1 {
            return Err(err(
                &path,
                format!(
                    "{n} testsuites named `{}` (run.json has that cell once)",
                    c.id
                ),
            ));
        }
    }
    Ok(JunitFolder { folder, junit })
}

/// Whether two reports of a cell are the same result (not two runs of the cell).
fn same_result(a: &CellReport, ra: &RunReport, b: &CellReport, rb: &RunReport) -> bool {
    ra.run_id == rb.run_id
        && a.started_at == b.started_at
        && a.status == b.status
        && a.steps.len() == b.steps.len()
}

/// One run made of several.
pub struct Merged {
    pub run: RunReport,
    pub junit: Report,
    /// Each cell's artifacts folder and where it comes from.
    pub sources: Vec<(String, PathBuf)>,
}

/// Merge run folders: cells by stable name, in the order `vdrill run` reports them
/// (the plan's order, sorted by id), so that shards merge into what one run of
/// all of them reports.
pub fn merge(inputs: &[JunitFolder]) -> Result<Merged, InputError> {
    let Some(first) = inputs.first() else {
        return Err(InputError("nothing to merge: no run folders given".into()));
    };
    // id -> (input index, cell, suite)
    let mut cells: BTreeMap<String, (usize, CellReport, TestSuite)> = BTreeMap::new();
    for (n, input) in inputs.iter().enumerate() {
        let run = &input.folder.run;
        for cell in &run.cells {
            let suite = input
                .junit
                .test_suites
                .iter()
                .find(|s| s.name.as_str() == cell.id)
                .cloned()
                .expect("load_with_junit checked every cell has its suite");
            if let Some((m, seen, _)) = cells.get(&cell.id) {
                let other = &inputs[*m];
                if same_result(seen, &other.folder.run, cell, run) {
                    continue;
                }
                return Err(InputError(format!(
                    "cell `{}` has two results: {} (run {}, {}, started {}) and {} (run {}, {}, started {}); merge only one of them",
                    cell.id,
                    other.folder.dir.display(),
                    other.folder.run.run_id,
                    seen.status.as_str(),
                    seen.started_at.to_rfc3339(),
                    input.folder.dir.display(),
                    run.run_id,
                    cell.status.as_str(),
                    cell.started_at.to_rfc3339(),
                )));
            }
            cells.insert(cell.id.clone(), (n, cell.clone(), suite));
        }
    }
    let mut run_ids: Vec<String> = Vec::new();
    for i in inputs {
        if !run_ids.contains(&i.folder.run.run_id) {
            run_ids.push(i.folder.run.run_id.clone());
        }
    }
    let started_at = inputs
        .iter()
        .map(|i| i.folder.run.started_at)
        .min()
        .unwrap_or(first.folder.run.started_at);
    let ended_at = inputs
        .iter()
        .map(|i| {
            i.folder.run.started_at
                + chrono::Duration::from_std(i.folder.run.duration).unwrap_or_default()
        })
        .max()
        .unwrap_or(started_at);
    let duration = (ended_at - started_at).to_std().unwrap_or_default();
    let mut junit = Report::new("vdrill");
    junit.set_timestamp(started_at);
    junit.set_time(duration);
    let mut run = RunReport {
        run_id: run_ids.join("+"),
        vdrill_version: first.folder.run.vdrill_version.clone(),
        started_at,
        duration,
        interrupted: inputs.iter().any(|i| i.folder.run.interrupted),
        merged_from: run_ids,
        cells: Vec::new(),
    };
    let mut sources = Vec::new();
    for (_, (n, cell, suite)) in cells {
        sources.push((cell.artifacts.clone(), inputs[n].folder.dir.clone()));
        run.cells.push(cell);
        junit.add_test_suite(suite);
    }
    Ok(Merged {
        run,
        junit,
        sources,
    })
}

/// Write a merged run into `out`: run.json, junit.xml and each cell's artifacts
/// folder copied from the run it comes from.
pub fn write(merged: &Merged, out: &Path) -> Result<(), InputError> {
    std::fs::create_dir_all(out).map_err(|e| err(out, format!("cannot create: {e}")))?;
    let json = serde_json::to_string_pretty(&merged.run)
        .map_err(|e| err(&out.join("run.json"), format!("cannot render: {e}")))?;
    super::artifacts::write_atomic(&out.join("run.json"), json.as_bytes())
        .map_err(|e| err(&out.join("run.json"), format!("cannot write: {e}")))?;
    let xml = merged
        .junit
        .to_string()
        .map_err(|e| err(&out.join("junit.xml"), format!("cannot render: {e}")))?;
    super::artifacts::write_atomic(&out.join("junit.xml"), xml.as_bytes())
        .map_err(|e| err(&out.join("junit.xml"), format!("cannot write: {e}")))?;
    for (rel, from) in &merged.sources {
        let src = from.join(rel);
        let dst = out.join(rel);
        if src.is_dir() && !same_dir(&src, &dst) {
            copy_dir(&src, &dst)
                .map_err(|e| err(&src, format!("cannot copy to {}: {e}", dst.display())))?;
        }
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copy a folder tree (files and folders; links are skipped). Hand-written: a dozen
/// lines of std, where a crate (fs_extra) would add a dependency for one call.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let target = to.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
