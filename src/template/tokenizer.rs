//! A model's tokenizer with the settings transformers reads beside it: special tokens and
//! `add_bos_token` from `tokenizer_config.json`, stop ids from `generation_config.json`, and
//! the chat template (from `chat_template.jinja` or `tokenizer_config.json`).

use super::error::TemplateError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// Token ids with the byte range of the text each covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

#[derive(Clone)]
pub struct TextTokenizer {
    pub dir: PathBuf,
    pub inner: Tokenizer,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
    pub add_bos_token: bool,
    /// Chat templates by name; a single template is stored as `default`.
    pub chat_templates: Vec<(String, String)>,
    /// Ids that end generation (and so end a trained assistant turn): the eos token plus
    /// `generation_config.json`'s `eos_token_id`.
    pub stop_ids: BTreeSet<u32>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("dir", &self.dir)
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("stop_ids", &self.stop_ids)
            .finish()
    }
}

fn read_json(path: &Path) -> Result<Option<Value>, TemplateError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| TemplateError::Json {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TemplateError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// A special token given as a string or as an AddedToken object `{"content": …}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and its companions from a model folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, TemplateError> {
        let dir = dir.as_ref().to_path_buf();
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(TemplateError::Load {
                path: dir.clone(),
                message: "no tokenizer.json in this folder; expected a Hugging Face model or tokenizer folder".into(),
            });
        }
        let inner = Tokenizer::from_file(&tok_path).map_err(|e| TemplateError::Load {
            path: tok_path.clone(),
            message: format!("cannot read the tokenizer: {e}"),
        })?;
        let config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let special_map = read_json(&dir.join("special_tokens_map.json"))?.unwrap_or(Value::Null);
        let special =
            |key: &str| token_text(config.get(key)).or_else(|| token_text(special_map.get(key)));
        let mut chat_templates = Vec::new();
        if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
            chat_templates.push(("default".to_string(), t));
        } else {
            match config.get("chat_template") {
                Some(Value::String(t)) => chat_templates.push(("default".to_string(), t.clone())),
                Some(Value::Array(list)) => {
                    for item in list {
                        if let (Some(n), Some(t)) = (
                            item.get("name").and_then(Value::as_str),
                            item.get("template").and_then(Value::as_str),
                        ) {
                            chat_templates.push((n.to_string(), t.to_string()));
                        }
                    }
                }
                _ => {}
            }
        }
        let mut tok = TextTokenizer {
            dir: dir.clone(),
            bos_token: special("bos_token"),
            eos_token: special("eos_token"),
            pad_token: special("pad_token"),
            unk_token: special("unk_token"),
            add_bos_token: config
                .get("add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            chat_templates,
            stop_ids: BTreeSet::new(),
            inner,
        };
        if let Some(id) = tok
            .eos_token
            .as_deref()
            .and_then(|t| tok.inner.token_to_id(t))
        {
            tok.stop_ids.insert(id);
        }
        if let Some(gen) = read_json(&dir.join("generation_config.json"))? {
            match gen.get("eos_token_id") {
                Some(Value::Number(n)) => tok.stop_ids.extend(n.as_u64().map(|v| v as u32)),
                Some(Value::Array(a)) => tok
                    .stop_ids
                    .extend(a.iter().filter_map(Value::as_u64).map(|v| v as u32)),
                _ => {}
            }
        }
        Ok(tok)
    }

    /// A tokenizer assembled elsewhere (from GGUF metadata, say); stop ids start with the eos.
    pub fn from_parts(
        dir: PathBuf,
        inner: Tokenizer,
        specials: [Option<String>; 4],
        add_bos_token: bool,
        chat_template: Option<String>,
    ) -> Self {
        let [bos_token, eos_token, pad_token, unk_token] = specials;
        let mut tok = TextTokenizer {
            dir,
            inner,
            bos_token,
            eos_token,
            pad_token,
            unk_token,
            add_bos_token,
            chat_templates: chat_template
                .map(|t| vec![("default".to_string(), t)])
                .unwrap_or_default(),
            stop_ids: BTreeSet::new(),
        };
        if let Some(id) = tok.eos_id() {
            tok.stop_ids.insert(id);
        }
        tok
    }

    /// The id padding uses: the pad token, else the eos, else 0 (padding is masked anyway).
    pub fn pad_id(&self) -> u32 {
        self.pad_token
            .as_deref()
            .and_then(|p| self.token_to_id(p))
            .or_else(|| self.eos_id())
            .unwrap_or(0)
    }

    /// The chat template transformers would use: `default` when there are several.
    pub fn default_chat_template(&self) -> Option<&str> {
        self.chat_templates
            .iter()
            .find(|(n, _)| n == "default")
            .or(self.chat_templates.first())
            .map(|(_, t)| t.as_str())
    }

    /// Encodes `text`; `add_special_tokens` applies the tokenizer's post-processor (BOS, …).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoded, TemplateError> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| TemplateError::Tokenize(e.to_string()))?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, TemplateError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TemplateError::Tokenize(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_token
            .as_deref()
            .and_then(|t| self.inner.token_to_id(t))
    }

    /// The special tokens a chat template can read (`bos_token`, `eos_token`, …).
    pub fn template_vars(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        for (name, tok) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
            ("unk_token", &self.unk_token),
        ] {
            if let Some(t) = tok {
                v.push((name, t.clone()));
            }
        }
        v
    }
}
