//! The command line: a thin shell over the core. Each subcommand prints its own output and
//! returns an exit code; errors at this edge are `anyhow`.

mod args;
pub mod bench;
#[cfg(feature = "tui")]
mod bench_tui;
pub mod chat;
pub mod data;
pub mod eval;
mod export;
pub mod model;
mod plot;
mod render;
pub mod runs;
mod scaleout;
#[cfg(feature = "serve")]
mod serve;
mod tokens;
pub mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes the CLI promises.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The data has problems (validation found some, or a conversion stopped on one).
    pub const PROBLEMS: u8 = 1;
    /// The input cannot be used at all: missing, unreadable, not a dataset, bad arguments.
    pub const UNUSABLE: u8 = 2;
    /// A training run was stopped (SIGTERM, SIGINT or `runs stop`) after its checkpoint.
    pub const STOPPED: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "tunelab",
    version,
    about = "A terminal workbench for fine-tuning large language models",
    long_about = "A terminal workbench for fine-tuning large language models.\n\n\
                  `tunelab [DIR]` opens the workbench on a project folder (default: the \
                  current folder when it holds datasets or a tunelab.yaml, else the data \
                  folder with the demo). Every workbench action is also a subcommand, so it \
                  can be scripted.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A project folder to open as the workspace.
    #[arg(value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// The workbench's theme: dark, light, high-contrast or mono (NO_COLOR picks mono).
    #[arg(long)]
    pub theme: Option<String>,
    /// Capture the mouse (off by default so text selection works over SSH).
    #[arg(long)]
    pub mouse: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dataset tools: inspect, validate, convert, stats, formats, synth, pull.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// One reply from a model (and adapter) to a prompt, streamed to stdout.
    Chat(chat::ChatArgs),
    /// Mean loss over trained tokens and perplexity of a model (and adapter) on a dataset.
    Eval(eval::EvalArgs),
    /// List the built-in training presets, or print one with every field (`--show NAME`;
    /// `--show default` prints the defaults a minimal config takes).
    Presets {
        #[arg(long)]
        show: Option<String>,
    },
    /// Throughput benchmarks: forward, generate.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Fine-tune a LoRA adapter (SFT) from a config file or preset.
    Train(train::TrainArgs),
    /// Training runs: list, show, watch, stop.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Print the workbench's key bindings (defaults plus <config>/keys.yaml) as Markdown.
    Keys,
    /// Create the demo workspace (tiny model, persona datasets) in the data folder.
    Demo,
    /// Model tools: init-tiny, info.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// A run's or adapter's result for other tools: a merged model folder, GGUF, LoRA GGUF.
    Export(export::ExportArgs),
    /// A run as the equivalent Axolotl, TRL or LLaMA-Factory experiment.
    ExportConfig(scaleout::ExportConfigArgs),
    /// An OpenAI-compatible server (/v1/chat/completions, /v1/models) for a model and its
    /// adapters.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (theme, mouse, dir) = (cli.theme.clone(), cli.mouse, cli.dir.clone());
    match cli.command {
        Some(Command::Data(cmd)) => data::run(cmd),
        Some(Command::Model(cmd)) => model::run(cmd),
        Some(Command::Train(args)) => train::run(args),
        Some(Command::Runs(cmd)) => runs::run(cmd),
        Some(Command::Export(args)) => export::run(args),
        Some(Command::ExportConfig(args)) => scaleout::export_config(args),
        #[cfg(feature = "serve")]
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Demo) => {
            let demo = tunelab::workspace::Demo::new(&tunelab::paths::Paths::resolve().data);
            match demo.ensure() {
                Ok(wrote) => {
                    println!("{}", demo.root.display());
                    if !wrote {
                        eprintln!("the demo workspace was already there");
                    }
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(exit::UNUSABLE))
                }
            }
        }
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Chat(args)) => chat::run(args),
        Some(Command::Bench(cmd)) => bench::run(cmd),
        Some(Command::Presets { show }) => presets(show.as_deref()),
        #[cfg(feature = "tui")]
        Some(Command::Keys) => {
            let paths = tunelab::paths::Paths::resolve();
            let overrides = std::fs::read_to_string(paths.config.join("keys.yaml")).ok();
            match tunelab::tui::keymap::Keymap::load(overrides.as_deref()) {
                Ok(k) => {
                    print!("{}", k.markdown());
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(exit::UNUSABLE))
                }
            }
        }
        #[cfg(not(feature = "tui"))]
        Some(Command::Keys) | None => {
            let _ = (theme, mouse, dir);
            eprintln!("error: this tunelab was built without the workbench (the `tui` feature); use the subcommands (tunelab --help)");
            Ok(ExitCode::from(exit::UNUSABLE))
        }
        #[cfg(feature = "tui")]
        None => {
            use std::io::IsTerminal;
            if !std::io::stdout().is_terminal() {
                eprintln!("error: the workbench needs a terminal; use the subcommands (tunelab --help) in scripts");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
            let paths = tunelab::paths::Paths::resolve();
            if let Some(d) = dir.as_ref().filter(|d| !d.is_dir()) {
                eprintln!(
                    "error: {}: no such folder (and not a subcommand; see tunelab --help)",
                    d.display()
                );
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
            let opts = tunelab::tui::Options { theme, mouse, dir };
            let exe = std::env::current_exe()?;
            let app = match tunelab::tui::build_app(&paths, &opts, exe) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(exit::UNUSABLE));
                }
            };
            tunelab::tui::run(app, &opts)?;
            Ok(ExitCode::from(exit::OK))
        }
    }
}

fn presets(show: Option<&str>) -> anyhow::Result<ExitCode> {
    use tunelab::config::{RunConfig, PRESETS};
    if let Some(name) = show {
        let cfg = if name == "default" {
            Ok(RunConfig::minimal(
                "MODEL (folder, .gguf or org/name)",
                "TRAIN.jsonl",
            ))
        } else {
            match PRESETS.iter().find(|(n, _)| *n == name) {
                Some((n, text)) => RunConfig::from_yaml(text, n).map_err(|e| e.to_string()),
                None => {
                    let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                    Err(format!(
                        "no preset {name:?}; expected default or one of {}",
                        names.join(", ")
                    ))
                }
            }
        };
        return Ok(match cfg {
            Ok(c) => {
                println!(
                    "# The {} config with every field; fields left out of a config take these \
                     defaults\n# (PEFT's LoraConfig, TRL's SFTConfig). Save it, edit it, then \
                     `tunelab train FILE`.",
                    if name == "default" {
                        "default".to_string()
                    } else {
                        format!("{name} preset's")
                    }
                );
                print!("{}", c.to_yaml());
                ExitCode::from(exit::OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(exit::UNUSABLE)
            }
        });
    }
    for (name, text) in PRESETS {
        let summary = match RunConfig::from_yaml(text, name) {
            Ok(c) => format!(
                "{} · {} · r{} α{} · lr {} · seq {} · {}",
                c.model.path,
                match c.train.method {
                    tunelab::config::Method::Sft => "sft".to_string(),
                    tunelab::config::Method::Dpo => format!("dpo {} β{}", c.dpo.loss, c.dpo.beta),
                    tunelab::config::Method::Kto => format!("kto β{}", c.kto.beta),
                },
                c.lora.r,
                c.lora.alpha,
                c.train.lr,
                c.data.max_seq_len,
                c.train.device
            ),
            Err(e) => format!("invalid: {e}"),
        };
        println!("{name:<24} {summary}");
    }
    Ok(ExitCode::from(exit::OK))
}
