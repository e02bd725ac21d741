//! The permit is the only way upstream: a source check that fails when a
//! change adds a way to write to an upstream that skips the policy decision.
//!
//! The types already make most of it a compile error (`Conn::call` and
//! `Conn::notify` are private, `Conn::send` takes a `Pass`, a `Permitted` is
//! minted only by the policy engine, `Internal` has a private field); this
//! test pins down what the types cannot: which modules may create the
//! gateway's own `Internal` capability, and that nothing outside `upstream/`
//! touches a transport.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::path::Path;

#[path = "common/sources.rs"]
mod sources;

/// Every source file of the crate, as (path relative to `src/`, code without
/// comment lines).
fn crate_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources::rust_files(&root);
    assert!(
        files.len() > 20,
        "sources not found under {}",
        root.display()
    );
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let code: String = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            (rel, code)
        })
        .collect()
}

/// Whether `code` contains `needle` not preceded by an identifier character
/// (so `Transport::` does not match `UpstreamTransport::`).
fn has(code: &str, needle: &str) -> bool {
    code.match_indices(needle).any(|(i, _)| {
        needle.starts_with(|c: char| !c.is_alphanumeric())
            || !code[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The files containing `needle`.
fn where_is(files: &[(String, String)], needle: &str) -> Vec<String> {
    let mut v: Vec<String> = files
        .iter()
        .filter(|(_, code)| has(code, needle))
        .map(|(f, _)| f.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn only_session_and_inventory_code_holds_the_internal_capability() {
    let files = crate_sources();
    // Inventory listings (the periodic inventory and the start-up collision
    // check), and session housekeeping (logging/setLevel).
    assert_eq!(
        where_is(&files, "Internal::inventory()"),
        ["integrity/inventory.rs"]
    );
    assert_eq!(where_is(&files, "Internal::session()"), ["gateway.rs"]);
    // Only its own module builds one.
    assert_eq!(where_is(&files, "Internal {"), ["upstream/mod.rs"]);
    // The methods it admits are the gateway's own traffic, never a client's
    // item-naming request.
    let (_, up) = files.iter().find(|(f, _)| f == "upstream/mod.rs").unwrap();
    let start = up.find("const METHODS").expect("Internal::METHODS");
    let list = &up[start..start + up[start..].find("];").unwrap()];
    for forbidden in [
        "tools/call",
        "prompts/get",
        "resources/read",
        "resources/subscribe",
        "completion/complete",
        "tasks/",
        "sampling/",
        "elicitation/",
    ] {
        assert!(
            !list.contains(forbidden),
            "Internal admits {forbidden}: {list}"
        );
    }
}

#[test]
fn nothing_outside_upstream_touches_a_transport() {
    let files = crate_sources();
    for needle in [
        "Transport::",
        "HttpShared",
        "StdioConn",
        "send_message(",
        ".writer()",
        "call_once(",
        "post_no_reply(",
    ] {
        let outside: Vec<String> = where_is(&files, needle)
            .into_iter()
            .filter(|f| !f.starts_with("upstream/"))
            .collect();
        assert!(
            outside.is_empty(),
            "{needle} outside upstream/: {outside:?}"
        );
    }
    // Inside, the raw senders stay private to the module.
    for (f, code) in files.iter().filter(|(f, _)| f.starts_with("upstream/")) {
        for line in code.lines() {
            let l = line.trim_start();
            for raw in [
                "fn call(",
                "fn notify(",
                "fn call_once(",
                "fn send_message(",
            ] {
                assert!(
                    // `pub(super)` keeps it inside `upstream/`.
                    !(l.contains(raw) && (l.starts_with("pub ") || l.starts_with("pub(crate)"))),
                    "{f}: a raw sender is public: {l}"
                );
            }
        }
    }
    // The public senders take a pass (the reply path's `send` carries only a
    // response to the upstream's own request).
    let (_, up) = files.iter().find(|(f, _)| f == "upstream/mod.rs").unwrap();
    let mut checked = 0;
    for public in ["pub async fn send(", "pub async fn send_notification("] {
        for (at, _) in up.match_indices(public) {
            let sig = &up[at..at + up[at..].find('{').unwrap()];
            if sig.contains("resp: Response") {
                continue;
            }
            assert!(sig.contains("pass: Pass"), "{public} without a pass: {sig}");
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "Conn::send and Conn::send_notification");
}

#[test]
fn answers_to_upstream_requests_leave_from_the_screening_code_only() {
    // A reply path carries the client's answer to a server request; it is
    // written only where that answer was decided and screened (or where the
    // gateway refuses the request itself).
    let files = crate_sources();
    let writers: Vec<String> = where_is(&files, "reply.send(")
        .into_iter()
        .filter(|f| !f.starts_with("upstream/"))
        .collect();
    assert_eq!(writers, ["gateway.rs", "pipeline/to_client.rs"]);
}

#[test]
fn controls_are_types_and_only_the_gateway_extends_the_gateway() {
    // Controls are types with narrow dependencies: the screener holds the
    // engine, the policy, the trail and the metrics; the authorizer the
    // policy set, the upstreams, the trail and the metrics; the inventory
    // the upstreams, pins, store, trail and the exchange recorder; the
    // upstream → client pipeline those views. No other module extends
    // `Gateway`.
    let files = crate_sources();
    assert_eq!(where_is(&files, "impl Gateway {"), ["gateway.rs"]);
    // And none of them reaches back into the gateway (no import cycle):
    // only the per-method request functions, the transports, the operator
    // API and the command line hold a `Gateway`.
    let mut back: Vec<String> = files
        .iter()
        .filter(|(f, code)| {
            (f.starts_with("integrity/")
                || f.starts_with("session/")
                || f.starts_with("state/")
                || f.starts_with("upstream/")
                || f.starts_with("audit/")
                || (f.starts_with("pipeline/")
                    && f != "pipeline/requests.rs"
                    && f != "pipeline/mod.rs"))
                && has(code, "crate::gateway")
        })
        .map(|(f, _)| f.clone())
        .collect();
    back.sort();
    assert_eq!(
        back,
        Vec::<String>::new(),
        "modules that reach back into the gateway"
    );
}

#[test]
fn only_operator_commands_load_a_configuration_without_its_upstream_secrets() {
    // `Config::load_for_operator` leaves unresolvable upstream secrets empty:
    // fine for commands that never reach an upstream, never for serving.
    let files = crate_sources();
    assert_eq!(
        where_is(&files, "load_for_operator("),
        ["cli/args.rs", "cli/audit.rs", "cli/run.rs", "config/mod.rs"]
    );
    let (_, serve) = files.iter().find(|(f, _)| f == "cli/serve.rs").unwrap();
    assert!(!has(serve, "load_for_operator"));
}
