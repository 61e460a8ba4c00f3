use clap::Parser;
use std::process::ExitCode;

mod cli;

/// mimalloc: the data tools allocate on worker threads and free on the writer; glibc's
/// arenas contend on that pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let paths = tunelab::paths::Paths::resolve();
    tunelab::logging::init(&paths);
    tracing::info!(args = ?std::env::args().collect::<Vec<_>>(), "start");
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit::UNUSABLE)
        }
    }
}
