//! [`KeyCache`]: the issuer's signing keys, found by discovery, cached, refreshed.
//!
//! - Discovery: RFC 8414 (`/.well-known/oauth-authorization-server`, path
//!   inserted), then OpenID Connect Discovery (`/.well-known/openid-configuration`,
//!   both the appended and the inserted form). The metadata's `issuer` must equal
//!   the configured issuer exactly (RFC 8414 §3.3), or it is ignored.
//! - A key set is replaced as a whole on refresh, so a key the issuer withdrew
//!   stops verifying after the next refresh.
//! - An unknown `kid` triggers a refresh, at most once per cooldown and one at a
//!   time (single flight), so forged `kid`s cannot make the gateway hammer the
//!   issuer.
//! - A stale set (older than `max_age`) is refreshed in the background; if the
//!   issuer is unreachable the cached keys keep working (fail *open* only for keys
//!   the issuer already published), while a `kid` that is not cached fails closed
//!   with [`KeyError::Unavailable`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::RwLock;
use serde_json::Value;

use crate::util::{fetchable, read_limited};

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Discover `jwks_uri` from the issuer's metadata.
    Discover {
        /// The issuer identifier.
        issuer: String,
    },
    /// A configured JWKS URL; `issuer` (when known) still answers metadata
    /// questions (introspection and token endpoints).
    Url {
        /// The key set.
        jwks: url::Url,
        /// The issuer whose metadata names the other endpoints.
        issuer: Option<String>,
    },
    /// A fixed key set (the development issuer).
    Static(Vec<Jwk>),
}

/// Why no key could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The issuer does not publish a key with this id (after a refresh).
    #[error("no key with this kid in the issuer's key set")]
    UnknownKid,
    /// The token names no `kid` and the key set does not have exactly one
    /// candidate key.
    #[error("token has no kid and the issuer publishes several keys")]
    Ambiguous,
    /// The key exists but does not fit the token's algorithm.
    #[error("the token's alg does not match the issuer's key")]
    AlgMismatch,
    /// The key set could not be fetched and the key is not cached.
    #[error("issuer keys unavailable: {0}")]
    Unavailable(String),
}

/// A usable verification key.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    /// SHA-256 of the JWK as published: identifies the key material, so a
    /// cached verification is dropped when the issuer swaps a key (even under
    /// the same kid).
    pub fingerprint: [u8; 32],
    pub key: Arc<DecodingKey>,
    /// The algorithms this key can verify (from its type and curve, narrowed by
    /// the JWK's own `alg`).
    pub algs: Vec<Algorithm>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

/// The algorithms a JWK may verify, or `None` when it is not an acceptable
/// signature key (symmetric, private, unsupported curve, weak RSA, not for `sig`).
pub(crate) fn key_algs(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return None,
        },
        AlgorithmParameters::RSA(p) => {
            // RFC 7518 §3.3: 2048 bits at least.
            let n = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                p.n.trim_end_matches('='),
            )
            .ok()?;
            let bits = n.iter().skip_while(|b| **b == 0).count().saturating_mul(8);
            if bits < 2048 {
                return None;
            }
            vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ]
        }
        // Symmetric keys never verify anything here (no HMAC), and unknown key
        // types cannot. (The enum is non-exhaustive: a future key type is
        // refused until reviewed.)
        _ => return None,
    };
    match &jwk.common.key_algorithm {
        None => Some(family),
        Some(ka) => {
            let a = Algorithm::try_from(*ka).ok()?;
            family.contains(&a).then(|| vec![a])
        }
    }
}

/// Parses a JWKS document, skipping keys that cannot verify signatures.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "JWKS is not JSON".to_owned())?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "JWKS has no keys array".to_owned())?;
    let mut out = Vec::new();
    for k in keys.iter().take(100) {
        // A JWKS must publish public keys only; a private member means the
        // issuer is misconfigured, and such a key is not used.
        if k.get("d").is_some() {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        out.extend(to_verify_key(&jwk));
    }
    Ok(out)
}

pub(crate) fn to_verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    let algs = key_algs(jwk)?;
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        fingerprint: crate::util::sha256(&serde_json::to_vec(jwk).ok()?),
        key: Arc::new(key),
        algs,
    })
}

#[derive(Debug, Default)]
struct State {
    by_kid: HashMap<String, VerifyKey>,
    all: Vec<VerifyKey>,
    /// When the current set was fetched.
    fetched: Option<Instant>,
    /// When a fetch was last attempted (success or not).
    attempted: Option<Instant>,
    /// Whether that attempt failed.
    failed: bool,
    /// The JWKS URL once known (configured or discovered).
    jwks_url: Option<url::Url>,
    /// Other endpoints found in the issuer's metadata.
    introspection_endpoint: Option<url::Url>,
    token_endpoint: Option<url::Url>,
    /// When discovery last failed.
    discovery_failed: Option<Instant>,
}

/// The issuer's keys.
#[derive(Debug)]
pub struct KeyCache {
    source: KeySource,
    http: reqwest::Client,
    state: RwLock<State>,
    fetch: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    cooldown: Duration,
    max_age: Duration,
}

impl KeyCache {
    /// A cache for `source`. `cooldown` bounds unknown-`kid` refreshes, `max_age`
    /// is how long a key set is used before it is refreshed in the background.
    pub fn new(
        source: KeySource,
        http: reqwest::Client,
        cooldown: Duration,
        max_age: Duration,
    ) -> Arc<Self> {
        let mut state = State::default();
        if let KeySource::Static(jwks) = &source {
            let keys: Vec<VerifyKey> = jwks.iter().filter_map(to_verify_key).collect();
            install(&mut state, keys);
        }
        if let KeySource::Url { jwks, .. } = &source {
            state.jwks_url = Some(jwks.clone());
        }
        Arc::new(KeyCache {
            source,
            http,
            state: RwLock::new(state),
            fetch: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            cooldown,
            max_age,
        })
    }

    /// Whether the key a token was verified with (its kid and key material) is
    /// still published. Also starts a background refresh when the set is stale,
    /// so tokens answered from a cache still notice a withdrawn key.
    pub(crate) fn still_published(self: &Arc<Self>, kid: Option<&str>, fp: &[u8; 32]) -> bool {
        self.refresh_if_stale();
        let s = self.state.read();
        match kid {
            Some(k) => s.by_kid.get(k).is_some_and(|v| v.fingerprint == *fp),
            None => s.all.iter().any(|v| v.fingerprint == *fp),
        }
    }

    /// How long a key set is trusted before it is refreshed.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The introspection endpoint from the issuer's metadata, once discovered.
    pub async fn introspection_endpoint(&self) -> Result<url::Url, String> {
        self.endpoint(|s| &s.introspection_endpoint, "introspection_endpoint")
            .await
    }

    /// The token endpoint from the issuer's metadata.
    pub async fn token_endpoint(&self) -> Result<url::Url, String> {
        self.endpoint(|s| &s.token_endpoint, "token_endpoint").await
    }

    /// An endpoint named by the issuer's metadata, discovering it if needed.
    async fn endpoint(
        &self,
        field: impl Fn(&State) -> &Option<url::Url>,
        name: &str,
    ) -> Result<url::Url, String> {
        if let Some(u) = field(&self.state.read()).clone() {
            return Ok(u);
        }
        self.discover().await?;
        field(&self.state.read())
            .clone()
            .ok_or_else(|| format!("issuer metadata has no {name}"))
    }

    /// Finds the key for a token with `kid` and `alg`.
    pub(crate) async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<VerifyKey, KeyError> {
        self.refresh_if_stale();
        match self.lookup(kid, alg) {
            Err(KeyError::UnknownKid) => {}
            other => return other,
        }
        if matches!(self.source, KeySource::Static(_)) {
            return Err(KeyError::UnknownKid);
        }
        // Unknown kid (or nothing cached yet): refresh, rate-limited.
        let _g = self.fetch.lock().await;
        match self.lookup(kid, alg) {
            Err(KeyError::UnknownKid) => {}
            other => return other,
        }
        let may_fetch = self
            .state
            .read()
            .attempted
            .is_none_or(|t| t.elapsed() >= self.cooldown);
        if !may_fetch {
            return Err(if self.has_any() {
                KeyError::UnknownKid
            } else {
                KeyError::Unavailable(
                    "the last attempt to fetch them failed; retrying later".into(),
                )
            });
        }
        match self.fetch_now().await {
            Ok(()) => self.lookup(kid, alg),
            Err(e) => Err(KeyError::Unavailable(e)),
        }
    }

    fn has_any(&self) -> bool {
        self.state.read().fetched.is_some()
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<VerifyKey, KeyError> {
        let s = self.state.read();
        let found = match kid {
            Some(k) => s.by_kid.get(k).cloned(),
            None => {
                let mut c = s.all.iter().filter(|k| k.algs.contains(&alg));
                match (c.next(), c.next()) {
                    (Some(k), None) => Some(k.clone()),
                    (Some(_), Some(_)) => return Err(KeyError::Ambiguous),
                    (None, _) => None,
                }
            }
        };
        match found {
            Some(k) if k.algs.contains(&alg) => Ok(k),
            Some(_) => Err(KeyError::AlgMismatch),
            None => Err(KeyError::UnknownKid),
        }
    }

    /// Refreshes a stale set in the background, at most once per cooldown
    /// (an unreachable issuer is not retried in a tight loop).
    fn refresh_if_stale(self: &Arc<Self>) {
        if matches!(self.source, KeySource::Static(_)) {
            return;
        }
        let due = {
            let s = self.state.read();
            s.fetched.is_some()
                && s.fetched.is_some_and(|t| t.elapsed() > self.max_age)
                && s.attempted.is_none_or(|t| t.elapsed() >= self.cooldown)
        };
        if due {
            self.refresh_in_background();
        }
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _g = me.fetch.lock().await;
            if let Err(e) = me.fetch_now().await {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the cached keys");
            }
            me.refreshing.store(false, Ordering::Release);
        });
    }

    /// Fetches the key set now (caller holds the fetch lock).
    async fn fetch_now(&self) -> Result<(), String> {
        {
            let mut s = self.state.write();
            s.attempted = Some(Instant::now());
            s.failed = true;
        }
        let known = self.state.read().jwks_url.clone();
        let url = match known {
            Some(u) => u,
            None => {
                self.discover().await?;
                self.state
                    .read()
                    .jwks_url
                    .clone()
                    .ok_or_else(|| "issuer metadata has no jwks_uri".to_owned())?
            }
        };
        let body = self.get(&url).await?;
        let keys = parse_jwks(&body)?;
        let mut s = self.state.write();
        install(&mut s, keys);
        s.failed = false;
        Ok(())
    }

    async fn get(&self, url: &url::Url) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {}", crate::util::describe(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status().as_u16()));
        }
        read_limited(resp).await.map_err(|e| format!("{url}: {e}"))
    }

    /// Reads the issuer's metadata (RFC 8414, then OpenID Discovery).
    async fn discover(&self) -> Result<(), String> {
        let issuer = match &self.source {
            KeySource::Discover { issuer }
            | KeySource::Url {
                issuer: Some(issuer),
                ..
            } => issuer.clone(),
            KeySource::Url { issuer: None, .. } | KeySource::Static(_) => {
                return Err("no issuer metadata to discover".into());
            }
        };
        // A failed discovery is not retried for a cooldown: a request stream of
        // opaque tokens must not turn into a stream of metadata fetches.
        {
            let mut s = self.state.write();
            if let Some(t) = s.discovery_failed
                && t.elapsed() < self.cooldown.max(Duration::from_secs(1))
            {
                return Err("issuer metadata unavailable (recent discovery failed)".into());
            }
            s.discovery_failed = None;
        }
        let mut last = String::from("no metadata document found");
        for url in metadata_urls(&issuer) {
            let body = match self.get(&url).await {
                Ok(b) => b,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let Ok(meta) = serde_json::from_slice::<Value>(&body) else {
                last = format!("{url}: not JSON");
                continue;
            };
            if meta.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
                last = format!("{url}: metadata issuer does not match the configured issuer");
                continue;
            }
            let endpoint = |k: &str| {
                meta.get(k)
                    .and_then(Value::as_str)
                    .and_then(|s| url::Url::parse(s).ok())
                    .filter(fetchable)
            };
            let mut s = self.state.write();
            if !matches!(self.source, KeySource::Url { .. }) {
                s.jwks_url = endpoint("jwks_uri");
            }
            s.introspection_endpoint = endpoint("introspection_endpoint");
            s.token_endpoint = endpoint("token_endpoint");
            return Ok(());
        }
        self.state.write().discovery_failed = Some(Instant::now());
        Err(last)
    }
}

fn install(s: &mut State, keys: Vec<VerifyKey>) {
    s.by_kid = keys
        .iter()
        .filter_map(|k| k.kid.clone().map(|id| (id, k.clone())))
        .collect();
    s.all = keys;
    s.fetched = Some(Instant::now());
}

/// The metadata URLs to try for `issuer`, in order.
pub(crate) fn metadata_urls(issuer: &str) -> Vec<url::Url> {
    let Ok(base) = url::Url::parse(issuer) else {
        return Vec::new();
    };
    if !fetchable(&base) {
        return Vec::new();
    }
    let path = base.path().trim_end_matches('/').to_owned();
    let mut out = Vec::new();
    for (wk, inserted) in [
        ("oauth-authorization-server", true),
        ("openid-configuration", true),
        ("openid-configuration", false),
    ] {
        let mut u = base.clone();
        if inserted {
            u.set_path(&format!("/.well-known/{wk}{path}"));
        } else {
            u.set_path(&format!("{path}/.well-known/{wk}"));
        }
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_order() {
        let urls: Vec<String> = metadata_urls("https://idp.example/t1")
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "https://idp.example/.well-known/oauth-authorization-server/t1",
                "https://idp.example/.well-known/openid-configuration/t1",
                "https://idp.example/t1/.well-known/openid-configuration",
            ]
        );
        let root: Vec<String> = metadata_urls("http://127.0.0.1:4444")
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            root,
            [
                "http://127.0.0.1:4444/.well-known/oauth-authorization-server",
                "http://127.0.0.1:4444/.well-known/openid-configuration",
            ]
        );
        assert!(metadata_urls("http://idp.example").is_empty());
    }

    #[test]
    fn symmetric_private_and_weak_keys_are_not_used() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "kid": "priv", "d": "AAAA",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "RSA", "kid": "rsa2048", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa512", "n": crate::util::b64url(&[0xc3; 64]), "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.clone()).collect();
        assert_eq!(kids, ["rsa2048", "es"]);
        let es = keys
            .iter()
            .find(|k| k.kid.as_deref() == Some("es"))
            .unwrap();
        assert_eq!(es.algs, [Algorithm::ES256]);
    }
}
