//! Cluster mode against a real Prosody: three xmpp-edge processes on
//! 127.0.0.2, .3 and .4 (loopback), found through a static peer list or a
//! DNS server on loopback, and clients that send each request to another
//! replica in turn, as a load balancer without sticky sessions would.
// Test code may panic and read the wall clock; the product code may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::bosh::{
    BoshClient, BoshStream, HTTPBIND, HttpResponse, Rotation, login_rotating, post, raw_request,
};
use common::dns::{TestDns, Zone};
use common::metrics::sum;
use common::numbered::numbered;
use common::process::EdgeProcess;
use common::prosody::{Prosody, free_port};
use common::xml::{attr, condition};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

const T: Duration = Duration::from_secs(30);
const SECRET: &str = "cluster-test-secret-0123456789";
const IPS: [[u8; 4]; 3] = [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]];

/// How replicas find each other.
enum Discovery {
    /// `cluster.peers`, listing every replica (itself included).
    Static,
    /// `cluster.peer_dns`, answered by a DNS server on loopback.
    Dns(SocketAddr),
}

struct Replicas {
    nodes: Vec<EdgeProcess>,
    /// Each replica's cluster listener.
    internal: Vec<SocketAddr>,
    /// Each replica's node tag.
    tags: Vec<String>,
}

impl Replicas {
    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Which replica issued `sid`.
    fn owner_of(&self, sid: &str) -> usize {
        self.tags
            .iter()
            .position(|t| sid.starts_with(t.as_str()))
            .unwrap_or_else(|| panic!("no replica has the tag of {sid} ({:?})", self.tags))
    }
}

fn ip(i: usize) -> IpAddr {
    IpAddr::from(IPS[i])
}

/// Starts three replicas and waits until each knows the other two.
async fn start(name: &str, prosody: &Prosody, discovery: Discovery, extra: &str) -> Replicas {
    start_with(name, prosody, discovery, "", extra).await
}

async fn start_with(
    name: &str,
    prosody: &Prosody,
    discovery: Discovery,
    server_extra: &str,
    extra: &str,
) -> Replicas {
    let port = free_port();
    let internal: Vec<SocketAddr> = (0..3).map(|i| SocketAddr::new(ip(i), port)).collect();
    let find = match discovery {
        Discovery::Static => format!(
            "peers = [{}]\n",
            internal
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Discovery::Dns(_) => format!("peer_dns = \"edge-peers.cluster.test:{port}\"\n"),
    };
    let dns = match discovery {
        Discovery::Static => String::new(),
        Discovery::Dns(server) => format!("[dns]\nnameservers = [\"{server}\"]\n"),
    };
    let nodes: Vec<EdgeProcess> = (0..3)
        .map(|i| {
            let config = format!(
                "{dns}[cluster]\nenabled = true\nlisten = \"{}\"\nsecret = \"{SECRET}\"\n{find}\
                 refresh_secs = 1\nforward_timeout_secs = 2\n{extra}\n\
                 [hosts.localhost]\nupstreams = [\"{}\"]\n",
                internal[i],
                prosody.addr()
            );
            EdgeProcess::start_at(&format!("{name}-{i}"), ip(i), server_extra, &config)
        })
        .collect();
    let mut tags = Vec::new();
    for node in &nodes {
        let deadline = Instant::now() + T;
        loop {
            let status = admin_status(node).await;
            let peers = status["cluster"]["peers"].as_array().map_or(0, Vec::len);
            if peers == 2 {
                tags.push(status["cluster"]["node"].as_str().unwrap().to_owned());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} did not find its peers: {status}\n{}",
                node.addr,
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Replicas {
        nodes,
        internal,
        tags,
    }
}

async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    raw_request(addr, request.as_bytes()).await
}

async fn admin_status(node: &EdgeProcess) -> serde_json::Value {
    let r = get(node.admin_addr, "/admin/status").await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

async fn metrics(node: &EdgeProcess) -> String {
    get(node.metrics_addr, "/metrics").await.body
}

/// Creates a session at `addr` and rotates its later requests over `all`.
async fn login_at(
    all: &[SocketAddr],
    at: SocketAddr,
    user: &str,
    resource: &str,
) -> (BoshStream, Arc<Rotation>) {
    let password = format!("{user}-secret");
    let rotation = Rotation::starting_at(all, at);
    let stream = login_rotating(Arc::clone(&rotation), user, &password, resource).await;
    (stream, rotation)
}

/// `n` numbered chat messages each way, then nothing more.
async fn chat(a: &mut BoshStream, b: &mut BoshStream, n: u64) {
    let (a_jid, b_jid) = (a.jid.clone(), b.jid.clone());
    for i in 0..n {
        a.send(numbered(&b_jid, "a", i));
        b.send(numbered(&a_jid, "b", i));
        if i % 10 == 9 {
            // Spread over many requests, so every replica carries some.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    b.expect_numbered("a", n, T).await;
    a.expect_numbered("b", n, T).await;
    for s in [a, b] {
        s.expect_no_more_messages(Duration::from_millis(300)).await;
    }
}

async fn logout(stream: &mut BoshStream) {
    stream.terminate("<presence type='unavailable' xmlns='jabber:client'/>");
    let end = stream.terminated(T).await;
    assert_eq!(attr(&end, "type").as_deref(), Some("terminate"), "{end}");
    assert_eq!(condition(&end), None, "{end}");
}

/// One request for `sid` at `addr`, answered within `limit`.
async fn request_quickly(addr: SocketAddr, sid: &str, limit: Duration) -> HttpResponse {
    let started = Instant::now();
    let body = format!("<body rid='123456' sid='{sid}' {HTTPBIND}/>");
    let r = post(addr, "/http-bind", &body).await;
    assert!(
        started.elapsed() < limit,
        "answered after {:?}: {}",
        started.elapsed(),
        r.body
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_peers_any_replica_serves_every_request_of_a_session() {
    let prosody = Prosody::start();
    let replicas = start("static", &prosody, Discovery::Static, "").await;
    let all = replicas.addrs();
    let (mut alice, alice_rot) = login_at(&all, all[0], "alice", "a").await;
    let (mut bob, bob_rot) = login_at(&all, all[1], "bob", "b").await;
    // The sid names its owner (8 hex digits of tag, then 128 random bits)
    // and nothing else.
    for (sid, owner) in [(&alice.sid, 0), (&bob.sid, 1)] {
        assert_eq!(sid.len(), 40, "{sid}");
        assert!(sid.bytes().all(|b| b.is_ascii_hexdigit()), "{sid}");
        assert_eq!(replicas.owner_of(sid), owner);
        // 127.0.0.x in hex: a random sid holds it once in ~10^7 sessions,
        // unlike "127", which a random sid holds about once in a hundred.
        assert!(!sid.contains("7f0000"), "{sid}");
    }
    chat(&mut alice, &mut bob, 200).await;
    logout(&mut alice).await;
    logout(&mut bob).await;
    // Every replica took requests, so most were forwarded: every request
    // that reached a replica other than the session's owner. How many
    // requests a chat takes depends on how the server's stanzas batch.
    let mut to_non_owners = 0;
    for (rotation, owner) in [(&alice_rot, all[0]), (&bob_rot, all[1])] {
        let sent = rotation.sent_to.lock().clone();
        for addr in &all {
            assert!(
                sent.iter().filter(|a| *a == addr).count() > 5,
                "{addr} barely used: {sent:?}"
            );
        }
        to_non_owners += sent.iter().filter(|a| **a != owner).count();
    }
    let mut forwarded = 0.0;
    for node in &replicas.nodes {
        let text = metrics(node).await;
        forwarded += sum(
            &text,
            "xmpp_edge_cluster_forwarded_total",
            &["outcome=\"ok\""],
        );
        assert_eq!(
            sum(&text, "xmpp_edge_cluster_peers", &["state=\"ready\""]),
            2.0,
            "{text}"
        );
        assert_eq!(
            sum(
                &text,
                "xmpp_edge_cluster_forwarded_total",
                &["outcome=\"failed\""]
            ),
            0.0
        );
    }
    // Slack for a request still in flight when its session ended.
    assert!(
        forwarded >= 0.9 * to_non_owners as f64 && to_non_owners > 30,
        "{forwarded} requests forwarded of {to_non_owners} sent to a replica not owning the session"
    );
    // The sessions are gone everywhere: no replica knows them any more.
    for addr in &all {
        let r = request_quickly(*addr, &alice.sid, Duration::from_secs(2)).await;
        assert_eq!(condition(&r.body).as_deref(), Some("item-not-found"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_peers_a_killed_replica_ends_only_its_sessions_promptly() {
    let prosody = Prosody::start();
    let mut zone = Zone::default();
    for i in 0..3 {
        zone = zone.address("edge-peers.cluster.test", ip(i));
    }
    let dns = TestDns::start(zone).await;
    let mut replicas = start("dns", &prosody, Discovery::Dns(dns.addr), "").await;
    assert!(
        dns.queries
            .lock()
            .iter()
            .any(|q| q.starts_with("edge-peers.cluster.test.")),
        "the peers were found through the test DNS server"
    );
    let all = replicas.addrs();
    let (mut alice, _) = login_at(&all, all[0], "alice", "a").await;
    let (mut bob, _) = login_at(&all, all[1], "bob", "b").await;
    let (mut carol, carol_rot) = login_at(&all, all[2], "carol", "c").await;
    assert_eq!(replicas.owner_of(&carol.sid), 2);
    chat(&mut alice, &mut bob, 20).await;

    // Replica 2 dies without a word; the load balancer stops sending to it.
    let dead = all[2];
    replicas.nodes[2].kill();
    carol_rot.remove(dead);
    let killed = Instant::now();
    // Carol's session lived there: her next request, sent to a survivor,
    // gets item-not-found at once (never a hang), so her client reconnects.
    let end = carol.terminated(Duration::from_secs(10)).await;
    assert_eq!(condition(&end).as_deref(), Some("item-not-found"), "{end}");
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "carol's end took {:?}",
        killed.elapsed()
    );
    // The others carry on, still through both survivors.
    chat(&mut alice, &mut bob, 50).await;
    // Whichever survivor gets it, a request for the dead replica's session
    // is answered quickly, also once the dead peer is forgotten.
    for addr in &all[..2] {
        let r = request_quickly(*addr, &carol.sid, Duration::from_secs(3)).await;
        assert_eq!(condition(&r.body).as_deref(), Some("item-not-found"));
    }
    for node in &replicas.nodes[..2] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = admin_status(node).await;
            if status["cluster"]["peers"].as_array().map(Vec::len) == Some(1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the dead replica is not forgotten: {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for addr in &all[..2] {
        let r = request_quickly(*addr, &carol.sid, Duration::from_secs(1)).await;
        assert_eq!(condition(&r.body).as_deref(), Some("item-not-found"));
    }
    logout(&mut alice).await;
    logout(&mut bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sids_and_strangers_on_the_internal_listener_are_refused() {
    let prosody = Prosody::start();
    let replicas = start("forged", &prosody, Discovery::Static, "").await;
    let all = replicas.addrs();
    let (alice, _) = login_at(&all, all[0], "alice", "a").await;
    // A random tag, a known tag with a random rest, a real sid with one
    // digit changed, and an untagged sid: all item-not-found, promptly, at
    // every replica.
    let random_rest = "0123456789abcdef0123456789abcdef";
    let mut forged = vec![
        format!("deadbeef{random_rest}"),
        format!("{}{random_rest}", replicas.tags[1]),
        format!("{}{random_rest}", replicas.tags[0]),
        random_rest.to_owned(),
    ];
    let mut flipped = alice.sid.clone().into_bytes();
    flipped[39] = if flipped[39] == b'0' { b'1' } else { b'0' };
    forged.push(String::from_utf8(flipped).unwrap());
    for sid in &forged {
        for addr in &all {
            let r = request_quickly(*addr, sid, Duration::from_secs(2)).await;
            assert_eq!(r.status, 200);
            assert_eq!(
                condition(&r.body).as_deref(),
                Some("item-not-found"),
                "{sid} at {addr}: {}",
                r.body
            );
        }
    }
    // The real session was not disturbed by the guesses.
    assert!(
        admin_status(&replicas.nodes[0]).await["bosh_sessions"]
            .as_u64()
            .is_some_and(|n| n == 1)
    );

    // The internal listener: HTTP/2 with the secret only.
    let internal = replicas.internal[0];
    let node_path = "/cluster/v1/node";
    assert_eq!(h2c(internal, "GET", node_path, None, "").await.0, 401);
    assert_eq!(
        h2c(
            internal,
            "GET",
            node_path,
            Some("wrong-secret-wrong-secret"),
            ""
        )
        .await
        .0,
        403
    );
    let creation = format!(
        "<body rid='1' to='localhost' wait='5' hold='1' ver='1.6' xmpp:version='1.0' {HTTPBIND}/>"
    );
    let (status, body) = h2c(internal, "POST", "/cluster/v1/bosh", None, &creation).await;
    assert_eq!(status, 401, "no session for strangers: {body}");
    let (status, body) = h2c(internal, "POST", "/admin/status", Some(SECRET), "").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = h2c(internal, "GET", node_path, Some(SECRET), "").await;
    assert_eq!(status, 200);
    assert!(body.contains(&replicas.tags[0]), "{body}");
    // Plain HTTP/1.1 gets nothing.
    let mut stream = tokio::net::TcpStream::connect(internal).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"GET /cluster/v1/node HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = tokio::time::timeout(T, common::bosh::read_response(&mut stream)).await;
    assert!(
        r.as_ref().map_or(true, |r| r.is_err()),
        "HTTP/1.1 answered: {r:?}"
    );
    assert_eq!(
        admin_status(&replicas.nodes[0]).await["bosh_sessions"].as_u64(),
        Some(1),
        "no session created from outside"
    );
}

/// One HTTP/2 (prior knowledge) request; returns status and body.
async fn h2c(
    addr: SocketAddr,
    method: &str,
    path: &str,
    secret: Option<&str>,
    body: &str,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(secret) = secret {
        request = request.header("authorization", format!("Bearer {secret}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(T, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_replica_forwards_new_sessions_and_keeps_its_own() {
    let prosody = Prosody::start();
    let replicas = start_with(
        "drain",
        &prosody,
        Discovery::Static,
        "shutdown_delay_secs = 60\nshutdown_grace_secs = 5",
        "",
    )
    .await;
    let all = replicas.addrs();
    let (mut alice, _) = login_at(&all, all[0], "alice", "a").await;
    let (mut bob, _) = login_at(&all, all[1], "bob", "b").await;
    replicas.nodes[0].signal("TERM");
    // The peers learn that replica 0 is draining.
    for node in &replicas.nodes[1..] {
        let deadline = Instant::now() + T;
        loop {
            let status = admin_status(node).await;
            let draining = status["cluster"]["peers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["tag"] == replicas.tags[0].as_str() && p["draining"] == true);
            if draining {
                break;
            }
            assert!(Instant::now() < deadline, "drain not seen: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A new session asked of the draining replica is created elsewhere,
    // and its client sees an ordinary creation response.
    for _ in 0..4 {
        let (client, r) = BoshClient::create(all[0], "wait='5' hold='1'").await;
        assert!(r.body.contains("<stream:features"), "{}", r.body);
        let owner = replicas.owner_of(&client.sid);
        assert_ne!(owner, 0, "a draining replica took a new session");
    }
    // Logging in through the draining replica still works (created on a peer).
    let (mut carol, _) = login_at(&all, all[0], "carol", "c").await;
    assert_ne!(replicas.owner_of(&carol.sid), 0);
    // Its own sessions go on until the delay is over: alice (owned by the
    // draining replica) still chats, through every replica.
    chat(&mut alice, &mut bob, 20).await;
    let text = metrics(&replicas.nodes[0]).await;
    assert!(
        sum(
            &text,
            "xmpp_edge_cluster_forwarded_total",
            &["outcome=\"ok\""]
        ) >= 5.0,
        "{text}"
    );
    logout(&mut carol).await;
    logout(&mut bob).await;
    logout(&mut alice).await;
}

/// Not run by default: `cargo test --release --test cluster -- --ignored --nocapture`.
/// Round trips of one session's XMPP ping, sent alternately to the
/// replica that owns it (local) and to another one (forwarded), so both
/// see the same Prosody and the same machine load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; prints figures"]
async fn measure_forwarded_versus_local_round_trip() {
    let prosody = Prosody::start();
    let replicas = start("bench", &prosody, Discovery::Static, "").await;
    let all = replicas.addrs();
    let (created, r) = BoshClient::create(all[0], "wait='10' hold='1'").await;
    assert!(r.body.contains("PLAIN"), "{}", r.body);
    let mut rid = created.first_rid + 1;
    let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXNlY3JldA==</auth>";
    assert!(
        created
            .request(rid, "", auth)
            .await
            .body
            .contains("<success")
    );
    rid += 1;
    created
        .request(rid, "to='localhost' xml:lang='en' xmpp:restart='true'", "")
        .await;
    rid += 1;
    let bind = "<iq type='set' id='bind_1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>";
    assert!(created.request(rid, "", bind).await.body.contains("<jid>"));
    rid += 1;
    let via = |addr| BoshClient {
        addr,
        ..created.clone()
    };
    let local = via(all[0]);
    let forwarded = via(all[1]);
    let rounds = 1000;
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..rounds * 2 {
        let which = i % 2;
        let client = if which == 0 { &local } else { &forwarded };
        let ping = format!(
            "<iq type='get' id='p{i}' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        let started = Instant::now();
        let r = client.request(rid, "", &ping).await;
        let took = started.elapsed();
        assert!(r.body.contains(&format!("id='p{i}'")), "{}", r.body);
        rid += 1;
        if i >= 20 {
            times[which].push(took); // after a warm-up
        }
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        let at = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[at].as_secs_f64() * 1000.0
    };
    let [mut l, mut f] = times;
    println!(
        "XMPP ping round trip over BOSH, {} each (new TCP connection per request):",
        l.len()
    );
    println!(
        "  local      p50 {:.3} ms  p99 {:.3} ms",
        pct(&mut l, 0.5),
        pct(&mut l, 0.99)
    );
    println!(
        "  forwarded  p50 {:.3} ms  p99 {:.3} ms",
        pct(&mut f, 0.5),
        pct(&mut f, 0.99)
    );
}
