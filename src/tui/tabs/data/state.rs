//! The Data tab's state: the listed files, the dataset read for paging, the record and
//! validation error under the cursor, search, the dialogs, and what follows from them
//! without touching the disk.

use super::synth::{SynthDialog, SynthMsg};
use crate::data::{Format, Preview};
use crate::template::Encoder;
use crate::tui::effect::Sink;
use crate::tui::widgets::{Picker, TextInput};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::workspace::FileEntry;

/// At most this many records are held for paging (the stats cover them).
pub const MAX_RECORDS: usize = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Text,
    Tokens,
    Problems,
}

/// Background results for this tab.
pub enum Msg {
    Files(Vec<FileEntry>),
    Loaded {
        path: PathBuf,
        result: Result<Preview, String>,
    },
    Encoder {
        model: String,
        result: Result<Arc<Encoder>, String>,
    },
    Converted(Result<(String, PathBuf), String>),
    /// Progress or the end of a synthesis run.
    Synth(SynthMsg),
}

pub struct DataTab {
    pub(super) root: PathBuf,
    pub(super) depth: usize,
    pub files: Vec<FileEntry>,
    pub file: usize,
    pub loaded: Option<Preview>,
    /// The file being read.
    pub loading: Option<PathBuf>,
    pub error: Option<String>,
    pub record: usize,
    pub view: View,
    pub problem: usize,
    pub search: String,
    /// The search field while it has focus.
    pub search_input: Option<TextInput>,
    /// The file finder (`o`) while it is open.
    pub finder: Option<Picker>,
    /// The convert dialog: index into the compatible target formats.
    pub convert: Option<usize>,
    /// The token view's encoder, for one model path.
    pub encoder: Option<(String, Result<Arc<Encoder>, String>)>,
    pub(super) encoder_loading: Option<String>,
    /// The Synthesize dialog (`S`) while it is open; it stays open while its run goes on.
    pub synth: Option<SynthDialog>,
    /// Delivers a synthesis run's progress to this tab from its worker threads.
    pub(super) sink: Sink<Msg>,
}

impl DataTab {
    /// The tab for the workspace at `root` (datasets `depth` folders deep), with nothing
    /// listed yet; `sink` carries a synthesis run's progress back.
    pub(super) fn empty(root: &Path, depth: usize, sink: Sink<Msg>) -> Self {
        DataTab {
            root: root.to_path_buf(),
            depth,
            files: Vec::new(),
            file: 0,
            loaded: None,
            loading: None,
            error: None,
            record: 0,
            view: View::Text,
            problem: 0,
            search: String::new(),
            search_input: None,
            finder: None,
            convert: None,
            encoder: None,
            encoder_loading: None,
            synth: None,
            sink,
        }
    }

    pub fn move_record(&mut self, delta: isize) {
        if self.view == View::Problems {
            let n = self.loaded.as_ref().map_or(0, |l| l.problems().len());
            if n > 0 {
                self.problem = (self.problem as isize + delta).clamp(0, n as isize - 1) as usize;
            }
            return;
        }
        let n = self.loaded.as_ref().map_or(0, |l| l.records.len());
        if n > 0 {
            self.record = (self.record as isize + delta).clamp(0, n as isize - 1) as usize;
        }
    }

    /// Jumps to the record of the selected validation error.
    pub fn jump_to_problem(&mut self) {
        if let Some(l) = &self.loaded {
            if let Some((i, _)) = l.problems().get(self.problem) {
                self.record = *i;
                self.view = View::Text;
            }
        }
    }

    /// Moves to the next record (after the current) whose text contains the search string.
    pub fn search_next(&mut self) -> bool {
        let Some(l) = &self.loaded else { return false };
        match l.find(self.record, &self.search) {
            Some(i) => {
                self.record = i;
                true
            }
            None => false,
        }
    }

    /// Target formats the loaded data can be converted to.
    pub fn targets(&self) -> Vec<Format> {
        let Some(l) = &self.loaded else {
            return Vec::new();
        };
        Format::all()
            .filter(|f| {
                *f != l.format && crate::data::convert::compatible(l.format.kind(), f.kind())
            })
            .collect()
    }

    /// Where a converted copy of the loaded file goes (for the dialog's hint).
    pub fn convert_target(&self, root: &Path, outputs: &Path) -> Option<PathBuf> {
        let l = self.loaded.as_ref()?;
        Some(crate::workspace::convert_folder(&l.path, root, outputs))
    }

    /// The token view's encoder for `model`, once it is loaded.
    pub fn encoder_for(&self, model: &str) -> Option<&Result<Arc<Encoder>, String>> {
        self.encoder
            .as_ref()
            .filter(|(m, _)| m == model)
            .map(|(_, e)| e)
    }
}
