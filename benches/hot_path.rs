//! The proxy's per-request work, in-process: identity resolution (with cookies, and
//! cookieless), classification and route templating. `cargo bench --bench hot_path`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::Method;
use std::hint::black_box;
use tollgate::config::Settings;
use tollgate::proxy::consent::Salt;
use tollgate::proxy::signing::CookieKey;
use tollgate::proxy::{capture, identity};

fn settings() -> Settings {
    Settings::defaults("http://127.0.0.1:3000").expect("default settings")
}

fn request() -> tollgate::proxy::head::RequestHead {
    let mut r = http::Request::builder().uri("/products/42?utm_source=fb&token=abc");
    for (k, v) in [
        ("host", "shop.example"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"),
        ("accept", "text/html,application/xhtml+xml"),
        ("cookie", "_ga=GA1.2.3; tg_vid=5b3c1e5e-8f3a-4e2b-9a5c-2f1d7e6a9b01; tg_sid=0190c9a4-8a0b-7cc2-9d1e-3f4a5b6c7d8e; theme=dark"),
        ("referer", "https://www.facebook.com/"),
    ] {
        r = r.header(k, v);
    }
    r.body(()).unwrap().into_parts().0
}

fn bench(c: &mut Criterion) {
    let s = settings();
    let req = request();
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
    let keys = identity::Keys {
        salt: Salt::load(None, 0),
        cookie: CookieKey::ephemeral(),
    };
    // A visitor cookie as tollgate issued it, so that its signature is checked and holds.
    let mut req = req;
    let vid = keys
        .cookie
        .sign(&"5b3c1e5e-8f3a-4e2b-9a5c-2f1d7e6a9b01".parse().unwrap());
    req.headers.insert(
        "cookie",
        format!(
            "_ga=GA1.2.3; tg_vid={vid}; tg_sid=0190c9a4-8a0b-7cc2-9d1e-3f4a5b6c7d8e; theme=dark"
        )
        .parse()
        .unwrap(),
    );
    let ip = "203.0.113.7".parse().ok();
    g.bench_function("identity_resolve", |b| {
        b.iter(|| identity::resolve(black_box(&req), &s, &keys, ip, 1_000))
    });
    let mut cookieless = s.clone();
    cookieless.privacy.cookieless = true;
    g.bench_function("identity_resolve_cookieless", |b| {
        b.iter(|| identity::resolve(black_box(&req), &cookieless, &keys, ip, 1_000))
    });
    g.bench_function("classify", |b| {
        b.iter(|| {
            capture::classify(
                &Method::GET,
                black_box("/products/42"),
                &req.headers,
                b"text/html; charset=utf-8",
                200,
                &s.capture,
            )
        })
    });
    g.bench_function("route", |b| {
        b.iter(|| tollgate::enrich::route::route(black_box("/api/products/42/reviews")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
