use clap::Parser;

fn main() {
    // Output into a closed pipe (`vdrill plan ... | head`) ends the process quietly,
    // as it does for other command-line tools, instead of a panic in println!.
    // SAFETY: at the start of main, before any thread exists.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = vdrill::cli::Cli::parse();
    if let Some(host) = cli
        .images()
        .and_then(vdrill::env::kind::docker_host_for_testcontainers)
    {
        // SAFETY: still before any thread exists (the runtime is built below).
        unsafe { std::env::set_var("DOCKER_HOST", host) };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vdrill: cannot start the async runtime: {e}");
            std::process::exit(vdrill::exit::DRILL_FAILED);
        }
    };
    let code = runtime.block_on(vdrill::cli::main(cli));
    // Do not wait for background tasks (log followers, watches) to wind down.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
