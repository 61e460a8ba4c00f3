//! One completion on its own thread: the prompt rendered and tokenized, then
//! [`infer::generate`] (the decode loop `tunelab chat` and the Chat tab run), its text checked
//! against the stop strings, and every step sent over a channel the async handler awaits.
//! Nothing here runs on the server's runtime. The thread holds the request's slot, and stops
//! generating as soon as nobody listens (the client went away).

use super::openai::{ApiError, ChatRequest, Finish, Usage};
use super::slots::Slot;
use super::stop::StopText;
use crate::infer::sampling::Sampling;
use crate::infer::{self, GenEvent, StopReason};
use crate::model::Model;
use crate::template::Encoder;
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// What the generation thread reports, in order: `Started` or `Rejected` first, then text,
/// then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// The prompt fits: generation has started.
    Started {
        prompt_tokens: usize,
    },
    /// The prompt cannot be generated from (the template refused the messages, or it does not
    /// fit the context).
    Rejected(ApiError),
    Text(String),
    Done {
        finish: Finish,
        usage: Usage,
    },
    Failed(String),
}

/// A completion to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub request: ChatRequest,
    /// `max_tokens` when the request leaves it out.
    pub default_max_tokens: usize,
    /// The model's context length: prompt and completion together stay within it.
    pub context: usize,
    /// For the log.
    pub label: String,
}

impl Job {
    fn sampling(&self, max_new_tokens: usize) -> Sampling {
        let r = &self.request;
        Sampling {
            temperature: r.temperature,
            top_k: r.top_k,
            top_p: r.top_p,
            repetition_penalty: r.repetition_penalty,
            seed: r.seed.unwrap_or_else(rand::random),
            max_new_tokens,
        }
    }
}

/// Starts `job` on `model` on a thread of its own, which keeps `slot` until it ends.
pub fn start(
    model: Arc<Model>,
    encoder: Arc<Encoder>,
    job: Job,
    slot: Slot,
) -> std::io::Result<UnboundedReceiver<Out>> {
    let (tx, rx) = unbounded_channel();
    std::thread::Builder::new()
        .name("tunelab-serve".into())
        .spawn(move || {
            let _slot = slot;
            run(&model, &encoder, &job, |o| tx.send(o).is_ok());
        })?;
    Ok(rx)
}

/// The prompt's token ids, as `tunelab chat` makes them.
pub fn prompt_ids(encoder: &Encoder, messages: &[serde_json::Value]) -> Result<Vec<u32>, String> {
    encoder
        .generation_prompt_ids(messages)
        .map_err(|e| e.to_string())
}

/// Runs `job`, handing each step to `send` (false: nobody listens, stop).
pub fn run(model: &Model, encoder: &Encoder, job: &Job, mut send: impl FnMut(Out) -> bool) {
    let ids = match prompt_ids(encoder, &job.request.messages) {
        Ok(ids) => ids,
        Err(e) => {
            send(Out::Rejected(ApiError::invalid("messages", e)));
            return;
        }
    };
    let prompt_tokens = ids.len();
    if prompt_tokens >= job.context {
        send(Out::Rejected(
            ApiError::invalid(
                "messages",
                format!(
                    "the prompt is {prompt_tokens} tokens; the model's context is {} tokens",
                    job.context
                ),
            )
            .with_code("context_length_exceeded"),
        ));
        return;
    }
    // Asked for: prompt and completion must fit the context, or the request is refused (a
    // silent cut would surprise the client). Left out: the default, as far as it fits.
    let max = match job.request.max_tokens {
        Some(asked) if prompt_tokens + asked > job.context => {
            send(Out::Rejected(
                ApiError::invalid(
                    "max_tokens",
                    format!(
                        "the model's context is {} tokens, and this request asks for {} ({prompt_tokens} in the messages, {asked} in the completion)",
                        job.context,
                        prompt_tokens + asked
                    ),
                )
                .with_code("context_length_exceeded"),
            ));
            return;
        }
        Some(asked) => asked,
        None => job.default_max_tokens.min(job.context - prompt_tokens),
    };
    if !send(Out::Started { prompt_tokens }) {
        return;
    }
    let mut stop = StopText::new(job.request.stop.clone());
    let (mut pieces, mut gone, mut failed, mut done) = (0usize, false, None, None);
    infer::generate(
        model,
        &encoder.tokenizer,
        &ids,
        job.sampling(max),
        |e| match e {
            GenEvent::Text(t) => {
                pieces += 1;
                let ready = stop.push(&t);
                if !ready.is_empty() && !send(Out::Text(ready)) {
                    gone = true;
                    return false;
                }
                !stop.stopped()
            }
            GenEvent::Done { tokens, reason, .. } => {
                done = Some((tokens, reason));
                true
            }
            GenEvent::Error(e) => {
                failed = Some(e);
                false
            }
        },
    );
    if gone {
        tracing::info!(
            "{}: the client went away; generation stopped after about {pieces} tokens",
            job.label
        );
        return;
    }
    if let Some(e) = failed {
        send(Out::Failed(e));
        return;
    }
    let (completion_tokens, finish) = if let Some(through) = stop.generated_through_stop() {
        // Stopped by a stop string: count what was generated through it.
        let n = encoder
            .tokenizer
            .encode(through, false)
            .map_or(pieces, |e| e.ids.len());
        (n, Finish::Stop)
    } else {
        let rest = stop.finish();
        if !rest.is_empty() && !send(Out::Text(rest)) {
            return;
        }
        match done {
            Some((n, StopReason::Stop)) => (n, Finish::Stop),
            Some((n, StopReason::MaxTokens)) => (n, Finish::Length),
            None => (pieces, Finish::Length),
        }
    };
    send(Out::Done {
        finish,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
        },
    });
}
