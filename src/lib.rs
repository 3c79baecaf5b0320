//! vdrill: disaster-recovery drills for Velero backups with encryption at rest.
//!
//! The data path: [`scenario`] (parse, validate, expand) -> [`runner`] (steps,
//! timeouts, cleanup) -> [`env`] providers (cluster, object store, key manager,
//! Velero) -> [`assert`] -> [`report`] (JUnit, progress, artifacts).

pub mod assert;
pub mod cli;
pub mod env;
pub mod exit;
pub mod fixture;
pub mod log;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod steps;
pub mod testbed;
