//! The dashboard and the admin token: the admin API behind a token, and the dashboard driven
//! in a real headless Chromium (Debian's `chromium`, over the DevTools protocol) against a
//! generated store.

mod common;

use common::upstream::Upstream;
use common::{tollgate_cmd, Tollgate};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_everything_but_health_and_the_static_files() {
    // A token is required beyond loopback, and must be long enough.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("t.toml");
    for (server, says) in [
        (
            "admin = \"0.0.0.0:9080\"",
            "server.admin_token: required because",
        ),
        (
            "admin_token = \"short\"",
            "server.admin_token: must be at least 16",
        ),
    ] {
        std::fs::write(
            &config,
            format!("[server]\n{server}\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n"),
        )
        .unwrap();
        let (ok, out, err) = tollgate_cmd(&["check", "--config", config.to_str().unwrap()]);
        assert!(!ok && err.contains(says), "{out}{err}");
    }

    let up = Upstream::start().await;
    let tg = Tollgate::start_with_env(&up.url(), "", &[("TOLLGATE_SERVER_ADMIN_TOKEN", TOKEN)]);
    let c = reqwest::Client::new();
    let get = |path: &str, auth: Option<&str>| {
        let mut r = c.get(tg.admin_url(path));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    for open in [
        "/healthz",
        "/readyz",
        "/",
        "/assets/app.js",
        "/assets/style.css",
    ] {
        assert_eq!(get(open, None).await.unwrap().status(), 200, "{open}");
    }
    let bearer = format!("Bearer {TOKEN}");
    for closed in ["/api/reports/overview", "/metrics", "/api/sinks"] {
        let r = get(closed, None).await.unwrap();
        assert_eq!(r.status(), 401, "{closed}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        assert_eq!(
            get(closed, Some("Bearer nope")).await.unwrap().status(),
            401
        );
        assert_eq!(
            get(closed, Some(&bearer)).await.unwrap().status(),
            200,
            "{closed}"
        );
    }
    let q = c
        .post(tg.admin_url("/api/query"))
        .json(&serde_json::json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(q.status(), 401);

    // The dashboard's sign-in: a wrong token is refused, the right one sets an HttpOnly,
    // SameSite=Strict cookie that then opens the API.
    let login = |token: &str| {
        c.post(tg.admin_url("/api/login"))
            .json(&serde_json::json!({ "token": token }))
            .send()
    };
    assert_eq!(login("wrong").await.unwrap().status(), 401);
    let ok = login(TOKEN).await.unwrap();
    assert_eq!(ok.status(), 200);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = c
        .get(tg.admin_url("/api/reports/pages"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The CLI finds the token in the runtime file, which only its owner can read.
    let runtime = tg.data_dir().join("tollgate.runtime.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&runtime).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (ok, out, err) = tollgate_cmd(&[
        "query",
        "--data",
        tg.data_dir().to_str().unwrap(),
        "SELECT 40 + 2 AS answer",
    ]);
    assert!(ok && out.contains("42"), "{out}{err}");
}
