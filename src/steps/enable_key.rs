//! enable-key: make a disabled key usable again.

use anyhow::Result;

use super::{StepCtx, StepOutput};
use super::{done, key};
use crate::scenario::KeyStep;

pub async fn run(step: &KeyStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let k = key(ctx, &step.key)?.clone();
    ctx.env.keys.enable(&k, ctx.log).await?;
    Ok(done(format!("enabled {} ({})", step.key, k.arn)))
}
