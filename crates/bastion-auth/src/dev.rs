//! [`DevIssuer`]: a local Ed25519 signing key for `dangerous_dev_issuer` mode.
//!
//! The key lives in a file (PKCS#8, base64, mode 0600) so `bastion dev-token`
//! and a running gateway that share a configuration agree on it. Tokens it mints
//! have the same shape as an IdP's (RFC 9068) and go through the same verifier;
//! only the key source differs. This mode exists for demos and local use and is
//! refused on non-loopback listeners by the configuration.

use std::path::Path;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::util::{b64url, now_secs};

/// Dev-issuer failures.
#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    /// The key file could not be read or written.
    #[error("dev issuer key file {path}: {msg}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong (never the key).
        msg: String,
    },
    /// Signing failed (or the requested lifetime does not fit in a timestamp).
    #[error("cannot sign a dev token")]
    Sign,
}

/// The development issuer.
pub struct DevIssuer {
    issuer: String,
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Loads the key from `path`, creating it (mode 0600) when absent.
    pub fn load_or_create(issuer: &str, path: &Path) -> Result<Self, DevIssuerError> {
        let err = |msg: String| DevIssuerError::KeyFile {
            path: path.display().to_string(),
            msg,
        };
        let (text, _) = crate::keyfile::load_or_create(path, || {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| "cannot generate a key".to_owned())?;
            Ok(base64::engine::general_purpose::STANDARD.encode(doc.as_ref()))
        })
        .map_err(err)?;
        let pkcs8 = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| err("not a base64 PKCS#8 key".into()))?;
        Self::from_pkcs8(issuer, &pkcs8).map_err(|_| err("not an Ed25519 PKCS#8 key".into()))
    }

    /// From an Ed25519 PKCS#8 document.
    pub fn from_pkcs8(issuer: &str, pkcs8: &[u8]) -> Result<Self, DevIssuerError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| DevIssuerError::Sign)?;
        let x = b64url(pair.public_key().as_ref());
        let kid = format!("dev-{}", x.chars().take(16).collect::<String>());
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x,
            }),
        };
        Ok(DevIssuer {
            issuer: issuer.to_owned(),
            kid,
            key: EncodingKey::from_ed_der(pkcs8),
            jwk,
        })
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key, for the verifier and the served JWKS.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The served JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        json!({ "keys": [self.jwk] })
    }

    /// Mints an access token for `audience`.
    pub fn mint(
        &self,
        audience: &str,
        subject: &str,
        scopes: &[String],
        ttl_secs: u64,
        client_id: &str,
    ) -> Result<String, DevIssuerError> {
        let now = now_secs();
        // An expiry past the end of time is refused rather than wrapped into
        // the past (or clamped into a token that never expires).
        let exp = now.checked_add(ttl_secs).ok_or(DevIssuerError::Sign)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| DevIssuerError::Sign)?;
        let claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "client_id": client_id,
            "scope": scopes.join(" "),
            "iat": now,
            "exp": exp,
            "jti": b64url(&jti),
        });
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| DevIssuerError::Sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_past_the_end_of_time_is_refused() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let dev = DevIssuer::from_pkcs8("https://gw.example/dev", doc.as_ref()).unwrap();
        assert!(
            dev.mint("https://gw.example/mcp", "alice", &[], 60, "app")
                .is_ok()
        );
        assert!(matches!(
            dev.mint("https://gw.example/mcp", "alice", &[], u64::MAX, "app"),
            Err(DevIssuerError::Sign)
        ));
    }
}
