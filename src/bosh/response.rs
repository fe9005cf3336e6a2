//! Serialisation of response `<body/>` elements (XEP-0124 §7.2, §8, §17; XEP-0206 §4).
//!
//! Every response, empty or terminal, is a single `<body/>` in the httpbind
//! namespace (BOSH-13); `xmlns:stream` is declared whenever a payload uses the
//! prefix (BOSH-39), and upstream elements get `xmlns='jabber:client'` on
//! their first tag (BOSH-50).

use bytes::Bytes;

use crate::bosh::condition::Condition;
use crate::bosh::request::Version;
use crate::stanza::{StandaloneContext, Stanza};
use crate::xml::escape::push_attr;

/// `<body xmlns='http://jabber.org/protocol/httpbind'/>`: the answer to an idle poll.
pub const EMPTY_BODY: &[u8] = b"<body xmlns='http://jabber.org/protocol/httpbind'/>";

/// What kind of body this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// A normal response.
    Normal,
    /// `type='terminate'`, with a condition unless the session ended normally.
    Terminate(Option<Condition>),
    /// `type='error'`: a recoverable error (BOSH-55, BOSH-84).
    RecoverableError,
}

/// Attributes of a session creation response (BOSH-30..36).
#[derive(Clone, Copy, Debug)]
pub struct CreationAttrs<'a> {
    /// Session id.
    pub sid: &'a str,
    /// Granted `wait`, seconds.
    pub wait: u16,
    /// Granted `hold`.
    pub hold: u8,
    /// `requests`, always `hold + 1`.
    pub requests: u8,
    /// `inactivity`, seconds.
    pub inactivity: u16,
    /// `polling`, seconds.
    pub polling: u16,
    /// `maxpause`, seconds, when pausing is allowed.
    pub maxpause: Option<u16>,
    /// Agreed protocol version.
    pub ver: Version,
}

/// Stream facts sent once known: `from`, `authid`, `xmpp:version` (BOSH-34, BOSH-35, BOSH-37).
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamInfo<'a> {
    /// The server's domain from its stream header.
    pub from: Option<&'a str>,
    /// The upstream stream id.
    pub authid: Option<&'a str>,
    /// The upstream stream version.
    pub xmpp_version: Option<&'a str>,
}

/// Everything that goes on the `<body/>` start tag.
#[derive(Clone, Copy, Debug)]
pub struct BodyAttrs<'a> {
    /// Normal, terminate or recoverable error.
    pub kind: BodyKind,
    /// `ack` (BOSH-60, BOSH-61).
    pub ack: Option<u64>,
    /// `report` and `time` in milliseconds (BOSH-64, BOSH-65).
    pub report: Option<(u64, u64)>,
    /// Creation-only attributes.
    pub creation: Option<CreationAttrs<'a>>,
    /// Stream facts to announce on this response.
    pub stream_info: Option<StreamInfo<'a>>,
}

impl BodyAttrs<'_> {
    /// A plain body with no attributes beyond the namespace.
    pub const NORMAL: Self = Self {
        kind: BodyKind::Normal,
        ack: None,
        report: None,
        creation: None,
        stream_info: None,
    };
}

/// Writes a response body carrying `payloads`, in order.
pub fn write_body<'s>(
    attrs: &BodyAttrs<'_>,
    payloads: impl Iterator<Item = &'s Stanza> + Clone,
    ctx: &StandaloneContext<'_>,
) -> Bytes {
    let is_plain = matches!(attrs.kind, BodyKind::Normal)
        && attrs.ack.is_none()
        && attrs.report.is_none()
        && attrs.creation.is_none()
        && attrs.stream_info.is_none();
    let mut payload_len = 0;
    let mut needs_stream = false;
    let mut any = false;
    for stanza in payloads.clone() {
        any = true;
        payload_len += stanza.standalone_len_hint(ctx);
        needs_stream |= stanza.needs_stream_prefix();
    }
    if is_plain && !any {
        return Bytes::from_static(EMPTY_BODY);
    }
    let mut out = Vec::with_capacity(payload_len + 400);
    out.extend_from_slice(b"<body xmlns='http://jabber.org/protocol/httpbind'");
    match attrs.kind {
        BodyKind::Normal => {}
        BodyKind::Terminate(condition) => {
            out.extend_from_slice(b" type='terminate'");
            if let Some(condition) = condition {
                push_attr(&mut out, "condition", condition.as_str());
            }
        }
        BodyKind::RecoverableError => out.extend_from_slice(b" type='error'"),
    }
    let mut number = itoa_buffer();
    if let Some(c) = &attrs.creation {
        push_attr(&mut out, "sid", c.sid);
        push_attr(&mut out, "wait", number.format(c.wait));
        push_attr(&mut out, "hold", number.format(c.hold));
        push_attr(&mut out, "requests", number.format(c.requests));
        push_attr(&mut out, "inactivity", number.format(c.inactivity));
        push_attr(&mut out, "polling", number.format(c.polling));
        if let Some(maxpause) = c.maxpause {
            push_attr(&mut out, "maxpause", number.format(maxpause));
        }
        push_attr(&mut out, "ver", &c.ver.to_string());
    }
    if let Some(ack) = attrs.ack {
        push_attr(&mut out, "ack", number.format(ack));
    }
    if let Some((report, time)) = attrs.report {
        push_attr(&mut out, "report", number.format(report));
        push_attr(&mut out, "time", number.format(time.min(65535)));
    }
    let xmpp_ns = attrs.creation.is_some()
        || attrs
            .stream_info
            .as_ref()
            .is_some_and(|i| i.xmpp_version.is_some());
    if let Some(info) = &attrs.stream_info {
        if let Some(from) = info.from {
            push_attr(&mut out, "from", from);
        }
        if let Some(authid) = info.authid {
            push_attr(&mut out, "authid", authid);
        }
        if let Some(version) = info.xmpp_version {
            push_attr(&mut out, "xmpp:version", version);
        }
    }
    if attrs.creation.is_some() {
        out.extend_from_slice(b" xmpp:restartlogic='true'");
    }
    if xmpp_ns {
        out.extend_from_slice(b" xmlns:xmpp='urn:xmpp:xbosh'");
    }
    if needs_stream {
        out.extend_from_slice(b" xmlns:stream='http://etherx.jabber.org/streams'");
    }
    if any {
        out.push(b'>');
        for stanza in payloads {
            stanza.write_standalone(&mut out, ctx);
        }
        out.extend_from_slice(b"</body>");
    } else {
        out.extend_from_slice(b"/>");
    }
    // Responses stay in the retransmission cache: no spare capacity.
    if out.capacity() - out.len() > 128 {
        out.shrink_to_fit();
    }
    Bytes::from(out)
}

/// A terminal body for a request that has no session (unknown sid, creation refused).
pub fn terminate_without_session(condition: Condition) -> Bytes {
    let attrs = BodyAttrs {
        kind: BodyKind::Terminate(Some(condition)),
        ..BodyAttrs::NORMAL
    };
    write_body(&attrs, std::iter::empty(), &StandaloneContext::default())
}

/// Small integer formatting without allocation.
struct NumberBuffer([u8; 20]);

fn itoa_buffer() -> NumberBuffer {
    NumberBuffer([0; 20])
}

impl NumberBuffer {
    fn format(&mut self, n: impl Into<u64>) -> &str {
        let mut n: u64 = n.into();
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        std::str::from_utf8(&self.0[at..]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::{ElementKind, HeadFlags};

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    fn ctx() -> StandaloneContext<'static> {
        StandaloneContext {
            default_ns: Some("jabber:client"),
            ..Default::default()
        }
    }

    #[test]
    fn bosh_13_44_empty_body_has_the_namespace_and_nothing_else() {
        let body = write_body(&BodyAttrs::NORMAL, std::iter::empty(), &ctx());
        assert_eq!(&body[..], EMPTY_BODY);
    }

    #[test]
    fn bosh_30_31_36_creation_response() {
        let attrs = BodyAttrs {
            creation: Some(CreationAttrs {
                sid: "abc",
                wait: 50,
                hold: 1,
                requests: 2,
                inactivity: 60,
                polling: 5,
                maxpause: Some(120),
                ver: Version { major: 1, minor: 6 },
            }),
            stream_info: Some(StreamInfo {
                from: Some("localhost"),
                authid: Some("id1"),
                xmpp_version: Some("1.0"),
            }),
            ack: Some(42),
            ..BodyAttrs::NORMAL
        };
        let features = Stanza::new(
            Bytes::from_static(b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"),
            16,
            ElementKind::Features,
            HeadFlags {
                needs_stream_prefix: true,
                ..Default::default()
            },
        );
        let body = write_body(&attrs, [&features].into_iter(), &ctx());
        assert_eq!(
            text(&body),
            "<body xmlns='http://jabber.org/protocol/httpbind' sid='abc' wait='50' hold='1' \
             requests='2' inactivity='60' polling='5' maxpause='120' ver='1.6' ack='42' \
             from='localhost' authid='id1' xmpp:version='1.0' xmpp:restartlogic='true' \
             xmlns:xmpp='urn:xmpp:xbosh' xmlns:stream='http://etherx.jabber.org/streams'>\
             <stream:features xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
             </stream:features></body>"
        );
    }

    #[test]
    fn bosh_82_terminal_bodies() {
        let body = terminate_without_session(Condition::ItemNotFound);
        assert_eq!(
            text(&body),
            "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>"
        );
        let attrs = BodyAttrs {
            kind: BodyKind::Terminate(None),
            ..BodyAttrs::NORMAL
        };
        assert_eq!(
            text(&write_body(&attrs, std::iter::empty(), &ctx())),
            "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate'/>"
        );
    }

    #[test]
    fn bosh_64_65_report_time_is_clamped() {
        let attrs = BodyAttrs {
            report: Some((7, 70_000)),
            ..BodyAttrs::NORMAL
        };
        assert_eq!(
            text(&write_body(&attrs, std::iter::empty(), &ctx())),
            "<body xmlns='http://jabber.org/protocol/httpbind' report='7' time='65535'/>"
        );
    }

    #[test]
    fn bosh_55_recoverable_error_body() {
        let attrs = BodyAttrs {
            kind: BodyKind::RecoverableError,
            ..BodyAttrs::NORMAL
        };
        assert_eq!(
            text(&write_body(&attrs, std::iter::empty(), &ctx())),
            "<body xmlns='http://jabber.org/protocol/httpbind' type='error'/>"
        );
    }

    #[test]
    fn number_formatting() {
        let mut n = itoa_buffer();
        assert_eq!(n.format(0u64), "0");
        assert_eq!(n.format(9_007_199_254_740_991u64), "9007199254740991");
        assert_eq!(n.format(u64::MAX), "18446744073709551615");
    }
}
