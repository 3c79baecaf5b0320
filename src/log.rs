//! Step logs, secrets and redaction: a leaf module every other one may use.
//!
//! Everything a step logs goes through a [`StepLog`], and everything written out
//! (step logs, process logs, JUnit, run.json, the console) through the run's
//! [`Redactor`]. A [`Secret`] can only be made by a redactor, which registers it
//! as it makes it, and it has no `Display` or `Serialize`: its value cannot reach
//! text except through [`Secret::expose`], and any text that leaves vdrill is
//! redacted of every secret made so far.

use std::sync::{Arc, Mutex, RwLock};

use secrecy::{ExposeSecret, SecretSlice};

/// Secrets known to the run, replaced by `[redacted]` wherever text leaves vdrill.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

pub const REDACTED: &str = "[redacted]";

/// A secret value (a password, a key, a credential). Cloning shares it.
#[derive(Clone)]
pub struct Secret(Arc<SecretSlice<u8>>);

impl Secret {
    /// The value, for the one place that needs it (a request, a file Velero reads).
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The value as text (secrets made from text are valid UTF-8).
    pub fn expose_str(&self) -> &str {
        std::str::from_utf8(self.expose()).unwrap_or_default()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl Redactor {
    pub fn new() -> Arc<Redactor> {
        Arc::new(Redactor::default())
    }

    /// Make a secret: its value and the forms it travels in (base64 in headers and
    /// manifests, hex in dumps) are redacted from every text from now on.
    pub fn secret(&self, value: impl Into<Vec<u8>>) -> Secret {
        let value: Vec<u8> = value.into();
        self.add(&value);
        Secret(Arc::new(SecretSlice::from(value)))
    }

    /// Register the forms of a secret. Values shorter than 8 bytes are not secrets
    /// worth the name (LocalStack's `test`) and would blank out ordinary words.
    fn add(&self, secret: &[u8]) {
        use base64::Engine as _;
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        if secret.len() < 8 {
            return;
        }
        let mut forms = Vec::new();
        if let Ok(s) = std::str::from_utf8(secret) {
            forms.push(s.to_string());
        }
        for engine in [STANDARD, URL_SAFE] {
            forms.push(engine.encode(secret));
        }
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            forms.push(engine.encode(secret));
        }
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        forms.push(hex.to_uppercase());
        forms.push(hex);
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

    /// Redact bytes that may not be UTF-8 (process logs); invalid sequences become U+FFFD.
    pub fn redact_bytes(&self, bytes: &[u8]) -> String {
        self.redact(&String::from_utf8_lossy(bytes))
    }
}

/// The full error chain on one line, causes separated by `: `.
pub fn error_text(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Where live log lines go as well (verbose mode).
pub type Echo = Arc<dyn Fn(&str) + Send + Sync>;

/// The captured log of one step (or setup/teardown phase).
#[derive(Clone)]
pub struct StepLog {
    lines: Arc<Mutex<Vec<String>>>,
    redactor: Arc<Redactor>,
    /// Where live lines go as well (verbose mode); None to keep quiet.
    echo: Option<Echo>,
}

impl std::fmt::Debug for StepLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepLog").finish_non_exhaustive()
    }
}

impl StepLog {
    pub fn new(redactor: Arc<Redactor>) -> StepLog {
        StepLog {
            lines: Arc::default(),
            redactor,
            echo: None,
        }
    }

    pub fn with_echo(mut self, echo: Echo) -> StepLog {
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
            self.lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line);
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
    fn redacts_raw_base64_and_hex_forms() {
        let r = Redactor::new();
        let secret = r.secret("s3cr3t-password");
        let log = StepLog::new(r.clone());
        log.line("password is s3cr3t-password, encoded czNjcjN0LXBhc3N3b3Jk, dumped 7333637233742d70617373776f7264");
        log.line("7333637233742D70617373776F7264 (upper)");
        let text = log.text();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains("czNjcjN0LXBhc3N3b3Jk"), "{text}");
        assert!(
            !text
                .to_lowercase()
                .contains("7333637233742d70617373776f7264"),
            "{text}"
        );
        assert_eq!(text.matches(REDACTED).count(), 4);
        assert_eq!(secret.expose(), b"s3cr3t-password");
    }

    #[test]
    fn a_secret_never_prints_itself() {
        let r = Redactor::new();
        let secret = r.secret(vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03]);
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
        // Binary secrets are found in their encoded forms.
        assert_eq!(
            r.redact("k=3q2+7wABAgM= and deadbeef00010203"),
            "k=[redacted] and [redacted]"
        );
    }

    #[test]
    fn short_values_are_not_treated_as_secrets() {
        let r = Redactor::new();
        let _ = r.secret("test");
        assert_eq!(r.redact("test credentials"), "test credentials");
    }
}
