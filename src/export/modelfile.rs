//! An Ollama `Modelfile` beside an exported GGUF: `FROM` the file (or the base with an
//! `ADAPTER` line), the chat layout as Ollama's Go `TEMPLATE`, its stop tokens, and the
//! sampling parameters of the base's generation config.

use crate::template::TextTokenizer;

/// A chat layout Ollama can express, recognised by its special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    ChatMl,
    Llama3,
    Gemma,
    Phi3,
    Mistral,
}

impl Layout {
    /// The layout whose markers the vocabulary holds.
    pub fn detect(tok: &TextTokenizer) -> Option<Layout> {
        let has = |t: &str| tok.token_to_id(t).is_some();
        if has("<|im_start|>") && has("<|im_end|>") {
            Some(Layout::ChatMl)
        } else if has("<|start_header_id|>") {
            Some(Layout::Llama3)
        } else if has("<start_of_turn>") {
            Some(Layout::Gemma)
        } else if has("<|user|>") && has("<|end|>") {
            Some(Layout::Phi3)
        } else if has("[INST]") {
            Some(Layout::Mistral)
        } else {
            None
        }
    }

    fn template(self) -> &'static str {
        match self {
            Layout::ChatMl => "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
            Layout::Llama3 => "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
            Layout::Gemma => "{{- range .Messages }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}{{ end }}\n{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n",
            Layout::Phi3 => "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
            Layout::Mistral => "{{- range .Messages }}{{ if eq .Role \"user\" }}[INST] {{ .Content }}[/INST]{{ else }}{{ .Content }}</s>{{ end }}{{ end }}",
        }
    }

    fn stops(self) -> &'static [&'static str] {
        match self {
            Layout::ChatMl => &["<|im_end|>", "<|im_start|>"],
            Layout::Llama3 => &["<|eot_id|>", "<|start_header_id|>"],
            Layout::Gemma => &["<end_of_turn>"],
            Layout::Phi3 => &["<|end|>", "<|user|>"],
            Layout::Mistral => &["[INST]", "</s>"],
        }
    }
}

/// The Modelfile text. `from` is the GGUF path as written in the file (relative to it);
/// `adapter` a LoRA GGUF for an `ADAPTER` line; `params` Ollama `PARAMETER`s
/// (temperature, top_p, …).
pub fn render(
    tok: &TextTokenizer,
    from: &str,
    adapter: Option<&str>,
    params: &[(String, String)],
) -> String {
    let mut out = format!("# Written by tunelab export.\nFROM {from}\n");
    if let Some(a) = adapter {
        out.push_str(&format!("ADAPTER {a}\n"));
    }
    match Layout::detect(tok) {
        Some(l) => {
            out.push_str(&format!("TEMPLATE \"\"\"{}\"\"\"\n", l.template()));
            for s in l.stops() {
                out.push_str(&format!("PARAMETER stop \"{s}\"\n"));
            }
        }
        None => out.push_str(
            "# The chat layout is not one tunelab knows (ChatML, Llama 3, Gemma, Phi-3, Mistral):\n# Ollama falls back to the GGUF's own tokenizer.chat_template.\n",
        ),
    }
    for (k, v) in params {
        out.push_str(&format!("PARAMETER {k} {v}\n"));
    }
    out
}

/// Ollama parameters from a `generation_config.json` (temperature, top_p, top_k,
/// repetition_penalty → repeat_penalty).
pub fn params_from_generation_config(v: &serde_json::Value) -> Vec<(String, String)> {
    [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("repetition_penalty", "repeat_penalty"),
    ]
    .iter()
    .filter_map(|(hf, ollama)| v.get(*hf).map(|x| (ollama.to_string(), x.to_string())))
    .collect()
}
