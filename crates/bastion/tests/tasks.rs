//! 2026-07-28 task ids are handles bound to the principal that created them:
//! another principal presenting one gets the unknown-task answer. The upstream
//! is the conformance fixture, whose tasks extension lets *any* caller read any
//! task, so the refusal below is the gateway's doing. The ids a client sees
//! are sealed: an upstream's own id is not accepted either.
//!
//! Needs the test peers: `bash tests/peers/install.sh` (the test command runs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "test code; the fixture is a child process started directly"
)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::redis_server::free_port;
use common::*;
use serde_json::{Value, json};

const TASKS: &str = "io.modelcontextprotocol/tasks";

/// A 2026-07-28 request declaring the tasks extension; `name` goes in Mcp-Name.
async fn modern_as(url: &str, token: &str, method: &str, name: &str, params: Value) -> Value {
    declaring(
        url,
        token,
        method,
        name,
        params,
        json!({"extensions": {TASKS: {}}}),
    )
    .await
}

/// A 2026-07-28 request declaring `caps`.
async fn declaring(
    url: &str,
    token: &str,
    method: &str,
    name: &str,
    params: Value,
    caps: Value,
) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    let r = http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .header("mcp-name", name)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    messages(r).await.pop().unwrap()
}

#[tokio::test]
async fn a_task_is_served_only_to_the_principal_that_created_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".peers/venv/bin/python");
    assert!(python.exists(), "run `bash tests/peers/install.sh` first");
    let port = free_port();
    let mut fixture = Command::new(python)
        .arg(root.join("tests/peers/conformance_fixture.py"))
        .args(["--transport", "http", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dev.key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dev = bastion_auth::DevIssuer::load_or_create(&format!("http://{addr}/dev-issuer"), &key)
        .unwrap();
    std::fs::write(
        dir.path().join("allow.cedar"),
        r#"permit (principal, action, resource in Bastion::Upstream::"fixture");"#,
    )
    .unwrap();
    let cfg = format!(
        r#"[policy]
files = ["{}/*.cedar"]
reload_interval_secs = 1
[server]
listen = "{addr}"
[auth]
mode = "dangerous_dev_issuer"
dev_key_file = "{}"
[[upstream]]
name = "fixture"
transport = "http"
url = "http://127.0.0.1:{port}/mcp"
prefix = ""
protocol = "2026-07-28"
"#,
        dir.path().display(),
        key.display()
    );
    let gw = start_on(listener, &cfg).await;
    let token = |sub: &str| dev.mint(&gw.url, sub, &[], 300, "app").unwrap();
    let (alice, bob) = (token("alice"), token("bob"));

    let created = modern_as(
        &gw.url,
        &alice,
        "tools/call",
        "slow_compute",
        json!({"name": "slow_compute", "arguments": {"seconds": 0}}),
    )
    .await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task = created["result"]["taskId"].as_str().unwrap().to_owned();
    // The client sees a sealed handle, never the upstream's own id.
    assert!(task.starts_with("btk1."), "{task}");

    // An id the upstream issued (here: to a client talking to it directly)
    // is not a handle of this gateway's: a client cannot probe or reach an
    // upstream's tasks with ids it did not get from the gateway.
    let direct = modern_as(
        &format!("http://127.0.0.1:{port}/mcp"),
        "unused",
        "tools/call",
        "slow_compute",
        json!({"name": "slow_compute", "arguments": {"seconds": 0}}),
    )
    .await;
    let raw = direct["result"]["taskId"].as_str().unwrap().to_owned();
    let probed = modern_as(&gw.url, &alice, "tasks/get", &raw, json!({"taskId": raw})).await;
    assert_eq!(probed["error"]["message"], "Unknown task", "{probed}");

    let stolen = modern_as(&gw.url, &bob, "tasks/get", &task, json!({"taskId": task})).await;
    assert_eq!(stolen["error"]["message"], "Unknown task", "{stolen}");
    let own = modern_as(&gw.url, &alice, "tasks/get", &task, json!({"taskId": task})).await;
    assert_eq!(own["result"]["taskId"], task.as_str(), "{own}");
    // The revision's own answers come before any id is looked at: a request
    // that does not declare the extension, and the removed `tasks/result`.
    let undeclared = declaring(
        &gw.url,
        &alice,
        "tasks/get",
        &task,
        json!({"taskId": task}),
        json!({}),
    )
    .await;
    assert_eq!(undeclared["error"]["code"], -32021, "{undeclared}");
    let removed = modern_as(
        &gw.url,
        &alice,
        "tasks/result",
        &task,
        json!({"taskId": task}),
    )
    .await;
    assert_eq!(removed["error"]["code"], -32601, "{removed}");

    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert!(
        gw.events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("task id not issued to this principal"))
    );

    // A task's results are served only while its creator may still use the
    // tool that created it: forbid the tool, and the task is unknown.
    std::fs::write(
        dir.path().join("forbid.cedar"),
        r#"forbid (principal, action == Bastion::Action::"tools/call", resource == Bastion::Tool::"fixture/slow_compute");"#,
    )
    .unwrap();
    let mut revoked = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        revoked = modern_as(&gw.url, &alice, "tasks/get", &task, json!({"taskId": task})).await;
        if revoked.get("error").is_some() {
            break;
        }
    }
    assert_eq!(revoked["error"]["message"], "Unknown task", "{revoked}");
    gw.stop().await;
    let _ = fixture.kill();
    let _ = fixture.wait();
}
