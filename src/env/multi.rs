//! Stores and key managers of several clouds in one environment (a Velero with
//! locations in S3, Azure Blob and GCS): each call goes to the provider it is about.
//! Buckets are routed by the location that uses them ([`ObjectStore::route`]),
//! keys by their provider.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;

use super::{
    AccountEncryption, KeyInfo, KeyManager, KeyState, Limitation, ObjectEncryption, ObjectStore,
};
use crate::log::{Secret, StepLog};
use crate::scenario::{KeyProvider, KeySpec, LocationProvider, RotateMode};

/// Every limitation once, in the order first met (`dedup` alone would keep
/// duplicates that are not next to each other).
fn union(all: impl Iterator<Item = Limitation>) -> Vec<Limitation> {
    let mut out = Vec::new();
    for l in all {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// One object store per cloud.
pub struct Stores {
    stores: Vec<(LocationProvider, Arc<dyn ObjectStore>)>,
    routes: Mutex<HashMap<String, LocationProvider>>,
}

impl Stores {
    pub fn new(stores: Vec<(LocationProvider, Arc<dyn ObjectStore>)>) -> Stores {
        Stores {
            stores,
            routes: Mutex::default(),
        }
    }

    fn of(&self, provider: LocationProvider) -> Result<&Arc<dyn ObjectStore>> {
        self.stores
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, s)| s)
            .with_context(|| format!("this environment has no `{}` storage", provider.as_str()))
    }

    fn for_bucket(&self, bucket: &str) -> Result<&Arc<dyn ObjectStore>> {
        let provider = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bucket)
            .copied();
        match provider {
            Some(p) => self.of(p),
            None => bail!("bucket {bucket} is used by no location of this drill"),
        }
    }
}

#[async_trait]
impl ObjectStore for Stores {
    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.for_bucket(bucket)?.bucket_exists(bucket).await
    }
    async fn create_bucket(
        &self,
        bucket: &str,
        default_key: Option<&KeyInfo>,
        log: &StepLog,
    ) -> Result<()> {
        self.for_bucket(bucket)?
            .create_bucket(bucket, default_key, log)
            .await
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        self.for_bucket(bucket)?.list(bucket, prefix).await
    }
    async fn head(
        &self,
        bucket: &str,
        key: &str,
        customer_key: Option<&Secret>,
    ) -> Result<ObjectEncryption> {
        self.for_bucket(bucket)?
            .head(bucket, key, customer_key)
            .await
    }
    async fn read(&self, bucket: &str, key: &str, customer_key: Option<&Secret>) -> Result<u64> {
        self.for_bucket(bucket)?
            .read(bucket, key, customer_key)
            .await
    }
    fn location_config(&self, provider: LocationProvider) -> BTreeMap<String, String> {
        self.of(provider)
            .map(|s| s.location_config(provider))
            .unwrap_or_default()
    }
    fn velero_credentials(&self, provider: LocationProvider) -> Secret {
        match self.of(provider) {
            Ok(s) => s.velero_credentials(provider),
            // Validation lets no location of a missing cloud through; the first store's
            // file keeps the plugin's error about the location, not about a missing file.
            Err(_) => self.stores[0].1.velero_credentials(provider),
        }
    }
    fn velero_env(&self) -> Vec<(String, String)> {
        self.stores
            .iter()
            .flat_map(|(_, s)| s.velero_env())
            .collect()
    }
    fn route(&self, bucket: &str, provider: LocationProvider) -> Result<()> {
        self.of(provider)?;
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        match routes.get(bucket) {
            Some(p) if *p != provider => {
                bail!(
                    "bucket {bucket} is used by a `{}` location and a `{}` location; give each cloud's locations buckets of their own",
                    p.as_str(),
                    provider.as_str()
                )
            }
            _ => {
                routes.insert(bucket.to_string(), provider);
                Ok(())
            }
        }
    }
    async fn delete_bucket(&self, bucket: &str, log: &StepLog) -> Result<()> {
        self.for_bucket(bucket)?.delete_bucket(bucket, log).await
    }
    fn limitations(&self) -> Vec<Limitation> {
        union(self.stores.iter().flat_map(|(_, s)| s.limitations()))
    }
    async fn account_encryption(&self) -> Result<Option<AccountEncryption>> {
        // Only Azure has account-level encryption.
        match self.of(LocationProvider::Azure) {
            Ok(s) => s.account_encryption().await,
            Err(_) => Ok(None),
        }
    }
}

/// One key manager per key provider.
pub struct Keys {
    managers: Vec<(KeyProvider, Arc<dyn KeyManager>)>,
}

impl Keys {
    pub fn new(managers: Vec<(KeyProvider, Arc<dyn KeyManager>)>) -> Keys {
        Keys { managers }
    }

    fn of(&self, provider: KeyProvider) -> Result<&Arc<dyn KeyManager>> {
        // Customer keys are generated by vdrill; the AWS manager stands for them.
        let provider = if provider == KeyProvider::CustomerKey {
            KeyProvider::AwsKms
        } else {
            provider
        };
        self.managers
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, m)| m)
            .with_context(|| format!("this environment has no `{}` keys", provider.as_str()))
    }

    /// Aliases and ARNs are AWS KMS references.
    fn references(&self) -> Result<&Arc<dyn KeyManager>> {
        self.of(KeyProvider::AwsKms).or_else(|_| {
            self.managers
                .first()
                .map(|(_, m)| m)
                .context("no key manager")
        })
    }
}

#[async_trait]
impl KeyManager for Keys {
    async fn create(&self, name: &str, spec: &KeySpec, log: &StepLog) -> Result<KeyInfo> {
        self.of(spec.provider)?.create(name, spec, log).await
    }
    async fn exists(&self, reference: &str) -> Result<bool> {
        self.references()?.exists(reference).await
    }
    async fn disable(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.of(key.provider)?.disable(key, log).await
    }
    async fn enable(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.of(key.provider)?.enable(key, log).await
    }
    async fn rotate(&self, key: &KeyInfo, mode: RotateMode, log: &StepLog) -> Result<KeyInfo> {
        self.of(key.provider)?.rotate(key, mode, log).await
    }
    async fn schedule_deletion(&self, key: &KeyInfo, days: u32, log: &StepLog) -> Result<()> {
        self.of(key.provider)?
            .schedule_deletion(key, days, log)
            .await
    }
    async fn cancel_deletion(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.of(key.provider)?.cancel_deletion(key, log).await
    }
    async fn state(&self, key: &KeyInfo) -> Result<KeyState> {
        self.of(key.provider)?.state(key).await
    }
    async fn resolve(&self, reference: &str) -> Result<String> {
        self.references()?.resolve(reference).await
    }
    fn limitations(&self) -> Vec<Limitation> {
        union(self.managers.iter().flat_map(|(_, m)| m.limitations()))
    }
    async fn delete(&self, key: &KeyInfo, log: &StepLog) -> Result<()> {
        self.of(key.provider)?.delete(key, log).await
    }
    async fn delete_alias(&self, alias: &str, log: &StepLog) -> Result<()> {
        self.references()?.delete_alias(alias, log).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Redactor;

    /// A store that answers with its own name.
    struct Named(&'static str, Arc<Redactor>);

    #[async_trait]
    impl ObjectStore for Named {
        async fn bucket_exists(&self, _bucket: &str) -> Result<bool> {
            Ok(self.0 == "gcs")
        }
        async fn create_bucket(
            &self,
            _bucket: &str,
            _default_key: Option<&KeyInfo>,
            _log: &StepLog,
        ) -> Result<()> {
            Ok(())
        }
        async fn list(&self, bucket: &str, _prefix: &str) -> Result<Vec<String>> {
            Ok(vec![format!("{}:{bucket}", self.0)])
        }
        async fn head(
            &self,
            _bucket: &str,
            _key: &str,
            _customer_key: Option<&Secret>,
        ) -> Result<ObjectEncryption> {
            Ok(ObjectEncryption::default())
        }
        async fn read(
            &self,
            _bucket: &str,
            _key: &str,
            _customer_key: Option<&Secret>,
        ) -> Result<u64> {
            Ok(self.0.len() as u64)
        }
        fn location_config(&self, _provider: LocationProvider) -> BTreeMap<String, String> {
            BTreeMap::from([("store".to_string(), self.0.to_string())])
        }
        fn velero_credentials(&self, _provider: LocationProvider) -> Secret {
            self.1.secret(format!("credentials of {}", self.0))
        }
        fn velero_env(&self) -> Vec<(String, String)> {
            vec![(self.0.to_uppercase(), "1".into())]
        }
        async fn delete_bucket(&self, _bucket: &str, _log: &StepLog) -> Result<()> {
            Ok(())
        }
    }

    fn stores() -> Stores {
        let r = Redactor::new();
        Stores::new(vec![
            (LocationProvider::Aws, Arc::new(Named("s3", r.clone()))),
            (LocationProvider::Gcp, Arc::new(Named("gcs", r))),
        ])
    }

    #[tokio::test]
    async fn buckets_go_to_the_store_of_their_location() {
        let s = stores();
        s.route("a", LocationProvider::Aws).unwrap();
        s.route("g", LocationProvider::Gcp).unwrap();
        assert_eq!(s.list("a", "").await.unwrap(), ["s3:a"]);
        assert_eq!(s.list("g", "").await.unwrap(), ["gcs:g"]);
        assert!(!s.bucket_exists("a").await.unwrap());
        assert!(s.bucket_exists("g").await.unwrap());
        assert_eq!(s.read("g", "x", None).await.unwrap(), 3);
        let e = s.list("elsewhere", "").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("bucket elsewhere is used by no location"),
            "{e}"
        );
        // The same bucket name for two clouds, or a cloud without storage, is refused.
        let e = s.route("a", LocationProvider::Gcp).unwrap_err();
        assert!(
            e.to_string()
                .contains("used by a `aws` location and a `gcp` location"),
            "{e}"
        );
        assert!(
            s.route("a", LocationProvider::Aws).is_ok(),
            "routing again to the same cloud is fine"
        );
        let e = s.route("z", LocationProvider::Azure).unwrap_err();
        assert!(e.to_string().contains("no `azure` storage"), "{e}");
    }

    #[test]
    fn limitations_of_several_providers_are_listed_once_each() {
        use Limitation::*;
        let all = [
            AliasKeyIdNotReported,
            KmsKeyNameNotRecorded,
            AliasKeyIdNotReported,
        ];
        assert_eq!(
            union(all.into_iter()),
            [AliasKeyIdNotReported, KmsKeyNameNotRecorded]
        );
    }

    #[test]
    fn each_cloud_gets_its_own_config_and_credentials_and_every_store_its_env() {
        let s = stores();
        assert_eq!(s.location_config(LocationProvider::Gcp)["store"], "gcs");
        assert_eq!(s.location_config(LocationProvider::Aws)["store"], "s3");
        assert!(s.location_config(LocationProvider::Azure).is_empty());
        assert_eq!(
            s.velero_credentials(LocationProvider::Gcp).expose_str(),
            "credentials of gcs"
        );
        assert_eq!(
            s.velero_credentials(LocationProvider::Aws).expose_str(),
            "credentials of s3"
        );
        assert_eq!(
            s.velero_env(),
            [
                ("S3".to_string(), "1".to_string()),
                ("GCS".to_string(), "1".to_string())
            ]
        );
    }
}
