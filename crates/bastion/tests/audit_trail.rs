//! The audit trail of a real `bastion serve`: it verifies after a clean stop,
//! and after SIGKILL under load and a restart it still verifies and holds a
//! record for every request a client saw answered.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "test code that runs the gateway binary as an operator would"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bastion");

fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    let cfg = dir.join("bastion.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:{port}"
[auth]
mode = "dangerous_none"
[audit]
path = "{audit}"
checkpoint_every = 50
[[upstream]]
name = "demo"
transport = "stdio"
command = "{BIN}"
args = ["demo-upstream"]
"#,
            audit = dir.join("audit").join("trail.jsonl").display()
        ),
    )
    .unwrap();
    cfg
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(cfg: &Path, port: u16) -> Child {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("BASTION_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("bastion did not start");
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("bastion did not stop on SIGTERM");
}

async fn call(c: &reqwest::Client, url: &str, id: u64) -> bool {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "demo__add", "arguments": {"a": id, "b": 1},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": {}}}});
    let Ok(r) = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "demo__add")
        .json(&body)
        .send()
        .await
    else {
        return false;
    };
    if r.status() != 200 {
        return false;
    }
    r.json::<Value>()
        .await
        .is_ok_and(|v| v.get("result").is_some())
}

fn verify(dir: &Path, cfg: &Path) -> std::process::Output {
    let mut args = vec![
        "audit".to_owned(),
        "verify".to_owned(),
        "--config".to_owned(),
        cfg.display().to_string(),
    ];
    for e in std::fs::read_dir(dir.join("audit")).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if n.starts_with("trail.jsonl") && !n.ends_with(".key") && !n.contains(".torn-") {
            args.push(p.display().to_string());
        }
    }
    Command::new(BIN).args(&args).output().unwrap()
}

/// Answered `tools/call`s the trail recorded.
fn audited_calls(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("audit")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("trail.jsonl") || name.ends_with(".key") || name.contains(".torn-") {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let ev = &v["event"];
            if ev["kind"] == "request" && ev["method"] == "tools/call" && ev["outcome"] == "ok" {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_trail_verifies_and_loses_no_answered_request_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let url = format!("http://127.0.0.1:{port}/mcp");

    // Load, then SIGKILL in the middle of it.
    let child = serve(&cfg, port).await;
    let answered = Arc::new(AtomicU64::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let (answered, stopping, url) = (answered.clone(), stopping.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut id = w * 1_000_000;
            while !stopping.load(Ordering::SeqCst) {
                id += 1;
                if call(&c, &url, id).await {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut child = child;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stopping.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let answered = answered.load(Ordering::SeqCst);
    assert!(answered > 50, "the load generator got {answered} answers");

    // Restart (the chain continues), one more answered call, clean stop.
    let child = serve(&cfg, port).await;
    assert!(call(&reqwest::Client::new(), &url, 1).await);
    stop(child);

    let out = verify(dir.path(), &cfg);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok"), "{text}");
    // Every answered request is in the trail; at most the requests in flight
    // at the kill (8 workers) were recorded without their answer arriving.
    let audited = audited_calls(dir.path());
    assert!(
        audited > answered && audited <= answered + 1 + 8,
        "answered {answered} (+1 after restart), audited {audited}"
    );

    // Tampering with the real trail is found and named.
    let live = dir.path().join("audit").join("trail.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&live)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let victim = lines.len() / 2;
    lines.remove(victim);
    std::fs::write(&live, lines.join("\n") + "\n").unwrap();
    let out = verify(dir.path(), &cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("first bad record") && err.contains(&format!(":{}", victim + 1)),
        "{err}"
    );
}
