//! The WebSocket side of the relay loop: one task owns the client WebSocket,
//! the framing core and (through the driver) the upstream connection.
//!
//! Outgoing messages wait in a queue whose size is the client's backlog; past
//! the configured bound the core closes the session (`policy-violation`).
//! Reads and writes of the WebSocket are polled together, so a client that
//! does not read never stops us from reading its frames or the server.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, Utf8Bytes};

use crate::http::{AppState, Runtime};
use crate::metrics::{CloseReason, Limit, Traffic};
use crate::relay::driver::{ClientSide, RouteRequest, SideReport};
use crate::sessions::{SessionInfo, Transport};
use crate::upstream::proxy_protocol::ClientInfo;
use crate::upstream::{UpstreamAction, UpstreamEvent};
use crate::websocket::{ClientAction, WsEnd, WsSession};

/// Time allowed to flush the last messages (the error, `<close/>`, the Close
/// frame) once the session is over.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// What woke the relay loop on the client side.
#[derive(Debug)]
pub enum WsInput {
    /// A message, an error, or the end of the stream.
    Frame(Option<Result<Message, tungstenite::Error>>),
    /// The queue was written out (or writing failed).
    Flushed(Result<(), tungstenite::Error>),
}

/// The byte streams a WebSocket can run on: a TCP or TLS connection after an
/// HTTP/1.1 upgrade, or an HTTP/2 stream after an extended CONNECT.
pub trait WsIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> WsIo for T {}

/// One WebSocket session in the relay loop.
pub struct WsRelay<S> {
    core: WsSession,
    socket: WebSocketStream<S>,
    out: VecDeque<Message>,
    out_bytes: usize,
    flush_pending: bool,
    read_closed: bool,
    /// The server is behind on client data: frames wait in the socket.
    reading_paused: bool,
    write_broken: bool,
    close_queued: bool,
    ended_at: Option<Instant>,
    messages_sent: u64,
    state: Arc<AppState>,
    runtime: Arc<Runtime>,
    info: Arc<SessionInfo>,
    client: ClientInfo,
}

impl<S> std::fmt::Debug for WsRelay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsRelay")
            .field("core", &self.core)
            .field("out_bytes", &self.out_bytes)
            .finish_non_exhaustive()
    }
}

impl<S: WsIo> WsRelay<S> {
    /// Wraps an accepted WebSocket of `client`, under the configuration
    /// `runtime` for its whole life.
    pub fn new(
        core: WsSession,
        socket: WebSocketStream<S>,
        state: Arc<AppState>,
        runtime: Arc<Runtime>,
        client: ClientInfo,
        info: Arc<SessionInfo>,
    ) -> Self {
        Self {
            core,
            socket,
            out: VecDeque::new(),
            out_bytes: 0,
            flush_pending: false,
            read_closed: false,
            reading_paused: false,
            write_broken: false,
            close_queued: false,
            ended_at: None,
            messages_sent: 0,
            state,
            runtime,
            info,
            client,
        }
    }

    /// Moves what the core produced for the client into the send queue.
    fn pump(&mut self, now: Instant) {
        loop {
            while let Some(action) = self.core.poll_client() {
                // Nothing more can reach a client whose socket broke.
                if self.close_queued || self.write_broken {
                    continue;
                }
                match action {
                    ClientAction::Text(bytes) => match Utf8Bytes::try_from(bytes) {
                        Ok(text) => {
                            self.out_bytes += text.len();
                            self.messages_sent += 1;
                            self.out.push_back(Message::Text(text));
                        }
                        Err(e) => tracing::error!("dropping a non-UTF-8 message: {e}"),
                    },
                    ClientAction::Ping => self.out.push_back(Message::Ping(Bytes::new())),
                    ClientAction::DropBacklog => {
                        self.out.clear();
                        self.out_bytes = 0;
                    }
                    ClientAction::Close(code) => {
                        self.out.push_back(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: Utf8Bytes::from_static(""),
                        })));
                        self.close_queued = true;
                    }
                }
            }
            if self.out_bytes > self.runtime.config.websocket.max_backlog_bytes
                && !self.close_queued
            {
                self.state
                    .metrics
                    .slow_client_closes
                    .with_label_values(&[Transport::WebSocket.as_str()])
                    .inc();
                self.state.metrics.limit_hit(Limit::ClientBacklog);
                self.core.handle_client_backlog(now, self.out_bytes);
                continue;
            }
            break;
        }
        if self.core.ended().is_some() && self.ended_at.is_none() {
            self.ended_at = Some(now);
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tungstenite::Error>> {
        while !self.out.is_empty() {
            ready!(self.socket.poll_ready_unpin(cx))?;
            if let Some(message) = self.out.pop_front() {
                if let Message::Text(text) = &message {
                    self.out_bytes = self.out_bytes.saturating_sub(text.len());
                }
                self.socket.start_send_unpin(message)?;
                self.flush_pending = true;
            }
        }
        if self.out.capacity() > 0 {
            // Idle sessions keep no queue storage.
            self.out = VecDeque::new();
        }
        if self.flush_pending {
            ready!(self.socket.poll_flush_unpin(cx))?;
            self.flush_pending = false;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<WsInput> {
        if !self.write_broken
            && (!self.out.is_empty() || self.flush_pending)
            && let Poll::Ready(result) = self.poll_drain(cx)
        {
            return Poll::Ready(WsInput::Flushed(result));
        }
        if !self.read_closed
            && !self.reading_paused
            && let Poll::Ready(frame) = self.socket.poll_next_unpin(cx)
        {
            return Poll::Ready(WsInput::Frame(frame));
        }
        Poll::Pending
    }

    fn on_frame(&mut self, now: Instant, frame: Option<Result<Message, tungstenite::Error>>) {
        if matches!(frame, Some(Ok(_))) {
            self.info.touch(now);
        }
        match frame {
            Some(Ok(Message::Text(text))) => self.core.handle_client_text(now, &text),
            Some(Ok(Message::Binary(_))) => self.core.handle_client_binary(now),
            Some(Ok(Message::Ping(_))) => {
                // WS-33: the library queued the Pong; make sure it goes out.
                self.flush_pending = true;
                self.core.handle_client_pong(now);
            }
            Some(Ok(Message::Pong(_))) => self.core.handle_client_pong(now),
            Some(Ok(Message::Close(_))) => {
                self.flush_pending = true;
                self.core.handle_client_close(now);
            }
            Some(Ok(Message::Frame(_))) => {}
            Some(Err(error)) => {
                self.read_closed = true;
                match error {
                    tungstenite::Error::Utf8(_) => self.core.handle_client_invalid_utf8(now),
                    tungstenite::Error::Capacity(_) => {
                        self.state.metrics.limit_hit(Limit::WebSocketMessageBytes);
                        self.core.handle_client_too_big(now);
                    }
                    tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ) => {
                        // The client vanished; nothing to answer (WS-27).
                        self.write_broken = true;
                        self.core.handle_client_gone();
                    }
                    tungstenite::Error::Protocol(p) => {
                        tracing::debug!("WebSocket protocol error: {p}");
                        self.core.handle_client_protocol_error(now);
                    }
                    other => {
                        tracing::debug!("WebSocket read failed: {other}");
                        self.write_broken = true;
                        self.core.handle_client_gone();
                    }
                }
            }
            None => {
                self.read_closed = true;
                self.core.handle_client_gone();
            }
        }
    }
}

impl<S: WsIo> ClientSide for WsRelay<S> {
    type ClientInput = WsInput;

    fn upstream_route(&mut self, now: Instant) -> Option<RouteRequest> {
        let domain = self.core.requested_domain()?;
        match self.runtime.upstreams.serves(domain) {
            Some(own) => {
                tracing::info!(domain, "WebSocket stream opened");
                let route = RouteRequest {
                    domain: domain.into(),
                    client: self.client.clone(),
                    target: None,
                };
                self.core.accept_domain(own);
                Some(route)
            }
            None => {
                tracing::info!(domain, "WebSocket stream refused: domain not served");
                self.core.refuse_domain(now);
                self.pump(now);
                None
            }
        }
    }

    fn on_upstream(&mut self, now: Instant, events: &mut Vec<UpstreamEvent>) {
        for event in events.drain(..) {
            self.core.handle_upstream(now, event);
        }
        self.pump(now);
    }

    fn on_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        if self.ended_at.is_some_and(|t| now >= t + FINAL_FLUSH) {
            self.write_broken = true;
        }
        self.pump(now);
    }

    fn take_actions(&mut self, out: &mut VecDeque<UpstreamAction>) {
        while let Some(action) = self.core.poll_upstream() {
            out.push_back(action);
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        match self.ended_at {
            Some(t) => Some(t + FINAL_FLUSH),
            None => self.core.poll_timeout(),
        }
    }

    fn wants_upstream_data(&mut self) -> bool {
        self.core.ended().is_none()
    }

    fn is_done(&mut self) -> bool {
        self.core.ended().is_some()
            && (self.write_broken || (self.out.is_empty() && !self.flush_pending))
    }

    fn upstream_congested(&mut self, congested: bool) {
        self.reading_paused = congested;
    }

    fn report(&mut self) -> SideReport {
        let stats = self.core.stats();
        SideReport {
            traffic: Traffic {
                stanzas_to_client: stats.elements_to_client,
                bytes_to_client: stats.bytes_to_client,
                stanzas_to_upstream: stats.elements_to_upstream,
                bytes_to_upstream: stats.bytes_to_upstream,
                messages_from_client: stats.messages_from_client,
                messages_to_client: self.messages_sent,
                client_xml_limit_hits: stats.xml_limit_hits,
                ..Traffic::default()
            },
            queued_to_client: self.out_bytes,
            held_requests: 0,
        }
    }

    fn kick(&mut self, now: Instant) {
        self.core.handle_kick(now);
        self.pump(now);
    }

    fn shutdown(&mut self, now: Instant) {
        self.core.handle_shutdown(now);
        self.pump(now);
    }

    fn close_reason(&mut self) -> CloseReason {
        let (reason, condition) = match self.core.ended() {
            Some(WsEnd::Closed) => ("client_close", ""),
            Some(WsEnd::ClientGone) => ("client_gone", ""),
            Some(WsEnd::StreamError(c)) => (
                match c {
                    "internal-server-error" | "remote-connection-failed" | "host-unknown" => {
                        "upstream_error"
                    }
                    "system-shutdown" => "shutdown",
                    "connection-timeout" => "inactivity",
                    _ => "error",
                },
                c,
            ),
            Some(WsEnd::UpstreamStreamError) => ("upstream_error", "remote-stream-error"),
            Some(WsEnd::Redirected) => ("redirected", ""),
            None => ("error", ""),
        };
        CloseReason { reason, condition }
    }

    async fn client_ready(&mut self) -> WsInput {
        std::future::poll_fn(|cx| self.poll_input(cx)).await
    }

    fn on_client(&mut self, now: Instant, input: WsInput) {
        match input {
            WsInput::Frame(frame) => self.on_frame(now, frame),
            WsInput::Flushed(Ok(())) => {}
            WsInput::Flushed(Err(e)) => {
                tracing::debug!("WebSocket write failed: {e}");
                self.write_broken = true;
                self.out.clear();
                self.out_bytes = 0;
                // Frames the client sent before it went (a last presence,
                // <close/>) may still wait in the socket: read them out
                // and relay them first; the end of the read side ends the
                // session.
                if self.read_closed {
                    self.core.handle_client_gone();
                }
            }
        }
        self.pump(now);
    }

    fn finished(&mut self) {
        let stats = self.core.stats();
        tracing::info!(
            reason = ?self.core.ended(),
            to_client = stats.elements_to_client,
            to_upstream = stats.elements_to_upstream,
            "WebSocket session ended"
        );
    }
}
