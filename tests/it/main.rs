//! Every integration test in one binary, so the crate and its dependencies are linked once.
//! Each module is one area; `common` holds the shared helpers.

#[allow(dead_code)]
mod common;

mod cli_data;
mod cli_doctor;
mod cli_errors;
mod cli_help;
mod cli_template;
mod cli_train;
mod data_datasets;
mod data_formats;
mod data_pull;
mod data_streaming;
mod docs;
mod dpo;
mod engine;
mod eval;
mod export;
mod families;
#[cfg(feature = "cuda")]
mod gpu;
mod grpo;
mod grpo_train;
mod kto;
mod layers;
mod model_infer;
mod model_kinds;
mod model_lora;
mod model_parity;
mod plot;
mod qlora;
mod queue;
mod real_model;
mod reward;
mod runs;
mod scaleout;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "serve")]
mod serve_synth;
mod sweep;
mod synth;
mod template_fixtures;
mod template_marked;
mod themes;
mod tools;
mod trackers;
mod train;
#[cfg(feature = "tui")]
mod tui;
mod workspace;
