//! The client-to-server leg: one TCP XMPP c2s stream per client session.
//!
//! This module's root holds the vocabulary the protocol cores share with the
//! relay driver: [`UpstreamEvent`] in, [`UpstreamAction`] out. The cores never
//! see a socket.

use bytes::Bytes;

use crate::stanza::{Stanza, StreamHeader};
use crate::xml::splitter::SplitError;

pub mod conn;
pub mod dial;
pub mod dns;
pub mod negotiate;
pub mod pool;
pub mod proxy_protocol;
pub mod route;
pub mod tls;

/// Something that happened on the upstream stream.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// The server's stream header (initial, or after a restart).
    StreamOpened(StreamHeader),
    /// A complete top-level element; `starttls` is already gone from features.
    Element(Stanza),
    /// The server closed its stream with `</stream:stream>`.
    StreamClosed,
    /// The connection could not be made or was lost without a closing tag.
    Failed(UpstreamFailure),
}

/// Why the upstream leg failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFailure {
    /// No upstream address could be connected to in time.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The TCP connection ended or broke without `</stream:stream>`.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The server sent XML that cannot be relayed.
    #[error("bad XML from server: {0}")]
    Protocol(#[from] SplitError),
    /// Stream negotiation failed (for example the server requires STARTTLS and
    /// none is configured for it).
    #[error("negotiation failed: {0}")]
    Negotiation(&'static str),
    /// The server stopped accepting our writes.
    #[error("write stalled")]
    WriteStalled,
    /// TLS to the server failed (handshake, certificate, or a TLS error later).
    #[error("TLS: {0}")]
    Tls(String),
    /// DNS says the domain does not exist (BOSH `host-unknown`).
    #[error("the domain does not exist in DNS")]
    HostUnknown,
    /// Every upstream of the domain is marked down.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
}

/// Attributes of a stream header xmpp-edge writes upstream (BOSH-101, WS-19).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenStream {
    /// The XMPP domain.
    pub to: Box<str>,
    /// The client's JID, when it gave one (written only once TLS protects the leg).
    pub from: Option<Box<str>>,
    /// Default language of the stream.
    pub lang: Option<Box<str>>,
    /// XMPP version to announce; `1.0` when the client gave none.
    pub version: Box<str>,
    /// A restart on the same connection (after SASL) rather than the first header.
    pub restart: bool,
}

/// What a protocol core asks the relay driver to do upstream, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum UpstreamAction {
    /// Write a stream header; on a restart also expect a new server header.
    Open(OpenStream),
    /// Write already re-serialised client elements.
    Send(Bytes),
    /// Close cleanly: write `</stream:stream>`, wait briefly for the server's, close TCP.
    Close,
    /// Drop the TCP connection without a closing tag, so the server keeps an
    /// XEP-0198 session resumable (BOSH-104, WS-27, UP-51).
    Abort,
}
