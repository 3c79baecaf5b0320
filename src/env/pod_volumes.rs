//! PodVolumeBackups and PodVolumeRestores of a file-system (Kopia) backup or restore:
//! whether they are all done, each one's phase for the step's report, and the message
//! of a failed one as the step's error.

/// One PodVolumeBackup or PodVolumeRestore as read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVolume {
    pub name: String,
    /// `<namespace>/<pod>:<volume>` of the volume it copies.
    pub volume: String,
    /// `status.phase`; empty while Velero has not set it.
    pub phase: String,
    /// `status.message`.
    pub message: String,
}

/// Phases after which Velero does not touch the object again.
pub fn is_terminal(phase: &str) -> bool {
    matches!(phase, "Completed" | "Failed" | "Canceled")
}

/// Where a set of pod-volume operations stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Some are not in a terminal phase yet.
    Running,
    /// All completed; one line per volume for the report.
    Completed(Vec<String>),
    /// All terminal, at least one failed or canceled: the failures' messages, each
    /// naming its object and volume (the step's error, matched by `expect.error`).
    Failed(String),
}

pub fn progress(kind: &str, items: &[PodVolume]) -> Progress {
    if items.iter().any(|i| !is_terminal(&i.phase)) {
        return Progress::Running;
    }
    let failed: Vec<String> = items
        .iter()
        .filter(|i| i.phase != "Completed")
        .map(|i| {
            format!(
                "{kind} {} ({}) {}: {}",
                i.name,
                i.volume,
                i.phase,
                if i.message.is_empty() {
                    "no message"
                } else {
                    &i.message
                }
            )
        })
        .collect();
    if failed.is_empty() {
        Progress::Completed(
            items
                .iter()
                .map(|i| format!("{kind} {} ({}) Completed", i.name, i.volume))
                .collect(),
        )
    } else {
        Progress::Failed(failed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, phase: &str, message: &str) -> PodVolume {
        PodVolume {
            name: name.into(),
            volume: "fsb/fsb-writer:data".into(),
            phase: phase.into(),
            message: message.into(),
        }
    }

    #[test]
    fn waits_until_every_one_is_terminal() {
        let items = [pv("a", "Completed", ""), pv("b", "InProgress", "")];
        assert_eq!(progress("PodVolumeBackup", &items), Progress::Running);
        assert_eq!(
            progress("PodVolumeBackup", &[pv("a", "", "")]),
            Progress::Running
        );
    }

    #[test]
    fn a_failed_one_gives_its_message_as_the_error() {
        let items = [
            pv("a", "Completed", ""),
            pv(
                "b",
                "Failed",
                "error to initialize data path: KMS.DisabledException",
            ),
        ];
        assert_eq!(
            progress("PodVolumeBackup", &items),
            Progress::Failed(
                "PodVolumeBackup b (fsb/fsb-writer:data) Failed: error to initialize data path: KMS.DisabledException".into()
            )
        );
    }

    #[test]
    fn all_completed_lists_each_volume() {
        assert_eq!(
            progress("PodVolumeRestore", &[pv("r", "Completed", "")]),
            Progress::Completed(vec![
                "PodVolumeRestore r (fsb/fsb-writer:data) Completed".into()
            ])
        );
    }
}
