//! WebSocket upgrades answered on the connection hyper hands over, and a socket that writes
//! many text messages in one system call.
//!
//! A message written through tungstenite is copied into the socket's write buffer and written
//! with a call of its own. A hub's stream is hundreds of small presence messages in a snapshot
//! and, under load, several live events at once for each of thousands of sockets:
//! [`WsSocket::send_texts`] frames them itself (a server's frames are not masked, so only a
//! short header is added to bytes the hub already holds) and writes them with vectored writes,
//! up to [`FRAMES_PER_WRITE`] messages at a time, holding nothing once written — not even the
//! room for a batch: that lives on the heap while a write is under way. Everything else —
//! reading, pings, pongs, closing — is tungstenite's.

use std::io::IoSlice;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::http::error::HttpError;
use crate::http::server::write_all_vectored;

/// Most messages handed to one vectored write: a WebSocket text is two slices (its header and
/// its bytes), an event stream's frame one; either way well under the system's limit of 1,024.
pub const FRAMES_PER_WRITE: usize = 32;

/// A request to upgrade to a WebSocket, checked as RFC 6455 asks (a `GET` with `Connection:
/// upgrade`, `Upgrade: websocket`, version 13 and a key).
pub struct WsUpgrade {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, HttpError> {
        let path = parts.uri.path().to_owned();
        let refuse = |status: StatusCode, what: &str| {
            HttpError::new(status, format!("{path} needs a WebSocket upgrade: {what}"))
        };
        if parts.method != Method::GET {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "the request method must be GET",
            ));
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the Connection header does not include 'upgrade'",
            ));
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the Upgrade header does not include 'websocket'",
            ));
        }
        if parts.headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13"))
        {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "the Sec-WebSocket-Version header must be 13",
            ));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    "the Sec-WebSocket-Key header is missing",
                )
            })?;
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("an accept key is base64");
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
            refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            )
        })?;
        Ok(WsUpgrade { on_upgrade, accept })
    }
}

/// Whether the comma-separated header `name` has `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

impl WsUpgrade {
    /// Answers `101 Switching Protocols` and, once hyper hands the connection over, serves it
    /// with `serve` (on a task of its own). A connection lost before that is dropped.
    pub fn serve<F, Fut>(self, config: WebSocketConfig, serve: F) -> Response
    where
        F: FnOnce(WsSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let inner = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            serve(WsSocket { inner }).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, self.accept)
            .body(axum::body::Body::empty())
            .expect("a 101 response is valid")
    }
}

/// A server's WebSocket: an upgraded HTTP connection (or, in tests, any byte stream).
pub struct WsSocket<S = TokioIo<Upgraded>> {
    inner: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> WsSocket<S> {
    /// The next message from the client; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.inner.next().await
    }

    /// Sends one message (a control message, or a text that is not already held as bytes).
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.inner.send(message).await
    }

    /// Sends each of `texts` (UTF-8, as the caller guarantees) as a text message: framed here
    /// and written [`FRAMES_PER_WRITE`] at a time, taken from `texts` as they are written,
    /// after whatever tungstenite still holds (a pong it owes the client).
    ///
    /// The batch being written (its messages, their headers and the slices over them, about
    /// 2.8 KiB) is in a boxed future of its own: a session's task holds this future among its
    /// states for the socket's whole life, and inline the batch made every live peer's task
    /// that much larger.
    pub async fn send_texts(
        &mut self,
        texts: impl Iterator<Item = Bytes> + Send,
    ) -> Result<(), Error> {
        self.inner.flush().await?;
        Box::pin(write_texts(self.inner.get_mut(), texts)).await?;
        Ok(())
    }
}

/// Frames each of `texts` as a server's text message and writes them to `io`,
/// [`FRAMES_PER_WRITE`] to a vectored write.
async fn write_texts(
    io: &mut (impl AsyncWrite + Unpin),
    mut texts: impl Iterator<Item = Bytes>,
) -> std::io::Result<()> {
    loop {
        let chunk: [Option<Bytes>; FRAMES_PER_WRITE] = std::array::from_fn(|_| texts.next());
        let count = chunk.iter().flatten().count();
        if count == 0 {
            return Ok(());
        }
        let mut headers = [([0u8; MAX_HEADER], 0); FRAMES_PER_WRITE];
        for (text, (header, length)) in chunk.iter().flatten().zip(&mut headers) {
            *length = text_header(text.len(), header);
        }
        let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
        let framed = chunk.iter().flatten().zip(&headers).enumerate();
        for (i, (text, (header, length))) in framed {
            slices[2 * i] = IoSlice::new(&header[..*length]);
            slices[2 * i + 1] = IoSlice::new(text);
        }
        write_all_vectored(io, &mut slices[..2 * count]).await?;
    }
}

/// The longest header of an unmasked frame: two bytes and a 64-bit length.
const MAX_HEADER: usize = 10;

/// Writes the header of a final, unmasked text frame of `length` bytes into `out`; returns its
/// length (RFC 6455 §5.2).
fn text_header(length: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    const FIN_TEXT: u8 = 0x81;
    out[0] = FIN_TEXT;
    if length < 126 {
        out[1] = length as u8;
        2
    } else if let Ok(short) = u16::try_from(length) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(length as u64).to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn texts_reach_a_client_as_sent_through_a_future_that_holds_no_batch() {
        let (server, client) = tokio::io::duplex(1024 * 1024);
        let mut socket = WsSocket {
            inner: WebSocketStream::from_raw_socket(server, Role::Server, None).await,
        };
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        // More than two writes' worth, with each header length: short, 16-bit and 64-bit.
        let texts: Vec<Bytes> = (0..2 * FRAMES_PER_WRITE + 5)
            .map(|i| {
                let letters = if i == 3 { 40_000 } else { i * 5 };
                Bytes::from(format!("{i}:{}", "é".repeat(letters)))
            })
            .collect();
        assert!(texts.iter().any(|text| text.len() > 65_535));

        let sending = socket.send_texts(texts.clone().into_iter());
        // Every WebSocket task holds this future among its states while its socket lives.
        let size = std::mem::size_of_val(&sending);
        assert!(size <= 256, "the future of a write is {size} bytes");
        sending.await.unwrap();

        for text in texts {
            let received = client.next().await.unwrap().unwrap();
            assert_eq!(received, Message::Text(text.try_into().unwrap()));
        }
    }

    #[test]
    fn headers_use_the_shortest_length_encoding() {
        let mut out = [0u8; MAX_HEADER];
        assert_eq!(text_header(125, &mut out), 2);
        assert_eq!(&out[..2], &[0x81, 125]);
        assert_eq!(text_header(126, &mut out), 4);
        assert_eq!(&out[..4], &[0x81, 126, 0, 126]);
        assert_eq!(text_header(65_535, &mut out), 4);
        assert_eq!(&out[..4], &[0x81, 126, 0xff, 0xff]);
        assert_eq!(text_header(65_536, &mut out), 10);
        assert_eq!(&out[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
