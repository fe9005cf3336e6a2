//! The internal listener: HTTP/2 with prior knowledge, for peers only.
//! Every request must carry the shared secret (401 without one, 403 with
//! a wrong one), and only the two cluster paths exist. A forwarded BOSH
//! request is handled here as if it had come from the client, but never
//! forwarded again: one hop at most, whatever the peers believe.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::cluster::{BOSH_PATH, Cluster, NODE_PATH, NodeStatus};
use crate::http::{AppState, Response, plain};

/// Streams on one peer connection: every forwarded long-poll of the
/// sessions this replica owns holds one, so far more than a browser's.
const MAX_STREAMS: u32 = 100_000;
/// Pings that find dead peers.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Accepts peer connections until aborted.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer, Arc::clone(&state)));
            }
            Err(e) => {
                tracing::warn!("accept failed on the cluster listener: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, state: Arc<AppState>) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(request, peer, &state).await.map(Full::new)) }
    });
    let result = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(16 * 1024)
        .keep_alive_interval(Some(KEEPALIVE))
        .keep_alive_timeout(KEEPALIVE)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, "cluster connection ended: {e}");
    }
}

async fn handle(
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<AppState>,
) -> Response {
    let Some(cluster) = state.cluster.as_ref() else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    if let Err(response) = authorise(cluster, request.headers(), peer) {
        return *response;
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, NODE_PATH) => node(cluster, state),
        (&Method::POST, BOSH_PATH) => {
            let limit = state.runtime().config.bosh.max_body_bytes;
            let (parts, body) = request.into_parts();
            let body = match Limited::new(body, limit).collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(crate::http::bosh::BodyError::TooLarge)
                }
                Err(_) => Err(crate::http::bosh::BodyError::Io),
            };
            crate::http::bosh::post_forwarded(state, parts.headers, body).await
        }
        (_, NODE_PATH | BOSH_PATH) => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// 401 without a bearer secret, 403 with a wrong one.
fn authorise(
    cluster: &Cluster,
    headers: &http::HeaderMap,
    peer: SocketAddr,
) -> Result<(), Box<Response>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(secret) if cluster.identity.accepts(secret) => Ok(()),
        Some(_) => {
            tracing::warn!(%peer, "cluster request with a wrong secret refused");
            Err(Box::new(plain(StatusCode::FORBIDDEN, "forbidden\n")))
        }
        None => {
            tracing::info!(%peer, "cluster request without a secret refused");
            let mut response = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Box::new(response))
        }
    }
}

fn node(cluster: &Cluster, state: &AppState) -> Response {
    let status = NodeStatus {
        tag: cluster.tag().to_string(),
        draining: state.is_draining(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let body = serde_json::to_vec(&status).unwrap_or_default();
    let mut response = Response::new(Bytes::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
