//! Isolation controls: credentials, environment, sessions, TLS, name collisions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation is the test failing"
)]

mod common;

use std::sync::Arc;

use axum::extract::State;
use common::*;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// A fake Streamable HTTP upstream that records every request's headers.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<http::HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    async fn mcp(
        State(seen): State<Arc<Mutex<Vec<http::HeaderMap>>>>,
        headers: http::HeaderMap,
        body: String,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        seen.lock().push(headers);
        let Ok(msg) = serde_json::from_str::<Value>(&body) else {
            return http::StatusCode::BAD_REQUEST.into_response();
        };
        let Some(id) = msg.get("id").cloned() else {
            return http::StatusCode::ACCEPTED.into_response();
        };
        let result = match msg["method"].as_str() {
            Some("initialize") => {
                json!({"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"rec","version":"0"}})
            }
            Some("tools/list") => json!({"tools":[{"name":"t","inputSchema":{"type":"object"}}]}),
            _ => json!({"content":[{"type":"text","text":"ok"}]}),
        };
        axum::Json(json!({"jsonrpc":"2.0","id":id,"result":result})).into_response()
    }
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(mcp))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}/mcp"), seen)
}

#[tokio::test]
async fn client_credentials_never_reach_upstream() {
    let (up_url, seen) = recording_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("upstream-token");
    std::fs::write(&secret, "Bearer gateway-own-credential").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let gw = start(&format!(
        r#"{HEAD}[[upstream]]
name = "rec"
transport = "http"
url = "{up_url}"
headers = {{ Authorization = "file:{}" }}
"#,
        secret.display()
    ))
    .await;
    let c = http();
    let r = c
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer client-token-canary")
        .header("cookie", "sid=cookie-canary")
        .header("x-custom", "header-canary")
        .body(INIT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let r = c
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .header("authorization", "Bearer client-token-canary")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rec__t","arguments":{}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all = seen.lock().clone();
    assert!(
        all.len() >= 3,
        "initialize, initialized, tools/call: {}",
        all.len()
    );
    for h in &all {
        for (k, v) in h {
            let v = v.to_str().unwrap_or("");
            assert!(
                !v.contains("canary"),
                "client value leaked upstream in {k}: {v}"
            );
        }
        assert_eq!(h["authorization"], "Bearer gateway-own-credential");
        assert!(h.get("cookie").is_none() && h.get("x-custom").is_none());
    }
    // The session id the client holds is the gateway's, never the upstream's.
    assert!(
        all.iter()
            .all(|h| h.get("mcp-session-id").is_none_or(|v| v != sid.as_str()))
    );
    gw.stop().await;
}

#[tokio::test]
async fn stdio_child_sees_only_configured_env() {
    let gw = start(&format!(
        r#"{HEAD}[[upstream]]
name = "env"
transport = "stdio"
command = "{py}"
args = ["{ENV_SERVER}"]
env = {{ PATH = "env:PATH", MARKER = "visible" }}
"#,
        py = python()
    ))
    .await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let r = s
        .call(
            1,
            "tools/call",
            json!({"name":"env__env_names","arguments":{}}),
        )
        .await;
    let names: Vec<String> =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    // Python may add LC_CTYPE itself (PEP 538 locale coercion); nothing else may appear.
    let extra: Vec<&String> = names
        .iter()
        .filter(|n| !matches!(n.as_str(), "PATH" | "MARKER" | "LC_CTYPE"))
        .collect();
    assert!(
        extra.is_empty(),
        "unexpected variables reached the child: {extra:?}"
    );
    assert!(names.contains(&"MARKER".to_owned()));
    // The test process certainly has these; the child must not.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert!(
        !names
            .iter()
            .any(|n| n == "CARGO_MANIFEST_DIR" || n == "HOME")
    );
    gw.stop().await;
}

#[tokio::test]
async fn colliding_names_are_withheld() {
    // Upstream "a" (prefix "") exposes "p__x"; upstream "b" (prefix "p__") exposes "x":
    // both claim "p__x", so neither gets it.
    let gw = start(&format!(
        r#"{HEAD}[[upstream]]
name = "a"
transport = "stdio"
command = "{py}"
args = ["{ENV_SERVER}"]
prefix = ""
env = {{ PATH = "env:PATH", TOOLS = "p__x,only_a" }}
[[upstream]]
name = "b"
transport = "stdio"
command = "{py}"
args = ["{ENV_SERVER}"]
prefix = "p__"
env = {{ PATH = "env:PATH", TOOLS = "x,only_b" }}
"#,
        py = python()
    ))
    .await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let r = s.call(1, "tools/list", json!({})).await;
    let mut names: Vec<&str> = r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["only_a", "p__only_b"]);
    assert!(
        gw.events()
            .iter()
            .any(|e| e.reason.as_deref().is_some_and(|r| r.contains("collision")))
    );
    gw.stop().await;
}

#[tokio::test]
async fn session_ids_are_unique_and_random() {
    let gw = start(&demo_config("")).await;
    let mut ids = std::collections::HashSet::new();
    let mut bit_counts = [0u32; 8];
    for _ in 0..40 {
        let (s, _) = Legacy::connect(&gw.url, json!({})).await;
        assert_eq!(s.sid.len(), 43);
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&s.sid)
            .unwrap();
        assert_eq!(raw.len(), 32);
        for (i, c) in bit_counts.iter_mut().enumerate() {
            *c += u32::from(raw[0] >> i & 1);
        }
        assert!(ids.insert(s.sid.clone()));
        let _ = s
            .http
            .delete(&s.url)
            .header("mcp-session-id", &s.sid)
            .send()
            .await;
    }
    // Not a counter or timestamp: every low bit of the first byte varies.
    assert!(
        bit_counts.iter().all(|c| *c > 0 && *c < 40),
        "{bit_counts:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn idle_sessions_are_reaped() {
    let gw = start(&demo_config("").replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nsession_idle_timeout_secs = 1",
    ))
    .await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let r = s.call(1, "tools/list", json!({})).await;
    assert!(r["result"]["tools"].is_array());
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    gw.gw.reap_idle().await;
    let r = s
        .post(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await;
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn tls_listener_refuses_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let gw = start(&demo_config("").replace(
        "[auth]",
        &format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n[auth]",
            cert.display(),
            key.display()
        ),
    ))
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    static TLS12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    let connect = |versions: &'static [&'static rustls::SupportedProtocolVersion]| {
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let addr = gw.addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
        }
    };
    assert!(connect(&TLS12).await.is_err(), "TLS 1.2 must be refused");
    let mut tls = connect(&TLS13).await.expect("TLS 1.3 accepted");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = INIT_BODY;
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        gw.addr.port(),
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    gw.stop().await;
}

#[tokio::test]
async fn upstream_redirects_are_not_followed() {
    // The configured upstream answers with a redirect to another (recording) server:
    // following it would let an upstream point the gateway at any host.
    let (target_url, target_seen) = recording_upstream().await;
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move || {
            let to = target_url.clone();
            async move {
                (
                    http::StatusCode::TEMPORARY_REDIRECT,
                    [(http::header::LOCATION, to)],
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    let gw = start(&format!(
        r#"{HEAD}[[upstream]]
name = "redir"
transport = "http"
url = "http://{addr}/mcp"
protocol = "2025-11-25"
"#
    ))
    .await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let r = s
        .call(1, "tools/call", json!({"name":"redir__t","arguments":{}}))
        .await;
    assert_eq!(r["error"]["code"], -32010, "{r}");
    assert!(
        target_seen.lock().is_empty(),
        "the gateway followed the redirect"
    );
    gw.stop().await;
}

#[tokio::test]
async fn client_contexts_are_bounded() {
    let gw = start(&demo_config("").replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nmax_sessions = 2",
    ))
    .await;
    // Stateless lane: each distinct capability set is a context (it may hold upstream
    // sessions), so varying it must not create them without bound.
    let call = |caps: Value| {
        let url = gw.url.clone();
        async move {
            let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
                "io.modelcontextprotocol/protocolVersion":"2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": caps}}});
            http()
                .post(&url)
                .header("content-type", "application/json")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/list")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(json!({})).await, 200);
    assert_eq!(call(json!({"sampling": {}})).await, 200);
    assert_eq!(call(json!({"roots": {}})).await, 503);
    // A known context is still served.
    assert_eq!(call(json!({})).await, 200);
    // Legacy lane: sessions have the same ceiling.
    let (_a, _) = Legacy::connect(&gw.url, json!({})).await;
    let (_b, _) = Legacy::connect(&gw.url, json!({})).await;
    let r = http()
        .post(&gw.url)
        .header("content-type", "application/json")
        .body(INIT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    gw.stop().await;
}

/// Live processes whose command line contains `marker` (zombies excluded).
fn processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie && String::from_utf8_lossy(&cmdline).contains(marker) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn a_wrapped_stdio_server_leaves_no_process_behind_when_its_sessions_end() {
    // `command = "sh"` with the server as a grandchild, as `npx` and
    // `uv run` start one: ending a session must end the whole tree.
    let marker = format!("bastion-tree-{}", std::process::id());
    let recorder = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/recorder_server.py"
    );
    let cfg = format!(
        "{HEAD}[[upstream]]\nname = \"w\"\ntransport = \"stdio\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"{} {recorder} {marker}; :\"]\ntimeout_secs = 10\n",
        python()
    );
    let gw = start(&cfg).await;
    let mut sessions = Vec::new();
    for i in 0..6 {
        let (s, _) = Legacy::connect(&gw.url, json!({})).await;
        let r = s.call(i + 2, "tools/list", json!({})).await;
        assert!(r["result"]["tools"].is_array(), "{r}");
        sessions.push(s);
    }
    // Each session runs its own wrapper and server (the marker is in both
    // command lines).
    assert!(
        processes_with(&marker).len() >= 12,
        "{:?}",
        processes_with(&marker)
    );
    for s in &sessions {
        let r = s
            .http
            .delete(&s.url)
            .header("mcp-session-id", &s.sid)
            .header("mcp-protocol-version", &s.version)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let mut left = processes_with(&marker);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        left = processes_with(&marker);
    }
    assert!(
        left.is_empty(),
        "left behind after the sessions ended: {left:?}"
    );
    gw.stop().await;
}
