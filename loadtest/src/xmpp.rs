//! XMPP client sessions for the load generator, over three transports:
//! BOSH (two keep-alive HTTP/1.1 connections, `hold=1`, like Strophe.js),
//! WebSocket (RFC 7395) and direct TCP c2s (the baseline). Each logs in for
//! real (SASL PLAIN or ANONYMOUS, then resource binding) and then sends and
//! receives top-level elements.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use xmpp_edge::xml::splitter::{Item, Splitter, SplitterLimits};

/// Which front end to talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// XEP-0124/0206 at `path`.
    Bosh,
    /// RFC 7395 at `path`.
    Websocket,
    /// Plain c2s straight to the XMPP server (the baseline).
    Tcp,
}

/// Where and how to log in.
#[derive(Clone, Debug)]
pub struct Target {
    /// Transport.
    pub transport: Transport,
    /// Address of the endpoint (or of the XMPP server for `tcp`).
    pub addr: SocketAddr,
    /// HTTP path for BOSH and WebSocket.
    pub path: String,
    /// XMPP domain.
    pub domain: String,
    /// `None`: SASL ANONYMOUS; else PLAIN with (user, password).
    pub credentials: Option<(String, String)>,
    /// Legacy pre-RFC WebSocket framing (`<stream:stream>` in a message).
    pub ws_legacy: bool,
}

/// A failed step, named.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A socket operation failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The peer answered something unexpected.
    #[error("{step}: unexpected answer: {answer}")]
    Protocol {
        /// What was being done.
        step: &'static str,
        /// The start of the answer.
        answer: String,
    },
    /// No answer in time.
    #[error("{0}: timed out")]
    Timeout(&'static str),
    /// The session was ended by the server or the connection manager.
    #[error("session ended: {0}")]
    Ended(String),
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> ClientError {
    move |source| ClientError::Io { step, source }
}

fn protocol(step: &'static str, answer: &str) -> ClientError {
    ClientError::Protocol {
        step,
        answer: answer.chars().take(300).collect(),
    }
}

/// Acknowledges received data at once: servers that leave Nagle on (Prosody)
/// would otherwise wait for our delayed ACK, 40 ms a time, and the numbers
/// would measure the kernel, not the system under test.
fn ack_now(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// Reads what `stream` has into `buf` (at least `reserve` bytes of room),
/// then acknowledges it at once; the peer closing is an error.
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    reserve: usize,
    step: &'static str,
) -> Result<(), ClientError> {
    buf.reserve(reserve);
    if stream.read_buf(buf).await.map_err(io(step))? == 0 {
        return Err(ClientError::Ended(format!("{step}: connection closed")));
    }
    ack_now(stream);
    Ok(())
}

/// Connects from `source` (one of several loopback addresses, to go beyond
/// one address's ephemeral ports).
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, ClientError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io("socket"))?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(io("bind"))?;
    }
    let stream = socket.connect(addr).await.map_err(io("connect"))?;
    stream.set_nodelay(true).map_err(io("nodelay"))?;
    Ok(stream)
}

/// A logged-in session.
pub enum Session {
    /// BOSH.
    Bosh(Box<BoshSession>),
    /// WebSocket.
    Ws(Box<WsSession>),
    /// Direct c2s.
    Tcp(Box<TcpSession>),
}

/// How long one login step may take.
const STEP: Duration = Duration::from_secs(30);

impl Session {
    /// Logs in (SASL, restart, bind) over `target.transport`.
    pub async fn login(
        target: &Target,
        source: Option<IpAddr>,
    ) -> Result<(Self, String), ClientError> {
        let fut = async {
            match target.transport {
                Transport::Bosh => BoshSession::login(target, source)
                    .await
                    .map(|(s, jid)| (Self::Bosh(Box::new(s)), jid)),
                Transport::Websocket => WsSession::login(target, source)
                    .await
                    .map(|(s, jid)| (Self::Ws(Box::new(s)), jid)),
                Transport::Tcp => TcpSession::login(target, source)
                    .await
                    .map(|(s, jid)| (Self::Tcp(Box::new(s)), jid)),
            }
        };
        tokio::time::timeout(STEP * 4, fut)
            .await
            .map_err(|_| ClientError::Timeout("login"))?
    }

    /// Sends one or more top-level elements.
    pub async fn send(&mut self, xml: &str) -> Result<(), ClientError> {
        match self {
            Self::Bosh(s) => s.send(xml).await,
            Self::Ws(s) => s.send(xml).await,
            Self::Tcp(s) => s.send(xml).await,
        }
    }

    /// The next elements the server sent (at least one).
    pub async fn recv(&mut self) -> Result<Vec<Bytes>, ClientError> {
        match self {
            Self::Bosh(s) => s.recv().await,
            Self::Ws(s) => s.recv().await,
            Self::Tcp(s) => s.recv().await,
        }
    }

    /// Ends the session cleanly.
    pub async fn close(self) {
        match self {
            Self::Bosh(s) => s.close().await,
            Self::Ws(s) => s.close().await,
            Self::Tcp(s) => s.close().await,
        }
    }
}

fn auth_element(target: &Target) -> String {
    match &target.credentials {
        Some((user, password)) => format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
        ),
        None => "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>".to_owned(),
    }
}

const BIND: &str = "<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>load</resource></bind></iq>";

fn jid_of(bind_result: &str) -> Option<String> {
    let start = bind_result.find("<jid>")? + 5;
    let len = bind_result[start..].find("</jid>")?;
    Some(bind_result[start..start + len].to_owned())
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

// --- BOSH ---

const HTTPBIND: &str = "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'";

/// One keep-alive HTTP/1.1 connection.
struct HttpConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl HttpConn {
    async fn open(addr: SocketAddr, source: Option<IpAddr>) -> Result<Self, ClientError> {
        Ok(Self {
            stream: connect(addr, source).await?,
            buf: BytesMut::with_capacity(4096),
        })
    }

    async fn write_post(&mut self, host: &str, path: &str, body: &str) -> Result<(), ClientError> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .await
            .map_err(io("BOSH request"))
    }

    /// Reads one response; returns (status, body).
    async fn read_response(&mut self) -> Result<(u16, Bytes), ClientError> {
        loop {
            if let Some(end) = memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                let head = text(&self.buf[..end]);
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let length = head
                    .split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + length {
                    let _ = self.buf.split_to(end + 4);
                    let body = self.buf.split_to(length).freeze();
                    return Ok((status, body));
                }
            }
            read_more(&mut self.stream, &mut self.buf, 4096, "BOSH response").await?;
        }
    }

    async fn exchange(&mut self, host: &str, path: &str, body: &str) -> Result<Bytes, ClientError> {
        self.write_post(host, path, body).await?;
        let (status, body) = self.read_response().await?;
        if status != 200 {
            return Err(protocol("BOSH", &format!("HTTP {status}: {}", text(&body))));
        }
        Ok(body)
    }
}

/// The children of a response `<body/>`, split at top level.
fn body_children(body: &Bytes) -> Result<Vec<Bytes>, ClientError> {
    let t = text(body);
    if t.contains("type='terminate'") || t.contains("type=\"terminate\"") {
        return Err(ClientError::Ended(t.chars().take(300).collect()));
    }
    let Some(open_end) = memchr::memchr(b'>', body) else {
        return Ok(Vec::new());
    };
    if body[..open_end].ends_with(b"/") {
        return Ok(Vec::new());
    }
    let inner_end = memchr::memmem::rfind(body, b"</body>").unwrap_or(body.len());
    Ok(split_top_level(&body.slice(open_end + 1..inner_end)))
}

/// Splits well-formed sibling elements (as a server writes them).
fn split_top_level(inner: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = None;
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'<', &inner[i..]) {
        let at = i + off;
        let Some(gt) = memchr::memchr(b'>', &inner[at..]) else {
            break;
        };
        let tag = &inner[at..at + gt + 1];
        if tag.starts_with(b"</") {
            depth -= 1;
            if depth == 0
                && let Some(s) = start.take()
            {
                out.push(inner.slice(s..at + gt + 1));
            }
        } else if !tag.starts_with(b"<?") && !tag.starts_with(b"<!") {
            if depth == 0 {
                start = Some(at);
            }
            if tag.ends_with(b"/>") {
                if depth == 0
                    && let Some(s) = start.take()
                {
                    out.push(inner.slice(s..at + gt + 1));
                }
            } else {
                depth += 1;
            }
        }
        i = at + gt + 1;
    }
    out
}

/// A BOSH session: one request always parked at the connection manager
/// (`hold=1`), sends on the other connection. The second connection is
/// opened when first needed and dropped when the server closes it, as a
/// browser's idle keep-alive connection is, so an idle session holds one.
pub struct BoshSession {
    conns: [Option<HttpConn>; 2],
    addr: SocketAddr,
    source: Option<IpAddr>,
    /// Which connection holds the parked poll, if any.
    parked: Option<usize>,
    rid: u64,
    sid: String,
    host: String,
    path: String,
    ready: VecDeque<Bytes>,
}

impl BoshSession {
    async fn login(target: &Target, source: Option<IpAddr>) -> Result<(Self, String), ClientError> {
        let host = target.addr.to_string();
        let mut conns = [Some(HttpConn::open(target.addr, source).await?), None];
        let first = conns[0].as_mut().ok_or(ClientError::Timeout("connect"))?;
        let mut rid: u64 = 1_000 + u64::from(rand_u16());
        let create = format!(
            "<body rid='{rid}' to='{}' wait='60' hold='1' ver='1.6' xmpp:version='1.0' {HTTPBIND}/>",
            target.domain
        );
        let body = first.exchange(&host, &target.path, &create).await?;
        let t = text(&body).to_owned();
        let sid = attr(&t, "sid").ok_or_else(|| protocol("create", &t))?;
        let mut all = t;
        // The features may come in a later response.
        while !all.contains("<mechanism") {
            rid += 1;
            let poll = format!("<body rid='{rid}' sid='{sid}' {HTTPBIND}/>");
            all.push_str(text(&first.exchange(&host, &target.path, &poll).await?));
        }
        rid += 1;
        let auth = format!(
            "<body rid='{rid}' sid='{sid}' {HTTPBIND}>{}</body>",
            auth_element(target)
        );
        let mut answer = text(&first.exchange(&host, &target.path, &auth).await?).to_owned();
        while !answer.contains("<success") {
            if answer.contains("<failure") || answer.contains("terminate") {
                return Err(protocol("auth", &answer));
            }
            rid += 1;
            let poll = format!("<body rid='{rid}' sid='{sid}' {HTTPBIND}/>");
            answer = text(&first.exchange(&host, &target.path, &poll).await?).to_owned();
        }
        rid += 1;
        let restart = format!(
            "<body rid='{rid}' sid='{sid}' to='{}' xml:lang='en' xmpp:restart='true' {HTTPBIND}/>",
            target.domain
        );
        let mut answer = text(&first.exchange(&host, &target.path, &restart).await?).to_owned();
        while !answer.contains("xmpp-bind") {
            rid += 1;
            let poll = format!("<body rid='{rid}' sid='{sid}' {HTTPBIND}/>");
            answer = text(&first.exchange(&host, &target.path, &poll).await?).to_owned();
        }
        rid += 1;
        let bind = format!("<body rid='{rid}' sid='{sid}' {HTTPBIND}>{BIND}</body>");
        let mut answer = text(&first.exchange(&host, &target.path, &bind).await?).to_owned();
        while !answer.contains("bind1") {
            rid += 1;
            let poll = format!("<body rid='{rid}' sid='{sid}' {HTTPBIND}/>");
            answer = text(&first.exchange(&host, &target.path, &poll).await?).to_owned();
        }
        let jid = jid_of(&answer).ok_or_else(|| protocol("bind", &answer))?;
        let mut session = Self {
            conns,
            addr: target.addr,
            source,
            parked: None,
            rid,
            sid,
            host,
            path: target.path.clone(),
            ready: VecDeque::new(),
        };
        session.park(0).await?;
        Ok((session, jid))
    }

    /// Connection `i`, opened if needed.
    async fn conn(&mut self, i: usize) -> Result<&mut HttpConn, ClientError> {
        // An idle keep-alive connection the server has closed reads as EOF.
        let closed = match &self.conns[i] {
            Some(c) if self.parked != Some(i) && c.buf.is_empty() => {
                match c.stream.try_read(&mut [0u8; 1]) {
                    // EOF, or bytes nobody asked for: not reusable.
                    Ok(_) => true,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                }
            }
            _ => false,
        };
        if closed {
            self.conns[i] = None;
        }
        if self.conns[i].is_none() {
            self.conns[i] = Some(HttpConn::open(self.addr, self.source).await?);
        }
        self.conns[i]
            .as_mut()
            .ok_or(ClientError::Timeout("connect"))
    }

    /// Writes `body` on connection `i`, reopening it once if the server
    /// closed it while idle.
    async fn post_on(&mut self, i: usize, body: &str) -> Result<(), ClientError> {
        let (host, path) = (self.host.clone(), self.path.clone());
        if self
            .conn(i)
            .await?
            .write_post(&host, &path, body)
            .await
            .is_err()
        {
            self.conns[i] = None;
            self.conn(i).await?.write_post(&host, &path, body).await?;
        }
        Ok(())
    }

    /// Reads the answer on connection `i`, where a request was just written.
    async fn answer_on(&mut self, i: usize) -> Result<Bytes, ClientError> {
        // Not through `conn`: its check for a closed idle connection would
        // take an answer that has already arrived for the end of a close.
        let conn = self.conns[i]
            .as_mut()
            .ok_or(ClientError::Timeout("no connection to read an answer on"))?;
        let (_, body) = conn.read_response().await?;
        Ok(body)
    }

    /// Sends an empty poll on connection `i`, to be held.
    async fn park(&mut self, i: usize) -> Result<(), ClientError> {
        self.rid += 1;
        let poll = format!("<body rid='{}' sid='{}' {HTTPBIND}/>", self.rid, self.sid);
        self.post_on(i, &poll).await?;
        self.parked = Some(i);
        Ok(())
    }

    async fn send(&mut self, xml: &str) -> Result<(), ClientError> {
        let parked = self.parked.unwrap_or(0);
        let free = 1 - parked;
        self.rid += 1;
        let request = format!(
            "<body rid='{}' sid='{}' {HTTPBIND}>{xml}</body>",
            self.rid, self.sid
        );
        self.post_on(free, &request).await?;
        // The parked request is answered first (the new one displaces it),
        // then the new one is held in its place.
        if self.parked.is_some() {
            let body = self.answer_on(parked).await?;
            self.ready.extend(body_children(&body)?);
        }
        self.parked = Some(free);
        Ok(())
    }

    async fn recv(&mut self) -> Result<Vec<Bytes>, ClientError> {
        loop {
            if !self.ready.is_empty() {
                return Ok(self.ready.drain(..).collect());
            }
            let parked = match self.parked {
                Some(p) => p,
                None => {
                    self.park(0).await?;
                    0
                }
            };
            let body = self.answer_on(parked).await?;
            self.parked = None;
            self.ready.extend(body_children(&body)?);
            // Keep a request at the connection manager at all times.
            self.park(parked).await?;
        }
    }

    async fn close(mut self) {
        self.rid += 1;
        let end = format!(
            "<body rid='{}' sid='{}' type='terminate' {HTTPBIND}><presence type='unavailable' xmlns='jabber:client'/></body>",
            self.rid, self.sid
        );
        let free = 1 - self.parked.unwrap_or(0);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            self.post_on(free, &end).await?;
            self.answer_on(free).await
        })
        .await;
    }
}

fn attr(xml: &str, name: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(at) = xml.find(&key) {
            let rest = &xml[at + key.len()..];
            return rest.find(quote).map(|end| rest[..end].to_owned());
        }
    }
    None
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

// --- WebSocket ---

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket session.
pub struct WsSession {
    ws: Ws,
    legacy: bool,
}

impl WsSession {
    async fn login(target: &Target, source: Option<IpAddr>) -> Result<(Self, String), ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let stream = connect(target.addr, source).await?;
        let mut request = format!("ws://{}{}", target.addr, target.path)
            .into_client_request()
            .map_err(|e| protocol("WebSocket request", &e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("xmpp"),
        );
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| protocol("WebSocket handshake", &e.to_string()))?;
        let mut s = Self {
            ws,
            legacy: target.ws_legacy,
        };
        s.open(target).await?;
        s.until("features", |t| t.contains("<mechanism")).await?;
        s.send(&auth_element(target)).await?;
        let answer = s
            .until("auth", |t| {
                t.starts_with("<success") || t.starts_with("<failure")
            })
            .await?;
        if !answer.starts_with("<success") {
            return Err(protocol("auth", &answer));
        }
        s.open(target).await?;
        s.until("bind feature", |t| t.contains("xmpp-bind")).await?;
        s.send(BIND).await?;
        let bound = s.until("bind", |t| t.contains("bind1")).await?;
        let jid = jid_of(&bound).ok_or_else(|| protocol("bind", &bound))?;
        Ok((s, jid))
    }

    async fn open(&mut self, target: &Target) -> Result<(), ClientError> {
        let open = if self.legacy {
            format!(
                "<stream:stream to='{}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
                target.domain
            )
        } else {
            format!(
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{}' version='1.0'/>",
                target.domain
            )
        };
        self.send(&open).await
    }

    async fn until(
        &mut self,
        step: &'static str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, ClientError> {
        loop {
            let next = tokio::time::timeout(STEP, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout(step))?;
            match next {
                Some(Ok(Message::Text(t))) if pred(&t) => return Ok(t.to_string()),
                Some(Ok(Message::Text(t)))
                    if t.contains("<stream:error") || t.starts_with("<close") =>
                {
                    return Err(ClientError::Ended(t.to_string()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(protocol(step, &e.to_string())),
                None => return Err(ClientError::Ended("WebSocket closed".into())),
            }
        }
    }

    async fn send(&mut self, xml: &str) -> Result<(), ClientError> {
        self.ws
            .send(Message::text(xml.to_owned()))
            .await
            .map_err(|e| protocol("WebSocket send", &e.to_string()))
    }

    async fn recv(&mut self) -> Result<Vec<Bytes>, ClientError> {
        loop {
            let next = self.ws.next().await;
            ack_now(self.ws.get_ref());
            match next {
                Some(Ok(Message::Text(t))) => {
                    if t.contains("<stream:error") || t.starts_with("<close") {
                        return Err(ClientError::Ended(t.to_string()));
                    }
                    return Ok(vec![Bytes::copy_from_slice(t.as_bytes())]);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(protocol("WebSocket recv", &e.to_string())),
                None => return Err(ClientError::Ended("WebSocket closed".into())),
            }
        }
    }

    async fn close(mut self) {
        let close = if self.legacy {
            "</stream:stream>"
        } else {
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
        };
        let _ = self.send(close).await;
        // RFC 7395 §3.6: once the server's <close/> arrives, the client
        // starts the WebSocket closing handshake.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = self.ws.next().await {
                match m {
                    Message::Text(t)
                        if t.starts_with("<close") || t.starts_with("</stream:stream") =>
                    {
                        let _ = self.ws.close(None).await;
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        })
        .await;
    }
}

// --- direct TCP ---

/// A c2s session straight to the XMPP server.
pub struct TcpSession {
    stream: TcpStream,
    buf: BytesMut,
    splitter: Splitter,
}

const LIMITS: SplitterLimits = SplitterLimits {
    max_element_bytes: 1 << 20,
    max_depth: 64,
};

impl TcpSession {
    async fn login(target: &Target, source: Option<IpAddr>) -> Result<(Self, String), ClientError> {
        let stream = connect(target.addr, source).await?;
        let mut s = Self {
            stream,
            buf: BytesMut::with_capacity(8192),
            splitter: Splitter::new(LIMITS),
        };
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            target.domain
        );
        s.send(&header).await?;
        s.until("features", |t| t.contains("<mechanism")).await?;
        s.send(&auth_element(target)).await?;
        let answer = s
            .until("auth", |t| {
                t.starts_with("<success") || t.starts_with("<failure")
            })
            .await?;
        if !answer.starts_with("<success") {
            return Err(protocol("auth", &answer));
        }
        s.splitter.reset();
        s.send(&header).await?;
        s.until("bind feature", |t| t.contains("xmpp-bind")).await?;
        s.send(BIND).await?;
        let bound = s.until("bind", |t| t.contains("bind1")).await?;
        let jid = jid_of(&bound).ok_or_else(|| protocol("bind", &bound))?;
        Ok((s, jid))
    }

    async fn until(
        &mut self,
        step: &'static str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, ClientError> {
        loop {
            let batch = tokio::time::timeout(STEP, self.recv())
                .await
                .map_err(|_| ClientError::Timeout(step))??;
            for element in batch {
                let t = text(&element);
                if pred(t) {
                    return Ok(t.to_owned());
                }
            }
        }
    }

    async fn send(&mut self, xml: &str) -> Result<(), ClientError> {
        self.stream
            .write_all(xml.as_bytes())
            .await
            .map_err(io("c2s write"))
    }

    async fn recv(&mut self) -> Result<Vec<Bytes>, ClientError> {
        let mut out = Vec::new();
        loop {
            loop {
                match self.splitter.feed(&mut self.buf) {
                    Ok(Some(Item::Element(e))) => out.push(Bytes::copy_from_slice(e.as_bytes())),
                    Ok(Some(Item::StreamOpen(_))) => {}
                    Ok(Some(Item::StreamClose)) => {
                        return Err(ClientError::Ended("stream closed".into()));
                    }
                    Ok(None) => break,
                    Err(e) => return Err(protocol("c2s", &e.to_string())),
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            read_more(&mut self.stream, &mut self.buf, 8192, "c2s read").await?;
        }
    }

    async fn close(mut self) {
        let _ = self.send("</stream:stream>").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = [0u8; 1024];
            while let Ok(n) = self.stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_children_are_split_at_top_level() {
        let body = Bytes::from_static(
            b"<body xmlns='http://jabber.org/protocol/httpbind'><message id='a'><body>x<b/></body></message><presence/><iq id='c'/></body>",
        );
        let children = body_children(&body).unwrap();
        let texts: Vec<&str> = children.iter().map(|c| text(c)).collect();
        assert_eq!(
            texts,
            vec![
                "<message id='a'><body>x<b/></body></message>",
                "<presence/>",
                "<iq id='c'/>"
            ]
        );
        let empty = Bytes::from_static(b"<body xmlns='http://jabber.org/protocol/httpbind'/>");
        assert!(body_children(&empty).unwrap().is_empty());
        let end = Bytes::from_static(b"<body type='terminate' condition='x'/>");
        assert!(matches!(body_children(&end), Err(ClientError::Ended(_))));
    }

    /// The answer to a request on the second connection can be in the
    /// socket before the client turns to read it (the end of a `close`);
    /// it must be read there, not taken for a closed idle connection
    /// (which reconnected and waited for an answer that never came).
    #[tokio::test]
    async fn an_answer_already_received_is_read_on_its_connection() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    if socket.read(&mut request).await.unwrap_or(0) > 0 {
                        let body = "<body type='terminate'/>";
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    // Held open, as a keep-alive connection is.
                    let _ = socket.read(&mut request).await;
                });
            }
        });
        let mut session = BoshSession {
            conns: [None, None],
            addr,
            source: None,
            parked: Some(0),
            rid: 1,
            sid: "s".to_owned(),
            host: addr.to_string(),
            path: "/http-bind".to_owned(),
            ready: VecDeque::new(),
        };
        session
            .post_on(1, "<body type='terminate'/>")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), session.answer_on(1))
            .await
            .expect("the answer in the socket is read")
            .unwrap();
        assert_eq!(text(&answer), "<body type='terminate'/>");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn jids_and_attributes() {
        assert_eq!(
            jid_of("<iq id='bind1'><bind><jid>a@b/c</jid></bind></iq>").as_deref(),
            Some("a@b/c")
        );
        assert_eq!(
            attr("<body sid=\"s1\" rid='2'>", "sid").as_deref(),
            Some("s1")
        );
    }
}
