//! End-to-end enrichment and privacy: a real tollgate process in front of a real upstream,
//! with the rows it stores read back through the admin API.

mod common;

use common::mmdb::{write_city_db, Entry};
use common::upstream::Upstream;
use common::{tollgate_cmd, Tollgate};
use serde_json::{json, Value};
use std::collections::HashSet;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser-like page request from `ip` (via a trusted X-Forwarded-For).
fn page(c: &reqwest::Client, url: String, ip: &str, ua: &str) -> reqwest::RequestBuilder {
    c.get(url)
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-language", "en-GB,en;q=0.9")
        .header("user-agent", ua)
        .header("x-forwarded-for", ip)
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// One row of `cols` for the event whose request id is `rid`.
async fn row(tg: &Tollgate, cols: &str, rid: &str) -> Vec<Value> {
    let sql = format!("SELECT count(*) FROM events WHERE request_id = '{rid}'");
    assert_eq!(tg.wait_count(&sql, 1).await, 1, "no event for {rid}");
    tg.query(&format!(
        "SELECT {cols} FROM events WHERE request_id = '{rid}'"
    ))
    .await
    .remove(0)
}

fn rid(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_signals_mean_no_cookie_no_ids_no_ip() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let c = client();
    for (name, header) in [("gpc", "sec-gpc"), ("dnt", "dnt")] {
        let path = format!("/page/{name}");
        let resp = page(&c, tg.url(&path), "203.0.113.77", IPHONE)
            .header(header, "1")
            // A client cannot slip its own identity upstream either.
            .header("x-visitor-id", "5b0e2a1c-1111-4222-8333-944445555666")
            .header("cookie", "tg_vid=5b0e2a1c-1111-4222-8333-944445555666")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            set_cookies(&resp),
            Vec::<String>::new(),
            "{header}: no Set-Cookie"
        );
        let id = rid(&resp);
        let seen = up.seen_for(&path).pop().unwrap();
        assert!(seen.headers.get("x-visitor-id").is_none(), "{header}");
        assert!(seen.headers.get("x-session-id").is_none(), "{header}");
        assert_eq!(seen.headers["x-request-id"], id.as_str());

        let r = row(
            &tg,
            "visitor_id, session_id, ip, user_agent, region, browser, os, device_type, is_bot",
            &id,
        )
        .await;
        assert_eq!(
            r[..5],
            [
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ],
            "{header}: {r:?}"
        );
        // Still counted, with coarse facts.
        assert_eq!(
            r[5..],
            [
                json!("Mobile Safari"),
                json!("iOS"),
                json!("mobile"),
                json!(false)
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ips_are_truncated_and_secrets_redacted() {
    let up = Upstream::start().await;
    let tg = Tollgate::start(&up.url(), "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let c = client();
    let resp = page(
        &c,
        tg.url("/page/1?email=a@b.com&token=xyz&q=boots"),
        "203.0.113.77",
        CHROME,
    )
    .header(
        "referer",
        "https://mail.example.net/read/jo%40example.org?sig=abc",
    )
    .send()
    .await
    .unwrap();
    let a = rid(&resp);
    let resp = page(
        &c,
        tg.url("/users/jo@example.com/orders/12345678"),
        "2001:db8:abcd:12:1:2:3:4",
        CHROME,
    )
    .send()
    .await
    .unwrap();
    let b = rid(&resp);
    let resp = page(
        &c,
        tg.url("/page/2?contact=%2B44%2020%207946%200958"),
        "198.51.100.200",
        CHROME,
    )
    .send()
    .await
    .unwrap();
    let p = rid(&resp);

    let r = row(&tg, "ip, query, referrer, referrer_host, path", &a).await;
    assert_eq!(r[0], "203.0.113.0");
    assert_eq!(r[1], "email=[redacted]&token=[redacted]&q=boots");
    assert_eq!(r[2], "https://mail.example.net/read/[email]?sig=[redacted]");
    assert_eq!(r[3], "mail.example.net");
    assert_eq!(r[4], "/page/1");
    let r = row(&tg, "ip, path, route", &b).await;
    assert_eq!(r[0], "2001:db8:abcd::");
    assert_eq!(r[1], "/users/[email]/orders/12345678");
    assert_eq!(r[2], "/users/[email]/orders/:id");
    let r = row(&tg, "ip, query", &p).await;
    assert_eq!(r[0], "198.51.100.0");
    assert_eq!(r[1], "contact=[phone]");
    // No stored column anywhere holds the raw values.
    let leaks = tg
        .count("SELECT count(*) FROM events WHERE concat_ws('|', path, query, referrer, ip) SIMILAR TO '.*(a@b\\.com|xyz|jo@example|jo%40|203\\.0\\.113\\.77|7946).*'")
        .await;
    assert_eq!(leaks, 0);

    // `drop` stores no IP at all; `keep` the full one.
    drop(tg);
    for (mode, want) in [("drop", Value::Null), ("keep", json!("203.0.113.77"))] {
        let tg = Tollgate::start(
            &up.url(),
            &format!("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[privacy]\nip = \"{mode}\"\n"),
        );
        let resp = page(&c, tg.url("/page/3"), "203.0.113.77", CHROME)
            .send()
            .await
            .unwrap();
        assert_eq!(row(&tg, "ip", &rid(&resp)).await[0], want, "ip = {mode}");
    }
}

/// Cookieless until consent; a daily salt that survives a restart and changes with the day.
///
/// One data directory across two restarts: each restart's visitor id is compared with the one
/// before it, so the steps stay in order in one function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_gating_and_cookieless_ids() {
    let up = Upstream::start().await;
    let conf = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[privacy]\nconsent_cookie = \"cookie_consent=yes\"\n";
    let mut tg = Tollgate::start(&up.url(), conf);
    let c = client();

    let mut ids = Vec::new();
    for (path, ip, ua) in [
        ("/page/a", "203.0.113.10", CHROME),
        ("/page/b", "203.0.113.10", CHROME),
        ("/page/c", "203.0.113.10", IPHONE),
        ("/page/d", "203.0.113.11", CHROME),
    ] {
        let resp = page(&c, tg.url(path), ip, ua).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            set_cookies(&resp),
            Vec::<String>::new(),
            "no cookie without consent"
        );
        let seen = up.seen_for(path).pop().unwrap();
        let upstream_vid = seen.headers["x-visitor-id"].to_str().unwrap().to_string();
        assert!(seen.headers.get("x-session-id").is_none());
        let r = row(&tg, "visitor_id, session_id", &rid(&resp)).await;
        assert_eq!(
            r[0],
            upstream_vid.as_str(),
            "the backend sees the stored id"
        );
        assert!(r[1].is_string(), "cookieless events are still sessionised");
        ids.push((r[0].as_str().unwrap().to_string(), r[1].clone()));
    }
    assert_eq!(
        ids[0], ids[1],
        "same client, same day: one visitor and one session"
    );
    assert_ne!(ids[0].0, ids[2].0, "another user agent is another visitor");
    assert_ne!(ids[0].0, ids[3].0, "another address is another visitor");
    assert_eq!(
        uuid::Uuid::parse_str(&ids[0].0).unwrap().get_version_num(),
        8
    );

    // With consent, cookies as usual.
    let resp = page(&c, tg.url("/page/e"), "203.0.113.10", CHROME)
        .header("cookie", "cookie_consent=yes")
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&resp);
    assert!(
        cookies.iter().any(|s| s.starts_with("tg_vid=")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|s| s.starts_with("tg_sid=")),
        "{cookies:?}"
    );

    // The salt is not in the store.
    let salt_file = tg.data_dir().join("cookieless.salt");
    let salt: Value = serde_json::from_str(&std::fs::read_to_string(&salt_file).unwrap()).unwrap();
    let key = salt["key"].as_str().unwrap().to_string();
    let in_store = tg
        .count(&format!(
            "SELECT count(*) FROM events WHERE concat_ws('|', COLUMNS(*)::VARCHAR) LIKE '%{key}%'"
        ))
        .await;
    assert_eq!(in_store, 0);

    // A restart on the same day keeps the salt: same visitor.
    let first = ids[0].0.clone();
    tg.terminate();
    let tg2 = restart(&up, &tg, conf);
    let resp = page(&c, tg2.url("/page/f"), "203.0.113.10", CHROME)
        .send()
        .await
        .unwrap();
    assert_eq!(
        row(&tg2, "visitor_id", &rid(&resp)).await[0],
        first.as_str()
    );
    let mut tg2 = tg2;
    tg2.terminate();

    // The next day: the salt on disk is yesterday's, so a fresh one is drawn (and the old one
    // is gone from disk). The process cannot be moved to tomorrow, so the salt file is moved
    // to yesterday; the in-process rotation is covered by `proxy::consent`'s unit test.
    let mut old: Value =
        serde_json::from_str(&std::fs::read_to_string(&salt_file).unwrap()).unwrap();
    old["day"] = json!(old["day"].as_i64().unwrap() - 1);
    std::fs::write(&salt_file, old.to_string()).unwrap();
    let tg3 = restart(&up, &tg, conf);
    let resp = page(&c, tg3.url("/page/g"), "203.0.113.10", CHROME)
        .send()
        .await
        .unwrap();
    let next_day = row(&tg3, "visitor_id", &rid(&resp)).await[0].clone();
    assert_ne!(next_day, first.as_str(), "a new day, a new id");
    let now: Value = serde_json::from_str(&std::fs::read_to_string(&salt_file).unwrap()).unwrap();
    assert_ne!(now["key"], old["key"]);
}

/// Another tollgate on the same data directory as `prev` (which has stopped).
fn restart(up: &Upstream, prev: &Tollgate, conf: &str) -> Tollgate {
    Tollgate::start_on(&up.url(), conf, &prev.data_dir())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_removes_exactly_that_visitor() {
    let up = Upstream::start().await;
    let mut tg = Tollgate::start(&up.url(), "");
    // Two browsers, each keeping the visitor cookie tollgate gives it.
    let browsers = [common::jar_client(), common::jar_client()];
    for n in 0..3 {
        for c in &browsers {
            page(c, tg.url(&format!("/page/{n}")), "127.0.0.1", CHROME)
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(tg.wait_count("SELECT count(*) FROM events", 6).await, 6);
    let ids = tg
        .query("SELECT visitor_id::VARCHAR FROM events GROUP BY 1 ORDER BY min(seq)")
        .await;
    let [a, b] = [0, 1].map(|i| ids[i][0].as_str().unwrap().to_string());
    let data = tg.data_dir();
    let data = data.to_str().unwrap();

    // While the server runs: through its admin API.
    let (ok, out, err) = tollgate_cmd(&["forget", "--data", data, "--visitor", &a]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("deleted 3 events"), "{out}");
    let left = tg
        .query("SELECT visitor_id::VARCHAR, count(*) FROM events GROUP BY 1")
        .await;
    assert_eq!(left, vec![vec![json!(b), json!(3)]]);
    let req = tg
        .query("SELECT subject_type, subject, rows_deleted FROM forget_requests")
        .await;
    assert_eq!(req, vec![vec![json!("visitor_id"), json!(a), json!(3)]]);

    // Bad input is refused with a reason.
    let (ok, _, err) = tollgate_cmd(&["forget", "--data", data, "--visitor", "nope"]);
    assert!(!ok && err.contains("not a UUID"), "{err}");

    // With the server stopped: directly on the file.
    tg.terminate();
    let (ok, out, err) = tollgate_cmd(&["forget", "--data", data, "--visitor", &b]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("deleted 3 events"), "{out}");
    let (ok, out, _) = tollgate_cmd(&[
        "query", "--data", data, "--format", "csv",
        "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM forget_requests) AS requests",
    ]);
    assert!(ok);
    assert_eq!(out, "events,requests\n0,2\n");
}

/// Devices, bots, channels, campaigns and geo, each as the proxy captured it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_through_the_proxy() {
    let up = Upstream::start().await;
    let dir = common::temp_dir();
    let mmdb = dir.path().join("city.mmdb");
    write_city_db(
        &mmdb,
        &[
            Entry {
                net: "203.0.113.0/24".parse().unwrap(),
                country: "DE",
                region: Some("Berlin"),
                city: Some("Berlin"),
            },
            Entry {
                net: "2001:db8:beef::/48".parse().unwrap(),
                country: "JP",
                region: Some("Tokyo"),
                city: Some("Tokyo"),
            },
        ],
    )
    .unwrap();
    let tg = Tollgate::start(
        &up.url(),
        &format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[enrich]\ngeo_db = {:?}\nbot_networks = [\"192.0.2.0/24\"]\n",
            mmdb.display()
        ),
    );
    let c = client();

    let sid_cookie = a_search_visit_from_berlin(&tg, &c).await;
    a_campaign_landing_starts_a_new_session(&tg, &c, &sid_cookie).await;
    click_ids_and_navigation_inside_the_site(&tg, &c).await;
    bots_are_stored_and_flagged(&tg, &c).await;

    // Of all the page views above, the ones not flagged came from a desktop and a phone.
    let humans: HashSet<String> = tg
        .query("SELECT DISTINCT device_type FROM events WHERE NOT is_bot")
        .await
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        humans,
        HashSet::from(["desktop".to_string(), "mobile".to_string()])
    );
}

/// The columns the enrichment fills, in the order the steps below index them.
const ENRICHED: &str = "channel, referrer_host, utm_source, utm_medium, utm_campaign, click_id_type, click_id, browser, os, device_type, is_bot, bot_reason, country, region, city, ip";

/// A first visit from a search engine, from a Berlin address; its session cookie is returned.
async fn a_search_visit_from_berlin(tg: &Tollgate, c: &reqwest::Client) -> String {
    let get = |path: &str, ip: &str, ua: &str| page(c, tg.url(path), ip, ua);

    let resp = get("/page/1", "203.0.113.9", CHROME)
        .header("referer", "https://www.google.de/")
        .send()
        .await
        .unwrap();
    let first_cookie = set_cookies(&resp)
        .into_iter()
        .find(|s| s.starts_with("tg_sid="))
        .unwrap();
    let r = row(tg, ENRICHED, &rid(&resp)).await;
    assert_eq!(r[0], "Organic Search");
    assert_eq!(r[1], "www.google.de");
    assert_eq!(
        r[7..10],
        [json!("Chrome"), json!("Windows"), json!("desktop")]
    );
    assert_eq!(r[10], false);
    assert_eq!(
        r[12..],
        [
            json!("DE"),
            json!("Berlin"),
            json!("Berlin"),
            json!("203.0.113.0")
        ]
    );
    let sid_cookie = first_cookie.split(';').next().unwrap().to_string();
    sid_cookie
}

/// A campaign landing with the session cookie of the visit before.
async fn a_campaign_landing_starts_a_new_session(
    tg: &Tollgate,
    c: &reqwest::Client,
    sid_cookie: &str,
) {
    let get = |path: &str, ip: &str, ua: &str| page(c, tg.url(path), ip, ua);
    // A campaign landing starts a new session, with the campaign stored.
    let resp = get(
        "/page/2?utm_source=Facebook&utm_medium=paid_social&utm_campaign=Spring%20Sale",
        "2001:db8:beef:1::5",
        IPHONE,
    )
    .header("cookie", sid_cookie)
    .header("referer", "https://l.facebook.com/")
    .send()
    .await
    .unwrap();
    let new_cookie = set_cookies(&resp)
        .into_iter()
        .find(|s| s.starts_with("tg_sid="))
        .unwrap();
    assert_ne!(
        new_cookie.split(';').next().unwrap().split('.').next(),
        sid_cookie.split('.').next()
    );
    let r = row(tg, ENRICHED, &rid(&resp)).await;
    assert_eq!(r[0], "Paid Social");
    assert_eq!(
        r[2..5],
        [
            json!("facebook"),
            json!("paid_social"),
            json!("Spring Sale")
        ]
    );
    assert_eq!(
        r[7..10],
        [json!("Mobile Safari"), json!("iOS"), json!("mobile")]
    );
    assert_eq!(r[12..15], [json!("JP"), json!("Tokyo"), json!("Tokyo")]);
}

/// Click ids, and referrers that are the site itself or none.
async fn click_ids_and_navigation_inside_the_site(tg: &Tollgate, c: &reqwest::Client) {
    let get = |path: &str, ip: &str, ua: &str| page(c, tg.url(path), ip, ua);
    let host = tg.proxy.to_string();
    // A gclid alone is Google Ads.
    let resp = get("/page/3?gclid=Cj0KCQ", "203.0.113.9", CHROME)
        .send()
        .await
        .unwrap();
    let r = row(tg, ENRICHED, &rid(&resp)).await;
    assert_eq!(r[0], "Paid Search");
    assert_eq!(
        r[2..7],
        [
            json!("google"),
            json!("cpc"),
            Value::Null,
            json!("gclid"),
            json!("Cj0KCQ")
        ]
    );

    // Navigation inside the site is not a traffic source.
    let resp = get("/page/4", "203.0.113.9", CHROME)
        .header("referer", format!("http://{host}/page/1"))
        .send()
        .await
        .unwrap();
    let r = row(tg, "channel, referrer_host", &rid(&resp)).await;
    assert_eq!(r, vec![Value::Null, json!(host.split(':').next().unwrap())]);
    let resp = get("/page/5", "203.0.113.9", CHROME).send().await.unwrap();
    assert_eq!(row(tg, "channel", &rid(&resp)).await[0], "Direct");
}

/// Bots by list, by header heuristics and by network: all stored, flagged.
async fn bots_are_stored_and_flagged(tg: &Tollgate, c: &reqwest::Client) {
    let get = |path: &str, ip: &str, ua: &str| page(c, tg.url(path), ip, ua);
    // Bots: by list, by header heuristics, by network. All stored, flagged.
    let resp = get("/page/6", "66.249.66.1", GOOGLEBOT)
        .send()
        .await
        .unwrap();
    let r = row(tg, ENRICHED, &rid(&resp)).await;
    assert_eq!((r[9].clone(), r[10].clone()), (json!("bot"), json!(true)));
    assert!(r[11].as_str().unwrap().starts_with("ua:"), "{r:?}");
    let resp = c
        .get(tg.url("/page/7"))
        .header("accept", "text/html")
        .header("user-agent", CHROME)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    let r = row(tg, "is_bot, bot_reason", &rid(&resp)).await;
    assert_eq!(r, vec![json!(true), json!("header:no-accept-language")]);
    let resp = get("/page/8", "192.0.2.44", CHROME).send().await.unwrap();
    let r = row(tg, "is_bot, bot_reason", &rid(&resp)).await;
    assert_eq!(r, vec![json!(true), json!("ip:192.0.2.0/24")]);
    let resp = c
        .get(tg.url("/page/9"))
        .header("user-agent", "curl/8.5.0")
        .send()
        .await
        .unwrap();
    let r = row(tg, "browser, device_type, is_bot", &rid(&resp)).await;
    assert_eq!(r, vec![json!("curl"), json!("bot"), json!(true)]);
}

#[test]
fn a_broken_geo_database_fails_start_up_clearly() {
    let dir = common::temp_dir();
    let bad = dir.path().join("bad.mmdb");
    std::fs::write(&bad, b"not a database").unwrap();
    let conf = dir.path().join("t.toml");
    std::fs::write(&conf, format!("[enrich]\ngeo_db = {:?}\n", bad.display())).unwrap();
    let (ok, _, err) = tollgate_cmd(&[
        "serve",
        "--upstream",
        "http://127.0.0.1:1",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--data",
        dir.path().join("d").to_str().unwrap(),
        "--config",
        conf.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("enrich.geo_db") && err.contains("bad.mmdb"),
        "{err}"
    );
}
