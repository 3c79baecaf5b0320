//! wait: a plain pause. Prefer steps that wait on a condition.

use anyhow::{Context, Result};

use super::done;
use super::{StepCtx, StepOutput};
use crate::scenario::WaitStep;

pub async fn run(step: &WaitStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let d = humantime::parse_duration(&step.duration)
        .with_context(|| format!("`{}` is not a duration", step.duration))?;
    ctx.log
        .line(format!("waiting {}", humantime::format_duration(d)));
    tokio::time::sleep(d).await;
    Ok(done(format!("waited {}", humantime::format_duration(d))))
}
