//! [`Keyring`]: the gateway's state keys, with ids, for rotation.
//!
//! One secret (`[state] integrity_key`, a secret reference) holds one or more
//! root keys as `id:base64` pairs separated by commas; the first is current (new
//! state is sealed or MACed under it), the others are still accepted, so keys
//! rotate without breaking live state: add the new key first, keep the old one
//! until what it protected has expired, then remove it. Without the setting a
//! random key is made at start (one instance; state does not survive a restart).
//!
//! Purpose keys are derived with HKDF-SHA256 (one root, separate keys for
//! `requestState` sealing, store integrity, stream event ids and task ids), so one purpose
//! can never be used to forge another.

use base64::Engine as _;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::config::secret::Secret;

/// What a derived key is for.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// Sealing `requestState` (AEAD).
    RequestState,
    /// HMAC over values in a shared store.
    Store,
    /// MAC in resumable-stream event ids.
    EventId,
    /// Sealing upstream task ids (AEAD).
    TaskId,
    /// Deriving the deterministic nonce of a sealed task id (HMAC).
    TaskIdNonce,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::RequestState => b"mcp-bastion/requestState/v2",
            Purpose::Store => b"mcp-bastion/store-integrity/v1",
            Purpose::EventId => b"mcp-bastion/event-id/v1",
            Purpose::TaskId => b"mcp-bastion/task-id/v1",
            Purpose::TaskIdNonce => b"mcp-bastion/task-id-nonce/v1",
        }
    }
}

/// A keyring that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The secret is not `id:base64[,id:base64…]` or a single base64 key.
    #[error(
        "integrity key must be id:base64 pairs separated by commas (or one base64 key) of at least 32 bytes each; key ids are 1-16 characters of [A-Za-z0-9_-]"
    )]
    Format,
    /// The same id twice.
    #[error("integrity key ids must be unique")]
    DuplicateId,
}

/// Root keys by id; the first is current.
pub struct Keyring {
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 16
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Keyring {
    /// A keyring with one random key (id `r` plus random suffix).
    pub fn random() -> Self {
        use rand::RngCore as _;
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        let mut id = [0u8; 4];
        rand::rng().fill_bytes(&mut id);
        let id = format!(
            "r{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Keyring {
            keys: vec![(id, k)],
        }
    }

    /// Parses the secret (see the module docs).
    pub fn from_secret(s: &Secret) -> Result<Self, KeyringError> {
        let text = s.expose_secret().trim();
        let decode = |b: &str| -> Result<[u8; 32], KeyringError> {
            let b = b.trim();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b))
                .map_err(|_| KeyringError::Format)?;
            if raw.len() < 32 {
                return Err(KeyringError::Format);
            }
            // Longer material is condensed; 32 bytes of it are already enough.
            let hk = Hkdf::<Sha256>::new(Some(b"mcp-bastion/keyring"), &raw);
            let mut k = [0u8; 32];
            hk.expand(b"root", &mut k)
                .map_err(|_| KeyringError::Format)?;
            Ok(k)
        };
        let mut keys: Vec<(String, [u8; 32])> = Vec::new();
        if !text.contains(':') {
            keys.push(("k1".into(), decode(text)?));
        } else {
            for part in text.split(',') {
                let (id, b) = part.split_once(':').ok_or(KeyringError::Format)?;
                let id = id.trim();
                if !valid_id(id) {
                    return Err(KeyringError::Format);
                }
                if keys.iter().any(|(k, _)| k == id) {
                    return Err(KeyringError::DuplicateId);
                }
                keys.push((id.to_owned(), decode(b)?));
            }
        }
        if keys.is_empty() {
            return Err(KeyringError::Format);
        }
        Ok(Keyring { keys })
    }

    /// The current key id.
    pub fn current_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// The purpose key of every root, current first.
    pub fn derive_all(&self, purpose: Purpose) -> Vec<(String, [u8; 32])> {
        self.keys
            .iter()
            .map(|(id, root)| {
                let hk = Hkdf::<Sha256>::new(None, root);
                let mut k = [0u8; 32];
                // 32 bytes is far below HKDF-SHA256's output limit.
                let _ = hk.expand(purpose.info(), &mut k);
                (id.clone(), k)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn parses_ids_and_rejects_weak_or_ambiguous_keys() {
        let k1 = b64(&[1u8; 32]);
        let k2 = b64(&[2u8; 32]);
        let r = Keyring::from_secret(&Secret::new(format!("new:{k2},old:{k1}"))).unwrap();
        assert_eq!(r.current_id(), "new");
        let d = r.derive_all(Purpose::Store);
        assert_eq!(d.len(), 2);
        assert_ne!(d[0].1, d[1].1);
        let single = Keyring::from_secret(&Secret::new(k1.clone())).unwrap();
        assert_eq!(single.current_id(), "k1");
        // Purposes are separated.
        assert_ne!(
            single.derive_all(Purpose::Store)[0].1,
            single.derive_all(Purpose::RequestState)[0].1
        );
        for bad in [
            String::new(),
            b64(&[1u8; 16]),
            format!("a:{k1},a:{k2}"),
            format!("bad id:{k1}"),
            "x:not-base64!".into(),
        ] {
            assert!(
                Keyring::from_secret(&Secret::new(bad.clone())).is_err(),
                "{bad}"
            );
        }
        assert!(!format!("{r:?}").contains(&k1));
    }
}
