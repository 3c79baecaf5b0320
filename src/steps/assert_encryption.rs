//! assert-encryption: every object the backup wrote (and the Kopia repository,
//! where present) is encrypted with the expected key.

use anyhow::{Context, Result};

use super::state::Undo;
use super::{StepCtx, StepOutput};
use crate::assert::encryption::{
    Expected, KeyVaultKey, Observed, account_binding, customer_key_md5, judge, judge_azure,
    judge_gcs, judge_not_under_key,
};
use crate::assert::{fail, pass, skip};
use crate::env::{KeyInfo, KeyState, Limitation};
use crate::scenario::{AssertEncryptionStep, KeyProvider, RepositoryAudit};

pub async fn run(step: &AssertEncryptionStep, ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let record = ctx
        .state
        .backups
        .get(&step.backup)
        .with_context(|| format!("backup `{}` was not taken", step.backup))?
        .clone();
    let location = ctx
        .state
        .location(&record.location)
        .with_context(|| format!("no location `{}`", record.location))?
        .clone();
    // The key as it was when the backup was taken, if the backup used this key; else as it is now.
    let key: KeyInfo = match ctx.state.backup_keys.get(&step.backup) {
        Some(k) if k.name == step.key => k.clone(),
        _ => super::key(ctx, &step.key)?.clone(),
    };
    let base = location
        .prefix
        .as_ref()
        .map(|p| format!("{p}/"))
        .unwrap_or_default();
    let mut keys = ctx
        .env
        .store
        .list(&location.bucket, &format!("{base}backups/{}/", step.backup))
        .await?;
    let backup_objects = keys.len();
    let audit = step.repository.unwrap_or_default();
    // Kopia repository objects judged on their own (`not-under-key`).
    let mut repo_apart = Vec::new();
    if audit != RepositoryAudit::Ignore {
        let repo = ctx
            .env
            .store
            .list(&location.bucket, &format!("{base}kopia/"))
            .await?;
        if audit == RepositoryAudit::NotUnderKey {
            ctx.log.line(format!(
                "{} Kopia repository objects must not be under the key",
                repo.len()
            ));
            repo_apart = repo;
        } else {
            if !repo.is_empty() {
                ctx.log
                    .line(format!("including {} Kopia repository objects", repo.len()));
            }
            keys.extend(repo);
        }
    }
    ctx.log.line(format!(
        "checking {} objects in bucket {} ({backup_objects} from the backup)",
        keys.len(),
        location.bucket
    ));

    let customer_key = key.customer_key.clone();
    let mut observed = Vec::new();
    for k in keys.iter().chain(&repo_apart) {
        let head = ctx
            .env
            .store
            .head(&location.bucket, k, customer_key.as_ref())
            .await
            .map_err(|e| crate::log::error_text(&e));
        let resolved_arn = match &head {
            Ok(h) => match h.kms_key_id.as_deref() {
                Some(id) if !id.starts_with("arn:") => ctx.env.keys.resolve(id).await.ok(),
                Some(id) => Some(id.to_string()),
                None => None,
            },
            Err(_) => None,
        };
        match &head {
            Ok(h) if key.provider == KeyProvider::GcpKms => ctx.log.line(format!(
                "  {k}: kmsKeyName={} csek={}",
                h.kms_key_name.as_deref().unwrap_or("-"),
                h.encryption_key_sha256.as_deref().unwrap_or("-")
            )),
            Ok(h) if key.provider == KeyProvider::AzureKeyvault => ctx.log.line(format!(
                "  {k}: server-encrypted={} scope={} cpk={}",
                h.server_encrypted
                    .map(|b| b.to_string())
                    .as_deref()
                    .unwrap_or("-"),
                h.encryption_scope.as_deref().unwrap_or("-"),
                h.encryption_key_sha256.as_deref().unwrap_or("-")
            )),
            Ok(h) => ctx.log.line(format!(
                "  {k}: sse={} kms={} sse-c={}",
                h.server_side_encryption.as_deref().unwrap_or("-"),
                h.kms_key_id.as_deref().unwrap_or("-"),
                h.sse_customer_algorithm.as_deref().unwrap_or("-")
            )),
            Err(_) => {}
        }
        observed.push(Observed {
            key: k.clone(),
            head,
            resolved_arn,
        });
    }

    let label = match &key.alias {
        Some(a) => format!("{} ({a})", step.key),
        None => step.key.clone(),
    };
    let repo_observed = observed.split_off(keys.len());
    let mut assertions;
    match key.provider {
        KeyProvider::CustomerKey => {
            let bytes = customer_key
                .as_ref()
                .context("the customer key's bytes are not known")?;
            assertions = judge(
                &observed,
                &Expected::CustomerKey {
                    key_md5: customer_key_md5(bytes.expose()),
                    label: label.clone(),
                },
            );
            // Without the key, the store must refuse to describe the object.
            let mut readable = Vec::new();
            for k in &keys {
                if ctx.env.store.head(&location.bucket, k, None).await.is_ok() {
                    readable.push(k.clone());
                }
            }
            let name = "HeadObject without the customer key fails";
            assertions.push(if keys.is_empty() {
                skip(name, "no objects")
            } else if readable.is_empty() {
                pass(name, format!("all {} objects refused", keys.len()))
            } else {
                fail(
                    name,
                    format!(
                        "readable without the key: {}",
                        crate::assert::offenders(&readable)
                    ),
                )
            });
        }
        KeyProvider::AzureKeyvault => {
            let expected = KeyVaultKey::from_key_id(&key.arn, key.version.clone(), label.clone())
                .with_context(|| format!("`{}` is not a Key Vault key id", key.arn))?;
            let account = ctx
                .env
                .store
                .account_encryption()
                .await
                .map_err(|e| crate::log::error_text(&e));
            let account = match account {
                Ok(Some(a)) => Ok(a),
                Ok(None) => anyhow::bail!(
                    "this object store has no account-level encryption to check a Key Vault key against"
                ),
                Err(e) => Err(e),
            };
            assertions = judge_azure(&observed, &expected, &account);
            assertions.push(key_usable(ctx, &key, &label).await);
            let binding_name =
                format!("blobs are bound to key {label} (reads fail while it is disabled)");
            let bound = account_binding(&expected, &account);
            match bound.status {
                crate::report::Status::Passed => {
                    assertions.push(binding(ctx, &key, &location.bucket, &keys, &label).await)
                }
                crate::report::Status::Skipped => {
                    assertions.push(skip(binding_name, bound.message))
                }
                _ => assertions.push(skip(
                    binding_name,
                    "the account is not bound to this key (see above)",
                )),
            }
        }
        KeyProvider::GcpKms => {
            let unknowable = ctx
                .env
                .store
                .limitations()
                .contains(&Limitation::KmsKeyNameNotRecorded)
                .then(|| Limitation::KmsKeyNameNotRecorded.reason());
            assertions = judge_gcs(&observed, &key.id, &label, unknowable);
            assertions.push(key_usable(ctx, &key, &label).await);
        }
        KeyProvider::AwsKms => {
            let alias_only = location
                .config
                .get("kmsKeyId")
                .is_some_and(|v| v.starts_with("alias/"));
            let unfaithful = alias_only
                && ctx
                    .env
                    .keys
                    .limitations()
                    .contains(&Limitation::AliasKeyIdNotReported);
            let arn_checkable = unfaithful.then(|| {
                "this store reports a made-up key id for objects written through an alias (a LocalStack divergence from AWS); the binding to the key is checked by disabling it instead".to_string()
            });
            let expected = Expected::Kms {
                arn: key.arn.clone(),
                label: label.clone(),
                arn_checkable: arn_checkable.clone(),
            };
            assertions = judge(&observed, &expected);
            if audit == RepositoryAudit::NotUnderKey {
                assertions.push(judge_not_under_key(&repo_observed, &expected));
            }
            if arn_checkable.is_some() {
                let current = super::key(ctx, &step.key)?.clone();
                if current.arn == key.arn {
                    assertions.push(binding(ctx, &key, &location.bucket, &keys, &label).await);
                } else {
                    // LocalStack records such objects by alias and, on every read, checks the key
                    // the alias points at now; AWS checks the key that encrypted them.
                    assertions.push(skip(
                        format!("objects are bound to key {label} (reads fail while it is disabled)"),
                        format!(
                            "the alias now points at {} (it pointed at {} when the backup was taken), and this store checks reads against the alias's current key rather than the key that encrypted the object (a LocalStack divergence from AWS)",
                            current.arn, key.arn
                        ),
                    ));
                }
            }
        }
    }
    // Client-side encryption: a canary a pod wrote into its volume is in no object's bytes.
    if !ctx.state.canaries.is_empty() {
        let all = ctx.env.store.list(&location.bucket, &base).await?;
        let mut bodies = Vec::new();
        for k in &all {
            match ctx
                .env
                .store
                .fetch(&location.bucket, k, customer_key.as_ref())
                .await
            {
                Ok(b) => bodies.push((k.clone(), b)),
                Err(e) => ctx.log.line(format!(
                    "could not read {k} to look for the canary: {}",
                    crate::log::error_text(&e)
                )),
            }
        }
        ctx.log.line(format!(
            "looked for {} canary string(s) in {} of {} object(s) of bucket {}",
            ctx.state.canaries.len(),
            bodies.len(),
            all.len(),
            location.bucket
        ));
        for c in &ctx.state.canaries {
            assertions.push(crate::assert::canary::judge(
                c,
                bodies.iter().map(|(k, b)| (k.as_str(), b.as_slice())),
            ));
        }
    }
    let failed = assertions
        .iter()
        .filter(|a| a.status == crate::report::Status::Failed)
        .count();
    Ok(StepOutput {
        summary: format!(
            "{} objects checked, {} assertions failed",
            keys.len(),
            failed
        ),
        assertions,
        outcome: None,
    })
}

/// The key itself: present and enabled in the vault, at the version the backup saw or a newer one.
async fn key_usable(
    ctx: &StepCtx<'_>,
    key: &KeyInfo,
    label: &str,
) -> crate::report::AssertionReport {
    let name = format!("key {label} is enabled in the key manager");
    match ctx.env.keys.state(key).await {
        Ok(KeyState::Enabled) => pass(
            name,
            format!(
                "{} (version {})",
                key.arn,
                key.version.as_deref().unwrap_or("?")
            ),
        ),
        Ok(other) => fail(name, format!("{}: {other:?}", key.arn)),
        Err(e) if e.downcast_ref::<crate::env::NotHere>().is_some() => {
            skip(name, crate::log::error_text(&e))
        }
        Err(e) => fail(
            name,
            format!("cannot read the key: {}", crate::log::error_text(&e)),
        ),
    }
}

/// Bind the objects to a KMS key by disabling it and seeing reads fail, then enabling it again.
async fn binding(
    ctx: &mut StepCtx<'_>,
    key: &KeyInfo,
    bucket: &str,
    objects: &[String],
    label: &str,
) -> crate::report::AssertionReport {
    let name = format!("objects are bound to key {label} (reads fail while it is disabled)");
    let Some(sample) = objects
        .iter()
        .find(|k| k.ends_with("velero-backup.json"))
        .or(objects.first())
    else {
        return skip(name, "no objects");
    };
    match ctx.env.keys.state(key).await {
        Ok(KeyState::Enabled) => {}
        Ok(other) => {
            return skip(
                name,
                format!("the key is {other:?}; the check needs it enabled"),
            );
        }
        Err(e) => return fail(name, format!("cannot read the key's state: {e}")),
    }
    if let Err(e) = ctx.env.store.read(bucket, sample, None).await {
        return fail(
            name,
            format!("{sample} is not readable even with the key enabled: {e}"),
        );
    }
    // Recorded before the change: whatever happens to this step (a timeout, Ctrl-C),
    // the runner enables the key again.
    ctx.state.undo.push(Undo::EnableKey(key.clone()));
    if let Err(e) = ctx.env.keys.disable(key, ctx.log).await {
        return fail(name, format!("cannot disable the key: {e}"));
    }
    let read = ctx.env.store.read(bucket, sample, None).await;
    let enabled = ctx.env.keys.enable(key, ctx.log).await;
    if enabled.is_ok() {
        ctx.state
            .undo
            .retain(|u| !matches!(u, Undo::EnableKey(k) if k.arn == key.arn));
    }
    match (read, enabled) {
        (_, Err(e)) => fail(name, format!("could not enable the key again: {e}")),
        (Ok(_), _) => fail(
            name,
            format!(
                "{sample} was still readable with the key disabled: it is not encrypted with this key"
            ),
        ),
        (Err(e), _) => pass(name, format!("{sample}: {}", crate::log::error_text(&e))),
    }
}
