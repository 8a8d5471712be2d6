//! A peer's hub client against a real hub: WebSocket and event-stream transports, announcement
//! changes, goodbye on stop, and reconnection when the hub comes back.

use std::time::Duration;

use goop2::identity::Keypair;
use goop2::services::hub::presence::PresenceType;
use goop2::services::presence::hub_client::{
    Announcement, HubClient, HubClientOptions, HubLink, LinkEvent, Transport,
};
use tokio::sync::{mpsc, watch};

use crate::support::{TestHub, TestIdentity, eventually};

const WAIT: Duration = Duration::from_secs(10);

fn announcement(label: &str) -> Announcement {
    Announcement {
        content: label.into(),
        addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        ..Announcement::default()
    }
}

async fn next(
    events: &mut mpsc::Receiver<LinkEvent>,
    pred: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the expected hub event")
            .expect("the client is running");
        if pred(&event) {
            return event;
        }
    }
}

async fn label_on_hub(hub: &TestHub, peer_id: &str) -> Option<String> {
    hub.peers()
        .await
        .into_iter()
        .find(|p| p["peerId"] == peer_id)
        .and_then(|p| p["content"].as_str().map(str::to_owned))
}

async fn announces_and_listens(websocket: bool) {
    let hub = TestHub::spawn().await;
    let keypair = Keypair::generate_ed25519();
    let me = keypair.public().to_peer_id().to_base58();
    let (set_announcement, announcements) = watch::channel(announcement("Alice"));
    let mut options = HubClientOptions::new(hub.url.parse().unwrap(), Duration::from_secs(5));
    options.websocket = websocket;
    let (client, mut events) = HubClient::spawn(options, keypair, announcements);

    let expected = if websocket {
        Transport::WebSocket
    } else {
        Transport::EventStream
    };
    next(
        &mut events,
        |e| matches!(e, LinkEvent::Connected(t) if *t == expected),
    )
    .await;
    assert!(
        eventually(WAIT, async || label_on_hub(&hub, &me).await.as_deref()
            == Some("Alice"))
        .await
    );
    let listed = hub.peers().await;
    assert_eq!(listed[0]["signed"], true, "the client signs its presence");

    // Others' presence arrives through the hub.
    let mut bob = TestIdentity::new();
    assert_eq!(
        hub.publish(bob.json(PresenceType::Online, "Bob")).await.0,
        204
    );
    match next(
        &mut events,
        |e| matches!(e, LinkEvent::Presence(p) if p.peer_id == bob.id),
    )
    .await
    {
        LinkEvent::Presence(presence) => {
            assert_eq!(presence.content.as_deref(), Some("Bob"));
            assert_eq!(presence.signed, Some(true));
        }
        _ => unreachable!(),
    }

    // A new announcement goes out at once, not at the next heartbeat.
    set_announcement.send_replace(announcement("Alice in Wonderland"));
    assert!(
        eventually(Duration::from_secs(2), async || {
            label_on_hub(&hub, &me).await.as_deref() == Some("Alice in Wonderland")
        })
        .await
    );

    client.stop().await;
    assert!(
        eventually(WAIT, async || label_on_hub(&hub, &me).await.is_none()).await,
        "offline on stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_announces_itself_and_listens_over_the_websocket() {
    announces_and_listens(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_announces_itself_and_listens_over_the_event_stream() {
    announces_and_listens(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hub_does_not_stop_the_client_and_it_connects_when_the_hub_returns() {
    // A port with nothing on it, for now.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let keypair = Keypair::generate_ed25519();
    let me = keypair.public().to_peer_id().to_base58();
    let (_keep, announcements) = watch::channel(announcement("Patient"));
    let mut options = HubClientOptions::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(1),
    );
    options.initial_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_millis(400);
    let (client, mut events) = HubClient::spawn(options, keypair, announcements);

    let mut waits = Vec::new();
    for _ in 0..3 {
        if let LinkEvent::Disconnected { retry_in, .. } =
            next(&mut events, |e| matches!(e, LinkEvent::Disconnected { .. })).await
        {
            waits.push(retry_in);
        }
    }
    assert!(
        waits.iter().all(|w| *w <= Duration::from_millis(400)),
        "{waits:?}"
    );

    let hub = TestHub::spawn_with(|c| c.presence.rendezvous_port = Some(port), |_| {}).await;
    next(&mut events, |e| matches!(e, LinkEvent::Connected(_))).await;
    assert!(
        eventually(WAIT, async || label_on_hub(&hub, &me).await.as_deref()
            == Some("Patient"))
        .await
    );
    client.stop().await;
}

/// A peer stopped while its link is down — its hub restarted, the link not back yet — still
/// says goodbye: the restarted hub, which restored the peer from its database, lets it go at
/// once rather than when its TTL runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stopped_while_its_link_is_down_still_says_goodbye() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("peers.db").display().to_string();
    let hub_on_port = async || {
        TestHub::spawn_with(
            |c| {
                c.presence.rendezvous_port = Some(port);
                c.presence.peer_db_path = db_path.clone();
                c.presence.ttl_seconds = 120;
            },
            |_| {},
        )
        .await
    };
    let mut hub = hub_on_port().await;
    let keypair = Keypair::generate_ed25519();
    let me = keypair.public().to_peer_id().to_base58();
    let (_keep, announcements) = watch::channel(announcement("Leaving"));
    let mut options = HubClientOptions::new(hub.url.parse().unwrap(), Duration::from_secs(5));
    // Reconnects only long after the hub is back.
    options.initial_backoff = Duration::from_secs(60);
    options.max_backoff = Duration::from_secs(60);
    let (client, mut events) = HubClient::spawn(options, keypair, announcements);
    next(&mut events, |e| matches!(e, LinkEvent::Connected(_))).await;
    assert!(eventually(WAIT, async || label_on_hub(&hub, &me).await.is_some()).await);

    hub.stop().await;
    next(&mut events, |e| matches!(e, LinkEvent::Disconnected { .. })).await;
    let hub = hub_on_port().await;
    assert!(
        label_on_hub(&hub, &me).await.is_some(),
        "a graceful stop left the peer online, and the restarted hub restored it"
    );
    client.stop().await;
    assert_eq!(
        label_on_hub(&hub, &me).await,
        None,
        "the goodbye reached the restarted hub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hub_is_retried_after_its_retry_after() {
    let hub = TestHub::spawn_with(|c| c.presence.max_streams = 1, |_| {}).await;
    let _occupant = crate::support::SseClient::connect(&format!("{}/events", hub.url), None).await;
    let (_keep, announcements) = watch::channel(announcement("Late"));
    let options = HubClientOptions::new(hub.url.parse().unwrap(), Duration::from_secs(5));
    let (client, mut events) =
        HubClient::spawn(options, Keypair::generate_ed25519(), announcements);
    match next(&mut events, |e| matches!(e, LinkEvent::Disconnected { .. })).await {
        LinkEvent::Disconnected { reason, retry_in } => {
            assert_eq!(
                retry_in,
                Duration::from_secs(10),
                "the hub's Retry-After: {reason}"
            );
            assert!(reason.contains("503"), "{reason}");
        }
        _ => unreachable!(),
    }
    client.stop().await;
}

/// A TCP proxy in front of a hub that can cut every connection and refuse new ones for a while,
/// and keeps the request head of each connection it passes on.
struct CuttableProxy {
    url: String,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: std::net::SocketAddr) -> CuttableProxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = CuttableProxy {
            url: format!("http://{}", listener.local_addr().unwrap()),
            open: Default::default(),
            heads: Default::default(),
            links: Default::default(),
        };
        proxy.open.store(true, Ordering::SeqCst);
        let (open, heads, links) = (proxy.open.clone(), proxy.heads.clone(), proxy.links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !open.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let heads = heads.clone();
                let link = tokio::spawn(async move {
                    let mut hub = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let mut first = vec![0u8; 8192];
                    let n = client.read(&mut first).await.unwrap_or(0);
                    heads
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&first[..n]).into_owned());
                    if hub.write_all(&first[..n]).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut hub).await;
                });
                links.lock().unwrap().push(link);
            }
        });
        proxy
    }

    /// Cuts every open connection and refuses new ones until [`CuttableProxy::reopen`].
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn reopen(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The request heads of event-stream requests, in order.
    fn event_requests(&self) -> Vec<String> {
        self.requests("GET /events")
    }

    /// The request heads that start with `start`, in order.
    fn requests(&self, start: &str) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .filter(|head| head.starts_with(start))
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_event_stream_resumes_with_last_event_id_and_misses_nothing() {
    let hub = TestHub::spawn().await;
    let proxy = CuttableProxy::start(hub.addr).await;
    let keypair = Keypair::generate_ed25519();
    let (_keep, announcements) = watch::channel(announcement("Resumer"));
    let mut options = HubClientOptions::new(proxy.url.parse().unwrap(), Duration::from_secs(5));
    options.websocket = false;
    options.initial_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_millis(300);
    let (client, mut events) = HubClient::spawn(options, keypair, announcements);
    next(&mut events, |e| {
        matches!(e, LinkEvent::Connected(Transport::EventStream))
    })
    .await;

    let mut bob = TestIdentity::new();
    assert_eq!(
        hub.publish(bob.json(PresenceType::Online, "Bob")).await.0,
        204
    );
    next(
        &mut events,
        |e| matches!(e, LinkEvent::Presence(p) if p.peer_id == bob.id),
    )
    .await;
    let first = proxy.event_requests();
    assert_eq!(first.len(), 1);
    assert!(
        !first[0].to_ascii_lowercase().contains("last-event-id"),
        "a first connection has nothing to resume: {}",
        first[0]
    );

    // The stream is cut; meanwhile the hub hears news the client must not miss.
    proxy.cut();
    next(&mut events, |e| matches!(e, LinkEvent::Disconnected { .. })).await;
    let mut carol = TestIdentity::new();
    assert_eq!(
        hub.publish(carol.json(PresenceType::Online, "Carol"))
            .await
            .0,
        204
    );
    assert_eq!(
        hub.publish(bob.json(PresenceType::Update, "Bob, renamed"))
            .await
            .0,
        204
    );
    proxy.reopen();

    // After the reconnect, exactly what was missed arrives, in order, with no reset.
    next(&mut events, |e| {
        matches!(e, LinkEvent::Connected(Transport::EventStream))
    })
    .await;
    let mut replayed = Vec::new();
    while replayed.len() < 2 {
        match next(&mut events, |e| {
            matches!(e, LinkEvent::Presence(_) | LinkEvent::Reset)
        })
        .await
        {
            LinkEvent::Reset => panic!("the hub could not resume the stream"),
            LinkEvent::Presence(p) if p.peer_id == carol.id || p.peer_id == bob.id => {
                replayed.push(p.content.unwrap_or_default())
            }
            _ => {}
        }
    }
    assert_eq!(replayed, ["Carol", "Bob, renamed"]);
    let resumed = proxy.event_requests();
    let last = resumed.last().unwrap().to_ascii_lowercase();
    assert!(
        last.contains("last-event-id: "),
        "the reconnect names the last event it saw: {last}"
    );
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_websocket_resumes_from_the_position_the_hub_sent_and_misses_nothing() {
    // Positions come with the keep-alive: a short one, so the client has a recent one.
    let hub = TestHub::spawn_with(|_| {}, |o| o.keepalive = Duration::from_millis(200)).await;
    let proxy = CuttableProxy::start(hub.addr).await;
    let keypair = Keypair::generate_ed25519();
    let (_keep, announcements) = watch::channel(announcement("Resumer"));
    let mut options = HubClientOptions::new(proxy.url.parse().unwrap(), Duration::from_secs(5));
    options.initial_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_millis(300);
    let (client, mut events) = HubClient::spawn(options, keypair, announcements);
    next(&mut events, |e| {
        matches!(e, LinkEvent::Connected(Transport::WebSocket))
    })
    .await;
    let mut bob = TestIdentity::new();
    hub.publish(bob.json(PresenceType::Online, "Bob")).await;
    next(
        &mut events,
        |e| matches!(e, LinkEvent::Presence(p) if p.peer_id == bob.id),
    )
    .await;
    let first = proxy.requests("GET /ws");
    assert_eq!(first.len(), 1);
    assert!(!first[0].contains("last_event_id="), "{}", first[0]);
    // Long enough for a keep-alive to bring the position after Bob.
    tokio::time::sleep(Duration::from_millis(800)).await;

    proxy.cut();
    next(&mut events, |e| matches!(e, LinkEvent::Disconnected { .. })).await;
    let mut carol = TestIdentity::new();
    hub.publish(carol.json(PresenceType::Online, "Carol")).await;
    hub.publish(bob.json(PresenceType::Update, "Bob, renamed"))
        .await;
    proxy.reopen();

    next(&mut events, |e| {
        matches!(e, LinkEvent::Connected(Transport::WebSocket))
    })
    .await;
    // The hub resumed (no reset, no snapshot): exactly what was missed, in order.
    let mut seen = Vec::new();
    let mut resumed = false;
    while seen.len() < 2 {
        match next(&mut events, |e| {
            matches!(
                e,
                LinkEvent::Presence(_) | LinkEvent::Reset | LinkEvent::Resumed
            )
        })
        .await
        {
            LinkEvent::Reset => panic!("the hub could not resume the stream"),
            LinkEvent::Resumed => resumed = true,
            LinkEvent::Presence(p) => seen.push(p.content.unwrap_or_default()),
            _ => {}
        }
    }
    assert!(resumed, "the client noted that the hub resumed");
    assert_eq!(seen, ["Carol", "Bob, renamed"]);
    let last = proxy.requests("GET /ws").pop().unwrap();
    assert!(
        last.contains("positions=1") && last.contains("last_event_id="),
        "the reconnect names its position: {last}"
    );
    client.stop().await;
}

/// A TLS front for a hub (a self-signed certificate for `localhost`), as Caddy or nginx would
/// be; returns its `https://` URL and the certificate to trust.
async fn tls_front(
    upstream: std::net::SocketAddr,
) -> (String, rustls::pki_types::CertificateDer<'static>) {
    use std::sync::Arc;
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_der = cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let mut hub = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut hub).await;
            });
        }
    });
    (format!("https://localhost:{port}"), cert_der)
}

async fn over_tls(websocket: bool) {
    let hub = TestHub::spawn().await;
    let (url, cert) = tls_front(hub.addr).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let keypair = Keypair::generate_ed25519();
    let me = keypair.public().to_peer_id().to_base58();
    let (_keep, announcements) = watch::channel(announcement("Secure"));
    let mut options = HubClientOptions::new(
        goop2::services::presence::hub_client::parse_hub_url(&url).unwrap(),
        Duration::from_secs(5),
    );
    options.websocket = websocket;
    options.tls = goop2::services::presence::tls::with_roots(roots);
    let (client, mut events) = HubClient::spawn(options, keypair, announcements);
    let expected = if websocket {
        Transport::WebSocket
    } else {
        Transport::EventStream
    };
    next(
        &mut events,
        |e| matches!(e, LinkEvent::Connected(t) if *t == expected),
    )
    .await;
    assert!(
        eventually(WAIT, async || label_on_hub(&hub, &me).await.as_deref()
            == Some("Secure"))
        .await
    );
    let mut bob = TestIdentity::new();
    assert_eq!(
        hub.publish(bob.json(PresenceType::Online, "Bob")).await.0,
        204
    );
    next(
        &mut events,
        |e| matches!(e, LinkEvent::Presence(p) if p.peer_id == bob.id),
    )
    .await;
    client.stop().await;
    assert!(
        eventually(WAIT, async || label_on_hub(&hub, &me).await.is_none()).await,
        "offline on stop, over TLS too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_hub_is_reached_over_a_tls_websocket() {
    over_tls(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_hub_is_reached_over_a_tls_event_stream() {
    over_tls(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_certificate_nobody_vouches_for_is_refused() {
    let hub = TestHub::spawn().await;
    let (url, _untrusted) = tls_front(hub.addr).await;
    let keypair = Keypair::generate_ed25519();
    let me = keypair.public().to_peer_id().to_base58();
    let (_keep, announcements) = watch::channel(announcement("Careful"));
    let mut options = HubClientOptions::new(url.parse().unwrap(), Duration::from_secs(1));
    options.initial_backoff = Duration::from_millis(100);
    options.max_backoff = Duration::from_millis(200);
    let (client, mut events) = HubClient::spawn(options, keypair, announcements);
    match next(&mut events, |e| matches!(e, LinkEvent::Disconnected { .. })).await {
        LinkEvent::Disconnected { reason, .. } => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        _ => unreachable!(),
    }
    // Neither transport got through.
    for _ in 0..3 {
        next(&mut events, |e| matches!(e, LinkEvent::Disconnected { .. })).await;
    }
    assert!(label_on_hub(&hub, &me).await.is_none());
    drop(client);
}

/// Log lines written while a test runs on this thread (a current-thread runtime runs every task
/// of the test here).
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        crate::support::keep_log_interest();
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines_with(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_server_that_is_not_a_hub_is_named_as_such_and_logged_once() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    // A web server, but no hub: every path is 404.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new()).await.unwrap();
    });
    let (_set, announcements) = watch::channel(announcement("Alice"));
    let mut options = HubClientOptions::new(url.parse().unwrap(), Duration::from_secs(5));
    options.initial_backoff = Duration::from_millis(20);
    options.max_backoff = Duration::from_millis(40);
    let (client, mut events) =
        HubClient::spawn(options, Keypair::generate_ed25519(), announcements);
    let status = client.status();
    for _ in 0..5 {
        next(&mut events, |e| matches!(e, LinkEvent::Disconnected { .. })).await;
    }
    let now = status.borrow().clone();
    match &now.link {
        HubLink::Down { reason, .. } => assert_eq!(
            reason, "404: this is not a Goop hub (no event stream at /events)",
            "{now:?}"
        ),
        other => panic!("{other:?}"),
    }
    let warnings = logs.lines_with("hub connection lost");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("WARN"), "{warnings:?}");
}

#[tokio::test]
async fn a_ban_is_shown_with_its_end_and_logged_once() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let hub = TestHub::spawn().await;
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let (_set, announcements) = watch::channel(announcement("Mallory"));
    let options = HubClientOptions::new(hub.url.parse().unwrap(), Duration::from_millis(100));
    let (client, mut events) = HubClient::spawn(options, keypair, announcements);
    let status = client.status();
    next(&mut events, |e| matches!(e, LinkEvent::Connected(_))).await;
    assert!(
        matches!(
            status.borrow().link,
            HubLink::Connected {
                transport: Transport::WebSocket,
                ..
            }
        ),
        "{:?}",
        status.borrow()
    );
    hub.hub()
        .ban(peer, Duration::from_secs(3600))
        .await
        .unwrap();
    let refused = async || status.borrow().refused.clone();
    assert!(eventually(WAIT, async || refused().await.is_some()).await);
    // Many heartbeats later the hub still refuses; the log said so once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = refused().await.unwrap();
    assert!(text.starts_with("banned from this hub until "), "{text}");
    let until = text.trim_start_matches("banned from this hub until ");
    let year = until.get(..4).and_then(|y| y.parse::<u32>().ok());
    assert!(
        year.is_some_and(|y| y >= 2024) && until.ends_with(" UTC"),
        "{text}"
    );
    let warnings = logs.lines_with("refuses our presence");
    assert_eq!(warnings.len(), 1, "{warnings:?} {:?}", logs.lines_with(""));
}
