//! Scale-out: a tunelab run as the equivalent Axolotl, TRL or LLaMA-Factory experiment, and
//! a finished run of those tools brought back as a tunelab run.
