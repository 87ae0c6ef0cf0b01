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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The assignment epoch and the sink's in-flight batch count.
#[derive(Debug, Default)]
pub struct RevocationFence {
    epoch: AtomicU64,
    pending: AtomicUsize,
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
        self.pending.store(batches, Ordering::SeqCst);
    }

    /// Batches the sink has registered and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
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
}
