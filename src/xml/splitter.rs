//! Incremental, bounded splitter of an upstream XMPP stream into its header,
//! complete top-level elements and the closing tag.
//!
//! The stream is one endless document, so a DOM parser does not fit; instead
//! the splitter runs quick-xml over the bytes that have arrived, tracks the
//! nesting depth itself and cuts each depth-1 element out of the buffer as a
//! zero-copy [`Bytes`]. Nothing is re-serialised: clients get the server's
//! bytes, and [`Stanza::write_standalone`] only adds declarations.
//!
//! Invariants:
//! - every byte before `scan_from` belongs to a committed event, and the
//!   parser is only ever handed input that ends at a `>`. Markup can only end
//!   there, so the sole "incomplete" outcomes are the `Unclosed*` syntax
//!   errors (see [`is_incomplete`]); text can be committed piecewise, and a
//!   UTF-8 sequence or an entity reference is never cut;
//! - element offsets stay valid while an element is open because the buffer
//!   is only advanced between top-level elements;
//! - memory is bounded: an element (or junk before one) longer than
//!   `max_element_bytes` or deeper than `max_depth` is an error before more
//!   is read.
//!
//! Restricted XML (comments, processing instructions, DTDs, entity references
//! other than the predefined five) and anything not namespace-well-formed is
//! refused (RFC 6120 §11.1, UP-52).

use bytes::{Buf, BytesMut};
use quick_xml::errors::{Error as XmlError, IllFormedError, SyntaxError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::{Reader, XmlVersion};

use crate::stanza::{ElementKind, HeadFlags, Stanza, StreamHeader};
use crate::xml::check::{self, LexicalError};
use crate::xml::escape::is_xml_bytes;
use crate::xml::ns;

/// Size and depth bounds for one upstream element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitterLimits {
    /// Longest top-level element (or stream header) accepted, in bytes.
    pub max_element_bytes: usize,
    /// Deepest nesting accepted inside a top-level element (the element itself is depth 1).
    pub max_depth: u16,
}

impl Default for SplitterLimits {
    fn default() -> Self {
        Self {
            max_element_bytes: 256 * 1024,
            max_depth: 64,
        }
    }
}

/// One unit of the upstream stream.
#[derive(Debug)]
pub enum Item {
    /// The `<stream:stream>` header (initial or after a restart).
    StreamOpen(StreamHeader),
    /// A complete top-level element.
    Element(Stanza),
    /// `</stream:stream>`.
    StreamClose,
}

/// Why the upstream stream cannot be relayed any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The bytes are not well-formed XML.
    #[error("not well-formed: {0}")]
    NotWellFormed(&'static str),
    /// Comments, processing instructions, DTDs or undeclared entities (RFC 6120 §11.1).
    #[error("restricted XML: {0}")]
    RestrictedXml(&'static str),
    /// An element longer than the configured bound.
    #[error("element longer than {0} bytes")]
    TooLarge(usize),
    /// Nesting deeper than the configured bound.
    #[error("element nested deeper than {0}")]
    TooDeep(u16),
    /// The stream header is not `stream` in the streams namespace.
    #[error("invalid namespace: {0}")]
    InvalidNamespace(&'static str),
}

impl From<LexicalError> for SplitError {
    fn from(e: LexicalError) -> Self {
        match e {
            LexicalError::EntityReference => Self::RestrictedXml("entity reference"),
            other => Self::NotWellFormed(other.describe()),
        }
    }
}

impl SplitError {
    /// The RFC 6120 stream error condition that describes this failure.
    pub fn stream_condition(&self) -> &'static str {
        match self {
            Self::NotWellFormed(_) => "not-well-formed",
            Self::RestrictedXml(_) => "restricted-xml",
            Self::TooLarge(_) | Self::TooDeep(_) => "policy-violation",
            Self::InvalidNamespace(_) => "invalid-namespace",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    ExpectHeader,
    InStream,
    Closed,
}

/// The splitter's state; the byte buffer belongs to the caller.
#[derive(Debug)]
pub struct Splitter {
    limits: SplitterLimits,
    phase: Phase,
    /// 0 outside the stream, 1 inside it, 2+ inside a top-level element.
    depth: u16,
    /// First buffer offset not covered by a committed event.
    scan_from: usize,
    /// Start of the top-level element being read (valid when `depth >= 2`).
    element_start: usize,
    head: PendingHead,
    /// Names of the open elements, as (offset, length) into the buffer.
    open_names: Vec<(u32, u16)>,
    resolver: NamespaceResolver,
    /// Qualified name of the stream element, to match its closing tag.
    stream_qname: Box<str>,
}

#[derive(Clone, Copy, Debug, Default)]
struct PendingHead {
    insert_at: usize,
    kind: Option<ElementKind>,
    flags: HeadFlags,
    declares_stream_prefix: bool,
    uses_stream_prefix: bool,
}

/// What to do with the buffer once the parser no longer borrows it.
enum Completed {
    Header { end: usize, header: StreamHeader },
    Element { start: usize, end: usize },
    Close,
}

// === impl Splitter ===

impl Splitter {
    /// A splitter that expects a stream header first.
    pub fn new(limits: SplitterLimits) -> Self {
        Self {
            limits,
            phase: Phase::ExpectHeader,
            depth: 0,
            scan_from: 0,
            element_start: 0,
            head: PendingHead::default(),
            open_names: Vec::new(),
            resolver: NamespaceResolver::default(),
            stream_qname: Box::from("stream:stream"),
        }
    }

    /// Expects a new stream header next (stream restart after SASL or STARTTLS).
    ///
    /// Call it when the new header has been written upstream; the buffer
    /// should hold nothing but whitespace of the old stream.
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Gives back storage grown by earlier elements, between top-level
    /// elements (the stream's own namespace bindings are kept). For idle
    /// sessions: their splitter holds only what the stream header needs.
    pub fn compact(&mut self) {
        if self.depth <= 1 {
            self.resolver = self.resolver.clone();
            self.open_names = self.open_names.clone();
        }
    }

    /// The bounds this splitter enforces.
    pub fn limits(&self) -> SplitterLimits {
        self.limits
    }

    /// Whether the server has closed its stream.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether bytes of an unfinished element are buffered.
    pub fn in_element(&self) -> bool {
        self.depth >= 2
    }

    /// Takes the next complete item out of `buf`, or `None` when more bytes are needed.
    ///
    /// Call repeatedly until it returns `Ok(None)`. After an error the
    /// splitter must not be fed again: the stream is over.
    pub fn feed(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, SplitError> {
        if self.phase == Phase::Closed {
            buf.clear();
            return Ok(None);
        }
        let mut base = self.scan_from;
        // quick-xml takes U+FEFF at the start of its input for a byte order
        // mark; inside an element it is text, so start one byte earlier
        // (the end of the previous event, itself harmless as text).
        if buf[base..].starts_with("\u{FEFF}".as_bytes()) {
            if self.depth >= 2 && base > 0 {
                base -= 1;
            } else if self.phase == Phase::InStream {
                // Between elements it is text, which the stream may not hold.
                return Err(SplitError::NotWellFormed("text outside an element"));
            }
        }
        let Some(last_gt) = memchr::memrchr(b'>', &buf[base..]) else {
            return self.need_more(buf);
        };
        let slice = &buf[base..=base + last_gt];
        let mut reader = Reader::from_reader(slice);
        {
            let config = reader.config_mut();
            config.check_end_names = false;
            config.allow_unmatched_ends = true;
            config.expand_empty_elements = false;
            config.trim_text(false);
        }
        let mut completed = None;
        loop {
            let before = reader.buffer_position() as usize;
            let event = match reader.read_event() {
                Ok(event) => event,
                Err(XmlError::IllFormed(IllFormedError::UnclosedReference))
                    if reference_runs_to_end(&slice[before..]) =>
                {
                    // `&...` cut by the read: its `;` may be in the next one.
                    break;
                }
                Err(e) if is_incomplete(&e) => {
                    check_unfinished_tag(&slice[before..])?;
                    break;
                }
                Err(e) => return Err(map_xml_error(&e)),
            };
            let after = reader.buffer_position() as usize;
            let (start, end) = (base + before, base + after);
            match event {
                Event::Eof => break,
                Event::Text(text) => {
                    if self.depth < 2 && !text.bytes().all(|b| b.is_ascii_whitespace()) {
                        return Err(SplitError::NotWellFormed("text outside an element"));
                    }
                    check::check_text(text.as_ref().as_bytes())?;
                }
                Event::GeneralRef(reference) => {
                    if self.depth < 2 {
                        return Err(SplitError::NotWellFormed("text outside an element"));
                    }
                    check_reference(&reference)?;
                }
                Event::CData(_) => {
                    if self.depth < 2 {
                        return Err(SplitError::NotWellFormed("CDATA outside an element"));
                    }
                }
                Event::Decl(_) => {
                    if self.phase != Phase::ExpectHeader || self.depth != 0 {
                        return Err(SplitError::RestrictedXml(
                            "XML declaration inside the stream",
                        ));
                    }
                    // Bounded and checked like the header it precedes, so
                    // a cut and a whole read agree.
                    if end > self.limits.max_element_bytes {
                        return Err(SplitError::TooLarge(self.limits.max_element_bytes));
                    }
                    if !is_xml_bytes(&buf[start..end]) {
                        return Err(SplitError::NotWellFormed("character not allowed in XML"));
                    }
                }
                Event::Comment(_) => return Err(SplitError::RestrictedXml("comment")),
                Event::PI(_) => return Err(SplitError::RestrictedXml("processing instruction")),
                Event::DocType(_) => return Err(SplitError::RestrictedXml("DOCTYPE")),
                Event::Start(tag) => match self.depth {
                    0 => {
                        let header = self.open_stream(&tag)?;
                        completed = Some(Completed::Header { end, header });
                        self.scan_from = end;
                        break;
                    }
                    1 => self.begin_element(start, end - 1, &tag)?,
                    _ => self.enter_child(start, &tag)?,
                },
                Event::Empty(tag) => match self.depth {
                    0 => return Err(SplitError::NotWellFormed("self-closing stream header")),
                    1 => {
                        self.begin_element(start, end - 2, &tag)?;
                        self.resolver.pop();
                        self.open_names.pop();
                        self.depth = 1;
                        completed = Some(Completed::Element { start, end });
                        self.scan_from = end;
                        break;
                    }
                    _ => {
                        self.enter_child(start, &tag)?;
                        self.leave(None)?;
                    }
                },
                Event::End(tag) => {
                    let name = tag.name();
                    match self.depth {
                        0 => {
                            return Err(SplitError::NotWellFormed(
                                "closing tag outside the stream",
                            ));
                        }
                        1 => {
                            if name.as_ref() != &*self.stream_qname {
                                return Err(SplitError::NotWellFormed("mismatched closing tag"));
                            }
                            completed = Some(Completed::Close);
                            self.scan_from = end;
                            break;
                        }
                        _ => {
                            self.leave(Some((buf_name(buf, &self.open_names), name.as_ref())))?;
                            if self.depth == 1 {
                                completed = Some(Completed::Element {
                                    start: self.element_start,
                                    end,
                                });
                                self.scan_from = end;
                                break;
                            }
                        }
                    }
                }
            }
            self.scan_from = end;
        }
        match completed {
            None => self.need_more(buf),
            Some(Completed::Header { end, header }) => {
                // As for elements: the bound holds whether or not it came in one read.
                if end > self.limits.max_element_bytes {
                    return Err(SplitError::TooLarge(self.limits.max_element_bytes));
                }
                buf.advance(end);
                self.scan_from = 0;
                Ok(Some(Item::StreamOpen(header)))
            }
            Some(Completed::Close) => {
                self.phase = Phase::Closed;
                self.depth = 0;
                buf.clear();
                self.scan_from = 0;
                Ok(Some(Item::StreamClose))
            }
            Some(Completed::Element { start, end }) => {
                buf.advance(start);
                let bytes = buf.split_to(end - start).freeze();
                self.scan_from = 0;
                // need_more only bounds incomplete elements; one read may bring a whole one.
                if bytes.len() > self.limits.max_element_bytes {
                    return Err(SplitError::TooLarge(self.limits.max_element_bytes));
                }
                if !is_xml_bytes(&bytes) {
                    return Err(SplitError::NotWellFormed("character not allowed in XML"));
                }
                let head = std::mem::take(&mut self.head);
                let mut flags = head.flags;
                flags.needs_stream_prefix = head.uses_stream_prefix && !head.declares_stream_prefix;
                let kind = head.kind.unwrap_or(ElementKind::Other);
                Ok(Some(Item::Element(Stanza::new(
                    bytes,
                    head.insert_at - start,
                    kind,
                    flags,
                ))))
            }
        }
    }

    fn need_more(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, SplitError> {
        if self.depth >= 2 {
            if buf.len() - self.element_start > self.limits.max_element_bytes {
                return Err(SplitError::TooLarge(self.limits.max_element_bytes));
            }
        } else {
            // Committed events and whitespace between elements are not needed any more.
            let blank = buf[self.scan_from..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            buf.advance(self.scan_from + blank);
            self.scan_from = 0;
            if buf.len() > self.limits.max_element_bytes {
                return Err(SplitError::TooLarge(self.limits.max_element_bytes));
            }
        }
        Ok(None)
    }

    fn open_stream(&mut self, tag: &BytesStart<'_>) -> Result<StreamHeader, SplitError> {
        // A bad name is refused the same way whether or not the tag arrived whole.
        check::check_qname(tag.name().as_ref(), true)?;
        self.resolver = NamespaceResolver::default();
        self.resolver
            .push(tag)
            .map_err(|_| SplitError::NotWellFormed("bad namespace declaration"))?;
        let (ns, local) = self.resolver.resolve_element(tag.name());
        if local.as_ref() != "stream" || ns != ResolveResult::Bound(ns_name(ns::STREAMS)) {
            return Err(SplitError::InvalidNamespace("stream header"));
        }
        let mut header = StreamHeader::default();
        for attr in tag.attributes() {
            let attr = attr.map_err(|_| SplitError::NotWellFormed("bad attribute"))?;
            check::check_qname(attr.key.as_ref(), false)?;
            check::check_attribute_value(&attr.value)?;
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|_| SplitError::NotWellFormed("bad attribute value"))?;
            let value: Box<str> = value.into();
            match attr.key.as_ref() {
                "id" => header.id = Some(value),
                "from" => header.from = Some(value),
                "to" => header.to = Some(value),
                "version" => header.version = Some(value),
                "xml:lang" => header.lang = Some(value),
                "xmlns" => header.default_ns = Some(value),
                "xmlns:stream" if &*value == ns::STREAMS => {}
                key => {
                    if let Some(prefix) = key.strip_prefix("xmlns:") {
                        header.extra_ns.push((prefix.into(), value));
                    }
                }
            }
        }
        self.stream_qname = tag.name().as_ref().into();
        self.phase = Phase::InStream;
        self.depth = 1;
        Ok(header)
    }

    /// A depth-1 element starts at `start`; its first tag ends at `insert_at`.
    fn begin_element(
        &mut self,
        start: usize,
        insert_at: usize,
        tag: &BytesStart<'_>,
    ) -> Result<(), SplitError> {
        self.element_start = start;
        self.head = PendingHead {
            insert_at,
            ..PendingHead::default()
        };
        self.enter_child(start, tag)?;
        let (ns, local) = self.resolver.resolve_element(tag.name());
        let ns = match ns {
            ResolveResult::Bound(ns) => ns.into_inner(),
            _ => "",
        };
        self.head.kind = Some(classify(ns, local.as_ref()));
        Ok(())
    }

    /// Opens an element at `start`: bounds, namespaces and attributes are checked.
    fn enter_child(&mut self, start: usize, tag: &BytesStart<'_>) -> Result<(), SplitError> {
        if self.depth > self.limits.max_depth {
            return Err(SplitError::TooDeep(self.limits.max_depth));
        }
        self.resolver
            .push(tag)
            .map_err(|_| SplitError::NotWellFormed("bad namespace declaration"))?;
        let name = tag.name();
        if let (ResolveResult::Unknown(_), _) = self.resolver.resolve_element(name) {
            return Err(SplitError::NotWellFormed("unbound namespace prefix"));
        }
        check::check_qname(name.as_ref(), true)?;
        if name.prefix().is_some_and(|p| p.as_ref() == "stream") {
            self.head.uses_stream_prefix = true;
        }
        // One pass over the attributes does every check; a top-level
        // element's head flags come from the same pass.
        let top = self.depth == 1;
        let mut names = check::UniqueNames::new();
        for attr in tag.attributes().with_checks(false) {
            let attr = attr.map_err(|_| SplitError::NotWellFormed("bad attribute"))?;
            let key = attr.key.0;
            names.insert(key)?;
            if attr.key.prefix().is_some()
                && attr.key.as_namespace_binding().is_none()
                && let (ResolveResult::Unknown(_), _) = self.resolver.resolve_attribute(attr.key)
            {
                return Err(SplitError::NotWellFormed("unbound attribute prefix"));
            }
            check::check_qname(key, false)?;
            check::check_attribute_value(&attr.value)?;
            if top {
                match key {
                    "xmlns" => self.head.flags.declares_default_ns = true,
                    "xml:lang" => self.head.flags.has_lang = true,
                    "xmlns:stream" => self.head.declares_stream_prefix = true,
                    _ => {}
                }
            }
        }
        let name_len = u16::try_from(name.as_ref().len())
            .map_err(|_| SplitError::NotWellFormed("element name too long"))?;
        let name_at = u32::try_from(start + 1).map_err(|_| SplitError::TooLarge(usize::MAX))?;
        self.open_names.push((name_at, name_len));
        self.depth += 1;
        Ok(())
    }

    /// Closes the innermost element; `names` is (expected, found) for an end tag.
    fn leave(&mut self, names: Option<(&str, &str)>) -> Result<(), SplitError> {
        if let Some((expected, found)) = names
            && expected != found
        {
            return Err(SplitError::NotWellFormed("mismatched closing tag"));
        }
        self.open_names.pop();
        self.resolver.pop();
        self.depth -= 1;
        Ok(())
    }
}

/// The name of the innermost open element, read back from the buffer.
fn buf_name<'b>(buf: &'b [u8], open: &[(u32, u16)]) -> &'b str {
    open.last()
        .and_then(|&(at, len)| {
            let at = at as usize;
            buf.get(at..at + len as usize)
        })
        .and_then(|name| std::str::from_utf8(name).ok())
        .unwrap_or("")
}

fn ns_name(ns: &str) -> quick_xml::name::Namespace<'_> {
    quick_xml::name::Namespace(ns)
}

/// Maps a resolved top-level element name to its kind.
pub fn classify(ns: &str, local: &str) -> ElementKind {
    match (ns, local) {
        (ns::JABBER_CLIENT, "message") => ElementKind::Message,
        (ns::JABBER_CLIENT, "presence") => ElementKind::Presence,
        (ns::JABBER_CLIENT, "iq") => ElementKind::Iq,
        (ns::STREAMS, "features") => ElementKind::Features,
        (ns::STREAMS, "error") => ElementKind::StreamError,
        (ns::SASL, "success") => ElementKind::SaslSuccess,
        (ns::SASL, _) => ElementKind::Sasl,
        (ns::TLS, _) => ElementKind::Tls,
        _ => ElementKind::Other,
    }
}

/// Whether a quick-xml error only means that the input stopped early.
///
/// Kept in one place because these error kinds have changed between
/// quick-xml releases; the split-at-every-offset tests pin the behaviour.
fn is_incomplete(err: &XmlError) -> bool {
    matches!(
        err,
        XmlError::Syntax(
            SyntaxError::UnclosedPI
                | SyntaxError::UnclosedXmlDecl
                | SyntaxError::UnclosedComment
                | SyntaxError::UnclosedDoctype
                | SyntaxError::UnclosedCData
                | SyntaxError::UnclosedTag
                | SyntaxError::UnclosedSingleQuotedAttributeValue
                | SyntaxError::UnclosedDoubleQuotedAttributeValue
        )
    )
}

/// A tag quick-xml is still reading because a quote opened inside its name
/// (`<mess'age/>`) can never become valid: refuse it now instead of buffering
/// up to the size limit waiting for the quote to close.
fn check_unfinished_tag(rest: &[u8]) -> Result<(), SplitError> {
    let Some(after_lt) = rest.strip_prefix(b"<") else {
        return Ok(());
    };
    if after_lt.starts_with(b"!") || after_lt.starts_with(b"?") {
        return Ok(());
    }
    let after_lt = after_lt.strip_prefix(b"/").unwrap_or(after_lt);
    let name_end = after_lt
        .iter()
        .position(|b| b.is_ascii_whitespace() || matches!(b, b'/' | b'>'))
        .unwrap_or(after_lt.len());
    if after_lt[..name_end]
        .iter()
        .any(|b| matches!(b, b'\'' | b'"' | b'<' | b'='))
    {
        return Err(LexicalError::BadName.into());
    }
    Ok(())
}

/// Whether the first `&` in `rest` starts a reference that reaches the end
/// of the input without anything that would end it early.
fn reference_runs_to_end(rest: &[u8]) -> bool {
    memchr::memchr(b'&', rest).is_some_and(|at| {
        !rest[at + 1..]
            .iter()
            .any(|b| matches!(b, b';' | b'<' | b'&'))
    })
}

fn map_xml_error(err: &XmlError) -> SplitError {
    match err {
        XmlError::Syntax(SyntaxError::InvalidBangMarkup) => {
            SplitError::RestrictedXml("markup declaration")
        }
        XmlError::Encoding(_) => SplitError::NotWellFormed("invalid UTF-8"),
        _ => SplitError::NotWellFormed("syntax error"),
    }
}

/// Accepts the five predefined entities and character references to valid XML characters.
pub(crate) fn check_reference(reference: &str) -> Result<(), SplitError> {
    Ok(check::check_reference(reference)?)
}

#[cfg(test)]
mod tests;
