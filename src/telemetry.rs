//! Logging: human-readable tracing output on stdout, plus a bounded in-memory ring of recent
//! records that the `/logs` pages, `/logs.json` and the admin log view read.
//!
//! The ring keeps the last `capacity` records; live tails subscribe to a broadcast channel. A
//! subscriber that reads too slowly misses records (it is told how many) instead of slowing
//! down logging: the logging path never waits for a reader.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Records kept in memory by default.
pub const DEFAULT_CAPACITY: usize = 2000;

/// The filter used when `RUST_LOG` is unset. mDNS finds every libp2p node on the LAN, of any
/// network tag, and would announce each at INFO; the peer says what matters itself.
pub const DEFAULT_FILTER: &str = "info,libp2p_mdns=warn";

/// One log record as the log views show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    /// Position in the process's log, increasing by one per record.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    pub level: String,
    pub target: String,
    pub message: String,
    /// The event's other fields, rendered as text, in the order they were written.
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// True when the record's level is `minimum` or more severe (`TRACE` < … < `ERROR`).
    pub fn at_least(&self, minimum: &str) -> bool {
        const ORDER: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
        let rank = |level: &str| {
            ORDER
                .iter()
                .position(|o| o.eq_ignore_ascii_case(level))
                .unwrap_or(0)
        };
        rank(&self.level) >= rank(minimum)
    }

    /// The record as one line of text, as the log pages show it.
    pub fn line(&self) -> String {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(self.ts);
        let mut line = format!(
            "{} {:>5} {}: {}",
            humantime::format_rfc3339_millis(time),
            self.level,
            self.target,
            self.message
        );
        for (key, value) in &self.fields {
            let _ = write!(line, " {key}={value}");
        }
        line
    }
}

/// The shared ring of recent records. Cloning is cheap; all clones see the same ring.
#[derive(Clone)]
pub struct LogBuffer {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<LogRecord>>,
}

struct Ring {
    next_seq: u64,
    records: VecDeque<Arc<LogRecord>>,
}

impl LogBuffer {
    /// A ring holding at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(capacity);
        LogBuffer {
            inner: Arc::new(Inner {
                capacity,
                ring: Mutex::new(Ring {
                    next_seq: 1,
                    records: VecDeque::with_capacity(capacity),
                }),
                live,
            }),
        }
    }

    /// Appends a record, evicting the oldest when full, and offers it to live subscribers.
    pub fn push(
        &self,
        level: &str,
        target: &str,
        message: String,
        fields: Vec<(String, String)>,
    ) -> Arc<LogRecord> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut ring = self.inner.ring.lock().unwrap_or_else(|p| p.into_inner());
        let record = Arc::new(LogRecord {
            seq: ring.next_seq,
            ts,
            level: level.to_owned(),
            target: target.to_owned(),
            message,
            fields,
        });
        ring.next_seq += 1;
        if ring.records.len() == self.inner.capacity {
            ring.records.pop_front();
        }
        ring.records.push_back(record.clone());
        // Sent under the lock so subscribers see records in sequence order. `send` never waits;
        // it fails only when nobody listens.
        let _ = self.inner.live.send(record.clone());
        record
    }

    /// The records currently held, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<LogRecord>> {
        let ring = self.inner.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.records.iter().cloned().collect()
    }

    /// The held records with a sequence number above `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Vec<Arc<LogRecord>> {
        let ring = self.inner.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.records
            .iter()
            .filter(|r| r.seq > seq)
            .cloned()
            .collect()
    }

    /// A live tail: every record pushed after this call. A receiver that falls more than
    /// `capacity` records behind gets `RecvError::Lagged` and continues with newer records.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.inner.live.subscribe()
    }

    /// A tracing layer that copies every event it sees into this buffer.
    pub fn layer(&self) -> LogBufferLayer {
        LogBufferLayer {
            buffer: self.clone(),
        }
    }
}

/// The tracing layer feeding a [`LogBuffer`].
pub struct LogBufferLayer {
    buffer: LogBuffer,
}

/// The fields of a span, kept with it so that the events inside carry them.
struct SpanFields(Vec<(String, String)>);

impl<S> Layer<S> for LogBufferLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = FieldCollector::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.fields));
        }
    }

    /// An event's record holds the fields of the spans it happened in (outermost first), then
    /// its own.
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut visitor = FieldCollector::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    visitor.fields.extend(fields.iter().cloned());
                }
            }
        }
        event.record(&mut visitor);
        let meta = event.metadata();
        self.buffer.push(
            meta.level().as_str(),
            meta.target(),
            visitor.message,
            visitor.fields,
        );
    }
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name().to_owned(), text));
        }
    }
}

/// Installs the process-wide subscriber: stdout in a human format, filtered by `RUST_LOG`
/// (default [`DEFAULT_FILTER`]), and the given buffer behind the same filter.
pub fn init(buffer: &LogBuffer) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(true)
                .with_ansi(std::io::stdout().is_terminal()),
        )
        .with(buffer.layer())
        .try_init()?;
    Ok(())
}
