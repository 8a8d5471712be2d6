//! Headers every page of ours carries: no sniffing, no framing, a strict referrer policy and a
//! content policy that allows only our own scripts and styles. A response that set its own
//! framing, referrer or content policy (a peer site the console frames: `no-referrer`,
//! `SAMEORIGIN`, its sandbox policy) keeps it. Responses written straight to the socket (the
//! hub's `/events`) put [`HEADER_LINES`] in their head.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

const CONTENT_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// The headers and their values.
const HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "same-origin"),
    (header::CONTENT_SECURITY_POLICY, CONTENT_POLICY),
];

/// The headers as lines of a raw HTTP/1.1 response head, each ending in CRLF.
pub const HEADER_LINES: &str = concat!(
    "x-content-type-options: nosniff\r\n",
    "x-frame-options: DENY\r\n",
    "referrer-policy: same-origin\r\n",
    "content-security-policy: default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'\r\n",
);

/// Adds the headers to every response of `router`; `nosniff` always, the others when the
/// response has not set its own.
pub fn with_security_headers(router: Router) -> Router {
    let [nosniff, framing, referrer, policy] =
        HEADERS.map(|(name, value)| (name, HeaderValue::from_static(value)));
    router.layer(
        ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::overriding(nosniff.0, nosniff.1))
            .layer(SetResponseHeaderLayer::if_not_present(framing.0, framing.1))
            .layer(SetResponseHeaderLayer::if_not_present(
                referrer.0, referrer.1,
            ))
            .layer(SetResponseHeaderLayer::if_not_present(policy.0, policy.1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_header_lines_are_the_same_headers() {
        let lines: Vec<String> = HEADERS
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        assert_eq!(lines.concat(), HEADER_LINES);
    }
}
