//! Heartbeats on kept-alive connections: a peer whose stream is an event stream publishes on a
//! connection of its own, again and again. Those publishes are answered off the socket, through
//! the same router, and the connection waits for the next one without hyper's buffers; anything
//! else on it goes to hyper.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use goop2::services::hub::presence::PresenceType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestHub, TestIdentity, eventually, read_response};

const WAIT: Duration = Duration::from_secs(10);

fn publish_request(addr: SocketAddr, body: &str, extra: &str) -> String {
    format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// Sends `request` and reads everything the hub answers until it closes the connection.
async fn send_and_read_to_close(stream: &mut TcpStream, request: &str) -> Vec<u8> {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the hub answers and closes the connection")
        .unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_on_one_kept_alive_connection_are_answered_in_order_then_hyper_takes_over() {
    let hub = TestHub::spawn().await;
    let addr = hub.addr;
    let mut alice = TestIdentity::new();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut pending = Vec::new();

    // Two requests in one write: a publish, then a body that is not JSON.
    let first = publish_request(addr, &alice.json(PresenceType::Online, "Alice"), "");
    let second = publish_request(addr, "{not json", "");
    stream
        .write_all(format!("{first}{second}").as_bytes())
        .await
        .unwrap();
    let (head, body) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 204 no content\r\n"), "{head}");
    assert!(
        !head.contains("content-length"),
        "a 204 has no length: {head}"
    );
    assert!(
        head.contains("x-content-type-options: nosniff\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body, "");
    let (head, body) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 400 bad request\r\n"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );

    // A heartbeat later, on the same connection: the label it carries is listed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = publish_request(addr, &alice.json(PresenceType::Update, "Alice again"), "");
    stream.write_all(third.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 204 "), "{head}");
    let peers = hub.peers().await;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["content"], "Alice again");

    // Another kind of request on it: hyper answers that, and what comes after.
    let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(health.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert_eq!(body, "ok");
    let fourth = publish_request(addr, &alice.json(PresenceType::Update, "Alice later"), "");
    stream.write_all(fourth.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 204 "), "{head}");
    assert_eq!(hub.peers().await[0]["content"], "Alice later");

    // A publish that asks to close is answered, and the hub closes.
    let mut closing = TcpStream::connect(addr).await.unwrap();
    let last = publish_request(
        addr,
        &alice.json(PresenceType::Offline, "Alice"),
        "Connection: close\r\n",
    );
    let rest = send_and_read_to_close(&mut closing, &last).await;
    let text = String::from_utf8_lossy(&rest).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 204 "), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    eventually(WAIT, || async { hub.peers().await.is_empty() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_hub_cannot_take_off_the_socket_is_still_answered() {
    let hub = TestHub::spawn().await;
    let addr = hub.addr;
    let mut alice = TestIdentity::new();
    let body = alice.json(PresenceType::Online, "Chunked");
    // A chunked body, and a body that waits for `100 Continue`: hyper's to answer.
    let chunked = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut pending = Vec::new();
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 204 "), "{head}");
    assert_eq!(hub.peers().await[0]["content"], "Chunked");

    let body = alice.json(PresenceType::Update, "Continued");
    let mut pending = Vec::new();
    let expect = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(expect.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 100 continue\r\n"), "{head}");
    stream.write_all(body.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 204 "), "{head}");
    assert_eq!(hub.peers().await[0]["content"], "Continued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_waiting_for_its_next_heartbeat_does_not_hold_up_a_stop() {
    let mut hub = TestHub::spawn().await;
    let addr = hub.addr;
    let mut alice = TestIdentity::new();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut pending = Vec::new();
    let request = publish_request(addr, &alice.json(PresenceType::Online, "Alice"), "");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream, &mut pending).await;
    assert!(head.starts_with("http/1.1 204 "), "{head}");
    let started = Instant::now();
    hub.stop().await;
    let stopped = started.elapsed();
    // The drain timeout is 8 s; an idle connection is not an open request.
    assert!(stopped < Duration::from_secs(4), "stopped in {stopped:?}");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("the connection is closed");
    assert!(matches!(read, Ok(0)), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_waiting_for_its_next_heartbeat_costs_the_hub_a_few_kib() {
    // Each connection sends one publish the hub refuses (so that no peer is added), and waits.
    let open_one = |addr: SocketAddr, from: IpAddr| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream
            .write_all(publish_request(addr, "{}", "").as_bytes())
            .await
            .unwrap();
        let (head, _) = read_response(&mut stream, &mut Vec::new()).await;
        assert!(head.starts_with("http/1.1 400 "), "{head}");
        stream
    };
    const CONNECTIONS: u32 = 500;
    let (each, grown) = crate::support::hub_memory_per_connection(5, CONNECTIONS, open_one).await;
    // Kept by hyper, each held its 8 KiB read and 8 KiB write buffers.
    assert!(
        each < 8.0,
        "{each:.1} KiB per kept-alive connection ({grown} KiB for {CONNECTIONS})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_whose_body_does_not_come_gets_the_json_error_and_is_closed() {
    let hub = TestHub::spawn_with(|_| {}, |o| o.header_read_timeout = Duration::from_secs(1)).await;
    let addr = hub.addr;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"type\":"
    );
    let answer = send_and_read_to_close(&mut stream, &head).await;
    let text = String::from_utf8(answer).unwrap();
    let lower = text.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 408 "), "{text}");
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{text}"
    );
    assert!(
        lower.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{text}"
    );
    assert!(lower.contains("\r\nconnection: close\r\n"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let error: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(error["code"], 408, "{body}");
    assert_eq!(error["error"], "the body took too long", "{body}");
    // Others are answered meanwhile and after.
    assert_eq!(
        hub.publish(TestIdentity::new().json(PresenceType::Online, "Bob"))
            .await
            .0,
        204
    );
}

/// A hub restarted under thousands of peers gets their connections at once: its listener lets
/// as many wait as the kernel allows (`net.core.somaxconn`), not the 1,024 tokio asks for, so
/// that a health probe among them is not dropped and retried a second later. The kernel reports
/// a listening socket's backlog as its send queue (`ss -ltn`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_lets_as_many_connections_wait_as_the_kernel_allows() {
    let hub = TestHub::spawn().await;
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("Linux reports net.core.somaxconn")
        .trim()
        .parse()
        .unwrap();
    let listed = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", hub.addr.port())])
        .output()
        .expect("ss (iproute2) lists listening sockets");
    let listed = String::from_utf8(listed.stdout).unwrap();
    // State, Recv-Q (waiting now), Send-Q (the backlog), local address, peer address.
    let backlog: u32 = listed
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no listener on {}: {listed:?}", hub.addr))
        .parse()
        .unwrap();
    assert_eq!(backlog, somaxconn.min(65_535), "{listed}");
    assert!(backlog > 1024 || somaxconn <= 1024, "{listed}");
}
