//! `/goop/mq/1.0.0`, the message transport: a long-lived stream of NDJSON lines. The side that
//! opened the stream sends `{"type":"msg","id","seq","topic","payload"}`; the other side answers
//! each with `{"type":"ack","id","seq"}`, or with an `error` in the ack when it will not take the
//! message (`unknown topic`, `rate limited`, `busy`, or its topic's own reason). A stream it
//! cannot read (a line too long, not this JSON) is ended after one `{"type":"error","reason"}`.
//! Each side sends its own messages on a stream it opened; the sender of a message is the
//! stream's authenticated peer, never a field. The service is [`crate::services::mq`].

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::SessionLimits;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/goop/mq/1.0.0");

/// Largest payload of one message, as JSON.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest topic and message id.
pub const MAX_TOPIC_BYTES: usize = 256;
pub const MAX_ID_BYTES: usize = 128;

/// One line of the transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    Msg {
        id: String,
        #[serde(default)]
        seq: u64,
        topic: String,
        #[serde(default)]
        payload: Json,
    },
    Ack {
        id: String,
        #[serde(default)]
        seq: u64,
        /// Why the message was not taken; absent when it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The stream cannot go on, and why.
    Error { reason: String },
}

/// The session bounds of the transport: a whole message with its envelope fits a line.
pub fn limits() -> SessionLimits {
    SessionLimits {
        max_line_bytes: MAX_PAYLOAD_BYTES + MAX_TOPIC_BYTES + MAX_ID_BYTES + 256,
        queue: 64,
        idle_timeout: std::time::Duration::from_secs(90),
        max_sessions: 256,
        per_peer: 4,
        per_address: 32,
    }
}

/// Whether `topic` may travel: 1–256 bytes, no control characters.
pub fn valid_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("a topic may not be empty".into());
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(format!("a topic is at most {MAX_TOPIC_BYTES} bytes"));
    }
    if topic.chars().any(char::is_control) {
        return Err("a topic may not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_the_go_peers_framing() {
        let msg = Line::Msg {
            id: "a1".into(),
            seq: 7,
            topic: "chat".into(),
            payload: json!({"text": "hi"}),
        };
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            json!({"type": "msg", "id": "a1", "seq": 7, "topic": "chat", "payload": {"text": "hi"}})
        );
        let ack: Line = serde_json::from_str(r#"{"type":"ack","id":"a1","seq":7}"#).unwrap();
        assert_eq!(
            ack,
            Line::Ack {
                id: "a1".into(),
                seq: 7,
                error: None
            }
        );
        assert_eq!(
            serde_json::to_string(&ack).unwrap(),
            r#"{"type":"ack","id":"a1","seq":7}"#
        );
        // Fields this side does not know are ignored, as the Go peer sends `from` and `ts`.
        let go: Line = serde_json::from_str(
            r#"{"type":"msg","id":"x","seq":1,"topic":"chat","from":"forged","ts":5,"payload":"hi"}"#,
        )
        .unwrap();
        assert!(matches!(go, Line::Msg { ref topic, .. } if topic == "chat"));
    }

    #[test]
    fn topics_are_bounded() {
        assert!(valid_topic("group:chess-42:msg").is_ok());
        assert!(valid_topic("").is_err());
        assert!(valid_topic(&"t".repeat(MAX_TOPIC_BYTES + 1)).is_err());
        assert!(valid_topic("a\nb").is_err());
    }
}
