//! The audit trail of a real `bastion serve`: it verifies after a clean stop,
//! and after SIGKILL under load and a restart it still verifies and holds a
//! record for every request a client saw answered.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
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

#[path = "common/redis_server.rs"]
mod redis_server;
use redis_server::free_port;

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

/// `bastion serve --config cfg` with extra environment and its stdout.
fn spawn(cfg: &Path, env: &[(&str, &str)], stdout: Stdio) -> Child {
    Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("BASTION_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Whether the gateway at `url` answers a call within 5 s.
async fn answering(c: &reqwest::Client, url: &str) -> bool {
    for _ in 0..100 {
        if call(c, url, 1).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn serve(cfg: &Path, port: u16) -> Child {
    let mut child = spawn(cfg, &[], Stdio::null());
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

fn bastion(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn timeline_export_and_impact_reconstruct_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let url = format!("http://127.0.0.1:{port}/mcp");
    let child = serve(&cfg, port).await;
    let c = reqwest::Client::new();
    let post = |body: Value, sid: Option<String>| {
        let mut b = c
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = sid {
            b = b
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        b.json(&body).send()
    };
    let r = post(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}),
        None,
    )
    .await
    .unwrap();
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    for (id, tool) in [(2, "demo__add"), (3, "demo__echo")] {
        let r = post(
            json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"a":1,"b":2,"message":"hi","token":"tok-SECRET-123"}}}),
            Some(sid.clone()),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Another session's traffic must not appear in this session's timeline.
    assert!(call(&c, &url, 9).await);
    stop(child);
    let cfg_s = cfg.to_str().unwrap();

    let (ok, out, err) = bastion(&["audit", "timeline", "--config", cfg_s, "--session", &sid]);
    assert!(ok, "{err}");
    assert!(
        out.contains("method=tools/call") && out.contains("target=demo__echo"),
        "{out}"
    );
    assert!(
        !out.contains(&sid),
        "the session id itself never appears: {out}"
    );
    // The other client's demo__add (a 2026-07-28 call, no session) is not in it.
    let adds = out
        .lines()
        .filter(|l| l.contains(" request ") && l.contains("target=demo__add"))
        .count();
    assert_eq!(adds, 1, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(" #")).collect();
    assert!(lines.len() >= 4, "{out}");
    // In chain order, with times.
    assert!(lines[0].starts_with("20"), "{out}");
    let (ok, out, _) = bastion(&[
        "audit",
        "timeline",
        "--config",
        cfg_s,
        "--session",
        &sid,
        "--json",
    ]);
    assert!(ok);
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Tool invocations carry their arguments, redacted, and their sizes.
    let log = std::fs::read_to_string(dir.path().join("audit").join("trail.jsonl")).unwrap();
    assert!(
        !log.contains("tok-SECRET-123"),
        "a secret argument reached the trail"
    );
    let call_ev: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["event"]["kind"] == "request" && v["event"]["target"] == "demo__echo")
        .unwrap();
    let ev = &call_ev["event"];
    assert_eq!(ev["arguments"]["message"], "hi", "{ev}");
    assert_eq!(ev["arguments"]["token"], "[REDACTED]", "{ev}");
    assert!(ev["bytes_in"].as_u64().unwrap() > 50, "{ev}");
    assert!(ev["bytes_out"].as_u64().unwrap() > 20, "{ev}");

    let bundle = dir.path().join("evidence");
    let (ok, out, err) = bastion(&[
        "audit",
        "export",
        "--config",
        cfg_s,
        "--session",
        &sid,
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["verified"], true, "{manifest}");
    assert_eq!(manifest["records"].as_u64().unwrap(), seqs.len() as u64);
    // The exported records are the log's lines byte for byte.
    for l in std::fs::read_to_string(bundle.join("events.jsonl"))
        .unwrap()
        .lines()
    {
        assert!(log.lines().any(|x| x == l));
    }
    assert!(
        std::fs::read_to_string(bundle.join("verification.txt"))
            .unwrap()
            .contains("result: ok")
    );
    assert!(
        !std::fs::read_to_string(bundle.join("checkpoints.jsonl"))
            .unwrap()
            .is_empty()
    );

    let (ok, out, err) = bastion(&[
        "audit",
        "impact",
        "--config",
        cfg_s,
        "--principal",
        "anonymous",
        "--json",
    ]);
    assert!(ok, "{err}");
    let im: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(im["tools"][r#"Bastion::Tool::"demo/add""#], 2, "{im}");
    assert_eq!(im["tools"][r#"Bastion::Tool::"demo/echo""#], 1, "{im}");
    assert_eq!(im["upstreams"]["demo"], 3, "{im}");
    assert!(!im["sessions"].as_array().unwrap().is_empty());
    assert!(im["first_seen"].as_str().unwrap() <= im["last_seen"].as_str().unwrap());
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_behind_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin = free_port();
    let cfg = config(dir.path(), port);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[auth]",
        &format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\nmetrics_token = \"env:BASTION_TEST_METRICS_TOKEN\"\n[auth]"),
    );
    std::fs::write(&cfg, text).unwrap();
    let child = spawn(
        &cfg,
        &[("BASTION_TEST_METRICS_TOKEN", "scrape-secret")],
        Stdio::null(),
    );
    let url = format!("http://127.0.0.1:{port}/mcp");
    let c = reqwest::Client::new();
    assert!(answering(&c, &url).await, "bastion did not start");
    assert!(call(&c, &url, 2).await);
    let murl = format!("http://127.0.0.1:{admin}/metrics");
    let denied = c.get(&murl).send().await.unwrap().status();
    let wrong = c
        .get(&murl)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap()
        .status();
    let body = c
        .get(&murl)
        .bearer_auth("scrape-secret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop(child);
    assert_eq!(denied, 401);
    assert_eq!(wrong, 401);
    for family in [
        "bastion_requests_total{",
        "bastion_request_duration_seconds_bucket{",
        "bastion_authz_decisions_total{",
        "bastion_upstream_requests_total{",
        "bastion_upstream_request_duration_seconds_bucket{",
        "bastion_audit_queue_depth ",
        "bastion_audit_healthy 1",
        "bastion_policies ",
        "# TYPE bastion_detections_total counter",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
    assert!(
        body.contains(r#"method="tools/call",outcome="ok""#),
        "{body}"
    );
    // promtool (Debian `prometheus`) accepts the exposition.
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool: the test command installs the Debian prometheus package");
    std::io::Write::write_all(&mut p.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 and localhost, written to
/// `dir`: the paths of the CA certificate, the certificate and its key.
fn test_pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

#[tokio::test]
async fn the_admin_listener_checks_host_on_every_route_and_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert_pem, key_pem) = test_pki(dir.path());
    let ca_text = std::fs::read_to_string(&ca_pem).unwrap();
    let port = free_port();
    let admin = free_port();
    let cfg = config(dir.path(), port);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[auth]",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\nmetrics_token = \"env:BASTION_TEST_METRICS_TOKEN\"\ntoken = \"env:BASTION_TEST_ADMIN_TOKEN\"\n[admin.tls]\ncert = \"{}\"\nkey = \"{}\"\n[auth]",
            cert_pem.display(),
            key_pem.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let child = spawn(
        &cfg,
        &[
            ("BASTION_TEST_METRICS_TOKEN", "scrape-secret"),
            ("BASTION_TEST_ADMIN_TOKEN", "operator-secret-0123456789"),
        ],
        Stdio::null(),
    );
    let c = reqwest::Client::new();
    assert!(
        answering(&c, &format!("http://127.0.0.1:{port}/mcp")).await,
        "bastion did not start"
    );
    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_text.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{admin}");
    let get = |path: &str, token: &str, host: Option<&str>| {
        let mut b = tls.get(format!("{base}{path}")).bearer_auth(token);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.send()
    };
    let metrics = get("/metrics", "scrape-secret", None)
        .await
        .unwrap()
        .status();
    let tools = get("/admin/tools", "operator-secret-0123456789", None)
        .await
        .unwrap()
        .status();
    // A page on another name (DNS rebinding) gets nothing, on every route.
    let rebound_metrics = get("/metrics", "scrape-secret", Some("evil.example"))
        .await
        .unwrap()
        .status();
    let rebound_tools = get(
        "/admin/tools",
        "operator-secret-0123456789",
        Some(&format!("evil.example:{admin}")),
    )
    .await
    .unwrap()
    .status();
    // Plain HTTP gets no answer from the TLS listener.
    let plain = c
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .bearer_auth("scrape-secret")
        .send()
        .await;
    stop(child);
    assert_eq!(metrics, 200);
    assert_eq!(tools, 200);
    assert_eq!(rebound_metrics, 403);
    assert_eq!(rebound_tools, 403);
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "the TLS admin listener answered plain HTTP"
    );
}

/// An `rsyslogd` (Debian `rsyslog`, `rsyslog-gnutls`) receiving on a free
/// loopback port, plain TCP or TLS, writing each message's text to a file.
struct Rsyslog {
    child: Child,
    out: std::path::PathBuf,
    port: u16,
}

impl Rsyslog {
    fn start(dir: &Path, name: &str, tls: Option<(&Path, &Path, &Path)>) -> Rsyslog {
        let port = free_port();
        let work = dir.join(name);
        std::fs::create_dir_all(&work).unwrap();
        let out = work.join("received.log");
        let (global, module) = match tls {
            Some((ca, cert, key)) => (
                format!(
                    r#"global(workDirectory="{w}" maxMessageSize="256k" DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")"#,
                    w = work.display(),
                    ca = ca.display(),
                    cert = cert.display(),
                    key = key.display()
                ),
                r#"module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")"#.to_owned(),
            ),
            None => (
                format!(r#"global(workDirectory="{}" maxMessageSize="256k")"#, work.display()),
                r#"module(load="imtcp")"#.to_owned(),
            ),
        };
        let conf = work.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "{global}\n{module}\ninput(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"r\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%msgid% %msg%\\n\")\n\
                 ruleset(name=\"r\") {{ action(type=\"omfile\" file=\"{}\" template=\"raw\") }}\n",
                out.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(work.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd: the test command installs the Debian rsyslog packages");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Rsyslog { child, out, port };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("rsyslogd did not listen");
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn rsyslog_receives_every_record_over_tcp_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    // A CA and a collector certificate for 127.0.0.1.
    let (ca_pem, cert_pem, key_pem) = test_pki(dir.path());
    let plain = Rsyslog::start(dir.path(), "plain", None);
    let tls = Rsyslog::start(dir.path(), "tls", Some((&ca_pem, &cert_pem, &key_pem)));

    let port = free_port();
    let cfg = config(dir.path(), port);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "checkpoint_every = 50\n",
        &format!(
            "checkpoint_every = 50\n[[audit.syslog]]\naddress = \"127.0.0.1:{}\"\ntls = false\n[[audit.syslog]]\naddress = \"127.0.0.1:{}\"\nca_file = \"{}\"\n",
            plain.port,
            tls.port,
            ca_pem.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let child = serve(&cfg, port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let c = reqwest::Client::new();
    for id in 0..20 {
        assert!(call(&c, &url, id).await);
    }
    stop(child);

    // Every record of the trail, checkpoints included, reaches both collectors
    // as the message text, byte for byte.
    let log = std::fs::read_to_string(dir.path().join("audit").join("trail.jsonl")).unwrap();
    let records: Vec<&str> = log.lines().collect();
    assert!(records.iter().any(|l| l.contains("\"checkpoint\"")));
    for r in [&plain, &tls] {
        let mut got = String::new();
        for _ in 0..100 {
            got = r.received();
            if records.iter().all(|l| got.contains(l)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for l in &records {
            assert!(
                got.contains(l),
                "port {}: missing {l}\n--- received:\n{got}",
                r.port
            );
        }
        assert!(got.contains("request {"), "MSGID is the event kind: {got}");
        assert!(got.contains("checkpoint {"), "{got}");
        // The exporter persisted where it stands: after the last record.
        let pos = dir
            .path()
            .join("audit")
            .join(format!("trail.jsonl.export-127_0_0_1_{}.pos", r.port));
        assert_eq!(
            std::fs::read_to_string(&pos).unwrap().trim(),
            records.len().to_string()
        );
    }
}

/// What a test OTLP/HTTP receiver decoded.
#[derive(Default)]
struct Received {
    logs: Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>,
    spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>,
    resource: Vec<String>,
}

async fn otlp_receiver() -> (u16, Arc<parking_lot::Mutex<Received>>) {
    use axum::extract::State;
    use prost::Message as _;
    type Shared = Arc<parking_lot::Mutex<Received>>;
    let got: Shared = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route(
            "/v1/logs",
            axum::routing::post(|State(g): State<Shared>, headers: http::HeaderMap, body: axum::body::Bytes| async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                let req = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(body).unwrap();
                let mut g = g.lock();
                for rl in req.resource_logs {
                    for a in rl.resource.unwrap().attributes {
                        g.resource.push(a.key);
                    }
                    for sl in rl.scope_logs {
                        g.logs.extend(sl.log_records);
                    }
                }
                http::StatusCode::OK
            }),
        )
        .route(
            "/v1/traces",
            axum::routing::post(|State(g): State<Shared>, body: axum::body::Bytes| async move {
                let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body).unwrap();
                let mut g = g.lock();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        g.spans.extend(ss.spans);
                    }
                }
                http::StatusCode::OK
            }),
        )
        .with_state(got.clone());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_receiver_decodes_every_record_as_a_log_and_requests_as_spans() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let dir = tempfile::tempdir().unwrap();
    let (otlp_port, got) = otlp_receiver().await;
    let port = free_port();
    let cfg = config(dir.path(), port);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "checkpoint_every = 50\n",
        &format!(
            "checkpoint_every = 50\n[audit.otlp]\nendpoint = \"http://127.0.0.1:{otlp_port}\"\n"
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let child = serve(&cfg, port).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let c = reqwest::Client::new();
    for id in 0..5 {
        assert!(call(&c, &url, id).await);
    }
    stop(child);
    let log = std::fs::read_to_string(dir.path().join("audit").join("trail.jsonl")).unwrap();
    let records: Vec<&str> = log.lines().collect();
    for _ in 0..100 {
        if got.lock().logs.len() >= records.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let g = got.lock();
    let bodies: Vec<String> = g
        .logs
        .iter()
        .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Any::StringValue(s)) => s.clone(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(bodies, records, "every record, in order, byte for byte");
    assert!(g.resource.contains(&"service.name".to_owned()));
    let first = &g.logs[0];
    assert!(first.time_unix_nano > 1_700_000_000_000_000_000);
    assert!(
        first
            .attributes
            .iter()
            .any(|a| a.key == "bastion.audit.seq")
    );
    let calls: Vec<_> = g.spans.iter().filter(|s| s.name == "tools/call").collect();
    assert_eq!(calls.len(), 5, "one server span per tools/call");
    for s in calls {
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id.len(), 8);
        assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
        assert!(
            s.attributes
                .iter()
                .any(|a| a.key == "http.response.status_code"
                    && matches!(
                        a.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(Any::IntValue(200))
                    ))
        );
    }
}

#[tokio::test]
async fn stdout_export_copies_the_trail_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "checkpoint_every = 50\n",
        "checkpoint_every = 50\nstdout = true\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let child = spawn(&cfg, &[], Stdio::piped());
    let url = format!("http://127.0.0.1:{port}/mcp");
    let up = answering(&reqwest::Client::new(), &url).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert!(up, "bastion did not start");
    let log = std::fs::read_to_string(dir.path().join("audit").join("trail.jsonl")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), log);
}

#[tokio::test]
async fn verify_takes_the_shell_glob_of_the_trail_and_pins_the_configured_key() {
    // What the README prints: `bastion audit verify -c bastion.toml audit/trail.jsonl*`,
    // a glob that also matches the signing key the gateway keeps beside the log.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port);
    let child = serve(&cfg, port).await;
    assert!(
        call(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{port}/mcp"),
            1
        )
        .await
    );
    stop(child);
    let mut globbed: Vec<String> = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("trail.jsonl")
        })
        .map(|p| p.display().to_string())
        .collect();
    globbed.sort();
    assert!(globbed.iter().any(|p| p.ends_with(".key")), "{globbed:?}");
    let out = Command::new(BIN)
        .args(["audit", "verify", "-c", cfg.to_str().unwrap()])
        .args(&globbed)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.ends_with("ok\n"), "{stdout}");
    assert!(
        stderr.contains("skipped") && stderr.contains(".key"),
        "{stderr}"
    );
    assert!(!stdout.contains("not pinned"), "-c pins the key: {stdout}");
}
