//! [`TokenSource`]: the gateway's own OAuth tokens for an upstream (C2.1, C2.2).
//!
//! Two grants: client credentials (one token for the upstream, shared by all
//! callers) and RFC 8693 token exchange (the client's token as subject token, a
//! new token whose audience is the upstream, one per subject token). Tokens are
//! cached until `refresh_margin` before they expire, never longer; the client's
//! token is only ever sent to the token endpoint of the gateway's own issuer,
//! never to an upstream.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::introspect::form_encode;
use crate::secret::Secret;
use crate::util::{read_limited, sha256};

/// Which grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// OAuth client credentials.
    ClientCredentials,
    /// RFC 8693 token exchange.
    TokenExchange,
}

impl GrantKind {
    /// Stable name for audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::TokenExchange => "token_exchange",
        }
    }
}

/// Where the token endpoint is.
#[derive(Debug, Clone)]
pub enum TokenEndpoint {
    /// Configured.
    Url(url::Url),
    /// Named by the metadata of an issuer (RFC 8414 / OpenID discovery).
    Discover(std::sync::Arc<crate::jwks::KeyCache>),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct TokenSourceConfig {
    /// Grant.
    pub grant: GrantKind,
    /// Token endpoint.
    pub token_endpoint: TokenEndpoint,
    /// The gateway's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// Scopes to request.
    pub scope: Option<String>,
    /// RFC 8707 resource (the upstream's canonical URI).
    pub resource: Option<String>,
    /// RFC 8693 audience.
    pub audience: Option<String>,
    /// Refresh this long before expiry.
    pub refresh_margin: Duration,
}

/// Token endpoint failures (never contain a token or secret).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Network or HTTP failure.
    #[error("token endpoint unavailable: {0}")]
    Unavailable(String),
    /// The endpoint refused (`error` code from the response).
    #[error("token endpoint refused: {0}")]
    Refused(String),
    /// Token exchange without a subject token.
    #[error("no client token to exchange")]
    NoSubject,
}

/// A token handed out, and whether it was freshly issued (for the audit trail).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The token.
    pub token: Secret,
    /// `true` when the token endpoint was called for it.
    pub fresh: bool,
    /// Seconds until it expires.
    pub expires_in: u64,
}

const MAX_CACHED: usize = 4096;

/// Fetches and caches upstream tokens.
#[derive(Debug)]
pub struct TokenSource {
    cfg: TokenSourceConfig,
    http: reqwest::Client,
    cache: parking_lot::Mutex<HashMap<[u8; 32], (Secret, Instant)>>,
    /// One fetch per key at a time (single flight); other keys are not held up.
    inflight: parking_lot::Mutex<HashMap<[u8; 32], std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl TokenSource {
    /// A source for `cfg`.
    pub fn new(cfg: TokenSourceConfig, http: reqwest::Client) -> Self {
        TokenSource {
            cfg,
            http,
            cache: parking_lot::Mutex::new(HashMap::new()),
            inflight: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The grant.
    pub fn grant(&self) -> GrantKind {
        self.cfg.grant
    }

    /// A token, from cache or freshly issued. `subject` is the client's token
    /// (token exchange only).
    pub async fn token(&self, subject: Option<&Secret>) -> Result<Issued, TokenError> {
        let key = match (self.cfg.grant, subject) {
            (GrantKind::ClientCredentials, _) => [0u8; 32],
            (GrantKind::TokenExchange, Some(s)) => sha256(s.expose_secret().as_bytes()),
            (GrantKind::TokenExchange, None) => return Err(TokenError::NoSubject),
        };
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        // Concurrent callers for the same key share one request; callers for
        // other keys (other users' exchanges) are not held up by it.
        let flight = self.inflight.lock().entry(key).or_default().clone();
        let _g = flight.lock().await;
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let fetched = self.fetch(subject).await;
        {
            let mut inflight = self.inflight.lock();
            if std::sync::Arc::strong_count(&flight) <= 2 {
                inflight.remove(&key);
            }
        }
        let (token, expires_in) = fetched?;
        let now = Instant::now();
        let margin = self
            .cfg
            .refresh_margin
            .min(Duration::from_secs(expires_in / 2));
        // `expires_in` is at most a day, so this fits any real clock; were it
        // not to, the token is handed out uncached rather than cached wrongly.
        if let Some(until) = now.checked_add(Duration::from_secs(expires_in).saturating_sub(margin))
        {
            let mut cache = self.cache.lock();
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (_, t)| *t > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, (token.clone(), until));
        }
        Ok(Issued {
            token,
            fresh: true,
            expires_in,
        })
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Issued> {
        let now = Instant::now();
        let cache = self.cache.lock();
        let (tok, until) = cache.get(key)?;
        (*until > now).then(|| Issued {
            token: tok.clone(),
            fresh: false,
            expires_in: until
                .duration_since(now)
                .as_secs()
                .saturating_add(self.cfg.refresh_margin.as_secs()),
        })
    }

    async fn fetch(&self, subject: Option<&Secret>) -> Result<(Secret, u64), TokenError> {
        let mut form: Vec<(&str, &str)> = Vec::new();
        match self.cfg.grant {
            GrantKind::ClientCredentials => form.push(("grant_type", "client_credentials")),
            GrantKind::TokenExchange => {
                let s = subject.ok_or(TokenError::NoSubject)?;
                form.push((
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ));
                form.push(("subject_token", s.expose_secret()));
                form.push((
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ));
                form.push((
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ));
            }
        }
        if let Some(s) = &self.cfg.scope {
            form.push(("scope", s));
        }
        if let Some(r) = &self.cfg.resource {
            form.push(("resource", r));
        }
        if let Some(a) = &self.cfg.audience {
            form.push(("audience", a));
        }
        let endpoint = match &self.cfg.token_endpoint {
            TokenEndpoint::Url(u) => u.clone(),
            TokenEndpoint::Discover(keys) => keys
                .token_endpoint()
                .await
                .map_err(TokenError::Unavailable)?,
        };
        let resp = self
            .http
            .post(endpoint)
            .basic_auth(
                form_encode(&self.cfg.client_id),
                Some(form_encode(self.cfg.client_secret.expose_secret())),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(crate::util::describe(&e)))?;
        let status = resp.status();
        let body = read_limited(resp).await.map_err(TokenError::Unavailable)?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| TokenError::Unavailable(format!("HTTP {}, not JSON", status.as_u16())))?;
        if !status.is_success() {
            let code = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error")
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(TokenError::Refused(code));
        }
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::Unavailable("response has no access_token".into()))?;
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(TokenError::Unavailable(
                "access_token is not a valid header value".into(),
            ));
        }
        // Without `expires_in` the token is used for a minute only: short-lived
        // by default rather than cached forever.
        let expires_in = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(60)
            .clamp(1, 86_400);
        Ok((Secret::new(token.to_owned()), expires_in))
    }
}
