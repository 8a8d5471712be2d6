//! Small text forms shared by pages.

/// `12D3KooWAbcd…xyz123`: the same short form the hub's log uses.
pub use crate::services::hub::presence::short_peer_id as short_id;

/// "1 row", "2 rows": a number with its noun in the right number.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// "12 s ago", "3 min ago", "2 h ago".
pub fn ago(elapsed_ms: i64) -> String {
    let seconds = (elapsed_ms.max(0) + 500) / 1000;
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", (seconds + 30) / 60),
        _ => format!("{} h ago", (seconds + 1800) / 3600),
    }
}
