//! Escaping for the few places where xmpp-edge writes text of its own into XML.

/// Appends `value` escaped for use inside a single-quoted attribute value.
///
/// Tabs and line breaks become character references so that attribute-value
/// normalisation on the reading side gives back the same string.
pub fn push_attr_escaped(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\'' => b"&apos;",
            b'"' => b"&quot;",
            b'\t' => b"&#x9;",
            b'\n' => b"&#xA;",
            b'\r' => b"&#xD;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `value` escaped as element text.
pub fn push_text_escaped(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#xD;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends ` name='value'` with `value` escaped.
pub fn push_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    push_attr_escaped(out, value);
    out.push(b'\'');
}

/// Checks that UTF-8 `bytes` only hold characters XML 1.0 allows (§2.2 `Char`).
///
/// C0 controls other than tab, LF and CR, and U+FFFE/U+FFFF are rejected; a
/// stream carrying them would be closed by any conforming server.
pub fn is_xml_bytes(bytes: &[u8]) -> bool {
    // Fast path, vectorised by the compiler: no control byte and no 0xEF
    // (the lead byte of U+FFFE/U+FFFF) at all, which is nearly all text.
    if bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != 0xEF))
    {
        return true;
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b < 0x20 {
            if !matches!(b, b'\t' | b'\n' | b'\r') {
                return false;
            }
        } else if b == 0xEF
            && bytes.get(i + 1) == Some(&0xBF)
            && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_escaping_round_trips_special_characters() {
        let mut out = Vec::new();
        push_attr_escaped(&mut out, "a&b<c>'d\"e\tf\ng");
        assert_eq!(out, b"a&amp;b&lt;c&gt;&apos;d&quot;e&#x9;f&#xA;g");
    }

    #[test]
    fn text_escaping_keeps_quotes() {
        let mut out = Vec::new();
        push_text_escaped(&mut out, "x'\"<&>]]>");
        assert_eq!(out, b"x'\"&lt;&amp;&gt;]]&gt;");
    }

    #[test]
    fn xml_chars_rejects_controls_and_nonchars() {
        let ok = |s: &str| is_xml_bytes(s.as_bytes());
        assert!(ok("hello\tworld\r\n é 漢"));
        assert!(!ok("nul\u{0}"));
        assert!(!ok("bell\u{7}"));
        assert!(!ok("\u{FFFE}"));
        assert!(!ok("\u{FFFF}"));
        assert!(ok("\u{FFFD}"));
    }
}
