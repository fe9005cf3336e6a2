//! The RFC 7395 framing translator, without I/O.
//!
//! A [`WsSession`] sits between one WebSocket connection and one upstream
//! c2s stream. Client messages come in whole (the I/O layer reassembles
//! frames); each is one element. `<open/>`/`<close/>` become the upstream
//! stream header and closing tag, and the server's header, elements and
//! closing tag become standalone messages (WS-9, WS-11, WS-12, WS-20).
//!
//! Callers feed inputs, then drain [`WsSession::poll_client`] (send to the
//! WebSocket, in order) and [`WsSession::poll_upstream`], and re-arm their
//! timer from [`WsSession::poll_timeout`].
//!
//! ```text
//!  AwaitingOpen ─<open/>─► AwaitingDomain ─accept─► Opening ─server header─► Open
//!       │                       └─refuse─► error                             │
//!       └─timeout/bad input─► error ─► AwaitingCloseFrame ─► Ended           │
//!  Open ─client <close/>─► ClosingByClient ─server </stream>/timeout─► AwaitingCloseFrame
//!  Open ─server </stream>─► ClosingByServer ─client <close/>/timeout─► AwaitingCloseFrame
//!  any ─WebSocket closed or dropped─► Ended (upstream aborted if the stream was open)
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::stanza::{ElementKind, StandaloneContext, StreamHeader};
use crate::upstream::{OpenStream, UpstreamAction, UpstreamEvent, UpstreamFailure};
use crate::websocket::message::{ClientMessage, MessageError, OpenAttrs, parse_message};
use crate::xml::escape::{push_attr, push_text_escaped};
use crate::xml::reserialize::{ClientTop, ClientXmlLimits};

/// Per-connection limits and timers (from config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsLimits {
    /// Time allowed for the first `<open/>`.
    pub open_timeout: Duration,
    /// Client silence after which a WebSocket Ping is sent.
    pub ping_interval: Duration,
    /// Client silence (no frame, no Pong) after which the stream is closed.
    pub idle_timeout: Duration,
    /// Wait for the other side's `<close/>` or Close frame.
    pub close_timeout: Duration,
    /// Bytes queued for a client that does not read before the session is
    /// closed with `policy-violation`.
    pub max_backlog_bytes: usize,
    /// Accept several elements in one message (RFC 7395 forbids it).
    pub allow_multiple_elements: bool,
    /// Answer the first `<open/>` with a redirect to this URI (WS-31).
    pub see_other_uri: Option<Box<str>>,
    /// Bounds on client XML.
    pub client_xml: ClientXmlLimits,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            open_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            close_timeout: Duration::from_secs(5),
            max_backlog_bytes: 1024 * 1024,
            allow_multiple_elements: false,
            see_other_uri: None,
            client_xml: ClientXmlLimits::default(),
        }
    }
}

/// WebSocket close codes xmpp-edge sends (RFC 6455 §7.4.1, WS-37).
pub mod close_code {
    /// Normal end after the `<close/>` exchange.
    pub const NORMAL: u16 = 1000;
    /// xmpp-edge is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// WebSocket protocol violation.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary message.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy was violated.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message larger than accepted.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Unexpected internal failure.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Something to send to the client, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// One text message: a complete element.
    Text(Bytes),
    /// A WebSocket Ping.
    Ping,
    /// Discard whatever is queued and unsent (the client stopped reading).
    DropBacklog,
    /// A Close frame; nothing is sent after it.
    Close(u16),
}

/// Why a session ended, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsEnd {
    /// The XMPP stream was closed by the `<close/>` exchange.
    Closed,
    /// The WebSocket closed or broke while the stream was open (WS-27).
    ClientGone,
    /// xmpp-edge sent a stream error with this condition.
    StreamError(&'static str),
    /// The server sent a stream error.
    UpstreamStreamError,
    /// The client was redirected (WS-31).
    Redirected,
}

/// Plain counters, pulled by the metrics layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsStats {
    /// Messages from the client.
    pub messages_from_client: u64,
    /// Elements relayed to the client.
    pub elements_to_client: u64,
    /// Bytes of elements relayed to the client (as received from the server).
    pub bytes_to_client: u64,
    /// Elements forwarded upstream.
    pub elements_to_upstream: u64,
    /// Bytes forwarded upstream.
    pub bytes_to_upstream: u64,
    /// Messages refused for nesting too deep or too many attributes.
    pub xml_limit_hits: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitingOpen,
    AwaitingDomain,
    Opening,
    Open,
    ClosingByClient,
    ClosingByServer,
    AwaitingCloseFrame,
    Ended,
}

/// One WebSocket session.
#[derive(Debug)]
pub struct WsSession {
    limits: Arc<WsLimits>,
    phase: Phase,
    /// Id for an `<open/>` xmpp-edge has to write itself (WS-21).
    own_id: Box<str>,
    open: OpenAttrs,
    header: Option<StreamHeader>,
    /// An `<open/>` reply is owed for the stream being opened.
    awaiting_header: bool,
    opened_to_client: bool,
    sasl_success: bool,
    upstream_finished: bool,
    /// The upstream is our own configured server (UP-49 condition choice).
    own_upstream: bool,
    last_activity: Instant,
    next_ping: Instant,
    deadline: Option<Instant>,
    to_client: VecDeque<ClientAction>,
    actions: VecDeque<UpstreamAction>,
    ended: Option<WsEnd>,
    end_reason: Option<WsEnd>,
    stats: WsStats,
}

// === impl WsSession ===

impl WsSession {
    /// A session whose WebSocket was just accepted. `own_id` is a fresh,
    /// unpredictable id used only if xmpp-edge must write its own `<open/>`.
    pub fn new(limits: Arc<WsLimits>, own_id: Box<str>, now: Instant) -> Self {
        let open_timeout = limits.open_timeout;
        let ping_interval = limits.ping_interval;
        Self {
            limits,
            phase: Phase::AwaitingOpen,
            own_id,
            open: OpenAttrs::default(),
            header: None,
            awaiting_header: false,
            opened_to_client: false,
            sasl_success: false,
            upstream_finished: false,
            own_upstream: true,
            last_activity: now,
            next_ping: now + ping_interval,
            deadline: Some(now + open_timeout),
            to_client: VecDeque::new(),
            actions: VecDeque::new(),
            ended: None,
            end_reason: None,
            stats: WsStats::default(),
        }
    }

    // --- accessors and outputs ---

    /// The domain the client asked for, while the I/O layer decides on it.
    pub fn requested_domain(&self) -> Option<&str> {
        (self.phase == Phase::AwaitingDomain)
            .then_some(self.open.to.as_deref())
            .flatten()
    }

    /// The session's domain once the client opened a stream.
    pub fn domain(&self) -> Option<&str> {
        self.open.to.as_deref()
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<WsEnd> {
        self.ended
    }

    /// Counters.
    pub fn stats(&self) -> WsStats {
        self.stats
    }

    /// Whether the XMPP stream is open for relaying.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The next thing to send to the client.
    pub fn poll_client(&mut self) -> Option<ClientAction> {
        crate::stanza::pop_or_release(&mut self.to_client)
    }

    /// The next upstream action, in order.
    pub fn poll_upstream(&mut self) -> Option<UpstreamAction> {
        crate::stanza::pop_or_release(&mut self.actions)
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ended => None,
            Phase::AwaitingOpen
            | Phase::AwaitingCloseFrame
            | Phase::ClosingByClient
            | Phase::ClosingByServer => self.deadline,
            _ => {
                let idle = self.last_activity + self.limits.idle_timeout;
                Some(self.next_ping.min(idle))
            }
        }
    }

    // --- inputs from the client ---

    /// One complete text message.
    pub fn handle_client_text(&mut self, now: Instant, text: &str) {
        self.touch(now);
        if matches!(self.phase, Phase::AwaitingCloseFrame | Phase::Ended) {
            return;
        }
        self.stats.messages_from_client += 1;
        let parsed = parse_message(
            text,
            self.limits.client_xml,
            self.limits.allow_multiple_elements,
        );
        let message = match parsed {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!("refused client message: {e}");
                if matches!(e, MessageError::PolicyViolation(_)) {
                    self.stats.xml_limit_hits += 1;
                }
                let code = close_code::NORMAL;
                self.stream_error(now, e.condition(), None, code, UpstreamAction::Close);
                return;
            }
        };
        match (self.phase, message) {
            (_, ClientMessage::Blank) => {}
            (Phase::AwaitingOpen, ClientMessage::Open(attrs)) => self.recv_first_open(now, attrs),
            (Phase::AwaitingOpen, ClientMessage::Close) => {
                self.push_text(framing_close(None));
                self.close_websocket(now, close_code::NORMAL, WsEnd::Closed);
            }
            (Phase::AwaitingOpen, ClientMessage::Elements { .. }) => {
                // WS-17: the first message must be <open/>.
                self.stream_error(
                    now,
                    "invalid-xml",
                    None,
                    close_code::NORMAL,
                    UpstreamAction::Abort,
                );
            }
            (Phase::AwaitingDomain | Phase::Opening | Phase::Open, ClientMessage::Open(attrs)) => {
                self.recv_restart(now, attrs);
            }
            (Phase::AwaitingDomain | Phase::Opening | Phase::Open, ClientMessage::Close) => {
                // WS-25: close upstream, then wait for the server's closing tag.
                self.finish_upstream(UpstreamAction::Close);
                self.phase = Phase::ClosingByClient;
                self.deadline = Some(now + self.limits.close_timeout);
            }
            (
                Phase::AwaitingDomain | Phase::Opening | Phase::Open,
                ClientMessage::Elements { bytes, top, count },
            ) => self.recv_elements(now, bytes, top, count),
            (Phase::ClosingByServer, ClientMessage::Close) => {
                // WS-26: the server closed first; our side is done too.
                self.close_websocket(now, close_code::NORMAL, WsEnd::Closed);
            }
            (Phase::ClosingByClient, ClientMessage::Open(_)) => {
                // WS-22: no new stream after <close/>.
                self.close_websocket(now, close_code::POLICY_VIOLATION, WsEnd::Closed);
            }
            // Anything else after a close is dropped: that stream is over.
            _ => {}
        }
    }

    /// A binary message: not allowed by RFC 7395 (WS-7).
    pub fn handle_client_binary(&mut self, now: Instant) {
        self.touch(now);
        self.stream_error(
            now,
            "unsupported-encoding",
            Some("only text messages are allowed"),
            close_code::UNSUPPORTED_DATA,
            UpstreamAction::Close,
        );
    }

    /// A text message that is not valid UTF-8 (WS-7). The WebSocket layer can
    /// read no further, so the connection is failed (RFC 6455 §7.1.7): the
    /// messages and the Close frame go out, then TCP is closed.
    pub fn handle_client_invalid_utf8(&mut self, now: Instant) {
        self.stream_error(
            now,
            "unsupported-encoding",
            None,
            close_code::INVALID_PAYLOAD,
            UpstreamAction::Close,
        );
        self.end();
    }

    /// A message larger than the configured maximum (WS-16); the connection is failed.
    pub fn handle_client_too_big(&mut self, now: Instant) {
        self.stream_error(
            now,
            "policy-violation",
            Some("message too large"),
            close_code::MESSAGE_TOO_BIG,
            UpstreamAction::Close,
        );
        self.end();
    }

    /// A WebSocket protocol violation (WS-8); the connection is failed.
    pub fn handle_client_protocol_error(&mut self, now: Instant) {
        self.finish_upstream(UpstreamAction::Abort);
        self.close_websocket(
            now,
            close_code::PROTOCOL_ERROR,
            WsEnd::StreamError("protocol-error"),
        );
        self.end();
    }

    /// A Pong, or any other sign of life.
    pub fn handle_client_pong(&mut self, now: Instant) {
        self.touch(now);
    }

    /// The client sent a Close frame (the library answers it).
    pub fn handle_client_close(&mut self, now: Instant) {
        self.touch(now);
        self.client_left();
    }

    /// The connection broke or the Close handshake finished.
    pub fn handle_client_gone(&mut self) {
        self.client_left();
    }

    /// How many bytes wait for a client that is not reading (backpressure).
    pub fn handle_client_backlog(&mut self, now: Instant, bytes: usize) {
        if bytes > self.limits.max_backlog_bytes
            && !matches!(self.phase, Phase::AwaitingCloseFrame | Phase::Ended)
        {
            tracing::info!(bytes, "client not reading: closing with policy-violation");
            self.to_client.push_back(ClientAction::DropBacklog);
            // The client is alive but stuck: keep the server session resumable.
            self.stream_error(
                now,
                "policy-violation",
                Some("client not reading"),
                close_code::POLICY_VIOLATION,
                UpstreamAction::Abort,
            );
        }
    }

    // --- inputs from the I/O layer ---

    /// The requested domain is served: connect upstream.
    pub fn accept_domain(&mut self, own_upstream: bool) {
        if self.phase != Phase::AwaitingDomain {
            return;
        }
        self.own_upstream = own_upstream;
        self.phase = Phase::Opening;
        self.awaiting_header = true;
        let open = self.open_stream(None, false);
        self.push_upstream(UpstreamAction::Open(open));
    }

    /// The requested domain is not served (WS-29).
    pub fn refuse_domain(&mut self, now: Instant) {
        if self.phase != Phase::AwaitingDomain {
            return;
        }
        self.upstream_finished = true;
        self.stream_error(
            now,
            "host-unknown",
            None,
            close_code::NORMAL,
            UpstreamAction::Abort,
        );
    }

    /// xmpp-edge is shutting down (WS-30: `system-shutdown`, close 1001).
    pub fn handle_shutdown(&mut self, now: Instant) {
        if matches!(self.phase, Phase::AwaitingCloseFrame | Phase::Ended) {
            return;
        }
        self.stream_error(
            now,
            "system-shutdown",
            None,
            close_code::GOING_AWAY,
            UpstreamAction::Abort,
        );
    }

    /// An operator ends the session: a `policy-violation` stream error to
    /// the client, and a proper close of the server's stream (nothing to
    /// resume).
    pub fn handle_kick(&mut self, now: Instant) {
        self.stream_error(
            now,
            "policy-violation",
            Some("ended by an administrator"),
            close_code::NORMAL,
            UpstreamAction::Close,
        );
    }

    /// Something happened upstream.
    pub fn handle_upstream(&mut self, now: Instant, event: UpstreamEvent) {
        if self.phase == Phase::Ended {
            return;
        }
        match event {
            UpstreamEvent::StreamOpened(header) => {
                if self.awaiting_header {
                    // WS-20, WS-23: each server header becomes one <open/>.
                    self.awaiting_header = false;
                    self.push_text(open_reply(&header));
                    self.opened_to_client = true;
                    if self.phase == Phase::Opening {
                        self.phase = Phase::Open;
                    }
                }
                self.header = Some(header);
            }
            UpstreamEvent::Element(stanza) => {
                if matches!(self.phase, Phase::AwaitingCloseFrame | Phase::Ended) {
                    return;
                }
                let kind = stanza.kind();
                if kind == ElementKind::SaslSuccess {
                    self.sasl_success = true;
                }
                let message = {
                    let header = self.header.as_ref();
                    let ctx = StandaloneContext {
                        default_ns: Some(
                            header
                                .and_then(|h| h.default_ns.as_deref())
                                .unwrap_or(crate::xml::ns::JABBER_CLIENT),
                        ),
                        declare_stream_prefix: true,
                        lang: if kind.is_stanza() {
                            header.and_then(|h| h.lang.as_deref())
                        } else {
                            None
                        },
                        extra_ns: header.map_or(&[], |h| h.extra_ns.as_slice()),
                    };
                    let mut out = Vec::with_capacity(stanza.standalone_len_hint(&ctx));
                    stanza.write_standalone(&mut out, &ctx);
                    Bytes::from(out)
                };
                self.stats.elements_to_client += 1;
                self.stats.bytes_to_client += stanza.len() as u64;
                self.push_text(message);
                if kind == ElementKind::StreamError {
                    // WS-28: the error, then <close/>, then the Close frame.
                    self.push_text(framing_close(None));
                    self.finish_upstream(UpstreamAction::Close);
                    self.close_websocket(now, close_code::NORMAL, WsEnd::UpstreamStreamError);
                }
            }
            UpstreamEvent::StreamClosed => match self.phase {
                Phase::ClosingByClient => {
                    // WS-25: the exchange is complete; the client closes the WebSocket.
                    self.push_text(framing_close(None));
                    self.phase = Phase::AwaitingCloseFrame;
                    self.end_reason = Some(WsEnd::Closed);
                    self.deadline = Some(now + self.limits.close_timeout);
                }
                Phase::AwaitingCloseFrame | Phase::Ended => {}
                _ => {
                    // WS-26: tell the client, answer the server, wait for the client.
                    self.push_text(framing_close(None));
                    self.finish_upstream(UpstreamAction::Close);
                    self.phase = Phase::ClosingByServer;
                    self.deadline = Some(now + self.limits.close_timeout);
                }
            },
            UpstreamEvent::Failed(failure) => {
                tracing::info!("upstream failed: {failure}");
                self.upstream_finished = true;
                match self.phase {
                    Phase::ClosingByClient | Phase::ClosingByServer => {
                        self.close_websocket(now, close_code::NORMAL, WsEnd::Closed);
                    }
                    Phase::AwaitingCloseFrame | Phase::Ended => {}
                    _ => {
                        // WS-29, UP-49: our own server failing is an internal error.
                        let condition = if failure == UpstreamFailure::HostUnknown {
                            "host-unknown"
                        } else if self.own_upstream {
                            "internal-server-error"
                        } else {
                            "remote-connection-failed"
                        };
                        self.stream_error(
                            now,
                            condition,
                            None,
                            close_code::NORMAL,
                            UpstreamAction::Abort,
                        );
                    }
                }
            }
        }
    }

    /// Deadlines at or before `now` fire; anything else is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Ended => {}
            Phase::AwaitingOpen => {
                if self.deadline.is_some_and(|d| d <= now) {
                    self.stream_error(
                        now,
                        "connection-timeout",
                        None,
                        close_code::NORMAL,
                        UpstreamAction::Abort,
                    );
                }
            }
            Phase::ClosingByClient | Phase::ClosingByServer => {
                if self.deadline.is_some_and(|d| d <= now) {
                    if self.phase == Phase::ClosingByClient {
                        self.push_text(framing_close(None));
                    }
                    self.close_websocket(now, close_code::NORMAL, WsEnd::Closed);
                }
            }
            Phase::AwaitingCloseFrame => {
                if self.deadline.is_some_and(|d| d <= now) {
                    self.end();
                }
            }
            Phase::AwaitingDomain | Phase::Opening | Phase::Open => {
                if now >= self.last_activity + self.limits.idle_timeout {
                    // WS-30, WS-34: a client that stopped answering Pings.
                    self.stream_error(
                        now,
                        "connection-timeout",
                        None,
                        close_code::NORMAL,
                        UpstreamAction::Abort,
                    );
                } else if now >= self.next_ping {
                    self.to_client.push_back(ClientAction::Ping);
                    self.next_ping = now + self.limits.ping_interval;
                }
            }
        }
    }

    // --- transitions ---

    fn recv_first_open(&mut self, now: Instant, attrs: OpenAttrs) {
        if let Some(uri) = self.limits.see_other_uri.clone() {
            // WS-31: the redirect may be the very first reply.
            self.push_text(framing_close(Some(&uri)));
            self.finish_upstream(UpstreamAction::Abort);
            self.close_websocket(now, close_code::NORMAL, WsEnd::Redirected);
            return;
        }
        let domain = attrs
            .to
            .as_deref()
            .map(|t| t.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|t| !t.is_empty());
        let version_ok = attrs
            .version
            .as_deref()
            .is_some_and(|v| v.starts_with("1."));
        self.open = OpenAttrs {
            to: domain.map(Box::from),
            ..attrs
        };
        if !version_ok {
            self.stream_error(
                now,
                "unsupported-version",
                None,
                close_code::NORMAL,
                UpstreamAction::Abort,
            );
        } else if self.open.to.is_none() {
            self.stream_error(
                now,
                "host-unknown",
                None,
                close_code::NORMAL,
                UpstreamAction::Abort,
            );
        } else {
            self.phase = Phase::AwaitingDomain;
            self.deadline = None;
        }
    }

    fn recv_restart(&mut self, now: Instant, attrs: OpenAttrs) {
        if !self.sasl_success {
            self.stream_error(
                now,
                "policy-violation",
                Some("a stream restart is only allowed after SASL success"),
                close_code::NORMAL,
                UpstreamAction::Close,
            );
            return;
        }
        // WS-23: a new header on the same connection; no closing tag first.
        self.sasl_success = false;
        self.awaiting_header = true;
        let open = self.open_stream(Some(&attrs), true);
        self.push_upstream(UpstreamAction::Open(open));
    }

    fn recv_elements(&mut self, now: Instant, bytes: Bytes, top: ClientTop, count: u16) {
        match top {
            ClientTop::StartTls => {
                // WS-35: TLS cannot be negotiated inside the subprotocol.
                self.push_text(Bytes::from_static(
                    b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
                ));
                self.push_text(framing_close(None));
                self.finish_upstream(UpstreamAction::Close);
                self.close_websocket(now, close_code::NORMAL, WsEnd::StreamError("starttls"));
            }
            ClientTop::Compress => self.stream_error(
                now,
                "unsupported-feature",
                Some("stream compression is not available"),
                close_code::NORMAL,
                UpstreamAction::Close,
            ),
            _ => {
                self.stats.elements_to_upstream += u64::from(count);
                self.stats.bytes_to_upstream += bytes.len() as u64;
                self.push_upstream(UpstreamAction::Send(bytes));
            }
        }
    }

    /// Sends a stream error of xmpp-edge's own (with an `<open/>` first if the
    /// client never got one, WS-29), `<close/>`, and a Close frame.
    fn stream_error(
        &mut self,
        now: Instant,
        condition: &'static str,
        text: Option<&str>,
        code: u16,
        upstream: UpstreamAction,
    ) {
        if matches!(self.phase, Phase::AwaitingCloseFrame | Phase::Ended) {
            return;
        }
        if !self.opened_to_client {
            let served = self.phase != Phase::AwaitingOpen && condition != "host-unknown";
            let from = if served {
                self.open.to.as_deref()
            } else {
                None
            };
            self.push_text(own_open(&self.own_id, from, self.open.lang.as_deref()));
            self.opened_to_client = true;
        }
        self.push_text(stream_error_element(condition, text));
        self.push_text(framing_close(None));
        self.finish_upstream(upstream);
        self.close_websocket(now, code, WsEnd::StreamError(condition));
    }

    fn close_websocket(&mut self, now: Instant, code: u16, reason: WsEnd) {
        if matches!(self.phase, Phase::AwaitingCloseFrame | Phase::Ended) {
            return;
        }
        self.to_client.push_back(ClientAction::Close(code));
        self.end_reason.get_or_insert(reason);
        self.phase = Phase::AwaitingCloseFrame;
        self.deadline = Some(now + self.limits.close_timeout);
    }

    fn client_left(&mut self) {
        if matches!(
            self.phase,
            Phase::AwaitingOpen | Phase::AwaitingDomain | Phase::Opening | Phase::Open
        ) {
            // WS-27: no closing tag, so the server keeps an XEP-0198 session resumable.
            self.finish_upstream(UpstreamAction::Abort);
            self.end_reason.get_or_insert(WsEnd::ClientGone);
        } else {
            self.end_reason.get_or_insert(WsEnd::Closed);
        }
        self.end();
    }

    fn end(&mut self) {
        self.finish_upstream(UpstreamAction::Abort);
        self.phase = Phase::Ended;
        self.deadline = None;
        self.ended = Some(self.end_reason.unwrap_or(WsEnd::Closed));
    }

    // --- helpers ---

    fn touch(&mut self, now: Instant) {
        self.last_activity = now;
        self.next_ping = now + self.limits.ping_interval;
    }

    fn push_text(&mut self, text: Bytes) {
        self.to_client.push_back(ClientAction::Text(text));
    }

    fn push_upstream(&mut self, action: UpstreamAction) {
        if !self.upstream_finished {
            self.actions.push_back(action);
        }
    }

    fn finish_upstream(&mut self, action: UpstreamAction) {
        if !self.upstream_finished {
            self.upstream_finished = true;
            // Nothing was ever connected before the domain was accepted.
            if !matches!(self.phase, Phase::AwaitingOpen | Phase::AwaitingDomain) {
                self.actions.push_back(action);
            }
        }
    }

    fn open_stream(&self, restart: Option<&OpenAttrs>, is_restart: bool) -> OpenStream {
        let attrs = restart.unwrap_or(&self.open);
        OpenStream {
            to: self.open.to.clone().unwrap_or_default(),
            from: attrs.from.clone().or_else(|| self.open.from.clone()),
            lang: attrs.lang.clone().or_else(|| self.open.lang.clone()),
            version: Box::from("1.0"),
            restart: is_restart,
        }
    }
}

const FRAMING_NS: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// `<open/>` relaying the server's stream header (WS-20).
fn open_reply(header: &StreamHeader) -> Bytes {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"<open");
    push_attr(&mut out, "xmlns", FRAMING_NS);
    for (name, value) in [
        ("from", &header.from),
        ("id", &header.id),
        ("version", &header.version),
        ("xml:lang", &header.lang),
    ] {
        if let Some(value) = value {
            push_attr(&mut out, name, value);
        }
    }
    out.extend_from_slice(b"/>");
    Bytes::from(out)
}

/// An `<open/>` written by xmpp-edge itself (WS-21).
fn own_open(id: &str, from: Option<&str>, lang: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"<open");
    push_attr(&mut out, "xmlns", FRAMING_NS);
    push_attr(&mut out, "from", from.unwrap_or(""));
    push_attr(&mut out, "id", id);
    push_attr(&mut out, "version", "1.0");
    push_attr(&mut out, "xml:lang", lang.unwrap_or("en"));
    out.extend_from_slice(b"/>");
    Bytes::from(out)
}

/// `<close/>`, optionally with `see-other-uri` (WS-31).
fn framing_close(see_other_uri: Option<&str>) -> Bytes {
    match see_other_uri {
        None => Bytes::from_static(b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
        Some(uri) => {
            let mut out = Vec::with_capacity(100 + uri.len());
            out.extend_from_slice(b"<close");
            push_attr(&mut out, "xmlns", FRAMING_NS);
            push_attr(&mut out, "see-other-uri", uri);
            out.extend_from_slice(b"/>");
            Bytes::from(out)
        }
    }
}

/// A standalone stream error element (WS-12, WS-28).
fn stream_error_element(condition: &str, text: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(200);
    out.extend_from_slice(b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'><");
    out.extend_from_slice(condition.as_bytes());
    out.extend_from_slice(b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    if let Some(text) = text {
        out.extend_from_slice(b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>");
        push_text_escaped(&mut out, text);
        out.extend_from_slice(b"</text>");
    }
    out.extend_from_slice(b"</stream:error>");
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
