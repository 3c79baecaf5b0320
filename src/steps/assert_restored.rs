//! assert-restored: the restored objects equal the deployed snapshot, field by field.

use anyhow::{Context, Result};

use super::{StepCtx, StepOutput};
use crate::assert::restored::{diff, normalize, prune};
use crate::assert::{fail, pass};
use crate::env::ObjectRef;
use crate::scenario::AssertRestoredStep;

pub async fn run(step: &AssertRestoredStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let snapshot = ctx
        .state
        .snapshots
        .get(&step.workload)
        .with_context(|| format!("workload `{}` was not deployed", step.workload))?
        .clone();
    let refs: Vec<ObjectRef> = snapshot.iter().map(ObjectRef::of).collect();
    let live = ctx.env.cluster.get(&refs).await?;
    let mut assertions = Vec::new();
    for ((r, expected), actual) in refs.iter().zip(&snapshot).zip(&live) {
        let name = format!("{r} restored");
        match actual {
            None => assertions.push(fail(name, "missing after the restore")),
            Some(actual) => {
                let mut e = normalize(expected, &step.ignore);
                let mut a = normalize(actual, &step.ignore);
                prune(&mut e);
                prune(&mut a);
                let d = diff(&e, &a);
                if d.is_empty() {
                    assertions.push(pass(name, "equal"));
                } else {
                    for line in &d {
                        ctx.log.line(format!("{r}: {line}"));
                    }
                    assertions.push(fail(name, d.join("; ")));
                }
            }
        }
    }
    // Volume data: the restored pods' checksums of their files against the deployed ones.
    if let Some(before) = ctx.state.volume_checksums.get(&step.workload).cloned() {
        let ns = ctx
            .cell
            .scenario
            .workloads
            .iter()
            .find(|w| w.id() == step.workload)
            .map(|w| w.namespace.clone())
            .unwrap_or_default();
        let after = ctx
            .env
            .cluster
            .volume_checksums(&ns, super::deploy::POD_WAIT, ctx.log)
            .await?;
        for (pod, sums) in &before {
            match after.get(pod) {
                Some(now) => assertions.push(crate::assert::file_data::assert_volume(
                    &format!("of pod {ns}/{pod}"),
                    sums,
                    now,
                )),
                None => assertions.push(fail(
                    format!("volume of pod {ns}/{pod} restored byte for byte"),
                    "the restored pod printed no checksums of its volume",
                )),
            }
        }
    }
    let bad = assertions
        .iter()
        .filter(|a| a.status == crate::report::Status::Failed)
        .count();
    Ok(StepOutput {
        summary: format!("{} objects compared, {bad} differ", refs.len()),
        assertions,
        outcome: None,
    })
}
