//! Generation slots and the queue in front of them: a request waits for a slot (in arrival
//! order, tokio's semaphore is fair) unless the queue is already full, which is the only
//! time a request is refused. A slot is held by the generation thread and freed when it
//! ends, however it ends (done, stopped, the client gone).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A held generation slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

#[derive(Debug)]
pub struct Slots {
    sem: Arc<Semaphore>,
    parallel: usize,
    queue: usize,
    waiting: AtomicUsize,
}

/// Counts a waiting request out of the queue however its wait ends (a slot, or the client
/// gone and the wait dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slots {
    /// `parallel` generations at once (at least 1), `queue` more waiting.
    pub fn new(parallel: usize, queue: usize) -> Self {
        let parallel = parallel.max(1);
        Slots {
            sem: Arc::new(Semaphore::new(parallel)),
            parallel,
            queue,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for a slot; `Busy` at once when `queue` requests are already waiting.
    pub async fn acquire(&self) -> Result<Slot, Busy> {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            if let Ok(p) = Arc::clone(&self.sem).try_acquire_owned() {
                return Ok(Slot(p));
            }
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy);
        }
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.sem)
            .acquire_owned()
            .await
            .map(Slot)
            .map_err(|_| Busy)
    }

    /// Generations running now.
    pub fn running(&self) -> usize {
        self.parallel - self.sem.available_permits()
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn parallel(&self) -> usize {
        self.parallel
    }

    pub fn queue(&self) -> usize {
        self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_queue_and_overflow_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let slots = Arc::new(Slots::new(1, 1));
            let first = slots.acquire().await.unwrap();
            assert_eq!((slots.running(), slots.queued()), (1, 0));
            let s = Arc::clone(&slots);
            let second = tokio::spawn(async move { s.acquire().await.map(|_| ()) });
            while slots.queued() == 0 {
                tokio::task::yield_now().await;
            }
            assert_eq!(
                slots.acquire().await.unwrap_err(),
                Busy,
                "the queue holds one"
            );
            drop(first);
            second.await.unwrap().unwrap();
            assert_eq!((slots.running(), slots.queued()), (0, 0));
            // A wait that is given up leaves the queue.
            let held = slots.acquire().await.unwrap();
            let s = Arc::clone(&slots);
            let gone = tokio::spawn(async move { s.acquire().await.map(|_| ()) });
            while slots.queued() == 0 {
                tokio::task::yield_now().await;
            }
            gone.abort();
            let _ = gone.await;
            assert_eq!(slots.queued(), 0);
            drop(held);
        });
    }
}
