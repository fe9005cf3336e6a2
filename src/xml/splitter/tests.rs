use super::*;

/// What a test compares: the item sequence in a printable form.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Open(StreamHeader),
    Element(String, ElementKind, HeadFlags, String),
    Close,
}

fn seen(item: Item) -> Seen {
    match item {
        Item::StreamOpen(h) => Seen::Open(h),
        Item::Element(s) => {
            let mut standalone = Vec::new();
            s.write_standalone(
                &mut standalone,
                &crate::stanza::StandaloneContext {
                    default_ns: Some("jabber:client"),
                    declare_stream_prefix: true,
                    ..Default::default()
                },
            );
            Seen::Element(
                String::from_utf8(s.as_bytes().to_vec()).unwrap(),
                s.kind(),
                s.flags(),
                String::from_utf8(standalone).unwrap(),
            )
        }
        Item::StreamClose => Seen::Close,
    }
}

/// Feeds `chunks` one after another, draining items after each.
fn run_chunks(chunks: &[&[u8]]) -> Result<Vec<Seen>, SplitError> {
    let mut splitter = Splitter::new(SplitterLimits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(item) = splitter.feed(&mut buf)? {
            out.push(seen(item));
        }
    }
    Ok(out)
}

fn run(input: &str) -> Result<Vec<Seen>, SplitError> {
    run_chunks(&[input.as_bytes()])
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost' \
    version='1.0' xml:lang='en'>";

/// A stream exercising the awkward cases: whitespace keep-alives, `>` in
/// attribute values, CDATA holding a closing tag, entities, multi-byte
/// UTF-8, prefixed attributes, self-closing stanzas and the closing tag.
fn corpus() -> String {
    format!(
        "{HEADER}\n<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
         <mechanism>PLAIN</mechanism></mechanisms></stream:features> \n\t\
         <message to='a@b/c' id='x&gt;1' from=\"q'r\"><body>héllo 漢字 😀 &amp; &#x263A; a>b</body>\
         <x:data xmlns:x='urn:x' x:attr='v'/></message>\
         <presence/>   <iq type='result' id='1'><query xmlns='jabber:iq:roster'><![CDATA[</message>]]></query></iq>\
         <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dGVzdA==</success>\
         </stream:stream>"
    )
}

#[test]
fn whole_corpus_gives_the_expected_items() {
    let items = run(&corpus()).unwrap();
    assert_eq!(items.len(), 7, "{items:#?}");
    let Seen::Open(header) = &items[0] else {
        panic!("first item {:?}", items[0])
    };
    assert_eq!(header.id.as_deref(), Some("abc"));
    assert_eq!(header.from.as_deref(), Some("localhost"));
    assert_eq!(header.version.as_deref(), Some("1.0"));
    assert_eq!(header.lang.as_deref(), Some("en"));
    assert_eq!(header.default_ns.as_deref(), Some("jabber:client"));
    assert!(header.extra_ns.is_empty());
    let kinds: Vec<_> = items[1..6]
        .iter()
        .map(|s| match s {
            Seen::Element(_, kind, _, _) => *kind,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ElementKind::Features,
            ElementKind::Message,
            ElementKind::Presence,
            ElementKind::Iq,
            ElementKind::SaslSuccess
        ]
    );
    assert_eq!(items[6], Seen::Close);
    let Seen::Element(raw, _, flags, standalone) = &items[1] else {
        unreachable!()
    };
    assert!(raw.starts_with("<stream:features><mechanisms"));
    assert!(flags.needs_stream_prefix);
    assert!(standalone.starts_with(
        "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    ));
    let Seen::Element(raw, _, _, standalone) = &items[2] else {
        unreachable!()
    };
    assert!(raw.ends_with("</message>") && raw.contains("a>b"));
    assert!(
        standalone
            .starts_with("<message to='a@b/c' id='x&gt;1' from=\"q'r\" xmlns='jabber:client'>")
    );
    let Seen::Element(_, _, _, standalone) = &items[3] else {
        unreachable!()
    };
    assert_eq!(standalone, "<presence xmlns='jabber:client'/>");
    let Seen::Element(_, _, flags, standalone) = &items[5] else {
        unreachable!()
    };
    assert!(flags.declares_default_ns);
    assert_eq!(
        standalone,
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dGVzdA==</success>"
    );
}

#[test]
fn split_at_every_offset_gives_identical_items() {
    let input = corpus();
    let whole = run(&input).unwrap();
    let bytes = input.as_bytes();
    for cut in 1..bytes.len() {
        let split = run_chunks(&[&bytes[..cut], &bytes[cut..]])
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(split, whole, "cut at {cut}");
    }
}

#[test]
fn byte_by_byte_feeding_gives_identical_items() {
    let input = corpus();
    let whole = run(&input).unwrap();
    let chunks: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
    assert_eq!(run_chunks(&chunks).unwrap(), whole);
    for size in [2, 3, 5, 7, 64] {
        let chunks: Vec<&[u8]> = input.as_bytes().chunks(size).collect();
        assert_eq!(run_chunks(&chunks).unwrap(), whole, "chunk size {size}");
    }
}

#[test]
fn header_without_declaration_and_with_other_stream_prefix() {
    let items = run(
        "<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client' \
         xmlns:x='urn:extra' id='1'><s:features/><message><x:y/></message></s:stream>",
    )
    .unwrap();
    let Seen::Open(header) = &items[0] else {
        panic!()
    };
    assert_eq!(
        header.extra_ns,
        vec![
            (Box::from("s"), Box::from(ns::STREAMS)),
            (Box::from("x"), Box::from("urn:extra"))
        ]
    );
    assert!(
        matches!(&items[1], Seen::Element(_, ElementKind::Features, f, _) if !f.needs_stream_prefix)
    );
    assert!(matches!(
        &items[2],
        Seen::Element(_, ElementKind::Message, _, _)
    ));
    assert_eq!(items[3], Seen::Close);
}

#[test]
fn whitespace_keepalives_produce_no_items_and_are_released() {
    let mut splitter = Splitter::new(SplitterLimits::default());
    let mut buf = BytesMut::from(HEADER.as_bytes());
    assert!(matches!(
        splitter.feed(&mut buf),
        Ok(Some(Item::StreamOpen(_)))
    ));
    for _ in 0..1000 {
        buf.extend_from_slice(b" \n");
        assert!(splitter.feed(&mut buf).unwrap().is_none());
    }
    assert!(buf.is_empty(), "keepalive whitespace must not accumulate");
}

#[test]
fn restart_expects_a_new_header() {
    let mut splitter = Splitter::new(SplitterLimits::default());
    let mut buf = BytesMut::from(
        format!("{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").as_bytes(),
    );
    assert!(matches!(
        splitter.feed(&mut buf),
        Ok(Some(Item::StreamOpen(_)))
    ));
    assert!(
        matches!(splitter.feed(&mut buf), Ok(Some(Item::Element(s))) if s.kind() == ElementKind::SaslSuccess)
    );
    splitter.reset();
    buf.extend_from_slice(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='second'>",
    );
    match splitter.feed(&mut buf) {
        Ok(Some(Item::StreamOpen(h))) => assert_eq!(h.id.as_deref(), Some("second")),
        other => panic!("{other:?}"),
    }
}

fn error_of(input: &str) -> SplitError {
    match run(input) {
        Err(e) => e,
        Ok(items) => panic!("accepted {input}: {items:?}"),
    }
}

#[test]
fn up_52_restricted_xml_is_refused() {
    for (body, expected) in [
        ("<!-- hi -->", "restricted-xml"),
        ("<?foo bar?>", "restricted-xml"),
        ("<message><!-- x --></message>", "restricted-xml"),
        ("<message><body>&custom;</body></message>", "restricted-xml"),
        ("<message a='&custom;'/>", "restricted-xml"),
        ("<?xml version='1.0'?>", "restricted-xml"),
    ] {
        let err = error_of(&format!("{HEADER}{body}"));
        assert_eq!(err.stream_condition(), expected, "{body}: {err}");
    }
    let err = error_of("<!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream/>");
    assert_eq!(err.stream_condition(), "restricted-xml");
}

#[test]
fn up_52_ill_formed_input_is_refused() {
    for body in [
        "<message><body>x</message>",
        "text at depth one<presence/>",
        "<message>&#0;</message>",
        "<message>&#xD800;</message>",
        "<x:message/>",
        "<message><y:body/></message>",
        "<message a='1' a='2'/>",
        "<message x:a='1'/>",
        "<message>\u{1}</message>",
        "</stream:other>",
    ] {
        let err = error_of(&format!("{HEADER}{body}"));
        assert_eq!(err.stream_condition(), "not-well-formed", "{body}: {err}");
    }
}

#[test]
fn header_in_wrong_namespace_is_invalid_namespace() {
    let err = error_of("<stream:stream xmlns:stream='urn:wrong'>");
    assert_eq!(err.stream_condition(), "invalid-namespace");
    let err = error_of("<stream xmlns='jabber:client'>");
    assert_eq!(err.stream_condition(), "invalid-namespace");
}

/// UP-56: the server-side stanza limit.
#[test]
fn oversize_element_fails_before_it_completes() {
    let mut splitter = Splitter::new(SplitterLimits {
        max_element_bytes: 1000,
        max_depth: 8,
    });
    let mut buf = BytesMut::from(HEADER.as_bytes());
    assert!(splitter.feed(&mut buf).unwrap().is_some());
    buf.extend_from_slice(b"<message><body>");
    assert!(splitter.feed(&mut buf).unwrap().is_none());
    let mut result = Ok(None);
    for _ in 0..20 {
        buf.extend_from_slice(&[b'a'; 100]);
        result = splitter.feed(&mut buf);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result.unwrap_err(), SplitError::TooLarge(1000));
    assert!(buf.len() < 1200);
}

#[test]
fn junk_without_markup_end_is_bounded() {
    let mut splitter = Splitter::new(SplitterLimits {
        max_element_bytes: 100,
        max_depth: 8,
    });
    let mut buf =
        BytesMut::from(&b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='"[..]);
    buf.extend_from_slice(&[b'x'; 200]);
    assert_eq!(
        splitter.feed(&mut buf).unwrap_err(),
        SplitError::TooLarge(100)
    );
}

#[test]
fn too_deep_nesting_is_refused() {
    let limits = SplitterLimits {
        max_element_bytes: 10_000,
        max_depth: 4,
    };
    let feed = |body: &str| {
        let mut splitter = Splitter::new(limits);
        let mut buf = BytesMut::from(format!("{HEADER}{body}").as_bytes());
        let mut last = Ok(None);
        for _ in 0..3 {
            last = splitter.feed(&mut buf);
            if last.is_err() {
                break;
            }
        }
        last
    };
    assert!(feed("<a><b><c/></b></a>").is_ok());
    assert_eq!(
        feed("<a><b><c><d><e/></d></c></b></a>").unwrap_err(),
        SplitError::TooDeep(4)
    );
}

#[test]
fn stanza_bytes_do_not_include_surrounding_whitespace() {
    let items = run(&format!("{HEADER}\n\n<presence/>\n")).unwrap();
    assert!(matches!(&items[1], Seen::Element(raw, ..) if raw == "<presence/>"));
}

#[test]
fn features_flags_when_stream_prefix_is_declared_locally() {
    let items = run(&format!(
        "{HEADER}<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"
    ))
    .unwrap();
    assert!(
        matches!(&items[1], Seen::Element(_, ElementKind::Features, f, _) if !f.needs_stream_prefix)
    );
}
