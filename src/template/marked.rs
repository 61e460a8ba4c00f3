//! A chat template with transformers' `{% generation %}` markers around exactly the spans
//! tunelab trains, for tools whose assistant-only loss reads those markers (TRL's
//! `assistant_only_loss`, which stops on a template it has no marked version of).
//!
//! Rather than editing a template's source (which would need a Jinja parser and a rule per
//! template), the marked template *contains* the original as a macro and does at render time
//! what [`Encoder::encode_conversation`] does: it renders the conversation whole, then up to
//! each trained message with and without it, and reads the message's span from where those
//! renderings agree; an assistant span ends at its first stop token. So it works for every
//! template tunelab can encode with and renders the same text as the original (asked for a
//! generation prompt, it is the original). Its marked spans are tunelab's masks but in two
//! corners: a token that straddles a span's start (tunelab trains the tokens that start in
//! the span, transformers marks every token that overlaps it), and a trained first message
//! (tunelab measures it from the empty conversation's rendering, which a template may refuse,
//! and a template cannot catch an error, so the wrapper starts it at 0). [`check`] finds
//! those on records: the marked template rendered with sentinels in place of the markers,
//! tokenized, and compared token for token with the encoder's labels; `export-config` checks
//! its data this way and falls back when they differ. Template arguments are fixed at the top
//! (a `trl sft` command line cannot pass them).
//!
//! The wrapper uses only what both Jinja2 (transformers' immutable sandbox) and tunelab's
//! renderer have: macros, namespaces, slices, `dict(m, key=value)`, and the string methods
//! `startswith`, `split`, `strip` and `rstrip`; every position is counted in characters, as
//! Python counts them (a stop token is found by splitting on it: minijinja's `find` counts
//! bytes).

use super::chat_template::{ChatTemplate, RESERVED_KWARGS};
use super::encode::{template_message, template_tools, Encoder, Example, TrainOn, IGNORE};
use super::error::TemplateError;
use crate::data::Conversation;
use serde_json::{Map, Value};
use std::ops::Range;

/// The file name an export writes the marked template under.
pub const FILE: &str = "chat_template.jinja";

/// Output markers tunelab's renderer writes in place of `{% generation %}` blocks, so the
/// spans can be read back from the text.
const OPEN: char = '\u{2}';
const CLOSE: char = '\u{3}';

/// The spans the marked template marks for a policy; `None` for `all`, which trains every
/// token and needs no markers.
fn trained_test(train_on: TrainOn) -> Option<&'static str> {
    match train_on {
        TrainOn::Assistant | TrainOn::Answers => Some("m.role == 'assistant'"),
        TrainOn::LastAssistant => Some("loop.index0 == tl_last.i"),
        TrainOn::All => None,
    }
}

/// A JSON value as a Jinja literal (Jinja2 and minijinja read both spellings of `true` and
/// `false`, and `none`, not `null`).
fn jinja_literal(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(jinja_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), jinja_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// The template arguments (`data.template_kwargs`) fixed at the top of the marked template, so
/// a tool that renders it without them (the `trl sft` command line has no way to pass them)
/// renders what tunelab rendered. Names a template could not read are left out.
fn fixed_kwargs(kwargs: &Map<String, Value>) -> String {
    kwargs
        .iter()
        .filter(|(k, _)| {
            !RESERVED_KWARGS.contains(&k.as_str())
                && k.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(k, v)| format!("{{%- set {k} = {} -%}}\n", jinja_literal(v)))
        .collect()
}

/// The marked version of `template` for `train_on`, ending assistant spans at the first of
/// `stop_texts` (the tokenizer's stop tokens), with the template arguments `kwargs` fixed in
/// it; `None` when the policy needs no markers. The embedded original has any
/// `{% generation %}` blocks of its own already neutralized ([`ChatTemplate::compile`]):
/// inside the macro they would mark the wrong text.
pub fn marked_source(
    template: &ChatTemplate,
    stop_texts: &[String],
    train_on: TrainOn,
    kwargs: &Map<String, Value>,
) -> Option<String> {
    let trained = trained_test(train_on)?;
    // Jinja drops one trailing newline of a template (`keep_trailing_newline` is off); inside
    // the macro it would be output, so it goes here.
    let original = template
        .source
        .strip_suffix('\n')
        .unwrap_or(&template.source);
    let stops = serde_json::to_string(stop_texts).unwrap_or_else(|_| "[]".into());
    let fixed = fixed_kwargs(kwargs);
    let policy: &'static str = train_on.into();
    let answers = train_on == TrainOn::Answers;
    Some(format!(
        r#"{{#- {name} with {{% generation %}} markers around exactly the tokens tunelab trains (train_on: {policy}), written by `tunelab export-config`. The template itself is the macro tl_render; the rest renders it turn by turn as tunelab's encoder does, to find each trained span. -#}}
{fixed}{{%- set tl_stops = {stops} -%}}
{{% macro tl_render(messages, add_generation_prompt) %}}
{original}{{% endmacro %}}
{{%- macro tl_common(a, b) -%}}
    {{%- set c = namespace(lo=0, hi=a|length) -%}}
    {{%- if b|length < c.hi -%}}{{%- set c.hi = b|length -%}}{{%- endif -%}}
    {{%- for _ in range(64) -%}}
        {{%- if c.lo < c.hi -%}}
            {{%- set mid = (c.lo + c.hi + 1) // 2 -%}}
            {{%- if b.startswith(a[:mid]) -%}}{{%- set c.lo = mid -%}}{{%- else -%}}{{%- set c.hi = mid - 1 -%}}{{%- endif -%}}
        {{%- endif -%}}
    {{%- endfor -%}}
    {{{{- c.lo -}}}}
{{%- endmacro -%}}
{{%- macro tl_first_stop(text) -%}}
    {{%- set s = namespace(at=-1, len=0) -%}}
    {{%- for st in tl_stops -%}}
        {{%- set parts = text.split(st) -%}}
        {{%- set k = parts[0]|length if parts|length > 1 else -1 -%}}
        {{%- if k >= 0 and (s.at < 0 or k < s.at) -%}}{{%- set s.at = k -%}}{{%- set s.len = st|length -%}}{{%- endif -%}}
    {{%- endfor -%}}
    {{{{- s.at ~ ',' ~ s.len -}}}}
{{%- endmacro -%}}
{{%- if add_generation_prompt is defined and add_generation_prompt -%}}
    {{{{- tl_render(messages, true) -}}}}
{{%- else -%}}
    {{%- set tl_full = tl_render(messages, false) -%}}
    {{%- set tl_last = namespace(i=-1) -%}}
    {{%- for m in messages -%}}{{%- if m.role == 'assistant' -%}}{{%- set tl_last.i = loop.index0 -%}}{{%- endif -%}}{{%- endfor -%}}
    {{%- set tl = namespace(pos=0) -%}}
    {{%- for m in messages -%}}
        {{%- set i = loop.index0 -%}}
        {{%- if m.weight is defined and m.weight is not none -%}}
            {{%- set trained = m.weight > 0 -%}}
        {{%- else -%}}
            {{%- set trained = {trained} -%}}
        {{%- endif -%}}
        {{%- if trained -%}}
            {{%- set asst = m.role == 'assistant' -%}}
            {{%- set before = tl_render(messages[:i], asst) if i > 0 else '' -%}}
            {{%- set plain = tl_render(messages[:i], false) if i > 0 else '' -%}}
            {{%- if tl_full.startswith(before) -%}}
                {{%- set start = before|length -%}}
            {{%- else -%}}
                {{%- set start = tl_common(before, tl_full)|int -%}}
                {{%- if start < plain|length -%}}{{%- set start = plain|length -%}}{{%- endif -%}}
            {{%- endif -%}}
            {{%- set through = tl_render(messages[:i + 1], false) -%}}
            {{%- set agreed = tl_common(through, tl_full)|int -%}}
            {{%- if agreed < start -%}}{{%- set agreed = start -%}}{{%- endif -%}}
            {{%- set end = agreed -%}}
            {{%- if asst -%}}
                {{%- set stop = tl_first_stop(through[start:]).split(',')[0]|int -%}}
                {{%- if stop >= 0 and agreed <= start + stop and through[agreed:start + stop].strip() -%}}
                    {{%- set end = tl_full|length -%}}
                {{%- endif -%}}
                {{%- set cut = tl_first_stop(tl_full[start:end]).split(',') -%}}
                {{%- if cut[0]|int >= 0 -%}}
                    {{%- set end = start + cut[0]|int + cut[1]|int -%}}
                {{%- else -%}}
                    {{%- set end = start + tl_full[start:end].rstrip()|length -%}}
                {{%- endif -%}}
                {{%- if {answers} and m.reasoning_content is defined and m.reasoning_content is not none -%}}
                    {{%- set without = messages[:i] + [dict(m, reasoning_content=none)] + messages[i + 1:] -%}}
                    {{%- if tl_render(without, false) != tl_full -%}}
                        {{%- set probe = messages[:i] + [dict(m, content='\u0001')] + messages[i + 1:] -%}}
                        {{%- set answer = tl_common(tl_render(probe, false), tl_full)|int -%}}
                        {{%- if answer > start -%}}{{%- set start = answer -%}}{{%- endif -%}}
                    {{%- endif -%}}
                {{%- endif -%}}
            {{%- endif -%}}
            {{%- if start < tl.pos -%}}{{%- set start = tl.pos -%}}{{%- endif -%}}
            {{%- if end > start -%}}
                {{{{- tl_full[tl.pos:start] -}}}}
                {{%- generation -%}}{{{{- tl_full[start:end] -}}}}{{%- endgeneration -%}}
                {{%- set tl.pos = end -%}}
            {{%- endif -%}}
        {{%- endif -%}}
    {{%- endfor -%}}
    {{{{- tl_full[tl.pos:] -}}}}
{{%- endif -%}}
"#,
        name = template.name.replace("#}", "# }"),
        answers = if answers { "true" } else { "false" },
    ))
}

/// Compiles a marked template for tunelab's renderer, each generation block writing
/// [`OPEN`] and [`CLOSE`] around its output.
pub fn compile_marked(name: &str, marked: &str) -> Result<ChatTemplate, TemplateError> {
    let source = marked
        .replace("{%- generation -%}", &format!("{{{{- '{OPEN}' -}}}}"))
        .replace("{%- endgeneration -%}", &format!("{{{{- '{CLOSE}' -}}}}"));
    ChatTemplate::compile(name, &source)
}

/// The text a compiled marked template renders for `c` and the byte spans it marks.
pub fn render_spans(
    enc: &Encoder,
    marked: &ChatTemplate,
    c: &Conversation,
) -> Result<(String, Vec<Range<usize>>), TemplateError> {
    // The per-message weights go in as the exported data carries them.
    let msgs: Vec<Value> = c
        .messages
        .iter()
        .map(|m| {
            let mut v = template_message(m);
            if let (Some(w), Some(o)) = (m.weight, v.as_object_mut()) {
                o.insert("weight".into(), Value::from(w));
            }
            v
        })
        .collect();
    let tools = template_tools(&c.tools);
    let raw = marked.render_with(
        &msgs,
        tools.as_ref(),
        false,
        enc.template_vars(),
        &enc.template_kwargs,
    )?;
    let mut text = String::with_capacity(raw.len());
    let mut spans = Vec::new();
    let mut open = None;
    for ch in raw.chars() {
        match ch {
            OPEN => open = Some(text.len()),
            CLOSE => {
                if let Some(s) = open.take() {
                    spans.push(s..text.len());
                }
            }
            _ => text.push(ch),
        }
    }
    Ok((text, spans))
}

/// The 0/1 mask transformers' `return_assistant_tokens_mask` computes for the marked
/// template: every token overlapping a marked span. With the token ids it masks.
pub fn marked_mask(
    enc: &Encoder,
    marked: &ChatTemplate,
    c: &Conversation,
) -> Result<(Vec<u32>, Vec<u8>), TemplateError> {
    let (text, spans) = render_spans(enc, marked, c)?;
    let tokens = enc.tokenizer.encode(&text, false)?;
    let mask = tokens
        .offsets
        .iter()
        .map(|&(s, e)| u8::from(spans.iter().any(|r| e > r.start && s < r.end)))
        .collect();
    Ok((tokens.ids, mask))
}

/// Why a marked template does not reproduce tunelab's masks for a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The marked template's text tokenizes to other ids from this token on.
    Text { token: usize },
    /// The first token that tunelab and the markers disagree on, its text, and whether
    /// tunelab trains it.
    Mask {
        token: usize,
        text: String,
        tunelab_trains: bool,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Text { token } => write!(
                f,
                "it renders other text than the template (from token {token} on)"
            ),
            Mismatch::Mask {
                token,
                text,
                tunelab_trains: true,
            } => write!(
                f,
                "token {token} ({text:?}) is trained by tunelab but not marked"
            ),
            Mismatch::Mask { token, text, .. } => write!(
                f,
                "token {token} ({text:?}) is marked but not trained by tunelab"
            ),
        }
    }
}

/// Whether the marked template's mask for `c` is the encoder's, token for token (the same
/// ids, the same trained positions): `Ok(None)` when it is.
pub fn check(
    enc: &Encoder,
    marked: &ChatTemplate,
    c: &Conversation,
) -> Result<Option<Mismatch>, TemplateError> {
    let ex = enc.encode_conversation(c)?;
    compare(enc, &ex, marked, c)
}

/// Whether `rendered` (the conversation as a tool reads it back from the exported data)
/// rendered through the marked template has `ex`'s ids and trains `ex`'s tokens.
pub fn compare(
    enc: &Encoder,
    ex: &Example,
    marked: &ChatTemplate,
    rendered: &Conversation,
) -> Result<Option<Mismatch>, TemplateError> {
    let (ids, mask) = marked_mask(enc, marked, rendered)?;
    if ids != ex.input_ids {
        let token = ids
            .iter()
            .zip(&ex.input_ids)
            .take_while(|(a, b)| a == b)
            .count();
        return Ok(Some(Mismatch::Text { token }));
    }
    Ok(ex
        .labels
        .iter()
        .zip(&mask)
        .position(|(l, m)| (*l != IGNORE) != (*m == 1))
        .map(|t| Mismatch::Mask {
            token: t,
            text: ex
                .text
                .get(ex.offsets[t].0..ex.offsets[t].1)
                .unwrap_or_default()
                .to_string(),
            tunelab_trains: ex.labels[t] != IGNORE,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_become_sentinels_and_the_policy_picks_the_spans() {
        let t = ChatTemplate::builtin("chatml").unwrap();
        let src =
            marked_source(&t, &["<|im_end|>".into()], TrainOn::Assistant, &Map::new()).unwrap();
        assert!(src.contains("{%- generation -%}") && src.contains("{%- endgeneration -%}"));
        assert!(marked_source(&t, &[], TrainOn::All, &Map::new()).is_none());
        let c = compile_marked("m", &src).unwrap();
        let msgs = vec![
            serde_json::json!({"role": "user", "content": "hi"}),
            serde_json::json!({"role": "assistant", "content": "yo"}),
        ];
        let out = c.render(&msgs, None, false, &[]).unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n\u{2}yo<|im_end|>\u{3}\n"
        );
        // With the generation prompt it is the original, unmarked.
        assert_eq!(
            c.render(&msgs, None, true, &[]).unwrap(),
            t.render(&msgs, None, true, &[]).unwrap()
        );
    }
}
