//! TLS client settings for the upstream leg (UP-30..UP-37, XEP-0368).
//!
//! Certificates are checked against the system roots plus an optional CA
//! bundle, with the XMPP domain as the reference identity and SNI (UP-6,
//! UP-32). One `ClientConfig` is shared by all connections of a domain so
//! rustls can resume TLS sessions (UP-8).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// ALPN protocol id for direct TLS (XEP-0368).
const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA bundle could not be read or holds no certificate.
    #[error("CA bundle {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the settings.
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Client configs for one domain's upstreams.
#[derive(Debug, Clone)]
pub struct TlsContext {
    /// For STARTTLS (no ALPN).
    pub starttls: Arc<ClientConfig>,
    /// For direct TLS (ALPN `xmpp-client`).
    pub direct: Arc<ClientConfig>,
    /// Certificates are not checked (development only).
    pub insecure: bool,
}

impl TlsContext {
    /// Builds the configs: system roots plus `ca_file`, or no verification at all.
    pub fn new(ca_file: Option<&Path>, insecure: bool) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let base = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(ca_file)?)
                .with_no_client_auth()
        };
        let mut direct = base.clone();
        direct.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
        Ok(Self {
            starttls: Arc::new(base),
            direct: Arc::new(direct),
            insecure,
        })
    }
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = store.add_parsable_certificates(native.certs);
    if added == 0 && ca_file.is_none() {
        tracing::warn!("no system CA certificates found; upstream TLS needs tls_ca_file");
    }
    if let Some(path) = ca_file {
        let fail = |reason: String| TlsSetupError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("no certificate in the file".into()));
        }
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(fail("no usable certificate in the file".into()));
        }
    }
    Ok(store)
}

/// Accepts any certificate: `tls_insecure_skip_verify`, for development only.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
