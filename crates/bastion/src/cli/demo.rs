//! The built-in demo upstream and `bastion demo`.
//!
//! `bastion demo-upstream` is a small but complete MCP server (2025-11-25, stdio)
//! used by `bastion demo` and by the tests: tools `echo`, `add`, `count_slowly`
//! (progress), `ask_model` (sampling), `ask_user` (elicitation) and `fail`; a
//! resource `demo://readme` with a template `demo://notes/{id}`; a prompt `greet`.
//! It speaks to its client (the gateway) only through stdin/stdout.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bastion_proto::{ErrorObject, Id, Message, Request, Response, codes};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

type Pending = Arc<Mutex<HashMap<Id, oneshot::Sender<Response>>>>;

struct Peer {
    out: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    /// Requests being served, so `notifications/cancelled` can stop them.
    running: Mutex<HashMap<Id, tokio::task::AbortHandle>>,
    next: AtomicI64,
    client_caps: Mutex<Value>,
}

impl Peer {
    async fn send(&self, m: Message) {
        let mut v = m.to_vec();
        v.push(b'\n');
        let _ = self.out.send(v).await;
    }

    async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = Id::Num(self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.clone(), tx);
        self.send(Message::Request(Request {
            id,
            method: method.into(),
            params: Some(params),
        }))
        .await;
        match tokio::time::timeout(Duration::from_secs(120), rx).await {
            Ok(Ok(r)) => r.outcome.map_err(|e| e.message),
            _ => Err("no answer from the client".into()),
        }
    }
}

/// Runs the demo upstream on stdin/stdout until stdin closes.
pub async fn run_upstream() -> std::io::Result<()> {
    let (otx, mut orx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(b) = orx.recv().await {
            if stdout.write_all(&b).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let peer = Arc::new(Peer {
        out: otx,
        pending: Arc::new(Mutex::new(HashMap::new())),
        running: Mutex::new(HashMap::new()),
        next: AtomicI64::new(1),
        client_caps: Mutex::new(json!({})),
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let Ok(msg) = Message::parse(line.as_bytes(), 16 << 20) else {
            continue;
        };
        match msg {
            Message::Response(r) => {
                if let Some(id) = &r.id
                    && let Some(tx) = peer.pending.lock().remove(id)
                {
                    let _ = tx.send(r);
                }
            }
            Message::Notification(n) => {
                // A cancelled request is stopped and gets no response.
                if n.method == "notifications/cancelled"
                    && let Some(id) = n
                        .params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .and_then(Id::from_value)
                    && let Some(task) = peer.running.lock().remove(&id)
                {
                    task.abort();
                }
            }
            Message::Request(req) => {
                let id = req.id.clone();
                let p = peer.clone();
                // Hold the map while spawning: the task's own removal waits for the
                // insertion, so a finished request never leaves an entry behind.
                let mut running = peer.running.lock();
                let task = tokio::spawn(async move {
                    let id = req.id.clone();
                    let outcome = handle(&p, req).await;
                    p.running.lock().remove(&id);
                    p.send(Message::Response(Response {
                        id: Some(id),
                        outcome,
                    }))
                    .await;
                });
                running.insert(id, task.abort_handle());
            }
        }
    }
    drop(peer);
    let _ = writer.await;
    Ok(())
}

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

fn tool_error(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}], "isError": true})
}

const README: &str =
    "This is the mcp-bastion demo upstream. Every request you see reached it through the gateway.";

async fn handle(peer: &Peer, req: Request) -> Result<Value, ErrorObject> {
    let p = req.params.clone().unwrap_or_else(|| json!({}));
    let args = p.get("arguments").cloned().unwrap_or_else(|| json!({}));
    match req.method.as_str() {
        "initialize" => {
            *peer.client_caps.lock() = p.get("capabilities").cloned().unwrap_or_else(|| json!({}));
            let v = p
                .get("protocolVersion")
                .and_then(Value::as_str)
                .filter(|v| matches!(*v, "2025-03-26" | "2025-06-18" | "2025-11-25"))
                .unwrap_or("2025-11-25");
            Ok(json!({
                "protocolVersion": v,
                "capabilities": {
                    "tools": {"listChanged": false},
                    "resources": {"subscribe": false, "listChanged": false},
                    "prompts": {"listChanged": false},
                    "logging": {},
                    "completions": {}
                },
                "serverInfo": {"name": "bastion-demo-upstream", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "Demo tools for trying the gateway."
            }))
        }
        "ping" | "logging/setLevel" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": [
            {"name": "echo", "description": "Echoes the message back.",
             "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
            {"name": "add", "description": "Adds two numbers.",
             "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]},
             "outputSchema": {"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]}},
            {"name": "count_slowly", "description": "Counts up, reporting progress at each step.",
             "inputSchema": {"type": "object", "properties": {"steps": {"type": "integer", "minimum": 1, "maximum": 100}, "delay_ms": {"type": "integer", "minimum": 0, "maximum": 10000}}}},
            {"name": "ask_model", "description": "Asks the client's model a question (sampling).",
             "inputSchema": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}},
            {"name": "ask_user", "description": "Asks the user a question (elicitation).",
             "inputSchema": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}},
            {"name": "fail", "description": "Always fails (shows tool errors).",
             "inputSchema": {"type": "object", "properties": {}}}
        ]})),
        "tools/call" => {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let token = p.get("_meta").and_then(|m| m.get("progressToken")).cloned();
            call_tool(peer, name, &args, token).await
        }
        "resources/list" => Ok(json!({"resources": [
            {"uri": "demo://readme", "name": "readme", "mimeType": "text/plain", "description": "About this demo"}
        ]})),
        "resources/templates/list" => Ok(json!({"resourceTemplates": [
            {"uriTemplate": "demo://notes/{id}", "name": "note", "mimeType": "text/plain"}
        ]})),
        "resources/read" => {
            let uri = p.get("uri").and_then(Value::as_str).unwrap_or("");
            if uri == "demo://readme" {
                Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": README}]}))
            } else if let Some(id) = uri.strip_prefix("demo://notes/") {
                Ok(
                    json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": format!("Note {id}")}]}),
                )
            } else {
                Err(ErrorObject::with_data(
                    codes::RESOURCE_NOT_FOUND_LEGACY,
                    "Resource not found",
                    json!({"uri": uri}),
                ))
            }
        }
        "prompts/list" => Ok(json!({"prompts": [
            {"name": "greet", "description": "Greets someone.", "arguments": [{"name": "name", "required": true}]}
        ]})),
        "prompts/get" => {
            let who = args.get("name").and_then(Value::as_str).unwrap_or("friend");
            Ok(json!({"description": "A greeting", "messages": [
                {"role": "user", "content": {"type": "text", "text": format!("Please greet {who} warmly.")}}
            ]}))
        }
        "completion/complete" => {
            let v = p
                .get("argument")
                .and_then(|a| a.get("value"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let values: Vec<&str> = ["Ada", "Alan", "Grace"]
                .into_iter()
                .filter(|n| n.starts_with(v))
                .collect();
            Ok(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
        }
        other => Err(ErrorObject::new(
            codes::METHOD_NOT_FOUND,
            format!("Method not found: {other}"),
        )),
    }
}

async fn call_tool(
    peer: &Peer,
    name: &str,
    args: &Value,
    token: Option<Value>,
) -> Result<Value, ErrorObject> {
    match name {
        "echo" => Ok(text(format!(
            "Echo: {}",
            args.get("message").and_then(Value::as_str).unwrap_or("")
        ))),
        "add" => {
            let (Some(a), Some(b)) = (
                args.get("a").and_then(Value::as_f64),
                args.get("b").and_then(Value::as_f64),
            ) else {
                return Ok(tool_error("a and b must be numbers"));
            };
            let mut r = text(format!("{}", a + b));
            if let Some(o) = r.as_object_mut() {
                o.insert("structuredContent".into(), json!({"sum": a + b}));
            }
            Ok(r)
        }
        "count_slowly" => {
            let steps = args
                .get("steps")
                .and_then(Value::as_u64)
                .unwrap_or(5)
                .clamp(1, 100);
            let delay = args
                .get("delay_ms")
                .and_then(Value::as_u64)
                .unwrap_or(100)
                .min(10_000);
            for i in 1..=steps {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if let Some(t) = &token {
                    peer.send(Message::Notification(bastion_proto::Notification {
                        method: "notifications/progress".into(),
                        params: Some(json!({"progressToken": t, "progress": i, "total": steps, "message": format!("step {i}/{steps}")})),
                    }))
                    .await;
                }
            }
            Ok(text(format!("counted to {steps}")))
        }
        "ask_model" => {
            if peer.client_caps.lock().get("sampling").is_none() {
                return Ok(tool_error("the client does not support sampling"));
            }
            let q = args.get("question").and_then(Value::as_str).unwrap_or("");
            match peer
                .request(
                    "sampling/createMessage",
                    json!({"messages": [{"role": "user", "content": {"type": "text", "text": q}}], "maxTokens": 200}),
                )
                .await
            {
                Ok(r) => {
                    let answer = r.get("content").and_then(|c| c.get("text")).and_then(Value::as_str).unwrap_or("");
                    Ok(text(format!("The model said: {answer}")))
                }
                Err(e) => Ok(tool_error(format!("sampling failed: {e}"))),
            }
        }
        "ask_user" => {
            if peer.client_caps.lock().get("elicitation").is_none() {
                return Ok(tool_error("the client does not support elicitation"));
            }
            let q = args.get("question").and_then(Value::as_str).unwrap_or("");
            match peer
                .request(
                    "elicitation/create",
                    json!({"mode": "form", "message": q, "requestedSchema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}),
                )
                .await
            {
                Ok(r) => Ok(text(format!(
                    "The user chose {}: {}",
                    r.get("action").and_then(Value::as_str).unwrap_or("?"),
                    r.get("content").and_then(|c| c.get("answer")).and_then(Value::as_str).unwrap_or("")
                ))),
                Err(e) => Ok(tool_error(format!("elicitation failed: {e}"))),
            }
        }
        "fail" => Ok(tool_error("this tool always fails")),
        other => Err(ErrorObject::new(
            codes::INVALID_PARAMS,
            format!("Unknown tool: {other}"),
        )),
    }
}

/// The policy `bastion demo` runs with: the demo user may use the demo
/// upstream, except its `fail` tool (so the filtered `tools/list` shows
/// authorization at work), and `echo` refuses messages that mention a password
/// (an argument condition).
pub const DEMO_POLICY: &str = r#"// mcp-bastion demo policy (see docs/policy.md).
@id("demo-user-uses-demo")
permit (principal == Bastion::User::"demo-user", action, resource in Bastion::Upstream::"demo");

@id("demo-hide-fail")
forbid (principal, action == Bastion::Action::"tools/call", resource == Bastion::Tool::"demo/fail");

@id("demo-echo-no-passwords")
forbid (principal, action == Bastion::Action::"tools/call", resource == Bastion::Tool::"demo/echo")
when { context has arguments && context.arguments.hasTag("message") && context.arguments.getTag("message") like "*password*" };
"#;

/// The configuration `bastion demo` runs with.
pub fn demo_config_toml(
    listen: &str,
    exe: &str,
    audit: &str,
    key_file: &str,
    policy_file: &str,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        r#"[policy]
files = [{policy_file}]
[server]
listen = {listen}
[auth]
mode = "dangerous_dev_issuer"
dev_key_file = {key_file}
required_scopes = ["mcp:tools"]
[audit]
path = {audit}
[[upstream]]
name = "demo"
transport = "stdio"
command = {exe}
args = ["demo-upstream"]
"#,
        listen = q(listen),
        exe = q(exe),
        audit = q(audit),
        key_file = q(key_file),
        policy_file = q(&glob::Pattern::escape(policy_file)),
    )
}

/// What `bastion demo` prints once it listens. `token` is a short-lived access
/// token from the demo's development issuer.
/// The demo's start-up text: where it runs, a token, and commands that work
/// as printed (`exe` is this executable, `config` the configuration the demo
/// wrote).
pub fn banner(
    url: &str,
    audit: &str,
    token: &str,
    policy: &str,
    config: &str,
    exe: &str,
) -> String {
    format!(
        r#"
mcp-bastion demo gateway is running at {url}
(upstream: the built-in demo server; tools are exposed as demo__echo, demo__add, …;
 the demo policy {policy} hides demo__fail and refuses echo messages about passwords)

Every request needs an access token. This one is for "demo-user", scope mcp:tools,
valid for one hour, minted by the demo's local development issuer:
  export TOKEN={token}
More tokens (--ttl in seconds, at most 3600; the demo policy lets demo-user use the
demo upstream, any other --sub is authenticated but sees nothing):
  {exe} dev-token -c {config} --sub demo-user --scope mcp:tools --ttl 3600
(without a token you get the 401 challenge).

Try it with curl:
  curl -s -D - {url} -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"curl","version":"0"}}}}}}'
  # then, with the Mcp-Session-Id header it returned:
  curl -s {url} -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H 'Mcp-Session-Id: <id>' -H 'MCP-Protocol-Version: 2025-11-25' \
    -d '{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"demo__echo","arguments":{{"message":"hello"}}}}}}'

Or the stateless 2026-07-28 revision, no session needed:
  curl -s {url} -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/list' \
    -d '{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}'

mcpServers snippet for Claude Desktop / VS Code / Cursor:
  {{"mcpServers": {{"bastion-demo": {{"type": "http", "url": "{url}", "headers": {{"Authorization": "Bearer <TOKEN>"}}}}}}}}

Audit trail: {audit}
Press Ctrl-C to stop.
"#
    )
}
