use clap::Parser;
use std::process::ExitCode;

mod cli;

/// mimalloc: the data tools allocate on worker threads and free on the writer; glibc's
/// arenas contend on that pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's option setter (statically linked through the `mimalloc` crate).
    fn mi_option_set(option: i32, value: std::ffi::c_long);
    /// Frees what mimalloc holds and purges what is scheduled (`force`: now).
    fn mi_collect(force: bool);
}

/// mimalloc v3's `mi_option_purge_delay`.
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Training allocates and frees the same large tensors every step. mimalloc returns freed
/// memory to the OS after a delay, and every reuse then faults in (and zeroes) fresh
/// transparent huge pages: measured, 6,186 faults in 7 steps of `bench train` against 1,917
/// with purging off. Compute commands keep their memory instead, and so do the data tools,
/// whose batches of records are freed and reallocated the same way (`data convert` of
/// 120 MB: 0.30–0.35 s against 0.33–0.42 s, peak RSS unchanged at ~72 MB).
fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores an option value; it is thread-safe.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Training keeps its memory only once the model is loaded: a load frees large temporary
/// copies (an 8B head generated or read in f32 before quantizing: 2 GB), and with purging
/// off from the start they stay resident for the whole run. So purging stays on (delayed)
/// through the load, the load's leftovers are purged at its end, and then it is turned off.
fn release_load_then_keep() {
    // SAFETY: mi_collect and mi_option_set are thread-safe entry points of mimalloc.
    unsafe {
        mi_collect(true);
        mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

/// Whether the command is `serve` (when it is compiled in).
fn is_serve(args: &cli::Cli) -> bool {
    #[cfg(feature = "serve")]
    {
        matches!(args.command, Some(cli::Command::Serve(_)))
    }
    #[cfg(not(feature = "serve"))]
    {
        let _ = args;
        false
    }
}

/// SIGPIPE back to its default: the process ends when its reader goes away.
fn quiet_on_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: no other thread runs yet, and SigDfl installs no Rust code as a handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// The command line for the log, with secrets (`--api-key VALUE`, `--api-key=VALUE`)
/// replaced: a key must never reach a file.
fn redacted_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in std::env::args() {
        if hide_next {
            out.push("<redacted>".into());
            hide_next = false;
        } else if a == "--api-key" {
            out.push(a);
            hide_next = true;
        } else if a.starts_with("--api-key=") {
            out.push("--api-key=<redacted>".into());
        } else {
            out.push(a);
        }
    }
    out
}

fn main() -> ExitCode {
    // Errors a user sees are one line: libraries (candle) must not capture backtraces into
    // them when RUST_BACKTRACE is set. Panics still honour RUST_BACKTRACE; set
    // RUST_LIB_BACKTRACE=1 to debug library errors.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // candle asks for the thread count on every op, and without RAYON_NUM_THREADS that means
    // reading /proc/cpuinfo (about 250 times per generated token): answer once, here, before
    // any thread starts. An explicit RAYON_NUM_THREADS still wins.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    }
    // candle runs element-wise ops on its own spinning thread pool, sized like rayon's,
    // beside the rayon pool that runs gemm: on a small machine the spinning workers take
    // the cores gemm needs. Measured on 2 cores with the element-wise ops on the calling
    // thread: SFT step +15%, forward +10%, prefill +12%, decode unchanged (BENCHMARKS.md).
    // Larger machines keep candle's default (not measured). CANDLE_NUM_THREADS still wins.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() && cores <= 4 {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // Panics a decoder raises on a hostile file are contained and reported as errors
    // (`files::contain`): they print nothing.
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !tunelab::files::panic_is_contained() {
            prev(info);
        }
    }));
    let args = cli::Cli::parse();
    // Commands whose output goes into pipes end quietly when the reader closes
    // (`tunelab data inspect f --json | head -1`), as Unix tools do, instead of panicking
    // in println!. The server (its sockets), the workbench and the trainer keep Rust's
    // default, where a closed pipe is an error they handle.
    if !matches!(args.command, None | Some(cli::Command::Train(_))) && !is_serve(&args) {
        quiet_on_closed_pipe();
    }
    match args.command {
        Some(cli::Command::Train(_)) | Some(cli::Command::Bench(_)) => {
            tunelab::allocator::on_load_done(release_load_then_keep)
        }
        Some(cli::Command::Data(_)) => keep_freed_memory(),
        _ => {}
    }
    let paths = tunelab::paths::Paths::resolve();
    tunelab::logging::init(&paths);
    tracing::info!(args = ?redacted_args(), "start");
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit::UNUSABLE)
        }
    }
}
