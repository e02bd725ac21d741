//! [`Principal`]: who a request comes from, as established by the verifier.

use std::collections::BTreeSet;

/// How the principal's credential was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A JWT access token verified against the issuer's keys.
    Jwt,
    /// An opaque token the issuer vouched for by introspection (RFC 7662).
    Introspected,
    /// A token of the local development issuer (`dangerous_dev_issuer`).
    Dev,
    /// No authentication (`dangerous_none`).
    Anonymous,
}

impl TokenKind {
    /// Stable name for audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Jwt => "jwt",
            TokenKind::Introspected => "introspection",
            TokenKind::Dev => "dev_issuer",
            TokenKind::Anonymous => "anonymous",
        }
    }
}

/// The authenticated identity handed to the rest of the pipeline.
///
/// Contains no credential: the token itself never travels with the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `iss` of the token (the configured issuer).
    pub issuer: String,
    /// `sub` of the token.
    pub subject: String,
    /// The OAuth client the token was issued to (`client_id`, `azp`, `appid` or `cid`).
    pub client_id: Option<String>,
    /// Granted scopes (`scope` or `scp`), expanded through the configured
    /// hierarchy. Empty means no permissions.
    pub scopes: BTreeSet<String>,
    /// Values of the configured group claim.
    pub groups: Vec<String>,
    /// Values of the configured role claim.
    pub roles: Vec<String>,
    /// `jti`, for revocation and correlation.
    pub token_id: Option<String>,
    /// `exp` (seconds since the epoch); 0 when the credential does not expire.
    pub expires_at: u64,
    /// `iat` when present.
    pub issued_at: Option<u64>,
    /// The DPoP key thumbprint the token is bound to (`cnf.jkt`).
    pub dpop_jkt: Option<String>,
    /// How the credential was checked.
    pub kind: TokenKind,
}

impl Principal {
    /// The principal of `dangerous_none` mode.
    pub fn anonymous() -> Self {
        Principal {
            issuer: "urn:mcp-bastion:none".into(),
            subject: "anonymous".into(),
            client_id: None,
            scopes: BTreeSet::new(),
            groups: Vec::new(),
            roles: Vec::new(),
            token_id: None,
            expires_at: 0,
            issued_at: None,
            dpop_jkt: None,
            kind: TokenKind::Anonymous,
        }
    }

    /// The identity key sessions and stateless state are bound to: issuer and
    /// subject (RS-10/RS-11: identity, not token bytes, so a refreshed token keeps
    /// working). A space cannot occur in an issuer URL, so the key is unambiguous.
    pub fn key(&self) -> String {
        format!("{} {}", self.issuer, self.subject)
    }

    /// Whether every scope in `required` was granted.
    pub fn has_scopes<'a>(&self, required: impl IntoIterator<Item = &'a String>) -> bool {
        required.into_iter().all(|s| self.scopes.contains(s))
    }

    /// The scopes granted, space-separated.
    pub fn scope_string(&self) -> String {
        self.scopes.iter().cloned().collect::<Vec<_>>().join(" ")
    }
}
