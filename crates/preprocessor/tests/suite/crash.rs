//! The crash test: the preprocessor is killed with SIGKILL at random moments,
//! ten times during one generated run, and restarted each time. At the end
//! every series in Prometheus equals the batch computation (no gap, nothing
//! counted twice) and Prometheus never saw a conflicting sample (a different
//! value for a timestamp it already had). Two more runs with late events
//! show, per output mode, when a window sent again after a kill can differ
//! from its first copy (issue #20's finding 9). Two more run on a broker
//! that keeps commit metadata: the first test, and the single output mode's
//! with late events, whose re-sent windows close at their stored firing
//! points there.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use fleet_core::decode_event;
use fleet_generator::GeneratorConfig;
use fleet_testkit::oracle::{self, Expected, ExpectedKey};
use fleet_testkit::{ConsumedRecord, Prometheus, TestBroker};
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_lose_nothing_and_write_no_conflicting_sample() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let (_run, last) = ten_sigkills_exact(&kafka, &prom, "crash", "").await;
    last.terminate().await;
}

/// The crash test on a broker that keeps offset-commit metadata (noida-db),
/// so the window boundary a restart skips up to comes from the commits
/// themselves, as on Kafka and MSK, and the companion group is never used.
/// noida-db gives a group's partitions to no new member after one was
/// SIGKILLed (docs/SCALING.md, "Brokers"), but a static member
/// (`group.instance.id`, as a StatefulSet's pod can be) takes its
/// predecessor's place at once, so the instances here are static.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_commit_metadata_ten_sigkills_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = noida_services().await else {
        return;
    };
    let topic = "crash-metadata";
    let (_run, last) = ten_sigkills_exact(
        &kafka,
        &prom,
        topic,
        "[kafka.client]\n\"group.instance.id\" = \"crash-1\"\n",
    )
    .await;
    let unsupported = "fleet_source_commit_metadata_unsupported";
    assert_eq!(
        last.metric(unsupported, &[]).await,
        0.0,
        "the broker kept the commit metadata; log:\n{}",
        last.log_tail()
    );
    assert!(last.logged("Partitions assigned."));
    let companion = format!("{topic}-group.closed-windows");
    assert_eq!(
        kafka.committed_offsets(&companion, topic, 4).await.unwrap(),
        vec![None; 4],
        "nothing was committed to {companion}"
    );
    eprintln!(
        "{topic}: ten SIGKILLs with commit metadata kept; every window exact; {} refusals of samples sent again logged",
        prometheus_log_lines(&prom, "out of order").len()
    );
    last.terminate().await;
}

/// A run of 200 vehicles with disorder within the bound, sent to a new topic
/// of four partitions while the service, configured by `config_for` plus
/// `extra`, is SIGKILLed ten times and started again; asserts that every
/// series then equals the batch computation and that Prometheus never saw a
/// conflicting sample. Returns the run (its directory holds the last
/// service's configuration and log) and the last service.
async fn ten_sigkills_exact(
    kafka: &TestBroker,
    prom: &Prometheus,
    topic: &str,
    extra: &str,
) -> (Run, Service) {
    let run = generate(200, 240, 23, in_bound);
    kafka.create_topic(topic, 4).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let config = config_for(&run, kafka, prom, topic);
    edit_config(&config, |text| text + "\n" + extra);

    // The fleet keeps sending for about 30 s while the service crashes.
    let producer = produce_paced(
        kafka,
        topic,
        run.events.clone(),
        1600,
        Duration::from_secs(1),
    );

    let last = crash_repeatedly(&config, 10).await;
    producer.await.unwrap();
    assert_prometheus_holds(prom, &last, &expected).await;

    let conflicts = conflicts_logged(prom);
    assert!(
        conflicts.is_empty(),
        "Prometheus refused conflicting samples: {conflicts:?}"
    );
    (run, last)
}

/// Starts the service with `config` and SIGKILLs it `kills` times, each
/// after 1.5–5 s (the same moments in every test), then starts it for good.
async fn crash_repeatedly(config: &Path, kills: usize) -> Service {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    for _ in 0..kills {
        let service = Service::start(config);
        let lifetime = rng.random_range(1500..5000);
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        service.kill();
    }
    Service::start(config)
}

/// A run of 200 vehicles with 5 % of events 2.5–10 s late (beyond the
/// out-of-orderness bound), sent live to a new topic of four partitions
/// while the service, configured by `config_for` with commits 2 s apart,
/// then by `edit`, is SIGKILLed ten times and started again; returns the run, every record in the order
/// each partition holds it (the order every run of the service read it
/// in), and the last service.
///
/// The kill times are the ten-SIGKILL test's: with others (seed 9) Tansu
/// 0.6 once never assigned the group to the last member (issue #20's
/// finding 7), while nisshi ran them through.
async fn crash_with_late_events(
    kafka: &TestBroker,
    prom: &Prometheus,
    topic: &str,
    edit: impl FnOnce(String) -> String,
) -> (Run, Vec<ConsumedRecord>, Service) {
    let run = generate(200, 240, 31, |c| GeneratorConfig {
        late_fraction: 0.05,
        late_min_ms: 2500,
        late_max_ms: 10_000,
        offline_probability: 0.0,
        ..in_bound(c)
    });
    kafka.create_topic(topic, 4).await.unwrap();
    let config = config_for(&run, kafka, prom, topic);
    // Commits 2 s apart: most kills fall between a window's acceptance and
    // the commit that records it, so windows are sent again.
    edit_config(&config, |text| {
        edit(text.replace("commit_interval_ms = 200\n", "commit_interval_ms = 2000\n"))
    });
    let producer = produce_paced(
        kafka,
        topic,
        run.events.clone(),
        1600,
        Duration::from_secs(1),
    );
    let last = crash_repeatedly(&config, KILLS).await;
    producer.await.unwrap();
    let records = kafka
        .consume_all(topic, run.events.len(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(records.len(), run.events.len());
    (run, records, last)
}

const KILLS: usize = 10;

/// The window end of `record`'s event, and the event.
fn decoded(record: &ConsumedRecord) -> (i64, fleet_core::RawEvent) {
    let event = decode_event(record.value.as_deref().unwrap()).unwrap();
    let end = event.timestamp - event.timestamp.rem_euclid(WINDOW_MS) + WINDOW_MS;
    (end, event)
}

/// Finding 9 of issue #20, in the single output mode: after a SIGKILL the
/// windows written since the last commit are computed again from the
/// replayed partitions, read in another interleaving, so an event late
/// against the pipeline's watermark (the minimum over partitions, as in
/// Flink) before the kill may be on time after it, or the reverse. Only
/// events beyond the out-of-orderness bound can be late: an event can be
/// late only if an earlier event of its own partition is at least the
/// bound past its window's end (a partition's watermark bounds the
/// pipeline's). So every window without such an event holds all its events
/// whatever the interleaving, and equals the batch computation that drops
/// nothing; only the others may be written with another value the second
/// time, which Prometheus refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkills_only_windows_with_late_events_can_differ_when_resent() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let single = single_mode_with_late_events(&kafka, &prom, "crash-late", "").await;
    let unexplained: Vec<&ExpectedKey> =
        single.conflicting.difference(&single.may_be_late).collect();
    assert!(
        unexplained.is_empty(),
        "conflicting samples for windows with no event beyond the bound: {unexplained:?}"
    );
    single.last.terminate().await;
}

/// Finding 9 of issue #20 in the single output mode, on a broker that keeps
/// commit metadata: before a closing's windows are sent, the offsets each
/// partition had been read to are stored with the commit (its firing
/// point), and a replay judges those windows' events by them rather than by
/// the watermark of another interleaving (docs/SEMANTICS.md, "Restarts and
/// rebalances"). So a window sent again after a SIGKILL is the first one
/// even when it holds events beyond the out-of-orderness bound: Prometheus
/// refuses no conflicting sample. Static members, as in
/// `with_commit_metadata_ten_sigkills_lose_nothing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_commit_metadata_a_resent_single_mode_window_is_the_first_one() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = noida_services().await else {
        return;
    };
    let single = single_mode_with_late_events(
        &kafka,
        &prom,
        "crash-late-metadata",
        "[kafka.client]\n\"group.instance.id\" = \"crash-late-1\"\n",
    )
    .await;
    assert!(
        single.conflicting.is_empty() && single.conflicts == 0,
        "a window sent again differs from its first copy: {} conflicting samples on {:?}",
        single.conflicts,
        single.conflicting
    );
    assert!(
        single.resent > 0,
        "no window was sent again: the kills tested nothing"
    );
    assert!(
        single.restarts_with_points > 0,
        "no instance restarted with stored firing points: the kills tested nothing"
    );
    let stored = single
        .last
        .metric("fleet_source_firing_points_total", &[("stored", "true")])
        .await;
    assert!(stored > 0.0, "the last instance stored no firing point");
    eprintln!(
        "crash-late-metadata: {} of {KILLS} restarts closed windows again at stored firing points",
        single.restarts_with_points
    );
    single.last.terminate().await;
}

/// What a run of the single output mode with late events left.
struct SingleModeOutcome {
    /// Windows holding an event an earlier one of its partition is the
    /// out-of-orderness bound past: only these may differ between runs.
    may_be_late: BTreeSet<ExpectedKey>,
    /// Windows Prometheus refused a conflicting sample for.
    conflicting: BTreeSet<ExpectedKey>,
    /// Conflicting samples refused.
    conflicts: usize,
    /// Samples refused as older than the series' newest: sent again.
    resent: usize,
    /// Instances whose first assignment found firing points stored.
    restarts_with_points: usize,
    last: Service,
}

/// Runs `crash_with_late_events` in the single output mode with `extra`
/// configuration and checks what holds on every broker: every window
/// without an event beyond the bound equals the batch computation that
/// drops nothing, and every conflict line names a window.
async fn single_mode_with_late_events(
    kafka: &TestBroker,
    prom: &Prometheus,
    topic: &str,
    extra: &str,
) -> SingleModeOutcome {
    let (run, records, last) =
        crash_with_late_events(kafka, prom, topic, |t| t + "\n" + extra).await;

    let mut newest: HashMap<i32, i64> = HashMap::new();
    let mut may_be_late: BTreeSet<ExpectedKey> = BTreeSet::new();
    let mut events_beyond_bound = 0;
    for record in &records {
        let (end, event) = decoded(record);
        let newest = newest.entry(record.partition).or_insert(i64::MIN);
        if *newest >= end + OUT_OF_ORDERNESS_MS {
            events_beyond_bound += 1;
            let model = run
                .reference
                .get(event.vehicle_id.as_str())
                .map_or(oracle::UNKNOWN_MODEL, String::as_str);
            may_be_late.insert((end, model.to_string(), event.region.to_string()));
        }
        *newest = (*newest).max(event.timestamp);
    }

    let everything = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let (start, end) = time_range(&everything);
    let want = oracle::expected_samples(&everything, "");
    let unaffected: Vec<&ExpectedKey> = want.keys().filter(|k| !may_be_late.contains(*k)).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let differing = loop {
        let got = prometheus_samples(prom, start, end).await;
        let differing: Vec<_> = unaffected
            .iter()
            .filter(|k| got.get(**k) != want.get(**k))
            .map(|k| (*k, got.get(*k).cloned(), want.get(*k).cloned()))
            .collect();
        if differing.is_empty() || tokio::time::Instant::now() >= deadline {
            break differing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        differing.is_empty(),
        "{} windows with no event beyond the bound differ from the batch computation, for example {:?}\nlog:\n{}",
        differing.len(),
        &differing[..differing.len().min(3)],
        last.log_events()
    );

    let conflicts = conflicts_logged(prom);
    let conflicting: BTreeSet<ExpectedKey> =
        conflicts.iter().filter_map(|l| conflict_key(l)).collect();
    assert!(
        conflicts.iter().all(|l| conflict_key(l).is_some()),
        "a conflict line that names no window: {conflicts:?}"
    );
    let resent = prometheus_log_lines(prom, "out of order").len();
    eprintln!(
        "{topic}: {KILLS} SIGKILLs; {events_beyond_bound} of {} events beyond the bound, in {} of {} windows; \
         the other {} windows equal the batch computation; {resent} refusals of samples sent again logged; \
         {} conflicting samples refused, on {} windows",
        run.events.len(),
        may_be_late.len(),
        want.len(),
        unaffected.len(),
        conflicts.len(),
        conflicting.len(),
    );
    let restarts_with_points = std::fs::read_dir(run.dir.path())
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter(|log| {
            log.lines().any(|l| {
                l.contains("Input restarts from the committed offsets")
                    && !l.contains("firing_points=0")
                    && l.contains("firing_points=")
            })
        })
        .count();
    SingleModeOutcome {
        may_be_late,
        conflicting,
        conflicts: conflicts.len(),
        resent,
        restarts_with_points,
        last,
    }
}

/// Finding 9 of issue #20, in the partitioned output mode: each partition's
/// windows close on its own watermark and its late events are judged by it
/// (docs/SEMANTICS.md), which depends only on the partition's own order, not
/// on how partitions interleave. Every event that can make a window's
/// lateness differ is itself in a window not yet written when the offset
/// was committed, so it is replayed after a kill: a re-sent window is the
/// one first written. With late events and ten SIGKILLs, every
/// per-partition series equals the batch computation that drops late events
/// by each partition's order, and Prometheus refused no conflicting sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_partitioned_mode_a_resent_window_is_the_first_one_after_sigkills() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let (run, records, last) = crash_with_late_events(&kafka, &prom, "crash-partitioned", |t| {
        t + "\n[pipeline]\noutput_mode = \"partitioned\"\n"
    })
    .await;

    let mut by_partition: BTreeMap<i32, Vec<fleet_core::RawEvent>> = BTreeMap::new();
    for record in &records {
        by_partition
            .entry(record.partition)
            .or_default()
            .push(decoded(record).1);
    }
    let mut expected: BTreeMap<ExpectedKey, Expected> = BTreeMap::new();
    let mut late = 0;
    for (partition, events) in &by_partition {
        late += oracle::late_event_count(events, WINDOW_MS, OUT_OF_ORDERNESS_MS);
        let windows =
            oracle::expected_windows(events, &run.reference, WINDOW_MS, Some(OUT_OF_ORDERNESS_MS));
        for (_, mut window) in windows {
            window.model = partitioned_model(&window.model, &partition.to_string());
            expected.insert(window.key(), window);
        }
    }
    assert!(late > 500, "the run has late events: {late}");
    assert_prometheus_holds_keyed(&prom, &last, &expected, |labels| {
        partitioned_model(
            &model_label(labels),
            labels.get("kafka_partition").map_or("", String::as_str),
        )
    })
    .await;

    let conflicts = conflicts_logged(&prom);
    assert!(
        conflicts.is_empty(),
        "Prometheus refused conflicting samples: {conflicts:?}"
    );
    // Windows were sent again: older than what Prometheus held, refused.
    let resent = prometheus_log_lines(&prom, "out of order").len();
    assert!(
        resent > 0,
        "no window was sent again: the kills tested nothing"
    );
    eprintln!(
        "crash-partitioned: {KILLS} SIGKILLs; {late} of {} events late by their partition's order; \
         all {} per-partition windows equal the batch computation; {resent} refusals of samples \
         sent again logged, none conflicting",
        run.events.len(),
        expected.len(),
    );
    last.terminate().await;
}

/// A model joined with its partition: the partitioned mode's series key.
fn partitioned_model(model: &str, partition: &str) -> String {
    format!("{model} @ {partition}")
}

/// The window (end, model, region) of a conflicting sample Prometheus
/// logged: its `series` holds the labels, its `timestamp` the window end.
fn conflict_key(line: &str) -> Option<ExpectedKey> {
    let label = |name: &str| {
        let unescaped = line.replace("\\\"", "\"");
        let start = unescaped.find(&format!("{name}=\""))? + name.len() + 2;
        let len = unescaped[start..].find('"')?;
        Some(unescaped[start..start + len].to_string())
    };
    let timestamp = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("timestamp="))?
        .trim_matches('"')
        .parse()
        .ok()?;
    Some((timestamp, label("model")?, label("region")?))
}
