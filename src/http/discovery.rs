//! XEP-0156 endpoint discovery: `/.well-known/host-meta` (XRD) and
//! `/.well-known/host-meta.json` (JRD), per served domain (WS-40..46).

use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};

use crate::http::{AppState, ConnInfo, Response, plain};
use crate::xml::escape::push_attr_escaped;

const BOSH_REL: &str = "urn:xmpp:alt-connections:xbosh";
const WEBSOCKET_REL: &str = "urn:xmpp:alt-connections:websocket";

/// Where and how a discovery request came in.
struct Origin<'a> {
    /// `Host`, or the HTTP/2 `:authority`.
    host: &'a str,
    /// Whether it came over HTTPS.
    secure: bool,
}

impl<'a> Origin<'a> {
    fn of(headers: &'a HeaderMap, uri: &'a Uri, conn: Option<&ConnInfo>) -> Option<Self> {
        let host = match headers.get(header::HOST) {
            Some(h) => h.to_str().ok()?,
            None => uri.authority()?.as_str(),
        };
        Some(Self {
            host: host.trim(),
            secure: conn.is_some_and(|c| c.tls.is_some()),
        })
    }
}

/// The public endpoint URLs for the domain named by `Host`, if it is served.
fn links(state: &AppState, origin: &Origin<'_>) -> Option<(String, String)> {
    let host = origin.host;
    let domain = host_without_port(host)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let runtime = state.runtime();
    let entry = runtime.config.hosts.get(&domain)?;
    let base = match &entry.public_base_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None if origin.secure => format!("https://{host}"),
        None => format!("http://{host}"),
    };
    let ws_base = base
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            base.strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })?;
    let bosh_path = runtime.config.bosh.paths.first()?;
    let ws_path = runtime.config.websocket.paths.first()?;
    Some((format!("{base}{bosh_path}"), format!("{ws_base}{ws_path}")))
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

fn respond(content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // WS-43: web clients on other origins must be able to read it.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "no XMPP domain is served for this host\n",
    )
}

/// `GET /.well-known/host-meta` (WS-40, WS-41).
pub fn host_meta(state: &AppState, conn: &ConnInfo, uri: &Uri, headers: &HeaderMap) -> Response {
    let origin = Origin::of(headers, uri, Some(conn));
    let Some((bosh, websocket)) = origin.and_then(|o| links(state, &o)) else {
        return not_found();
    };
    let mut out = Vec::with_capacity(400);
    out.extend_from_slice(
        b"<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n",
    );
    for (rel, href) in [(BOSH_REL, &bosh), (WEBSOCKET_REL, &websocket)] {
        out.extend_from_slice(b"  <Link rel='");
        out.extend_from_slice(rel.as_bytes());
        out.extend_from_slice(b"' href='");
        push_attr_escaped(&mut out, href);
        out.extend_from_slice(b"'/>\n");
    }
    out.extend_from_slice(b"</XRD>\n");
    respond(
        "application/xrd+xml; charset=utf-8",
        String::from_utf8_lossy(&out).into_owned(),
    )
}

/// `GET /.well-known/host-meta.json` (WS-40, WS-41).
pub fn host_meta_json(
    state: &AppState,
    conn: &ConnInfo,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let origin = Origin::of(headers, uri, Some(conn));
    let Some((bosh, websocket)) = origin.and_then(|o| links(state, &o)) else {
        return not_found();
    };
    let body = format!(
        "{{\"links\":[{{\"rel\":\"{BOSH_REL}\",\"href\":{}}},{{\"rel\":\"{WEBSOCKET_REL}\",\"href\":{}}}]}}\n",
        json_string(&bosh),
        json_string(&websocket)
    );
    respond("application/json", body)
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(host_without_port("example.com:5280"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:5280"), "::1");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
