//! What a run's details show beyond its summary: its config, checkpoints, whether it wrote
//! its adapter, and how the first sample prompt's answer changed over the evaluations. The
//! Runs tab reads it on a worker.

use super::RunDir;
use crate::config::RunConfig;

/// What the details pane shows of a run beyond its summary.
#[derive(Debug, Clone)]
pub struct RunDetails {
    pub config: Option<RunConfig>,
    pub checkpoints: Vec<u64>,
    pub adapter: bool,
    /// The first sample prompt and its reply at each evaluation: how the answer changed.
    pub samples: Option<(String, Vec<(u64, String)>)>,
}

impl RunDetails {
    /// Reads a run's config, checkpoints and sample replies.
    pub fn read(dir: &std::path::Path) -> Self {
        let run = RunDir::new(dir);
        let (events, _) = super::read_events(&run.events_path(), 0).unwrap_or_default();
        let mut samples: Option<(String, Vec<(u64, String)>)> = None;
        for e in events {
            if let super::EventKind::Sample {
                step,
                prompt,
                reply,
                ..
            } = e.kind
            {
                let s = samples.get_or_insert_with(|| (prompt.clone(), Vec::new()));
                if s.0 == prompt {
                    s.1.retain(|(st, _)| *st < step);
                    s.1.push((step, reply));
                }
            }
        }
        RunDetails {
            config: RunConfig::load(&run.config()).ok(),
            checkpoints: super::adapters::checkpoint_dirs(&run.checkpoints())
                .iter()
                .map(|(s, _)| *s)
                .collect(),
            adapter: run.has_adapter(),
            samples,
        }
    }
}
