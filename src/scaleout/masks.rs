//! TRL's assistant-only loss trains the tokens inside a chat template's `{% generation %}`
//! blocks, and stops before the first step on a template it has none for (TRL 1.16 swaps in
//! a marked copy only of the published templates it knows). So for the `train_on` values
//! that train less than everything, the export writes the run's template marked
//! ([`crate::template::marked`]) as `chat_template.jinja` and checks it: each record, as
//! written to the train file, rendered through the marked template must mark exactly the
//! tokens tunelab's encoder trains for the record. When no such template can be made (no
//! tokenizer to read, no chat template, a record whose marks differ), the export falls back
//! to TRL's completion-only loss on prompt/completion data and says what that changes.

use super::{dataset, Shape};
use crate::config::RunConfig;
use crate::data::problem::Issues;
use crate::data::{Body, Conversation, Dataset, Format, Notes};
use crate::template::marked::{self, compile_marked, marked_source};
use crate::template::{Encoded, Encoder, TrainOn};

/// How many records the marked template is checked on (each is rendered once per trained
/// turn, so a large dataset is checked on its first records).
pub const CHECK_LIMIT: u64 = 2000;

/// What the export does about TRL's assistant-only loss.
#[derive(Debug, Clone)]
pub enum Masks {
    /// The marked template, which marked what tunelab trains on every record checked.
    Marked {
        source: String,
        checked: u64,
        /// Whether every record was checked (else the first [`CHECK_LIMIT`]).
        all: bool,
    },
    /// No correct marked template: why.
    Fallback { why: String },
}

/// Whether the run's SFT loss needs `{% generation %}` markers in TRL: conversations trained
/// on less than every token.
pub fn needed(cfg: &RunConfig, shape: Shape) -> bool {
    cfg.method_config().sft().is_some()
        && cfg.data.train_on != TrainOn::All
        && matches!(shape, Shape::Messages | Shape::PromptCompletion)
}

/// The marked template for `cfg`'s template and `train_on`, checked on the records of `sets`;
/// `encoder` is the run's encoder (its tokenizer, template and template arguments), or why
/// there is none.
pub fn plan(encoder: Result<Encoder, String>, sets: &[&Dataset]) -> Masks {
    match mark(encoder, sets) {
        Ok(m) => m,
        Err(why) => Masks::Fallback { why },
    }
}

fn mark(encoder: Result<Encoder, String>, sets: &[&Dataset]) -> Result<Masks, String> {
    let enc = encoder?;
    let template = enc
        .template
        .clone()
        .ok_or("the model has no chat template (set model.template)")?;
    let source = marked_source(
        &template,
        enc.stop_texts(),
        enc.train_on,
        &enc.template_kwargs,
    )
    .ok_or("train_on: all needs no markers")?;
    let compiled = compile_marked(marked::FILE, &source).map_err(|e| e.to_string())?;
    let mut checked = 0u64;
    for ds in sets {
        let items = ds.items().map_err(|e| e.to_string())?;
        for item in items {
            if checked >= CHECK_LIMIT {
                return Ok(Masks::Marked {
                    source,
                    checked,
                    all: false,
                });
            }
            let item = item.map_err(|e| e.to_string())?;
            let where_ = || format!("{}: {}", ds.file.path.display(), item.location);
            // A record that does not read is refused by the data conversion, with its
            // location; plain prompt/completion strings have no template to mark.
            let Ok(record) = &item.result else { continue };
            let Body::Conversation(c) = &record.body else {
                continue;
            };
            if c.plain {
                continue;
            }
            // As tunelab's trainer encodes it (`data.tool_format` included).
            let ex = match enc.encode(record) {
                Ok(Encoded::Sft(ex)) => ex,
                Ok(_) => continue,
                Err(e) => {
                    return Err(format!(
                        "{}: tunelab cannot encode the record: {e}",
                        where_()
                    ))
                }
            };
            let objs = dataset::convert(record, Shape::Messages, None, &mut Notes::default())
                .map_err(|e| format!("{}: {e}", where_()))?;
            for obj in objs {
                let written = read_back(&obj).ok_or_else(|| {
                    format!("{}: the written record does not read back", where_())
                })?;
                if let Some(m) = marked::compare(&enc, &ex, &compiled, &written)
                    .map_err(|e| format!("{}: {e}", where_()))?
                {
                    return Err(format!(
                        "{}: the marked template does not mark what tunelab trains: {m}",
                        where_()
                    ));
                }
            }
            checked += 1;
        }
    }
    Ok(Masks::Marked {
        source,
        checked,
        all: true,
    })
}

/// A record as the tool reads the train file's line back.
fn read_back(obj: &serde_json::Map<String, serde_json::Value>) -> Option<Conversation> {
    match Format::Openai.read(obj, &mut Issues::default())?.body {
        Body::Conversation(c) => Some(c),
        _ => None,
    }
}

/// The fallback's note: what it is and what it changes.
pub fn fallback_note(why: &str) -> String {
    format!(
        "no chat template with {{% generation %}} markers around exactly the tokens tunelab trains could be made ({why}); the export falls back to TRL's completion-only loss on prompt/completion data: each conversation's last assistant message is the completion and everything before it the prompt, so earlier assistant turns are context, not trained, and the completion's loss covers all the template writes after the generation prompt (reasoning included)"
    )
}
