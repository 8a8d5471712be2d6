//! Helpers for hubs that share PostgreSQL: a fresh database per test on the server that
//! `GOOP2_TEST_POSTGRES` names, a private server a test may stop and start, nginx in front of
//! several instances, and a subscriber that resumes with `Last-Event-ID` as a browser does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;
use tokio::sync::watch;

use super::{SseClient, SseEvent};

/// How to get a server when none is configured.
const HOW_TO_START: &str = "these tests need PostgreSQL: `apt-get install postgresql`, then \
     `eval \"$(bash .ci/postgres)\"` starts a server on 127.0.0.1 and exports \
     GOOP2_TEST_POSTGRES and GOOP2_TEST_POSTGRES_BIN (.ci/run does both)";

/// The URL of a role that may create databases, from `GOOP2_TEST_POSTGRES`.
pub fn server_url() -> String {
    match std::env::var("GOOP2_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("GOOP2_TEST_POSTGRES is not set: {HOW_TO_START}"),
    }
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDatabase {
    pub url: String,
    name: String,
    server: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server = server_url();
        let name = format!("goop_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot reach GOOP2_TEST_POSTGRES ({e}): {HOW_TO_START}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&format!("/{name}"));
        TestDatabase {
            url: url.to_string(),
            name,
            server,
        }
    }

    /// The password in the URL (for checking it is never shown).
    pub fn password(&self) -> String {
        url::Url::parse(&self.url)
            .unwrap()
            .password()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // A runtime of its own: this may run inside (or after) the test's runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&server).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// PostgreSQL's server programs: `GOOP2_TEST_POSTGRES_BIN`, else Debian's newest.
fn server_programs() -> PathBuf {
    if let Ok(dir) = std::env::var("GOOP2_TEST_POSTGRES_BIN")
        && !dir.is_empty()
    {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .unwrap_or_else(|| panic!("no PostgreSQL server programs found: {HOW_TO_START}"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL server of the test's own, which it may stop and start.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    pub url: String,
    as_root: bool,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let bin = server_programs();
        let dir = tempfile::tempdir().unwrap();
        let as_root = running_as_root();
        let password = format!("pw{:012x}", rand::random::<u64>() >> 16);
        std::fs::write(dir.path().join("pw"), &password).unwrap();
        if as_root {
            // The server refuses to run as root; it runs as `postgres`, which must own its files.
            let owned = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owned.success(), "chown to postgres");
        }
        let port = super::free_port();
        let server = PrivatePostgres {
            url: format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            port,
            as_root,
        };
        let data = server.dir.path().join("data");
        let pwfile = server.dir.path().join("pw");
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-instructions",
            ],
        );
        server.resume();
        server
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops the server, closing every connection.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn password(&self) -> String {
        url::Url::parse(&self.url)
            .unwrap()
            .password()
            .unwrap()
            .to_owned()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bin.join("pg_ctl");
        let mut command = if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The first of `paths` that exists, or a failure that says how to install `package`.
fn installed(package: &str, paths: &[&'static str]) -> &'static str {
    paths
        .iter()
        .copied()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("{package} is missing: `apt-get install {package}` (.ci/run installs it)")
        })
}

/// nginx in front of hub instances: round robin, streams unbuffered, WebSocket upgrades passed
/// on, `X-Forwarded-For` set (the hubs trust 127.0.0.1), a failed instance skipped.
pub struct Nginx {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(upstream_ports: &[u16]) -> Self {
        let program = installed("nginx", &["/usr/sbin/nginx", "/usr/bin/nginx"]);
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let servers: String = upstream_ports
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;\n"))
            .collect();
        let root = dir.path().display();
        let user = if running_as_root() {
            "user root;\n"
        } else {
            ""
        };
        let config = format!(
            "{user}daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    upstream hubs {{
{servers}        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://hubs;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
        }}
    }}
}}
"
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(program)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits (a SIGKILL would leave them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Caddy running `deploy/Caddyfile.three-instances` as shipped, with this test's ports and
/// plain HTTP on loopback in place of the example host name, without its admin endpoint; killed
/// on drop.
pub struct Caddy {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

/// The upstreams the shipped Caddyfile names.
const SHIPPED_UPSTREAMS: &str = "127.0.0.1:8787 127.0.0.1:8788 127.0.0.1:8789";

impl Caddy {
    pub fn start(upstream_ports: &[u16]) -> Self {
        let program = installed("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"]);
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/Caddyfile.three-instances"
        ))
        .unwrap();
        assert!(
            shipped.contains("hubs.example.org {")
                && shipped.matches(SHIPPED_UPSTREAMS).count() == 4,
            "the shipped Caddyfile changed shape; this test rewrites its host and upstreams"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let upstreams: Vec<String> = upstream_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let config = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}\n}}\n\n{}",
            dir.path().join("data").display(),
            shipped
                .replace("hubs.example.org {", &format!("http://127.0.0.1:{port} {{"))
                .replace(SHIPPED_UPSTREAMS, &upstreams.join(" "))
        );
        let config_path = dir.path().join("Caddyfile");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("caddy.log")).unwrap();
        let child = Command::new(program)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&config_path)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let caddy = Caddy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "caddy did not start: {}",
                caddy.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        caddy
    }

    /// What Caddy has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a [`Subscriber`] has seen.
#[derive(Default)]
pub struct Seen {
    pub events: Vec<SseEvent>,
    /// `event: reset` frames: the hub could not resume the stream.
    pub resets: usize,
    /// Connections made, the first included.
    pub connections: usize,
    pub last_id: Option<String>,
}

/// An event stream that reconnects with `Last-Event-ID`, as a browser's EventSource does.
pub struct Subscriber {
    pub seen: Arc<Mutex<Seen>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub fn spawn(url: &str) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, mut stopped) = watch::channel(false);
        let url = url.to_owned();
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            let connected = AtomicUsize::new(0);
            while !*stopped.borrow() {
                let last_id = shared.lock().unwrap().last_id.clone();
                let headers: Vec<(&str, &str)> = match &last_id {
                    Some(id) => vec![("Last-Event-ID", id.as_str())],
                    None => Vec::new(),
                };
                match SseClient::try_connect_with(&url, &headers).await {
                    Ok(mut client) if client.status == 200 => {
                        shared.lock().unwrap().connections =
                            connected.fetch_add(1, Ordering::Relaxed) + 1;
                        loop {
                            tokio::select! {
                                next = client.next(Duration::from_secs(1)) => match next {
                                    Some(event) => {
                                        let mut seen = shared.lock().unwrap();
                                        if event.event.as_deref() == Some("reset") {
                                            seen.resets += 1;
                                            continue;
                                        }
                                        if let Some(id) = &event.id {
                                            seen.last_id = Some(id.clone());
                                        }
                                        seen.events.push(event);
                                    }
                                    None if client.ended => break,
                                    None => {}
                                },
                                _ = stopped.changed() => return,
                            }
                        }
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Subscriber { seen, stop, task }
    }

    /// Waits (at most `wait`) until `check` holds for what was seen.
    pub async fn until(&self, wait: Duration, check: impl Fn(&Seen) -> bool) -> bool {
        super::eventually(wait, async || check(&self.seen.lock().unwrap())).await
    }

    pub async fn stop(self) -> Seen {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        Arc::try_unwrap(self.seen)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_default()
    }
}
