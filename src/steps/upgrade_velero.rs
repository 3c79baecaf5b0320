//! upgrade-velero: upgrade the running Velero to another version the way Velero's
//! upgrade guide does (the new CRDs first, then the server), keeping its locations and
//! repository password, and check that the upgraded Velero kept them.

use anyhow::{Context, Result};

use super::done;
use super::setup::resolve;
use super::{StepCtx, StepOutput};
use crate::env::{UpgradeRequest, hex, random_bytes};
use crate::scenario::UpgradeVeleroStep;

pub async fn run(step: &UpgradeVeleroStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let before = ctx.env.velero.version();
    let mut req = UpgradeRequest {
        version: step.version.clone(),
        ..Default::default()
    };
    for (name, loc) in &step.locations {
        let mut config = std::collections::BTreeMap::new();
        for (k, v) in &loc.config {
            config.insert(
                k.clone(),
                resolve(v, &ctx.state.keys)
                    .with_context(|| format!("location {name} config {k}"))?,
            );
        }
        req.locations.insert(name.clone(), config);
    }
    if step
        .repository_password
        .as_ref()
        .is_some_and(|s| s.original)
    {
        req.original_password = true;
    } else if let Some(src) = &step.repository_password {
        let password = match &src.from_env {
            Some(var) => std::env::var(var).with_context(|| {
                format!("repositoryPassword.fromEnv: environment variable {var} is not set")
            })?,
            None => hex(&random_bytes(24)?),
        };
        req.repository_password = Some(ctx.log.redactor().secret(password));
    }
    let result = ctx.env.velero.upgrade(&req, ctx.log).await;
    // The locations as the upgraded Velero has them, whatever the verdict.
    for l in ctx.state.locations.iter_mut() {
        if let Some(config) = req.locations.get(&l.name) {
            let defaults = ctx.env.store.location_config(l.provider);
            l.config = defaults.into_iter().chain(config.clone()).collect();
        }
    }
    result?;
    Ok(done(format!(
        "Velero {before} -> {}; same locations and repository password",
        ctx.env.velero.version()
    )))
}
