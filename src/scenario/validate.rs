//! Semantic checks on a deserialized scenario: names, references between
//! sections, provider combinations, plugin config, fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;

use super::bsl;
use super::diagnostic::Diagnostic;
use super::model::*;
use super::yaml::{Node, Pos};

/// The node at a field path like `steps[3].backup.name`, or its nearest ancestor.
pub fn locate(root: &Node, path: &str) -> Pos {
    let mut node = root;
    for seg in segments(path) {
        let next = match seg {
            Seg::Key(k) => node.get(&k),
            Seg::Index(i) => node.as_seq().and_then(|s| s.get(i)),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node.pos
}

/// Like [`locate`], but for a mapping key: points at the key itself.
fn locate_key(root: &Node, path: &str) -> Pos {
    match path.rsplit_once('.') {
        Some((parent, key)) if !key.contains('[') => {
            let mut node = root;
            for seg in segments(parent) {
                let next = match seg {
                    Seg::Key(k) => node.get(&k),
                    Seg::Index(i) => node.as_seq().and_then(|s| s.get(i)),
                };
                match next {
                    Some(n) => node = n,
                    None => return node.pos,
                }
            }
            node.key_node(key).map(|k| k.pos).unwrap_or(node.pos)
        }
        _ => locate(root, path),
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(n) = stripped[..close].parse() {
                    out.push(Seg::Index(n));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

struct Checker<'a> {
    file: &'a Path,
    root: &'a Node,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        let path = path.into();
        let pos = locate(self.root, &path);
        self.out
            .push(Diagnostic::new(self.file, Some(pos), Some(path), msg));
    }

    fn err_key(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        let path = path.into();
        let pos = locate_key(self.root, &path);
        self.out
            .push(Diagnostic::new(self.file, Some(pos), Some(path), msg));
    }
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn names(list: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = list
        .into_iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `1.18`, `v1.18.3`: the Velero versions vdrill can resolve.
pub fn valid_version(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let parts: Vec<&str> = v.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

pub fn check(file: &Path, dir: &Path, root: &Node, s: &Scenario) -> Vec<Diagnostic> {
    let mut c = Checker {
        file,
        root,
        out: Vec::new(),
    };

    // metadata
    if !dns_label(&s.metadata.name) {
        c.err(
            "metadata.name",
            format!(
                "`{}` is not a valid name: use lower-case letters, digits and `-` (at most 63)",
                s.metadata.name
            ),
        );
    }
    for (i, tag) in s.metadata.tags.iter().enumerate() {
        if tag.is_empty()
            || !tag
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            c.err(
                format!("metadata.tags[{i}]"),
                format!("tag `{tag}` may use letters, digits, `-` and `_` only"),
            );
        }
    }

    // environment
    let env = &s.environment;
    if env.cluster != ClusterKind::Existing {
        if env.kubeconfig.is_some() {
            c.err_key(
                "environment.kubeconfig",
                "`kubeconfig` applies to `cluster: existing` only",
            );
        }
        if env.context.is_some() {
            c.err_key(
                "environment.context",
                "`context` applies to `cluster: existing` only",
            );
        }
    }
    let kinds = env.storage.kinds();
    if kinds.is_empty() {
        c.err(
            "environment.storage",
            "name at least one storage (`localstack`, `azurite`, `fake-gcs`, `aws`)",
        );
    }
    for (i, k) in kinds.iter().enumerate() {
        if let Some(first) = kinds[..i].iter().find(|f| {
            f.is_aws() == k.is_aws() && f.is_azure() == k.is_azure() && f.is_gcp() == k.is_gcp()
        }) {
            c.err(
                "environment.storage",
                format!(
                    "`{}` and `{}` are storages of the same cloud; name one storage per cloud",
                    first.as_str(),
                    k.as_str()
                ),
            );
        }
    }
    for k in kinds {
        match k {
            StorageKind::Azure => c.err(
                "environment.storage",
                "`storage: azure` (real Azure Blob Storage + Key Vault) is not available: vdrill has no Azure provider yet; use `storage: aws`",
            ),
            StorageKind::Gcp => c.err(
                "environment.storage",
                "`storage: gcp` (real Google Cloud Storage + Cloud KMS) is not available: vdrill has no Google credentials support yet; use `fake-gcs` on the local test bed",
            ),
            StorageKind::Localstack | StorageKind::Aws | StorageKind::Azurite | StorageKind::FakeGcs => {}
        }
        // A kind cluster gets LocalStack as a container on its Docker network; the other
        // emulators run only as processes on this machine's loopback.
        let kind_localstack = env.cluster == ClusterKind::Kind && *k == StorageKind::Localstack;
        if env.cluster != ClusterKind::Local && k.is_local() && !kind_localstack {
            c.err(
                "environment.storage",
                format!(
                    "`storage: {}` runs on this machine's loopback, which Velero inside a `{}` cluster cannot reach; use `cluster: local`, real `aws` storage, or `localstack` with `cluster: kind`",
                    k.as_str(),
                    env.cluster.as_str()
                ),
            );
        }
        if env.cluster == ClusterKind::Local && *k == StorageKind::Aws {
            c.err(
                "environment.storage",
                "the local test bed (`cluster: local`) runs with its own emulator, `storage: localstack`; real `aws` storage needs `cluster: kind` or `cluster: existing`",
            );
        }
    }
    if env.region.is_some() && !env.storage.is_aws() {
        c.err_key(
            "environment.region",
            "`region` applies to AWS storage (`localstack`, `aws`) only",
        );
    }

    // keys
    for (name, key) in &s.keys {
        let p = format!("keys.{name}");
        if !dns_label(name) {
            c.err_key(
                &p,
                format!("key name `{name}` may use lower-case letters, digits and `-` only"),
            );
        }
        match key.provider {
            KeyProvider::AwsKms | KeyProvider::CustomerKey if !env.storage.is_aws() => c.err(
                format!("{p}.provider"),
                format!("`{}` keys need AWS storage (`localstack` or `aws`), but the environment uses `{}`", key.provider.as_str(), env.storage.as_str()),
            ),
            KeyProvider::AzureKeyvault if !env.storage.is_azure() => c.err(
                format!("{p}.provider"),
                format!("`azure-keyvault` keys need Azure storage (`azurite` or `azure`), but the environment uses `{}`", env.storage.as_str()),
            ),
            KeyProvider::GcpKms if !env.storage.is_gcp() => c.err(
                format!("{p}.provider"),
                format!("`gcp-kms` keys need GCP storage (`fake-gcs` or `gcp`), but the environment uses `{}`", env.storage.as_str()),
            ),
            _ => {}
        }
        match key.provider {
            KeyProvider::AwsKms => match &key.alias {
                None => c.err(&p, "missing required field `alias` (an `aws-kms` key is addressed by an alias such as `alias/velero-backups`)"),
                Some(a) if !a.starts_with("alias/") || a.len() <= 6 => {
                    c.err(format!("{p}.alias"), format!("`{a}` is not a KMS alias; it must start with `alias/`"))
                }
                Some(a) if a.starts_with("alias/aws/") => {
                    c.err(format!("{p}.alias"), "aliases under `alias/aws/` are reserved for AWS managed keys")
                }
                Some(a) if !a[6..].chars().all(|ch| ch.is_ascii_alphanumeric() || "/_-".contains(ch)) => {
                    c.err(format!("{p}.alias"), format!("`{a}`: an alias may use letters, digits, `/`, `_` and `-` only"))
                }
                _ => {}
            },
            KeyProvider::AzureKeyvault => match &key.name {
                None => c.err(&p, "missing required field `name` (the Key Vault key name)"),
                Some(n) if n.is_empty() || !n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') => {
                    c.err(format!("{p}.name"), format!("`{n}`: Key Vault key names use letters, digits and `-` only"))
                }
                _ => {}
            },
            KeyProvider::GcpKms => match &key.name {
                None => c.err(&p, "missing required field `name` (the Cloud KMS key: `projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`)"),
                Some(n) if !bsl::is_cloud_kms_key(n) => c.err(
                    format!("{p}.name"),
                    format!("`{n}` is not a Cloud KMS key name; write `projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`"),
                ),
                _ => {}
            },
            KeyProvider::CustomerKey => {}
        }
        if key.alias.is_some() && key.provider != KeyProvider::AwsKms {
            c.err_key(
                format!("{p}.alias"),
                "`alias` applies to `aws-kms` keys only",
            );
        }
        if key.name.is_some()
            && !matches!(
                key.provider,
                KeyProvider::AzureKeyvault | KeyProvider::GcpKms
            )
        {
            c.err_key(
                format!("{p}.name"),
                "`name` applies to `azure-keyvault` and `gcp-kms` keys only",
            );
        }
        if key.vault.is_some() && key.provider != KeyProvider::AzureKeyvault {
            c.err_key(
                format!("{p}.vault"),
                "`vault` applies to `azure-keyvault` keys only",
            );
        }
        if key.existing && env.storage.is_local() {
            c.err_key(format!("{p}.existing"), "the local test bed starts empty; `existing: true` needs real `aws` or `azure` storage");
        }
        if key.existing && key.provider == KeyProvider::CustomerKey {
            c.err_key(
                format!("{p}.existing"),
                "customer keys are generated per run; `existing` does not apply",
            );
        }
    }
    let aliases: Vec<(&String, &String)> = s
        .keys
        .iter()
        .filter_map(|(n, k)| k.alias.as_ref().map(|a| (n, a)))
        .collect();
    for (i, (n, a)) in aliases.iter().enumerate() {
        if let Some((first, _)) = aliases[..i].iter().find(|(_, b)| b == a) {
            c.err(
                format!("keys.{n}.alias"),
                format!("alias `{a}` is already used by key `{first}`"),
            );
        }
    }

    // velero
    let v = &s.velero;
    if !valid_version(&v.version) {
        c.err(
            "velero.version",
            format!(
                "`{}` is not a Velero version; write `1.18` or `1.18.3`",
                v.version
            ),
        );
    }
    if let Some(ns) = &v.namespace
        && !dns_label(ns)
    {
        c.err(
            "velero.namespace",
            format!("`{ns}` is not a valid namespace name"),
        );
    }
    for (i, plugin) in v.plugins.iter().enumerate() {
        let is_image = plugin.contains('/') || plugin.contains(':');
        if !is_image && !["aws", "azure", "gcp"].contains(&plugin.as_str()) {
            c.err(
                format!("velero.plugins[{i}]"),
                format!(
                    "unknown plugin `{plugin}`; use `aws`, `azure`, `gcp` or an image reference"
                ),
            );
        }
        if is_image && s.environment.cluster == ClusterKind::Local {
            c.err(
                format!("velero.plugins[{i}]"),
                "the local test bed builds its plugins; name them `aws`, `azure` or `gcp`",
            );
        }
    }
    if let Some(pw) = &v.repository_password {
        check_password(&mut c, "velero.repositoryPassword", pw, false);
    }
    if v.locations.is_empty() {
        c.err(
            "velero.locations",
            "at least one backup storage location is needed",
        );
    }
    let mut seen = BTreeSet::new();
    let defaults: Vec<usize> = v
        .locations
        .iter()
        .enumerate()
        .filter(|(_, l)| l.default)
        .map(|(i, _)| i)
        .collect();
    if defaults.len() > 1 {
        c.err(
            format!("velero.locations[{}].default", defaults[1]),
            format!(
                "only one location can be the default; `{}` already is",
                v.locations[defaults[0]].name
            ),
        );
    }
    for (i, loc) in v.locations.iter().enumerate() {
        let p = format!("velero.locations[{i}]");
        if !dns_label(&loc.name) {
            c.err(
                format!("{p}.name"),
                format!("`{}` is not a valid location name", loc.name),
            );
        }
        if !seen.insert(loc.name.clone()) {
            c.err(
                format!("{p}.name"),
                format!("duplicate location name `{}`", loc.name),
            );
        }
        let storage = env.storage.for_provider(loc.provider);
        if storage.is_none() {
            let wants = match loc.provider {
                LocationProvider::Aws => "`localstack` or `aws`",
                LocationProvider::Azure => "`azurite` or `azure`",
                LocationProvider::Gcp => "`fake-gcs` or `gcp`",
            };
            c.err(
                format!("{p}.provider"),
                format!(
                    "a `{}` location does not fit `storage: {}`; it needs {wants} storage",
                    loc.provider.as_str(),
                    env.storage.as_str()
                ),
            );
        }
        let bucket_ok = loc.bucket.len() >= 3
            && loc.bucket.len() <= 63
            && loc
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && loc.bucket.as_bytes()[0].is_ascii_alphanumeric();
        if !bucket_ok {
            c.err(format!("{p}.bucket"), format!("`{}` is not a valid bucket/container name (3-63 lower-case letters, digits, `-`, `.`)", loc.bucket));
        }
        if let Some(prefix) = &loc.prefix
            && (prefix.starts_with('/') || prefix.ends_with('/') || prefix.is_empty())
        {
            c.err(
                format!("{p}.prefix"),
                "a prefix must not start or end with `/`",
            );
        }
        if loc.existing && env.storage.is_local() {
            c.err_key(format!("{p}.existing"), "the local test bed starts empty; `existing: true` needs real `aws` or `azure` storage");
        }
        if loc.existing && loc.bucket_default_key.is_some() {
            c.err_key(
                format!("{p}.bucketDefaultKey"),
                "vdrill sets bucket default encryption only on buckets it creates; on an `existing: true` bucket it would change the bucket's encryption: leave `bucketDefaultKey` out",
            );
        }
        if let Some(k) = &loc.bucket_default_key {
            match s.keys.get(k) {
                Some(spec) if spec.provider == KeyProvider::AwsKms => {}
                Some(spec) => c.err(
                    format!("{p}.bucketDefaultKey"),
                    format!(
                        "bucket default encryption needs an `aws-kms` key; `{k}` is `{}`",
                        spec.provider.as_str()
                    ),
                ),
                None => c.err(
                    format!("{p}.bucketDefaultKey"),
                    format!(
                        "no key named `{k}`; declared keys: {}",
                        names(s.keys.keys())
                    ),
                ),
            }
        }
        let storage = storage.unwrap_or(
            env.storage
                .kinds()
                .first()
                .copied()
                .unwrap_or(StorageKind::Localstack),
        );
        for issue in bsl::check(loc.provider, storage, &loc.config, &s.keys) {
            match issue.key {
                Some(k) => {
                    let path = format!("{p}.config.{k}");
                    if issue.message.contains("rejects config key")
                        || issue.message.contains("is set by")
                    {
                        c.err_key(path, issue.message)
                    } else {
                        c.err(path, issue.message)
                    }
                }
                None => c.err(format!("{p}.config"), issue.message),
            }
        }
    }
    let location_names: Vec<&str> = v.locations.iter().map(|l| l.name.as_str()).collect();

    // workloads
    let mut ids = BTreeMap::new();
    let mut namespaces = BTreeSet::new();
    for (i, w) in s.workloads.iter().enumerate() {
        let p = format!("workloads[{i}]");
        if !dns_label(&w.namespace) {
            c.err(
                format!("{p}.namespace"),
                format!("`{}` is not a valid namespace name", w.namespace),
            );
        } else if ["default", "kube-system", "kube-public", "kube-node-lease"]
            .contains(&w.namespace.as_str())
            || Some(w.namespace.as_str()) == Some(v.namespace.as_deref().unwrap_or("velero"))
        {
            c.err(
                format!("{p}.namespace"),
                format!(
                    "namespace `{}` is reserved; a drill deletes its workload namespaces",
                    w.namespace
                ),
            );
        }
        if !namespaces.insert(w.namespace.clone()) {
            c.err(
                format!("{p}.namespace"),
                format!("two workloads share namespace `{}`", w.namespace),
            );
        }
        if ids.insert(w.id().to_string(), i).is_some() {
            c.err(
                format!("{p}.name"),
                format!("duplicate workload `{}`", w.id()),
            );
        }
        let fixture = dir.join(&w.fixture);
        match crate::fixture::load(&fixture) {
            Ok(_) => {}
            Err(errors) if errors.len() == 1 && errors[0].pos.is_none() && !fixture.exists() => c
                .err(
                    format!("{p}.fixture"),
                    format!(
                        "fixture `{}` not found (fixture paths are relative to the scenario file)",
                        w.fixture
                    ),
                ),
            Err(errors) => {
                for e in errors {
                    c.out.push(Diagnostic::new(
                        &e.file,
                        e.pos,
                        None,
                        format!("{} (fixture of workload `{}`)", e.message, w.id()),
                    ));
                }
            }
        }
    }
    let workload_ids: Vec<String> = s.workloads.iter().map(|w| w.id().to_string()).collect();

    // steps
    let mut backups: BTreeMap<String, String> = BTreeMap::new(); // name -> location
    let mut restores = BTreeSet::new();
    let mut deployed = BTreeSet::new();
    let all_backups: BTreeSet<String> = s
        .steps
        .iter()
        .chain(&s.finally)
        .filter_map(|st| {
            if let Step::Backup(b) = st {
                Some(b.name.clone())
            } else {
                None
            }
        })
        .collect();
    for (list, section) in [(&s.steps, "steps"), (&s.finally, "finally")] {
        for (i, step) in list.iter().enumerate() {
            let p = format!("{section}[{i}].{}", step.kind());
            check_step(
                &mut c,
                s,
                step,
                &p,
                &workload_ids,
                &location_names,
                &all_backups,
                &mut backups,
                &mut restores,
                &mut deployed,
            );
        }
    }
    if s.steps.is_empty() {
        c.err("steps", "a scenario needs at least one step");
    }
    c.out
}

fn check_password(c: &mut Checker, p: &str, pw: &SecretSource, upgrade: bool) {
    let set = [pw.from_env.is_some(), pw.generate, pw.original]
        .iter()
        .filter(|b| **b)
        .count();
    if set != 1 {
        c.err(
            p,
            if upgrade {
                "set exactly one of `fromEnv: <VARIABLE>`, `generate: true` or `original: true`"
            } else {
                "set exactly one of `fromEnv: <VARIABLE>` or `generate: true`"
            },
        );
        return;
    }
    if pw.original && !upgrade {
        c.err(
            format!("{p}.original"),
            "`original: true` is for `upgrade-velero` (the password of the install); the install itself needs `fromEnv: <VARIABLE>` or `generate: true`",
        );
    }
    if let Some(var) = &pw.from_env
        && (var.is_empty()
            || !var
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
    {
        c.err(
            format!("{p}.fromEnv"),
            format!("`{var}` is not an environment variable name"),
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn check_step(
    c: &mut Checker,
    s: &Scenario,
    step: &Step,
    p: &str,
    workloads: &[String],
    locations: &[&str],
    all_backups: &BTreeSet<String>,
    backups: &mut BTreeMap<String, String>,
    restores: &mut BTreeSet<String>,
    deployed: &mut BTreeSet<String>,
) {
    let field = |f: &str| format!("{p}.{f}");
    let workload_exists = |c: &mut Checker, path: String, w: &str| -> bool {
        if workloads.iter().any(|x| x == w) {
            return true;
        }
        let mut msg = format!("no workload `{w}`; workloads: {}", names(workloads));
        if let Some(best) =
            super::de::closest(w, &workloads.iter().map(String::as_str).collect::<Vec<_>>())
        {
            msg = format!(
                "no workload `{w}` (did you mean `{best}`?); workloads: {}",
                names(workloads)
            );
        }
        c.err(path, msg);
        false
    };
    let key_exists = |c: &mut Checker, path: String, k: &str| -> Option<KeyProvider> {
        match s.keys.get(k) {
            Some(spec) => Some(spec.provider),
            None => {
                let declared: Vec<&str> = s.keys.keys().map(String::as_str).collect();
                let mut msg = format!("no key `{k}` is declared in `keys`");
                if let Some(best) = super::de::closest(k, &declared) {
                    msg.push_str(&format!(" (did you mean `{best}`?)"));
                }
                msg.push_str(&format!("; declared keys: {}", names(&declared)));
                c.err(path, msg);
                None
            }
        }
    };
    let existing = |k: &str| s.keys.get(k).is_some_and(|spec| spec.existing);
    let backup_before = |c: &mut Checker,
                         path: String,
                         b: &str,
                         backups: &BTreeMap<String, String>| {
        if !backups.contains_key(b) {
            if all_backups.contains(b) {
                c.err(path, format!("backup `{b}` is taken later in the drill; a step can only use a backup taken before it"));
            } else {
                c.err(
                    path,
                    format!(
                        "no backup step named `{b}`; backups: {}",
                        names(backups.keys())
                    ),
                );
            }
        }
    };

    if let Some(expect) = step.expect() {
        if expect.phase.is_some() && !matches!(step, Step::Backup(_) | Step::Restore(_)) {
            c.err(format!("{p}.expect.phase"), "`phase` applies to `backup` and `restore` steps; use `error` to expect another step to fail");
        }
        if expect.phase == Some(Phase::Completed) && expect.error.is_some() {
            c.err(
                format!("{p}.expect.error"),
                "`error` contradicts `phase: Completed`",
            );
        }
        if let Some(re) = &expect.error
            && let Err(e) = Regex::new(re)
        {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            c.err(
                format!("{p}.expect.error"),
                format!("not a valid regular expression: {first}"),
            );
        }
    }

    match step {
        Step::Deploy(d) => {
            if workload_exists(c, field("workload"), &d.workload) {
                deployed.insert(d.workload.clone());
            }
        }
        Step::Backup(b) => {
            if !dns_label(&b.name) {
                c.err(
                    field("name"),
                    format!(
                        "`{}` is not a valid backup name: lower-case letters, digits and `-`",
                        b.name
                    ),
                );
            }
            for (i, w) in b.workloads.iter().enumerate() {
                workload_exists(c, format!("{p}.workloads[{i}]"), w);
            }
            let loc = b.location.clone().unwrap_or_default();
            if let Some(l) = &b.location
                && !locations.contains(&l.as_str())
            {
                c.err(
                    field("location"),
                    format!("no location `{l}`; locations: {}", names(locations)),
                );
            }
            if b.file_system_backup && s.environment.cluster == ClusterKind::Local {
                c.err(field("fileSystemBackup"), "file-system (Kopia) backups need pods and a kubelet; the local test bed (`cluster: local`) has none");
            }
            if backups.insert(b.name.clone(), loc).is_some() {
                c.err(field("name"), format!("duplicate backup name `{}`", b.name));
            }
        }
        Step::Restore(r) => {
            backup_before(c, field("backup"), &r.backup, backups);
            if let Some(n) = &r.name {
                if !dns_label(n) {
                    c.err(field("name"), format!("`{n}` is not a valid restore name"));
                }
                if !restores.insert(n.clone()) {
                    c.err(field("name"), format!("duplicate restore name `{n}`"));
                }
            }
        }
        Step::DeleteNamespace(d) => {
            if !s.workloads.iter().any(|w| w.namespace == d.namespace) {
                c.err(
                    field("namespace"),
                    format!("`{}` is not a workload namespace; a drill deletes only what it deployed: {}", d.namespace, names(s.workloads.iter().map(|w| &w.namespace))),
                );
            }
        }
        Step::RotateKey(r) => {
            if let Some(provider) = key_exists(c, field("key"), &r.key)
                && provider == KeyProvider::CustomerKey
            {
                c.err(field("key"), "customer keys cannot be rotated by the key manager; declare a second `customer-key` key and a second location instead");
            }
            if r.mode == RotateMode::NewKey
                && s.keys
                    .get(&r.key)
                    .is_some_and(|k| k.provider == KeyProvider::AzureKeyvault)
            {
                c.err(
                    field("mode"),
                    "Key Vault has no aliases to repoint: rotating an `azure-keyvault` key makes a new version of the same key; leave `mode` out (`on-demand`)",
                );
            }
            if r.mode == RotateMode::NewKey && existing(&r.key) {
                c.err(
                    field("key"),
                    format!("`{}` is an existing key (`existing: true`); `mode: new-key` would repoint the alias of a key the run did not create: use `mode: on-demand`", r.key),
                );
            }
        }
        Step::DisableKey(k) | Step::EnableKey(k) | Step::CancelKeyDeletion(k) => {
            if let Some(provider) = key_exists(c, field("key"), &k.key)
                && provider == KeyProvider::CustomerKey
            {
                c.err(field("key"), format!("`{}` is a customer key, which no key manager holds; `{}` needs an `aws-kms` or `azure-keyvault` key", k.key, step.kind()));
            }
            let re_enabled = s
                .finally
                .iter()
                .any(|f| matches!(f, Step::EnableKey(e) if e.key == k.key));
            if matches!(step, Step::DisableKey(_)) && existing(&k.key) && !re_enabled {
                c.err(field("key"), format!("an existing key disabled by the drill must be re-enabled in `finally`: add `- enable-key: {}`", k.key));
            }
        }
        Step::ScheduleKeyDeletion(k) => {
            if let Some(provider) = key_exists(c, field("key"), &k.key) {
                if provider == KeyProvider::CustomerKey {
                    c.err(field("key"), format!("`{}` is a customer key; only managed keys can be scheduled for deletion", k.key));
                }
                if existing(&k.key) {
                    c.err(field("key"), format!("`{}` is an existing key (`existing: true`); vdrill never schedules the deletion of a key it did not create", k.key));
                }
                if let Some(days) = k.days
                    && provider == KeyProvider::AwsKms
                    && !(7..=30).contains(&days)
                {
                    c.err(
                        field("days"),
                        format!("AWS KMS accepts a waiting period of 7 to 30 days, not {days}"),
                    );
                }
                if k.days.is_some() && provider == KeyProvider::AzureKeyvault {
                    c.err(
                        field("days"),
                        "on Key Vault, `schedule-key-deletion` is a soft delete and the retention period is a property of the vault: leave `days` out",
                    );
                }
            }
        }
        Step::UpgradeVelero(u) => {
            if !valid_version(&u.version) {
                c.err(
                    field("version"),
                    format!(
                        "`{}` is not a Velero version; write `1.18` or `1.18.3`",
                        u.version
                    ),
                );
            }
            for (name, changed) in &u.locations {
                let lp = field(&format!("locations.{name}"));
                let Some(loc) = s.velero.locations.iter().find(|l| &l.name == name) else {
                    c.err_key(
                        lp,
                        format!(
                            "no location `{name}` in `velero.locations`; locations: {}",
                            names(locations)
                        ),
                    );
                    continue;
                };
                let storage = s
                    .environment
                    .storage
                    .for_provider(loc.provider)
                    .unwrap_or(StorageKind::Localstack);
                for issue in bsl::check(loc.provider, storage, &changed.config, &s.keys) {
                    match issue.key {
                        Some(k) => c.err_key(format!("{lp}.config.{k}"), issue.message),
                        None => c.err(format!("{lp}.config"), issue.message),
                    }
                }
            }
            if let Some(pw) = &u.repository_password {
                check_password(c, &field("repositoryPassword"), pw, true);
            }
        }
        Step::Wait(w) => match humantime::parse_duration(&w.duration) {
            Ok(d) if d.as_secs() > 3600 => c.err(field("duration"), "waits are limited to 1h"),
            Ok(_) => {}
            Err(_) => c.err(
                field("duration"),
                format!(
                    "`{}` is not a duration; write it like `30s` or `5m`",
                    w.duration
                ),
            ),
        },
        Step::AssertEncryption(a) => {
            backup_before(c, field("backup"), &a.backup, backups);
            if let Some(provider) = key_exists(c, field("key"), &a.key)
                && a.repository == Some(RepositoryAudit::NotUnderKey)
                && provider != KeyProvider::AwsKms
            {
                c.err(
                    field("repository"),
                    format!("`repository: not-under-key` checks which Kopia objects lack an SSE-KMS key; `{}` is not an `aws-kms` key", a.key),
                );
            }
        }
        Step::AssertRestored(a) => {
            if workload_exists(c, field("workload"), &a.workload) && !deployed.contains(&a.workload)
            {
                c.err(field("workload"), format!("workload `{}` is never deployed before this step; add `- deploy: {}` earlier", a.workload, a.workload));
            }
        }
    }
}
