//! Sealed `requestState` values (2026-07-28 multi-round-trip requests) and
//! list cursors.
//!
//! Every `requestState` a client sees from the gateway is sealed here, whether it
//! wraps an upstream's own state or names a gateway-held continuation (a bridged
//! 2025-era upstream waiting for sampling/elicitation answers). Sealing is
//! XChaCha20-Poly1305 with a random 192-bit nonce under the current key of the
//! [`Keyring`] (the key id travels in the clear so older keys still open what
//! they sealed while keys rotate); the associated data binds the key id and this
//! gateway's audience (its public URL), and the payload binds the principal
//! (issuer and subject), the method, the target name (hence the upstream that
//! serves it) and an expiry, so a state replayed by another principal, against
//! another tool or gateway, or late is refused. Anything that does not open is refused: the
//! gateway never forwards a `requestState` it did not issue.
//!
//! Single use is enforced for continuations (taken from the registry on use);
//! wrapped upstream states are as reusable as the upstream makes them.
//!
//! Task ids are sealed too ([`Sealer::seal_task`]): the id a client sees names
//! the upstream and that upstream's own id, and opens only for the principal it
//! was issued to, so a client can neither point a task id at another upstream
//! nor use another principal's, and any instance sharing the keyring routes it
//! without a table. Unlike a `requestState` the same task must keep the same id
//! wherever it appears (the creating result, `tasks/get`, status notifications),
//! so task ids are sealed deterministically (SIV-style: the nonce is an HMAC of
//! key id, audience, principal and payload): equal inputs give equal ids, which
//! reveals nothing the client does not already know.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "bst2.";
const TASK_PREFIX: &str = "btk1.";
const TASK_AAD: &[u8] = b"mcp-bastion/taskId/v1";
/// Largest task id accepted from a client or an upstream.
pub const MAX_TASK_ID: usize = 4096;
const AAD: &[u8] = b"mcp-bastion/requestState/v2";
/// Largest `requestState` accepted from a client (before opening).
pub const MAX_STATE: usize = 64 * 1024;

/// What a sealed state stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Inner {
    /// An upstream's own `requestState`, returned to it verbatim on retry.
    #[serde(rename = "u")]
    Upstream {
        /// The upstream's value, byte for byte.
        s: String,
    },
    /// A continuation held by the gateway (bridged 2025-era upstream).
    #[serde(rename = "c")]
    Continuation {
        /// Registry key.
        c: String,
    },
    /// A list cursor of the gateway: for each upstream still paging (by
    /// index), that upstream's own cursor. Sealed so a client can neither
    /// point a cursor at another upstream nor hand an upstream a cursor it
    /// did not issue, nor replay another principal's.
    #[serde(rename = "l")]
    Cursor {
        /// Upstream index (decimal: keys pass through the flattened payload
        /// as strings) → its cursor.
        c: std::collections::BTreeMap<String, String>,
    },
}

/// The sealed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// What it stands for.
    #[serde(flatten)]
    pub inner: Inner,
    /// Principal it was issued to.
    pub p: String,
    /// Method of the originating request.
    pub m: String,
    /// Target name/URI of the originating request ("" if none).
    pub n: String,
    /// Expiry, Unix seconds.
    pub e: u64,
}

/// Why a state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not issued by this gateway, tampered with, or too large.
    #[error("invalid requestState")]
    Invalid,
    /// Issued for another principal, method or target.
    #[error("requestState does not belong to this request")]
    Mismatch,
    /// Past its expiry.
    #[error("requestState expired")]
    Expired,
}

/// The sealing keys (current first) and the audience they bind.
pub struct Sealer {
    keys: Vec<(String, XChaCha20Poly1305)>,
    /// Task-id keys: (key id, AEAD, nonce-derivation key), current first.
    task_keys: Vec<(String, XChaCha20Poly1305, [u8; 32])>,
    audience: String,
}

/// What a sealed task id stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    /// The upstream serving the task (its configured name: stable across
    /// instances and restarts, unlike an index).
    pub u: String,
    /// The upstream's own task id.
    pub t: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([REDACTED])")
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `prefix kid . base64url(nonce ‖ ciphertext)` for `plain` sealed under
/// `aead` with `nonce` and `aad`: the wire form of every sealed value.
fn wrap(
    prefix: &str,
    kid: &str,
    aead: &XChaCha20Poly1305,
    nonce: &[u8],
    plain: &[u8],
    aad: &[u8],
) -> Option<String> {
    let ct = aead
        .encrypt(XNonce::from_slice(nonce), Payload { msg: plain, aad })
        .ok()?;
    let mut raw = nonce.to_vec();
    raw.extend_from_slice(&ct);
    Some(format!(
        "{prefix}{kid}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    ))
}

/// The key id and the rest of a sealed value of kind `prefix`.
fn split<'a>(sealed: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    sealed.strip_prefix(prefix)?.split_once('.')
}

/// The plaintext of the base64url `nonce ‖ ciphertext` in `b64`, if it
/// opens under `aead` with `aad`.
fn unwrap(aead: &XChaCha20Poly1305, b64: &str, aad: &[u8]) -> Option<Vec<u8>> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    if raw.len() < 24 + 16 {
        return None;
    }
    let (nonce, ct) = raw.split_at(24);
    aead.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

impl Sealer {
    /// A sealer with a fresh random key and no audience (tests, single use).
    pub fn random() -> Self {
        Sealer::new(&crate::state::keyring::Keyring::random(), "")
    }

    /// A sealer over `keyring`'s request-state keys, for `audience`.
    pub fn new(keyring: &crate::state::keyring::Keyring, audience: &str) -> Self {
        Sealer {
            keys: keyring
                .derive_all(crate::state::keyring::Purpose::RequestState)
                .into_iter()
                .map(|(id, k)| (id, XChaCha20Poly1305::new(&k.into())))
                .collect(),
            task_keys: keyring
                .derive_all(crate::state::keyring::Purpose::TaskId)
                .into_iter()
                .zip(keyring.derive_all(crate::state::keyring::Purpose::TaskIdNonce))
                .map(|((id, k), (_, n))| (id, XChaCha20Poly1305::new(&k.into()), n))
                .collect(),
            audience: audience.to_owned(),
        }
    }

    fn task_aad(&self, kid: &str, principal: &str) -> Vec<u8> {
        let mut a = TASK_AAD.to_vec();
        for part in [kid, &self.audience, principal] {
            a.push(0);
            a.extend_from_slice(part.as_bytes());
        }
        a
    }

    /// The id the client sees for upstream `upstream`'s task `task`, issued
    /// to `principal`. Deterministic for equal inputs under the current key.
    /// `None` when the upstream's id is too long to carry.
    pub fn seal_task(&self, principal: &str, upstream: &str, task: &str) -> Option<String> {
        use hmac::Mac as _;
        if task.len() > MAX_TASK_ID {
            return None;
        }
        let plain = serde_json::to_vec(&TaskRef {
            u: upstream.to_owned(),
            t: task.to_owned(),
        })
        .ok()?;
        let (kid, aead, nk) = self.task_keys.first()?;
        let aad = self.task_aad(kid, principal);
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(nk).ok()?;
        mac.update(&aad);
        mac.update(&[0]);
        mac.update(&plain);
        let tag = mac.finalize().into_bytes();
        let nonce = tag.get(..24)?;
        wrap(TASK_PREFIX, kid, aead, nonce, &plain, &aad)
    }

    /// Opens a task id a client presented; `None` unless this gateway issued
    /// it to `principal` (another principal's id does not open at all).
    pub fn open_task(&self, sealed: &str, principal: &str) -> Option<TaskRef> {
        if sealed.len() > 2 * MAX_TASK_ID {
            return None;
        }
        let (kid, b64) = split(sealed, TASK_PREFIX)?;
        let (_, aead, _) = self.task_keys.iter().find(|(id, _, _)| id == kid)?;
        let plain = unwrap(aead, b64, &self.task_aad(kid, principal))?;
        serde_json::from_slice(&plain).ok()
    }

    fn aad(&self, kid: &str) -> Vec<u8> {
        let mut a = AAD.to_vec();
        a.push(0);
        a.extend_from_slice(kid.as_bytes());
        a.push(0);
        a.extend_from_slice(self.audience.as_bytes());
        a
    }

    /// Seals `state`; `ttl_secs` from now.
    pub fn seal(&self, mut state: State, ttl_secs: u64) -> String {
        state.e = now().saturating_add(ttl_secs);
        let plain = serde_json::to_vec(&state).unwrap_or_default();
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let Some((kid, aead)) = self.keys.first() else {
            return String::new();
        };
        // Encryption with a valid key and nonce cannot fail for in-memory input.
        wrap(PREFIX, kid, aead, &nonce, &plain, &self.aad(kid)).unwrap_or_default()
    }

    /// Opens a state and checks it belongs to (`principal`, `method`, `name`).
    pub fn open(
        &self,
        sealed: &str,
        principal: &str,
        method: &str,
        name: &str,
    ) -> Result<State, SealError> {
        if sealed.len() > MAX_STATE {
            return Err(SealError::Invalid);
        }
        let (kid, b64) = split(sealed, PREFIX).ok_or(SealError::Invalid)?;
        let aead = self
            .keys
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, a)| a)
            .ok_or(SealError::Invalid)?;
        let plain = unwrap(aead, b64, &self.aad(kid)).ok_or(SealError::Invalid)?;
        let st: State = serde_json::from_slice(&plain).map_err(|_| SealError::Invalid)?;
        if st.p != principal || st.m != method || st.n != name {
            return Err(SealError::Mismatch);
        }
        if st.e < now() {
            return Err(SealError::Expired);
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> State {
        State {
            inner: Inner::Upstream {
                s: "opaque-upstream".into(),
            },
            p: "alice".into(),
            m: "tools/call".into(),
            n: "t".into(),
            e: 0,
        }
    }

    #[test]
    fn round_trip_and_bindings() {
        let s = Sealer::random();
        let sealed = s.seal(st(), 60);
        assert!(
            !sealed.contains("opaque-upstream"),
            "sealed state must not reveal the upstream's"
        );
        let open = s.open(&sealed, "alice", "tools/call", "t").unwrap();
        assert_eq!(
            open.inner,
            Inner::Upstream {
                s: "opaque-upstream".into()
            }
        );
        assert_eq!(
            s.open(&sealed, "mallory", "tools/call", "t"),
            Err(SealError::Mismatch)
        );
        assert_eq!(
            s.open(&sealed, "alice", "tools/call", "other"),
            Err(SealError::Mismatch)
        );
        assert_eq!(
            s.open(&sealed, "alice", "prompts/get", "t"),
            Err(SealError::Mismatch)
        );
        // Another gateway's (or a restarted one's) state does not open.
        assert_eq!(
            Sealer::random().open(&sealed, "alice", "tools/call", "t"),
            Err(SealError::Invalid)
        );
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let s = Sealer::random();
        let sealed = s.seal(st(), 60);
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            s.open(&tampered, "alice", "tools/call", "t"),
            Err(SealError::Invalid)
        );
        for g in [
            "",
            "bst2.",
            "bst2.!!!",
            "bst2.k1.!!!",
            "v1.abc",
            &"x".repeat(MAX_STATE + 1),
        ] {
            assert_eq!(
                s.open(g, "alice", "tools/call", "t"),
                Err(SealError::Invalid)
            );
        }
    }

    #[test]
    fn keys_rotate_without_breaking_live_state_and_audience_is_bound() {
        use crate::config::secret::Secret;
        use crate::state::keyring::Keyring;
        let b = |n: u8| base64::engine::general_purpose::STANDARD.encode([n; 32]);
        let old = Keyring::from_secret(&Secret::new(format!("k1:{}", b(1)))).unwrap();
        let rotated =
            Keyring::from_secret(&Secret::new(format!("k2:{},k1:{}", b(2), b(1)))).unwrap();
        let retired = Keyring::from_secret(&Secret::new(format!("k2:{}", b(2)))).unwrap();
        let before = Sealer::new(&old, "https://gw/mcp").seal(st(), 60);
        let during = Sealer::new(&rotated, "https://gw/mcp");
        assert!(during.open(&before, "alice", "tools/call", "t").is_ok());
        let after = during.seal(st(), 60);
        assert!(after.starts_with("bst2.k2."));
        assert_eq!(
            Sealer::new(&retired, "https://gw/mcp").open(&before, "alice", "tools/call", "t"),
            Err(SealError::Invalid)
        );
        // Same keys, another gateway (audience): refused.
        assert_eq!(
            Sealer::new(&rotated, "https://other/mcp").open(&after, "alice", "tools/call", "t"),
            Err(SealError::Invalid)
        );
        // A state relabelled with another key id does not open.
        let relabelled = after.replacen("bst2.k2.", "bst2.k1.", 1);
        assert_eq!(
            during.open(&relabelled, "alice", "tools/call", "t"),
            Err(SealError::Invalid)
        );
    }

    #[test]
    fn task_ids_are_stable_bound_and_opaque() {
        let s = Sealer::random();
        let a = s.seal_task("alice", "files", "task-42").unwrap();
        assert!(a.starts_with("btk1."));
        assert!(!a.contains("task-42") && !a.contains("files"));
        // The same task keeps its id wherever it appears.
        assert_eq!(
            s.seal_task("alice", "files", "task-42").as_deref(),
            Some(a.as_str())
        );
        // Another principal, upstream or task gets another id.
        assert_ne!(s.seal_task("bob", "files", "task-42").unwrap(), a);
        assert_ne!(s.seal_task("alice", "mail", "task-42").unwrap(), a);
        assert_ne!(s.seal_task("alice", "files", "task-43").unwrap(), a);
        assert_eq!(
            s.open_task(&a, "alice"),
            Some(TaskRef {
                u: "files".into(),
                t: "task-42".into()
            })
        );
        // Bound to the principal, the gateway and its keys.
        assert_eq!(s.open_task(&a, "bob"), None);
        assert_eq!(Sealer::random().open_task(&a, "alice"), None);
        // Neither a raw upstream id nor a tampered or relabelled one opens.
        assert_eq!(s.open_task("task-42", "alice"), None);
        let mut bytes = a.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            s.open_task(&String::from_utf8(bytes).unwrap(), "alice"),
            None
        );
        assert_eq!(s.open_task(&"btk1.x.".repeat(5000), "alice"), None);
        assert_eq!(
            s.seal_task("alice", "files", &"t".repeat(MAX_TASK_ID + 1)),
            None
        );
    }

    #[test]
    fn expired_is_refused() {
        let s = Sealer::random();
        let mut state = st();
        state.e = 0;
        // Seal with ttl 0 then wait past the second boundary.
        let sealed = s.seal(state, 0);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(
            s.open(&sealed, "alice", "tools/call", "t"),
            Err(SealError::Expired)
        );
    }
}
