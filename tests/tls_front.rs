//! The HTTPS front end against a real Prosody: BOSH over HTTP/1.1 and
//! HTTP/2, WebSocket over HTTP/1.1 and HTTP/2 extended CONNECT (RFC 8441),
//! certificates by SNI, certificate files replaced on disk, the plain
//! listener's redirect, and the TLS handshake timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::ClientRequestBuilder;
use tokio_tungstenite::tungstenite::protocol::Role;

use common::bosh::HTTPBIND;
use common::edge::{Edge, config};
use common::https::{alpn, connect, connector, h2, post_h1, post_h2};
use common::prosody::Prosody;
use common::ws::{CLOSE, OPEN};

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "xmpp-edge-tlsfront-{name}-{}-{}",
        std::process::id(),
        common::prosody::free_port()
    ))
}

fn creation(to: &str) -> String {
    format!("<body rid='100' to='{to}' wait='5' hold='1' ver='1.6' xmpp:version='1.0' {HTTPBIND}/>")
}

struct Setup {
    _prosody: Prosody,
    edge: Edge,
    ca: std::path::PathBuf,
    certs: Vec<(std::path::PathBuf, std::path::PathBuf)>,
}

async fn setup(name: &str, extra_tls: &str) -> Setup {
    setup_with(name, "", extra_tls).await
}

async fn setup_with(name: &str, before: &str, extra_tls: &str) -> Setup {
    let d = dir(name);
    let (ca, certs) = common::tls::ca_with_certs(&d, &[&["localhost"], &["example.test"]]);
    let prosody = Prosody::start();
    let toml = format!(
        "{before}\n[tls]\nlisten = \"127.0.0.1:0\"\n{extra_tls}\n\
         [[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        certs[0].0.display(),
        certs[0].1.display(),
        certs[1].0.display(),
        certs[1].1.display(),
    );
    let edge = Edge::start(config(&prosody.addr(), &toml)).await;
    Setup {
        _prosody: prosody,
        edge,
        ca,
        certs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_11_bosh_over_https_http1_and_http2() {
    let s = setup("bosh", "").await;
    let addr = s.edge.tls_addr.unwrap();
    // HTTP/1.1 when the client offers only that.
    let c = connector(&s.ca, &[b"http/1.1"]);
    let mut tls = connect(addr, "localhost", &c).await.unwrap();
    assert_eq!(alpn(&tls).as_deref(), Some(&b"http/1.1"[..]));
    let r = post_h1(&mut tls, "localhost", "/http-bind", &creation("localhost")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<stream:features"), "{}", r.body);
    // HTTP/2 when offered.
    let c = connector(&s.ca, &[b"h2", b"http/1.1"]);
    let tls = connect(addr, "localhost", &c).await.unwrap();
    assert_eq!(alpn(&tls).as_deref(), Some(&b"h2"[..]));
    let mut send = h2(tls).await;
    let (status, body) =
        post_h2(&mut send, "localhost", "/http-bind", &creation("localhost")).await;
    assert_eq!(status, 200);
    assert!(body.contains("<stream:features"), "{body}");
    // Discovery over HTTP/2 too.
    let request = hyper::Request::builder()
        .uri("https://localhost/.well-known/host-meta.json")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_6_websocket_over_https_http1_and_http2_extended_connect() {
    let s = setup("ws", "").await;
    let addr = s.edge.tls_addr.unwrap();
    // HTTP/1.1 upgrade (wss://).
    let c = connector(&s.ca, &[b"http/1.1"]);
    let tls = connect(addr, "localhost", &c).await.unwrap();
    let uri = "wss://localhost/xmpp-websocket"
        .parse::<hyper::Uri>()
        .unwrap();
    let request = ClientRequestBuilder::new(uri)
        .with_sub_protocol("xmpp")
        .with_header("Origin", "https://localhost");
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    ws.send(Message::text(OPEN)).await.unwrap();
    let open = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(open.starts_with("<open "), "{open}");
    let features = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(features.contains("<mechanism>PLAIN"), "{features}");
    ws.send(Message::text(CLOSE)).await.unwrap();
    // HTTP/2 extended CONNECT.
    let c = connector(&s.ca, &[b"h2"]);
    let tls = connect(addr, "localhost", &c).await.unwrap();
    let mut send = h2(tls).await;
    let mut request = hyper::Request::builder()
        .method("CONNECT")
        .uri("https://localhost/xmpp-websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "xmpp")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "xmpp"
    );
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    ws.send(Message::text(OPEN)).await.unwrap();
    let open = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(open.starts_with("<open "), "{open}");
    let features = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(features.contains("<mechanism>PLAIN"), "{features}");
}

/// WS-49: one certificate per name the clients use, chosen by SNI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_chosen_by_sni() {
    let s = setup("sni", "").await;
    let addr = s.edge.tls_addr.unwrap();
    let c = connector(&s.ca, &[b"http/1.1"]);
    // Each name gets its own certificate (the client checks the name).
    connect(addr, "localhost", &c).await.unwrap();
    let mut second = connect(addr, "example.test", &c).await.unwrap();
    let r = post_h1(
        &mut second,
        "example.test",
        "/http-bind",
        &creation("localhost"),
    )
    .await;
    assert!(r.body.contains("<stream:features"), "{}", r.body);
    // A name no certificate has gets the first one, which does not match.
    assert!(connect(addr, "other.test", &c).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_picked_up_without_dropping_connections() {
    let s = setup("rotate", "reload_check_secs = 1").await;
    let addr = s.edge.tls_addr.unwrap();
    let c = connector(&s.ca, &[b"http/1.1"]);
    let mut old = connect(addr, "localhost", &c).await.unwrap();
    // The first certificate's files now hold a certificate for `renamed.test`.
    let d = dir("rotate-new");
    let (new_ca, new_certs) = common::tls::ca_with_certs(&d, &[&["renamed.test"]]);
    std::fs::copy(&new_certs[0].0, &s.certs[0].0).unwrap();
    std::fs::copy(&new_certs[0].1, &s.certs[0].1).unwrap();
    let c_new = connector(&new_ca, &[b"http/1.1"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if connect(addr, "renamed.test", &c_new).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "new certificate not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection made before still works.
    let r = post_h1(&mut old, "localhost", "/http-bind", &creation("localhost")).await;
    assert!(r.body.contains("<stream:features"), "{}", r.body);
    // A broken file is refused; the current certificates stay.
    std::fs::write(&s.certs[0].1, "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(connect(addr, "renamed.test", &c_new).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_82k_plain_http_is_redirected_to_https() {
    let s = setup("redirect", "redirect_http = true").await;
    let port = s.edge.tls_addr.unwrap().port();
    let r = common::bosh::post(s.edge.addr, "/http-bind", &creation("localhost")).await;
    assert!(r.body.contains("condition='see-other-uri'"), "{}", r.body);
    assert!(
        r.body.contains(&format!(
            "<uri>https://{}:{port}/http-bind</uri>",
            s.edge.addr.ip()
        )),
        "{}",
        r.body
    );
    let r = common::bosh::raw_request(
        s.edge.addr,
        b"GET /.well-known/host-meta?x=1 HTTP/1.1\r\nHost: chat.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://chat.example.com:{port}/.well-known/host-meta?x=1").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_cut_off_and_counted() {
    let s = setup_with("handshake", "[limits]\ntls_handshake_timeout_secs = 1", "").await;
    let edge = &s.edge;
    let mut silent = tokio::net::TcpStream::connect(edge.tls_addr.unwrap())
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        edge.state
            .metrics
            .limit_hits
            .with_label_values(&["tls_handshake_timeout"])
            .get(),
        1
    );
}
