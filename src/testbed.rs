//! `vdrill testbed up|status|down`: the local test bed by hand.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum TestbedCommand {
    /// Start the bed and print the kubeconfig path and endpoints.
    Up,
    /// Show whether a bed started with `up` is running.
    Status,
    /// Stop a bed started with `up` and remove its data.
    Down,
}

pub async fn main(_cmd: TestbedCommand) -> i32 {
    eprintln!("the local test bed is not available in this build yet");
    crate::cli::EXIT_DRILL_FAILED
}
