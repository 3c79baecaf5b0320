//! rotate-key: on-demand rotation (new material, same key) or a new key behind the alias.

use anyhow::Result;

use super::{StepCtx, StepOutput};
use super::{done, key};
use crate::scenario::{RotateKeyStep, RotateMode};

pub async fn run(step: &RotateKeyStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let current = key(ctx, &step.key)?.clone();
    let rotated = ctx.env.keys.rotate(&current, step.mode, ctx.log).await?;
    let summary = match step.mode {
        RotateMode::OnDemand => match (&current.version, &rotated.version) {
            (Some(before), Some(after)) => format!(
                "rotated {} on demand: version {before} -> {after} ({})",
                step.key, rotated.arn
            ),
            _ => format!("rotated {} on demand ({})", step.key, rotated.arn),
        },
        RotateMode::NewKey => format!(
            "{} now points at a new key {} (was {})",
            rotated.alias.clone().unwrap_or_default(),
            rotated.arn,
            current.arn
        ),
    };
    ctx.log.line(&summary);
    if step.mode == RotateMode::NewKey {
        ctx.state.created.keys.push(rotated.clone());
    }
    ctx.state
        .key_history
        .entry(step.key.clone())
        .or_default()
        .push(rotated.clone());
    ctx.state.keys.insert(step.key.clone(), rotated);
    Ok(done(summary))
}
