//! Bounds on what other peers put into this peer's tables, so a visitor cannot fill the owner's
//! disk: an insert rate per caller (a token bucket per peer ID, across all tables), and quotas per
//! table — rows and bytes one caller may keep, rows and bytes the table holds from everyone —
//! beside the rate and the time budget of their requests of any kind. The
//! defaults come from goop.json (`data.*`); the owner overrides the quotas per table in the
//! database editor. The owner's own calls (the console, the owner's own site pages, imports) are
//! never held to them; site scripts write through `goop.db` as the owner's code, under Lua's own
//! call rate limits, and their rows count in the usage all the same.
//!
//! A refusal names the limit: the rate answers 429 (too many requests), a quota 507 (insufficient
//! storage: the peer will not store more for this caller or in this table).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use serde_json::Value as Json;

use super::DataError;
use crate::identity::PeerId;
use crate::store::data::{TableLimits, Usage};

/// The peer's limits on other peers' inserts (goop.json's `data` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertLimits {
    /// Inserts per second one caller may sustain, across all tables; `None`: no rate limit.
    pub per_second: Option<u32>,
    /// Inserts one caller may make at once before the rate applies.
    pub burst: u32,
    /// Requests per second (of any kind) one caller may sustain; `None`: no rate limit.
    pub requests_per_second: Option<u32>,
    /// Requests one caller may make at once before that rate applies.
    pub request_burst: u32,
    /// Time one request of another peer may take, waiting for a connection included: its
    /// statements stop there.
    pub timeout: Duration,
    /// Defaults of the per-table quotas.
    pub max_rows_per_caller: i64,
    pub max_bytes_per_caller: i64,
    pub max_rows_per_table: i64,
    pub max_bytes_per_table: i64,
}

/// Defaults a small site wants: a guestbook or a chat never comes near them, a flood stops at a
/// few megabytes per visitor and 100 MiB per table.
impl Default for InsertLimits {
    fn default() -> Self {
        InsertLimits {
            per_second: Some(2),
            burst: 20,
            requests_per_second: Some(50),
            request_burst: 100,
            timeout: Duration::from_secs(2),
            max_rows_per_caller: 1000,
            max_bytes_per_caller: 1024 * 1024,
            max_rows_per_table: 100_000,
            max_bytes_per_table: 100 * 1024 * 1024,
        }
    }
}

impl InsertLimits {
    /// No limits at all (benchmarks of the data path).
    pub fn unlimited() -> Self {
        InsertLimits {
            per_second: None,
            burst: u32::MAX,
            requests_per_second: None,
            request_burst: u32::MAX,
            // An hour: no request of a benchmark comes near it.
            timeout: Duration::from_secs(3600),
            max_rows_per_caller: i64::MAX,
            max_bytes_per_caller: i64::MAX,
            max_rows_per_table: i64::MAX,
            max_bytes_per_table: i64::MAX,
        }
    }

    /// The quotas of a table: its own where it has them, these defaults otherwise.
    pub fn for_table(&self, own: &TableLimits) -> Quotas {
        Quotas {
            rows_per_caller: own.max_rows_per_caller.unwrap_or(self.max_rows_per_caller),
            bytes_per_caller: own
                .max_bytes_per_caller
                .unwrap_or(self.max_bytes_per_caller),
            rows: own.max_rows.unwrap_or(self.max_rows_per_table),
            bytes: own.max_bytes.unwrap_or(self.max_bytes_per_table),
        }
    }
}

/// The quotas in force for one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Quotas {
    pub rows_per_caller: i64,
    pub bytes_per_caller: i64,
    pub rows: i64,
    pub bytes: i64,
}

impl Quotas {
    /// Whether `caller`, keeping `mine` in `table` that holds `all`, may add a row of
    /// `row_bytes`.
    pub fn check(
        &self,
        table: &str,
        caller: &PeerId,
        mine: Usage,
        all: Usage,
        row_bytes: i64,
    ) -> Result<(), DataError> {
        let refuse = |message: String| Err(DataError::Quota(format!("quota: {message}")));
        if mine.rows.saturating_add(1) > self.rows_per_caller {
            return refuse(format!(
                "caller {caller} may keep at most {} rows in `{table}`",
                self.rows_per_caller
            ));
        }
        if mine.bytes.saturating_add(row_bytes) > self.bytes_per_caller {
            return refuse(format!(
                "caller {caller} may keep at most {} bytes in `{table}`; it keeps {} and this \
                 row is {row_bytes}",
                self.bytes_per_caller, mine.bytes
            ));
        }
        if all.rows.saturating_add(1) > self.rows {
            return refuse(format!(
                "`{table}` holds at most {} rows from everyone together, and it is full",
                self.rows
            ));
        }
        if all.bytes.saturating_add(row_bytes) > self.bytes {
            return refuse(format!(
                "`{table}` holds at most {} bytes from everyone together; it holds {} and this \
                 row is {row_bytes}",
                self.bytes, all.bytes
            ));
        }
        Ok(())
    }
}

/// Largest quota a table may set for itself.
const MAX_OWN_LIMIT: i64 = 1 << 50;

/// `set-limits`'s `limits`: each of `rows_per_caller`, `bytes_per_caller`, `rows`, `bytes` a
/// positive whole number, or null (or absent) for the peer's default.
pub(super) fn parse_own_limits(input: &Json) -> Result<TableLimits, DataError> {
    let Some(object) = input.as_object() else {
        return Err(DataError::BadRequest(
            "`limits` must be an object with rows_per_caller, bytes_per_caller, rows, bytes".into(),
        ));
    };
    const KEYS: [&str; 4] = ["rows_per_caller", "bytes_per_caller", "rows", "bytes"];
    if let Some(unknown) = object.keys().find(|key| !KEYS.contains(&key.as_str())) {
        return Err(DataError::BadRequest(format!(
            "limits: unknown key `{unknown}` (expected {})",
            KEYS.join(", ")
        )));
    }
    let value = |key: &str| own_limit(key, object.get(key).unwrap_or(&Json::Null));
    Ok(TableLimits {
        max_rows_per_caller: value("rows_per_caller")?,
        max_bytes_per_caller: value("bytes_per_caller")?,
        max_rows: value("rows")?,
        max_bytes: value("bytes")?,
    })
}

/// The table's own quotas as the owner typed them in the console's form, `[rows_per_caller,
/// bytes_per_caller, rows, bytes]`: `1_000` and `1,000` read as 1000, empty is the peer's
/// default; each checked (and named when wrong) as `set-limits` checks it.
pub fn own_limits_from_form(texts: [&str; 4]) -> Result<TableLimits, DataError> {
    let value = |key: &str, text: &str| {
        let text = text.trim().replace(['_', ','], "");
        let typed = if text.is_empty() {
            Json::Null
        } else {
            text.parse::<i64>()
                .map(Json::from)
                .unwrap_or_else(|_| Json::from(text))
        };
        own_limit(key, &typed)
    };
    let [rows_per_caller, bytes_per_caller, rows, bytes] = texts;
    Ok(TableLimits {
        max_rows_per_caller: value("rows_per_caller", rows_per_caller)?,
        max_bytes_per_caller: value("bytes_per_caller", bytes_per_caller)?,
        max_rows: value("rows", rows)?,
        max_bytes: value("bytes", bytes)?,
    })
}

/// One quota: a positive whole number, or null for the peer's default.
fn own_limit(key: &str, value: &Json) -> Result<Option<i64>, DataError> {
    match value {
        Json::Null => Ok(None),
        value => match value.as_i64() {
            Some(n) if (1..=MAX_OWN_LIMIT).contains(&n) => Ok(Some(n)),
            _ => Err(DataError::BadRequest(format!(
                "limits.{key} ({value}) must be a whole number from 1 to {MAX_OWN_LIMIT}, or \
                 null for the peer's default"
            ))),
        },
    }
}

/// Peer IDs the rate limiter remembers before it forgets those whose bucket is full again.
const RATE_KEYS_KEPT: usize = 4096;

/// The rate limiter and the turn other peers' inserts take, shared by every clone of the service.
pub(super) struct InsertGuard {
    pub(super) limits: InsertLimits,
    rate: Option<DefaultKeyedRateLimiter<PeerId>>,
    requests: Option<DefaultKeyedRateLimiter<PeerId>>,
    clock: DefaultClock,
    /// Other peers' quota checks and inserts, one at a time, so that two inserts cannot both pass
    /// a quota that has room for one.
    pub(super) turn: tokio::sync::Mutex<()>,
}

impl InsertGuard {
    pub(super) fn new(limits: InsertLimits) -> Self {
        let keyed = |per_second: u32, burst: u32| {
            let per_second = NonZeroU32::new(per_second.max(1)).expect("at least one");
            let burst = NonZeroU32::new(burst.max(1)).expect("at least one");
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        };
        let rate = limits.per_second.map(|n| keyed(n, limits.burst));
        let requests = limits
            .requests_per_second
            .map(|n| keyed(n, limits.request_burst));
        InsertGuard {
            limits,
            rate,
            requests,
            clock: DefaultClock::default(),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes one request from `caller`'s bucket, or says how long until it may ask again.
    pub(super) fn check_requests(&self, caller: &PeerId) -> Result<(), DataError> {
        self.take(&self.requests, caller, || {
            format!(
                "{} requests per second (bursts of {}) to this peer's data",
                self.limits.requests_per_second.unwrap_or_default(),
                self.limits.request_burst,
            )
        })
    }

    /// Takes one insert from `caller`'s bucket, or says how long until it may insert again.
    pub(super) fn check_rate(&self, caller: &PeerId) -> Result<(), DataError> {
        self.take(&self.rate, caller, || {
            format!(
                "{} inserts per second (bursts of {}) into this peer's tables",
                self.limits.per_second.unwrap_or_default(),
                self.limits.burst,
            )
        })
    }

    /// Takes one from `caller`'s place in `bucket` (none: no limit); refused, the error names
    /// the `rule` and the wait.
    fn take(
        &self,
        bucket: &Option<DefaultKeyedRateLimiter<PeerId>>,
        caller: &PeerId,
        rule: impl FnOnce() -> String,
    ) -> Result<(), DataError> {
        let Some(bucket) = bucket else {
            return Ok(());
        };
        if bucket.len() > RATE_KEYS_KEPT {
            bucket.retain_recent();
        }
        bucket.check_key(caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            DataError::TooMany(format!(
                "rate: caller {caller} may make at most {}; try again in {} ms",
                rule(),
                wait.as_millis().max(1)
            ))
        })
    }
}
