//! `goop.http` against real HTTP servers on loopback, with a resolver the test controls (no
//! traffic leaves the machine): private and special addresses refused however they are reached
//! (literal, IPv6 forms, names, redirects, a name that changes its answer), the bounds on
//! requests, size and time, and the owner's allow list.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use goop2::services::lua::http::{HostResolver, HttpPolicy, LuaHttp};
use goop2::services::lua::{LuaEngine, LuaSetup};
use serde_json::{Value, json};

use crate::lua::{call, setup, start_setup};

/// Answers from a table; a name with several answers gives them in turn (then the last again).
#[derive(Default)]
struct TableResolver {
    answers: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
    lookups: Mutex<Vec<String>>,
}

impl TableResolver {
    fn with(entries: &[(&str, &[&str])]) -> Arc<TableResolver> {
        let resolver = TableResolver::default();
        for (name, ips) in entries {
            resolver.answer(name, ips);
        }
        Arc::new(resolver)
    }

    /// Adds one more answer for `name`.
    fn answer(&self, name: &str, ips: &[&str]) {
        self.answers
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(ips.iter().map(|ip| ip.parse().unwrap()).collect());
    }

    fn lookups_of(&self, name: &str) -> usize {
        self.lookups
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == name)
            .count()
    }
}

impl HostResolver for TableResolver {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        self.lookups.lock().unwrap().push(host.clone());
        let mut answers = self.answers.lock().unwrap();
        let answer = match answers.get_mut(&host) {
            Some(list) if list.len() > 1 => Ok(list.remove(0)),
            Some(list) => Ok(list[0].clone()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such host",
            )),
        };
        Box::pin(async move { answer })
    }
}

/// A small HTTP server on `ip` (port 0 unless given) that says `name` at `/whoami`.
async fn server(ip: &str, port: u16, name: &'static str) -> Option<SocketAddr> {
    let listener = tokio::net::TcpListener::bind((ip, port)).await.ok()?;
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/whoami", get(move || async move { name }))
        .route(
            "/echo",
            post(|headers: HeaderMap, body: String| async move {
                let kind = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let custom = headers
                    .get("x-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                axum::Json(json!({"type": kind, "body": body, "token": custom}))
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "not here") }),
        )
        .route("/big", get(|| async { "x".repeat(2 * 1024 * 1024) }))
        .route(
            "/big-stream",
            get(|| async {
                let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 64 * 1024]));
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/redirect",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                Redirect::temporary(&q["to"]).into_response()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Some(addr)
}

const FETCH: &str = r#"
--- Fetches what it is told and reports the outcome.
function call(request)
  local p = request.params
  local body, err, status
  if p.method == "POST" then
    body, err, status = goop.http.post(p.url, p.body, p.headers)
  else
    body, err, status = goop.http.get(p.url, p.headers)
  end
  return { body = body, err = err, status = status, size = body and #body or 0 }
end
"#;

const FOUR: &str = r#"
function call(request)
  local out = {}
  for i = 1, 4 do
    local body, err = goop.http.get(request.params.url)
    out[i] = body or err
  end
  return out
end
"#;

fn engine(dir: &std::path::Path, policy: Option<HttpPolicy>, timeout_ms: u64) -> LuaEngine {
    let functions = dir.join("functions");
    std::fs::create_dir_all(&functions).unwrap();
    std::fs::write(functions.join("fetch.lua"), FETCH).unwrap();
    std::fs::write(functions.join("four.lua"), FOUR).unwrap();
    start_setup(LuaSetup {
        http: policy.map(|policy| LuaHttp::new(policy).unwrap()),
        ..setup(dir, timeout_ms, 10_000, 10_000)
    })
}

fn policy(allow: &[&str], resolver: Arc<TableResolver>) -> HttpPolicy {
    HttpPolicy {
        allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
        resolver,
    }
}

async fn fetch(engine: &LuaEngine, params: Value) -> Value {
    call(engine, "fetch", params).await.unwrap()
}

async fn refusal(engine: &LuaEngine, url: &str) -> String {
    let outcome = fetch(engine, json!({ "url": url })).await;
    assert!(
        outcome.get("body").is_none(),
        "{url} was fetched: {outcome}"
    );
    outcome["err"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_special_addresses_are_refused_however_they_are_named() {
    let target = server("127.0.0.1", 0, "inside").await.unwrap();
    let port = target.port();
    let resolver = TableResolver::with(&[
        ("sneaky.example", &["127.0.0.1"]),
        ("mixed.example", &["93.184.215.14", "10.0.0.7"]),
        ("v6.example", &["::1"]),
        ("mapped.example", &["::ffff:127.0.0.1"]),
        ("metadata.example", &["169.254.169.254"]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Some(policy(&[], resolver.clone())), 5000);

    let cases = [
        (
            format!("http://127.0.0.1:{port}/whoami"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://[::1]:{port}/whoami"),
            "::1 is a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/whoami"),
            "a loopback address",
        ),
        (
            format!("http://2130706433:{port}/whoami"),
            "127.0.0.1 is a loopback address",
        ),
        ("http://10.1.2.3/".into(), "10.1.2.3 is a private address"),
        (
            "http://192.168.1.1/".into(),
            "192.168.1.1 is a private address",
        ),
        (
            "http://172.20.0.1/".into(),
            "172.20.0.1 is a private address",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "a link-local address",
        ),
        ("http://100.100.1.1/".into(), "a shared (CGNAT) address"),
        (
            "http://0.0.0.0/".into(),
            "0.0.0.0 is an unspecified address",
        ),
        ("http://[::]/".into(), "an unspecified address"),
        ("http://224.0.0.1/".into(), "a multicast address"),
        (
            "http://[fd12::1]/".into(),
            "a private (unique local) address",
        ),
        ("http://[fe80::1]/".into(), "a link-local address"),
        (
            format!("http://sneaky.example:{port}/whoami"),
            "sneaky.example resolves to 127.0.0.1, a loopback address",
        ),
        (
            "http://mixed.example/".into(),
            "mixed.example resolves to 10.0.0.7, a private address",
        ),
        (
            format!("http://v6.example:{port}/"),
            "v6.example resolves to ::1",
        ),
        (
            format!("http://mapped.example:{port}/"),
            "a loopback address",
        ),
        ("http://metadata.example/".into(), "a link-local address"),
        (
            "http://nowhere.example/".into(),
            "cannot resolve nowhere.example",
        ),
        ("file:///etc/passwd".into(), "only http and https"),
        ("ftp://example.org/".into(), "only http and https"),
        (
            format!("http://user:pw@sneaky.example:{port}/"),
            "credentials",
        ),
        ("not a url".into(), "not a URL"),
    ];
    for (url, expected) in cases {
        let error = refusal(&engine, &url).await;
        assert!(
            error.contains(expected),
            "{url}: {error:?}, expected {expected:?}"
        );
    }
    // The server was reachable all along: nothing got through to it.
    assert_eq!(resolver.lookups_of("sneaky.example"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_server_answers_but_its_redirects_to_private_addresses_are_refused() {
    // Two servers on one port: 127.0.0.1 (opened by the owner's allow list) and 127.0.0.2 (not).
    let mut pair = None;
    for _ in 0..20 {
        let public = server("127.0.0.1", 0, "public").await.unwrap();
        if let Some(private) = server("127.0.0.2", public.port(), "secret").await {
            pair = Some((public, private));
            break;
        }
    }
    let (public, _private) = pair.expect("two loopback addresses on one port");
    let port = public.port();
    let resolver = TableResolver::with(&[
        ("allowed.example", &["127.0.0.1"]),
        ("inside.example", &["127.0.0.2"]),
    ]);
    // One answer, then another: the check and the connection must be the same lookup.
    resolver.answer("rebind.example", &["127.0.0.1"]);
    resolver.answer("rebind.example", &["127.0.0.2"]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(
        dir.path(),
        Some(policy(&["127.0.0.1/32"], resolver.clone())),
        5000,
    );
    let base = format!("http://allowed.example:{port}");

    let answer = fetch(&engine, json!({ "url": format!("{base}/whoami") })).await;
    assert_eq!(answer, json!({"body": "public", "status": 200, "size": 6}));
    let missing = fetch(&engine, json!({ "url": format!("{base}/missing") })).await;
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["body"], "not here");

    // A form by default, JSON for a table, the script's own headers.
    let form = fetch(
        &engine,
        json!({"method": "POST", "url": format!("{base}/echo"), "body": "a=1&b=2"}),
    )
    .await;
    let echoed: Value = serde_json::from_str(form["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        echoed,
        json!({"type": "application/x-www-form-urlencoded", "body": "a=1&b=2", "token": ""})
    );
    let table = fetch(
        &engine,
        json!({"method": "POST", "url": format!("{base}/echo"), "body": {"n": 1}, "headers": {"X-Token": "t0k"}}),
    )
    .await;
    let echoed: Value = serde_json::from_str(table["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        echoed,
        json!({"type": "application/json", "body": "{\"n\":1}", "token": "t0k"})
    );

    // Redirects are checked like first requests, whatever form the target takes.
    for (to, expected) in [
        (
            format!("http://127.0.0.2:{port}/whoami"),
            "127.0.0.2 is a loopback address",
        ),
        (
            format!("http://inside.example:{port}/whoami"),
            "inside.example resolves to 127.0.0.2",
        ),
        (
            format!("http://[::1]:{port}/whoami"),
            "::1 is a loopback address",
        ),
        ("http://169.254.169.254/".into(), "a link-local address"),
    ] {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("to", &to)
            .finish();
        let error = refusal(&engine, &format!("{base}/redirect?{query}")).await;
        assert!(error.contains(expected), "to {to}: {error:?}");
        // An address in the URL is caught by the redirect check, a name when it is resolved.
        if !to.contains(".example") {
            assert!(error.contains("(redirected to "), "{error}");
        }
    }
    // A redirect to another scheme is not followed: the script sees the redirect itself.
    let other = fetch(
        &engine,
        json!({ "url": format!("{base}/redirect?to=file%3A%2F%2F%2Fetc%2Fpasswd") }),
    )
    .await;
    assert_eq!(other, json!({"body": "", "status": 307, "size": 0}));
    // An allowed redirect is followed.
    let followed = fetch(
        &engine,
        json!({ "url": format!("{base}/redirect?to=%2Fwhoami") }),
    )
    .await;
    assert_eq!(followed["body"], "public");
    // 127.0.0.2 is still refused directly.
    let error = refusal(&engine, &format!("http://127.0.0.2:{port}/whoami")).await;
    assert!(error.contains("loopback"), "{error}");

    // DNS rebinding: the address that was vetted is the address connected to. Whatever the
    // name says next time, the private server is never reached.
    let first = fetch(
        &engine,
        json!({ "url": format!("http://rebind.example:{port}/whoami") }),
    )
    .await;
    assert_eq!(first["body"], "public", "{first}");
    assert_eq!(resolver.lookups_of("rebind.example"), 1);
    let again = fetch(
        &engine,
        json!({ "url": format!("http://rebind.example:{port}/whoami") }),
    )
    .await;
    assert_ne!(again["body"], "secret", "{again}");
    if again.get("body").is_none() {
        assert!(
            again["err"]
                .as_str()
                .unwrap()
                .contains("resolves to 127.0.0.2"),
            "{again}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_bounded_in_number_size_and_time_and_can_be_turned_off() {
    let target = server("127.0.0.1", 0, "public").await.unwrap();
    let resolver = TableResolver::with(&[("allowed.example", &["127.0.0.1"])]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Some(policy(&["127.0.0.1/32"], resolver)), 1500);
    let base = format!("http://allowed.example:{}", target.port());

    let four = call(&engine, "four", json!({ "url": format!("{base}/whoami") }))
        .await
        .unwrap();
    assert_eq!(
        four,
        json!([
            "public",
            "public",
            "public",
            "at most 3 HTTP requests per call"
        ])
    );

    for path in ["/big", "/big-stream"] {
        let error = refusal(&engine, &format!("{base}{path}")).await;
        assert!(
            error.contains("larger than 1048576 bytes"),
            "{path}: {error}"
        );
    }

    // The call's own 1.5 s budget bounds the request, well before the server's 30 s.
    let started = std::time::Instant::now();
    let error = refusal(&engine, &format!("{base}/slow")).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error.contains("timed out") || error.contains("no answer"),
        "{error}"
    );
    // The engine goes on answering.
    let fine = fetch(&engine, json!({ "url": format!("{base}/whoami") })).await;
    assert_eq!(fine["body"], "public");

    // lua.http_enabled off: no client at all.
    let off_dir = tempfile::tempdir().unwrap();
    let off = engine_without_http(off_dir.path());
    let error = refusal(&off, &format!("{base}/whoami")).await;
    assert!(error.contains("lua.http_enabled"), "{error}");
}

fn engine_without_http(dir: &std::path::Path) -> LuaEngine {
    engine(dir, None, 1000)
}
