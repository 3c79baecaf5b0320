//! Errors about a scenario file: where (file, line, column, field) and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::Pos;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    /// Field path such as `steps[3].backup.timeout`.
    pub path: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: &Path,
        pos: Option<Pos>,
        path: impl Into<Option<String>>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            pos,
            path: path.into().filter(|p| !p.is_empty()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(pos) = self.pos {
            write!(f, ":{}:{}", pos.line, pos.column)?;
        }
        write!(f, ": error: ")?;
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Sorted by position, without duplicates (matrix cells repeat the same mistakes).
pub fn tidy(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by(|a, b| {
        (a.file.as_path(), a.pos, &a.path, &a.message).cmp(&(
            b.file.as_path(),
            b.pos,
            &b.path,
            &b.message,
        ))
    });
    diags.dedup();
    diags
}
