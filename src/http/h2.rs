//! HTTP/2 on the HTTPS listener (ALPN `h2`), through hyper: the same
//! endpoints as HTTP/1.1, and WebSocket over extended CONNECT (RFC 8441).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::http::bosh::BodyError;
use crate::http::route::{self, Endpoint, Request};
use crate::http::{AppState, ConnInfo, Response, plain, websocket};
use crate::relay::websocket::WsIo;

/// HTTP/2 streams one connection may have open (BOSH needs `hold` + 1).
const MAX_STREAMS: u32 = 64;
/// Header block limit.
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Pings that find dead peers.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// Serves HTTP/2 on `io` until the connection ends.
pub async fn serve<S: WsIo>(io: S, info: ConnInfo, state: Arc<AppState>) {
    let peer = info.peer;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let state = Arc::clone(&state);
        let info = info.clone();
        async move {
            let response = handle(request, &info, &state).await;
            Ok::<_, Infallible>(response.map(Full::new))
        }
    });
    let result = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .keep_alive_interval(Some(KEEPALIVE))
        .keep_alive_timeout(KEEPALIVE)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, "HTTP/2 connection ended: {e}");
    }
}

async fn handle(
    request: hyper::Request<Incoming>,
    info: &ConnInfo,
    state: &Arc<AppState>,
) -> Response {
    let runtime = state.runtime();
    let endpoint = route::endpoint(&runtime, request.uri().path());
    let websocket_connect = request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str() == "websocket");
    if endpoint == Endpoint::WebSocket && websocket_connect {
        let accepted = match websocket::accept(state, info, request.headers()) {
            Ok(accepted) => accepted,
            Err(response) => return *response,
        };
        let mut response = plain(StatusCode::OK, "");
        if let Some((name, value)) = websocket::subprotocol_header(&accepted) {
            response.headers_mut().insert(name, value);
        }
        let state = Arc::clone(state);
        tokio::spawn(async move {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    websocket::run(state, accepted, TokioIo::new(upgraded), Vec::new()).await
                }
                Err(e) => tracing::debug!("HTTP/2 WebSocket stream failed: {e}"),
            }
        });
        return response;
    }
    let limit = route::body_limit(&runtime, endpoint, request.method());
    drop(runtime);
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok::<Bytes, BodyError>(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Io),
    };
    let request = Request {
        method: &parts.method,
        uri: &parts.uri,
        headers: parts.headers,
        conn: info,
        redirecting: false,
    };
    route::handle(state, request, body).await
}
