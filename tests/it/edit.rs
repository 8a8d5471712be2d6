//! The site editor (`/edit` and `/api/site/…`) over real HTTP against a running peer: ETag
//! conflicts between two tabs, line ends, create/rename/delete/upload, path and symlink
//! refusals, the API's preconditions.

use goop2::services::site_files::{EditError, Expect, SiteFiles, etag_of};

use crate::console::console;
use crate::support::{TestPeer, hidden, no_redirects, short_ttl};

async fn one_peer() -> (TestPeer, String) {
    let peer = TestPeer::spawn("Editor", |c| short_ttl(c, 6)).await;
    let base = console(&peer);
    (peer, base)
}

async fn page(url: &str) -> (u16, String) {
    let response = no_redirects().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_cannot_overwrite_each_other_silently() {
    let (peer, base) = one_peer().await;
    let dir = peer.dir();
    let index = dir.path().join("site/index.html");
    let (status, tree) = page(&format!("{base}/edit")).await;
    assert_eq!(status, 200);
    assert!(tree.contains("/edit/file?path=index.html"), "{tree}");

    // Two tabs open the same file.
    let (_, tab1) = page(&format!("{base}/edit/file?path=index.html")).await;
    let (_, tab2) = page(&format!("{base}/edit/file?path=index.html")).await;
    let original = std::fs::read(&index).unwrap();
    assert_eq!(hidden(&tab1, "etag"), etag_of(&original));
    assert_eq!(hidden(&tab1, "eol"), "lf");
    let save = |tab: &str, content: &str| {
        let form = vec![
            ("csrf", hidden(tab, "csrf")),
            ("path", "index.html".to_owned()),
            ("etag", hidden(tab, "etag")),
            ("eol", hidden(tab, "eol")),
            ("content", content.to_owned()),
        ];
        let url = format!("{base}/edit/file");
        async move { no_redirects().post(url).form(&form).send().await.unwrap() }
    };

    // The first save wins; a browser's CRLF line ends become the file's LF.
    let first = save(&tab1, "<h1>one</h1>\r\n<p>first tab</p>\r\n").await;
    assert_eq!(first.status().as_u16(), 303);
    assert_eq!(
        std::fs::read_to_string(&index).unwrap(),
        "<h1>one</h1>\n<p>first tab</p>\n"
    );

    // The second tab's save is refused and shows both versions.
    let second = save(&tab2, "<h1>two</h1>").await;
    assert_eq!(second.status().as_u16(), 409);
    let conflict = second.text().await.unwrap();
    assert!(
        conflict.contains("changed since you opened it"),
        "{conflict}"
    );
    assert!(
        conflict.contains("&#60;h1&#62;two&#60;/h1&#62;"),
        "keeps the unsaved text: {conflict}"
    );
    assert!(
        conflict.contains("first tab"),
        "shows the file as it is now"
    );
    assert_eq!(
        std::fs::read_to_string(&index).unwrap(),
        "<h1>one</h1>\n<p>first tab</p>\n",
        "nothing overwritten"
    );

    // Saving from the conflict page replaces the file on purpose.
    let again = save(&conflict, "<h1>two</h1>").await;
    assert_eq!(again.status().as_u16(), 303);
    assert_eq!(std::fs::read_to_string(&index).unwrap(), "<h1>two</h1>");

    // A form without the CSRF token changes nothing.
    let forged = no_redirects()
        .post(format!("{base}/edit/file"))
        .form(&[("path", "index.html"), ("content", "forged"), ("etag", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(std::fs::read_to_string(&index).unwrap(), "<h1>two</h1>");
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_folders_are_created_renamed_uploaded_and_deleted() {
    let (peer, base) = one_peer().await;
    let dir = peer.dir();
    let site = dir.path().join("site");
    let (_, tree) = page(&format!("{base}/edit")).await;
    let csrf = hidden(&tree, "csrf");
    let post = |path: &str, form: Vec<(&str, &str)>| {
        let mut form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        form.push(("csrf".into(), csrf.clone()));
        let url = format!("{base}{path}");
        async move { no_redirects().post(url).form(&form).send().await.unwrap() }
    };

    let made = post("/edit/new", vec![("kind", "folder"), ("path", "css")]).await;
    assert_eq!(made.status().as_u16(), 303);
    assert!(site.join("css").is_dir());
    let made = post("/edit/new", vec![("kind", "file"), ("path", "css/app.css")]).await;
    assert_eq!(made.status().as_u16(), 303);
    assert_eq!(std::fs::read(site.join("css/app.css")).unwrap(), b"");
    let twice = post("/edit/new", vec![("kind", "file"), ("path", "css/app.css")]).await;
    assert_eq!(twice.status().as_u16(), 409);
    assert!(
        twice
            .text()
            .await
            .unwrap()
            .contains("css/app.css already exists")
    );
    let orphan = post("/edit/new", vec![("kind", "file"), ("path", "nope/x.css")]).await;
    assert_eq!(orphan.status().as_u16(), 404);
    assert!(
        orphan
            .text()
            .await
            .unwrap()
            .contains("folder nope does not exist")
    );

    let renamed = post(
        "/edit/rename",
        vec![("from", "css/app.css"), ("to", "css/site.css")],
    )
    .await;
    assert_eq!(renamed.status().as_u16(), 303);
    assert!(site.join("css/site.css").is_file() && !site.join("css/app.css").exists());
    let onto = post(
        "/edit/rename",
        vec![("from", "css/site.css"), ("to", "index.html")],
    )
    .await;
    assert_eq!(onto.status().as_u16(), 409, "never onto an existing file");

    let png = [0x89u8, b'P', b'N', b'G', 1, 2, 3];
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("folder", "css")
        .part(
            "file",
            reqwest::multipart::Part::bytes(png.to_vec()).file_name("../../logo.png"),
        );
    let uploaded = no_redirects()
        .post(format!("{base}/edit/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 303);
    assert_eq!(std::fs::read(site.join("css/logo.png")).unwrap(), png);
    let (_, binary) = page(&format!("{base}/edit/file?path=css/logo.png")).await;
    assert!(
        binary.contains("is not text the editor can show"),
        "{binary}"
    );

    let refused = post("/edit/delete", vec![("path", "css")]).await;
    assert_eq!(refused.status().as_u16(), 409);
    assert!(refused.text().await.unwrap().contains("not empty"));
    assert!(site.join("css/site.css").exists());
    let deleted = post("/edit/delete", vec![("path", "css"), ("confirm", "1")]).await;
    assert_eq!(deleted.status().as_u16(), 303);
    assert!(!site.join("css").exists());

    let outside = post(
        "/edit/new",
        vec![("kind", "file"), ("path", "../escape.html")],
    )
    .await;
    assert_eq!(outside.status().as_u16(), 400);
    assert!(!dir.path().join("escape.html").exists());
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_preconditions_and_a_csrf_token() {
    let (peer, base) = one_peer().await;
    let dir = peer.dir();
    let (_, tree) = page(&format!("{base}/edit")).await;
    let csrf = hidden(&tree, "csrf");
    let url = format!("{base}/api/site/file?path=data/notes.txt");
    std::fs::create_dir(dir.path().join("site/data")).unwrap();

    let client = no_redirects();
    let blind = client
        .put(&url)
        .header("x-csrf-token", &csrf)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(blind.status().as_u16(), 428);
    let no_token = client
        .put(&url)
        .header("if-none-match", "*")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status().as_u16(), 403);
    let created = client
        .put(&url)
        .header("x-csrf-token", &csrf)
        .header("if-none-match", "*")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", etag_of(b"hello")));

    let read = client.get(&url).send().await.unwrap();
    assert_eq!(read.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(read.text().await.unwrap(), "hello");

    let stale = client
        .put(&url)
        .header("x-csrf-token", &csrf)
        .header("if-match", "\"0000\"")
        .body("lost update")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 412);
    let body: serde_json::Value = stale.json().await.unwrap();
    assert_eq!(body["etag"], etag_of(b"hello"));
    let updated = client
        .put(&url)
        .header("x-csrf-token", &csrf)
        .header("if-match", &etag)
        .body("hello again")
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status().as_u16(), 200);

    let list: serde_json::Value = client
        .get(format!("{base}/api/site/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "data/notes.txt" && e["size"] == 11)
    );

    let stale_delete = client
        .delete(&url)
        .header("x-csrf-token", &csrf)
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(stale_delete.status().as_u16(), 412);
    let deleted = client
        .delete(&url)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert!(!dir.path().join("site/data/notes.txt").exists());
    peer.shutdown().await;
}

#[test]
fn the_editor_never_leaves_the_site_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        root.path().join("secret.txt"),
    )
    .unwrap();
    let files = SiteFiles::new(root.path().to_owned());

    for path in ["link/secret.txt", "secret.txt"] {
        match files.read(path) {
            Err(EditError::BadPath(message)) => {
                assert!(message.contains("symbolic link"), "{message}")
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(matches!(
        files.write("link/new.txt", b"x", &Expect::Absent),
        Err(EditError::BadPath(_))
    ));
    assert!(!outside.path().join("new.txt").exists());
    assert!(matches!(
        files.delete("link", None, true),
        Err(EditError::BadPath(_))
    ));
    assert!(outside.path().join("secret.txt").exists());
    for bad in ["../x", "a/../../x", "", "/", "a\0b", "a\\b"] {
        assert!(
            matches!(
                files.write(bad, b"x", &Expect::Absent),
                Err(EditError::BadPath(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        files.rename("link", "inside"),
        Err(EditError::BadPath(_))
    ));
    std::fs::create_dir(root.path().join("a")).unwrap();
    assert!(matches!(
        files.rename("a", "a/b"),
        Err(EditError::BadPath(_))
    ));
    // The list shows links without following them.
    let (entries, truncated) = files.list().unwrap();
    assert!(!truncated);
    let link = entries.iter().find(|e| e.path == "link").unwrap();
    assert!(link.link);
    assert!(!entries.iter().any(|e| e.path.starts_with("link/")));
}
