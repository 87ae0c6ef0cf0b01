//! Graceful shutdown has a deadline even when the sink cannot drain.

use std::time::Duration;

use crate::common::*;

/// The remote-write endpoint refuses every connection and the emitter retries
/// without limit (`on_retry_exhausted = "block"`): a SIGTERM still ends the
/// process, cleanly, soon after `kafka.drain_timeout_ms` plus the grace for
/// the final commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_process_even_when_the_sink_never_drains() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let closed_port = fleet_testkit::free_port().unwrap();
    let config = dir.path().join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\ndrain_timeout_ms = 1000\n\n[generator]\nvehicles = 50\n\n\
             [remote_write]\nurl = \"http://127.0.0.1:{closed_port}/api/v1/write\"\nmax_backoff_ms = 200\n"
        ),
    )
    .unwrap();
    let service = Service::start(&config);
    // Long enough for windows to close and pile up in the emitter.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(
        service
            .metric("fleet_remote_write_retries_total", &[])
            .await
            > 0.0
    );
    let stopped = tokio::time::timeout(Duration::from_secs(30), service.terminate()).await;
    assert!(
        stopped.is_ok(),
        "the process outlived its shutdown deadline"
    );
}
