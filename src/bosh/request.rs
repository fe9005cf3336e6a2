//! Parsing of one BOSH request entity: the `<body/>` attributes and its
//! payload elements, re-serialised for the upstream stream.
//!
//! Parsing happens before the session lock is taken. An error in the wrapper
//! itself ([`BodyError`]) cannot be tied to a session; an error inside a
//! payload is kept on the request ([`BoshRequest::payload_error`]) so the
//! session core can end that session with `bad-request` in rid order.

use bytes::Bytes;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};

use crate::xml::check::{UniqueNames, check_attribute_value, check_qname};
use crate::xml::escape::is_xml_bytes;
use crate::xml::ns;
use crate::xml::reserialize::{ClientTop, ClientXmlError, ClientXmlLimits, rewrite_element};

/// Highest rid a client may use (XEP-0124 §14.1, BOSH-26).
pub const MAX_RID: u64 = (1 << 53) - 1;

/// A BOSH protocol version, `major.minor`, compared numerically (BOSH-32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major number.
    pub major: u16,
    /// Minor number.
    pub minor: u16,
}

impl Version {
    /// The XEP-0124 version this implementation follows.
    pub const OURS: Self = Self {
        major: 1,
        minor: 11,
    };

    fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.split_once('.')?;
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a payload was refused; the session ends with `bad-request`, or
/// `policy-violation` for a limit (depth, attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Ill-formed or restricted XML in a payload (BOSH-15).
    #[error(transparent)]
    Xml(#[from] ClientXmlError),
    /// STARTTLS, compression or stream-level elements from the client (BOSH-89).
    #[error("payload not allowed through the connection manager: {0}")]
    NotAllowed(&'static str),
}

/// Why a request entity could not be read at all (answered with `bad-request`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not XML, not UTF-8, or not well-formed around the payloads.
    #[error("request is not well-formed XML: {0}")]
    NotWellFormed(&'static str),
    /// The root is not `<body/>` in the httpbind namespace (BOSH-16).
    #[error("root element is not an httpbind <body/>")]
    NotBody,
    /// `rid` missing (BOSH-16).
    #[error("missing rid")]
    MissingRid,
    /// An attribute does not have its schema type (BOSH-26, BOSH-82a).
    #[error("bad value for attribute {0}")]
    BadAttribute(&'static str),
}

/// The attributes of the creation request and of XEP-0206 restart requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamAttrs {
    /// Target domain.
    pub to: Option<Box<str>>,
    /// `route` as sent (`proto:host:port`), honoured only when allow-listed.
    pub route: Option<Box<str>>,
    /// Originating entity.
    pub from: Option<Box<str>>,
    /// `xml:lang`.
    pub lang: Option<Box<str>>,
    /// Client's BOSH version; `None` marks a legacy client (BOSH-85).
    pub ver: Option<Version>,
    /// Requested `wait`, seconds.
    pub wait: Option<u16>,
    /// Requested `hold`.
    pub hold: Option<u8>,
    /// Response content type requested by the client (BOSH-4).
    pub content: Option<Box<str>>,
    /// `xmpp:version` (XEP-0206).
    pub xmpp_version: Option<Box<str>>,
}

/// One parsed request.
#[derive(Clone, Debug, Default)]
pub struct BoshRequest {
    /// Request id.
    pub rid: u64,
    /// Session id as sent; absent on the creation request.
    pub sid: Option<Box<str>>,
    /// `type='terminate'`.
    pub terminate: bool,
    /// `xmpp:restart='true'` (XEP-0206).
    pub restart: bool,
    /// `pause`, seconds.
    pub pause: Option<u16>,
    /// `ack`: on creation `Some(1)` asks for acknowledgements; later, the
    /// highest rid whose response the client holds.
    pub ack: Option<u64>,
    /// Key sequencing (BOSH-81).
    pub key: Option<Box<str>>,
    /// Start of a new key chain.
    pub newkey: Option<Box<str>>,
    /// Creation and restart attributes.
    pub stream: StreamAttrs,
    /// Re-serialised payload elements, ready for the upstream stream.
    pub payload: Bytes,
    /// Number of payload elements.
    pub payload_count: u16,
    /// Set when a payload must be refused; `payload` is then empty.
    pub payload_error: Option<PayloadError>,
}

impl BoshRequest {
    /// Whether the request carries no payload (an empty poll).
    pub fn is_empty(&self) -> bool {
        self.payload_count == 0 && self.payload_error.is_none()
    }
}

/// Parses one request entity.
pub fn parse_request(input: &[u8], limits: ClientXmlLimits) -> Result<BoshRequest, BodyError> {
    if std::str::from_utf8(input).is_err() {
        return Err(BodyError::NotWellFormed("not UTF-8"));
    }
    crate::xml::reserialize::with_resolver(input.len(), |resolver| {
        parse_with(input, limits, resolver)
    })
}

fn parse_with(
    input: &[u8],
    limits: ClientXmlLimits,
    resolver: &mut NamespaceResolver,
) -> Result<BoshRequest, BodyError> {
    let forbidden_chars = !is_xml_bytes(input);
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(false);

    let (body, self_closing) = loop {
        match reader.read_event() {
            Ok(Event::Decl(_)) => {}
            Ok(Event::Text(t)) if t.bytes().all(|b| b.is_ascii_whitespace()) => {}
            Ok(Event::Start(tag)) => break (tag, false),
            Ok(Event::Empty(tag)) => break (tag, true),
            Ok(Event::Eof) => return Err(BodyError::NotWellFormed("empty request")),
            Ok(Event::DocType(_) | Event::Comment(_) | Event::PI(_)) => {
                return Err(BodyError::NotWellFormed("restricted XML before <body/>"));
            }
            Ok(_) => return Err(BodyError::NotWellFormed("content before <body/>")),
            Err(_) => return Err(BodyError::NotWellFormed("syntax error")),
        }
    };
    resolver
        .push(&body)
        .map_err(|_| BodyError::NotWellFormed("bad namespace declaration"))?;
    let (body_ns, local) = resolver.resolve_element(body.name());
    if local.as_ref() != "body"
        || body_ns != ResolveResult::Bound(quick_xml::name::Namespace(ns::HTTPBIND))
    {
        return Err(BodyError::NotBody);
    }
    let mut request = read_attributes(&body, resolver)?;

    if forbidden_chars {
        // The wrapper parsed, so the session can be told; nothing is forwarded.
        request.payload_error = Some(PayloadError::Xml(ClientXmlError::NotWellFormed(
            "character not allowed in XML",
        )));
        return Ok(request);
    }
    if !self_closing {
        match read_payloads(&mut reader, resolver, limits, input.len()) {
            Ok((payload, count)) => {
                request.payload = payload;
                request.payload_count = count;
            }
            Err(ReadError::Payload(e)) => request.payload_error = Some(e),
            Err(ReadError::Wrapper(e)) => return Err(e),
        }
    }
    // Only whitespace may follow the body.
    if request.payload_error.is_none() {
        loop {
            match reader.read_event() {
                Ok(Event::Eof) => break,
                Ok(Event::Text(t)) if t.bytes().all(|b| b.is_ascii_whitespace()) => {}
                _ => return Err(BodyError::NotWellFormed("content after </body>")),
            }
        }
    }
    Ok(request)
}

enum ReadError {
    Payload(PayloadError),
    Wrapper(BodyError),
}

fn read_payloads(
    reader: &mut Reader<&[u8]>,
    resolver: &mut NamespaceResolver,
    limits: ClientXmlLimits,
    input_len: usize,
) -> Result<(Bytes, u16), ReadError> {
    // The payloads are about as long as the body: one allocation, no growth.
    let mut out = Vec::with_capacity(input_len);
    let mut count = 0u16;
    loop {
        let (tag, self_closing) = match reader.read_event() {
            Ok(Event::End(_)) => return Ok((Bytes::from(out), count)),
            Ok(Event::Text(t)) if t.bytes().all(|b| b.is_ascii_whitespace()) => continue,
            Ok(Event::Start(tag)) => (tag, false),
            Ok(Event::Empty(tag)) => (tag, true),
            Ok(Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::GeneralRef(_)) => {
                return Err(ReadError::Payload(
                    ClientXmlError::RestrictedXml("markup between payloads").into(),
                ));
            }
            Ok(Event::Eof) => {
                return Err(ReadError::Wrapper(BodyError::NotWellFormed(
                    "<body> not closed",
                )));
            }
            // BOSH-14: a body holds elements only, never character data.
            Ok(_) => {
                return Err(ReadError::Payload(
                    ClientXmlError::NotWellFormed("text directly inside <body/>").into(),
                ));
            }
            Err(_) => {
                return Err(ReadError::Payload(
                    ClientXmlError::NotWellFormed("syntax error").into(),
                ));
            }
        };
        let tag: BytesStart<'_> = tag;
        match rewrite_element(reader, resolver, &tag, self_closing, limits, &mut out) {
            Ok(ClientTop::StartTls) => {
                return Err(ReadError::Payload(PayloadError::NotAllowed("starttls")));
            }
            Ok(ClientTop::Compress) => {
                return Err(ReadError::Payload(PayloadError::NotAllowed("compression")));
            }
            Ok(ClientTop::Streams) => {
                return Err(ReadError::Payload(PayloadError::NotAllowed(
                    "stream-level element",
                )));
            }
            Ok(_) => count = count.saturating_add(1),
            Err(e) => return Err(ReadError::Payload(e.into())),
        }
    }
}

fn read_attributes(
    body: &BytesStart<'_>,
    resolver: &NamespaceResolver,
) -> Result<BoshRequest, BodyError> {
    let mut request = BoshRequest::default();
    let mut rid = None;
    let mut names = UniqueNames::new();
    for attr in body.attributes().with_checks(false) {
        let attr = attr.map_err(|_| BodyError::NotWellFormed("bad attribute"))?;
        names
            .insert(attr.key.0)
            .and_then(|()| check_qname(attr.key.as_ref(), false))
            .and_then(|()| check_attribute_value(&attr.value))
            .map_err(|e| BodyError::NotWellFormed(e.describe()))?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|_| BodyError::NotWellFormed("bad attribute value"))?;
        let text = value.as_ref();
        let (attr_ns, local) = resolver.resolve_attribute(attr.key);
        let local = local.as_ref();
        match attr_ns {
            ResolveResult::Unbound => match local {
                "rid" => rid = Some(parse_rid(text)?),
                "sid" => request.sid = Some(text.into()),
                "type" => request.terminate = text == "terminate",
                "pause" => request.pause = Some(parse_num(text, "pause")?),
                "ack" => request.ack = Some(parse_positive(text, "ack")?),
                "key" => request.key = Some(text.into()),
                "newkey" => request.newkey = Some(text.into()),
                "to" => request.stream.to = Some(text.into()),
                "route" => request.stream.route = Some(text.into()),
                "from" => request.stream.from = Some(text.into()),
                "ver" => {
                    request.stream.ver =
                        Some(Version::parse(text).ok_or(BodyError::BadAttribute("ver"))?);
                }
                "wait" => request.stream.wait = Some(parse_num(text, "wait")?),
                "hold" => request.stream.hold = Some(parse_num(text, "hold")?),
                "content" => request.stream.content = Some(text.into()),
                // Everything else (secure, polling, charsets, stream, ...) is ignored (BOSH-102).
                _ => {}
            },
            ResolveResult::Bound(n) if n.into_inner() == ns::XML && local == "lang" => {
                request.stream.lang = Some(text.into());
            }
            ResolveResult::Bound(n) if n.into_inner() == ns::XBOSH => match local {
                "restart" => request.restart = matches!(text, "true" | "1"),
                "version" => request.stream.xmpp_version = Some(text.into()),
                _ => {}
            },
            ResolveResult::Bound(_) => {}
            ResolveResult::Unknown(_) => {
                return Err(BodyError::NotWellFormed("unbound attribute prefix"));
            }
        }
    }
    request.rid = rid.ok_or(BodyError::MissingRid)?;
    Ok(request)
}

/// BOSH-26: a positive integer no larger than 2^53 - 1.
fn parse_rid(text: &str) -> Result<u64, BodyError> {
    let rid = parse_positive(text, "rid")?;
    if rid > MAX_RID {
        return Err(BodyError::BadAttribute("rid"));
    }
    Ok(rid)
}

fn parse_positive(text: &str, name: &'static str) -> Result<u64, BodyError> {
    match parse_num::<u64>(text, name)? {
        0 => Err(BodyError::BadAttribute(name)),
        n => Ok(n),
    }
}

/// Unsigned integers as the XML Schema lexical space allows them (no sign, digits only).
fn parse_num<T: std::str::FromStr>(text: &str, name: &'static str) -> Result<T, BodyError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BodyError::BadAttribute(name));
    }
    text.parse().map_err(|_| BodyError::BadAttribute(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BoshRequest, BodyError> {
        parse_request(text.as_bytes(), ClientXmlLimits::default())
    }

    #[test]
    fn bosh_18_creation_request_attributes() {
        let r = parse(
            "<?xml version='1.0'?><body content='text/xml; charset=utf-8' from='user@example.com' \
             hold='1' rid='1573741820' to='example.com' route='xmpp:example.com:9999' \
             ver='1.10' wait='60' ack='1' xml:lang='en' xmpp:version='1.0' \
             xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>",
        )
        .unwrap();
        assert_eq!(r.rid, 1573741820);
        assert_eq!(r.sid, None);
        assert_eq!(r.ack, Some(1));
        let s = &r.stream;
        assert_eq!(s.to.as_deref(), Some("example.com"));
        assert_eq!(s.route.as_deref(), Some("xmpp:example.com:9999"));
        assert_eq!(s.from.as_deref(), Some("user@example.com"));
        assert_eq!(s.lang.as_deref(), Some("en"));
        assert_eq!(
            s.ver,
            Some(Version {
                major: 1,
                minor: 10
            })
        );
        assert_eq!(s.wait, Some(60));
        assert_eq!(s.hold, Some(1));
        assert_eq!(s.content.as_deref(), Some("text/xml; charset=utf-8"));
        assert_eq!(s.xmpp_version.as_deref(), Some("1.0"));
        assert!(r.is_empty());
    }

    #[test]
    fn bosh_32_versions_compare_numerically() {
        assert!(Version::parse("1.10").unwrap() > Version::parse("1.9").unwrap());
        assert!(Version::parse("2.0").unwrap() > Version::OURS);
        assert_eq!(Version::parse("1"), None);
        assert_eq!(Version::parse("a.b"), None);
    }

    #[test]
    fn bosh_92_restart_accepts_true_and_1_with_any_prefix() {
        for value in ["true", "1"] {
            let r = parse(&format!(
                "<body rid='2' sid='s' to='d' x:restart='{value}' xmlns='http://jabber.org/protocol/httpbind' xmlns:x='urn:xmpp:xbosh'/>"
            ))
            .unwrap();
            assert!(r.restart, "{value}");
        }
        let r = parse("<body rid='2' sid='s' xmpp:restart='false' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>").unwrap();
        assert!(!r.restart);
    }

    #[test]
    fn payloads_are_reserialised_and_counted() {
        let r = parse(
            "<body rid='3' sid='s' xmlns='http://jabber.org/protocol/httpbind'>\n \
             <message to='a@b' xmlns='jabber:client'><body>hi</body></message>\n\
             <presence/></body>",
        )
        .unwrap();
        assert_eq!(r.payload_count, 2);
        assert_eq!(
            &r.payload[..],
            b"<message to='a@b'><body>hi</body></message><presence/>"
        );
    }

    #[test]
    fn bosh_16_missing_rid_and_wrong_root_are_bad_requests() {
        assert_eq!(
            parse("<body sid='s' xmlns='http://jabber.org/protocol/httpbind'/>").unwrap_err(),
            BodyError::MissingRid
        );
        assert_eq!(parse("<body rid='1'/>").unwrap_err(), BodyError::NotBody);
        assert_eq!(
            parse("<stream rid='1' xmlns='http://jabber.org/protocol/httpbind'/>").unwrap_err(),
            BodyError::NotBody
        );
        assert!(matches!(
            parse("not xml").unwrap_err(),
            BodyError::NotWellFormed(_)
        ));
        assert!(matches!(
            parse("").unwrap_err(),
            BodyError::NotWellFormed(_)
        ));
    }

    #[test]
    fn bosh_26_rid_bounds_and_types() {
        assert_eq!(
            parse("<body rid='9007199254740992' xmlns='http://jabber.org/protocol/httpbind'/>")
                .unwrap_err(),
            BodyError::BadAttribute("rid")
        );
        assert_eq!(
            parse("<body rid='9007199254740991' xmlns='http://jabber.org/protocol/httpbind'/>")
                .unwrap()
                .rid,
            9007199254740991
        );
        for bad in ["0", "-1", "x", "1.5", "", "+3"] {
            assert_eq!(
                parse(&format!(
                    "<body rid='{bad}' xmlns='http://jabber.org/protocol/httpbind'/>"
                ))
                .unwrap_err(),
                BodyError::BadAttribute("rid"),
                "{bad}"
            );
        }
        assert_eq!(
            parse("<body rid='1' hold='256' xmlns='http://jabber.org/protocol/httpbind'/>")
                .unwrap_err(),
            BodyError::BadAttribute("hold")
        );
        assert_eq!(
            parse("<body rid='1' wait='65536' xmlns='http://jabber.org/protocol/httpbind'/>")
                .unwrap_err(),
            BodyError::BadAttribute("wait")
        );
    }

    #[test]
    fn bosh_15_restricted_payload_is_kept_as_a_payload_error() {
        let r = parse(
            "<body rid='3' sid='s' xmlns='http://jabber.org/protocol/httpbind'><message><!-- x --></message></body>",
        )
        .unwrap();
        assert!(matches!(
            r.payload_error,
            Some(PayloadError::Xml(ClientXmlError::RestrictedXml(_)))
        ));
        assert!(r.payload.is_empty());
        assert_eq!(r.sid.as_deref(), Some("s"));
        // A DOCTYPE before the body cannot be tied to a session.
        assert!(parse("<!DOCTYPE body [<!ENTITY x 'y'>]><body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>").is_err());
    }

    #[test]
    fn bosh_14_text_directly_in_body_is_refused() {
        let r =
            parse("<body rid='3' sid='s' xmlns='http://jabber.org/protocol/httpbind'>hello</body>")
                .unwrap();
        assert!(r.payload_error.is_some());
    }

    #[test]
    fn bosh_89_starttls_and_compress_from_the_client_are_refused() {
        for payload in [
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            "<compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress>",
        ] {
            let r = parse(&format!(
                "<body rid='3' sid='s' xmlns='http://jabber.org/protocol/httpbind'>{payload}</body>"
            ))
            .unwrap();
            assert!(
                matches!(r.payload_error, Some(PayloadError::NotAllowed(_))),
                "{payload}"
            );
        }
    }

    #[test]
    fn bosh_15_repeated_attribute_is_not_well_formed() {
        let body = "<body rid='1' sid='s' rid='2' xmlns='http://jabber.org/protocol/httpbind'/>";
        assert!(matches!(parse(body), Err(BodyError::NotWellFormed(_))));
        let payload = "<body rid='1' sid='s' xmlns='http://jabber.org/protocol/httpbind'>\
                       <message to='a@localhost' to='b@localhost'/></body>";
        let r = parse(payload).unwrap();
        assert!(r.payload_error.is_some(), "{:?}", r.payload_error);
        assert!(r.payload.is_empty());
    }

    #[test]
    fn control_characters_are_a_payload_error() {
        let r = parse("<body rid='3' sid='s' xmlns='http://jabber.org/protocol/httpbind'><message><body>\u{1}</body></message></body>").unwrap();
        assert!(r.payload_error.is_some());
    }

    #[test]
    fn content_after_the_body_is_refused() {
        assert!(parse("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'/><x/>").is_err());
        assert!(parse("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>\n").is_ok());
    }

    #[test]
    fn bosh_102_secure_and_unknown_attributes_are_ignored() {
        let r = parse(
            "<body rid='1' secure='true' polling='9' xmlns='http://jabber.org/protocol/httpbind'/>",
        )
        .unwrap();
        assert_eq!(r.rid, 1);
    }

    /// Found by the `bosh_body` fuzz target (fuzz/regressions/bosh_body/):
    /// quick-xml does not check the XML `Name` production, and
    /// `rewrite_element` writes names as read, so a payload with a name no
    /// XML parser accepts is forwarded upstream, where the server ends the
    /// stream instead of xmpp-edge answering `bad-request` (BOSH-15).
    #[test]
    fn invalid_names_are_refused_not_forwarded() {
        for payload in [
            "<presence t9<''pe='unavailable'/>",
            "<mess'age/>",
            "<message><1body/></message>",
            "<message a:b:c='1'/>",
            // An empty name: `<\r/>` is re-serialised as `</>`.
            "<message><\r/></message>",
            // The reserved prefix: written with `xmlns:xmlns='http://www.w3.org/2000/xmlns/'`.
            "<xmlns:foo/>",
        ] {
            let body = format!(
                "<body rid='3' sid='s' xmlns='http://jabber.org/protocol/httpbind'>{payload}</body>"
            );
            if let Ok(r) = parse(&body) {
                assert!(
                    r.payload_error.is_some(),
                    "{payload} forwarded as {:?}",
                    String::from_utf8_lossy(&r.payload)
                );
            }
        }
    }

    /// Found by the `bosh_body` fuzz target (fuzz/regressions/bosh_body/):
    /// attribute values are not checked for XML characters. With a raw
    /// control character anywhere, the request is kept (`payload_error`) and
    /// its attributes are used as they are; a character reference such as
    /// `&#1;` is decoded to U+0001 without a check. `from`, `xml:lang` and
    /// `xmpp:version` then go into the upstream stream header
    /// (`negotiate::stream_header`), which carries the raw character to the
    /// server.
    #[test]
    fn attribute_values_must_be_xml_characters() {
        for body in [
            "<body rid='1' to='localhost' from='alice@localh\u{0}ost' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1' to='localhost' xml:lang='en&#1;' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1' to='localhost' xmpp:version='1.&#x1F;0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>",
        ] {
            // Refusing the request or dropping the value both fix it.
            if let Ok(r) = parse(body) {
                let s = &r.stream;
                for value in [&s.to, &s.from, &s.lang, &s.xmpp_version]
                    .into_iter()
                    .flatten()
                {
                    assert!(is_xml_bytes(value.as_bytes()), "{body:?} gives {value:?}");
                }
            }
        }
    }

    #[test]
    fn terminate_pause_ack_and_keys() {
        let r = parse("<body rid='7' sid='s' type='terminate' pause='30' ack='5' key='abc' newkey='def' xmlns='http://jabber.org/protocol/httpbind'/>").unwrap();
        assert!(r.terminate);
        assert_eq!(r.pause, Some(30));
        assert_eq!(r.ack, Some(5));
        assert_eq!(r.key.as_deref(), Some("abc"));
        assert_eq!(r.newkey.as_deref(), Some("def"));
    }
}
