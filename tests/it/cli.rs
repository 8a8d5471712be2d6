//! The `goop2` binary: init, hash-password, --version, and the hub's port from `PORT`.

use std::fs;
use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

use goop2::config::Config;
use goop2::identity;
use goop2::services::auth;

fn goop2(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_goop2"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn init_creates_a_complete_peer_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("peers/alice");
    let out = goop2(&["init", dir.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let loaded = Config::load_dir(&dir).expect("init writes a valid goop.json");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.profile.label, "alice");
    let written = fs::read_to_string(dir.join("goop.json")).unwrap();
    assert!(
        written.contains("\"heartbeat_seconds\": 5"),
        "defaults are written out: {written}"
    );

    let key = identity::load_or_create(&dir.join("data/identity.key")).unwrap();
    assert!(!key.created, "init created the key");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("Peer ID: {}", key.peer_id)),
        "{stdout}"
    );

    let page = fs::read_to_string(dir.join("site/index.html")).unwrap();
    assert!(page.contains("<h1>Hello from my peer</h1>"));
}

#[test]
fn init_takes_a_label() {
    let root = tempfile::tempdir().unwrap();
    let out = goop2(
        &[
            "init",
            root.path().to_str().unwrap(),
            "--label",
            "Bob's blog",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        Config::load_dir(root.path()).unwrap().config.profile.label,
        "Bob's blog"
    );
}

#[test]
fn init_refuses_to_overwrite_an_existing_goop_json() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("goop.json");
    fs::write(&path, "{\"profile\": {\"label\": \"mine\"}}").unwrap();

    let out = goop2(&["init", root.path().to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: refusing to overwrite {}: it already exists. Edit it, or choose another \
             directory\n",
            path.display()
        )
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"profile\": {\"label\": \"mine\"}}"
    );
    assert!(
        !root.path().join("data").exists(),
        "nothing else was created"
    );
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    let out = goop2(&["hash-password"], b"correct horse\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let phc = text(&out.stdout);
    let phc = phc.trim_end();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(auth::verify_password(phc, "correct horse").unwrap());
    assert!(!auth::verify_password(phc, "correct horse\n").unwrap());
    assert!(!auth::verify_password(phc, "wrong").unwrap());
}

#[test]
fn hash_password_accepts_crlf_and_refuses_empty_or_oversized_input() {
    let out = goop2(&["hash-password"], b"s3cret\r\nignored second line\n");
    assert!(out.status.success());
    assert!(auth::verify_password(text(&out.stdout).trim_end(), "s3cret").unwrap());

    let out = goop2(&["hash-password"], b"\n");
    assert!(!out.status.success());
    assert_eq!(text(&out.stderr), "error: the password is empty\n");

    let out = goop2(&["hash-password"], &vec![b'a'; 5000]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "error: the password is longer than 1024 bytes\n"
    );
}

#[test]
fn version_prints_the_package_version() {
    let out = goop2(&["--version"], b"");
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("goop2 {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_every_command_with_the_launcher_as_the_default() {
    let out = goop2(&["--help"], b"");
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("Usage: goop2 [COMMAND]"), "{help}");
    for command in ["launch", "init", "peer", "rendezvous", "hash-password"] {
        assert!(help.contains(command), "{command}: {help}");
    }
    // The flag a launcher gives its children is not for people.
    let peer = text(&goop2(&["peer", "--help"], b"").stdout);
    assert!(!peer.contains("supervised"), "{peer}");
}

#[test]
fn peer_with_init_creates_a_demo_peer_and_runs_it() {
    use std::io::{BufRead, BufReader};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo-peer");
    let mut child = Command::new(env!("CARGO_BIN_EXE_goop2"))
        .args(["peer", "--init", dir.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let loaded = Config::load_dir(&dir).expect("--init wrote goop.json");
    assert_eq!(loaded.config.profile.label, "demo-peer");
    assert!(dir.join("site/index.html").is_file());
    if first.is_empty() {
        // Only another program on the default console port can stop the demo.
        let out = child.wait_with_output().unwrap();
        let errors = text(&out.stderr);
        assert!(
            errors.contains("viewer.http_addr"),
            "the demo peer stopped: {errors}"
        );
        return;
    }
    assert!(first.starts_with("Peer 12D3Koo"), "{first}");
    assert!(first.trim_end().ends_with(" is running"), "{first}");
    // 8080, or the next free port when another program has it.
    let mut console = String::new();
    stdout.read_line(&mut console).unwrap();
    assert_eq!(
        console.trim_end(),
        format!("Console: http://{}/", loaded.config.viewer.http_addr)
    );
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Created "));
}

/// The lines a hub prints before it listens, run under an open-file limit of `limit`.
fn hub_start_lines(limit: u32) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.presence.rendezvous_host = true;
    config.presence.rendezvous_port = Some(0);
    config.viewer.http_addr = String::new();
    config.save(&dir.path().join("goop.json")).unwrap();
    let script = format!(
        "ulimit -n {limit} && exec \"$0\" rendezvous {}",
        dir.path().display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_goop2")])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("rendezvous hub listening") {
            break;
        }
        lines.push(line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    lines
}

#[test]
fn a_hub_fits_its_streams_to_the_open_file_limit_and_warns_only_when_few_fit() {
    // The defaults (20,000 streams) on a machine allowing 3,000 files: served, and said once.
    let lines = hub_start_lines(3000);
    let said: Vec<&String> = lines.iter().filter(|l| l.contains("open-file")).collect();
    assert_eq!(said.len(), 1, "{lines:?}");
    assert!(said[0].contains(" INFO "), "{said:?}");
    assert!(said[0].contains("serving at most 1976"), "{said:?}");
    assert!(said[0].contains("LimitNOFILE=21024"), "{said:?}");
    assert!(!lines.iter().any(|l| l.contains(" WARN ")), "{lines:?}");
    // Too few to be a useful hub: a warning that says what to set.
    let lines = hub_start_lines(1500);
    let said: Vec<&String> = lines.iter().filter(|l| l.contains("open-file")).collect();
    assert_eq!(said.len(), 1, "{lines:?}");
    assert!(said[0].contains(" WARN "), "{said:?}");
    assert!(said[0].contains("serving at most 476"), "{said:?}");
}

#[test]
fn init_takes_the_console_the_libp2p_port_and_a_hub() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("flags");
    let out = goop2(
        &[
            "init",
            dir.to_str().unwrap(),
            "--console",
            "127.0.0.1:9123",
            "--port",
            "4123",
            "--hub",
            "https://rv.example.org",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = Config::load_dir(&dir).unwrap().config;
    assert_eq!(config.viewer.http_addr, "127.0.0.1:9123");
    assert_eq!(config.p2p.listen_port, 4123);
    assert_eq!(config.presence.rendezvous_wan, "https://rv.example.org");

    // A bare port is a console on this machine only.
    let bare = root.path().join("bare");
    let out = goop2(&["init", bare.to_str().unwrap(), "--console", "9124"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        Config::load_dir(&bare).unwrap().config.viewer.http_addr,
        "127.0.0.1:9124"
    );

    // What goop.json would refuse, init refuses, naming the setting; nothing is written.
    let bad = root.path().join("bad");
    let out = goop2(&["init", bad.to_str().unwrap(), "--hub", "ftp://x"], b"");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("presence.rendezvous_wan"),
        "{}",
        text(&out.stderr)
    );
    assert!(!bad.join("goop.json").exists());
}

#[test]
fn peers_made_one_after_another_get_their_own_console_ports_and_are_told_so() {
    let root = tempfile::tempdir().unwrap();
    // Another program on 8080 (unless one already is).
    let _holder = std::net::TcpListener::bind("127.0.0.1:8080");
    let mut ports = Vec::new();
    for name in ["one", "two", "three"] {
        let dir = root.path().join(name);
        let out = goop2(&["init", dir.to_str().unwrap()], b"");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let addr = Config::load_dir(&dir).unwrap().config.viewer.http_addr;
        let port: u16 = addr.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
        assert_ne!(port, 8080, "8080 is taken");
        assert!(
            text(&out.stdout).contains(&format!(
                "Port 8080 is taken; the console will be on http://127.0.0.1:{port}/"
            )),
            "{}",
            text(&out.stdout)
        );
        ports.push(port);
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "{ports:?}");
}

/// A `goop2 rendezvous` process; dropping it kills it.
#[derive(Debug)]
struct HubChild(Child);

impl Drop for HubChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `goop2 rendezvous <dir>` with `PORT` set to `port`: the running hub, the address it listens on
/// and its log so far; or, when it stops instead, its error output.
fn rendezvous_with_port(
    dir: &std::path::Path,
    port: &str,
) -> Result<(HubChild, String, String), String> {
    use std::io::{BufRead, BufReader, Read};
    let mut hub = HubChild(
        Command::new(env!("CARGO_BIN_EXE_goop2"))
            .args(["rendezvous", dir.to_str().unwrap()])
            .env("PORT", port)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut log = String::new();
    let mut stdout = BufReader::new(hub.0.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let mut errors = String::new();
            let _ = hub.0.stderr.take().unwrap().read_to_string(&mut errors);
            return Err(errors);
        }
        log.push_str(&line);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            // Keep draining the log so the hub never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            return Ok((hub, addr, log));
        }
    }
}

/// `GET /healthz` over a plain socket.
fn healthz(addr: &str) -> String {
    use std::io::Read;
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: hub\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer
}

/// SIGTERM, then a clean exit.
fn stop(mut hub: HubChild) {
    let term = Command::new("kill")
        .args(["-TERM", &hub.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(hub.0.wait().unwrap().success());
}

const HUB_WITHOUT_PORT: &str = r#"{"presence": {"rendezvous_only": true, "rendezvous_host": true}, "viewer": {"http_addr": ""}}"#;

#[test]
fn rendezvous_takes_its_port_from_port_when_goop_json_leaves_it_out() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("goop.json"), HUB_WITHOUT_PORT).unwrap();
    let (hub, addr, log) = rendezvous_with_port(root.path(), "0").expect("the hub starts");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_ne!(addr, "127.0.0.1:8787", "PORT=0 asks for any free port");
    assert!(log.contains("the hub takes its port from PORT"), "{log}");
    assert!(healthz(&addr).ends_with("\r\n\r\nok"));
    stop(hub);
    assert_eq!(
        fs::read_to_string(root.path().join("goop.json")).unwrap(),
        HUB_WITHOUT_PORT,
        "the port from the environment is not written to goop.json"
    );

    // A PORT that is not a port is an error that says so.
    let errors = rendezvous_with_port(root.path(), "eighty").expect_err("the hub refuses");
    assert!(
        errors.contains(
            "PORT (\"eighty\") must be a port number between 0 and 65535; it sets the hub's port \
             because goop.json leaves presence.rendezvous_port out"
        ),
        "{errors}"
    );
}

#[test]
fn a_port_in_goop_json_wins_over_port() {
    let root = tempfile::tempdir().unwrap();
    fs::write(
        root.path().join("goop.json"),
        r#"{"presence": {"rendezvous_only": true, "rendezvous_host": true, "rendezvous_port": 0}, "viewer": {"http_addr": ""}}"#,
    )
    .unwrap();
    // Were PORT read, this value would stop the hub.
    let (hub, addr, log) = rendezvous_with_port(root.path(), "eighty").expect("the hub starts");
    assert!(healthz(&addr).ends_with("\r\n\r\nok"));
    assert!(!log.contains("from PORT"), "{log}");
    stop(hub);
}

#[test]
fn a_new_hub_directory_leaves_the_port_to_the_platform() {
    let root = tempfile::tempdir().unwrap();
    let loaded = goop2::modes::rendezvous::prepare_dir(root.path()).unwrap();
    assert_eq!(loaded.config.presence.rendezvous_port, None);
    let written = fs::read_to_string(root.path().join("goop.json")).unwrap();
    assert!(!written.contains("rendezvous_port"), "{written}");
}

#[test]
fn init_takes_a_built_in_template_for_the_first_start_and_refuses_an_unknown_one() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("blog");
    let out = goop2(&["init", dir.to_str().unwrap(), "--template", "blog"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.join("apply-template")).unwrap(),
        "builtin/blog\n"
    );
    let unknown = root.path().join("unknown");
    let out = goop2(
        &["init", unknown.to_str().unwrap(), "--template", "nope"],
        b"",
    );
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("no built-in template \"nope\""), "{said}");
    assert!(said.contains("guestbook"), "{said}");
    assert!(!unknown.join("goop.json").exists());
}
