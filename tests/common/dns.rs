//! A tiny authoritative DNS server on loopback for SRV tests, so no test
//! asks the system resolver. Built on hickory's message types.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use parking_lot::Mutex;
use tokio::net::UdpSocket;

/// The records served, by lower-case name (with trailing dot).
#[derive(Default, Clone)]
pub struct Zone {
    records: HashMap<String, Vec<RData>>,
}

impl Zone {
    pub fn srv(mut self, name: &str, priority: u16, weight: u16, port: u16, target: &str) -> Self {
        let target = Name::from_ascii(target).unwrap();
        self.records
            .entry(key(name))
            .or_default()
            .push(RData::SRV(SRV::new(priority, weight, port, target)));
        self
    }

    pub fn address(mut self, name: &str, ip: IpAddr) -> Self {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        self.records.entry(key(name)).or_default().push(data);
        self
    }
}

fn key(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// A running server; it stops with the test's runtime.
pub struct TestDns {
    pub addr: SocketAddr,
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl TestDns {
    pub async fn start(zone: Zone) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&queries);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut response = Message::new(
                    request.metadata.id,
                    MessageType::Response,
                    request.metadata.op_code,
                );
                response.metadata.recursion_desired = request.metadata.recursion_desired;
                response.metadata.authoritative = true;
                let mut code = ResponseCode::NoError;
                for query in &request.queries {
                    response.add_query(query.clone());
                    let name = key(&query.name().to_ascii());
                    seen.lock().push(format!("{name} {}", query.query_type()));
                    match zone.records.get(&name) {
                        None => code = ResponseCode::NXDomain,
                        Some(list) => {
                            for data in list {
                                let wanted = matches!(
                                    (data, query.query_type()),
                                    (RData::SRV(_), RecordType::SRV)
                                        | (RData::A(_), RecordType::A)
                                        | (RData::AAAA(_), RecordType::AAAA)
                                );
                                if wanted {
                                    response.add_answer(Record::from_rdata(
                                        query.name().clone(),
                                        5,
                                        data.clone(),
                                    ));
                                }
                            }
                        }
                    }
                }
                response.metadata.response_code = code;
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        Self { addr, queries }
    }
}
