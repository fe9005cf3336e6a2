//! XMPP over WebSocket end to end through xmpp-edge to a real Prosody, BOSH
//! and WebSocket users talking to each other, and XEP-0156 discovery.
//! Test names carry the `websocket.md` requirement IDs they cover.
// Test code may panic and read the wall clock; the product code may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use common::bosh::{Incoming, login as bosh_login, raw_request};
use common::edge::{Edge, config};
use common::prosody::{Prosody, free_port};
use common::ws::{CLOSE, Got, OPEN, connect, connect_with, login};
use common::xml::attr;

async fn setup(extra: &str) -> (Prosody, Edge) {
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), extra)).await;
    (prosody, edge)
}

fn body_number(stanza: &str, prefix: &str) -> Option<usize> {
    stanza
        .split("<body>")
        .nth(1)?
        .split("</body>")
        .next()?
        .strip_prefix(prefix)?
        .trim()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_1_3_subprotocol_is_negotiated_and_echoed() {
    let (_prosody, edge) = setup("").await;
    let c = connect_with(edge.addr, "/xmpp-websocket", Some("chat, xmpp"), None, None)
        .await
        .unwrap();
    assert_eq!(c.response.status(), 101);
    assert_eq!(
        c.response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("xmpp")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_2_handshake_without_xmpp_is_refused() {
    let (_prosody, edge) = setup("").await;
    for offered in [None, Some("chat")] {
        match connect_with(edge.addr, "/xmpp-websocket", offered, None, None).await {
            Err(WsError::Http(r)) => assert_eq!(r.status(), 400),
            Err(e) => panic!("{offered:?}: {e}"),
            Ok(_) => panic!("{offered:?}: upgraded without the xmpp subprotocol"),
        }
    }
    // The operator may accept it.
    let (_prosody, edge) = setup("[websocket]\nrequire_subprotocol = false\n").await;
    let c = connect_with(edge.addr, "/xmpp-websocket", None, None, None)
        .await
        .unwrap();
    assert!(c.response.headers().get("sec-websocket-protocol").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_4_origin_allow_list() {
    let (_prosody, edge) =
        setup("[websocket]\nallowed_origins = [\"https://chat.example\"]\n").await;
    match connect_with(
        edge.addr,
        "/xmpp-websocket",
        Some("xmpp"),
        Some("https://evil.example"),
        None,
    )
    .await
    {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("{:?}", other.map(|c| c.response.status())),
    }
    assert!(
        connect_with(
            edge.addr,
            "/xmpp-websocket",
            Some("xmpp"),
            Some("https://chat.example"),
            None
        )
        .await
        .is_ok()
    );
    // Non-browser clients send no Origin.
    assert!(
        connect_with(edge.addr, "/xmpp-websocket", Some("xmpp"), None, None)
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_5_47_plain_get_and_wrong_version_are_not_upgraded() {
    let (_prosody, edge) = setup("").await;
    let r = raw_request(
        edge.addr,
        b"GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 426);
    let r = raw_request(
        edge.addr,
        b"GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Protocol: xmpp\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
}

/// UP-48, UP-50: our closing tag goes up, Prosody's comes back, and only
/// then does the client get its `<close/>`. UP-27: the restart brings a
/// new stream id (checked by `login`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_17_to_26_login_restart_bind_roster_presence_and_close() {
    // A long close timeout: the <close/> must answer Prosody's closing tag
    // (UP-48), not our timer.
    let (_prosody, edge) = setup("[websocket]\nclose_timeout_secs = 60\n").await;
    let (mut c, jid) = login(edge.addr, "alice", "alice-secret", "ws").await;
    assert_eq!(jid, "alice@localhost/ws");
    assert_eq!(edge.state.sessions.ws_count(), 1);
    c.send("<iq type='get' id='r1' xmlns='jabber:client'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = c.expect("roster", |t| t.contains("r1")).await;
    assert!(roster.contains("jabber:iq:roster"), "{roster}");
    // WS-11: a stanza without its own xml:lang gets the stream's.
    assert!(
        roster.contains("xml:lang='en'") || roster.contains("xml:lang=\"en\""),
        "{roster}"
    );
    c.send("<presence/>").await;
    let presence = c
        .expect("own presence", |t| t.starts_with("<presence"))
        .await;
    assert!(presence.contains("alice@localhost/ws"), "{presence}");
    // WS-25: client-initiated close, answered once Prosody has closed its
    // stream (xmpp.js waits for this answer on every logout).
    let asked = std::time::Instant::now();
    c.send(CLOSE).await;
    let reply = c.text().await;
    assert_eq!(reply, CLOSE);
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "<close/> came from our close timeout, not from the server: {:?}",
        asked.elapsed()
    );
    c.ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(edge.state.sessions.ws_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_and_websocket_users_exchange_100_messages_each_way() {
    let (_prosody, edge) = setup("").await;
    let mut alice = bosh_login(edge.addr, "alice", "alice-secret", "bosh").await;
    let (mut bob, _) = login(edge.addr, "bob", "bob-secret", "ws").await;
    for i in 0..100 {
        alice.send(format!(
            "<message to='bob@localhost/ws' type='chat' xmlns='jabber:client'><body>a2b {i}</body></message>"
        ));
        bob.send(&format!(
            "<message to='alice@localhost/bosh' type='chat'><body>b2a {i}</body></message>"
        ))
        .await;
    }
    let mut got = Vec::new();
    while got.len() < 100 {
        let t = bob
            .expect("message from alice", |t| t.starts_with("<message"))
            .await;
        got.push(body_number(&t, "a2b ").unwrap_or_else(|| panic!("unexpected {t}")));
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    let mut got = Vec::new();
    while got.len() < 100 {
        match alice.next(Duration::from_secs(30)).await {
            Some(Incoming::Stanza(s)) if s.starts_with("<message") => {
                got.push(body_number(&s, "b2a ").unwrap_or_else(|| panic!("unexpected {s}")));
            }
            Some(Incoming::Stanza(_)) => {}
            other => panic!("after {} messages: {other:?}", got.len()),
        }
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    match bob.recv(Duration::from_millis(300)).await {
        Got::Text(t) if t.starts_with("<message") => panic!("duplicate {t}"),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_user_with_two_resources_on_both_transports() {
    let (_prosody, edge) = setup("").await;
    let mut on_bosh = bosh_login(edge.addr, "carol", "carol-secret", "laptop").await;
    let (mut on_ws, jid) = login(edge.addr, "carol", "carol-secret", "phone").await;
    assert_eq!(jid, "carol@localhost/phone");
    on_ws
        .send("<message to='carol@localhost/laptop' type='chat'><body>to laptop</body></message>")
        .await;
    on_bosh
        .expect(Duration::from_secs(15), "message from phone", |s| {
            s.contains("to laptop")
        })
        .await;
    on_bosh.send(
        "<message to='carol@localhost/phone' type='chat' xmlns='jabber:client'><body>to phone</body></message>",
    );
    let m = on_ws
        .expect("message from laptop", |t| t.contains("to phone"))
        .await;
    assert!(
        m.contains("from='carol@localhost/laptop'")
            || m.contains("from=\"carol@localhost/laptop\""),
        "{m}"
    );
}

/// Messages after the upgrade until the server closes: (texts, close code).
async fn error_case(
    edge: &Edge,
    first: Option<&str>,
    send: impl AsyncFnOnce(&mut common::ws::WsClient),
) -> (Vec<String>, Option<u16>) {
    let mut c = connect(edge.addr).await;
    if let Some(first) = first {
        c.send(first).await;
    }
    send(&mut c).await;
    c.until_closed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_7_10_16_29_error_cases_end_with_a_stream_error_and_a_close() {
    let (_prosody, edge) = setup("[websocket]\nmax_message_bytes = 8192\n").await;
    // WS-7: binary frame.
    let (texts, code) = error_case(&edge, Some(OPEN), async |c| {
        c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    })
    .await;
    assert!(
        texts.iter().any(|t| t.contains("<unsupported-encoding")),
        "{texts:?}"
    );
    assert_eq!(texts.last().map(String::as_str), Some(CLOSE));
    assert_eq!(code, Some(1003));
    // WS-10: two elements in one message, and broken XML.
    for bad in ["<presence/><presence/>", "<message><body>x"] {
        let (texts, code) = error_case(&edge, Some(OPEN), async |c| c.send(bad).await).await;
        assert!(
            texts.iter().any(|t| t.contains("<not-well-formed")),
            "{bad}: {texts:?}"
        );
        assert_eq!(texts.last().map(String::as_str), Some(CLOSE), "{bad}");
        assert_eq!(code, Some(1000), "{bad}");
    }
    // WS-16: oversize message.
    let big = format!("<message><body>{}</body></message>", "x".repeat(20_000));
    let (texts, code) = error_case(&edge, Some(OPEN), async |c| c.send(&big).await).await;
    assert!(
        texts.iter().any(|t| t.contains("<policy-violation")),
        "{texts:?}"
    );
    assert_eq!(code, Some(1009));
    // WS-29: unknown domain: our own <open/>, host-unknown, <close/>.
    let (texts, code) = error_case(
        &edge,
        Some("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='nope.example' version='1.0'/>"),
        async |_| {},
    )
    .await;
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        texts[0].starts_with("<open ") && attr(&texts[0], "id").is_some_and(|id| id.len() == 32)
    );
    assert!(texts[1].contains("<host-unknown"));
    assert_eq!(texts[2], CLOSE);
    assert_eq!(code, Some(1000));
    // WS-18: <open/> in the streams namespace.
    let (texts, _) = error_case(
        &edge,
        Some("<open xmlns='http://etherx.jabber.org/streams' to='localhost' version='1.0'/>"),
        async |_| {},
    )
    .await;
    assert!(
        texts.iter().any(|t| t.contains("<invalid-namespace")),
        "{texts:?}"
    );
}

/// UP-49: our own server failing is `internal-server-error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_29_upstream_down_is_internal_server_error() {
    let edge = Edge::start(config(&format!("127.0.0.1:{}", free_port()), "")).await;
    let mut c = connect(edge.addr).await;
    c.send(OPEN).await;
    let (texts, code) = c.until_closed().await;
    assert!(
        texts[0].starts_with("<open ") && texts[0].contains("from='localhost'"),
        "{texts:?}"
    );
    assert!(texts[1].contains("<internal-server-error"), "{texts:?}");
    assert_eq!(texts[2], CLOSE);
    assert_eq!(code, Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_28_upstream_stream_error_is_forwarded_then_closed() {
    let (_prosody, edge) = setup("").await;
    let (mut c, _) = login(edge.addr, "alice", "alice-secret", "x").await;
    // The same full JID again: Prosody replaces the old session with a conflict stream error.
    let (_newer, _) = login(edge.addr, "alice", "alice-secret", "x").await;
    let (texts, code) = c.until_closed().await;
    let n = texts.len();
    assert!(n >= 2, "{texts:?}");
    assert!(texts[n - 2].starts_with("<stream:error"), "{texts:?}");
    assert!(texts[n - 2].contains("<conflict"), "{texts:?}");
    assert_eq!(texts[n - 1], CLOSE);
    assert_eq!(code, Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_27_dropped_client_frees_the_session() {
    let (_prosody, edge) = setup("").await;
    let (c, _) = login(edge.addr, "alice", "alice-secret", "gone").await;
    assert_eq!(edge.state.sessions.ws_count(), 1);
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(edge.state.sessions.ws_count(), 0);
    // The account can log in again at once.
    let (_c, jid) = login(edge.addr, "alice", "alice-secret", "gone").await;
    assert_eq!(jid, "alice@localhost/gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_33_ping_is_answered() {
    let (_prosody, edge) = setup("").await;
    let mut c = connect(edge.addr).await;
    c.ws.send(Message::Ping(b"abc".to_vec().into()))
        .await
        .unwrap();
    match c.recv(Duration::from_secs(5)).await {
        Got::Other(o) => assert_eq!(o, "Pong(b\"abc\")"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_34_idle_client_is_pinged() {
    let (_prosody, edge) =
        setup("[websocket]\nping_interval_secs = 1\nidle_timeout_secs = 3\n").await;
    let (mut c, _) = login(edge.addr, "alice", "alice-secret", "idle").await;
    // tungstenite answers the Ping; the session stays up while it does.
    match c.recv(Duration::from_secs(3)).await {
        Got::Other(o) => assert!(o.contains("Ping"), "{o}"),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(edge.state.sessions.ws_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_closed_with_policy_violation_and_counted() {
    let (_prosody, edge) =
        setup("[websocket]\nmax_backlog_bytes = 65536\n[upstream]\nmax_stanza_bytes = 65536\n")
            .await;
    // Bob's socket has a tiny receive window and he never reads.
    let mut bob = common::ws::WsClient {
        ..connect_with(edge.addr, "/xmpp-websocket", Some("xmpp"), None, Some(4096))
            .await
            .unwrap()
    };
    bob.send(OPEN).await;
    let _ = bob.text().await;
    let _ = bob.text().await;
    bob.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGJvYgBib2Itc2VjcmV0</auth>").await;
    let _ = bob.text().await;
    bob.send(OPEN).await;
    let _ = bob.text().await;
    let _ = bob.text().await;
    bob.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>slow</resource></bind></iq>").await;
    let _ = bob
        .expect("bind", |t| t.contains("id='b'") || t.contains("id=\"b\""))
        .await;
    let (mut alice, _) = login(edge.addr, "alice", "alice-secret", "fast").await;
    let payload = "y".repeat(30_000);
    for i in 0..200 {
        alice
            .send(&format!(
                "<message to='bob@localhost/slow'><body>{i} {payload}</body></message>"
            ))
            .await;
        if slow_closes(&edge) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while slow_closes(&edge) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(slow_closes(&edge), 1);
    // Alice is unaffected.
    alice
        .send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.expect("ping answer", |t| t.contains("still")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_40_41_43_46_host_meta_lists_both_endpoints() {
    let prosody = Prosody::start();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[hosts.localhost]\nupstreams = [\"{a}\"]\n\
         [hosts.\"example.com\"]\nupstreams = [\"{a}\"]\npublic_base_url = \"https://chat.example.com\"\n",
        a = prosody.addr()
    );
    let edge = Edge::start(xmpp_edge::config::load_str(&text, "t").unwrap()).await;
    let get = |host: &str, path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    // A configured public base URL.
    let r = raw_request(
        edge.addr,
        get("example.com", "/.well-known/host-meta").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/xrd+xml; charset=utf-8")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.body
            .contains("<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(
            "<Link rel='urn:xmpp:alt-connections:xbosh' href='https://chat.example.com/http-bind'/>"
        ),
        "{}",
        r.body
    );
    assert!(r.body.contains("<Link rel='urn:xmpp:alt-connections:websocket' href='wss://chat.example.com/xmpp-websocket'/>"), "{}", r.body);
    let r = raw_request(
        edge.addr,
        get("example.com", "/.well-known/host-meta.json").as_bytes(),
    )
    .await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.body.trim(),
        "{\"links\":[{\"rel\":\"urn:xmpp:alt-connections:xbosh\",\"href\":\"https://chat.example.com/http-bind\"},\
         {\"rel\":\"urn:xmpp:alt-connections:websocket\",\"href\":\"wss://chat.example.com/xmpp-websocket\"}]}"
    );
    // Derived from the request when no public URL is configured.
    let host = format!("localhost:{}", edge.addr.port());
    let r = raw_request(
        edge.addr,
        get(&host, "/.well-known/host-meta.json").as_bytes(),
    )
    .await;
    assert!(
        r.body
            .contains(&format!("\"href\":\"http://{host}/http-bind\"")),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(&format!("\"href\":\"ws://{host}/xmpp-websocket\"")),
        "{}",
        r.body
    );
    // WS-46: an unknown host gets 404.
    let r = raw_request(
        edge.addr,
        get("other.example", "/.well-known/host-meta").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_23_discovered_websocket_endpoint_works() {
    // A client that only knows the domain: discovery, then login on the link.
    let (_prosody, edge) = setup("").await;
    let host = format!("localhost:{}", edge.addr.port());
    let r = raw_request(
        edge.addr,
        format!(
            "GET /.well-known/host-meta.json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    // WS-44: links are found by rel, never by position.
    let href = r
        .body
        .split("{\"rel\":")
        .find(|link| link.starts_with("\"urn:xmpp:alt-connections:websocket\""))
        .and_then(|link| link.split("\"href\":\"").nth(1))
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let path = href.strip_prefix(&format!("ws://{host}")).unwrap();
    let mut c = connect_with(edge.addr, path, Some("xmpp"), None, None)
        .await
        .unwrap();
    c.send(OPEN).await;
    assert!(c.text().await.starts_with("<open "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_30_shutdown_sends_system_shutdown_and_1001() {
    let (_prosody, edge) = setup("").await;
    let (mut c, _) = login(edge.addr, "alice", "alice-secret", "x").await;
    let stop = tokio::spawn(edge.shutdown());
    let (texts, code) = c.until_closed().await;
    stop.await.unwrap();
    assert!(
        texts.iter().any(|t| t.contains("<system-shutdown")),
        "{texts:?}"
    );
    assert_eq!(code, Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_8_fragmented_message_is_reassembled() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let (_prosody, edge) = setup("").await;
    let (mut c, _) = login(edge.addr, "alice", "alice-secret", "frag").await;
    let text = "<iq type='get' id='frag1'><query xmlns='jabber:iq:roster'/></iq>";
    let (a, rest) = text.split_at(10);
    let (b, z) = rest.split_at(20);
    c.ws.send(Message::Frame(Frame::message(
        a.as_bytes().to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    c.ws.send(Message::Frame(Frame::message(
        b.as_bytes().to_vec(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .await
    .unwrap();
    c.ws.send(Message::Frame(Frame::message(
        z.as_bytes().to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    let roster = c.expect("roster result", |t| t.contains("frag1")).await;
    assert!(roster.contains("jabber:iq:roster"), "{roster}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_8_37_unmasked_client_frame_closes_with_1002() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_prosody, edge) = setup("").await;
    let mut tcp = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    tcp.write_all(
        b"GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Protocol: xmpp\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // WS-1: the accept value of the RFC 6455 sample key.
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // An unmasked text frame: FIN + text opcode, no mask bit.
    let payload = OPEN.as_bytes();
    let mut frame = vec![0x81, payload.len() as u8];
    frame.extend_from_slice(payload);
    tcp.write_all(&frame).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "connection not closed");
    // A Close frame (opcode 8) with code 1002.
    let close = got
        .windows(4)
        .any(|w| w[0] == 0x88 && w[2] == 0x03 && w[3] == 0xea);
    assert!(close, "no close 1002 in {got:?}");
}

/// UP-51, UP-60, UP-61, UP-63: XEP-0198 through xmpp-edge. The nonzas pass
/// unchanged, the server's `h` counts exactly the client's stanzas (nothing
/// injected), a client that vanishes leaves a resumable session upstream
/// (no closing tag), and a new WebSocket resumes it and gets the unacked
/// stanzas again, once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_51_60_61_63_stream_management_survives_the_relay() {
    let (_prosody, edge) = setup("").await;
    let (mut c, jid) = login(edge.addr, "alice", "alice-secret", "sm").await;
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = c.expect("enabled", |t| t.starts_with("<enabled")).await;
    assert!(enabled.contains("urn:xmpp:sm:3"), "{enabled}");
    assert_eq!(
        attr(&enabled, "resume").as_deref(),
        Some("true"),
        "{enabled}"
    );
    let previd = attr(&enabled, "id").expect("resumption id");
    // Five stanzas to ourselves: each counts once on the way up...
    for i in 0..5 {
        c.send(&format!(
            "<message to='{jid}' type='chat' xmlns='jabber:client'><body>sm {i}</body></message>"
        ))
        .await;
    }
    c.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    // ...and comes back down (around the ack); we acknowledge none of them.
    let (mut echoed, mut ack) = (0, None);
    while echoed < 5 || ack.is_none() {
        let t = c
            .expect("echo or ack", |t| {
                t.starts_with("<message") || t.starts_with("<a ")
            })
            .await;
        if t.starts_with("<a ") {
            ack = attr(&t, "h");
        } else {
            assert!(t.contains(&format!("sm {echoed}<")), "{t}");
            echoed += 1;
        }
    }
    assert_eq!(ack.as_deref(), Some("5"));
    // The client vanishes without <close/>.
    drop(c);
    let mut c = common::ws::authenticate(edge.addr, "alice", "alice-secret").await;
    c.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
    ))
    .await;
    let resumed = c
        .expect("resumed", |t| {
            t.starts_with("<resumed") || t.starts_with("<failed")
        })
        .await;
    assert!(resumed.starts_with("<resumed"), "{resumed}");
    assert_eq!(attr(&resumed, "previd").as_deref(), Some(previd.as_str()));
    assert_eq!(attr(&resumed, "h").as_deref(), Some("5"), "{resumed}");
    for i in 0..5 {
        let t = c.expect("resent", |t| t.starts_with("<message")).await;
        assert!(t.contains(&format!("sm {i}<")), "{t}");
    }
    c.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let ack = c.expect("ack", |t| t.starts_with("<a ")).await;
    assert_eq!(attr(&ack, "h").as_deref(), Some("5"), "{ack}");
}

fn slow_closes(edge: &Edge) -> u64 {
    edge.state
        .metrics
        .slow_client_closes
        .with_label_values(&["websocket"])
        .get()
}

/// A client that sends its last stanzas and drops the connection at once
/// (a tab closed right after logout): they still reach the server, even
/// when xmpp-edge fails writing to the closed socket first (WS-27).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_27_last_stanzas_before_a_drop_are_relayed() {
    use tokio::io::AsyncWriteExt;
    let (_prosody, edge) = setup("").await;
    let (mut bob, bob_jid) = login(edge.addr, "bob", "bob-secret", "watch").await;
    for i in 0..20 {
        let (mut alice, _) = login(edge.addr, "alice", "alice-secret", &format!("gone{i}")).await;
        // Something for xmpp-edge to write back while the client is leaving.
        alice
            .send("<iq type='get' id='p' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        alice
            .send(&format!(
                "<message to='{bob_jid}' type='chat' xmlns='jabber:client'><body>last-{i}</body></message>"
            ))
            .await;
        let mut stream = alice.ws.into_inner();
        let _ = stream.shutdown().await;
        drop(stream);
        bob.expect(&format!("last-{i}"), |t| t.contains(&format!(">last-{i}<")))
            .await;
    }
}
