//! Session policy on the 2025-11-25 lane: binding to principal and client,
//! absolute timeout, per-principal cap, scope escalation, hijack indicators,
//! invalidation, and the session id generator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_debug_implementations,
    reason = "test code"
)]

mod common;

use bastion::audit::EventKind;
use common::*;

/// A gateway on the development issuer, and a way to mint its tokens.
struct Dev {
    gw: Gw,
    issuer: bastion_auth::DevIssuer,
    _dir: tempfile::TempDir,
}

impl Dev {
    async fn start(server_extra: &str) -> Dev {
        Dev::start_in(tempfile::tempdir().unwrap(), server_extra, 0).await
    }

    /// On `port` (0: any), with its key (and state) in `dir`.
    async fn start_in(dir: tempfile::TempDir, server_extra: &str, port: u16) -> Dev {
        let key = dir.path().join("dev.key");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer =
            bastion_auth::DevIssuer::load_or_create(&format!("http://{addr}/dev-issuer"), &key)
                .unwrap();
        let cfg = demo_config("").replace(
            HEAD,
            &format!(
                "[policy]\ndangerous_allow_all = true\n[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n[auth]\nmode = \"dangerous_dev_issuer\"\ndev_key_file = \"{}\"\nrequired_scopes = [\"mcp:tools\"]\n",
                key.display()
            ),
        );
        let gw = start_on(listener, &cfg).await;
        Dev {
            gw,
            issuer,
            _dir: dir,
        }
    }

    fn token(&self, sub: &str, scopes: &[&str], client: &str) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.issuer
            .mint(&self.gw.url, sub, &scopes, 300, client)
            .unwrap()
    }

    async fn init(&self, token: &str, ua: &str) -> String {
        let r = http()
            .post(&self.gw.url)
            .bearer_auth(token)
            .header("user-agent", ua)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INIT_BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["mcp-session-id"].to_str().unwrap().to_owned()
    }

    async fn call(&self, sid: &str, token: &str, ua: &str) -> u16 {
        http()
            .post(&self.gw.url)
            .bearer_auth(token)
            .header("user-agent", ua)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", "2025-11-25")
            .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn session_reasons(&self) -> Vec<String> {
        self.gw
            .events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Session))
            .filter_map(|e| e.reason.clone())
            .collect()
    }
}

#[tokio::test]
async fn sessions_are_bound_to_principal_client_and_scopes() {
    let d = Dev::start("").await;
    let alice = d.token("alice", &["mcp:tools"], "app-1");
    let sid = d.init(&alice, "ua").await;
    assert_eq!(d.call(&sid, &alice, "ua").await, 200);
    // A fresh token for the same principal and client keeps the session.
    let refreshed = d.token("alice", &["mcp:tools"], "app-1");
    assert_eq!(d.call(&sid, &refreshed, "ua").await, 200);
    // Another subject, or the same subject through another client: unknown session.
    assert_eq!(
        d.call(&sid, &d.token("bob", &["mcp:tools"], "app-1"), "ua")
            .await,
        404
    );
    assert_eq!(
        d.call(&sid, &d.token("alice", &["mcp:tools"], "app-2"), "ua")
            .await,
        404
    );
    assert_eq!(
        d.call(&sid, &alice, "ua").await,
        200,
        "the owner is not locked out"
    );
    // More scopes than the session was created with: the session ends.
    let wider = d.token("alice", &["mcp:tools", "mcp:admin"], "app-1");
    assert_eq!(d.call(&sid, &wider, "ua").await, 404);
    assert_eq!(
        d.call(&sid, &alice, "ua").await,
        404,
        "ended, not just refused"
    );
    let sid2 = d.init(&wider, "ua").await;
    assert_ne!(sid, sid2);
    assert_eq!(
        d.call(&sid2, &wider, "ua").await,
        200,
        "re-initialized under a new id"
    );
    // An unknown id is refused and recorded.
    assert_eq!(d.call("guessed-session-id", &alice, "ua").await, 404);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let reasons = d.session_reasons();
    for want in ["another principal", "more scopes", "unknown session"] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want}: {reasons:?}"
        );
    }
}

#[tokio::test]
async fn hijack_indicators_are_events_and_block_when_configured() {
    let d = Dev::start("").await;
    let t = d.token("alice", &["mcp:tools"], "app");
    let sid = d.init(&t, "agent/1.0").await;
    assert_eq!(
        d.call(&sid, &t, "other-agent/9").await,
        200,
        "event only by default"
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert!(
        d.session_reasons()
            .iter()
            .any(|r| r.contains("hijack indicator: User-Agent"))
    );

    let b = Dev::start("session_hijack_action = \"block\"").await;
    let t = b.token("alice", &["mcp:tools"], "app");
    let sid = b.init(&t, "agent/1.0").await;
    assert_eq!(b.call(&sid, &t, "other-agent/9").await, 404);
    assert_eq!(
        b.call(&sid, &t, "agent/1.0").await,
        200,
        "the real client continues"
    );
}

#[tokio::test]
async fn absolute_timeout_and_per_principal_cap() {
    let d = Dev::start("session_absolute_timeout_secs = 1\nmax_sessions_per_principal = 2").await;
    let t = d.token("alice", &["mcp:tools"], "app");
    let s1 = d.init(&t, "ua").await;
    let s2 = d.init(&t, "ua").await;
    assert_eq!(d.call(&s2, &t, "ua").await, 200);
    let s3 = d.init(&t, "ua").await; // evicts s1, the least recently used
    assert_eq!(d.call(&s1, &t, "ua").await, 404);
    assert_eq!(d.call(&s3, &t, "ua").await, 200);
    // Another principal is not affected by alice's cap.
    let bob = d.token("bob", &["mcp:tools"], "app");
    let sb = d.init(&bob, "ua").await;
    assert_eq!(d.call(&sb, &bob, "ua").await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        d.call(&s3, &t, "ua").await,
        404,
        "absolute timeout, however busy"
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let reasons = d.session_reasons();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("per-principal session cap")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("absolute timeout")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn invalidation_ends_every_session_of_a_principal_at_once() {
    let d = Dev::start("").await;
    let t = d.token("alice", &["mcp:tools"], "app");
    let a = d.init(&t, "ua").await;
    let b = d.init(&t, "ua").await;
    let bob = d.token("bob", &["mcp:tools"], "app");
    let c = d.init(&bob, "ua").await;
    let n =
        d.gw.gw
            .invalidate_principal(d.issuer.issuer(), "alice")
            .await
            .unwrap();
    assert_eq!(n, 2);
    assert_eq!(d.call(&a, &t, "ua").await, 404);
    assert_eq!(d.call(&b, &t, "ua").await, 404);
    assert_eq!(d.call(&c, &bob, "ua").await, 200);
}

#[tokio::test]
async fn revocations_survive_a_restart_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let extra = format!("[state]\npath = \"{}\"", db.display());
    let d = Dev::start_in(dir, &extra, 0).await;
    let port = d.gw.addr.port();
    let t = d.token("alice", &["mcp:tools"], "app");
    let sid = d.init(&t, "ua").await;
    assert_eq!(
        d.gw.gw
            .revoke_subject(d.issuer.issuer(), "alice")
            .await
            .unwrap(),
        1
    );
    assert_eq!(d.call(&sid, &t, "ua").await, 401);
    // A new gateway process on the same state file: still revoked.
    let Dev { gw, _dir, .. } = d;
    gw.stop().await;
    // Same address (so the same issuer and audience), same state file.
    let again = Dev::start_in(_dir, &extra, port).await;
    let t2 = again.token("alice", &["mcp:tools"], "app");
    let r = http()
        .post(&again.gw.url)
        .bearer_auth(&t2)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let bob = again.token("bob", &["mcp:tools"], "app");
    again.init(&bob, "ua").await;
}
