//! One file per step kind. Each step talks to the environment only through
//! the provider traits in [`crate::env`].

pub mod assert_encryption;
pub mod assert_restored;
pub mod backup;
pub mod cancel_key_deletion;
pub mod delete_namespace;
pub mod deploy;
pub mod disable_key;
pub mod enable_key;
pub mod restore;
pub mod rotate_key;
pub mod schedule_key_deletion;
pub mod setup;
pub mod state;
pub mod upgrade_velero;
pub mod wait;

use anyhow::{Context, Result};

use crate::env::{Environment, KeyInfo};
use crate::log::StepLog;
use crate::scenario::{Cell, Step};
pub use state::DrillState;

/// Everything a step needs.
pub struct StepCtx<'a> {
    pub env: &'a Environment,
    pub state: &'a mut DrillState,
    pub cell: &'a Cell,
    pub log: &'a StepLog,
}

/// What a step produced when it ran to its end.
#[derive(Debug, Default)]
pub struct StepOutput {
    pub summary: String,
    pub assertions: Vec<crate::report::AssertionReport>,
    /// For backup and restore: how the Velero operation ended.
    pub outcome: Option<crate::env::Outcome>,
}

pub async fn run(step: &Step, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    match step {
        Step::Deploy(s) => deploy::run(s, ctx).await,
        Step::Backup(s) => backup::run(s, ctx).await,
        Step::Restore(s) => restore::run(s, ctx).await,
        Step::DeleteNamespace(s) => delete_namespace::run(s, ctx).await,
        Step::RotateKey(s) => rotate_key::run(s, ctx).await,
        Step::DisableKey(s) => disable_key::run(s, ctx).await,
        Step::EnableKey(s) => enable_key::run(s, ctx).await,
        Step::ScheduleKeyDeletion(s) => schedule_key_deletion::run(s, ctx).await,
        Step::CancelKeyDeletion(s) => cancel_key_deletion::run(s, ctx).await,
        Step::UpgradeVelero(s) => upgrade_velero::run(s, ctx).await,
        Step::Wait(s) => wait::run(s, ctx).await,
        Step::AssertEncryption(s) => assert_encryption::run(s, ctx).await,
        Step::AssertRestored(s) => assert_restored::run(s, ctx).await,
    }
}

/// The key a step names, as it is now.
pub fn key<'a>(ctx: &'a StepCtx<'_>, name: &str) -> Result<&'a KeyInfo> {
    ctx.state
        .keys
        .get(name)
        .with_context(|| format!("key `{name}` was not created during setup"))
}

pub fn done(summary: impl Into<String>) -> StepOutput {
    StepOutput {
        summary: summary.into(),
        ..Default::default()
    }
}
