//! The HTTPS front end's TLS settings: certificates chosen by SNI among
//! their DNS names (wildcards included), ALPN `h2` and `http/1.1`, TLS 1.2
//! and 1.3 only. Certificate files are re-read when they change on disk and
//! on reload; a new `ServerConfig` serves new connections while existing
//! ones keep theirs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{CertificateConfig, TlsConfig};

/// Why the certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsFrontError {
    /// A file could not be read or parsed.
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The key does not fit the certificate, or rustls refused the settings.
    #[error("{file}: {source}")]
    Rustls {
        /// The certificate file.
        file: String,
        /// Why.
        source: rustls::Error,
    },
}

/// Certificates by the names they are valid for.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return Arc::clone(&self.default);
        };
        if let Some(key) = self.exact.get(&name) {
            return Arc::clone(key);
        }
        // A wildcard covers exactly one label.
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = self.wildcard.get(parent)
        {
            return Arc::clone(key);
        }
        Arc::clone(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Builds the server settings from the configured certificates; `None`
/// when there are none (HTTPS off).
pub fn load(config: &TlsConfig) -> Result<Option<Arc<ServerConfig>>, TlsFrontError> {
    if config.certificates.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for entry in &config.certificates {
        let (key, names) = certified_key(entry, &provider)?;
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.entry(parent.to_owned()),
                None => exact.entry(name),
            }
            .or_insert_with(|| Arc::clone(&key));
        }
        default.get_or_insert(key);
    }
    let Some(default) = default else {
        return Ok(None);
    };
    let resolver = SniResolver {
        exact,
        wildcard,
        default,
    };
    let first = &config.certificates[0].cert_file;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsFrontError::Rustls {
            file: first.clone(),
            source,
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// One certificate chain and key, and the DNS names of its leaf.
fn certified_key(
    entry: &CertificateConfig,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Vec<String>), TlsFrontError> {
    let fail = |file: &str, reason: String| TlsFrontError::File {
        file: file.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&entry.cert_file)
        .map_err(|e| fail(&entry.cert_file, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&entry.cert_file, e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(fail(&entry.cert_file, "no certificate in the file".into()));
    };
    let names: Vec<String> = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| fail(&entry.cert_file, format!("unreadable certificate: {e}")))?
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&entry.key_file)
        .map_err(|e| fail(&entry.key_file, e.to_string()))?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsFrontError::Rustls {
            file: entry.cert_file.clone(),
            source,
        })?;
    Ok((Arc::new(certified), names))
}

/// When each certificate and key file last changed, to notice new ones.
pub fn fingerprint(config: &TlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    config
        .certificates
        .iter()
        .flat_map(|c| [&c.cert_file, &c.key_file])
        .map(|file| {
            let meta = std::fs::metadata(Path::new(file)).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(name: &str) -> Arc<CertifiedKey> {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        Arc::new(CertifiedKey::from_der(vec![cert.cert.der().clone()], key, &provider).unwrap())
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let default = key_for("default.example");
        let chat = key_for("chat.example.com");
        let wild = key_for("*.example.org");
        let resolver = SniResolver {
            exact: HashMap::from([("chat.example.com".to_owned(), Arc::clone(&chat))]),
            wildcard: HashMap::from([("example.org".to_owned(), Arc::clone(&wild))]),
            default: Arc::clone(&default),
        };
        assert!(Arc::ptr_eq(
            &resolver.pick(Some("Chat.Example.com.")),
            &chat
        ));
        assert!(Arc::ptr_eq(&resolver.pick(Some("xmpp.example.org")), &wild));
        // A wildcard covers one label only.
        assert!(Arc::ptr_eq(
            &resolver.pick(Some("a.b.example.org")),
            &default
        ));
        assert!(Arc::ptr_eq(&resolver.pick(Some("example.org")), &default));
        assert!(Arc::ptr_eq(&resolver.pick(None), &default));
    }

    #[test]
    fn certificates_load_with_their_names_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("xmpp-edge-tls-front-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["chat.example.com".into()]).unwrap();
        let cert_file = dir.join("chat.crt");
        let key_file = dir.join("chat.key");
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
        let entry = CertificateConfig {
            cert_file: cert_file.display().to_string(),
            key_file: key_file.display().to_string(),
        };
        let config = TlsConfig {
            certificates: vec![entry.clone()],
            ..TlsConfig::default()
        };
        let server = load(&config).unwrap().unwrap();
        assert_eq!(
            server.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let provider = rustls::crypto::ring::default_provider();
        let (_, names) = certified_key(&entry, &provider).unwrap();
        assert_eq!(names, vec!["chat.example.com".to_owned()]);
        // A key that is not a key.
        std::fs::write(&key_file, "not a key").unwrap();
        let err = load(&config).unwrap_err().to_string();
        assert!(err.starts_with(&key_file.display().to_string()), "{err}");
        assert!(load(&TlsConfig::default()).unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
