//! Where to connect for a domain (RFC 6120 §3.2, XEP-0368): pure pieces of
//! routing. DNS lookups themselves happen in [`crate::upstream::dns`].

use serde::{Deserialize, Serialize};

/// How the upstream leg is secured; the operator's choice per upstream,
/// never the client's (BOSH-102).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP; a server that requires STARTTLS fails the session.
    #[default]
    None,
    /// STARTTLS, always (UP-30..UP-33): never relay an unencrypted stream.
    Starttls,
    /// TLS right after connecting (XEP-0368 direct TLS).
    Direct,
}

/// One place to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Host name or IP literal.
    pub host: Box<str>,
    /// Port.
    pub port: u16,
    /// How to secure it.
    pub tls: TlsMode,
    /// SRV priority (lower first); 0 for static upstreams.
    pub priority: u16,
    /// Balancing weight.
    pub weight: u16,
}

impl Candidate {
    /// `host:port`, with IPv6 literals in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One SRV answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    /// Priority (lower is tried first).
    pub priority: u16,
    /// Relative weight within a priority.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host, without the trailing dot; `.` means "no service".
    pub target: Box<str>,
    /// From `_xmpps-client._tcp` (direct TLS) rather than `_xmpp-client._tcp`.
    pub direct_tls: bool,
}

/// What the SRV answers say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrvOutcome {
    /// Connect to these, in this order.
    Targets(Vec<Candidate>),
    /// The domain publishes no such service (target `.`, UP-3): do not fall back.
    NotOffered,
    /// No SRV records at all: fall back to the domain's A/AAAA on 5222 (UP-5).
    Fallback,
}

/// Orders SRV answers (both record sets as one ordering, UP-6): by priority,
/// then weighted random within a priority (RFC 2782). `random(n)` returns a
/// value in `0..n`. `starttls_mode` secures the `_xmpp-client` targets.
pub fn order_srv(
    mut records: Vec<SrvRecord>,
    starttls_mode: TlsMode,
    mut random: impl FnMut(u32) -> u32,
) -> SrvOutcome {
    if records.is_empty() {
        return SrvOutcome::Fallback;
    }
    // UP-3: a lone "." answer means the service is decidedly not offered.
    let no_service = |r: &SrvRecord| r.target.is_empty() || &*r.target == ".";
    let plain_dot = records.iter().any(|r| !r.direct_tls && no_service(r));
    let tls_dot = records.iter().any(|r| r.direct_tls && no_service(r));
    records.retain(|r| !no_service(r));
    if records.is_empty() {
        // UP-6: an xmpps "." alone only says direct TLS is not offered.
        return if plain_dot || !tls_dot {
            SrvOutcome::NotOffered
        } else {
            SrvOutcome::Fallback
        };
    }
    records.sort_by_key(|r| r.priority);
    let mut ordered = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let end = rest
            .iter()
            .position(|r| r.priority != first.priority)
            .unwrap_or(rest.len());
        let (group, tail) = rest.split_at(end);
        let mut group: Vec<&SrvRecord> = group.iter().collect();
        // RFC 2782: zero weights first so they get a small chance.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut roll = random(total + 1);
                group
                    .iter()
                    .position(|r| {
                        if roll <= u32::from(r.weight) {
                            true
                        } else {
                            roll -= u32::from(r.weight);
                            false
                        }
                    })
                    .unwrap_or(group.len() - 1)
            };
            let r = group.remove(pick);
            ordered.push(Candidate {
                host: r.target.trim_end_matches('.').into(),
                port: r.port,
                tls: if r.direct_tls {
                    TlsMode::Direct
                } else {
                    starttls_mode
                },
                priority: r.priority,
                weight: r.weight.max(1),
            });
        }
        rest = tail;
    }
    SrvOutcome::Targets(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str, direct_tls: bool) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: if direct_tls { 5223 } else { 5222 },
            target: target.into(),
            direct_tls,
        }
    }

    fn hosts(outcome: SrvOutcome) -> Vec<String> {
        match outcome {
            SrvOutcome::Targets(t) => t.iter().map(|c| c.host.to_string()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn up_2_priority_first() {
        let records = vec![
            srv(20, 1, "b.example.", false),
            srv(10, 1, "a.example.", false),
        ];
        assert_eq!(
            hosts(order_srv(records, TlsMode::Starttls, |_| 0)),
            ["a.example", "b.example"]
        );
    }

    #[test]
    fn up_2_weights_shape_the_order_within_a_priority() {
        let records = vec![srv(10, 1, "light", false), srv(10, 9, "heavy", false)];
        let mut heavy_first = 0;
        let mut seed = 12345u32;
        for _ in 0..1000 {
            let order = hosts(order_srv(records.clone(), TlsMode::Starttls, |n| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 8) % n
            }));
            if order[0] == "heavy" {
                heavy_first += 1;
            }
        }
        assert!((800..=950).contains(&heavy_first), "{heavy_first}");
    }

    #[test]
    fn up_3_lone_dot_means_not_offered() {
        assert_eq!(
            order_srv(vec![srv(0, 0, ".", false)], TlsMode::Starttls, |_| 0),
            SrvOutcome::NotOffered
        );
    }

    #[test]
    fn up_5_no_records_falls_back() {
        assert_eq!(
            order_srv(vec![], TlsMode::Starttls, |_| 0),
            SrvOutcome::Fallback
        );
    }

    #[test]
    fn up_6_xmpps_targets_use_direct_tls_and_mix_with_xmpp() {
        let records = vec![
            srv(5, 1, "tls.example", true),
            srv(10, 1, "plain.example", false),
        ];
        match order_srv(records, TlsMode::Starttls, |_| 0) {
            SrvOutcome::Targets(t) => {
                assert_eq!((t[0].tls, t[0].port), (TlsMode::Direct, 5223));
                assert_eq!((t[1].tls, t[1].port), (TlsMode::Starttls, 5222));
            }
            other => panic!("{other:?}"),
        }
        // An xmpps "." only says that direct TLS is not offered.
        let records = vec![srv(0, 0, ".", true), srv(10, 1, "plain.example", false)];
        assert_eq!(
            hosts(order_srv(records, TlsMode::Starttls, |_| 0)),
            ["plain.example"]
        );
        assert_eq!(
            order_srv(vec![srv(0, 0, ".", true)], TlsMode::Starttls, |_| 0),
            SrvOutcome::Fallback
        );
    }

    #[test]
    fn candidate_address_brackets_ipv6() {
        let c = Candidate {
            host: "::1".into(),
            port: 5222,
            tls: TlsMode::None,
            priority: 0,
            weight: 1,
        };
        assert_eq!(c.address(), "[::1]:5222");
    }
}
