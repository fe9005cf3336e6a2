//! Certificates for TLS tests: a throw-away CA and a server certificate for
//! `localhost` signed by it (rcgen).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// PEM files written into a directory.
pub struct TestCerts {
    /// The CA certificate (what `tls_ca_file` points at).
    pub ca: PathBuf,
    /// The server certificate for `localhost`.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Writes a CA and a `localhost` certificate into `dir`.
pub fn generate(dir: &Path) -> TestCerts {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "xmpp-edge test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let certs = TestCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("localhost.crt"),
        key: dir.join("localhost.key"),
    };
    std::fs::write(&certs.ca, ca_cert.pem()).unwrap();
    std::fs::write(&certs.cert, server_cert.pem()).unwrap();
    std::fs::write(&certs.key, server_key.serialize_pem()).unwrap();
    certs
}

/// A CA and one certificate per entry of `names` (each a list of DNS names),
/// written into `dir` as `ca.pem`, `cert{i}.crt`, `cert{i}.key`.
pub fn ca_with_certs(dir: &Path, names: &[&[&str]]) -> (PathBuf, Vec<(PathBuf, PathBuf)>) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "xmpp-edge test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    let mut out = Vec::new();
    for (i, list) in names.iter().enumerate() {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, list[0]);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (c, k) = (
            dir.join(format!("cert{i}.crt")),
            dir.join(format!("cert{i}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        out.push((c, k));
    }
    (ca, out)
}
