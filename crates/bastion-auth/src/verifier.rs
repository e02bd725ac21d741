//! [`Verifier`]: the credential check every client request goes through.
//!
//! `authenticate` parses the `Authorization` header (exactly one, `Bearer` or
//! `DPoP`, RFC 6750 token syntax), validates the token (JWT locally, opaque by
//! introspection), consults the revocation list, enforces DPoP binding and the
//! baseline scopes, and returns the [`Principal`] or an [`AuthFailure`].
//!
//! Verified JWTs are remembered by the SHA-256 of their bytes until they expire
//! (bounded), so the per-request cost with a warm cache is a hash and a map
//! lookup instead of a signature verification. A cached entry is only used while
//! its signing key is still in the issuer's key set, and revocation, DPoP and
//! scopes are checked on every request, cached or not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use parking_lot::Mutex;

use crate::dpop::{self, DpopConfig, ReplayCache};
use crate::error::{AuthFailure, Reason};
use crate::introspect::{self, IntrospectionCache, IntrospectionConfig};
use crate::jwks::KeyCache;
use crate::jwt;
use crate::principal::{Principal, TokenKind};
use crate::revocation::{Revocations, Revoked};
use crate::util::{now_secs, sha256};

/// Validated verifier settings.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The only trusted issuer (`iss` must equal it exactly).
    pub issuer: String,
    /// The canonical resource URI of this gateway: every token's `aud` must
    /// contain it (C0.1), and DPoP proofs' `htu` must name it.
    pub audience: String,
    /// Accepted JWS algorithms (asymmetric only; HMAC is refused regardless).
    pub algorithms: Vec<Algorithm>,
    /// Clock leeway for `exp`, `nbf` and `iat` (at most 60 s).
    pub leeway: Duration,
    /// Scopes every MCP request needs.
    pub required_scopes: Vec<String>,
    /// Scope hierarchy: a granted key implies its values (transitively).
    pub scope_implies: BTreeMap<String, Vec<String>>,
    /// Claim (dotted path) holding group names.
    pub groups_claim: Option<String>,
    /// Claim (dotted path) holding role names.
    pub roles_claim: Option<String>,
    /// Opaque-token introspection, when configured.
    pub introspection: Option<IntrospectionConfig>,
    /// DPoP settings.
    pub dpop: DpopConfig,
    /// What a locally verified JWT is recorded as (`Jwt`, or `Dev` for the
    /// development issuer).
    pub jwt_kind: TokenKind,
}

impl VerifierConfig {
    /// Adds the scopes implied by the hierarchy (bounded depth).
    pub(crate) fn expand_scopes(&self, mut s: BTreeSet<String>) -> BTreeSet<String> {
        if self.scope_implies.is_empty() {
            return s;
        }
        for _ in 0..8 {
            let add: Vec<String> = s
                .iter()
                .filter_map(|k| self.scope_implies.get(k))
                .flatten()
                .filter(|x| !s.contains(*x))
                .cloned()
                .collect();
            if add.is_empty() {
                break;
            }
            s.extend(add);
        }
        s
    }
}

/// The parts of an HTTP request the verifier reads. `Debug` shows only how many
/// values there are: the values are credentials.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// Every `Authorization` header value (`None` for a value that is not
    /// visible ASCII).
    pub authorization: &'a [Option<&'a str>],
    /// Every `DPoP` header value.
    pub dpop: &'a [Option<&'a str>],
    /// The HTTP method, for DPoP `htm`.
    pub method: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("authorization", &self.authorization.len())
            .field("dpop", &self.dpop.len())
            .field("method", &self.method)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Cached {
    principal: Arc<Principal>,
    kid: Option<String>,
    fingerprint: [u8; 32],
    /// Used until then at most: the token's expiry, and never longer than a
    /// key set is trusted without a refresh.
    until: u64,
}

const MAX_VERIFIED: usize = 1 << 16;

/// Validates client credentials.
#[derive(Debug)]
pub struct Verifier {
    cfg: VerifierConfig,
    keys: Arc<KeyCache>,
    http: reqwest::Client,
    replay: ReplayCache,
    revocations: Arc<Revocations>,
    verified: Mutex<HashMap<[u8; 32], Cached>>,
    introspected: IntrospectionCache,
    /// Bounds concurrent introspection calls: a flood of unknown opaque tokens
    /// queues here instead of being relayed to the issuer all at once.
    introspect_permits: tokio::sync::Semaphore,
}

/// Concurrent introspection calls at most.
const MAX_INTROSPECTIONS: usize = 16;

/// `Authorization` schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

impl Verifier {
    /// A verifier over `keys`.
    pub fn new(
        cfg: VerifierConfig,
        keys: Arc<KeyCache>,
        http: reqwest::Client,
        revocations: Arc<Revocations>,
    ) -> Self {
        Verifier {
            cfg,
            keys,
            http,
            replay: ReplayCache::default(),
            revocations,
            verified: Mutex::new(HashMap::new()),
            introspected: IntrospectionCache::default(),
            introspect_permits: tokio::sync::Semaphore::new(MAX_INTROSPECTIONS),
        }
    }

    /// The settings.
    pub fn config(&self) -> &VerifierConfig {
        &self.cfg
    }

    /// The key cache (for the token sources that share the issuer's metadata).
    pub fn keys(&self) -> &Arc<KeyCache> {
        &self.keys
    }

    /// The revocation list.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Authenticates one request and checks the baseline scopes.
    pub async fn authenticate(&self, c: &Credentials<'_>) -> Result<Principal, AuthFailure> {
        let (scheme, token) = parse_authorization(c.authorization).map_err(AuthFailure::new)?;
        let proof = match c.dpop {
            [] => None,
            [Some(p)] => Some(*p),
            [None] => return Err(AuthFailure::new(Reason::BadDpop("malformed DPoP header"))),
            _ => return Err(AuthFailure::new(Reason::BadDpop("several DPoP headers"))),
        };
        let principal = self.validate_token(token).await.map_err(AuthFailure::new)?;
        let refuse = |reason: Reason, p: &Principal| AuthFailure {
            reason,
            required_scopes: Vec::new(),
            principal: Some(Box::new(p.clone())),
        };
        match self.revocations.check(&principal) {
            Some(Revoked::Token) => return Err(refuse(Reason::TokenRevoked, &principal)),
            Some(Revoked::Subject) => return Err(refuse(Reason::SubjectRevoked, &principal)),
            None => {}
        }
        match (&principal.dpop_jkt, scheme) {
            (Some(jkt), Scheme::Dpop) => {
                let proof = proof.ok_or_else(|| refuse(Reason::DpopProofMissing, &principal))?;
                let want = dpop::Expect {
                    method: c.method,
                    htu: &self.cfg.audience,
                    access_token: token,
                    jkt,
                };
                dpop::verify(
                    proof,
                    &want,
                    &self.cfg.dpop,
                    &self.cfg.algorithms,
                    &self.replay,
                )
                .map_err(|r| refuse(r, &principal))?;
            }
            (Some(_), Scheme::Bearer) => {
                return Err(refuse(Reason::DpopProofMissing, &principal));
            }
            (None, Scheme::Dpop) => return Err(refuse(Reason::NotDpopBound, &principal)),
            (None, Scheme::Bearer) if self.cfg.dpop.required => {
                return Err(refuse(Reason::DpopRequired, &principal));
            }
            (None, Scheme::Bearer) => {}
        }
        self.require_scopes(principal, &self.cfg.required_scopes)
    }

    /// Checks that `p` holds every scope in `required`; otherwise the
    /// `insufficient_scope` failure that lets the client step up.
    pub fn require_scopes(
        &self,
        p: Principal,
        required: &[String],
    ) -> Result<Principal, AuthFailure> {
        if p.has_scopes(required) {
            return Ok(p);
        }
        let mut all: Vec<String> = self.cfg.required_scopes.clone();
        for s in required {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        Err(AuthFailure {
            reason: Reason::InsufficientScope,
            required_scopes: all,
            principal: Some(Box::new(p)),
        })
    }

    async fn validate_token(&self, token: &str) -> Result<Principal, Reason> {
        let key = sha256(token.as_bytes());
        let now = now_secs();
        let hit = self.verified.lock().get(&key).cloned();
        if let Some(c) = hit {
            if c.until > now && self.keys.still_published(c.kid.as_deref(), &c.fingerprint) {
                return Ok((*c.principal).clone());
            }
            // Expired, key withdrawn or swapped, or simply due: verify afresh.
            self.verified.lock().remove(&key);
        }
        if jwt::looks_like_jwt(token) {
            let (p, kid, fp) =
                jwt::validate(token, &self.cfg, &self.keys, self.cfg.jwt_kind).await?;
            self.remember(key, &p, kid, fp);
            return Ok(p);
        }
        let Some(icfg) = &self.cfg.introspection else {
            return Err(Reason::NotIntrospectable);
        };
        if let Some(r) = self.introspected.get(token) {
            return r;
        }
        let _permit = self
            .introspect_permits
            .acquire()
            .await
            .map_err(|_| Reason::IntrospectionUnavailable("shutting down".into()))?;
        // Another request may have introspected this token while we waited.
        if let Some(r) = self.introspected.get(token) {
            return r;
        }
        let endpoint = match &icfg.endpoint {
            Some(u) => u.clone(),
            None => self
                .keys
                .introspection_endpoint()
                .await
                .map_err(Reason::IntrospectionUnavailable)?,
        };
        let r = match introspect::introspect(&self.http, &endpoint, icfg, token).await? {
            None => Err(Reason::Inactive),
            Some(claims) => {
                if claims
                    .get("token_type")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|t| {
                        !t.eq_ignore_ascii_case("bearer")
                            && !t.eq_ignore_ascii_case("dpop")
                            && !t.eq_ignore_ascii_case("access_token")
                    })
                {
                    Err(Reason::NotAnAccessToken)
                } else {
                    jwt::principal_from_claims(&claims, &self.cfg, TokenKind::Introspected)
                }
            }
        };
        introspect::remember(&self.introspected, icfg, token, &r);
        r
    }

    fn remember(&self, key: [u8; 32], p: &Principal, kid: Option<String>, fingerprint: [u8; 32]) {
        let now = now_secs();
        let until = p
            .expires_at
            .saturating_add(self.cfg.leeway.as_secs())
            .min(now.saturating_add(self.keys.max_age().as_secs()));
        let mut m = self.verified.lock();
        if m.len() >= MAX_VERIFIED {
            m.retain(|_, c| c.until > now);
            if m.len() >= MAX_VERIFIED {
                m.clear();
            }
        }
        m.insert(
            key,
            Cached {
                principal: Arc::new(p.clone()),
                kid,
                fingerprint,
                until,
            },
        );
    }
}

/// RFC 6750 §2.1 `b64token` syntax.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn parse_authorization<'a>(values: &[Option<&'a str>]) -> Result<(Scheme, &'a str), Reason> {
    let v = match values {
        [] => return Err(Reason::Missing),
        [Some(v)] => *v,
        [None] => return Err(Reason::BadRequest("malformed Authorization header")),
        _ => return Err(Reason::BadRequest("several Authorization headers")),
    };
    let v = v.trim();
    let (scheme, rest) = match v.split_once(' ') {
        Some((s, r)) => (s, r.trim_start()),
        None => (v, ""),
    };
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Reason::UnsupportedScheme);
    };
    if rest.is_empty() {
        return Err(Reason::BadRequest("empty access token"));
    }
    if !is_b64token(rest) {
        return Err(Reason::BadRequest("access token has invalid characters"));
    }
    Ok((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_syntax() {
        fn p<'a>(v: &[Option<&'a str>]) -> Result<(Scheme, &'a str), Reason> {
            parse_authorization(v)
        }
        assert_eq!(p(&[]), Err(Reason::Missing));
        assert_eq!(p(&[Some("Basic abc")]), Err(Reason::UnsupportedScheme));
        assert!(matches!(p(&[Some("Bearer")]), Err(Reason::BadRequest(_))));
        assert!(matches!(p(&[Some("Bearer ")]), Err(Reason::BadRequest(_))));
        assert!(matches!(
            p(&[Some("Bearer a b")]),
            Err(Reason::BadRequest(_))
        ));
        assert!(matches!(
            p(&[Some("Bearer a"), Some("Bearer b")]),
            Err(Reason::BadRequest(_))
        ));
        assert_eq!(
            p(&[Some("bearer abc.def")]),
            Ok((Scheme::Bearer, "abc.def"))
        );
        assert_eq!(p(&[Some("DPoP abc==")]), Ok((Scheme::Dpop, "abc==")));
    }

    #[test]
    fn failures_map_to_rfc6750() {
        let f = |r| AuthFailure::new(r);
        assert_eq!(f(Reason::Missing).status(), 401);
        assert_eq!(f(Reason::Missing).error_code(), None);
        assert_eq!(f(Reason::Expired).error_code(), Some("invalid_token"));
        assert_eq!(f(Reason::BadRequest("x")).status(), 400);
        assert_eq!(f(Reason::InsufficientScope).status(), 403);
        assert_eq!(f(Reason::KeysUnavailable(String::new())).status(), 503);
    }
}
