//! Upstream stream negotiation that xmpp-edge owns itself (pure).
//!
//! Turns splitter items into [`UpstreamEvent`]s for the protocol cores and
//! keeps out of them what the connection manager must handle: STARTTLS and
//! stream compression are removed from every `<stream:features/>` (BOSH-89,
//! WS-35, UP-31..34), and a server that requires STARTTLS on a leg without
//! TLS configured fails the session with a clear reason instead of leaving
//! the client waiting.

use bytes::{Bytes, BytesMut};
use quick_xml::Reader;
use quick_xml::events::Event;
use quick_xml::name::{NamespaceResolver, ResolveResult};

use crate::stanza::{ElementKind, Stanza};
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
