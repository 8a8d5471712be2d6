//! Application logic, independent of HTTP: authentication, the hub, the libp2p node, presence,
//! the site (as visitors see it and as its owner edits it), the avatar, sandboxed Lua and the
//! message transport between peers. Nothing here imports axum or askama, and SQL stays in `store`.

use std::time::Duration;

pub mod auth;
pub mod avatar;
pub mod blocklist;
pub mod chat;
pub mod client_key;
pub mod data;
pub mod dirlock;
pub mod groups;
pub mod hub;
pub mod launcher;
pub mod lua;
pub mod mq;
pub mod node;
pub mod presence;
pub mod relay;
pub mod scaffold;
pub mod site;
pub mod site_files;
pub mod sitetemplates;

/// A doubling wait: `first` before the first retry (`attempt` 1), twice that before the
/// second, and so on, never more than `cap`. Every backoff of the services is this one.
pub(crate) fn doubling(first: Duration, attempt: u32, cap: Duration) -> Duration {
    first
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(cap)
}

/// An error with its causes on one line (the cause is often the useful part: a TLS, DNS or
/// transport failure), each said once.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            // "Failed to get Reservation.: …" reads as one sentence without the stop.
            while text.ends_with('.') {
                text.pop();
            }
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Resolves once `stop` says true (or its sender is gone): the stop signal of long-running tasks.
pub(crate) async fn until_stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
