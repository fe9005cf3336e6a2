//! Re-serialisation of client elements for the upstream stream.
//!
//! Client input is never copied upstream byte for byte: each element is parsed
//! and written again, so a client cannot smuggle a closing stream tag, a
//! second header, comments or entity declarations into the server's stream
//! (UP-55). Writing also fixes namespaces for the TCP leg (BOSH-51, BOSH-52,
//! WS-13, UP-57):
//! - elements in `jabber:client`, or in no namespace, or in the BOSH
//!   namespace they inherited from `<body/>`, are written unprefixed in the
//!   stream's default namespace;
//! - every prefix an element or attribute uses is declared on the element
//!   written, when the context it came from (`<body/>`, the WebSocket
//!   message) declared it outside the element;
//! - prefixed declarations the client wrote on an element are kept on it, so
//!   prefixes used inside attribute values keep their meaning.
//!
//! Text and attribute values are kept in their escaped form; only character
//! and predefined entity references are accepted.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, QName, ResolveResult};

use crate::xml::check::{self, LexicalError, check_reference};
use crate::xml::escape::push_attr_escaped;
use crate::xml::ns;

/// Bounds on one client element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientXmlLimits {
    /// Deepest nesting accepted (the top-level element is depth 1).
    pub max_depth: u16,
    /// Most attributes accepted on one element.
    pub max_attributes: u16,
}

impl Default for ClientXmlLimits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_attributes: 64,
        }
    }
}

/// Why a client element was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientXmlError {
    /// Not well-formed or not namespace-well-formed.
    #[error("not well-formed: {0}")]
    NotWellFormed(&'static str),
    /// Comments, processing instructions, DTDs or undeclared entities.
    #[error("restricted XML: {0}")]
    RestrictedXml(&'static str),
    /// Deeper than [`ClientXmlLimits::max_depth`].
    #[error("nesting too deep")]
    TooDeep,
    /// More attributes than [`ClientXmlLimits::max_attributes`].
    #[error("too many attributes")]
    TooManyAttributes,
}

impl From<LexicalError> for ClientXmlError {
    fn from(e: LexicalError) -> Self {
        match e {
            LexicalError::EntityReference => Self::RestrictedXml("entity reference"),
            other => Self::NotWellFormed(other.describe()),
        }
    }
}

impl ClientXmlError {
    /// The RFC 6120 stream error condition for this failure.
    pub fn stream_condition(self) -> &'static str {
        match self {
            Self::NotWellFormed(_) => "not-well-formed",
            Self::RestrictedXml(_) => "restricted-xml",
            Self::TooDeep | Self::TooManyAttributes => "policy-violation",
        }
    }
}

/// What a client's top-level element is, for the checks transports make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTop {
    /// `message`, `presence` or `iq` in `jabber:client`.
    Stanza,
    /// A SASL element (`auth`, `response`, `abort`).
    Sasl,
    /// STARTTLS: the CM owns TLS to the server (BOSH-89, WS-35).
    StartTls,
    /// Stream compression: cannot cross the CM (BOSH-89).
    Compress,
    /// Something in the streams namespace: clients never send these inside a session.
    Streams,
    /// Anything else (stream management, ...).
    Other,
}

/// Output-side namespace bindings, kept in one string arena.
struct OutScope {
    arena: String,
    bindings: Vec<Binding>,
}

/// One declaration in scope; prefix "" is the default namespace.
struct Binding {
    depth: u16,
    prefix: (u32, u32),
    uri: (u32, u32),
}

impl OutScope {
    /// The bindings of an upstream stream header we wrote ourselves; they
    /// are implied (see `lookup`), so a stanza without declarations of its
    /// own allocates nothing here.
    fn stream_root() -> Self {
        Self {
            arena: String::new(),
            bindings: Vec::new(),
        }
    }

    fn bind(&mut self, depth: u16, prefix: &str, uri: &str) {
        let at = |s: &mut String, v: &str| {
            let start = s.len() as u32;
            s.push_str(v);
            (start, s.len() as u32)
        };
        let p = at(&mut self.arena, prefix);
        let u = at(&mut self.arena, uri);
        self.bindings.push(Binding {
            depth,
            prefix: p,
            uri: u,
        });
    }

    fn lookup(&self, prefix: &str) -> Option<&str> {
        let declared = self.bindings.iter().rev().find_map(|b| {
            let (ps, pe) = b.prefix;
            let (us, ue) = b.uri;
            (&self.arena[ps as usize..pe as usize] == prefix)
                .then(|| &self.arena[us as usize..ue as usize])
        });
        declared.or(match prefix {
            "" => Some(ns::JABBER_CLIENT),
            "stream" => Some(ns::STREAMS),
            _ => None,
        })
    }

    fn pop_to(&mut self, depth: u16) {
        while let Some(b) = self.bindings.last() {
            if b.depth <= depth {
                break;
            }
            self.arena.truncate(b.prefix.0 as usize);
            self.bindings.pop();
        }
    }
}

/// Resolves an element name to its namespace, applying the client-side
/// defaulting rules (no namespace or the BOSH namespace mean `jabber:client`).
fn element_ns<'r>(
    resolver: &'r NamespaceResolver,
    name: QName<'_>,
) -> Result<&'r str, ClientXmlError> {
    match resolver.resolve_element(name).0 {
        ResolveResult::Bound(ns) if ns.into_inner() == ns::HTTPBIND => Ok(ns::JABBER_CLIENT),
        ResolveResult::Bound(ns) => Ok(ns.into_inner()),
        ResolveResult::Unbound => Ok(ns::JABBER_CLIENT),
        ResolveResult::Unknown(_) => Err(ClientXmlError::NotWellFormed("unbound namespace prefix")),
    }
}

fn classify_top(ns_uri: &str, local: &str) -> ClientTop {
    match ns_uri {
        ns::JABBER_CLIENT if matches!(local, "message" | "presence" | "iq") => ClientTop::Stanza,
        ns::SASL => ClientTop::Sasl,
        ns::TLS => ClientTop::StartTls,
        ns::COMPRESS_PROTOCOL | ns::COMPRESS_FEATURE => ClientTop::Compress,
        ns::STREAMS => ClientTop::Streams,
        _ => ClientTop::Other,
    }
}

/// Runs `parse` with an input-side namespace resolver in its initial state.
///
/// Building a resolver allocates, and every client message needs one, so
/// each thread keeps one for inputs up to `REUSE_LIMIT` bytes (a larger input
/// could leave it holding a large buffer) and resets it before each use.
pub fn with_resolver<R>(input_len: usize, parse: impl FnOnce(&mut NamespaceResolver) -> R) -> R {
    const REUSE_LIMIT: usize = 16 * 1024;
    thread_local! {
        static RESOLVER: std::cell::RefCell<NamespaceResolver> =
            std::cell::RefCell::new(NamespaceResolver::default());
    }
    if input_len > REUSE_LIMIT {
        return parse(&mut NamespaceResolver::default());
    }
    RESOLVER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut resolver) => {
            resolver.set_level(0);
            parse(&mut resolver)
        }
        Err(_) => parse(&mut NamespaceResolver::default()),
    })
}

/// Re-serialises the element whose start tag `first` was just read from
/// `reader`, reading up to and including its end tag, and appends it to `out`.
///
/// `resolver` holds the input-side bindings of the enclosing context (the
/// `<body/>` element, or nothing for a WebSocket message); it is left as it
/// was. On error `out` may hold a partial element: discard it.
pub fn rewrite_element(
    reader: &mut Reader<&[u8]>,
    resolver: &mut NamespaceResolver,
    first: &BytesStart<'_>,
    self_closing: bool,
    limits: ClientXmlLimits,
    out: &mut Vec<u8>,
) -> Result<ClientTop, ClientXmlError> {
    let mut scope = OutScope::stream_root();
    // Output offsets of the names of open elements, for their end tags.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let top = write_start(resolver, &mut scope, first, 1, limits, out, &mut open)?;
    if self_closing {
        close_empty(resolver, &mut scope, &mut open, out);
        return Ok(top);
    }
    loop {
        match reader.read_event() {
            Ok(Event::Start(tag)) => {
                let depth = open.len() as u16 + 1;
                if depth > limits.max_depth {
                    return Err(ClientXmlError::TooDeep);
                }
                write_start(resolver, &mut scope, &tag, depth, limits, out, &mut open)?;
            }
            Ok(Event::Empty(tag)) => {
                let depth = open.len() as u16 + 1;
                if depth > limits.max_depth {
                    return Err(ClientXmlError::TooDeep);
                }
                write_start(resolver, &mut scope, &tag, depth, limits, out, &mut open)?;
                close_empty(resolver, &mut scope, &mut open, out);
            }
            Ok(Event::End(_)) => {
                // quick-xml checked that the name matches the open element.
                let Some((at, len)) = open.pop() else {
                    return Err(ClientXmlError::NotWellFormed("unexpected closing tag"));
                };
                out.extend_from_slice(b"</");
                out.extend_from_within(at..at + len);
                out.push(b'>');
                resolver.pop();
                scope.pop_to(open.len() as u16);
                if open.is_empty() {
                    return Ok(top);
                }
            }
            Ok(Event::Text(text)) => push_text(out, &text),
            Ok(Event::GeneralRef(reference)) => {
                check_reference(&reference)?;
                out.push(b'&');
                out.extend_from_slice(reference.as_bytes());
                out.push(b';');
            }
            Ok(Event::CData(data)) => {
                crate::xml::escape::push_text_escaped(out, &data);
            }
            Ok(Event::Comment(_)) => return Err(ClientXmlError::RestrictedXml("comment")),
            Ok(Event::PI(_) | Event::Decl(_)) => {
                return Err(ClientXmlError::RestrictedXml("processing instruction"));
            }
            Ok(Event::DocType(_)) => return Err(ClientXmlError::RestrictedXml("DOCTYPE")),
            Ok(Event::Eof) => return Err(ClientXmlError::NotWellFormed("element not closed")),
            Err(quick_xml::Error::Syntax(quick_xml::errors::SyntaxError::InvalidBangMarkup)) => {
                return Err(ClientXmlError::RestrictedXml("markup declaration"));
            }
            Err(_) => return Err(ClientXmlError::NotWellFormed("syntax error")),
        }
    }
}

/// Text is copied in its escaped form; `>` is escaped so `]]>` cannot appear.
fn push_text(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for at in memchr::memchr_iter(b'>', bytes) {
        out.extend_from_slice(&bytes[start..at]);
        out.extend_from_slice(b"&gt;");
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn close_empty(
    resolver: &mut NamespaceResolver,
    scope: &mut OutScope,
    open: &mut Vec<(usize, usize)>,
    out: &mut Vec<u8>,
) {
    // write_start ended the tag with '>': turn it into '/>'.
    out.pop();
    out.extend_from_slice(b"/>");
    open.pop();
    resolver.pop();
    scope.pop_to(open.len() as u16);
}

/// Writes a start tag (ending in `>`) and opens its scopes.
fn write_start(
    resolver: &mut NamespaceResolver,
    scope: &mut OutScope,
    tag: &BytesStart<'_>,
    depth: u16,
    limits: ClientXmlLimits,
    out: &mut Vec<u8>,
    open: &mut Vec<(usize, usize)>,
) -> Result<ClientTop, ClientXmlError> {
    resolver
        .push(tag)
        .map_err(|_| ClientXmlError::NotWellFormed("bad namespace declaration"))?;
    let name = tag.name();
    check::check_qname(name.as_ref(), true)?;
    let (local, prefix) = name.decompose();
    let local = local.into_inner();
    let element_uri = element_ns(resolver, name)?;
    // Elements of the content namespace are never prefixed on the stream (UP-57).
    let out_prefix = if element_uri == ns::JABBER_CLIENT {
        ""
    } else {
        prefix.map_or("", |p| p.into_inner())
    };

    out.push(b'<');
    let name_at = out.len();
    if !out_prefix.is_empty() {
        out.extend_from_slice(out_prefix.as_bytes());
        out.push(b':');
    }
    out.extend_from_slice(local.as_bytes());
    let name_len = out.len() - name_at;

    // Prefixed declarations the client made here are kept (QNames in content).
    let mut count = 0u16;
    let mut names = check::UniqueNames::new();
    for attr in tag.attributes().with_checks(false) {
        let attr = attr.map_err(|_| ClientXmlError::NotWellFormed("bad attribute"))?;
        names.insert(attr.key.0)?;
        check::check_qname(attr.key.as_ref(), false)?;
        check::check_attribute_value(&attr.value)?;
        count += 1;
        if count > limits.max_attributes {
            return Err(ClientXmlError::TooManyAttributes);
        }
        if let Some(quick_xml::name::PrefixDeclaration::Named(p)) = attr.key.as_namespace_binding()
        {
            let v = attr.value.as_ref();
            if p == "xml" || p == "xmlns" {
                continue;
            }
            if scope.lookup(p) != Some(v) {
                declare(out, scope, depth, p, v);
            }
        }
    }
    if scope.lookup(out_prefix) != Some(element_uri) {
        declare(out, scope, depth, out_prefix, element_uri);
    }
    for attr in tag.attributes().with_checks(false).flatten() {
        let key = attr.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        if let Some(p) = key.prefix() {
            let p = p.into_inner();
            if p != "xml" {
                let ResolveResult::Bound(uri) = resolver.resolve_attribute(key).0 else {
                    return Err(ClientXmlError::NotWellFormed("unbound attribute prefix"));
                };
                let uri = uri.into_inner();
                if scope.lookup(p) != Some(uri) {
                    declare(out, scope, depth, p, uri);
                }
            }
        }
        write_attr(out, key.as_ref(), &attr.value)?;
    }
    out.push(b'>');
    open.push((name_at, name_len));
    Ok(classify_top(element_uri, local))
}

fn declare(out: &mut Vec<u8>, scope: &mut OutScope, depth: u16, prefix: &str, uri: &str) {
    if prefix.is_empty() {
        out.extend_from_slice(b" xmlns='");
    } else {
        out.extend_from_slice(b" xmlns:");
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(b"='");
    }
    push_attr_escaped(out, uri);
    out.push(b'\'');
    scope.bind(depth, prefix, uri);
}

/// Writes ` key='value'`, keeping the escaped form when it is safe to.
fn write_attr(out: &mut Vec<u8>, key: &str, raw: &str) -> Result<(), ClientXmlError> {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"='");
    // write_start checked the value (check_attribute_value).
    if raw.contains('\'') {
        // Re-escape from the decoded value so the quote style can change.
        let decoded = quick_xml::escape::unescape(raw)
            .map_err(|_| ClientXmlError::NotWellFormed("bad attribute value"))?;
        push_attr_escaped(out, &decoded);
    } else {
        out.extend_from_slice(raw.as_bytes());
    }
    out.push(b'\'');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `rewrite_element` on each child of a wrapper element.
    fn rewrite_children(doc: &str) -> Result<Vec<(String, ClientTop)>, ClientXmlError> {
        let mut reader = Reader::from_reader(doc.as_bytes());
        let mut resolver = NamespaceResolver::default();
        let mut results = Vec::new();
        let mut depth = 0;
        loop {
            match reader
                .read_event()
                .map_err(|_| ClientXmlError::NotWellFormed("test"))?
            {
                Event::Start(tag) if depth == 0 => {
                    resolver.push(&tag).unwrap();
                    depth = 1;
                }
                Event::Start(tag) => {
                    let mut out = Vec::new();
                    let tag = tag.into_owned();
                    let top = rewrite_element(
                        &mut reader,
                        &mut resolver,
                        &tag,
                        false,
                        ClientXmlLimits::default(),
                        &mut out,
                    )?;
                    results.push((String::from_utf8(out).unwrap(), top));
                }
                Event::Empty(tag) => {
                    let mut out = Vec::new();
                    let tag = tag.into_owned();
                    let top = rewrite_element(
                        &mut reader,
                        &mut resolver,
                        &tag,
                        true,
                        ClientXmlLimits::default(),
                        &mut out,
                    )?;
                    results.push((String::from_utf8(out).unwrap(), top));
                }
                Event::Eof => return Ok(results),
                _ => {}
            }
        }
    }

    fn one(doc: &str) -> String {
        let mut all = rewrite_children(doc).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0).0
    }

    const BODY: &str = "<body xmlns='http://jabber.org/protocol/httpbind' rid='1'";

    #[test]
    fn bosh_51_stanza_without_namespace_becomes_jabber_client() {
        let out = one(&format!(
            "{BODY}><message to='a@b'><body>hi</body></message></body>"
        ));
        assert_eq!(out, "<message to='a@b'><body>hi</body></message>");
    }

    #[test]
    fn explicit_jabber_client_declaration_is_dropped_as_redundant() {
        let out = one(&format!(
            "{BODY}><message xmlns='jabber:client' to='a@b'><body>hi</body></message></body>"
        ));
        assert_eq!(out, "<message to='a@b'><body>hi</body></message>");
    }

    #[test]
    fn up_57_prefixed_jabber_client_stanza_is_written_unprefixed() {
        let out = one(&format!(
            "{BODY} xmlns:c='jabber:client'><c:message to='x'><c:body>b</c:body></c:message></body>"
        ));
        assert_eq!(out, "<message to='x'><body>b</body></message>");
    }

    #[test]
    fn bosh_52_prefix_declared_on_body_is_declared_on_the_element() {
        let out = one(&format!(
            "{BODY} xmlns:p='urn:x'><message><p:x p:a='1'/></message></body>"
        ));
        assert_eq!(out, "<message><p:x xmlns:p='urn:x' p:a='1'/></message>");
    }

    #[test]
    fn extension_default_namespace_is_kept_and_children_inherit() {
        let out = one(&format!(
            "{BODY}><iq type='get' id='1'><query xmlns='jabber:iq:roster'><item jid='a'/></query></iq></body>"
        ));
        assert_eq!(
            out,
            "<iq type='get' id='1'><query xmlns='jabber:iq:roster'><item jid='a'/></query></iq>"
        );
    }

    #[test]
    fn jabber_client_inside_an_extension_gets_its_declaration_back() {
        let out = one(&format!(
            "{BODY}><message><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='z'/></forwarded></message></body>"
        ));
        assert_eq!(
            out,
            "<message><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='z'/></forwarded></message>"
        );
    }

    #[test]
    fn sasl_auth_keeps_its_namespace_and_is_classified() {
        let all = rewrite_children(&format!(
            "{BODY}><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth></body>"
        ))
        .unwrap();
        assert_eq!(
            all[0],
            (
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>"
                    .to_owned(),
                ClientTop::Sasl
            )
        );
    }

    #[test]
    fn bosh_89_starttls_and_compress_are_classified() {
        let all = rewrite_children(&format!(
            "{BODY}><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress><stream:error xmlns:stream='http://etherx.jabber.org/streams'/></body>"
        ))
        .unwrap();
        let tops: Vec<_> = all.iter().map(|(_, t)| *t).collect();
        assert_eq!(
            tops,
            [ClientTop::StartTls, ClientTop::Compress, ClientTop::Streams]
        );
    }

    #[test]
    fn escapes_are_kept_and_text_gt_is_escaped() {
        let out = one(&format!(
            "{BODY}><message id='a&amp;b&#39;c' x=\"it's\"><body>1 &lt; 2 ]]> &#x263A; 😀</body></message></body>"
        ));
        assert_eq!(
            out,
            "<message id='a&amp;b&#39;c' x='it&apos;s'><body>1 &lt; 2 ]]&gt; &#x263A; 😀</body></message>"
        );
    }

    #[test]
    fn cdata_becomes_escaped_text() {
        let out = one(&format!(
            "{BODY}><message><body><![CDATA[<b>&</b>]]></body></message></body>"
        ));
        assert_eq!(
            out,
            "<message><body>&lt;b&gt;&amp;&lt;/b&gt;</body></message>"
        );
    }

    #[test]
    fn up_55_injection_attempts_cannot_escape_the_element() {
        // The closing stream tag inside text is escaped, not forwarded as markup.
        let out = one(&format!(
            "{BODY}><message><body>&lt;/stream:stream&gt;</body></message></body>"
        ));
        assert_eq!(
            out,
            "<message><body>&lt;/stream:stream&gt;</body></message>"
        );
    }

    #[test]
    fn bosh_15_restricted_constructs_are_refused() {
        for payload in [
            "<message><!-- c --></message>",
            "<message><?pi x?></message>",
            "<message>&ent;</message>",
            "<message a='&ent;'/>",
        ] {
            let err = rewrite_children(&format!("{BODY}>{payload}</body>")).unwrap_err();
            assert!(
                matches!(err, ClientXmlError::RestrictedXml(_)),
                "{payload}: {err:?}"
            );
        }
    }

    #[test]
    fn unbound_prefixes_are_not_well_formed() {
        for payload in [
            "<x:message/>",
            "<message><y:b/></message>",
            "<message z:a='1'/>",
        ] {
            let err = rewrite_children(&format!("{BODY}>{payload}</body>")).unwrap_err();
            assert!(
                matches!(err, ClientXmlError::NotWellFormed(_)),
                "{payload}: {err:?}"
            );
        }
    }

    #[test]
    fn depth_and_attribute_limits_hold() {
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        let err =
            rewrite_children(&format!("{BODY}><message>{deep}</message></body>")).unwrap_err();
        assert_eq!(err, ClientXmlError::TooDeep);
        let attrs: String = (0..70).map(|i| format!(" a{i}='1'")).collect();
        let err = rewrite_children(&format!("{BODY}><message{attrs}/></body>")).unwrap_err();
        assert_eq!(err, ClientXmlError::TooManyAttributes);
    }

    #[test]
    fn output_is_parsable_as_part_of_a_stream() {
        let out = one(&format!(
            "{BODY} xmlns:p='urn:x'><message xml:lang='de'><p:x xmlns:q='urn:q' q:a='1'><q:y/></p:x></message></body>"
        ));
        let doc = format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{out}</stream:stream>"
        );
        let mut reader = quick_xml::NsReader::from_str(&doc);
        loop {
            match reader.read_resolved_event() {
                Ok((ResolveResult::Unknown(p), _)) => panic!("unbound {p} in {out}"),
                Ok((_, Event::Eof)) => break,
                Ok(_) => {}
                Err(e) => panic!("{e} in {out}"),
            }
        }
    }
}
