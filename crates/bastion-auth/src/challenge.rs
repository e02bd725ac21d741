//! `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9728 §5.1, RFC 9449 §7.1).
//!
//! The `Bearer` challenge always carries `resource_metadata` (so MCP clients find
//! the Protected Resource Metadata) and the scopes needed; `error` appears only
//! when credentials were sent (RFC 6750 §3.1). A `DPoP` challenge with the
//! accepted algorithms follows when DPoP is mandatory or the failure was about a
//! DPoP proof.

use crate::error::{AuthFailure, Reason};

/// Quotes a value for an auth-param (the inputs are fixed strings and scope
/// tokens, but escape anyway so a future caller cannot break the header).
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len().saturating_add(2));
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        if !c.is_control() {
            s.push(c);
        }
    }
    s.push('"');
    s
}

/// The challenge header values for a refused request.
///
/// `scopes` is what the request needs (the baseline for a 401, every scope the
/// operation needs for a 403); `dpop_algs` is `Some` when DPoP is enabled.
pub fn www_authenticate(
    f: &AuthFailure,
    resource_metadata: &str,
    scopes: &[String],
    dpop_algs: Option<&str>,
    dpop_required: bool,
) -> Vec<String> {
    let mut params = vec![format!("resource_metadata={}", quoted(resource_metadata))];
    let scope_list: &[String] = if f.required_scopes.is_empty() {
        scopes
    } else {
        &f.required_scopes
    };
    if !scope_list.is_empty() {
        params.push(format!("scope={}", quoted(&scope_list.join(" "))));
    }
    let dpop_failure = matches!(f.reason, Reason::BadDpop(_) | Reason::DpopProofMissing);
    if let Some(code) = f.error_code()
        && !dpop_failure
    {
        params.push(format!("error={}", quoted(code)));
        params.push(format!("error_description={}", quoted(f.description())));
    }
    let mut out = vec![format!("Bearer {}", params.join(", "))];
    if let Some(algs) = dpop_algs
        && (dpop_required || dpop_failure || matches!(f.reason, Reason::DpopRequired))
    {
        let mut d = vec![format!("algs={}", quoted(algs))];
        if dpop_failure {
            d.push(format!("error={}", quoted("invalid_dpop_proof")));
            d.push(format!("error_description={}", quoted(f.description())));
        }
        out.push(format!("DPoP {}", d.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(reason: Reason) -> AuthFailure {
        AuthFailure {
            reason,
            required_scopes: Vec::new(),
            principal: None,
        }
    }

    #[test]
    fn missing_token_has_no_error() {
        let h = www_authenticate(
            &fail(Reason::Missing),
            "https://gw/.well-known/oauth-protected-resource/mcp",
            &["mcp:tools".into()],
            None,
            false,
        );
        assert_eq!(
            h,
            [
                "Bearer resource_metadata=\"https://gw/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools\""
            ]
        );
    }

    #[test]
    fn invalid_and_insufficient() {
        let h = www_authenticate(&fail(Reason::Expired), "u", &["a".into()], None, false);
        assert!(h[0].contains("error=\"invalid_token\""), "{h:?}");
        let mut f = fail(Reason::InsufficientScope);
        f.required_scopes = vec!["a".into(), "b".into()];
        let h = www_authenticate(&f, "u", &["a".into()], None, false);
        assert!(h[0].contains("error=\"insufficient_scope\""), "{h:?}");
        assert!(h[0].contains("scope=\"a b\""), "{h:?}");
    }

    #[test]
    fn dpop_challenge() {
        let h = www_authenticate(
            &fail(Reason::BadDpop("proof replayed")),
            "u",
            &[],
            Some("ES256 EdDSA"),
            false,
        );
        assert_eq!(h.len(), 2);
        assert!(h[1].starts_with("DPoP algs=\"ES256 EdDSA\""), "{h:?}");
        assert!(h[1].contains("invalid_dpop_proof"), "{h:?}");
    }
}
