//! BOSH clients for tests: raw HTTP requests, and a session engine that
//! behaves like Strophe.js (at most two requests in flight, an empty poll
//! only when nothing is in flight, responses processed in rid order).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::numbered::{assert_exactly_once_in_order, numbers};
use super::xml::{attr, children, condition};

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.x response from `stream`.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// Sends raw request bytes on a new connection and reads the response.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    tokio::time::timeout(Duration::from_secs(70), read_response(&mut stream))
        .await
        .expect("response timed out")
        .expect("response")
}

/// POSTs `body` to `path` on a new connection. Every response is checked
/// against the rules that hold for all BOSH responses.
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = raw_request(addr, request.as_bytes()).await;
    check_bosh_response(&response);
    response
}

/// Like [`post`], but a failed connection is an error, not a panic.
pub async fn try_post(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<HttpResponse> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    tokio::time::timeout(Duration::from_secs(70), read_response(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response timed out"))?
}

/// BOSH-5, BOSH-10, BOSH-13, BOSH-14, BOSH-39, BOSH-90, BOSH-102 on every response.
pub fn check_bosh_response(r: &HttpResponse) {
    let body = &r.body;
    assert_eq!(
        super::xml::root_name(body),
        (
            "http://jabber.org/protocol/httpbind".to_owned(),
            "body".to_owned()
        ),
        "BOSH-13: {body}"
    );
    super::xml::assert_namespace_well_formed(body);
    assert!(!body.contains("stream:stream"), "BOSH-90: {body}");
    assert!(!body.contains(" secure="), "BOSH-102: {body}");
    assert!(
        !body.contains("> ") && !body.contains(">\n"),
        "BOSH-14: text in body: {body}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"), "BOSH-10");
    assert!(r.header("transfer-encoding").is_none(), "BOSH-5");
    assert_eq!(
        r.header("content-length")
            .and_then(|l| l.parse::<usize>().ok()),
        Some(body.len()),
        "BOSH-5"
    );
}

/// A BOSH session at the request level: the caller picks rids.
#[derive(Clone, Debug)]
pub struct BoshClient {
    pub addr: SocketAddr,
    /// Several replicas behind no load balancer: each request goes to the
    /// next one in turn (a connection that fails goes to the next too).
    pub rotation: Option<Arc<Rotation>>,
    pub path: String,
    pub sid: String,
    pub first_rid: u64,
}

/// The replicas a rotating client sends to; a dead one can be taken out,
/// as a load balancer would.
#[derive(Debug)]
pub struct Rotation {
    addrs: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    /// Which replica each request went to, in order (for tests to check).
    pub sent_to: Mutex<Vec<SocketAddr>>,
}

impl Rotation {
    pub fn new(addrs: &[SocketAddr]) -> Arc<Self> {
        Arc::new(Self {
            addrs: Mutex::new(addrs.to_vec()),
            next: AtomicUsize::new(0),
            sent_to: Mutex::new(Vec::new()),
        })
    }

    /// Starts the rotation at `addr`'s place.
    pub fn starting_at(addrs: &[SocketAddr], addr: SocketAddr) -> Arc<Self> {
        let r = Self::new(addrs);
        let at = addrs.iter().position(|a| *a == addr).unwrap_or(0);
        r.next.store(at, Ordering::Relaxed);
        r
    }

    pub fn next(&self) -> SocketAddr {
        let addrs = self.addrs.lock();
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let addr = addrs[i % addrs.len()];
        self.sent_to.lock().push(addr);
        addr
    }

    /// Stops sending to `addr`.
    pub fn remove(&self, addr: SocketAddr) {
        self.addrs.lock().retain(|a| *a != addr);
    }
}

pub const HTTPBIND: &str =
    "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'";

impl BoshClient {
    /// Creates a session with extra creation `attrs`; returns the client and the response.
    pub async fn create(addr: SocketAddr, attrs: &str) -> (Self, HttpResponse) {
        Self::create_for(addr, "localhost", attrs).await
    }

    /// Like [`Self::create`] for the XMPP domain `domain`.
    pub async fn create_for(addr: SocketAddr, domain: &str, attrs: &str) -> (Self, HttpResponse) {
        let first_rid = 1_000_000 + u64::from(rand_u16());
        let body = format!(
            "<body rid='{first_rid}' to='{domain}' xml:lang='en' ver='1.6' xmpp:version='1.0' {attrs} {HTTPBIND}/>"
        );
        let response = post(addr, "/http-bind", &body).await;
        let sid = attr(&response.body, "sid").unwrap_or_default();
        (
            Self {
                addr,
                rotation: None,
                path: "/http-bind".to_owned(),
                sid,
                first_rid,
            },
            response,
        )
    }

    /// Sends a request with `rid`, extra `attrs` and `payload`.
    pub async fn request(&self, rid: u64, attrs: &str, payload: &str) -> HttpResponse {
        let body = format!(
            "<body rid='{rid}' sid='{}' {attrs} {HTTPBIND}>{payload}</body>",
            self.sid
        );
        let Some(rotation) = &self.rotation else {
            return post(self.addr, &self.path, &body).await;
        };
        // A replica that is gone: the same rid again at the next one, as a
        // client behind a load balancer would see it (XEP-0124 allows resending).
        for _ in 0..4 {
            if let Ok(response) = try_post(rotation.next(), &self.path, &body).await {
                check_bosh_response(&response);
                return response;
            }
        }
        panic!("no replica answered rid {rid}");
    }
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

/// A logged-in BOSH session driven like Strophe.js.
pub struct BoshStream {
    pub jid: String,
    pub sid: String,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    task: tokio::task::JoinHandle<()>,
}

enum Outgoing {
    Stanza(String),
    Terminate(String),
}

/// What the engine reports.
#[derive(Debug, Clone)]
pub enum Incoming {
    Stanza(String),
    /// The session ended; the terminal body.
    Terminated(String),
}

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Logs in with SASL PLAIN, restarts, binds `resource`; returns a running stream.
pub async fn login(addr: SocketAddr, user: &str, password: &str, resource: &str) -> BoshStream {
    try_login(addr, user, password, resource)
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e}"))
}

/// Like [`login`], returning the step that failed.
pub async fn try_login(
    addr: SocketAddr,
    user: &str,
    password: &str,
    resource: &str,
) -> Result<BoshStream, String> {
    try_login_to(addr, "localhost", user, password, resource).await
}

/// Logs in through several replicas: created at `rotation`'s first
/// address, every later request to the next one in turn.
pub async fn login_rotating(
    rotation: Arc<Rotation>,
    user: &str,
    password: &str,
    resource: &str,
) -> BoshStream {
    try_login_with(
        rotation.next(),
        Some(rotation),
        "localhost",
        user,
        password,
        resource,
    )
    .await
    .unwrap_or_else(|e| panic!("login {user}: {e}"))
}

/// Logs in to the XMPP domain `domain`.
pub async fn login_to(
    addr: SocketAddr,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> BoshStream {
    try_login_to(addr, domain, user, password, resource)
        .await
        .unwrap_or_else(|e| panic!("login {user}@{domain}: {e}"))
}

/// Like [`login_to`], returning the step that failed.
pub async fn try_login_to(
    addr: SocketAddr,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> Result<BoshStream, String> {
    try_login_with(addr, None, domain, user, password, resource).await
}

async fn try_login_with(
    addr: SocketAddr,
    rotation: Option<Arc<Rotation>>,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> Result<BoshStream, String> {
    let (mut client, created) = BoshClient::create_for(addr, domain, "wait='20' hold='1'").await;
    client.rotation = rotation;
    if !created.body.contains("<mechanism>PLAIN</mechanism>") {
        return Err(format!("no PLAIN in creation response: {}", created.body));
    }
    let (next_rid, jid) = sign_in(&client, domain, user, password, resource).await?;
    Ok(BoshStream::start(client, next_rid, jid))
}

/// SASL PLAIN, the XEP-0206 restart, bind and session on a created session,
/// request by request; returns the next rid and the bound JID.
pub async fn sign_in(
    client: &BoshClient,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> Result<(u64, String), String> {
    let mut rid = client.first_rid + 1;
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        plain(user, password)
    );
    let r = client.request(rid, "", &auth).await;
    if !r.body.contains("<success") {
        return Err(format!("auth: {}", r.body));
    }
    rid += 1;
    let r = client
        .request(
            rid,
            &format!("to='{domain}' xml:lang='en' xmpp:restart='true'"),
            "",
        )
        .await;
    if !r.body.contains("urn:ietf:params:xml:ns:xmpp-bind") {
        return Err(format!("restart: {}", r.body));
    }
    rid += 1;
    let bind = format!(
        "<iq type='set' id='bind_1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
    );
    let r = client.request(rid, "", &bind).await;
    let jid = r
        .body
        .split("<jid>")
        .nth(1)
        .and_then(|s| s.split("</jid>").next())
        .ok_or_else(|| format!("bind: {}", r.body))?
        .to_owned();
    rid += 1;
    let session = "<iq type='set' id='sess_1' xmlns='jabber:client'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>";
    let r = client.request(rid, "", session).await;
    if !r.body.contains("id='sess_1'") && !r.body.contains("id=\"sess_1\"") {
        return Err(format!("session: {}", r.body));
    }
    Ok((rid + 1, jid))
}

impl BoshStream {
    fn start(client: BoshClient, next_rid: u64, jid: String) -> Self {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let sid = client.sid.clone();
        let task = tokio::spawn(engine(client, next_rid, out_rx, in_tx));
        Self {
            jid,
            sid,
            outgoing: out_tx,
            incoming: in_rx,
            task,
        }
    }

    /// Queues a stanza for sending.
    pub fn send(&self, stanza: impl Into<String>) {
        let _ = self.outgoing.send(Outgoing::Stanza(stanza.into()));
    }

    /// Ends the session with `type='terminate'` carrying `payload`.
    pub fn terminate(&self, payload: impl Into<String>) {
        let _ = self.outgoing.send(Outgoing::Terminate(payload.into()));
    }

    /// The next event, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Incoming> {
        tokio::time::timeout(timeout, self.incoming.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for a stanza matching `pred`, skipping others; panics after `timeout`.
    pub async fn expect(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Incoming::Stanza(s)) if pred(&s) => return s,
                Some(Incoming::Stanza(_)) => {}
                Some(Incoming::Terminated(body)) => {
                    panic!("{}: session ended waiting for {what}: {body}", self.jid)
                }
                None => panic!("{}: timed out waiting for {what}", self.jid),
            }
        }
    }

    /// Fetches the roster, whose result must come in `jabber:client`
    /// (BOSH-50), then sends initial presence and waits for it to come back.
    pub async fn roster_and_presence(&mut self, timeout: Duration) {
        self.send(
            "<iq type='get' id='roster_1' xmlns='jabber:client'><query xmlns='jabber:iq:roster'/></iq>",
        );
        let roster = self
            .expect(timeout, "roster result", |s| {
                s.contains("id='roster_1'") || s.contains("id=\"roster_1\"")
            })
            .await;
        assert!(
            roster.contains("type='result'") || roster.contains("type=\"result\""),
            "{roster}"
        );
        assert!(roster.contains("jabber:iq:roster"), "{roster}");
        assert!(
            roster.contains("xmlns='jabber:client'") || roster.contains("xmlns=\"jabber:client\""),
            "BOSH-50: {roster}"
        );
        self.send("<presence xmlns='jabber:client'/>");
        let presence = self
            .expect(timeout, "own presence", |s| s.starts_with("<presence"))
            .await;
        assert!(presence.contains(&self.jid), "{presence}");
    }

    /// Waits for `n` messages numbered with `tag` (see `numbered`), allowing
    /// `stall` between two of them, and checks they came once each and in
    /// order (UP-60).
    pub async fn expect_numbered(&mut self, tag: &str, n: u64, stall: Duration) {
        let mut seen = Vec::new();
        while (seen.len() as u64) < n {
            match self.next(stall).await {
                Some(Incoming::Stanza(s)) => seen.extend(numbers(&s, tag)),
                other => panic!(
                    "{}: ended or stalled after {} messages: {other:?}",
                    self.jid,
                    seen.len()
                ),
            }
        }
        assert_exactly_once_in_order(&self.jid, &seen, n);
    }

    /// No `<message/>` arrives within `quiet`: nothing came twice.
    pub async fn expect_no_more_messages(&mut self, quiet: Duration) {
        if let Some(Incoming::Stanza(m)) = self.next(quiet).await
            && m.starts_with("<message")
        {
            panic!("{}: extra message {m}", self.jid);
        }
    }

    /// BOSH-76, BOSH-77: ends the session with `payload`; the end carries no
    /// condition, and the sid is unknown afterwards.
    pub async fn logout(&mut self, addr: SocketAddr, payload: &str, timeout: Duration) {
        self.terminate(payload);
        let end = self.terminated(timeout).await;
        assert_eq!(attr(&end, "type").as_deref(), Some("terminate"), "{end}");
        assert_eq!(condition(&end), None, "BOSH-76: {end}");
        let late = BoshClient {
            addr,
            rotation: None,
            path: "/http-bind".into(),
            sid: self.sid.clone(),
            first_rid: 1,
        }
        .request(99_999_999, "", "")
        .await;
        assert_eq!(
            condition(&late.body).as_deref(),
            Some("item-not-found"),
            "BOSH-77: {}",
            late.body
        );
    }

    /// Waits until the session reports its end; returns the terminal body.
    pub async fn terminated(&mut self, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Incoming::Terminated(body)) => return body,
                Some(Incoming::Stanza(_)) => {}
                None => panic!("{}: session did not end", self.jid),
            }
        }
    }
}

impl Drop for BoshStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn engine(
    client: BoshClient,
    mut next_rid: u64,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    incoming: mpsc::UnboundedSender<Incoming>,
) {
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut terminate: Option<String> = None;
    let mut in_flight: JoinSet<(u64, HttpResponse)> = JoinSet::new();
    let mut done: BTreeMap<u64, HttpResponse> = BTreeMap::new();
    let mut next_to_process = next_rid;
    let mut input_open = true;
    loop {
        // Strophe's rules: data goes out while fewer than two requests are in
        // flight; an empty poll only when none is.
        if in_flight.len() < 2 && (!queue.is_empty() || terminate.is_some()) {
            let payload: String = queue.drain(..).collect();
            let (attrs, payload) = match terminate.take() {
                Some(t) => ("type='terminate'", format!("{payload}{t}")),
                None => ("", payload),
            };
            let rid = next_rid;
            next_rid += 1;
            let c = client.clone();
            in_flight.spawn(async move { (rid, c.request(rid, attrs, &payload).await) });
        } else if in_flight.is_empty() {
            let rid = next_rid;
            next_rid += 1;
            let c = client.clone();
            in_flight.spawn(async move { (rid, c.request(rid, "", "").await) });
        }
        tokio::select! {
            finished = in_flight.join_next(), if !in_flight.is_empty() => {
                let Some(Ok((rid, response))) = finished else { return };
                done.insert(rid, response);
                while let Some(response) = done.remove(&next_to_process) {
                    next_to_process += 1;
                    let body = response.body;
                    for child in children(&body) {
                        let _ = incoming.send(Incoming::Stanza(child));
                    }
                    if attr(&body, "type").as_deref() == Some("terminate") || response.status != 200 {
                        let _ = incoming.send(Incoming::Terminated(body));
                        return;
                    }
                }
            }
            message = outgoing.recv(), if input_open => match message {
                Some(Outgoing::Stanza(s)) => queue.push_back(s),
                Some(Outgoing::Terminate(t)) => terminate = Some(t),
                None => input_open = false,
            },
        }
    }
}
