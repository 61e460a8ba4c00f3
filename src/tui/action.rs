//! Everything the workbench can do, as one enum. Keys map to actions (keymap.rs); the help
//! overlay, the command palette and the guide's key table list actions with these names
//! (snake_case) and descriptions.

use strum::{EnumMessage, IntoEnumIterator};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::EnumIter,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumMessage,
)]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    #[strum(message = "quit (runs keep going)")]
    Quit,
    #[strum(message = "show or hide this help")]
    Help,
    #[strum(message = "command palette")]
    Palette,
    #[strum(message = "every message so far, in full")]
    Messages,
    #[strum(message = "next tab")]
    NextTab,
    #[strum(message = "previous tab")]
    PrevTab,
    #[strum(message = "Data tab")]
    TabData,
    #[strum(message = "Adapter tab")]
    TabAdapter,
    #[strum(message = "Train tab")]
    TabTrain,
    #[strum(message = "Chat tab")]
    TabChat,
    #[strum(message = "Runs tab")]
    TabRuns,
    #[strum(message = "move up")]
    Up,
    #[strum(message = "move down")]
    Down,
    #[strum(message = "page up")]
    PageUp,
    #[strum(message = "page down")]
    PageDown,
    #[strum(message = "go to the first")]
    Top,
    #[strum(message = "go to the last")]
    Bottom,
    #[strum(message = "previous (file, option)")]
    Left,
    #[strum(message = "next (file, option)")]
    Right,
    #[strum(message = "open / confirm")]
    Enter,
    #[strum(message = "close / cancel")]
    Back,
    #[strum(message = "search records")]
    Search,
    #[strum(message = "next search match")]
    SearchNext,
    #[strum(message = "token view: trained and masked tokens")]
    TokenView,
    #[strum(message = "validation errors (Enter jumps)")]
    Validation,
    #[strum(message = "convert the dataset…")]
    Convert,
    #[strum(message = "find and open a dataset file (or type any path)")]
    OpenFile,
    #[strum(message = "train on this dataset (sets the Adapter form's data.train)")]
    UseDataset,
    #[strum(message = "synthesize a dataset with a strong model")]
    Synthesize,
    #[strum(message = "edit the field")]
    Edit,
    #[strum(message = "toggle (target module, switch)")]
    Toggle,
    #[strum(message = "GRPO: add a reward function (pick its kind)")]
    AddReward,
    #[strum(message = "GRPO: remove the selected reward function")]
    RemoveReward,
    #[strum(message = "load the next preset")]
    LoadPreset,
    #[strum(message = "save the form as a preset")]
    SavePreset,
    #[strum(message = "start a run from the form (detached)")]
    StartRun,
    #[strum(message = "queue a run from the form (it starts when its device is free)")]
    QueueRun,
    #[strum(message = "stop the run (checkpoint first); a waiting run leaves the queue")]
    StopRun,
    #[strum(message = "attach to the next run")]
    AttachNext,
    #[strum(message = "write a message")]
    Compose,
    #[strum(message = "adapter on / off")]
    ToggleAdapter,
    #[strum(message = "side by side: base and A, base and B, A and B, off")]
    SideBySide,
    #[strum(message = "pick the next adapter (A)")]
    PickAdapter,
    #[strum(message = "pick a second adapter (B) to compare with")]
    PickSecondAdapter,
    #[strum(message = "find a model (the workspace's and the Hugging Face cache's)")]
    PickModel,
    #[strum(message = "temperature +0.1")]
    TemperatureUp,
    #[strum(message = "temperature −0.1")]
    TemperatureDown,
    #[strum(message = "edit the system prompt")]
    SystemPrompt,
    #[strum(message = "save the exchange to a dataset")]
    SaveExchange,
    #[strum(message = "clear the conversation")]
    ClearChat,
    #[strum(message = "top-p: off · 0.9 · 0.95")]
    TopP,
    #[strum(message = "top-k: off · 20 · 50")]
    TopK,
    #[strum(message = "max new tokens: 64 · 128 · 256 · 512")]
    MaxTokens,
    #[strum(message = "where saved exchanges go (file and format)")]
    SaveTarget,
    #[strum(message = "remote column (OpenAI-compatible): add/remove")]
    RemoteColumn,
    #[strum(message = "mark a run (overlay chart, plot, eval view)")]
    Mark,
    #[strum(message = "overlay the marked runs' curves (else the selected run's sweep)")]
    Compare,
    #[strum(message = "overlay every run of the selected run's sweep")]
    OverlaySweep,
    #[strum(message = "overlay: draw the next metric (loss, eval_loss, eval tasks…)")]
    NextMetric,
    #[strum(message = "queue: start the selected waiting run earlier")]
    QueueEarlier,
    #[strum(message = "queue: start the selected waiting run later")]
    QueueLater,
    #[strum(message = "open the run's adapter in Chat")]
    OpenInChat,
    #[strum(message = "export: merged HF folder (run/export)")]
    ExportMerged,
    #[strum(message = "export: q8_0 GGUF + Modelfile")]
    ExportGguf,
    #[strum(message = "export: adapter as LoRA GGUF")]
    ExportLora,
    #[strum(message = "plot marked runs as SVG")]
    PlotRuns,
    #[strum(
        message = "eval view: the marked (or selected) runs' eval.tasks, base against adapter"
    )]
    EvalView,
    #[strum(message = "eval view: score the base and each adapter now")]
    EvalRun,
    #[strum(message = "eval view: browse the answers, base and adapters side by side")]
    EvalAnswers,
}

impl Action {
    /// Every action, in declaration order.
    pub fn all() -> impl Iterator<Item = Action> {
        Action::iter()
    }

    /// The name used in keys.yaml and the palette.
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn from_name(name: &str) -> Option<Action> {
        name.parse().ok()
    }

    pub fn describe(self) -> &'static str {
        self.get_message().unwrap_or("")
    }
}
