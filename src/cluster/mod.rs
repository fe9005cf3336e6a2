//! Cluster mode: several replicas behind one load balancer, any of which
//! takes any BOSH request. A sid starts with the tag of the replica that
//! owns the session ([`identity`]); a replica that gets a request for
//! another's session forwards it over the internal listener
//! ([`forward`], [`listener`]) to the owner, found by asking every
//! discovered peer for its tag ([`discovery`]). WebSocket needs none of
//! this: a WebSocket is one connection, so it stays where it landed.
//!
//! All of this is I/O; the protocol cores never see it.

pub mod discovery;
pub mod forward;
pub mod identity;
pub mod listener;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use rand::seq::SliceRandom;
use tokio::sync::Notify;

use crate::config::{ClusterConfig, Config};
use crate::sessions::NodeTag;
use crate::upstream::dns::Dns;
use crate::upstream::proxy_protocol::ClientInfo;

pub use forward::{Answer, ForwardError, Forwarder};
pub use identity::{Identity, IdentityError};

/// Where peers answer with their tag and state.
pub const NODE_PATH: &str = "/cluster/v1/node";
/// Where peers take forwarded BOSH requests.
pub const BOSH_PATH: &str = "/cluster/v1/bosh";

/// The client's address as the forwarding replica saw it (after trusted
/// proxies), so the owner's per-address limits, PROXY headers and logs
/// name the real client.
pub const CLIENT_HEADER: HeaderName = HeaderName::from_static("x-xmpp-edge-client");
/// The address the client reached.
pub const LOCAL_HEADER: HeaderName = HeaderName::from_static("x-xmpp-edge-local");
/// TLS version of the client's leg.
pub const TLS_HEADER: HeaderName = HeaderName::from_static("x-xmpp-edge-tls");
/// ALPN of the client's leg.
pub const ALPN_HEADER: HeaderName = HeaderName::from_static("x-xmpp-edge-alpn");
/// The name the client asked for (SNI or `Host`).
pub const AUTHORITY_HEADER: HeaderName = HeaderName::from_static("x-xmpp-edge-authority");
/// The forwarding replica's tag, for the owner's logs.
pub const FROM_HEADER: HeaderName = HeaderName::from_static("x-xmpp-edge-from");

/// Why cluster mode could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The secret.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The resolver for `cluster.peer_dns` and named static peers.
    #[error("cluster.peer_dns: cannot set up DNS: {0}")]
    Dns(String),
}

/// What a peer says about itself (`GET /cluster/v1/node`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// Its node tag (8 hex digits).
    pub tag: String,
    /// Whether it is draining: it takes no new sessions.
    pub draining: bool,
    /// Its version, for operators.
    pub version: String,
}

/// A known peer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Peer {
    /// Its node tag.
    #[serde(serialize_with = "display")]
    pub tag: NodeTag,
    /// Its internal listener.
    pub addr: SocketAddr,
    /// Whether it is draining.
    pub draining: bool,
    /// Discovery rounds it did not answer in a row.
    #[serde(skip)]
    pub missed: u8,
}

fn display<S: serde::Serializer>(tag: &NodeTag, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(tag)
}

/// Where a request for a sid goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This replica (or an untagged sid: looked up here, and not found).
    Local,
    /// A known peer.
    Peer(SocketAddr),
    /// A tag no live peer has: the owner is gone, or the sid is forged.
    Unknown,
}

/// Cluster state shared by the listeners.
#[derive(Debug)]
pub struct Cluster {
    /// This replica.
    pub identity: Identity,
    config: ClusterConfig,
    peers: ArcSwap<HashMap<NodeTag, Peer>>,
    forwarder: Forwarder,
    dns: Option<Dns>,
    /// Wakes discovery early (a peer could not be reached).
    refresh_now: Notify,
}

impl Cluster {
    /// Sets up cluster mode from `config` (which has it enabled).
    pub fn new(config: &Config) -> Result<Self, ClusterError> {
        let c = &config.cluster;
        let identity = Identity::new(c)?;
        let needs_dns = !c.peer_dns.is_empty()
            || c.peers.iter().any(|p| {
                crate::config::parse_host_port(p)
                    .is_some_and(|(host, _)| host.parse::<std::net::IpAddr>().is_err())
            });
        let dns = match needs_dns {
            true => Some(Dns::new(&config.dns.nameservers).map_err(ClusterError::Dns)?),
            false => None,
        };
        Ok(Self {
            identity,
            forwarder: Forwarder::new(Duration::from_secs(u64::from(c.forward_timeout_secs))),
            config: c.clone(),
            peers: ArcSwap::from_pointee(HashMap::new()),
            dns,
            refresh_now: Notify::new(),
        })
    }

    /// This replica's tag.
    pub fn tag(&self) -> NodeTag {
        self.identity.tag
    }

    /// The `[cluster]` section in force.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Bound on connecting to a peer.
    pub fn forward_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.config.forward_timeout_secs))
    }

    /// The peers known now (not this replica).
    pub fn peers(&self) -> Vec<Peer> {
        let mut peers: Vec<Peer> = self.peers.load().values().cloned().collect();
        peers.sort_by_key(|p| p.addr);
        peers
    }

    /// Who owns the session `sid`.
    pub fn owner(&self, sid: &str) -> Owner {
        match NodeTag::of_sid(sid) {
            None => Owner::Local,
            Some(tag) if tag == self.tag() => Owner::Local,
            Some(tag) => match self.peers.load().get(&tag) {
                Some(peer) => Owner::Peer(peer.addr),
                None => Owner::Unknown,
            },
        }
    }

    /// Peers that take new sessions, in random order (spreads the sessions
    /// of a draining replica).
    pub fn ready_peers(&self) -> Vec<SocketAddr> {
        let mut ready: Vec<SocketAddr> = self
            .peers
            .load()
            .values()
            .filter(|p| !p.draining)
            .map(|p| p.addr)
            .collect();
        ready.shuffle(&mut rand::rng());
        ready
    }

    /// Asks discovery to run now instead of at the next period.
    pub fn refresh_soon(&self) {
        self.refresh_now.notify_one();
    }

    /// Forwards a BOSH request body to the peer at `addr`, with the
    /// client's details; waits up to `limit` for the answer.
    pub async fn forward_bosh(
        &self,
        addr: SocketAddr,
        body: Bytes,
        client: &ClientInfo,
        request_headers: &HeaderMap,
        limit: Duration,
    ) -> Result<Answer, ForwardError> {
        let mut request =
            forward::request(Method::POST, addr, BOSH_PATH, self.identity.bearer(), body).map_err(
                |e| ForwardError::Unreachable {
                    addr,
                    reason: e.to_string(),
                },
            )?;
        let h = request.headers_mut();
        // The owner answers CORS itself, from the same configuration.
        for name in [header::ORIGIN, header::CONTENT_TYPE] {
            if let Some(value) = request_headers.get(&name) {
                h.insert(name, value.clone());
            }
        }
        put_client(h, client);
        if let Ok(tag) = HeaderValue::from_str(&self.tag().to_string()) {
            h.insert(FROM_HEADER, tag);
        }
        self.forwarder.send(addr, request, limit).await
    }

    /// Asks the peer at `addr` for its tag and state.
    pub async fn probe(&self, addr: SocketAddr) -> Result<NodeStatus, ForwardError> {
        let request = forward::request(
            Method::GET,
            addr,
            NODE_PATH,
            self.identity.bearer(),
            Bytes::new(),
        )
        .map_err(|e| ForwardError::Unreachable {
            addr,
            reason: e.to_string(),
        })?;
        let failed = |reason: String| ForwardError::Failed { addr, reason };
        let answer = self
            .forwarder
            .send(addr, request, self.forward_timeout())
            .await?;
        if !answer.status.is_success() {
            return Err(failed(format!("answered {}", answer.status)));
        }
        serde_json::from_slice(&answer.body).map_err(|e| failed(format!("bad answer: {e}")))
    }
}

/// Writes `client` into the internal request headers.
fn put_client(h: &mut HeaderMap, client: &ClientInfo) {
    let mut put = |name: HeaderName, value: Option<String>| {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    };
    put(CLIENT_HEADER, client.source.map(|a| a.to_string()));
    put(LOCAL_HEADER, client.destination.map(|a| a.to_string()));
    put(TLS_HEADER, client.tls_version.map(str::to_owned));
    put(ALPN_HEADER, client.alpn.map(str::to_owned));
    put(
        AUTHORITY_HEADER,
        client.authority.as_deref().map(str::to_owned),
    );
}

/// Reads what [`put_client`] wrote (on the owner).
pub fn client_from(h: &HeaderMap) -> ClientInfo {
    let text = |name: &HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    let addr = |name: &HeaderName| text(name).and_then(|v| v.parse::<SocketAddr>().ok());
    ClientInfo {
        source: addr(&CLIENT_HEADER),
        destination: addr(&LOCAL_HEADER),
        tls_version: match text(&TLS_HEADER) {
            Some("TLSv1.3") => Some("TLSv1.3"),
            Some("TLSv1.2") => Some("TLSv1.2"),
            _ => None,
        },
        authority: text(&AUTHORITY_HEADER).map(Box::from),
        alpn: match text(&ALPN_HEADER) {
            Some("h2") => Some("h2"),
            Some("http/1.1") => Some("http/1.1"),
            _ => None,
        },
        transport: Some("bosh"),
    }
}

/// Turns a peer's answer into ours, minus hop-by-hop headers.
pub fn relay(answer: Answer) -> crate::http::Response {
    let mut response = crate::http::Response::new(answer.body);
    *response.status_mut() = answer.status;
    let h = response.headers_mut();
    for (name, value) in &answer.headers {
        if name != header::CONNECTION
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
            && name.as_str() != "keep-alive"
        {
            h.append(name.clone(), value.clone());
        }
    }
    response
}

/// Runs discovery and the internal listener until aborted.
pub fn spawn(
    cluster: Arc<Cluster>,
    state: Arc<crate::http::AppState>,
    listener: tokio::net::TcpListener,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(discovery::run(Arc::clone(&cluster), Arc::clone(&state))),
        tokio::spawn(listener::serve(listener, state)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_details_survive_the_hop() {
        let client = ClientInfo {
            source: Some("203.0.113.9:4711".parse().unwrap()),
            destination: Some("10.0.0.5:5280".parse().unwrap()),
            tls_version: Some("TLSv1.3"),
            authority: Some("chat.example.com".into()),
            alpn: Some("h2"),
            transport: Some("bosh"),
        };
        let mut h = HeaderMap::new();
        put_client(&mut h, &client);
        assert_eq!(client_from(&h), client);
        assert_eq!(
            client_from(&HeaderMap::new()).source,
            None,
            "nothing sent, nothing believed"
        );
    }
}
