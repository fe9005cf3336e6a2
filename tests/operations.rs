//! Operations against a real Prosody: metrics that move with traffic,
//! health and readiness, the admin API and CLI, SIGTERM drain, SIGHUP
//! reload.
// Test code may panic and read the wall clock; the product code may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::bosh::{BoshClient, HttpResponse, Incoming, login as bosh_login, raw_request};
use common::edge::{Edge, config};
use common::metrics::sum;
use common::process::{EdgeProcess, binary};
use common::prosody::{Prosody, free_port};
use common::ws::{self, Got};
use common::xml::{assert_condition, attr};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(20);

async fn get(addr: SocketAddr, path: &str, headers: &str) -> HttpResponse {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    raw_request(addr, request.as_bytes()).await
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &str) -> HttpResponse {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    raw_request(addr, request.as_bytes()).await
}

/// The value of the first sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(edge: &Edge) -> String {
    let r = get(edge.metrics_addr, "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_sessions_and_stanzas() {
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), "")).await;
    let before = scrape(&edge).await;
    assert_eq!(sum(&before, "xmpp_edge_sessions", &[]), 0.0);
    assert!(
        before.contains("process_resident_memory_bytes"),
        "process metrics"
    );
    assert!(before.contains("xmpp_edge_build_info{version="));

    let mut alice = bosh_login(edge.addr, "alice", "alice-secret", "m").await;
    let (mut bob, _) = ws::login(edge.addr, "bob", "bob-secret", "m").await;
    for i in 0..10 {
        alice.send(format!(
            "<message to='bob@localhost/m' type='chat' xmlns='jabber:client'><body>m{i}</body></message>"
        ));
    }
    for i in 0..10 {
        bob.expect("message", |t| t.contains(&format!(">m{i}<")))
            .await;
    }
    let during = scrape(&edge).await;
    let open = |transport: &str| {
        sum(
            &during,
            "xmpp_edge_sessions",
            &[
                &format!("transport=\"{transport}\""),
                "state=\"open\"",
                &format!("upstream=\"{}\"", prosody.addr()),
            ],
        )
    };
    assert_eq!(open("bosh"), 1.0, "{during}");
    assert_eq!(open("websocket"), 1.0, "{during}");
    assert_eq!(sum(&during, "xmpp_edge_sessions_opened_total", &[]), 2.0);
    assert!(
        sum(
            &during,
            "xmpp_edge_stanzas_total",
            &["transport=\"bosh\"", "direction=\"to_upstream\""]
        ) >= 10.0
    );
    assert!(
        sum(
            &during,
            "xmpp_edge_stanzas_total",
            &["transport=\"websocket\"", "direction=\"to_client\""]
        ) >= 10.0
    );
    assert!(
        sum(
            &during,
            "xmpp_edge_stanza_bytes_total",
            &["direction=\"to_client\""]
        ) > 500.0
    );
    assert!(
        sum(
            &during,
            "xmpp_edge_websocket_messages_total",
            &["direction=\"from_client\""]
        ) >= 4.0
    );
    assert!(
        sum(
            &during,
            "xmpp_edge_bosh_requests_total",
            &["outcome=\"data\""]
        ) >= 1.0
    );
    assert!(
        sum(
            &during,
            "xmpp_edge_upstream_connect_seconds_count",
            &["result=\"ok\""]
        ) >= 2.0
    );
    assert!(sum(&during, "xmpp_edge_session_setup_seconds_count", &[]) >= 2.0);
    assert_eq!(
        sum(
            &during,
            "xmpp_edge_upstream_up",
            &[&format!("upstream=\"{}\"", prosody.addr())]
        ),
        1.0
    );
    assert_eq!(sum(&during, "xmpp_edge_upstream_sessions", &[]), 2.0);
    assert_eq!(sum(&during, "xmpp_edge_bosh_held_requests", &[]), 1.0);
    // Bounded labels: no session id or JID anywhere.
    assert!(!during.contains(&alice.sid), "sid in metrics");
    assert!(!during.contains("alice@"), "JID in metrics");

    alice.terminate("");
    alice.terminated(T).await;
    bob.send(ws::CLOSE).await;
    let _ = bob.until_closed().await;
    let deadline = Instant::now() + T;
    let after = loop {
        let text = scrape(&edge).await;
        if sum(&text, "xmpp_edge_sessions", &[]) == 0.0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sum(&after, "xmpp_edge_sessions", &[]), 0.0, "{after}");
    assert_eq!(
        sum(
            &after,
            "xmpp_edge_sessions_closed_total",
            &["reason=\"client_close\""]
        ),
        2.0,
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_follow_the_upstreams() {
    let mut prosody = Prosody::start();
    let edge = Edge::start(config(
        &prosody.addr(),
        "[upstream]\nfailure_threshold = 1\nbackoff_initial_secs = 30\nbackoff_max_secs = 60\n",
    ))
    .await;
    assert_eq!(get(edge.metrics_addr, "/healthz", "").await.status, 200);
    assert_eq!(get(edge.metrics_addr, "/readyz", "").await.status, 200);
    // Nothing else is served there.
    assert_eq!(
        get(edge.metrics_addr, "/admin/sessions", "").await.status,
        404
    );
    prosody.crash();
    let (_, r) = BoshClient::create(edge.addr, "wait='5'").await;
    assert!(r.body.contains("remote-connection-failed"), "{}", r.body);
    let ready = get(edge.metrics_addr, "/readyz", "").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("no upstream"), "{}", ready.body);
    assert_eq!(get(edge.metrics_addr, "/healthz", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_lists_shows_and_kicks_sessions() {
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), "")).await;
    let mut alice = bosh_login(edge.addr, "alice", "alice-secret", "adm").await;
    let (mut bob, bob_jid) = ws::login(edge.addr, "bob", "bob-secret", "adm").await;
    let list = get(edge.admin_addr, "/admin/sessions", "").await;
    assert_eq!(list.status, 200);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&list.body).unwrap();
    assert_eq!(rows.len(), 2, "{}", list.body);
    let by_jid = |jid: &str| {
        rows.iter()
            .find(|r| r["jid"] == jid)
            .unwrap_or_else(|| panic!("{jid} not in {}", list.body))
            .clone()
    };
    let a = by_jid("alice@localhost/adm");
    assert_eq!(a["transport"], "bosh");
    assert_eq!(a["sid"], alice.sid.as_str());
    assert_eq!(a["state"], "open");
    assert_eq!(a["upstream"], prosody.addr().as_str());
    assert!(a["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(
        a["stanzas_to_upstream"].as_u64().unwrap() >= 2,
        "auth and bind"
    );
    // The server's stream id, as the WebSocket client saw it in its latest
    // <open/>, finds the session (WS-20: xmpp-edge relays the server's id).
    let b = by_jid(&bob_jid);
    assert_eq!(b["transport"], "websocket");
    assert_eq!(
        b["stream_id"].as_str(),
        Some(
            bob.stream_id
                .as_deref()
                .expect("bob saw an <open/> with an id")
        ),
        "{b}"
    );
    let bob_sid = b["sid"].as_str().unwrap().to_owned();
    assert_ne!(b["stream_id"].as_str(), Some(bob_sid.as_str()));
    // A BOSH session shows its server stream id too (the restarted stream's).
    assert!(
        a["stream_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{a}"
    );
    // One session by id.
    let one = get(edge.admin_addr, &format!("/admin/sessions/{bob_sid}"), "").await;
    assert_eq!(one.status, 200);
    assert!(one.body.contains(&bob_jid), "{}", one.body);
    assert_eq!(
        get(
            edge.admin_addr,
            &format!("/admin/sessions/{}", "0".repeat(32)),
            ""
        )
        .await
        .status,
        404
    );
    // Kicking: BOSH gets policy-violation, WebSocket a stream error and <close/>.
    let kicked = send(
        edge.admin_addr,
        "DELETE",
        &format!("/admin/sessions/{}", alice.sid),
        "",
    )
    .await;
    assert_eq!(kicked.status, 202, "{}", kicked.body);
    let end = alice.terminated(T).await;
    assert_eq!(
        attr(&end, "condition").as_deref(),
        Some("policy-violation"),
        "{end}"
    );
    let kicked = send(
        edge.admin_addr,
        "DELETE",
        &format!("/admin/sessions/{bob_sid}"),
        "",
    )
    .await;
    assert_eq!(kicked.status, 202);
    let (texts, code) = bob.until_closed().await;
    assert!(
        texts.iter().any(|t| t.contains("<policy-violation")),
        "{texts:?}"
    );
    assert!(
        texts.last().is_some_and(|t| t.starts_with("<close")),
        "{texts:?}"
    );
    assert_eq!(code, Some(1000));
    let deadline = Instant::now() + T;
    let kicked = loop {
        let text = scrape(&edge).await;
        let n = sum(
            &text,
            "xmpp_edge_sessions_closed_total",
            &["reason=\"kicked\""],
        );
        if n >= 2.0 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kicked, 2.0);
    // The server saw a proper close: the accounts log in again at once.
    let _again = bosh_login(edge.addr, "alice", "alice-secret", "adm").await;
    let status = get(edge.admin_addr, "/admin/status", "").await;
    let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(status["bosh_sessions"], 1);
    assert_eq!(status["ready"], true);
    assert!(status["totals"]["sessions_opened"].as_u64().unwrap() >= 3);
    assert_eq!(status["upstreams"][0]["address"], prosody.addr().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_required_when_configured() {
    let prosody = Prosody::start();
    let edge = Edge::start(config(
        &prosody.addr(),
        "[admin]\ntoken = \"correct-horse-battery\"\n",
    ))
    .await;
    let none = get(edge.admin_addr, "/admin/sessions", "").await;
    assert_eq!(none.status, 401);
    let wrong = get(
        edge.admin_addr,
        "/admin/sessions",
        "Authorization: Bearer correct-horse-battera\r\n",
    )
    .await;
    assert_eq!(wrong.status, 401);
    let right = get(
        edge.admin_addr,
        "/admin/sessions",
        "Authorization: Bearer correct-horse-battery\r\n",
    )
    .await;
    assert_eq!(right.status, 200);
    // The page itself holds no data and loads without the token.
    let page = get(edge.admin_addr, "/", "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"), "{}", page.body);
}

#[test]
fn a_public_admin_listener_needs_a_token() {
    let err = xmpp_edge::config::load_str("[admin]\nlisten = \"0.0.0.0:9281\"\n", "public.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("public.toml:2:1: admin.listen:"), "{err}");
    assert!(err.contains("admin.token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_kicks_sessions() {
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), "")).await;
    let mut alice = bosh_login(edge.addr, "alice", "alice-secret", "cli").await;
    let admin = format!("http://{}", edge.admin_addr);
    let out = tokio::process::Command::new(binary())
        .args(["sessions", "--admin", &admin])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.starts_with("SID"), "{table}");
    assert!(table.contains(&alice.sid), "{table}");
    assert!(table.contains("alice@localhost/cli"), "{table}");
    assert!(table.contains("1 session(s)"), "{table}");
    let out = tokio::process::Command::new(binary())
        .args(["kick", &alice.sid, "--admin", &admin])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let end = alice.terminated(T).await;
    assert_eq!(attr(&end, "condition").as_deref(), Some("policy-violation"));
    // An unknown session and an unreachable API are clear errors.
    let out = tokio::process::Command::new(binary())
        .args(["kick", &"0".repeat(32), "--admin", &admin])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 404"));
    let out = tokio::process::Command::new(binary())
        .args(["sessions", "--admin", "http://127.0.0.1:1"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin API"));
}

fn hosts(prosody: &Prosody) -> String {
    format!("[hosts.localhost]\nupstreams = [\"{}\"]\n", prosody.addr())
}

/// SIGTERM under traffic: not ready at once, new sessions refused, then
/// every session ends with system-shutdown; what xmpp-edge took from the
/// server reaches the client first; the process exits within the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_without_losing_accepted_stanzas() {
    let prosody = Prosody::start();
    let mut edge = EdgeProcess::start(
        "drain",
        "shutdown_delay_secs = 2\nshutdown_grace_secs = 8",
        &hosts(&prosody),
    );
    let mut alice = bosh_login(edge.addr, "alice", "alice-secret", "d").await;
    let (mut bob, _) = ws::login(edge.addr, "bob", "bob-secret", "d").await;
    let (mut carol, _) = ws::login(edge.addr, "carol", "carol-secret", "d").await;
    // Carol keeps sending numbered messages to Alice (BOSH) and Bob (WebSocket).
    let sender = tokio::spawn(async move {
        let mut sent = 0u32;
        loop {
            let a = format!(
                "<message to='alice@localhost/d' type='chat' xmlns='jabber:client'><body>n{sent}</body></message>"
            );
            let b = a.replace("alice@localhost/d", "bob@localhost/d");
            let both = tokio::time::timeout(Duration::from_secs(2), async {
                carol.ws.send(Message::text(a)).await?;
                carol.ws.send(Message::text(b)).await
            })
            .await;
            if !matches!(both, Ok(Ok(()))) {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
            if sent > 5_000 {
                break;
            }
        }
        sent
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop_asked = Instant::now();
    edge.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = get(edge.metrics_addr, "/readyz", "").await;
    assert_eq!(ready.status, 503, "not ready while draining");
    assert!(ready.body.contains("draining"));
    let (_, refused) = BoshClient::create(edge.addr, "wait='5'").await;
    assert!(refused.body.contains("system-shutdown"), "{}", refused.body);

    let numbers =
        |text: &str| -> Option<u32> { text.split(">n").nth(1)?.split('<').next()?.parse().ok() };
    // Alice: numbered messages in order, then system-shutdown.
    let mut expected = 0;
    let end = loop {
        match alice.next(T).await {
            Some(Incoming::Stanza(s)) => {
                if let Some(n) = numbers(&s) {
                    assert_eq!(n, expected, "BOSH: lost or reordered");
                    expected += 1;
                }
            }
            Some(Incoming::Terminated(body)) => break body,
            None => panic!("BOSH session did not end"),
        }
    };
    assert_eq!(
        attr(&end, "condition").as_deref(),
        Some("system-shutdown"),
        "{end}"
    );
    assert!(expected > 0, "traffic flowed before the drain");
    // Bob: the same over WebSocket, ending with a system-shutdown stream error.
    let mut expected_bob = 0;
    loop {
        match bob.recv(T).await {
            Got::Text(t) if t.contains("<system-shutdown") => break,
            Got::Text(t) => {
                if let Some(n) = numbers(&t) {
                    assert_eq!(n, expected_bob, "WebSocket: lost or reordered");
                    expected_bob += 1;
                }
            }
            other => panic!("WebSocket ended without system-shutdown: {other:?}"),
        }
    }
    let status = edge
        .wait_exit(Duration::from_secs(12))
        .expect("process exits");
    assert!(status.success(), "{status:?}\n{}", edge.log());
    assert!(
        stop_asked.elapsed() < Duration::from_secs(11),
        "exit within delay + grace: {:?}",
        stop_asked.elapsed()
    );
    let _ = sender.await;
    let log = edge.log();
    assert!(log.contains("draining"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once() {
    let prosody = Prosody::start();
    let mut edge = EdgeProcess::start("twice", "shutdown_grace_secs = 60", &hosts(&prosody));
    // A BOSH session with no request held: it only learns of the shutdown
    // at its next request, so the drain would wait the whole grace period.
    let (_client, created) = BoshClient::create(edge.addr, "wait='5' hold='1'").await;
    assert!(created.body.contains("<stream:features"));
    edge.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        edge.wait_exit(Duration::from_millis(100)).is_none(),
        "still draining"
    );
    let second = Instant::now();
    edge.signal("TERM");
    let status = edge.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success());
    assert!(second.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_broken_file_keeps_the_old_config() {
    let prosody = Prosody::start();
    let edge = EdgeProcess::start(
        "reload",
        "",
        &format!("[bosh]\nmax_wait_secs = 30\n{}", hosts(&prosody)),
    );
    let waited = |body: &str| attr(body, "wait");
    let (_, r) = BoshClient::create(edge.addr, "wait='60'").await;
    assert_eq!(waited(&r.body).as_deref(), Some("30"));
    // A live session keeps its settings; new ones get the new ones.
    let mut alice = bosh_login(edge.addr, "alice", "alice-secret", "r").await;
    edge.rewrite_config(
        "",
        &format!("[bosh]\nmax_wait_secs = 12\n{}", hosts(&prosody)),
    );
    edge.signal("HUP");
    let deadline = Instant::now() + T;
    loop {
        let (_, r) = BoshClient::create(edge.addr, "wait='60'").await;
        if waited(&r.body).as_deref() == Some("12") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reload not applied:\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice.send("<presence xmlns='jabber:client'/>");
    alice
        .expect(T, "own presence", |s| s.starts_with("<presence"))
        .await;
    // A broken file: rejected with file and line, the old configuration stays.
    edge.write_config_raw("[bosh]\nmax_wait_secs = \"soon\"\n");
    edge.signal("HUP");
    let deadline = Instant::now() + T;
    while !edge.log().contains("reload rejected") {
        assert!(
            Instant::now() < deadline,
            "no rejection logged:\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = edge.log();
    assert!(log.contains("xmpp-edge.toml:2:"), "{log}");
    assert!(log.contains("bosh.max_wait_secs"), "{log}");
    let (_, r) = BoshClient::create(edge.addr, "wait='60'").await;
    assert_eq!(waited(&r.body).as_deref(), Some("12"));
    // The admin API reloads too, and reports the same error.
    let r = send(edge.admin_addr, "POST", "/admin/reload", "").await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("bosh.max_wait_secs"), "{}", r.body);
    let metrics = get(edge.metrics_addr, "/metrics", "").await.body;
    assert_eq!(
        sample(&metrics, "xmpp_edge_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "xmpp_edge_config_reloads_total{result=\"rejected\"}"
        ),
        2.0
    );
}

/// Each upstream server's connects and failures are Prometheus counters:
/// a reload that rebuilds the server's entry (a new weight) does not restart
/// them, and a server that cannot be reached counts its failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connects_and_failures_are_counters_that_survive_a_reload() {
    let prosody = Prosody::start();
    let dead = format!("127.0.0.1:{}", free_port());
    let config = |weight: u16| {
        format!(
            "[hosts.localhost]\nupstreams = [{{ address = \"{}\", weight = {weight} }}]\n\
             [hosts.\"example.test\"]\nupstreams = [\"{dead}\"]\n",
            prosody.addr()
        )
    };
    let edge = EdgeProcess::start("counters", "", &config(1));
    let connects = format!(
        "xmpp_edge_upstream_connects_total{{domain=\"localhost\",upstream=\"{}\"}}",
        prosody.addr()
    );
    let failures =
        format!("xmpp_edge_upstream_failures_total{{domain=\"example.test\",upstream=\"{dead}\"}}");
    let metrics = || async { get(edge.metrics_addr, "/metrics", "").await.body };

    let before = metrics().await;
    assert!(
        before.contains("# TYPE xmpp_edge_upstream_connects_total counter"),
        "{before}"
    );
    // Listed servers are exported at zero before their first connect.
    assert!(before.contains(&format!("{connects} 0")), "{before}");
    let _alice = bosh_login(edge.addr, "alice", "alice-secret", "c1").await;
    let (_, r) = BoshClient::create_for(edge.addr, "example.test", "wait='5'").await;
    assert_condition(&r.body, "remote-connection-failed");
    let first = metrics().await;
    assert_eq!(sample(&first, &connects), 1.0, "{first}");
    assert!(sample(&first, &failures) >= 1.0, "{first}");

    edge.rewrite_config("", &config(2));
    let r = send(edge.admin_addr, "POST", "/admin/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let _bob = bosh_login(edge.addr, "bob", "bob-secret", "c2").await;
    let after = metrics().await;
    assert_eq!(sample(&after, &connects), 2.0, "{after}");
    assert!(
        sample(&after, &failures) >= sample(&first, &failures),
        "{after}"
    );
}

/// BOSH-82b: a reload that stops serving a domain ends its sessions with
/// `host-gone` at their next request; new ones get `host-unknown`. Other
/// domains carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_82b_a_domain_removed_by_reload_is_host_gone() {
    let prosody = Prosody::start();
    let both = format!(
        "{}[hosts.\"example.test\"]\nupstreams = [\"{}\"]\n",
        hosts(&prosody),
        prosody.addr()
    );
    let edge = EdgeProcess::start("hostgone", "", &both);
    let (leaving, r) = BoshClient::create_for(edge.addr, "example.test", "wait='5' hold='1'").await;
    assert!(r.body.contains("<stream:features"), "{}", r.body);
    let (staying, r) = BoshClient::create(edge.addr, "wait='5' hold='1'").await;
    assert!(r.body.contains("<stream:features"), "{}", r.body);
    edge.rewrite_config("", &hosts(&prosody));
    let r = send(edge.admin_addr, "POST", "/admin/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = leaving.request(leaving.first_rid + 1, "", "").await;
    assert_condition(&r.body, "host-gone");
    let (_, r) = BoshClient::create_for(edge.addr, "example.test", "wait='5'").await;
    assert_condition(&r.body, "host-unknown");
    let r = staying.request(staying.first_rid + 1, "", "").await;
    assert!(!r.body.contains("terminate"), "{}", r.body);
    // The server the new configuration still lists kept its state: the
    // live session still counts on it.
    let status = get(edge.admin_addr, "/admin/status", "").await;
    let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let upstreams = status["upstreams"].as_array().unwrap();
    assert_eq!(upstreams.len(), 1, "{status}");
    assert_eq!(upstreams[0]["domain"], "localhost");
    assert_eq!(upstreams[0]["sessions"], 1, "{status}");
    assert!(upstreams[0]["connects"].as_u64().unwrap() >= 1);
}
