//! Criterion benches for the per-stanza hot paths (issue 8): BOSH body parse
//! and serialise, upstream stream splitting, WebSocket message translation.
//!
//! `cargo bench --bench hot_paths`; figures are per operation. Compare runs
//! side by side on one machine (`--save-baseline` / `--baseline`).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xmpp_edge::bosh::request::parse_request;
use xmpp_edge::bosh::response::{BodyAttrs, write_body};
use xmpp_edge::stanza::{StandaloneContext, Stanza};
use xmpp_edge::websocket::message::parse_message;
use xmpp_edge::xml::reserialize::ClientXmlLimits;
use xmpp_edge::xml::splitter::{Item, Splitter, SplitterLimits};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='a1b2c3' from='localhost' \
    version='1.0' xml:lang='en'>";

/// A chat message as a server relays it (about 330 bytes).
fn server_message(n: usize) -> String {
    format!(
        "<message from='alice@localhost/web' to='bob@localhost/web' type='chat' \
         id='m{n}'><body>Message number {n}: the quick brown fox jumps over the lazy \
         dog &amp; friends</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
         <request xmlns='urn:xmpp:receipts'/></message>"
    )
}

fn client_message(n: usize) -> String {
    format!(
        "<message to='bob@localhost' type='chat' id='m{n}' xmlns='jabber:client'>\
         <body>Message number {n}: the quick brown fox jumps over the lazy dog \
         &amp; friends</body><active xmlns='http://jabber.org/protocol/chatstates'/>\
         </message>"
    )
}

/// Elements as the splitter hands them to the transports.
fn split_stanzas(count: usize) -> Vec<Stanza> {
    let mut splitter = Splitter::new(SplitterLimits::default());
    let mut buf = BytesMut::from(HEADER);
    for n in 0..count {
        buf.extend_from_slice(server_message(n).as_bytes());
    }
    let mut out = Vec::new();
    while let Ok(Some(item)) = splitter.feed(&mut buf) {
        if let Item::Element(stanza) = item {
            out.push(stanza);
        }
    }
    assert_eq!(out.len(), count, "the bench input must split cleanly");
    out
}

fn bosh(c: &mut Criterion) {
    let mut group = c.benchmark_group("bosh");
    let one = format!(
        "<body rid='1234567' sid='0123456789abcdef0123456789abcdef' \
         xmlns='http://jabber.org/protocol/httpbind'>{}</body>",
        client_message(1)
    );
    group.throughput(Throughput::Bytes(one.len() as u64));
    group.bench_function("parse_request_1_stanza", |b| {
        b.iter(|| parse_request(black_box(one.as_bytes()), ClientXmlLimits::default()))
    });
    let empty = "<body rid='1234567' sid='0123456789abcdef0123456789abcdef' \
                 xmlns='http://jabber.org/protocol/httpbind'/>";
    group.bench_function("parse_request_empty_poll", |b| {
        b.iter(|| parse_request(black_box(empty.as_bytes()), ClientXmlLimits::default()))
    });
    let ctx = StandaloneContext {
        default_ns: Some("jabber:client"),
        declare_stream_prefix: true,
        lang: Some("en"),
        extra_ns: &[],
    };
    for count in [1usize, 10] {
        let stanzas = split_stanzas(count);
        group.bench_function(format!("write_body_{count}_stanzas"), |b| {
            b.iter(|| write_body(&BodyAttrs::NORMAL, black_box(stanzas.iter()), &ctx))
        });
    }
    group.finish();
}

fn splitter(c: &mut Criterion) {
    let mut group = c.benchmark_group("splitter");
    let mut stream = String::from(HEADER);
    for n in 0..100 {
        stream.push_str(&server_message(n));
    }
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for chunk in [4096usize, 256] {
        group.bench_function(format!("100_stanzas_in_{chunk}_byte_reads"), |b| {
            b.iter(|| {
                let mut splitter = Splitter::new(SplitterLimits::default());
                let mut buf = BytesMut::new();
                let mut elements = 0;
                for piece in stream.as_bytes().chunks(chunk) {
                    buf.extend_from_slice(piece);
                    while let Ok(Some(item)) = splitter.feed(&mut buf) {
                        elements += usize::from(matches!(item, Item::Element(_)));
                    }
                }
                assert_eq!(elements, 100);
                elements
            })
        });
    }
    group.finish();
}

fn websocket(c: &mut Criterion) {
    let mut group = c.benchmark_group("websocket");
    let text = client_message(1);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("client_message_to_upstream", |b| {
        b.iter(|| parse_message(black_box(&text), ClientXmlLimits::default(), false))
    });
    let stanza = split_stanzas(1).remove(0);
    let ctx = StandaloneContext {
        default_ns: Some("jabber:client"),
        declare_stream_prefix: true,
        lang: Some("en"),
        extra_ns: &[],
    };
    group.bench_function("upstream_stanza_to_client_message", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(stanza.standalone_len_hint(&ctx));
            black_box(&stanza).write_standalone(&mut out, &ctx);
            out
        })
    });
    group.finish();
}

criterion_group!(benches, bosh, splitter, websocket);
criterion_main!(benches);
