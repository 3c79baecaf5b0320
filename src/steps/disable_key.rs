//! disable-key: make the key unusable; encrypting or decrypting with it must fail.

use anyhow::Result;

use super::{StepCtx, StepOutput};
use super::{done, key};
use crate::scenario::KeyStep;

pub async fn run(step: &KeyStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let k = key(ctx, &step.key)?.clone();
    ctx.env.keys.disable(&k, ctx.log).await?;
    Ok(done(format!("disabled {} ({})", step.key, k.arn)))
}
