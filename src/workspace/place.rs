//! Where the workbench reads and writes: the workspace's folder, the data folder, where its
//! runs go, and the binary detached runs start with; and starting a run there.

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
    pub fn project(p: &super::Project, data: PathBuf, exe: PathBuf) -> Self {
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

    /// Starts `cfg` as a detached run of this workspace: its relative paths resolved against
    /// the workspace and the data folder, the config written to [`Workspace::configs`]
    /// under the new run's id, then `tunelab train CFG --run-dir DIR --detach`. Returns the
    /// run's id and folder.
    pub fn start_run(
        &self,
        mut cfg: crate::config::RunConfig,
    ) -> Result<(String, PathBuf), String> {
        if let Some(i) = cfg.validate().first() {
            return Err(format!("cannot start: {i}"));
        }
        cfg.resolve_paths(&[self.root.as_path(), self.data.as_path()])
            .map_err(|e| format!("cannot start: {e}"))?;
        let name = cfg.name.clone().unwrap_or_else(|| "run".into());
        let root = self.runs_root();
        let id = crate::runs::new_id(&name, &root);
        let dir = root.join(&id);
        let cfg_path = self.configs().join(format!("{id}.yaml"));
        std::fs::create_dir_all(self.configs())
            .map_err(|e| e.to_string())
            .and_then(|_| serde_yaml::to_string(&cfg).map_err(|e| e.to_string()))
            .and_then(|y| {
                crate::files::write_atomic(&cfg_path, y.as_bytes()).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("cannot write {}: {e}", cfg_path.display()))?;
        let out = std::process::Command::new(&self.exe)
            .arg("train")
            .arg(&cfg_path)
            .arg("--run-dir")
            .arg(&dir)
            .arg("--detach")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "tunelab train failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok((id, dir))
    }

    /// Puts `cfg` in the data folder's queue as a run of this workspace (its folder holds
    /// the config and a `queued` status) and makes sure the scheduler runs. Returns the
    /// run's id, folder and place among the waiting runs.
    pub fn queue_run(
        &self,
        mut cfg: crate::config::RunConfig,
    ) -> Result<(String, PathBuf, usize), String> {
        use crate::queue::{submit, QueueFiles};
        if let Some(i) = cfg.validate().first() {
            return Err(format!("cannot queue: {i}"));
        }
        cfg.resolve_paths(&[self.root.as_path(), self.data.as_path()])
            .map_err(|e| format!("cannot queue: {e}"))?;
        let name = cfg.name.clone().unwrap_or_else(|| "run".into());
        let root = self.runs_root();
        let id = crate::runs::new_id(&name, &root);
        let run = crate::runs::RunDir::new(root.join(&id));
        std::fs::create_dir_all(&run.root)
            .and_then(|_| crate::runs::register(&self.all_runs(), &run).map(drop))
            .map_err(|e| format!("cannot queue: {}: {e}", run.root.display()))?;
        let entry =
            submit::queued_run(&cfg, &run, None, None).map_err(|e| format!("cannot queue: {e}"))?;
        let files = QueueFiles::new(&self.data);
        let position = files
            .update(|q| {
                q.push(entry)?;
                Ok(q.position(&id).unwrap_or(0))
            })
            .map_err(|e| format!("cannot queue: {e}"))?;
        crate::queue::ensure(&files, &self.exe)
            .map_err(|e| format!("queued {id}, but the scheduler did not start: {e}"))?;
        Ok((id, run.root, position))
    }
}
