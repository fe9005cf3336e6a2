//! A minimal scripted XMPP server that records every byte xmpp-edge sends.
//! Used only for wire-level details a real server does not expose (whether
//! a closing tag was sent, exact header bytes); features are always also
//! tested against the real Prosody.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server answers.
#[derive(Clone)]
pub struct Script {
    /// Features after the first header.
    pub features: &'static str,
    /// Bytes sent after the features (e.g. whitespace keepalives, a stanza).
    pub after_features: &'static str,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            features: "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            after_features: "",
        }
    }
}

/// A listening recorder; one connection is served.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    closed: Arc<Mutex<bool>>,
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='rec-1' version='1.0'>";

impl RecordingUpstream {
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(false));
        let (rec, done) = (Arc::clone(&received), Arc::clone(&closed));
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let mut headers_seen = 0;
            let mut authed = false;
            loop {
                let n = match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => n,
                };
                let text = {
                    let mut r = rec.lock();
                    r.extend_from_slice(&buf[..n]);
                    String::from_utf8_lossy(&r).to_string()
                };
                let headers = text.matches("<stream:stream").count();
                while headers_seen < headers {
                    headers_seen += 1;
                    let features = if headers_seen == 1 {
                        format!("{HEADER}{}{}", script.features, script.after_features)
                    } else {
                        format!(
                            "{HEADER}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
                        )
                    };
                    let _ = stream.write_all(features.as_bytes()).await;
                }
                if !authed && text.contains("</auth>") {
                    authed = true;
                    let _ = stream
                        .write_all(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
                        .await;
                }
                if text.ends_with("</stream:stream>") {
                    let _ = stream.write_all(b"</stream:stream>").await;
                }
            }
            *done.lock() = true;
        });
        Self {
            addr,
            received,
            closed,
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock()).to_string()
    }

    /// Everything received so far, as bytes.
    pub fn received_bytes(&self) -> Vec<u8> {
        self.received.lock().clone()
    }

    /// Waits until xmpp-edge closed the connection.
    pub async fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if *self.closed.lock() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}
