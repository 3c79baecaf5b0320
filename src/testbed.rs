//! `vdrill testbed prepare|up|status|down`: the local test bed by hand, outside
//! a drill, and the environments vdrill has running or kept (the ledger).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use clap::Subcommand;

use crate::env::ledger::{self, Kind, Record};
use crate::env::provision::{self, Need};
use crate::exit;
use crate::log::Redactor;
use crate::scenario::Cell;

#[derive(Subcommand, Debug)]
pub enum TestbedCommand {
    /// Build (or find in the cache) every component the scenarios' cells need: the
    /// provisioning phase of `vdrill run`, on its own. The first time this builds
    /// from the package registries and takes a while; later it takes seconds.
    Prepare {
        /// Scenario files or directories (default: ./scenarios).
        scenarios: Vec<std::path::PathBuf>,
        /// Every component and pinned version, whatever the scenarios need.
        #[arg(long)]
        all: bool,
    },
    /// Start kube-apiserver, etcd, kube-controller-manager and LocalStack, leave them
    /// running, and print the kubeconfig and endpoints.
    Up {
        /// Also start Azurite (Azure Blob Storage emulator) and lowkey-vault (Key
        /// Vault emulator, in a network namespace of its own behind a loopback relay;
        /// needs root).
        #[arg(long)]
        azure: bool,
    },
    /// (Internal) relay 127.0.0.1:PORT into the network namespace of process PID,
    /// for lowkey-vault under `testbed up --azure`.
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        port: u16,
    },
    /// List the environments vdrill has: running drills, kept ones (`--keep`), the
    /// `testbed up` bed, and leftovers of a vdrill that died.
    Status,
    /// Stop and remove kept environments, the `testbed up` bed and leftovers of a
    /// vdrill that died (all of them, or those named). Running drills are never touched.
    Down {
        /// Ids as `vdrill testbed status` shows them.
        ids: Vec<String>,
    },
}

/// Remove what a vdrill that died left behind (processes, folders); says what it did.
pub fn sweep_orphans() {
    for s in ledger::sweep(&ledger::dir(), false, None) {
        eprintln!("vdrill: {s}");
    }
}

fn print_record(r: &Record) {
    let state = match r.owner {
        Some(o) if o.alive() => format!("running (vdrill pid {})", o.pid),
        Some(o) => format!("LEFT OVER (its vdrill, pid {}, is gone)", o.pid),
        None => "handed over".to_string(),
    };
    let kind = match r.kind {
        Kind::Run => "run",
        Kind::Cell => "drill",
        Kind::Up => "testbed up",
        Kind::Kept => "kept (--keep)",
    };
    println!("{}  [{kind}] {}: {state}", r.id, r.title);
    let live = r.live_processes();
    for p in &r.processes {
        let up = if live.iter().any(|l| l.pid == p.id.pid) {
            "running"
        } else {
            "NOT RUNNING"
        };
        println!("    {:<26} pid {:<8} {up}", p.name, p.id.pid);
    }
    for (k, v) in &r.endpoints {
        println!("    {k}: {v}");
    }
}

/// The provisioning phase for `cells` (or everything), with progress on the terminal.
pub async fn prepare(cells: &[Cell], all: bool) -> i32 {
    sweep_orphans();
    let needs: BTreeSet<Need> = cells.iter().flat_map(provision::needs).collect();
    if needs.is_empty() && !all {
        println!("nothing to prepare: no cell runs on the local test bed");
        return exit::OK;
    }
    match run_provision(if all { BTreeSet::new() } else { needs }).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("vdrill testbed prepare: {e}");
            exit::DRILL_FAILED
        }
    }
}

/// Run the provisioning script for `needs` (all components when empty).
async fn run_provision(needs: BTreeSet<Need>) -> Result<(), String> {
    let script = provision::setup_script()
        .ok_or("no provisioning script (ci/testbed/setup.sh, or $VDRILL_SETUP) was found")?;
    let reporter: Arc<dyn crate::runner::Reporter> = Arc::from(crate::report::progress::auto());
    let logs = crate::env::cache_dir().join("logs");
    let id = format!("prepare-{}", crate::runner::run_id());
    let dirs = crate::env::process::LogDirs {
        raw: logs.clone(),
        artifacts: logs.clone(),
    };
    let supervisor = crate::env::process::Supervisor::new(
        Kind::Run,
        &id,
        "testbed prepare",
        dirs,
        Redactor::new(),
        false,
    )
    .map_err(|e| format!("{e:#}"))?;
    let cancel = crate::runner::signal::install(Arc::new(|m: &str| eprintln!("vdrill: {m}")))
        .map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    reporter.event(&crate::runner::Event::ProvisionStarted);
    let r = reporter.clone();
    let progress = move |e: &provision::Event| r.event(&crate::runner::Event::Provision(e));
    let log = logs.join(format!("{id}.log"));
    let outcome = provision::run(&script, &needs, &supervisor, &log, &progress, &cancel).await;
    reporter.event(&crate::runner::Event::ProvisionFinished {
        duration: started.elapsed(),
    });
    supervisor.finish();
    let mut problems: Vec<String> = outcome
        .finals
        .iter()
        .filter_map(|(c, s)| match s {
            provision::State::Failed { log, message } => {
                Some(format!("{c} failed: {message} (log: {})", log.display()))
            }
            _ => None,
        })
        .collect();
    problems.extend(outcome.failure);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

pub async fn main(cmd: TestbedCommand) -> i32 {
    let dir = ledger::dir();
    match cmd {
        TestbedCommand::Prepare { .. } => {
            unreachable!("handled by the command line, which loads the scenarios")
        }
        TestbedCommand::Status => {
            // Lists leftovers too (`LEFT OVER`); `down` or the next run removes them.
            let records = ledger::list(&dir);
            if records.is_empty() {
                println!("no environment is up (start the bed with `vdrill testbed up`)");
                return exit::DRILL_FAILED;
            }
            for r in &records {
                print_record(r);
            }
            exit::OK
        }
        TestbedCommand::Down { ids } => {
            let mut swept = Vec::new();
            if ids.is_empty() {
                swept = ledger::sweep(&dir, true, None);
            } else {
                for id in &ids {
                    let found = ledger::sweep(&dir, true, Some(id));
                    if found.is_empty() {
                        let known: Vec<String> =
                            ledger::list(&dir).into_iter().map(|r| r.id).collect();
                        eprintln!(
                            "vdrill testbed down: no kept or left-over environment `{id}` (known: {})",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        );
                        return exit::DRILL_FAILED;
                    }
                    swept.extend(found);
                }
            }
            if swept.is_empty() {
                println!("nothing to remove");
            }
            let mut code = exit::OK;
            for s in &swept {
                println!("{s}");
                if !s.problems.is_empty() {
                    code = exit::DRILL_FAILED;
                }
            }
            code
        }
        TestbedCommand::Relay { pid, port } => relay(pid, port).await,
        TestbedCommand::Up { azure } => match up(&dir, azure).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vdrill testbed up: {e:#}");
                exit::DRILL_FAILED
            }
        },
    }
}

#[cfg(feature = "providers")]
async fn relay(pid: u32, port: u16) -> i32 {
    match crate::env::local::lowkey::relay_forever(pid, port).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("vdrill testbed relay: {e:#}");
            exit::ENVIRONMENT
        }
    }
}

#[cfg(not(feature = "providers"))]
async fn relay(_pid: u32, _port: u16) -> i32 {
    eprintln!("this vdrill was built without the `providers` feature");
    exit::INVALID
}

#[cfg(feature = "providers")]
async fn up(dir: &Path, azure: bool) -> anyhow::Result<i32> {
    use crate::env::CellDirs;
    use crate::log::StepLog;
    sweep_orphans();
    if let Some(r) = ledger::list(dir)
        .into_iter()
        .find(|r| r.kind == Kind::Up && !r.live_processes().is_empty())
    {
        println!("a test bed is already up:");
        print_record(&r);
        return Ok(exit::OK);
    }
    let mut needs: BTreeSet<Need> = [Need::Kube, Need::Etcd, Need::Localstack].into();
    if azure {
        needs.insert(Need::Azurite);
        needs.insert(Need::LowkeyVault);
    }
    if std::env::var_os("VDRILL_NO_PROVISION").is_none() {
        run_provision(needs).await.map_err(|e| anyhow::anyhow!(e))?;
    }
    let id = format!("up-{}", crate::runner::run_id());
    let base = crate::env::cache_dir().join("bed").join(&id);
    let dirs = CellDirs {
        artifacts: base.clone(),
        work: base.join("work"),
    };
    let redactor = Redactor::new();
    let logs = crate::env::process::LogDirs {
        raw: dirs.work.join("logs"),
        artifacts: dirs.artifacts.join("env"),
    };
    let supervisor = crate::env::process::Supervisor::new(
        Kind::Up,
        &id,
        "vdrill testbed up",
        logs,
        redactor.clone(),
        true,
    )?;
    supervisor.add_dir(&base);
    let log = StepLog::new(redactor).with_echo(Arc::new(|l: &str| eprintln!("{l}")));
    let started = crate::env::local::start(
        &crate::scenario::Storage::one(crate::scenario::StorageKind::Localstack),
        "us-east-1",
        &dirs,
        &supervisor,
        &log,
    )
    .await?;
    let emulators = match azure {
        true => {
            let manifest = crate::env::local::manifest::Manifest::load()?;
            let (az, kv) = tokio::join!(
                crate::env::local::azurite::Azurite::start(
                    &manifest,
                    &dirs.work,
                    &supervisor,
                    &log
                ),
                crate::env::local::lowkey::LowkeyVault::start(
                    &manifest,
                    &dirs.work,
                    &supervisor,
                    &log
                )
            );
            let (az, mut kv) = (az?, kv?);
            // The vault outlives this command: its relay becomes a process of the bed.
            let exe = anyhow::Context::context(
                std::env::current_exe(),
                "finding the vdrill executable for the relay",
            )?;
            kv.hand_relay_to(&supervisor, &exe).await?;
            // Keys, the CA and the token go to files only their owner reads, never into the record.
            let secrets = base.join("secrets");
            crate::env::write_private(&secrets.join("azurite-account-key"), az.key.expose())?;
            crate::env::write_private(&secrets.join("lowkey-vault-ca.pem"), kv.ca_pem.as_bytes())?;
            crate::env::write_private(&secrets.join("lowkey-vault-token"), kv.token.expose())?;
            supervisor.set_endpoint("Azure blob (Azurite)", az.blob_endpoint.clone());
            supervisor.set_endpoint(
                "Azure account",
                format!(
                    "{} (key in {})",
                    az.account,
                    secrets.join("azurite-account-key").display()
                ),
            );
            supervisor.set_endpoint(
                "Key Vault (lowkey-vault)",
                format!(
                    "{} (trust {}; any bearer token, e.g. the one in {})",
                    kv.url,
                    secrets.join("lowkey-vault-ca.pem").display(),
                    secrets.join("lowkey-vault-token").display()
                ),
            );
            Some((az, kv))
        }
        false => None,
    };
    supervisor.set_endpoint(
        "credentials",
        "LocalStack accepts any, e.g. test/test, region us-east-1".to_string(),
    );
    // From here on, dropping the handles leaves the processes running.
    let record = supervisor.hand_over(Kind::Up);
    drop((started, emulators));
    print_record(&record);
    println!(
        "\nexport KUBECONFIG={}",
        record
            .endpoints
            .get("kubeconfig")
            .cloned()
            .unwrap_or_default()
    );
    println!("stop it with `vdrill testbed down {}`", record.id);
    Ok(exit::OK)
}

#[cfg(not(feature = "providers"))]
async fn up(_dir: &Path, _azure: bool) -> anyhow::Result<i32> {
    anyhow::bail!("this vdrill was built without the `providers` feature")
}
