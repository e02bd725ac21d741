//! DPoP (RFC 9449): proof-of-possession for sender-constrained tokens.
//!
//! A proof is a JWT of type `dpop+jwt`, signed by the key in its own `jwk`
//! header. It is accepted only when the key is public, its RFC 7638 thumbprint
//! equals the token's `cnf.jkt`, `htm`/`htu` name this request, `iat` is within the
//! window, `ath` is the hash of the access token presented, and its `jti` was not
//! seen before within the window (replay cache keyed by thumbprint and `jti`).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::error::Reason;
use crate::jwks::key_algs;
use crate::util::{audience_matches, b64url, now_secs, sha256};

/// DPoP settings.
#[derive(Debug, Clone)]
pub struct DpopConfig {
    /// Refuse tokens that are not DPoP-bound.
    pub required: bool,
    /// How old a proof's `iat` may be (and how long its `jti` is remembered).
    pub max_age: Duration,
    /// Allowed clock skew for proofs from the future.
    pub skew: Duration,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            required: false,
            max_age: Duration::from_secs(60),
            skew: Duration::from_secs(5),
        }
    }
}

/// Upper bound of remembered proofs; when full of live entries, proofs are
/// refused (fail closed) rather than accepted unchecked.
const MAX_PROOFS: usize = 1 << 20;

/// Live proofs one key may have in the cache. A single client (even a stolen
/// token with its key) cannot fill the cache and lock every other DPoP client
/// out; 20,000 per window is far above what one client sends.
const MAX_PER_KEY: u32 = 20_000;

/// Seen `(jkt, jti)` pairs and when they may be forgotten, with a count of live
/// proofs per key.
#[derive(Debug, Default)]
pub struct ReplayCache {
    inner: Mutex<Replay>,
}

#[derive(Debug, Default)]
struct Replay {
    seen: HashMap<[u8; 32], (u64, [u8; 32])>,
    per_key: HashMap<[u8; 32], u32>,
}

impl Replay {
    fn purge(&mut self, now: u64) {
        let per_key = &mut self.per_key;
        self.seen.retain(|_, (t, k)| {
            let live = *t > now;
            if !live && let Some(c) = per_key.get_mut(k) {
                *c = c.saturating_sub(1);
            }
            live
        });
        self.per_key.retain(|_, c| *c > 0);
    }
}

impl ReplayCache {
    /// Records a proof id; `false` if it was seen before, or its key or the
    /// cache is over its bound.
    fn insert(&self, jkt: &str, jti: &str, forget_at: u64) -> bool {
        let mut key = Vec::with_capacity(jkt.len().saturating_add(jti.len()).saturating_add(1));
        key.extend_from_slice(jkt.as_bytes());
        key.push(0);
        key.extend_from_slice(jti.as_bytes());
        let k = sha256(&key);
        let kk = sha256(jkt.as_bytes());
        let now = now_secs();
        let mut r = self.inner.lock();
        if let Some((t, _)) = r.seen.get(&k)
            && *t > now
        {
            return false;
        }
        let full = r.seen.len() >= MAX_PROOFS;
        let key_full = r.per_key.get(&kk).is_some_and(|c| *c >= MAX_PER_KEY);
        if full || key_full {
            r.purge(now);
            if r.seen.len() >= MAX_PROOFS || r.per_key.get(&kk).is_some_and(|c| *c >= MAX_PER_KEY) {
                return false;
            }
        }
        if r.seen.insert(k, (forget_at, kk)).is_none() {
            let c = r.per_key.entry(kk).or_insert(0);
            *c = c.saturating_add(1);
        }
        true
    }
}

/// What the proof must match.
pub(crate) struct Expect<'a> {
    pub method: &'a str,
    /// The canonical URI of the endpoint (the gateway's public URL).
    pub htu: &'a str,
    pub access_token: &'a str,
    pub jkt: &'a str,
}

/// Verifies a DPoP proof.
pub(crate) fn verify(
    proof: &str,
    want: &Expect<'_>,
    cfg: &DpopConfig,
    allowed: &[Algorithm],
    replay: &ReplayCache,
) -> Result<(), Reason> {
    let bad = |m: &'static str| Reason::BadDpop(m);
    let header_seg = proof.split('.').next().ok_or(bad("malformed proof"))?;
    let raw_header: Map<String, Value> = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header_seg)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(bad("malformed proof header"))?;
    if raw_header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(bad("proof typ is not dpop+jwt"));
    }
    let raw_jwk = raw_header.get("jwk").ok_or(bad("proof has no jwk"))?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| raw_jwk.get(m).is_some())
    {
        return Err(bad("proof jwk contains private key material"));
    }
    let header = jsonwebtoken::decode_header(proof).map_err(|_| bad("malformed proof header"))?;
    if !allowed.contains(&header.alg)
        || matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        )
    {
        return Err(bad("proof algorithm not allowed"));
    }
    let jwk: Jwk = header.jwk.ok_or(bad("proof has no jwk"))?;
    if !key_algs(&jwk).is_some_and(|a| a.contains(&header.alg)) {
        return Err(bad("proof alg does not match its key"));
    }
    let thumb = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| bad("proof key has no thumbprint"))?;
    if thumb != want.jkt {
        return Err(bad("proof key is not the key the token is bound to"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("proof key unusable"))?;
    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Map<String, Value>>(proof, &key, &v)
        .map_err(|_| bad("proof signature invalid"))?
        .claims;
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    let jti = s("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(bad("proof has no jti"))?;
    if s("htm") != Some(want.method) {
        return Err(bad("proof htm does not match the request method"));
    }
    let htu = s("htu").ok_or(bad("proof has no htu"))?;
    // RFC 9449 §4.3: compared without query and fragment.
    let htu = htu.split(['?', '#']).next().unwrap_or(htu);
    if !audience_matches(htu, want.htu) {
        return Err(bad("proof htu does not match this endpoint"));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(bad("proof has no iat"))?;
    let now = now_secs();
    let (skew, max_age) = (cfg.skew.as_secs(), cfg.max_age.as_secs());
    // `iat > now + skew` and `iat + max_age < now`, rearranged so that neither
    // side can overflow (`iat` is the client's; a saturated subtraction is
    // exact here: below zero, neither condition can hold).
    if iat.saturating_sub(skew) > now {
        return Err(bad("proof issued in the future"));
    }
    if iat < now.saturating_sub(max_age) {
        return Err(bad("proof too old"));
    }
    let ath = b64url(&sha256(want.access_token.as_bytes()));
    if s("ath") != Some(ath.as_str()) {
        return Err(bad("proof ath does not match the access token"));
    }
    // Saturating: a proof whose window would end past the end of time is
    // remembered for good, never forgotten early.
    let forget_at = iat
        .saturating_add(max_age)
        .saturating_add(skew)
        .saturating_add(1);
    if !replay.insert(want.jkt, jti, forget_at) {
        return Err(bad("proof replayed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_cannot_fill_the_replay_cache() {
        let c = ReplayCache::default();
        let t = now_secs() + 60;
        for i in 0..MAX_PER_KEY {
            assert!(c.insert("greedy", &i.to_string(), t));
        }
        assert!(!c.insert("greedy", "one-more", t));
        assert!(c.insert("polite", "first", t));
    }

    #[test]
    fn replay_cache_refuses_a_second_use() {
        let c = ReplayCache::default();
        let t = now_secs() + 60;
        assert!(c.insert("k", "j1", t));
        assert!(!c.insert("k", "j1", t));
        assert!(c.insert("k", "j2", t));
        assert!(c.insert("other", "j1", t));
    }
}
