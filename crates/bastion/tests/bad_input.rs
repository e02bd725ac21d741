//! Bad input gets the exact HTTP status and JSON-RPC error the spec names, an
//! audit event, and never a panic or a hang.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation is the test failing"
)]

mod common;

use std::time::Duration;

use bastion::audit::Outcome;
use common::*;
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    method: reqwest::Method,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: Option<i64>,
}

fn post(
    name: &'static str,
    headers: Vec<(&'static str, String)>,
    body: &str,
    status: u16,
    code: Option<i64>,
) -> Case {
    Case {
        name,
        method: reqwest::Method::POST,
        headers,
        body: body.as_bytes().to_vec(),
        status,
        code,
    }
}

fn std_headers() -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("accept", "application/json, text/event-stream".into()),
    ]
}

fn with(
    mut h: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    for (k, v) in extra {
        h.retain(|(hk, _)| hk != k);
        h.push((k, (*v).to_owned()));
    }
    h
}

fn modern_body(method: &str, params: Value) -> String {
    let mut p = params;
    p["_meta"] = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}});
    json!({"jsonrpc":"2.0","id":1,"method":method,"params":p}).to_string()
}

#[tokio::test]
async fn every_bad_input_gets_its_exact_error() {
    let gw = start(&demo_config("").replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nmax_body_bytes = 2048",
    ))
    .await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let sess = |extra: &[(&'static str, &str)]| {
        let mut h = with(std_headers(), &[("mcp-protocol-version", "2025-11-25")]);
        h.push(("mcp-session-id", s.sid.clone()));
        with(h, extra)
    };
    let mh = |method: &'static str, name: Option<&'static str>| {
        let mut h = with(
            std_headers(),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", method),
            ],
        );
        if let Some(n) = name {
            h.push(("mcp-name", n.to_owned()));
        }
        h
    };
    let init = INIT_BODY;
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(4096)
    );
    let cases = vec![
        post(
            "invalid JSON",
            sess(&[]),
            r#"{"jsonrpc":"2.0","id":1,"#,
            400,
            Some(-32700),
        ),
        Case {
            name: "invalid UTF-8",
            method: reqwest::Method::POST,
            headers: sess(&[]),
            body: b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}".to_vec(),
            status: 400,
            code: Some(-32700),
        },
        post(
            "wrong content type",
            with(sess(&[]), &[("content-type", "text/plain")]),
            list,
            415,
            Some(-32600),
        ),
        post(
            "not acceptable",
            with(sess(&[]), &[("accept", "text/html")]),
            list,
            406,
            Some(-32600),
        ),
        post("oversize body", sess(&[]), &big, 413, Some(-32600)),
        post(
            "batch",
            sess(&[]),
            &format!("[{list},{list}]"),
            400,
            Some(-32600),
        ),
        post(
            "null id",
            sess(&[]),
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            400,
            Some(-32600),
        ),
        post(
            "wrong jsonrpc version",
            sess(&[]),
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            400,
            Some(-32600),
        ),
        post("not an object", sess(&[]), "42", 400, Some(-32600)),
        post(
            "unknown session",
            with(sess(&[]), &[("mcp-session-id", "nope")]),
            list,
            404,
            Some(-32013),
        ),
        post("missing session", std_headers(), list, 400, Some(-32013)),
        post(
            "unsupported version header",
            sess(&[("mcp-protocol-version", "1999-01-01")]),
            list,
            400,
            Some(-32600),
        ),
        post(
            "garbage version header",
            sess(&[("mcp-protocol-version", "garbage")]),
            list,
            400,
            Some(-32600),
        ),
        post(
            "mixed lanes: session + modern _meta",
            sess(&[]),
            &modern_body("tools/list", json!({})),
            400,
            Some(-32600),
        ),
        post(
            "initialize with a 2026-07-28 header is a modern request missing its _meta",
            with(
                std_headers(),
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "initialize"),
                ],
            ),
            init,
            400,
            Some(-32602),
        ),
        post(
            "modern: initialize was removed (404)",
            mh("initialize", None),
            &modern_body("initialize", json!({})),
            404,
            Some(-32601),
        ),
        post(
            "modern: ping was removed (404)",
            mh("ping", None),
            &modern_body("ping", json!({})),
            404,
            Some(-32601),
        ),
        post(
            "modern: resources/subscribe was removed (404)",
            mh("resources/subscribe", None),
            &modern_body("resources/subscribe", json!({"uri": "demo://readme"})),
            404,
            Some(-32601),
        ),
        post(
            "modern: forged requestState",
            mh("tools/call", Some("demo__echo")),
            &modern_body(
                "tools/call",
                json!({"name":"demo__echo","arguments":{"message":"x"},"requestState":"bst2.k1.AAAA"}),
            ),
            400,
            Some(-32602),
        ),
        post(
            "response to nothing",
            sess(&[]),
            r#"{"jsonrpc":"2.0","id":"x","result":{}}"#,
            400,
            Some(-32600),
        ),
        post(
            "hostile origin",
            with(std_headers(), &[("origin", "http://evil.example")]),
            init,
            403,
            Some(-32011),
        ),
        post(
            "null origin",
            with(std_headers(), &[("origin", "null")]),
            init,
            403,
            Some(-32011),
        ),
        post(
            "lookalike origin",
            with(
                std_headers(),
                &[("origin", "http://localhost.evil.example")],
            ),
            init,
            403,
            Some(-32011),
        ),
        post(
            "hostile host",
            with(std_headers(), &[("host", "evil.example.com")]),
            init,
            403,
            Some(-32011),
        ),
        post(
            "loopback host, wrong port",
            with(std_headers(), &[("host", "localhost:1")]),
            init,
            403,
            Some(-32011),
        ),
        post(
            "modern: header/body method mismatch",
            mh("tools/call", Some("demo__echo")),
            &modern_body("tools/list", json!({})),
            400,
            Some(-32020),
        ),
        post(
            "modern: name mismatch",
            mh("tools/call", Some("demo__add")),
            &modern_body("tools/call", json!({"name":"demo__echo","arguments":{}})),
            400,
            Some(-32020),
        ),
        post(
            "modern: name missing",
            mh("tools/call", None),
            &modern_body("tools/call", json!({"name":"demo__echo","arguments":{}})),
            400,
            Some(-32020),
        ),
        post(
            "modern: method header missing",
            with(std_headers(), &[("mcp-protocol-version", "2026-07-28")]),
            &modern_body("tools/list", json!({})),
            400,
            Some(-32020),
        ),
        post(
            "modern: version header missing",
            with(std_headers(), &[("mcp-method", "tools/list")]),
            &modern_body("tools/list", json!({})),
            400,
            Some(-32020),
        ),
        post(
            "modern: version header differs from _meta",
            with(
                mh("tools/list", None),
                &[("mcp-protocol-version", "2025-11-25")],
            ),
            &modern_body("tools/list", json!({})),
            400,
            Some(-32020),
        ),
        post(
            "modern: _meta missing",
            mh("tools/list", None),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
            400,
            Some(-32602),
        ),
        post(
            "modern: capabilities missing",
            mh("tools/list", None),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            400,
            Some(-32602),
        ),
        post(
            "modern: unsupported version",
            with(
                mh("tools/list", None),
                &[("mcp-protocol-version", "2099-01-01")],
            ),
            &modern_body("tools/list", json!({})).replace("2026-07-28", "2099-01-01"),
            400,
            Some(-32022),
        ),
        post(
            "modern: unknown method",
            mh("no/such/method", None),
            &modern_body("no/such/method", json!({})),
            404,
            Some(-32601),
        ),
        post(
            "modern: a correct request passes",
            mh("tools/list", None),
            &modern_body("tools/list", json!({})),
            200,
            None,
        ),
        Case {
            name: "GET without session",
            method: reqwest::Method::GET,
            headers: vec![("accept", "text/event-stream".into())],
            body: vec![],
            status: 405,
            code: Some(-32600),
        },
        Case {
            name: "GET unknown session",
            method: reqwest::Method::GET,
            headers: vec![
                ("accept", "text/event-stream".into()),
                ("mcp-session-id", "nope".into()),
            ],
            body: vec![],
            status: 404,
            code: Some(-32013),
        },
        Case {
            name: "GET hostile origin",
            method: reqwest::Method::GET,
            headers: vec![
                ("accept", "text/event-stream".into()),
                ("mcp-session-id", s.sid.clone()),
                ("origin", "http://evil.example".into()),
            ],
            body: vec![],
            status: 403,
            code: Some(-32011),
        },
        Case {
            name: "DELETE hostile origin",
            method: reqwest::Method::DELETE,
            headers: vec![
                ("mcp-session-id", s.sid.clone()),
                ("origin", "https://evil.example".into()),
            ],
            body: vec![],
            status: 403,
            code: Some(-32011),
        },
        Case {
            name: "DELETE unknown session",
            method: reqwest::Method::DELETE,
            headers: vec![("mcp-session-id", "nope".into())],
            body: vec![],
            status: 404,
            code: Some(-32013),
        },
        Case {
            name: "PUT",
            method: reqwest::Method::PUT,
            headers: std_headers(),
            body: list.as_bytes().to_vec(),
            status: 405,
            code: Some(-32600),
        },
    ];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for c in cases {
        let before = gw.events().len();
        let mut b = client
            .request(c.method.clone(), &gw.url)
            .body(c.body.clone());
        for (k, v) in &c.headers {
            b = b.header(*k, v.as_str());
        }
        let r = b.send().await.unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(r.status().as_u16(), c.status, "{}", c.name);
        let msgs = messages(r).await;
        if let Some(code) = c.code {
            assert_eq!(msgs.len(), 1, "{}: {msgs:?}", c.name);
            assert_eq!(msgs[0]["error"]["code"], code, "{}: {msgs:?}", c.name);
            assert!(
                msgs[0]["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{}",
                c.name
            );
            let evs = gw.events();
            let req_ev = evs[before..]
                .iter()
                .find(|e| e.kind == bastion::audit::EventKind::Request)
                .unwrap_or_else(|| panic!("{}: no audit event", c.name));
            assert_eq!(req_ev.status, Some(c.status), "{}", c.name);
            assert_ne!(req_ev.outcome, Outcome::Ok, "{}", c.name);
        }
    }
    // Every loopback spelling of the gateway's own authority passes the Host check.
    let port = gw.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".into(),
        "[::1]".into(),
    ] {
        let r = s
            .req()
            .header("host", host.as_str())
            .json(&json!({"jsonrpc":"2.0","id":101,"method":"ping"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "Host {host}");
    }
    for host in [
        "[::1]:1",
        "[::2]",
        "localhost:1",
        "127.0.0.1.nip.io",
        "[::1",
    ] {
        let r = s
            .req()
            .header("host", host)
            .json(&json!({"jsonrpc":"2.0","id":102,"method":"ping"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "Host {host}");
    }
    // The session survived all of it, including the hostile DELETE.
    let r = s.call(99, "tools/list", json!({})).await;
    assert!(r["result"]["tools"].is_array());
    // A loopback browser origin is allowed on a loopback gateway.
    let r = s
        .req()
        .header("origin", "http://localhost:6274")
        .json(&json!({"jsonrpc":"2.0","id":100,"method":"ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn unsupported_modern_version_lists_supported_ones() {
    let gw = start(&demo_config("")).await;
    let body = modern_body("tools/list", json!({})).replace("2026-07-28", "1900-01-01");
    let r = http()
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "1900-01-01")
        .header("mcp-method", "tools/list")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let m = messages(r).await.remove(0);
    assert_eq!(m["error"]["code"], -32022);
    assert_eq!(m["error"]["data"]["requested"], "1900-01-01");
    assert!(
        m["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn failing_audit_trail_fails_closed() {
    let gw = start(&demo_config("")).await;
    gw.audit
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = http()
        .post(&gw.url)
        .header("content-type", "application/json")
        .body(INIT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    gw.stop().await;
}

#[tokio::test]
async fn garbage_never_panics_or_hangs() {
    let gw = start(&demo_config("")).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let samples: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"x\"".to_vec(),
        vec![0xff, 0xfe, 0x00],
        "[".repeat(5000).into_bytes(),
        br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":7}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":"x"}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":5}}"#
            .to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}}"#.to_vec(),
    ];
    for body in samples {
        let r = client
            .post(&gw.url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_client_error(),
            "{:?} -> {}",
            String::from_utf8_lossy(&body),
            r.status()
        );
        let m = messages(r).await;
        assert!(m[0]["error"]["code"].is_i64());
    }
    gw.stop().await;
}
