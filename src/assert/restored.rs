//! assert-restored: restored objects equal the deployed ones, after removing
//! what the API server, controllers and Velero legitimately change.

use serde_json::Value as Json;

/// Fields no restore preserves, removed before comparing.
pub const IGNORED_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Label and annotation prefixes/keys that controllers and Velero add.
const IGNORED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    // A PVC's binding: the provisioner, node and PV controller write these when it
    // binds, and a restored PVC binds anew (file-system backups restore into a new PV).
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];
const VELERO_PREFIX: &str = "velero.io/";
/// The init container Velero adds to a pod whose volumes it restores from Kopia.
const VELERO_RESTORE_WAIT: &str = "restore-wait";

/// Field paths ignored for some kinds, because the cluster assigns them anew.
pub fn kind_ignores(kind: &str) -> &'static [&'static str] {
    match kind {
        // Velero drops the cluster IP so the Service gets a new one.
        "Service" => &["spec.clusterIP", "spec.clusterIPs"],
        // Velero removes the binding of a PVC whose volume it did not restore.
        "PersistentVolumeClaim" => &["spec.volumeName"],
        // The scheduler places the pod anew.
        "Pod" => &["spec.nodeName"],
        _ => &[],
    }
}

/// A comparable form of an object.
pub fn normalize(obj: &Json, extra_ignores: &[String]) -> Json {
    let mut o = obj.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Json::as_object_mut) {
            for f in IGNORED_METADATA {
                meta.remove(*f);
            }
            for field in ["labels", "annotations"] {
                if let Some(m) = meta.get_mut(field).and_then(Json::as_object_mut) {
                    m.retain(|k, _| {
                        !k.starts_with(VELERO_PREFIX) && !IGNORED_ANNOTATIONS.contains(&k.as_str())
                    });
                    if m.is_empty() {
                        meta.remove(field);
                    }
                }
            }
        }
    }
    let kind = obj["kind"].as_str().unwrap_or_default();
    // A file-system restore adds Velero's init container that waits for the volume data.
    if kind == "Pod"
        && let Some(inits) = o
            .pointer_mut("/spec/initContainers")
            .and_then(Json::as_array_mut)
    {
        inits.retain(|c| c["name"] != VELERO_RESTORE_WAIT);
        if inits.is_empty() {
            o["spec"]
                .as_object_mut()
                .map(|m| m.remove("initContainers"));
        }
    }
    for path in kind_ignores(kind)
        .iter()
        .map(|s| s.to_string())
        .chain(extra_ignores.iter().cloned())
    {
        remove_path(&mut o, &path);
    }
    o
}

fn remove_path(v: &mut Json, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = v;
    for p in parts {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Differences between an expected and an actual object, one per field path.
/// Values of Secrets are never printed, only that they differ.
pub fn diff(expected: &Json, actual: &Json) -> Vec<String> {
    let secret = expected["kind"].as_str() == Some("Secret");
    let mut out = Vec::new();
    walk("", expected, actual, secret, &mut out);
    out
}

fn show(v: &Json, secret: bool, path: &str) -> String {
    if secret && (path.starts_with("data") || path.starts_with("stringData")) {
        return "<secret value>".into();
    }
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

fn walk(path: &str, e: &Json, a: &Json, secret: bool, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (e, a) {
        (Json::Object(em), Json::Object(am)) => {
            let keys: std::collections::BTreeSet<&String> = em.keys().chain(am.keys()).collect();
            for k in keys {
                match (em.get(k), am.get(k)) {
                    (Some(ev), Some(av)) => walk(&join(k), ev, av, secret, out),
                    (Some(ev), None) => out.push(format!(
                        "{}: missing (expected {})",
                        join(k),
                        show(ev, secret, &join(k))
                    )),
                    (None, Some(av)) => out.push(format!(
                        "{}: unexpected {}",
                        join(k),
                        show(av, secret, &join(k))
                    )),
                    (None, None) => {}
                }
            }
        }
        (Json::Array(ea), Json::Array(aa)) if ea.len() == aa.len() => {
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                walk(&format!("{path}[{i}]"), ev, av, secret, out);
            }
        }
        _ if e == a => {}
        _ => {
            if secret && (path.starts_with("data") || path.starts_with("stringData")) {
                out.push(format!(
                    "{path}: value differs (secret data must match byte for byte)"
                ));
            } else {
                out.push(format!(
                    "{path}: expected {}, found {}",
                    show(e, secret, path),
                    show(a, secret, path)
                ));
            }
        }
    }
}

/// Drop empty maps left behind by normalization, so `{}` and absent compare equal.
pub fn prune(v: &mut Json) {
    if let Some(m) = v.as_object_mut() {
        for (_, child) in m.iter_mut() {
            prune(child);
        }
        m.retain(|_, child| !matches!(child, Json::Object(c) if c.is_empty()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ignores_server_fields_and_velero_labels() {
        let deployed = json!({"kind": "ConfigMap", "metadata": {"name": "c", "uid": "1", "resourceVersion": "5", "labels": {"app": "x"}}, "data": {"k": "v"}});
        let restored = json!({"kind": "ConfigMap", "metadata": {"name": "c", "uid": "2", "resourceVersion": "9", "labels": {"app": "x", "velero.io/backup-name": "b", "velero.io/restore-name": "r"}}, "data": {"k": "v"}});
        assert!(diff(&normalize(&deployed, &[]), &normalize(&restored, &[])).is_empty());
    }

    #[test]
    fn reports_each_field_and_hides_secret_values() {
        let deployed = json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"canary": "YQ==", "other": "Yg=="}});
        let restored =
            json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"canary": "Yw=="}});
        let d = diff(&normalize(&deployed, &[]), &normalize(&restored, &[]));
        assert_eq!(
            d,
            vec![
                "data.canary: value differs (secret data must match byte for byte)".to_string(),
                "data.other: missing (expected <secret value>)".to_string(),
            ]
        );
    }

    #[test]
    fn service_cluster_ip_and_extra_ignores() {
        let a = json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "port": 1, "x": 1}});
        let b = json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"], "port": 1, "x": 2}});
        assert_eq!(
            diff(&normalize(&a, &[]), &normalize(&b, &[])),
            vec!["spec.x: expected 1, found 2".to_string()]
        );
        assert!(
            diff(
                &normalize(&a, &["spec.x".into()]),
                &normalize(&b, &["spec.x".into()])
            )
            .is_empty()
        );
    }
}
