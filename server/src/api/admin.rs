//! `GET /admin`: the operator's web page, three static files compiled into
//! the binary (no CDN, works offline, about 15 KB). The page itself needs
//! no key; it asks for the admin key when the API wants one, keeps it in
//! the tab's `sessionStorage`, and sends it as an `Authorization` header,
//! never in a URL. Its paths are relative, so it works under a prefix where
//! an application nests the hub.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../admin/index.html");
const SCRIPT: &str = include_str!("../../admin/admin.js");
const STYLE: &str = include_str!("../../admin/admin.css");

/// Only the page's own files run or load; nothing from elsewhere, no inline
/// script, and no framing by other sites.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                      script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

/// `GET /admin`.
pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /admin/`: the page's relative paths need `/admin` without the slash.
pub(crate) async fn slash() -> Response {
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "../admin")]).into_response()
}

/// `GET /admin/admin.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /admin/admin.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
