//! Setup and teardown around a drill: keys, buckets, Velero; and the reverse.

use anyhow::{Context, Result};

use super::done;
use crate::env::{KeyInfo, ResolvedLocation, VeleroInstall};
use crate::runner::{StepCtx, StepOutput};
use crate::scenario::{KeyProvider, refs};

/// Random bytes from the operating system.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 32-byte SSE-C key written to a 0600 file, as velero-plugin-for-aws reads it.
fn customer_key(ctx: &StepCtx<'_>, name: &str) -> Result<KeyInfo> {
    // Printable bytes: the plugin reads the file as a string and takes its 32 bytes.
    let key: Vec<u8> = hex(&random_bytes(16)?).into_bytes();
    let path = ctx.state.work_dir.join("keys").join(format!("{name}.key"));
    crate::env::write_private(&path, &key)?;
    ctx.log.redactor().add(&key);
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
            let v = (parts[0] == "keys").then(|| keys.get(&parts[1]).and_then(|k| k.attribute(&parts[2]))).flatten();
            v
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

pub async fn prepare(ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let scenario = &ctx.cell.scenario;
    // Cloud credentials Velero will get are secrets too.
    for line in ctx.env.store.velero_credentials().lines() {
        if let Some((k, v)) = line.split_once('=')
            && (k.contains("secret") || k.contains("token") || k.contains("key") && !k.contains("key_id"))
        {
            ctx.log.redactor().add(v.trim().as_bytes());
        }
    }
    // CustomResourceDefinitions of the workloads first: Velero learns the API types
    // when it starts (and every 5 minutes after), so a CRD applied after it starts
    // would leave its custom resources out of the next backups.
    let mut crds = Vec::new();
    for w in &scenario.workloads {
        let path = ctx.cell.dir.join(&w.fixture);
        let manifests = crate::fixture::load_all(&path)?;
        crds.extend(manifests.into_iter().filter(|m| m.kind() == "CustomResourceDefinition"));
    }
    if !crds.is_empty() {
        ctx.log.line(format!("installing {} CustomResourceDefinition(s) of the workloads before Velero", crds.len()));
        ctx.env.cluster.install_crds(&crds, ctx.log).await?;
    }
    // Keys.
    for (name, spec) in &scenario.keys {
        let info = match spec.provider {
            KeyProvider::CustomerKey => customer_key(ctx, name)?,
            _ => ctx.env.keys.create(name, spec, ctx.log).await.with_context(|| format!("creating key `{name}`"))?,
        };
        ctx.log.line(format!("key {name}: {}", info.arn));
        ctx.state.key_history.entry(name.clone()).or_default().push(info.clone());
        ctx.state.keys.insert(name.clone(), info);
    }
    // Buckets, and the locations with every reference resolved.
    let mut locations = Vec::new();
    for (i, loc) in scenario.velero.locations.iter().enumerate() {
        let default_key = loc.bucket_default_key.as_ref().and_then(|k| ctx.state.keys.get(k)).cloned();
        ctx.env.store.create_bucket(&loc.bucket, default_key.as_ref(), ctx.log).await.with_context(|| format!("creating bucket {}", loc.bucket))?;
        let mut config = ctx.env.store.location_config(loc.provider);
        for (k, v) in &loc.config {
            config.insert(k.clone(), resolve(v, &ctx.state.keys).with_context(|| format!("location {} config {k}", loc.name))?);
        }
        let default = loc.default || (i == 0 && !scenario.velero.locations.iter().any(|l| l.default));
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
            std::env::var(var).with_context(|| format!("velero.repositoryPassword.fromEnv: environment variable {var} is not set"))?
        }
        _ => hex(&random_bytes(24)?),
    };
    ctx.log.redactor().add(password.as_bytes());
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
        namespace: scenario.velero.namespace.clone().unwrap_or_else(|| "velero".into()),
        plugins,
        features: scenario.velero.features.clone(),
        locations,
        repository_password: password,
    };
    ctx.env.velero.install(&install, ctx.log).await?;
    ctx.state.velero_installed = true;
    Ok(done(format!("{} keys, {} locations, Velero {}", ctx.state.keys.len(), ctx.state.locations.len(), ctx.env.velero.version())))
}

/// Stop Velero, remove keys and buckets, stop the environment. Every part runs even if one fails.
pub async fn teardown(ctx: &mut StepCtx<'_>) -> Result<StepOutput> {
    let mut errors = Vec::new();
    if let Err(e) = ctx.env.velero.teardown(ctx.log).await {
        errors.push(format!("velero: {e:#}"));
    }
    if let Err(e) = ctx.env.keys.cleanup(ctx.log).await {
        errors.push(format!("keys: {e:#}"));
    }
    if let Err(e) = ctx.env.store.cleanup(ctx.log).await {
        errors.push(format!("object store: {e:#}"));
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
    if errors.is_empty() { Ok(done("environment torn down")) } else { anyhow::bail!(errors.join("; ")) }
}
