//! backup: create a Velero Backup and follow it to a terminal phase.

use anyhow::{Context, Result};

use super::state::BackupRecord;
use super::{StepCtx, StepOutput};
use crate::env::BackupRequest;
use crate::scenario::BackupStep;

pub async fn run(step: &BackupStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let workloads = &ctx.cell.scenario.workloads;
    let namespaces: Vec<String> = if step.workloads.is_empty() {
        workloads.iter().map(|w| w.namespace.clone()).collect()
    } else {
        step.workloads
            .iter()
            .filter_map(|id| workloads.iter().find(|w| w.id() == id))
            .map(|w| w.namespace.clone())
            .collect()
    };
    let location = match &step.location {
        Some(l) => l.clone(),
        None => ctx
            .state
            .default_location()
            .context("no backup storage location")?
            .name
            .clone(),
    };
    // The key this backup should be written with, as it is now (rotations change it later).
    if let Some(spec) = ctx
        .cell
        .scenario
        .velero
        .locations
        .iter()
        .find(|l| l.name == location)
        && let Some(key) = ctx.cell.scenario.location_key(spec)
        && let Some(info) = ctx.state.keys.get(&key)
    {
        ctx.state
            .backup_keys
            .insert(step.name.clone(), info.clone());
    }
    let req = BackupRequest {
        name: step.name.clone(),
        namespaces: namespaces.clone(),
        location: location.clone(),
        file_system_backup: step.file_system_backup,
    };
    ctx.log.line(format!(
        "backup {} of namespaces {:?} to location {location}",
        step.name, namespaces
    ));
    let outcome = ctx.env.velero.backup(&req, ctx.log).await?;
    ctx.log.line(format!(
        "backup {} ended in phase {} ({} errors, {} warnings)",
        step.name, outcome.phase, outcome.errors, outcome.warnings
    ));
    if let Some(r) = &outcome.failure_reason {
        ctx.log.line(format!("failure reason: {r}"));
    }
    ctx.state.backups.insert(
        step.name.clone(),
        BackupRecord {
            location,
            outcome: outcome.clone(),
            namespaces,
        },
    );
    Ok(StepOutput {
        summary: format!("phase {}", outcome.phase),
        outcome: Some(outcome),
        ..Default::default()
    })
}
