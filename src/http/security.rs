//! Headers every page of ours carries: no sniffing, no framing, a strict referrer policy and a
//! content policy that allows only our own scripts and styles.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;

/// Adds the headers to every response of `router`.
pub fn with_security_headers(router: Router) -> Router {
    router.layer(axum::middleware::map_response(
        |mut response: Response| async move {
            let headers = response.headers_mut();
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            // A peer site that the console frames itself (`/visit/`) says so.
            headers
                .entry(header::X_FRAME_OPTIONS)
                .or_insert(HeaderValue::from_static("DENY"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            // A response that set its own policy (a sandboxed peer site) keeps it.
            if headers.contains_key(header::CONTENT_SECURITY_POLICY) {
                return response;
            }
            headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        );
            response
        },
    ))
}
