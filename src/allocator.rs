//! When freed memory goes back to the OS. The binary owns the global allocator and its
//! policy; the core only says when a model load is over, so the load's large temporary
//! copies (a head generated or read in f32 before quantizing, a dequantized tensor) are
//! returned to the OS once, and the training step's buffers, freed and reallocated every
//! step, are kept from then on.

use std::sync::OnceLock;

static AFTER_LOAD: OnceLock<fn()> = OnceLock::new();

/// Registers what the binary does when a load is over (at most once; later calls are
/// ignored).
pub fn on_load_done(f: fn()) {
    let _ = AFTER_LOAD.set(f);
}

/// A model (and its data) is loaded: the binary's policy runs, if it set one.
pub fn load_done() {
    if let Some(f) = AFTER_LOAD.get() {
        f();
    }
}
