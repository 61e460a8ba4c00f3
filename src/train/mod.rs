//! Training building blocks. The SFT loop, run directory and detached process (issue #5)
//! build on these: an AdamW whose state can be saved and restored exactly, learning-rate
//! schedules, and gradient clipping by global norm.

pub mod optim;
pub mod schedule;

pub use optim::{clip_grad_norm, AdamW, AdamWConfig};
pub use schedule::{Schedule, Scheduler};
