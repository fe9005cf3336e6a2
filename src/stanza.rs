//! Elements relayed from the upstream stream to a client, kept as the exact
//! bytes the server sent plus what is needed to make them stand alone.
//!
//! A stanza cut out of a `<stream:stream>` relies on the stream header for its
//! default namespace (`jabber:client`), for the `stream` prefix and sometimes
//! for `xml:lang`. Clients get each element inside a `<body/>` (BOSH) or as a
//! WebSocket message of its own, where that context is missing, so
//! [`Stanza::write_standalone`] adds the declarations to the first tag
//! (BOSH-50, BOSH-39, WS-11, WS-12) without re-serialising the rest.

use bytes::Bytes;

use crate::xml::escape::push_attr_escaped;

/// What a top-level element is, by its resolved name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementKind {
    /// `jabber:client` message.
    Message,
    /// `jabber:client` presence.
    Presence,
    /// `jabber:client` iq.
    Iq,
    /// `<stream:features/>`.
    Features,
    /// `<stream:error/>`.
    StreamError,
    /// SASL `<success/>`: the next client request may restart the stream.
    SaslSuccess,
    /// Any other SASL element (`challenge`, `failure`, ...).
    Sasl,
    /// STARTTLS `<proceed/>` or `<failure/>`; only the upstream negotiator sees these.
    Tls,
    /// Anything else (stream management nonzas, server extensions).
    Other,
}

impl ElementKind {
    /// Whether this is a stanza in the RFC 6120 sense (counted by XEP-0198).
    pub fn is_stanza(self) -> bool {
        matches!(self, Self::Message | Self::Presence | Self::Iq)
    }
}

/// Facts about the first tag that decide which declarations a standalone copy needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadFlags {
    /// The first tag declares a default namespace itself.
    pub declares_default_ns: bool,
    /// The first tag carries `xml:lang`.
    pub has_lang: bool,
    /// The element (or a descendant) uses the `stream` prefix without declaring it.
    pub needs_stream_prefix: bool,
}

/// One complete top-level element from the upstream stream.
#[derive(Clone, Debug)]
pub struct Stanza {
    bytes: Bytes,
    /// Offset of the `>` (or `/>`) that ends the first tag: attributes go here.
    head_insert: u32,
    kind: ElementKind,
    flags: HeadFlags,
}

/// Stream context a standalone element needs from the stream header it came from.
#[derive(Clone, Copy, Debug, Default)]
pub struct StandaloneContext<'a> {
    /// Default namespace of the stream (normally `jabber:client`).
    pub default_ns: Option<&'a str>,
    /// Declare `xmlns:stream` on elements that use the prefix (the BOSH body may do it instead).
    pub declare_stream_prefix: bool,
    /// Stream `xml:lang` to copy onto elements without their own (WS-11).
    pub lang: Option<&'a str>,
    /// Prefixes other than `stream` declared on the upstream stream header.
    pub extra_ns: &'a [(Box<str>, Box<str>)],
}

// === impl Stanza ===

impl Stanza {
    /// Wraps element bytes; `head_insert` must point at the end of the first tag.
    pub fn new(bytes: Bytes, head_insert: usize, kind: ElementKind, flags: HeadFlags) -> Self {
        debug_assert!(head_insert < bytes.len());
        let head_insert = u32::try_from(head_insert).unwrap_or(u32::MAX);
        Self {
            bytes,
            head_insert,
            kind,
            flags,
        }
    }

    /// The element exactly as the server sent it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The JID in a resource-binding result (`<iq type='result'><bind><jid>`),
    /// unescaped, for the admin API; `None` for anything else.
    pub fn bound_jid(&self) -> Option<std::borrow::Cow<'_, str>> {
        let bytes = self.as_bytes();
        if !bytes.starts_with(b"<iq")
            || memchr::memmem::find(bytes, b"urn:ietf:params:xml:ns:xmpp-bind").is_none()
        {
            return None;
        }
        let start = memchr::memmem::find(bytes, b"<jid>")? + 5;
        let len = memchr::memmem::find(&bytes[start..], b"</jid>")?;
        let raw = std::str::from_utf8(&bytes[start..start + len]).ok()?;
        quick_xml::escape::unescape(raw).ok()
    }

    /// Length in bytes of the element as received.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: an element has at least a tag.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The element's kind.
    pub fn kind(&self) -> ElementKind {
        self.kind
    }

    /// First-tag facts.
    pub fn flags(&self) -> HeadFlags {
        self.flags
    }

    /// Whether the element uses the `stream` prefix (BOSH bodies then declare it, BOSH-39).
    pub fn needs_stream_prefix(&self) -> bool {
        self.flags.needs_stream_prefix
    }

    /// Releases memory shared with a larger read buffer by copying small
    /// elements out (a queued 100-byte stanza must not pin a 4 KiB chunk).
    pub fn unshare(&mut self) {
        self.bytes = Bytes::copy_from_slice(&self.bytes);
    }

    /// Appends the element with the declarations it needs to stand alone.
    pub fn write_standalone(&self, out: &mut Vec<u8>, ctx: &StandaloneContext<'_>) {
        let at = self.head_insert as usize;
        let (head, rest) = self.bytes.split_at(at.min(self.bytes.len()));
        out.extend_from_slice(head);
        if !self.flags.declares_default_ns
            && let Some(ns) = ctx.default_ns
        {
            out.extend_from_slice(b" xmlns='");
            push_attr_escaped(out, ns);
            out.push(b'\'');
        }
        if ctx.declare_stream_prefix && self.flags.needs_stream_prefix {
            out.extend_from_slice(b" xmlns:stream='http://etherx.jabber.org/streams'");
        }
        if !self.flags.has_lang
            && let Some(lang) = ctx.lang
        {
            out.extend_from_slice(b" xml:lang='");
            push_attr_escaped(out, lang);
            out.push(b'\'');
        }
        for (prefix, uri) in ctx.extra_ns {
            if !declares_prefix(head, prefix) {
                out.extend_from_slice(b" xmlns:");
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(b"='");
                push_attr_escaped(out, uri);
                out.push(b'\'');
            }
        }
        out.extend_from_slice(rest);
    }

    /// Upper bound of the bytes [`Self::write_standalone`] appends.
    pub fn standalone_len_hint(&self, ctx: &StandaloneContext<'_>) -> usize {
        self.bytes.len()
            + ctx.default_ns.map_or(0, |ns| ns.len() + 10)
            + 50
            + ctx.lang.map_or(0, |l| l.len() + 12)
    }
}

/// Whether the first tag `head` declares `xmlns:prefix` (rare path: only used
/// when the upstream header declared extra prefixes).
fn declares_prefix(head: &[u8], prefix: &str) -> bool {
    let needle = format!("xmlns:{prefix}=");
    memchr::memmem::find(head, needle.as_bytes()).is_some()
}

/// The attributes of an upstream `<stream:stream>` header that xmpp-edge uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// Stream id (BOSH `authid`, WebSocket `<open id=…/>`).
    pub id: Option<Box<str>>,
    /// The server's domain.
    pub from: Option<Box<str>>,
    /// Echo of our `to`/`from`, rarely present.
    pub to: Option<Box<str>>,
    /// `version`; absent means a pre-1.0 server (RFC 6120 §4.7.5).
    pub version: Option<Box<str>>,
    /// Default language of the stream.
    pub lang: Option<Box<str>>,
    /// Default namespace declared on the header (normally `jabber:client`).
    pub default_ns: Option<Box<str>>,
    /// Prefix declarations other than `stream` (rare; copied onto each element).
    pub extra_ns: Vec<(Box<str>, Box<str>)>,
}

/// The front of an output queue; once it is empty, its storage is given
/// back, so the many idle sessions hold no spare queue capacity (a queue
/// that is used again allocates again, which costs less than keeping it).
pub fn pop_or_release<T>(queue: &mut std::collections::VecDeque<T>) -> Option<T> {
    let front = queue.pop_front();
    if front.is_none() && queue.capacity() > 0 {
        *queue = std::collections::VecDeque::new();
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(text: &str, flags: HeadFlags) -> Stanza {
        let at = text.find('>').map(|i| {
            if text.as_bytes()[i - 1] == b'/' {
                i - 1
            } else {
                i
            }
        });
        Stanza::new(
            Bytes::copy_from_slice(text.as_bytes()),
            at.unwrap(),
            ElementKind::Message,
            flags,
        )
    }

    #[test]
    fn bosh_50_adds_jabber_client_namespace_to_first_tag_only() {
        let s = stanza(
            "<message to='a'><body>x</body></message>",
            HeadFlags::default(),
        );
        let mut out = Vec::new();
        let ctx = StandaloneContext {
            default_ns: Some("jabber:client"),
            ..Default::default()
        };
        s.write_standalone(&mut out, &ctx);
        assert_eq!(
            out,
            b"<message to='a' xmlns='jabber:client'><body>x</body></message>"
        );
        assert!(out.len() <= s.standalone_len_hint(&ctx));
    }

    #[test]
    fn bound_jid_is_found_and_unescaped() {
        let s = stanza(
            "<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>a@b/&lt;x&gt;&amp;</jid></bind></iq>",
            HeadFlags::default(),
        );
        assert_eq!(s.bound_jid().as_deref(), Some("a@b/<x>&"));
        let m = stanza(
            "<message><body><jid>x</jid></body></message>",
            HeadFlags::default(),
        );
        assert_eq!(m.bound_jid(), None);
    }

    #[test]
    fn own_default_namespace_is_kept() {
        let flags = HeadFlags {
            declares_default_ns: true,
            ..Default::default()
        };
        let s = stanza("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", flags);
        let mut out = Vec::new();
        s.write_standalone(
            &mut out,
            &StandaloneContext {
                default_ns: Some("jabber:client"),
                ..Default::default()
            },
        );
        assert_eq!(out, b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    }

    #[test]
    fn ws_11_12_stream_prefix_and_language_are_declared() {
        let flags = HeadFlags {
            needs_stream_prefix: true,
            ..Default::default()
        };
        let s = stanza("<stream:features><bind/></stream:features>", flags);
        let mut out = Vec::new();
        s.write_standalone(
            &mut out,
            &StandaloneContext {
                default_ns: Some("jabber:client"),
                declare_stream_prefix: true,
                lang: Some("en"),
                extra_ns: &[],
            },
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "<stream:features xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en'><bind/></stream:features>"
        );
    }

    #[test]
    fn extra_header_prefixes_are_copied_unless_redeclared() {
        let s = stanza(
            "<message xmlns:x='urn:own'><x:y/></message>",
            HeadFlags::default(),
        );
        let extra = vec![
            (Box::from("x"), Box::from("urn:header")),
            (Box::from("z"), Box::from("urn:z")),
        ];
        let mut out = Vec::new();
        s.write_standalone(
            &mut out,
            &StandaloneContext {
                extra_ns: &extra,
                ..Default::default()
            },
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "<message xmlns:x='urn:own' xmlns:z='urn:z'><x:y/></message>"
        );
    }
}
