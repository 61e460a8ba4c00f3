//! Fine-tuning LoRA adapters: the step (with optional per-layer activation checkpointing,
//! through the hand-written backward or autograd), the objectives, the optimizer and
//! schedule, checkpoints that are never half-written, and the [`Trainer`] that writes a run
//! directory.

pub mod checkpoint;
pub mod compare;
pub mod dpo;
pub mod error;
pub mod evaluate;
pub mod grads;
pub mod grpo;
pub mod interrupt;
pub(crate) mod journal;
pub mod kto;
pub mod manual;
pub mod method;
pub mod micro;
pub mod objective;
pub mod optim;
pub mod pref_loss;
pub mod reference;
pub mod schedule;
pub mod sft;
pub mod step;
pub mod trainer;

pub use error::TrainError;
pub use grads::{GradSource, Grads};
pub use interrupt::Interrupter;
pub use journal::Observer;
pub use optim::{clip_grad_norm, AdamW, AdamWConfig};
pub use schedule::{Schedule, Scheduler};
pub use trainer::{train, StepOutcome, TrainOutcome, Trainer};
