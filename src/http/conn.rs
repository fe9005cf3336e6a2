//! Serving one accepted client connection: plain HTTP/1.1, or TLS with
//! HTTP/1.1 or HTTP/2 chosen by ALPN. The TLS handshake is bounded by
//! `limits.tls_handshake_timeout_secs`; a timeout is counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::admission::ConnectionSlot;
use crate::http::{AppState, ConnInfo, TlsInfo, h1, h2};
use crate::metrics::Limit;

/// Serves a plain connection (HTTP/1.1); with `redirecting`, every request
/// is answered with the way to HTTPS.
pub fn spawn_plain(
    stream: TcpStream,
    peer: SocketAddr,
    redirecting: bool,
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
    tokio::spawn(h1::serve(stream, info, state, redirecting));
}

/// Runs the TLS handshake, then serves HTTP/2 or HTTP/1.1 as ALPN chose.
pub fn spawn_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
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
        if h2 {
            h2::serve(tls, info, state).await;
        } else {
            h1::serve(tls, info, state, false).await;
        }
    });
}
