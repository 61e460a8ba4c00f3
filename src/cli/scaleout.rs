//! `tunelab export-config` and `tunelab runs import`: hand a run to Axolotl, TRL or
//! LLaMA-Factory, and bring their finished runs back.

use super::exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tunelab::config::RunConfig;
use tunelab::paths::Paths;
use tunelab::runs;
use tunelab::scaleout::{self, ExportOptions, ImportOptions, Launch, Sharding, Tool};

#[derive(Debug, clap::Args)]
pub struct ExportConfigArgs {
    /// A run folder or id, or a run config (YAML) or preset.
    pub run: String,
    /// The tool: axolotl, trl or llamafactory.
    #[arg(long)]
    pub to: String,
    /// The folder to write (created; an existing one must be empty or an earlier export).
    #[arg(short, long)]
    pub output: PathBuf,
    /// GPUs to train on (one machine).
    #[arg(long, default_value_t = 1)]
    pub gpus: usize,
    /// DeepSpeed ZeRO stage (2 or 3).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["2", "3"]), conflicts_with = "fsdp")]
    pub zero: Option<String>,
    /// Shard with PyTorch FSDP (version 2) instead.
    #[arg(long)]
    pub fsdp: bool,
    /// The base model to name instead of model.path (a hub id for the cluster).
    #[arg(long, value_name = "MODEL")]
    pub base_model: Option<String>,
    /// Override a field of the config first: `--set train.lr=1e-4`.
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The other tool's output folder (adapter plus trainer_state.json, or checkpoint-N
    /// folders holding them).
    pub dir: PathBuf,
    /// The run's name (default: the exported config's name, or the folder's).
    #[arg(long)]
    pub name: Option<String>,
    /// The base model (a folder or hub id), when the adapter names none or another path.
    #[arg(long)]
    pub model: Option<String>,
}

/// The config of a run folder or id (as the run used it), or of a YAML file or preset
/// (paths resolved as `tunelab train` resolves them).
fn load(spec: &str, paths: &Paths, set: &[String]) -> Result<RunConfig, String> {
    let root = runs::runs_root(&paths.data);
    if let Some(run) = runs::resolve(spec, &root).filter(|r| r.config().is_file()) {
        // A run's config: its paths are absolute already; overrides are checked all the same.
        let mut cfg = RunConfig::load(&run.config()).map_err(|e| e.to_string())?;
        cfg.apply_sets(set)?;
        if let Some(i) = cfg.validate().first() {
            return Err(format!("{spec}: {i}"));
        }
        return Ok(cfg);
    }
    let (mut cfg, bases) = super::run_config::load_config(spec, paths)?;
    cfg.apply_sets(set)?;
    let base_refs: Vec<&Path> = bases.iter().map(PathBuf::as_path).collect();
    if let Some(i) = cfg.validate().first() {
        return Err(format!("{spec}: {i}"));
    }
    cfg.resolve_paths(&base_refs)
        .map_err(|e| format!("{spec}: {e}"))?;
    Ok(cfg)
}

pub fn export_config(a: ExportConfigArgs) -> anyhow::Result<ExitCode> {
    let tool: Tool = match a.to.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    if a.gpus == 0 {
        eprintln!("error: --gpus must be at least 1");
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    let sharding = match (a.zero.as_deref(), a.fsdp) {
        (Some("2"), _) => Sharding::Zero(2),
        (Some(_), _) => Sharding::Zero(3),
        (None, true) => Sharding::Fsdp,
        (None, false) => Sharding::None,
    };
    let paths = Paths::resolve();
    let cfg = match load(&a.run, &paths, &a.set) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    let opts = ExportOptions {
        tool,
        launch: Launch {
            gpus: a.gpus,
            nodes: 1,
            sharding,
        },
        base_model: a.base_model,
    };
    let out = match scaleout::export(&cfg, &a.output, &opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    println!(
        "{} → {} in {}: {} train records{}",
        cfg.name.as_deref().unwrap_or(&a.run),
        tool.label(),
        out.dir.display(),
        out.train_records,
        if out.eval_records > 0 {
            format!(", {} held out", out.eval_records)
        } else {
            String::new()
        }
    );
    for f in &out.files {
        println!("  {f}");
    }
    if let Some((checked, all)) = out.marked {
        println!(
            "{}: {{% generation %}} markers around the tokens tunelab trains, checked on {}",
            scaleout::TEMPLATE_FILE,
            if all {
                format!("every record ({checked})")
            } else {
                format!("the first {checked} records")
            }
        );
    }
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    println!("launch (in {}):", out.dir.display());
    for c in &out.commands {
        println!("  {c}");
    }
    if !out.unmapped.is_empty() {
        println!("not mapped ({}; see README.txt):", out.unmapped.len());
        for u in &out.unmapped {
            println!("  {}: {}", u.field, u.why);
        }
    }
    Ok(ExitCode::from(exit::OK))
}

pub fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let root = runs::runs_root(&Paths::resolve().data);
    let opts = ImportOptions {
        name: a.name,
        model: a.model,
    };
    match scaleout::import(&a.dir, &root, &opts) {
        Ok(i) => {
            println!("{}", i.id);
            eprintln!(
                "imported {} steps ({} train and {} eval events) into {}",
                i.steps,
                i.train_events,
                i.eval_events,
                i.run.root.display()
            );
            eprintln!("  adapter from {}", i.adapter_from.display());
            match &i.config {
                Ok(from) => eprintln!("  config from {from}"),
                Err(why) => eprintln!("  no config.yaml: {why}"),
            }
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(exit::UNUSABLE))
        }
    }
}
