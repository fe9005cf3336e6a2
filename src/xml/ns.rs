//! Namespace names and the XML-level constants both transports use.

/// `jabber:client`, the content namespace of a c2s stream (RFC 6120 §4.8.3).
pub const JABBER_CLIENT: &str = "jabber:client";
/// The stream namespace (`stream:` prefix) of RFC 6120 §4.8.1.
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// Stream error conditions (RFC 6120 §4.9.3).
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// The BOSH `<body/>` wrapper (XEP-0124).
pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// XEP-0206 attributes on `<body/>` (`xmpp:version`, `xmpp:restart`, `xmpp:restartlogic`).
pub const XBOSH: &str = "urn:xmpp:xbosh";
/// RFC 7395 `<open/>` and `<close/>`.
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// STARTTLS (RFC 6120 §5): owned by the CM, never relayed.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL (RFC 6120 §6).
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// XEP-0138 stream compression feature and protocol: never relayed.
pub const COMPRESS_FEATURE: &str = "http://jabber.org/features/compress";
/// XEP-0138 compression protocol namespace.
pub const COMPRESS_PROTOCOL: &str = "http://jabber.org/protocol/compress";
/// The namespace bound to the reserved `xml` prefix.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
