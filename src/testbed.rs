//! `vdrill testbed up|status|down`: the local test bed by hand, outside a drill.

use std::path::PathBuf;

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::cli::{EXIT_DRILL_FAILED, EXIT_OK};

#[derive(Subcommand, Debug)]
pub enum TestbedCommand {
    /// Start kube-apiserver, etcd, kube-controller-manager and LocalStack; print the kubeconfig and endpoints.
    Up {
        /// Also start Azurite (Azure Blob Storage emulator).
        #[arg(long)]
        azure: bool,
    },
    /// Show whether the bed started with `up` is running.
    Status,
    /// Stop the bed started with `up` and remove its data.
    Down,
}

#[derive(Debug, Serialize, Deserialize)]
struct BedState {
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    s3_endpoint: Option<String>,
    #[serde(default)]
    blob_endpoint: Option<String>,
    processes: Vec<(String, u32)>,
}

fn state_path() -> PathBuf {
    crate::env::cache_dir().join("bed").join("state.json")
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

fn print_state(s: &BedState) {
    println!("kubeconfig: {}", s.kubeconfig.display());
    println!("api server: {}", s.server);
    if let Some(e) = &s.s3_endpoint {
        println!("S3 + KMS:   {e} (LocalStack; credentials test/test, region us-east-1)");
    }
    if let Some(e) = &s.blob_endpoint {
        println!("Azure blob: {e} (Azurite; its documented development account key)");
    }
    println!("logs:       {}", s.dir.join("env").display());
    for (name, pid) in &s.processes {
        println!("  {name:<24} pid {pid:<8} {}", if alive(*pid) { "running" } else { "NOT RUNNING" });
    }
    println!("\nexport KUBECONFIG={}", s.kubeconfig.display());
}

pub async fn main(cmd: TestbedCommand) -> i32 {
    match run(cmd).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vdrill testbed: {e:#}");
            EXIT_DRILL_FAILED
        }
    }
}

async fn run(cmd: TestbedCommand) -> anyhow::Result<i32> {
    let path = state_path();
    let existing: Option<BedState> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    match cmd {
        TestbedCommand::Status => match existing {
            Some(s) => {
                print_state(&s);
                Ok(if s.processes.iter().all(|(_, p)| alive(*p)) { EXIT_OK } else { EXIT_DRILL_FAILED })
            }
            None => {
                println!("no test bed is up (start one with `vdrill testbed up`)");
                Ok(EXIT_DRILL_FAILED)
            }
        },
        TestbedCommand::Down => {
            let Some(s) = existing else {
                println!("no test bed is up");
                return Ok(EXIT_OK);
            };
            stop(&s).await;
            let _ = std::fs::remove_dir_all(&s.dir);
            let _ = std::fs::remove_file(&path);
            println!("test bed stopped and removed");
            Ok(EXIT_OK)
        }
        TestbedCommand::Up { azure } => up(existing, &path, azure).await,
    }
}

#[cfg(feature = "providers")]
async fn up(existing: Option<BedState>, path: &std::path::Path, azure: bool) -> anyhow::Result<i32> {
    use crate::env::CellDirs;
    use crate::runner::log::{Redactor, StepLog};
    if let Some(s) = existing {
        if s.processes.iter().all(|(_, p)| alive(*p)) {
            println!("a test bed is already up:");
            print_state(&s);
            return Ok(EXIT_OK);
        }
        stop(&s).await;
        let _ = std::fs::remove_dir_all(&s.dir);
    }
    let dir = path.parent().expect("state has a parent").join(crate::cli::run_id());
    let dirs = CellDirs { artifacts: dir.clone(), work: dir.join("work") };
    let log = StepLog::new(Redactor::new()).with_echo(std::sync::Arc::new(|l: &str| eprintln!("{l}")));
    let started = crate::env::local::start(None, crate::scenario::StorageKind::Localstack, "us-east-1", &dirs, "vdrill-testbed", true, &log).await?;
    let mut processes = Vec::new();
    if let Some(mut plane) = started.bed.plane.lock().await.take() {
        for p in plane.processes.drain(..) {
            processes.push((p.name.clone(), p.release()));
        }
    }
    if let Some(ls) = started.bed.localstack.lock().await.take() {
        processes.push((ls.process.name.clone(), ls.process.release()));
    }
    let mut blob_endpoint = None;
    if azure {
        let manifest = crate::env::local::manifest::Manifest::load()?;
        let az = crate::env::local::azurite::Azurite::start(&manifest, &dirs.work, &dir.join("env"), true, &log).await?;
        blob_endpoint = Some(az.blob_endpoint.clone());
        processes.push((az.process.name.clone(), az.process.release()));
    }
    let state = BedState { dir, kubeconfig: started.kubeconfig, server: started.server, s3_endpoint: started.s3_endpoint, blob_endpoint, processes };
    crate::report::artifacts::write_atomic(path, serde_json::to_string_pretty(&state)?.as_bytes())?;
    print_state(&state);
    Ok(EXIT_OK)
}

#[cfg(not(feature = "providers"))]
async fn up(_existing: Option<BedState>, _path: &std::path::Path, _azure: bool) -> anyhow::Result<i32> {
    anyhow::bail!("this vdrill was built without the `providers` feature")
}

/// SIGTERM each process group, then SIGKILL what is left after 10 s.
async fn stop(s: &BedState) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    for (_, pid) in s.processes.iter().rev() {
        let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    for _ in 0..100 {
        if !s.processes.iter().any(|(_, p)| alive(*p)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for (_, pid) in &s.processes {
        let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
}
