//! Synthetic data: SFT records and preference pairs written by a strong model (Anthropic's
//! Messages API or any OpenAI-compatible server) from seeds and a persona, in any of the
//! data layer's formats. Requests go out on worker threads under a requests-per-minute pace
//! with retries; records are appended one whole line at a time so a killed run resumes
//! where it stopped; what a model gets wrong goes to a rejected log, never to the output.
//! API keys come from the environment and go only into request headers.

pub mod anthropic;
pub mod error;
pub mod http;
pub mod message;
pub mod openai;
pub mod output;
pub mod prompts;
pub mod provider;
pub mod run;
pub mod seeds;

pub use error::SynthError;
pub use http::Policy;
pub use provider::{Endpoint, Provider};
pub use run::{synthesize, synthesize_unless, Event, Observer, Options, Report, SynthKind, Tokens};
pub use seeds::{persona, read_seeds, Seed, SeedKind};
