//! Serving one accepted client connection: plain HTTP/1.1, or TLS with
//! HTTP/1.1 or HTTP/2 chosen by ALPN. Connection-level limits live here:
//! the header read timeout (also the idle keep-alive timeout) and the TLS
//! handshake timeout; each hit is counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::admission::ConnectionSlot;
use crate::http::{AppState, ConnInfo, TlsInfo};
use crate::metrics::Limit;

/// HTTP/2 streams one connection may have open (BOSH needs `hold` + 1).
const H2_MAX_STREAMS: u32 = 64;
/// HTTP/2 header block limit.
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// Pings that find dead HTTP/2 peers.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Serves a plain connection (HTTP/1.1).
pub fn spawn_plain(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    state: Arc<AppState>,
    slot: ConnectionSlot,
) {
    let _ = stream.set_nodelay(true);
    let info = ConnInfo {
        peer,
        local: stream.local_addr().unwrap_or(peer),
        tls: None,
        slot: Arc::new(parking_lot::Mutex::new(Some(slot))),
    };
    tokio::spawn(async move {
        serve(stream, info, false, router, &state).await;
    });
}

/// Runs the TLS handshake (bounded by `limits.tls_handshake_timeout_secs`),
/// then serves HTTP/2 or HTTP/1.1 as ALPN chose.
pub fn spawn_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    state: Arc<AppState>,
    slot: ConnectionSlot,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let limit = Duration::from_secs(u64::from(
        state.runtime().config.limits.tls_handshake_timeout_secs,
    ));
    tokio::spawn(async move {
        let tls = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                state.metrics.limit_hit(Limit::TlsHandshakeTimeout);
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let (_, session) = tls.get_ref();
        let h2 = session.alpn_protocol() == Some(b"h2");
        let info = ConnInfo {
            peer,
            local,
            slot: Arc::new(parking_lot::Mutex::new(Some(slot))),
            tls: Some(TlsInfo {
                version: session.protocol_version().map(|v| match v {
                    rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                    _ => "TLSv1.2",
                }),
                alpn: Some(if h2 { "h2" } else { "http/1.1" }),
                server_name: session.server_name().map(Box::from),
            }),
        };
        serve(tls, info, h2, router, &state).await;
    });
}

async fn serve<I>(io: I, info: ConnInfo, h2: bool, router: Router, state: &AppState)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = Duration::from_secs(u64::from(
        state.runtime().config.limits.header_read_timeout_secs,
    ));
    let peer = info.peer;
    let service = router.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        req
    });
    let service = TowerToHyperService::new(service);
    let result = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(H2_MAX_HEADER_LIST)
            .keep_alive_interval(Some(H2_KEEPALIVE))
            .keep_alive_timeout(H2_KEEPALIVE)
            .serve_connection(TokioIo::new(io), service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await
    };
    if let Err(e) = result {
        if e.is_timeout() {
            state.metrics.limit_hit(Limit::HeaderReadTimeout);
        }
        tracing::debug!(%peer, "HTTP connection ended: {e}");
    }
}
