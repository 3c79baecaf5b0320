//! What a drill has learned so far: keys, backups, snapshots of deployed workloads.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::env::{KeyInfo, Outcome, ResolvedLocation};

#[derive(Debug, Clone)]
pub struct BackupRecord {
    pub location: String,
    pub outcome: Outcome,
    pub namespaces: Vec<String>,
}

#[derive(Debug, Default)]
pub struct DrillState {
    /// Scratch space of the cell (customer key files live here); removed on teardown.
    pub work_dir: std::path::PathBuf,
    /// Keys by scenario name, as they are now (after rotations).
    pub keys: BTreeMap<String, KeyInfo>,
    /// Every key version a scenario key has had, oldest first (new-key rotations add one).
    pub key_history: BTreeMap<String, Vec<KeyInfo>>,
    /// The key each backup was written with, as known when it was taken.
    pub backup_keys: BTreeMap<String, KeyInfo>,
    pub backups: BTreeMap<String, BackupRecord>,
    /// Normalized snapshots of each deployed workload's objects.
    pub snapshots: BTreeMap<String, Vec<Json>>,
    pub locations: Vec<ResolvedLocation>,
    pub restores: usize,
    /// Whether setup got as far as installing Velero.
    pub velero_installed: bool,
}

impl DrillState {
    pub fn default_location(&self) -> Option<&ResolvedLocation> {
        self.locations.iter().find(|l| l.default).or_else(|| self.locations.first())
    }

    pub fn location(&self, name: &str) -> Option<&ResolvedLocation> {
        self.locations.iter().find(|l| l.name == name)
    }
}
