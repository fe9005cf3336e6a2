//! BOSH end to end: raw HTTP through xmpp-edge to a real Prosody.
//! Test names carry the `bosh.md` requirement IDs they cover.
// Test code may panic and read the wall clock; the product code may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::bosh::{BoshClient, HTTPBIND, login, post, raw_request};
use common::edge::{Edge, config};
use common::numbered::numbered;
use common::prosody::Prosody;
use common::xml::{assert_namespace_well_formed, attr, children, condition, root_name};

const T: Duration = Duration::from_secs(15);

async fn setup(extra: &str) -> (Prosody, Edge) {
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), extra)).await;
    (prosody, edge)
}

#[test]
fn prosody_is_installed() {
    // Starting it fails with installation instructions when it is missing.
    let prosody = Prosody::start();
    assert!(prosody.port > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_18_38_creation_returns_prosody_features() {
    let (_prosody, edge) = setup("").await;
    let (client, r) = BoshClient::create(edge.addr, "wait='10' hold='1'").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("transfer-encoding").is_none(), "BOSH-5");
    assert_eq!(
        r.header("content-length").map(str::to_owned),
        Some(r.body.len().to_string())
    );
    assert_eq!(client.sid.len(), 32);
    assert_eq!(
        root_name(&r.body),
        ("http://jabber.org/protocol/httpbind".into(), "body".into())
    );
    assert_namespace_well_formed(&r.body);
    assert_eq!(attr(&r.body, "from").as_deref(), Some("localhost"));
    assert!(attr(&r.body, "authid").is_some());
    assert_eq!(attr(&r.body, "requests").as_deref(), Some("2"));
    let features = children(&r.body);
    assert_eq!(features.len(), 1);
    assert_eq!(
        root_name(&format!(
            "<x xmlns:stream='http://etherx.jabber.org/streams'>{}</x>",
            features[0]
        ))
        .0,
        ""
    );
    assert!(features[0].contains("<mechanism>PLAIN</mechanism>"));
    assert!(!r.body.contains("starttls"), "BOSH-89");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_restart_bind_roster_presence_and_terminate() {
    let (_prosody, edge) = setup("").await;
    let mut alice = login(edge.addr, "alice", "alice-secret", "web").await;
    assert_eq!(alice.jid, "alice@localhost/web");
    alice.roster_and_presence(T).await;
    alice
        .logout(
            edge.addr,
            "<presence type='unavailable' xmlns='jabber:client'/>",
            T,
        )
        .await;
}

/// UP-60: nothing injected, dropped, duplicated or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_exchange_100_messages_each_way_once_and_in_order() {
    let (_prosody, edge) = setup("").await;
    let mut alice = login(edge.addr, "alice", "alice-secret", "a").await;
    let mut bob = login(edge.addr, "bob", "bob-secret", "b").await;
    for i in 0..100 {
        alice.send(numbered("bob@localhost/b", "a", i));
        bob.send(numbered("alice@localhost/a", "b", i));
    }
    bob.expect_numbered("a", 100, Duration::from_secs(30)).await;
    alice
        .expect_numbered("b", 100, Duration::from_secs(30))
        .await;
    // Nothing more arrives: no duplicates after the 100th.
    bob.expect_no_more_messages(Duration::from_millis(500))
        .await;
}

/// UP-62: a replayed rid never reaches the server twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_54_repeated_rid_gets_the_cached_response_from_prosody() {
    let (_prosody, edge) = setup("").await;
    let (client, _) = BoshClient::create(edge.addr, "wait='5' hold='1'").await;
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        "AGFsaWNlAGFsaWNlLXNlY3JldA=="
    );
    let rid = client.first_rid + 1;
    let first = client.request(rid, "", &auth).await;
    assert!(first.body.contains("<success"), "{}", first.body);
    let again = client.request(rid, "", &auth).await;
    assert_eq!(again.body, first.body);
    // The auth was not sent twice: the stream is still usable for a restart.
    let restart = client
        .request(rid + 1, "to='localhost' xmpp:restart='true'", "")
        .await;
    assert!(restart.body.contains("xmpp-bind"), "{}", restart.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_96_restart_before_authentication_is_bad_request() {
    let (_prosody, edge) = setup("").await;
    let (client, _) = BoshClient::create(edge.addr, "wait='5'").await;
    let r = client
        .request(
            client.first_rid + 1,
            "to='localhost' xmpp:restart='true'",
            "",
        )
        .await;
    assert_eq!(condition(&r.body).as_deref(), Some("bad-request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_82_error_conditions() {
    let (_prosody, edge) = setup("").await;
    // BOSH-86, BOSH-82f: unknown sid.
    let r = post(
        edge.addr,
        "/http-bind",
        &format!("<body rid='5' sid='{}' {HTTPBIND}/>", "0".repeat(32)),
    )
    .await;
    assert_eq!(
        (r.status, condition(&r.body).as_deref()),
        (200, Some("item-not-found"))
    );
    // BOSH-82a: not XML, wrong root, missing rid.
    for body in [
        "hello".to_owned(),
        "<foo xmlns='urn:x'/>".to_owned(),
        format!("<body to='localhost' {HTTPBIND}/>"),
    ] {
        let r = post(edge.addr, "/http-bind", &body).await;
        assert_eq!(condition(&r.body).as_deref(), Some("bad-request"), "{body}");
    }
    // BOSH-21, BOSH-82c: unknown domain; BOSH-20, BOSH-82d: no `to`.
    let r = post(
        edge.addr,
        "/http-bind",
        &format!("<body rid='1' to='nope.example' ver='1.6' {HTTPBIND}/>"),
    )
    .await;
    assert_eq!(condition(&r.body).as_deref(), Some("host-unknown"));
    let r = post(
        edge.addr,
        "/http-bind",
        &format!("<body rid='1' ver='1.6' {HTTPBIND}/>"),
    )
    .await;
    assert_eq!(condition(&r.body).as_deref(), Some("improper-addressing"));
    // BOSH-53: rid above the window.
    let (client, _) = BoshClient::create(edge.addr, "wait='5'").await;
    let r = client.request(client.first_rid + 10, "", "").await;
    assert_eq!(condition(&r.body).as_deref(), Some("item-not-found"));
    // BOSH-15: restricted XML in a payload ends the session with bad-request.
    let (client, _) = BoshClient::create(edge.addr, "wait='5'").await;
    let r = client
        .request(client.first_rid + 1, "", "<message><!-- x --></message>")
        .await;
    assert_eq!(condition(&r.body).as_deref(), Some("bad-request"));
    // BOSH-12, BOSH-82h: oversized body.
    let big = format!(
        "<body rid='1' to='localhost' {HTTPBIND}><message><body>{}</body></message></body>",
        "x".repeat(400_000)
    );
    let r = post(edge.addr, "/http-bind", &big).await;
    assert_eq!(condition(&r.body).as_deref(), Some("policy-violation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_85_legacy_client_gets_http_status() {
    let (_prosody, edge) = setup("").await;
    let body = format!("<body rid='500' to='localhost' wait='5' hold='1' {HTTPBIND}/>");
    let r = post(edge.addr, "/http-bind", &body).await;
    let client = BoshClient {
        addr: edge.addr,
        rotation: None,
        path: "/http-bind".into(),
        sid: attr(&r.body, "sid").unwrap(),
        first_rid: 500,
    };
    let r = client.request(600, "", "").await;
    assert_eq!(r.status, 404);
}

/// UP-49: a failed connect ends the session with a failure condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_38_82i_upstream_down_is_remote_connection_failed() {
    let port = common::prosody::free_port();
    let edge = Edge::start(config(&format!("127.0.0.1:{port}"), "")).await;
    let (_, r) = BoshClient::create(edge.addr, "wait='10'").await;
    assert_eq!(
        condition(&r.body).as_deref(),
        Some("remote-connection-failed")
    );
}

/// UP-49: the server vanishing mid-session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_82i_upstream_dying_mid_session_is_remote_connection_failed() {
    let (mut prosody, edge) = setup("").await;
    let mut alice = login(edge.addr, "alice", "alice-secret", "x").await;
    prosody.crash();
    let end = alice.terminated(T).await;
    assert_eq!(
        condition(&end).as_deref(),
        Some("remote-connection-failed"),
        "{end}"
    );
    // The session is gone from the table.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(edge.state.sessions.bosh_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_83_91_server_stream_error_is_relayed_as_remote_stream_error() {
    let (_prosody, edge) = setup("").await;
    let mut alice = login(edge.addr, "alice", "alice-secret", "x").await;
    // The same full JID again: Prosody replaces the old session with a conflict stream error.
    let _newer = login(edge.addr, "alice", "alice-secret", "x").await;
    let end = alice.terminated(T).await;
    // BOSH-82j: the server's stream error, whole.
    assert_eq!(
        condition(&end).as_deref(),
        Some("remote-stream-error"),
        "{end}"
    );
    assert!(end.contains("<conflict"), "{end}");
    assert_namespace_well_formed(&end);
    drop(edge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_66_inactive_session_is_removed() {
    let (_prosody, edge) = setup("[bosh]\ninactivity_secs = 2\npolling_secs = 1\n").await;
    let (client, r) = BoshClient::create(edge.addr, "wait='1'").await;
    assert!(r.body.contains("inactivity='2'"), "{}", r.body);
    assert_eq!(edge.state.sessions.bosh_count(), 1);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(edge.state.sessions.bosh_count(), 0);
    let r = client.request(client.first_rid + 1, "", "").await;
    assert_eq!(condition(&r.body).as_deref(), Some("item-not-found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_43_44_held_request_returns_empty_at_wait() {
    let (_prosody, edge) = setup("").await;
    let (client, _) = BoshClient::create(edge.addr, "wait='2' hold='1'").await;
    let started = std::time::Instant::now();
    let r = client.request(client.first_rid + 1, "", "").await;
    let elapsed = started.elapsed();
    assert_eq!(
        r.body,
        "<body xmlns='http://jabber.org/protocol/httpbind'/>"
    );
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_2_9_3_http_surface() {
    let (_prosody, edge) = setup("").await;
    // GET answers a page, not an error.
    let r = raw_request(
        edge.addr,
        b"GET /http-bind HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    // CORS preflight.
    let r = raw_request(
        edge.addr,
        b"OPTIONS /http-bind HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n\
          Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type")
    );
    // A query string (Jitsi appends ?room=...) and any Content-Type are accepted.
    let body = format!("<body rid='1' to='localhost' wait='5' ver='1.6' {HTTPBIND}/>");
    let request = format!(
        "POST /http-bind?room=lobby HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Origin: https://app.example\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw_request(edge.addr, request.as_bytes()).await;
    assert!(attr(&r.body, "sid").is_some(), "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // Other methods are refused.
    let r = raw_request(
        edge.addr,
        b"DELETE /http-bind HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_9_restricted_cors_origins() {
    let (_prosody, edge) = setup("[bosh]\ncors_origins = [\"https://chat.example\"]\n").await;
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /http-bind HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        )
    };
    let r = raw_request(edge.addr, preflight("https://chat.example").as_bytes()).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://chat.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = raw_request(edge.addr, preflight("https://evil.example").as_bytes()).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_1_http10_keepalive_and_a_fresh_socket_per_request() {
    use tokio::io::AsyncWriteExt;
    let (_prosody, edge) = setup("").await;
    let body = format!("<body rid='10' to='localhost' wait='2' hold='1' ver='1.6' {HTTPBIND}/>");
    let mut stream = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let request = format!(
        "POST /http-bind HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let r = common::bosh::read_response(&mut stream).await.unwrap();
    let sid = attr(&r.body, "sid").expect("sid");
    // The next rid over the same HTTP/1.0 keep-alive connection...
    let next = format!("<body rid='11' sid='{sid}' {HTTPBIND}><presence/></body>");
    let request = format!(
        "POST /http-bind HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{next}",
        next.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let r = common::bosh::read_response(&mut stream).await.unwrap();
    assert_eq!(r.status, 200);
    // ...and the one after over a new HTTP/1.1 socket.
    let client = BoshClient {
        addr: edge.addr,
        rotation: None,
        path: "/http-bind".into(),
        sid,
        first_rid: 10,
    };
    let r = client.request(12, "", "").await;
    assert_eq!(r.status, 200);
    assert!(condition(&r.body).is_none(), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_23_route_is_ignored_unless_allowed() {
    let (_prosody, edge) = setup("").await;
    // Without an allow-list, `route` is ignored and the configured upstream used.
    let (_, r) = BoshClient::create(edge.addr, "wait='5' route='xmpp:127.0.0.1:22'").await;
    assert!(r.body.contains("<mechanisms"), "{}", r.body);
    let (prosody, edge) = {
        let prosody = Prosody::start();
        let edge = Edge::start(config(
            &prosody.addr(),
            "[bosh]\nroute_allowlist = [\"127.0.0.1:1\"]\n",
        ))
        .await;
        (prosody, edge)
    };
    let (_, r) = BoshClient::create(
        edge.addr,
        &format!("wait='5' route='xmpp:{}'", prosody.addr()),
    )
    .await;
    assert_eq!(condition(&r.body).as_deref(), Some("host-unknown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_82l_shutdown_answers_held_requests() {
    let (_prosody, edge) = setup("").await;
    let (client, _) = BoshClient::create(edge.addr, "wait='20'").await;
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.request(client.first_rid + 1, "", "").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge.shutdown().await;
    let r = held.await.unwrap();
    assert_eq!(condition(&r.body).as_deref(), Some("system-shutdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_4_8_content_attribute_and_minimal_headers() {
    let (_prosody, edge) = setup("").await;
    let body = format!(
        "<body rid='7' to='localhost' wait='2' ver='1.6' content='text/html; charset=utf-8' {HTTPBIND}/>"
    );
    // BOSH-8: only Host and Content-Length.
    let request = format!(
        "POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = raw_request(edge.addr, request.as_bytes()).await;
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let client = BoshClient {
        addr: edge.addr,
        rotation: None,
        path: "/http-bind".into(),
        sid: attr(&r.body, "sid").unwrap(),
        first_rid: 7,
    };
    // BOSH-4: every later response of the session, errors included.
    let r = client.request(8, "", "").await;
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = client.request(20, "", "").await;
    assert_eq!(condition(&r.body).as_deref(), Some("item-not-found"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
}
