//! restore: restore a backup taken earlier and follow it to a terminal phase.

use anyhow::Result;

use super::{StepCtx, StepOutput};
use crate::env::RestoreRequest;
use crate::scenario::RestoreStep;

pub async fn run(step: &RestoreStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    ctx.state.restores += 1;
    let name = step
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-restore-{}", step.backup, ctx.state.restores));
    ctx.log
        .line(format!("restore {name} from backup {}", step.backup));
    let req = RestoreRequest {
        name: name.clone(),
        backup: step.backup.clone(),
    };
    let outcome = ctx.env.velero.restore(&req, ctx.log).await?;
    ctx.log.line(format!(
        "restore {name} ended in phase {} ({} errors, {} warnings)",
        outcome.phase, outcome.errors, outcome.warnings
    ));
    if let Some(r) = &outcome.failure_reason {
        ctx.log.line(format!("failure reason: {r}"));
    }
    Ok(StepOutput {
        summary: format!("{name}: phase {}", outcome.phase),
        outcome: Some(outcome),
        ..Default::default()
    })
}
