//! A site written for the original SDK's names (`query`, `getBy`, `pluck`, `aggregate`,
//! `updateWhere`, `upsert`, `orm`, …) run in Chromium, by the site's owner and by a visitor.

use std::path::Path;

use goop2::config::Config;
use goop2::services::presence::peer_table::PeerState;
use serde_json::{Value, json};

use crate::support::{PeerDir, TestPeer, short_ttl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_using_the_original_sdk_names_works_for_its_owner_and_a_visitor() {
    super::require_browser_tooling();
    let tag = format!("original-sdk-{}", rand::random::<u32>());
    // Peers of this test's own network.
    let dir_of = |label: &str, edit: &dyn Fn(&mut Config)| {
        PeerDir::new(label, |c| {
            short_ttl(c, 6);
            c.p2p.mdns_tag = tag.clone();
            edit(c);
        })
    };
    let host_dir = dir_of("Host", &|c| c.presence.rendezvous_host = true);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/original_sdk.html"),
        host_dir.path().join("site/original_sdk.html"),
    )
    .unwrap();
    let host = TestPeer::start(host_dir).await;
    let host_console = format!("http://{}", host.console_addr.unwrap());
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{host_console}/api/data/create-table"))
        .json(&json!({"schema": {
            "name": "posts",
            "columns": ["title TEXT NOT NULL", "slug TEXT", "stars INTEGER DEFAULT 0"],
            "access": {"read": "open", "insert": "open", "update": "owner", "delete": "owner"},
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);

    let hub = format!("http://{}", host.hub.as_ref().unwrap().hub_addr);
    let visitor = TestPeer::start(dir_of("Visitor", &|c| {
        c.presence.rendezvous_wan = hub.clone()
    }))
    .await;
    let host_id = host.peer_id.to_base58();
    assert!(crate::support::lists(&visitor, &host_id, PeerState::Online).await);

    // The owner first, on their own console; then the visitor, through theirs.
    let page = format!("/p/{host_id}/original_sdk.html");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/original_sdk.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("{host_console}{page}?run=owner"))
        .arg(format!(
            "http://{}{page}?run=visitor",
            visitor.console_addr.unwrap()
        ))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<Value> = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(reports.len(), 2);
    for (report, role) in reports.iter().zip(["owner", "visitor"]) {
        assert_the_original_names_answered(report, role);
    }

    // Both runs wrote into the host's database; the visitor's rows carry the visitor's peer ID,
    // and the visitor's updateWhere/deleteWhere left the owner's row alone.
    let rows: Value = client
        .post(format!("{host_console}/api/data/query"))
        .json(&json!({"table": "posts", "order": "slug"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = rows["data"].as_array().unwrap();
    let summary: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|row| {
            (
                row["slug"].as_str().unwrap(),
                row["title"].as_str().unwrap(),
                row["stars"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("owner-a", "Alpha2", 9), ("visitor-a", "Alpha2", 8)]
    );
    assert_eq!(rows[0]["_owner"], host_id.as_str());
    assert_eq!(rows[1]["_owner"], visitor.peer_id.to_base58().as_str());
    visitor.shutdown().await;
    host.shutdown().await;
}

/// What the page of `tests/browser/original_sdk.html` reports after one run.
fn assert_the_original_names_answered(r: &Value, role: &str) {
    assert!(r.get("failed").is_none(), "{role}: {r}");
    let id = r["insert"]["id"].as_i64().unwrap();
    assert_eq!(r["insert"]["_id"], id, "{role}: insert answers {{_id, id}}");
    assert_eq!(r["upsertNew"]["inserted"], true, "{role}: {r}");
    assert_eq!(
        r["upsertOld"],
        json!({"_id": id, "id": id, "inserted": false}),
        "{role}: upsert found the row by its key"
    );
    assert_eq!(r["get"], "Alpha2", "{role}");
    assert_eq!(r["getMissing"], Value::Null, "{role}");
    assert_eq!(r["getBy"], "Beta", "{role}");
    assert!(
        r["getByBadColumn"]
            .as_str()
            .unwrap()
            .starts_with("400 getBy: \"slug = slug OR 1\" is not a column name"),
        "{role}: {r}"
    );
    assert_eq!(
        r["query"],
        json!(["Alpha2", "Beta", "Gamma", "Delta"]),
        "{role}"
    );
    assert_eq!(
        r["find"],
        json!([{"title": "Beta"}, {"title": "Gamma"}]),
        "{role}: find takes the original `fields`"
    );
    assert_eq!(r["findOne"], 5, "{role}");
    assert_eq!(
        r["listMine"],
        json!(["Alpha2", "Beta", "Gamma", "Delta"]),
        "{role}: list is in _id order"
    );
    assert_eq!(r["listTwo"], 2, "{role}");
    assert_eq!(
        r["pluck"],
        json!(["Alpha2", "Beta", "Gamma", "Delta"]),
        "{role}"
    );
    assert_eq!(r["distinct"], json!([1, 4, 5]), "{role}");
    assert_eq!(r["exists"], true, "{role}");
    assert_eq!(r["existsNot"], false, "{role}");
    assert_eq!(r["count"], 4, "{role}");
    assert_eq!(
        r["aggregate"],
        json!([{"n": 4, "total": 15, "MAX(stars)": 5, "avg": 3.75}]),
        "{role}"
    );
    assert_eq!(r["countOnly"], json!([{"n": 4}]), "{role}");
    assert_eq!(
        r["grouped"],
        json!([
            {"stars": 1, "n": 1, "first": "Delta"},
            {"stars": 4, "n": 1, "first": "Alpha2"},
            {"stars": 5, "n": 2, "first": "Beta"},
        ]),
        "{role}"
    );
    assert!(
        r["aggregateBad"]
            .as_str()
            .unwrap()
            .starts_with("400 aggregate: \"SUM(stars) + 1\" is not"),
        "{role}: {r}"
    );
    assert_eq!(r["updateWhere"], json!({"affected": 2}), "{role}");
    assert_eq!(r["zeroStars"], 2, "{role}");
    assert_eq!(
        r["updateOthers"],
        json!({"affected": 0}),
        "{role}: nobody else's rows are changed"
    );
    assert_eq!(r["deleteOthers"], json!({"affected": 0}), "{role}");
    assert!(
        r["updateWhereAll"]
            .as_str()
            .unwrap()
            .starts_with("400 updateWhere needs a `where`"),
        "{role}: {r}"
    );
    assert_eq!(r["deleteWhere"], json!({"affected": 2}), "{role}");
    assert_eq!(r["update"], json!({"updated": 1}), "{role}");
    assert_eq!(r["remove"], json!({"deleted": 1}), "{role}");
    assert_eq!(r["left"], json!([format!("{role}-a")]), "{role}");
    assert_eq!(r["tables"], json!(["posts"]), "{role}");
    assert_eq!(r["describe"], json!(["title", "slug", "stars"]), "{role}");
    assert_eq!(r["schemas"], json!(["posts"]), "{role}");
    assert_eq!(r["role"], role);
    assert_eq!(r["ormName"], "posts", "{role}");
    assert_eq!(r["ormColumns"], json!(["title", "slug", "stars"]), "{role}");
    assert_eq!(
        r["ormAccess"],
        json!({"read": "open", "insert": "open", "update": "owner", "delete": "owner"}),
        "{role}"
    );
    assert_eq!(r["ormGet"], "Orm", "{role}");
    assert_eq!(r["ormGetBy"], 7, "{role}");
    assert_eq!(r["ormCount"], 2, "{role}");
    assert_eq!(
        r["ormPluck"],
        json!([format!("{role}-a"), format!("{role}-o")]),
        "{role}"
    );
    assert_eq!(r["ormUpsert"], false, "{role}");
    assert_eq!(r["ormAggregate"], json!([{"top": 7}]), "{role}");
    assert_eq!(r["ormRemove"], json!({"deleted": 1}), "{role}");
    assert!(
        r["ormMissing"]
            .as_str()
            .unwrap()
            .starts_with("404 there is no table `no_such_table`"),
        "{role}: {r}"
    );
    assert_eq!(
        r["everyRow"],
        json!({"affected": 1}),
        "{role}: only the caller's own row"
    );
}
