//! The baseline of `goop2 loadtest --baseline`: a plain hello-world HTTP server (`POST /publish`
//! answers 204 once it has read the body, and nothing else) that the same publish load runs
//! against in the same run, so that a hub's throughput reads as a ratio that a noisy machine's
//! swings do not move.
//!
//! The server runs inside the load tool's process, on a tokio runtime of its own: the load
//! generator's tasks and the server's never share a scheduler, and the server gets as many worker
//! threads as `goop2 rendezvous` does (a default multi-thread runtime, one per core), so the
//! cores are contended as when a hub is loaded. The kernel schedules those threads as it would in
//! a separate process.

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::post;

/// The running server; dropping it stops it.
pub struct HelloServer {
    url: String,
    /// Taken on drop.
    runtime: Option<tokio::runtime::Runtime>,
}

impl HelloServer {
    /// Binds a free port on 127.0.0.1 and serves there on the server's own runtime. Callable from
    /// inside another runtime, as the load tool is.
    pub fn start() -> anyhow::Result<HelloServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("goop2-baseline")
            .build()
            .context("cannot start the baseline server's runtime")?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("cannot bind the baseline server")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let listener = {
            let _inside = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let router = axum::Router::new().route(
            "/publish",
            post(|_body: bytes::Bytes| async { StatusCode::NO_CONTENT }),
        );
        runtime.spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "the baseline server stopped");
            }
        });
        Ok(HelloServer {
            url,
            runtime: Some(runtime),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for HelloServer {
    fn drop(&mut self) {
        // Without waiting: a runtime may not block while it is dropped inside another one.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
