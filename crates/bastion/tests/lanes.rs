//! Both protocol lanes end to end through the gateway to the real demo upstream
//! (stdio) and through a second gateway (Streamable HTTP upstream).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation is the test failing"
)]

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn legacy_lane_relays_every_primitive() {
    let gw = start(&demo_config("")).await;
    let (s, init) = Legacy::connect(&gw.url, json!({})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-bastion");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    // Session id: 256 bits, base64url.
    assert_eq!(s.sid.len(), 43);
    assert!(
        s.sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let tools = s.call(1, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"demo__echo") && names.contains(&"demo__add"),
        "{names:?}"
    );

    let r = s
        .call(
            2,
            "tools/call",
            json!({"name":"demo__echo","arguments":{"message":"hi"}}),
        )
        .await;
    assert_eq!(r["id"], 2);
    assert_eq!(r["result"]["content"][0]["text"], "Echo: hi");
    let r = s
        .call(
            3,
            "tools/call",
            json!({"name":"demo__add","arguments":{"a":2,"b":3}}),
        )
        .await;
    assert_eq!(r["result"]["structuredContent"]["sum"], 5.0);
    let r = s
        .call(4, "resources/read", json!({"uri":"demo://readme"}))
        .await;
    assert!(
        r["result"]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("demo upstream")
    );
    let r = s.call(5, "resources/templates/list", json!({})).await;
    assert_eq!(
        r["result"]["resourceTemplates"][0]["uriTemplate"],
        "demo://notes/{id}"
    );
    let r = s
        .call(6, "resources/read", json!({"uri":"demo://notes/7"}))
        .await;
    assert_eq!(r["result"]["contents"][0]["text"], "Note 7");
    let r = s
        .call(
            7,
            "prompts/get",
            json!({"name":"demo__greet","arguments":{"name":"Ada"}}),
        )
        .await;
    assert!(
        r["result"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("Ada")
    );
    let r = s
        .call(8, "completion/complete", json!({"ref":{"type":"ref/prompt","name":"demo__greet"},"argument":{"name":"name","value":"A"}}))
        .await;
    assert_eq!(r["result"]["completion"]["values"], json!(["Ada", "Alan"]));
    let r = s.call(9, "ping", json!({})).await;
    assert_eq!(r["result"], json!({}));
    let r = s
        .call(10, "logging/setLevel", json!({"level":"debug"}))
        .await;
    assert_eq!(r["result"], json!({}));
    // Tool errors and unknown tools are relayed faithfully, naming the tool.
    let r = s
        .call(
            11,
            "tools/call",
            json!({"name":"demo__fail","arguments":{}}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true);
    let r = s
        .call(12, "tools/call", json!({"name":"nope__x","arguments":{}}))
        .await;
    assert_eq!(r["error"]["code"], -32602);

    // Progress arrives on the request's SSE stream, with the client's own token.
    let resp = s
        .post(&json!({"jsonrpc":"2.0","id":13,"method":"tools/call","params":{
            "name":"demo__count_slowly","arguments":{"steps":3,"delay_ms":20},"_meta":{"progressToken":"tok-1"}}}))
        .await;
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let msgs = messages(resp).await;
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    for (i, m) in msgs.iter().take(3).enumerate() {
        assert_eq!(m["method"], "notifications/progress");
        assert_eq!(m["params"]["progressToken"], "tok-1");
        assert_eq!(m["params"]["progress"], i as u64 + 1);
    }
    assert_eq!(msgs[3]["result"]["content"][0]["text"], "counted to 3");

    // DELETE ends the session; it is then unknown (404).
    let r = s
        .http
        .delete(&s.url)
        .header("mcp-session-id", &s.sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .post(&json!({"jsonrpc":"2.0","id":14,"method":"tools/list"}))
        .await;
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

/// Answers server-initiated requests arriving on a POST's SSE stream.
async fn call_answering(s: &Legacy, id: i64, tool: &str, answer: Value) -> Value {
    let resp = s
        .post(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"question":"q?"}}}))
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    use futures::StreamExt;
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let ev: String = buf.drain(..end + 2).collect();
            let Some(data) = ev.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let m: Value = serde_json::from_str(data).unwrap();
            if m.get("method").is_some() && m.get("id").is_some() {
                let r = s
                    .post(&json!({"jsonrpc":"2.0","id":m["id"],"result":answer}))
                    .await;
                assert_eq!(r.status(), 202);
            } else if m.get("result").is_some() || m.get("error").is_some() {
                assert_eq!(m["id"], id);
                return m;
            }
        }
    }
    panic!("stream ended without a response");
}

#[tokio::test]
async fn sampling_and_elicitation_round_trip_to_the_right_session() {
    let gw = start(&demo_config("")).await;
    let caps = json!({"sampling":{}, "elicitation":{"form":{}}});
    let (a, _) = Legacy::connect(&gw.url, caps.clone()).await;
    let (b, _) = Legacy::connect(&gw.url, caps).await;
    let (ra, rb) = tokio::join!(
        call_answering(
            &a,
            1,
            "demo__ask_model",
            json!({"role":"assistant","content":{"type":"text","text":"from A"},"model":"m"})
        ),
        call_answering(
            &b,
            1,
            "demo__ask_model",
            json!({"role":"assistant","content":{"type":"text","text":"from B"},"model":"m"})
        ),
    );
    assert_eq!(ra["result"]["content"][0]["text"], "The model said: from A");
    assert_eq!(rb["result"]["content"][0]["text"], "The model said: from B");
    let r = call_answering(
        &a,
        2,
        "demo__ask_user",
        json!({"action":"accept","content":{"answer":"yes"}}),
    )
    .await;
    assert_eq!(
        r["result"]["content"][0]["text"],
        "The user chose accept: yes"
    );
    // An answer for a request this session never received is refused, not relayed.
    let r = b
        .post(&json!({"jsonrpc":"2.0","id":"bastion-999","result":{}}))
        .await;
    assert_eq!(r.status(), 400);
    gw.stop().await;
}

#[tokio::test]
async fn modern_lane_is_stateless_and_marks_results() {
    let gw = start(&demo_config("")).await;
    let (st, msgs) = modern(&gw.url, 1, "server/discover", json!({})).await;
    assert_eq!(st, 200);
    let d = &msgs[0]["result"];
    assert_eq!(d["supportedVersions"], json!(["2026-07-28"]));
    assert!(d["capabilities"]["tools"].is_object());
    assert_eq!(d["resultType"], "complete");
    assert_eq!(
        d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-bastion"
    );
    let (st, msgs) = modern(&gw.url, 2, "tools/list", json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(msgs[0]["result"]["cacheScope"], "private");
    assert_eq!(msgs[0]["result"]["ttlMs"], 0);
    let (_, msgs) = modern(
        &gw.url,
        3,
        "tools/call",
        json!({"name":"demo__echo","arguments":{"message":"m"}}),
    )
    .await;
    assert_eq!(msgs[0]["result"]["content"][0]["text"], "Echo: m");
    assert_eq!(msgs[0]["result"]["resultType"], "complete");
    let (_, msgs) = modern(&gw.url, 4, "resources/read", json!({"uri":"demo://readme"})).await;
    assert_eq!(msgs[0]["result"]["resultType"], "complete");
    // Methods the revision removed are "not found" with 404 on this lane.
    let (st, msgs) = modern(&gw.url, 5, "ping", json!({})).await;
    assert_eq!((st, msgs[0]["error"]["code"].clone()), (404, json!(-32601)));
    // Unknown resource: -32602 on this lane.
    let (_, msgs) = modern(&gw.url, 6, "resources/read", json!({"uri":"nope://x"})).await;
    assert_eq!(msgs[0]["error"]["code"], -32602);
    gw.stop().await;
}

#[tokio::test]
async fn http_upstream_through_a_second_gateway() {
    // front → back (HTTP, Streamable) → demo (stdio): exercises the HTTP upstream
    // client with sessions, SSE replies and server-initiated requests.
    let back = start(&demo_config("")).await;
    let front = start(&format!(
        r#"{HEAD}[[upstream]]
name = "back"
transport = "http"
url = "{}"
prefix = ""
"#,
        back.url
    ))
    .await;
    let (s, init) = Legacy::connect(&front.url, json!({"sampling":{}})).await;
    assert!(init["result"]["capabilities"]["tools"].is_object());
    let r = s
        .call(
            1,
            "tools/call",
            json!({"name":"demo__echo","arguments":{"message":"via http"}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "Echo: via http");
    let r = call_answering(
        &s,
        2,
        "demo__ask_model",
        json!({"role":"assistant","content":{"type":"text","text":"deep"},"model":"m"}),
    )
    .await;
    assert_eq!(r["result"]["content"][0]["text"], "The model said: deep");
    let resp = s
        .post(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
            "name":"demo__count_slowly","arguments":{"steps":2,"delay_ms":10},"_meta":{"progressToken":7}}}))
        .await;
    let msgs = messages(resp).await;
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert_eq!(msgs[0]["params"]["progressToken"], 7);
    // Modern client through two hops.
    let (_, msgs) = modern(
        &front.url,
        4,
        "tools/call",
        json!({"name":"demo__echo","arguments":{"message":"m"}}),
    )
    .await;
    assert_eq!(
        msgs[0]["result"]["content"][0]["text"],
        "Echo: m",
        "{msgs:?} {:?}",
        back.events()
            .iter()
            .filter(|e| e.outcome != bastion::audit::Outcome::Ok)
            .collect::<Vec<_>>()
    );
    // Ending the front session DELETEs the back session.
    let before = back.gw.sessions.read().len();
    assert!(before >= 1);
    s.http
        .delete(&s.url)
        .header("mcp-session-id", &s.sid)
        .send()
        .await
        .unwrap();
    for _ in 0..50 {
        if back.gw.sessions.read().len() < before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(back.gw.sessions.read().len() < before);
    front.stop().await;
    back.stop().await;
}

#[tokio::test]
async fn upstream_down_degrades_only_its_own_names() {
    let gw = start(&demo_config(
        r#"
[[upstream]]
name = "dead"
transport = "stdio"
command = "/nonexistent/mcp-server"
"#,
    ))
    .await;
    let (s, init) = Legacy::connect(&gw.url, json!({})).await;
    assert!(init["result"]["capabilities"]["tools"].is_object());
    let r = s.call(1, "tools/list", json!({})).await;
    assert!(!r["result"]["tools"].as_array().unwrap().is_empty());
    let r = s
        .call(
            2,
            "tools/call",
            json!({"name":"dead__anything","arguments":{}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32010);
    assert!(
        r["error"]["message"].as_str().unwrap().contains("\"dead\""),
        "{r}"
    );
    assert_eq!(r["error"]["data"]["upstream"], "dead");
    let r = s
        .call(
            3,
            "tools/call",
            json!({"name":"demo__echo","arguments":{"message":"still"}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "Echo: still");
    gw.stop().await;
}

/// A 2026-07-28 request with explicit capabilities (the `modern` helper declares none).
async fn modern_with_caps(
    url: &str,
    id: i64,
    name: &str,
    mut params: Value,
    caps: Value,
) -> (u16, Value) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    params["name"] = json!(name);
    let r = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", name)
        .json(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, messages(r).await.pop().unwrap())
}

#[tokio::test]
async fn stateless_client_answers_a_2025_upstreams_sampling_through_input_required() {
    let gw = start(&demo_config("")).await;
    let caps = json!({"sampling": {}});
    let (st, first) = modern_with_caps(
        &gw.url,
        1,
        "demo__ask_model",
        json!({"arguments":{"question":"2+2?"}}),
        caps.clone(),
    )
    .await;
    assert_eq!(st, 200);
    let r = &first["result"];
    assert_eq!(r["resultType"], "input_required", "{first}");
    let (key, ask) = r["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(ask["method"], "sampling/createMessage");
    assert_eq!(ask["params"]["messages"][0]["content"]["text"], "2+2?");
    let state = r["requestState"].as_str().unwrap().to_owned();
    assert!(state.starts_with("bst2."), "{state}");

    // The state is bound to the tool it was issued for.
    let (st, e) = modern_with_caps(
        &gw.url,
        2,
        "demo__echo",
        json!({"arguments":{"message":"x"},"requestState": state, "inputResponses": {}}),
        caps.clone(),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!(-32602)),
        "{e}"
    );

    // Tampering is detected.
    let mut tampered = state.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (st, _) = modern_with_caps(
        &gw.url,
        3,
        "demo__ask_model",
        json!({"arguments":{"question":"2+2?"},"requestState": tampered, "inputResponses": {}}),
        caps.clone(),
    )
    .await;
    assert_eq!(st, 400);

    // The retry with the answer completes the upstream call.
    let answer = json!({key.clone(): {"role":"assistant","content":{"type":"text","text":"four"},"model":"m"}});
    let (st, done) = modern_with_caps(
        &gw.url,
        4,
        "demo__ask_model",
        json!({"arguments":{"question":"2+2?"},"requestState": state, "inputResponses": answer}),
        caps.clone(),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(done["id"], 4);
    assert_eq!(done["result"]["content"][0]["text"], "The model said: four");
    assert_eq!(done["result"]["resultType"], "complete");

    // Single use: the same state cannot resume anything again.
    let (st, e) = modern_with_caps(
        &gw.url,
        5,
        "demo__ask_model",
        json!({"arguments":{"question":"2+2?"},"requestState": state, "inputResponses": answer}),
        caps,
    )
    .await;
    assert_eq!((st, e["error"]["code"].clone()), (400, json!(-32602)));

    // A client that did not declare sampling is never sent a sampling request.
    let (_, r) = modern_with_caps(
        &gw.url,
        6,
        "demo__ask_model",
        json!({"arguments":{"question":"q"}}),
        json!({}),
    )
    .await;
    assert_ne!(r["result"]["resultType"], "input_required", "{r}");
    assert_eq!(r["result"]["isError"], true);
    gw.stop().await;
}

#[tokio::test]
async fn client_cancellation_reaches_the_upstream_and_ends_the_request() {
    let gw = start(&demo_config("")).await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let resp = s
        .post(&json!({"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{
            "name":"demo__count_slowly","arguments":{"steps":100,"delay_ms":50},"_meta":{"progressToken":"c1"}}}))
        .await;
    let mut body = resp.bytes_stream();
    use futures::StreamExt;
    let mut seen = String::new();
    // Wait for the first progress notification: the upstream is working.
    while !seen.contains("notifications/progress") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let r = s
        .post(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow-1","reason":"user"}}))
        .await;
    assert_eq!(r.status(), 202);
    // The stream ends without a response (100 steps would take 5 s and end with one).
    while let Some(chunk) = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
        .await
        .unwrap()
    {
        seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(
        !seen.contains("\"result\""),
        "a cancelled request got a response: {seen}"
    );
    assert!(
        gw.events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("request cancelled by the client"))
    );
    // The session is still usable.
    let r = s
        .call(
            2,
            "tools/call",
            json!({"name":"demo__echo","arguments":{"message":"after"}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "Echo: after");
    gw.stop().await;
}

#[tokio::test]
async fn the_request_deadline_counts_from_the_start_on_both_lanes() {
    // Progress every 150 ms for ~3 s; the deadline is 1 s. Messages the client
    // cannot take (a JSON-only client) must not push the deadline back.
    let gw =
        start(&demo_config("").replace("[server]\n", "[server]\nrequest_timeout_secs = 1\n")).await;
    let slow = json!({"name":"demo__count_slowly","arguments":{"steps":20,"delay_ms":150},
        "_meta":{"progressToken":"p"}});
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let t0 = std::time::Instant::now();
    let r = s
        .http
        .post(&s.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", &s.sid)
        .header("mcp-protocol-version", &s.version)
        .json(&json!({"jsonrpc":"2.0","id":41,"method":"tools/call","params":slow}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32012, "{body}");
    assert_eq!(
        body["id"], 41,
        "the timeout answers the request it ends: {body}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );

    // The same on the 2026-07-28 lane for a JSON-only client.
    let t0 = std::time::Instant::now();
    let mut params = slow.clone();
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
    params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let r = http()
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "demo__count_slowly")
        .json(&json!({"jsonrpc":"2.0","id":42,"method":"tools/call","params":params}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 42, "{body}");
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    gw.stop().await;
}
