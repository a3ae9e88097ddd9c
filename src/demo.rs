//! The demo shop behind `tollgate demo`: a few HTML pages, a JSON product API and a register
//! form, served on a loopback port so tollgate has something real to sit in front of.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;

const PRODUCTS: &[(u32, &str, u32)] = &[
    (1, "Mirrorless camera X100", 1299),
    (2, "35mm prime lens", 449),
    (3, "Travel tripod", 189),
];

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · Demo Camera Shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/shop.css"></head>
<body><header><a href="/">Demo Camera Shop</a> · <a href="/products">Products</a> · <a href="/register">Register</a></header>
<main>{body}</main></body></html>
"#
    ))
}

async fn home() -> Html<String> {
    page(
        "Home",
        "<h1>Welcome</h1><p>Cameras, lenses and tripods. Try <a href=\"/products/1\">the X100</a>.</p>",
    )
}

async fn products() -> Html<String> {
    let items: String = PRODUCTS
        .iter()
        .map(|(id, name, price)| {
            format!("<li><a href=\"/products/{id}\">{name}</a> – €{price}</li>")
        })
        .collect();
    page("Products", &format!("<h1>Products</h1><ul>{items}</ul>"))
}

async fn product_page(Path(id): Path<u32>) -> impl IntoResponse {
    match PRODUCTS.iter().find(|p| p.0 == id) {
        Some((id, name, _)) => page(
            name,
            &format!(
                r#"<h1>{name}</h1><p id="price">…</p>
<script>fetch('/api/products/{id}').then(r => r.json()).then(p => document.getElementById('price').textContent = '€' + p.price);</script>
<p><button data-tg-event="wishlist" data-tg-prop-product="{id}">Add to wishlist</button></p>
<p><a href="/register">Register to reserve one</a></p>"#
            ),
        )
        .into_response(),
        None => (StatusCode::NOT_FOUND, page("Not found", "<h1>No such product</h1>")).into_response(),
    }
}

async fn product_api(Path(id): Path<u32>) -> impl IntoResponse {
    match PRODUCTS.iter().find(|p| p.0 == id) {
        Some((id, name, price)) => {
            Json(serde_json::json!({ "id": id, "name": name, "price": price })).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "no such product" })),
        )
            .into_response(),
    }
}

async fn register_form() -> Html<String> {
    page(
        "Register",
        r#"<h1>Register</h1><form id="register" method="post" action="/api/register">
<label>Email <input name="email" type="email" required></label>
<button type="submit">Register</button></form>"#,
    )
}

async fn register() -> impl IntoResponse {
    (
        StatusCode::CREATED,
        page(
            "Thanks",
            "<h1>Thanks for registering</h1><p><a href=\"/\">Back to the shop</a></p>",
        ),
    )
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css")],
        "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}header{margin-bottom:1rem}",
    )
}

/// The demo shop's routes.
pub fn router() -> Router {
    Router::new()
        .route("/", get(home))
        .route("/products", get(products))
        .route("/products/{id}", get(product_page))
        .route("/api/products/{id}", get(product_api))
        .route("/register", get(register_form))
        .route("/api/register", post(register))
        .route("/static/shop.css", get(css))
}

/// Serve the shop on `addr` (port 0 picks one) from a thread of its own; returns the address.
pub fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("tollgate-demo-shop".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("demo runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("demo listener");
                let _ = axum::serve(l, router()).await;
            });
        })?;
    Ok(addr)
}
