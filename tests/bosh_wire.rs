//! What xmpp-edge writes on the upstream TCP leg, byte for byte, for the BOSH
//! requirements that a real server does not make visible.
// Test code may panic and read the wall clock; the product code may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::bosh::BoshClient;
use common::edge::{Edge, config};
use common::recording_upstream::{RecordingUpstream, Script};
use common::xml::attr;

async fn edge_for(upstream: &RecordingUpstream, extra: &str) -> Edge {
    Edge::start(config(&upstream.addr.to_string(), extra)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_20_bosh_101_stream_header_bytes() {
    let upstream = RecordingUpstream::start(Script::default()).await;
    let edge = edge_for(&upstream, "").await;
    let (_, r) = BoshClient::create(edge.addr, "wait='5' from='alice@localhost'").await;
    assert!(r.body.contains("<mechanism>PLAIN"), "{}", r.body);
    assert_eq!(
        upstream.received(),
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>",
        "no id, and no from before TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_92_restart_is_a_second_header_on_the_same_socket() {
    let upstream = RecordingUpstream::start(Script::default()).await;
    let edge = edge_for(&upstream, "").await;
    let (client, _) = BoshClient::create(edge.addr, "wait='5'").await;
    let r = client
        .request(
            client.first_rid + 1,
            "",
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>",
        )
        .await;
    assert!(r.body.contains("<success"), "{}", r.body);
    let r = client
        .request(
            client.first_rid + 2,
            "to='localhost' xmpp:restart='true'",
            "<presence/>",
        )
        .await;
    assert!(r.body.contains("xmpp-bind"), "{}", r.body);
    let wire = upstream.received();
    assert_eq!(
        wire.matches("<?xml version='1.0'?><stream:stream").count(),
        2,
        "{wire}"
    );
    assert!(!wire.contains("</stream:stream>"), "{wire}");
    assert!(
        !wire.contains("<presence"),
        "BOSH-93: restart payload dropped: {wire}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_104_inactivity_closes_tcp_without_a_closing_tag() {
    let upstream = RecordingUpstream::start(Script::default()).await;
    let edge = edge_for(&upstream, "[bosh]\ninactivity_secs = 2\npolling_secs = 1\n").await;
    let (_client, r) = BoshClient::create(edge.addr, "wait='1'").await;
    assert!(attr(&r.body, "sid").is_some());
    assert!(
        upstream.wait_closed(Duration::from_secs(6)).await,
        "connection not closed"
    );
    assert!(!upstream.received().contains("</stream:stream>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_75_terminate_forwards_payload_then_closing_tag() {
    let upstream = RecordingUpstream::start(Script::default()).await;
    let edge = edge_for(&upstream, "").await;
    let (client, _) = BoshClient::create(edge.addr, "wait='5'").await;
    let r = client
        .request(
            client.first_rid + 1,
            "type='terminate'",
            "<presence type='unavailable'/>",
        )
        .await;
    assert_eq!(attr(&r.body, "type").as_deref(), Some("terminate"));
    assert!(upstream.wait_closed(Duration::from_secs(6)).await);
    assert!(
        upstream
            .received()
            .ends_with("<presence type='unavailable'/></stream:stream>"),
        "{}",
        upstream.received()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_89_starttls_and_compression_never_reach_the_client() {
    let upstream = RecordingUpstream::start(Script {
        features: "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
            <compression xmlns='http://jabber.org/features/compress'><method>zlib</method></compression>\
            <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>\
            </stream:features>",
        ..Script::default()
    })
    .await;
    let edge = edge_for(&upstream, "").await;
    let (_, r) = BoshClient::create(edge.addr, "wait='5'").await;
    assert!(r.body.contains("<mechanism>PLAIN"), "{}", r.body);
    assert!(
        !r.body.contains("starttls") && !r.body.contains("compress"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_starttls_without_tls_fails_the_session_at_once() {
    let upstream = RecordingUpstream::start(Script {
        features: "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>",
        ..Script::default()
    })
    .await;
    let edge = edge_for(&upstream, "").await;
    let started = std::time::Instant::now();
    let (_, r) = BoshClient::create(edge.addr, "wait='20'").await;
    assert_eq!(
        attr(&r.body, "condition").as_deref(),
        Some("remote-connection-failed")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_14_server_whitespace_keepalives_are_not_relayed() {
    let upstream = RecordingUpstream::start(Script {
        after_features: "   \n  <message from='x@localhost' id='after'/>\n\n ",
        ..Script::default()
    })
    .await;
    let edge = edge_for(&upstream, "").await;
    let (client, r) = BoshClient::create(edge.addr, "wait='2'").await;
    let mut all = r.body.clone();
    if !all.contains("id='after'") {
        all = client.request(client.first_rid + 1, "", "").await.body;
    }
    assert!(
        all.contains("<message from='x@localhost' id='after' xmlns='jabber:client'/>"),
        "{all}"
    );
    assert!(
        !all.contains("> ") && !all.contains(">\n"),
        "text inside <body/>: {all:?}"
    );
}
