//! Test harness: a real gateway on a free loopback port, in front of the real
//! demo upstream binary (stdio) or another gateway (HTTP).
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod idp;
pub mod redis_server;

use std::sync::Arc;

use bastion::audit::{AuditEvent, MemorySink};
use bastion::config::Config;
use bastion::gateway::Gateway;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_bastion");

/// The deliberately malicious test upstream (tests/fixtures/evil_server.py).
pub const EVIL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/evil_server.py");

/// The stand-in upstream whose tools are named by `TOOLS` (tests/fixtures/env_server.py).
pub const ENV_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/env_server.py");

/// The system interpreter itself: a version-manager shim (a shell script) would
/// add variables of its own and blur what the gateway passed.
pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

pub struct Gw {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub audit: Arc<MemorySink>,
    pub gw: Arc<Gateway>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gw {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.audit.events()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The `[server]` and `[auth]` tables every test gateway starts from (its port is
/// replaced by a free one in [`start`]).
pub const HEAD: &str = "[policy]\ndangerous_allow_all = true\n[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nmode = \"dangerous_none\"\n";

/// A 2025-11-25 `initialize` request body.
pub const INIT_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

/// A config with the demo upstream on stdio, plus `extra` TOML appended.
pub fn demo_config(extra: &str) -> String {
    format!(
        r#"{HEAD}[[upstream]]
name = "demo"
transport = "stdio"
command = "{BIN}"
args = ["demo-upstream"]
timeout_secs = 10
{extra}"#
    )
}

/// Starts a gateway for `toml` (its `listen` port is replaced by a free one).
pub async fn start(toml: &str) -> Gw {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, toml).await
}

/// Starts a gateway for `toml` on `listener` (every `127.0.0.1:0` in the text,
/// `listen` and `public_url` alike, becomes the listener's address).
pub async fn start_on(listener: tokio::net::TcpListener, toml: &str) -> Gw {
    let addr = listener.local_addr().unwrap();
    let toml = toml.replace("127.0.0.1:0", &addr.to_string());
    let cfg = Config::parse(&toml, "test.toml").unwrap();
    let audit = Arc::new(MemorySink::default());
    let gw = Gateway::new(cfg, audit.clone()).unwrap();
    let router = bastion::transport::http::router(gw.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let g = gw.clone();
    let task = tokio::spawn(async move {
        let _ = bastion::transport::listener::serve(g, listener, router, async {
            let _ = rx.await;
        })
        .await;
    });
    Gw {
        url: format!("http://{addr}/mcp"),
        addr,
        audit,
        gw,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// Parses a response body that is JSON or SSE into the list of messages.
pub async fn messages(resp: reqwest::Response) -> Vec<Value> {
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap();
    if ctype.starts_with("text/event-stream") {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    } else if text.is_empty() {
        vec![]
    } else {
        vec![serde_json::from_str(&text).unwrap()]
    }
}

/// A legacy-lane client session.
pub struct Legacy {
    pub url: String,
    pub sid: String,
    pub http: reqwest::Client,
    pub version: String,
}

impl Legacy {
    pub async fn connect(url: &str, capabilities: Value) -> (Legacy, Value) {
        Legacy::connect_with(http(), url, capabilities).await
    }

    /// A session whose every request carries `Authorization: Bearer <token>`.
    pub async fn connect_as(url: &str, capabilities: Value, token: &str) -> (Legacy, Value) {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        let c = reqwest::Client::builder()
            .default_headers(h)
            .build()
            .unwrap();
        Legacy::connect_with(c, url, capabilities).await
    }

    async fn connect_with(
        http: reqwest::Client,
        url: &str,
        capabilities: Value,
    ) -> (Legacy, Value) {
        let r = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":capabilities,
                "clientInfo":{"name":"test","version":"0"}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let init = messages(r).await.remove(0);
        let s = Legacy {
            url: url.to_owned(),
            sid,
            http,
            version: "2025-11-25".into(),
        };
        let r = s
            .post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(r.status(), 202);
        (s, init)
    }

    pub fn req(&self) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", &self.version)
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.req().json(body).send().await.unwrap()
    }

    /// Sends a request and returns the final response message.
    pub async fn call(&self, id: i64, method: &str, params: Value) -> Value {
        let r = self
            .post(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
            .await;
        assert_eq!(r.status(), 200, "{method}");
        let msgs = messages(r).await;
        msgs.into_iter().last().unwrap()
    }
}

/// Sends a 2026-07-28 request with correct headers and `_meta`.
pub async fn modern(url: &str, id: i64, method: &str, params: Value) -> (u16, Vec<Value>) {
    let (status, _, msgs) = modern_as(url, None, id, method, params).await;
    (status, msgs)
}

/// A 2026-07-28 request with an optional bearer token: status, headers, messages.
pub async fn modern_as(
    url: &str,
    token: Option<&str>,
    id: i64,
    method: &str,
    params: Value,
) -> (u16, reqwest::header::HeaderMap, Vec<Value>) {
    modern_with(url, token, json!({}), id, method, params).await
}

/// [`modern_as`] declaring `caps` as the client's capabilities.
pub async fn modern_with(
    url: &str,
    token: Option<&str>,
    caps: Value,
    id: i64,
    method: &str,
    mut params: Value,
) -> (u16, reqwest::header::HeaderMap, Vec<Value>) {
    let obj = params.as_object_mut().unwrap();
    let m = obj.entry("_meta").or_insert_with(|| json!({}));
    m["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
    m["io.modelcontextprotocol/clientCapabilities"] = caps;
    let mut b = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(t) = token {
        b = b.bearer_auth(t);
    }
    if let Some(n) = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
    {
        b = b.header("mcp-name", n);
    }
    let r = b
        .json(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, messages(r).await)
}
