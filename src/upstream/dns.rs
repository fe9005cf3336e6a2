//! DNS for the upstream leg, through hickory-resolver: SRV discovery
//! (RFC 6120 §3.2.1, XEP-0368) and address lookups. The resolver caches
//! answers for their TTL. Its name servers are configurable, so tests and
//! benchmarks use a server on loopback instead of the system's.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use crate::upstream::route::SrvRecord;

/// What a lookup found out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN).
    #[error("the name does not exist")]
    NotFound,
    /// The name exists but has no records of the type asked for.
    #[error("no records")]
    NoRecords,
    /// The lookup itself failed (timeout, server failure).
    #[error("DNS lookup failed: {0}")]
    Failed(String),
}

/// The resolver shared by all sessions.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// A resolver asking `nameservers`, or the system's when empty.
    pub fn new(nameservers: &[SocketAddr]) -> Result<Self, String> {
        let provider = TokioRuntimeProvider::default();
        let builder = if nameservers.is_empty() {
            Resolver::builder(provider).map_err(|e| e.to_string())?
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let resolver = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { resolver })
    }

    /// SRV records of both `_xmpp-client._tcp` and `_xmpps-client._tcp` (UP-2, UP-6).
    pub async fn srv(&self, domain: &str) -> Result<Vec<SrvRecord>, DnsError> {
        let plain = format!("_xmpp-client._tcp.{domain}.");
        let tls = format!("_xmpps-client._tcp.{domain}.");
        let (plain, tls) = tokio::join!(self.srv_of(&plain, false), self.srv_of(&tls, true));
        let mut records = match (plain, tls) {
            (Err(DnsError::Failed(e)), _) | (_, Err(DnsError::Failed(e))) => {
                return Err(DnsError::Failed(e));
            }
            (a, b) => {
                let mut all = a.unwrap_or_default();
                all.extend(b.unwrap_or_default());
                all
            }
        };
        records.sort_by_key(|r| (r.priority, r.direct_tls));
        Ok(records)
    }

    async fn srv_of(&self, name: &str, direct_tls: bool) -> Result<Vec<SrvRecord>, DnsError> {
        let lookup = self.resolver.srv_lookup(name).await.map_err(classify)?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvRecord {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: srv
                        .target
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_owned()
                        .into_boxed_str(),
                    direct_tls,
                }),
                _ => None,
            })
            .map(|mut r| {
                if r.target.is_empty() {
                    r.target = ".".into();
                }
                r
            })
            .collect())
    }

    /// The addresses of `host` (hosts file first, then DNS).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let lookup = self.resolver.lookup_ip(host).await.map_err(classify)?;
        let addresses: Vec<IpAddr> = lookup.iter().collect();
        if addresses.is_empty() {
            return Err(DnsError::NoRecords);
        }
        Ok(addresses)
    }
}

fn classify(error: hickory_resolver::net::NetError) -> DnsError {
    if error.is_nx_domain() {
        DnsError::NotFound
    } else if error.is_no_records_found() {
        DnsError::NoRecords
    } else {
        DnsError::Failed(error.to_string())
    }
}
