//! A WebSocket test client (tokio-tungstenite) that checks every message it
//! receives against the rules that hold for all messages.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response};
use tokio_tungstenite::tungstenite::{Error, Message};

use super::xml::{assert_namespace_well_formed, attr, root_name};

pub const OPEN: &str = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0' xml:lang='en'/>";
pub const CLOSE: &str = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";

pub struct WsClient {
    pub ws: WebSocketStream<TcpStream>,
    pub response: Response<Option<Vec<u8>>>,
    /// The `id` of the latest `<open/>` received: the server's stream id.
    pub stream_id: Option<String>,
}

/// What `recv` saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Text(String),
    Close(Option<u16>),
    Other(String),
    Ended,
}

/// Opens a WebSocket to `path`, offering `protocols` and sending `origin`.
pub async fn connect_with(
    addr: SocketAddr,
    path: &str,
    protocols: Option<&str>,
    origin: Option<&str>,
    recv_buffer: Option<u32>,
) -> Result<WsClient, Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    if let Some(p) = protocols {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    if let Some(o) = origin {
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_str(o).unwrap());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let stream = socket.connect(addr).await.map_err(Error::Io)?;
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(WsClient {
        ws,
        response,
        stream_id: None,
    })
}

/// Connects to `/xmpp-websocket` from the local address `source` (another
/// 127.0.0.x, to be a different client address).
pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> WsClient {
    let request = format!("ws://{addr}/xmpp-websocket")
        .into_client_request()
        .unwrap();
    let mut request = request;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    WsClient {
        ws,
        response,
        stream_id: None,
    }
}

/// Connects to `/xmpp-websocket` offering `xmpp`.
pub async fn connect(addr: SocketAddr) -> WsClient {
    connect_with(addr, "/xmpp-websocket", Some("xmpp"), None, None)
        .await
        .expect("WebSocket handshake")
}

/// RFC 7395 rules for every message a client receives.
pub fn check_message(text: &str) {
    assert!(
        text.starts_with('<'),
        "WS-15: message must start with '<': {text:?}"
    );
    assert!(
        !text.starts_with("<?xml"),
        "WS-14: no XML declaration: {text}"
    );
    assert_namespace_well_formed(text);
    let (ns, local) = root_name(text);
    assert!(
        !ns.is_empty(),
        "WS-9/11: every message declares its namespace: {text}"
    );
    if matches!(local.as_str(), "message" | "presence" | "iq") {
        assert_eq!(ns, "jabber:client", "WS-11: {text}");
    }
    assert_ne!(local, "stream", "WS-20: never a stream header: {text}");
}

impl WsClient {
    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next frame within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Got {
        match tokio::time::timeout(timeout, self.ws.next()).await {
            Err(_) => Got::Ended,
            Ok(None) => Got::Ended,
            Ok(Some(Err(e))) => Got::Other(format!("error: {e}")),
            Ok(Some(Ok(Message::Text(t)))) => {
                check_message(&t);
                if t.starts_with("<open ") {
                    self.stream_id = attr(&t, "id");
                }
                Got::Text(t.to_string())
            }
            Ok(Some(Ok(Message::Close(frame)))) => Got::Close(frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(other))) => Got::Other(format!("{other:?}")),
        }
    }

    /// The next text message; panics on anything else.
    pub async fn text(&mut self) -> String {
        match self.recv(Duration::from_secs(15)).await {
            Got::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Text messages until one matches `pred`.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        loop {
            match self.recv(Duration::from_secs(15)).await {
                Got::Text(t) if pred(&t) => return t,
                Got::Text(_) => {}
                other => panic!("waiting for {what}: {other:?}"),
            }
        }
    }

    /// Everything until the WebSocket closes: (texts, close code).
    pub async fn until_closed(&mut self) -> (Vec<String>, Option<u16>) {
        let mut texts = Vec::new();
        loop {
            match self.recv(Duration::from_secs(15)).await {
                Got::Text(t) => texts.push(t),
                Got::Close(code) => return (texts, code),
                Got::Ended => return (texts, None),
                Got::Other(o) if o.starts_with("error") => return (texts, None),
                Got::Other(_) => {}
            }
        }
    }
}

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Logs in over WebSocket with SASL PLAIN and binds `resource`; returns the client and its JID.
pub async fn login(
    addr: SocketAddr,
    user: &str,
    password: &str,
    resource: &str,
) -> (WsClient, String) {
    login_on(connect(addr).await, user, password, resource).await
}

/// [`login`] on an already connected client.
pub async fn login_on(
    c: WsClient,
    user: &str,
    password: &str,
    resource: &str,
) -> (WsClient, String) {
    let mut c = authenticate_on(c, user, password).await;
    c.send(&format!(
        "<iq type='set' id='bind_1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
    ))
    .await;
    let bound = c.expect("bind result", |t| t.contains("bind_1")).await;
    let jid = bound
        .split("<jid>")
        .nth(1)
        .and_then(|s| s.split("</jid>").next())
        .expect("jid")
        .to_owned();
    (c, jid)
}

/// Authenticates with SASL PLAIN and restarts the stream, stopping before
/// resource binding (where XEP-0198 resumption goes instead).
pub async fn authenticate(addr: SocketAddr, user: &str, password: &str) -> WsClient {
    authenticate_on(connect(addr).await, user, password).await
}

/// [`authenticate`] on an already connected client.
pub async fn authenticate_on(mut c: WsClient, user: &str, password: &str) -> WsClient {
    c.send(OPEN).await;
    let open = c.text().await;
    assert!(
        open.starts_with("<open ") && attr(&open, "id").is_some(),
        "{open}"
    );
    let features = c.text().await;
    assert!(
        features.contains("<mechanism>PLAIN</mechanism>"),
        "{features}"
    );
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        plain(user, password)
    ))
    .await;
    let success = c.text().await;
    assert!(success.starts_with("<success"), "{success}");
    c.send(OPEN).await;
    let reopened = c.text().await;
    assert!(reopened.starts_with("<open "), "{reopened}");
    assert_ne!(
        attr(&reopened, "id"),
        attr(&open, "id"),
        "a new stream after the restart"
    );
    let features = c.text().await;
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{features}"
    );
    c
}
