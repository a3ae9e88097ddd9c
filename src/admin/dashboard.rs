//! The dashboard: hand-written HTML, CSS and JS (no build step), embedded in the binary and
//! served at `/` and `/assets/*`. It reads the reports API and the SQL console like any client.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Scripts only from this origin, no framing; inline style attributes are allowed for the
/// charts' computed widths.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

pub fn routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
}

/// The page, with the reports' catalog (`crate::reports::catalog`) in a JSON data block that
/// `app.js` reads: the dashboard knows the reports and dimensions from the same list as the
/// API. (A data block is not a script: the CSP does not apply to it.)
static PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let catalog = crate::reports::catalog().to_string().replace("</", "<\\/");
    INDEX.replace(
        "</head>",
        &format!("<script type=\"application/json\" id=\"catalog\">{catalog}</script>\n</head>"),
    )
});

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE.as_str(),
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE_CSS,
    )
}
