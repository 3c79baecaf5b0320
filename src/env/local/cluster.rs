//! A Kubernetes control plane of real processes: etcd, kube-apiserver and
//! kube-controller-manager (for namespace deletion, garbage collection and
//! service accounts), on free loopback ports, like controller-runtime's envtest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::manifest::Manifest;
use super::pki::Pki;
use crate::env::process::{Managed, ProcessSpec, Supervisor, free_port, wait_for};
use crate::log::StepLog;

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    pub server: String,
    pub version: String,
    pub client: kube::Client,
    pub pki: Pki,
    /// etcd, kube-apiserver, kube-controller-manager.
    pub processes: Vec<Managed>,
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig (JSON is YAML) with the admin credential embedded.
pub fn write_kubeconfig(path: &Path, server: &str, pki: &Pki) -> Result<()> {
    let kc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "vdrill-local", "cluster": {"server": server, "certificate-authority-data": b64(&pki.ca_pem)}}],
        "users": [{"name": "vdrill-admin", "user": {
            "client-certificate-data": b64(&pki.admin_cert_pem),
            "client-key-data": b64(&pki.admin_key_pem)}}],
        "contexts": [{"name": "vdrill-local", "context": {"cluster": "vdrill-local", "user": "vdrill-admin"}}],
        "current-context": "vdrill-local",
    });
    crate::report::artifacts::write_atomic(path, serde_json::to_string_pretty(&kc)?.as_bytes())?;
    Ok(())
}

async fn etcd_healthy(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(r) => r
            .text()
            .await
            .map(|t| t.contains("\"health\":\"true\""))
            .unwrap_or(false),
        Err(_) => false,
    }
}

async fn apiserver_ready(client: &kube::Client) -> bool {
    let req = http::Request::get("/readyz")
        .body(Vec::new())
        .expect("static request");
    matches!(client.request_text(req).await, Ok(t) if t.trim() == "ok")
}

impl ControlPlane {
    pub async fn start(
        m: &Manifest,
        work: &Path,
        supervisor: &Supervisor,
        log: &StepLog,
    ) -> Result<ControlPlane> {
        let k = m.kubernetes()?;
        let etcd = m.etcd()?;
        let pki = Pki::create(&work.join("pki"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;

        // etcd
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let spec = ProcessSpec::new("etcd", &etcd.bin).args([
            "--name=vdrill".to_string(),
            format!("--data-dir={}", work.join("etcd").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=vdrill={peer_url}"),
            // A throwaway cluster: durability does not matter, speed does.
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ]);
        let mut etcd_proc = supervisor.spawn(&spec)?;
        let health = format!("{client_url}/health");
        let took = wait_for(
            "etcd",
            Duration::from_secs(30),
            &mut [&mut etcd_proc],
            || etcd_healthy(&http, &health),
        )
        .await?;
        log.line(format!(
            "etcd {} ready at {client_url} in {:.1}s",
            etcd.version,
            took.as_secs_f64()
        ));

        // kube-apiserver
        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let spec = ProcessSpec::new("kube-apiserver", &k.kube_apiserver).args([
            format!("--etcd-servers={client_url}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", work.join("apiserver").display()),
            format!("--tls-cert-file={}", pki.server_cert.display()),
            format!("--tls-private-key-file={}", pki.server_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--authorization-mode=RBAC".to_string(),
            "--allow-privileged=true".to_string(),
            "--enable-priority-and-fairness=false".to_string(),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ]);
        let mut api_proc = supervisor.spawn(&spec)?;
        let kubeconfig = work.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &server, &pki)?;
        let client = crate::env::kube::client_for(&kubeconfig, None).await?;
        let took = wait_for(
            "kube-apiserver",
            Duration::from_secs(90),
            &mut [&mut etcd_proc, &mut api_proc],
            || apiserver_ready(&client),
        )
        .await?;
        log.line(format!(
            "kube-apiserver {} ready at {server} in {:.1}s",
            k.version,
            took.as_secs_f64()
        ));

        // kube-controller-manager
        let spec = ProcessSpec::new("kube-controller-manager", &k.kube_controller_manager).args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".to_string(),
            format!("--service-account-private-key-file={}", pki.sa_key.display()),
            format!("--root-ca-file={}", pki.ca_cert.display()),
            "--use-service-account-credentials=false".to_string(),
            // No serving port: nothing to bind.
            "--secure-port=0".to_string(),
            "--controllers=*,-nodeipam,-nodelifecycle,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ttl,-bootstrapsigner,-tokencleaner".to_string(),
            "--v=1".to_string(),
        ]);
        let mut cm_proc = supervisor.spawn(&spec)?;
        // Ready when it has created the default service account of an existing namespace.
        let sa_api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), "default");
        let took = wait_for(
            "kube-controller-manager",
            Duration::from_secs(60),
            &mut [&mut api_proc, &mut cm_proc],
            || {
                let sa_api = sa_api.clone();
                async move { matches!(sa_api.get_opt("default").await, Ok(Some(_))) }
            },
        )
        .await?;
        log.line(format!(
            "kube-controller-manager ready in {:.1}s",
            took.as_secs_f64()
        ));

        Ok(ControlPlane {
            kubeconfig,
            server,
            version: k.version.clone(),
            client,
            pki,
            processes: vec![etcd_proc, api_proc, cm_proc],
        })
    }

    /// Stop in reverse order. The data is thrown away, so a short grace period is enough;
    /// kube-apiserver otherwise waits for its watches to drain.
    pub async fn stop(&mut self) -> Result<()> {
        while let Some(mut p) = self.processes.pop() {
            p.stop(Duration::from_secs(3))
                .await
                .with_context(|| format!("stopping {}", p.name))?;
        }
        Ok(())
    }
}
