//! lowkey-vault (the Azure Key Vault emulator) for one cell: a JVM in a network
//! namespace of its own, reached through a relay on a loopback port of the host.
//!
//! - Why a namespace: besides the vault's HTTPS connector, lowkey-vault opens a
//!   plain-HTTP "token" connector (`--app.token.port`) that hands out tokens and
//!   its default keystore, and that connector binds every interface; no setting
//!   changes that (it is built in `LowkeyVaultApp.createTokenConnector`). In a
//!   fresh network namespace "every interface" is that namespace's loopback only,
//!   so nothing of the emulator is reachable from the network. Making and entering
//!   a namespace needs CAP_SYS_ADMIN: vdrill must run as root for this bed part.
//! - Vault naming: lowkey-vault picks the vault by the request's Host and matches
//!   it strictly against the vaults it registered at start, which carry its own
//!   listen port (`localhost:<server.port>`; a Host with another port gets 404
//!   "Unable to find active vault", measured). The namespace has a port space of
//!   its own, so the vault listens inside it on the same port number as the relay
//!   outside: the URL vdrill uses, the Host header, the vault's name and the key
//!   ids it returns (`https://localhost:<port>/keys/...`) all agree, with no alias
//!   and no relaxed port matching. The vault itself is registered by vdrill once
//!   the app is up (its own default vaults cannot purge deleted keys).
//! - TLS: our own CA and a server certificate it signed (the Azure SDK rejects a
//!   self-signed end-entity certificate), given to Spring Boot as PEM files
//!   (`server.ssl.certificate`, `server.ssl.certificate-private-key`) with the
//!   app's bundled PKCS12 keystore switched off. The server key is RSA: the app's
//!   own TLS settings (kept) offer TLS 1.2 with ECDHE-RSA suites only. The key file
//!   is deleted once the vault serves (Tomcat holds it in memory).
//! - Everything it writes (its temp folders, Tomcat's work dirs) stays in
//!   `<work>/lowkey-vault`, removed by `stop`; `-XX:-UsePerfData` keeps the JVM
//!   out of `/tmp/hsperfdata_*`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use super::manifest::Manifest;
use super::pki::Authority;
use crate::env::process::{Managed, ProcessSpec, Supervisor, wait_for};
use crate::log::{Secret, StepLog};

/// A running lowkey-vault and the relay in front of it.
pub struct LowkeyVault {
    /// `https://localhost:<port>`: the vault's URL as vdrill (and the key ids) spell it.
    pub url: String,
    /// The CA that signed the vault's server certificate (the only one to trust).
    pub ca_pem: String,
    /// A bearer token for the vault (lowkey-vault accepts any non-empty one).
    pub token: Secret,
    /// The JVM (pid = the process group leader, in the vault's network namespace).
    pub process: Managed,
    /// The relay's port on the host, and the vault's port inside its namespace.
    pub port: u16,
    /// How long it took until the vault answered over HTTPS through the relay.
    pub ready_in: Duration,
    relay: Option<Relay>,
    /// The relay as a process of its own (`hand_relay_to`).
    relay_process: Option<Managed>,
    dir: PathBuf,
}

impl std::fmt::Debug for LowkeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LowkeyVault")
            .field("url", &self.url)
            .field("pid", &self.process.pid)
            .finish_non_exhaustive()
    }
}

/// An HTTPS client that trusts only the vault's CA, for probing it.
fn probe_client(ca_pem: &str) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
        .timeout(Duration::from_secs(3))
        .build()?)
}

/// The vault's key list: 401 without a token (with its Bearer challenge), 200 with one.
fn keys_url(url: &str) -> String {
    format!("{url}/keys?api-version=7.5")
}

/// The token connector's port inside the namespace (unreachable from outside; any free number).
fn token_port(vault_port: u16) -> u16 {
    if vault_port == 8080 { 8081 } else { 8080 }
}

/// A program from PATH or the usual system folders (`ip` lives in /usr/sbin).
fn tool(name: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` is not installed (Debian package {package}); lowkey-vault needs it to run in a network namespace of its own"))
}

/// The network namespace a process is in, as the kernel names it (`net:[4026531840]`).
pub fn netns_of(pid: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|p| p.display().to_string())
}

impl LowkeyVault {
    pub async fn start(
        m: &Manifest,
        work: &Path,
        supervisor: &Supervisor,
        log: &StepLog,
    ) -> Result<LowkeyVault> {
        let lk = m.lowkey_vault.as_ref().context("lowkey-vault (the Key Vault emulator) is not in the local test bed; run ci/testbed/setup.sh lowkey-vault")?;
        let euid = nix::unistd::geteuid();
        if !euid.is_root() {
            bail!(
                "lowkey-vault runs in a network namespace of its own (its token endpoint binds every interface and no setting changes that), and making one needs root (CAP_SYS_ADMIN); vdrill runs as uid {euid}: run it as root to use the Key Vault emulator"
            );
        }
        let unshare = tool("unshare", "util-linux")?;
        let ip = tool("ip", "iproute2")?;
        let host_ns = netns_of("self").context("cannot read /proc/self/ns/net")?;

        // The relay's port is taken (bound) now, so nothing can take it while the
        // JVM starts; inside the namespace the same number is free by construction.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the relay for lowkey-vault")?;
        let port = listener.local_addr()?.port();

        let dir = work.join("lowkey-vault");
        let tls = dir.join("tls");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let ca = Authority::new("vdrill-lowkey-vault-ca")?;
        let ca_pem = ca.pem();
        let (cert_pem, key_pem) = ca.server_rsa("lowkey-vault", &[])?;
        let redactor = supervisor.redactor();
        // Registered so that no log can show it, should anything ever print it.
        let _ = redactor.secret(key_pem.as_bytes());
        let cert = tls.join("server.crt");
        let key = tls.join("server.key");
        crate::env::write_private(&cert, cert_pem.as_bytes())?;
        crate::env::write_private(&key, key_pem.as_bytes())?;
        let token = redactor.secret(format!(
            "lowkey-{}",
            crate::env::hex(&crate::env::random_bytes(24)?)
        ));

        // `unshare --net` makes the namespace and execs sh, which brings its loopback
        // up and execs the JVM: one process (the group leader the supervisor records).
        let spec = ProcessSpec::new("lowkey-vault", &unshare)
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                r#""$0" link set lo up && exec "$@""#,
            ])
            .arg(ip.display().to_string())
            .arg(lk.java.display().to_string())
            .args([
                "-Xmx128m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-XX:-UsePerfData",
            ])
            .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
            .arg("-jar")
            .arg(lk.jar.display().to_string())
            .arg("--server.address=127.0.0.1")
            .arg(format!("--server.port={port}"))
            .arg(format!("--app.token.port={}", token_port(port)))
            .arg(format!("--server.ssl.certificate=file:{}", cert.display()))
            .arg(format!(
                "--server.ssl.certificate-private-key=file:{}",
                key.display()
            ))
            // Off: the app's bundled keystore. Left set, its password is applied to our PEM
            // key and Tomcat fails ("Given final block not properly padded", measured).
            .args([
                "--server.ssl.key-store=",
                "--server.ssl.key-store-password=",
            ])
            // No vaults of its own making: the one vdrill uses is registered once it is up.
            .arg("--LOWKEY_VAULT_NAMES=-")
            .cwd(&dir);
        let mut process = supervisor.spawn(&spec)?;
        let pid = process.pid.to_string();
        wait_for(
            "lowkey-vault's network namespace",
            Duration::from_secs(10),
            &mut [&mut process],
            || {
                let ns = netns_of(&pid);
                let host = host_ns.clone();
                async move { ns.is_some_and(|n| n != host) }
            },
        )
        .await?;
        let inner = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let relay = Relay::start(listener, process.pid, inner)?;

        let url = format!("https://localhost:{port}");
        let client = probe_client(&ca_pem)?;
        // Without Authorization the vault answers 401 with its Bearer challenge.
        let probe = keys_url(&url);
        let ready_in = wait_for(
            "lowkey-vault",
            Duration::from_secs(120),
            &mut [&mut process],
            || {
                let req = client.get(&probe).send();
                async move {
                    req.await
                        .is_ok_and(|r| r.status().as_u16() == 401 || r.status().is_success())
                }
            },
        )
        .await?;
        // The vault: lowkey-vault's own vaults are "Recoverable" (a deleted key can be
        // recovered but never purged, as with purge protection on); this one is how a new
        // Key Vault comes by default: soft delete for 90 days, purge allowed. The management
        // API needs no token (it is reachable only through the relay).
        let vault = serde_json::json!({"baseUri": url, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90});
        let created = client
            .post(format!("{url}/management/vault"))
            .json(&vault)
            .send()
            .await
            .context("registering the vault in lowkey-vault")?;
        if !created.status().is_success() {
            let status = created.status();
            bail!(
                "lowkey-vault refused to register the vault {url}: {status} {}",
                created.text().await.unwrap_or_default()
            );
        }
        let listed = client
            .get(&probe)
            .bearer_auth(token.expose_str())
            .send()
            .await
            .context("listing the keys of the new vault")?;
        if listed.status().as_u16() != 200 {
            bail!(
                "lowkey-vault does not serve the vault {url} it registered: {}",
                listed.status()
            );
        }
        // Tomcat read the key at start; no copy of it stays on disk.
        std::fs::remove_file(&key).with_context(|| format!("removing {}", key.display()))?;
        log.line(format!("lowkey-vault {} ready at {url} in {:.1}s (own network namespace, relayed from 127.0.0.1:{port})", lk.version, ready_in.as_secs_f64()));
        Ok(LowkeyVault {
            url,
            ca_pem,
            token,
            process,
            port,
            ready_in,
            relay: Some(relay),
            relay_process: None,
            dir,
        })
    }

    /// Move the relay into a process of its own under `supervisor` (`exe testbed
    /// relay ...`, see [`relay_forever`]), for a vault that outlives this vdrill
    /// (`vdrill testbed up --azure`). Returns once the vault answers through it.
    pub async fn hand_relay_to(&mut self, supervisor: &Supervisor, exe: &Path) -> Result<()> {
        if let Some(relay) = self.relay.take() {
            relay.stop().await;
        }
        let spec = ProcessSpec::new("lowkey-vault-relay", exe).args([
            "testbed".to_string(),
            "relay".to_string(),
            "--pid".to_string(),
            self.process.pid.to_string(),
            "--port".to_string(),
            self.port.to_string(),
        ]);
        let mut relay = supervisor.spawn(&spec)?;
        let client = probe_client(&self.ca_pem)?;
        let probe = keys_url(&self.url);
        let token = self.token.expose_str().to_string();
        wait_for(
            "lowkey-vault's relay",
            Duration::from_secs(20),
            &mut [&mut relay, &mut self.process],
            || {
                let req = client.get(&probe).bearer_auth(&token).send();
                async move { req.await.is_ok_and(|r| r.status().is_success()) }
            },
        )
        .await?;
        self.relay_process = Some(relay);
        Ok(())
    }

    /// Peak resident memory of the JVM, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.process.peak_rss_kib()
    }

    /// Close the relay (its port and every relayed connection), stop the JVM and
    /// remove its folder.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(relay) = self.relay.take() {
            relay.stop().await;
        }
        if let Some(mut relay) = self.relay_process.take() {
            relay.stop(Duration::from_secs(5)).await?;
        }
        self.process.stop(Duration::from_secs(10)).await?;
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }
}

/// `vdrill testbed relay`: relay 127.0.0.1:`port` into the network namespace of
/// process `pid` (its 127.0.0.1:`port`) until killed.
pub async fn relay_forever(pid: u32, port: u16) -> Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let mut relay = Relay::start(listener, pid, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    let _ = (&mut relay.task).await;
    Ok(())
}

/// A connection request for the thread inside the namespace.
type Dial = (
    SocketAddr,
    tokio::sync::oneshot::Sender<std::io::Result<std::net::TcpStream>>,
);

/// Hand-written: a TCP relay is a few lines over `copy_bidirectional`, and the
/// part no proxy crate does is the one that matters here: the inner connections
/// are opened inside another process's network namespace. A dedicated thread
/// enters that namespace (`setns` moves only the calling thread) and opens them
/// on request; a socket keeps the namespace it was created in, so the runtime's
/// threads then carry the bytes as usual.
struct Relay {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(listener: TcpListener, pid: u32, inner: SocketAddr) -> Result<Relay> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .with_context(|| format!("opening the network namespace of process {pid}"))?;
        let (dial_tx, dial_rx) = std::sync::mpsc::channel::<Dial>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<nix::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("lowkey-netns".into())
            .spawn(move || {
                let entered = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
                drop(ns);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if !ok {
                    return;
                }
                // Ends when the relay drops its sender.
                for (addr, reply) in dial_rx {
                    let stream =
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                            .and_then(|s| {
                                s.set_nonblocking(true)?;
                                s.set_nodelay(true)?;
                                Ok(s)
                            });
                    let _ = reply.send(stream);
                }
            })
            .context("starting the relay thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("entering lowkey-vault's network namespace (setns): {e}"),
            Err(_) => {
                bail!("the relay thread ended before entering lowkey-vault's network namespace")
            }
        }
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, dial_tx, inner, cancel.clone()));
        Ok(Relay {
            cancel,
            task,
            thread: Some(thread),
        })
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The accept loop ends, closing the port and every relayed connection.
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    dial: std::sync::mpsc::Sender<Dial>,
    inner: SocketAddr,
    cancel: CancellationToken,
) {
    // Dropped with the loop: aborts every relayed connection.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let mut outer = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if dial.send((inner, tx)).is_err() {
            break;
        }
        conns.spawn(async move {
            // Refused inside (not up yet, or stopped): the client sees the connection close.
            let Ok(Ok(stream)) = rx.await else { return };
            let Ok(mut stream) = tokio::net::TcpStream::from_std(stream) else {
                return;
            };
            let _ = outer.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut outer, &mut stream).await;
        });
    }
}
