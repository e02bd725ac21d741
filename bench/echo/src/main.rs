//! `bench-echo`: a minimal MCP server (revision 2025-11-25, Streamable HTTP) with one
//! tool, `echo`, used as the upstream in the gateway benchmarks.
//!
//! It is protocol-correct for what it offers (sessions, notifications, `tools/list`,
//! `tools/call`, method-not-found, session end with DELETE) and deliberately does as
//! little as possible per request: no logging, JSON responses only, no SSE. A fast
//! upstream keeps the gateway's own cost visible in the benchmark ratios.
//!
//! Usage: `bench-echo --listen 127.0.0.1:PORT` serves `http://127.0.0.1:PORT/mcp`.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::ListenerExt as _;
use clap::Parser;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Revisions this server speaks; the first is the one offered when the client asks
/// for something else.
const SUPPORTED_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

// JSON-RPC error codes used here.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

#[derive(Debug, Parser)]
#[command(name = "bench-echo", about = "Minimal MCP echo server for benchmarks")]
struct Args {
    /// Address to listen on (loopback only: this is a test server).
    #[arg(long, default_value = "127.0.0.1:8931")]
    listen: SocketAddr,
}

#[derive(Debug, Default)]
struct App {
    /// Live session ids. Sessions are only ever created by `initialize` and removed by
    /// DELETE; a benchmark creates a handful, so the set stays small.
    sessions: Mutex<HashSet<String>>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "refusing to listen on {}: bench-echo is loopback-only",
        args.listen
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(serve(args.listen))
}

async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let app = Arc::new(App::default());
    let router = Router::new().route("/mcp", any(mcp)).with_state(app);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?
        // Small request/response exchanges: never let Nagle hold back a reply.
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}

async fn mcp(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match method {
        Method::POST => post(&app, &headers, &body),
        Method::DELETE => match session_of(&headers) {
            None => status_only(StatusCode::BAD_REQUEST),
            Some(id) if app.sessions.lock().remove(id) => status_only(StatusCode::OK),
            Some(_) => status_only(StatusCode::NOT_FOUND),
        },
        // No server-initiated messages, so no GET stream: 405 is the spec's answer.
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, HeaderValue::from_static("POST, DELETE"))],
        )
            .into_response(),
    }
}

fn post(app: &App, headers: &HeaderMap, body: &[u8]) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !is_json {
        return status_only(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let msg: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                PARSE_ERROR,
                "Parse error",
            );
        }
    };
    let Some(obj) = msg.as_object() else {
        // Batches were removed in 2025-06-18; anything but an object is invalid.
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "Invalid Request",
        );
    };
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        // A response from the client (we never ask it anything): accept and ignore.
        return status_only(StatusCode::ACCEPTED);
    };
    let id = obj.get("id");
    let params = obj.get("params");

    if method == "initialize" {
        return match id {
            Some(id) => initialize(app, id, params),
            None => status_only(StatusCode::BAD_REQUEST),
        };
    }

    // Everything after initialize belongs to a session.
    match session_of(headers) {
        None => return status_only(StatusCode::BAD_REQUEST),
        Some(s) if !app.sessions.lock().contains(s) => return status_only(StatusCode::NOT_FOUND),
        Some(_) => {}
    }
    if let Some(v) = headers.get(VERSION_HEADER)
        && !v.to_str().is_ok_and(|v| SUPPORTED_VERSIONS.contains(&v))
    {
        return status_only(StatusCode::BAD_REQUEST);
    }

    let Some(id) = id else {
        // Notifications (initialized, cancelled, ...) need no answer.
        return status_only(StatusCode::ACCEPTED);
    };
    match method {
        "ping" => rpc_result(id, &json!({})),
        "tools/list" => rpc_result(
            id,
            &json!({"tools": [{
                "name": "echo",
                "description": "Echoes the message back.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}},
                    "required": ["message"]
                }
            }]}),
        ),
        "tools/call" => call_tool(id, params),
        _ => rpc_error(StatusCode::OK, id, METHOD_NOT_FOUND, "Method not found"),
    }
}

fn initialize(app: &App, id: &Value, params: Option<&Value>) -> Response {
    let asked = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str);
    let version = asked
        .and_then(|a| SUPPORTED_VERSIONS.iter().find(|v| **v == a))
        .copied()
        .unwrap_or(SUPPORTED_VERSIONS[0]);
    let session = new_session_id();
    app.sessions.lock().insert(session.clone());
    let result = json!({
        "protocolVersion": version,
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "bench-echo", "version": env!("CARGO_PKG_VERSION")}
    });
    let mut resp = rpc_result(id, &result);
    if let Ok(v) = HeaderValue::from_str(&session) {
        resp.headers_mut().insert(SESSION_HEADER, v);
    }
    resp
}

fn call_tool(id: &Value, params: Option<&Value>) -> Response {
    let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
    if name != Some("echo") {
        return rpc_error(StatusCode::OK, id, INVALID_PARAMS, "Unknown tool");
    }
    let message = params
        .and_then(|p| p.get("arguments"))
        .and_then(|a| a.get("message"))
        .and_then(Value::as_str);
    let result = match message {
        Some(m) => json!({"content": [{"type": "text", "text": format!("Echo: {m}")}]}),
        // Bad arguments are a tool error the model can see, not a protocol error.
        None => json!({
            "content": [{"type": "text", "text": "argument `message` (string) is required"}],
            "isError": true
        }),
    };
    rpc_result(id, &result)
}

/// 128 random bits, hex: visible ASCII as the spec requires, and unguessable.
fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn session_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

fn rpc_result(id: &Value, result: &Value) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    json_response(
        status,
        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

fn status_only(status: StatusCode) -> Response {
    status.into_response()
}
