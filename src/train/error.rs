//! Why a run could not start or go on.

use super::checkpoint::CheckpointError;
use crate::batch::DatasetError;
use crate::config::ConfigIssue;
use crate::model::ModelError;
use crate::template::TemplateError;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("template: {0}")]
    Template(#[from] TemplateError),
    #[error("compute: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Tasks(#[from] Box<crate::eval::tasks::TasksError>),
    /// A reward function failed (GRPO): the message names the reward and the line.
    #[error(transparent)]
    Reward(#[from] crate::reward::RewardError),
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<ConfigIssue> for TrainError {
    fn from(i: ConfigIssue) -> Self {
        TrainError::Config(i.to_string())
    }
}
