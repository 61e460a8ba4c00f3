//! Tokenizers, chat templates and loss masks: records become the exact token ids and labels
//! a model trains on.

pub mod chat_template;
pub mod encode;
pub mod error;
pub mod marked;
pub mod pack;
pub mod survey;
pub mod tokenizer;
pub mod tools;

pub use chat_template::ChatTemplate;
pub use encode::{
    Encoded, Encoder, Example, LabeledExample, PreferenceExample, Skip, TemplateChoice, TrainOn,
    IGNORE,
};
pub use error::TemplateError;
pub use pack::{fit_labeled, fit_length, fit_pair, pack, Fit, LengthPolicy, Packed};
pub use survey::{token_stats, tool_survey, Limits, TokenStats, ToolSurvey};
pub use tokenizer::TextTokenizer;
pub use tools::{Ignored, ToolFormat};
