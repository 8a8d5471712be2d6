//! The database editor's forms and downloads over real HTTP: CSRF, confirmation before a drop,
//! rename, columns, policies, exports, and a visitor's row as the host sees it.

use serde_json::{Value, json};

use crate::console::console;
use crate::support::{TestPeer, get_page, hidden, no_redirects, short_ttl};

async fn api(base: &str, op: &str, body: Value) -> Value {
    no_redirects()
        .post(format!("{base}/api/data/{op}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_changes_need_the_form_token_and_a_drop_needs_the_name_typed() {
    let running = TestPeer::spawn("Editor", |c| short_ttl(c, 6)).await;
    let base = console(&running);
    api(
        &base,
        "create-table",
        json!({"schema": {"name": "plants", "columns": ["name TEXT NOT NULL", "height REAL"]}}),
    )
    .await;
    for (name, height) in [("fern", 0.5), ("oak, \"old\"", 20.0)] {
        api(
            &base,
            "insert",
            json!({"table": "plants", "data": {"name": name, "height": height}}),
        )
        .await;
    }
    let page = get_page(&format!("{base}/database/t/plants")).await;
    let csrf = hidden(&page, "csrf");
    let change = |form: Vec<(&str, &str)>| {
        let url = format!("{base}/database/t/plants/change");
        let form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        async move { no_redirects().post(url).form(&form).send().await.unwrap() }
    };

    let forged = change(vec![("action", "drop"), ("confirm", "plants")]).await;
    assert_eq!(forged.status().as_u16(), 403, "no token, no drop");
    let unconfirmed = change(vec![
        ("csrf", &csrf),
        ("action", "drop"),
        ("confirm", "yes"),
    ])
    .await;
    assert_eq!(unconfirmed.status().as_u16(), 400);
    assert!(unconfirmed.text().await.unwrap().contains("type its name"));
    assert_eq!(
        api(&base, "count", json!({"table": "plants"})).await["data"],
        2
    );

    let added = change(vec![
        ("csrf", &csrf),
        ("action", "add-column"),
        ("column", "kind TEXT DEFAULT 'tree'"),
    ])
    .await;
    assert_eq!(added.status().as_u16(), 303);
    let dropped = change(vec![
        ("csrf", &csrf),
        ("action", "drop-column"),
        ("name", "height"),
    ])
    .await;
    assert_eq!(dropped.status().as_u16(), 303);
    let policy = change(vec![
        ("csrf", &csrf),
        ("action", "policy"),
        ("read", "owner"),
        ("insert", "open"),
        ("update", "local"),
        ("delete", "local"),
    ])
    .await;
    assert_eq!(policy.status().as_u16(), 303);
    let described = api(&base, "describe", json!({"table": "plants"})).await;
    let columns: Vec<&str> = described["data"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["name", "kind"]);
    assert_eq!(
        described["data"]["access"],
        json!({"read": "owner", "insert": "open", "update": "local", "delete": "local"})
    );

    let csv = no_redirects()
        .get(format!("{base}/database/t/plants/export.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        csv.headers()["content-disposition"],
        "attachment; filename=\"plants.csv\""
    );
    let csv = csv.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "_id,_owner,_owner_email,_created_at,_updated_at,name,kind"
    );
    assert!(
        csv.contains("\"oak, \"\"old\"\"\",tree"),
        "quoted the CSV way: {csv}"
    );
    let json_rows: Value = no_redirects()
        .get(format!("{base}/database/t/plants/export.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json_rows[1]["name"], "oak, \"old\"");

    // An export re-imports as is: system columns are skipped.
    let import = no_redirects()
        .post(format!("{base}/database/t/plants/import"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("step", "import"),
            ("csv", csv.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(import.status().as_u16(), 200);
    assert!(import.text().await.unwrap().contains("2 rows imported"));
    assert_eq!(
        api(&base, "count", json!({"table": "plants"})).await["data"],
        4
    );

    let renamed = change(vec![
        ("csrf", &csrf),
        ("action", "rename"),
        ("name", "greenery"),
    ])
    .await;
    assert_eq!(renamed.status().as_u16(), 303);
    assert_eq!(
        api(&base, "count", json!({"table": "greenery"})).await["data"],
        4
    );
    let gone = no_redirects()
        .post(format!("{base}/database/t/greenery/change"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "drop"),
            ("confirm", "greenery"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 303);
    assert_eq!(api(&base, "tables", json!({})).await["data"], json!([]));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_statement_in_the_sql_box_is_stopped_at_its_budget() {
    let running = TestPeer::spawn("Editor", |c| short_ttl(c, 6)).await;
    let base = console(&running);
    let page = get_page(&format!("{base}/database")).await;
    let csrf = hidden(&page, "csrf");
    let run = |sql: &'static str| {
        let (url, csrf) = (format!("{base}/database/sql"), csrf.clone());
        async move {
            no_redirects()
                .post(url)
                .form(&[("csrf", csrf.as_str()), ("sql", sql)])
                .send()
                .await
                .unwrap()
        }
    };
    let started = std::time::Instant::now();
    let endless = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        run(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        ),
    )
    .await
    .expect("the statement still runs after 15 s");
    let took = started.elapsed();
    assert_eq!(endless.status().as_u16(), 400);
    let text = endless.text().await.unwrap();
    assert!(
        text.contains("the statement ran out of its time budget (5 s) and was stopped"),
        "{text}"
    );
    assert!(
        took >= goop2::services::data::SQL_BUDGET && took < std::time::Duration::from_secs(10),
        "{took:?}"
    );
    // The box answers the next statement at once.
    let next = run("SELECT 6 * 7 AS answer").await;
    assert_eq!(next.status().as_u16(), 200);
    assert!(next.text().await.unwrap().contains("42"));
    running.shutdown().await;
}
