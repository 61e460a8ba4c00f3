//! tunelab: a terminal workbench for fine-tuning large language models.
//!
//! The library is the headless core: it never prints, and no core module imports a terminal
//! UI crate (the layering test in `tests/it/layers.rs` checks it). Two thin shells sit on
//! it: the CLI (`src/cli`, in the binary) and the workbench (`tui`, here so tests can drive
//! it without a terminal, and only with the `tui` feature, on by default).

pub mod allocator;
pub mod batch;
pub mod choice;
pub mod config;
pub mod data;
pub mod doctor;
pub mod engine;
pub mod eval;
pub mod export;
pub mod files;
pub mod infer;
pub mod logging;
pub mod lora;
pub mod model;
pub mod ops;
pub mod paths;
pub mod pyjson;
pub mod queue;
pub mod reward;
pub mod runs;
pub mod scaleout;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sweep;
pub mod synth;
pub mod telemetry;
pub mod template;
pub mod track;
pub mod train;
#[cfg(feature = "tui")]
pub mod tui;
pub mod units;
pub mod workspace;
