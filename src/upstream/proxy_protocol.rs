//! PROXY protocol headers (HAProxy spec, versions 1 and 2) telling the
//! upstream server the real client address (UP-10..UP-17). Pure encoding.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Which header to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyVersion {
    /// The text form.
    V1,
    /// The binary form, with optional TLVs.
    V2,
}

/// The client side of the connection being proxied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address (source).
    pub source: Option<SocketAddr>,
    /// The xmpp-edge address the client reached (destination).
    pub destination: Option<SocketAddr>,
    /// TLS version on the client's leg (`TLSv1.3`), if it was encrypted.
    pub tls_version: Option<&'static str>,
    /// The host name the client asked for (SNI or `Host`).
    pub authority: Option<Box<str>>,
    /// ALPN protocol of the client's leg (`h2`, `http/1.1`).
    pub alpn: Option<&'static str>,
    /// `bosh` or `websocket`.
    pub transport: Option<&'static str>,
}

/// TLV types of the PROXY v2 spec, and one of our own for the transport.
mod tlv {
    pub(super) const ALPN: u8 = 0x01;
    pub(super) const AUTHORITY: u8 = 0x02;
    pub(super) const CRC32C: u8 = 0x03;
    pub(super) const SSL: u8 = 0x20;
    pub(super) const SSL_VERSION: u8 = 0x21;
    /// First of the application-reserved range 0xE0..=0xEF: `bosh`/`websocket`.
    pub(super) const TRANSPORT: u8 = 0xE0;
}

const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Both addresses in one family: IPv4 if both are, else both as IPv6 (UP-13).
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (src, dst),
        _ => (to_v6(src), to_v6(dst)),
    }
}

fn to_v6(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    }
}

/// The version 1 line (UP-11); `PROXY UNKNOWN` only without addresses.
pub fn v1(info: &ClientInfo) -> Vec<u8> {
    match (info.source, info.destination) {
        (Some(src), Some(dst)) => {
            let (src, dst) = same_family(src, dst);
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        _ => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// A version 2 LOCAL header (a connection of xmpp-edge's own, such as a
/// health check). It carries the connection's own endpoints: the spec lets
/// receivers ignore them, and some (ejabberd 23.01) refuse LOCAL without them.
pub fn v2_local(own: &ClientInfo) -> Vec<u8> {
    let mut header = v2(own, false);
    if header.len() > 12 {
        header[12] = 0x20;
    }
    header
}

/// The version 2 header (UP-12), with TLVs when `with_tlvs` (UP-17).
pub fn v2(info: &ClientInfo, with_tlvs: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&V2_SIGNATURE);
    let Some((src, dst)) = info
        .source
        .zip(info.destination)
        .map(|(s, d)| same_family(s, d))
    else {
        // LOCAL command, unspecified family, no addresses.
        out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        return out;
    };
    out.push(0x21); // version 2, PROXY
    let mut body = Vec::with_capacity(48);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21);
            body.extend_from_slice(&v6(s).octets());
            body.extend_from_slice(&v6(d).octets());
        }
    }
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    let mut crc_at = None;
    if with_tlvs {
        if let Some(alpn) = info.alpn {
            push_tlv(&mut body, tlv::ALPN, alpn.as_bytes());
        }
        if let Some(authority) = &info.authority {
            push_tlv(&mut body, tlv::AUTHORITY, authority.as_bytes());
        }
        if let Some(version) = info.tls_version {
            // PP2_TYPE_SSL: client flags (PP2_CLIENT_SSL), verify (0 = ok), sub-TLVs.
            let mut ssl = vec![0x01, 0, 0, 0, 0];
            push_tlv(&mut ssl, tlv::SSL_VERSION, version.as_bytes());
            push_tlv(&mut body, tlv::SSL, &ssl);
        }
        if let Some(transport) = info.transport {
            push_tlv(&mut body, tlv::TRANSPORT, transport.as_bytes());
        }
        crc_at = Some(body.len() + 3);
        push_tlv(&mut body, tlv::CRC32C, &[0; 4]);
    }
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    let header_len = out.len();
    out.extend_from_slice(&body);
    if let Some(at) = crc_at {
        // Computed over the whole header with the checksum field zeroed.
        let crc = crc32c(&out);
        out[header_len + at..header_len + at + 4].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn push_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(value);
}

/// CRC-32C (Castagnoli), bitwise: a header is checksummed once per connection.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(src: &str, dst: &str) -> ClientInfo {
        ClientInfo {
            source: Some(src.parse().unwrap()),
            destination: Some(dst.parse().unwrap()),
            ..ClientInfo::default()
        }
    }

    #[test]
    fn up_11_v1_tcp4_line() {
        assert_eq!(
            v1(&info("203.0.113.7:51000", "198.51.100.1:443")),
            b"PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n"
        );
        assert_eq!(v1(&ClientInfo::default()), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn up_13_mixed_families_become_tcp6() {
        assert_eq!(
            v1(&info("[2001:db8::1]:1000", "127.0.0.1:5280")),
            b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 1000 5280\r\n"
        );
        let h = v2(&info("[2001:db8::1]:1000", "127.0.0.1:5280"), false);
        assert_eq!(h[13], 0x21);
        assert_eq!(h.len(), 52);
    }

    #[test]
    fn up_12_17_v2_without_tlvs_is_28_bytes_for_ipv4() {
        let h = v2(&info("203.0.113.7:51000", "198.51.100.1:443"), false);
        assert_eq!(h.len(), 28);
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[203, 0, 113, 7]);
        assert_eq!(&h[20..24], &[198, 51, 100, 1]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 51000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 443);
    }

    /// An independent reading of a v2 header: (type, value) of each TLV.
    fn tlvs(h: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(
            h.len(),
            16 + len,
            "length field covers everything after the fixed part"
        );
        let mut at = 16 + if h[13] == 0x11 { 12 } else { 36 };
        let mut out = Vec::new();
        while at < h.len() {
            let l = u16::from_be_bytes([h[at + 1], h[at + 2]]) as usize;
            out.push((h[at], h[at + 3..at + 3 + l].to_vec()));
            at += 3 + l;
        }
        out
    }

    #[test]
    fn up_17_v2_tlvs_and_checksum() {
        let mut i = info("192.0.2.10:40000", "192.0.2.1:443");
        i.tls_version = Some("TLSv1.3");
        i.authority = Some("chat.example.com".into());
        i.alpn = Some("h2");
        i.transport = Some("websocket");
        let h = v2(&i, true);
        let t = tlvs(&h);
        assert_eq!(t[0], (tlv::ALPN, b"h2".to_vec()));
        assert_eq!(t[1], (tlv::AUTHORITY, b"chat.example.com".to_vec()));
        assert_eq!(t[2].0, tlv::SSL);
        assert_eq!(t[2].1[0], 0x01, "PP2_CLIENT_SSL");
        assert_eq!(
            &t[2].1[5..],
            &[&[tlv::SSL_VERSION, 0, 7][..], b"TLSv1.3"].concat()[..]
        );
        assert_eq!(t[3], (tlv::TRANSPORT, b"websocket".to_vec()));
        assert_eq!(t[4].0, tlv::CRC32C);
        let mut zeroed = h.clone();
        let n = zeroed.len();
        zeroed[n - 4..].copy_from_slice(&[0; 4]);
        assert_eq!(
            u32::from_be_bytes(t[4].1.clone().try_into().unwrap()),
            crc32c(&zeroed)
        );
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn v2_local_keeps_the_connection_endpoints() {
        let h = v2_local(&info("127.0.0.1:40000", "127.0.0.1:5222"));
        assert_eq!((h[12], h[13]), (0x20, 0x11));
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn v2_local_without_addresses() {
        let h = v2(&ClientInfo::default(), true);
        assert_eq!(&h[12..], &[0x20, 0x00, 0x00, 0x00]);
    }
}
