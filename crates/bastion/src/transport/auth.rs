//! The HTTP adapter of client authentication: Protected Resource Metadata,
//! the per-request credential check, challenges, and credential stripping.
//!
//! Owns: building the [`Verifier`] from configuration (an external issuer, or
//! the development issuer), the RFC 9728 document and its URLs, turning an
//! [`AuthFailure`] into status + `WWW-Authenticate` + JSON-RPC error, and
//! removing the client's credentials from the request before anything else sees
//! it.
//!
//! Invariants: in every mode but `dangerous_none` a request reaches the pipeline
//! only with a [`Principal`] the verifier produced; the client's `Authorization`,
//! `DPoP`, `Proxy-Authorization` and `Cookie` headers never leave this module
//! (the token survives only as the subject of a token exchange, as a [`Secret`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response as HttpResponse};
use bastion_auth::{
    AuthFailure, Credentials, DevIssuer, KeyCache, KeySource, Principal, Revocations, Secret,
    TokenKind, Verifier, VerifierConfig,
};
use bastion_proto::{ErrorObject, Id, Message, Response, codes};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::config::{AuthMode, Config};

/// Where the development issuer lives under the gateway's origin.
pub const DEV_ISSUER_PATH: &str = "/dev-issuer";

/// Client authentication as configured.
#[derive(Debug)]
pub struct ClientAuth {
    verifier: Option<Arc<Verifier>>,
    dev: Option<Arc<DevIssuer>>,
    /// The Protected Resource Metadata document.
    prm: Value,
    /// The path-suffixed PRM URL named in challenges.
    prm_url: String,
    /// PRM paths served (root and path-suffixed).
    prm_paths: Vec<String>,
    required_scopes: Vec<String>,
    dpop_algs: Option<String>,
    dpop_required: bool,
    /// Latest client token per principal, kept only when an upstream uses token
    /// exchange (the subject token must be the client's current one).
    subjects: Option<Arc<SubjectTokens>>,
}

tokio::task_local! {
    /// The token that authenticated the request being served (token exchange
    /// only): upstream calls made for this request exchange exactly this token.
    static CURRENT_SUBJECT: Option<Secret>;
}

/// Runs `fut` with `subject` as the current request's token.
pub async fn with_subject<F: std::future::Future>(subject: Option<Secret>, fut: F) -> F::Output {
    CURRENT_SUBJECT.scope(subject, fut).await
}

/// Wraps `fut` (about to be spawned for the current request) so it keeps the
/// current request's token.
pub fn carry<F: std::future::Future>(fut: F) -> impl std::future::Future<Output = F::Output> {
    let s = current_subject();
    CURRENT_SUBJECT.scope(s, fut)
}

/// The token of the request being served, if any.
pub fn current_subject() -> Option<Secret> {
    CURRENT_SUBJECT.try_with(Clone::clone).ok().flatten()
}

/// The longest stream lifetime (about 30 years), what a token whose `exp` is
/// beyond the clock's range is given.
const FAR_FUTURE_SECS: u64 = 30 * 365 * 86_400;

/// `left` seconds after `now`. `left` derives from a token's `exp`, so a
/// far-future one is clamped to [`FAR_FUTURE_SECS`] rather than overflowing the
/// clock; if even that does not fit, the stream ends now (fail closed).
fn deadline(now: tokio::time::Instant, left: u64) -> tokio::time::Instant {
    now.checked_add(Duration::from_secs(left.min(FAR_FUTURE_SECS)))
        .unwrap_or(now)
}

/// Bounds a long-lived stream (GET stream, `subscriptions/listen`) by the
/// credential that opened it: it ends when the token expires or is revoked.
#[derive(Debug)]
pub struct Lifetime {
    until: Option<tokio::time::Instant>,
    principal: Principal,
    revocations: Option<Arc<Revocations>>,
}

impl Lifetime {
    /// Completes when the credential expires (never, without authentication).
    pub async fn expired(&self) {
        match self.until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    }

    /// Whether the credential has been revoked since the stream opened.
    pub fn revoked(&self) -> bool {
        self.revocations
            .as_ref()
            .is_some_and(|r| r.check(&self.principal).is_some())
    }
}

/// The latest client token of each principal (token exchange only), for the
/// upstream traffic no client request is waiting on (the GET listener, DELETE
/// at the end of a session). Requests use their own token (`CURRENT_SUBJECT`).
#[derive(Debug, Default)]
pub struct SubjectTokens {
    m: Mutex<HashMap<String, (Secret, u64)>>,
}

impl SubjectTokens {
    const MAX: usize = 1 << 16;

    fn put(&self, principal: &str, token: Secret, exp: u64) {
        let now = bastion_auth::now_secs();
        // A token without an expiry is kept for five minutes at most.
        let exp = if exp == 0 {
            now.saturating_add(300)
        } else {
            exp.min(now.saturating_add(86_400))
        };
        let mut m = self.m.lock();
        if m.len() >= Self::MAX {
            m.retain(|_, (_, e)| *e > now);
        }
        if m.len() < Self::MAX || m.contains_key(principal) {
            m.insert(principal.to_owned(), (token, exp));
        }
    }

    /// The principal's current token, if it has not expired.
    pub fn get(&self, principal: &str) -> Option<Secret> {
        let now = bastion_auth::now_secs();
        let m = self.m.lock();
        m.get(principal)
            .filter(|(_, e)| *e > now)
            .map(|(s, _)| s.clone())
    }
}

/// A failure to set up authentication at start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

impl SetupError {
    /// A setup error with this message.
    pub fn new(m: &str) -> Self {
        SetupError(m.to_owned())
    }
}

impl ClientAuth {
    /// Builds client authentication from the configuration.
    pub fn new(cfg: &Config, http: reqwest::Client) -> Result<Self, SetupError> {
        let public = &cfg.server.public_url;
        let origin = public.origin().ascii_serialization();
        let path = public.path().trim_end_matches('/').to_owned();
        let prm_url = format!("{origin}/.well-known/oauth-protected-resource{path}");
        let mut prm_paths = vec!["/.well-known/oauth-protected-resource".to_owned()];
        if !path.is_empty() {
            prm_paths.push(format!("/.well-known/oauth-protected-resource{path}"));
        }
        let resource = public.as_str().to_owned();
        let needs_subjects = cfg.upstreams.iter().any(|u| {
            matches!(&u.auth, crate::config::UpstreamAuth::OAuth(o)
                if o.grant == bastion_auth::GrantKind::TokenExchange)
        });
        let (verifier, dev, issuer, scopes_supported, required, dpop) = match &cfg.auth {
            AuthMode::DangerousNone => (None, None, None, Vec::new(), Vec::new(), None),
            AuthMode::OAuth(o) => {
                let source = match &o.jwks_url {
                    Some(u) => KeySource::Url {
                        jwks: u.clone(),
                        issuer: Some(o.issuer.clone()),
                    },
                    None => KeySource::Discover {
                        issuer: o.issuer.clone(),
                    },
                };
                let keys = KeyCache::new(
                    source,
                    http.clone(),
                    o.jwks_refresh_cooldown,
                    o.jwks_max_age,
                );
                let vc = VerifierConfig {
                    issuer: o.issuer.clone(),
                    audience: resource.clone(),
                    algorithms: o.algorithms.clone(),
                    leeway: o.leeway,
                    required_scopes: o.required_scopes.clone(),
                    scope_implies: o.scope_implies.clone(),
                    groups_claim: o.groups_claim.clone(),
                    roles_claim: o.roles_claim.clone(),
                    introspection: o.introspection.clone(),
                    dpop: o.dpop.clone(),
                    jwt_kind: TokenKind::Jwt,
                };
                let v = Verifier::new(vc, keys, http, Arc::new(Revocations::default()));
                let algs: Vec<String> = o.algorithms.iter().map(|a| format!("{a:?}")).collect();
                (
                    Some(Arc::new(v)),
                    None,
                    Some(o.issuer.clone()),
                    o.scopes_supported.clone(),
                    o.required_scopes.clone(),
                    Some((algs.join(" "), o.dpop.required)),
                )
            }
            AuthMode::DangerousDevIssuer {
                key_file,
                required_scopes,
            } => {
                let issuer = format!("{origin}{DEV_ISSUER_PATH}");
                let dev = DevIssuer::load_or_create(&issuer, key_file)
                    .map_err(|e| SetupError(e.to_string()))?;
                let keys = KeyCache::new(
                    KeySource::Static(vec![dev.jwk().clone()]),
                    http.clone(),
                    Duration::from_secs(10),
                    Duration::from_secs(3600),
                );
                let vc = VerifierConfig {
                    issuer: issuer.clone(),
                    audience: resource.clone(),
                    algorithms: vec![bastion_auth::Algorithm::EdDSA],
                    leeway: Duration::from_secs(30),
                    required_scopes: required_scopes.clone(),
                    scope_implies: Default::default(),
                    groups_claim: None,
                    roles_claim: None,
                    introspection: None,
                    dpop: bastion_auth::DpopConfig::default(),
                    jwt_kind: TokenKind::Dev,
                };
                let v = Verifier::new(vc, keys, http, Arc::new(Revocations::default()));
                (
                    Some(Arc::new(v)),
                    Some(Arc::new(dev)),
                    Some(issuer),
                    required_scopes.clone(),
                    required_scopes.clone(),
                    None,
                )
            }
        };
        let mut prm = json!({
            "resource": resource,
            "authorization_servers": issuer.iter().collect::<Vec<_>>(),
            "scopes_supported": scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-bastion",
        });
        if let Some((algs, required)) = &dpop
            && let Some(m) = prm.as_object_mut()
        {
            m.insert(
                "dpop_signing_alg_values_supported".into(),
                json!(algs.split(' ').collect::<Vec<_>>()),
            );
            m.insert("dpop_bound_access_tokens_required".into(), json!(required));
        }
        Ok(ClientAuth {
            verifier,
            dev,
            prm,
            prm_url,
            prm_paths,
            required_scopes: required,
            dpop_algs: dpop.as_ref().map(|d| d.0.clone()),
            dpop_required: dpop.is_some_and(|d| d.1),
            subjects: needs_subjects.then(|| Arc::new(SubjectTokens::default())),
        })
    }

    /// Whether requests are authenticated at all.
    pub fn enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// The verifier (absent in `dangerous_none`).
    pub fn verifier(&self) -> Option<&Arc<Verifier>> {
        self.verifier.as_ref()
    }

    /// The development issuer, in `dangerous_dev_issuer` mode.
    pub fn dev_issuer(&self) -> Option<&Arc<DevIssuer>> {
        self.dev.as_ref()
    }

    /// The token-exchange subject registry, when an upstream needs it.
    pub fn subjects(&self) -> Option<&Arc<SubjectTokens>> {
        self.subjects.as_ref()
    }

    /// The PRM paths to route.
    pub fn prm_paths(&self) -> &[String] {
        &self.prm_paths
    }

    /// The PRM document response.
    pub fn prm_response(&self) -> HttpResponse {
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "max-age=300"),
            ],
            self.prm.to_string(),
        )
            .into_response()
    }

    /// The lifetime of a stream opened with `p`'s credential.
    pub fn lifetime(&self, p: &Principal) -> Lifetime {
        let v = self.verifier.as_ref();
        let until = match (v, p.expires_at) {
            (Some(v), exp) if exp != 0 => {
                let at = exp.saturating_add(v.config().leeway.as_secs());
                let left = at.saturating_sub(bastion_auth::now_secs());
                Some(deadline(tokio::time::Instant::now(), left))
            }
            _ => None,
        };
        Lifetime {
            until,
            principal: p.clone(),
            revocations: v.map(|v| v.revocations().clone()),
        }
    }

    /// Authenticates a request and removes the client's credentials from it.
    /// Also returns the token itself when an upstream exchanges it (and only
    /// then), for [`with_subject`].
    ///
    /// In `dangerous_none` mode every request is the anonymous principal.
    pub async fn authenticate(
        &self,
        headers: &mut HeaderMap,
        method: &Method,
    ) -> Result<(Principal, Option<Secret>), AuthFailure> {
        let mut subject = None;
        let result = match &self.verifier {
            None => Ok(Principal::anonymous()),
            Some(v) => {
                let auth: Vec<Option<&str>> = headers
                    .get_all(header::AUTHORIZATION)
                    .iter()
                    .map(|h| h.to_str().ok())
                    .collect();
                let dpop: Vec<Option<&str>> = headers
                    .get_all("dpop")
                    .iter()
                    .map(|h| h.to_str().ok())
                    .collect();
                let r = v
                    .authenticate(&Credentials {
                        authorization: &auth,
                        dpop: &dpop,
                        method: method.as_str(),
                    })
                    .await;
                if let (Ok(p), Some(subjects), [Some(a)]) = (&r, &self.subjects, auth.as_slice())
                    && let Some((_, tok)) = a.trim().split_once(' ')
                {
                    let tok = Secret::new(tok.trim().to_owned());
                    subjects.put(&p.key(), tok.clone(), p.expires_at);
                    subject = Some(tok);
                }
                r
            }
        };
        strip_credentials(headers);
        result.map(|p| (p, subject))
    }

    /// Scopes every MCP request needs.
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }

    /// The 403 `insufficient_scope` refusal naming every scope `scopes` the
    /// operation needs, so the client can step up (RFC 6750 §3.1).
    pub fn step_up(
        &self,
        principal: &Principal,
        scopes: Vec<String>,
        id: Option<Id>,
    ) -> (AuthFailure, HttpResponse) {
        let f = AuthFailure {
            reason: bastion_auth::Reason::InsufficientScope,
            required_scopes: scopes,
            principal: Some(Box::new(principal.clone())),
        };
        let r = self.refusal(&f, id);
        (f, r)
    }

    /// The refusal for `f`: status, challenge, JSON-RPC error.
    pub fn refusal(&self, f: &AuthFailure, id: Option<Id>) -> HttpResponse {
        let status = StatusCode::from_u16(f.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut e = ErrorObject::new(codes::UNAUTHORIZED, f.description());
        let mut data = serde_json::Map::new();
        if let Some(c) = f.error_code() {
            data.insert("error".into(), json!(c));
        }
        if !f.required_scopes.is_empty() {
            data.insert("required_scopes".into(), json!(f.required_scopes));
        }
        data.insert("resource_metadata".into(), json!(self.prm_url));
        e.data = Some(Value::Object(data));
        let body = Message::Response(Response::error(id, e)).to_vec();
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if status != StatusCode::SERVICE_UNAVAILABLE {
            for c in bastion_auth::challenge::www_authenticate(
                f,
                &self.prm_url,
                &self.required_scopes,
                self.dpop_algs.as_deref(),
                self.dpop_required,
            ) {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
            }
        } else {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

/// Removes every header that carries a client credential.
pub fn strip_credentials(headers: &mut HeaderMap) {
    for h in [
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
        HeaderName::from_static("dpop"),
    ] {
        headers.remove(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_far_future_expiry_does_not_overflow_the_clock() {
        let now = tokio::time::Instant::now();
        let d = deadline(now, u64::MAX);
        assert_eq!(d.duration_since(now), Duration::from_secs(FAR_FUTURE_SECS));
        assert_eq!(deadline(now, 5).duration_since(now), Duration::from_secs(5));
    }

    fn lifetime(p: &Principal, revocations: &Arc<Revocations>, secs: u64) -> Lifetime {
        Lifetime {
            until: Some(deadline(tokio::time::Instant::now(), secs)),
            principal: p.clone(),
            revocations: Some(revocations.clone()),
        }
    }

    #[tokio::test]
    async fn a_stream_lifetime_ends_at_expiry_and_on_revocation() {
        let mut p = Principal::anonymous();
        p.issuer = "https://idp".into();
        p.subject = "alice".into();
        p.token_id = Some("j1".into());
        let r = Arc::new(Revocations::default());
        let l = lifetime(&p, &r, 0);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), l.expired())
                .await
                .is_ok()
        );
        let l = lifetime(&p, &r, 3600);
        assert!(!l.revoked());
        r.revoke_token("j1", bastion_auth::now_secs() + 60);
        assert!(l.revoked());
        let none = Lifetime {
            until: None,
            principal: p,
            revocations: None,
        };
        assert!(!none.revoked());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), none.expired())
                .await
                .is_err()
        );
    }
}
