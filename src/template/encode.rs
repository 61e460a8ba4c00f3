//! Records become token ids with labels: the chat template is rendered turn by turn to find
//! each message's span, so the loss mask never depends on searching for strings.
//!
//! # Assistant spans and reasoning
//!
//! A trained assistant message's span is what transformers' `{% generation %}` block marks in
//! a template that has one (TRL's `assistant_only_loss`): everything the template writes for
//! the turn after its generation prompt, through the first stop token. It starts where the
//! conversation rendered up to the message with `add_generation_prompt` ends, and ends where
//! the conversation rendered through the message stops agreeing with the whole rendering. So a
//! reasoning block the template renders (Qwen3's `<think>\n…\n</think>\n\n`, from the
//! message's `reasoning_content`) is in the span, and one it leaves out is not: Qwen3 drops
//! the reasoning of assistant turns before the last user query and writes an empty thinking
//! block in the last turns that have none, and the masks follow what is rendered. When the
//! template rewrites a turn once later messages follow (Qwen3's earlier turns lose their
//! reasoning), the span is read from the whole rendering instead: from the same start through
//! the first stop token.
//!
//! `train_on: answers` trains the same turns without the reasoning the template rendered for
//! them: the span of a message whose reasoning changes the rendering starts where its answer
//! starts (found by rendering with another answer), so the `<think>` block is context, not
//! target. A turn whose reasoning is not rendered trains as under `assistant` (Qwen3's empty
//! thinking block included, as its `{% generation %}` masks would).
//!
//! Template arguments (`data.template_kwargs`, such as Qwen3's `enable_thinking`) go to every
//! render. With `enable_thinking: false`, Qwen3's generation prompt ends in an empty thinking
//! block; the last turn has it too, and it is then prompt, not target (as at inference, where
//! the template writes it), which is the one place these masks differ from `{% generation %}`
//! masks. Earlier turns, which do not have it, start where generation prompt and conversation
//! part.

use super::chat_template::ChatTemplate;
use super::error::TemplateError;
use super::tokenizer::TextTokenizer;
use super::tools::{carries_tools, Ignored, ToolFormat};
use crate::data::{Body, Conversation, Message, PreferencePair, Record, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::ops::Range;

/// The label of a position the loss ignores (transformers' convention).
pub const IGNORE: i64 = -100;

/// Which tokens are trained.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TrainOn {
    /// Every assistant turn's content and its end-of-turn token, with any reasoning the
    /// template renders for it (Qwen3's `<think>` block).
    #[default]
    Assistant,
    /// Every assistant turn without its rendered reasoning: the `<think>` block is context,
    /// the answer after it (and the end-of-turn token) is trained.
    Answers,
    /// Only the final assistant turn.
    LastAssistant,
    /// Every token.
    All,
}

impl std::str::FromStr for TrainOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("train_on", s)
    }
}

/// One supervised example. `labels` are aligned with `input_ids` (not shifted), with
/// [`IGNORE`] where the loss is masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    /// The rendered text and each token's byte range in it (for the token view).
    #[serde(skip)]
    pub text: String,
    #[serde(skip)]
    pub offsets: Vec<(usize, usize)>,
    /// The record's first user message (what the sample replies answer), when it has one.
    #[serde(skip)]
    pub prompt: String,
}

impl Example {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
    pub fn trained(&self) -> usize {
        self.labels.iter().filter(|l| **l != IGNORE).count()
    }

    /// The ids before the first trained token: the prompt a reply is generated from.
    pub fn prompt_ids(&self) -> Option<&[u32]> {
        let first = self.labels.iter().position(|l| *l != IGNORE)?;
        (first > 0).then(|| &self.input_ids[..first])
    }
}

/// A preference pair as a prompt and two completions; the boundary is exact in token ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreferenceExample {
    pub prompt_ids: Vec<u32>,
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
}

/// A rated completion (KTO) as a prompt and the completion; the boundary is exact in ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabeledExample {
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    pub desirable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    Sft(Example),
    Preference(PreferenceExample),
    Labeled(LabeledExample),
    /// Left out by policy (`data.tool_format: drop` and a record with tool calls).
    Skipped(Skip),
}

/// Why a record was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It carries tool calls or definitions and `data.tool_format` is `drop`.
    ToolRecord,
}

/// Where the chat template comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChoice {
    /// The model's own (`tokenizer_config.json` or `chat_template.jinja`).
    Model,
    /// One of tunelab's built-ins.
    Builtin(String),
    /// A Jinja file.
    File(std::path::PathBuf),
}

impl TemplateChoice {
    /// `model`, a built-in name, or a path.
    pub fn parse(s: &str) -> Self {
        if s == "model" {
            TemplateChoice::Model
        } else if super::chat_template::BUILTIN.iter().any(|(n, _)| *n == s) {
            TemplateChoice::Builtin(s.to_string())
        } else {
            TemplateChoice::File(s.into())
        }
    }
}

/// Renders, tokenizes and masks records for one tokenizer and template.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub tokenizer: TextTokenizer,
    pub template: Option<ChatTemplate>,
    pub train_on: TrainOn,
    /// What happens to tool calls and definitions the template cannot render.
    pub tool_format: ToolFormat,
    /// Extra template arguments, as `apply_chat_template(..., **kwargs)` (`enable_thinking`).
    pub template_kwargs: Map<String, Value>,
    vars: Vec<(&'static str, String)>,
    /// The stop tokens' text, to tell where a rendered turn ends.
    stop_texts: Vec<String>,
}

fn pair_carries_tools(p: &PreferencePair) -> bool {
    carries_tools(&p.prompt, &p.tools)
        || carries_tools(&p.chosen, &[])
        || carries_tools(&p.rejected, &[])
}

/// A message as chat templates expect it (only the keys that are set, as transformers passes them;
/// the reasoning as `reasoning_content`, the key Qwen3's template reads).
pub fn template_message(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), Value::String(m.role.as_str().into()));
    o.insert("content".into(), Value::String(m.text()));
    m.insert_openai_extras(&mut o, false);
    Value::Object(o)
}

pub(crate) fn template_tools(tools: &[Value]) -> Option<Value> {
    (!tools.is_empty()).then(|| {
        Value::Array(
            tools
                .iter()
                .map(|t| json!({"type": "function", "function": t}))
                .collect(),
        )
    })
}

/// Length in bytes of the common prefix, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// An answer no template writes on its own: rendering a message with it in place of its
/// content shows where the template puts the content.
const PROBE: &str = "\u{1}";

/// A byte range of the rendered text to train.
struct Span {
    range: Range<usize>,
    /// Ends at the first stop token in `range` (an assistant turn).
    cut_at_stop: bool,
    /// `train_on: answers`: tokens that end at or before this offset (the rendered reasoning)
    /// are left out.
    answer_from: Option<usize>,
}

impl Encoder {
    pub fn new(
        tokenizer: TextTokenizer,
        choice: &TemplateChoice,
        train_on: TrainOn,
    ) -> Result<Self, TemplateError> {
        let template = match choice {
            TemplateChoice::Model => match tokenizer.default_chat_template() {
                Some(src) => Some(ChatTemplate::compile("model", src)?),
                None => None,
            },
            TemplateChoice::Builtin(name) => {
                Some(ChatTemplate::builtin(name).ok_or_else(|| {
                    TemplateError::NoTemplate(format!("no built-in template {name:?}"))
                })?)
            }
            TemplateChoice::File(path) => {
                let src = std::fs::read_to_string(path).map_err(|e| TemplateError::Load {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "file".into());
                Some(ChatTemplate::compile(&name, &src)?)
            }
        };
        let vars = tokenizer.template_vars();
        let stop_texts = tokenizer
            .stop_ids
            .iter()
            .filter_map(|&id| tokenizer.inner.id_to_token(id))
            .filter(|t| !t.is_empty())
            .collect();
        Ok(Encoder {
            tokenizer,
            template,
            train_on,
            tool_format: ToolFormat::default(),
            template_kwargs: Map::new(),
            vars,
            stop_texts,
        })
    }

    /// The same encoder with extra template arguments (`data.template_kwargs`).
    pub fn with_template_kwargs(mut self, kwargs: Map<String, Value>) -> Self {
        self.template_kwargs = kwargs;
        self
    }

    /// The same encoder with another tool policy.
    pub fn with_tool_format(mut self, f: ToolFormat) -> Self {
        self.tool_format = f;
        self
    }

    /// The special-token variables every render gets (`bos_token`, `eos_token`, …).
    pub fn template_vars(&self) -> &[(&'static str, String)] {
        &self.vars
    }

    /// The stop tokens' text: where a rendered assistant turn's trained span ends.
    pub fn stop_texts(&self) -> &[String] {
        &self.stop_texts
    }

    /// The template's name (`model`, a built-in, a file name), for messages.
    pub fn template_name(&self) -> String {
        self.template
            .as_ref()
            .map_or_else(|| "(none)".to_string(), |t| t.name.clone())
    }

    /// Fields of `c` the template leaves out of `full` (its rendering): each is found by
    /// rendering without it and getting the same text.
    pub fn ignored(&self, c: &Conversation, full: &str) -> Vec<Ignored> {
        let tools = template_tools(&c.tools);
        let same = |msgs: Vec<Message>, tools: Option<&Value>| {
            let v: Vec<Value> = msgs.iter().map(template_message).collect();
            self.render(&v, tools, false).ok().as_deref() == Some(full)
        };
        let mut out = Vec::new();
        if c.messages.iter().any(|m| !m.tool_calls.is_empty()) {
            let without: Vec<Message> = c
                .messages
                .iter()
                .map(|m| Message {
                    tool_calls: Vec::new(),
                    ..m.clone()
                })
                .collect();
            if same(without, tools.as_ref()) {
                out.push(Ignored::ToolCalls);
            }
        }
        if !c.tools.is_empty() && same(c.messages.clone(), None) {
            out.push(Ignored::ToolDefinitions);
        }
        if c.messages
            .iter()
            .any(|m| m.role == Role::Tool && m.name.is_some())
        {
            let without: Vec<Message> = c
                .messages
                .iter()
                .map(|m| Message {
                    name: None,
                    ..m.clone()
                })
                .collect();
            if same(without, tools.as_ref()) {
                out.push(Ignored::ToolNames);
            }
        }
        if c.messages.iter().any(|m| m.reasoning.is_some()) {
            let without: Vec<Message> = c
                .messages
                .iter()
                .map(|m| Message {
                    reasoning: None,
                    ..m.clone()
                })
                .collect();
            if same(without, tools.as_ref()) {
                out.push(Ignored::Reasoning);
            }
        }
        if c.messages
            .iter()
            .any(|m| m.role == Role::System && !m.text().trim().is_empty())
        {
            let without: Vec<Message> = c
                .messages
                .iter()
                .filter(|m| m.role != Role::System)
                .cloned()
                .collect();
            if same(without, tools.as_ref()) {
                out.push(Ignored::SystemPrompt);
            }
        }
        out
    }

    /// Fails when the template left out `c`'s tool calls or definitions.
    fn check_tools(&self, c: &Conversation, full: &str) -> Result<(), TemplateError> {
        let lost: Vec<&str> = self
            .ignored(c, full)
            .into_iter()
            .filter(|i| matches!(i, Ignored::ToolCalls | Ignored::ToolDefinitions))
            .map(Ignored::describe)
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        Err(TemplateError::ToolsNotRendered {
            name: self.template_name(),
            what: lost.join(" or "),
            calls: super::tools::count_calls(&c.messages),
        })
    }

    fn template(&self) -> Result<&ChatTemplate, TemplateError> {
        self.template.as_ref().ok_or_else(|| {
            TemplateError::NoTemplate(format!(
                "{} has no chat template; pass --template with {} or a .jinja file",
                self.tokenizer.dir.display(),
                super::chat_template::builtin_names()
            ))
        })
    }

    /// Renders messages with this encoder's template and special tokens.
    pub fn render(
        &self,
        messages: &[Value],
        tools: Option<&Value>,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.template()?.render_with(
            messages,
            tools,
            add_generation_prompt,
            &self.vars,
            &self.template_kwargs,
        )
    }

    /// The ids a reply to `messages` continues: the template with its generation prompt,
    /// tokenized without adding special tokens (the template writes them). `chat`, the Chat
    /// tab and `serve` all prompt this way.
    pub fn generation_prompt_ids(&self, messages: &[Value]) -> Result<Vec<u32>, TemplateError> {
        let text = self.render(messages, None, true)?;
        Ok(self.tokenizer.encode(&text, false)?.ids)
    }

    /// Messages whose text the template left out of `rendered` (a template that silently drops
    /// a system prompt, say): a warning worth showing before training.
    pub fn dropped_messages(&self, messages: &[Message], rendered: &str) -> Vec<usize> {
        messages
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                let t = m.text();
                let t = t.trim();
                !t.is_empty() && !rendered.contains(t)
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub fn encode(&self, record: &Record) -> Result<Encoded, TemplateError> {
        self.encode_with(record, self.tool_format)
    }

    /// [`Encoder::encode`] under another tool policy (the Data tab follows the form's).
    pub fn encode_with(
        &self,
        record: &Record,
        tool_format: ToolFormat,
    ) -> Result<Encoded, TemplateError> {
        match &record.body {
            Body::Conversation(c) if carries_tools(&c.messages, &c.tools) => match tool_format {
                ToolFormat::Drop => Ok(Encoded::Skipped(Skip::ToolRecord)),
                ToolFormat::Json => self
                    .encode_conversation(&super::tools::conversation_as_text(c))
                    .map(Encoded::Sft),
                ToolFormat::Template => {
                    let ex = self.encode_conversation(c)?;
                    self.check_tools(c, &ex.text)?;
                    Ok(Encoded::Sft(ex))
                }
            },
            Body::Conversation(c) => self.encode_conversation(c).map(Encoded::Sft),
            Body::Preference(p) => Ok(match self.encode_pair_with(p, tool_format)? {
                Some(ex) => Encoded::Preference(ex),
                None => Encoded::Skipped(Skip::ToolRecord),
            }),
            Body::Labeled(l) => {
                // A rated completion encodes as a pair with one side.
                let view = PreferencePair {
                    prompt: l.prompt().to_vec(),
                    chosen: l.completion().to_vec(),
                    rejected: Vec::new(),
                    tools: l.conversation.tools.clone(),
                    plain: l.conversation.plain,
                };
                Ok(match self.encode_pair_with(&view, tool_format)? {
                    Some(ex) => Encoded::Labeled(LabeledExample {
                        prompt_ids: ex.prompt_ids,
                        completion_ids: ex.chosen_ids,
                        desirable: l.desirable,
                    }),
                    None => Encoded::Skipped(Skip::ToolRecord),
                })
            }
            Body::Text(t) => self.encode_text(t).map(Encoded::Sft),
        }
    }

    /// A pair under `tool_format`; `None` when the policy leaves it out.
    fn encode_pair_with(
        &self,
        p: &PreferencePair,
        tool_format: ToolFormat,
    ) -> Result<Option<PreferenceExample>, TemplateError> {
        if !pair_carries_tools(p) {
            return self.encode_preference(p).map(Some);
        }
        match tool_format {
            ToolFormat::Drop => Ok(None),
            ToolFormat::Json => self
                .encode_preference(&super::tools::pair_as_text(p))
                .map(Some),
            ToolFormat::Template => {
                // The prompt with the chosen reply is what a conversation would be.
                let mut messages = p.prompt.clone();
                messages.extend(p.chosen.iter().cloned());
                let c = Conversation {
                    messages,
                    tools: p.tools.clone(),
                    plain: false,
                };
                let v: Vec<Value> = c.messages.iter().map(template_message).collect();
                let full = self.render(&v, template_tools(&c.tools).as_ref(), false)?;
                self.check_tools(&c, &full)?;
                self.encode_preference(p).map(Some)
            }
        }
    }

    /// Language modelling (TRL): the text with the tokenizer's special tokens, then EOS; all trained.
    pub fn encode_text(&self, text: &str) -> Result<Example, TemplateError> {
        let enc = self.tokenizer.encode(text, true)?;
        let mut ids = enc.ids;
        let mut offsets = enc.offsets;
        if let Some(eos) = self.tokenizer.eos_id() {
            if ids.last() != Some(&eos) {
                ids.push(eos);
                offsets.push((text.len(), text.len()));
            }
        }
        let labels = ids.iter().map(|&i| i64::from(i)).collect();
        Ok(Example {
            input_ids: ids,
            labels,
            text: text.to_string(),
            offsets,
            prompt: String::new(),
        })
    }

    /// Plain prompt/completion (TRL's standard format): no chat template, the completion and EOS trained.
    fn encode_plain(&self, prompt: &str, completion: &str) -> Result<Example, TemplateError> {
        let p = self.tokenizer.encode(prompt, true)?;
        let full_text = format!("{prompt}{completion}");
        let full = self.tokenizer.encode(&full_text, true)?;
        let (mut ids, mut offsets, split) = if full.ids.starts_with(&p.ids) {
            (full.ids, full.offsets, p.ids.len())
        } else {
            let c = self.tokenizer.encode(completion, false)?;
            let mut ids = p.ids.clone();
            let mut offsets = p.offsets.clone();
            ids.extend(&c.ids);
            offsets.extend(
                c.offsets
                    .iter()
                    .map(|(s, e)| (s + prompt.len(), e + prompt.len())),
            );
            (ids, offsets, p.ids.len())
        };
        if let Some(eos) = self.tokenizer.eos_id() {
            if ids.last() != Some(&eos) {
                ids.push(eos);
                offsets.push((full_text.len(), full_text.len()));
            }
        }
        let labels = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| if i < split { IGNORE } else { i64::from(id) })
            .collect();
        Ok(Example {
            input_ids: ids,
            labels,
            text: full_text,
            offsets,
            prompt: String::new(),
        })
    }

    /// Which messages are trained under the policy and the per-message weights.
    fn trained_messages(&self, messages: &[Message]) -> Vec<usize> {
        let last_assistant = messages.iter().rposition(|m| m.role == Role::Assistant);
        (0..messages.len())
            .filter(|&i| match messages[i].weight {
                Some(w) => w > 0.0,
                None => match self.train_on {
                    TrainOn::All => false, // handled as one span
                    TrainOn::Assistant | TrainOn::Answers => messages[i].role == Role::Assistant,
                    TrainOn::LastAssistant => Some(i) == last_assistant,
                },
            })
            .collect()
    }

    pub fn encode_conversation(&self, c: &Conversation) -> Result<Example, TemplateError> {
        if c.plain {
            if let [user, assistant] = c.messages.as_slice() {
                return self.encode_plain(&user.text(), &assistant.text_with_reasoning());
            }
        }
        let msgs: Vec<Value> = c.messages.iter().map(template_message).collect();
        let tools = template_tools(&c.tools);
        let full = self.render(&msgs, tools.as_ref(), false)?;
        let mut spans: Vec<Span> = Vec::new();
        if self.train_on == TrainOn::All && c.messages.iter().all(|m| m.weight.is_none()) {
            spans.push(Span {
                range: 0..full.len(),
                cut_at_stop: false,
                answer_from: None,
            });
        } else {
            for i in self.trained_messages(&c.messages) {
                spans.push(self.message_span(c, &msgs, i, tools.as_ref(), &full)?);
            }
        }
        let enc = self.tokenizer.encode(&full, false)?;
        let mut labels = vec![IGNORE; enc.ids.len()];
        for span in &spans {
            let mut idx: Vec<usize> = (0..enc.ids.len())
                .filter(|&t| span.range.contains(&enc.offsets[t].0))
                .collect();
            if span.cut_at_stop {
                if let Some(k) = idx
                    .iter()
                    .position(|&t| self.tokenizer.stop_ids.contains(&enc.ids[t]))
                {
                    idx.truncate(k + 1);
                } else {
                    while let Some(&t) = idx.last() {
                        let (s, e) = enc.offsets[t];
                        if full.get(s..e).is_some_and(|x| x.trim().is_empty()) {
                            idx.pop();
                        } else {
                            break;
                        }
                    }
                }
            }
            if let Some(a) = span.answer_from {
                // A token that straddles the answer's start is trained, as transformers marks
                // every token overlapping a generation span.
                idx.retain(|&t| enc.offsets[t].1 > a);
            }
            for t in idx {
                labels[t] = i64::from(enc.ids[t]);
            }
        }
        Ok(Example {
            input_ids: enc.ids,
            labels,
            text: full,
            offsets: enc.offsets,
            prompt: String::new(),
        })
    }

    /// The byte span of `full` (the whole conversation rendered) that message `i` trains.
    fn message_span(
        &self,
        c: &Conversation,
        msgs: &[Value],
        i: usize,
        tools: Option<&Value>,
        full: &str,
    ) -> Result<Span, TemplateError> {
        let m = &c.messages[i];
        let is_assistant = m.role == Role::Assistant;
        let prefix = |gen: bool| {
            if i == 0 {
                Ok(self.render(&[], tools, gen).unwrap_or_default())
            } else {
                self.render(&msgs[..i], tools, gen)
            }
        };
        let unstable = || TemplateError::NotPrefixStable {
            name: self.template_name(),
            index: i,
            role: m.role.to_string(),
        };
        let before = prefix(is_assistant)?;
        let start = if full.starts_with(&before) {
            before.len()
        } else if is_assistant {
            // The generation prompt is not all in the conversation (Qwen3 with
            // `enable_thinking: false` ends it in an empty thinking block that only the last
            // turn has): when what precedes it is, the span starts where the two part.
            let plain = prefix(false)?;
            if !full.starts_with(&plain) {
                return Err(unstable());
            }
            common_prefix(&before, full).max(plain.len())
        } else {
            return Err(unstable());
        };
        let through = self.render(&msgs[..=i], tools, false)?;
        let agreed = common_prefix(&through, full).max(start);
        let mut end = agreed;
        if is_assistant {
            // The turn as rendered last ends at a stop token that the whole rendering does not
            // share: the template writes this turn differently once more messages follow
            // (Qwen3 drops an earlier turn's reasoning). The whole rendering's turn, through
            // its first stop token, is the span.
            let tail = through.get(start..).unwrap_or_default();
            if let Some(stop) = self
                .stop_texts
                .iter()
                .filter_map(|t| tail.find(t.as_str()))
                .min()
            {
                let stop = start + stop;
                if agreed <= stop && !through[agreed..stop].trim().is_empty() {
                    end = full.len();
                }
            }
        }
        let answer_from =
            if self.train_on == TrainOn::Answers && is_assistant && m.reasoning.is_some() {
                self.answer_start(msgs, i, tools, full)?
            } else {
                None
            };
        Ok(Span {
            range: start..end,
            cut_at_stop: is_assistant,
            answer_from,
        })
    }

    /// Where message `i`'s answer starts in `full`, when the template renders its reasoning
    /// (`None` when the rendering does not change without it): the whole conversation rendered
    /// with another answer agrees with `full` up to there.
    fn answer_start(
        &self,
        msgs: &[Value],
        i: usize,
        tools: Option<&Value>,
        full: &str,
    ) -> Result<Option<usize>, TemplateError> {
        let mut without = msgs.to_vec();
        if let Some(o) = without[i].as_object_mut() {
            o.remove("reasoning_content");
        }
        if self.render(&without, tools, false)? == full {
            return Ok(None);
        }
        let mut probe = msgs.to_vec();
        if let Some(o) = probe[i].as_object_mut() {
            o.insert("content".into(), Value::String(PROBE.into()));
        }
        let probed = self.render(&probe, tools, false)?;
        Ok(Some(common_prefix(&probed, full)))
    }

    /// TRL's split: the prompt rendered with the generation prompt, each completion the rest of
    /// its full rendering, ending at the first stop token (EOS appended when there is none).
    pub fn encode_preference(
        &self,
        p: &PreferencePair,
    ) -> Result<PreferenceExample, TemplateError> {
        let eos = self.tokenizer.eos_id();
        let finish = |mut ids: Vec<u32>| {
            if let Some(k) = ids.iter().position(|i| self.tokenizer.stop_ids.contains(i)) {
                ids.truncate(k + 1);
            } else if let Some(e) = eos {
                ids.push(e);
            }
            ids
        };
        if p.plain {
            let prompt = p
                .prompt
                .iter()
                .map(Message::text)
                .collect::<Vec<_>>()
                .join("\n");
            let prompt_ids = self.tokenizer.encode(&prompt, true)?.ids;
            let side = |m: &[Message]| -> Result<Vec<u32>, TemplateError> {
                if m.is_empty() {
                    return Ok(Vec::new());
                }
                let text = m
                    .iter()
                    .map(Message::text_with_reasoning)
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(finish(self.tokenizer.encode(&text, false)?.ids))
            };
            return Ok(PreferenceExample {
                prompt_ids,
                chosen_ids: side(&p.chosen)?,
                rejected_ids: side(&p.rejected)?,
            });
        }
        let tools = template_tools(&p.tools);
        let prompt_msgs: Vec<Value> = p.prompt.iter().map(template_message).collect();
        let prompt_text = self.render(&prompt_msgs, tools.as_ref(), true)?;
        let prompt_ids = self.tokenizer.encode(&prompt_text, false)?.ids;
        let side = |reply: &[Message]| -> Result<Vec<u32>, TemplateError> {
            if reply.is_empty() {
                return Ok(Vec::new());
            }
            let mut all = prompt_msgs.clone();
            all.extend(reply.iter().map(template_message));
            let text = self.render(&all, tools.as_ref(), false)?;
            let Some(rest) = text.strip_prefix(prompt_text.as_str()) else {
                return Err(TemplateError::NotPrefixStable {
                    name: self
                        .template
                        .as_ref()
                        .map_or_else(String::new, |t| t.name.clone()),
                    index: p.prompt.len(),
                    role: "assistant".into(),
                });
            };
            Ok(finish(self.tokenizer.encode(rest, false)?.ids))
        };
        Ok(PreferenceExample {
            prompt_ids,
            chosen_ids: side(&p.chosen)?,
            rejected_ids: side(&p.rejected)?,
        })
    }
}
