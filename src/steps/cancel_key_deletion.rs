//! cancel-key-deletion: take the key out of its deletion waiting period.
//! On AWS the key is then disabled; enable it with `enable-key`. On Key Vault this
//! recovers a soft-deleted key, enabled as it was.

use anyhow::Result;

use super::{StepCtx, StepOutput};
use super::{done, key};
use crate::scenario::KeyStep;

pub async fn run(step: &KeyStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let k = key(ctx, &step.key)?.clone();
    ctx.env.keys.cancel_deletion(&k, ctx.log).await?;
    let state = ctx.env.keys.state(&k).await?;
    Ok(done(format!(
        "deletion of {} cancelled; key state is now {state:?}",
        step.key
    )))
}
