//! Hostile input against a running xmpp-edge with the real Prosody behind
//! it. Each case names an attack and its expected clean outcome, and checks
//! that a well-behaved session from another address, open during the attack,
//! still gets answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use common::bosh::{BoshClient, HTTPBIND, post, raw_request};
use common::edge::{Edge, config};
use common::prosody::Prosody;
use common::ws::{self, Got, OPEN, WsClient};
use common::xml::attr;

const LIMITS: &str = "[limits]\nheader_read_timeout_secs = 2\nmax_sessions_per_ip = 20\n\
                      new_sessions_per_ip_per_sec = 100000\n";

/// A logged-in WebSocket session from 127.0.0.2 that must keep working.
struct Bystander {
    client: WsClient,
    pings: u32,
}

impl Bystander {
    async fn join(edge: &Edge) -> Self {
        let source: IpAddr = "127.0.0.2".parse().unwrap();
        let c = ws::connect_from(edge.addr, source).await;
        let (client, _) = ws::login_on(c, "carol", "carol-secret", "bystander").await;
        let mut me = Self { client, pings: 0 };
        me.still_served().await;
        me
    }

    /// A server ping round trip within 5 s.
    async fn still_served(&mut self) {
        self.pings += 1;
        let id = format!("ping-{}", self.pings);
        self.client
            .send(&format!(
                "<iq type='get' id='{id}' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self
                .client
                .recv(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Got::Text(t) if t.contains(&id) => return,
                Got::Text(_) => {}
                other => panic!("the bystander was affected: {other:?}"),
            }
        }
    }
}

async fn setup() -> (Prosody, Edge) {
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), LIMITS)).await;
    (prosody, edge)
}

fn limit_hits(edge: &Edge, limit: &str) -> u64 {
    edge.state
        .metrics
        .limit_hits
        .with_label_values(&[limit])
        .get()
}

/// A created (not logged-in) BOSH session.
async fn bosh_session(edge: &Edge) -> BoshClient {
    let (client, r) = BoshClient::create(edge.addr, "wait='5' hold='1'").await;
    assert!(r.body.contains("<stream:features"), "{}", r.body);
    client
}

const LAUGHS: &str = "<!DOCTYPE lolz [<!ENTITY lol 'lol'>\
    <!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\
    <!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>\
    <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>\
    <!ENTITY lol9 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>]>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billion_laughs_is_refused_without_expansion() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    // As the whole BOSH request: the DOCTYPE is refused before any expansion.
    let body = format!("{LAUGHS}<body rid='1' to='localhost' wait='5' {HTTPBIND}>&lol9;</body>");
    let started = Instant::now();
    let r = post(edge.addr, "/http-bind", &body).await;
    assert_eq!(
        attr(&r.body, "condition").as_deref(),
        Some("bad-request"),
        "{}",
        r.body
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // As an undeclared entity inside a payload of a live session.
    let client = bosh_session(&edge).await;
    let r = client
        .request(
            client.first_rid + 1,
            "",
            "<message xmlns='jabber:client'><body>&lol9;</body></message>",
        )
        .await;
    assert!(r.body.contains("type='terminate'"), "{}", r.body);
    // Over WebSocket.
    let mut c = ws::connect(edge.addr).await;
    c.send(OPEN).await;
    c.expect("features", |t| t.contains("<stream:features"))
        .await;
    c.send(&format!(
        "{LAUGHS}<message xmlns='jabber:client'>&lol9;</message>"
    ))
    .await;
    let (texts, _) = c.until_closed().await;
    assert!(
        texts
            .iter()
            .any(|t| t.contains("<restricted-xml") || t.contains("<not-well-formed")),
        "{texts:?}"
    );
    bystander.still_served().await;
}

fn nested(depth: usize) -> String {
    format!(
        "<message xmlns='jabber:client'>{}{}</message>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_a_policy_violation() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    let client = bosh_session(&edge).await;
    let r = client
        .request(client.first_rid + 1, "", &nested(30_000))
        .await;
    assert_eq!(
        attr(&r.body, "condition").as_deref(),
        Some("policy-violation"),
        "{}",
        r.body
    );
    let mut c = ws::connect(edge.addr).await;
    c.send(OPEN).await;
    c.expect("features", |t| t.contains("<stream:features"))
        .await;
    c.send(&nested(30_000)).await;
    let (texts, _) = c.until_closed().await;
    assert!(
        texts.iter().any(|t| t.contains("<policy-violation")),
        "{texts:?}"
    );
    assert!(limit_hits(&edge, "client_xml") >= 2);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_body_is_cut_off_early() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    let mut stream = TcpStream::connect(edge.addr).await.unwrap();
    let head = format!(
        "POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n<body rid='1' to='localhost' {HTTPBIND}>",
        100 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 100 << 20 {
            match tokio::time::timeout(Duration::from_secs(5), write.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
        sent
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response).to_string();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("condition='policy-violation'"),
        "{response}"
    );
    let sent = writer.await.unwrap();
    assert!(
        sent < 64 << 20,
        "the server read {} MB of an oversized body",
        sent >> 20
    );
    assert_eq!(limit_hits(&edge, "bosh_body_bytes"), 1);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(edge.addr).await.unwrap();
        s.write_all(b"POST /http-bind HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    let mut closed = 0;
    for s in &mut slow {
        // A header line trickles in, but the headers never end.
        let _ = s.write_all(b"X-Slow: 1\r\n").await;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, 200, "every slow connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(limit_hits(&edge, "header_read_timeout") >= 200);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rid_flood_ends_only_that_session() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    // Rids far outside the window: the session ends with item-not-found.
    let victim = bosh_session(&edge).await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let c = victim.clone();
        tasks.push(tokio::spawn(async move {
            c.request(c.first_rid + 1_000 + i * 7, "", "").await.body
        }));
    }
    for t in tasks {
        let body = t.await.unwrap();
        assert_eq!(
            attr(&body, "condition").as_deref(),
            Some("item-not-found"),
            "{body}"
        );
    }
    // Empty polls faster than `polling` while one is held: overactivity
    // (XEP-0124 §11), policy-violation.
    let busy = bosh_session(&edge).await;
    let held = {
        let c = busy.clone();
        tokio::spawn(async move { c.request(c.first_rid + 1, "", "").await.body })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = busy.request(busy.first_rid + 2, "", "").await.body;
    let first = held.await.unwrap();
    assert!(
        [&first, &second]
            .iter()
            .any(|b| b.contains("policy-violation")),
        "{first} / {second}"
    );
    assert!(limit_hits(&edge, "bosh_overactivity") >= 1);
    assert!(edge.state.metrics.bosh_rid_errors.get() >= 1);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sid_guessing_finds_nothing() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    let real = bosh_session(&edge).await;
    let mut tasks = Vec::new();
    for worker in 0..10u64 {
        let addr = edge.addr;
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut found = 0;
            for i in 0..1_000u64 {
                let sid = format!(
                    "{:016x}{:016x}",
                    worker.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    i
                );
                let body = format!("<body rid='{}' sid='{sid}' {HTTPBIND}/>", 100 + i);
                let request = format!(
                    "POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(request.as_bytes()).await.unwrap();
                let r = common::bosh::read_response(&mut stream).await.unwrap();
                if !r.body.contains("item-not-found") {
                    found += 1;
                }
            }
            found
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 0, "a guessed sid reached a session");
    }
    // The real session is untouched.
    let r = real.request(real.first_rid + 1, "", "").await;
    assert!(!r.body.contains("terminate"), "{}", r.body);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_and_invalid_utf8_close_the_websocket() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    let mut c = ws::connect(edge.addr).await;
    c.send(OPEN).await;
    c.expect("features", |t| t.contains("<stream:features"))
        .await;
    c.ws.send(Message::Binary(vec![0, 1, 2, 3].into()))
        .await
        .unwrap();
    let (texts, code) = c.until_closed().await;
    assert!(
        texts.iter().any(|t| t.contains("<stream:error")),
        "{texts:?}"
    );
    assert!(code.is_some(), "closed with a Close frame");
    // A text frame that is not UTF-8: close code 1007.
    let mut c = ws::connect(edge.addr).await;
    c.send(OPEN).await;
    c.expect("features", |t| t.contains("<stream:features"))
        .await;
    let frame = Frame::message(vec![b'<', 0xff, 0xfe, b'>'], OpCode::Data(Data::Text), true);
    c.ws.send(Message::Frame(frame)).await.unwrap();
    let (_, code) = c.until_closed().await;
    assert_eq!(code, Some(1007));
    // And a BOSH body that is not UTF-8: bad-request.
    let mut request = format!(
        "POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        HTTPBIND.len() + 40
    )
    .into_bytes();
    let mut body = format!("<body rid='1' to='localhost' {HTTPBIND}>").into_bytes();
    body.extend_from_slice(&[0xff; 16]);
    body.truncate(HTTPBIND.len() + 40);
    while body.len() < HTTPBIND.len() + 40 {
        body.push(b' ');
    }
    request.extend_from_slice(&body);
    let r = raw_request(edge.addr, &request).await;
    assert!(r.body.contains("bad-request"), "{}", r.body);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_connections_are_cleaned_up() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    let before = edge.state.sessions.ws_count();
    // A WebSocket whose client shuts its sending side without a Close frame.
    let c = ws::connect(edge.addr).await;
    let mut stream = c.ws.into_inner();
    stream.write_all(&[0x81, 0x80, 1, 2, 3, 4]).await.unwrap(); // an empty masked text frame
    stream.shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge.state.sessions.ws_count() > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        edge.state.sessions.ws_count(),
        before,
        "the half-closed WebSocket was freed"
    );
    // A BOSH request whose client half-closes: the session lives on for the
    // next request on a fresh connection.
    let client = bosh_session(&edge).await;
    let body = format!(
        "<body rid='{}' sid='{}' {HTTPBIND}/>",
        client.first_rid + 1,
        client.sid
    );
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    let r = client.request(client.first_rid + 1, "", "").await;
    assert!(!r.body.contains("terminate"), "{}", r.body);
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_from_one_address_are_capped() {
    let (_p, edge) = setup().await;
    let mut bystander = Bystander::join(&edge).await;
    let body = format!("<body rid='1' to='localhost' wait='5' hold='1' ver='1.6' {HTTPBIND}/>");
    let request = format!(
        "POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let addr: SocketAddr = edge.addr;
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let (mut created, mut refused) = (0, 0);
            let mut stream = TcpStream::connect(addr).await.unwrap();
            for _ in 0..200 {
                stream.write_all(request.as_bytes()).await.unwrap();
                let r = common::bosh::read_response(&mut stream).await.unwrap();
                match r.status {
                    200 if r.body.contains("sid=") => created += 1,
                    429 => refused += 1,
                    other => panic!("unexpected answer {other}: {}", r.body),
                }
            }
            (created, refused)
        }));
    }
    let (mut created, mut refused) = (0, 0);
    for t in tasks {
        let (c, r) = t.await.unwrap();
        created += c;
        refused += r;
    }
    assert_eq!(created + refused, 10_000);
    assert!(created <= 20, "{created} sessions from one address");
    assert!(limit_hits(&edge, "sessions_per_ip") >= 9_980);
    bystander.still_served().await;
}

/// `limits.max_connections` counts WebSockets for their whole life, not
/// just their HTTP handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_websockets() {
    let prosody = Prosody::start();
    let edge = Edge::start(config(
        &prosody.addr(),
        "[limits]\nmax_connections = 2\nmax_sessions_per_ip = 100\n",
    ))
    .await;
    let (first, _) = ws::login(edge.addr, "alice", "alice-secret", "one").await;
    let (_second, _) = ws::login(edge.addr, "bob", "bob-secret", "two").await;
    assert_eq!(edge.state.admission.connections(), 2);
    let third = ws::connect_with(edge.addr, "/xmpp-websocket", Some("xmpp"), None, None).await;
    assert!(third.is_err(), "a third connection was served");
    assert!(limit_hits(&edge, "connections") >= 1);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge.state.admission.connections() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_again, _) = ws::login(edge.addr, "alice", "alice-secret", "three").await;
}
