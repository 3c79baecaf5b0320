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
    /// Checksums of the files in each deployed workload's volumes, by pod, as its pods
    /// printed them once Ready (empty where the cluster runs no pods).
    pub volume_checksums: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// Canary strings deployed pods wrote into their volumes (`vdrill-canary:` log lines):
    /// assert-encryption checks that no object of the bucket holds one in plain text.
    pub canaries: Vec<String>,
    pub locations: Vec<ResolvedLocation>,
    pub restores: usize,
    /// Whether setup got as far as installing Velero.
    pub velero_installed: bool,
    /// What this run created, and only that, is deleted at teardown.
    pub created: Created,
    /// Changes a step made that must be undone whatever happens to it (a check
    /// that disables a key): recorded before the change, removed once undone, and
    /// run by the runner after `finally` for whatever is left.
    pub undo: Vec<Undo>,
}

/// Resources this run created (never anything that existed before it).
#[derive(Debug, Default, Clone)]
pub struct Created {
    /// Keys, in creation order (new-key rotations add theirs).
    pub keys: Vec<KeyInfo>,
    pub aliases: Vec<String>,
    pub buckets: Vec<String>,
    pub namespaces: Vec<String>,
    /// CustomResourceDefinitions of the workloads.
    pub crds: Vec<String>,
}

/// A change to undo.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Enable a key a step disabled.
    EnableKey(KeyInfo),
}

impl Undo {
    pub fn title(&self) -> String {
        match self {
            Undo::EnableKey(k) => format!(
                "enable-key {} (left disabled by an interrupted check)",
                k.name
            ),
        }
    }
}

impl DrillState {
    pub fn default_location(&self) -> Option<&ResolvedLocation> {
        self.locations
            .iter()
            .find(|l| l.default)
            .or_else(|| self.locations.first())
    }

    pub fn location(&self, name: &str) -> Option<&ResolvedLocation> {
        self.locations.iter().find(|l| l.name == name)
    }
}
