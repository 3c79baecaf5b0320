//! deploy: apply a workload's fixture and record a normalized snapshot.

use anyhow::{Context, Result};

use super::done;
use crate::runner::{StepCtx, StepOutput};
use crate::scenario::DeployStep;

pub async fn run(step: &DeployStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let workload = ctx
        .cell
        .scenario
        .workloads
        .iter()
        .find(|w| w.id() == step.workload)
        .with_context(|| format!("no workload `{}`", step.workload))?;
    let path = ctx.cell.dir.join(&workload.fixture);
    let manifests = crate::fixture::load_all(&path)?;
    ctx.log.line(format!("applying {} manifests from {} into namespace {}", manifests.len(), path.display(), workload.namespace));
    let created = ctx.env.cluster.apply(&workload.namespace, &manifests, ctx.log).await?;
    for obj in &created {
        ctx.log.line(format!("  {}", crate::env::ObjectRef::of(obj)));
    }
    let count = created.len();
    ctx.state.snapshots.insert(workload.id().to_string(), created);
    Ok(done(format!("applied {count} objects to namespace {}", workload.namespace)))
}
