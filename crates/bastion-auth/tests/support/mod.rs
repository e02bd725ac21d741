//! Test support: an in-process issuer (metadata, JWKS, introspection, token
//! endpoint) and key helpers. Shared by the tests and the benchmark.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    reason = "test support"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use axum::extract::State;
use axum::routing::{get, post};
use base64::Engine as _;
use bastion_auth::{
    DpopConfig, KeyCache, KeySource, Revocations, TokenKind, Verifier, VerifierConfig,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};

pub const AUD: &str = "http://127.0.0.1:9/mcp";

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn now() -> u64 {
    bastion_auth::now_secs()
}

/// A signing key with its public JWK.
#[allow(missing_debug_implementations, reason = "test support")]
pub struct Key {
    pub alg: Algorithm,
    pub kid: String,
    pub enc: EncodingKey,
    pub jwk: Value,
}

impl Key {
    pub fn es256(kid: &str) -> Key {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let pubk = pair.public_key().as_ref();
        let (x, y) = (&pubk[1..33], &pubk[33..65]);
        Key {
            alg: Algorithm::ES256,
            kid: kid.into(),
            enc: EncodingKey::from_ec_der(doc.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "kid": kid, "alg": "ES256", "use": "sig"}),
        }
    }

    pub fn ed25519(kid: &str) -> Key {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        Key {
            alg: Algorithm::EdDSA,
            kid: kid.into(),
            enc: EncodingKey::from_ed_der(doc.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()), "kid": kid}),
        }
    }

    pub fn rs256(kid: &str) -> Key {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let public = pair.public_key();
        Key {
            alg: Algorithm::RS256,
            kid: kid.into(),
            enc: {
                // jsonwebtoken wants PKCS#1 for RSA DER; its PEM reader unwraps PKCS#8.
                let b = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
                let lines: Vec<&str> = b
                    .as_bytes()
                    .chunks(64)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect();
                let pem = format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    lines.join("\n")
                );
                EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
            },
            jwk: json!({"kty": "RSA", "n": b64(public.modulus().big_endian_without_leading_zero()),
                        "e": b64(public.exponent().big_endian_without_leading_zero()), "kid": kid}),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.typ = Some("at+jwt".into());
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }

    pub fn sign_with(&self, h: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }
}

/// Claims of a valid token for `AUD`.
pub fn claims(iss: &str, sub: &str) -> Value {
    let t = now();
    json!({"iss": iss, "sub": sub, "aud": AUD, "client_id": "app", "scope": "mcp:tools",
           "iat": t, "exp": t.saturating_add(300), "jti": format!("j-{sub}-{}", rand_u64())})
}

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

#[derive(Default)]
#[allow(missing_debug_implementations, reason = "test support")]
pub struct IdpState {
    pub issuer: Mutex<String>,
    pub jwks: Mutex<Value>,
    pub jwks_hits: AtomicUsize,
    pub introspect: Mutex<HashMap<String, Value>>,
    pub introspect_hits: AtomicUsize,
    pub token_hits: AtomicUsize,
    pub last_token_form: Mutex<String>,
    pub last_token_auth: Mutex<String>,
}

/// A tiny issuer on a loopback port.
#[allow(missing_debug_implementations, reason = "test support")]
pub struct Idp {
    pub issuer: String,
    pub state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    pub async fn start(keys: &[&Key]) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(IdpState::default());
        *state.issuer.lock() = issuer.clone();
        *state.jwks.lock() =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(|State(s): State<Arc<IdpState>>| async move {
                    let i = s.issuer.lock().clone();
                    axum::Json(json!({"issuer": i, "jwks_uri": format!("{i}/jwks"),
                        "introspection_endpoint": format!("{i}/introspect"),
                        "token_endpoint": format!("{i}/token")}))
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Arc<IdpState>>| async move {
                    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(s.jwks.lock().clone())
                }),
            )
            .route(
                "/introspect",
                post(
                    |State(s): State<Arc<IdpState>>, headers: axum::http::HeaderMap, body: String| async move {
                        s.introspect_hits.fetch_add(1, Ordering::SeqCst);
                        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                        if auth != format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("gw:gw-secret")) {
                            return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
                        }
                        let tok = url::form_urlencoded::parse(body.as_bytes())
                            .find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()).unwrap_or_default();
                        let v = s.introspect.lock().get(&tok).cloned().unwrap_or(json!({"active": false}));
                        (axum::http::StatusCode::OK, axum::Json(v))
                    },
                ),
            )
            .route(
                "/token",
                post(
                    |State(s): State<Arc<IdpState>>, headers: axum::http::HeaderMap, body: String| async move {
                        let n = s.token_hits.fetch_add(1, Ordering::SeqCst);
                        *s.last_token_form.lock() = body.clone();
                        *s.last_token_auth.lock() = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                        axum::Json(json!({"access_token": format!("upstream-token-{n}"), "token_type": "Bearer", "expires_in": 120}))
                    },
                ),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Idp {
            issuer,
            state,
            task,
        }
    }

    pub fn set_keys(&self, keys: &[&Key]) {
        *self.state.jwks.lock() =
            json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    }
}

pub fn config(issuer: &str) -> VerifierConfig {
    VerifierConfig {
        issuer: issuer.to_owned(),
        audience: AUD.to_owned(),
        algorithms: bastion_auth::DEFAULT_ALGORITHMS.to_vec(),
        leeway: Duration::from_secs(30),
        required_scopes: vec!["mcp:tools".into()],
        scope_implies: Default::default(),
        groups_claim: Some("groups".into()),
        roles_claim: Some("realm_access.roles".into()),
        introspection: None,
        dpop: DpopConfig::default(),
        jwt_kind: TokenKind::Jwt,
    }
}

pub fn verifier(cfg: VerifierConfig, cooldown: Duration) -> Verifier {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let keys = KeyCache::new(
        KeySource::Discover {
            issuer: cfg.issuer.clone(),
        },
        http.clone(),
        cooldown,
        Duration::from_secs(300),
    );
    Verifier::new(cfg, keys, http, Arc::new(Revocations::default()))
}
