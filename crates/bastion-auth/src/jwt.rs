//! JWT access-token validation (RFC 9068 shape, RFC 8725 practices).
//!
//! Order: header (alg allow-list, no `crit`, access-token `typ`) → key by `kid`
//! (type, curve and JWK `alg` must fit) → signature → `iss` exact → `exp`/`nbf`
//! with bounded leeway → `iat` not in the future → `aud` contains the canonical
//! resource → principal claims. Each step's failure has its own reason.

use std::collections::BTreeSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::error::Reason;
use crate::jwks::{KeyCache, KeyError};
use crate::principal::{Principal, TokenKind};
use crate::util::{audience_matches, now_secs};
use crate::verifier::VerifierConfig;

/// Whether `token` has the compact JWS shape (three base64url segments).
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let mut n = 0u32;
    for part in token.split('.') {
        n = n.saturating_add(1);
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    n == 3
}

/// Validates a JWT access token and returns its principal and the identity of
/// the key that verified it (kid and fingerprint).
pub(crate) async fn validate(
    token: &str,
    cfg: &VerifierConfig,
    keys: &Arc<KeyCache>,
    kind: TokenKind,
) -> Result<(Principal, Option<String>, [u8; 32]), Reason> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::Malformed)?;
    // HMAC (including "HS256 signed with the public key") and anything not on
    // the configured list never reaches a key; `none` does not even parse.
    if !cfg.algorithms.contains(&header.alg)
        || matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        )
    {
        return Err(Reason::AlgorithmNotAllowed);
    }
    if header.crit.is_some() {
        return Err(Reason::Malformed);
    }
    // RFC 9068 `at+jwt`; plain `JWT` is what several major issuers send. Any
    // other type (an ID token's, a DPoP proof's, a logout token's) is refused.
    if let Some(typ) = header.typ.as_deref() {
        let t = typ.to_ascii_lowercase();
        if !matches!(t.as_str(), "at+jwt" | "application/at+jwt" | "jwt") {
            return Err(Reason::NotAnAccessToken);
        }
    }
    let key = keys
        .key(header.kid.as_deref(), header.alg)
        .await
        .map_err(|e| match e {
            KeyError::UnknownKid | KeyError::Ambiguous => Reason::UnknownKey,
            KeyError::AlgMismatch => Reason::AlgorithmMismatch,
            KeyError::Unavailable(m) => Reason::KeysUnavailable(m),
        })?;

    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.leeway = cfg.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    // The audience is compared below under our documented policy.
    v.validate_aud = false;
    v.set_issuer(&[cfg.issuer.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| {
            match e.kind() {
                ErrorKind::InvalidSignature => Reason::BadSignature,
                ErrorKind::ExpiredSignature => Reason::Expired,
                ErrorKind::ImmatureSignature => Reason::NotYetValid,
                ErrorKind::InvalidIssuer => Reason::WrongIssuer,
                ErrorKind::MissingRequiredClaim(c) => Reason::MissingClaim(c.clone()),
                ErrorKind::InvalidAlgorithm => Reason::AlgorithmMismatch,
                _ => Reason::Malformed,
            }
        })?;
    let claims = data.claims;
    let p = principal_from_claims(&claims, cfg, kind)?;
    Ok((p, key.kid, key.fingerprint))
}

/// Checks the time, audience and identity claims shared by JWTs and
/// introspection responses, and builds the principal.
pub(crate) fn principal_from_claims(
    claims: &Map<String, Value>,
    cfg: &VerifierConfig,
    kind: TokenKind,
) -> Result<Principal, Reason> {
    let now = now_secs();
    let leeway = cfg.leeway.as_secs();
    let num = |k: &str| -> Result<Option<u64>, Reason> {
        match claims.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or(Reason::MissingClaim(k.to_owned())),
        }
    };
    let exp = num("exp")?;
    if let Some(exp) = exp
        && exp.saturating_add(leeway) <= now
    {
        return Err(Reason::Expired);
    }
    if let Some(nbf) = num("nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(Reason::NotYetValid);
    }
    let iat = num("iat")?;
    if let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        return Err(Reason::IssuedInFuture);
    }
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == cfg.issuer => {}
        Some(_) => return Err(Reason::WrongIssuer),
        None if kind == TokenKind::Introspected => {}
        None => return Err(Reason::MissingClaim("iss".into())),
    }
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(Reason::WrongAudience),
    };
    if !auds.iter().any(|a| audience_matches(a, &cfg.audience)) {
        return Err(Reason::WrongAudience);
    }
    let str_claim = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    // RFC 9068 `client_id`; `azp` (OpenID, Keycloak), `appid` (Entra v1),
    // `cid` (Okta) carry the same.
    let client_id = str_claim("client_id")
        .or_else(|| str_claim("azp"))
        .or_else(|| str_claim("appid"))
        .or_else(|| str_claim("cid"));
    // RFC 9068 requires `sub`; an introspection response may omit it for a
    // client-credentials token, whose subject is then the client itself.
    let subject = match (str_claim("sub"), kind) {
        (Some(s), _) => s,
        (None, TokenKind::Introspected) => client_id
            .clone()
            .ok_or(Reason::MissingClaim("sub".into()))?,
        (None, _) => return Err(Reason::MissingClaim("sub".into())),
    };
    let mut scopes = BTreeSet::new();
    for k in ["scope", "scp"] {
        match claims.get(k) {
            Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(a)) => {
                scopes.extend(a.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
    }
    let scopes = cfg.expand_scopes(scopes);
    let list = |name: &Option<String>| -> Vec<String> {
        let Some(name) = name else { return Vec::new() };
        match claim_path(claims, name) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    let dpop_jkt = claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Principal {
        issuer: cfg.issuer.clone(),
        subject,
        client_id,
        scopes,
        groups: list(&cfg.groups_claim),
        roles: list(&cfg.roles_claim),
        token_id: str_claim("jti"),
        expires_at: exp.unwrap_or(0),
        issued_at: iat,
        dpop_jkt,
        kind,
    })
}

/// A claim by dotted path (`realm_access.roles` for Keycloak).
fn claim_path<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt("opaque-token"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b+.c"));
    }
}
