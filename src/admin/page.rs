//! The status page: one self-contained HTML file (styles and script inline,
//! no CDN), compiled into the binary. It reads the JSON API.

use axum::response::{IntoResponse, Response};
use http::header;

const PAGE: &str = include_str!("status.html");

/// `GET /` on the admin listener.
pub(super) async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:",
            ),
        ],
        PAGE,
    )
        .into_response()
}
