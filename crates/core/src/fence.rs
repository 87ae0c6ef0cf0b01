//! Where the source and the sink meet when partitions are taken away.
//!
//! At a revocation the source commits what the sink has accepted, and the
//! partitions' new owner replays from there and writes those windows again.
//! A window the old owner still sends after that commit would reach
//! Prometheus first and make the new owner's identical, older samples "out of
//! order". So the source bumps the [`RevocationFence`]'s epoch, waits (boundedly)
//! until the sink has nothing registered left in flight, then commits; the sink
//! drops every batch built before the bump that it had not registered yet
//! (its windows are rebuilt from the replay, so nothing is lost).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// The assignment epoch and the sink's in-flight batch count.
#[derive(Debug, Default)]
pub struct RevocationFence {
    epoch: AtomicU64,
    /// Changed by the sink once per registered or acknowledged batch; the
    /// condition variable wakes a revocation waiting for it to reach zero.
    pending: Mutex<usize>,
    drained: Condvar,
}

impl RevocationFence {
    /// The current assignment epoch (0 until the first revocation).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Partitions are being revoked: everything built before is stale from
    /// now on. Returns the new epoch.
    pub fn revoke(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether work stamped with `epoch` was built before the last revocation.
    pub fn is_stale(&self, epoch: u64) -> bool {
        epoch < self.epoch()
    }

    /// The sink's count of batches registered and not yet acknowledged.
    pub fn set_pending(&self, batches: usize) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = batches;
        if batches == 0 {
            self.drained.notify_all();
        }
    }

    /// Batches the sink has registered and not yet acknowledged.
    pub fn pending(&self) -> usize {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks the calling thread until the sink has nothing in flight, or
    /// `timeout` has passed; returns what is still pending (0: drained).
    pub fn wait_drained(&self, timeout: Duration) -> usize {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (pending, _) = self
            .drained
            .wait_timeout_while(pending, timeout, |pending| *pending > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_makes_earlier_epochs_stale() {
        let fence = RevocationFence::default();
        assert!(!fence.is_stale(0));
        assert_eq!(fence.revoke(), 1);
        assert!(fence.is_stale(0));
        assert!(!fence.is_stale(1));
        fence.set_pending(3);
        assert_eq!(fence.pending(), 3);
    }

    #[test]
    fn a_revocation_waits_until_the_sink_has_drained_or_the_time_is_up() {
        let fence = std::sync::Arc::new(RevocationFence::default());
        assert_eq!(fence.wait_drained(Duration::from_secs(5)), 0);
        fence.set_pending(2);
        assert_eq!(fence.wait_drained(Duration::from_millis(20)), 2);
        let sink = {
            let fence = std::sync::Arc::clone(&fence);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                fence.set_pending(1);
                std::thread::sleep(Duration::from_millis(50));
                fence.set_pending(0);
            })
        };
        assert_eq!(fence.wait_drained(Duration::from_secs(30)), 0);
        sink.join().unwrap();
    }
}
