//! Setup and teardown around a drill: keys, buckets, Velero; and the reverse.

use anyhow::{Context, Result, bail};

use super::done;
use super::state::Undo;
use super::{StepCtx, StepOutput};
use crate::env::{KeyInfo, ResolvedLocation, VeleroInstall, hex, random_bytes};
use crate::scenario::{KeyProvider, refs};

/// A 32-byte SSE-C key written to a 0600 file, as velero-plugin-for-aws reads it.
fn customer_key(ctx: &StepCtx<'_>, name: &str) -> Result<KeyInfo> {
    // Printable bytes: the plugin reads the file as a string and takes its 32 bytes.
    let key = ctx.log.redactor().secret(hex(&random_bytes(16)?));
    let path = ctx.state.work_dir.join("keys").join(format!("{name}.key"));
    crate::env::write_private(&path, key.expose())?;
    Ok(KeyInfo {
        name: name.to_string(),
        provider: KeyProvider::CustomerKey,
        id: format!("customer-key:{name}"),
        arn: format!("customer-key:{name}"),
        alias: None,
        version: None,
        file: Some(path),
        customer_key: Some(key),
    })
}

/// Replace run-time references (`${keys.k.arn}`, `${keys.k.file}`) with their values.
pub fn resolve(value: &str, keys: &std::collections::BTreeMap<String, KeyInfo>) -> Result<String> {
    let mut missing = None;
    let out = refs::substitute(
        value,
        &|parts| {
            (parts[0] == "keys")
                .then(|| keys.get(&parts[1]).and_then(|k| k.attribute(&parts[2])))
                .flatten()
        },
        true,
    );
    if let Ok(left) = refs::find(&out)
        && let Some(r) = left.first()
    {
        missing = Some(r.parts.join("."));
    }
    match missing {
        Some(m) => anyhow::bail!("cannot resolve `${{{m}}}`"),
        None => Ok(out),
    }
}

/// The CustomResourceDefinition every Velero install has.
pub const VELERO_CRD: &str = "backups.velero.io";

pub async fn prepare(ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let scenario = &ctx.cell.scenario;
    // A Velero this run did not install is never changed or removed.
    let namespace = scenario
        .velero
        .namespace
        .clone()
        .unwrap_or_else(|| "velero".into());
    if ctx.env.cluster.crd_exists(VELERO_CRD).await? {
        bail!(
            "the cluster already has a Velero install (CustomResourceDefinition {VELERO_CRD} exists); vdrill installs the Velero under test itself and never changes or removes one it did not install: use a cluster without Velero"
        );
    }
    if ctx.env.cluster.namespace_exists(&namespace).await? {
        bail!(
            "namespace {namespace} already exists; vdrill installs Velero into a namespace it creates (set `velero.namespace` to another one)"
        );
    }
    // CustomResourceDefinitions of the workloads first: Velero learns the API types
    // when it starts (and every 5 minutes after), so a CRD applied after it starts
    // would leave its custom resources out of the next backups.
    let mut crds = Vec::new();
    for w in &scenario.workloads {
        let path = ctx.cell.dir.join(&w.fixture);
        let manifests = crate::fixture::load_all(&path)?;
        crds.extend(
            manifests
                .into_iter()
                .filter(|m| m.kind() == "CustomResourceDefinition"),
        );
    }
    for crd in &crds {
        if ctx.env.cluster.crd_exists(crd.name()).await? {
            bail!(
                "CustomResourceDefinition {} already exists; vdrill does not change definitions it did not create",
                crd.name()
            );
        }
    }
    if !crds.is_empty() {
        ctx.log.line(format!(
            "installing {} CustomResourceDefinition(s) of the workloads before Velero",
            crds.len()
        ));
        ctx.env.cluster.install_crds(&crds, ctx.log).await?;
        ctx.state
            .created
            .crds
            .extend(crds.iter().map(|c| c.name().to_string()));
    }
    // Keys: created (their alias must be free), or looked up when `existing`.
    for (name, spec) in &scenario.keys {
        let info = match spec.provider {
            KeyProvider::CustomerKey => customer_key(ctx, name)?,
            _ => {
                if !spec.existing
                    && let Some(alias) = &spec.alias
                    && ctx.env.keys.exists(alias).await?
                {
                    bail!(
                        "key `{name}`: alias {alias} already exists; vdrill creates its keys under aliases that are free and never takes one over: pick another alias, or declare the key `existing: true` to use the key it names"
                    );
                }
                let info = ctx
                    .env
                    .keys
                    .create(name, spec, ctx.log)
                    .await
                    .with_context(|| format!("creating key `{name}`"))?;
                if !spec.existing {
                    ctx.state.created.keys.push(info.clone());
                    ctx.state.created.aliases.extend(spec.alias.clone());
                }
                info
            }
        };
        ctx.log.line(format!(
            "key {name}: {}{}",
            info.arn,
            if spec.existing { " (existing)" } else { "" }
        ));
        ctx.state
            .key_history
            .entry(name.clone())
            .or_default()
            .push(info.clone());
        ctx.state.keys.insert(name.clone(), info);
    }
    // Buckets (created unless `existing`; never one that exists), and the locations
    // with every reference resolved.
    let mut locations = Vec::new();
    for (i, loc) in scenario.velero.locations.iter().enumerate() {
        ctx.env.store.route(&loc.bucket, loc.provider)?;
        let exists = ctx.state.created.buckets.contains(&loc.bucket)
            || ctx.env.store.bucket_exists(&loc.bucket).await?;
        match (loc.existing, exists) {
            (true, true) => ctx.log.line(format!("bucket {} exists (location {} says `existing: true`): vdrill creates and deletes nothing in it", loc.bucket, loc.name)),
            (true, false) => bail!("location {}: bucket {} does not exist, but the location says `existing: true`", loc.name, loc.bucket),
            (false, true) if ctx.state.created.buckets.contains(&loc.bucket) => {}
            (false, true) => bail!(
                "location {}: bucket {} already exists; vdrill only uses buckets it creates (and deletes), unless the location says `existing: true`",
                loc.name,
                loc.bucket
            ),
            (false, false) => {
                let default_key = loc.bucket_default_key.as_ref().and_then(|k| ctx.state.keys.get(k)).cloned();
                ctx.env.store.create_bucket(&loc.bucket, default_key.as_ref(), ctx.log).await.with_context(|| format!("creating bucket {}", loc.bucket))?;
                ctx.state.created.buckets.push(loc.bucket.clone());
            }
        }
        let mut config = ctx.env.store.location_config(loc.provider);
        for (k, v) in &loc.config {
            config.insert(
                k.clone(),
                resolve(v, &ctx.state.keys)
                    .with_context(|| format!("location {} config {k}", loc.name))?,
            );
        }
        let default =
            loc.default || (i == 0 && !scenario.velero.locations.iter().any(|l| l.default));
        locations.push(ResolvedLocation {
            name: loc.name.clone(),
            provider: loc.provider,
            bucket: loc.bucket.clone(),
            prefix: loc.prefix.clone(),
            default,
            config,
        });
    }
    ctx.state.locations = locations.clone();
    // The Kopia repository password.
    let password = match &scenario.velero.repository_password {
        Some(src) if src.from_env.is_some() => {
            let var = src.from_env.as_deref().unwrap_or_default();
            std::env::var(var).with_context(|| {
                format!("velero.repositoryPassword.fromEnv: environment variable {var} is not set")
            })?
        }
        _ => hex(&random_bytes(24)?),
    };
    let password = ctx.log.redactor().secret(password);
    let mut plugins = scenario.velero.plugins.clone();
    if plugins.is_empty() {
        for l in &locations {
            let p = l.provider.as_str().to_string();
            if !plugins.contains(&p) {
                plugins.push(p);
            }
        }
    }
    let install = VeleroInstall {
        version: scenario.velero.version.clone(),
        namespace,
        plugins,
        features: scenario.velero.features.clone(),
        locations,
        repository_password: password,
    };
    ctx.env.velero.install(&install, ctx.log).await?;
    ctx.state.velero_installed = true;
    Ok(done(format!(
        "{} keys, {} locations, Velero {}",
        ctx.state.keys.len(),
        ctx.state.locations.len(),
        ctx.env.velero.version()
    )))
}

/// Undo a change a step left behind.
pub async fn undo(ctx: &mut StepCtx<'_>, undo: &Undo) -> Result<StepOutput> {
    match undo {
        Undo::EnableKey(k) => {
            ctx.env.keys.enable(k, ctx.log).await?;
            Ok(done(format!("enabled {} ({}) again", k.name, k.arn)))
        }
    }
}

/// Stop Velero, remove what the run created (never anything else), stop the
/// environment. Every part runs even if one fails.
pub async fn teardown(ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let mut errors = Vec::new();
    if let Err(e) = ctx.env.velero.teardown(ctx.log).await {
        errors.push(format!("velero: {e:#}"));
    }
    let created = ctx.state.created.clone();
    if ctx.env.disposable {
        ctx.log
            .line("the environment is thrown away whole: keys, buckets and namespaces go with it");
    } else {
        for ns in created.namespaces.iter().rev() {
            let gone = match ctx.env.cluster.namespace_exists(ns).await {
                Ok(true) => ctx.env.cluster.delete_namespace(ns, ctx.log).await,
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = gone {
                errors.push(format!("namespace {ns}: {e:#}"));
            }
        }
        for crd in created.crds.iter().rev() {
            if let Err(e) = ctx.env.cluster.delete_crd(crd, ctx.log).await {
                errors.push(format!("CustomResourceDefinition {crd}: {e:#}"));
            }
        }
        for alias in &created.aliases {
            if let Err(e) = ctx.env.keys.delete_alias(alias, ctx.log).await {
                errors.push(format!("alias {alias}: {e:#}"));
            }
        }
        for key in &created.keys {
            if let Err(e) = ctx.env.keys.delete(key, ctx.log).await {
                errors.push(format!("key {}: {e:#}", key.arn));
            }
        }
        for bucket in &created.buckets {
            if let Err(e) = ctx.env.store.delete_bucket(bucket, ctx.log).await {
                errors.push(format!("bucket {bucket}: {e:#}"));
            }
        }
    }
    if let Err(e) = ctx.env.stop.stop(ctx.log).await {
        errors.push(format!("environment: {e:#}"));
    }
    let work = &ctx.state.work_dir;
    if work.exists()
        && let Err(e) = std::fs::remove_dir_all(work)
    {
        errors.push(format!("removing {}: {e}", work.display()));
    }
    if errors.is_empty() {
        Ok(done("environment torn down"))
    } else {
        bail!(errors.join("; "))
    }
}
