//! goop.json: defaults, validation messages, unknown keys, atomic save.

use std::fs;
use std::path::Path;

use goop2::config::{Config, ConfigError, Secret};
use serde_json::{Value, json};

fn parse(value: Value) -> Result<goop2::config::LoadedConfig, ConfigError> {
    Config::from_slice(value.to_string().as_bytes(), Path::new("goop.json"))
}

/// The single problem a configuration is rejected for.
fn problem(value: Value) -> String {
    let err = parse(value).expect_err("the configuration must be rejected");
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "expected one problem, got {problems:?}");
    problems[0].clone()
}

#[test]
fn an_empty_object_takes_every_default() {
    let loaded = parse(json!({})).unwrap();
    let config = loaded.config;
    assert_eq!(config, Config::default());
    assert!(loaded.warnings.is_empty());
    assert_eq!(config.presence.ttl_seconds, 20);
    assert_eq!(config.presence.heartbeat_seconds, 5);
    assert_eq!(
        config.presence.rendezvous_port, None,
        "unset until goop.json sets it"
    );
    assert_eq!(config.presence.hub_port(), 8787);
    assert_eq!(config.presence.rendezvous_bind, "127.0.0.1");
    assert_eq!(config.presence.topic, "goop.presence.v1");
    assert_eq!(config.presence.templates_dir, "templates");
    assert_eq!(config.p2p.mdns_tag, "goop-mdns");
    assert_eq!(config.p2p.listen_port, 0);
    assert_eq!(config.identity.key_file, "data/identity.key");
    assert_eq!(config.paths.site_root, "site");
    assert_eq!(config.lua.timeout_seconds, 5);
    assert_eq!(config.lua.max_memory_mb, 10);
    assert!(!config.presence.allow_unsigned);
}

#[test]
fn missing_keys_in_a_section_take_defaults() {
    let config = parse(json!({"presence": {"ttl_seconds": 60}, "profile": {"label": "Alice"}}))
        .unwrap()
        .config;
    assert_eq!(config.presence.ttl_seconds, 60);
    assert_eq!(config.presence.heartbeat_seconds, 5);
    assert_eq!(config.presence.hub_port(), 8787);
    assert_eq!(config.profile.label, "Alice");
    assert_eq!(config.profile.email, "");
    assert_eq!(config.viewer.theme, "dark");
}

#[test]
fn a_utf8_byte_order_mark_is_accepted() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(br#"{"profile": {"label": "BOM"}}"#);
    let config = Config::from_slice(&bytes, Path::new("goop.json"))
        .unwrap()
        .config;
    assert_eq!(config.profile.label, "BOM");
}

#[test]
fn heartbeat_must_be_shorter_than_ttl() {
    assert_eq!(
        problem(json!({"presence": {"heartbeat_seconds": 30, "ttl_seconds": 20}})),
        "presence.heartbeat_seconds (30) must be less than presence.ttl_seconds (20)"
    );
    assert_eq!(
        problem(json!({"presence": {"heartbeat_seconds": 20}})),
        "presence.heartbeat_seconds (20) must be less than presence.ttl_seconds (20)"
    );
}

#[test]
fn rendezvous_only_requires_rendezvous_host() {
    assert_eq!(
        problem(json!({"presence": {"rendezvous_only": true}})),
        "presence.rendezvous_only (true) requires presence.rendezvous_host to be true: a \
         rendezvous-only node has nothing to run but the hub"
    );
    assert!(parse(json!({"presence": {"rendezvous_only": true, "rendezvous_host": true}})).is_ok());
}

#[test]
fn ports_must_be_between_0_and_65535() {
    assert_eq!(
        problem(json!({"p2p": {"listen_port": 70000}})),
        "p2p.listen_port (70000) must be between 0 and 65535"
    );
    assert_eq!(
        problem(json!({"presence": {"rendezvous_port": -1}})),
        "presence.rendezvous_port (-1) must be between 0 and 65535"
    );
    assert_eq!(
        problem(json!({"presence": {"rendezvous_port": "8787"}})),
        "presence.rendezvous_port (\"8787\") must be an integer between 0 and 65535"
    );
    let config = parse(json!({"p2p": {"listen_port": 65535}, "presence": {"rendezvous_port": 0}}))
        .unwrap()
        .config;
    assert_eq!(config.p2p.listen_port, 65535);
    assert_eq!(config.presence.rendezvous_port, Some(0));
    assert_eq!(config.presence.hub_port(), 0);
}

#[test]
fn durations_and_limits_have_ranges() {
    assert_eq!(
        problem(json!({"presence": {"ttl_seconds": 0}})),
        "presence.ttl_seconds (0) must be between 1 and 86400"
    );
    assert_eq!(
        problem(json!({"presence": {"heartbeat_seconds": 2.5}})),
        "presence.heartbeat_seconds (2.5) must be an integer between 1 and 3600"
    );
    assert_eq!(
        problem(json!({"lua": {"timeout_seconds": 600}})),
        "lua.timeout_seconds (600) must be between 1 and 60"
    );
    assert_eq!(
        problem(json!({"lua": {"max_memory_mb": 0}})),
        "lua.max_memory_mb (0) must be between 1 and 1024"
    );
    assert_eq!(
        problem(json!({"lua": {"rate_limit_per_peer": 0}})),
        "lua.rate_limit_per_peer (0) must be between 1 and 1000000"
    );
    assert_eq!(
        problem(json!({"lua": {"rate_limit_global": 0}})),
        "lua.rate_limit_global (0) must be between 1 and 10000000"
    );
}

#[test]
fn the_limits_on_other_peers_data_have_defaults_and_ranges() {
    let defaults = parse(json!({})).unwrap().config.data;
    assert_eq!((defaults.insert_per_second, defaults.insert_burst), (2, 20));
    assert_eq!(
        (defaults.max_rows_per_caller, defaults.max_bytes_per_caller),
        (1000, 1024 * 1024)
    );
    assert_eq!(
        (defaults.max_rows_per_table, defaults.max_bytes_per_table),
        (100_000, 100 * 1024 * 1024)
    );
    assert_eq!(
        problem(json!({"data": {"insert_per_second": 0}})),
        "data.insert_per_second (0) must be between 1 and 1000000"
    );
    assert_eq!(
        problem(json!({"data": {"max_bytes_per_caller": -5}})),
        "data.max_bytes_per_caller (-5) must be between 1 and 1125899906842624"
    );
    let set = parse(json!({"data": {"max_rows_per_table": 50, "insert_burst": 3}}))
        .unwrap()
        .config
        .data;
    assert_eq!((set.max_rows_per_table, set.insert_burst), (50, 3));
    assert_eq!(
        set.max_rows_per_caller, 1000,
        "unsaid keys keep their defaults"
    );
}

#[test]
fn rendezvous_wan_must_be_an_http_url() {
    for bad in ["ftp://rv.example.org", "rv.example.org", "https://"] {
        assert_eq!(
            problem(json!({"presence": {"rendezvous_wan": bad}})),
            format!(
                "presence.rendezvous_wan ({bad:?}) must be empty or an http:// or https:// URL \
                 such as \"https://rv.example.org\""
            )
        );
    }
    for good in ["https://rv.example.org", "http://127.0.0.1:8787", ""] {
        assert!(
            parse(json!({"presence": {"rendezvous_wan": good}})).is_ok(),
            "{good}"
        );
    }
}

#[test]
fn bind_addresses_must_be_ip_addresses() {
    assert_eq!(
        problem(json!({"presence": {"rendezvous_bind": "localhost"}})),
        "presence.rendezvous_bind (\"localhost\") must be an IP address such as \"127.0.0.1\" \
         or \"0.0.0.0\""
    );
    assert_eq!(
        problem(json!({"viewer": {"http_addr": "localhost:8080"}})),
        "viewer.http_addr (\"localhost:8080\") must be empty (no console) or an IP address and \
         port such as \"127.0.0.1:8080\""
    );
    let config = parse(
        json!({"presence": {"rendezvous_bind": "::"}, "viewer": {"http_addr": "[::1]:9000"}}),
    )
    .unwrap()
    .config;
    assert!(config.presence.rendezvous_bind_ip().is_unspecified());
    assert_eq!(config.viewer.http_socket_addr().unwrap().port(), 9000);
    assert!(
        parse(json!({"viewer": {"http_addr": ""}}))
            .unwrap()
            .config
            .viewer
            .http_socket_addr()
            .is_none()
    );
}

#[test]
fn trusted_proxies_must_be_addresses_or_ranges() {
    assert_eq!(
        problem(json!({"presence": {"trusted_proxies": ["10.0.0.1", "proxy.local"]}})),
        "presence.trusted_proxies[1] (\"proxy.local\") must be an IP address or a CIDR range \
         such as \"10.0.0.0/8\""
    );
    let config =
        parse(json!({"presence": {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]}}))
            .unwrap()
            .config;
    let nets = config.presence.trusted_proxy_nets();
    assert_eq!(nets.len(), 3);
    assert!(nets[1].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
}

#[test]
fn the_lua_http_allow_list_takes_addresses_or_ranges() {
    assert_eq!(
        problem(json!({"lua": {"http_allow": ["192.168.1.0/24", "nas.local"]}})),
        "lua.http_allow[1] (\"nas.local\") must be an IP address or a CIDR range such as \
         \"192.168.1.0/24\""
    );
    let config = parse(json!({"lua": {"http_allow": ["192.168.1.20", "fd00::/8"]}}))
        .unwrap()
        .config;
    let nets = config.lua.allowed_networks();
    assert_eq!(nets.len(), 2);
    assert!(nets[0].contains(&"192.168.1.20".parse::<std::net::IpAddr>().unwrap()));
    assert!(!nets[0].contains(&"192.168.1.21".parse::<std::net::IpAddr>().unwrap()));
    assert!(Config::default().lua.http_allow.is_empty());
}

#[test]
fn theme_mdns_tag_topic_and_paths_are_checked() {
    assert_eq!(
        problem(json!({"viewer": {"theme": "blue"}})),
        "viewer.theme (\"blue\") must be one of \"dark\", \"light\""
    );
    assert_eq!(
        problem(json!({"p2p": {"mdns_tag": "my tag"}})),
        "p2p.mdns_tag (\"my tag\") must be 1 to 63 characters of letters, digits, '-' or '_'"
    );
    assert_eq!(
        problem(json!({"presence": {"topic": ""}})),
        "presence.topic (\"\") must be 1 to 256 bytes long; the default is \"goop.presence.v1\""
    );
    assert_eq!(
        problem(json!({"identity": {"key_file": " "}})),
        "identity.key_file must not be empty; the default is \"data/identity.key\""
    );
    assert_eq!(
        problem(json!({"paths": {"site_root": ""}})),
        "paths.site_root must not be empty; the default is \"site\""
    );
    assert_eq!(
        problem(json!({"presence": {"templates_dir": ""}})),
        "presence.templates_dir must not be empty; the default is \"templates\""
    );
    assert_eq!(
        problem(json!({"lua": {"script_dir": ""}})),
        "lua.script_dir must not be empty; the default is \"site/lua\""
    );
}

#[test]
fn profile_label_and_email_are_bounded() {
    assert_eq!(
        problem(json!({"profile": {"email": "not-an-address"}})),
        "profile.email (\"not-an-address\") must be empty or an address such as \
         \"alice@example.org\""
    );
    let long_email = format!("{}@example.org", "a".repeat(320));
    assert_eq!(
        problem(json!({"profile": {"email": long_email}})),
        "profile.email is 332 bytes long; at most 320 bytes are allowed"
    );
    assert_eq!(
        problem(json!({"profile": {"label": "x".repeat(4097)}})),
        "profile.label is 4097 bytes long; at most 4096 bytes are allowed"
    );
    assert!(
        parse(json!({"profile": {"email": "alice@example.org", "label": "x".repeat(4096)}}))
            .is_ok()
    );
}

#[test]
fn wrong_types_name_the_path_and_the_expected_type() {
    assert_eq!(
        problem(json!({"presence": {"rendezvous_host": "yes"}})),
        "presence.rendezvous_host: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        problem(json!({"profile": {"label": 5}})),
        "profile.label: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        problem(json!({"presence": {"trusted_proxies": "10.0.0.1"}})),
        "presence.trusted_proxies: invalid type: string \"10.0.0.1\", expected a sequence"
    );
}

#[test]
fn the_top_level_must_be_an_object() {
    assert_eq!(
        problem(json!([1, 2])),
        "the top level must be a JSON object, found an array"
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let err = Config::from_slice(
        b"{\n  \"profile\": {\"label\": \"x\",}\n}",
        Path::new("p/goop.json"),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "p/goop.json is not valid JSON: trailing comma at line 2 column 28"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = parse(json!({
        "p2p": {"listen_port": 99999},
        "viewer": {"theme": "neon"},
        "presence": {"rendezvous_only": true}
    }))
    .unwrap_err();
    assert_eq!(
        err.problems().len(),
        1,
        "range problems stop before the rules: {err}"
    );
    let err = parse(json!({
        "viewer": {"theme": "neon"},
        "presence": {"rendezvous_only": true, "rendezvous_bind": "x"}
    }))
    .unwrap_err();
    assert_eq!(err.problems().len(), 3, "{err}");
    let text = err.to_string();
    assert!(text.starts_with("goop.json is invalid:\n  - "), "{text}");
    assert!(text.contains("viewer.theme (\"neon\")"), "{text}");
}

#[test]
fn unknown_keys_give_one_warning_and_survive_a_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goop.json");
    fs::write(
        &path,
        json!({
            "legacy_banner": "legacy",
            "profile": {"label": "A", "nickname": "a"},
            "presence": {"ttl_seconds": 30, "future_knob": {"x": [1, 2]}}
        })
        .to_string(),
    )
    .unwrap();
    let loaded = Config::load(&path).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "goop.json has keys this version does not use (kept when the file is saved): \
             legacy_banner, profile.nickname, presence.future_knob"
                .to_string()
        ]
    );

    let mut config = loaded.config;
    config.profile.label = "B".into();
    config.save(&path).unwrap();

    let saved: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(saved["legacy_banner"], "legacy");
    assert_eq!(saved["profile"]["nickname"], "a");
    assert_eq!(saved["profile"]["label"], "B");
    assert_eq!(saved["presence"]["future_knob"], json!({"x": [1, 2]}));
    assert_eq!(saved["presence"]["ttl_seconds"], 30);
    assert_eq!(Config::load(&path).unwrap().config, config);
}

#[test]
fn plain_text_passwords_warn_and_hashes_do_not() {
    let loaded = parse(json!({
        "presence": {"admin_password": "hunter2"},
        "viewer": {"admin_password": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"}
    }))
    .unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "presence.admin_password is stored as plain text; replace it with the output of \
             `goop2 hash-password`"
                .to_string()
        ]
    );
}

#[test]
fn debug_output_redacts_passwords() {
    let mut config = Config::default();
    config.presence.admin_password = Secret::new("hunter2");
    config.viewer.admin_password = Secret::new("$argon2id$v=19$secret-hash");
    let text = format!("{config:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("secret-hash"), "{text}");
    assert!(text.contains("admin_password: \"<redacted>\""), "{text}");
}

#[test]
fn a_failed_save_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goop.json");
    let original = "{\"profile\": {\"label\": \"old\"}}\n";
    fs::write(&path, original).unwrap();
    // The temporary sibling cannot be created when a directory stands in its place.
    fs::create_dir(dir.path().join(".goop.json.tmp")).unwrap();

    let mut config = Config::default();
    config.profile.label = "new".into();
    let err = config.save(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Write { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn save_replaces_the_file_and_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goop.json");

    Config::default().save(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let mut config = Config::default();
    config.presence.ttl_seconds = 45;
    config.save(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(Config::load(&path).unwrap().config.presence.ttl_seconds, 45);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec!["goop.json"]);
}

#[test]
fn an_unreadable_file_names_the_path() {
    let err = Config::load(Path::new("/nonexistent/goop.json")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/goop.json: "),
        "{err}"
    );
}

/// The client configuration the original's rendezvous guide gives.
fn originals_client_config() -> Value {
    json!({
        "site": "My Site",
        "peerName": "my-peer",
        "rendezvous": "https://rendezvous.yourdomain.com"
    })
}

#[test]
fn the_originals_top_level_keys_are_read_as_the_keys_they_stand_for() {
    let loaded = parse(originals_client_config()).unwrap();
    let config = &loaded.config;
    assert_eq!(
        config.presence.rendezvous_wan, "https://rendezvous.yourdomain.com",
        "the peer joins the hub"
    );
    assert_eq!(config.profile.label, "my-peer", "peerName wins over site");
    assert!(
        config.unknown_keys().is_empty(),
        "{:?}",
        config.unknown_keys()
    );
    assert_eq!(
        loaded.warnings,
        [
            "goop.json: \"rendezvous\" is the original's name for presence.rendezvous_wan; it is \
             read as presence.rendezvous_wan and written under that name when the file is next \
             saved",
            "goop.json: \"peerName\" is the original's name for profile.label; it is read as \
             profile.label and written under that name when the file is next saved",
            "goop.json: \"site\" is ignored: \"peerName\" also stands for profile.label and wins; \
             \"site\" is dropped when the file is next saved",
        ]
    );

    let config = parse(json!({"site": "My Site"})).unwrap().config;
    assert_eq!(config.profile.label, "My Site");
}

#[test]
fn a_canonical_key_wins_over_its_alias() {
    let loaded = parse(json!({
        "rendezvous": "https://alias.example.org",
        "site": "Alias",
        "presence": {"rendezvous_wan": "https://canonical.example.org"},
        "profile": {"label": "Canonical"}
    }))
    .unwrap();
    assert_eq!(
        loaded.config.presence.rendezvous_wan,
        "https://canonical.example.org"
    );
    assert_eq!(loaded.config.profile.label, "Canonical");
    assert_eq!(
        loaded.warnings,
        [
            "goop.json: \"rendezvous\" (the original's name for presence.rendezvous_wan) is \
             ignored because presence.rendezvous_wan is set; \"rendezvous\" is dropped when the \
             file is next saved",
            "goop.json: \"site\" (the original's name for profile.label) is ignored because \
             profile.label is set; \"site\" is dropped when the file is next saved",
        ]
    );
}

#[test]
fn aliases_are_checked_like_the_keys_they_stand_for() {
    assert_eq!(
        problem(json!({"rendezvous": "ftp://hub.example.org"})),
        "presence.rendezvous_wan (\"ftp://hub.example.org\") must be empty or an http:// or \
         https:// URL such as \"https://rv.example.org\""
    );
    assert_eq!(
        problem(json!({"peerName": 7})),
        "peerName (7) must be a string; it is the original's name for profile.label"
    );
}

#[test]
fn saving_writes_the_canonical_keys_instead_of_the_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goop.json");
    let mut original = originals_client_config();
    original["presence"] = json!({"ttl_seconds": 30});
    fs::write(&path, original.to_string()).unwrap();

    let loaded = Config::load(&path).unwrap();
    loaded.config.save(&path).unwrap();
    let saved: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    for alias in ["site", "peerName", "rendezvous"] {
        assert!(saved.get(alias).is_none(), "{alias} is still in {saved}");
    }
    assert_eq!(saved["profile"]["label"], "my-peer");
    assert_eq!(
        saved["presence"]["rendezvous_wan"],
        "https://rendezvous.yourdomain.com"
    );
    assert_eq!(saved["presence"]["ttl_seconds"], 30);

    let reloaded = Config::load(&path).unwrap();
    assert!(reloaded.warnings.is_empty(), "{:?}", reloaded.warnings);
    assert_eq!(reloaded.config, loaded.config);
}
