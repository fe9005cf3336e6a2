//! Client text messages and upstream events through the RFC 7395 framing
//! core ([`WsSession`]).
//!
//! The input is a script, so that seeds can be written by hand: byte 0 sets
//! options (bit 0: `allow_multiple_elements`, bit 1: a `see-other-uri`),
//! the rest is records separated by NUL (which XML never contains). The
//! first byte of a record says what happens, the rest is its argument:
//!
//! | op | meaning |
//! |----|---------|
//! | `T` | a client text message (not UTF-8: the invalid-UTF-8 path) |
//! | `S` | bytes from the server, through one persistent splitter as in the driver (reset on a restart header we send) |
//! | `A` / `a` / `R` | the I/O layer accepts the domain (own upstream / route) or refuses it |
//! | `B` `P` `C` `G` `U` `Z` `X` | binary message, Pong, Close frame, connection gone, invalid UTF-8, too big, protocol error |
//! | `K` | client backlog of N bytes (decimal argument) |
//! | `W` | N ms pass (decimal, default 1000), timers firing on the way |
//! | `J` | N s pass with no timer firing (a late timer) |
//! | `I` | an early or repeated timer call |
//! | `E` / `F` | server stream closed / connection failed (argument picks the failure) |
//! | `D` / `k` | shutdown / kick |
//!
//! Any other record is a client text message as a whole, so that unshaped
//! bytes still reach the parser.
//!
//! Checked after every step:
//! - no panic;
//! - every `ClientAction::Text` is exactly one well-formed,
//!   namespace-well-formed element (RFC 7395 §3.3.3) made of XML characters;
//! - nothing goes upstream after `Close`/`Abort` (messages queued for the
//!   client after the Close frame are allowed: the relay drops them);
//! - every upstream `Open` gives a well-formed stream header whose
//!   attributes read back unchanged, and every `Send` is a sequence of
//!   well-formed elements in the context of that stream, never a second
//!   header or a closing tag;
//! - once the clock runs out, the session has ended by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use xmpp_edge::upstream::negotiate::{item_to_event, stream_header};
use xmpp_edge::upstream::{UpstreamAction, UpstreamEvent, UpstreamFailure};
use xmpp_edge::websocket::{ClientAction, WsLimits, WsSession};
use xmpp_edge::xml::reserialize::ClientXmlLimits;
use xmpp_edge::xml::splitter::{Splitter, SplitterLimits};

use crate::{
    TOLERATE_NON_XML_ATTRIBUTE_VALUES, UPSTREAM_CONTEXT, check_fragment, check_one_element,
    check_upstream_header, header_has_non_xml_chars, is_known_issue, open_has_non_xml_chars,
};

/// Known issue, see `zero_width_no_break_space_after_a_read_boundary_is_text`
/// in src/xml/splitter/tests.rs (ignored until fixed). While `true`, broken
/// messages are tolerated once the server sent U+FEFF.
const TOLERATE_FEFF_AT_BOUNDARY: bool = false;

/// The server side as the relay driver runs it: one splitter over the stream.
struct ServerSide {
    splitter: Splitter,
    buf: BytesMut,
    done: bool,
    /// A server header held non-XML characters (a known issue, see
    /// `TOLERATE_NON_XML_ATTRIBUTE_VALUES`); its values reach every message.
    bad_header: bool,
    /// U+FEFF arrived (see `zero_width_no_break_space_after_a_read_boundary_is_text`
    /// in src/xml/splitter/tests.rs): a cut before it truncates elements.
    saw_feff: bool,
}

impl ServerSide {
    fn feed(&mut self, bytes: &[u8]) -> Vec<UpstreamEvent> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        self.saw_feff |= bytes.windows(3).any(|w| w == "\u{FEFF}".as_bytes());
        loop {
            match self.splitter.feed(&mut self.buf) {
                Ok(Some(item)) => match item_to_event(item) {
                    Ok(event) => {
                        if let UpstreamEvent::StreamOpened(h) = &event {
                            self.bad_header |= header_has_non_xml_chars(h);
                        }
                        let closed = matches!(event, UpstreamEvent::StreamClosed);
                        out.push(event);
                        if closed {
                            self.done = true;
                            break;
                        }
                    }
                    Err(failure) => {
                        out.push(UpstreamEvent::Failed(failure));
                        self.done = true;
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    out.push(UpstreamEvent::Failed(e.into()));
                    self.done = true;
                    break;
                }
            }
        }
        out
    }
}

struct Checker {
    upstream_finished: bool,
}

impl Checker {
    fn drain(&mut self, s: &mut WsSession, server: &mut ServerSide) {
        while let Some(action) = s.poll_client() {
            // The core may still queue messages after its Close frame (a late
            // server header, say); the relay drops everything after Close
            // (relay/websocket.rs, `close_queued`), so they never reach the
            // client. They must still be well-formed.
            match action {
                ClientAction::Text(text) => {
                    if let Err(e) = check_one_element(&text, "")
                        && !is_known_issue(&e)
                        && !(TOLERATE_FEFF_AT_BOUNDARY && server.saw_feff)
                        && !(TOLERATE_NON_XML_ATTRIBUTE_VALUES
                            && (text.starts_with(b"<open ") || server.bad_header)
                            && (e.contains("not allowed in XML") || e.contains("not an XML char")))
                    {
                        panic!(
                            "client message is not one well-formed element: {e}\n{:?}",
                            String::from_utf8_lossy(&text)
                        );
                    }
                }
                ClientAction::Close(_) | ClientAction::Ping | ClientAction::DropBacklog => {}
            }
        }
        while let Some(action) = s.poll_upstream() {
            assert!(
                !self.upstream_finished,
                "{action:?} upstream after Close/Abort"
            );
            match action {
                UpstreamAction::Open(open) => {
                    if open.restart {
                        server.splitter.reset();
                    }
                    let header = stream_header(&open, true);
                    if let Err(e) = check_upstream_header(&header, &open)
                        && !(TOLERATE_NON_XML_ATTRIBUTE_VALUES && open_has_non_xml_chars(&open))
                    {
                        panic!(
                            "upstream header is broken: {e}\n{:?}",
                            String::from_utf8_lossy(&header)
                        );
                    }
                }
                UpstreamAction::Send(bytes) => match check_fragment(&bytes, UPSTREAM_CONTEXT) {
                    Ok(f) if !f.tops.is_empty() => {}
                    Ok(_) => panic!("empty Send upstream"),
                    Err(e) if is_known_issue(&e) => {}
                    Err(e) => panic!(
                        "bytes sent upstream are not well-formed elements: {e}\n{:?}",
                        String::from_utf8_lossy(&bytes)
                    ),
                },
                UpstreamAction::Close | UpstreamAction::Abort => self.upstream_finished = true,
            }
        }
    }
}

fn number(arg: &[u8]) -> Option<u64> {
    std::str::from_utf8(arg).ok()?.trim().parse().ok()
}

fn run_timers(
    s: &mut WsSession,
    c: &mut Checker,
    server: &mut ServerSide,
    now: &mut Instant,
    end: Instant,
) {
    let mut guard = 0;
    while let Some(deadline) = s.poll_timeout() {
        if deadline > end {
            break;
        }
        guard += 1;
        assert!(guard < 10_000, "timer keeps firing without progress");
        *now = (*now).max(deadline);
        s.handle_timeout(*now);
        c.drain(s, server);
    }
    *now = (*now).max(end);
}

/// One script; panics when an invariant above breaks.
pub fn run(data: &[u8]) {
    let Some((&options, script)) = data.split_first() else {
        return;
    };
    // The fake clock's origin: only time since it matters (clippy.toml's rule is for src/).
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    let limits = WsLimits {
        allow_multiple_elements: options & 1 == 1,
        see_other_uri: (options & 2 == 2)
            .then(|| "wss://other.example/xmpp-websocket?a=1&b='2'".into()),
        client_xml: ClientXmlLimits {
            max_depth: 8,
            max_attributes: 16,
        },
        ..WsLimits::default()
    };
    let mut s = WsSession::new(Arc::new(limits), "own-id-1".into(), now);
    let mut server = ServerSide {
        splitter: Splitter::new(SplitterLimits {
            max_element_bytes: 64 * 1024,
            max_depth: 16,
        }),
        buf: BytesMut::new(),
        done: false,
        bad_header: false,
        saw_feff: false,
    };
    let mut c = Checker {
        upstream_finished: false,
    };
    c.drain(&mut s, &mut server);
    for record in script.split(|&b| b == 0).take(200) {
        let Some((&op, arg)) = record.split_first() else {
            continue;
        };
        match op {
            b'T' => match std::str::from_utf8(arg) {
                Ok(text) => s.handle_client_text(now, text),
                Err(_) => s.handle_client_invalid_utf8(now),
            },
            b'S' => {
                for event in server.feed(arg) {
                    s.handle_upstream(now, event);
                    c.drain(&mut s, &mut server);
                }
            }
            b'A' => s.accept_domain(true),
            b'a' => s.accept_domain(false),
            b'R' => s.refuse_domain(now),
            b'B' => s.handle_client_binary(now),
            b'P' => s.handle_client_pong(now),
            b'C' => s.handle_client_close(now),
            b'G' => s.handle_client_gone(),
            b'U' => s.handle_client_invalid_utf8(now),
            b'Z' => s.handle_client_too_big(now),
            b'X' => s.handle_client_protocol_error(now),
            b'K' => {
                let bytes = number(arg).unwrap_or(arg.len() as u64 * 65536);
                s.handle_client_backlog(now, bytes as usize);
            }
            b'W' => {
                let ms = number(arg).unwrap_or(1000).min(10_000_000);
                let end = now + Duration::from_millis(ms);
                run_timers(&mut s, &mut c, &mut server, &mut now, end);
            }
            b'J' => now += Duration::from_secs(number(arg).unwrap_or(1).min(1_000_000)),
            b'I' => s.handle_timeout(now),
            b'E' => s.handle_upstream(now, UpstreamEvent::StreamClosed),
            b'F' => {
                let failure = match arg.first().copied().unwrap_or(0) % 4 {
                    0 => UpstreamFailure::Connect("refused".into()),
                    1 => UpstreamFailure::Lost("reset".into()),
                    2 => UpstreamFailure::HostUnknown,
                    _ => UpstreamFailure::WriteStalled,
                };
                s.handle_upstream(now, UpstreamEvent::Failed(failure));
            }
            b'D' => s.handle_shutdown(now),
            b'k' => s.handle_kick(now),
            _ => match std::str::from_utf8(record) {
                Ok(text) => s.handle_client_text(now, text),
                Err(_) => s.handle_client_invalid_utf8(now),
            },
        }
        c.drain(&mut s, &mut server);
    }
    // Run the clock out: every session must end by itself.
    let far = now + Duration::from_secs(24 * 3600);
    run_timers(&mut s, &mut c, &mut server, &mut now, far);
    assert!(s.ended().is_some(), "session still alive after a day");
}
