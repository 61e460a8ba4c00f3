//! `tunelab sweep`: one queued run per point of a grid or a random search over config
//! fields, each with a `sweep.json` naming the sweep, its point, the metric it is ranked by
//! and the pruner; `tunelab runs diff --sweep ID` ranks them.

use super::exit;
use clap::Args;
use std::process::ExitCode;
use tunelab::paths::Paths;
use tunelab::queue::submit;
use tunelab::runs::{self, RunDir};
use tunelab::sweep::{self, Axis, Direction, MedianPruner, Range, Space, SweepMark};

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// A run configuration (YAML) or a preset name: what every point starts from.
    pub config: String,
    /// Override a field of every run: `--set train.max_steps=200`.
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// A grid axis: the field and its values (YAML each); repeatable, every combination is
    /// a run.
    #[arg(long, value_name = "PATH=V1,V2,…", conflicts_with_all = ["random", "range"])]
    pub grid: Vec<String>,
    /// Random search: this many runs, each field drawn from its --range.
    #[arg(long, value_name = "N", requires = "range")]
    pub random: Option<usize>,
    /// A field's range for --random: uniform, or log-uniform with `:log`; whole-number
    /// ends draw whole numbers. Repeatable.
    #[arg(long, value_name = "PATH=LO:HI[:log]", requires = "random")]
    pub range: Vec<String>,
    /// The seed of the random search (the same seed draws the same points).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The metric the sweep is ranked and pruned by: `eval_loss`, `perplexity`, `loss` or
    /// any number on the runs' eval events (an eval task's `knowledge/acc`).
    #[arg(long, default_value = sweep::metric::DEFAULT_METRIC)]
    pub metric: String,
    /// Lower is better (the default for losses and unknown metrics).
    #[arg(long, conflicts_with = "maximize")]
    pub minimize: bool,
    /// Higher is better (the default for accuracies, match rates and rewards).
    #[arg(long)]
    pub maximize: bool,
    /// Stop a run at an evaluation where its metric is worse than the median of the
    /// sweep's completed runs at the same step (Optuna's median pruner): `median`.
    #[arg(long, value_name = "median", value_parser = ["median"])]
    pub prune: Option<String>,
    /// With --prune: completed runs needed before any is pruned (Optuna's
    /// n_startup_trials).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub prune_startup: usize,
    /// GPUs each run needs, for train.device cuda (default 1).
    #[arg(long, value_name = "N")]
    pub gpus: Option<usize>,
}

fn fail(e: &dyn std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {e}");
    Ok(ExitCode::from(exit::UNUSABLE))
}

/// The space the flags describe.
fn space(a: &SweepArgs) -> Result<Space, sweep::SweepError> {
    let space = match a.random {
        Some(n) => Space::Random {
            n,
            ranges: a
                .range
                .iter()
                .map(|r| Range::parse(r))
                .collect::<Result<_, _>>()?,
            seed: a.seed,
        },
        None => Space::Grid(
            a.grid
                .iter()
                .map(|g| Axis::parse(g))
                .collect::<Result<_, _>>()?,
        ),
    };
    space.paths()?;
    Ok(space)
}

pub fn run(a: SweepArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve();
    let space = match space(&a) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if a.random == Some(0) {
        return fail(&"--random must be at least 1");
    }
    let base = match super::run_config::ready_config(&a.config, &a.set, &paths) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if a.prune.is_some() && base.train.eval_every == 0 {
        return fail(&"--prune judges runs at their evaluations, and train.eval_every is 0; set it (--set train.eval_every=N)");
    }
    // Every point's config is built and checked before anything is queued.
    let points = space.points();
    let mut configs = Vec::with_capacity(points.len());
    for (k, point) in points.iter().enumerate() {
        let mut cfg = base.clone();
        for (path, value) in point {
            if let Err(e) = cfg.set_path(path, value) {
                return fail(&format!("point {}: {e}", k + 1));
            }
        }
        if let Some(i) = cfg.validate().first() {
            return fail(&format!("point {}: {i}", k + 1));
        }
        configs.push(cfg);
    }
    let direction = if a.maximize {
        Direction::Maximize
    } else if a.minimize {
        Direction::Minimize
    } else {
        Direction::guess(&a.metric)
    };
    let root = runs::runs_root(&paths.data);
    let folder = super::run_config::runs_folder(&root);
    let name = base.name.clone().unwrap_or_else(|| "run".into());
    // Unique among run folders: a sweep's runs are `<id>-1`, `<id>-2`, …
    let base_id = runs::new_id(&format!("{name}-sweep"), &folder);
    let mut id = base_id.clone();
    for n in 2.. {
        if !folder.join(format!("{id}-1")).exists() {
            break;
        }
        id = format!("{base_id}-{n}");
    }
    let dirs: Vec<RunDir> = (1..=configs.len())
        .map(|k| RunDir::new(folder.join(format!("{id}-{k}"))))
        .collect();
    let members: Vec<_> = dirs.iter().map(|d| d.root.clone()).collect();
    let mut entries = Vec::with_capacity(configs.len());
    for (k, ((cfg, run), point)) in configs.iter().zip(&dirs).zip(&points).enumerate() {
        let mark = SweepMark {
            sweep: id.clone(),
            index: k + 1,
            point: point
                .iter()
                .map(|(p, v)| (p.clone(), sweep::mark::yaml_value(v)))
                .collect(),
            metric: a.metric.clone(),
            direction,
            prune: a.prune.as_ref().map(|_| MedianPruner {
                startup: a.prune_startup,
            }),
            members: members.clone(),
        };
        let made = std::fs::create_dir_all(&run.root)
            .map_err(|e| format!("{}: {e}", run.root.display()))
            .and_then(|_| runs::register(&root, run).map_err(|e| e.to_string()))
            .and_then(|_| mark.write(run).map_err(|e| e.to_string()))
            .and_then(|_| {
                submit::queued_run(cfg, run, a.gpus, Some(id.clone())).map_err(|e| e.to_string())
            });
        match made {
            Ok(e) => entries.push(e),
            Err(e) => return fail(&e),
        }
        eprintln!("{id}-{} {}", k + 1, mark.label());
    }
    eprintln!(
        "sweep {id}: {} runs by {} ({}){}; rank them with `tunelab runs diff --sweep {id}`",
        entries.len(),
        a.metric,
        format!("{direction:?}").to_lowercase(),
        if a.prune.is_some() {
            format!(", median pruner after {} completed", a.prune_startup)
        } else {
            String::new()
        }
    );
    println!("{id}");
    super::queue::enqueue(entries)
}
