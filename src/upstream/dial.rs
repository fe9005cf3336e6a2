//! Opening one upstream connection: TCP, the PROXY header, direct TLS, and
//! the stream negotiation xmpp-edge owns ([`Establish`]).

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::upstream::conn::{ConnSettings, UpstreamConn, tls_handshake};
use crate::upstream::dns::{Dns, DnsError};
use crate::upstream::negotiate::{Establish, EstablishStep, item_to_event};
use crate::upstream::route::{Candidate, TlsMode};
use crate::upstream::tls::TlsContext;
use crate::upstream::{OpenStream, UpstreamEvent, UpstreamFailure};

/// Why a connection attempt did not produce a stream.
#[derive(Debug)]
pub enum DialError {
    /// This upstream cannot be used now.
    Failed(UpstreamFailure),
    /// The server sent us to another host (`see-other-host`).
    Redirect {
        /// Host name or IP literal.
        host: Box<str>,
        /// Port, if given.
        port: Option<u16>,
    },
}

impl From<UpstreamFailure> for DialError {
    fn from(f: UpstreamFailure) -> Self {
        Self::Failed(f)
    }
}

/// Connects TCP to `candidate` (trying each of its addresses), writes the
/// PROXY header first (UP-10), and runs direct TLS when the candidate uses it.
pub async fn open_transport(
    candidate: &Candidate,
    domain: &str,
    tls: &TlsContext,
    proxy_header: Option<&[u8]>,
    dns: &Dns,
    settings: &ConnSettings,
) -> Result<UpstreamConn, UpstreamFailure> {
    let stream = connect_tcp(candidate, dns, settings).await?;
    secure_transport(stream, candidate.tls, domain, tls, proxy_header, settings).await
}

/// TCP keepalive on upstream sockets (UP-42): a server that vanished without
/// a FIN or RST is noticed after about two minutes even on a quiet session.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);
const KEEPALIVE_PROBES: u32 = 4;

fn set_keepalive(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let keepalive = keepalive.with_retries(KEEPALIVE_PROBES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!("cannot enable TCP keepalive upstream: {e}");
    }
}

/// Connects TCP to the first reachable address of `candidate`.
pub async fn connect_tcp(
    candidate: &Candidate,
    dns: &Dns,
    settings: &ConnSettings,
) -> Result<TcpStream, UpstreamFailure> {
    let addresses: Vec<SocketAddr> = match candidate.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, candidate.port)],
        Err(_) => match dns.addresses(&candidate.host).await {
            Ok(ips) => ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, candidate.port))
                .collect(),
            Err(DnsError::NotFound | DnsError::NoRecords) => {
                return Err(UpstreamFailure::Connect(format!(
                    "{}: no such host",
                    candidate.host
                )));
            }
            Err(e) => return Err(UpstreamFailure::Connect(format!("{}: {e}", candidate.host))),
        },
    };
    let mut last = String::new();
    for addr in addresses {
        match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                set_keepalive(&stream);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: connect timed out"),
        }
    }
    Err(UpstreamFailure::Connect(last))
}

/// The PROXY header, then direct TLS if `mode` asks for it.
pub async fn secure_transport(
    mut stream: TcpStream,
    mode: TlsMode,
    domain: &str,
    tls: &TlsContext,
    proxy_header: Option<&[u8]>,
    settings: &ConnSettings,
) -> Result<UpstreamConn, UpstreamFailure> {
    if let Some(header) = proxy_header {
        // UP-10: before anything else, in one write.
        stream
            .write_all(header)
            .await
            .map_err(|e| UpstreamFailure::Lost(e.to_string()))?;
    }
    if mode == TlsMode::Direct {
        let (stream, conn) = tokio::time::timeout(
            settings.handshake_timeout,
            tls_handshake(stream, std::sync::Arc::clone(&tls.direct), domain),
        )
        .await
        .map_err(|_| UpstreamFailure::Tls("handshake timed out".into()))??;
        return Ok(UpstreamConn::new(stream, Some(conn), settings.splitter));
    }
    Ok(UpstreamConn::new(stream, None, settings.splitter))
}

/// Negotiates the stream (first header, STARTTLS when `mode` asks for it) up
/// to the features the client may see; returns them as the first events.
pub async fn establish(
    conn: UpstreamConn,
    mode: TlsMode,
    domain: &str,
    tls: &TlsContext,
    open: OpenStream,
    settings: &ConnSettings,
) -> Result<(UpstreamConn, Vec<UpstreamEvent>), DialError> {
    match tokio::time::timeout(
        settings.handshake_timeout,
        negotiate(conn, mode, domain, tls, open),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(DialError::Failed(UpstreamFailure::Negotiation(
            "the server did not complete stream negotiation in time",
        ))),
    }
}

async fn negotiate(
    mut conn: UpstreamConn,
    mode: TlsMode,
    domain: &str,
    tls: &TlsContext,
    open: OpenStream,
) -> Result<(UpstreamConn, Vec<UpstreamEvent>), DialError> {
    let secure = conn.is_secure();
    let (mut establish, mut step) = Establish::new(open, mode, secure);
    let mut items = std::collections::VecDeque::new();
    loop {
        match step {
            EstablishStep::Write(bytes) => {
                conn.queue(bytes);
                conn.flush_all().await?;
            }
            EstablishStep::StartTls => {
                conn = conn
                    .start_tls(std::sync::Arc::clone(&tls.starttls), domain)
                    .await?;
                step = establish.tls_done();
                continue;
            }
            EstablishStep::Ready(mut events) => {
                // Anything the server sent right behind its features.
                for item in items {
                    events.push(item_to_event(item)?);
                }
                return Ok((conn, events));
            }
            EstablishStep::Redirect { host, port } => {
                return Err(DialError::Redirect { host, port });
            }
            EstablishStep::Fail(failure) => return Err(DialError::Failed(failure)),
        }
        step = loop {
            if let Some(item) = items.pop_front() {
                if let Some(next) = establish.on_item(item) {
                    break next;
                }
                continue;
            }
            conn.readable()
                .await
                .map_err(|e| UpstreamFailure::Lost(e.to_string()))?;
            let mut fresh = Vec::new();
            conn.read_items(&mut fresh)?;
            items.extend(fresh);
        };
    }
}
