//! TLS for `https://` hubs (and `wss://` WebSockets): rustls with the aws-lc-rs provider, trusting
//! the Mozilla root set compiled into the binary plus the system's certificates (which honour
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`, for a private CA).

use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;

/// The client configuration every hub connection shares (built once).
pub fn client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "system certificates for hub connections");
            with_roots(roots)
        })
        .clone()
}

/// An HTTP client for hubs (their store, their relay) that trusts what [`client_config`] does.
pub fn http_client(timeout: Option<std::time::Duration>) -> reqwest::Client {
    let builder = reqwest::Client::builder().tls_backend_preconfigured((*client_config()).clone());
    match timeout {
        Some(timeout) => builder.timeout(timeout),
        None => builder,
    }
    .build()
    .unwrap_or_default()
}

/// A client configuration that trusts exactly `roots`.
pub fn with_roots(roots: rustls::RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}
