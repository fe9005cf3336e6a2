//! Who this replica is to its peers: its node tag (the prefix of every sid
//! it issues) and the shared secret that every internal request carries.

use http::HeaderValue;
use sha1::{Digest, Sha1};

use crate::config::ClusterConfig;
use crate::sessions::NodeTag;

/// Shortest secret accepted (bytes, after trimming white space).
pub const MIN_SECRET_BYTES: usize = 16;

/// Why the cluster identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// `cluster.secret_file` could not be read.
    #[error("cluster.secret_file {path}: {source}")]
    SecretFile {
        /// The configured path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error("{key}: the cluster secret must be at least {MIN_SECRET_BYTES} bytes")]
    SecretTooShort {
        /// `cluster.secret` or `cluster.secret_file <path>`.
        key: String,
    },
    /// Cluster mode without any secret (the loader already refuses this).
    #[error("cluster.enabled: cluster mode needs cluster.secret or cluster.secret_file")]
    NoSecret,
    /// The secret cannot be sent in a header.
    #[error("{key}: the cluster secret must be printable ASCII")]
    SecretNotPrintable {
        /// `cluster.secret` or `cluster.secret_file <path>`.
        key: String,
    },
}

/// The node tag and the shared secret.
pub struct Identity {
    /// Random per process: a restarted replica never claims the sessions
    /// of its previous life, so their clients get `item-not-found` at once.
    pub tag: NodeTag,
    secret_digest: [u8; 20],
    bearer: HeaderValue,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Identity").field("tag", &self.tag).finish()
    }
}

impl Identity {
    /// A fresh tag and the secret `config` names.
    pub fn new(config: &ClusterConfig) -> Result<Self, IdentityError> {
        let (key, secret) = match (&config.secret, &config.secret_file) {
            (Some(secret), _) => ("cluster.secret".to_owned(), secret.trim().to_owned()),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| IdentityError::SecretFile {
                        path: path.clone(),
                        source,
                    })?;
                (
                    format!("cluster.secret_file {path}"),
                    text.trim().to_owned(),
                )
            }
            (None, None) => return Err(IdentityError::NoSecret),
        };
        Self::with_secret(NodeTag::random(), &secret, key)
    }

    fn with_secret(tag: NodeTag, secret: &str, key: String) -> Result<Self, IdentityError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(IdentityError::SecretTooShort { key });
        }
        let mut bearer = HeaderValue::from_str(&format!("Bearer {secret}"))
            .map_err(|_| IdentityError::SecretNotPrintable { key })?;
        bearer.set_sensitive(true);
        Ok(Self {
            tag,
            secret_digest: Sha1::digest(secret.as_bytes()).into(),
            bearer,
        })
    }

    /// The `Authorization` value peers expect.
    pub fn bearer(&self) -> HeaderValue {
        self.bearer.clone()
    }

    /// Whether `presented` is the secret. Digests are compared in constant
    /// time, so neither the timing nor the length of a guess tells anything.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let digest: [u8; 20] = Sha1::digest(presented).into();
        digest
            .iter()
            .zip(self.secret_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_is_accepted() {
        let id = Identity::with_secret(
            NodeTag::random(),
            "0123456789abcdef",
            "cluster.secret".into(),
        )
        .unwrap();
        assert!(id.accepts(b"0123456789abcdef"));
        assert!(!id.accepts(b"0123456789abcdeF"));
        assert!(!id.accepts(b"0123456789abcdef0"));
        assert!(!id.accepts(b""));
        assert_eq!(id.bearer().to_str().unwrap(), "Bearer 0123456789abcdef");
        assert!(!format!("{id:?}").contains("0123"));
    }

    #[test]
    fn short_or_missing_secrets_are_refused() {
        let e = Identity::with_secret(NodeTag::random(), "short", "cluster.secret".into());
        assert!(matches!(e, Err(IdentityError::SecretTooShort { .. })));
        let config = ClusterConfig {
            secret_file: Some("/nonexistent/xmpp-edge-secret".into()),
            ..ClusterConfig::default()
        };
        let e = Identity::new(&config).unwrap_err().to_string();
        assert!(e.starts_with("cluster.secret_file /nonexistent"), "{e}");
    }
}
