//! `fake-upstream`: a minimal, fast XMPP c2s server for measuring xmpp-edge
//! alone (issue 8). It speaks just enough of RFC 6120 for the load
//! generator's clients and for xmpp-edge's upstream side: the stream header
//! and features, SASL PLAIN (any password) and ANONYMOUS, the stream restart,
//! resource binding, session establishment, XEP-0199 pings to the server,
//! and routing of `<message/>`, `<presence to=…/>` and `<iq/>` between its
//! sessions by JID. No rosters, no storage, no TLS.
//!
//! One task per connection; a shared map from JID to that task's queue.
//! Loopback only; it stops by itself after `--exit-after-secs`.
//!
//! The real Prosody remains the proof of correctness; this serves to find
//! the ceiling of xmpp-edge itself, with an upstream that costs little.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use clap::Parser;
use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use xmpp_edge::xml::splitter::{Item, Splitter, SplitterLimits};

/// A minimal XMPP c2s server for benchmarks (loopback only).
#[derive(Debug, Parser)]
#[command(name = "fake-upstream")]
struct Args {
    /// Where to listen (a loopback address).
    #[arg(long, default_value = "127.0.0.1:5222")]
    listen: SocketAddr,
    /// Domain announced when the client's stream header names none.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Connections served at once (stays below the open-file cap).
    #[arg(long, default_value_t = 19_000)]
    max_connections: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 3_600)]
    exit_after_secs: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!("fake-upstream: listens on loopback only");
        std::process::exit(2);
    }
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-upstream: bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let shared = Arc::new(Shared {
        domain: args.domain,
        routes: RwLock::new(Routes::default()),
        next_id: AtomicU64::new(1),
        routed: AtomicU64::new(0),
        undeliverable: AtomicU64::new(0),
    });
    let slots = Arc::new(Semaphore::new(args.max_connections.max(1)));
    let serve = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, most likely: let some close.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let _permit = permit;
                Conn::new(stream, shared).run().await;
            });
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(args.exit_after_secs), serve).await;
    println!(
        "{}",
        serde_json::json!({
            "mode": "fake-upstream",
            "routed": shared.routed.load(Ordering::Relaxed),
            "undeliverable": shared.undeliverable.load(Ordering::Relaxed),
        })
    );
}

/// What every connection shares.
struct Shared {
    domain: String,
    routes: RwLock<Routes>,
    next_id: AtomicU64,
    routed: AtomicU64,
    undeliverable: AtomicU64,
}

/// Bound sessions: full JID to the session's queue, bare JID to its newest
/// full JID.
#[derive(Default)]
struct Routes {
    full: HashMap<Box<str>, mpsc::UnboundedSender<Bytes>>,
    bare: HashMap<Box<str>, Box<str>>,
}

impl Shared {
    /// The queue of the session `to` names (full JID, else bare JID).
    fn lookup(&self, to: &str) -> Option<mpsc::UnboundedSender<Bytes>> {
        let routes = self.routes.read();
        if let Some(tx) = routes.full.get(to) {
            return Some(tx.clone());
        }
        let full = routes.bare.get(to)?;
        routes.full.get(full).cloned()
    }
}

const LIMITS: SplitterLimits = SplitterLimits {
    max_element_bytes: 1 << 20,
    max_depth: 64,
};
const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// One client connection.
struct Conn {
    stream: TcpStream,
    shared: Arc<Shared>,
    splitter: Splitter,
    buf: BytesMut,
    out: Vec<u8>,
    domain: String,
    /// The authenticated local part.
    node: Option<String>,
    /// The bound full JID and the session's queue.
    jid: Option<Box<str>>,
    rx: Option<mpsc::UnboundedReceiver<Bytes>>,
    closing: bool,
}

impl Conn {
    fn new(stream: TcpStream, shared: Arc<Shared>) -> Self {
        let _ = stream.set_nodelay(true);
        let domain = shared.domain.clone();
        Self {
            stream,
            shared,
            splitter: Splitter::new(LIMITS),
            buf: BytesMut::new(),
            out: Vec::new(),
            domain,
            node: None,
            jid: None,
            rx: None,
            closing: false,
        }
    }

    async fn run(mut self) {
        loop {
            let event = {
                let Self {
                    stream, buf, rx, ..
                } = &mut self;
                tokio::select! {
                    read = read_some(stream, buf) => Event::Read(read),
                    Some(first) = recv(rx.as_mut()) => Event::Queued(first),
                }
            };
            match event {
                Event::Read(Ok(n)) if n > 0 => {
                    if self.handle_input().is_err() {
                        self.closing = true;
                    }
                }
                Event::Read(_) => break,
                Event::Queued(first) => {
                    self.out.extend_from_slice(&first);
                    // Take what else is queued, to write it in one go.
                    if let Some(rx) = self.rx.as_mut() {
                        for _ in 0..64 {
                            match rx.try_recv() {
                                Ok(more) => self.out.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
            if !self.out.is_empty() {
                if self.stream.write_all(&self.out).await.is_err() {
                    break;
                }
                self.out.clear();
                if self.out.capacity() > 64 * 1024 {
                    self.out = Vec::new();
                }
            }
            if self.closing {
                let _ = self.stream.shutdown().await;
                break;
            }
        }
        self.unregister();
    }

    /// Handles every complete item in the buffer.
    fn handle_input(&mut self) -> Result<(), ()> {
        loop {
            match self.splitter.feed(&mut self.buf) {
                Ok(Some(Item::StreamOpen(header))) => {
                    if let Some(to) = header.to.as_deref() {
                        to.clone_into(&mut self.domain);
                    }
                    self.open_stream();
                }
                Ok(Some(Item::Element(element))) => {
                    let bytes = element.as_bytes();
                    let Ok(text) = std::str::from_utf8(bytes) else {
                        return Err(());
                    };
                    let restart = self.element(text)?;
                    if restart {
                        self.splitter.reset();
                    }
                }
                Ok(Some(Item::StreamClose)) => {
                    self.out.extend_from_slice(b"</stream:stream>");
                    return Err(());
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.out.extend_from_slice(
                        format!(
                            "<stream:error><{} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
                            e.stream_condition()
                        )
                        .as_bytes(),
                    );
                    return Err(());
                }
            }
        }
    }

    fn open_stream(&mut self) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='fu{id:x}' from='{}' version='1.0' xml:lang='en'>",
            escape(&self.domain)
        );
        self.out.extend_from_slice(header.as_bytes());
        let features = if self.node.is_none() {
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features>"
        } else {
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><ping xmlns='urn:xmpp:ping'/></stream:features>"
        };
        self.out.extend_from_slice(features.as_bytes());
    }

    /// Handles one top-level element; `Ok(true)` when the stream restarts
    /// (after SASL success).
    fn element(&mut self, text: &str) -> Result<bool, ()> {
        let head = head_of(text);
        let name = name_of(head);
        if self.node.is_none() {
            return Ok(name == "auth" && self.auth(head, text));
        }
        match name {
            "message" | "presence" | "iq" if self.jid.is_none() => {
                if name == "iq" && text.contains("urn:ietf:params:xml:ns:xmpp-bind") {
                    self.bind(head, text);
                } else if name == "iq" {
                    self.reply_error(head, "iq", "not-authorized");
                }
            }
            "message" | "presence" | "iq" => self.stanza(name, head, text),
            _ => {} // stream management and the like: not offered
        }
        Ok(false)
    }

    /// SASL: answers `<auth/>`; true on success.
    fn auth(&mut self, head: &str, text: &str) -> bool {
        let node = match attr(head, "mechanism") {
            Some("ANONYMOUS") => Some(format!(
                "anon{:x}",
                self.shared.next_id.fetch_add(1, Ordering::Relaxed)
            )),
            Some("PLAIN") => plain_user(text),
            _ => None,
        };
        match node {
            Some(node) if !node.is_empty() => {
                self.out
                    .extend_from_slice(format!("<success xmlns='{SASL}'/>").as_bytes());
                self.node = Some(node);
                true
            }
            _ => {
                self.out.extend_from_slice(
                    format!("<failure xmlns='{SASL}'><not-authorized/></failure>").as_bytes(),
                );
                false
            }
        }
    }

    fn bind(&mut self, head: &str, text: &str) {
        let Some(node) = self.node.as_deref() else {
            return;
        };
        let id = attr(head, "id").unwrap_or("");
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let resource = between(text, "<resource>", "</resource>")
            .filter(|r| !r.is_empty())
            .map_or_else(|| format!("r{n:x}"), unescape);
        let bare: Box<str> = format!("{node}@{}", self.domain).into();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut full: Box<str> = format!("{bare}/{resource}").into();
        {
            let mut routes = self.shared.routes.write();
            if routes.full.contains_key(&full) {
                full = format!("{bare}/{resource}-{n:x}").into();
            }
            routes.full.insert(full.clone(), tx);
            routes.bare.insert(bare, full.clone());
        }
        self.out.extend_from_slice(
            format!(
                "<iq type='result' id={}><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{}</jid></bind></iq>",
                quoted(id),
                escape(&full)
            )
            .as_bytes(),
        );
        self.jid = Some(full);
        self.rx = Some(rx);
    }

    fn unregister(&mut self) {
        let Some(full) = self.jid.take() else {
            return;
        };
        let mut routes = self.shared.routes.write();
        routes.full.remove(&full);
        if let Some((bare, _)) = full.split_once('/')
            && routes.bare.get(bare).is_some_and(|f| *f == full)
        {
            routes.bare.remove(bare);
        }
    }

    /// A stanza from a bound session: to the server, or routed.
    fn stanza(&mut self, name: &str, head: &str, text: &str) {
        let to = attr(head, "to");
        let for_server = match to {
            None => true,
            Some(to) => to == self.domain || self.jid.as_deref().is_some_and(|j| bare_of(j) == to),
        };
        let kind = attr(head, "type").unwrap_or("");
        if for_server {
            if name != "iq" || !matches!(kind, "get" | "set") {
                return; // presence broadcast, messages to self: nothing to do
            }
            let id = attr(head, "id").unwrap_or("");
            if text.contains("urn:xmpp:ping")
                || text.contains("urn:ietf:params:xml:ns:xmpp-session")
            {
                let from = to.unwrap_or(&self.domain);
                self.out.extend_from_slice(
                    format!(
                        "<iq type='result' id={} from={}/>",
                        quoted(id),
                        quoted(&escape(from))
                    )
                    .as_bytes(),
                );
            } else {
                self.reply_error(head, "iq", "service-unavailable");
            }
            return;
        }
        let Some(to) = to else { return };
        match self.shared.lookup(to) {
            Some(tx) => {
                let routed = with_from(text, head, self.jid.as_deref().unwrap_or(""));
                if tx.send(routed).is_ok() {
                    self.shared.routed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.undeliverable(name, head, kind);
            }
            None => self.undeliverable(name, head, kind),
        }
    }

    fn undeliverable(&mut self, name: &str, head: &str, kind: &str) {
        self.shared.undeliverable.fetch_add(1, Ordering::Relaxed);
        let answer = match name {
            "iq" => matches!(kind, "get" | "set"),
            "message" => kind != "error",
            _ => false,
        };
        if answer {
            self.reply_error(head, name, "service-unavailable");
        }
    }

    fn reply_error(&mut self, head: &str, name: &str, condition: &str) {
        let id = attr(head, "id").unwrap_or("");
        let from = attr(head, "to").map_or_else(String::new, |to| format!(" from={}", quoted(to)));
        self.out.extend_from_slice(
            format!(
                "<{name} type='error' id={}{from}><error type='cancel'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></{name}>",
                quoted(id)
            )
            .as_bytes(),
        );
    }
}

/// What woke a connection's task.
enum Event {
    Read(std::io::Result<usize>),
    Queued(Bytes),
}

async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 2048 {
        buf.reserve(8192);
    }
    stream.read_buf(buf).await
}

async fn recv(rx: Option<&mut mpsc::UnboundedReceiver<Bytes>>) -> Option<Bytes> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The first tag of an element, up to its `>` (quote-aware).
fn head_of(text: &str) -> &str {
    let mut quote = None;
    for (i, b) in text.bytes().enumerate() {
        match (quote, b) {
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return &text[..i],
            _ => {}
        }
    }
    text
}

/// The local name of the element whose head this is.
fn name_of(head: &str) -> &str {
    let name = head
        .trim_start_matches('<')
        .split(|c: char| c.is_ascii_whitespace() || c == '/')
        .next()
        .unwrap_or("");
    name.rsplit(':').next().unwrap_or(name)
}

/// The raw (still escaped) value of attribute `name` in a head.
fn attr<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    let bytes = head.as_bytes();
    let mut from = 0;
    while let Some(off) = head[from..].find(name) {
        let at = from + off;
        from = at + name.len();
        let before_ok = at > 0 && bytes[at - 1].is_ascii_whitespace();
        let rest = head[at + name.len()..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value = rest[1..].trim_start();
        let quote = value.chars().next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let end = value[1..].find(quote)?;
        return Some(&value[1..1 + end]);
    }
    None
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

fn bare_of(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

/// The user name of a SASL PLAIN message (`authzid NUL user NUL password`).
fn plain_user(text: &str) -> Option<String> {
    let payload = between(text, ">", "</")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    let mut parts = decoded.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let user = std::str::from_utf8(user).ok()?;
    // A local part may not hold these (RFC 7622); refuse rather than route oddly.
    if user.contains(['@', '/', '<', '>', '&', '\'', '"']) {
        return None;
    }
    Some(user.to_lowercase())
}

/// The element with `from` set to the sender, unless the client set one.
fn with_from(text: &str, head: &str, from: &str) -> Bytes {
    if attr(head, "from").is_some() {
        return Bytes::copy_from_slice(text.as_bytes());
    }
    let at = if head.ends_with('/') {
        head.len() - 1
    } else {
        head.len()
    };
    let mut out = Vec::with_capacity(text.len() + from.len() + 10);
    out.extend_from_slice(&text.as_bytes()[..at]);
    out.extend_from_slice(b" from=");
    out.extend_from_slice(quoted(&escape(from)).as_bytes());
    out.extend_from_slice(&text.as_bytes()[at..]);
    Bytes::from(out)
}

/// An attribute value already in escaped form, in quotes it cannot contain.
fn quoted(value: &str) -> String {
    if value.contains('\'') {
        format!("\"{value}\"")
    } else {
        format!("'{value}'")
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_names_and_attributes() {
        let text = "<message to='b@x/r' id=\"p1\" data='a>b' type='chat'><body>hi</body></message>";
        let head = head_of(text);
        assert_eq!(head, "<message to='b@x/r' id=\"p1\" data='a>b' type='chat'");
        assert_eq!(name_of(head), "message");
        assert_eq!(attr(head, "to"), Some("b@x/r"));
        assert_eq!(attr(head, "id"), Some("p1"));
        assert_eq!(attr(head, "type"), Some("chat"));
        assert_eq!(attr(head, "from"), None);
        assert_eq!(name_of("<stream:features"), "features");
        assert_eq!(attr("<iq xml:lang='en' lang='x'", "lang"), Some("x"));
    }

    #[test]
    fn from_is_stamped() {
        let text = "<message to='b@x' id='1'><body>x</body></message>";
        let out = with_from(text, head_of(text), "a@x/r");
        assert_eq!(
            &out[..],
            b"<message to='b@x' id='1' from='a@x/r'><body>x</body></message>"
        );
        let text = "<presence to='b@x'/>";
        let out = with_from(text, head_of(text), "a@x/r");
        assert_eq!(&out[..], b"<presence to='b@x' from='a@x/r'/>");
    }

    #[test]
    fn plain_credentials() {
        let payload = base64::engine::general_purpose::STANDARD.encode("\0Alice\0secret");
        let text = format!("<auth xmlns='{SASL}' mechanism='PLAIN'>{payload}</auth>");
        assert_eq!(plain_user(&text).as_deref(), Some("alice"));
        let bad = base64::engine::general_purpose::STANDARD.encode("\0a@b\0x");
        let text = format!("<auth xmlns='{SASL}' mechanism='PLAIN'>{bad}</auth>");
        assert_eq!(plain_user(&text), None);
    }
}
