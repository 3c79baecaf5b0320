//! Provisioning: the phase before any cell, in which `ci/testbed/setup.sh`
//! builds (or finds in its cache) every component the selected cells need.
//! It runs once per run, outside every step and cell budget; its progress
//! comes from the events the script prints on stdout, one per line:
//!
//! ```text
//! ::vdrill-event <component> <state> <detail...>
//! ```
//!
//! with `start <expected-seconds> <what>`, `step <text>`, `cached`,
//! `done <seconds> <text>`, `failed <log-file> <message>`, `unavailable <reason>`
//! (a registry refused it), `absent <reason>` (this machine lacks an input that no
//! registry serves, such as `../shared`: the cells that need it are skipped, not
//! failed) and (component `setup`) `wait <text>`. A plugin's `unavailable` and
//! `absent` come inside its Velero component, as `plugin <name> <version> ...`. The script holds a lock in the cache
//! while it builds, so runs that start together build each component once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::process::Supervisor;
use super::providers::ImageSource;
use crate::scenario::{Cell, ClusterKind, Step, StorageKind};

/// What a component is doing, as the script reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Begins; a cold build usually takes `expected`.
    Start {
        expected: Option<Duration>,
        what: String,
    },
    Step(String),
    Cached,
    Done {
        seconds: f64,
        text: String,
    },
    Failed {
        log: PathBuf,
        message: String,
    },
    Unavailable(String),
    /// This machine lacks an input of the component (not an error of the run).
    Absent(String),
    /// Waiting for another builder to finish (component `setup`).
    Wait(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `kube`, `etcd`, `velero-v1.18.3`, `localstack`, ..., or `setup`.
    pub component: String,
    pub state: State,
}

impl Event {
    /// True when the component has finished, one way or another. (A plugin the
    /// registry refuses is reported inside its Velero component, which goes on.)
    pub fn is_final(&self) -> bool {
        match &self.state {
            State::Unavailable(why) | State::Absent(why) => !why.starts_with("plugin "),
            s => matches!(s, State::Cached | State::Done { .. } | State::Failed { .. }),
        }
    }
}

pub const PREFIX: &str = "::vdrill-event ";

/// Parse one line of the script's stdout; None for anything else.
pub fn parse(line: &str) -> Option<Event> {
    let rest = line.strip_prefix(PREFIX)?;
    let (component, rest) = rest.split_once(' ')?;
    let (state, detail) = rest.split_once(' ').unwrap_or((rest, ""));
    let detail = detail.trim().to_string();
    let state = match state {
        "start" => {
            let (secs, what) = detail.split_once(' ').unwrap_or((detail.as_str(), ""));
            State::Start {
                expected: secs.parse::<u64>().ok().map(Duration::from_secs),
                what: what.to_string(),
            }
        }
        "step" => State::Step(detail),
        "cached" => State::Cached,
        "done" => {
            let (secs, text) = detail.split_once(' ').unwrap_or((detail.as_str(), ""));
            State::Done {
                seconds: secs.parse().unwrap_or(0.0),
                text: text.to_string(),
            }
        }
        "failed" => {
            let (log, message) = detail.split_once(' ').unwrap_or((detail.as_str(), ""));
            State::Failed {
                log: PathBuf::from(log),
                message: message.to_string(),
            }
        }
        "unavailable" => State::Unavailable(detail),
        "absent" => State::Absent(detail),
        "wait" => State::Wait(detail),
        _ => return None,
    };
    Some(Event {
        component: component.to_string(),
        state,
    })
}

/// Where progress goes (bars on a terminal, lines in CI).
pub type Progress = dyn Fn(&Event) + Send + Sync;

/// Why cells cannot run, by cell id.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Cells whose environment could not be provisioned (an environment error).
    pub unavailable: BTreeMap<String, String>,
    /// Cells that cannot run on this machine (something it lacks): skipped.
    pub skipped: BTreeMap<String, String>,
}

/// One thing a cell needs from the bed, as `setup.sh` takes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    Kube,
    Etcd,
    /// A Velero version as the scenario writes it (`1.18`, `1.18.3`) with its plugins.
    Velero(String),
    /// A plugin (`aws`, `azure`) of a Velero version; built with that version.
    Plugin {
        velero: String,
        plugin: String,
    },
    Localstack,
    Azurite,
    LowkeyVault,
    FakeGcs,
    /// The kind binary.
    Kind,
    /// The bed's kind node image (and its dockerd, started).
    KindNode,
    /// The bed's Velero, plugin, workload and LocalStack images.
    Images,
}

impl Need {
    /// The argument of `setup.sh`.
    pub fn arg(&self) -> String {
        match self {
            Need::Kube => "kube".into(),
            Need::Etcd => "etcd".into(),
            Need::Velero(v) | Need::Plugin { velero: v, .. } => format!("velero@{v}"),
            Need::Localstack => "localstack".into(),
            Need::Azurite => "azurite".into(),
            Need::LowkeyVault => "lowkey-vault".into(),
            Need::FakeGcs => "fake-gcs".into(),
            Need::Kind => "kind".into(),
            Need::KindNode => "kind-node".into(),
            Need::Images => "images".into(),
        }
    }

    /// Whether an event's component is (part of) this need.
    pub fn matches(&self, component: &str) -> bool {
        match self {
            Need::Velero(v) | Need::Plugin { velero: v, .. } => {
                let want = format!("velero-v{}", v.trim_start_matches('v'));
                component == want
                    || component
                        .strip_prefix(&want)
                        .is_some_and(|rest| rest.starts_with('.'))
            }
            other => component == other.arg(),
        }
    }
}

/// What a cell needs from the local test bed, with the bed's images for kind cells.
pub fn needs(cell: &Cell) -> BTreeSet<Need> {
    needs_with(cell, ImageSource::Auto)
}

/// What a cell needs from the local test bed (nothing when it runs elsewhere). A kind cell
/// needs the Velero CLI of its versions (its manifests come from `velero install`) and,
/// unless it runs upstream's images, kind, the node image and the bed's images.
pub fn needs_with(cell: &Cell, images: ImageSource) -> BTreeSet<Need> {
    let s = &cell.scenario;
    let mut out = BTreeSet::new();
    let versions = || {
        let mut v = vec![s.velero.version.clone()];
        for step in s.steps.iter().chain(&s.finally) {
            if let Step::UpgradeVelero(u) = step {
                v.push(u.version.clone());
            }
        }
        v
    };
    if s.environment.cluster == ClusterKind::Kind {
        if images != ImageSource::Upstream {
            out.extend([Need::Kind, Need::KindNode, Need::Images]);
        }
        out.extend(versions().into_iter().map(Need::Velero));
        return out;
    }
    if s.environment.cluster != ClusterKind::Local {
        return out;
    }
    out.insert(Need::Kube);
    out.insert(Need::Etcd);
    for kind in s.environment.storage.kinds() {
        match kind {
            StorageKind::Localstack => {
                out.insert(Need::Localstack);
            }
            StorageKind::Azurite => {
                out.insert(Need::Azurite);
                out.insert(Need::LowkeyVault);
            }
            StorageKind::FakeGcs => {
                out.insert(Need::FakeGcs);
            }
            StorageKind::Aws | StorageKind::Azure | StorageKind::Gcp => {}
        }
    }
    let versions = versions();
    let mut plugins: BTreeSet<String> = s
        .velero
        .plugins
        .iter()
        .filter(|p| !p.contains('/') && !p.contains(':'))
        .cloned()
        .collect();
    plugins.extend(
        s.velero
            .locations
            .iter()
            .map(|l| l.provider.as_str().to_string()),
    );
    for v in versions {
        for p in &plugins {
            out.insert(Need::Plugin {
                velero: v.clone(),
                plugin: p.clone(),
            });
        }
        out.insert(Need::Velero(v));
    }
    out
}

/// The provisioning script: `$VDRILL_SETUP`, else `ci/testbed/setup.sh` of this
/// checkout (the working directory's, then the one vdrill was built from).
pub fn setup_script() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VDRILL_SETUP").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    [
        PathBuf::from("ci/testbed/setup.sh"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ci/testbed/setup.sh"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Why a need cannot be met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Provisioning failed or a registry refused it: an environment error.
    Error(String),
    /// This machine lacks an input: the cells that need it are skipped.
    Absent(String),
}

impl Problem {
    pub fn text(&self) -> &str {
        match self {
            Problem::Error(s) | Problem::Absent(s) => s,
        }
    }
}

/// How each requested component ended.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Final event per component.
    pub finals: BTreeMap<String, State>,
    /// Plugins reported `unavailable` or `absent` inside a Velero component:
    /// (component, plugin name) -> that state.
    pub plugins: BTreeMap<(String, String), State>,
    /// Set when the script itself failed (or could not run), with why.
    pub failure: Option<String>,
}

impl Outcome {
    /// Why `need` is not available, if it is not.
    pub fn problem(&self, need: &Need) -> Option<Problem> {
        for (component, state) in &self.finals {
            if !need.matches(component) {
                continue;
            }
            match state {
                State::Failed { log, message } => {
                    return Some(Problem::Error(format!(
                        "provisioning {component} failed: {message} (log: {})",
                        log.display()
                    )));
                }
                State::Unavailable(why) => {
                    return Some(Problem::Error(format!(
                        "{component} is not available: {why}"
                    )));
                }
                State::Absent(why) => {
                    return Some(Problem::Absent(format!(
                        "{component} cannot be built here: {why}"
                    )));
                }
                _ => {}
            }
        }
        if let Need::Plugin { plugin, .. } = need {
            for ((component, name), state) in &self.plugins {
                if name != plugin || !need.matches(component) {
                    continue;
                }
                match state {
                    State::Absent(why) => {
                        return Some(Problem::Absent(format!("{component}: {why}")));
                    }
                    State::Unavailable(why) => {
                        return Some(Problem::Error(format!("{component}: {why}")));
                    }
                    _ => {}
                }
            }
        }
        None
    }

    fn record(&mut self, e: &Event) {
        match &e.state {
            State::Unavailable(why) | State::Absent(why) if !e.is_final() => {
                if let Some(name) = why
                    .strip_prefix("plugin ")
                    .and_then(|r| r.split_whitespace().next())
                {
                    self.plugins
                        .insert((e.component.clone(), name.to_string()), e.state.clone());
                }
            }
            _ if e.is_final() => {
                self.finals.insert(e.component.clone(), e.state.clone());
            }
            _ => {}
        }
    }
}

/// Run the script for `needs`, reporting its events; `log` receives its stderr.
pub async fn run(
    script: &Path,
    needs: &BTreeSet<Need>,
    supervisor: &Supervisor,
    log: &Path,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Outcome {
    let mut cmd = std::process::Command::new("bash");
    let args: BTreeSet<String> = needs.iter().map(Need::arg).collect();
    cmd.arg(script).args(args);
    let recorded = std::sync::Mutex::new(Outcome::default());
    let streamed = supervisor.stream("setup.sh", cmd, log, |line| {
        if let Some(e) = parse(line) {
            recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(&e);
            progress(&e);
        }
    });
    let status = tokio::select! {
        s = streamed => s,
        _ = cancel.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    let mut out = recorded.into_inner().unwrap_or_else(|p| p.into_inner());
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            let tail = super::process::tail(log, 5);
            out.failure = Some(format!(
                "{} failed ({s}): {}; log: {}",
                script.display(),
                tail.trim(),
                log.display()
            ));
        }
        Err(e) => out.failure = Some(format!("{}: {e:#}", script.display())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_cell_needs_the_beds_kind_pieces_unless_it_runs_upstream_images() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/fsb-kms-basic.yaml");
        let cell = crate::scenario::load(&path).unwrap().cells.remove(0);
        assert_eq!(
            needs(&cell).into_iter().collect::<Vec<_>>(),
            [
                Need::Velero("1.17".into()),
                Need::Kind,
                Need::KindNode,
                Need::Images
            ]
        );
        assert_eq!(
            needs_with(&cell, ImageSource::Upstream)
                .into_iter()
                .collect::<Vec<_>>(),
            [Need::Velero("1.17".into())]
        );
    }

    #[test]
    fn a_multi_cloud_cell_needs_every_emulator_and_every_plugin() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/multi-cloud.yaml");
        let cell = crate::scenario::load(&path).unwrap().cells.remove(0);
        let n = needs(&cell);
        for need in [
            Need::Localstack,
            Need::Azurite,
            Need::LowkeyVault,
            Need::FakeGcs,
        ] {
            assert!(n.contains(&need), "{need:?} in {n:?}");
        }
        for plugin in ["aws", "azure", "gcp"] {
            assert!(
                n.contains(&Need::Plugin {
                    velero: "1.17".into(),
                    plugin: plugin.into()
                }),
                "{plugin} in {n:?}"
            );
        }
        assert_eq!(Need::FakeGcs.arg(), "fake-gcs");
        assert!(Need::FakeGcs.matches("fake-gcs"));
    }

    #[test]
    fn events_parse_and_other_lines_do_not() {
        assert_eq!(
            parse("::vdrill-event velero-v1.18.3 start 480 building Velero v1.18.3").unwrap(),
            Event {
                component: "velero-v1.18.3".into(),
                state: State::Start {
                    expected: Some(Duration::from_secs(480)),
                    what: "building Velero v1.18.3".into()
                }
            }
        );
        assert_eq!(
            parse("::vdrill-event etcd cached").unwrap().state,
            State::Cached
        );
        assert_eq!(
            parse("::vdrill-event etcd done 12 built").unwrap().state,
            State::Done {
                seconds: 12.0,
                text: "built".into()
            }
        );
        assert_eq!(
            parse("::vdrill-event kube failed /c/logs/kube.log go build failed")
                .unwrap()
                .state,
            State::Failed {
                log: "/c/logs/kube.log".into(),
                message: "go build failed".into()
            }
        );
        assert_eq!(
            parse("::vdrill-event setup wait pid 12").unwrap().state,
            State::Wait("pid 12".into())
        );
        assert!(parse("[setup 10:00:00] etcd: cached").is_none());
        assert!(parse("::vdrill-event etcd frobnicated").is_none());
    }

    #[test]
    fn a_velero_need_matches_its_patch_builds_only() {
        let n = Need::Velero("1.18".into());
        assert!(n.matches("velero-v1.18.3"));
        assert!(!n.matches("velero-v1.180.1"));
        assert!(!n.matches("velero-v1.17.2"));
        assert!(Need::Velero("v1.18.3".into()).matches("velero-v1.18.3"));
        assert_eq!(n.arg(), "velero@1.18");
        let out = Outcome {
            finals: [(
                "velero-v1.18.3".to_string(),
                State::Failed {
                    log: "/l".into(),
                    message: "boom".into(),
                },
            )]
            .into(),
            failure: None,
            plugins: Default::default(),
        };
        assert_eq!(
            out.problem(&n).unwrap(),
            Problem::Error("provisioning velero-v1.18.3 failed: boom (log: /l)".into())
        );
        assert!(out.problem(&Need::Etcd).is_none());
    }

    #[test]
    fn a_plugin_this_machine_cannot_build_is_absent_and_names_why() {
        let mut out = Outcome::default();
        for line in [
            "::vdrill-event velero-v1.18.3 absent plugin azure v1.14.0-rc.1 needs /x/shared/goproxy (set VDRILL_SHARED)",
            "::vdrill-event velero-v1.18.3 cached",
            "::vdrill-event lowkey-vault absent needs /x/shared/sources/lowkey-vault",
        ] {
            out.record(&parse(line).unwrap());
        }
        let azure = Need::Plugin {
            velero: "1.18".into(),
            plugin: "azure".into(),
        };
        let aws = Need::Plugin {
            velero: "1.18".into(),
            plugin: "aws".into(),
        };
        match out.problem(&azure) {
            Some(Problem::Absent(why)) => assert!(
                why.contains("plugin azure v1.14.0-rc.1 needs /x/shared/goproxy"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(out.problem(&aws), None);
        assert_eq!(
            out.problem(&Need::Velero("1.18".into())),
            None,
            "the Velero build itself is fine"
        );
        assert!(matches!(
            out.problem(&Need::LowkeyVault),
            Some(Problem::Absent(_))
        ));
        assert_eq!(azure.arg(), "velero@1.18");
    }
}
