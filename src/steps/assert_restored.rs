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
