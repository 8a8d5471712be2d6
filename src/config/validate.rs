//! The rules a configuration must satisfy. Integer ranges are checked on the raw JSON, before
//! typed parsing, so a message can quote a value that does not fit its field; everything else is
//! checked on the typed [`Config`]. Every message names the JSON path, the value and what is
//! allowed.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde_json::Value;

use super::{Config, MAX_EMAIL_BYTES, MAX_LABEL_BYTES, THEMES, redact_url_password};

/// Integer keys with their allowed ranges. Checked on the raw JSON before typed parsing so the
/// message can quote the value even when it does not fit the field's Rust type.
const INTEGER_RANGES: &[(&str, &str, i64, i64)] = &[
    ("p2p", "listen_port", 0, 65535),
    ("p2p", "max_connections", 1, 1_000_000),
    ("p2p", "max_inbound", 0, 1_000_000),
    ("p2p", "max_inbound_strangers", 0, 1_000_000),
    ("p2p", "connections_per_address", 1, 1_000_000),
    ("p2p", "dial_burst", 1, 1_000_000),
    ("p2p", "dials_per_second", 1, 1_000_000),
    ("presence", "ttl_seconds", 1, 86_400),
    ("presence", "heartbeat_seconds", 1, 3_600),
    ("presence", "rendezvous_port", 0, 65535),
    ("presence", "publish_burst", 1, 1_000_000),
    ("presence", "publish_per_second", 1, 1_000_000),
    ("presence", "max_streams", 1, 1_000_000),
    ("presence", "max_streams_per_ip", 1, 1_000_000),
    ("presence", "gossip_burst", 1, 1_000_000),
    ("presence", "gossip_per_second", 1, 1_000_000),
    ("presence", "max_peers", 1, 1_000_000),
    ("presence", "max_gossip_strangers", 0, 1_000_000),
    ("presence", "relay_port", 0, 65535),
    ("presence", "relay_max_reservations", 1, 100_000),
    ("presence", "relay_max_reservations_per_peer", 1, 100),
    ("presence", "relay_reservation_seconds", 60, 86_400),
    ("presence", "relay_max_circuits", 1, 100_000),
    ("presence", "relay_max_circuits_per_peer", 1, 100),
    ("presence", "relay_circuit_seconds", 1, 86_400),
    ("presence", "relay_circuit_bytes", 1, 1_099_511_627_776),
    ("presence", "relay_max_connections", 16, 1_000_000),
    ("lua", "timeout_seconds", 1, 60),
    ("lua", "max_memory_mb", 1, 1024),
    ("lua", "rate_limit_per_peer", 1, 1_000_000),
    ("lua", "rate_limit_global", 1, 10_000_000),
    ("data", "insert_per_second", 1, 1_000_000),
    ("data", "insert_burst", 1, 1_000_000),
    ("data", "requests_per_second", 1, 1_000_000),
    ("data", "request_burst", 1, 1_000_000),
    ("data", "timeout_seconds", 1, 60),
    ("data", "max_rows_per_caller", 1, 1 << 50),
    ("data", "max_bytes_per_caller", 1, 1 << 50),
    ("data", "max_rows_per_table", 1, 1 << 50),
    ("data", "max_bytes_per_table", 1, 1 << 50),
    ("chat", "history_per_peer", 1, 1_000_000),
    ("chat", "broadcasts_per_minute", 1, 10_000),
    ("groups", "max_hosted", 1, 100_000),
    ("groups", "max_members", 1, 10_000),
    ("groups", "max_joined", 1, 100_000),
];

impl Config {
    /// Every rule a typed configuration must satisfy, as messages naming the JSON path, the value
    /// and what is allowed. Empty when the configuration is valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                problems.push(message);
            }
        };

        let profile = &self.profile;
        check(
            profile.label.len() <= MAX_LABEL_BYTES,
            format!(
                "profile.label is {} bytes long; at most {MAX_LABEL_BYTES} bytes are allowed",
                profile.label.len()
            ),
        );
        check(
            profile.email.len() <= MAX_EMAIL_BYTES,
            format!(
                "profile.email is {} bytes long; at most {MAX_EMAIL_BYTES} bytes are allowed",
                profile.email.len()
            ),
        );
        check(
            profile.email.len() > MAX_EMAIL_BYTES
                || profile.email.is_empty()
                || looks_like_email(&profile.email),
            format!(
                "profile.email ({:?}) must be empty or an address such as \"alice@example.org\"",
                profile.email
            ),
        );

        check(
            !self.identity.key_file.trim().is_empty(),
            "identity.key_file must not be empty; the default is \"data/identity.key\"".into(),
        );
        check(
            !self.paths.site_root.trim().is_empty(),
            "paths.site_root must not be empty; the default is \"site\"".into(),
        );

        let tag = &self.p2p.mdns_tag;
        check(
            !tag.is_empty()
                && tag.len() <= 63
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            format!(
                "p2p.mdns_tag ({tag:?}) must be 1 to 63 characters of letters, digits, '-' or '_'"
            ),
        );

        let p2p = &self.p2p;
        check(
            p2p.max_inbound <= p2p.max_connections,
            format!(
                "p2p.max_inbound ({}) must be at most p2p.max_connections ({})",
                p2p.max_inbound, p2p.max_connections
            ),
        );
        check(
            p2p.max_inbound_strangers <= p2p.max_inbound,
            format!(
                "p2p.max_inbound_strangers ({}) must be at most p2p.max_inbound ({})",
                p2p.max_inbound_strangers, p2p.max_inbound
            ),
        );

        let presence = &self.presence;
        check(
            !presence.topic.is_empty() && presence.topic.len() <= 256,
            format!(
                "presence.topic ({:?}) must be 1 to 256 bytes long; the default is \"goop.presence.v1\"",
                presence.topic
            ),
        );
        check(
            presence.heartbeat_seconds < presence.ttl_seconds,
            format!(
                "presence.heartbeat_seconds ({}) must be less than presence.ttl_seconds ({})",
                presence.heartbeat_seconds, presence.ttl_seconds
            ),
        );
        check(
            presence.max_gossip_strangers <= presence.max_peers,
            format!(
                "presence.max_gossip_strangers ({}) must be at most presence.max_peers ({})",
                presence.max_gossip_strangers, presence.max_peers
            ),
        );
        check(
            !presence.rendezvous_only || presence.rendezvous_host,
            "presence.rendezvous_only (true) requires presence.rendezvous_host to be true: a \
             rendezvous-only node has nothing to run but the hub"
                .into(),
        );
        check(
            presence.rendezvous_bind.parse::<IpAddr>().is_ok(),
            format!(
                "presence.rendezvous_bind ({:?}) must be an IP address such as \"127.0.0.1\" or \"0.0.0.0\"",
                presence.rendezvous_bind
            ),
        );
        check(
            presence.rendezvous_wan.is_empty() || is_http_url(&presence.rendezvous_wan),
            format!(
                "presence.rendezvous_wan ({:?}) must be empty or an http:// or https:// URL such as \"https://rv.example.org\"",
                presence.rendezvous_wan
            ),
        );
        let url = presence.peer_db_url.expose();
        check(
            url.is_empty()
                || url::Url::parse(url)
                    .is_ok_and(|u| matches!(u.scheme(), "postgres" | "postgresql") && u.has_host()),
            format!(
                "presence.peer_db_url ({:?}) must be empty or a PostgreSQL URL such as \"postgres://goop:password@127.0.0.1/goop\"",
                redact_url_password(url)
            ),
        );
        check(
            url.is_empty() || presence.peer_db_path.is_empty(),
            "presence.peer_db_path and presence.peer_db_url are two ways to share peer state: set one of them".into(),
        );
        check(
            !presence.templates_dir.trim().is_empty(),
            "presence.templates_dir must not be empty; the default is \"templates\"".into(),
        );
        for (index, entry) in presence.relay_external_addrs.iter().enumerate() {
            check(
                entry.parse::<libp2p::Multiaddr>().is_ok_and(|addr| {
                    !addr
                        .iter()
                        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                }),
                format!(
                    "presence.relay_external_addrs[{index}] ({entry:?}) must be a multiaddr without /p2p/, such as \"/ip4/203.0.113.7/tcp/4001\""
                ),
            );
        }
        for (index, entry) in presence.trusted_proxies.iter().enumerate() {
            check(
                parse_ip_or_net(entry).is_some(),
                format!(
                    "presence.trusted_proxies[{index}] ({entry:?}) must be an IP address or a CIDR range such as \"10.0.0.0/8\""
                ),
            );
        }

        let viewer = &self.viewer;
        check(
            viewer.http_addr.is_empty() || viewer.http_addr.parse::<SocketAddr>().is_ok(),
            format!(
                "viewer.http_addr ({:?}) must be empty (no console) or an IP address and port such as \"127.0.0.1:8080\"",
                viewer.http_addr
            ),
        );
        check(
            THEMES.contains(&viewer.theme.as_str()),
            format!(
                "viewer.theme ({:?}) must be one of {}",
                viewer.theme,
                THEMES
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );

        check(
            !self.lua.script_dir.trim().is_empty(),
            "lua.script_dir must not be empty; the default is \"site/lua\"".into(),
        );
        for (index, entry) in self.lua.http_allow.iter().enumerate() {
            check(
                parse_ip_or_net(entry).is_some(),
                format!(
                    "lua.http_allow[{index}] ({entry:?}) must be an IP address or a CIDR range such as \"192.168.1.0/24\""
                ),
            );
        }
        problems
    }
}

pub(super) fn check_integer_ranges(raw: &mut Value) -> Vec<String> {
    let mut problems = Vec::new();
    for &(section, key, min, max) in INTEGER_RANGES {
        let Some(object) = raw.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        let Some(value) = object.get(key) else {
            continue;
        };
        let problem = match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => None,
            Some(n) => Some(format!(
                "{section}.{key} ({n}) must be between {min} and {max}"
            )),
            None => Some(format!(
                "{section}.{key} ({value}) must be an integer between {min} and {max}"
            )),
        };
        if let Some(problem) = problem {
            problems.push(problem);
            object.remove(key);
        }
    }
    problems
}

pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text)
        .map(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .unwrap_or(false)
}

/// Validated address or range entries as ranges; a bare address is a /32 or /128 range.
pub(super) fn parse_nets(entries: &[String]) -> Vec<IpNet> {
    entries
        .iter()
        .filter_map(|entry| parse_ip_or_net(entry))
        .collect()
}

fn parse_ip_or_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}
