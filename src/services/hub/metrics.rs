//! Hub counters and the fan-out latency histogram, rendered in the Prometheus text format.
//!
//! Everything is a relaxed atomic: metrics are read rarely and written on hot paths.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Reasons a publish can be refused, in the order they are rendered.
pub const REJECT_REASONS: &[&str] = &[
    "malformed",
    "body_too_large",
    "bad_type",
    "bad_peer_id",
    "field_limit",
    "unsigned",
    "bad_signature",
    "missing_ts",
    "bad_ts",
    "replay",
    "clock_skew",
    "banned",
    "rate_limited",
    "wrong_peer",
];

/// Upper bounds of the fan-out latency buckets, in seconds.
/// Finer between 50 and 500 ms, where a change's fan-out to thousands of subscribers falls.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
    1.0, 2.5,
];

#[derive(Default)]
pub struct HubMetrics {
    pub publishes: AtomicU64,
    /// Shared with the connection loop, which cuts off clients whose writes stall.
    pub dropped_slow_subscribers: Arc<AtomicU64>,
    pub refused_streams: AtomicU64,
    /// Snapshot frames read from the registry and not yet written by their subscribers.
    pub snapshot_frames_held: AtomicU64,
    rejects: [AtomicU64; REJECT_REASONS.len()],
    /// Observations per bucket (not cumulative: one atomic add per observation; the
    /// Prometheus cumulative counts are summed when rendering).
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

/// Values that are read from the hub's state when metrics are rendered.
pub struct Gauges {
    pub peers: usize,
    pub subscribers: usize,
    pub ring_events: usize,
    /// Changes dropped because the peer database fell behind (`None` without a database).
    pub persist_dropped: Option<u64>,
}

impl HubMetrics {
    pub fn reject(&self, reason: &str) {
        if let Some(index) = REJECT_REASONS.iter().position(|r| *r == reason) {
            self.rejects[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rejects(&self, reason: &str) -> u64 {
        REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .map(|i| self.rejects[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Records the time from accepting a publish to handing its event to one subscriber.
    pub fn observe_fanout(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        if let Some(index) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.latency_buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "goop_hub_peers",
            "Peers currently online.",
            gauges.peers as u64,
        );
        gauge(
            &mut out,
            "goop_hub_subscribers",
            "Open SSE and WebSocket streams.",
            gauges.subscribers as u64,
        );
        gauge(
            &mut out,
            "goop_hub_event_ring_events",
            "Events held for Last-Event-ID replay.",
            gauges.ring_events as u64,
        );
        gauge(
            &mut out,
            "goop_hub_snapshot_frames_held",
            "Snapshot frames read for subscribers and not yet written to them.",
            load(&self.snapshot_frames_held),
        );
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "goop_hub_publishes_total",
            "Presence messages accepted.",
            load(&self.publishes),
        );
        counter(
            &mut out,
            "goop_hub_dropped_slow_subscribers_total",
            "Connections cut off because they fell behind (event queue overflow or a stalled write).",
            load(&self.dropped_slow_subscribers),
        );
        counter(
            &mut out,
            "goop_hub_refused_streams_total",
            "Streams refused by the connection caps.",
            load(&self.refused_streams),
        );
        if let Some(dropped) = gauges.persist_dropped {
            counter(
                &mut out,
                "goop_hub_persist_dropped_total",
                "Changes not written because the peer database fell behind.",
                dropped,
            );
        }
        let _ = writeln!(
            out,
            "# HELP goop_hub_rejects_total Presence messages refused, by reason.\n# TYPE goop_hub_rejects_total counter"
        );
        for (reason, value) in REJECT_REASONS.iter().zip(&self.rejects) {
            let _ = writeln!(
                out,
                "goop_hub_rejects_total{{reason=\"{reason}\"}} {}",
                load(value)
            );
        }
        let _ = writeln!(
            out,
            "# HELP goop_hub_fanout_seconds Time from accepting a publish to writing it to a subscriber.\n# TYPE goop_hub_fanout_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, value) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += load(value);
            let _ = writeln!(
                out,
                "goop_hub_fanout_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "goop_hub_fanout_seconds_bucket{{le=\"+Inf\"}} {count}\ngoop_hub_fanout_seconds_sum {}\ngoop_hub_fanout_seconds_count {count}",
            load(&self.latency_sum_micros) as f64 / 1e6
        );
        out
    }
}
