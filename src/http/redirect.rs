//! The plain listener when `tls.redirect_http` is on: everything moves to
//! HTTPS. BOSH clients get `see-other-uri` with the new URL in the body
//! (XEP-0124's way, BOSH-82k); everyone else a 308 redirect.

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

use crate::http::{AppState, Response, plain};

/// The way to HTTPS for any request to the plain listener.
pub fn respond(state: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let runtime = state.runtime();
    let port = state.tls_port.load(std::sync::atomic::Ordering::Relaxed);
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            if h.starts_with('[') {
                h.split_inclusive(']').next().unwrap_or(h)
            } else {
                h.split(':').next().unwrap_or(h)
            }
        })
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
    else {
        return plain(StatusCode::BAD_REQUEST, "a Host header is required\n");
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let bosh_path = uri.path().trim_end_matches('/');
    let is_bosh = runtime
        .config
        .bosh
        .paths
        .iter()
        .any(|p| p.trim_end_matches('/') == bosh_path);
    if is_bosh && method == Method::POST {
        let mut body = Vec::with_capacity(target.len() + 160);
        body.extend_from_slice(
            b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' \
              condition='see-other-uri'><uri>",
        );
        crate::xml::escape::push_text_escaped(&mut body, &target);
        body.extend_from_slice(b"</uri></body>");
        let mut response = Response::new(body.into());
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return response;
    }
    match HeaderValue::from_str(&target) {
        Ok(location) => {
            let mut response = plain(StatusCode::PERMANENT_REDIRECT, "moved to HTTPS\n");
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => plain(StatusCode::BAD_REQUEST, "bad Host header\n"),
    }
}
