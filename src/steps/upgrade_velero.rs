//! upgrade-velero: replace the running Velero with another version, keeping its locations.

use anyhow::Result;

use super::done;
use super::{StepCtx, StepOutput};
use crate::scenario::UpgradeVeleroStep;

pub async fn run(step: &UpgradeVeleroStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let before = ctx.env.velero.version();
    ctx.env.velero.upgrade(&step.version, ctx.log).await?;
    Ok(done(format!(
        "Velero {before} -> {}",
        ctx.env.velero.version()
    )))
}
