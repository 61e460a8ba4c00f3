//! `tunelab completions` and `tunelab man`: shell completion scripts and man pages, made
//! from the same clap definitions as `--help`, so they cannot drift from the binary.

use super::exit;
use clap::{Args, CommandFactory};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write tunelab.1 and one page per command (tunelab-train.1, tunelab-data-convert.1,
    /// …) into DIR (created) instead of printing the top-level page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Writes `bytes` to stdout; a reader that stopped early (`| head`) is not an error.
pub fn print(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

pub fn completions(a: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "tunelab", &mut script);
    print(&script)?;
    Ok(ExitCode::from(exit::OK))
}

pub fn man(a: ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = super::Cli::command();
    match a.out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            print(&page)?;
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("error: {}: {e}", dir.display());
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
            match write_pages(cmd, &dir) {
                Ok(n) => eprintln!("{n} man pages written to {}", dir.display()),
                Err(e) => {
                    eprintln!("error: writing man pages into {}: {e}", dir.display());
                    return Ok(ExitCode::from(exit::UNUSABLE));
                }
            }
        }
    }
    Ok(ExitCode::from(exit::OK))
}

/// One page per command, `tunelab.1` and `tunelab-data-convert.1` alike, as
/// `clap_mangen::generate_to` writes them but with tunelab's version on every page (a
/// subcommand has none of its own). Returns how many were written.
fn write_pages(cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<usize> {
    fn write(cmd: clap::Command, dir: &std::path::Path, source: &str) -> std::io::Result<usize> {
        let mut n = 0;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            n += write(sub.clone(), dir, source)?;
        }
        clap_mangen::Man::new(cmd).source(source).generate_to(dir)?;
        Ok(n + 1)
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir, &format!("tunelab {}", env!("CARGO_PKG_VERSION")))
}
