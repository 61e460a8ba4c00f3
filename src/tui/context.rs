//! What tabs may read of the app while they handle input or draw, and where the workbench
//! reads and writes.

use super::keymap::Keymap;
use super::theme::Theme;
use crate::runs::RunSummary;
use std::path::PathBuf;

/// Where the workbench reads and writes.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The folder whose datasets the Data tab lists: a project, or the data folder.
    pub root: PathBuf,
    /// The data folder: demo/, runs/ (every run, a project's linked in), presets/, saved/.
    pub data: PathBuf,
    /// Where this workspace's runs go.
    pub runs: PathBuf,
    /// The `tunelab` binary that detached runs are started with.
    pub exe: PathBuf,
    /// The Hugging Face cache the model picker lists (`$HF_HOME/hub`).
    pub hf_cache: PathBuf,
}

impl Workspace {
    /// The data folder as the workspace (the demo lives there).
    pub fn new(data: PathBuf, exe: PathBuf) -> Self {
        Workspace {
            root: data.clone(),
            runs: crate::runs::runs_root(&data),
            data,
            exe,
            hf_cache: crate::paths::hf_hub_cache(),
        }
    }

    /// A project folder as the workspace.
    pub fn project(p: &crate::workspace::Project, data: PathBuf, exe: PathBuf) -> Self {
        Workspace {
            root: p.root.clone(),
            runs: p.runs.clone(),
            data,
            exe,
            hf_cache: crate::paths::hf_hub_cache(),
        }
    }

    pub fn is_project(&self) -> bool {
        self.root != self.data
    }

    /// Where this workspace's runs go.
    pub fn runs_root(&self) -> PathBuf {
        self.runs.clone()
    }

    /// Every run's folder (a project's runs are linked in here).
    pub fn all_runs(&self) -> PathBuf {
        crate::runs::runs_root(&self.data)
    }

    /// Where the workbench writes what it makes when nothing else says where (chat
    /// exchanges, a converted copy of a file from outside the workspace, synthesized data):
    /// a project keeps its own files in its `data/` folder; the data folder uses `saved/`.
    pub fn outputs(&self) -> PathBuf {
        if self.is_project() {
            self.root.join("data")
        } else {
            self.data.join("saved")
        }
    }

    /// Where the workbench writes the configs of the runs it starts.
    pub fn configs(&self) -> PathBuf {
        match self.runs.parent() {
            Some(p) if self.is_project() => p.join("configs"),
            _ => self.data.join("configs"),
        }
    }

    /// The models a user can pick here: the workspace's, the demo's, the hub cache's.
    pub fn models(&self) -> Vec<crate::model::catalog::ModelEntry> {
        let demo = self.data.join("demo");
        let mut roots = vec![self.root.as_path()];
        if self.is_project() {
            roots.push(demo.as_path());
        }
        crate::model::catalog::list(&roots, &self.hf_cache)
    }

    /// How deep the Data tab looks for datasets.
    pub fn scan_depth(&self) -> usize {
        if self.is_project() {
            6
        } else {
            2
        }
    }
}

/// What every tab may read of the app while it handles input or draws.
pub struct Ctx<'a> {
    pub theme: &'a Theme,
    pub keymap: &'a Keymap,
    pub ws: &'a Workspace,
    /// The Adapter form's model, resolved against the workspace (the token view and Chat
    /// use it).
    pub model: &'a str,
    /// Every run, newest first (from the watcher).
    pub runs: &'a [RunSummary],
    /// A run the workbench watches is still training.
    pub training: bool,
    /// The form's `data.tool_format`, which the token view follows.
    pub tool_format: crate::template::ToolFormat,
}
