//! `tunelab eval`: loss (`loss`), multiple-choice benchmarks (`choice`), generation and its
//! metrics (`generate`, `metrics`) and the pairwise judge (`judge`).

mod choice;
mod generate;
mod judge;
mod loss;
mod metrics;
