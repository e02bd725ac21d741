//! Why a credential was refused: [`Reason`] (the precise cause, for the audit
//! log) and [`AuthFailure`] (the reason plus what the HTTP challenge needs).
//!
//! Its own module so that every part of the crate that refuses a credential
//! (token parsing, JWT and DPoP validation, introspection) depends on this
//! leaf rather than on the verifier that composes them.

use crate::principal::Principal;

/// Why authentication failed. The `Display` text is the precise reason for the
/// audit log; clients see [`AuthFailure::description`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("no credentials")]
    Missing,
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    #[error("malformed authorization header: {0}")]
    BadRequest(&'static str),
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token type is not an access token")]
    NotAnAccessToken,
    #[error("no issuer key with the token's kid")]
    UnknownKey,
    #[error("token alg does not match the issuer's key")]
    AlgorithmMismatch,
    #[error("issuer keys unavailable: {0}")]
    KeysUnavailable(String),
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("audience is not this resource")]
    WrongAudience,
    #[error("missing or malformed claim {0}")]
    MissingClaim(String),
    #[error("token is not active (introspection)")]
    Inactive,
    #[error("introspection unavailable: {0}")]
    IntrospectionUnavailable(String),
    #[error("opaque token and no introspection configured")]
    NotIntrospectable,
    #[error("invalid DPoP proof: {0}")]
    BadDpop(&'static str),
    #[error("DPoP-bound token presented without DPoP")]
    DpopProofMissing,
    #[error("token is not DPoP-bound but DPoP is required")]
    DpopRequired,
    #[error("DPoP scheme used with a token that is not DPoP-bound")]
    NotDpopBound,
    #[error("token revoked")]
    TokenRevoked,
    #[error("subject revoked")]
    SubjectRevoked,
    #[error("insufficient scope")]
    InsufficientScope,
}

/// A refused request: the reason, and what the challenge needs.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    /// Why.
    pub reason: Reason,
    /// For `insufficient_scope`: every scope the operation needs.
    pub required_scopes: Vec<String>,
    /// Who, when the token itself was valid (insufficient scope, revocation).
    pub principal: Option<Box<Principal>>,
}

impl AuthFailure {
    pub(crate) fn new(reason: Reason) -> Self {
        AuthFailure {
            reason,
            required_scopes: Vec::new(),
            principal: None,
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self.reason {
            Reason::BadRequest(_) => 400,
            Reason::InsufficientScope => 403,
            Reason::KeysUnavailable(_) | Reason::IntrospectionUnavailable(_) => 503,
            Reason::Missing
            | Reason::UnsupportedScheme
            | Reason::Malformed
            | Reason::AlgorithmNotAllowed
            | Reason::NotAnAccessToken
            | Reason::UnknownKey
            | Reason::AlgorithmMismatch
            | Reason::BadSignature
            | Reason::Expired
            | Reason::NotYetValid
            | Reason::IssuedInFuture
            | Reason::WrongIssuer
            | Reason::WrongAudience
            | Reason::MissingClaim(_)
            | Reason::Inactive
            | Reason::NotIntrospectable
            | Reason::BadDpop(_)
            | Reason::DpopProofMissing
            | Reason::DpopRequired
            | Reason::NotDpopBound
            | Reason::TokenRevoked
            | Reason::SubjectRevoked => 401,
        }
    }

    /// The RFC 6750 / RFC 9449 `error` code; none when no credentials were sent
    /// (RFC 6750 §3.1).
    pub fn error_code(&self) -> Option<&'static str> {
        match self.reason {
            Reason::Missing | Reason::UnsupportedScheme => None,
            Reason::BadRequest(_) => Some("invalid_request"),
            Reason::InsufficientScope => Some("insufficient_scope"),
            Reason::BadDpop(_) | Reason::DpopProofMissing => Some("invalid_dpop_proof"),
            Reason::KeysUnavailable(_) | Reason::IntrospectionUnavailable(_) => {
                Some("temporarily_unavailable")
            }
            Reason::Malformed
            | Reason::AlgorithmNotAllowed
            | Reason::NotAnAccessToken
            | Reason::UnknownKey
            | Reason::AlgorithmMismatch
            | Reason::BadSignature
            | Reason::Expired
            | Reason::NotYetValid
            | Reason::IssuedInFuture
            | Reason::WrongIssuer
            | Reason::WrongAudience
            | Reason::MissingClaim(_)
            | Reason::Inactive
            | Reason::NotIntrospectable
            | Reason::DpopRequired
            | Reason::NotDpopBound
            | Reason::TokenRevoked
            | Reason::SubjectRevoked => Some("invalid_token"),
        }
    }

    /// A fixed, client-safe description (no token content, no key ids).
    pub fn description(&self) -> &'static str {
        match self.reason {
            Reason::Missing => "authentication required: send an OAuth access token",
            Reason::UnsupportedScheme => "authentication required: use the Bearer or DPoP scheme",
            Reason::BadRequest(m) => m,
            Reason::Expired => "the access token expired",
            Reason::NotYetValid | Reason::IssuedInFuture => "the access token is not valid yet",
            Reason::WrongAudience => "the access token was not issued for this resource",
            Reason::WrongIssuer => "the access token is not from a trusted issuer",
            Reason::Malformed
            | Reason::AlgorithmNotAllowed
            | Reason::NotAnAccessToken
            | Reason::UnknownKey
            | Reason::AlgorithmMismatch
            | Reason::BadSignature
            | Reason::MissingClaim(_)
            | Reason::NotIntrospectable => "the access token is invalid",
            Reason::Inactive | Reason::TokenRevoked | Reason::SubjectRevoked => {
                "the access token is not active"
            }
            Reason::KeysUnavailable(_) | Reason::IntrospectionUnavailable(_) => {
                "the identity provider cannot be reached to verify this token; retry later"
            }
            Reason::BadDpop(_) | Reason::DpopProofMissing => {
                "a valid DPoP proof is required for this token"
            }
            Reason::DpopRequired => "this resource requires a DPoP-bound access token",
            Reason::NotDpopBound => "the DPoP scheme requires a DPoP-bound access token",
            Reason::InsufficientScope => "the access token lacks the scopes this request needs",
        }
    }
}
