//! Authorization end to end: Cedar policies from files, tokens from the real
//! identity provider fixture (groups in the token), the demo upstream behind
//! the gateway.
//!
//! Needs the test peers: `bash tests/peers/install.sh` (the test command runs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use bastion::audit::{EventKind, Outcome};
use common::idp::Idp;
use common::*;
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("members-list-demo")
permit (
  principal,
  action in [Bastion::Action::"tools/list", Bastion::Action::"prompts/list",
             Bastion::Action::"resources/list", Bastion::Action::"resources/templates/list"],
  resource == Bastion::Upstream::"demo"
)
when { principal.groups.contains("analysts") || principal.groups.contains("engineers") };

@id("analysts-read-only")
permit (
  principal,
  action in [Bastion::Action::"tools/call", Bastion::Action::"resources/read"],
  resource in Bastion::Upstream::"demo"
)
when { principal.groups.contains("analysts") && resource.labels.contains("read-only") };

@id("engineers-everything")
permit (principal, action, resource in Bastion::Upstream::"demo")
when { principal.groups.contains("engineers") };

@id("engineers-no-elicitation")
forbid (principal, action == Bastion::Action::"elicitation/create", resource)
when { principal.groups.contains("engineers") };

@id("echo-reports-only")
forbid (principal, action == Bastion::Action::"tools/call", resource == Bastion::Tool::"demo/echo")
when {
  context has arguments &&
  !(context.arguments.hasTag("message") && context.arguments.getTag("message") like "/srv/reports/*")
};
"#;

fn config(issuer: &str, policies: &Path) -> String {
    format!(
        r#"[policy]
files = ["{}/*.cedar"]
reload_interval_secs = 1
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:0/mcp"
[auth]
issuer = "{issuer}"
required_scopes = ["mcp:tools"]
groups_claim = "groups"
[[upstream]]
name = "demo"
transport = "stdio"
command = "{BIN}"
args = ["demo-upstream"]
timeout_secs = 10
[upstream.tools.echo]
labels = ["read-only"]
[upstream.tools.add]
labels = ["read-only"]
risk = 1
[upstream.tools.ask_user]
required_scopes = ["mcp:admin"]
[upstream.resources."demo://readme"]
labels = ["read-only"]
"#,
        policies.display()
    )
}

/// A gateway on a fresh port with `POLICY`, and the provider that issues
/// tokens for it.
async fn setup(dir: &Path) -> (Gw, Idp) {
    std::fs::write(dir.join("main.cedar"), POLICY).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    let idp = Idp::start(&[&url], &[]);
    let gw = start_on(l, &config(&idp.issuer, dir)).await;
    (gw, idp)
}

fn names(msgs: &[Value], key: &str, field: &str) -> Vec<String> {
    let mut v: Vec<String> = msgs[0]["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("{msgs:?}"))
        .iter()
        .map(|t| t[field].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn tools(gw: &Gw, token: &str) -> Vec<String> {
    let (s, _, m) = modern_as(&gw.url, Some(token), 1, "tools/list", json!({})).await;
    assert_eq!(s, 200, "{m:?}");
    names(&m, "tools", "name")
}

async fn call(gw: &Gw, token: &str, tool: &str, args: Value) -> (u16, Value) {
    let (s, _, m) = modern_as(
        &gw.url,
        Some(token),
        7,
        "tools/call",
        json!({"name": tool, "arguments": args}),
    )
    .await;
    (s, m.last().cloned().unwrap_or(Value::Null))
}

#[tokio::test]
async fn users_see_what_they_may_use_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, idp) = setup(dir.path()).await;
    let analyst = idp.token("analyst", "mcp:tools", &gw.url).await;
    let engineer = idp.token("engineer", "mcp:tools", &gw.url).await;
    let m2m = idp.token("m2m", "mcp:tools", &gw.url).await;

    // Different groups, different tool lists.
    assert_eq!(tools(&gw, &analyst).await, ["demo__add", "demo__echo"]);
    assert_eq!(
        tools(&gw, &engineer).await,
        [
            "demo__add",
            "demo__ask_model",
            "demo__ask_user",
            "demo__count_slowly",
            "demo__echo",
            "demo__fail"
        ]
    );
    // No group: no permit, an empty list (deny by default).
    assert!(tools(&gw, &m2m).await.is_empty());

    // Prompts, resources and templates are filtered the same way.
    let (_, _, p) = modern_as(&gw.url, Some(&analyst), 2, "prompts/list", json!({})).await;
    assert!(names(&p, "prompts", "name").is_empty(), "{p:?}");
    let (_, _, p) = modern_as(&gw.url, Some(&engineer), 2, "prompts/list", json!({})).await;
    assert_eq!(names(&p, "prompts", "name"), ["demo__greet"]);
    let (_, _, r) = modern_as(&gw.url, Some(&analyst), 3, "resources/list", json!({})).await;
    assert_eq!(names(&r, "resources", "uri"), ["demo://readme"]);
    let (_, _, r) = modern_as(
        &gw.url,
        Some(&analyst),
        3,
        "resources/templates/list",
        json!({}),
    )
    .await;
    assert!(names(&r, "resourceTemplates", "uriTemplate").is_empty());
    let (_, _, r) = modern_as(
        &gw.url,
        Some(&engineer),
        3,
        "resources/templates/list",
        json!({}),
    )
    .await;
    assert_eq!(
        names(&r, "resourceTemplates", "uriTemplate"),
        ["demo://notes/{id}"]
    );

    // A tool the analyst may not use answers exactly like one that does not
    // exist (status, code, message, data), even one that needs a scope it lacks.
    let (s_forbidden, forbidden) = call(&gw, &analyst, "demo__fail", json!({})).await;
    let (s_unknown, unknown) = call(&gw, &analyst, "demo__no_such_tool", json!({})).await;
    let (s_scoped, scoped) = call(&gw, &analyst, "demo__ask_user", json!({})).await;
    assert_eq!(forbidden["error"]["code"], -32602, "{forbidden}");
    let norm = |v: &Value, n: &str| v["error"].to_string().replace(n, "NAME");
    assert_eq!(s_forbidden, s_unknown);
    assert_eq!(s_scoped, s_unknown);
    assert_eq!(
        norm(&forbidden, "demo__fail"),
        norm(&unknown, "demo__no_such_tool")
    );
    assert_eq!(
        norm(&scoped, "demo__ask_user"),
        norm(&unknown, "demo__no_such_tool")
    );
    // The engineer may use it.
    let (s, ok) = call(&gw, &engineer, "demo__fail", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(ok["result"]["isError"], true, "{ok}");
    // Reading a resource: the same rule, the same "not found" for hidden ones.
    let (_, _, r) = modern_as(
        &gw.url,
        Some(&analyst),
        4,
        "resources/read",
        json!({"uri": "demo://notes/1"}),
    )
    .await;
    let (_, _, r2) = modern_as(
        &gw.url,
        Some(&analyst),
        4,
        "resources/read",
        json!({"uri": "demo://nothing/here"}),
    )
    .await;
    assert_eq!(r[0]["error"]["message"], "Resource not found", "{r:?}");
    assert_eq!(r[0]["error"]["code"], r2[0]["error"]["code"]);

    // An argument condition: one path allowed, another refused.
    for who in [&analyst, &engineer] {
        let (_, ok) = call(
            &gw,
            who,
            "demo__echo",
            json!({"message": "/srv/reports/q3.csv"}),
        )
        .await;
        assert_eq!(
            ok["result"]["content"][0]["text"], "Echo: /srv/reports/q3.csv",
            "{ok}"
        );
        let (_, no) = call(&gw, who, "demo__echo", json!({"message": "/etc/passwd"})).await;
        assert_eq!(no["error"]["code"], -32011, "{no}");
        assert!(
            no["error"]["message"]
                .as_str()
                .unwrap()
                .contains("refused by policy"),
            "{no}"
        );
    }

    // A visible tool that needs a scope the token lacks: 403 and the step-up
    // challenge naming every scope the call needs.
    let (s, h, m) = modern_as(
        &gw.url,
        Some(&engineer),
        5,
        "tools/call",
        json!({"name": "demo__ask_user", "arguments": {"question": "?"}}),
    )
    .await;
    assert_eq!(s, 403, "{m:?}");
    let ch = h["www-authenticate"].to_str().unwrap();
    assert!(ch.contains("error=\"insufficient_scope\""), "{ch}");
    assert!(ch.contains("scope=\"mcp:tools mcp:admin\""), "{ch}");
    assert!(ch.contains("resource_metadata="), "{ch}");
    // Stepped up: served.
    let admin = idp.token("engineer", "mcp:tools mcp:admin", &gw.url).await;
    let (s, _, m) = modern_as(
        &gw.url,
        Some(&admin),
        5,
        "tools/call",
        json!({"name": "demo__ask_user", "arguments": {"question": "?"}}),
    )
    .await;
    assert_eq!(s, 200, "{m:?}");
    assert!(m.last().unwrap().get("result").is_some(), "{m:?}");

    // The 2025-11-25 lane (sessions) follows the same rules.
    let (s_an, _) = Legacy::connect_as(&gw.url, json!({}), &analyst).await;
    let listed = s_an.call(10, "tools/list", json!({})).await;
    assert_eq!(
        names(&[listed], "tools", "name"),
        ["demo__add", "demo__echo"]
    );
    let hidden = s_an
        .call(
            11,
            "tools/call",
            json!({"name": "demo__fail", "arguments": {}}),
        )
        .await;
    let unknown2 = s_an
        .call(
            12,
            "tools/call",
            json!({"name": "demo__no_such_tool", "arguments": {}}),
        )
        .await;
    assert_eq!(
        norm(&hidden, "demo__fail"),
        norm(&unknown2, "demo__no_such_tool")
    );
    let (s_en, _) = Legacy::connect_as(&gw.url, json!({"elicitation": {}}), &engineer).await;
    let r = s_en
        .post(&json!({"jsonrpc":"2.0","id":13,"method":"tools/call",
            "params":{"name":"demo__ask_user","arguments":{"question":"?"}}}))
        .await;
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    // Stepped up, on a session whose client handles elicitation: the tool's
    // elicitation request is refused by policy before it reaches the client,
    // and the upstream gets the refusal.
    let (s_admin, _) = Legacy::connect_as(&gw.url, json!({"elicitation": {}}), &admin).await;
    let done = s_admin
        .call(
            14,
            "tools/call",
            json!({"name": "demo__ask_user", "arguments": {"question": "?"}}),
        )
        .await;
    assert!(
        done["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("refused by the gateway's policy"),
        "{done}"
    );

    // Every decision is in the trail: principal, action, resource, decision,
    // (the refused elicitation too),
    // the deciding policies, and how long it took.
    let ev = gw.events();
    let authz: Vec<_> = ev.iter().filter(|e| e.kind == EventKind::Authz).collect();
    let find = |sub: &str, res: &str, decision: &str| {
        authz
            .iter()
            .find(|e| {
                e.principal.as_deref() == Some(sub)
                    && e.resource.as_deref() == Some(res)
                    && e.decision == Some(decision)
                    && e.action.as_deref() == Some("tools/call")
            })
            .unwrap_or_else(|| panic!("no {decision} of {res} for {sub}"))
    };
    let denied = find("analyst", r#"Bastion::Tool::"demo/fail""#, "deny");
    assert_eq!(denied.outcome, Outcome::Refused);
    assert!(denied.duration_us.is_some());
    assert_eq!(denied.groups.as_deref(), Some(&["analysts".to_owned()][..]));
    let allowed = find("engineer", r#"Bastion::Tool::"demo/echo""#, "allow");
    assert_eq!(
        allowed.policies.as_deref(),
        Some(&["engineers-everything".to_owned()][..])
    );
    let forbid = authz
        .iter()
        .find(|e| {
            e.decision == Some("deny")
                && e.policies.as_deref() == Some(&["echo-reports-only".to_owned()][..])
        })
        .expect("the forbid that refused /etc/passwd");
    assert_eq!(forbid.reason.as_deref(), Some("forbidden by policy"));
    assert!(
        authz
            .iter()
            .any(|e| e.action.as_deref() == Some("elicitation/create")
                && e.decision == Some("deny")
                && e.policies.as_deref() == Some(&["engineers-no-elicitation".to_owned()][..]))
    );
    // A filtered list is one record naming what was withheld.
    assert!(authz.iter().any(|e| {
        e.principal.as_deref() == Some("analyst")
            && e.decision == Some("filter")
            && e.hidden
                .as_ref()
                .is_some_and(|h| h.contains(&"fail".to_owned()))
    }));
    // The step-up refusal is an auth event with the scopes needed.
    assert!(ev.iter().any(|e| e.kind == EventKind::Auth
        && e.status == Some(403)
        && e.scopes.as_deref() == Some("mcp:tools mcp:admin")));

    // The access review sees it: the analyst was granted add and echo (and
    // the readme), used echo, and was denied.
    let audit = dir.path().join("audit.jsonl");
    let mut lines = String::new();
    for e in &ev {
        lines.push_str(&serde_json::to_string(e).unwrap());
        lines.push('\n');
    }
    std::fs::write(&audit, lines).unwrap();
    let cfg = bastion::config::Config::parse(&config(&idp.issuer, dir.path()), "t.toml").unwrap();
    let (sources, _) = bastion::pipeline::authz::read_sources(&cfg.policy.files).unwrap();
    let engine = bastion_policy::Engine::new(&sources, false).unwrap();
    let review =
        bastion::cli::policy::access_review(&engine, Some(&cfg), &[audit.as_path()], 0).unwrap();
    let a = review
        .principals
        .iter()
        .find(|p| p.principal.sub == "analyst")
        .unwrap();
    assert_eq!(
        a.granted,
        [
            r#"Bastion::Tool::"demo/add""#,
            r#"Bastion::Tool::"demo/echo""#,
            r#"Bastion::Resource::"demo/demo://readme""#
        ],
        "{a:?}"
    );
    assert!(a.used.contains_key(r#"Bastion::Tool::"demo/echo""#));
    assert!(
        a.unused
            .contains(&r#"Bastion::Tool::"demo/add""#.to_owned())
    );
    assert!(a.denied > 0);
    gw.stop().await;
}

/// Waits until the trail has a `policy` event with `outcome` after `from`.
async fn policy_event(gw: &Gw, from: usize, outcome: Outcome) {
    for _ in 0..100 {
        if gw.events()[from..]
            .iter()
            .any(|e| e.kind == EventKind::Policy && e.outcome == outcome)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {outcome:?} policy event");
}

#[tokio::test]
async fn a_broken_policy_file_keeps_the_old_policy_and_a_good_one_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, idp) = setup(dir.path()).await;
    let analyst = idp.token("analyst", "mcp:tools", &gw.url).await;
    assert_eq!(tools(&gw, &analyst).await, ["demo__add", "demo__echo"]);

    // A file that does not parse, then one that names an attribute the schema
    // does not have: each refused, the old set still serves.
    for broken in [
        "permit (principal, action, resource",
        r#"permit (principal, action, resource) when { principal.department == "x" };"#,
    ] {
        let n = gw.events().len();
        std::fs::write(dir.path().join("extra.cedar"), broken).unwrap();
        policy_event(&gw, n, Outcome::Error).await;
        assert_eq!(tools(&gw, &analyst).await, ["demo__add", "demo__echo"]);
        let (_, ok) = call(&gw, &analyst, "demo__add", json!({"a": 1, "b": 2})).await;
        assert!(ok.get("result").is_some(), "{ok}");
    }

    // A valid change takes effect without a restart.
    let n = gw.events().len();
    std::fs::write(
        dir.path().join("extra.cedar"),
        r#"@id("no-add-for-analysts")
forbid (principal, action == Bastion::Action::"tools/call", resource == Bastion::Tool::"demo/add")
when { principal.groups.contains("analysts") };"#,
    )
    .unwrap();
    policy_event(&gw, n, Outcome::Ok).await;
    assert_eq!(tools(&gw, &analyst).await, ["demo__echo"]);
    let (_, no) = call(&gw, &analyst, "demo__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(no["error"]["code"], -32602, "{no}");
    // Every file gone (the glob matches nothing): refused, the set in force stays.
    let n = gw.events().len();
    std::fs::remove_file(dir.path().join("main.cedar")).unwrap();
    std::fs::remove_file(dir.path().join("extra.cedar")).unwrap();
    policy_event(&gw, n, Outcome::Error).await;
    assert_eq!(tools(&gw, &analyst).await, ["demo__echo"]);
    gw.stop().await;
}
