//! Credentials never reach the logs, even at the most verbose level: a
//! whole login is logged at TRACE into a buffer, which must not contain the
//! SASL payload or the password. (One test per binary: it installs the
//! process-wide subscriber.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;

use base64::Engine;
use common::bosh::login as bosh_login;
use common::edge::{Edge, config};
use common::prosody::Prosody;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_payloads_and_passwords_are_never_logged() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_env_filter("xmpp_edge=trace")
        .with_writer(move || writer.clone())
        .init();
    let prosody = Prosody::start();
    let edge = Edge::start(config(&prosody.addr(), "")).await;
    let mut alice = bosh_login(edge.addr, "alice", "alice-secret", "log").await;
    let (_bob, _) = common::ws::login(edge.addr, "bob", "bob-secret", "log").await;
    alice.send("<presence xmlns='jabber:client'/>");
    alice
        .expect(std::time::Duration::from_secs(10), "presence", |s| {
            s.starts_with("<presence")
        })
        .await;
    let log = String::from_utf8(buffer.0.lock().clone()).unwrap();
    assert!(
        log.contains("session created"),
        "the log was captured: {log}"
    );
    for (user, password) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        assert!(!log.contains(&payload), "SASL payload of {user} logged");
        assert!(!log.contains(password), "password of {user} logged");
    }
}
