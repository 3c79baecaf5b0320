//! Ctrl-C and SIGTERM: the first asks the run to stop (the current step is
//! abandoned, `finally` and teardown run, reports are written); the second
//! exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit code of a run stopped by a signal.
pub use crate::exit::INTERRUPTED as INTERRUPTED_EXIT;

/// Install the handlers; the token is cancelled on the first signal.
pub fn install(notify: Arc<dyn Fn(&str) + Send + Sync>) -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let count = Arc::new(AtomicUsize::new(0));
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let t = token.clone();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                notify(&format!(
                    "{name} received: stopping after cleanup (send it again to exit at once)"
                ));
                t.cancel();
            } else {
                notify(&format!("{name} received again: exiting now"));
                std::process::exit(INTERRUPTED_EXIT);
            }
        }
    });
    Ok(token)
}
