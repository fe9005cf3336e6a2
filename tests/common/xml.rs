//! Small XML helpers for assertions.

use quick_xml::Reader;
use quick_xml::events::Event;

/// The raw text of each child element of the root element of `doc`.
pub fn children(doc: &str) -> Vec<String> {
    let mut reader = Reader::from_str(doc);
    let mut depth = 0;
    let mut start = 0;
    let mut out = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event() {
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth == 2 {
                    start = before;
                }
            }
            Ok(Event::Empty(_)) => {
                if depth == 1 {
                    out.push(doc[before..reader.buffer_position() as usize].to_owned());
                }
            }
            Ok(Event::End(_)) => {
                if depth == 2 {
                    out.push(doc[start..reader.buffer_position() as usize].to_owned());
                }
                depth -= 1;
            }
            Ok(Event::Eof) => return out,
            Ok(_) => {}
            Err(e) => panic!("bad XML {e}: {doc}"),
        }
    }
}

/// The value of attribute `name` on the first tag of `xml`.
pub fn attr(xml: &str, name: &str) -> Option<String> {
    let end = xml.find('>')?;
    let head = &xml[..end];
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(at) = head.find(&key) {
            let rest = &head[at + key.len()..];
            return Some(rest[..rest.find(quote)?].to_owned());
        }
    }
    None
}

/// A BOSH body's `condition` attribute.
pub fn condition(body: &str) -> Option<String> {
    attr(body, "condition")
}

/// Panics unless the BOSH body ends the session with `expected`.
pub fn assert_condition(body: &str, expected: &str) {
    assert_eq!(condition(body).as_deref(), Some(expected), "{body}");
}

/// Checks that `doc` is namespace-well-formed and returns the root's namespace and local name.
pub fn root_name(doc: &str) -> (String, String) {
    let mut reader = quick_xml::NsReader::from_str(doc);
    loop {
        match reader.read_resolved_event() {
            Ok((ns, Event::Start(e) | Event::Empty(e))) => {
                let ns = match ns {
                    quick_xml::name::ResolveResult::Bound(n) => n.into_inner().to_owned(),
                    quick_xml::name::ResolveResult::Unbound => String::new(),
                    quick_xml::name::ResolveResult::Unknown(p) => {
                        panic!("unbound prefix {p} in {doc}")
                    }
                };
                return (ns, e.local_name().into_inner().to_owned());
            }
            Ok((_, Event::Eof)) => panic!("no root in {doc}"),
            Ok(_) => {}
            Err(e) => panic!("bad XML {e}: {doc}"),
        }
    }
}

/// Asserts that every element and attribute prefix in `doc` resolves.
pub fn assert_namespace_well_formed(doc: &str) {
    let mut reader = quick_xml::NsReader::from_str(doc);
    loop {
        match reader.read_resolved_event() {
            Ok((quick_xml::name::ResolveResult::Unknown(p), _)) => {
                panic!("unbound prefix {p} in {doc}")
            }
            Ok((_, Event::Eof)) => return,
            Ok(_) => {}
            Err(e) => panic!("bad XML {e}: {doc}"),
        }
    }
}
