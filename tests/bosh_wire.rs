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

/// UP-21 (stream prefix, `jabber:client` default), UP-22 (`to` is the
/// client's domain), UP-23 (no `from` before TLS), UP-25 (`xml:lang`),
/// UP-26 (no `id`), byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_20_bosh_101_stream_header_bytes() {
    let upstream = RecordingUpstream::start(Script::default()).await;
    let edge = edge_for(&upstream, "").await;
    // UP-35: the retired `secure` attribute changes nothing (the leg's TLS
    // is configuration).
    let (_, r) =
        BoshClient::create(edge.addr, "wait='5' from='alice@localhost' secure='true'").await;
    assert!(r.body.contains("<mechanism>PLAIN"), "{}", r.body);
    assert_eq!(
        upstream.received(),
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>",
        "no id, and no from before TLS"
    );
}

/// UP-28: the restart is a new header (with its declaration) on the same
/// connection, with no closing tag before it.
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

/// UP-51: a vanished client leaves the server stream unfinished.
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

/// UP-50: the client's last payload, then our closing tag.
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

/// UP-34: STARTTLS and compression are never offered to the client.
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

/// UP-41: whitespace between the server's elements is dropped.
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

/// UP-43: a server-initiated ping reaches the client like any iq; UP-64:
/// `<enabled/>` keeps its `location`, attribute for attribute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_43_64_server_ping_and_sm_location_are_relayed_unchanged() {
    let upstream = RecordingUpstream::start(Script {
        after_features: "<iq type='get' id='ping-1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>\
            <enabled xmlns='urn:xmpp:sm:3' id='sm-7' resume='true' max='300' location='[2001:db8::5]:5222'/>",
        ..Script::default()
    })
    .await;
    let edge = edge_for(&upstream, "").await;
    let (client, r) = BoshClient::create(edge.addr, "wait='2'").await;
    let mut all = r.body.clone();
    let mut rid = client.first_rid;
    while !all.contains("sm-7") && rid < client.first_rid + 3 {
        rid += 1;
        all.push_str(&client.request(rid, "", "").await.body);
    }
    assert!(
        all.contains("<iq type='get' id='ping-1' from='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>"),
        "{all}"
    );
    assert!(
        all.contains("<enabled xmlns='urn:xmpp:sm:3' id='sm-7' resume='true' max='300' location='[2001:db8::5]:5222'/>"),
        "{all}"
    );
}
