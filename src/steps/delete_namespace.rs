//! delete-namespace: the disaster. Returns once the namespace is really gone.

use anyhow::Result;

use super::done;
use super::{StepCtx, StepOutput};
use crate::scenario::DeleteNamespaceStep;

pub async fn run(step: &DeleteNamespaceStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    if !ctx.state.created.namespaces.contains(&step.namespace) {
        anyhow::bail!(
            "namespace {} was not created by this drill (deploy its workload first); vdrill deletes only namespaces it created",
            step.namespace
        );
    }
    ctx.log
        .line(format!("deleting namespace {}", step.namespace));
    ctx.env
        .cluster
        .delete_namespace(&step.namespace, ctx.log)
        .await?;
    Ok(done(format!("namespace {} is gone", step.namespace)))
}
