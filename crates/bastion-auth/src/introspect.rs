//! Opaque tokens: RFC 7662 introspection, authenticated, cached no longer than
//! the token lives.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::error::Reason;
use crate::principal::Principal;
use crate::secret::Secret;
use crate::util::{now_secs, read_limited, sha256};

/// Introspection settings.
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// The endpoint; discovered from the issuer's metadata when `None`.
    pub endpoint: Option<url::Url>,
    /// The gateway's client id at the issuer.
    pub client_id: String,
    /// Its secret (HTTP Basic, RFC 6749 §2.3.1).
    pub client_secret: Secret,
    /// Upper bound of how long a positive answer is reused (never past `exp`).
    pub max_cache: Duration,
}

/// How long a negative answer ("not active") is reused: it cannot become active
/// again, and caching it stops garbage tokens from being relayed to the issuer.
const NEGATIVE_TTL: u64 = 30;
const MAX_ENTRIES: usize = 1 << 16;

#[derive(Debug, Clone)]
enum Entry {
    Active(Box<Principal>, u64),
    Inactive(u64),
}

/// Cached introspection answers, keyed by the SHA-256 of the token. Negative
/// answers live in their own bounded map, so a flood of garbage tokens can
/// evict only other garbage, never the answers for real users.
#[derive(Debug, Default)]
pub(crate) struct IntrospectionCache {
    m: Mutex<HashMap<[u8; 32], Entry>>,
    negative: Mutex<HashMap<[u8; 32], Entry>>,
}

impl IntrospectionCache {
    pub(crate) fn get(&self, token: &str) -> Option<Result<Principal, Reason>> {
        let now = now_secs();
        let k = sha256(token.as_bytes());
        if let Some(Entry::Inactive(until)) = self.negative.lock().get(&k)
            && *until > now
        {
            return Some(Err(Reason::Inactive));
        }
        match self.m.lock().get(&k)? {
            Entry::Active(p, until) if *until > now => Some(Ok((**p).clone())),
            _ => None,
        }
    }

    fn put(&self, token: &str, e: Entry) {
        let now = now_secs();
        let mut m = match e {
            Entry::Active(..) => self.m.lock(),
            Entry::Inactive(_) => self.negative.lock(),
        };
        if m.len() >= MAX_ENTRIES {
            m.retain(|_, e| match e {
                Entry::Active(_, t) | Entry::Inactive(t) => *t > now,
            });
            if m.len() >= MAX_ENTRIES {
                // Still full of live entries: forget them all rather than grow;
                // the cost is re-introspection, never a wrong answer.
                m.clear();
            }
        }
        m.insert(sha256(token.as_bytes()), e);
    }
}

/// Asks the issuer about `token`; returns the claims of an active token.
pub(crate) async fn introspect(
    http: &reqwest::Client,
    endpoint: &url::Url,
    cfg: &IntrospectionConfig,
    token: &str,
) -> Result<Option<Map<String, Value>>, Reason> {
    let resp = http
        .post(endpoint.clone())
        .basic_auth(
            form_encode(&cfg.client_id),
            Some(form_encode(cfg.client_secret.expose_secret())),
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .map_err(|e| Reason::IntrospectionUnavailable(crate::util::describe(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Reason::IntrospectionUnavailable(format!(
            "endpoint answered HTTP {}",
            status.as_u16()
        )));
    }
    let body = read_limited(resp)
        .await
        .map_err(Reason::IntrospectionUnavailable)?;
    let v: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|_| Reason::IntrospectionUnavailable("answer is not a JSON object".into()))?;
    if v.get("active").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    Ok(Some(v))
}

/// Stores the outcome for `token`.
pub(crate) fn remember(
    cache: &IntrospectionCache,
    cfg: &IntrospectionConfig,
    token: &str,
    r: &Result<Principal, Reason>,
) {
    let now = now_secs();
    match r {
        Ok(p) => {
            let mut until = now.saturating_add(cfg.max_cache.as_secs());
            if p.expires_at != 0 {
                until = until.min(p.expires_at);
            }
            if until > now {
                cache.put(token, Entry::Active(Box::new(p.clone()), until));
            }
        }
        Err(Reason::Inactive) => {
            cache.put(token, Entry::Inactive(now.saturating_add(NEGATIVE_TTL)))
        }
        Err(_) => {}
    }
}

/// RFC 6749 §2.3.1: client credentials in Basic auth are form-urlencoded first.
pub(crate) fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
