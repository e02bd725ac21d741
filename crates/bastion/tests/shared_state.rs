//! Two gateway instances sharing sessions through a real Redis (started here on
//! a free loopback port), with requests alternating between them and no
//! affinity: sessions created on one are served by the other, deletion and
//! invalidation are seen everywhere, tampered values are refused, and an outage
//! fails closed (503) and recovers by itself.
//!
//! Needs `redis-server` (Debian package; the test command installs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods,
    missing_debug_implementations,
    reason = "test code; redis-server is a child process started directly"
)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::redis_server::{Redis, free_port};
use common::*;
use serde_json::json;

/// Two instances (A, B) with one public URL, the development issuer's key and
/// the state keys shared, as behind a load balancer.
struct Pair {
    a: Gw,
    b: Gw,
    shared: Shared,
}

/// What instances behind one load balancer share: the public URL, the
/// development issuer's key, the state keys and the Redis.
struct Shared {
    dir: tempfile::TempDir,
    public: String,
    hosts: [String; 2],
    redis_port: u16,
    dev: bastion_auth::DevIssuer,
}

impl Shared {
    /// For instances listening on `a` (whose URL is the public one) and `b`.
    fn new(a: std::net::SocketAddr, b: std::net::SocketAddr, redis_port: u16) -> Shared {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let state_key = dir.path().join("state.key");
        std::fs::write(
            &state_key,
            "k1:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTIzNDU2",
        )
        .unwrap();
        std::fs::set_permissions(&state_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dev = bastion_auth::DevIssuer::load_or_create(
            &format!("http://{a}/dev-issuer"),
            &dir.path().join("dev.key"),
        )
        .unwrap();
        Shared {
            dir,
            public: format!("http://{a}/mcp"),
            hosts: [a.to_string(), b.to_string()],
            redis_port,
            dev,
        }
    }

    /// The configuration of the instance listening on `listen`.
    fn config(&self, listen: std::net::SocketAddr) -> String {
        let p = self.dir.path();
        format!(
            r#"[policy]
dangerous_allow_all = true
[server]
listen = "{listen}"
public_url = "{public}"
allowed_hosts = ["{h0}", "{h1}"]
[auth]
mode = "dangerous_dev_issuer"
dev_key_file = "{key}"
required_scopes = ["mcp:tools"]
[state]
backend = "redis"
url = "redis://127.0.0.1:{rp}/0"
integrity_key = "file:{sk}"
[audit]
path = "{audit}"
[[upstream]]
name = "demo"
transport = "stdio"
command = "{BIN}"
args = ["demo-upstream"]
timeout_secs = 10
"#,
            public = self.public,
            h0 = self.hosts[0],
            h1 = self.hosts[1],
            key = p.join("dev.key").display(),
            rp = self.redis_port,
            sk = p.join("state.key").display(),
            audit = p.join(format!("audit-{}.jsonl", listen.port())).display(),
        )
    }

    fn token(&self, sub: &str) -> String {
        self.dev
            .mint(&self.public, sub, &["mcp:tools".into()], 300, "app")
            .unwrap()
    }
}

impl Pair {
    async fn start(redis_port: u16) -> Pair {
        let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (pa, pb) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
        let shared = Shared::new(pa, pb, redis_port);
        let a = start_on(la, &shared.config(pa)).await;
        let b = start_on(lb, &shared.config(pb)).await;
        Pair { a, b, shared }
    }

    fn token(&self, sub: &str) -> String {
        self.shared.token(sub)
    }
}

async fn init(url: &str, token: &str) -> reqwest::Response {
    http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT_BODY)
        .send()
        .await
        .unwrap()
}

async fn call(
    url: &str,
    sid: &str,
    token: &str,
    id: i64,
    tool: &str,
) -> (u16, Vec<serde_json::Value>) {
    let r = http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"message":"hi"}}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, messages(r).await)
}

#[tokio::test]
async fn two_instances_serve_the_same_sessions_without_affinity() {
    let redis = Redis::start(free_port());
    let p = Pair::start(redis.port).await;
    let alice = p.token("alice");
    let r = init(&p.a.url, &alice).await;
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    // Alternate: B has never seen this session; it rebuilds it from the record.
    for (i, url) in [&p.b.url, &p.a.url, &p.b.url].into_iter().enumerate() {
        let (status, msgs) = call(url, &sid, &alice, i as i64 + 2, "demo__echo").await;
        assert_eq!(status, 200, "call {i}");
        assert_eq!(
            msgs.last().unwrap()["result"]["content"][0]["text"],
            "Echo: hi"
        );
    }
    // Another principal cannot use it on either instance.
    let bob = p.token("bob");
    assert_eq!(call(&p.b.url, &sid, &bob, 9, "demo__echo").await.0, 404);
    // DELETE on A ends it on B as well.
    let d = http()
        .delete(&p.a.url)
        .bearer_auth(&alice)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(call(&p.b.url, &sid, &alice, 10, "demo__echo").await.0, 404);
    // Invalidation on A is visible on B within a second.
    let r = init(&p.b.url, &alice).await;
    let sid2 = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    assert_eq!(call(&p.a.url, &sid2, &alice, 11, "demo__echo").await.0, 200);
    let t0 = std::time::Instant::now();
    let n =
        p.a.gw
            .invalidate_principal(p.shared.dev.issuer(), "alice")
            .await
            .unwrap();
    assert!(n >= 1);
    assert_eq!(call(&p.b.url, &sid2, &alice, 12, "demo__echo").await.0, 404);
    assert!(t0.elapsed() < Duration::from_secs(1));
    // Nothing in Redis names a session id or a token.
    let mut c = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    for k in &keys {
        let v: Option<String> = redis::cmd("GET")
            .arg(k)
            .query_async(&mut c)
            .await
            .unwrap_or(None);
        let text = format!("{k} {}", v.unwrap_or_default());
        assert!(
            !text.contains(&sid) && !text.contains(&sid2) && !text.contains(&alice),
            "{text}"
        );
    }
}

#[tokio::test]
async fn tampered_values_are_refused_and_an_outage_fails_closed_then_recovers() {
    let mut redis = Redis::start(free_port());
    let p = Pair::start(redis.port).await;
    let alice = p.token("alice");
    let r = init(&p.a.url, &alice).await;
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    // Widen the stored scopes directly in Redis: the MAC no longer matches.
    let key = format!("bastion:s:{}", bastion::state::store::digest(&sid));
    let mut c = redis.conn().await;
    let v: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    let forged = v.replace("\"mcp:tools\"", "\"mcp:tools\",\"mcp:admin\"");
    assert_ne!(v, forged);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&forged)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(call(&p.b.url, &sid, &alice, 2, "demo__echo").await.0, 404);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        p.b.events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("session record failed its integrity check"))
    );

    // Outage: clear 503s, no panic.
    let r = init(&p.a.url, &alice).await;
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    redis.stop();
    let (status, msgs) = call(&p.b.url, &sid, &alice, 3, "demo__echo").await;
    assert_eq!(status, 503);
    assert!(
        msgs[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session store unavailable"),
        "{msgs:?}"
    );
    assert_eq!(init(&p.a.url, &alice).await.status(), 503);
    // Redis returns (empty: it kept nothing): service resumes by itself.
    let _redis = Redis::start(redis.port);
    let mut ok = false;
    for _ in 0..50 {
        let r = init(&p.a.url, &alice).await;
        if r.status() == 200 {
            let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
            ok = call(&p.b.url, &sid, &alice, 4, "demo__echo").await.0 == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "service did not resume after Redis came back");
}

/// A 2026-07-28 request (no session) with `token`.
async fn stateless(url: &str, token: &str) -> u16 {
    http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_revocation_on_one_instance_holds_on_the_other_within_a_second() {
    let redis = Redis::start(free_port());
    let p = Pair::start(redis.port).await;
    let alice = p.token("alice");
    assert_eq!(stateless(&p.b.url, &alice).await, 200);
    p.a.gw
        .revoke_subject(p.shared.dev.issuer(), "alice")
        .await
        .unwrap();
    assert_eq!(
        stateless(&p.a.url, &alice).await,
        401,
        "at once where it was made"
    );
    let t0 = std::time::Instant::now();
    while stateless(&p.b.url, &alice).await != 401 {
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "not seen on B in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Others are unaffected; restoring lifts it everywhere.
    assert_eq!(stateless(&p.b.url, &p.token("bob")).await, 200);
    assert!(
        p.b.gw
            .restore_subject(p.shared.dev.issuer(), "alice")
            .await
            .unwrap()
    );
    let t0 = std::time::Instant::now();
    while stateless(&p.a.url, &alice).await != 200 {
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "restore not seen on A in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a child process on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn two_bastion_processes_share_sessions_through_redis() {
    let redis = Redis::start(free_port());
    let (pa, pb) = (free_port(), free_port());
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let shared = Shared::new(addr(pa), addr(pb), redis.port);
    let mut procs = Vec::new();
    for (name, port) in [("a", pa), ("b", pb)] {
        let cfg = shared.dir.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, shared.config(addr(port))).unwrap();
        procs.push(Proc(
            Command::new(BIN)
                .args(["serve", "--config"])
                .arg(&cfg)
                .env("BASTION_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    let (a, b) = (
        format!("http://127.0.0.1:{pa}/mcp"),
        format!("http://127.0.0.1:{pb}/mcp"),
    );
    let alice = shared.token("alice");
    let r = init(&a, &alice).await;
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    for (i, url) in [&b, &a, &b].into_iter().enumerate() {
        let (status, msgs) = call(url, &sid, &alice, i as i64 + 2, "demo__echo").await;
        assert_eq!(status, 200, "call {i}");
        assert_eq!(
            msgs.last().unwrap()["result"]["content"][0]["text"],
            "Echo: hi"
        );
    }
    let d = http()
        .delete(&a)
        .bearer_auth(&alice)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(
        call(&b, &sid, &alice, 9, "demo__echo").await.0,
        404,
        "DELETE on A ends it on B"
    );
    drop(procs);
}

#[tokio::test]
async fn a_tool_decision_on_one_instance_holds_on_the_other_within_a_second() {
    use bastion::integrity::pins::OperatorAction;
    use bastion::integrity::{self, DefKind};
    let redis = Redis::start(free_port());
    let p = Pair::start(redis.port).await;
    let alice = p.token("alice");
    let r = init(&p.b.url, &alice).await;
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let ok = |msgs: &[serde_json::Value]| msgs.last().unwrap()["result"]["content"].is_array();
    assert!(ok(&call(&p.b.url, &sid, &alice, 2, "demo__echo").await.1));
    // Both instances pinned the same v1 through the shared store. On A, a
    // changed definition is seen and an operator accepts it, which
    // supersedes the v1 the demo upstream still serves ...
    let history = p.a.gw.pins.history("demo", DefKind::Tool, "echo").unwrap();
    let mut def = history["versions"][0]["definition"].clone();
    def["description"] = json!("Echoes, differently.");
    let hash = integrity::hash(&def);
    p.a.gw
        .pins
        .observe(
            &p.a.gw.store,
            p.a.gw.audit.as_ref(),
            "demo",
            DefKind::Tool,
            "echo",
            &def,
            &hash,
            bastion::integrity::pins::Seen::Session,
        )
        .await;
    p.a.gw
        .pins
        .decide(
            &p.a.gw.store,
            p.a.gw.audit.as_ref(),
            OperatorAction::Approve,
            "demo",
            DefKind::Tool,
            "echo",
            None,
            "ops",
        )
        .await
        .unwrap();
    // ... so B refuses it within a second.
    let t0 = std::time::Instant::now();
    let mut id = 10;
    loop {
        id += 1;
        let (_, msgs) = call(&p.b.url, &sid, &alice, id, "demo__echo").await;
        if msgs.last().unwrap()["error"]["data"]["standing"] == "superseded" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "not seen on B in time: {msgs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A rollback on B brings v1 back on A too.
    p.b.gw
        .pins
        .decide(
            &p.b.gw.store,
            p.b.gw.audit.as_ref(),
            OperatorAction::Rollback,
            "demo",
            DefKind::Tool,
            "echo",
            Some(1),
            "ops",
        )
        .await
        .unwrap();
    let r = init(&p.a.url, &alice).await;
    let sid_a = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let t0 = std::time::Instant::now();
    loop {
        id += 1;
        let (_, msgs) = call(&p.a.url, &sid_a, &alice, id, "demo__echo").await;
        if ok(&msgs) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "rollback not seen on A in time: {msgs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The records in Redis are sealed: an edited one is not trusted.
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/0", redis.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("bastion:pins")
        .query_async(&mut c)
        .await
        .unwrap();
    let field = fields
        .iter()
        .find(|f| f.contains("echo") && !f.ends_with("#rev"))
        .unwrap();
    let v: String = redis::cmd("HGET")
        .arg("bastion:pins")
        .arg(field)
        .query_async(&mut c)
        .await
        .unwrap();
    let forged = v.replace("Echoes, differently.", "Echoes, forged!");
    let _: () = redis::cmd("HSET")
        .arg("bastion:pins")
        .arg(field)
        .arg(forged)
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("INCR")
        .arg("bastion:pins:gen")
        .query_async(&mut c)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        p.a.gw.pins.history("demo", DefKind::Tool, "echo").is_err(),
        "a forged record must not be loaded"
    );
}
