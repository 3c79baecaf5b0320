//! Cloud KMS keys as names, for `kmsKeyName` on the emulated bed. fake-gcs-server
//! has no KMS behind it (and there is no Cloud KMS emulator), so a `gcp-kms` key
//! there is only its resource path: nothing is created, and every change of key
//! state is reported skipped with [`NO_KMS`] (never passed).

use anyhow::{Context, Result};
use async_trait::async_trait;

use crate::env::{KeyInfo, KeyManager, KeyState, NotHere};
use crate::log::StepLog;
use crate::scenario::{KeyProvider, KeySpec, RotateMode};

/// Why key state changes are skipped next to fake-gcs-server.
pub const NO_KMS: &str = "Cloud KMS key state (disabling or destroying a key version, rotation) exists only on real GCP: fake-gcs-server has no KMS behind it and there is no Cloud KMS emulator";

/// `gcp-kms` keys next to fake-gcs-server: names only.
pub struct KeyNames;

fn not_here(what: &str, key: &KeyInfo) -> anyhow::Error {
    anyhow::Error::new(NotHere(format!(
        "{what} key `{}` ({}): {NO_KMS}",
        key.name, key.id
    )))
}

#[async_trait]
impl KeyManager for KeyNames {
    async fn create(&self, name: &str, spec: &KeySpec, log: &StepLog) -> Result<KeyInfo> {
        let path = spec.name.clone().with_context(|| {
            format!("key `{name}`: a gcp-kms key needs `name` (its resource path)")
        })?;
        log.line(format!(
            "key `{name}`: Cloud KMS key {path} (a name only: {NO_KMS})"
        ));
        Ok(KeyInfo {
            name: name.to_string(),
            provider: KeyProvider::GcpKms,
            id: path.clone(),
            arn: path.clone(),
            alias: Some(path),
            version: None,
            file: None,
            customer_key: None,
        })
    }
    async fn exists(&self, _reference: &str) -> Result<bool> {
        // Nothing is created, so nothing can be taken over.
        Ok(false)
    }
    async fn disable(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        Err(not_here("disabling", key))
    }
    async fn enable(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        Err(not_here("enabling", key))
    }
    async fn rotate(&self, key: &KeyInfo, _mode: RotateMode, _log: &StepLog) -> Result<KeyInfo> {
        Err(not_here("rotating", key))
    }
    async fn schedule_deletion(&self, key: &KeyInfo, _days: u32, _log: &StepLog) -> Result<()> {
        Err(not_here("scheduling the destruction of", key))
    }
    async fn cancel_deletion(&self, key: &KeyInfo, _log: &StepLog) -> Result<()> {
        Err(not_here("restoring", key))
    }
    async fn state(&self, key: &KeyInfo) -> Result<KeyState> {
        Err(not_here("reading the state of", key))
    }
    async fn resolve(&self, reference: &str) -> Result<String> {
        Ok(reference.to_string())
    }
    async fn delete(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        log.line(format!(
            "key `{}`: nothing to remove (a name only)",
            key.name
        ));
        Ok(())
    }
    async fn delete_alias(&self, _alias: &str, _log: &StepLog) -> Result<()> {
        Ok(())
    }
}
