//! tunelab: a terminal workbench for fine-tuning large language models.
//!
//! The library is the headless core. It never prints and never imports a terminal UI crate;
//! the `tunelab` binary's CLI (and, later, the TUI) are thin shells over it.

pub mod config;
pub mod data;
pub mod eval;
pub mod infer;
pub mod logging;
pub mod lora;
pub mod model;
pub mod ops;
pub mod paths;
pub mod pyjson;
pub mod runs;
pub mod telemetry;
pub mod template;
pub mod train;
pub mod tui;
pub mod units;
pub mod workspace;
