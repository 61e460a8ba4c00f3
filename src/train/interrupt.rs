//! A stop request that crosses threads and signal handlers: SIGTERM/SIGINT set it, the
//! trainer polls it between steps, then writes a checkpoint and ends `stopped`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Interrupter(Arc<AtomicBool>);

impl Interrupter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop after the current step.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn should_stop(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sets the flag when one of `signals` arrives (SIGTERM from `runs stop`, Ctrl-C).
    pub fn on_signals(&self, signals: &[i32]) -> std::io::Result<()> {
        for sig in signals {
            signal_hook::flag::register(*sig, Arc::clone(&self.0))?;
        }
        Ok(())
    }
}
