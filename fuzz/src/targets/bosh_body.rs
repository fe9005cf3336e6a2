//! Arbitrary bytes as one BOSH request entity.
//!
//! `parse_request` must never panic. When it accepts a request:
//! - the payload it re-serialised for the upstream stream is a sequence of
//!   exactly `payload_count` well-formed, namespace-well-formed elements in
//!   the context of our own stream header, none of them stream-level or
//!   STARTTLS/compression, none deeper than the limit; fed after a stream
//!   header through the product's own splitter it gives the same number of
//!   elements and no stream close (no second header, no `</stream:stream>`,
//!   nothing escaping the element);
//! - the creation attributes that go into the upstream stream header
//!   (`from`, `xml:lang`, `xmpp:version`, and `to` as the HTTP layer
//!   normalises it) give a well-formed header whose attributes read back
//!   unchanged.

use bytes::BytesMut;
use xmpp_edge::bosh::parse_request;
use xmpp_edge::upstream::OpenStream;
use xmpp_edge::upstream::negotiate::stream_header;
use xmpp_edge::xml::reserialize::ClientXmlLimits;
use xmpp_edge::xml::splitter::{Item, Splitter, SplitterLimits};

use crate::{
    TOLERATE_NON_XML_ATTRIBUTE_VALUES, UPSTREAM_CONTEXT, check_fragment, check_upstream_header,
    is_known_issue, open_has_non_xml_chars,
};

/// One request entity; panics when an invariant above breaks.
pub fn run(data: &[u8]) {
    let limits = ClientXmlLimits::default();
    let Ok(request) = parse_request(data, limits) else {
        return;
    };

    // The stream header written upstream from the creation (or restart) attributes.
    let stream = &request.stream;
    let open = OpenStream {
        to: stream
            .to
            .as_deref()
            .map(|t| t.trim().trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_default()
            .into(),
        from: stream.from.clone(),
        lang: stream.lang.clone(),
        version: stream.xmpp_version.clone().unwrap_or_else(|| "1.0".into()),
        restart: false,
    };
    let header = stream_header(&open, true);
    let known_issue = TOLERATE_NON_XML_ATTRIBUTE_VALUES && open_has_non_xml_chars(&open);
    if let Err(e) = check_upstream_header(&header, &open)
        && !known_issue
    {
        panic!(
            "upstream stream header from request attributes is broken: {e}\nheader: {:?}",
            String::from_utf8_lossy(&header)
        );
    }

    if request.payload_error.is_some() {
        assert!(
            request.payload.is_empty(),
            "a refused payload must not be forwarded"
        );
        return;
    }

    let payload = &request.payload;
    let fragment = match check_fragment(payload, UPSTREAM_CONTEXT) {
        Ok(f) => f,
        Err(e) if is_known_issue(&e) => return,
        Err(e) => panic!(
            "re-serialised payload is not well-formed: {e}\npayload: {:?}",
            String::from_utf8_lossy(payload)
        ),
    };
    assert_eq!(
        fragment.tops.len(),
        usize::from(request.payload_count),
        "payload_count disagrees with the payload: {:?}",
        String::from_utf8_lossy(payload)
    );
    assert!(
        fragment.max_depth <= usize::from(limits.max_depth),
        "payload deeper ({}) than the limit",
        fragment.max_depth
    );
    for top in &fragment.tops {
        assert!(
            !matches!(
                top.ns.as_str(),
                "http://etherx.jabber.org/streams"
                    | "urn:ietf:params:xml:ns:xmpp-tls"
                    | "http://jabber.org/protocol/compress"
                    | "http://jabber.org/features/compress"
            ),
            "forbidden top-level element {{{}}}{} forwarded",
            top.ns,
            top.local
        );
    }

    if known_issue {
        return;
    }
    // The server side of the same bytes: our header, then the payload.
    let mut buf = BytesMut::from(&header[..]);
    buf.extend_from_slice(payload);
    let mut splitter = Splitter::new(SplitterLimits {
        max_element_bytes: usize::MAX / 2,
        max_depth: 64,
    });
    let mut elements = 0usize;
    let mut headers = 0usize;
    loop {
        match splitter.feed(&mut buf) {
            Ok(Some(Item::StreamOpen(_))) => headers += 1,
            Ok(Some(Item::Element(_))) => elements += 1,
            Ok(Some(Item::StreamClose)) => panic!(
                "payload closes the upstream stream: {:?}",
                String::from_utf8_lossy(payload)
            ),
            Ok(None) => break,
            Err(e) => panic!(
                "the splitter refuses our own upstream bytes ({e}): {:?}",
                String::from_utf8_lossy(payload)
            ),
        }
    }
    assert_eq!(headers, 1, "payload opens a second stream");
    assert_eq!(
        elements,
        usize::from(request.payload_count),
        "splitter sees a different number of elements in {:?}",
        String::from_utf8_lossy(payload)
    );
    assert!(
        buf.iter().all(|b| b.is_ascii_whitespace()),
        "payload leaves an unfinished element"
    );
}
