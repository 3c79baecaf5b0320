//! The command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::log::Redactor;
use crate::report::artifacts::{Artifacts, default_root};
use crate::report::{Status, human, progress};
use crate::runner::{RunOptions, Runner, signal};
use crate::scenario::{self, Cell, Diagnostic, ScenarioFile};
use crate::testbed::TestbedCommand;

/// Exit codes (see [`crate::exit`]).
pub use crate::exit::{DRILL_FAILED as EXIT_DRILL_FAILED, INVALID as EXIT_INVALID, OK as EXIT_OK};

#[derive(Parser, Debug)]
#[command(
    name = "vdrill",
    version,
    about = "Disaster-recovery drills for Velero backups with encryption at rest",
    long_about = "Disaster-recovery drills for Velero backups with encryption at rest.\n\n\
        A scenario file (YAML, see `vdrill schema`) declares an environment (a Kubernetes cluster, \
        object storage and a key manager), the Velero version under test with encrypted backup \
        storage locations, workloads, and the drill's steps: back up, break keys, delete, restore, \
        and assert that every object is encrypted with the expected key and that the restore is intact.\n\n\
        The default environment is the local test bed: kube-apiserver, etcd, kube-controller-manager, \
        Velero and LocalStack as local processes. `vdrill run` builds what is missing first (its \
        provisioning phase, also `vdrill testbed prepare`); the first time takes a while.",
    after_help = "Exit codes: 0 all drills passed, 1 a drill failed, 2 invalid input or usage, 3 the environment broke \
        (no drill failed, but a cell could not reach a verdict), 130 interrupted.\n\
        Examples:\n  vdrill validate scenarios/*.yaml\n  vdrill plan scenarios/aws-kms-basic.yaml\n  \
        vdrill run scenarios/aws-kms-disable-midrun.yaml --junit junit.xml\n  vdrill run --tag nightly --shard 1/3\n  \
        vdrill plan scenarios --format github-matrix --shards 3 --tag nightly\n  \
        vdrill report merge shard-1 shard-2 shard-3 --out merged\n  vdrill report merged -o report.html"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The `--images` of a command that runs drills.
    pub fn images(&self) -> Option<crate::env::providers::ImageSource> {
        match &self.command {
            Command::Run(args) => Some(args.images),
            _ => None,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run drills: every matrix cell of every scenario given (files or directories).
    Run(RunArgs),
    /// Check scenario files; report every error with file:line:column.
    Validate {
        /// Scenario files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the expanded cells and steps of a scenario without running anything.
    Plan(PlanArgs),
    /// List the scenarios in a directory with their tags and cells.
    List {
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Print the JSON Schema of the scenario format (for editor completion).
    Schema,
    /// Use the local test bed by hand, and list or remove kept environments.
    #[command(subcommand)]
    Testbed(TestbedCommand),
    /// Write one static HTML page of run folders (`vdrill report DIR...`), or merge
    /// run folders into one (`vdrill report merge DIR... --out DIR`).
    Report(ReportArgs),
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// The shards as a GitHub Actions matrix: `{"include": [{"shard": "1/2", ...}]}`
    /// on one line, for `strategy.matrix: ${{ fromJSON(...) }}`.
    GithubMatrix,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A scenario file or a directory of them.
    pub scenario: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Split the selected cells into N shards as `vdrill run --shard I/N` does
    /// (for `--format github-matrix`; shards left empty are not listed).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: u16,
    /// Only scenarios with this tag (repeatable), as in `vdrill run`.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only cells with this matrix value (repeatable), as in `vdrill run`.
    #[arg(long = "matrix", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub matrix: Vec<(String, String)>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
    /// Run folders (each with the run.json `vdrill run` wrote), oldest first: the
    /// page shows each, and the RTO of every drill across them.
    #[arg(required = true, value_name = "DIR")]
    pub runs: Vec<PathBuf>,
    /// Where to write the page.
    #[arg(long, short, value_name = "FILE", default_value = "vdrill-report.html")]
    pub output: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Merge run folders (a CI matrix's shards) into one: run.json, junit.xml and the
    /// cells' artifacts. A cell is known by its stable name; the same result twice
    /// is kept once, two different results of one cell are an error.
    Merge {
        /// Run folders, each with run.json and junit.xml.
        #[arg(required = true, value_name = "DIR")]
        runs: Vec<PathBuf>,
        /// The merged run folder (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also write the merged JUnit XML here.
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario files or directories (default: ./scenarios).
    pub scenarios: Vec<PathBuf>,
    /// Also write the JUnit XML report here (it is always written into the artifacts folder).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Artifacts folder (default: target/vdrill/<run-id> in a cargo checkout, else a temp dir).
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Hand a failed cell's environment over instead of tearing it down: it keeps
    /// running after vdrill exits (endpoints and kubeconfig are printed) until
    /// `vdrill testbed down`.
    #[arg(long)]
    pub keep: bool,
    /// Only scenarios with this tag (repeat for any of several).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only cells with this matrix value, e.g. `--matrix velero=1.18` (repeatable; all must
    /// match). A value the scenario does not list replaces the dimension's values, e.g.
    /// `--matrix to=1.18.2` (a Velero version not pinned is built by the provisioning phase).
    #[arg(long = "matrix", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub matrix: Vec<(String, String)>,
    /// The Velero version to drill, pinned or not (`1.18`, `1.18.2`): the same as
    /// `--matrix velero=VERSION`. A version not built yet is built from the Go module
    /// proxy by the provisioning phase.
    #[arg(long, value_name = "VERSION", value_parser = parse_velero)]
    pub velero: Option<String>,
    /// Run only shard I of N of the cells (e.g. `--shard 2/4`), for CI matrices.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Images for `cluster: kind` cells: `upstream` (velero/velero, localstack/localstack,
    /// kind's node image; needs a registry), `testbed` (built by `ci/testbed/setup.sh
    /// kind-node images`, no registry; the bed's Docker engine), or `auto`: the bed's (the
    /// provisioning phase builds them when missing) where this checkout has the bed's scripts.
    #[arg(long, value_enum, default_value_t = crate::env::providers::ImageSource::Auto, value_name = "SOURCE")]
    pub images: crate::env::providers::ImageSource,
    /// Print every step's log as it happens.
    #[arg(long, short)]
    pub verbose: bool,
    /// Run up to N cells side by side, each with its own bed, ports and folders
    /// (one bar per cell on a terminal, lines prefixed with the cell in CI).
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Id of this run (default: a timestamp).
    #[arg(long)]
    pub run_id: Option<String>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or("expected NAME=VALUE, e.g. velero=1.18")?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn parse_velero(s: &str) -> Result<String, String> {
    let s = s.trim();
    if scenario::validate::valid_version(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a Velero version; write e.g. 1.18 or 1.18.2"
        ))
    }
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 1/4")?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("`{i}` is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("`{n}` is not a number"))?;
    if n == 0 || i == 0 || i > n {
        return Err(format!("shard {i}/{n}: need 1 <= I <= N"));
    }
    Ok((i, n))
}

/// Scenario files named directly or found in directories.
fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<Diagnostic>> {
    scenario::collect(paths)
}

/// Load every file; all diagnostics of all files together.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<ScenarioFile>, Vec<Diagnostic>> {
    load_all_with(paths, &[])
}

/// [`load_all`] with matrix values from the command line (see [`scenario::load_with`]).
pub fn load_all_with(
    paths: &[PathBuf],
    matrix: &[(String, String)],
) -> Result<Vec<ScenarioFile>, Vec<Diagnostic>> {
    let files = expand_paths(paths)?;
    let mut loaded = Vec::new();
    let mut diags = Vec::new();
    for f in files {
        match scenario::load_with(&f, matrix) {
            Ok(s) => loaded.push(s),
            Err(mut d) => diags.append(&mut d),
        }
    }
    // Scenario names must be unique within a run (they name JUnit suites and artifacts).
    for (i, s) in loaded.iter().enumerate() {
        if let Some(first) = loaded[..i]
            .iter()
            .find(|o| o.metadata.name == s.metadata.name)
        {
            diags.push(Diagnostic::new(
                &s.path,
                None,
                Some("metadata.name".into()),
                format!(
                    "scenario name `{}` is also used by {}",
                    s.metadata.name,
                    first.path.display()
                ),
            ));
        }
    }
    if diags.is_empty() {
        Ok(loaded)
    } else {
        Err(diags)
    }
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
    let files: std::collections::BTreeSet<_> = diags.iter().map(|d| &d.file).collect();
    let _ = writeln!(err, "{} error(s) in {} file(s)", diags.len(), files.len());
}

/// Select cells by tag and shard, in a stable order.
pub fn select_cells(
    files: &[ScenarioFile],
    tags: &[String],
    matrix: &[(String, String)],
    shard: Option<(usize, usize)>,
) -> Vec<Cell> {
    let mut cells: Vec<Cell> = files
        .iter()
        .filter(|f| tags.is_empty() || f.metadata.tags.iter().any(|t| tags.contains(t)))
        .flat_map(|f| f.cells.iter().cloned())
        .filter(|c| matrix.iter().all(|pair| c.matrix.contains(pair)))
        .collect();
    cells.sort_by(|a, b| a.id.cmp(&b.id));
    match shard {
        Some((i, n)) => cells
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i - 1)
            .map(|(_, c)| c)
            .collect(),
        None => cells,
    }
}

pub async fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { files } => match load_all(&files) {
            Ok(loaded) => {
                for f in &loaded {
                    println!(
                        "{}: ok ({} cell{})",
                        f.path.display(),
                        f.cells.len(),
                        if f.cells.len() == 1 { "" } else { "s" }
                    );
                }
                EXIT_OK
            }
            Err(diags) => {
                print_diagnostics(&diags);
                EXIT_INVALID
            }
        },
        Command::Plan(args)
            if !matches!(args.format, Format::GithubMatrix)
                && (args.shards != 1 || !args.tags.is_empty() || !args.matrix.is_empty()) =>
        {
            eprintln!(
                "error: --shards, --tag and --matrix select shards for `--format github-matrix`;                  the text and json plans show every cell"
            );
            EXIT_INVALID
        }
        Command::Plan(args) => match load_all(std::slice::from_ref(&args.scenario)) {
            Ok(loaded) if loaded.is_empty() => {
                eprintln!("{}: error: nothing to plan", args.scenario.display());
                EXIT_INVALID
            }
            Ok(loaded) if matches!(args.format, Format::GithubMatrix) => {
                match github_matrix(&loaded, &args) {
                    Ok(m) => {
                        println!("{m}");
                        EXIT_OK
                    }
                    Err(e) => {
                        eprintln!("{}: error: {e}", args.scenario.display());
                        EXIT_INVALID
                    }
                }
            }
            Ok(loaded) => {
                print_plan(&loaded, args.format, args.scenario.is_dir());
                EXIT_OK
            }
            Err(diags) => {
                print_diagnostics(&diags);
                EXIT_INVALID
            }
        },
        Command::List { dir } => match load_all(&[dir]) {
            Ok(loaded) => {
                for f in &loaded {
                    let Some(s) = f.cells.first().map(|c| &c.scenario) else {
                        continue;
                    };
                    println!(
                        "{:<28} {:<8} {:<11} cells={:<2} tags=[{}]  {}",
                        f.metadata.name,
                        s.environment.cluster.as_str(),
                        s.environment.storage.as_str(),
                        f.cells.len(),
                        f.metadata.tags.join(","),
                        f.path.display()
                    );
                }
                EXIT_OK
            }
            Err(diags) => {
                print_diagnostics(&diags);
                EXIT_INVALID
            }
        },
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&scenario::json_schema()).unwrap_or_default()
            );
            EXIT_OK
        }
        Command::Run(args) => run(args).await,
        Command::Testbed(TestbedCommand::Prepare { scenarios, all }) => {
            let paths = if scenarios.is_empty() && !all {
                vec![PathBuf::from("scenarios")]
            } else {
                scenarios
            };
            match load_all(&paths) {
                Ok(files) => {
                    let cells: Vec<Cell> =
                        files.iter().flat_map(|f| f.cells.iter().cloned()).collect();
                    crate::testbed::prepare(&cells, all).await
                }
                Err(diags) => {
                    print_diagnostics(&diags);
                    EXIT_INVALID
                }
            }
        }
        Command::Testbed(cmd) => crate::testbed::main(cmd).await,
        Command::Report(args) => report(args),
    }
}

/// The shards of the selected cells as a GitHub Actions matrix (one line of JSON).
/// Each entry is what `vdrill run --shard I/N` with the same tags and matrix
/// filters runs: `shard` ("I/N"), `index`, `total` and the `cells` it holds.
pub fn github_matrix(files: &[ScenarioFile], args: &PlanArgs) -> Result<String, String> {
    let n = usize::from(args.shards);
    let all = select_cells(files, &args.tags, &args.matrix, None);
    if all.is_empty() {
        return Err(format!(
            "no scenario cells match (tags {:?}, matrix {:?})",
            args.tags, args.matrix
        ));
    }
    let include: Vec<serde_json::Value> = (1..=n)
        .map(|i| {
            (
                i,
                select_cells(files, &args.tags, &args.matrix, Some((i, n))),
            )
        })
        .filter(|(_, cells)| !cells.is_empty())
        .map(|(i, cells)| {
            serde_json::json!({
                "shard": format!("{i}/{n}"),
                "index": i,
                "total": n,
                "cells": cells.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_string(&serde_json::json!({ "include": include })).map_err(|e| e.to_string())
}

/// `vdrill report`: the HTML page, or `merge`.
fn report(args: ReportArgs) -> i32 {
    use crate::report::{html, merge};
    match args.command {
        Some(ReportCommand::Merge { runs, out, junit }) => {
            let loaded: Result<Vec<_>, _> =
                runs.iter().map(|d| merge::load_with_junit(d)).collect();
            let merged = match loaded.and_then(|l| merge::merge(&l)) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_INVALID;
                }
            };
            if let Err(e) = merge::write(&merged, &out) {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
            if let Some(j) = &junit
                && let Err(e) = std::fs::copy(out.join("junit.xml"), j)
            {
                eprintln!("error: {}: cannot write: {e}", j.display());
                return EXIT_INVALID;
            }
            let (p, f, e, s) = merged.run.counts();
            println!(
                "merged {} run folder(s), {} cell(s): {p} passed, {f} failed, {e} environment error(s), {s} skipped",
                runs.len(),
                merged.run.cells.len()
            );
            println!("run.json:  {}", out.join("run.json").display());
            println!("junit:     {}", out.join("junit.xml").display());
            EXIT_OK
        }
        None => {
            let loaded: Result<Vec<_>, _> = args.runs.iter().map(|d| merge::load_run(d)).collect();
            let runs = match loaded {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_INVALID;
                }
            };
            let page = html::render(&runs);
            if let Err(e) = crate::report::artifacts::write_atomic(&args.output, page.as_bytes()) {
                eprintln!("error: {}: cannot write: {e}", args.output.display());
                return EXIT_INVALID;
            }
            println!("report: {}", args.output.display());
            EXIT_OK
        }
    }
}

/// The plan of each file; in JSON one object, or an array of them when `many` (a directory was given).
fn print_plan(files: &[ScenarioFile], format: Format, many: bool) {
    match format {
        // Printed by `github_matrix` (shards, not plans).
        Format::GithubMatrix => {}
        Format::Json => {
            let plans: Vec<serde_json::Value> = files
                .iter()
                .map(|f| {
                    let cells: Vec<serde_json::Value> = f
                        .cells
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "id": c.id,
                                "matrix": c.matrix.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                                "touches_existing": c.scenario.touches_existing(),
                                "scenario": c.scenario,
                            })
                        })
                        .collect();
                    serde_json::json!({"file": f.path, "cells": cells})
                })
                .collect();
            let out = if many {
                serde_json::Value::Array(plans)
            } else {
                plans.into_iter().next().unwrap_or_default()
            };
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Format::Text => {
            for (n, f) in files.iter().enumerate() {
                if n > 0 {
                    println!();
                }
                println!(
                    "{} ({}): {} cell(s)",
                    f.metadata.name,
                    f.path.display(),
                    f.cells.len()
                );
                for c in &f.cells {
                    let s = &c.scenario;
                    println!("\n{}", c.id);
                    println!(
                        "  environment: cluster={} storage={}",
                        s.environment.cluster.as_str(),
                        s.environment.storage.as_str()
                    );
                    let touches = s.touches_existing();
                    if !touches.is_empty() {
                        println!("  touches resources it did not create:");
                        for t in touches {
                            println!("    - {t}");
                        }
                    }
                    println!(
                        "  velero: {} ({} location(s))",
                        s.velero.version,
                        s.velero.locations.len()
                    );
                    for l in &s.velero.locations {
                        let cfg: Vec<String> =
                            l.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        println!(
                            "    - {} {} bucket={} {}",
                            l.name,
                            l.provider.as_str(),
                            l.bucket,
                            cfg.join(" ")
                        );
                    }
                    for (name, k) in &s.keys {
                        println!(
                            "  key {name}: {}{}",
                            k.provider.as_str(),
                            k.alias
                                .as_ref()
                                .or(k.name.as_ref())
                                .map(|a| format!(" {a}"))
                                .unwrap_or_default()
                        );
                    }
                    for (i, st) in s.steps.iter().enumerate() {
                        let timeout = st
                            .timeout()
                            .unwrap_or_else(|| crate::runner::default_timeout(st));
                        let expect = st.expect().filter(|e| e.expects_failure()).map(|e| {
                            let mut x = String::from("  expect failure");
                            if let Some(p) = e.phase {
                                x.push_str(&format!(" phase={}", p.as_str()));
                            }
                            if let Some(r) = &e.error {
                                x.push_str(&format!(" error=/{r}/"));
                            }
                            x
                        });
                        println!(
                            "  {:>2}. {:<45} timeout {}{}",
                            i + 1,
                            st.title(),
                            humantime::format_duration(timeout),
                            expect.unwrap_or_default()
                        );
                    }
                    for (i, st) in s.finally.iter().enumerate() {
                        println!("  finally {}. {}", i + 1, st.title());
                    }
                }
            }
        }
    }
}

async fn run(mut args: RunArgs) -> i32 {
    let paths = if args.scenarios.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        args.scenarios.clone()
    };
    if let Some(v) = args.velero.take() {
        args.matrix.push(("velero".into(), v));
    }
    let files = match load_all_with(&paths, &args.matrix) {
        Ok(f) => f,
        Err(diags) => {
            print_diagnostics(&diags);
            return EXIT_INVALID;
        }
    };
    let cells = select_cells(&files, &args.tags, &args.matrix, args.shard);
    if cells.is_empty() {
        eprintln!(
            "no scenario cells match (tags {:?}, matrix {:?}, shard {:?})",
            args.tags, args.matrix, args.shard
        );
        return EXIT_INVALID;
    }
    let run_id = args.run_id.clone().unwrap_or_else(crate::runner::run_id);
    let root = args
        .artifacts
        .clone()
        .unwrap_or_else(|| default_root(&run_id));
    let redactor = Redactor::new();
    let artifacts = match Artifacts::create(&root, args.junit.clone(), &run_id, redactor.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cannot create the artifacts folder {}: {e}", root.display());
            return EXIT_INVALID;
        }
    };
    let reporter: Arc<dyn crate::runner::Reporter> = Arc::from(progress::auto());
    let cancel = match signal::install(Arc::new(|msg: &str| eprintln!("vdrill: {msg}"))) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return EXIT_DRILL_FAILED;
        }
    };
    // What a vdrill that died left behind goes first.
    crate::testbed::sweep_orphans();
    let mut providers = crate::env::providers::Providers::new(
        &run_id,
        args.keep,
        artifacts.root().to_path_buf(),
        redactor.clone(),
    );
    providers.images = args.images;
    let factory = Arc::new(providers);
    let runner = Runner::new(
        factory,
        reporter,
        artifacts.clone(),
        redactor,
        RunOptions {
            run_id: run_id.clone(),
            keep: args.keep,
            verbose: args.verbose,
            jobs: usize::from(args.jobs),
        },
        cancel,
    );
    let report = runner.run(&cells).await;
    drop(runner);
    print_summary(
        &mut std::io::stdout().lock(),
        &report,
        artifacts.root(),
        &artifacts.junit_path(),
    );
    for e in artifacts.errors() {
        eprintln!("warning: could not write artifact {e}");
    }
    report.exit_code()
}

/// The table at the end of a run (every text in it comes from the redacted report).
pub fn print_summary(
    out: &mut dyn Write,
    report: &crate::report::RunReport,
    root: &Path,
    junit: &Path,
) {
    let (passed, failed, errored, skipped) = report.counts();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<44} {:<7} {:>9} {:>9} {:>9}",
        "cell", "result", "time", "RTO", "vdrill"
    );
    for c in &report.cells {
        let _ = writeln!(
            out,
            "{:<44} {:<7} {:>9} {:>9} {:>8.2}%",
            c.id,
            c.status.as_str(),
            human(c.duration),
            c.rto.map(human).unwrap_or_else(|| "-".into()),
            crate::report::junit::share_percent(c)
        );
        for s in c
            .steps
            .iter()
            .filter(|s| matches!(s.status, Status::Failed | Status::Error))
        {
            let tag = if s.status == Status::Error {
                "ERROR"
            } else {
                "FAIL"
            };
            let _ = writeln!(
                out,
                "    {tag} {}: {}",
                s.title,
                s.message.lines().next().unwrap_or_default()
            );
        }
        if c.status == Status::Error
            && let Some(v) = &c.verdict
        {
            let _ = writeln!(out, "    => {}", v.lines().next().unwrap_or_default());
        }
        if let Some(k) = &c.kept {
            let _ = writeln!(out, "    KEPT {k}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{passed} passed, {failed} failed, {errored} environment error(s), {skipped} skipped in {}{}",
        human(report.duration),
        if report.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "artifacts: {}", root.display());
    let _ = writeln!(out, "junit:     {}", junit.display());
}
