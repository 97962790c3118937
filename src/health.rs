//! Liveness of the background loops: each worker marks itself alive for as long as its
//! loop runs, and `/readyz` reads the marks. A loop that panicked or returned drops its
//! mark, so the server stops reporting ready instead of hiding a dead worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a loop runs. Cheap to clone; clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct Liveness(Arc<AtomicBool>);

impl Liveness {
    /// Whether the loop is running now.
    pub fn is_alive(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Marks the loop alive until the returned guard is dropped (when the loop ends,
    /// however it ends).
    pub fn mark(&self) -> Alive {
        self.0.store(true, Ordering::Release);
        Alive(self.0.clone())
    }
}

/// Marks a loop alive while it lives.
#[derive(Debug)]
pub struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
