//! The in-memory log ring: bounded, ordered, live, never blocked by a slow reader.

use std::time::{Duration, Instant};

use goop2::telemetry::LogBuffer;
use tokio::sync::broadcast::error::TryRecvError;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn the_ring_keeps_only_the_newest_records_in_order() {
    let buffer = LogBuffer::new(3);
    for i in 1..=5 {
        buffer.push("INFO", "test", format!("record {i}"), vec![]);
    }
    let held: Vec<_> = buffer
        .snapshot()
        .iter()
        .map(|r| (r.seq, r.message.clone()))
        .collect();
    assert_eq!(
        held,
        vec![
            (3, "record 3".into()),
            (4, "record 4".into()),
            (5, "record 5".into())
        ]
    );
    let newer: Vec<u64> = buffer.since(4).iter().map(|r| r.seq).collect();
    assert_eq!(newer, vec![5]);
}

#[test]
fn tracing_events_arrive_with_level_target_and_fields() {
    let buffer = LogBuffer::new(16);
    let mut live = buffer.subscribe();
    let subscriber = tracing_subscriber::registry().with(buffer.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(peer.id = "12D3KooWabc", count = 3, "peer kicked");
        tracing::info!("second");
    });

    let record = live.try_recv().unwrap();
    assert_eq!(record.level, "WARN");
    assert_eq!(record.target, "it::logs");
    assert_eq!(record.message, "peer kicked");
    assert_eq!(
        record.fields,
        vec![
            ("peer.id".to_string(), "12D3KooWabc".to_string()),
            ("count".to_string(), "3".to_string())
        ]
    );
    assert!(
        record.ts > 1_700_000_000_000,
        "timestamps are Unix milliseconds"
    );
    let second = live.try_recv().unwrap();
    assert_eq!(
        (second.seq, second.message.as_str()),
        (record.seq + 1, "second")
    );
    assert!(matches!(live.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(buffer.snapshot().len(), 2);
}

#[test]
fn a_slow_subscriber_does_not_block_logging() {
    let buffer = LogBuffer::new(8);
    let mut stalled = buffer.subscribe();
    let mut reader = buffer.subscribe();

    let started = Instant::now();
    for i in 0..10_000 {
        buffer.push("INFO", "test", format!("{i}"), vec![]);
        // A reader that keeps up sees every record, in order.
        assert_eq!(reader.try_recv().unwrap().message, format!("{i}"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "logging never waits for a reader"
    );

    // The stalled one learns how much it missed and continues with the newest records.
    match stalled.try_recv() {
        Err(TryRecvError::Lagged(missed)) => assert_eq!(missed, 10_000 - 8),
        other => panic!("expected a lag notice, got {other:?}"),
    }
    assert_eq!(stalled.try_recv().unwrap().message, "9992");
    assert_eq!(buffer.snapshot().len(), 8);
}
