//! The crash test: the preprocessor is killed with SIGKILL at random moments,
//! ten times during one generated run, and restarted each time. At the end
//! every series in Prometheus equals the batch computation (no gap, nothing
//! counted twice) and Prometheus never saw a conflicting sample (a different
//! value for a timestamp it already had).

use std::time::Duration;

use crate::common::*;
use fleet_testkit::oracle;
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_lose_nothing_and_write_no_conflicting_sample() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(200, 240, 23, in_bound);
    kafka.create_topic("crash", 4).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let config = config_for(&run, &kafka, &prom, "crash");

    // The fleet keeps sending for about 30 s while the service crashes.
    let producer = produce_paced(
        &kafka,
        "crash",
        run.events.clone(),
        1600,
        Duration::from_secs(1),
    );

    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    for _ in 0..10 {
        let service = Service::start(&config);
        let lifetime = rng.random_range(1500..5000);
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        service.kill();
    }
    let last = Service::start(&config);
    producer.await.unwrap();
    assert_prometheus_holds(&prom, &last, &expected).await;

    let conflicts = conflicts_logged(&prom);
    assert!(
        conflicts.is_empty(),
        "Prometheus refused conflicting samples: {conflicts:?}"
    );
    last.terminate().await;
}
