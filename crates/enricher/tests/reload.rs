//! The enricher stage reloads its reference file while events flow.

use std::time::Duration;

use fleet_core::{Msg, Record, RecordBatch, SmallStr};
use fleet_enricher::{
    EnricherMetrics, ReferenceFeed, ReferenceTable, ReferenceWatch, UnknownVehiclePolicy,
    VehicleCatalog,
};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

fn batch(offset: i64) -> Msg<RecordBatch> {
    Msg::Data(RecordBatch {
        records: vec![Record {
            partition: 0,
            offset,
            vehicle_id: SmallStr::new("V1"),
            timestamp: 1_764_000_000_000 + offset,
            labels_at: 0,
            values_at: 0,
            values_len: 0,
        }],
        labels: vec![SmallStr::new("UK")],
        values: Vec::new(),
    })
}

async fn models_announced(rx: &mut mpsc::Receiver<Msg<fleet_core::EnrichedBatch>>) -> Vec<String> {
    match rx.recv().await {
        Some(Msg::Data(b)) => b
            .new_groups
            .iter()
            .filter_map(|g| g.label("model").map(str::to_string))
            .collect(),
        other => panic!("expected data, got {other:?}"),
    }
}

#[tokio::test]
async fn a_moved_vehicle_counts_under_its_new_model_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vehicles.csv");
    std::fs::write(&path, "vehicle_id,model\nV1,Aurex\n").unwrap();
    let catalog = VehicleCatalog::new(
        &ReferenceTable::from_csv_file(&path, &[]).unwrap(),
        UnknownVehiclePolicy::Unknown,
    );
    let watch = ReferenceWatch::new(path.clone(), Duration::from_millis(20), Vec::new());
    let mut registry = Registry::default();
    let metrics = EnricherMetrics::register(&mut registry);
    let (tx, rx) = mpsc::channel(4);
    let (out, mut enriched) = mpsc::channel(4);
    let stage = tokio::spawn(fleet_enricher::run(
        catalog,
        ReferenceFeed::File(watch),
        rx,
        out,
        metrics,
        None,
    ));

    tx.send(batch(0)).await.unwrap();
    assert_eq!(models_announced(&mut enriched).await, vec!["Aurex"]);

    std::fs::write(&path, "vehicle_id,model\nV1,Nebulara\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(batch(1)).await.unwrap();
    assert_eq!(
        models_announced(&mut enriched).await,
        vec!["Nebulara"],
        "from the next event on"
    );

    std::fs::write(&path, "vehicle_id,model\nV1,\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(batch(2)).await.unwrap();
    assert!(
        models_announced(&mut enriched).await.is_empty(),
        "still Nebulara: no new group"
    );

    drop(tx);
    stage.await.unwrap().unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("reference_reloads_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("reference_reloads_total{outcome=\"failed\"} 1"),
        "{text}"
    );
}
