//! Finding peers: the static list and the A/AAAA records of
//! `cluster.peer_dns`, plus every peer already known (so a replica that
//! left DNS when it went unready keeps its sessions reachable while it
//! drains). Each candidate is asked for its tag and state every
//! `refresh_secs`; only peers that answer are forwarded to.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::cluster::{Cluster, Peer};
use crate::http::AppState;
use crate::sessions::NodeTag;

/// Rounds in a row a known peer may miss before it is forgotten.
const MAX_MISSED: u8 = 1;

/// Refreshes the peer map until aborted.
pub async fn run(cluster: Arc<Cluster>, state: Arc<AppState>) {
    let period = Duration::from_secs(u64::from(cluster.config.refresh_secs));
    loop {
        refresh(&cluster, &state).await;
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = cluster.refresh_now.notified() => {
                // At most one early round per second, however many requests failed.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// One round: discover, probe, replace the map.
pub async fn refresh(cluster: &Cluster, state: &AppState) {
    let candidates = candidates(cluster).await;
    let probes = join_all(
        candidates
            .iter()
            .map(|addr| async move { (*addr, cluster.probe(*addr).await) }),
    )
    .await;
    let old = cluster.peers.load_full();
    let mut peers: HashMap<NodeTag, Peer> = HashMap::new();
    for (addr, result) in probes {
        let status = match result {
            Ok(status) => status,
            Err(e) => {
                match old.values().find(|p| p.addr == addr) {
                    // One missed round is forgiven: forgetting a peer ends
                    // its sessions, and a slow answer is not a dead peer.
                    // Forwarding still fails fast if it really is gone.
                    Some(peer) if peer.missed < MAX_MISSED => {
                        tracing::warn!(%addr, tag = %peer.tag, "peer did not answer: {e}");
                        let mut peer = peer.clone();
                        peer.missed += 1;
                        peers.insert(peer.tag, peer);
                    }
                    Some(peer) => tracing::warn!(%addr, tag = %peer.tag, "peer lost: {e}"),
                    None => tracing::debug!(%addr, "no peer: {e}"),
                }
                continue;
            }
        };
        let Some(tag) = NodeTag::parse(&status.tag) else {
            tracing::warn!(%addr, tag = status.tag, "peer sent an unreadable tag");
            continue;
        };
        if tag == cluster.tag() {
            continue; // ourselves, listed or resolved
        }
        // Two addresses with one tag (a name and its address): keep the one in use.
        if peers.contains_key(&tag) && old.get(&tag).map(|p| p.addr) != Some(addr) {
            continue;
        }
        match old.get(&tag) {
            None => tracing::info!(%addr, %tag, draining = status.draining, "peer found"),
            Some(p) if p.draining != status.draining => {
                tracing::info!(%addr, %tag, draining = status.draining, "peer changed state")
            }
            Some(_) => {}
        }
        let peer = Peer {
            tag,
            addr,
            draining: status.draining,
            missed: 0,
        };
        peers.insert(tag, peer);
    }
    for gone in old.keys().filter(|t| !peers.contains_key(t)) {
        tracing::info!(tag = %gone, "peer forgotten: its sessions now get item-not-found");
    }
    let ready = peers.values().filter(|p| !p.draining).count();
    let draining = peers.len() - ready;
    let gauge = &state.metrics.cluster_peers;
    gauge
        .with_label_values(&["ready"])
        .set(i64::try_from(ready).unwrap_or(i64::MAX));
    gauge
        .with_label_values(&["draining"])
        .set(i64::try_from(draining).unwrap_or(i64::MAX));
    cluster
        .forwarder
        .retain(|addr| peers.values().any(|p| p.addr == *addr) || candidates.contains(addr));
    cluster.peers.store(Arc::new(peers));
}

/// Every address worth asking, without duplicates.
async fn candidates(cluster: &Cluster) -> BTreeSet<SocketAddr> {
    let mut found = BTreeSet::new();
    for peer in &cluster.config.peers {
        found.extend(resolve(cluster, peer).await);
    }
    if !cluster.config.peer_dns.is_empty() {
        found.extend(resolve(cluster, &cluster.config.peer_dns).await);
    }
    found.extend(cluster.peers.load().values().map(|p| p.addr));
    found
}

/// `host:port` to addresses; a failed lookup is logged and yields none.
async fn resolve(cluster: &Cluster, target: &str) -> Vec<SocketAddr> {
    let Some((host, port)) = crate::config::parse_host_port(target) else {
        return Vec::new();
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    let Some(dns) = &cluster.dns else {
        return Vec::new();
    };
    match dns.addresses(host).await {
        Ok(ips) => ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
        Err(e) => {
            tracing::warn!(name = host, "peer discovery: {e}");
            Vec::new()
        }
    }
}
