//! Supervised fine-tuning of LoRA adapters: the data stream, the step (with optional
//! per-layer activation checkpointing), the optimizer and schedule, checkpoints that are
//! never half-written, and the loop that writes a run directory.

pub mod checkpoint;
pub mod dataset;
pub mod grads;
pub mod manual;
pub mod optim;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use grads::{GradSource, Grads};
pub use optim::{clip_grad_norm, AdamW, AdamWConfig};
pub use schedule::{Schedule, Scheduler};
pub use trainer::{train, Observer, TrainError, TrainOutcome};
