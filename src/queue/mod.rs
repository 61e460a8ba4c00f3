//! The run queue of a data folder: runs wait in `<data>/queue/queue.json` (their folders
//! already hold the config and a `queued` status) and a detached scheduler starts each when
//! the devices it needs are free: one run per GPU, one on the CPU, whoever started the
//! others. `tunelab queue`, `tunelab train --queue`, `tunelab sweep` and the workbench's `Q`
//! add to it; the Runs tab shows and reorders it.

pub mod devices;
pub mod entry;
pub mod error;
pub mod launch;
pub mod overview;
pub mod plan;
pub mod scheduler;
pub mod store;
pub mod submit;

pub use entry::{Entry, Launch, Queue};
pub use error::QueueError;
pub use overview::{overview, Overview};
pub use scheduler::{ensure, holder, Ensured, Scheduler, SchedulerLock};
pub use store::QueueFiles;
