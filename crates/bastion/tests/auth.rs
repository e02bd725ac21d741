//! Client authentication end to end, against the real identity provider
//! (`oidc-provider`, started by tests/peers/idp.mjs on a free loopback port) and
//! a capture upstream that records everything the gateway sends it.
//!
//! Needs the test peers: `bash tests/peers/install.sh` (the test command runs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods,
    missing_debug_implementations,
    reason = "test code; the IdP fixture is a child process started directly"
)]

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::idp::*;
use common::*;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Everything an upstream received.
#[derive(Default)]
struct Seen {
    reqs: Mutex<Vec<(http::HeaderMap, String)>>,
}

impl Seen {
    fn authorizations(&self) -> Vec<String> {
        self.reqs
            .lock()
            .iter()
            .filter_map(|(h, _)| {
                h.get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned())
            })
            .collect()
    }

    /// Every header value and body, for "never contains" checks.
    fn everything(&self) -> String {
        let mut s = String::new();
        for (h, b) in self.reqs.lock().iter() {
            for (k, v) in h {
                s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
            }
            s.push_str(b);
            s.push('\n');
        }
        s
    }
}

/// A minimal 2025-11-25 MCP server over HTTP that records every request.
async fn capture_upstream() -> (String, Arc<Seen>) {
    use axum::extract::State;
    use axum::response::IntoResponse;
    let seen = Arc::new(Seen::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(
                |State(seen): State<Arc<Seen>>, headers: http::HeaderMap, body: String| async move {
                    seen.reqs.lock().push((headers, body.clone()));
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let Some(id) = v.get("id").cloned() else {
                        return http::StatusCode::ACCEPTED.into_response();
                    };
                    let result = match v["method"].as_str().unwrap_or("") {
                        "initialize" => json!({"protocolVersion": "2025-11-25",
                            "capabilities": {"tools": {}}, "serverInfo": {"name": "capture", "version": "0"}}),
                        "tools/list" => json!({"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]}),
                        "tools/call" => json!({"content": [{"type": "text", "text": "ok"}]}),
                        _ => {
                            return axum::Json(json!({"jsonrpc": "2.0", "id": id,
                                "error": {"code": -32601, "message": "no such method"}}))
                            .into_response();
                        }
                    };
                    (
                        [("mcp-session-id", "cap-session")],
                        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})),
                    )
                        .into_response()
                },
            )
            .get(|| async { http::StatusCode::METHOD_NOT_ALLOWED })
            .delete(|| async { http::StatusCode::OK }),
        )
        .with_state(seen.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

async fn bind() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    (l, url)
}

fn gateway_toml(issuer: &str, upstreams: &str, auth_extra: &str) -> String {
    format!(
        r#"[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:0/mcp"
[auth]
issuer = "{issuer}"
required_scopes = ["mcp:tools"]
jwks_refresh_cooldown_secs = 1
{auth_extra}
{upstreams}"#
    )
}

fn capture_toml(name: &str, url: &str, auth: &str) -> String {
    format!(
        "[[upstream]]\nname = \"{name}\"\ntransport = \"http\"\nurl = \"{url}\"\nprotocol = \"2025-11-25\"\n{auth}\n"
    )
}

/// A 2026-07-28 `tools/list` with `authorization` (and any extra headers).
async fn list(url: &str, authorization: Option<&str>, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut b = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list");
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#)
        .send()
        .await
        .unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

fn now() -> u64 {
    bastion_auth::now_secs()
}

#[tokio::test]
async fn probes_with_tokens_from_the_real_provider() {
    let (cap_url, seen) = capture_upstream().await;
    let (la, url_a) = bind().await;
    let other = "http://127.0.0.1:1/mcp";
    let idp = Idp::start(&[&url_a, other], &[]);
    let gw = start_on(
        la,
        &gateway_toml(&idp.issuer, &capture_toml("cap", &cap_url, ""), ""),
    )
    .await;
    assert_eq!(gw.url, url_a);
    let prm_url = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        gw.addr
    );

    // RFC 9728 metadata, path-suffixed and root (same document, see docs/auth.md).
    for u in [
        prm_url.clone(),
        format!("http://{}/.well-known/oauth-protected-resource", gw.addr),
    ] {
        let r = http().get(&u).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["resource"], url_a.as_str());
        assert_eq!(v["authorization_servers"], json!([idp.issuer]));
        assert_eq!(v["bearer_methods_supported"], json!(["header"]));
        assert_eq!(v["scopes_supported"], json!(["mcp:tools"]));
    }

    // No token: 401, discovery hint, minimal scope, no error attribute.
    let r = list(&gw.url, None, &[]).await;
    assert_eq!(r.status(), 401);
    let c = challenge(&r);
    assert!(
        c.starts_with(&format!("Bearer resource_metadata=\"{prm_url}\"")),
        "{c}"
    );
    assert!(
        c.contains("scope=\"mcp:tools\"") && !c.contains("error="),
        "{c}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32014);

    // Valid tokens of every algorithm the provider signs with.
    let mut good = Vec::new();
    for client in ["m2m", "m2m-rs", "m2m-ed"] {
        let t = idp.token(client, "mcp:tools", &url_a).await;
        let r = list(
            &gw.url,
            Some(&format!("Bearer {t}")),
            &[("cookie", "sid=cookie-canary")],
        )
        .await;
        assert_eq!(r.status(), 200, "{client}");
        let msgs = messages(r).await;
        assert_eq!(
            msgs[0]["result"]["tools"][0]["name"], "cap__whoami",
            "{client}"
        );
        good.push(t);
    }

    // Bad tokens: each refused with 401 invalid_token, the upstream sees nothing.
    let before = seen.reqs.lock().len();
    let t = now();
    let base = |sub: &str| {
        json!({"iss": idp.issuer, "sub": sub, "aud": url_a, "scope": "mcp:tools", "client_id": "m2m",
               "iat": t, "exp": t + 300, "jti": format!("j-{sub}")})
    };
    let mut bad: Vec<(&str, String)> = vec![
        ("wrong audience", idp.token("m2m", "mcp:tools", other).await),
        (
            "expired",
            idp.sign({
                let mut c = base("exp");
                c["exp"] = json!(t - 120);
                c["iat"] = json!(t - 420);
                c
            })
            .await,
        ),
        (
            "not yet valid",
            idp.sign({
                let mut c = base("nbf");
                c["nbf"] = json!(t + 300);
                c
            })
            .await,
        ),
        (
            "issued in the future",
            idp.sign({
                let mut c = base("iat");
                c["iat"] = json!(t + 300);
                c
            })
            .await,
        ),
        (
            "wrong issuer",
            idp.sign({
                let mut c = base("iss");
                c["iss"] = json!("http://127.0.0.1:1");
                c
            })
            .await,
        ),
        (
            "no audience",
            idp.sign({
                let mut c = base("aud");
                c.as_object_mut().unwrap().remove("aud");
                c
            })
            .await,
        ),
        (
            "trailing-slash audience",
            idp.sign({
                let mut c = base("slash");
                c["aud"] = json!(format!("{url_a}/"));
                c
            })
            .await,
        ),
    ];
    // alg none.
    let claims_b64 = b64(base("none").to_string().as_bytes());
    bad.push((
        "alg none",
        format!("{}.{claims_b64}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#)),
    ));
    // HS256 keyed with the provider's public JWKS (algorithm confusion).
    let jwks: Value = http()
        .get(format!("{}/jwks", idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let es_kid = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "EC")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(es_kid.clone());
    let secret = serde_json::to_vec(&jwks["keys"][0]).unwrap();
    bad.push((
        "HS256 with the public key",
        jsonwebtoken::encode(
            &h,
            &base("hs"),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap(),
    ));
    // Unknown kid: a key the provider never published.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("not-published".into());
    bad.push((
        "unknown kid",
        jsonwebtoken::encode(
            &h,
            &base("kid"),
            &jsonwebtoken::EncodingKey::from_ec_der(doc.as_ref()),
        )
        .unwrap(),
    ));
    // The provider's key id, but our key: the signature does not verify.
    h.kid = Some(es_kid);
    bad.push((
        "forged signature",
        jsonwebtoken::encode(
            &h,
            &base("forged"),
            &jsonwebtoken::EncodingKey::from_ec_der(doc.as_ref()),
        )
        .unwrap(),
    ));
    // A real token with one signature byte changed.
    let mut parts: Vec<String> = good[0].split('.').map(str::to_owned).collect();
    let mut sig = parts[2].clone().into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    parts[2] = String::from_utf8(sig).unwrap();
    bad.push(("tampered signature", parts.join(".")));
    for (what, tok) in &bad {
        let r = list(&gw.url, Some(&format!("Bearer {tok}")), &[]).await;
        assert_eq!(r.status(), 401, "{what}");
        let c = challenge(&r);
        assert!(
            c.contains("error=\"invalid_token\"") && c.contains("resource_metadata="),
            "{what}: {c}"
        );
    }

    // Missing scope: the provider silently drops the unknown scope → no scope claim → 403.
    let noscope = idp.token("m2m", "mcp:root", &url_a).await;
    assert!(payload(&noscope).get("scope").is_none());
    let r = list(&gw.url, Some(&format!("Bearer {noscope}")), &[]).await;
    assert_eq!(r.status(), 403);
    let c = challenge(&r);
    assert!(
        c.contains("error=\"insufficient_scope\"") && c.contains("scope=\"mcp:tools\""),
        "{c}"
    );

    // Malformed Authorization header: 400 invalid_request.
    let r = list(&gw.url, Some("Bearer a b"), &[]).await;
    assert_eq!(r.status(), 400);
    assert!(challenge(&r).contains("invalid_request"));
    // A token in the query string is not a credential.
    let r = http()
        .post(format!("{}?access_token={}", gw.url, good[0]))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        seen.reqs.lock().len(),
        before,
        "refused requests never reach the upstream"
    );

    // Sessions never authenticate, and belong to their principal.
    let alice = &good[0]; // sub m2m
    let init = |tok: Option<String>| {
        let mut b = http()
            .post(&gw.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(t) = tok {
            b = b.bearer_auth(t);
        }
        b.body(INIT_BODY).send()
    };
    let r = init(Some(alice.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let on_session = |tok: Option<&str>| {
        let mut b = http()
            .post(&gw.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(t) = tok {
            b = b.bearer_auth(t);
        }
        b.body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
            .send()
    };
    assert_eq!(on_session(Some(alice)).await.unwrap().status(), 200);
    assert_eq!(on_session(None).await.unwrap().status(), 401);
    let expired = &bad[1].1;
    assert_eq!(on_session(Some(expired)).await.unwrap().status(), 401);
    // Another subject (client m2m-rs) presenting alice's session: unknown session.
    assert_eq!(on_session(Some(&good[1])).await.unwrap().status(), 404);
    // A refreshed token for the same subject keeps the session.
    let refreshed = idp.token("m2m", "mcp:tools", &url_a).await;
    assert_ne!(&refreshed, alice);
    assert_eq!(on_session(Some(&refreshed)).await.unwrap().status(), 200);
    let r = http()
        .get(&gw.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "GET stream without a token");

    // Incident response: revoking the subject refuses its valid tokens at once.
    let revocations = gw.gw.auth.verifier().unwrap().revocations().clone();
    revocations.revoke_subject(&idp.issuer, "m2m");
    let r = on_session(Some(&refreshed)).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("invalid_token"));
    assert!(revocations.restore_subject(&idp.issuer, "m2m"));
    assert_eq!(on_session(Some(&refreshed)).await.unwrap().status(), 200);
    let jti = payload(&refreshed)["jti"].as_str().unwrap().to_owned();
    revocations.revoke_token(&jti, payload(&refreshed)["exp"].as_u64().unwrap());
    assert_eq!(on_session(Some(&refreshed)).await.unwrap().status(), 401);

    // No upstream request carried a client token, the cookie, or any Authorization.
    let all = seen.everything();
    for t in good.iter().chain(std::iter::once(&refreshed)) {
        assert!(!all.contains(t.as_str()));
    }
    assert!(!all.contains("cookie-canary"));
    assert!(
        seen.authorizations().is_empty(),
        "{:?}",
        seen.authorizations()
    );

    // Audit: one auth event per attempt with the precise reason; no token anywhere.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let events = gw.events();
    let text = serde_json::to_string(&events).unwrap();
    for t in good.iter().chain(bad.iter().map(|(_, t)| t)) {
        assert!(
            !text.contains(t.as_str()),
            "a token reached the audit trail"
        );
    }
    let reasons: Vec<String> = events
        .iter()
        .filter(|e| matches!(e.kind, bastion::audit::EventKind::Auth))
        .filter_map(|e| e.reason.clone())
        .collect();
    for want in [
        "audience",
        "expired",
        "nbf",
        "future",
        "wrong issuer",
        "kid",
        "algorithm not allowed",
        "bad signature",
        "insufficient scope",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no auth event for {want}: {reasons:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, bastion::audit::EventKind::Session)
                && e.reason.as_deref() == Some("session belongs to another principal"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn key_rotation_without_restart_and_provider_down_fails_closed() {
    let (cap_url, _seen) = capture_upstream().await;
    let (la, url) = bind().await;
    let mut idp = Idp::start(&[&url], &[]);
    let gw = start_on(
        la,
        &gateway_toml(&idp.issuer, &capture_toml("cap", &cap_url, ""), ""),
    )
    .await;
    let t1 = idp.token("m2m", "mcp:tools", &url).await;
    assert_eq!(
        list(&gw.url, Some(&format!("Bearer {t1}")), &[])
            .await
            .status(),
        200
    );

    // The provider restarts on the same port with new keys and new kids.
    idp.restart();
    // (One JWKS fetch per second at most: let the cooldown pass.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let t2 = idp.token("m2m", "mcp:tools", &url).await;
    let t3 = idp.token("m2m", "mcp:tools", &url).await;
    assert_ne!(
        jsonwebtoken::decode_header(&t1).unwrap().kid,
        jsonwebtoken::decode_header(&t2).unwrap().kid
    );
    assert_eq!(
        list(&gw.url, Some(&format!("Bearer {t2}")), &[])
            .await
            .status(),
        200,
        "rotated key accepted without restart"
    );
    // The withdrawn key no longer verifies.
    assert_eq!(
        list(&gw.url, Some(&format!("Bearer {t1}")), &[])
            .await
            .status(),
        401
    );

    // Provider down: a token under a cached key (never seen before) still verifies…
    idp.stop();
    assert_eq!(
        list(&gw.url, Some(&format!("Bearer {t3}")), &[])
            .await
            .status(),
        200
    );
    // …a token under an unknown key cannot be checked: 503, not acceptance.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("new-kid".into());
    let mut c = payload(&t3);
    c["jti"] = json!("other");
    let unknown = jsonwebtoken::encode(
        &h,
        &c,
        &jsonwebtoken::EncodingKey::from_ec_der(doc.as_ref()),
    )
    .unwrap();
    let r = list(&gw.url, Some(&format!("Bearer {unknown}")), &[]).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("identity provider"),
        "{body}"
    );
    gw.stop().await;
}

fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.path().join(name);
    std::fs::write(&p, value).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!("file:{}", p.display())
}

#[tokio::test]
async fn opaque_tokens_are_introspected() {
    let (cap_url, _seen) = capture_upstream().await;
    let (la, url) = bind().await;
    let idp = Idp::start(&[], &[&url]);
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir, "introspect", "gateway-secret");
    let extra =
        format!("[auth.introspection]\nclient_id = \"gateway\"\nclient_secret = \"{secret}\"\n");
    let gw = start_on(
        la,
        &gateway_toml(&idp.issuer, &capture_toml("cap", &cap_url, ""), &extra),
    )
    .await;
    let t = idp.token("m2m", "mcp:tools", &url).await;
    assert!(!t.contains('.'), "opaque token expected, got {t}");
    assert_eq!(
        list(&gw.url, Some(&format!("Bearer {t}")), &[])
            .await
            .status(),
        200
    );
    assert_eq!(
        list(&gw.url, Some(&format!("Bearer {t}")), &[])
            .await
            .status(),
        200
    );
    let r = list(&gw.url, Some("Bearer not-a-real-token"), &[]).await;
    assert_eq!(
        r.status(),
        401,
        "{:?}",
        gw.events()
            .iter()
            .filter_map(|e| e.reason.clone())
            .collect::<Vec<_>>()
    );
    assert!(challenge(&r).contains("invalid_token"));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let kinds: Vec<_> = gw.events().iter().filter_map(|e| e.credential).collect();
    assert!(kinds.contains(&"introspection"), "{kinds:?}");
    gw.stop().await;
}

/// A DPoP key and proofs for it.
struct DpopKey {
    enc: jsonwebtoken::EncodingKey,
    jwk: jsonwebtoken::jwk::Jwk,
}

impl DpopKey {
    fn new() -> DpopKey {
        use aws_lc_rs::signature::KeyPair as _;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, doc.as_ref()).unwrap();
        let p = pair.public_key().as_ref();
        let jwk = serde_json::from_value(
            json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])}),
        )
        .unwrap();
        DpopKey {
            enc: jsonwebtoken::EncodingKey::from_ec_der(doc.as_ref()),
            jwk,
        }
    }

    fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.typ = Some("dpop+jwt".into());
        h.jwk = Some(self.jwk.clone());
        let mut c = json!({"jti": format!("{}", rand::random::<u64>()), "htm": htm, "htu": htu, "iat": now()});
        if let Some(t) = token {
            c["ath"] = json!(b64(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                t.as_bytes()
            )
            .as_ref()));
        }
        jsonwebtoken::encode(&h, &c, &self.enc).unwrap()
    }
}

#[tokio::test]
async fn dpop_bound_tokens_need_proofs_and_dpop_can_be_mandatory() {
    let (cap_url, _seen) = capture_upstream().await;
    let (la, url) = bind().await;
    let idp = Idp::start(&[&url], &[]);
    let gw = start_on(
        la,
        &gateway_toml(
            &idp.issuer,
            &capture_toml("cap", &cap_url, ""),
            "[auth.dpop]\nrequired = true\n",
        ),
    )
    .await;
    let key = DpopKey::new();
    let token_url = format!("{}/token", idp.issuer);
    let v: Value = http()
        .post(&token_url)
        .basic_auth("m2m", Some("m2m-secret"))
        .header("dpop", key.proof("POST", &token_url, None))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mcp:tools"),
            ("resource", url.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tok = v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    assert_eq!(v["token_type"], "DPoP");
    assert!(payload(&tok)["cnf"]["jkt"].is_string());

    let proof = key.proof("POST", &url, Some(&tok));
    let ok = list(&gw.url, Some(&format!("DPoP {tok}")), &[("dpop", &proof)]).await;
    assert_eq!(ok.status(), 200);
    // Replayed proof, bound token as Bearer, bound token without proof.
    for (auth, proof) in [
        (format!("DPoP {tok}"), Some(proof.clone())),
        (format!("Bearer {tok}"), None),
        (format!("DPoP {tok}"), None),
    ] {
        let extra: Vec<(&str, &str)> = proof.iter().map(|p| ("dpop", p.as_str())).collect();
        let r = list(&gw.url, Some(&auth), &extra).await;
        assert_eq!(r.status(), 401, "{auth:.10} {:?}", proof.is_some());
        let c = challenge(&r);
        assert!(
            c.contains("DPoP algs=") && c.contains("invalid_dpop_proof"),
            "{c}"
        );
    }
    // A proof for another endpoint.
    let elsewhere = key.proof("POST", "http://127.0.0.1:1/mcp", Some(&tok));
    assert_eq!(
        list(
            &gw.url,
            Some(&format!("DPoP {tok}")),
            &[("dpop", &elsewhere)]
        )
        .await
        .status(),
        401
    );
    // DPoP mandatory: a plain bearer token is refused.
    let plain = idp.token("m2m", "mcp:tools", &url).await;
    let r = list(&gw.url, Some(&format!("Bearer {plain}")), &[]).await;
    assert_eq!(r.status(), 401);
    let prm: Value = http()
        .get(format!(
            "http://{}/.well-known/oauth-protected-resource/mcp",
            gw.addr
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["dpop_bound_access_tokens_required"], true);
    gw.stop().await;
}

#[tokio::test]
async fn upstreams_get_tokens_minted_for_them_never_the_clients() {
    let (cc_url, cc_seen) = capture_upstream().await;
    let (tx_url, tx_seen) = capture_upstream().await;
    let (la, url) = bind().await;
    let idp = Idp::start(&[&url, &cc_url, &tx_url], &[]);
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir, "gw", "gateway-secret");
    let upstreams = format!(
        "{}{}",
        capture_toml(
            "cc",
            &cc_url,
            &format!(
                "[upstream.auth]\nkind = \"client_credentials\"\nissuer = \"{}\"\nclient_id = \"gateway\"\nclient_secret = \"{secret}\"\nscope = \"files:read\"\n",
                idp.issuer
            )
        ),
        capture_toml(
            "tx",
            &tx_url,
            &format!(
                "[upstream.auth]\nkind = \"token_exchange\"\nclient_id = \"gateway\"\nclient_secret = \"{secret}\"\nscope = \"mcp:tools\"\n"
            )
        ),
    );
    let gw = start_on(la, &gateway_toml(&idp.issuer, &upstreams, "")).await;
    let client_tok = idp.token("m2m-ed", "mcp:tools", &url).await;
    for _ in 0..2 {
        let r = list(&gw.url, Some(&format!("Bearer {client_tok}")), &[]).await;
        assert_eq!(r.status(), 200);
        let msgs = messages(r).await;
        let names: Vec<&str> = msgs[0]["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"cc__whoami") && names.contains(&"tx__whoami"),
            "{names:?}"
        );
    }

    let cc_auth = cc_seen.authorizations();
    assert!(!cc_auth.is_empty());
    let cc_tok = cc_auth[0].strip_prefix("Bearer ").unwrap();
    let p = payload(cc_tok);
    assert_eq!(p["aud"], cc_url.as_str());
    assert_eq!(p["client_id"], "gateway");
    assert_eq!(p["scope"], "files:read");
    assert!(
        cc_auth.iter().all(|a| a == &cc_auth[0]),
        "one cached client-credentials token"
    );

    // The token-exchange upstream sees two kinds of token: the gateway's own
    // (client credentials, for its inventory: the trust-on-first-use
    // baseline) and, for the client's traffic, one exchanged for the client's
    // token. Never anything else.
    let tx_auth = tx_seen.authorizations();
    let (mut own, mut exchanged) = (0, 0);
    for a in &tx_auth {
        let p = payload(a.strip_prefix("Bearer ").unwrap());
        assert_eq!(p["aud"], tx_url.as_str());
        if p["act"].is_null() {
            assert_eq!(p["client_id"], "gateway", "{p}");
            assert_ne!(p["sub"], "m2m-ed", "{p}");
            own += 1;
        } else {
            assert_eq!(
                p["sub"], "m2m-ed",
                "the exchanged token keeps the client's subject"
            );
            assert_eq!(p["act"]["sub"], "gateway");
            exchanged += 1;
        }
    }
    assert!(own > 0 && exchanged > 0, "own {own}, exchanged {exchanged}");
    let tx_tok = tx_auth
        .iter()
        .map(|a| a.strip_prefix("Bearer ").unwrap())
        .find(|t| !payload(t)["act"].is_null())
        .unwrap();

    for s in [cc_seen.everything(), tx_seen.everything()] {
        assert!(
            !s.contains(&client_tok),
            "the client's token reached an upstream"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let events = gw.events();
    let issued: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, bastion::audit::EventKind::Credential))
        .filter_map(|e| e.credential)
        .collect();
    assert!(
        issued.contains(&"client_credentials") && issued.contains(&"token_exchange"),
        "{issued:?}"
    );
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(cc_tok) && !text.contains(tx_tok) && !text.contains("gateway-secret"));
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_ends_when_the_token_that_opened_it_expires() {
    let (cap_url, _seen) = capture_upstream().await;
    let (la, url) = bind().await;
    let idp = Idp::start(&[&url], &[]);
    let gw = start_on(
        la,
        &gateway_toml(
            &idp.issuer,
            &capture_toml("cap", &cap_url, ""),
            "leeway_secs = 0\n",
        ),
    )
    .await;
    let t = now();
    let short = idp
        .sign(
            json!({"iss": idp.issuer, "sub": "brief", "aud": url, "scope": "mcp:tools",
                     "iat": t, "exp": t + 3, "jti": "short-lived"}),
        )
        .await;
    let r = http()
        .post(&gw.url)
        .bearer_auth(&short)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let mut stream = http()
        .get(&gw.url)
        .bearer_auth(&short)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The body ends (None) once the token expires, well before the 15 s keep-alive.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while stream.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "stream outlived its token");
    gw.stop().await;
}
