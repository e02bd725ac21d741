//! Decisions: deny by default, forbid wins, lists and calls agree, the shipped
//! examples validate and mean what they say.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use bastion_policy::*;
use proptest::prelude::*;
use serde_json::json;

fn src(text: &str) -> Vec<Source> {
    vec![Source {
        name: "t.cedar".into(),
        text: text.into(),
    }]
}

fn examples() -> Vec<Source> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policies");
    let mut out: Vec<Source> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .map(|p| Source {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            text: std::fs::read_to_string(&p).unwrap(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

const NONE: &[String] = &[];

fn who<'a>(sub: &'a str, groups: &'a [String]) -> Who<'a> {
    Who {
        subject: sub,
        issuer: "https://idp.example",
        client_id: Some("app"),
        scopes: NONE,
        groups,
        roles: NONE,
    }
}

fn call<'a>(
    who: Who<'a>,
    upstream: &'a str,
    tool: &'a str,
    labels: &'a [String],
    args: Option<&'a serde_json::Value>,
    time: u64,
) -> Access<'a> {
    Access {
        who,
        action: "tools/call",
        target: Target::Item {
            kind: ItemKind::Tool,
            upstream,
            name: tool,
            labels,
            upstream_labels: NONE,
            risk: 0,
            annotations: NONE,
        },
        context: Circumstances {
            time,
            client_ip: "127.0.0.1",
            session_risk: 0,
            arguments: args,
        },
    }
}

#[test]
fn an_empty_policy_set_refuses_to_start_unless_dangerously_allowed() {
    assert_eq!(Engine::new(&[], false).unwrap_err(), PolicyError::Empty);
    let open = Engine::new(&[], true).unwrap();
    assert!(
        open.decide(&call(who("a", NONE), "u", "t", NONE, None, 0), ())
            .is_allow()
    );
}

#[test]
fn invalid_policies_are_refused_with_their_reason() {
    // An attribute the schema does not have: refused at load, not "never matches".
    let e = Engine::new(
        &src(r#"permit(principal, action, resource) when { principal.department == "x" };"#),
        false,
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::Invalid(_)), "{e}");
    let e = Engine::new(&src("permit(principal, action, resource"), false).unwrap_err();
    assert!(matches!(e, PolicyError::Parse { .. }), "{e}");
    let dup = r#"@id("a") permit(principal, action, resource); @id("a") forbid(principal, action, resource);"#;
    assert_eq!(
        Engine::new(&src(dup), false).unwrap_err(),
        PolicyError::DuplicateId("a".into())
    );
}

#[test]
fn the_shipped_examples_validate_and_mean_what_they_say() {
    let e = Engine::new(&examples(), false).unwrap();
    assert!(e.len() >= 8);
    let analysts = vec!["analysts".to_string()];
    let ro = vec!["read-only".to_string()];
    let t = 1_732_000_000; // a Tuesday
    assert!(
        e.decide(
            &call(who("ann", &analysts), "files", "list", &ro, None, t),
            ()
        )
        .is_allow()
    );
    let d = e.decide(
        &call(who("ann", &analysts), "docs", "delete", NONE, None, t),
        (),
    );
    assert!(matches!(
        d,
        Decision::Deny(Denied {
            reason: DenyReason::NoPermit,
            ..
        })
    ));
    // Argument conditions: analysts see read_file (no arguments when a list
    // is filtered) and may call it under /srv/reports/ only.
    let ok = json!({"path": "/srv/reports/q3.csv"});
    let bad = json!({"path": "/etc/passwd"});
    let climb = json!({"path": "/srv/reports/../../etc/passwd"});
    let none = json!({});
    let ann = who("ann", &analysts);
    assert!(
        e.decide(&call(ann, "files", "read_file", NONE, None, t), ())
            .is_allow(),
        "visible in the list"
    );
    assert!(
        e.decide(&call(ann, "files", "read_file", NONE, Some(&ok), t), ())
            .is_allow()
    );
    for args in [&bad, &climb, &none] {
        match e.decide(&call(ann, "files", "read_file", NONE, Some(args), t), ()) {
            Decision::Deny(d) => assert_eq!(d.policies, ["reports-only"], "{args}"),
            Decision::Allow(_) => panic!("{args} must be refused"),
        }
    }
    assert!(
        !e.decide(
            &call(who("bob", NONE), "files", "read_file", NONE, Some(&ok), t),
            ()
        )
        .is_allow(),
        "not an analyst"
    );
    // Per-team upstreams and the destructive forbid.
    let finance = vec!["finance".to_string()];
    assert!(
        e.decide(
            &call(who("fin", &finance), "ledger", "post", NONE, None, t),
            ()
        )
        .is_allow()
    );
    assert!(
        !e.decide(
            &call(who("fin", &finance), "k8s", "deploy", NONE, None, t),
            ()
        )
        .is_allow()
    );
    let destructive = vec!["destructive".to_string()];
    match e.decide(
        &call(
            who("fin", &finance),
            "ledger",
            "drop",
            &destructive,
            None,
            t,
        ),
        (),
    ) {
        Decision::Deny(d) => {
            assert_eq!(d.reason, DenyReason::Forbidden);
            assert_eq!(d.policies, ["no-destructive-by-role"]);
        }
        Decision::Allow(_) => panic!("forbid must win"),
    }
    // Time windows: Tuesday 10:00 UTC yes, Sunday no, Tuesday 20:00 no.
    let platform = vec!["platform".to_string()];
    let tue_10 = 1_732_010_400 - (1_732_010_400 % 86_400) + 10 * 3600;
    assert!(
        e.decide(
            &call(who("p", &platform), "k8s", "deploy", NONE, None, tue_10),
            ()
        )
        .is_allow()
    );
    assert!(
        e.decide(
            &call(
                who("p", &platform),
                "k8s",
                "deploy",
                NONE,
                None,
                tue_10 + 10 * 3600
            ),
            ()
        )
        .is_allow(),
        "the upstream-wide platform permit also applies"
    );
}

#[test]
fn allow_names_the_permitting_policy() {
    let e = Engine::new(&src(r#"@id("everyone") permit(principal, action == Bastion::Action::"tools/call", resource);"#), false).unwrap();
    match e.decide(&call(who("a", NONE), "u", "t", NONE, None, 0), 42) {
        Decision::Allow(p) => {
            assert_eq!(p.policies(), ["everyone"]);
            assert_eq!(p.into_inner(), 42);
        }
        Decision::Deny(d) => panic!("{d:?}"),
    }
    // Another action: no permit.
    let list = Access {
        action: "prompts/get",
        target: Target::Item {
            kind: ItemKind::Prompt,
            upstream: "u",
            name: "p",
            labels: NONE,
            upstream_labels: NONE,
            risk: 0,
            annotations: NONE,
        },
        ..call(who("a", NONE), "u", "t", NONE, None, 0)
    };
    assert!(!e.decide(&list, ()).is_allow());
}

#[test]
fn an_action_outside_the_schema_is_denied_even_by_an_unconstrained_permit() {
    let e = Engine::new(&src("permit(principal, action, resource);"), false).unwrap();
    let base = call(who("a", NONE), "u", "t", NONE, None, 0);
    assert!(e.decide(&base, ()).is_allow());
    let odd = Access {
        action: "tasks/list",
        target: Target::Upstream {
            name: "u",
            labels: NONE,
        },
        ..base
    };
    match e.decide(&odd, ()) {
        Decision::Deny(d) => assert_eq!(d.reason, DenyReason::Error),
        Decision::Allow(_) => panic!("an unknown action must not be allowed"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Without a permit nothing is allowed, whatever the request.
    #[test]
    fn no_permit_denies_everything(sub in "[a-z]{1,8}", up in "[a-z]{1,6}", tool in "[a-z_]{1,10}", g in "[a-z]{1,5}") {
        let e = Engine::new(&src(r#"forbid(principal, action == Bastion::Action::"tools/call", resource) when { resource.risk > 1000 };"#), false).unwrap();
        let groups = vec![g];
        prop_assert!(!e.decide(&call(who(&sub, &groups), &up, &tool, NONE, None, 0), ()).is_allow());
    }

    /// A matching forbid wins over any permit.
    #[test]
    fn forbid_always_wins(tool in "[a-z_]{1,10}", banned in "[a-z_]{1,10}") {
        let text = format!(r#"permit(principal, action, resource);
            @id("ban") forbid(principal, action == Bastion::Action::"tools/call", resource) when {{ resource.name == "{banned}" }};"#);
        let e = Engine::new(&src(&text), false).unwrap();
        let allowed = e.decide(&call(who("a", NONE), "u", &tool, NONE, None, 0), ()).is_allow();
        prop_assert_eq!(allowed, tool != banned);
    }

    /// "Visible in the list" ⇔ "the call is allowed", for every principal and tool.
    #[test]
    fn lists_and_calls_agree(groups in proptest::collection::vec("[abc]", 0..3), tools in proptest::collection::vec("[a-f]{1,3}", 1..12)) {
        let text = r#"permit(principal, action == Bastion::Action::"tools/call", resource) when { principal.groups.contains("a") && resource.name like "a*" };
            permit(principal, action == Bastion::Action::"tools/call", resource) when { principal.groups.contains("b") && resource.name like "*b" };
            forbid(principal, action == Bastion::Action::"tools/call", resource) when { principal.groups.contains("c") && resource.name like "*c*" };"#;
        let e = Engine::new(&src(text), false).unwrap();
        let w = who("u", &groups);
        let visible = e.visible(|t: &String| call(w, "up", t.as_str(), NONE, None, 0), tools.iter());
        for t in &tools {
            let callable = e.decide(&call(w, "up", t, NONE, None, 0), ()).is_allow();
            prop_assert_eq!(visible.contains(&t), callable);
        }
    }
}
