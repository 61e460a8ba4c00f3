//! The Chat tab's remote column: an OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp,
//! Ollama, `tunelab serve`) answering the same prompts as the local model, through the
//! synth module's request mapping and HTTP client (timeouts, retries, key redaction). One
//! request per prompt on a worker thread; replies are not streamed.

use crate::synth::http::{Client, Policy};
use crate::synth::message::{ChatRequest, Speaker};
use crate::synth::{openai, Endpoint, Provider};
use std::sync::Arc;
use std::time::Duration;

/// One exchange with the remote: the prompt and its reply or the error.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub prompt: String,
    /// `None` while the request is under way.
    pub reply: Option<Result<String, String>>,
}

/// What a remote request came to, for the turn numbered `turn`.
pub struct RemoteReply {
    /// The column that asked (a column removed and added again is a new one).
    pub column: u64,
    pub turn: usize,
    /// The conversation the request belongs to (a cleared one ignores it).
    pub epoch: u64,
    /// The model asked, once known (the server names it when the column left it empty).
    pub model: Option<String>,
    pub result: Result<String, String>,
}

pub struct Remote {
    /// Tells this column's replies from those of a column it replaced.
    id: u64,
    pub endpoint: Endpoint,
    client: Arc<Client>,
    pub turns: Vec<Turn>,
    /// Bumped when the conversation is cleared, so late replies are dropped.
    epoch: u64,
}

impl Remote {
    /// Column `id` for the server at `base_url` (`…/v1`); an empty `model` asks the server
    /// for its first one when the first prompt goes out. The key is `OPENAI_API_KEY`, if set.
    pub fn new(id: u64, base_url: &str, model: &str) -> Result<Remote, String> {
        let model = Some(model.trim().to_string()).filter(|m| !m.is_empty());
        let endpoint = Endpoint::from_env(Provider::Openai, Some(base_url.trim().into()), model)?;
        let client = Client::new(Policy {
            timeout: Duration::from_secs(120),
            attempts: 3,
            backoff: Duration::from_millis(500),
            rpm: None,
        });
        Ok(Remote {
            id,
            endpoint,
            client: Arc::new(client),
            turns: Vec::new(),
            epoch: 0,
        })
    }

    /// The column's title: the model, that replies come whole, and the server (last, as
    /// a narrow column cuts it).
    pub fn title(&self) -> String {
        format!(
            "remote {} · not streamed · {}",
            self.endpoint
                .model
                .as_deref()
                .unwrap_or("(the server's model)"),
            self.endpoint.base_url
        )
    }

    pub fn busy(&self) -> bool {
        self.turns.last().is_some_and(|t| t.reply.is_none())
    }

    pub fn clear(&mut self) {
        self.turns.clear();
        self.epoch += 1;
    }

    /// Records `prompt` and returns the request to run on a worker: the system text, the
    /// earlier exchanges that got replies, and the prompt.
    pub fn ask(
        &mut self,
        system: &str,
        prompt: &str,
        max_tokens: u32,
        temperature: f64,
    ) -> impl FnOnce() -> RemoteReply + Send + 'static {
        let mut turns = Vec::new();
        for t in &self.turns {
            if let Some(Ok(reply)) = &t.reply {
                turns.push((Speaker::User, t.prompt.clone()));
                turns.push((Speaker::Assistant, reply.clone()));
            }
        }
        turns.push((Speaker::User, prompt.to_string()));
        let req = ChatRequest {
            system: Some(system.to_string()).filter(|s| !s.is_empty()),
            turns,
            max_tokens: max_tokens.max(1),
            temperature: Some(temperature),
        };
        self.turns.push(Turn {
            prompt: prompt.to_string(),
            reply: None,
        });
        let (column, turn, epoch) = (self.id, self.turns.len() - 1, self.epoch);
        let (client, mut endpoint) = (self.client.clone(), self.endpoint.clone());
        move || {
            if endpoint.model.is_none() {
                // As `data synth` does: the server's first model, else the default name.
                endpoint.model = Some(
                    client
                        .first_model(&endpoint)
                        .unwrap_or_else(|| openai::DEFAULT_MODEL.to_string()),
                );
            }
            let result = client
                .chat(&endpoint, &req, &|_, _| {})
                .map(|r| r.text)
                .map_err(|e| e.to_string());
            RemoteReply {
                column,
                turn,
                epoch,
                model: endpoint.model,
                result,
            }
        }
    }

    /// Takes a reply; false when it belongs to another column or a cleared conversation.
    pub fn receive(&mut self, r: RemoteReply) -> bool {
        if r.column != self.id || r.epoch != self.epoch {
            return false;
        }
        if self.endpoint.model.is_none() {
            self.endpoint.model = r.model;
        }
        match self.turns.get_mut(r.turn) {
            Some(t) => {
                t.reply = Some(r.result);
                true
            }
            None => false,
        }
    }

    /// The latest exchange's reply as column text: the reply, `waiting…`, or `error: …`.
    pub fn last_text(&self) -> String {
        match self.turns.last().map(|t| &t.reply) {
            None => "Ask something: the remote model answers here too.".into(),
            Some(None) => "waiting for the reply…".into(),
            Some(Some(Ok(text))) => text.clone(),
            Some(Some(Err(e))) => format!("error: {e}"),
        }
    }
}
