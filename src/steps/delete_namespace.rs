//! delete-namespace: the disaster. Returns once the namespace is really gone.

use anyhow::Result;

use super::done;
use crate::runner::{StepCtx, StepOutput};
use crate::scenario::DeleteNamespaceStep;

pub async fn run(step: &DeleteNamespaceStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    ctx.log.line(format!("deleting namespace {}", step.namespace));
    ctx.env.cluster.delete_namespace(&step.namespace, ctx.log).await?;
    Ok(done(format!("namespace {} is gone", step.namespace)))
}
