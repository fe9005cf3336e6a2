//! Parsing of one client WebSocket message (RFC 7395 §3.3): exactly one
//! complete element, which is either a framing element (`<open/>`,
//! `<close/>`) or an element re-serialised for the upstream stream.

use bytes::Bytes;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};

use crate::xml::check::{check_attribute_value, check_qname};
use crate::xml::escape::is_xml_bytes;
use crate::xml::ns;
use crate::xml::reserialize::{ClientTop, ClientXmlError, ClientXmlLimits, rewrite_element};

/// Attributes of a client `<open/>` (RFC 7395 §3.4, RFC 6120 §4.7).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenAttrs {
    /// Target domain.
    pub to: Option<Box<str>>,
    /// The client's JID, if given.
    pub from: Option<Box<str>>,
    /// `version`.
    pub version: Option<Box<str>>,
    /// `xml:lang`.
    pub lang: Option<Box<str>>,
}

/// What a client message holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// `<open/>` in the framing namespace.
    Open(OpenAttrs),
    /// `<close/>` in the framing namespace.
    Close,
    /// One element (or several, in lenient mode) ready for the upstream stream.
    Elements {
        /// Re-serialised bytes.
        bytes: Bytes,
        /// Kind of the first element.
        top: ClientTop,
        /// Number of elements.
        count: u16,
    },
    /// Whitespace only: ignored (WS-15).
    Blank,
}

/// Why a message was refused; each maps to a stream error condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not well-formed, several elements, or text outside an element (WS-9, WS-10).
    #[error("not well-formed: {0}")]
    NotWellFormed(&'static str),
    /// Comments, processing instructions, DTDs, undeclared entities (WS-48).
    #[error("restricted XML: {0}")]
    RestrictedXml(&'static str),
    /// `<open/>` or `<close/>` outside the framing namespace (WS-18).
    #[error("framing element in the wrong namespace")]
    InvalidNamespace,
    /// Too deep or too many attributes.
    #[error("policy violation: {0}")]
    PolicyViolation(&'static str),
}

impl MessageError {
    /// The RFC 6120 stream error condition.
    pub fn condition(self) -> &'static str {
        match self {
            Self::NotWellFormed(_) => "not-well-formed",
            Self::RestrictedXml(_) => "restricted-xml",
            Self::InvalidNamespace => "invalid-namespace",
            Self::PolicyViolation(_) => "policy-violation",
        }
    }
}

impl From<ClientXmlError> for MessageError {
    fn from(e: ClientXmlError) -> Self {
        match e {
            ClientXmlError::NotWellFormed(m) => Self::NotWellFormed(m),
            ClientXmlError::RestrictedXml(m) => Self::RestrictedXml(m),
            ClientXmlError::TooDeep => Self::PolicyViolation("nesting too deep"),
            ClientXmlError::TooManyAttributes => Self::PolicyViolation("too many attributes"),
        }
    }
}

/// Parses one message. `multiple` accepts several elements in one message
/// (a lenient mode for old clients; RFC 7395 requires one).
pub fn parse_message(
    text: &str,
    limits: ClientXmlLimits,
    multiple: bool,
) -> Result<ClientMessage, MessageError> {
    if !is_xml_bytes(text.as_bytes()) {
        return Err(MessageError::NotWellFormed("character not allowed in XML"));
    }
    crate::xml::reserialize::with_resolver(text.len(), |resolver| {
        parse_elements(text, limits, multiple, resolver)
    })
}

fn parse_elements(
    text: &str,
    limits: ClientXmlLimits,
    multiple: bool,
    resolver: &mut NamespaceResolver,
) -> Result<ClientMessage, MessageError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    // The rewrite is about as long as the input: one allocation, no growth.
    let mut out = Vec::with_capacity(text.len() + 32);
    let mut first: Option<ClientTop> = None;
    let mut count = 0u16;
    let mut seen_markup = false;
    loop {
        let (tag, self_closing) = match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Text(t)) if t.bytes().all(|b| b.is_ascii_whitespace()) => continue,
            // WS-14: a leading XML declaration is tolerated and dropped.
            Ok(Event::Decl(_)) if !seen_markup => {
                seen_markup = true;
                continue;
            }
            Ok(Event::Start(tag)) => (tag, false),
            Ok(Event::Empty(tag)) => (tag, true),
            Ok(Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::Decl(_)) => {
                return Err(MessageError::RestrictedXml("markup outside an element"));
            }
            Ok(_) => return Err(MessageError::NotWellFormed("text outside an element")),
            Err(quick_xml::Error::Syntax(quick_xml::errors::SyntaxError::InvalidBangMarkup)) => {
                return Err(MessageError::RestrictedXml("markup declaration"));
            }
            Err(_) => return Err(MessageError::NotWellFormed("syntax error")),
        };
        seen_markup = true;
        if count > 0 && !multiple {
            return Err(MessageError::NotWellFormed(
                "more than one element in a message",
            ));
        }
        if let Some(framing) = framing_element(resolver, &tag)? {
            if count > 0 {
                return Err(MessageError::NotWellFormed(
                    "framing element mixed with stanzas",
                ));
            }
            if !self_closing {
                match reader.read_event() {
                    Ok(Event::End(_)) => {}
                    _ => {
                        return Err(MessageError::NotWellFormed(
                            "<open/> and <close/> are empty",
                        ));
                    }
                }
            }
            return expect_end(&mut reader).map(|()| framing);
        }
        let top = rewrite_element(&mut reader, resolver, &tag, self_closing, limits, &mut out)?;
        first.get_or_insert(top);
        count = count.saturating_add(1);
    }
    match first {
        Some(top) => Ok(ClientMessage::Elements {
            bytes: Bytes::from(out),
            top,
            count,
        }),
        None => Ok(ClientMessage::Blank),
    }
}

/// Recognises `<open/>` and `<close/>`; `None` for anything else.
fn framing_element(
    resolver: &mut NamespaceResolver,
    tag: &BytesStart<'_>,
) -> Result<Option<ClientMessage>, MessageError> {
    let local = tag.local_name();
    let local = local.as_ref();
    if local != "open" && local != "close" {
        return Ok(None);
    }
    resolver
        .push(tag)
        .map_err(|_| MessageError::NotWellFormed("bad namespace declaration"))?;
    let bound = matches!(
        resolver.resolve_element(tag.name()).0,
        ResolveResult::Bound(n) if n.into_inner() == ns::FRAMING
    );
    let mut attrs = OpenAttrs::default();
    let mut result = Err(MessageError::InvalidNamespace);
    if bound {
        for attr in tag.attributes() {
            let attr = attr.map_err(|_| MessageError::NotWellFormed("bad attribute"))?;
            check_qname(attr.key.as_ref(), false)
                .and_then(|()| check_attribute_value(&attr.value))
                .map_err(|e| MessageError::NotWellFormed(e.describe()))?;
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|_| MessageError::NotWellFormed("bad attribute value"))?;
            let value: Box<str> = value.into();
            match attr.key.as_ref() {
                "to" => attrs.to = Some(value),
                "from" => attrs.from = Some(value),
                "version" => attrs.version = Some(value),
                "xml:lang" => attrs.lang = Some(value),
                _ => {}
            }
        }
        result = Ok(Some(if local == "open" {
            ClientMessage::Open(attrs)
        } else {
            ClientMessage::Close
        }));
    }
    resolver.pop();
    result
}

fn expect_end(reader: &mut Reader<&[u8]>) -> Result<(), MessageError> {
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => return Ok(()),
            Ok(Event::Text(t)) if t.bytes().all(|b| b.is_ascii_whitespace()) => {}
            _ => {
                return Err(MessageError::NotWellFormed(
                    "content after the framing element",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientMessage, MessageError> {
        parse_message(text, ClientXmlLimits::default(), false)
    }

    #[test]
    fn ws_17_open_attributes() {
        let m = parse("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0' xml:lang='en' from='a@localhost'/>").unwrap();
        assert_eq!(
            m,
            ClientMessage::Open(OpenAttrs {
                to: Some("localhost".into()),
                from: Some("a@localhost".into()),
                version: Some("1.0".into()),
                lang: Some("en".into()),
            })
        );
    }

    #[test]
    fn ws_10_repeated_attribute_is_not_well_formed() {
        for text in [
            "<message to='a@localhost' to='b@localhost'><body>x</body></message>",
            "<message to='a@localhost'><body xml:lang='en' xml:lang='de'>x</body></message>",
        ] {
            assert!(
                matches!(parse(text), Err(MessageError::NotWellFormed(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn ws_14_leading_declaration_is_dropped() {
        let m = parse("<?xml version='1.0'?><open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='d' version='1.0'/>").unwrap();
        assert!(matches!(m, ClientMessage::Open(_)));
    }

    #[test]
    fn ws_18_framing_elements_in_the_wrong_namespace() {
        assert_eq!(
            parse("<open xmlns='http://etherx.jabber.org/streams' to='d' version='1.0'/>"),
            Err(MessageError::InvalidNamespace)
        );
        assert_eq!(parse("<close/>"), Err(MessageError::InvalidNamespace));
        assert_eq!(
            parse("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            Ok(ClientMessage::Close)
        );
    }

    #[test]
    fn ws_18_draft_stream_header_is_not_well_formed() {
        let e = parse("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='d'>")
            .unwrap_err();
        assert_eq!(e.condition(), "not-well-formed");
    }

    #[test]
    fn ws_9_13_stanza_is_reserialised_as_jabber_client() {
        let m = parse("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>").unwrap();
        assert_eq!(
            m,
            ClientMessage::Elements {
                bytes: Bytes::from_static(
                    b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
                ),
                top: ClientTop::Stanza,
                count: 1
            }
        );
        let m = parse("<c:message xmlns:c='jabber:client' to='x'/>").unwrap();
        assert!(
            matches!(m, ClientMessage::Elements { bytes, .. } if &bytes[..] == b"<message xmlns:c='jabber:client' to='x'/>")
        );
    }

    #[test]
    fn ws_10_two_elements_are_refused_unless_lenient() {
        assert_eq!(
            parse("<presence/><presence/>"),
            Err(MessageError::NotWellFormed(
                "more than one element in a message"
            ))
        );
        let m = parse_message("<presence/><presence/>", ClientXmlLimits::default(), true).unwrap();
        assert!(matches!(m, ClientMessage::Elements { count: 2, .. }));
    }

    #[test]
    fn ws_10_broken_and_partial_xml_is_not_well_formed() {
        for text in [
            "<message><body>x",
            "<open",
            "text",
            "<a></b>",
            "<presence/>junk",
        ] {
            assert_eq!(
                parse(text).unwrap_err().condition(),
                "not-well-formed",
                "{text}"
            );
        }
    }

    #[test]
    fn ws_48_restricted_xml() {
        for text in [
            "<message xmlns='jabber:client'><!-- x --><body>a</body></message>",
            "<!DOCTYPE x><presence/>",
            "<message>&lol;</message>",
        ] {
            assert_eq!(
                parse(text).unwrap_err().condition(),
                "restricted-xml",
                "{text}"
            );
        }
    }

    #[test]
    fn ws_15_blank_messages_are_ignored() {
        assert_eq!(parse("  \n "), Ok(ClientMessage::Blank));
    }

    #[test]
    fn starttls_is_classified() {
        let m = parse("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").unwrap();
        assert!(matches!(
            m,
            ClientMessage::Elements {
                top: ClientTop::StartTls,
                ..
            }
        ));
    }

    /// Found by the fuzz targets (see `invalid_names_are_refused_not_forwarded`
    /// in bosh/request.rs): names that are not XML names are re-serialised
    /// and sent upstream instead of being refused as `not-well-formed`.
    #[test]
    fn invalid_names_are_refused() {
        for text in [
            "<presence t9<''pe='unavailable'/>",
            "<mess'age/>",
            "<message><1body/></message>",
            // An empty name: `<\r/>` is re-serialised as `</>`.
            "<message><\r/></message>",
            // The reserved prefix: written with `xmlns:xmlns='http://www.w3.org/2000/xmlns/'`.
            "<xmlns:foo/>",
        ] {
            let result = parse(text);
            assert!(
                matches!(result, Err(MessageError::NotWellFormed(_))),
                "{text} gives {result:?}"
            );
        }
    }

    /// Found by the `ws_message` fuzz target: a character reference in an
    /// `<open/>` attribute is decoded without checking that it is an XML
    /// character, and the value goes on into the upstream stream header and
    /// into xmpp-edge's own `<open/>` reply (`xml:lang`).
    #[test]
    fn open_attributes_must_be_xml_characters() {
        for text in [
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0' xml:lang='en&#1;'/>",
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0' from='a&#x1F;@localhost'/>",
        ] {
            // Refusing the message or dropping the value both fix it.
            if let Ok(ClientMessage::Open(attrs)) = parse(text) {
                for value in [&attrs.to, &attrs.from, &attrs.version, &attrs.lang]
                    .into_iter()
                    .flatten()
                {
                    assert!(is_xml_bytes(value.as_bytes()), "{text} gives {value:?}");
                }
            }
        }
    }
}
