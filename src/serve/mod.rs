//! `tunelab serve`: an OpenAI-compatible server for a base model and its adapters.
//!
//! `/v1/chat/completions` (JSON or server-sent events), `/v1/models` (the base and each
//! adapter under its own id, as vLLM lists LoRA modules) and `/health`. The base is loaded
//! once; adapters share its tensors ([`models`]). Requests are read and answered in the
//! OpenAI wire format ([`openai`]); each completion waits for a slot ([`slots`]) and runs on
//! a generation thread of its own ([`generate`]) that streams into the async handler
//! ([`http`]), so the tokio runtime never computes. The library never prints: the CLI is
//! told the bound address through a callback.

pub mod generate;
pub mod guard;
pub mod http;
pub mod models;
pub mod openai;
pub mod slots;
pub mod stop;

pub use guard::Keys;
pub use http::{run, Options, ServeError};
pub use models::{AdapterSpec, LoadError, Registry, ServeSpec};
