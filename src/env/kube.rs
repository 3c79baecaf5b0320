//! The Kubernetes side of every cluster kind, through kube-rs: server-side
//! apply of fixtures, reading objects back, deleting namespaces and waiting
//! for them to be gone (with a watch, not a sleep).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::Value as Json;

use super::{Cluster, ClusterInfo, ObjectRef};
use crate::fixture::Manifest;
use crate::log::StepLog;

pub const FIELD_MANAGER: &str = "vdrill";

/// A kube client for a kubeconfig file (and optional context).
pub async fn client_for(kubeconfig: &Path, context: Option<&str>) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let opts = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .context("loading kubeconfig")?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

pub fn gvk_of(obj: &Json) -> Result<GroupVersionKind> {
    let api_version = obj["apiVersion"]
        .as_str()
        .context("object has no apiVersion")?;
    let kind = obj["kind"].as_str().context("object has no kind")?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    Ok(GroupVersionKind::gvk(group, version, kind))
}

pub struct KubeCluster {
    pub client: kube::Client,
    info: ClusterInfo,
    resources: Mutex<BTreeMap<String, (ApiResource, ApiCapabilities)>>,
    /// Workload images to run under another name (upstream name to the test bed's).
    images: BTreeMap<String, String>,
}

/// Rename the images of every container (and init container) of a pod or pod template.
fn rename_images(obj: &mut Json, images: &BTreeMap<String, String>) {
    let spec = if obj["kind"] == "Pod" {
        obj.get_mut("spec")
    } else if obj["kind"] == "CronJob" {
        obj.pointer_mut("/spec/jobTemplate/spec/template/spec")
    } else {
        obj.pointer_mut("/spec/template/spec")
    };
    let Some(spec) = spec else { return };
    for list in ["containers", "initContainers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if let Some(new) = c["image"].as_str().and_then(|i| images.get(i)) {
                c["image"] = Json::String(new.clone());
            }
        }
    }
}

impl KubeCluster {
    pub fn new(client: kube::Client, info: ClusterInfo) -> KubeCluster {
        KubeCluster {
            client,
            info,
            resources: Mutex::default(),
            images: BTreeMap::new(),
        }
    }

    /// Deployed workloads run these images instead (e.g. `busybox:1.36` to the test
    /// bed's busybox, when the cluster has no registry).
    pub fn with_images(mut self, images: BTreeMap<String, String>) -> KubeCluster {
        self.images = images;
        self
    }

    /// The API resource of a kind, retried briefly (a new CRD takes a moment to be served).
    pub async fn resource(&self, gvk: &GroupVersionKind) -> Result<(ApiResource, ApiCapabilities)> {
        let key = format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind);
        if let Some(found) = self
            .resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let mut last = None;
        for _ in 0..40 {
            match kube::discovery::pinned_kind(&self.client, gvk).await {
                Ok(found) => {
                    self.resources
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, found.clone());
                    return Ok(found);
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(anyhow!(
            "the API server does not serve {key}: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    pub async fn api_for(
        &self,
        gvk: &GroupVersionKind,
        namespace: Option<&str>,
    ) -> Result<(Api<DynamicObject>, bool)> {
        let (ar, caps) = self.resource(gvk).await?;
        let namespaced = caps.scope == Scope::Namespaced;
        let api = match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (true, None) => Api::default_namespaced_with(self.client.clone(), &ar),
            (false, _) => Api::all_with(self.client.clone(), &ar),
        };
        Ok((api, namespaced))
    }

    /// Server-side apply one object; namespaced objects go into `namespace`.
    pub async fn apply_one(&self, obj: &Json, namespace: Option<&str>) -> Result<Json> {
        let gvk = gvk_of(obj)?;
        let name = obj["metadata"]["name"]
            .as_str()
            .context("object has no metadata.name")?
            .to_string();
        // An object that names its namespace (Velero's manifests do) keeps it.
        let own = obj["metadata"]["namespace"].as_str().map(str::to_string);
        let namespace = namespace.or(own.as_deref());
        let (api, namespaced) = self.api_for(&gvk, namespace).await?;
        let mut obj = obj.clone();
        if namespaced && let Some(ns) = namespace {
            obj["metadata"]["namespace"] = Json::String(ns.to_string());
        }
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying {} {name}", gvk.kind))?;
        if gvk.kind == "CustomResourceDefinition" {
            let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
            tokio::time::timeout(
                Duration::from_secs(60),
                await_condition(crds, &name, conditions::is_crd_established()),
            )
            .await
            .with_context(|| format!("CRD {name} was not established within 60s"))??;
        }
        Ok(serde_json::to_value(applied)?)
    }

    pub async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        api.patch(
            namespace,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&ns),
        )
        .await
        .with_context(|| format!("creating namespace {namespace}"))?;
        Ok(())
    }

    /// Apply objects in dependency order: CRDs, then namespaces, then the rest.
    pub async fn apply_all(
        &self,
        objects: &[Json],
        namespace: Option<&str>,
        log: &StepLog,
    ) -> Result<Vec<Json>> {
        let rank = |o: &Json| match o["kind"].as_str() {
            Some("CustomResourceDefinition") => 0,
            Some("Namespace") => 1,
            _ => 2,
        };
        let mut order: Vec<usize> = (0..objects.len()).collect();
        order.sort_by_key(|i| rank(&objects[*i]));
        let mut applied = vec![Json::Null; objects.len()];
        for i in order {
            let o = &objects[i];
            log.line(format!(
                "apply {} {}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            ));
            applied[i] = self.apply_one(o, namespace).await?;
        }
        Ok(applied)
    }
}

#[async_trait]
impl Cluster for KubeCluster {
    fn info(&self) -> ClusterInfo {
        self.info.clone()
    }

    async fn apply(
        &self,
        namespace: &str,
        manifests: &[Manifest],
        log: &StepLog,
    ) -> Result<Vec<Json>> {
        self.ensure_namespace(namespace).await?;
        let mut objects: Vec<Json> = manifests.iter().map(|m| m.object.clone()).collect();
        if !self.images.is_empty() {
            for o in &mut objects {
                rename_images(o, &self.images);
            }
        }
        self.apply_all(&objects, Some(namespace), log).await
    }

    async fn volume_checksums(
        &self,
        namespace: &str,
        timeout: std::time::Duration,
        log: &StepLog,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        use k8s_openapi::api::core::v1::Pod;
        if self.info.kind == "local" {
            return Ok(BTreeMap::new());
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let t0 = std::time::Instant::now();
        let ready = |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let list = loop {
            let list = pods
                .list(&Default::default())
                .await
                .with_context(|| format!("listing the pods of {namespace}"))?;
            let waiting: Vec<String> = list
                .items
                .iter()
                .filter(|p| !ready(p))
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
            if waiting.is_empty() {
                break list;
            }
            if t0.elapsed() > timeout {
                anyhow::bail!(
                    "pods of {namespace} not Ready after {}s: {}",
                    timeout.as_secs(),
                    waiting.join(", ")
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        let mut out = BTreeMap::new();
        for p in &list.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            let text = pods
                .logs(&name, &Default::default())
                .await
                .with_context(|| format!("reading the log of pod {namespace}/{name}"))?;
            let Some(block) = text
                .split_once("vdrill-checksums-begin\n")
                .and_then(|(_, rest)| rest.split_once("vdrill-checksums-end"))
                .map(|(b, _)| b)
            else {
                continue;
            };
            let sums = crate::assert::file_data::parse_sha256sum(block)
                .map_err(|e| anyhow::anyhow!("pod {namespace}/{name}: its checksums: {e}"))?;
            log.line(format!(
                "pod {namespace}/{name}: {} file(s) checksummed in its volumes",
                sums.len()
            ));
            out.insert(name, sums);
        }
        Ok(out)
    }

    async fn pod_log_values(&self, namespace: &str, key: &str) -> Result<Vec<String>> {
        use k8s_openapi::api::core::v1::Pod;
        if self.info.kind == "local" {
            return Ok(Vec::new());
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut out = Vec::new();
        for p in pods.list(&Default::default()).await?.items {
            let name = p.metadata.name.unwrap_or_default();
            let text = pods
                .logs(&name, &Default::default())
                .await
                .with_context(|| format!("reading the log of pod {namespace}/{name}"))?;
            let prefix = format!("{key}: ");
            out.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix(&prefix))
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty()),
            );
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn get(&self, refs: &[ObjectRef]) -> Result<Vec<Option<Json>>> {
        let mut out = Vec::new();
        for r in refs {
            let gvk = gvk_of(&serde_json::json!({"apiVersion": r.api_version, "kind": r.kind}))?;
            let (api, _) = self.api_for(&gvk, r.namespace.as_deref()).await?;
            let found = api
                .get_opt(&r.name)
                .await
                .with_context(|| format!("reading {r}"))?;
            out.push(found.map(serde_json::to_value).transpose()?);
        }
        Ok(out)
    }

    async fn install_crds(&self, crds: &[Manifest], log: &StepLog) -> Result<()> {
        let objects: Vec<Json> = crds.iter().map(|m| m.object.clone()).collect();
        self.apply_all(&objects, None, log).await.map(|_| ())
    }

    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        Ok(api
            .get_opt(namespace)
            .await
            .with_context(|| format!("reading namespace {namespace}"))?
            .is_some())
    }

    async fn crd_exists(&self, name: &str) -> Result<bool> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        Ok(api
            .get_opt(name)
            .await
            .with_context(|| format!("reading CustomResourceDefinition {name}"))?
            .is_some())
    }

    async fn delete_crd(&self, name: &str, log: &StepLog) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        api.delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting CustomResourceDefinition {name}"))?;
        log.line(format!("deleted CustomResourceDefinition {name}"));
        Ok(())
    }

    async fn delete_namespace(&self, namespace: &str, log: &StepLog) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(ns) = api.get_opt(namespace).await? else {
            log.line(format!("namespace {namespace} does not exist"));
            return Ok(());
        };
        let uid = ns.metadata.uid.clone().unwrap_or_default();
        api.delete(namespace, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting namespace {namespace}"))?;
        log.line(format!(
            "namespace {namespace} is terminating; waiting for it to be gone"
        ));
        // The step's timeout bounds this wait.
        await_condition(api, namespace, conditions::is_deleted(&uid))
            .await
            .context("watching the namespace")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn workload_images_are_renamed_in_pods_and_templates_only_when_listed() {
        let map: super::BTreeMap<String, String> = [(
            "busybox:1.36".to_string(),
            "vdrill.local/workload:busybox".to_string(),
        )]
        .into();
        let mut pod = serde_json::json!({"kind": "Pod", "spec": {
            "initContainers": [{"image": "busybox:1.36"}],
            "containers": [{"image": "busybox:1.36"}, {"image": "nginx:1"}]}});
        super::rename_images(&mut pod, &map);
        assert_eq!(
            pod["spec"]["initContainers"][0]["image"],
            "vdrill.local/workload:busybox"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            "vdrill.local/workload:busybox"
        );
        assert_eq!(pod["spec"]["containers"][1]["image"], "nginx:1");
        let mut deploy = serde_json::json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "containers": [{"image": "busybox:1.36"}]}}}});
        super::rename_images(&mut deploy, &map);
        assert_eq!(
            deploy["spec"]["template"]["spec"]["containers"][0]["image"],
            "vdrill.local/workload:busybox"
        );
        let mut cm = serde_json::json!({"kind": "ConfigMap", "data": {"image": "busybox:1.36"}});
        super::rename_images(&mut cm, &map);
        assert_eq!(cm["data"]["image"], "busybox:1.36");
    }
}
