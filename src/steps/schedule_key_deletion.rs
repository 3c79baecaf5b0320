//! schedule-key-deletion: put the key in its deletion waiting period.

use anyhow::Result;

use super::{StepCtx, StepOutput};
use super::{done, key};
use crate::scenario::ScheduleKeyDeletionStep;

/// AWS's shortest waiting period, and vdrill's default.
pub const DEFAULT_DAYS: u32 = 7;

pub async fn run(step: &ScheduleKeyDeletionStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let k = key(ctx, &step.key)?.clone();
    let days = step.days.unwrap_or(DEFAULT_DAYS);
    ctx.env.keys.schedule_deletion(&k, days, ctx.log).await?;
    if k.provider == crate::scenario::KeyProvider::AzureKeyvault {
        // Key Vault: a soft delete; the vault's retention period applies.
        let state = ctx.env.keys.state(&k).await?;
        return Ok(done(format!(
            "{} deleted (soft delete, recoverable); key state is now {state:?}",
            step.key
        )));
    }
    Ok(done(format!(
        "{} scheduled for deletion in {days} days",
        step.key
    )))
}
