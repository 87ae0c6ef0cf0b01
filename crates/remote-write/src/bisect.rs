//! Isolating the samples an endpoint refuses, so one stale sample never costs
//! the rest of a request.
//!
//! Prometheus refuses a whole request (400) when any one sample is out of
//! order, a duplicate with another value, or out of bounds, and writes none of
//! the others. A refused request is therefore split in halves, first half sent
//! (and, if refused, split again) before the second, until every refused piece
//! is a single sample: those are dropped and counted by reason, the rest is
//! written. Halves are contiguous in the batch's `(timestamp, series)` order,
//! so each series still reaches the endpoint in timestamp order.
//!
//! [`Bisection`] is only the bookkeeping, free of I/O: the emitter sends
//! [`Bisection::next_part`] and reports what the endpoint answered.

use std::collections::BTreeMap;

use crate::encode::RemoteWriteBatch;
use crate::metrics::DropReason;

/// Samples dropped for one reason while delivering one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DroppedSamples {
    /// How many.
    pub samples: usize,
    /// The first one dropped and what the endpoint answered, for the log line.
    pub detail: String,
}

/// What became of a request's samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivery {
    /// Samples the endpoint accepted.
    pub written: usize,
    /// Samples dropped, by reason.
    pub dropped: BTreeMap<DropReason, DroppedSamples>,
    /// The pieces dropped, each with its reason and the endpoint's answer
    /// (for the dead-letter topic).
    pub dropped_parts: Vec<(DropReason, RemoteWriteBatch, String)>,
}

impl Delivery {
    /// Samples dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> usize {
        self.dropped.get(&reason).map_or(0, |d| d.samples)
    }

    /// Samples dropped for any reason.
    pub fn dropped_total(&self) -> usize {
        self.dropped.values().map(|d| d.samples).sum()
    }

    /// Adds another request's outcome.
    pub fn absorb(&mut self, other: Delivery) {
        self.written += other.written;
        self.dropped_parts.extend(other.dropped_parts);
        for (reason, d) in other.dropped {
            let entry = self.dropped.entry(reason).or_default();
            if entry.detail.is_empty() {
                entry.detail = d.detail;
            }
            entry.samples += d.samples;
        }
    }
}

/// The state of delivering one request: the pieces still to send, in order,
/// and what became of the others.
#[derive(Debug)]
pub struct Bisection {
    /// Pieces still to send; the last one is next.
    pending: Vec<RemoteWriteBatch>,
    outcome: Delivery,
}

impl Bisection {
    /// Starts with the whole request as the only piece.
    pub fn new(batch: RemoteWriteBatch) -> Self {
        let pending = if batch.is_empty() {
            Vec::new()
        } else {
            vec![batch]
        };
        Bisection {
            pending,
            outcome: Delivery::default(),
        }
    }

    /// The piece to send now; `None` once every sample is written or dropped.
    pub fn next_part(&self) -> Option<&RemoteWriteBatch> {
        self.pending.last()
    }

    /// The endpoint accepted the current piece.
    pub fn accepted(&mut self) {
        if let Some(part) = self.pending.pop() {
            self.outcome.written += part.len();
        }
    }

    /// The endpoint refused the current piece with 400 for `reason`, saying
    /// `answer`: split it, or drop it when it is a single sample.
    pub fn refused(&mut self, reason: DropReason, answer: &str) {
        let Some(part) = self.pending.pop() else {
            return;
        };
        if part.len() <= 1 {
            self.drop_part(part, reason, answer);
        } else {
            let (first, second) = part.split_in_halves();
            self.pending.push(second);
            self.pending.push(first);
        }
    }

    /// The current piece will not be sent again (refused other than with 400,
    /// or out of retries): drop all of it for `reason`.
    pub fn give_up(&mut self, reason: DropReason, answer: &str) {
        if let Some(part) = self.pending.pop() {
            self.drop_part(part, reason, answer);
        }
    }

    fn drop_part(&mut self, part: RemoteWriteBatch, reason: DropReason, answer: &str) {
        let entry = self.outcome.dropped.entry(reason).or_default();
        if entry.detail.is_empty() {
            entry.detail = format!("first {}; endpoint: {answer}", part.describe_first());
        }
        entry.samples += part.len();
        self.outcome
            .dropped_parts
            .push((reason, part, answer.to_owned()));
    }

    /// What became of every sample.
    pub fn finish(self) -> Delivery {
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::encode::tests::{aggregate, expected};
    use crate::encode::SeriesNaming;
    use crate::proto::{Label, WriteRequest};

    /// A synchronous stand-in for Prometheus 2.42's appender: per series the
    /// newest (timestamp, value); a request with any stale or conflicting
    /// sample is refused whole with the first offender's reason.
    #[derive(Default)]
    struct FakeTsdb {
        newest: HashMap<Vec<Label>, (i64, f64)>,
        requests: usize,
        /// Every accepted sample, in arrival order.
        log: Vec<(Vec<Label>, i64)>,
    }

    impl FakeTsdb {
        fn write(&mut self, req: &WriteRequest) -> Result<(), DropReason> {
            self.requests += 1;
            for ts in &req.timeseries {
                if let Some(&(t, v)) = self.newest.get(&ts.labels) {
                    for s in &ts.samples {
                        if s.timestamp < t {
                            return Err(DropReason::OutOfOrder);
                        }
                        if s.timestamp == t && s.value != v {
                            return Err(DropReason::Duplicate);
                        }
                    }
                }
            }
            for ts in &req.timeseries {
                for s in &ts.samples {
                    self.newest
                        .insert(ts.labels.clone(), (s.timestamp, s.value));
                    self.log.push((ts.labels.clone(), s.timestamp));
                }
            }
            Ok(())
        }

        fn deliver(&mut self, batch: RemoteWriteBatch) -> Delivery {
            let mut b = Bisection::new(batch);
            while let Some(part) = b.next_part() {
                match self.write(&part.to_write_request()) {
                    Ok(()) => b.accepted(),
                    Err(reason) => b.refused(reason, "refused"),
                }
            }
            b.finish()
        }
    }

    fn batch(aggregates: &[fleet_core::WindowAggregate]) -> RemoteWriteBatch {
        RemoteWriteBatch::from_aggregates(aggregates, &SeriesNaming::default())
    }

    #[test]
    fn a_clean_request_is_sent_once() {
        let mut tsdb = FakeTsdb::default();
        let d = tsdb.deliver(batch(&[
            aggregate("A", "UK", 10_000),
            aggregate("B", "UK", 10_000),
        ]));
        assert_eq!(d.written, 18);
        assert_eq!(d.dropped_total(), 0);
        assert_eq!(tsdb.requests, 1);
    }

    #[test]
    fn isolates_exactly_the_refused_samples() {
        let mut tsdb = FakeTsdb::default();
        tsdb.deliver(batch(&[
            aggregate("A", "UK", 10_000),
            aggregate("A", "UK", 15_000),
        ]));

        let stale = aggregate("A", "UK", 10_000); // older than stored: out of order
        let mut changed = expected("A", "UK", 15_000); // same time, new values: duplicate
        changed.vehicles_in_motion += 1;
        changed.warnings += 1;
        // The 7 other metrics of `changed` keep their values: accepted again.
        let good = [
            aggregate("A", "UK", 20_000),
            aggregate("B", "FR", 10_000),
            aggregate("B", "FR", 15_000),
        ];
        let mut all = vec![stale, changed.to_aggregate()];
        all.extend(good.iter().cloned());
        let d = tsdb.deliver(batch(&all));
        assert_eq!(d.dropped(DropReason::OutOfOrder), 9);
        assert_eq!(d.dropped(DropReason::Duplicate), 2);
        assert_eq!(d.written, 45 - 11);
        assert!(d.dropped[&DropReason::OutOfOrder]
            .detail
            .contains("@ 10000"));

        // Every series arrived in timestamp order, and the good ones are all there.
        let mut newest: HashMap<&Vec<Label>, i64> = HashMap::new();
        for (labels, t) in &tsdb.log {
            let prev = newest.insert(labels, *t);
            assert!(prev.is_none_or(|p| p <= *t), "{labels:?} went back to {t}");
        }
        for g in &good {
            for ts in batch(std::slice::from_ref(g)).to_write_request().timeseries {
                assert!(tsdb.log.contains(&(ts.labels, g.window_end)));
            }
        }
    }

    #[test]
    fn a_single_sample_refused_is_dropped_with_its_reason() {
        let mut b = Bisection::new(
            batch(&[aggregate("A", "UK", 10_000)])
                .chunks(1)
                .next()
                .unwrap(),
        );
        b.refused(DropReason::OutOfBounds, "out of bounds");
        assert!(b.next_part().is_none());
        let d = b.finish();
        assert_eq!(d.dropped(DropReason::OutOfBounds), 1);
        assert_eq!(
            d.dropped[&DropReason::OutOfBounds].detail,
            r#"first vehicles_in_motion{model="A",region="UK"} @ 10000; endpoint: out of bounds"#
        );
    }

    #[test]
    fn give_up_drops_the_whole_piece_and_goes_on() {
        let whole = batch(&[aggregate("A", "UK", 10_000)]);
        let mut b = Bisection::new(whole);
        b.refused(DropReason::Other, "bad"); // split into 4 + 5
        assert_eq!(b.next_part().unwrap().len(), 4);
        b.give_up(DropReason::Rejected, "403 forbidden");
        assert_eq!(b.next_part().unwrap().len(), 5);
        b.accepted();
        let d = b.finish();
        assert_eq!((d.written, d.dropped(DropReason::Rejected)), (5, 4));
    }

    #[test]
    fn an_empty_batch_needs_no_request() {
        assert!(Bisection::new(RemoteWriteBatch::default())
            .next_part()
            .is_none());
    }

    #[test]
    fn deliveries_add_up() {
        let mut total = Delivery::default();
        let mut one = Delivery {
            written: 3,
            ..Delivery::default()
        };
        one.dropped.insert(
            DropReason::Duplicate,
            DroppedSamples {
                samples: 2,
                detail: "x".into(),
            },
        );
        total.absorb(one.clone());
        total.absorb(one);
        assert_eq!(total.written, 6);
        assert_eq!(total.dropped(DropReason::Duplicate), 4);
        assert_eq!(total.dropped_total(), 4);
        assert_eq!(total.dropped[&DropReason::Duplicate].detail, "x");
    }
}
