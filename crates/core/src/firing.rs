//! Firing points: where in the input the windows of one closing were closed.
//!
//! In the single output mode a window closes when the pipeline watermark,
//! the minimum over partitions, passes its end, so what it holds depends on
//! how the reads of the partitions interleaved: an event beyond the
//! out-of-orderness bound may be late in one run and on time in another.
//! A replay after a crash interleaves otherwise, and a window sent again
//! would then differ from the copy Prometheus has, which it refuses.
//!
//! What a window holds is fixed by the offsets each partition had been read
//! to when it closed, its [`FiringPoint`]: an event belongs to it iff its
//! offset is below its partition's. The sink has the points of a closing
//! stored with the offset commit ([`FiringLog`]) before it sends the
//! closing's windows, and a replay closes them at the stored points instead
//! of by the watermark (docs/SEMANTICS.md, "Restarts and rebalances").

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::{watch, Notify};

use crate::{PartitionId, TimestampMs};

/// The input position at which windows closed: per partition, one past the
/// last offset read into the windows. A partition it does not name had
/// been read to nothing: none of its events belong to those windows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FiringPoint {
    /// The end of the newest window closed here; every window ending at or
    /// before it, and after the previous point's, closed here.
    pub through: TimestampMs,
    /// Per partition, one past the last offset read before the closing.
    pub offsets: BTreeMap<PartitionId, i64>,
}

impl FiringPoint {
    /// The point of the windows through `through`, the partitions read to
    /// `offsets`.
    pub fn new(
        through: TimestampMs,
        offsets: impl IntoIterator<Item = (PartitionId, i64)>,
    ) -> Self {
        FiringPoint {
            through,
            offsets: offsets.into_iter().collect(),
        }
    }

    /// The bound of `partition`: its events below it belong to the windows.
    pub fn bound(&self, partition: PartitionId) -> i64 {
        self.offsets.get(&partition).copied().unwrap_or(0)
    }

    /// Whether the event of `partition` at `offset` had been read when the
    /// windows closed.
    pub fn admits(&self, partition: PartitionId, offset: i64) -> bool {
        offset < self.bound(partition)
    }

    /// Whether reading has reached the point again, `position` giving each
    /// partition's (one past the last offset read, if any was).
    pub fn reached(&self, position: impl Fn(PartitionId) -> Option<i64>) -> bool {
        self.offsets
            .iter()
            .all(|(p, bound)| *bound <= 0 || position(*p).is_some_and(|at| at >= *bound))
    }
}

/// Where the sink hands firing points to the source to store, and waits
/// until they are (shared by the two, like the
/// [`RevocationFence`](crate::RevocationFence)).
///
/// Each request has a number; the source marks requests done in order, once
/// a commit carries their points, or when storing them is no longer
/// possible or needed (the broker drops commit metadata; a revocation made
/// the windows stale, and the sink drops them).
#[derive(Debug)]
pub struct FiringLog {
    requests: Mutex<Requests>,
    requested: Notify,
    done: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Requests {
    /// The number of the last request made.
    last: u64,
    /// Requests not taken by the source yet.
    waiting: Vec<FiringPoint>,
    /// Batches built before this assignment epoch are stale: their points
    /// are never stored.
    epoch: u64,
}

impl Default for FiringLog {
    fn default() -> Self {
        FiringLog {
            requests: Mutex::new(Requests::default()),
            requested: Notify::new(),
            done: watch::Sender::new(0),
        }
    }
}

impl FiringLog {
    /// The sink: asks for `points`, of a batch built in the assignment
    /// `epoch`, to be stored and waits until they are (or until the source
    /// has given up storing them). Those of a stale batch are not stored.
    pub async fn store(&self, points: Vec<FiringPoint>, epoch: u64) {
        if points.is_empty() {
            return;
        }
        let number = {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            if epoch < requests.epoch {
                return;
            }
            requests.last += 1;
            requests.waiting.extend(points);
            requests.last
        };
        self.requested.notify_one();
        let mut done = self.done.subscribe();
        // The sender lives as long as `self`.
        let _ = done.wait_for(|d| *d >= number).await;
    }

    /// The source: resolves when the sink has made a request since the
    /// last [`take`](Self::take).
    pub async fn requested(&self) {
        self.requested.notified().await;
    }

    /// The source: the points requested and not taken yet, with the number
    /// of the last request; mark it [`done`](Self::done) once they are stored.
    pub fn take(&self) -> (Vec<FiringPoint>, u64) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut requests.waiting), requests.last)
    }

    /// Whether the request `number` is settled.
    pub fn settled(&self, number: u64) -> bool {
        *self.done.borrow() >= number
    }

    /// The source: requests up to `number` are settled.
    pub fn done(&self, number: u64) {
        self.done.send_if_modified(|d| {
            let moved = number > *d;
            *d = (*d).max(number);
            moved
        });
    }

    /// The source: a revocation began the assignment `epoch`; every request
    /// made so far is settled without being stored (their windows are
    /// stale), and so is every later one of a batch built before it.
    /// Returns the points let go.
    pub fn settle_all(&self, epoch: u64) -> Vec<FiringPoint> {
        let (points, last) = {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            requests.epoch = requests.epoch.max(epoch);
            (std::mem::take(&mut requests.waiting), requests.last)
        };
        self.done(last);
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_point_admits_what_was_read_before_it() {
        let p = FiringPoint::new(10_000, [(0, 5), (1, 0)]);
        assert!(p.admits(0, 4));
        assert!(!p.admits(0, 5));
        assert!(!p.admits(1, 0), "partition 1 had been read to nothing");
        assert!(!p.admits(2, 0), "partition 2 is not named: the same");
    }

    #[test]
    fn a_point_is_reached_when_every_named_partition_is_read_to_it() {
        let p = FiringPoint::new(10_000, [(0, 5), (1, 0)]);
        assert!(!p.reached(|_| None));
        assert!(!p.reached(|q| (q == 0).then_some(4)));
        assert!(p.reached(|q| (q == 0).then_some(5)));
        assert!(p.reached(|_| Some(7)));
    }

    #[tokio::test]
    async fn the_sink_waits_until_the_source_has_stored_its_points() {
        let log = Arc::new(FiringLog::default());
        let sink = tokio::spawn({
            let log = Arc::clone(&log);
            async move { log.store(vec![FiringPoint::new(5_000, [(0, 3)])], 0).await }
        });
        log.requested().await;
        let (points, number) = log.take();
        assert_eq!(points, vec![FiringPoint::new(5_000, [(0, 3)])]);
        assert!(!sink.is_finished());
        tokio::task::yield_now().await;
        assert!(!sink.is_finished(), "nothing stored yet");
        log.done(number);
        sink.await.unwrap();
        // Nothing to store: no wait.
        log.store(Vec::new(), 0).await;
    }

    #[tokio::test]
    async fn settling_all_releases_the_sink_with_nothing_stored() {
        let log = Arc::new(FiringLog::default());
        let sink = tokio::spawn({
            let log = Arc::clone(&log);
            async move { log.store(vec![FiringPoint::new(5_000, [(0, 3)])], 0).await }
        });
        log.requested().await;
        assert_eq!(log.settle_all(1).len(), 1);
        sink.await.unwrap();
        assert!(log.take().0.is_empty());
        // A batch built before the revocation asks after it: not stored.
        log.store(vec![FiringPoint::new(5_000, [(0, 3)])], 0).await;
        assert!(log.take().0.is_empty());
        assert!(log.settled(log.take().1));
    }
}
