//! Upstream stream negotiation that xmpp-edge owns itself (pure).
//!
//! [`Establish`] runs the start of each upstream stream before the protocol
//! core sees anything: the first header, STARTTLS when the upstream is
//! configured for it (the client only ever sees post-TLS features, UP-37),
//! and `see-other-host` redirects that answer our first header (UP-44).
//!
//! Afterwards, [`item_to_event`] turns splitter items into
//! [`UpstreamEvent`]s and keeps out of them what the connection manager must
//! handle: STARTTLS and stream compression are removed from every
//! `<stream:features/>` (BOSH-89, WS-35, UP-31..34), and a server that
//! requires STARTTLS on a leg without TLS fails the session with a clear
//! reason instead of leaving the client waiting.

use bytes::{Bytes, BytesMut};
use quick_xml::Reader;
use quick_xml::events::Event;
use quick_xml::name::{NamespaceResolver, ResolveResult};

use crate::stanza::{ElementKind, Stanza, StreamHeader};
use crate::upstream::route::TlsMode;
use crate::upstream::{OpenStream, UpstreamEvent, UpstreamFailure};
use crate::xml::escape::push_attr;
use crate::xml::ns;
use crate::xml::splitter::Item;

/// What the server said about STARTTLS in its features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsOffer {
    /// Not offered.
    None,
    /// Offered, optional.
    Optional,
    /// Offered with `<required/>`.
    Required,
}

/// Maps splitter items to core events, applying the negotiation rules above.
pub fn item_to_event(item: Item) -> Result<UpstreamEvent, UpstreamFailure> {
    Ok(match item {
        Item::StreamOpen(header) => UpstreamEvent::StreamOpened(header),
        Item::StreamClose => UpstreamEvent::StreamClosed,
        Item::Element(stanza) if stanza.kind() == ElementKind::Features => {
            let (stanza, tls) = strip_features(stanza);
            if tls == TlsOffer::Required {
                return Err(UpstreamFailure::Negotiation(
                    "the server requires STARTTLS; enable TLS for this upstream",
                ));
            }
            UpstreamEvent::Element(stanza)
        }
        Item::Element(stanza) => UpstreamEvent::Element(stanza),
    })
}

/// Removes STARTTLS and compression children from a features element.
///
/// Returns the element unchanged (no copy) when there is nothing to remove.
pub fn strip_features(stanza: Stanza) -> (Stanza, TlsOffer) {
    let bytes = stanza.as_bytes();
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut resolver = NamespaceResolver::default();
    let mut depth = 0u32;
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut cut_from: Option<(usize, bool)> = None;
    let mut tls = TlsOffer::None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(event) => event,
        };
        let after = reader.buffer_position() as usize;
        match event {
            Event::Start(tag) | Event::Empty(tag) => {
                let empty = after > 1 && bytes.get(after - 2) == Some(&b'/');
                if resolver.push(&tag).is_err() {
                    break;
                }
                depth += 1;
                let (resolved, local) = resolver.resolve_element(tag.name());
                let uri = match resolved {
                    ResolveResult::Bound(n) => n.into_inner(),
                    _ => "",
                };
                if depth == 2 && cut_from.is_none() {
                    let is_tls = uri == ns::TLS && local.as_ref() == "starttls";
                    if is_tls || uri == ns::COMPRESS_FEATURE {
                        cut_from = Some((before, is_tls));
                        if is_tls {
                            tls = TlsOffer::Optional;
                        }
                    }
                } else if depth == 3
                    && matches!(cut_from, Some((_, true)))
                    && local.as_ref() == "required"
                {
                    tls = TlsOffer::Required;
                }
                if empty {
                    resolver.pop();
                    depth -= 1;
                    if depth == 1
                        && let Some((start, _)) = cut_from.take()
                    {
                        cuts.push((start, after));
                    }
                }
            }
            Event::End(_) => {
                resolver.pop();
                depth = depth.saturating_sub(1);
                if depth == 1
                    && let Some((start, _)) = cut_from.take()
                {
                    cuts.push((start, after));
                }
            }
            _ => {}
        }
    }
    if cuts.is_empty() {
        return (stanza, tls);
    }
    let mut out = BytesMut::with_capacity(bytes.len());
    let mut at = 0;
    for (start, end) in cuts {
        out.extend_from_slice(&bytes[at..start]);
        at = end;
    }
    out.extend_from_slice(&bytes[at..]);
    let head = head_end(&out);
    let stripped = Stanza::new(out.freeze(), head, ElementKind::Features, stanza.flags());
    (stripped, tls)
}

/// Offset of the `>` (or `/>`) closing the first tag; the head is never cut.
fn head_end(bytes: &[u8]) -> usize {
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => {
                return if i > 0 && bytes[i - 1] == b'/' {
                    i - 1
                } else {
                    i
                };
            }
            _ => {}
        }
    }
    bytes.len().saturating_sub(1)
}

/// Writes the XML declaration and a stream header (BOSH-101, WS-19, UP-20, UP-21).
///
/// `from` is written only when `secure` (RFC 6120 §4.7.1); an `id` never is.
pub fn stream_header(open: &OpenStream, secure: bool) -> Bytes {
    let mut out = Vec::with_capacity(200);
    out.extend_from_slice(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams'",
    );
    push_attr(&mut out, "to", &open.to);
    if secure && let Some(from) = &open.from {
        push_attr(&mut out, "from", from);
    }
    push_attr(&mut out, "version", &open.version);
    if let Some(lang) = &open.lang {
        push_attr(&mut out, "xml:lang", lang);
    }
    out.push(b'>');
    Bytes::from(out)
}

/// The closing tag of our stream.
pub const STREAM_CLOSE: &[u8] = b"</stream:stream>";

/// `<starttls/>` (RFC 6120 §5.4.2.1).
const STARTTLS: &[u8] = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

/// What the I/O layer must do next while a stream is being established.
#[derive(Debug)]
pub enum EstablishStep {
    /// Write these bytes.
    Write(Bytes),
    /// Run the TLS handshake on the connection now, reset the splitter, then
    /// call [`Establish::tls_done`].
    StartTls,
    /// Established: hand these events (header, then features) to the core.
    Ready(Vec<UpstreamEvent>),
    /// The server sent us elsewhere (`see-other-host`): connect there and start over.
    Redirect {
        /// Host name or IP literal.
        host: Box<str>,
        /// Port; the current one when the server gave none.
        port: Option<u16>,
    },
    /// This upstream cannot be used.
    Fail(UpstreamFailure),
}

#[derive(Debug)]
enum Phase {
    AwaitingHeader,
    AwaitingFeatures(StreamHeader),
    AwaitingProceed,
    Done,
}

/// The start of one upstream stream, up to the first features the client may see.
#[derive(Debug)]
pub struct Establish {
    open: OpenStream,
    tls: TlsMode,
    /// TLS protects the connection (direct TLS, or STARTTLS completed).
    secure: bool,
    phase: Phase,
}

// === impl Establish ===

impl Establish {
    /// Starts with the client's first header; `secure` when direct TLS is
    /// already up. Returns the header to write.
    pub fn new(open: OpenStream, tls: TlsMode, secure: bool) -> (Self, EstablishStep) {
        let header = stream_header(&open, secure);
        let this = Self {
            open,
            tls,
            secure,
            phase: Phase::AwaitingHeader,
        };
        (this, EstablishStep::Write(header))
    }

    /// Whether TLS protects the stream.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The TLS handshake after `<proceed/>` finished: restart the stream (RFC 6120 §5.4.3.3).
    pub fn tls_done(&mut self) -> EstablishStep {
        self.secure = true;
        self.phase = Phase::AwaitingHeader;
        EstablishStep::Write(stream_header(&self.open, true))
    }

    /// Feeds one splitter item; `None` means "keep reading".
    pub fn on_item(&mut self, item: Item) -> Option<EstablishStep> {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        match (phase, item) {
            (Phase::AwaitingHeader, Item::StreamOpen(header)) => {
                if header
                    .version
                    .as_deref()
                    .is_none_or(|v| !v.starts_with("1."))
                {
                    // UP-24: a pre-1.0 server has no SASL or features to relay.
                    return Some(EstablishStep::Fail(UpstreamFailure::Negotiation(
                        "the server does not speak XMPP 1.0",
                    )));
                }
                self.phase = Phase::AwaitingFeatures(header);
                None
            }
            (Phase::AwaitingFeatures(header), Item::Element(element)) => match element.kind() {
                ElementKind::Features => {
                    let (features, offer) = strip_features(element);
                    if self.tls == TlsMode::Starttls && !self.secure {
                        // UP-33: ask for TLS even when it is not advertised.
                        let _ = offer;
                        self.phase = Phase::AwaitingProceed;
                        return Some(EstablishStep::Write(Bytes::from_static(STARTTLS)));
                    }
                    if offer == TlsOffer::Required && !self.secure {
                        return Some(EstablishStep::Fail(UpstreamFailure::Negotiation(
                            "the server requires STARTTLS; set tls = \"starttls\" for this upstream",
                        )));
                    }
                    Some(EstablishStep::Ready(vec![
                        UpstreamEvent::StreamOpened(header),
                        UpstreamEvent::Element(features),
                    ]))
                }
                ElementKind::StreamError => {
                    if let Some((host, port)) = see_other_host(&element) {
                        // UP-44: follow only over a leg whose security is what
                        // the operator chose (never a pre-TLS redirect on a TLS leg).
                        if self.secure || self.tls == TlsMode::None {
                            return Some(EstablishStep::Redirect { host, port });
                        }
                        return Some(EstablishStep::Fail(UpstreamFailure::Negotiation(
                            "redirect before TLS ignored",
                        )));
                    }
                    // UP-45: relay the error whole; the core ends the session with it.
                    Some(EstablishStep::Ready(vec![
                        UpstreamEvent::StreamOpened(header),
                        UpstreamEvent::Element(element),
                    ]))
                }
                _ => Some(EstablishStep::Fail(UpstreamFailure::Negotiation(
                    "the server sent something other than features",
                ))),
            },
            (Phase::AwaitingProceed, Item::Element(element))
                if element.kind() == ElementKind::Tls =>
            {
                if element.as_bytes().starts_with(b"<proceed") {
                    Some(EstablishStep::StartTls)
                } else {
                    Some(EstablishStep::Fail(UpstreamFailure::Negotiation(
                        "the server refused STARTTLS",
                    )))
                }
            }
            (_, Item::StreamClose) => Some(EstablishStep::Fail(UpstreamFailure::Lost(
                "the server closed the stream during negotiation".into(),
            ))),
            _ => Some(EstablishStep::Fail(UpstreamFailure::Negotiation(
                "unexpected element during stream negotiation",
            ))),
        }
    }
}

/// The target of a `<see-other-host/>` stream error: host and optional port,
/// IPv6 literals in brackets (RFC 6120 §4.9.3.19).
fn see_other_host(error: &Stanza) -> Option<(Box<str>, Option<u16>)> {
    let mut reader = Reader::from_reader(error.as_bytes());
    let mut inside = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(tag) if tag.local_name().as_ref() == "see-other-host" => inside = true,
            Event::Text(text) if inside => {
                let value = quick_xml::escape::unescape(&text).ok()?;
                let value = value.trim();
                let (host, port) = if let Some(rest) = value.strip_prefix('[') {
                    let (host, rest) = rest.split_once(']')?;
                    (host, rest.strip_prefix(':'))
                } else {
                    match value.rsplit_once(':') {
                        Some((host, port)) if !host.contains(':') => (host, Some(port)),
                        _ => (value, None),
                    }
                };
                let port = match port {
                    Some(p) => Some(p.parse().ok()?),
                    None => None,
                };
                return (!host.is_empty()).then(|| (Box::from(host), port));
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::splitter::{Splitter, SplitterLimits};

    fn features(xml: &str) -> Stanza {
        let mut splitter = Splitter::new(SplitterLimits::default());
        let mut buf = BytesMut::from(
            format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{xml}").as_bytes(),
        );
        splitter.feed(&mut buf).unwrap();
        match splitter.feed(&mut buf).unwrap() {
            Some(Item::Element(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    fn text(s: &Stanza) -> &str {
        std::str::from_utf8(s.as_bytes()).unwrap()
    }

    #[test]
    fn bosh_89_starttls_and_compression_are_removed() {
        let (s, tls) = strip_features(features(
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
             <compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>\
             </stream:features>",
        ));
        assert_eq!(tls, TlsOffer::Optional);
        assert_eq!(
            text(&s),
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        );
        let mut out = Vec::new();
        s.write_standalone(
            &mut out,
            &crate::stanza::StandaloneContext {
                default_ns: Some("jabber:client"),
                ..Default::default()
            },
        );
        assert!(out.starts_with(b"<stream:features xmlns='jabber:client'><mechanisms"));
    }

    #[test]
    fn required_starttls_fails_negotiation() {
        let f = features(
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>",
        );
        let (_, tls) = strip_features(f.clone());
        assert_eq!(tls, TlsOffer::Required);
        assert!(matches!(
            item_to_event(Item::Element(f)),
            Err(UpstreamFailure::Negotiation(_))
        ));
    }

    #[test]
    fn features_without_tls_are_not_copied() {
        let f = features(
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
        );
        let ptr = f.as_bytes().as_ptr();
        let (s, tls) = strip_features(f);
        assert_eq!(tls, TlsOffer::None);
        assert_eq!(s.as_bytes().as_ptr(), ptr);
    }

    fn header_and(xml: &str) -> Vec<Item> {
        let mut splitter = Splitter::new(SplitterLimits::default());
        let mut buf = BytesMut::from(
            format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1' version='1.0'>{xml}").as_bytes(),
        );
        let mut items = Vec::new();
        while let Some(item) = splitter.feed(&mut buf).unwrap() {
            items.push(item);
        }
        items
    }

    fn open() -> OpenStream {
        OpenStream {
            to: "example.com".into(),
            from: Some("a@example.com".into()),
            lang: Some("en".into()),
            version: "1.0".into(),
            restart: false,
        }
    }

    /// Feeds items and returns the first step.
    fn run(est: &mut Establish, items: Vec<Item>) -> EstablishStep {
        for item in items {
            if let Some(step) = est.on_item(item) {
                return step;
            }
        }
        panic!("no step");
    }

    #[test]
    fn plain_stream_is_ready_after_features() {
        let (mut est, first) = Establish::new(open(), TlsMode::None, false);
        assert!(
            matches!(first, EstablishStep::Write(b) if !std::str::from_utf8(&b).unwrap().contains("from="))
        );
        let step = run(
            &mut est,
            header_and(
                "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>",
            ),
        );
        assert!(
            matches!(&step, EstablishStep::Ready(events) if events.len() == 2),
            "{step:?}"
        );
    }

    #[test]
    fn up_30_33_37_starttls_is_done_before_the_client_sees_features() {
        let (mut est, _) = Establish::new(open(), TlsMode::Starttls, false);
        // Not even advertised: ask anyway (UP-33).
        let step = run(
            &mut est,
            header_and(
                "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>",
            ),
        );
        assert!(
            matches!(&step, EstablishStep::Write(b) if &b[..] == STARTTLS),
            "{step:?}"
        );
        let step = run(
            &mut est,
            header_and("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .into_iter()
                .skip(1)
                .collect(),
        );
        assert!(matches!(step, EstablishStep::StartTls));
        // UP-23, WS-39: `from` only once TLS is up.
        let step = est.tls_done();
        assert!(
            matches!(&step, EstablishStep::Write(b) if std::str::from_utf8(b).unwrap().contains(" from='a@example.com'"))
        );
        assert!(est.is_secure());
        let step = run(
            &mut est,
            header_and(
                "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>",
            ),
        );
        assert!(matches!(&step, EstablishStep::Ready(_)), "{step:?}");
    }

    #[test]
    fn starttls_refused_fails() {
        let (mut est, _) = Establish::new(open(), TlsMode::Starttls, false);
        run(&mut est, header_and("<stream:features/>"));
        let step = run(
            &mut est,
            header_and("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .into_iter()
                .skip(1)
                .collect(),
        );
        assert!(matches!(
            step,
            EstablishStep::Fail(UpstreamFailure::Negotiation(_))
        ));
    }

    #[test]
    fn up_44_see_other_host_is_followed_on_a_plain_or_secure_leg() {
        let error = "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>[2001:db8::2]:5223</see-other-host></stream:error>";
        let (mut est, _) = Establish::new(open(), TlsMode::None, false);
        match run(&mut est, header_and(error)) {
            EstablishStep::Redirect { host, port } => {
                assert_eq!((&*host, port), ("2001:db8::2", Some(5223)))
            }
            other => panic!("{other:?}"),
        }
        let (mut est, _) = Establish::new(open(), TlsMode::Direct, true);
        let error = "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>other.example</see-other-host></stream:error>";
        assert!(matches!(
            run(&mut est, header_and(error)),
            EstablishStep::Redirect { port: None, .. }
        ));
        // Before TLS on a STARTTLS leg: ignored.
        let (mut est, _) = Establish::new(open(), TlsMode::Starttls, false);
        assert!(matches!(
            run(&mut est, header_and(error)),
            EstablishStep::Fail(_)
        ));
    }

    #[test]
    fn up_45_stream_error_answering_the_header_is_relayed() {
        let (mut est, _) = Establish::new(open(), TlsMode::None, false);
        let step = run(
            &mut est,
            header_and(
                "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
            ),
        );
        match step {
            EstablishStep::Ready(events) => {
                assert!(
                    matches!(&events[1], UpstreamEvent::Element(e) if e.kind() == ElementKind::StreamError)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn up_24_pre_1_0_server_is_refused() {
        let (mut est, _) = Establish::new(open(), TlsMode::None, false);
        let mut splitter = Splitter::new(SplitterLimits::default());
        let mut buf = BytesMut::from(&b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1'>"[..]);
        let item = splitter.feed(&mut buf).unwrap().unwrap();
        assert!(matches!(est.on_item(item), Some(EstablishStep::Fail(_))));
    }

    #[test]
    fn bosh_101_up_20_header_attributes() {
        let open = OpenStream {
            to: "example.com".into(),
            from: Some("a@example.com".into()),
            lang: Some("en".into()),
            version: "1.0".into(),
            restart: false,
        };
        assert_eq!(
            &stream_header(&open, false)[..],
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>"
        );
        let secure = stream_header(&open, true);
        assert!(
            std::str::from_utf8(&secure)
                .unwrap()
                .contains(" from='a@example.com'")
        );
        assert!(!std::str::from_utf8(&secure).unwrap().contains(" id="));
    }
}
