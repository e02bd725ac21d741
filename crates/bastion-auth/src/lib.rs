//! OAuth 2.1 resource-server authentication for mcp-bastion.
//!
//! This crate owns everything about *who* a request comes from, and nothing about
//! where it goes:
//! - [`Verifier`]: validates the credential of every client request (JWT access
//!   tokens against the issuer's JWKS, opaque tokens by RFC 7662 introspection,
//!   DPoP proofs per RFC 9449, the revocation list) and yields a [`Principal`] or
//!   an [`AuthFailure`] that says which challenge to send;
//! - [`challenge`]: the RFC 6750 / RFC 9728 `WWW-Authenticate` values;
//! - [`TokenSource`]: the gateway's *own* credentials towards upstreams (OAuth
//!   client credentials and RFC 8693 token exchange), cached until shortly before
//!   expiry;
//! - [`DevIssuer`]: a local signing key for `dangerous_dev_issuer` mode;
//! - [`Secret`]: a value that cannot be printed.
//!
//! Invariants:
//! - verification never succeeds by default: every path that is not a complete,
//!   positive check returns an [`AuthFailure`];
//! - only asymmetric algorithms are accepted, and the algorithm must match the key
//!   that the issuer published (type, curve and the JWK's own `alg`);
//! - the audience must be this gateway's canonical resource URI (C0.1);
//! - no token, secret or key material appears in any error or `Debug` output.
//!
//! It does HTTP *client* I/O (JWKS, discovery, introspection, token endpoints) but
//! never sees the gateway's routing.

#![forbid(unsafe_code)]

pub mod challenge;
mod dev;
mod dpop;
mod error;
mod introspect;
mod jwks;
mod jwt;
pub mod keyfile;
mod principal;
mod revocation;
mod secret;
mod tokens;
mod util;
mod verifier;

pub use dev::{DevIssuer, DevIssuerError};
pub use dpop::{DpopConfig, ReplayCache};
pub use error::{AuthFailure, Reason};
pub use introspect::IntrospectionConfig;
pub use jsonwebtoken::Algorithm;
pub use jwks::{KeyCache, KeySource};
pub use principal::{Principal, TokenKind};
pub use revocation::Revocations;
pub use secret::Secret;
pub use tokens::{GrantKind, Issued, TokenEndpoint, TokenError, TokenSource, TokenSourceConfig};
pub use util::{audience_matches, now_secs};
pub use verifier::{Credentials, Verifier, VerifierConfig};

/// The signature algorithms this crate accepts by default: every asymmetric JWS
/// algorithm the crypto backend implements. HMAC and `none` are never accepted.
pub const DEFAULT_ALGORITHMS: &[jsonwebtoken::Algorithm] = &[
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::EdDSA,
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::RS384,
    jsonwebtoken::Algorithm::RS512,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::PS384,
    jsonwebtoken::Algorithm::PS512,
];
