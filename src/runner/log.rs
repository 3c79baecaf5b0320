//! Step logs and secret redaction. Everything a step logs goes through a
//! [`StepLog`], and everything written out (logs, JUnit, run.json) through the
//! run's [`Redactor`], so no registered secret reaches an artifact.

use std::sync::{Arc, Mutex, RwLock};

/// Secrets known to the run, replaced by `[redacted]` wherever text leaves vdrill.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

pub const REDACTED: &str = "[redacted]";

impl Redactor {
    pub fn new() -> Arc<Redactor> {
        Arc::new(Redactor::default())
    }

    /// Register a secret (and its base64 form, which is how keys travel in headers and
    /// manifests). Values shorter than 8 bytes are not secrets worth the name (LocalStack's
    /// `test`) and would blank out ordinary words.
    pub fn add(&self, secret: &[u8]) {
        use base64::Engine as _;
        let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut forms = Vec::new();
        if let Ok(s) = std::str::from_utf8(secret)
            && s.len() >= 8
        {
            forms.push(s.to_string());
        }
        if secret.len() >= 8 {
            forms.push(encode(secret));
        }
        let mut all = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        for f in forms {
            if !all.contains(&f) {
                all.push(f);
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    pub fn redact(&self, text: &str) -> String {
        let all = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for s in all.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

/// The captured log of one step (or setup/teardown phase).
#[derive(Clone)]
pub struct StepLog {
    lines: Arc<Mutex<Vec<String>>>,
    redactor: Arc<Redactor>,
    /// Where live lines go as well (verbose mode); None to keep quiet.
    echo: Option<Arc<dyn Fn(&str) + Send + Sync>>,
}

impl std::fmt::Debug for StepLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepLog").finish_non_exhaustive()
    }
}

impl StepLog {
    pub fn new(redactor: Arc<Redactor>) -> StepLog {
        StepLog { lines: Arc::default(), redactor, echo: None }
    }

    pub fn with_echo(mut self, echo: Arc<dyn Fn(&str) + Send + Sync>) -> StepLog {
        self.echo = Some(echo);
        self
    }

    /// A detached log for work outside any step (tests, tools).
    pub fn discard() -> StepLog {
        StepLog::new(Redactor::new())
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    pub fn line(&self, msg: impl AsRef<str>) {
        let stamp = chrono::Utc::now().format("%H:%M:%S%.3f");
        let text = self.redactor.redact(msg.as_ref());
        for l in text.lines() {
            let line = format!("{stamp} {l}");
            if let Some(echo) = &self.echo {
                echo(&line);
            }
            self.lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }

    pub fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = lines.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_raw_and_base64_forms() {
        let r = Redactor::new();
        r.add(b"s3cr3t-password");
        let log = StepLog::new(r.clone());
        log.line("password is s3cr3t-password, encoded czNjcjN0LXBhc3N3b3Jk");
        let text = log.text();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains("czNjcjN0LXBhc3N3b3Jk"), "{text}");
        assert_eq!(text.matches(REDACTED).count(), 2);
    }
}
