//! The console's `/lua` page over real HTTP: create, list with status, run as the owner, a
//! broken edit shown with its line while the last good version runs, delete.

use std::time::Duration;

use crate::console::console;
use crate::support::{TestPeer, eventually, hidden, no_redirects, short_ttl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lua_page_creates_runs_reports_and_deletes_functions() {
    let running = TestPeer::spawn("Scripted", |c| {
        short_ttl(c, 6);
        c.lua.enabled = true;
    })
    .await;
    let dir = running.dir();
    let base = console(&running);
    let page = |url: String| async move {
        let response = no_redirects().get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    let (_, html) = page(format!("{base}/lua")).await;
    let csrf = hidden(&html, "csrf");
    let post = |path: &str, form: Vec<(&str, &str)>| {
        let url = format!("{base}{path}");
        let mut form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        form.push(("csrf".into(), csrf.clone()));
        async move { no_redirects().post(url).form(&form).send().await.unwrap() }
    };

    let created = post("/lua/new", vec![("name", "greet")]).await;
    assert_eq!(created.status().as_u16(), 303);
    assert_eq!(
        created.headers()["location"],
        "/edit/file?path=lua%2Ffunctions%2Fgreet.lua"
    );
    let script = dir.path().join("site/lua/functions/greet.lua");
    assert!(
        std::fs::read_to_string(&script)
            .unwrap()
            .contains("function call(request)")
    );
    let (_, html) = page(format!("{base}/lua")).await;
    assert!(html.contains("data-function=\"greet\""), "{html}");
    assert!(html.contains("href=\"/edit/file?path=lua/functions/greet.lua\""));

    std::fs::write(
        &script,
        "--- Greets.\nfunction call(request)\n  goop.log.warn('careful')\n  return { hi = request.params.name, owner = goop.peer.id }\nend\n",
    )
    .unwrap();
    // The poller picks the edit up within a second.
    assert!(
        eventually(Duration::from_secs(5), async || {
            page(format!("{base}/lua")).await.1.contains("Greets.")
        })
        .await
    );
    let ran = post(
        "/lua/run",
        vec![("name", "greet"), ("params", "{\"name\": \"Ann\"}")],
    )
    .await;
    assert_eq!(ran.status().as_u16(), 200);
    let html = ran.text().await.unwrap();
    assert!(html.contains("&#34;hi&#34;: &#34;Ann&#34;"), "{html}");
    assert!(html.contains(&running.peer_id.to_base58()));
    assert!(html.contains("warn: careful"));
    assert!(html.contains(" ms</small>"));

    let bad = post("/lua/run", vec![("name", "greet"), ("params", "{nope")]).await;
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await.unwrap().contains("not JSON"));

    std::fs::write(
        &script,
        "--- Greets.\nfunction call(request)\n  return (\nend\n",
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || {
            page(format!("{base}/lua"))
                .await
                .1
                .contains("does not compile: greet.lua:4:")
        })
        .await
    );
    let still = post(
        "/lua/run",
        vec![("name", "greet"), ("params", "{\"name\": \"Bo\"}")],
    )
    .await;
    assert_eq!(
        still.status().as_u16(),
        200,
        "the last good version still runs"
    );

    let deleted = post("/lua/delete", vec![("name", "greet")]).await;
    assert_eq!(deleted.status().as_u16(), 303);
    assert!(!script.exists());
    let (_, html) = page(format!("{base}/lua")).await;
    assert!(!html.contains("data-function=\"greet\""));

    // Chat commands: created from their own starter, listed apart, run with text arguments.
    let created = post("/lua/new", vec![("kind", "command"), ("name", "hi")]).await;
    assert_eq!(created.status().as_u16(), 303);
    assert_eq!(
        created.headers()["location"],
        "/edit/file?path=lua%2Fhi.lua"
    );
    let command = dir.path().join("site/lua/hi.lua");
    assert!(
        std::fs::read_to_string(&command)
            .unwrap()
            .contains("function handle(args)")
    );
    let (_, html) = page(format!("{base}/lua")).await;
    assert!(html.contains("data-command=\"hi\""), "{html}");
    assert!(!html.contains("data-function=\"hi\""));
    let ran = post(
        "/lua/run",
        vec![
            ("kind", "command"),
            ("name", "hi"),
            ("args", "good morning"),
        ],
    )
    .await;
    assert_eq!(ran.status().as_u16(), 200);
    let html = ran.text().await.unwrap();
    assert!(
        html.contains("Hello, Scripted! You said: good morning"),
        "{html}"
    );
    assert!(html.contains("!hi good morning"));
    let deleted = post("/lua/delete", vec![("kind", "command"), ("name", "hi")]).await;
    assert_eq!(deleted.status().as_u16(), 303);
    assert!(!command.exists());

    let forged = no_redirects()
        .post(format!("{base}/lua/new"))
        .form(&[("name", "sneaky")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    running.shutdown().await;
}
