//! Ordered parallel map over a batch on a rayon pool of the data tools' own: the CPU-heavy
//! part of a streaming pass (parsing, converting, tokenizing) runs on every core while output
//! keeps input order. The pool is separate from rayon's global one, which candle's kernels
//! use, so a conversion never queues behind compute or the other way round.

/// Worker threads to use: the machine's parallelism, capped (`TUNELAB_THREADS` overrides).
pub fn threads() -> usize {
    if let Some(n) = std::env::var("TUNELAB_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.max(1);
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16)
}

fn pool(threads: usize) -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tunelab-data-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Applies `f` to every item on up to `threads` threads and returns the results in order.
/// (The pool is sized by the first call.)
pub fn map_ordered<T, U, F>(items: Vec<T>, threads: usize, f: F) -> Vec<U>
where
    T: Send,
    U: Send,
    F: Fn(T) -> U + Sync + Send,
{
    use rayon::prelude::*;
    if threads <= 1 || items.len() < 64 {
        return items.into_iter().map(f).collect();
    }
    match pool(threads) {
        Some(p) => p.install(|| items.into_par_iter().map(f).collect()),
        None => items.into_iter().map(f).collect(),
    }
}

/// Streams `items` through `f` on `threads` worker threads of their own and hands the results
/// to `sink` in input order, while the workers go on with the next items (no batch barrier:
/// the calling thread writes one result while the workers compute the following ones). At
/// most `2 * threads + 1` items are in flight, so memory stays flat. The first `Err` from
/// `sink` stops the stream (items already queued are dropped) and is returned; a panic in
/// `f` is resumed on the calling thread.
pub fn stream_ordered<T, U, E, F>(
    items: impl Iterator<Item = T>,
    threads: usize,
    f: F,
    mut sink: impl FnMut(U) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    U: Send,
    F: Fn(T) -> U + Sync,
{
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Mutex};
    if threads <= 1 {
        for item in items {
            sink(f(item))?;
        }
        return Ok(());
    }
    let limit = 2 * threads + 1;
    let stop = AtomicBool::new(false);
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, T)>(limit);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, std::thread::Result<U>)>();
    std::thread::scope(|s| {
        let mut started = 0;
        for i in 0..threads {
            let tx = done_tx.clone();
            let (work_rx, f, stop) = (&work_rx, &f, &stop);
            let spawned = std::thread::Builder::new()
                .name(format!("tunelab-stream-{i}"))
                .spawn_scoped(s, move || loop {
                    let job = match work_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok((seq, item)) = job else { break };
                    if stop.load(Ordering::Relaxed) {
                        continue;
                    }
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item)));
                    if tx.send((seq, out)).is_err() {
                        break;
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        if started == 0 {
            // No worker could start: run on this thread.
            for item in items {
                sink(f(item))?;
            }
            return Ok(());
        }
        drop(done_tx);
        let mut items = items.fuse();
        let (mut sent, mut next) = (0u64, 0u64);
        let mut pending = std::collections::BTreeMap::new();
        let mut exhausted = false;
        let result = loop {
            while !exhausted && sent - next < limit as u64 {
                match items.next() {
                    Some(item) => {
                        if work_tx.send((sent, item)).is_err() {
                            exhausted = true;
                        } else {
                            sent += 1;
                        }
                    }
                    None => exhausted = true,
                }
            }
            if next == sent {
                break Ok(());
            }
            let Ok((seq, out)) = done_rx.recv() else {
                // Workers end only once the work channel closes, and `f`'s panics come back
                // as results, so this is a broken invariant: never return a partial stream.
                panic!(
                    "the data workers ended with {} items outstanding",
                    sent - next
                );
            };
            pending.insert(seq, out);
            let mut failed = None;
            while let Some(out) = pending.remove(&next) {
                next += 1;
                match out {
                    Ok(u) => {
                        if let Err(e) = sink(u) {
                            failed = Some(e);
                            break;
                        }
                    }
                    Err(panic) => {
                        stop.store(true, Ordering::Relaxed);
                        drop(work_tx);
                        std::panic::resume_unwind(panic);
                    }
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
        };
        stop.store(true, Ordering::Relaxed);
        drop(work_tx);
        result
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_across_threads() {
        let v: Vec<u64> = (0..1000).collect();
        let out = super::map_ordered(v, 3, |x| x * 2);
        assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn streams_in_order_and_stops_at_the_first_error() {
        for threads in [1, 2, 5] {
            let mut seen = Vec::new();
            let r: Result<(), ()> = super::stream_ordered(
                0..500u64,
                threads,
                |x| {
                    // Uneven work, so results come back out of order.
                    if x % 7 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    x * 3
                },
                |y| {
                    seen.push(y);
                    Ok(())
                },
            );
            assert_eq!(r, Ok(()));
            assert_eq!(seen, (0..500).map(|x| x * 3).collect::<Vec<_>>());
            let mut seen = Vec::new();
            let r = super::stream_ordered(
                0..500u64,
                threads,
                |x| x,
                |y| {
                    if y == 123 {
                        return Err(y);
                    }
                    seen.push(y);
                    Ok(())
                },
            );
            assert_eq!(r, Err(123));
            assert_eq!(seen, (0..123).collect::<Vec<_>>());
        }
    }
}
