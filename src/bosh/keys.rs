//! Key sequencing (XEP-0124 §15, BOSH-80, BOSH-81).
//!
//! Verified only when the creation request starts a chain with `newkey`;
//! otherwise `key` attributes are ignored. Each request's `key`, hashed with
//! SHA-1 and written in hex, must equal the previous request's `newkey` (if it
//! had one) or `key`.

use sha1::{Digest, Sha1};

/// The value the next request's hashed `key` must match, if a chain is active.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyChain {
    expected: Option<Box<str>>,
}

/// The key did not match: the session ends with `item-not-found`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMismatch;

impl KeyChain {
    /// Starts from the creation request's `newkey`.
    pub fn new(newkey: Option<&str>) -> Self {
        Self {
            expected: newkey.map(Box::from),
        }
    }

    /// Whether keys are being checked.
    pub fn is_active(&self) -> bool {
        self.expected.is_some()
    }

    /// Checks one in-order request and advances the chain.
    pub fn verify(&mut self, key: Option<&str>, newkey: Option<&str>) -> Result<(), KeyMismatch> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let key = key.ok_or(KeyMismatch)?;
        let digest = Sha1::digest(key.as_bytes());
        let mut hex = [0u8; 40];
        for (i, byte) in digest.iter().enumerate() {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            hex[2 * i] = DIGITS[(byte >> 4) as usize];
            hex[2 * i + 1] = DIGITS[(byte & 0xf) as usize];
        }
        if !expected.as_bytes().eq_ignore_ascii_case(&hex) {
            return Err(KeyMismatch);
        }
        self.expected = Some(Box::from(newkey.unwrap_or(key)));
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// K(1) = hex(SHA-1(seed)), K(i) = hex(SHA-1(K(i-1))); returns K(1)..=K(n).
    pub(crate) fn chain(seed: &str, n: usize) -> Vec<String> {
        let mut keys = Vec::with_capacity(n);
        let mut last = seed.to_owned();
        for _ in 0..n {
            last = Sha1::digest(last.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            keys.push(last.clone());
        }
        keys
    }

    #[test]
    fn bosh_80_no_newkey_means_no_checks() {
        let mut k = KeyChain::new(None);
        assert!(!k.is_active());
        assert_eq!(k.verify(Some("anything"), None), Ok(()));
        assert_eq!(k.verify(None, None), Ok(()));
    }

    #[test]
    fn bosh_81_chain_is_checked_in_reverse_order() {
        let keys = chain("seed", 5);
        let mut k = KeyChain::new(Some(&keys[4]));
        for i in (0..4).rev() {
            assert_eq!(k.verify(Some(&keys[i]), None), Ok(()), "K({})", i + 1);
        }
    }

    #[test]
    fn bosh_81_uppercase_hex_and_chain_switch() {
        let keys = chain("seed", 3);
        let mut k = KeyChain::new(Some(&keys[2].to_uppercase()));
        assert_eq!(k.verify(Some(&keys[1]), None), Ok(()));
        // Switch to a new chain on the last key of the old one.
        let next = chain("other", 3);
        assert_eq!(k.verify(Some(&keys[0]), Some(&next[2])), Ok(()));
        assert_eq!(k.verify(Some(&next[1]), None), Ok(()));
    }

    #[test]
    fn bosh_81_wrong_or_missing_key_fails() {
        let keys = chain("seed", 3);
        let mut k = KeyChain::new(Some(&keys[2]));
        assert_eq!(k.verify(Some(&keys[0]), None), Err(KeyMismatch));
        let mut k = KeyChain::new(Some(&keys[2]));
        assert_eq!(k.verify(None, None), Err(KeyMismatch));
    }
}
