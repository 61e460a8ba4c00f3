//! The command line: a thin shell over the core. Each subcommand prints its own output and
//! returns an exit code; errors at this edge are `anyhow`.

mod args;
pub mod bench;
#[cfg(feature = "tui")]
mod bench_tui;
pub mod chat;
mod compare;
pub mod data;
mod diff;
mod doctor;
pub mod eval;
mod export;
mod manual;
pub mod model;
mod plot;
mod progress;
mod queue;
mod render;
mod run_config;
pub mod runs;
mod scaleout;
#[cfg(feature = "serve")]
mod serve;
mod sweep;
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
    /// Dataset tools: inspect, validate, convert, stats, preview, formats, synth, pull.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// One reply from a model (and adapter) to a prompt, streamed to stdout (on the CPU).
    Chat(chat::ChatArgs),
    /// Did the fine-tune work: loss and perplexity of a dataset (with --dpo or --kto, the
    /// preference loss and rewards); `bench` multiple-choice tasks, `generate` and `score`
    /// answers against references, `judge` two sides by an LLM.
    Eval(Box<eval::EvalArgs>),
    /// List the built-in training presets, or print one as a complete config (`--show NAME`;
    /// `--show default`: the defaults).
    Presets {
        /// A preset's name, or `default`.
        #[arg(long, value_name = "NAME")]
        show: Option<String>,
    },
    /// Throughput benchmarks: forward, generate, train, tui.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Fine-tune a LoRA adapter (SFT, DPO and its variants, KTO or GRPO: train.method) from
    /// a config file or preset.
    ///
    /// train.method picks the objective: sft (cross-entropy on the trained tokens), dpo
    /// (preference pairs; dpo.loss: sigmoid, ipo, hinge, simpo or orpo), kto (completions
    /// rated one at a time) or grpo (completions sampled per prompt and scored by
    /// grpo.rewards; grpo.loss_type: grpo, bnpo, dr_grpo or dapo). Exit 0 when done, 3 when stopped with a checkpoint (continue with
    /// --resume), 1 when the run failed, 2 when the config cannot be used.
    Train(train::TrainArgs),
    /// Training runs: list, show, watch, stop, plot, import, compare, diff.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// The run queue: runs that start one after another as their device frees up (add,
    /// list, remove, move, start).
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Queue one run per point of a grid (--grid) or a random search (--random --range)
    /// over config fields; --prune median stops runs worse than the sweep's median.
    ///
    /// Prints the sweep's id, then each run's id. Rank the runs with `tunelab runs diff
    /// --sweep ID`.
    Sweep(Box<sweep::SweepArgs>),
    /// Print the workbench's key bindings (defaults plus <config>/keys.yaml) as Markdown.
    Keys,
    /// Create the demo workspace (a tiny model, SFT/DPO/KTO persona data) in the data folder.
    Demo,
    /// Model tools: init-tiny, info.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// A run's, adapter's or base model's weights for other tools: a merged folder, a GGUF
    /// (with an Ollama Modelfile) or a LoRA GGUF.
    Export(export::ExportArgs),
    /// A run or config as the equivalent Axolotl, TRL or LLaMA-Factory experiment (config,
    /// data, launch commands).
    ExportConfig(scaleout::ExportConfigArgs),
    /// An OpenAI-compatible server (/v1/chat/completions, /v1/models, /health) for a model
    /// and its adapters (on the CPU).
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Check this machine and build (CPU, CUDA, GPUs, memory, disk, HF cache, API keys,
    /// llama.cpp) and say how to fix what is missing.
    ///
    /// Run it first on a new machine. API keys are reported by name only, never their
    /// values. Always exits 0: it is a diagnosis.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) to stdout.
    ///
    /// Install it where the shell looks, e.g. bash: `tunelab completions bash >
    /// ~/.local/share/bash-completion/completions/tunelab`; zsh: `tunelab completions zsh >
    /// ~/.zfunc/_tunelab` (with `fpath+=~/.zfunc` before `compinit` in ~/.zshrc); fish:
    /// `tunelab completions fish > ~/.config/fish/completions/tunelab.fish`.
    Completions(manual::CompletionsArgs),
    /// Print the man page to stdout, or write one page per command into a folder.
    ///
    /// Install them with `tunelab man --out-dir ~/.local/share/man/man1`, then `man tunelab`,
    /// `man tunelab-train`.
    Man(manual::ManArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (theme, mouse, dir) = (cli.theme.clone(), cli.mouse, cli.dir.clone());
    match cli.command {
        Some(Command::Data(cmd)) => data::run(cmd),
        Some(Command::Model(cmd)) => model::run(cmd),
        Some(Command::Train(args)) => train::run(args),
        Some(Command::Runs(cmd)) => runs::run(cmd),
        Some(Command::Queue(cmd)) => queue::run(cmd),
        Some(Command::Sweep(args)) => sweep::run(*args),
        Some(Command::Export(args)) => export::run(args),
        Some(Command::ExportConfig(args)) => scaleout::export_config(args),
        #[cfg(feature = "serve")]
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Doctor(args)) => doctor::run(args),
        Some(Command::Completions(args)) => manual::completions(args),
        Some(Command::Man(args)) => manual::man(args),
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
        Some(Command::Eval(args)) => eval::run(*args),
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
                c.method_summary(),
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command has an about line and every argument a help line (clap's own `help`
    /// and `version` and hidden arguments aside), so `--help`, the man pages and the
    /// completions' descriptions say what each one is.
    #[test]
    fn every_command_and_argument_is_documented() {
        fn walk(cmd: &clap::Command, path: &str, bad: &mut Vec<String>) {
            if !path.is_empty() && cmd.get_about().is_none_or(|a| a.to_string().is_empty()) {
                bad.push(format!("`{path}` has no about"));
            }
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none_or(|h| h.to_string().is_empty()) {
                    bad.push(format!("`{path}` argument {id} has no help"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, format!("{path} {}", sub.get_name()).trim(), bad);
            }
        }
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        let mut bad = Vec::new();
        walk(&cmd, "", &mut bad);
        assert!(bad.is_empty(), "undocumented:\n{}", bad.join("\n"));
    }
}
