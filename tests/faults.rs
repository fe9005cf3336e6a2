//! Reliability under faults (issue 9): broken client connections, upstream
//! failures, slow and vanished clients, and a drain under load, each against
//! a real Prosody. Every scenario checks that sequence-numbered messages
//! arrive exactly once and in order, or that the session ends with the
//! right condition. Test names carry the `bosh.md` / `websocket.md`
//! requirement IDs they exercise.
//!
//! The faults come from a seeded schedule (`tests/common/faults.rs`); each
//! test prints its seed, and `FAULT_SEED=<n> cargo test --test faults`
//! replays it.
// Test code may panic and read the wall clock; the product code may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::bosh::{BoshClient, Incoming};
use common::bosh_retry::{self, RetryOptions, RetryStats, RetryingBosh, collect};
use common::edge::{Edge, config};
use common::faults::{Dir, Fault, FaultProxy, Rng, seed};
use common::metrics::sum;
use common::numbered::{assert_exactly_once_in_order, numbered, numbers};
use common::process::EdgeProcess;
use common::prosody::{Prosody, ProsodyOptions, free_port};
use common::ws::{self, Got, WsClient};
use common::xml::attr;

const T: Duration = Duration::from_secs(20);

/// Metrics text of an in-process edge.
async fn scrape(addr: SocketAddr) -> String {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    common::bosh::raw_request(addr, request.as_bytes())
        .await
        .body
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    start.elapsed()
}

/// Logs in over BOSH directly and continues through `via` with `options`.
async fn bosh_user(
    edge: SocketAddr,
    via: SocketAddr,
    user: &str,
    resource: &str,
    create: &str,
    options: RetryOptions,
    rng: &mut Rng,
) -> RetryingBosh {
    let (client, next, jid) =
        bosh_retry::login(edge, user, &format!("{user}-secret"), resource, create).await;
    RetryingBosh::start(client, next, jid, via, options, rng.fork())
}

/// Sends `n` numbered messages each way (tag `a` to Bob, `b` to Alice),
/// `pace` spacing them by 0-30 ms, and checks that each side gets all of
/// them within `limit`, once each and in order.
async fn exchange_numbered(
    alice: &mut RetryingBosh,
    bob: &mut RetryingBosh,
    n: u64,
    limit: Duration,
    mut pace: Option<&mut Rng>,
) {
    for i in 0..n {
        alice.send(numbered(&bob.jid, "a", i));
        bob.send(numbered(&alice.jid, "b", i));
        if let Some(pace) = pace.as_deref_mut() {
            tokio::time::sleep(pace.millis(0, 30)).await;
        }
    }
    let (to_bob, to_alice) = tokio::join!(
        collect(bob, "a", n as usize, limit),
        collect(alice, "b", n as usize, limit),
    );
    assert_exactly_once_in_order("bob", &to_bob, n);
    assert_exactly_once_in_order("alice", &to_alice, n);
}

/// Text messages of a WebSocket until `count` numbered `tag` messages arrived.
async fn ws_collect(c: &mut WsClient, tag: &str, count: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.len() < count {
        match c.recv(T).await {
            Got::Text(t) => seen.extend(numbers(&t, tag)),
            other => panic!("WebSocket ended after {} of {count}: {other:?}", seen.len()),
        }
    }
    seen
}

/// Nothing more numbered `tag` arrives for a while: no late duplicates.
async fn bosh_quiet(stream: &mut RetryingBosh, tag: &str) {
    let until = tokio::time::Instant::now() + Duration::from_millis(400);
    while let Some(Incoming::Stanza(s)) = stream
        .next(until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert!(
            numbers(&s, tag).is_empty(),
            "extra message after the last: {s}"
        );
    }
}

fn stat(counter: &std::sync::atomic::AtomicU64) -> u64 {
    RetryStats::get(counter)
}

// --- 1. responses cut mid-body ----------------------------------------------

/// BOSH-54, BOSH-41, UP-60: 10% of HTTP exchanges have their response cut
/// (FIN or RST) at a random byte, in the headers or in the body. The client
/// sends the same rid again and gets the cached response. 10,000 messages
/// (5,000 each way, in batches) arrive once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_54_responses_cut_mid_body_10000_messages_once_in_order() {
    let seed = seed("bosh_54_responses_cut_mid_body");
    let mut rng = Rng::new(seed);
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), "")).await;
    let proxy = FaultProxy::start(
        edge.addr,
        seed,
        Box::new(|_, rng| {
            if !rng.chance(0.10) {
                return Fault::Pass;
            }
            // Headers are about 200 bytes: half the cuts fall in them,
            // half in the body.
            let bytes = if rng.chance(0.5) {
                1 + rng.below(200)
            } else {
                200 + rng.below(1500)
            } as usize;
            if rng.chance(0.5) {
                Fault::Cut {
                    dir: Dir::Down,
                    bytes,
                }
            } else {
                Fault::Reset {
                    dir: Dir::Down,
                    bytes,
                }
            }
        }),
    )
    .await;
    let options = RetryOptions {
        batch: 50,
        ..RetryOptions::default()
    };
    let create = "wait='5' hold='1'";
    let mut alice = bosh_user(
        edge.addr,
        proxy.addr,
        "alice",
        "cut",
        create,
        options.clone(),
        &mut rng,
    )
    .await;
    let mut bob = bosh_user(
        edge.addr, proxy.addr, "bob", "cut", create, options, &mut rng,
    )
    .await;
    const N: u64 = 5_000;
    let started = Instant::now();
    exchange_numbered(&mut alice, &mut bob, N, Duration::from_secs(60), None).await;
    let took = started.elapsed();
    bosh_quiet(&mut bob, "a").await;
    bosh_quiet(&mut alice, "b").await;
    let metrics = scrape(edge.metrics_addr).await;
    let retransmitted = sum(&metrics, "xmpp_edge_bosh_retransmissions_total", &[]);
    let resends = stat(&alice.stats.resends) + stat(&bob.stats.resends);
    let requests = stat(&alice.stats.requests) + stat(&bob.stats.requests);
    eprintln!(
        "seed {seed}: {} messages in {took:?}; {requests} requests, {} connections, {} cut, \
         {resends} resends, {retransmitted} cached responses sent again",
        2 * N,
        proxy.connections(),
        proxy.faults()
    );
    assert!(proxy.faults() > 0 && resends > 0, "faults were injected");
    assert!(
        retransmitted > 0.0,
        "BOSH-54: some resends were served from the cache"
    );
    assert_eq!(sum(&metrics, "xmpp_edge_bosh_rid_errors_total", &[]), 0.0);
    assert!(took < Duration::from_secs(45), "took {took:?}");
}

// --- 2. connections cut while the request is held ---------------------------

/// BOSH-54, BOSH-55, BOSH-46, BOSH-53: connections are cut (FIN or RST) at a
/// random time while xmpp-edge holds the request or is writing its answer,
/// or mid-request. The client resends the same rid with the same payload on
/// a new connection, after a random pause during which the next rid may go
/// out first. Payloads are never forwarded twice, nothing is lost, and the
/// session is never ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_55_held_requests_cut_and_resent_are_never_forwarded_twice() {
    let seed = seed("bosh_55_held_requests_cut");
    let mut rng = Rng::new(seed);
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), "")).await;
    let proxy = FaultProxy::start(
        edge.addr,
        seed,
        Box::new(|_, rng| match rng.below(100) {
            0..30 => Fault::CutAt(rng.millis(20, 1500)),
            30..35 => Fault::Cut {
                dir: Dir::Up,
                bytes: 1 + rng.below(350) as usize,
            },
            35..40 => Fault::Reset {
                dir: Dir::Down,
                bytes: rng.below(400) as usize,
            },
            _ => Fault::Pass,
        }),
    )
    .await;
    let direct = FaultProxy::transparent(edge.addr).await;
    let faulty = RetryOptions {
        resend_jitter_ms: 300,
        batch: 3,
        ..RetryOptions::default()
    };
    let create = "wait='2' hold='1'";
    // Bob's connections are cut; Alice's are not.
    let mut bob = bosh_user(
        edge.addr, proxy.addr, "bob", "held", create, faulty, &mut rng,
    )
    .await;
    let mut alice = bosh_user(
        edge.addr,
        direct.addr,
        "alice",
        "held",
        create,
        RetryOptions::default(),
        &mut rng,
    )
    .await;
    // A steady trickle, so answers are often written as connections die.
    let mut pace = rng.fork();
    exchange_numbered(
        &mut alice,
        &mut bob,
        300,
        Duration::from_secs(40),
        Some(&mut pace),
    )
    .await;
    bosh_quiet(&mut alice, "b").await;
    bosh_quiet(&mut bob, "a").await;
    let metrics = scrape(edge.metrics_addr).await;
    eprintln!(
        "seed {seed}: {} connections, {} faulty, bob resent {} times, {} recoverable errors; \
         {} cached responses sent again",
        proxy.connections(),
        proxy.faults(),
        stat(&bob.stats.resends),
        stat(&bob.stats.recoverable_errors),
        sum(&metrics, "xmpp_edge_bosh_retransmissions_total", &[]),
    );
    assert!(stat(&bob.stats.resends) > 5, "faults hit held requests");
    // The session survived: no terminal condition was sent to anyone.
    assert_eq!(
        sum(
            &metrics,
            "xmpp_edge_sessions_closed_total",
            &["transport=\"bosh\""]
        ),
        0.0,
        "{metrics}"
    );
    assert_eq!(edge.state.sessions.bosh_count(), 2);
}

// --- 3. out of order, duplicated, lagging acknowledgements --------------------

/// BOSH-40, BOSH-46, BOSH-54, BOSH-55, BOSH-62..64: every exchange is delayed
/// by a random 0-40 ms, so requests arrive out of order; 15% are sent twice
/// at once; 20% carry an `ack` one behind, and the `report` answer is
/// checked by fetching the reported rid again (same bytes). 1,000 messages
/// each way arrive once and in order. (A copy that arrives after its rid was
/// acknowledged ends the session with item-not-found, BOSH-63; the client
/// here waits for its copies before acknowledging.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_46_55_64_out_of_order_duplicates_and_lagging_acks() {
    let seed = seed("bosh_46_55_64_out_of_order");
    let mut rng = Rng::new(seed);
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), "")).await;
    let proxy = FaultProxy::start(
        edge.addr,
        seed,
        Box::new(|_, rng| Fault::Delay(rng.millis(0, 40))),
    )
    .await;
    let options = RetryOptions {
        acks: true,
        duplicate_chance: 0.15,
        lag_chance: 0.2,
        batch: 10,
        ..RetryOptions::default()
    };
    let create = "wait='3' hold='1' ack='1'";
    let mut alice = bosh_user(
        edge.addr,
        proxy.addr,
        "alice",
        "ooo",
        create,
        options.clone(),
        &mut rng,
    )
    .await;
    let mut bob = bosh_user(
        edge.addr, proxy.addr, "bob", "ooo", create, options, &mut rng,
    )
    .await;
    let started = Instant::now();
    exchange_numbered(&mut alice, &mut bob, 1_000, Duration::from_secs(40), None).await;
    let took = started.elapsed();
    bosh_quiet(&mut bob, "a").await;
    let s = |f: fn(&RetryStats) -> &std::sync::atomic::AtomicU64| {
        stat(f(&alice.stats)) + stat(f(&bob.stats))
    };
    let reports = s(|x| &x.reports);
    eprintln!(
        "seed {seed}: {} requests, {} duplicated, {} recoverable errors, {} lagging acks, \
         {reports} reports (largest time {} ms), {} re-fetched and compared byte for byte; {took:?}",
        s(|x| &x.requests),
        s(|x| &x.duplicates),
        s(|x| &x.recoverable_errors),
        s(|x| &x.lagging_acks),
        stat(&alice.stats.max_report_time).max(stat(&bob.stats.max_report_time)),
        s(|x| &x.report_checks),
    );
    assert!(s(|x| &x.duplicates) > 0);
    assert!(reports > 0, "BOSH-64: lagging acks were reported");
    assert!(
        s(|x| &x.report_checks) > 0,
        "BOSH-64: reported rids were fetched again"
    );
    assert!(
        stat(&alice.stats.max_report_time).max(stat(&bob.stats.max_report_time)) <= 65_535,
        "BOSH-65"
    );
    assert_eq!(edge.state.sessions.bosh_count(), 2, "no session ended");
    // BOSH-63: a copy of an acknowledged rid, arriving late, is item-not-found.
    let stale = format!(
        "<body rid='{}' sid='{}' {} />",
        bob.first_rid,
        bob.sid,
        common::bosh::HTTPBIND
    );
    let r = bosh_retry::try_post(edge.addr, &stale, T)
        .await
        .expect("answer");
    assert_eq!(
        attr(&r.body, "condition").as_deref(),
        Some("item-not-found"),
        "{}",
        r.body
    );
}

// --- 4. upstream restarted during traffic ------------------------------------

/// BOSH-82i, BOSH-79, WS-29, UP-49: Prosody is killed under traffic. BOSH
/// sessions end with `remote-connection-failed` (a session with no request
/// held gets it on its next request), WebSockets get an
/// `internal-server-error` stream error, `<close/>` and a Close frame; what
/// arrived before is an in-order prefix. New sessions fail fast while it is
/// down and work again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_82i_ws_29_upstream_restart_ends_sessions_then_new_ones_work() {
    let seed = seed("bosh_82i_ws_29_upstream_restart");
    let mut rng = Rng::new(seed);
    let port = free_port();
    let prosody = Prosody::start_with(ProsodyOptions {
        port: Some(port),
        ..ProsodyOptions::default()
    });
    // xmpp-edge reaches Prosody through a proxy that adds a little delay.
    let upstream = FaultProxy::start(
        prosody.addr().parse().unwrap(),
        seed,
        Box::new(|_, rng| Fault::Delay(rng.millis(0, 3))),
    )
    .await;
    let edge = Edge::start(config(
        &upstream.addr.to_string(),
        "[upstream]\nbackoff_initial_secs = 1\nbackoff_max_secs = 2\nconnect_timeout_secs = 2\n",
    ))
    .await;
    let create = "wait='5' hold='1'";
    let mut alice = bosh_user(
        edge.addr,
        edge.addr,
        "alice",
        "r",
        create,
        RetryOptions::default(),
        &mut rng,
    )
    .await;
    let (mut bob, bob_jid) = ws::login(edge.addr, "bob", "bob-secret", "r").await;
    // Carol has no request held when the server dies.
    let (carol, carol_next, _) =
        bosh_retry::login(edge.addr, "carol", "carol-secret", "idle", create).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (to_alice, to_bob) = (alice.jid.clone(), bob_jid.clone());
        let (mut sender, _) = ws::login(edge.addr, "carol", "carol-secret", "send").await;
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            for n in 0..10_000u64 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                use futures_util::SinkExt;
                use tokio_tungstenite::tungstenite::Message;
                let both = async {
                    sender
                        .ws
                        .send(Message::text(numbered(&to_alice, "a", n)))
                        .await?;
                    sender
                        .ws
                        .send(Message::text(numbered(&to_bob, "b", n)))
                        .await
                };
                let sent = tokio::time::timeout(Duration::from_secs(2), both).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    tokio::time::sleep(rng.millis(300, 900)).await;
    let crashed = Instant::now();
    drop(prosody); // SIGKILL: connections reset, no closing tag.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    // BOSH: an in-order prefix, then remote-connection-failed.
    let mut got = Vec::new();
    let end = loop {
        match alice.next(T).await {
            Some(Incoming::Stanza(s)) => got.extend(numbers(&s, "a")),
            Some(Incoming::Terminated(body)) => break body,
            None => panic!("BOSH session did not end"),
        }
    };
    let bosh_end = crashed.elapsed();
    assert_eq!(
        attr(&end, "condition").as_deref(),
        Some("remote-connection-failed"),
        "{end}"
    );
    assert!(!got.is_empty(), "traffic flowed before the crash");
    assert_exactly_once_in_order("alice (prefix)", &got, got.len() as u64);
    // WebSocket: an in-order prefix, then the stream error, <close/> and Close.
    let mut got = Vec::new();
    let error = loop {
        match bob.recv(T).await {
            Got::Text(t) if t.contains("<stream:error") || t.contains(":error ") => break t,
            Got::Text(t) => got.extend(numbers(&t, "b")),
            other => panic!("WebSocket ended without a stream error: {other:?}"),
        }
    };
    let ws_end = crashed.elapsed();
    assert!(error.contains("internal-server-error"), "WS-29: {error}");
    assert_exactly_once_in_order("bob (prefix)", &got, got.len() as u64);
    let (rest, code) = bob.until_closed().await;
    assert!(rest.iter().any(|t| t.starts_with("<close")), "{rest:?}");
    assert_eq!(code, Some(1000));
    // Carol, with nothing held, learns it on her next request (BOSH-79).
    let r = carol.request(carol_next, "", "").await;
    assert_eq!(
        attr(&r.body, "condition").as_deref(),
        Some("remote-connection-failed"),
        "{}",
        r.body
    );
    let _ = sender.await;

    // While it is down, a new session fails at once instead of hanging.
    let t0 = Instant::now();
    let (_, refused) = BoshClient::create(edge.addr, "wait='5' hold='1'").await;
    assert_eq!(
        attr(&refused.body, "condition").as_deref(),
        Some("remote-connection-failed")
    );
    let refused_in = t0.elapsed();
    assert!(refused_in < Duration::from_secs(5), "{refused_in:?}");

    // Back on the same port: new sessions work within the backoff.
    let _prosody = Prosody::start_with(ProsodyOptions {
        port: Some(port),
        ..ProsodyOptions::default()
    });
    let back = Instant::now();
    let alice2 = loop {
        match bosh_retry_login(edge.addr, "alice", "again").await {
            Some(s) => break s,
            None if back.elapsed() < Duration::from_secs(15) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => panic!("no new session within 15 s of the restart"),
        }
    };
    let recovered = back.elapsed();
    let alice2 = RetryingBosh::start(
        alice2.0,
        alice2.1,
        alice2.2,
        edge.addr,
        RetryOptions::default(),
        rng.fork(),
    );
    let (mut bob2, bob2_jid) = ws::login(edge.addr, "bob", "bob-secret", "again").await;
    for n in 0..100 {
        alice2.send(numbered(&bob2_jid, "c", n));
    }
    let seen = ws_collect(&mut bob2, "c", 100).await;
    assert_exactly_once_in_order("bob after the restart", &seen, 100);
    eprintln!(
        "seed {seed}: BOSH ended {bosh_end:?} and WebSocket {ws_end:?} after the crash; \
         new session refused in {refused_in:?}; sessions again {recovered:?} after the restart"
    );
    assert!(bosh_end < Duration::from_secs(5) && ws_end < Duration::from_secs(5));
}

/// A login that reports failure instead of panicking (the server may still be down).
async fn bosh_retry_login(
    addr: SocketAddr,
    user: &str,
    resource: &str,
) -> Option<(BoshClient, u64, String)> {
    let (_, probe) = BoshClient::create(addr, "wait='5' hold='1'").await;
    if !probe.body.contains("<mechanism>") {
        return None;
    }
    Some(
        bosh_retry::login(
            addr,
            user,
            &format!("{user}-secret"),
            resource,
            "wait='5' hold='1'",
        )
        .await,
    )
}

// --- 5. a WebSocket client that stops reading --------------------------------

/// WS-30 (policy-violation), README limits table: Bob's path stops carrying
/// data to him (the proxy no longer reads). xmpp-edge queues at most
/// `max_backlog_bytes` for him, then closes his session by policy; what he
/// gets once the path clears is an in-order prefix. Alice and Carol, on
/// both transports, exchange numbered messages throughout, unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_30_client_that_stops_reading_is_closed_by_policy_with_bounded_backlog() {
    let seed = seed("ws_30_client_that_stops_reading");
    let mut rng = Rng::new(seed);
    let prosody = Prosody::start();
    const BACKLOG: f64 = 65_536.0;
    let edge = Edge::start(config(
        &prosody.addr(),
        "[websocket]\nmax_backlog_bytes = 65536\n[upstream]\nmax_stanza_bytes = 65536\n",
    ))
    .await;
    let stuck_path = FaultProxy::transparent(edge.addr).await;
    let bob = ws::connect_with(stuck_path.addr, "/xmpp-websocket", Some("xmpp"), None, None)
        .await
        .expect("handshake through the proxy");
    let (mut bob, bob_jid) = ws::login_on(bob, "bob", "bob-secret", "stuck").await;
    bob.send("<presence xmlns='jabber:client'/>").await;
    let (mut flooder, _) = ws::login(edge.addr, "alice", "alice-secret", "flood").await;
    let (mut calm, calm_jid) = ws::login(edge.addr, "alice", "alice-secret", "calm").await;
    let mut carol = bosh_user(
        edge.addr,
        edge.addr,
        "carol",
        "calm",
        "wait='5' hold='1'",
        RetryOptions::default(),
        &mut rng,
    )
    .await;
    stuck_path.freeze(Dir::Down, true);
    let filler = "z".repeat(8_000);
    // The largest backlog any WebSocket session reports, sampled every millisecond.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (state, peak) = (
            std::sync::Arc::clone(&edge.state),
            std::sync::Arc::clone(&peak),
        );
        tokio::spawn(async move {
            loop {
                for info in state.sessions.infos() {
                    let queued = info
                        .queued_to_client
                        .load(std::sync::atomic::Ordering::Relaxed);
                    peak.fetch_max(queued, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut sent = 0u64;
    const CALM: u64 = 200;
    let mut calm_seen = Vec::new();
    let mut carol_sent = 0;
    let started = Instant::now();
    let slow_closes = || {
        edge.state
            .metrics
            .slow_client_closes
            .with_label_values(&["websocket"])
            .get()
    };
    while slow_closes() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never closed; sent {sent}"
        );
        for _ in 0..20 {
            flooder
                .send(&format!(
                    "<message to='{bob_jid}' type='chat' xmlns='jabber:client'><body>f-{sent}</body><x xmlns='urn:x:fill'>{filler}</x></message>"
                ))
                .await;
            sent += 1;
        }
        if carol_sent < CALM {
            carol.send(numbered(&calm_jid, "k", carol_sent));
            carol_sent += 1;
        }
        if let Got::Text(t) = calm.recv(Duration::from_millis(5)).await {
            calm_seen.extend(numbers(&t, "k"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let closed_after = started.elapsed();
    sampler.abort();
    let max_backlog = peak.load(std::sync::atomic::Ordering::Relaxed) as f64;
    // Carol and calm Alice carry on.
    while carol_sent < CALM {
        carol.send(numbered(&calm_jid, "k", carol_sent));
        carol_sent += 1;
    }
    calm_seen.extend(
        ws_collect(
            &mut calm,
            "k",
            (CALM as usize).saturating_sub(calm_seen.len()),
        )
        .await,
    );
    assert_exactly_once_in_order("calm alice", &calm_seen, CALM);
    calm.send(&numbered(&carol.jid, "m", 0)).await;
    let back = collect(&mut carol, "m", 1, T).await;
    assert_eq!(back, vec![0]);
    // Bob's session is gone; once his path clears he sees an in-order
    // prefix of the flood and then the end of the stream.
    eventually(T, "bob's session removed", || {
        edge.state.sessions.ws_count() == 2
    })
    .await;
    stuck_path.freeze(Dir::Down, false);
    let mut bob_seen = Vec::new();
    while let Got::Text(t) = bob.recv(Duration::from_secs(10)).await {
        bob_seen.extend(numbers(&t, "f"));
    }
    assert_exactly_once_in_order("bob (prefix)", &bob_seen, bob_seen.len() as u64);
    assert!((bob_seen.len() as u64) < sent, "he did not get everything");
    let metrics = scrape(edge.metrics_addr).await;
    assert_eq!(
        sum(
            &metrics,
            "xmpp_edge_sessions_closed_total",
            &["transport=\"websocket\"", "policy-violation"]
        ),
        1.0,
        "{metrics}"
    );
    eprintln!(
        "seed {seed}: flooded {sent} x 8 KB; closed after {closed_after:?}; \
         largest backlog seen {max_backlog} B (limit {BACKLOG}); bob got {} before the close",
        bob_seen.len()
    );
    // The close came from the backlog crossing the limit: the relay counts a
    // slow-client close and a `client_backlog` limit hit only when its queue
    // is over `max_backlog_bytes`. (The 1 ms sampler can miss the last
    // growth before the close, so it only bounds the peak from above.)
    assert_eq!(slow_closes(), 1);
    assert_eq!(
        edge.state
            .metrics
            .limit_hits
            .with_label_values(&["client_backlog"])
            .get(),
        1
    );
    // One element over the limit at most (the one that crossed it).
    assert!(max_backlog <= BACKLOG + 16_384.0, "backlog {max_backlog}");
}

// --- 6. half-open connections and clients that vanish -----------------------

/// BOSH-66, BOSH-104, WS-34, WS-30 (connection-timeout), WS-27: a BOSH
/// client whose network path goes silent in both directions (half-open: the
/// TCP connections stay up), one that just stops sending, a WebSocket whose
/// path goes silent (Pings unanswered), and one whose client half-closes.
/// All are reaped by `inactivity`, the ping/idle timeout, or at once; a
/// bystander session is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_66_ws_34_half_open_and_vanished_clients_are_reaped() {
    let seed = seed("bosh_66_ws_34_half_open");
    let mut rng = Rng::new(seed);
    let prosody = Prosody::start();
    let edge = Edge::start(config(
        &prosody.addr(),
        "[bosh]\nmax_wait_secs = 10\ninactivity_secs = 3\npolling_secs = 1\n\
         [websocket]\nping_interval_secs = 1\nidle_timeout_secs = 3\nclose_timeout_secs = 1\n",
    ))
    .await;
    let silent_bosh = FaultProxy::transparent(edge.addr).await;
    let silent_ws = FaultProxy::transparent(edge.addr).await;
    let half_close = FaultProxy::transparent(edge.addr).await;
    let create = "wait='2' hold='1'";
    let options = RetryOptions {
        attempt_timeout: Duration::from_secs(30),
        ..RetryOptions::default()
    };
    let alice = bosh_user(
        edge.addr,
        silent_bosh.addr,
        "alice",
        "halfopen",
        create,
        options,
        &mut rng,
    )
    .await;
    let (gone, gone_next, _) =
        bosh_retry::login(edge.addr, "bob", "bob-secret", "gone", create).await;
    // This one closes its connections (a tab closed) while a request is
    // held; its long `wait` would keep it for 13 s if only the clock counted.
    let dropped = bosh_user(
        edge.addr,
        edge.addr,
        "bob",
        "dropped",
        "wait='10' hold='1'",
        RetryOptions::default(),
        &mut rng,
    )
    .await;
    let dropped_sid = dropped.sid.clone();
    let silent_sid = alice.sid.clone();
    let c = ws::connect_with(silent_ws.addr, "/xmpp-websocket", Some("xmpp"), None, None)
        .await
        .expect("handshake");
    let (carol_ws, _) = ws::login_on(c, "carol", "carol-secret", "halfopen").await;
    let c = ws::connect_with(half_close.addr, "/xmpp-websocket", Some("xmpp"), None, None)
        .await
        .expect("handshake");
    let (closer, _) = ws::login_on(c, "carol", "carol-secret", "halfclose").await;
    let (bystander, _) = ws::login(edge.addr, "bob", "bob-secret", "bystander").await;
    assert_eq!(edge.state.sessions.len(), 6);
    // The bystander keeps reading (so its Pings are answered) until told,
    // then checks it is still served.
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let bystander = tokio::spawn(async move {
        let mut c = bystander;
        loop {
            tokio::select! {
                _ = &mut done_rx => break,
                got = c.recv(Duration::from_millis(200)) => match got {
                    Got::Text(_) | Got::Other(_) | Got::Ended => {}
                    Got::Close(code) => panic!("bystander closed: {code:?}"),
                },
            }
        }
        c.send("<iq type='get' id='still' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        loop {
            match c.recv(T).await {
                Got::Text(t) if t.contains("still") => return,
                Got::Text(_) | Got::Other(_) => {}
                other => panic!("bystander: {other:?}"),
            }
        }
    });

    // Alice's path goes silent with a request held; Bob's client just stops.
    let _ = gone_next;
    silent_bosh.freeze(Dir::Up, true);
    silent_bosh.freeze(Dir::Down, true);
    silent_ws.freeze(Dir::Up, true);
    silent_ws.freeze(Dir::Down, true);
    // The half-closing client sends FIN; its socket stays open for reading.
    let mut closer_io = closer.ws.into_inner();
    tokio::io::AsyncWriteExt::shutdown(&mut closer_io)
        .await
        .expect("shutdown");
    drop(dropped);
    let t0 = Instant::now();
    // When each one was gone, from the moment it went quiet.
    let (mut half_closed, mut ws_reaped, mut dropped_reaped, mut bosh_reaped) =
        (None, None, None, None);
    while bosh_reaped.is_none() || dropped_reaped.is_none() || ws_reaped.is_none() {
        let t = t0.elapsed();
        assert!(t < Duration::from_secs(12), "not all reaped within 12 s");
        let table = &edge.state.sessions;
        if half_closed.is_none() && table.ws_count() <= 2 {
            half_closed = Some(t);
        }
        if ws_reaped.is_none() && table.ws_count() == 1 {
            ws_reaped = Some(t);
        }
        if dropped_reaped.is_none() && table.get(&dropped_sid).is_none() {
            dropped_reaped = Some(t);
        }
        if bosh_reaped.is_none() && table.get(&silent_sid).is_none() {
            bosh_reaped = Some(t);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (half_closed, ws_reaped, dropped_reaped, bosh_reaped) = (
        half_closed.unwrap_or_default(),
        ws_reaped.unwrap_or_default(),
        dropped_reaped.unwrap_or_default(),
        bosh_reaped.unwrap_or_default(),
    );
    // WS-27: a client's FIN ends the session at once.
    assert!(half_closed < Duration::from_secs(1), "{half_closed:?}");
    // WS-34: ping after 1 s of silence, closed 3 s after the last sign of life.
    assert!(ws_reaped < Duration::from_secs(7), "{ws_reaped:?}");
    // BOSH-66: a client whose connection closed under its held request has
    // `inactivity` (3 s) to come back, not `wait` + `inactivity`.
    assert!(
        dropped_reaped > Duration::from_millis(2500)
            && dropped_reaped < Duration::from_millis(4500),
        "{dropped_reaped:?}"
    );
    // Half-open: the held request is answered into the void at `wait` (2 s),
    // then `inactivity` (3 s) runs.
    assert!(
        bosh_reaped > Duration::from_millis(2900) && bosh_reaped < Duration::from_secs(7),
        "{bosh_reaped:?}"
    );
    eventually(Duration::from_secs(2), "every BOSH session reaped", || {
        edge.state.sessions.bosh_count() == 0
    })
    .await;
    // The bystander is still served.
    let _ = done_tx.send(());
    bystander.await.expect("bystander served throughout");
    let metrics = scrape(edge.metrics_addr).await;
    let inactivity = sum(
        &metrics,
        "xmpp_edge_sessions_closed_total",
        &["reason=\"inactivity\""],
    );
    eprintln!(
        "seed {seed}: reaped after: half-closed WebSocket {half_closed:?}, silent WebSocket \
         {ws_reaped:?}, BOSH client gone with its request held {dropped_reaped:?}, half-open \
         BOSH {bosh_reaped:?}"
    );
    assert_eq!(
        sum(
            &metrics,
            "xmpp_edge_sessions_closed_total",
            &["transport=\"bosh\"", "reason=\"inactivity\""]
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        sum(
            &metrics,
            "xmpp_edge_sessions_closed_total",
            &["transport=\"websocket\"", "connection-timeout"]
        ),
        1.0,
        "{metrics}"
    );
    assert!(inactivity >= 4.0);
    // BOSH-66: a later request for a reaped session finds nothing.
    let r = gone.request(gone_next, "", "").await;
    assert_eq!(
        attr(&r.body, "condition").as_deref(),
        Some("item-not-found")
    );
    drop((alice, carol_ws, closer_io));
}

// --- 7. SIGTERM under load ----------------------------------------------------

/// BOSH-82l, BOSH-79, WS-30 (system-shutdown), README "Signals": the real
/// binary gets SIGTERM while four receivers (two BOSH through a proxy that
/// cuts 10% of responses, two WebSocket) take a steady flow of numbered
/// messages. Partway through the drain delay the server-to-xmpp-edge path
/// is frozen, so everything xmpp-edge will ever accept from the server has
/// been seen by the proxy on that path: each receiver must get exactly
/// those messages, once and in order, and then `system-shutdown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_82l_ws_30_sigterm_under_load_delivers_every_accepted_stanza() {
    let seed = seed("bosh_82l_ws_30_sigterm_under_load");
    let mut rng = Rng::new(seed);
    let prosody = Prosody::start();
    let upstream = FaultProxy::transparent(prosody.addr().parse().unwrap()).await;
    let mut edge = EdgeProcess::start(
        "faults-drain",
        "shutdown_delay_secs = 3\nshutdown_grace_secs = 8",
        &format!("[hosts.localhost]\nupstreams = [\"{}\"]\n", upstream.addr),
    );
    let cuts = FaultProxy::start(
        edge.addr,
        seed,
        Box::new(|_, rng| {
            if rng.chance(0.10) {
                Fault::Cut {
                    dir: Dir::Down,
                    bytes: 1 + rng.below(600) as usize,
                }
            } else {
                Fault::Pass
            }
        }),
    )
    .await;
    let create = "wait='5' hold='1'";
    let r1 = bosh_user(
        edge.addr,
        cuts.addr,
        "alice",
        "r1",
        create,
        RetryOptions::default(),
        &mut rng,
    )
    .await;
    let r2 = bosh_user(
        edge.addr,
        cuts.addr,
        "bob",
        "r2",
        create,
        RetryOptions::default(),
        &mut rng,
    )
    .await;
    let (w1, w1_jid) = ws::login(edge.addr, "alice", "alice-secret", "w1").await;
    let (w2, w2_jid) = ws::login(edge.addr, "bob", "bob-secret", "w2").await;
    // The sender goes through an xmpp-edge of its own, which is not drained.
    let sender_edge = Edge::start(config(&prosody.addr(), "")).await;
    let (mut sender, _) = ws::login(sender_edge.addr, "carol", "carol-secret", "send").await;
    upstream.record_down();
    let targets = [
        (r1.jid.clone(), "r1"),
        (r2.jid.clone(), "r2"),
        (w1_jid, "w1"),
        (w2_jid, "w2"),
    ];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sending = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 20_000 {
                for (jid, tag) in &targets {
                    sender.send(&numbered(jid, tag, n)).await;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            n
        })
    };
    tokio::time::sleep(rng.millis(500, 1000)).await;
    let sigterm = Instant::now();
    edge.signal("TERM");
    // Partway through the delay: nothing more reaches xmpp-edge from the server.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    upstream.freeze(Dir::Down, true);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = sending.await.expect("sender");
    let forwarded = String::from_utf8_lossy(&upstream.recorded_down()).into_owned();

    let drain_bosh = |mut s: RetryingBosh, tag: &'static str| async move {
        let mut got = Vec::new();
        let end = loop {
            match s.next(T).await {
                Some(Incoming::Stanza(x)) => got.extend(numbers(&x, tag)),
                Some(Incoming::Terminated(body)) => break body,
                None => panic!("{tag}: BOSH session did not end"),
            }
        };
        (got, end)
    };
    let drain_ws = |mut c: WsClient, tag: &'static str| async move {
        let mut got = Vec::new();
        let end = loop {
            match c.recv(T).await {
                Got::Text(t) if t.contains("system-shutdown") => break t,
                Got::Text(t) => got.extend(numbers(&t, tag)),
                other => panic!("{tag}: WebSocket ended without system-shutdown: {other:?}"),
            }
        };
        (got, end)
    };
    let ((g1, e1), (g2, e2), (g3, e3), (g4, e4)) = tokio::join!(
        drain_bosh(r1, "r1"),
        drain_bosh(r2, "r2"),
        drain_ws(w1, "w1"),
        drain_ws(w2, "w2"),
    );
    let status = edge
        .wait_exit(Duration::from_secs(12))
        .expect("process exits");
    assert!(status.success(), "{status:?}\n{}", edge.log());
    let exited = sigterm.elapsed();
    for (tag, got, end, bosh) in [
        ("r1", g1, e1, true),
        ("r2", g2, e2, true),
        ("w1", g3, e3, false),
        ("w2", g4, e4, false),
    ] {
        let accepted = numbers(&forwarded, tag);
        assert_exactly_once_in_order(
            &format!("{tag} (what the server sent)"),
            &accepted,
            accepted.len() as u64,
        );
        assert!(
            accepted.len() > 50,
            "{tag}: traffic flowed ({})",
            accepted.len()
        );
        assert_eq!(
            got.len(),
            accepted.len(),
            "{tag}: every stanza xmpp-edge accepted reached the client before its session ended"
        );
        assert_exactly_once_in_order(tag, &got, accepted.len() as u64);
        if bosh {
            // A cut terminal response is sent again from the lingering
            // session's cache, so it always arrives.
            assert_eq!(
                attr(&end, "condition").as_deref(),
                Some("system-shutdown"),
                "{tag}: {end}"
            );
        } else {
            assert!(end.contains("system-shutdown"), "{tag}: {end}");
        }
        eprintln!(
            "seed {seed}: {tag}: {} delivered of {} accepted",
            got.len(),
            accepted.len()
        );
    }
    eprintln!("seed {seed}: sender sent {sent} rounds; process exited {exited:?} after SIGTERM");
    assert!(
        exited < Duration::from_secs(11),
        "exit within delay + grace: {exited:?}"
    );
}
