//! Chat templates rendered the way transformers renders them: Jinja with `trim_blocks` and
//! `lstrip_blocks`, Python string methods, `raise_exception`, `strftime_now`, loop controls and
//! a `tojson` that writes what Python's `json.dumps` writes. Templates are untrusted input, so
//! every render runs on a fuel budget.

use super::error::TemplateError;
use crate::pyjson::{dumps_with, DumpOptions};
use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Instructions one render may execute before it is stopped.
pub const FUEL: u64 = 20_000_000;

/// Rendered bytes one render may produce: this much plus `OUTPUT_PER_INPUT` times the size
/// of what it renders (messages and tools as JSON), never more than `OUTPUT_CEILING`. A
/// chat template adds markers and perhaps a tools block around the conversation; a
/// template that writes gigabytes is hostile or broken, and is stopped as it writes.
pub const OUTPUT_BASE: usize = 64 << 10;
pub const OUTPUT_PER_INPUT: usize = 8;
pub const OUTPUT_CEILING: usize = 64 << 20;
/// Wall time one render may take, checked as it writes.
pub const RENDER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Collects a render's output and stops it past its byte or time budget, remembering why.
struct Bounded {
    out: Vec<u8>,
    limit: usize,
    /// Bytes of conversation (messages and tools as JSON) the limit was set for.
    input: usize,
    started: std::time::Instant,
    stopped: Option<String>,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            self.stopped = Some(format!(
                "the rendered text passed the {} bytes allowed for {} bytes of conversation; the template writes far more than what it renders",
                self.limit, self.input
            ));
            return Err(std::io::Error::other("output budget"));
        }
        if self.started.elapsed() > RENDER_TIME {
            self.stopped = Some(format!(
                "rendering took longer than {} s",
                RENDER_TIME.as_secs()
            ));
            return Err(std::io::Error::other("time budget"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The templates tunelab ships for models that carry none. `qwen3`, `gemma` (Gemma 3's),
/// `phi4` and `phi4-mini` are the published templates of those models, unchanged but for a
/// leading comment (`tests/reference/templates/` holds the originals, and the fixture tests check
/// that these render what they render).
pub const BUILTIN: &[(&str, &str)] = &[
    ("chatml", include_str!("builtin/chatml.jinja")),
    ("llama3", include_str!("builtin/llama3.jinja")),
    ("mistral", include_str!("builtin/mistral.jinja")),
    ("alpaca", include_str!("builtin/alpaca.jinja")),
    ("qwen3", include_str!("builtin/qwen3.jinja")),
    ("gemma", include_str!("builtin/gemma.jinja")),
    ("phi4", include_str!("builtin/phi4.jinja")),
    ("phi4-mini", include_str!("builtin/phi4-mini.jinja")),
];

/// The built-in templates' names, for messages (`chatml, llama3, …`).
pub fn builtin_names() -> String {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names a chat template reads that `apply_chat_template`'s own arguments fill, so extra
/// template arguments (`data.template_kwargs`) cannot take them.
pub const RESERVED_KWARGS: &[&str] = &[
    "messages",
    "tools",
    "documents",
    "add_generation_prompt",
    "continue_final_message",
];

#[derive(Clone)]
pub struct ChatTemplate {
    pub name: String,
    pub source: String,
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .finish()
    }
}

/// Python's `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let opts = DumpOptions {
        indent,
        separators: separators
            .filter(|s| s.len() == 2)
            .map(|s| (s[0].clone(), s[1].clone())),
        sort_keys: sort_keys == Some(true),
        ensure_ascii: ensure_ascii == Some(true),
    };
    Ok(dumps_with(&json, &opts))
}

fn raise_exception(message: String) -> Result<JValue, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    chrono::Local::now().format(&format).to_string()
}

/// transformers' `{% generation %}` blocks only mark spans for its own mask; tunelab finds
/// spans by rendering turn by turn, so each block becomes `{% if true %}`, keeping its
/// whitespace control.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        // The closing `%}` after the opening `{%` (in `{%}` they overlap: no tag).
        let Some(len) = rest[start + 2..].find("%}").map(|l| l + 2) else {
            break;
        };
        let tag = &rest[start..start + len + 2];
        let inner = &tag[2..tag.len() - 2];
        let word = inner.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        out.push_str(&rest[..start]);
        match word {
            "generation" => out.push_str(&tag.replacen("generation", "if true", 1)),
            "endgeneration" => out.push_str(&tag.replacen("endgeneration", "endif", 1)),
            _ => out.push_str(tag),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

impl ChatTemplate {
    pub fn compile(name: &str, source: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        let source = strip_generation_tags(source);
        env.add_template_owned(name.to_string(), source.clone())
            .map_err(|e| TemplateError::Compile {
                name: name.to_string(),
                message: describe(&e),
            })?;
        Ok(ChatTemplate {
            name: name.to_string(),
            source,
            env: Arc::new(env),
        })
    }

    /// A built-in template by name (see [`BUILTIN`]).
    pub fn builtin(name: &str) -> Option<Self> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(n, src)| Self::compile(n, src).ok())
    }

    /// Renders `messages` (a JSON array of message objects) as transformers' `apply_chat_template`.
    pub fn render(
        &self,
        messages: &[Value],
        tools: Option<&Value>,
        add_generation_prompt: bool,
        vars: &[(&'static str, String)],
    ) -> Result<String, TemplateError> {
        self.render_with(messages, tools, add_generation_prompt, vars, &Map::new())
    }

    /// [`ChatTemplate::render`] with extra template arguments, as `apply_chat_template(...,
    /// **kwargs)` passes them (`enable_thinking`, say): they may replace the special tokens
    /// in `vars`, not the [`RESERVED_KWARGS`].
    pub fn render_with(
        &self,
        messages: &[Value],
        tools: Option<&Value>,
        add_generation_prompt: bool,
        vars: &[(&'static str, String)],
        kwargs: &Map<String, Value>,
    ) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(&self.name)
            .map_err(|e| TemplateError::Compile {
                name: self.name.clone(),
                message: describe(&e),
            })?;
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), Value::Array(messages.to_vec()));
        ctx.insert("tools".into(), tools.cloned().unwrap_or(Value::Null));
        ctx.insert("documents".into(), Value::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(add_generation_prompt),
        );
        for (k, v) in vars {
            ctx.insert((*k).into(), Value::String(v.clone()));
        }
        for (k, v) in kwargs {
            if !RESERVED_KWARGS.contains(&k.as_str()) {
                ctx.insert(k.clone(), v.clone());
            }
        }
        let input = serde_json::to_vec(&ctx).map_or(0, |v| v.len());
        let mut out = Bounded {
            out: Vec::new(),
            limit: (OUTPUT_BASE + OUTPUT_PER_INPUT * input).min(OUTPUT_CEILING),
            input,
            started: std::time::Instant::now(),
            stopped: None,
        };
        let result = tmpl.render_captured_to(JValue::from_serialize(&ctx), &mut out);
        if let Some(why) = out.stopped {
            return Err(TemplateError::Render {
                name: self.name.clone(),
                line: None,
                message: why,
            });
        }
        result.map_err(|e| TemplateError::Render {
            name: self.name.clone(),
            line: e.line(),
            message: describe(&e),
        })?;
        String::from_utf8(out.out).map_err(|e| TemplateError::Render {
            name: self.name.clone(),
            line: None,
            message: format!("the rendered text is not UTF-8: {e}"),
        })
    }
}

/// minijinja's error detail (a template's `raise_exception` message comes through verbatim).
fn describe(e: &Error) -> String {
    match (e.kind(), e.detail()) {
        (ErrorKind::InvalidOperation, Some(d)) => d.to_string(),
        (_, Some(d)) => format!("{}: {d}", e.kind()),
        _ => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render_expr(expr: &str, v: Value) -> String {
        let t = ChatTemplate::compile("t", &format!("{{{{ {expr} }}}}")).unwrap();
        let mut ctx = serde_json::Map::new();
        ctx.insert("x".into(), v);
        let tmpl = t.env.get_template("t").unwrap();
        tmpl.render(JValue::from_serialize(&ctx)).unwrap()
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let v = json!({"b": [1, 2.5, "é<>&"], "a": {"c": null, "d": true}, "e": []});
        assert_eq!(
            render_expr("x | tojson", v.clone()),
            r#"{"b": [1, 2.5, "é<>&"], "a": {"c": null, "d": true}, "e": []}"#
        );
        assert_eq!(
            render_expr("x | tojson(indent=2)", v.clone()),
            "{\n  \"b\": [\n    1,\n    2.5,\n    \"é<>&\"\n  ],\n  \"a\": {\n    \"c\": null,\n    \"d\": true\n  },\n  \"e\": []\n}"
        );
        assert_eq!(
            render_expr("x | tojson(sort_keys=true)", json!({"b": 1, "a": 2})),
            r#"{"a": 2, "b": 1}"#
        );
        assert_eq!(
            render_expr("x | tojson(ensure_ascii=true)", json!("é")),
            r#""\u00e9""#
        );
        assert_eq!(
            render_expr("x | tojson(separators=[',', ':'])", json!({"a": [1, 2]})),
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn python_methods_loop_controls_and_raise() {
        let t = ChatTemplate::compile(
            "t",
            "{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}{{ m.content.strip().upper() }}|{% endfor %}",
        )
        .unwrap();
        let msgs = vec![
            json!({"content": " a "}),
            json!({"content": "b"}),
            json!({"content": "c"}),
        ];
        assert_eq!(t.render(&msgs, None, false, &[]).unwrap(), "A|B|");
        let t = ChatTemplate::compile(
            "bad",
            "line one\n{{ raise_exception('roles must alternate') }}",
        )
        .unwrap();
        let err = t.render(&msgs, None, false, &[]).unwrap_err().to_string();
        assert_eq!(err, "chat template bad, line 2: roles must alternate");
    }

    #[test]
    fn strftime_now_formats_today() {
        let t = ChatTemplate::compile("t", "{{ strftime_now('%Y') }}").unwrap();
        let year = chrono::Local::now().format("%Y").to_string();
        assert_eq!(t.render(&[], None, false, &[]).unwrap(), year);
    }

    /// The hostile template of issue #20: 10⁸ iterations each writing 1,000 bytes. It is
    /// stopped by the output budget within milliseconds, having held at most the budget.
    #[test]
    fn templates_that_write_without_end_are_stopped_by_their_output_budget() {
        let t = ChatTemplate::compile(
            "bomb",
            "{% for i in range(10000) %}{% for j in range(10000) %}{{ 'x' * 1000 }}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let start = std::time::Instant::now();
        let msgs = [json!({"role": "user", "content": "hi"})];
        let err = t.render(&msgs, None, false, &[]).unwrap_err().to_string();
        let took = start.elapsed();
        assert!(err.contains("chat template bomb"), "{err}");
        assert!(err.contains("the rendered text passed"), "{err}");
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
        // An ordinary conversation renders untouched by the budget.
        let c = ChatTemplate::builtin("chatml").unwrap();
        let long = "word ".repeat(200_000);
        let msgs = [json!({"role": "user", "content": long})];
        assert!(c.render(&msgs, None, true, &[]).unwrap().len() > 1_000_000);
    }

    #[test]
    fn runaway_templates_are_stopped_by_fuel() {
        let t = ChatTemplate::compile(
            "loop",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% set k = j %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let err = t.render(&[], None, false, &[]).unwrap_err().to_string();
        assert!(err.contains("chat template loop"), "{err}");
        assert!(err.to_lowercase().contains("fuel"), "{err}");
    }

    #[test]
    fn generation_tags_are_accepted() {
        let t = ChatTemplate::compile(
            "g",
            "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
        )
        .unwrap();
        assert_eq!(
            t.render(&[json!({"content": "hi"})], None, false, &[])
                .unwrap(),
            "hi"
        );
    }

    /// Found by examples/fuzz.rs: `{%}` (an opening and a closing delimiter overlapping)
    /// made the generation-tag pass slice backwards and panic.
    #[test]
    fn overlapping_delimiters_are_an_error_not_a_panic() {
        for src in ["{%}", "a{%}b{% generation %}x{% endgeneration %}", "{%-}"] {
            let _ = ChatTemplate::compile("fuzz", src);
        }
        assert_eq!(
            strip_generation_tags("{% generation %}x{% endgeneration %}"),
            "{% if true %}x{% endif %}"
        );
    }

    #[test]
    fn builtins_compile() {
        for (name, _) in BUILTIN {
            assert!(ChatTemplate::builtin(name).is_some(), "{name}");
        }
    }

    fn vars() -> Vec<(&'static str, String)> {
        vec![("bos_token", "<|begin_of_text|>".to_string())]
    }

    /// Without tools the built-ins render exactly as before tool support came.
    #[test]
    fn builtins_without_tools_are_plain() {
        let m = [
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": "hi"}),
            json!({"role": "assistant", "content": "yo"}),
        ];
        let chatml = ChatTemplate::builtin("chatml").unwrap();
        assert_eq!(
            chatml.render(&m, None, true, &vars()).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>assistant\n"
        );
        let llama = ChatTemplate::builtin("llama3").unwrap();
        assert_eq!(
            llama.render(&m, None, false, &vars()).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>"
        );
    }

    /// With tools: ChatML in the Hermes/Qwen2.5 layout, Llama 3 in Llama 3.1's.
    #[test]
    fn builtins_render_tool_calls_and_definitions() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        let m = [
            json!({"role": "user", "content": "Weather in Oslo?"}),
            json!({"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}),
            json!({"role": "tool", "content": "{\"t\": 3}"}),
            json!({"role": "assistant", "content": "3 degrees."}),
        ];
        let chatml = ChatTemplate::builtin("chatml").unwrap();
        let text = chatml.render(&m, Some(&tools), false, &vars()).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Oslo?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"t\": 3}\n</tool_response><|im_end|>\n<|im_start|>assistant\n3 degrees.<|im_end|>\n"
        );
        let llama = ChatTemplate::builtin("llama3").unwrap();
        let text = llama.render(&m, Some(&tools), false, &vars()).unwrap();
        assert!(
            text.contains(
                "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions"
            ),
            "{text}"
        );
        assert!(text.contains("\"name\": \"get_weather\""), "{text}");
        assert!(text.contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}<|eot_id|>"), "{text}");
        assert!(
            text.contains("<|start_header_id|>ipython<|end_header_id|>\n\n{\"t\": 3}<|eot_id|>"),
            "{text}"
        );
    }

    /// Qwen3's, Gemma 3's, Phi-4's and Phi-4-mini's published templates as built-ins (the
    /// fixture tests compare them with transformers on every case).
    #[test]
    fn builtins_of_the_new_families() {
        let m = [
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": "hi"}),
            json!({"role": "assistant", "content": "yo", "reasoning_content": "Greet back."}),
        ];
        let qwen3 = ChatTemplate::builtin("qwen3").unwrap();
        assert_eq!(
            qwen3.render(&m, None, false, &[]).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nGreet back.\n</think>\n\nyo<|im_end|>\n"
        );
        let mut off = Map::new();
        off.insert("enable_thinking".into(), Value::Bool(false));
        assert!(qwen3
            .render_with(&m[..2], None, true, &[], &off)
            .unwrap()
            .ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        let gemma = ChatTemplate::builtin("gemma").unwrap();
        let bos = [("bos_token", "<bos>".to_string())];
        assert_eq!(
            gemma.render(&m, None, true, &bos).unwrap(),
            "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n<start_of_turn>model\n"
        );
        let phi4 = ChatTemplate::builtin("phi4").unwrap();
        assert_eq!(
            phi4.render(&m, None, false, &[]).unwrap(),
            "<|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>hi<|im_end|><|im_start|>assistant<|im_sep|>yo<|im_end|>"
        );
        let mini = ChatTemplate::builtin("phi4-mini").unwrap();
        let eos = [("eos_token", "<|endoftext|>".to_string())];
        assert_eq!(
            mini.render(&m, None, false, &eos).unwrap(),
            "<|system|>Be brief.<|end|><|user|>hi<|end|><|assistant|>yo<|end|><|endoftext|>"
        );
        assert!(builtin_names().contains("qwen3, gemma, phi4, phi4-mini"));
    }
}
