//! The command-line contract: `check-config`, `import`, `demo`, `--help`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "test code that runs the CLI binary as a user would"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bastion");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_commands() {
    let (ok, out, _) = run(&["--help"]);
    assert!(ok);
    for cmd in ["serve", "check-config", "import", "demo"] {
        assert!(out.contains(cmd), "{cmd} missing from --help: {out}");
    }
}

#[test]
fn check_config_accepts_good_and_names_the_problem_in_bad() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        r#"[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080/mcp"
[auth]
mode = "dangerous_none"
[[upstream]]
name = "fixture"
transport = "http"
url = "http://127.0.0.1:3000/mcp"
prefix = ""
"#,
    )
    .unwrap();
    let (ok, out, _) = run(&["check-config", good.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("ok (1 upstream(s))"), "{out}");
    assert!(
        out.contains("dangerous_none"),
        "dangerous settings are reported: {out}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("prefix = \"\"", "prefx = \"\""),
    )
    .unwrap();
    let (ok, _, err) = run(&["check-config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.toml") && err.contains("prefx"), "{err}");
}

#[test]
fn import_converts_mcp_servers_without_copying_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mcp.json");
    std::fs::write(
        &src,
        r#"{"mcpServers":{"files":{"command":"npx","args":["-y","@modelcontextprotocol/server-filesystem","/tmp"],"env":{"API_KEY":"sk-canary-123"}}}}"#,
    )
    .unwrap();
    let (ok, out, err) = run(&["import", src.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("[[upstream]]") && out.contains("name = \"files\""),
        "{out}"
    );
    assert!(!out.contains("sk-canary-123") && !err.contains("sk-canary-123"));
    assert!(err.contains("BASTION_FILES_API_KEY"), "{err}");
}

#[test]
fn demo_serves_its_upstream_end_to_end() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("BASTION_LOG", "warn")
        .env("TMPDIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The banner tells the newcomer how to connect.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("Press Ctrl-C") {
            break;
        }
    }
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}/mcp")),
        "{banner}"
    );
    assert!(
        banner.contains("mcpServers") && banner.contains("curl"),
        "{banner}"
    );
    let token = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("export TOKEN="))
        .unwrap()
        .to_owned();
    // The banner's dev-token command works as printed (its configuration is
    // where it says, the executable is this one).
    let mint = banner
        .lines()
        .find(|l| l.contains(" dev-token -c "))
        .unwrap_or_else(|| panic!("{banner}"))
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let argv: Vec<&str> = mint.split_whitespace().collect();
    let minted = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    let more = String::from_utf8_lossy(&minted.stdout).trim().to_owned();
    assert!(
        minted.status.success() && more.split('.').count() == 3,
        "{mint}: {}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let c = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/mcp");
        // Without the token: the challenge that points at the resource metadata.
        let denied = c
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), 401);
        let challenge = denied.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("resource_metadata="), "{challenge}");
        let r = c
            .post(&url)
            .bearer_auth(&more)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "demo__echo")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo__echo","arguments":{"message":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(result.contains("Echo: hello"), "{result}");
}

#[test]
fn serve_refuses_to_start_when_unprefixed_upstreams_collide() {
    // Upstream "a" (prefix "") exposes "p__x"; upstream "b" (prefix "p__") exposes "x".
    let py = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/env_server.py");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("collide.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let audit = dir.path().join("audit.jsonl");
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
[[upstream]]
name = "a"
transport = "stdio"
command = "{py}"
args = ["{server}"]
prefix = ""
env = {{ TOOLS = "p__x,only_a" }}
[[upstream]]
name = "b"
transport = "stdio"
command = "{py}"
args = ["{server}"]
prefix = "p__"
env = {{ TOOLS = "x" }}
"#,
            audit = audit.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("BASTION_LOG", "warn")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("colliding") && err.contains("p__x"), "{err}");
    // Off a terminal the log is plain text (warnings for the dangerous
    // settings were written), and the error is one line without a backtrace.
    assert!(err.contains("WARN") && !err.contains('\u{1b}'), "{err:?}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains("colliding"),
        "{err}"
    );
    assert!(!err.contains("backtrace"), "{err}");
}

#[test]
fn check_config_refuses_what_serve_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, policy_files: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                r#"[policy]
files = ["{policy_files}"]
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080/mcp"
[auth]
mode = "dangerous_none"
[[upstream]]
name = "fixture"
transport = "http"
url = "http://127.0.0.1:3000/mcp"
"#
            ),
        )
        .unwrap();
        p.display().to_string()
    };
    // A glob that matches nothing.
    let none = write(
        "none.toml",
        &format!("{}/missing/*.cedar", dir.path().display()),
    );
    let (ok, out, err) = run(&["check-config", &none]);
    assert!(!ok, "{out}");
    assert!(err.contains("matches no policy file"), "{err}");
    // A policy naming an action the schema does not have (only `policy
    // check` used to find it; `serve` refuses it).
    std::fs::write(
        dir.path().join("p.cedar"),
        r#"permit (principal, action == Bastion::Action::"tools/cal", resource);"#,
    )
    .unwrap();
    let typo = write("typo.toml", &format!("{}/p.cedar", dir.path().display()));
    let (ok, out, err) = run(&["check-config", &typo]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("policy:") && err.contains("would refuse to start"),
        "{err}"
    );
    // The same file with a real action passes.
    std::fs::write(
        dir.path().join("p.cedar"),
        r#"permit (principal, action == Bastion::Action::"tools/call", resource);"#,
    )
    .unwrap();
    let (ok, out, err) = run(&["check-config", &typo]);
    assert!(ok && out.contains(": ok"), "{out}{err}");
}

#[test]
fn operator_commands_do_not_need_the_upstreams_secrets() {
    // An imported configuration names secrets only the gateway's host has;
    // `policy check`, `dev-token`, `audit` and `tools` never reach an
    // upstream and work without them; `check-config` and `serve` need them.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imported.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080/mcp"
[auth]
mode = "dangerous_dev_issuer"
dev_key_file = "{}"
[[upstream]]
name = "github"
transport = "stdio"
command = "npx"
args = ["-y", "@modelcontextprotocol/server-github"]
env = {{ GITHUB_PERSONAL_ACCESS_TOKEN = "env:BASTION_TEST_NEVER_SET_GITHUB" }}
[[upstream]]
name = "remote"
transport = "http"
url = "https://mcp.example.com/mcp"
auth = {{ kind = "static", token = "env:BASTION_TEST_NEVER_SET_REMOTE" }}
"#,
            dir.path().join("dev.key").display()
        ),
    )
    .unwrap();
    let f = cfg.to_str().unwrap();
    let (ok, out, err) = run(&["check-config", f]);
    assert!(
        !ok && err.contains("BASTION_TEST_NEVER_SET_GITHUB"),
        "{out}{err}"
    );
    let (ok, out, err) = run(&["check-config", "--skip-unresolved-secrets", f]);
    assert!(ok && out.contains(": ok (2 upstream(s))"), "{out}{err}");
    let (ok, out, err) = run(&["policy", "check", "-c", f]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&["dev-token", "-c", f, "--sub", "ops"]);
    assert!(ok && out.trim().split('.').count() == 3, "{out}{err}");
}

#[test]
fn the_configuration_is_named_one_way_everywhere() {
    // Interface contract: `bastion -c FILE <subcommand>`, `bastion <subcommand>
    // -c FILE` and BASTION_CONFIG all work, on every subcommand that reads one.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dev.key");
    let cfg = dir.path().join("dev.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080/mcp"
[auth]
mode = "dangerous_dev_issuer"
dev_key_file = "{}"
[audit]
path = "{}"
[[upstream]]
name = "fixture"
transport = "http"
url = "http://127.0.0.1:3000/mcp"
"#,
            key.display(),
            dir.path().join("audit.jsonl").display()
        ),
    )
    .unwrap();
    let f = cfg.to_str().unwrap();
    let with_env = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("BASTION_CONFIG", f)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for args in [
        vec!["-c", f, "check-config"],
        vec!["check-config", "-c", f],
        vec!["check-config", "--config", f],
        vec!["check-config", f],
        vec!["--config", f, "policy", "check"],
        vec!["policy", "check", "-c", f],
    ] {
        let (ok, out, err) = run(&args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    for args in [
        vec!["-c", f, "dev-token", "--sub", "alice"],
        vec!["dev-token", "--sub", "alice", "-c", f],
    ] {
        let (ok, out, err) = run(&args);
        assert!(
            ok && out.trim().split('.').count() == 3,
            "{args:?}: {out}{err}"
        );
    }
    let (ok, out) = with_env(&["check-config"]);
    assert!(
        ok && out.contains("ok (1 upstream(s))"),
        "BASTION_CONFIG: {out}"
    );
    let (ok, out) = with_env(&["dev-token", "--sub", "alice"]);
    assert!(
        ok && out.trim().split('.').count() == 3,
        "BASTION_CONFIG: {out}"
    );
    // A command that needs one says how to give it.
    let (ok, _, err) = run(&["dev-token", "--sub", "alice"]);
    assert!(!ok && err.contains("-c FILE"), "{err}");
}

#[test]
fn errors_are_one_line_and_verbose_adds_the_backtrace() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let plain = run(&["check-config", "/nonexistent/bastion.toml"]);
    assert_eq!(plain.lines().count(), 1, "{plain}");
    assert!(
        plain.starts_with("error: /nonexistent/bastion.toml"),
        "{plain}"
    );
    let verbose = run(&["-v", "check-config", "/nonexistent/bastion.toml"]);
    assert!(verbose.contains("backtrace"), "{verbose}");
    // -v is global: after the subcommand too.
    let after = run(&["check-config", "/nonexistent/bastion.toml", "-v"]);
    assert!(after.contains("backtrace"), "{after}");
}

/// A configuration whose policies are the shipped examples, with a `files`
/// upstream and operator labels.
fn policy_config(dir: &std::path::Path) -> std::path::PathBuf {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policies");
    let cfg = dir.join("bastion.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[policy]
files = ["{examples}/*.cedar"]
[server]
listen = "127.0.0.1:8080"
[auth]
mode = "dangerous_none"
[audit]
path = "{audit}"
[[upstream]]
name = "files"
transport = "stdio"
command = "true"
[upstream.tools.list_dir]
labels = ["read-only"]
"#,
            audit = dir.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn policy_check_validates_and_names_the_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = policy_config(dir.path());
    let (ok, out, err) = run(&["policy", "check", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("validate against the schema"), "{out}");
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        r#"permit (principal, action, resource) when { resource.owner == "x" };"#,
    )
    .unwrap();
    let (ok, _, err) = run(&["policy", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("do not validate") && err.contains("owner"),
        "{err}"
    );
}

#[test]
fn policy_explain_prints_the_decision_and_its_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = policy_config(dir.path());
    let explain = |args: &str| {
        let out = Command::new(BIN)
            .args([
                "policy",
                "explain",
                "--config",
                cfg.to_str().unwrap(),
                "--principal",
                r#"{"sub": "ann", "groups": ["analysts"]}"#,
                "--action",
                "tools/call",
                "--resource",
                r#"Bastion::Tool::"files/read_file""#,
                "--context",
                args,
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = explain(r#"{"arguments": {"path": "/srv/reports/q3.csv"}}"#);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("decision: allow"), "{out}");
    assert!(out.contains("reports-reader"), "{out}");
    let (code, out) = explain(r#"{"arguments": {"path": "/etc/passwd"}}"#);
    assert_eq!(code, Some(3), "deny exits 3: {out}");
    assert!(out.starts_with("decision: deny"), "{out}");
    assert!(out.contains("forbidden by reports-only"), "{out}");
    // JSON for scripts, and the operator's labels come from the configuration.
    let (ok, out, err) = run(&[
        "policy",
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        "--principal",
        r#"{"sub": "ann", "groups": ["analysts"]}"#,
        "--action",
        "tools/call",
        "--resource",
        "tool:files/list_dir",
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["steps"][0]["action"], "tools/list");
    assert_eq!(v["steps"][1]["policies"][0], "analysts-read-only-tools");
    // Bad input is a clear error.
    let (ok, _, err) = run(&[
        "policy",
        "explain",
        "--config",
        cfg.to_str().unwrap(),
        "--principal",
        "ann",
        "--action",
        "tools/call",
        "--resource",
        "files/read_file",
    ]);
    assert!(!ok);
    assert!(err.contains("expected tool:UPSTREAM/NAME"), "{err}");
}

#[test]
fn access_review_reports_grants_against_use() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = policy_config(dir.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ev = |ts: u64, decision: &str, action: &str, resource: &str, extra: &str| {
        format!(
            r#"{{"ts_ms":{ts},"kind":"authz","outcome":"ok","principal":"ann","issuer":"https://idp","groups":["analysts"],"roles":[],"scopes":"mcp:tools","action":"{action}","resource":{resource},"decision":"{decision}"{extra}}}"#,
            resource = serde_json::Value::from(resource)
        )
    };
    let lines = [
        // What exists (a filtered list page) and what was used.
        ev(
            now - 1000,
            "filter",
            "tools/call",
            r#"Bastion::Upstream::"files""#,
            r#","items":["list_dir","read_file","delete_file"],"hidden":["delete_file"]"#,
        ),
        ev(
            now - 900,
            "allow",
            "tools/call",
            r#"Bastion::Tool::"files/list_dir""#,
            "",
        ),
        ev(
            now - 800,
            "deny",
            "tools/call",
            r#"Bastion::Tool::"files/delete_file""#,
            "",
        ),
        // Outside the period: not counted.
        ev(
            now - 40 * 86_400_000,
            "allow",
            "tools/call",
            r#"Bastion::Tool::"files/read_file""#,
            "",
        ),
    ];
    std::fs::write(dir.path().join("audit.jsonl"), lines.join("\n") + "\n").unwrap();
    let (ok, out, err) = run(&[
        "access-review",
        "--config",
        cfg.to_str().unwrap(),
        "--since",
        "30d",
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ann = &v["principals"][0];
    assert_eq!(ann["principal"]["sub"], "ann");
    assert_eq!(
        ann["granted"],
        serde_json::json!([
            r#"Bastion::Tool::"files/list_dir""#,
            r#"Bastion::Tool::"files/read_file""#
        ])
    );
    assert_eq!(
        ann["used"][r#"Bastion::Tool::"files/list_dir""#]["count"],
        1
    );
    assert_eq!(
        ann["unused"],
        serde_json::json!([r#"Bastion::Tool::"files/read_file""#])
    );
    assert_eq!(ann["denied"], 1);
    let (ok, out, _) = run(&["access-review", "--config", cfg.to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("PRINCIPAL") && out.contains("ann"), "{out}");
    assert!(
        out.contains(r#"granted, unused: Bastion::Tool::"files/read_file""#),
        "{out}"
    );
}

#[test]
fn sighup_reloads_the_policies_and_a_broken_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let allow = r#"permit (principal, action, resource in Bastion::Upstream::"demo");"#;
    std::fs::write(policies.join("main.cedar"), allow).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("bastion.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[policy]
files = ["policies/*.cedar"]
reload_interval_secs = 3600
[server]
listen = "127.0.0.1:{port}"
[auth]
mode = "dangerous_none"
[audit]
path = "{audit}"
[[upstream]]
name = "demo"
transport = "stdio"
command = "{BIN}"
args = ["demo-upstream"]
"#,
            audit = audit.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .env("BASTION_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |needle: &str| {
        for _ in 0..100 {
            if std::fs::read_to_string(&audit).is_ok_and(|t| t.contains(needle)) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    // The inventory is taken after SIGHUP is taken over (its default action
    // would end the process).
    assert!(
        wait_for("policy set loaded at start") && wait_for("baseline inventory recorded"),
        "the gateway did not start"
    );
    // Relative globs are resolved against the configuration file's directory.
    std::fs::write(policies.join("extra.cedar"), "forbid (principal, action").unwrap();
    hup();
    let refused = wait_for("new policy set refused (SIGHUP)");
    std::fs::write(
        policies.join("extra.cedar"),
        r#"forbid (principal, action == Bastion::Action::"tools/call", resource == Bastion::Tool::"demo/fail");"#,
    )
    .unwrap();
    hup();
    let replaced = wait_for("policy set replaced (SIGHUP): 2 policies");
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(refused, "{}", std::fs::read_to_string(&audit).unwrap());
    assert!(replaced, "{}", std::fs::read_to_string(&audit).unwrap());
    assert!(alive, "SIGHUP must not stop the gateway");
}
