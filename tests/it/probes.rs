//! Probes that held when the hub and the peer were attacked, replayed so they keep holding:
//! malformed presence bodies, odd and oversized request heads, Host and Origin forms against the
//! console, template bundle bombs, SQL injection forms in the data API and Lua escapes. Each
//! table is small and bounded; after every probe the target must still answer.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use goop2::services::data::{Caller, DataError};
use goop2::services::hub::presence::PresenceType;
use goop2::services::lua::LuaError;
use goop2::services::sitetemplates::store::TemplateStore;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestHub, TestIdentity, TestPeer, no_redirects, short_ttl};

const WAIT: Duration = Duration::from_secs(5);

/// Sends raw bytes and returns what came back before the server closed (or `WAIT` passed).
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(Ok(read)) = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
        if read == 0 {
            break;
        }
        seen.extend_from_slice(&buffer[..read]);
        // One answer is enough; the server may keep the connection open.
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_presence_bodies_are_refused_and_add_no_one() {
    let hub = TestHub::spawn().await;
    let mut peer = TestIdentity::new();
    let good = serde_json::to_value(peer.signed(PresenceType::Online, "x")).unwrap();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut value = good.clone();
        edit(&mut value);
        value.to_string()
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("whitespace", b"  \n\t ".to_vec()),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("string", b"\"online\"".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("deep nesting", deep.into_bytes()),
        ("truncated", good.to_string().as_bytes()[..40].to_vec()),
        (
            "bom",
            [b"\xEF\xBB\xBF".as_slice(), good.to_string().as_bytes()].concat(),
        ),
        (
            "invalid utf-8",
            [good.to_string().as_bytes(), b"\xff\xfe"].concat(),
        ),
        (
            "ts as string",
            with(&|v| v["ts"] = json!("1700000000000")).into_bytes(),
        ),
        (
            "ts as float",
            with(&|v| v["ts"] = json!(1.5e12)).into_bytes(),
        ),
        (
            "ts past any number",
            good.to_string()
                .replacen(&format!("\"ts\":{}", good["ts"]), "\"ts\":1e400", 1)
                .into_bytes(),
        ),
        (
            "type upper case",
            with(&|v| v["type"] = json!("ONLINE")).into_bytes(),
        ),
        ("type number", with(&|v| v["type"] = json!(1)).into_bytes()),
        (
            "peerId with NUL",
            with(&|v| v["peerId"] = json!("12D3KooW\u{0}x")).into_bytes(),
        ),
        (
            "peerId empty",
            with(&|v| v["peerId"] = json!("")).into_bytes(),
        ),
        (
            "content too long",
            with(&|v| v["content"] = json!("c".repeat(5000))).into_bytes(),
        ),
        (
            "too many addrs",
            with(&|v| v["addrs"] = json!(vec!["/ip4/1.2.3.4/tcp/1"; 21])).into_bytes(),
        ),
        (
            "addrs not a list",
            with(&|v| v["addrs"] = json!("x")).into_bytes(),
        ),
        (
            "sig not base64",
            with(&|v| v["sig"] = json!("!!!")).into_bytes(),
        ),
        (
            "sig too short",
            with(&|v| v["sig"] = json!("AAAA")).into_bytes(),
        ),
        (
            "sig of another message",
            with(&|v| v["content"] = json!("changed after signing")).into_bytes(),
        ),
        ("body over 64 KiB", vec![b' '; 70 * 1024]),
    ];
    // Duplicate keys: the second `type` would change what was signed.
    let text = good.to_string();
    bodies.push((
        "duplicate key",
        text.replacen('{', "{\"type\":\"offline\",", 1).into_bytes(),
    ));
    let client = reqwest::Client::new();
    for (name, body) in bodies {
        let response = client
            .post(format!("{}/publish", hub.url))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            (400..=413).contains(&status) && answer["error"].is_string(),
            "{name}: {status} {answer}"
        );
    }
    assert!(hub.peers().await.is_empty());
    assert_eq!(
        hub.publish(peer.json(PresenceType::Online, "still fine"))
            .await
            .0,
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_and_oversized_request_heads_get_an_error_not_a_crash() {
    let hub = TestHub::spawn().await;
    let peer = TestPeer::spawn("Probed", |c| short_ttl(c, 6)).await;
    let console = peer.console_addr.unwrap();
    let many_headers: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let probes: Vec<(&str, Vec<u8>)> = vec![
        (
            "300 headers",
            format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{many_headers}\r\n").into_bytes(),
        ),
        (
            "header without a colon",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColon\r\n\r\n".to_vec(),
        ),
        (
            "NUL in a header",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\0b\r\n\r\n".to_vec(),
        ),
        (
            "folded header",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
        ),
        (
            "request line of 70 KiB",
            format!(
                "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                "a".repeat(70 * 1024)
            )
            .into_bytes(),
        ),
        (
            "unknown version",
            b"GET / HTTP/7.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        ),
        (
            "length and chunked together",
            b"POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "bad chunk size",
            b"POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n\
              zz\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "two lengths",
            b"POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\
              Content-Length: 4\r\n\r\nabcd"
                .to_vec(),
        ),
        ("chunked body over the limit", {
            let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
            format!(
                    "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                    chunk.repeat(2)
                )
                .into_bytes()
        }),
    ];
    for addr in [hub.addr, console] {
        for (name, request) in &probes {
            let answer = raw_exchange(addr, request).await;
            let status = status_of(&answer);
            assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "{name} on {addr}: {}",
                answer.lines().next().unwrap_or("")
            );
        }
        let health = no_redirects()
            .get(format!("http://{addr}/"))
            .timeout(WAIT)
            .send()
            .await
            .unwrap();
        assert_eq!(health.status().as_u16(), 200, "{addr} still answers");
    }
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_less_console_answers_only_loopback_hosts_and_its_own_pages() {
    let peer = TestPeer::spawn("Local", |c| short_ttl(c, 6)).await;
    let addr = peer.console_addr.unwrap();
    let port = addr.port();
    let get = |host: String, extra: &'static [(&'static str, &'static str)]| async move {
        let mut request = format!("GET /api/peers HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in extra {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        status_of(&raw_exchange(addr, request.as_bytes()).await)
    };
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
        format!("127.0.0.2:{port}"),
    ] {
        assert_eq!(get(host.clone(), &[]).await, Some(200), "Host: {host}");
    }
    // DNS rebinding: a name that is not loopback, however it dresses up.
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1@evil.example:{port}"),
        format!("[::1].evil.example:{port}"),
        format!("2130706433:{port}"),
        format!("0x7f000001:{port}"),
        format!("evil.example:{port}:{port}"),
        String::new(),
    ] {
        assert_eq!(get(host.clone(), &[]).await, Some(403), "Host: {host:?}");
    }
    // Through a proxy: not a local request.
    let local = format!("127.0.0.1:{port}");
    for header in [
        &[("X-Forwarded-For", "203.0.113.9")][..],
        &[("Forwarded", "for=203.0.113.9")][..],
    ] {
        assert_eq!(get(local.clone(), header).await, Some(403), "{header:?}");
    }
    // Another origin's request, however it is marked.
    for header in [
        &[("Origin", "null")][..],
        &[("Origin", "http://evil.example")][..],
        &[("Origin", "http://127.0.0.1.evil.example")][..],
        &[("Sec-Fetch-Site", "cross-site")][..],
        &[("Sec-Fetch-Site", "same-site")][..],
    ] {
        assert_eq!(get(local.clone(), header).await, Some(403), "{header:?}");
    }
    peer.shutdown().await;
}

fn gz(raw: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(raw).unwrap();
    encoder.finish().unwrap()
}

fn tar_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, size: u64, body: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn with_manifest(mut raw: Vec<u8>) -> Vec<u8> {
    let manifest = br#"{"name": "Bomb"}"#;
    tar_entry(
        &mut raw,
        "manifest.json",
        tar::EntryType::Regular,
        manifest.len() as u64,
        manifest,
    );
    raw.extend_from_slice(&[0; 1024]);
    raw
}

#[test]
fn template_bundle_bombs_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path().join("templates"));
    // 100 MiB of zeros in one file: a small upload that unpacks past the limit.
    let zeros = {
        let mut raw = Vec::new();
        let size = 100 * 1024 * 1024;
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"zeros.bin");
        header.set_mode(0o644);
        header.set_size(size);
        header.set_cksum();
        raw.extend_from_slice(header.as_bytes());
        raw.resize(raw.len() + size as usize, 0);
        with_manifest(raw)
    };
    let many = {
        let mut raw = Vec::new();
        for i in 0..3000 {
            tar_entry(&mut raw, &format!("f{i}"), tar::EntryType::Regular, 0, b"");
        }
        with_manifest(raw)
    };
    let deep = {
        let mut raw = Vec::new();
        let path = "d/".repeat(45) + "x";
        tar_entry(&mut raw, &path, tar::EntryType::Regular, 1, b"x");
        tar_entry(&mut raw, "index.html", tar::EntryType::Regular, 2, b"hi");
        with_manifest(raw)
    };
    let lying = {
        // A header that claims 1 GiB, followed by almost nothing.
        let mut raw = Vec::new();
        tar_entry(&mut raw, "liar", tar::EntryType::Regular, 1 << 30, b"short");
        raw
    };
    let devices = [
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ]
    .map(|kind| {
        let mut raw = Vec::new();
        tar_entry(&mut raw, "dev", kind, 0, b"");
        gz(&with_manifest(raw))
    });
    let mut bombs: Vec<(&str, Vec<u8>)> = vec![
        ("gzip bomb", gz(&zeros)),
        ("3000 entries", gz(&many)),
        ("lying size", gz(&lying)),
        ("not gzip", b"PK\x03\x04 a zip file".to_vec()),
        ("gzip of garbage", gz(b"not a tar archive at all")),
        ("over the upload limit", vec![0; 17 * 1024 * 1024]),
    ];
    for (index, device) in devices.into_iter().enumerate() {
        bombs.push((["char device", "block device", "fifo"][index], device));
    }
    for (name, bundle) in bombs {
        let started = std::time::Instant::now();
        let refused = store.install(&bundle, Some("bomb"));
        assert!(refused.is_err(), "{name} was installed");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} took {:?}",
            started.elapsed()
        );
    }
    // A deep but small path is fine; the store is otherwise untouched.
    assert_eq!(store.install(&gz(&deep), Some("deep")).unwrap(), "deep");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["deep".to_owned()]);
}

#[tokio::test]
async fn sql_injection_forms_in_filters_are_refused_and_change_nothing() {
    let (data, _dir) = crate::data::service().await;
    crate::data::notes_table(&data, json!({})).await;
    let visitor = crate::data::peer(crate::data::BOB);
    crate::data::run(
        &data,
        &visitor,
        json!({"op": "insert", "table": "notes", "data": {"title": "kept"}}),
    )
    .await
    .unwrap();
    for filter in [
        "1=1; DROP TABLE notes",
        "1=1 -- ",
        "1=1 /* */",
        "title = 'a' UNION SELECT sql FROM sqlite_master",
        "_id IN (SELECT _id FROM _tables)",
        "EXISTS (SELECT 1 FROM sqlite_schema)",
        "title = (SELECT group_concat(name) FROM pragma_table_list())",
        "load_extension('x')",
        "randomblob(1000000000) IS NOT NULL",
        "zeroblob(1000000000) IS NOT NULL",
        "title = char(39) || 'x'",
        "title = 'a''; DELETE FROM notes; --'",
        "title MATCH 'x'",
        "title REGEXP 'x'",
        "\"_owner\" = 'x' OR 1",
        "[_owner] = 'x'",
        "`_owner` = 'x'",
        "title = ? OR ?",
        "(((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))",
        "title = x'41'",
        "sqlite_version() = '3'",
        "printf('%999999999d', 1) = ''",
        "CAST(title AS BLOB) = 'x'",
        "title COLLATE nocase = 'KEPT' AND like('%', title, '\\')",
    ] {
        let refused = crate::data::run(
            &data,
            &visitor,
            json!({"op": "query", "table": "notes", "where": filter, "args": ["x"]}),
        )
        .await;
        assert!(
            matches!(refused, Err(DataError::BadRequest(_))),
            "{filter}: {refused:?}"
        );
    }
    for order in [
        "title; DROP TABLE notes",
        "(SELECT 1 FROM _tables)",
        "randomblob(10)",
        "title COLLATE evil",
    ] {
        let refused = crate::data::run(
            &data,
            &visitor,
            json!({"op": "query", "table": "notes", "order": order}),
        )
        .await;
        assert!(
            matches!(refused, Err(DataError::BadRequest(_))),
            "order {order}: {refused:?}"
        );
    }
    let rows = crate::data::run(
        &data,
        &Caller::Owner,
        json!({"op": "query", "table": "notes", "columns": ["title"]}),
    )
    .await
    .unwrap();
    assert_eq!(rows, json!([{"title": "kept"}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_escape_forms_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let probes = [
        (
            "string metatable",
            "return getmetatable('').__index.dump(call)",
        ),
        ("string dump by method", "return ('').dump(call)"),
        (
            "load with an env",
            "return load('return os', 'x', 't', _G)().execute('id')",
        ),
        (
            "rawget of io",
            "return rawget(_G, 'io').open('/etc/passwd')",
        ),
        ("package", "return package.loadlib('/lib/x.so', 'f')"),
        ("os.exit", "os.exit(1)"),
        ("os.getenv", "return os.getenv('HOME')"),
        ("os.remove", "return os.remove('/tmp/x')"),
        ("io.popen", "return io.popen('id')"),
        ("loadstring", "return loadstring('return 1')()"),
        (
            "debug via coroutine",
            "return coroutine.wrap(function() return debug.traceback() end)()",
        ),
        ("collectgarbage count", "return collectgarbage('step', 1e9)"),
        ("binary chunk", "return load(string.char(27) .. 'Lua')()"),
    ];
    for (index, (name, body)) in probes.iter().enumerate() {
        crate::lua::write(
            dir.path(),
            &format!("probe{index}"),
            &format!("function call(request)\n  {body}\nend\n"),
        );
        let _ = name;
    }
    let engine = crate::lua::start_setup(crate::lua::setup(dir.path(), 2000, 10_000, 10_000));
    for (index, (name, _)) in probes.iter().enumerate() {
        let outcome = crate::lua::call(&engine, &format!("probe{index}"), json!({})).await;
        assert!(
            matches!(outcome, Err(LuaError::Script(_))),
            "{name}: {outcome:?}"
        );
    }
    // The engine still answers.
    crate::lua::write(dir.path(), "fine", "function call(request) return 42 end\n");
    let engine = crate::lua::start_setup(crate::lua::setup(dir.path(), 2000, 10_000, 10_000));
    assert_eq!(
        crate::lua::call(&engine, "fine", json!({})).await.unwrap(),
        42
    );
}
