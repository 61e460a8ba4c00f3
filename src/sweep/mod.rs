//! Sweeps: many runs of one config, each with some fields set to a point of a grid or of a
//! random search, queued one per point. Each run's `sweep.json` ([`SweepMark`]) records
//! the sweep, the point, the metric it is ranked by and the pruner; the trainer asks
//! [`prune::verdict`] at each evaluation, and [`board::Board`] ranks any runs by what they
//! recorded (`tunelab runs diff`, the Runs tab's overlay chart).

pub mod board;
pub mod curves;
pub mod error;
pub mod mark;
pub mod metric;
pub mod prune;
pub mod space;

pub use board::Board;
pub use error::SweepError;
pub use mark::{MedianPruner, SweepMark};
pub use metric::Direction;
pub use space::{Axis, Point, Range, Space};
