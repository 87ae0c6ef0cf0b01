use super::*;
use fleet_core::{EnrichedBatch, EventType, GroupId, VehicleKey};
use fleet_plan::MetricPlan;
use fleet_testkit::oracle::Expected;

fn spec() -> WindowSpec {
    WindowSpec::new(5000).unwrap()
}

fn group(model: &str, region: &str) -> GroupKey {
    GroupKey::new([("model", model), ("region", region)])
}

/// The reference demo's record of one signal (its signals are declared in
/// `EventType` order).
#[derive(Clone, Copy, Debug)]
struct Ev {
    e: EnrichedEvent,
    value: SignalValue,
}

fn ev(offset: i64, vehicle: u32, group: u32, t: EventType, ts: i64, m: i64) -> Ev {
    let signal = match t {
        EventType::IcRpm => SignalId(0),
        EventType::ElectricRpm => SignalId(1),
        EventType::Warnings => SignalId(2),
    };
    Ev {
        e: EnrichedEvent {
            drilldown: false,
            partition: 0,
            offset,
            vehicle: VehicleKey(vehicle),
            group: GroupId(group),
            timestamp: ts,
            values_at: 0,
            values_len: 1,
        },
        value: SignalValue {
            signal,
            value: Value::Integer(m),
        },
    }
}

fn demo_windows() -> TumblingWindows {
    TumblingWindows::new(spec(), Arc::new(Layout::new(&MetricPlan::reference_demo())))
}

fn model(a: &WindowAggregate) -> &str {
    a.group.label("model").unwrap_or_default()
}

/// One scope's windows with the group table the aggregator keeps beside them.
struct Fixture {
    w: TumblingWindows,
    groups: GroupTables,
}

/// What the checkpoint of one scope holds.
struct ScopeCheckpoint {
    resume_offsets: BTreeMap<PartitionId, i64>,
    closed_through: Option<TimestampMs>,
}

impl Fixture {
    fn new(w: TumblingWindows) -> Self {
        Fixture {
            w,
            groups: GroupTables::new(&MetricPlan::reference_demo()),
        }
    }

    fn record(&mut self, ev: &Ev) -> Admit {
        self.w
            .record(&ev.e, &[ev.value], self.groups.of(ev.e.group))
    }

    fn with_max_groups(self, max_groups: usize) -> Self {
        Fixture {
            w: self.w.with_max_groups(max_groups),
            ..self
        }
    }

    fn with_drilldown(self, frequency: Option<fleet_drilldown::SampleFrequency>) -> Self {
        Fixture {
            w: self.w.with_drilldown(frequency),
            ..self
        }
    }

    fn record_batch(&mut self, batch: fleet_core::EnrichedBatch) -> BatchOutcome {
        self.groups.announce(batch.new_groups);
        let mut outcome = BatchOutcome::default();
        self.w
            .record_events(&batch.events, &batch.values, &self.groups, &mut outcome);
        for (p, offset) in batch.consumed_without_output {
            self.w.consumed(p, offset);
        }
        outcome
    }

    fn advance(&mut self, watermark: Watermark) -> Vec<WindowAggregate> {
        self.w.advance(watermark, &self.groups)
    }

    fn release(&mut self) -> Vec<WindowAggregate> {
        self.w.release(&self.groups)
    }

    fn checkpoint(&self) -> ScopeCheckpoint {
        let mut resume_offsets = BTreeMap::new();
        self.w.resume_offsets_into(&mut resume_offsets);
        ScopeCheckpoint {
            resume_offsets,
            closed_through: self.w.closed_through(),
        }
    }
}

impl std::ops::Deref for Fixture {
    type Target = TumblingWindows;
    fn deref(&self) -> &TumblingWindows {
        &self.w
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut TumblingWindows {
        &mut self.w
    }
}

fn windows_with_groups() -> Fixture {
    let mut w = Fixture::new(demo_windows());
    w.record_batch(EnrichedBatch {
        new_groups: vec![group("Nebulara", "UK"), group("Aurex", "UK")],
        ..Default::default()
    });
    w
}

#[test]
fn aggregates_one_window_per_group() {
    use EventType::*;
    let mut w = windows_with_groups();
    let events = [
        ev(0, 1, 0, IcRpm, 1000, 2000),
        ev(1, 1, 0, ElectricRpm, 1100, -300),
        ev(2, 2, 0, IcRpm, 1200, 0),
        ev(3, 2, 0, Warnings, 1300, 2),
        ev(4, 2, 0, Warnings, 1250, 5), // older: ignored
        ev(5, 3, 0, Warnings, 1400, 1),
        ev(6, 3, 0, Warnings, 1400, 3), // tie: larger wins
        ev(7, 4, 1, ElectricRpm, 4999, 10),
    ];
    for e in &events {
        assert_eq!(w.record(e), Admit::Counted);
    }
    assert!(w.advance(Watermark(4998)).is_empty());
    let out = w.advance(Watermark(4999));
    assert_eq!(out.len(), 2);
    // Ordered by model: Aurex before Nebulara.
    assert_eq!(model(&out[0]), "Aurex");
    assert_eq!(Expected::from_aggregate(&out[0]).vehicles_in_motion, 1);
    let n = &Expected::from_aggregate(&out[1]);
    assert_eq!((n.window_start, n.window_end), (0, 5000));
    assert_eq!(n.vehicles_reporting, 3);
    assert_eq!(n.vehicles_in_motion, 1);
    assert_eq!(n.warnings, 2 + 3);
    assert_eq!((n.ic_rpm_sum, n.ic_rpm_count), (2000, 2));
    assert_eq!((n.electric_rpm_sum, n.electric_rpm_count), (-300, 1));
    assert_eq!(n.events, 7);
}

#[test]
fn the_sum_of_latest_warnings_is_exact_and_saturates_instead_of_wrapping() {
    use EventType::*;
    let mut w = windows_with_groups();
    // Two vehicles at i64::MAX: the sum saturates (it wrapped to -2).
    w.record(&ev(0, 1, 0, Warnings, 1000, i64::MAX));
    w.record(&ev(1, 2, 0, Warnings, 1000, i64::MAX));
    // A third past the bound and back: the sum stays exact underneath.
    w.record(&ev(2, 3, 0, Warnings, 1000, i64::MAX));
    w.record(&ev(3, 3, 0, Warnings, 1100, -5));
    // Window [5000, 10000): past the bound, then a vehicle's newer reading
    // brings the exact sum back within it.
    w.record(&ev(4, 1, 0, Warnings, 6000, i64::MAX));
    w.record(&ev(5, 2, 0, Warnings, 6000, i64::MAX));
    w.record(&ev(6, 2, 0, Warnings, 6100, -7));
    let out = w.advance(Watermark(9999));
    let sums: Vec<i64> = out
        .iter()
        .map(|a| Expected::from_aggregate(a).warnings)
        .collect();
    assert_eq!(sums, vec![i64::MAX, i64::MAX - 7]);
    // The bound below as well.
    let mut w = windows_with_groups();
    w.record(&ev(0, 1, 0, Warnings, 1000, i64::MIN));
    w.record(&ev(1, 2, 0, Warnings, 1000, -1));
    let out = w.advance(Watermark(4999));
    assert_eq!(Expected::from_aggregate(&out[0]).warnings, i64::MIN);
}

#[test]
fn late_events_are_refused_once_their_window_closed() {
    let mut w = windows_with_groups();
    w.record(&ev(0, 1, 0, EventType::IcRpm, 7000, 1));
    w.advance(Watermark(4999));
    assert_eq!(
        w.record(&ev(1, 1, 0, EventType::IcRpm, 4000, 1)),
        Admit::Late { lag_ms: 999 }
    );
    assert_eq!(
        w.record(&ev(2, 1, 0, EventType::IcRpm, 5000, 1)),
        Admit::Counted
    );
    let out = w.advance(Watermark::END_OF_INPUT);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].events, 2);
}

#[test]
fn windows_are_emitted_in_time_order_and_once() {
    let mut w = windows_with_groups();
    for (i, ts) in [12_000, 3_000, 7_000, 1_000].into_iter().enumerate() {
        w.record(&ev(i as i64, 1, 0, EventType::IcRpm, ts, 5));
    }
    let out = w.advance(Watermark(9_999));
    let ends: Vec<_> = out.iter().map(|a| a.window_end).collect();
    assert_eq!(ends, vec![5000, 10_000]);
    assert!(w.advance(Watermark(9_999)).is_empty());
    assert!(
        w.advance(Watermark(5_000)).is_empty(),
        "watermarks never go back"
    );
    assert_eq!(w.advance(Watermark::END_OF_INPUT).len(), 1);
}

#[test]
fn checkpoint_holds_back_offsets_of_open_windows() {
    let mut w = windows_with_groups();
    let mut e = |p: i32, offset: i64, ts: i64| {
        let mut x = ev(offset, 1, 0, EventType::IcRpm, ts, 5);
        x.e.partition = p;
        w.record(&x);
    };
    e(0, 10, 1_000);
    e(0, 11, 6_000);
    e(1, 50, 6_500);
    e(0, 12, 2_000);
    e(1, 51, 11_000);
    let cp = w.checkpoint();
    assert_eq!(cp.resume_offsets, BTreeMap::from([(0, 10), (1, 50)]));
    assert_eq!(cp.closed_through, None);
    w.advance(Watermark(4_999));
    let cp = w.checkpoint();
    assert_eq!(cp.resume_offsets, BTreeMap::from([(0, 11), (1, 50)]));
    assert_eq!(cp.closed_through, Some(5_000));
    w.advance(Watermark(9_999));
    let cp = w.checkpoint();
    assert_eq!(cp.resume_offsets, BTreeMap::from([(0, 13), (1, 51)]));
    assert_eq!(cp.closed_through, Some(10_000));
}

#[test]
fn rewind_drops_open_windows_and_skips_written_ones() {
    let mut w = windows_with_groups();
    w.record(&ev(0, 1, 0, EventType::IcRpm, 12_000, 5));
    w.advance(Watermark(4_999));
    assert_eq!(w.rewind(Some(5_000), &[]), 1);
    // The event comes again and is counted once.
    assert_eq!(
        w.record(&ev(0, 1, 0, EventType::IcRpm, 12_000, 5)),
        Admit::Counted
    );
    assert_eq!(
        w.record(&ev(1, 1, 0, EventType::IcRpm, 4_000, 5)),
        Admit::AlreadyWritten
    );
    let out = w.advance(Watermark::END_OF_INPUT);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].events, 1);
}

/// Issue #20: a partition revoked and assigned again to the same instance
/// while it was catching up lost the windows it had emitted past the
/// committed boundary, which the revocation had dropped unsent: the rewind
/// skipped everything this instance had emitted.
#[test]
fn rewind_builds_again_what_was_emitted_past_the_written_boundary() {
    let mut w = windows_with_groups();
    w.record(&ev(0, 1, 0, EventType::IcRpm, 1_000, 5));
    w.record(&ev(1, 1, 0, EventType::IcRpm, 6_000, 7));
    assert_eq!(w.advance(Watermark(9_999)).len(), 2);
    // Only the first window was accepted before the revocation.
    w.rewind(Some(5_000), &[]);
    assert_eq!(
        w.record(&ev(0, 1, 0, EventType::IcRpm, 1_000, 5)),
        Admit::AlreadyWritten
    );
    assert_eq!(
        w.record(&ev(1, 1, 0, EventType::IcRpm, 6_000, 7)),
        Admit::Counted,
        "emitted, but not written"
    );
    let out = w.advance(Watermark(9_999));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].window_start, out[0].events), (5_000, 1));
    assert_eq!(w.checkpoint().closed_through, Some(10_000));
}

#[test]
fn resume_skips_windows_written_before_a_restart() {
    let mut w = windows_with_groups();
    w.rewind(Some(10_000), &[]);
    assert_eq!(
        w.record(&ev(0, 1, 0, EventType::IcRpm, 9_999, 5)),
        Admit::AlreadyWritten
    );
    assert_eq!(
        w.record(&ev(1, 1, 0, EventType::IcRpm, 10_000, 5)),
        Admit::Counted
    );
    let out = w.advance(Watermark::END_OF_INPUT);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].window_start, 10_000);
    assert_eq!(
        w.checkpoint().closed_through.map(|c| c >= 10_000),
        Some(true)
    );
}

#[test]
fn dropped_unknown_vehicles_still_advance_offsets() {
    let mut w = windows_with_groups();
    w.record_batch(EnrichedBatch {
        consumed_without_output: vec![(3, 99)],
        ..Default::default()
    });
    assert_eq!(w.checkpoint().resume_offsets, BTreeMap::from([(3, 100)]));
}

#[test]
fn groups_over_the_limit_fold_into_other_with_distinct_vehicles_counted_once() {
    use EventType::*;
    let mut w = Fixture::new(demo_windows().with_max_groups(3));
    w.record_batch(EnrichedBatch {
        new_groups: vec![
            group("A", "UK"),
            group("B", "UK"),
            group("C", "UK"),
            group("D", "UK"),
        ],
        ..Default::default()
    });
    let events = [
        // A: 3 events, B: 2, C: 1, D: 2 → A and (B, D tie → B by label) keep theirs.
        ev(0, 1, 0, IcRpm, 100, 900),
        ev(1, 1, 0, IcRpm, 200, 900),
        ev(2, 2, 0, IcRpm, 300, 0),
        ev(3, 3, 1, IcRpm, 400, 700),
        ev(4, 4, 1, Warnings, 500, 1),
        // Vehicle 5 is in both folded groups (it changed region or model).
        ev(5, 5, 2, Warnings, 600, 4),
        ev(6, 5, 3, Warnings, 700, 2),
        ev(7, 6, 3, ElectricRpm, 800, -50),
    ];
    for e in &events {
        w.record(e);
    }
    let out = w.advance(Watermark(4999));
    let models: Vec<&str> = out.iter().map(model).collect();
    assert_eq!(models, ["A", "B", "other"]);
    let other = &Expected::from_aggregate(&out[2]);
    assert_eq!(other.region, "other");
    assert_eq!(other.events, 3);
    assert_eq!(other.vehicles_reporting, 2, "vehicle 5 once, vehicle 6");
    assert_eq!(other.vehicles_in_motion, 1, "vehicle 6 moved");
    assert_eq!(other.warnings, 2, "vehicle 5's latest reading");
    assert_eq!((other.electric_rpm_sum, other.electric_rpm_count), (-50, 1));
    assert_eq!(
        w.take_folds(),
        Folds {
            windows: 1,
            groups: 2,
            events: 3
        }
    );
    assert_eq!(w.take_folds(), Folds::default());
    let total: u64 = out.iter().map(|a| a.events).sum();
    assert_eq!(total, events.len() as u64, "nothing lost by folding");
}

#[test]
fn a_window_within_the_limit_is_not_folded() {
    use EventType::*;
    let mut w = windows_with_groups().with_max_groups(2);
    w.record(&ev(0, 1, 0, IcRpm, 100, 900));
    w.record(&ev(1, 2, 1, IcRpm, 100, 900));
    let out = w.advance(Watermark(4999));
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|a| model(a) != "other"));
    assert_eq!(w.take_folds(), Folds::default());
}

#[test]
fn drilled_down_vehicles_leave_samples_of_each_closed_window() {
    use EventType::*;
    let mut w = windows_with_groups().with_drilldown(Some(fleet_drilldown::SampleFrequency::Raw));
    let drilled = |mut ev: Ev| {
        ev.e.drilldown = true;
        ev
    };
    w.record(&drilled(ev(0, 1, 0, IcRpm, 1200, 900)));
    w.record(&drilled(ev(1, 1, 0, IcRpm, 1000, 800))); // out of order, in bound
    w.record(&ev(2, 2, 0, IcRpm, 1100, 700)); // not drilled down
    w.record(&drilled(ev(3, 1, 0, IcRpm, 6000, 600))); // next window
    assert_eq!(w.advance(Watermark(4999)).len(), 1);
    let samples = w.take_vehicle_samples();
    let got: Vec<(u32, i64, f64)> = samples
        .iter()
        .map(|s| (s.vehicle.0, s.timestamp, s.value))
        .collect();
    assert_eq!(got, [(1, 1000, 800.0), (1, 1200, 900.0)], "in time order");
    assert_eq!(samples[0].group.label("model"), Some("Nebulara"));
    // Late for its window: dropped with the window's other late events.
    assert!(matches!(
        w.record(&drilled(ev(4, 1, 0, IcRpm, 1300, 500))),
        Admit::Late { .. }
    ));
    w.rewind(None, &[]);
    assert!(w.advance(Watermark(20_000)).is_empty());
    assert!(
        w.take_vehicle_samples().is_empty(),
        "the rewind dropped them"
    );
}

/// A moving vehicle's record at offset `offset` of partition `p`.
fn on(p: i32, offset: i64, ts: i64) -> Ev {
    let mut x = ev(offset, 1 + p as u32, 0, EventType::IcRpm, ts, 5);
    x.e.partition = p;
    x
}

/// The single output mode's windows: they keep firing points.
fn keeping_points() -> Fixture {
    let mut w = windows_with_groups();
    w.w = std::mem::replace(&mut w.w, demo_windows()).with_firing_points(true);
    w
}

/// Issue #20, finding 9: in the single output mode what a window holds
/// depends on how the partitions' reads interleave. A replay given the
/// firing point of the first closing holds the same events in another
/// interleaving, and closes the window there, not by the watermark.
#[test]
fn a_replay_closes_at_the_stored_firing_point_whatever_the_interleaving() {
    // First run: partition 1 is behind; the watermark closes [0, 5 s)
    // before its second event, which is late.
    let mut w = keeping_points();
    w.record(&on(0, 0, 1_000));
    w.record(&on(1, 0, 2_000));
    w.record(&on(0, 1, 9_000));
    let written = w.advance(Watermark(4_999));
    assert_eq!(written[0].events, 2);
    assert!(matches!(w.record(&on(1, 1, 3_000)), Admit::Late { .. }));
    let fired = w.take_fired();
    assert_eq!(
        fired,
        vec![FiringPoint {
            through: 5_000,
            offsets: [(0, 2), (1, 1)].into(),
        }]
    );

    // The replay reads partition 1 first: by the watermark its second
    // event would now be on time.
    let mut w = keeping_points();
    w.rewind(None, &fired);
    assert_eq!(w.record(&on(1, 0, 2_000)), Admit::Counted);
    assert!(
        matches!(w.record(&on(1, 1, 3_000)), Admit::Late { .. }),
        "read after the point"
    );
    assert_eq!(w.record(&on(0, 0, 1_000)), Admit::Counted);
    assert!(
        w.advance(Watermark(4_999)).is_empty(),
        "held for partition 0"
    );
    assert_eq!(w.checkpoint().closed_through, None);
    assert!(w.release().is_empty());
    w.record(&on(0, 1, 9_000));
    let again = w.release();
    assert_eq!(again, written);
    assert_eq!(w.take_fired(), fired, "the same point, stored again");
    assert_eq!(w.take_replayed(), 1);
    assert_eq!(w.checkpoint().closed_through, Some(5_000));
    assert!(matches!(w.record(&on(1, 2, 4_000)), Admit::Late { .. }));

    // Without the point the replay writes another window.
    let mut w = keeping_points();
    w.rewind(None, &[]);
    for (p, offset, ts) in [(1, 0, 2_000), (1, 1, 3_000), (0, 0, 1_000), (0, 1, 9_000)] {
        w.record(&on(p, offset, ts));
    }
    assert_eq!(w.advance(Watermark(4_999))[0].events, 3);
}

/// Windows the watermark closes while closings are held wait behind them,
/// and close at the point where the watermark passed them.
#[test]
fn windows_closed_while_held_close_at_the_point_the_watermark_passed_them() {
    let mut w = keeping_points();
    let stored = FiringPoint {
        through: 5_000,
        offsets: [(0, 1)].into(),
    };
    w.rewind(None, std::slice::from_ref(&stored));
    w.record(&on(1, 0, 6_000));
    assert!(
        w.advance(Watermark(9_999)).is_empty(),
        "behind the held closing"
    );
    assert!(
        matches!(w.record(&on(1, 1, 7_000)), Admit::Late { .. }),
        "read after the watermark passed its window"
    );
    w.record(&on(0, 0, 1_000));
    let out = w.release();
    let ends: Vec<_> = out.iter().map(|a| (a.window_end, a.events)).collect();
    assert_eq!(ends, vec![(5_000, 1), (10_000, 1)]);
    let fired = w.take_fired();
    assert_eq!(fired[0], stored);
    assert_eq!(
        fired[1],
        FiringPoint {
            through: 10_000,
            offsets: [(1, 1)].into(),
        }
    );
}

/// A window a released closing closed stays closed while later closings
/// are held: an event of it read after its point is late, whatever a
/// later point would admit.
#[test]
fn a_window_closed_at_its_point_is_not_opened_again_by_a_later_one() {
    let mut w = keeping_points();
    let points = [
        FiringPoint {
            through: 5_000,
            offsets: [(0, 1), (1, 1)].into(),
        },
        FiringPoint {
            through: 10_000,
            offsets: [(0, 5), (1, 4)].into(),
        },
    ];
    w.rewind(None, &points);
    w.record(&on(0, 0, 1_000));
    w.record(&on(1, 0, 2_000));
    let first = w.release();
    assert_eq!((first[0].window_end, first[0].events), (5_000, 2));
    assert!(
        matches!(w.record(&on(1, 1, 3_000)), Admit::Late { .. }),
        "read after the first closing"
    );
    assert_eq!(w.record(&on(1, 2, 6_000)), Admit::Counted);
    for offset in 1..5 {
        w.record(&on(0, offset, 7_000));
    }
    w.record(&on(1, 3, 7_000));
    let second = w.release();
    let ends: Vec<_> = second.iter().map(|a| (a.window_end, a.events)).collect();
    assert_eq!(ends, vec![(10_000, 6)], "no second copy of [0, 5 s)");
    assert_eq!(w.take_replayed(), 2);
}
