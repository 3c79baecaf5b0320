//! deploy: apply a workload's fixture and record a normalized snapshot.

use anyhow::{Context, Result, bail};

use super::done;
use super::{StepCtx, StepOutput};
use crate::scenario::DeployStep;

/// How long pods may take to be Ready; the step's own timeout (default 2 min) ends it first.
pub const POD_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

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
    let ns = &workload.namespace;
    // A drill deletes its workload namespaces: it only deploys into ones it creates.
    let ours = ctx.state.created.namespaces.contains(ns);
    if !ours && ctx.env.cluster.namespace_exists(ns).await? {
        bail!(
            "namespace {ns} already exists; a drill deploys into namespaces it creates (it deletes them in the drill and at the end), so it will not use this one"
        );
    }
    // The workload's Secret values are secrets of the run.
    for m in manifests
        .iter()
        .filter(|m| m.kind() == "Secret" && m.api_version() == "v1")
    {
        register_secret_values(&m.object, ctx.log.redactor());
    }
    ctx.log.line(format!(
        "applying {} manifests from {} into namespace {ns}",
        manifests.len(),
        path.display()
    ));
    if !ours {
        ctx.state.created.namespaces.push(ns.clone());
    }
    let created = ctx.env.cluster.apply(ns, &manifests, ctx.log).await?;
    for obj in &created {
        ctx.log
            .line(format!("  {}", crate::env::ObjectRef::of(obj)));
    }
    let count = created.len();
    ctx.state
        .snapshots
        .insert(workload.id().to_string(), created);
    // Where pods run: wait for them, and keep the checksums they print of their data.
    let sums = ctx
        .env
        .cluster
        .volume_checksums(ns, POD_WAIT, ctx.log)
        .await?;
    if !sums.is_empty() {
        ctx.state
            .volume_checksums
            .insert(workload.id().to_string(), sums);
    }
    for c in ctx.env.cluster.pod_log_values(ns, "vdrill-canary").await? {
        ctx.log.line(format!(
            "a pod wrote a canary into its volume ({} bytes); assert-encryption looks for it in every object",
            c.len()
        ));
        if !ctx.state.canaries.contains(&c) {
            ctx.state.canaries.push(c);
        }
    }
    Ok(done(format!(
        "applied {count} objects to namespace {}",
        workload.namespace
    )))
}

/// Register every value of a Secret manifest (`data` decoded, `stringData` as is).
fn register_secret_values(secret: &serde_json::Value, redactor: &crate::log::Redactor) {
    use base64::Engine as _;
    if let Some(data) = secret["data"].as_object() {
        for v in data.values().filter_map(|v| v.as_str()) {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(v) {
                let _ = redactor.secret(bytes);
            }
        }
    }
    if let Some(data) = secret["stringData"].as_object() {
        for v in data.values().filter_map(|v| v.as_str()) {
            let _ = redactor.secret(v);
        }
    }
}
