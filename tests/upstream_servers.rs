//! Upstream pools against real servers: TLS (STARTTLS and direct) to Prosody,
//! DNS SRV from a server on loopback, failover, balancing, health and
//! rejoining, warm connections, see-other-host, and the PROXY protocol
//! checked by ejabberd. Test names carry `upstream.md` requirement IDs.
// Test code may panic and read the wall clock; the product code may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::bosh::{BoshClient, login, login_to, try_login};
use common::dns::{TestDns, Zone};
use common::edge::Edge;
use common::ejabberd::Ejabberd;
use common::metrics::sum;
use common::prosody::{Prosody, ProsodyOptions, free_port};
use common::recording_upstream::{RecordingUpstream, Script};
use common::tcp_proxy::CountingProxy;
use common::xml::{assert_condition, attr, condition};
use xmpp_edge::upstream::pool::UpstreamStatus;

const T: Duration = Duration::from_secs(20);

/// xmpp-edge listening on an ephemeral loopback port with `toml`.
async fn edge(toml: &str) -> Edge {
    let listen = "listen = \"127.0.0.1:0\"\n";
    let text = if toml.contains("[server]\n") {
        toml.replacen("[server]\n", &format!("[server]\n{listen}"), 1)
    } else {
        format!("[server]\n{listen}{toml}")
    };
    Edge::start(xmpp_edge::config::load_str(&text, "test-config").unwrap()).await
}

fn status(edge: &Edge) -> Vec<UpstreamStatus> {
    edge.state.runtime().upstreams.status()
}

fn sessions_on(edge: &Edge, address: &str) -> usize {
    status(edge)
        .iter()
        .find(|s| s.address == address)
        .map_or(0, |s| s.sessions)
}

/// A session creation for `domain` is answered `remote-connection-failed`.
async fn assert_creation_fails(edge: &Edge, domain: &str, attrs: &str) {
    let (_, r) = BoshClient::create_for(edge.addr, domain, attrs).await;
    assert_condition(&r.body, "remote-connection-failed");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "xmpp-edge-{name}-{}-{}",
        std::process::id(),
        free_port()
    ))
}

// --- TLS ---

/// A Prosody that requires STARTTLS, with a certificate from a fresh test CA.
fn prosody_requiring_starttls() -> (Prosody, common::tls::TestCerts) {
    let certs = common::tls::generate(&temp_dir("certs"));
    let prosody = Prosody::start_with(ProsodyOptions {
        tls: Some(&certs),
        require_encryption: true,
        ..ProsodyOptions::default()
    });
    (prosody, certs)
}

/// WS-24: STARTTLS upstream is invisible to WebSocket clients too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_30_32_37_starttls_to_a_server_that_requires_it() {
    let (prosody, certs) = prosody_requiring_starttls();
    let edge = edge(&format!(
        "[hosts.localhost]\nupstreams = [\"{}\"]\ntls = \"starttls\"\ntls_ca_file = \"{}\"\n",
        prosody.addr(),
        certs.ca.display()
    ))
    .await;
    // UP-37: the client sees only the post-TLS features, never <starttls/>.
    let (_, created) = BoshClient::create(edge.addr, "wait='10'").await;
    assert!(
        created.body.contains("<mechanism>PLAIN</mechanism>"),
        "{}",
        created.body
    );
    assert!(!created.body.contains("starttls"), "{}", created.body);
    let mut alice = login(edge.addr, "alice", "alice-secret", "tls").await;
    alice
        .send("<iq type='get' id='r' xmlns='jabber:client'><query xmlns='jabber:iq:roster'/></iq>");
    alice
        .expect(T, "roster over TLS", |s| s.contains("jabber:iq:roster"))
        .await;
    // The same through WebSocket.
    let (_ws, jid) = common::ws::login(edge.addr, "bob", "bob-secret", "tls").await;
    assert_eq!(jid, "bob@localhost/tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_32_starttls_without_the_ca_fails_with_a_clean_error() {
    let (prosody, _certs) = prosody_requiring_starttls();
    let edge = edge(&format!(
        "[hosts.localhost]\nupstreams = [\"{}\"]\ntls = \"starttls\"\n",
        prosody.addr()
    ))
    .await;
    let started = std::time::Instant::now();
    assert_creation_fails(&edge, "localhost", "wait='20'").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(status(&edge)[0].failures >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_31_required_starttls_on_a_plain_upstream_is_refused() {
    let (prosody, _certs) = prosody_requiring_starttls();
    let edge = edge(&format!(
        "[hosts.localhost]\nupstreams = [\"{}\"]\n",
        prosody.addr()
    ))
    .await;
    assert_creation_fails(&edge, "localhost", "wait='20'").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_6_8_direct_tls_with_session_resumption() {
    let certs = common::tls::generate(&temp_dir("certs"));
    let prosody = Prosody::start_with(ProsodyOptions {
        tls: Some(&certs),
        direct_tls: true,
        ..ProsodyOptions::default()
    });
    let tls_port = prosody.tls_port.unwrap();
    let edge = edge(&format!(
        "[hosts.localhost]\nupstreams = [\"127.0.0.1:{tls_port}\"]\ntls = \"direct\"\ntls_ca_file = \"{}\"\n",
        certs.ca.display()
    ))
    .await;
    let _a = login(edge.addr, "alice", "alice-secret", "d1").await;
    let _b = login(edge.addr, "bob", "bob-secret", "d2").await;
    let s = &status(&edge)[0];
    assert_eq!(s.connects, 2);
    assert!(
        s.tls_resumptions >= 1,
        "UP-8: the second handshake resumes: {s:?}"
    );
}

// --- DNS SRV ---

/// SRV records for `example.test` (a second domain of the test Prosodys; a
/// resolver answers names under `localhost.` itself, RFC 6761), resolved by
/// a DNS server on loopback.
async fn srv_setup(records: &[(u16, u16, u16)]) -> (TestDns, String) {
    let mut zone = Zone::default();
    for (i, (priority, weight, port)) in records.iter().enumerate() {
        let target = format!("xmpp{i}.test.");
        zone = zone
            .srv(
                "_xmpp-client._tcp.example.test.",
                *priority,
                *weight,
                *port,
                &target,
            )
            .address(&target, "127.0.0.1".parse().unwrap());
    }
    let dns = TestDns::start(zone).await;
    let toml = format!(
        "[dns]\nnameservers = [\"{}\"]\n[hosts.\"example.test\"]\nsrv = true\n",
        dns.addr
    );
    (dns, toml)
}

const SRV_DOMAIN: &str = "example.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_2_srv_priority_first_then_failover() {
    let mut first = Prosody::start();
    let second = Prosody::start();
    let (dns, toml) = srv_setup(&[(10, 1, first.port), (20, 1, second.port)]).await;
    let edge = edge(&toml).await;
    let mut a = login_to(edge.addr, SRV_DOMAIN, "alice", "alice-secret", "p").await;
    assert_eq!(sessions_on(&edge, &format!("xmpp0.test:{}", first.port)), 1);
    assert!(
        dns.queries
            .lock()
            .iter()
            .any(|q| q.starts_with("_xmpp-client._tcp.example.test."))
    );
    // The preferred server dies: its session ends cleanly, new ones go to priority 20.
    first.crash();
    let end = a.terminated(T).await;
    assert_eq!(condition(&end).as_deref(), Some("remote-connection-failed"));
    let _b = login_to(edge.addr, SRV_DOMAIN, "bob", "bob-secret", "p").await;
    assert_eq!(
        sessions_on(&edge, &format!("xmpp1.test:{}", second.port)),
        1
    );
    // Servers found through DNS count into the per-server counters too.
    let metrics = common::bosh::raw_request(
        edge.metrics_addr,
        b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .await
    .body;
    let count =
        |name: &str, target: String| sum(&metrics, name, &["domain=\"example.test\"", &target]);
    let first_server = format!("upstream=\"xmpp0.test:{}\"", first.port);
    let second_server = format!("upstream=\"xmpp1.test:{}\"", second.port);
    assert_eq!(
        count("xmpp_edge_upstream_connects_total", first_server.clone()),
        1.0,
        "{metrics}"
    );
    assert!(
        count("xmpp_edge_upstream_failures_total", first_server) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        count("xmpp_edge_upstream_connects_total", second_server),
        1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_2_srv_weights_spread_sessions() {
    let light = Prosody::start();
    let heavy = Prosody::start();
    let (_dns, toml) = srv_setup(&[(10, 1, light.port), (10, 4, heavy.port)]).await;
    let edge = edge(&toml).await;
    let mut sessions = Vec::new();
    for i in 0..10 {
        let user = ["alice", "bob", "carol"][i % 3];
        let password = format!("{user}-secret");
        sessions.push(login_to(edge.addr, SRV_DOMAIN, user, &password, &format!("w{i}")).await);
    }
    let on_light = sessions_on(&edge, &format!("xmpp0.test:{}", light.port));
    let on_heavy = sessions_on(&edge, &format!("xmpp1.test:{}", heavy.port));
    assert_eq!(on_light + on_heavy, 10);
    assert!(
        (7..=9).contains(&on_heavy),
        "weights 1:4 gave {on_light}:{on_heavy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_3_dot_target_means_no_service_and_no_fallback() {
    let zone = Zone::default()
        .srv("_xmpp-client._tcp.example.test.", 0, 0, 0, ".")
        .address("example.test.", "127.0.0.1".parse().unwrap());
    let dns = TestDns::start(zone).await;
    let edge = edge(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[hosts.\"example.test\"]\nsrv = true\n",
        dns.addr
    ))
    .await;
    assert_creation_fails(&edge, SRV_DOMAIN, "wait='10'").await;
    let queries = dns.queries.lock().clone();
    assert!(
        queries
            .iter()
            .any(|q| q == "_xmpp-client._tcp.example.test. SRV"),
        "{queries:?}"
    );
    assert!(
        !queries.iter().any(|q| q.starts_with("example.test. ")),
        "no A/AAAA fallback: {queries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_5_no_srv_falls_back_to_the_domain_and_nxdomain_is_host_unknown() {
    let zone = Zone::default().address("fallback.test.", "127.0.0.1".parse().unwrap());
    let dns = TestDns::start(zone).await;
    let edge = edge(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[hosts.\"fallback.test\"]\nsrv = true\n[hosts.\"missing.test\"]\nsrv = true\n",
        dns.addr
    ))
    .await;
    let create = |domain: &str| {
        format!(
            "<body rid='1' to='{domain}' wait='10' ver='1.6' {}/>",
            common::bosh::HTTPBIND
        )
    };
    // No SRV: the A record of the domain is looked up for port 5222.
    let r = common::bosh::post(edge.addr, "/http-bind", &create("fallback.test")).await;
    assert!(condition(&r.body).is_some(), "{}", r.body);
    assert!(
        dns.queries.lock().iter().any(|q| q == "fallback.test. A"),
        "{:?}",
        dns.queries.lock()
    );
    // BOSH-82c via DNS: the domain does not exist at all.
    let r = common::bosh::post(edge.addr, "/http-bind", &create("missing.test")).await;
    assert_eq!(
        condition(&r.body).as_deref(),
        Some("host-unknown"),
        "{}",
        r.body
    );
}

// --- static pools: failover, balancing, health ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_7_failover_to_the_next_upstream_before_answering() {
    let prosody = Prosody::start();
    let dead = format!("127.0.0.1:{}", free_port());
    let edge = edge(&format!(
        "[upstream]\nfailure_threshold = 1\n[hosts.localhost]\nupstreams = [\"{dead}\", \"{}\"]\n",
        prosody.addr()
    ))
    .await;
    let _a = login(edge.addr, "alice", "alice-secret", "f").await;
    let s = status(&edge);
    let dead_status = s.iter().find(|s| s.address == dead).unwrap();
    assert!(!dead_status.healthy && dead_status.failures == 1, "{s:?}");
    assert_eq!(sessions_on(&edge, &prosody.addr()), 1);
    // The dead one is skipped now: no second attempt while it backs off.
    let _b = login(edge.addr, "bob", "bob-secret", "f").await;
    assert_eq!(
        status(&edge)
            .iter()
            .find(|s| s.address == dead)
            .unwrap()
            .failures,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_sessions_balancing_with_weights() {
    let a = Prosody::start();
    let b = Prosody::start();
    let edge = edge(&format!(
        "[hosts.localhost]\nupstreams = [\"{}\", {{ address = \"{}\", weight = 2 }}]\n",
        a.addr(),
        b.addr()
    ))
    .await;
    let mut sessions = Vec::new();
    for i in 0..6 {
        let user = ["alice", "bob", "carol"][i % 3];
        sessions.push(login(edge.addr, user, &format!("{user}-secret"), &format!("b{i}")).await);
    }
    assert_eq!(
        (sessions_on(&edge, &a.addr()), sessions_on(&edge, &b.addr())),
        (2, 4)
    );
    drop(sessions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_upstream_is_a_fast_clean_error() {
    let dead = format!("127.0.0.1:{}", free_port());
    let edge = edge(&format!(
        "[upstream]\nfailure_threshold = 1\nbackoff_initial_secs = 30\nbackoff_max_secs = 60\n[hosts.localhost]\nupstreams = [\"{dead}\"]\n"
    ))
    .await;
    assert_creation_fails(&edge, "localhost", "wait='10'").await;
    let started = std::time::Instant::now();
    assert_creation_fails(&edge, "localhost", "wait='10'").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "no connect attempt while down"
    );
    assert!(!edge.state.runtime().upstreams.any_healthy());
}

// --- Prosody and ejabberd as two upstreams of one domain ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_and_ejabberd_share_a_domain_failover_and_rejoin() {
    let prosody = Prosody::start();
    let mut ejabberd = Ejabberd::start();
    let ejabberd_port = ejabberd.port;
    let edge = edge(&format!(
        "[upstream]\nfailure_threshold = 1\nbackoff_initial_secs = 1\nbackoff_max_secs = 2\nhealth_check_interval_secs = 1\n\
         [hosts.localhost]\nupstreams = [\"{}\", \"{}\"]\n",
        prosody.addr(),
        ejabberd.addr()
    ))
    .await;
    // Sessions spread over both servers.
    let mut on_ejabberd = Vec::new();
    let mut on_prosody = Vec::new();
    for i in 0..4 {
        let user = ["alice", "bob"][i % 2];
        let s = login(edge.addr, user, &format!("{user}-secret"), &format!("s{i}")).await;
        if sessions_on(&edge, &ejabberd.addr()) > on_ejabberd.len() {
            on_ejabberd.push(s);
        } else {
            on_prosody.push(s);
        }
    }
    assert_eq!((on_prosody.len(), on_ejabberd.len()), (2, 2));
    // ejabberd stops: its sessions end cleanly; new sessions go to Prosody.
    ejabberd.crash();
    for s in &mut on_ejabberd {
        let end = s.terminated(T).await;
        assert_eq!(
            condition(&end).as_deref(),
            Some("remote-connection-failed"),
            "{end}"
        );
    }
    for i in 0..2 {
        let _s = login(edge.addr, "carol", "carol-secret", &format!("after{i}")).await;
        assert_eq!(sessions_on(&edge, &format!("127.0.0.1:{ejabberd_port}")), 0);
    }
    // It comes back on the same port; the health check puts it back in rotation.
    let ejabberd = Ejabberd::start_with("info", false, Some(ejabberd_port));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !status(&edge).iter().all(|s| s.healthy) {
        assert!(std::time::Instant::now() < deadline, "{:?}", status(&edge));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The least-loaded server gets the next session.
    let _back = login(edge.addr, "alice", "alice-secret", "back").await;
    assert_eq!(sessions_on(&edge, &ejabberd.addr()), 1);
}

// --- PROXY protocol ---

/// BOSH-103: the client's address goes upstream in a PROXY header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_10_11_proxy_v1_header_comes_first() {
    let upstream = RecordingUpstream::start(Script::default()).await;
    let edge = edge(&format!(
        "[hosts.localhost]\nupstreams = [\"{}\"]\nproxy_protocol = \"v1\"\n",
        upstream.addr
    ))
    .await;
    let (_, r) = BoshClient::create(edge.addr, "wait='5'").await;
    assert!(r.body.contains("<mechanism>"), "{}", r.body);
    let wire = upstream.received();
    let line = wire.split("\r\n").next().unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        &fields[..4],
        ["PROXY", "TCP4", "127.0.0.1", "127.0.0.1"],
        "{line}"
    );
    assert_eq!(
        fields[5],
        edge.addr.port().to_string(),
        "destination: the listener the client reached"
    );
    assert!(
        wire[line.len() + 2..].starts_with("<?xml version='1.0'?><stream:stream"),
        "{wire}"
    );
}

/// BOSH-103: the client's address goes upstream in a PROXY header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_12_16_17_proxy_v2_with_tlvs_and_a_trusted_forwarder() {
    let upstream = RecordingUpstream::start(Script::default()).await;
    let edge = edge(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[hosts.localhost]\nupstreams = [\"{}\"]\nproxy_protocol = \"v2\"\nproxy_protocol_tlvs = true\n",
        upstream.addr
    ))
    .await;
    let body = format!(
        "<body rid='1' to='localhost' wait='5' ver='1.6' {}/>",
        common::bosh::HTTPBIND
    );
    let request = format!(
        "POST /http-bind HTTP/1.1\r\nHost: chat.example\r\nX-Forwarded-For: 203.0.113.7\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = common::bosh::raw_request(edge.addr, request.as_bytes()).await;
    assert!(r.body.contains("<mechanism>"), "{}", r.body);
    let raw = upstream.received_bytes();
    assert_eq!(
        &raw[..12],
        &[
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
        ]
    );
    assert_eq!((raw[12], raw[13]), (0x21, 0x11));
    let len = u16::from_be_bytes([raw[14], raw[15]]) as usize;
    assert_eq!(
        &raw[16..20],
        &[203, 0, 113, 7],
        "the forwarded client, not the proxy"
    );
    let tlvs = &raw[28..16 + len];
    let text = String::from_utf8_lossy(tlvs);
    assert!(
        text.contains("chat.example") && text.contains("bosh") && text.contains("http/1.1"),
        "{text}"
    );
    assert!(
        raw[16 + len..].starts_with(b"<?xml"),
        "stream header right after the PROXY header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_15_ejabberd_sees_the_client_address_from_the_proxy_header() {
    let ejabberd = Ejabberd::start_with("info", true, None);
    for version in ["v1", "v2"] {
        let edge = edge(&format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[hosts.localhost]\nupstreams = [\"{}\"]\nproxy_protocol = \"{version}\"\n",
            ejabberd.addr()
        ))
        .await;
        // A trusted reverse proxy in front of xmpp-edge forwards the client's address.
        let stream = forwarded_login(edge.addr, "203.0.113.7", &format!("pp{version}")).await;
        let (ok, users) = ejabberd.ctl(&["connected_users_info"]);
        assert!(ok);
        let line = users
            .lines()
            .find(|l| l.contains(&format!("alice@localhost/pp{version}")))
            .unwrap_or_else(|| panic!("session not found: {users}"));
        assert!(line.contains("203.0.113.7"), "{version}: {line}");
        drop(stream);
    }
}

/// Logs in over BOSH with `X-Forwarded-For: client`, returning the session's sid.
async fn forwarded_login(edge: SocketAddr, client: &str, resource: &str) -> String {
    let post = |body: String| async move {
        let request = format!(
            "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {client}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        common::bosh::raw_request(edge, request.as_bytes())
            .await
            .body
    };
    let h = common::bosh::HTTPBIND;
    let r = post(format!(
        "<body rid='10' to='localhost' wait='10' ver='1.6' {h}/>"
    ))
    .await;
    let sid = attr(&r, "sid").unwrap_or_else(|| panic!("{r}"));
    let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXNlY3JldA==</auth>";
    let r = post(format!("<body rid='11' sid='{sid}' {h}>{auth}</body>")).await;
    assert!(r.contains("<success"), "{r}");
    let r = post(format!(
        "<body rid='12' sid='{sid}' to='localhost' xmpp:restart='true' {h}/>"
    ))
    .await;
    assert!(r.contains("xmpp-bind"), "{r}");
    let bind = format!(
        "<iq type='set' id='b' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
    );
    let r = post(format!("<body rid='13' sid='{sid}' {h}>{bind}</body>")).await;
    assert!(r.contains("<jid>"), "{r}");
    sid
}

// --- warm connections and redirects ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_connections_are_pre_dialed_and_used() {
    let prosody = Prosody::start();
    let proxy = CountingProxy::start(prosody.addr().parse().unwrap()).await;
    let edge = edge(&format!(
        "[hosts.localhost]\nupstreams = [\"{}\"]\nwarm_connections = 2\n",
        proxy.addr
    ))
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while proxy.accepted() < 2 {
        assert!(std::time::Instant::now() < deadline, "not pre-dialed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&edge)[0].warm, 2);
    let _a = login(edge.addr, "alice", "alice-secret", "warm").await;
    // The session took a pre-dialed connection; the pool refills.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while status(&edge)[0].warm < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "not refilled: {:?}",
            status(&edge)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.accepted(), 3);
}

/// WS-32: a WebSocket client never sees the redirect either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_44_see_other_host_is_followed_transparently() {
    let prosody = Prosody::start();
    // A server that sends every client to the real Prosody.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = listener.local_addr().unwrap();
    let target = prosody.addr();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
                     id='r' from='localhost' version='1.0'><stream:error><see-other-host \
                     xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{target}</see-other-host></stream:error></stream:stream>"
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    let edge = edge(&format!(
        "[hosts.localhost]\nupstreams = [\"{redirector}\"]\n"
    ))
    .await;
    let alice = try_login(edge.addr, "alice", "alice-secret", "redirected").await;
    assert!(alice.is_ok(), "{:?}", alice.err());
    let (_ws, jid) = common::ws::login(edge.addr, "bob", "bob-secret", "redirected").await;
    assert_eq!(jid, "bob@localhost/redirected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_7_14_active_health_check_probes_with_a_local_proxy_header() {
    // ejabberd refuses any connection that does not start with a PROXY header,
    // so a passing probe shows the LOCAL header (v2) is sent and accepted.
    let ejabberd = Ejabberd::start_with("info", true, None);
    let edge = edge(&format!(
        "[upstream]\nhealth_check_interval_secs = 1\n[hosts.localhost]\nupstreams = [\"{}\"]\nproxy_protocol = \"v2\"\n",
        ejabberd.addr()
    ))
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = &status(&edge)[0];
        if s.connects >= 2 {
            assert!(s.healthy && s.failures == 0, "{s:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no successful probe: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&edge)[0].sessions, 0, "probes are not sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_4_unreachable_srv_targets_do_not_fall_back_to_the_domain() {
    let zone = Zone::default()
        .srv(
            "_xmpp-client._tcp.example.test.",
            10,
            1,
            free_port(),
            "xmpp0.test.",
        )
        .srv(
            "_xmpp-client._tcp.example.test.",
            20,
            1,
            free_port(),
            "xmpp1.test.",
        )
        .address("xmpp0.test.", "127.0.0.1".parse().unwrap())
        .address("xmpp1.test.", "127.0.0.1".parse().unwrap())
        .address("example.test.", "127.0.0.1".parse().unwrap());
    let dns = TestDns::start(zone).await;
    let edge = edge(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[hosts.\"example.test\"]\nsrv = true\n",
        dns.addr
    ))
    .await;
    assert_creation_fails(&edge, SRV_DOMAIN, "wait='10'").await;
    let queries = dns.queries.lock().clone();
    for target in ["xmpp0.test. A", "xmpp1.test. A"] {
        assert!(queries.iter().any(|q| q == target), "{target}: {queries:?}");
    }
    assert!(
        !queries.iter().any(|q| q.starts_with("example.test. ")),
        "no A/AAAA fallback after SRV answered: {queries:?}"
    );
}

// --- a server that stops reading ---

/// A stanza of about 200 KB, under every size limit.
fn big_message(i: usize) -> String {
    format!(
        "<message to='bob@localhost' id='m{i}' xmlns='jabber:client'><body>{}</body></message>",
        "x".repeat(200_000)
    )
}

const FROZEN_LIMIT: &str = "[upstream]\nwrite_timeout_secs = 6\nmax_write_queue_bytes = 262144\n";
/// What a client may push at a frozen server before it is held back:
/// kernel socket buffers on both hops plus the write queue. Without the
/// hold-back a loopback client pushes hundreds of MB in the same time.
const HELD_BACK_WITHIN: usize = 48 << 20;
const TRIED: usize = 160 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_42_websocket_client_is_held_back_and_a_frozen_server_ends_the_session() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let prosody = Prosody::start();
    let edge = edge(&format!(
        "{FROZEN_LIMIT}[hosts.localhost]\nupstreams = [\"{}\"]\n",
        prosody.addr()
    ))
    .await;
    let mut c = common::ws::connect(edge.addr).await;
    c.send(common::ws::OPEN).await;
    c.expect("features", |t| t.contains("<stream:features"))
        .await;
    prosody.freeze();
    let mut pushed = 0;
    for i in 0.. {
        let sent = tokio::time::timeout(
            Duration::from_secs(1),
            c.ws.send(Message::text(big_message(i))),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) || pushed >= TRIED {
            break;
        }
        pushed += 200_000;
    }
    assert!(
        pushed < HELD_BACK_WITHIN,
        "the client pushed {} MB at a server that reads nothing",
        pushed >> 20
    );
    // UP-42, UP-49: no progress for write_timeout_secs ends the session.
    let (texts, code) = tokio::time::timeout(T, c.until_closed())
        .await
        .expect("session ended");
    prosody.thaw();
    assert!(
        texts.iter().any(|t| t.contains("internal-server-error")),
        "{texts:?}"
    );
    assert_eq!(code, Some(1000));
    // The lease is released as the session task ends.
    let deadline = std::time::Instant::now() + T;
    while status(&edge)[0].sessions > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&edge)[0].sessions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_42_bosh_client_is_held_back_and_a_frozen_server_ends_the_session() {
    let prosody = Prosody::start();
    let edge = edge(&format!(
        "{FROZEN_LIMIT}[hosts.localhost]\nupstreams = [\"{}\"]\n",
        prosody.addr()
    ))
    .await;
    let (client, created) = BoshClient::create(edge.addr, "wait='20' hold='1'").await;
    assert!(
        created.body.contains("<stream:features"),
        "{}",
        created.body
    );
    prosody.freeze();
    // Like a client with hold=1: two requests in flight, a new one as soon
    // as one is answered.
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    let mut rid = client.first_rid;
    let mut pushed = 0;
    let mut ends = Vec::new();
    let started = std::time::Instant::now();
    loop {
        while in_flight.len() < 2 && pushed < TRIED {
            rid += 1;
            let (client, payload) = (client.clone(), big_message(rid as usize));
            in_flight.push(async move { client.request(rid, "", &payload).await });
            pushed += 200_000;
        }
        let next = futures_util::StreamExt::next(&mut in_flight);
        let Ok(Some(response)) = tokio::time::timeout(T, next).await else {
            panic!("BOSH requests hung after {} MB", pushed >> 20);
        };
        if response.body.contains("type='terminate'") {
            // The held request carries the reason; the other one finds the
            // session gone.
            ends.push(response.body);
            while let Ok(Some(other)) =
                tokio::time::timeout(T, futures_util::StreamExt::next(&mut in_flight)).await
            {
                ends.push(other.body);
            }
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never ended");
    }
    prosody.thaw();
    assert!(
        pushed < HELD_BACK_WITHIN,
        "the client pushed {} MB at a server that reads nothing",
        pushed >> 20
    );
    assert!(
        ends.iter()
            .any(|b| condition(b).as_deref() == Some("remote-connection-failed")),
        "{ends:?}"
    );
    assert_eq!(status(&edge)[0].sessions, 0);
}

/// UP-1, BOSH-100: a static mapping wins over DNS: no query is made at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_1_static_mapping_asks_no_dns() {
    let prosody = Prosody::start();
    let zone = Zone::default().srv(
        "_xmpp-client._tcp.example.test.",
        10,
        1,
        free_port(),
        "elsewhere.test.",
    );
    let dns = TestDns::start(zone).await;
    let edge = edge(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[hosts.\"example.test\"]\nupstreams = [\"{}\"]\n",
        dns.addr,
        prosody.addr()
    ))
    .await;
    let _a = login_to(edge.addr, SRV_DOMAIN, "alice", "alice-secret", "s").await;
    assert!(dns.queries.lock().is_empty(), "{:?}", dns.queries.lock());
}
