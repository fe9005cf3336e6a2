//! Lexical rules of XML 1.0 and Namespaces in XML that quick-xml leaves to
//! its users: names, attribute values, references and `]]>` in text.
//!
//! Both directions use them. Whatever xmpp-edge forwards must parse in any
//! conforming XML parser at the other end (BOSH-15, WS-33, UP-52): a stream
//! that a browser or a server refuses ends the user's session, and what ends
//! it should be xmpp-edge's clean error, not the peer's parser.

use crate::xml::escape::is_xml_bytes;

/// Why a piece of markup is not XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LexicalError {
    /// Not a `QName` (a name, optionally with one prefix).
    BadName,
    /// `<` in an attribute value (XML 1.0 §3.1, `AttValue`).
    LtInAttribute,
    /// A reference other than the five predefined entities or a character reference.
    EntityReference,
    /// A character reference that is malformed or names a non-XML character.
    BadCharacterReference,
    /// A character outside XML's `Char` production.
    NonXmlCharacter,
    /// `]]>` in character data (XML 1.0 §2.4).
    CdataEndInText,
    /// The same attribute name twice in one tag (XML 1.0 §3.1, Unique Att Spec).
    DuplicateAttribute,
}

impl LexicalError {
    pub fn describe(self) -> &'static str {
        match self {
            Self::BadName => "invalid element or attribute name",
            Self::LtInAttribute => "'<' in an attribute value",
            Self::EntityReference => "entity reference",
            Self::BadCharacterReference => "bad character reference",
            Self::NonXmlCharacter => "character not allowed in XML",
            Self::CdataEndInText => "']]>' in character data",
            Self::DuplicateAttribute => "attribute given twice",
        }
    }
}

/// Names compared in place before [`UniqueNames`] spills into a set.
const INLINE_NAMES: usize = 12;

/// The attribute names of one start tag, to refuse a repeated one.
///
/// quick-xml's own check allocates a list per tag; stanzas carry a handful
/// of attributes, so they are compared in place and only a tag with many
/// spills into a hash set (which keeps a hostile tag linear).
pub struct UniqueNames<'a> {
    inline: [&'a str; INLINE_NAMES],
    len: usize,
    spill: Option<std::collections::HashSet<&'a str>>,
}

impl<'a> UniqueNames<'a> {
    pub fn new() -> Self {
        Self {
            inline: [""; INLINE_NAMES],
            len: 0,
            spill: None,
        }
    }

    /// Records `name`; an error if the tag named it before.
    pub fn insert(&mut self, name: &'a str) -> Result<(), LexicalError> {
        let fresh = match &mut self.spill {
            Some(set) => set.insert(name),
            None if self.len < INLINE_NAMES => {
                let fresh = !self.inline[..self.len].contains(&name);
                self.inline[self.len] = name;
                self.len += 1;
                fresh
            }
            None => {
                let mut set: std::collections::HashSet<&'a str> =
                    self.inline.iter().copied().collect();
                let fresh = set.insert(name);
                self.spill = Some(set);
                fresh
            }
        };
        if fresh {
            Ok(())
        } else {
            Err(LexicalError::DuplicateAttribute)
        }
    }
}

impl Default for UniqueNames<'_> {
    fn default() -> Self {
        Self::new()
    }
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A name without a colon (Namespaces in XML, `NCName`).
pub fn is_ncname(name: &str) -> bool {
    // ASCII names (nearly all) without decoding characters.
    if let [first, rest @ ..] = name.as_bytes()
        && name.is_ascii()
    {
        return (first.is_ascii_alphabetic() || *first == b'_')
            && rest
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    }
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// `NCName` or `NCName:NCName`. The `xmlns` prefix is reserved for
/// declarations, so element names may not use it.
pub fn check_qname(name: &str, is_element: bool) -> Result<(), LexicalError> {
    let ok = match name.split_once(':') {
        None => is_ncname(name),
        Some((prefix, local)) => {
            is_ncname(prefix) && is_ncname(local) && !(is_element && prefix == "xmlns")
        }
    };
    if ok {
        Ok(())
    } else {
        Err(LexicalError::BadName)
    }
}

/// The inside of `&...;`: a predefined entity or a reference to an XML character.
pub fn check_reference(reference: &str) -> Result<(), LexicalError> {
    if matches!(reference, "amp" | "lt" | "gt" | "apos" | "quot") {
        return Ok(());
    }
    let Some(number) = reference.strip_prefix('#') else {
        return Err(LexicalError::EntityReference);
    };
    // Digits only: `from_str_radix` alone would also take a sign.
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(LexicalError::BadCharacterReference);
    }
    let code =
        u32::from_str_radix(digits, radix).map_err(|_| LexicalError::BadCharacterReference)?;
    if matches!(code, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF) {
        Ok(())
    } else {
        Err(LexicalError::BadCharacterReference)
    }
}

/// An attribute value as written between its quotes.
pub fn check_attribute_value(raw: &str) -> Result<(), LexicalError> {
    let bytes = raw.as_bytes();
    if memchr::memchr(b'<', bytes).is_some() {
        return Err(LexicalError::LtInAttribute);
    }
    if !is_xml_bytes(bytes) {
        return Err(LexicalError::NonXmlCharacter);
    }
    for at in memchr::memchr_iter(b'&', bytes) {
        let rest = &raw[at + 1..];
        let Some(end) = memchr::memchr(b';', rest.as_bytes()) else {
            return Err(LexicalError::BadCharacterReference);
        };
        check_reference(&rest[..end])?;
    }
    Ok(())
}

/// Character data as written (references are checked as their own events).
pub fn check_text(raw: &[u8]) -> Result<(), LexicalError> {
    if memchr::memmem::find(raw, b"]]>").is_some() {
        Err(LexicalError::CdataEndInText)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_attribute_names_are_found_in_small_and_large_tags() {
        let mut few = UniqueNames::new();
        assert_eq!(few.insert("to"), Ok(()));
        assert_eq!(few.insert("from"), Ok(()));
        assert_eq!(few.insert("to"), Err(LexicalError::DuplicateAttribute));

        let names: Vec<String> = (0..40).map(|n| format!("a{n}")).collect();
        let mut many = UniqueNames::new();
        for name in &names {
            assert_eq!(many.insert(name), Ok(()), "{name}");
        }
        // Both a name from the inline part and one from the spilled part.
        assert_eq!(many.insert("a3"), Err(LexicalError::DuplicateAttribute));
        assert_eq!(many.insert("a39"), Err(LexicalError::DuplicateAttribute));
        assert_eq!(many.insert("b"), Ok(()));
    }

    #[test]
    fn names_follow_the_qname_production() {
        for good in [
            "message",
            "a",
            "_x",
            "stream:features",
            "x-y.z1",
            "é",
            "漢字",
        ] {
            assert_eq!(check_qname(good, true), Ok(()), "{good}");
        }
        for bad in [
            "", "1body", "mess'age", "t9<''pe", "a:b:c", ":a", "a:", "-a", "a b", "\r",
        ] {
            assert_eq!(
                check_qname(bad, true),
                Err(LexicalError::BadName),
                "{bad:?}"
            );
        }
        assert!(check_qname("xmlns:foo", true).is_err());
        assert!(check_qname("xmlns:foo", false).is_ok());
    }

    #[test]
    fn references_are_digits_or_predefined() {
        for good in ["amp", "lt", "#65", "#x41", "#x10FFFF", "#9"] {
            assert_eq!(check_reference(good), Ok(()), "{good}");
        }
        assert_eq!(check_reference("nbsp"), Err(LexicalError::EntityReference));
        for bad in [
            "#x+41", "#+65", "#-1", "#", "#x", "#1", "#xFFFE", "#x110000", "#xD800",
        ] {
            assert_eq!(
                check_reference(bad),
                Err(LexicalError::BadCharacterReference),
                "{bad}"
            );
        }
    }

    #[test]
    fn attribute_values_and_text() {
        assert_eq!(check_attribute_value("a &amp; b &#x41;"), Ok(()));
        assert_eq!(
            check_attribute_value("a<b"),
            Err(LexicalError::LtInAttribute)
        );
        assert_eq!(
            check_attribute_value("a&#1;b"),
            Err(LexicalError::BadCharacterReference)
        );
        assert_eq!(
            check_attribute_value("a\u{1}b"),
            Err(LexicalError::NonXmlCharacter)
        );
        assert_eq!(
            check_attribute_value("a&b"),
            Err(LexicalError::BadCharacterReference)
        );
        assert_eq!(check_text(b"a ]] > b"), Ok(()));
        assert_eq!(check_text(b"a ]]> b"), Err(LexicalError::CdataEndInText));
    }
}
