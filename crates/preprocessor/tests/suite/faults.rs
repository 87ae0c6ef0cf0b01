//! Faults from outside, held (issue #20): a broker that stops answering
//! mid-run. Each test ends with every window in Prometheus compared with the
//! batch oracle, and prints how long the service took to recover and its
//! peak memory (the figures of docs/RELIABILITY.md).

use std::time::Duration;

use crate::common::*;
use fleet_testkit::oracle;

/// How long the broker stays frozen: beyond the idle timeout (5 s) and the
/// all-idle close (7 s) several times over, so a rule that took silence for
/// idleness would have closed every window.
const BROKER_PAUSE: Duration = Duration::from_secs(25);

/// What `/healthz` may take to answer whatever the broker does: the shipped
/// liveness probe gives it 2 s. It normally answers in about a millisecond;
/// the margin is for a loaded two-core machine.
const HEALTHZ_BOUND: Duration = Duration::from_millis(1000);

/// Findings 4 and 6: the broker freezes (SIGSTOP: its sockets stay open and
/// nothing answers) while the fleet keeps sending. `/healthz` answers at once
/// throughout; the partitions that cannot be read are not idle, so no window
/// closes early and nothing the fleet sent during the pause is late; once the
/// broker is back the service goes on by itself and every window is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_closes_no_window_early_and_healthz_answers() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    // A live fleet: each second of its time is sent when the wall clock
    // reaches it, for a minute; the pause falls in the middle.
    let vehicles = 200;
    let run = generate_live(vehicles, 60, 41, in_bound);
    kafka.create_topic("frozen", 4).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    // The shipped idleness rules (idle after 5 s, all-idle close 7 s after a
    // window's end), and a session that outlasts the pause: Tansu 0.6's
    // coordinator never assigns a group again once a session has expired
    // while it was frozen.
    let config = config_for(&run, &kafka, &prom, "frozen");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("session_timeout_ms = 6000", "session_timeout_ms = 60000")
        .replace("idle_timeout_ms = 2000", "idle_timeout_ms = 5000")
        .replace(
            "all_idle_close_after_ms = 2000",
            "all_idle_close_after_ms = 7000",
        );
    std::fs::write(&config, text).unwrap();
    let service = Service::start(&config);
    let producer = produce_live(&kafka, "frozen", run.events.clone(), vehicles);
    tokio::time::sleep(Duration::from_secs(15)).await;

    kafka.freeze().unwrap();
    let frozen_at = tokio::time::Instant::now();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let healthz = service.metrics_url.replace("/metrics", "/healthz");
    let mut slowest = Duration::ZERO;
    let mut answers = 0;
    while frozen_at.elapsed() < BROKER_PAUSE {
        let asked = tokio::time::Instant::now();
        let answer = client.get(&healthz).send().await;
        let took = asked.elapsed();
        assert!(
            answer.is_ok_and(|r| r.status().is_success()),
            "/healthz did not answer {:.1} s into the broker's pause",
            frozen_at.elapsed().as_secs_f64()
        );
        slowest = slowest.max(took);
        answers += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    kafka.thaw().unwrap();
    let thawed_at = tokio::time::Instant::now();
    println!(
        "broker frozen {} s: /healthz answered {answers} times, slowest {} ms",
        BROKER_PAUSE.as_secs(),
        slowest.as_millis()
    );
    assert!(
        slowest <= HEALTHZ_BOUND,
        "/healthz took {} ms while the broker was frozen",
        slowest.as_millis()
    );

    producer.await.unwrap();
    assert_prometheus_holds(&prom, &service, &expected).await;
    let late = service
        .metric("fleet_aggregator_late_events_total", &[])
        .await;
    let (_, peak_kib) = service.usage().unwrap();
    println!(
        "recovered: every window exact {} s after the broker came back; peak memory {} MiB; late events {late}",
        thawed_at.elapsed().as_secs(),
        peak_kib / 1024
    );
    assert_eq!(late, 0.0, "events were dropped as late");
    assert!(
        conflicts_logged(&prom).is_empty(),
        "Prometheus refused conflicting samples"
    );
    service.terminate().await;
}
