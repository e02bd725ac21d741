//! Verifier behaviour against an in-process issuer: every check has a test that
//! fails if the check is removed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bastion_auth::{Credentials, Verifier};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::*;

async fn auth(v: &Verifier, header: &str) -> Result<bastion_auth::Principal, String> {
    auth_dpop(v, header, None).await
}

async fn auth_dpop(
    v: &Verifier,
    header: &str,
    proof: Option<&str>,
) -> Result<bastion_auth::Principal, String> {
    let a = [Some(header)];
    let d: Vec<Option<&str>> = proof.into_iter().map(Some).collect();
    v.authenticate(&Credentials {
        authorization: &a,
        dpop: &d,
        method: "POST",
    })
    .await
    .map_err(|f| format!("{} {:?} {}", f.status(), f.error_code(), f.reason))
}

#[tokio::test]
async fn valid_tokens_of_every_key_type_are_accepted() {
    let (es, ed, rs) = (Key::es256("es"), Key::ed25519("ed"), Key::rs256("rs"));
    let idp = Idp::start(&[&es, &ed, &rs]).await;
    let v = verifier(config(&idp.issuer), Duration::from_secs(10));
    for k in [&es, &ed, &rs] {
        let mut c = claims(&idp.issuer, "alice");
        c["groups"] = json!(["eng", "ops"]);
        c["realm_access"] = json!({"roles": ["admin"]});
        let p = auth(&v, &format!("Bearer {}", k.sign(&c))).await.unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.issuer, idp.issuer);
        assert_eq!(p.client_id.as_deref(), Some("app"));
        assert!(p.scopes.contains("mcp:tools"));
        assert_eq!(p.groups, ["eng", "ops"]);
        assert_eq!(p.roles, ["admin"]);
    }
    // `aud` as an array that contains this resource is fine (RS-06).
    let mut c = claims(&idp.issuer, "bob");
    c["aud"] = json!(["https://other.example", AUD]);
    assert!(auth(&v, &format!("Bearer {}", es.sign(&c))).await.is_ok());
    // `scp` as an array (Okta) and as a string (Entra).
    let mut c = claims(&idp.issuer, "carol");
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["mcp:tools"]);
    assert!(auth(&v, &format!("Bearer {}", es.sign(&c))).await.is_ok());
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let es = Key::es256("es");
    let idp = Idp::start(&[&es]).await;
    let v = verifier(config(&idp.issuer), Duration::from_secs(10));
    let iss = idp.issuer.clone();
    let t = now();
    let bad = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims(&iss, "mallory");
        f(&mut c);
        format!("Bearer {}", es.sign(&c))
    };
    let cases: Vec<(String, &str)> = vec![
        (
            bad(&|c| c["aud"] = json!("http://127.0.0.1:9/other")),
            "audience",
        ),
        (
            bad(&|c| c["aud"] = json!("http://127.0.0.1:9/mcp/")),
            "audience",
        ),
        (
            bad(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "aud",
        ),
        (bad(&|c| c["exp"] = json!(t - 120)), "expired"),
        (bad(&|c| c["nbf"] = json!(t + 120)), "not yet valid"),
        (bad(&|c| c["iat"] = json!(t + 120)), "future"),
        (bad(&|c| c["iss"] = json!("https://evil.example")), "issuer"),
        (
            bad(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "sub",
        ),
        ("Bearer abc.def.ghi".into(), "malformed"),
    ];
    for (h, want) in cases {
        let e = auth(&v, &h).await.unwrap_err();
        assert!(
            e.starts_with("401 Some(\"invalid_token\")") && e.contains(want),
            "{want}: {e}"
        );
    }

    // alg none: unsigned token.
    let body = b64(serde_json::to_string(&claims(&iss, "m"))
        .unwrap()
        .as_bytes());
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#), body);
    assert!(auth(&v, &format!("Bearer {none}")).await.is_err());
    let none2 = format!("{}.{}.AAAA", b64(br#"{"alg":"none"}"#), body);
    assert!(
        auth(&v, &format!("Bearer {none2}"))
            .await
            .unwrap_err()
            .contains("malformed")
    );

    // HS256 keyed with the issuer's public key (the classic confusion attack).
    let public = serde_json::to_vec(&es.jwk).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("es".into());
    let hs =
        jsonwebtoken::encode(&h, &claims(&iss, "m"), &EncodingKey::from_secret(&public)).unwrap();
    assert!(
        auth(&v, &format!("Bearer {hs}"))
            .await
            .unwrap_err()
            .contains("algorithm not allowed")
    );

    // Tampered signature and tampered payload.
    let good = es.sign(&claims(&iss, "m"));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut sig = parts[2].clone().into_bytes();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    parts[2] = String::from_utf8(sig).unwrap();
    assert!(
        auth(&v, &format!("Bearer {}", parts.join(".")))
            .await
            .unwrap_err()
            .contains("signature")
    );
    let mut c = claims(&iss, "m");
    c["scope"] = json!("mcp:tools mcp:admin");
    let forged_payload = b64(serde_json::to_string(&c).unwrap().as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert!(
        auth(&v, &format!("Bearer {spliced}"))
            .await
            .unwrap_err()
            .contains("signature")
    );

    // An alg that does not fit the key (ES384 header, P-256 key).
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("es".into());
    let es_tok = es.sign_with(h, &claims(&iss, "m"));
    let p: Vec<&str> = es_tok.split('.').collect();
    let h384 = b64(br#"{"alg":"ES384","kid":"es"}"#);
    let mism = format!("{h384}.{}.{}", p[1], p[2]);
    assert!(
        auth(&v, &format!("Bearer {mism}"))
            .await
            .unwrap_err()
            .contains("does not match")
    );

    // An ID-token-like type is not an access token.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("es".into());
    h.typ = Some("dpop+jwt".into());
    let t2 = es.sign_with(h, &claims(&iss, "m"));
    assert!(
        auth(&v, &format!("Bearer {t2}"))
            .await
            .unwrap_err()
            .contains("not an access token")
    );

    // Missing scope → 403 insufficient_scope.
    let mut c = claims(&iss, "m");
    c.as_object_mut().unwrap().remove("scope");
    let e = auth(&v, &format!("Bearer {}", es.sign(&c)))
        .await
        .unwrap_err();
    assert!(e.starts_with("403 Some(\"insufficient_scope\")"), "{e}");

    // Header syntax.
    assert!(auth(&v, "Bearer a b").await.unwrap_err().starts_with("400"));
    assert!(
        auth(&v, "Basic YTpi")
            .await
            .unwrap_err()
            .starts_with("401 None")
    );
}

#[tokio::test]
async fn unknown_kid_refreshes_keys_rate_limited_and_rotation_needs_no_restart() {
    let k1 = Key::es256("k1");
    let idp = Idp::start(&[&k1]).await;
    let v = verifier(config(&idp.issuer), Duration::from_millis(300));
    let iss = idp.issuer.clone();
    assert!(
        auth(&v, &format!("Bearer {}", k1.sign(&claims(&iss, "a"))))
            .await
            .is_ok()
    );
    let hits = idp.state.jwks_hits.load(Ordering::SeqCst);
    assert_eq!(hits, 1);

    // Rotation: the issuer now publishes k2 only.
    let k2 = Key::es256("k2");
    idp.set_keys(&[&k2]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        auth(&v, &format!("Bearer {}", k2.sign(&claims(&iss, "a"))))
            .await
            .is_ok()
    );
    assert_eq!(idp.state.jwks_hits.load(Ordering::SeqCst), 2);
    // The withdrawn key no longer verifies, even for a fresh token.
    let e = auth(&v, &format!("Bearer {}", k1.sign(&claims(&iss, "b"))))
        .await
        .unwrap_err();
    assert!(e.contains("kid"), "{e}");

    // A burst of forged kids triggers at most one fetch per cooldown.
    let before = idp.state.jwks_hits.load(Ordering::SeqCst);
    for i in 0..20 {
        let k = Key::es256(&format!("forged-{i}"));
        let e = auth(&v, &format!("Bearer {}", k.sign(&claims(&iss, "x"))))
            .await
            .unwrap_err();
        assert!(e.contains("kid"), "{e}");
    }
    assert!(idp.state.jwks_hits.load(Ordering::SeqCst) - before <= 1);
}

#[tokio::test]
async fn issuer_down_cached_keys_work_unknown_keys_fail_closed() {
    let k1 = Key::es256("k1");
    let idp = Idp::start(&[&k1]).await;
    let iss = idp.issuer.clone();
    let v = verifier(config(&iss), Duration::from_millis(10));
    assert!(
        auth(&v, &format!("Bearer {}", k1.sign(&claims(&iss, "a"))))
            .await
            .is_ok()
    );
    drop(idp);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A new token under a cached key still verifies.
    assert!(
        auth(&v, &format!("Bearer {}", k1.sign(&claims(&iss, "b"))))
            .await
            .is_ok()
    );
    // An unknown key cannot be checked: 503, not acceptance.
    let k2 = Key::es256("k2");
    let e = auth(&v, &format!("Bearer {}", k2.sign(&claims(&iss, "c"))))
        .await
        .unwrap_err();
    assert!(e.starts_with("503") && e.contains("unavailable"), "{e}");
}

#[tokio::test]
async fn revocation_by_jti_and_subject_applies_to_cached_tokens() {
    let k = Key::es256("k");
    let idp = Idp::start(&[&k]).await;
    let v = verifier(config(&idp.issuer), Duration::from_secs(10));
    let mut c = claims(&idp.issuer, "alice");
    c["jti"] = json!("jti-1");
    let tok = format!("Bearer {}", k.sign(&c));
    assert!(auth(&v, &tok).await.is_ok());
    v.revocations().revoke_token("jti-1", now() + 300);
    assert!(auth(&v, &tok).await.unwrap_err().contains("revoked"));
    let tok2 = format!("Bearer {}", k.sign(&claims(&idp.issuer, "alice")));
    assert!(auth(&v, &tok2).await.is_ok());
    v.revocations().revoke_subject(&idp.issuer, "alice");
    assert!(
        auth(&v, &tok2)
            .await
            .unwrap_err()
            .contains("subject revoked")
    );
}

fn dpop_key() -> (EncodingKey, Jwk, String) {
    let k = Key::es256("client");
    let mut jwk = k.jwk.clone();
    jwk.as_object_mut().unwrap().remove("kid");
    jwk.as_object_mut().unwrap().remove("alg");
    jwk.as_object_mut().unwrap().remove("use");
    let jwk: Jwk = serde_json::from_value(jwk).unwrap();
    let jkt = jwk.thumbprint(ThumbprintHash::SHA256).unwrap();
    (k.enc, jwk, jkt)
}

fn proof(enc: &EncodingKey, jwk: &Jwk, htm: &str, htu: &str, token: &str, jti: &str) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(jwk.clone());
    let ath = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
    jsonwebtoken::encode(
        &h,
        &json!({"jti": jti, "htm": htm, "htu": htu, "iat": now(), "ath": ath}),
        enc,
    )
    .unwrap()
}

#[tokio::test]
async fn dpop_bound_tokens_need_a_fresh_matching_proof() {
    let k = Key::es256("k");
    let idp = Idp::start(&[&k]).await;
    let v = verifier(config(&idp.issuer), Duration::from_secs(10));
    let (enc, jwk, jkt) = dpop_key();
    let mut c = claims(&idp.issuer, "alice");
    c["cnf"] = json!({"jkt": jkt});
    let tok = k.sign(&c);
    let ok = proof(&enc, &jwk, "POST", AUD, &tok, "p1");
    assert!(
        auth_dpop(&v, &format!("DPoP {tok}"), Some(&ok))
            .await
            .is_ok()
    );
    // Replay of the same proof.
    let e = auth_dpop(&v, &format!("DPoP {tok}"), Some(&ok))
        .await
        .unwrap_err();
    assert!(e.contains("replayed"), "{e}");
    // Bound token as a plain bearer token, or without a proof (RS-25).
    assert!(
        auth(&v, &format!("Bearer {tok}"))
            .await
            .unwrap_err()
            .contains("without DPoP")
    );
    assert!(
        auth(&v, &format!("DPoP {tok}"))
            .await
            .unwrap_err()
            .contains("without DPoP")
    );
    // Wrong method, wrong URI, wrong token hash, another key.
    let e = auth_dpop(
        &v,
        &format!("DPoP {tok}"),
        Some(&proof(&enc, &jwk, "GET", AUD, &tok, "p2")),
    )
    .await
    .unwrap_err();
    assert!(e.contains("htm"), "{e}");
    let e = auth_dpop(
        &v,
        &format!("DPoP {tok}"),
        Some(&proof(
            &enc,
            &jwk,
            "POST",
            "http://127.0.0.1:9/x",
            &tok,
            "p3",
        )),
    )
    .await
    .unwrap_err();
    assert!(e.contains("htu"), "{e}");
    let e = auth_dpop(
        &v,
        &format!("DPoP {tok}"),
        Some(&proof(&enc, &jwk, "POST", AUD, "other", "p4")),
    )
    .await
    .unwrap_err();
    assert!(e.contains("ath"), "{e}");
    let (enc2, jwk2, _) = dpop_key();
    let e = auth_dpop(
        &v,
        &format!("DPoP {tok}"),
        Some(&proof(&enc2, &jwk2, "POST", AUD, &tok, "p5")),
    )
    .await
    .unwrap_err();
    assert!(e.contains("bound"), "{e}");
    // Query strings are not part of htu.
    let q = proof(&enc, &jwk, "POST", &format!("{AUD}?x=1"), &tok, "p6");
    assert!(
        auth_dpop(&v, &format!("DPoP {tok}"), Some(&q))
            .await
            .is_ok()
    );

    // DPoP mandatory: an unbound token is refused.
    let mut cfg = config(&idp.issuer);
    cfg.dpop.required = true;
    let v2 = verifier(cfg, Duration::from_secs(10));
    let plain = k.sign(&claims(&idp.issuer, "bob"));
    assert!(
        auth(&v2, &format!("Bearer {plain}"))
            .await
            .unwrap_err()
            .contains("required")
    );
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_cached_within_their_lifetime() {
    let k = Key::es256("k");
    let idp = Idp::start(&[&k]).await;
    let t = now();
    idp.state.introspect.lock().insert(
        "opaque-good".into(),
        json!({"active": true, "iss": idp.issuer, "sub": "svc", "aud": AUD, "scope": "mcp:tools",
               "client_id": "m2m", "exp": t + 300, "token_type": "Bearer"}),
    );
    idp.state.introspect.lock().insert(
        "opaque-foreign".into(),
        json!({"active": true, "iss": idp.issuer, "sub": "svc", "aud": "https://other.example/mcp",
               "scope": "mcp:tools", "exp": t + 300}),
    );
    let mut cfg = config(&idp.issuer);
    cfg.introspection = Some(bastion_auth::IntrospectionConfig {
        endpoint: None,
        client_id: "gw".into(),
        client_secret: bastion_auth::Secret::new("gw-secret".into()),
        max_cache: Duration::from_secs(60),
    });
    let v = verifier(cfg, Duration::from_secs(10));
    let p = auth(&v, "Bearer opaque-good").await.unwrap();
    assert_eq!(p.subject, "svc");
    assert_eq!(p.kind, bastion_auth::TokenKind::Introspected);
    assert!(auth(&v, "Bearer opaque-good").await.is_ok());
    assert_eq!(
        idp.state.introspect_hits.load(Ordering::SeqCst),
        1,
        "cached"
    );
    assert!(
        auth(&v, "Bearer opaque-foreign")
            .await
            .unwrap_err()
            .contains("audience")
    );
    assert!(
        auth(&v, "Bearer opaque-unknown")
            .await
            .unwrap_err()
            .contains("not active")
    );
    assert!(auth(&v, "Bearer opaque-unknown").await.is_err());
    assert_eq!(
        idp.state.introspect_hits.load(Ordering::SeqCst),
        3,
        "negative answers cached"
    );

    // Without introspection, an opaque token is simply invalid.
    let v2 = verifier(config(&idp.issuer), Duration::from_secs(10));
    assert!(
        auth(&v2, "Bearer opaque-good")
            .await
            .unwrap_err()
            .contains("introspection")
    );
}

#[tokio::test]
async fn token_sources_cache_until_expiry_and_exchange_per_subject() {
    use bastion_auth::{GrantKind, Secret, TokenSource, TokenSourceConfig};
    let idp = Idp::start(&[]).await;
    let cfg = |grant| TokenSourceConfig {
        grant,
        token_endpoint: bastion_auth::TokenEndpoint::Url(
            url::Url::parse(&format!("{}/token", idp.issuer)).unwrap(),
        ),
        client_id: "gw client".into(),
        client_secret: Secret::new("s3cret&".into()),
        scope: Some("files:read".into()),
        resource: Some("https://files.example/mcp".into()),
        audience: None,
        refresh_margin: Duration::from_secs(30),
    };
    let http = reqwest::Client::new();
    let cc = TokenSource::new(cfg(GrantKind::ClientCredentials), http.clone());
    let a = cc.token(None).await.unwrap();
    let b = cc.token(None).await.unwrap();
    assert!(a.fresh && !b.fresh);
    assert_eq!(a.token, b.token);
    assert_eq!(idp.state.token_hits.load(Ordering::SeqCst), 1);
    let form = idp.state.last_token_form.lock().clone();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        form.contains("resource=https%3A%2F%2Ffiles.example%2Fmcp"),
        "{form}"
    );
    // RFC 6749 §2.3.1: id and secret are form-encoded inside Basic.
    let basic = idp.state.last_token_auth.lock().clone();
    let expect = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "gw+client:s3cret%26",
    );
    assert_eq!(basic, format!("Basic {expect}"));

    let tx = TokenSource::new(cfg(GrantKind::TokenExchange), http);
    assert!(tx.token(None).await.is_err());
    let s1 = Secret::new("client-token-1".into());
    let s2 = Secret::new("client-token-2".into());
    let x1 = tx.token(Some(&s1)).await.unwrap();
    let form = idp.state.last_token_form.lock().clone();
    assert!(
        form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"),
        "{form}"
    );
    assert!(form.contains("subject_token=client-token-1"), "{form}");
    let x2 = tx.token(Some(&s2)).await.unwrap();
    assert_ne!(x1.token, x2.token);
    assert!(!tx.token(Some(&s1)).await.unwrap().fresh);
    assert!(
        !format!("{x1:?}").contains("upstream-token"),
        "Debug must not print tokens"
    );
}

#[tokio::test]
async fn scope_hierarchy_grants_implied_scopes() {
    let k = Key::es256("k");
    let idp = Idp::start(&[&k]).await;
    let mut cfg = config(&idp.issuer);
    cfg.scope_implies
        .insert("mcp:admin".into(), vec!["mcp:tools".into()]);
    let v = verifier(cfg, Duration::from_secs(10));
    let mut c = claims(&idp.issuer, "root");
    c["scope"] = json!("mcp:admin");
    let p = auth(&v, &format!("Bearer {}", k.sign(&c))).await.unwrap();
    assert!(p.scopes.contains("mcp:tools") && p.scopes.contains("mcp:admin"));
    // Without the hierarchy the same token lacks the baseline scope.
    let v2 = verifier(config(&idp.issuer), Duration::from_secs(10));
    let e = auth(&v2, &format!("Bearer {}", k.sign(&c)))
        .await
        .unwrap_err();
    assert!(e.starts_with("403"), "{e}");
}

#[tokio::test]
async fn a_cached_token_is_dropped_when_its_key_is_swapped_under_the_same_kid() {
    let k1 = Key::es256("same");
    let idp = Idp::start(&[&k1]).await;
    let v = verifier(config(&idp.issuer), Duration::from_millis(100));
    let tok = format!("Bearer {}", k1.sign(&claims(&idp.issuer, "alice")));
    assert!(auth(&v, &tok).await.is_ok());
    // The issuer replaces the key material but keeps the kid.
    let k2 = Key::es256("same");
    idp.set_keys(&[&k2]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Any unknown kid makes the verifier refresh its key set.
    let other = Key::es256("other");
    assert!(
        auth(
            &v,
            &format!("Bearer {}", other.sign(&claims(&idp.issuer, "x")))
        )
        .await
        .is_err()
    );
    // The token verified earlier is no longer answered from the cache.
    let e = auth(&v, &tok).await.unwrap_err();
    assert!(e.contains("signature"), "{e}");
    assert!(
        auth(
            &v,
            &format!("Bearer {}", k2.sign(&claims(&idp.issuer, "alice")))
        )
        .await
        .is_ok()
    );
}
