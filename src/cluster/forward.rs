//! The client side of the internal listener: one HTTP/2 connection per
//! peer (prior knowledge, no TLS), multiplexing every forwarded request
//! and every state probe, opened on first use and again after it breaks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpStream;

/// Largest answer taken from a peer (a BOSH response is far smaller).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Pings that find a peer that vanished without closing its sockets.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection to the peer (refused, timed out, handshake failed):
    /// nothing was sent, so another peer may be tried.
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The exchange broke or timed out after the request was sent.
    #[error("peer {addr}: {reason}")]
    Failed {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

impl ForwardError {
    /// The metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Failed { .. } => "failed",
        }
    }
}

/// A peer's answer.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

type Sender = SendRequest<Full<Bytes>>;

/// The connections to peers, by address.
#[derive(Debug)]
pub struct Forwarder {
    connect_timeout: Duration,
    // One async lock per peer, so concurrent requests to a peer whose
    // connection broke open one new connection, not one each.
    conns: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Option<Sender>>>>>,
}

impl Forwarder {
    /// Connections are opened within `connect_timeout` (TCP and HTTP/2 handshake).
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` to `addr` and waits up to `limit` for the whole answer.
    pub async fn send(
        &self,
        addr: SocketAddr,
        request: Request<Full<Bytes>>,
        limit: Duration,
    ) -> Result<Answer, ForwardError> {
        let mut sender = self.sender(addr).await?;
        let failed = |reason: String| ForwardError::Failed { addr, reason };
        let exchange = async {
            if sender.ready().await.is_err() {
                // Closed between the check and now: nothing was sent.
                return Err(ForwardError::Unreachable {
                    addr,
                    reason: "connection closed".into(),
                });
            }
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {} s", limit.as_secs())))?
    }

    /// Forgets connections to peers no longer known.
    pub fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        self.conns.lock().retain(|addr, _| keep(addr));
    }

    async fn sender(&self, addr: SocketAddr) -> Result<Sender, ForwardError> {
        let slot = Arc::clone(self.conns.lock().entry(addr).or_default());
        let mut slot = slot.lock().await;
        if let Some(sender) = slot.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        *slot = None;
        let unreachable = |reason: String| ForwardError::Unreachable { addr, reason };
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(KEEPALIVE)
                .keep_alive_timeout(KEEPALIVE)
                .keep_alive_while_idle(true)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))
        };
        let (sender, connection) = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no connection within {} s",
                    self.connect_timeout.as_secs()
                ))
            })??;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%addr, "connection to peer ended: {e}");
            }
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }
}

/// A request to a peer: `method` on `path`, authorised with `bearer`.
pub fn request(
    method: http::Method,
    addr: SocketAddr,
    path: &str,
    bearer: HeaderValue,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, http::Error> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(header::AUTHORIZATION, bearer)
        .body(Full::new(body))
}
