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

/// Found by the `splitter` fuzz target (fuzz/regressions/splitter/): the size
/// limit is only checked while an element is incomplete, so the same bytes
/// are refused when TCP cuts them and accepted when they arrive in one read.
#[test]
fn oversize_element_is_refused_even_when_it_arrives_whole() {
    let limits = SplitterLimits {
        max_element_bytes: 300,
        max_depth: 64,
    };
    let element = format!("<message><body>{}</body></message>", "x".repeat(400));
    let start = |splitter: &mut Splitter, buf: &mut BytesMut| {
        assert!(matches!(splitter.feed(buf), Ok(Some(Item::StreamOpen(_)))));
    };
    // Cut in two: refused before the rest is read.
    let mut splitter = Splitter::new(limits);
    let mut buf = BytesMut::from(HEADER.as_bytes());
    start(&mut splitter, &mut buf);
    buf.extend_from_slice(&element.as_bytes()[..350]);
    assert_eq!(
        splitter.feed(&mut buf).unwrap_err(),
        SplitError::TooLarge(300)
    );
    // In one read: must be refused the same way.
    let mut splitter = Splitter::new(limits);
    let mut buf = BytesMut::from(HEADER.as_bytes());
    start(&mut splitter, &mut buf);
    buf.extend_from_slice(element.as_bytes());
    assert_eq!(
        splitter.feed(&mut buf).map(|item| item.is_some()),
        Err(SplitError::TooLarge(300))
    );
}

/// Found by the `splitter` fuzz target: quick-xml does not check the XML
/// `Name` production, so an element or attribute name no XML parser accepts
/// is relayed to the client (whose browser parser then fails on it).
#[test]
fn invalid_names_from_the_server_are_refused() {
    for element in [
        "<presence t9<''pe='x'/>",
        "<mess'age/>",
        "<message><1body/></message>",
    ] {
        let result = run(&format!("{HEADER}{element}"));
        assert!(
            result.is_err(),
            "{element} relayed as {:?}",
            result.unwrap()
        );
    }
}

/// Found by the `ws_message` fuzz target: the characters of an element are
/// checked (`is_xml_bytes`), those of the stream header are not, and its
/// attribute values are decoded without a check, so a header with a control
/// character (raw or as `&#1;`) is accepted and its `version`, `id`, `from`
/// or `xml:lang` reach the client in the WebSocket `<open/>` reply and the
/// BOSH session creation response (UP-52).
#[test]
fn stream_header_with_non_xml_characters_is_refused() {
    for header in [
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='\u{1f}1.0'>",
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x&#1;' version='1.0'>",
    ] {
        // Refusing the header (not-well-formed) is what UP-52 asks for.
        let result = run(header);
        assert!(
            matches!(result, Err(SplitError::NotWellFormed(_))),
            "{header:?} gives {result:?}"
        );
    }
}

/// Found by the `splitter` fuzz target: quick-xml accepts a raw `<` in an
/// attribute value, which XML forbids, and a character reference to a
/// non-XML character in an attribute value is not checked (in text it is,
/// `check_reference`); such elements are relayed to the client as they are
/// (UP-52).
#[test]
fn attribute_values_with_lt_or_bad_references_are_refused() {
    for element in [
        "<iq type='get' id='ping-1'><ping xmlns='urn:xmpp:ping</s'/></iq>",
        "<message id='a<b'/>",
        "<message id='a&#1;b'/>",
    ] {
        let result = run(&format!("{HEADER}{element}"));
        assert!(
            matches!(
                result,
                Err(SplitError::NotWellFormed(_) | SplitError::RestrictedXml(_))
            ),
            "{element} gives {result:?}"
        );
    }
}

/// Found by the `splitter` fuzz target (fuzz/regressions/splitter/): when a
/// read ends right after a `>` and the next bytes are U+FEFF (ZERO WIDTH
/// NO-BREAK SPACE, an ordinary character in text), the splitter's next pass
/// starts a quick-xml reader on them, which takes them for a byte order mark.
/// The same stanza that is relayed when it arrives whole then fails the
/// stream as not-well-formed: any contact can end a user's session with a
/// message whose text starts with U+FEFF, whenever TCP cuts it there.
#[test]
fn zero_width_no_break_space_after_a_read_boundary_is_text() {
    let element = "<message><body>\u{FEFF}hi</body></message>";
    let whole = run(&format!("{HEADER}{element}")).unwrap();
    let cut = element.find('\u{FEFF}').unwrap();
    let head = format!("{HEADER}{}", &element[..cut]);
    let parts = run_chunks(&[head.as_bytes(), &element.as_bytes()[cut..]]);
    assert_eq!(parts, Ok(whole));
}

/// Found by the `splitter` and `ws_message` fuzz targets: `]]>` may not
/// appear in character data (XML 1.0 §2.4), quick-xml accepts it, and the
/// element is relayed to the client as it is (UP-52).
#[test]
fn cdata_end_in_text_is_refused() {
    let result = run(&format!("{HEADER}<message><body>a ]]> b</body></message>"));
    assert!(
        matches!(result, Err(SplitError::NotWellFormed(_))),
        "gives {result:?}"
    );
}

/// Found by the `bosh_body` fuzz target (fuzz/regressions/bosh_body/):
/// `check_reference` parses the number with `from_str_radix`/`parse`, which
/// accept a leading `+`, so `&#x+41;` and `&#+65;` pass as character
/// references; XML allows digits only. The client side forwards them
/// upstream (`reserialize`), and the splitter relays them to clients.
#[test]
fn signed_character_references_are_refused() {
    assert!(check_reference("#x+41").is_err());
    assert!(check_reference("#+65").is_err());
    let result = run(&format!("{HEADER}<message><body>&#x+41;</body></message>"));
    assert!(result.is_err(), "gives {result:?}");
}

/// Found by the `splitter` fuzz target: a stream header longer than the
/// bound was refused when cut and accepted when it arrived whole.
#[test]
fn oversize_header_is_refused_even_when_it_arrives_whole() {
    let limits = SplitterLimits {
        max_element_bytes: 64,
        max_depth: 8,
    };
    let mut splitter = Splitter::new(limits);
    let mut buf = BytesMut::from(HEADER.as_bytes());
    assert!(HEADER.len() > 64);
    assert_eq!(
        splitter.feed(&mut buf).unwrap_err(),
        SplitError::TooLarge(64)
    );
}

/// Found by the `ws_message` fuzz target: U+FEFF between two elements was
/// dropped as a byte order mark (or relayed with the next element); it is
/// text outside an element.
#[test]
fn zero_width_no_break_space_between_elements_is_refused() {
    let whole = run(&format!("{HEADER}<presence/>\u{FEFF}<presence/>"));
    assert!(
        matches!(whole, Err(SplitError::NotWellFormed(_))),
        "{whole:?}"
    );
    let head = format!("{HEADER}<presence/>");
    let cut = run_chunks(&[head.as_bytes(), "\u{FEFF}<presence/>".as_bytes()]);
    assert!(matches!(cut, Err(SplitError::NotWellFormed(_))), "{cut:?}");
}

/// Found by the `splitter` fuzz target: a read ending inside a reference
/// (`&/>` here, the `>` making the cut look complete) failed as
/// not-well-formed, while the whole input fails as restricted-xml (an
/// entity reference): the condition must not depend on where TCP cuts.
#[test]
fn reference_cut_by_a_read_waits_for_its_end() {
    let element = "<message><body>a &/>#x1F600; b</body></message>";
    let whole = run(&format!("{HEADER}{element}"));
    let cut = element.find("/>#").unwrap() + 2;
    let head = format!("{HEADER}{}", &element[..cut]);
    let parts = run_chunks(&[head.as_bytes(), &element.as_bytes()[cut..]]);
    assert!(
        matches!(whole, Err(SplitError::RestrictedXml(_))),
        "{whole:?}"
    );
    assert_eq!(parts, whole);
}

/// Found by the `splitter` fuzz target: an XML declaration without its
/// `?>` swallowed the stream header up to a later `?>` and was accepted
/// whole, while cut it hit the size bound.
#[test]
fn oversize_declaration_is_refused_even_when_it_arrives_whole() {
    let limits = SplitterLimits {
        max_element_bytes: 64,
        max_depth: 8,
    };
    let input = format!("<?xml version='1.0'>{HEADER}<x a='?>'");
    let mut splitter = Splitter::new(limits);
    let mut buf = BytesMut::from(input.as_bytes());
    assert_eq!(
        splitter.feed(&mut buf).unwrap_err(),
        SplitError::TooLarge(64)
    );
}

/// UP-52: a repeated attribute name is not well-formed, on a stanza and on
/// a child, whether or not a read cut the tag.
#[test]
fn up_52_repeated_attribute_is_not_well_formed() {
    for element in [
        "<message to='a@localhost' id='1' to='b@localhost'><body>x</body></message>",
        "<message to='a@localhost'><body xml:lang='en' xml:lang='de'>x</body></message>",
        "<presence type='away' type='away'/>",
    ] {
        let input = format!("{HEADER}{element}");
        assert!(
            matches!(run(&input), Err(SplitError::NotWellFormed(_))),
            "{element}"
        );
        let (a, b) = input.as_bytes().split_at(HEADER.len() + element.len() / 2);
        assert!(
            matches!(run_chunks(&[a, b]), Err(SplitError::NotWellFormed(_))),
            "cut: {element}"
        );
    }
    // Same local name, different prefixes: allowed by the raw-name rule.
    let fine = format!("{HEADER}<message xmlns:a='urn:a' a:x='1' x='2'/>");
    assert!(run(&fine).is_ok());
}
