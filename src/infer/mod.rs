//! Generation: a KV-cached decode loop on its own thread that streams text over a channel,
//! so no caller (CLI, TUI, server) ever runs compute on its own runtime. `group` samples
//! GRPO's completions of one prompt as one batch.

pub mod group;
pub mod load;
pub mod sampling;
pub mod stream;

use crate::model::decoder::KvCache;
use crate::model::Model;
use crate::template::TextTokenizer;
use sampling::{Sampler, Sampling};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// A stop token (eos or a generation_config eos id).
    Stop,
    MaxTokens,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New text, complete UTF-8 (a token that ends mid-character waits for the next).
    Text(String),
    Done {
        tokens: usize,
        reason: StopReason,
        prompt_tokens: usize,
        seconds: f64,
    },
    Error(String),
}

/// Runs the decode loop, calling `emit` for each event; `emit` returns false to stop early.
pub fn generate(
    model: &Model,
    tok: &TextTokenizer,
    prompt: &[u32],
    cfg: Sampling,
    mut emit: impl FnMut(GenEvent) -> bool,
) {
    let started = std::time::Instant::now();
    let mut sampler = Sampler::new(cfg.clone());
    let mut cache = KvCache::default();
    let mut context: Vec<u32> = prompt.to_vec();
    let mut text = stream::TokenStream::new(tok);
    let mut next_input: Vec<u32> = prompt.to_vec();
    let mut reason = StopReason::MaxTokens;
    for _ in 0..cfg.max_new_tokens {
        let id = match model
            .forward_cached(&next_input, &mut cache)
            .and_then(|l| sampler.next(&l, &context))
        {
            Ok(id) => id,
            Err(e) => {
                emit(GenEvent::Error(e.to_string()));
                return;
            }
        };
        if tok.stop_ids.contains(&id) {
            reason = StopReason::Stop;
            break;
        }
        context.push(id);
        next_input = vec![id];
        if let Some(piece) = text.push(id) {
            if !emit(GenEvent::Text(piece)) {
                return;
            }
        }
    }
    if let Some(rest) = text.finish().filter(|r| !r.ends_with('\u{FFFD}')) {
        if !emit(GenEvent::Text(rest)) {
            return;
        }
    }
    emit(GenEvent::Done {
        tokens: text.ids().len(),
        reason,
        prompt_tokens: prompt.len(),
        seconds: started.elapsed().as_secs_f64(),
    });
}

/// Starts generation on its own thread; events arrive on the returned channel.
pub fn spawn(
    model: Arc<Model>,
    tok: Arc<TextTokenizer>,
    prompt: Vec<u32>,
    cfg: Sampling,
) -> Receiver<GenEvent> {
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("tunelab-generate".into())
        .spawn(move || generate(&model, &tok, &prompt, cfg, |e| tx.send(e).is_ok()))
        .ok();
    rx
}

/// Which of a chat model's voices answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// The base model alone.
    Base,
    /// The base with the first adapter.
    Adapter,
    /// The base with the second adapter.
    Second,
}

/// A model with its encoder, loaded for chatting (CLI, TUI, server).
pub struct ChatModel {
    /// What it was loaded from (a folder, GGUF file or hub id).
    pub spec: String,
    pub model: Arc<Model>,
    pub encoder: Arc<crate::template::Encoder>,
    pub adapter: Option<std::path::PathBuf>,
    /// A second adapter on the same frozen base (shared, not copied), so two adapters can
    /// answer side by side.
    pub second: Option<(std::path::PathBuf, Arc<Model>)>,
}

impl ChatModel {
    /// Loads `spec` (folder, GGUF or hub id) on the CPU for generation, with a PEFT adapter
    /// when given (refused, naming both bases, when it was trained on another model).
    pub fn load(
        spec: &str,
        adapter: Option<&std::path::Path>,
        template: &str,
    ) -> Result<Self, String> {
        let mut b = load::base(spec, template, Default::default()).map_err(|e| e.to_string())?;
        if let Some(a) = adapter {
            b.attach(a).map_err(|e| e.to_string())?;
        }
        Ok(ChatModel {
            spec: spec.to_string(),
            model: Arc::new(b.model),
            encoder: Arc::new(b.encoder),
            adapter: adapter.map(std::path::Path::to_path_buf),
            second: None,
        })
    }

    /// Loads (or replaces, or with `None` drops) the second adapter.
    pub fn set_second(&mut self, adapter: Option<&std::path::Path>) -> Result<(), String> {
        self.second = match adapter {
            None => None,
            Some(a) => {
                let mut m = self.model.bare_base();
                load::attach(&mut m, &self.spec, a).map_err(|e| e.to_string())?;
                Some((a.to_path_buf(), Arc::new(m)))
            }
        };
        Ok(())
    }

    pub fn second_path(&self) -> Option<&std::path::Path> {
        self.second.as_ref().map(|(p, _)| p.as_path())
    }

    /// Prompt ids for `messages` (role/content JSON) with the generation prompt.
    pub fn prompt(&self, messages: &[serde_json::Value]) -> Result<Vec<u32>, String> {
        self.encoder
            .generation_prompt_ids(messages)
            .map_err(|e| e.to_string())
    }

    /// Streams a reply of `voice` on its own thread.
    pub fn reply(
        &self,
        messages: &[serde_json::Value],
        voice: Voice,
        cfg: Sampling,
    ) -> Result<Receiver<GenEvent>, String> {
        let (tx, rx) = channel();
        self.reply_with(messages, voice, cfg, move |e| tx.send(e).is_ok())?;
        Ok(rx)
    }

    /// As [`ChatModel::reply`], each event handed to `sink` on the generation thread;
    /// generation stops when `sink` returns false (the listener is gone).
    pub fn reply_with(
        &self,
        messages: &[serde_json::Value],
        voice: Voice,
        cfg: Sampling,
        mut sink: impl FnMut(GenEvent) -> bool + Send + 'static,
    ) -> Result<(), String> {
        let ids = self.prompt(messages)?;
        let (model, adapter_on) = match (voice, &self.second) {
            (Voice::Second, Some((_, m))) => (Arc::clone(m), true),
            (Voice::Second, None) => return Err("no second adapter loaded".into()),
            (v, _) => (Arc::clone(&self.model), v == Voice::Adapter),
        };
        let tok = Arc::clone(&self.encoder);
        std::thread::Builder::new()
            .name("tunelab-chat".into())
            .spawn(move || {
                model.switch.set(adapter_on);
                generate(&model, &tok.tokenizer, &ids, cfg, &mut sink)
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
