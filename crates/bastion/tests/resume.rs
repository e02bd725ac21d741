//! Resumable SSE streams (C3.4): a client that loses a response stream resumes it
//! with GET + Last-Event-ID and gets exactly what it missed; event ids cannot be
//! guessed or moved to another session.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use common::*;
use serde_json::{Value, json};

/// Parses complete SSE events out of `buf` as (id, data).
fn events(buf: &str) -> Vec<(Option<String>, Value)> {
    buf.split("\n\n")
        .filter_map(|ev| {
            let mut id = None;
            let mut data = String::new();
            for line in ev.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (!data.is_empty()).then(|| (id, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn a_lost_response_stream_resumes_where_it_broke() {
    let gw = start(&demo_config("")).await;
    let (s, _) = Legacy::connect(&gw.url, json!({})).await;
    let mut r = s
        .post(&json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{
            "name":"demo__count_slowly","arguments":{"steps":5,"delay_ms":60},"_meta":{"progressToken":"p"}}}))
        .await;
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // Read until the first event, then drop the connection.
    let mut buf = String::new();
    while events(&buf).is_empty() {
        buf.push_str(std::str::from_utf8(&r.chunk().await.unwrap().unwrap()).unwrap());
    }
    let first = events(&buf).remove(0);
    assert_eq!(first.1["params"]["progress"], 1);
    let last_id = first.0.unwrap();
    drop(r);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Resume: everything after event 1, ending with the response.
    let resumed = s
        .http
        .get(&gw.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &s.sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let text = tokio::time::timeout(std::time::Duration::from_secs(5), resumed.text())
        .await
        .expect("the resumed stream ends with the response")
        .unwrap();
    let got = events(&text);
    let progress: Vec<i64> = got
        .iter()
        .filter_map(|(_, m)| m["params"]["progress"].as_i64())
        .collect();
    assert_eq!(progress, [2, 3, 4, 5], "exactly what was missed, in order");
    let last = &got.last().unwrap().1;
    assert_eq!(last["id"], 9);
    assert_eq!(last["result"]["content"][0]["text"], "counted to 5");
    assert!(
        got.iter().all(|(id, _)| id.is_some()),
        "every event has an id"
    );

    // The id is useless in another session, and a forged one is refused.
    let (other, _) = Legacy::connect(&gw.url, json!({})).await;
    for (sid, id) in [(&other.sid, last_id.clone()), (&s.sid, "A".repeat(32))] {
        let r = s
            .http
            .get(&gw.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", sid)
            .header("mcp-protocol-version", "2025-11-25")
            .header("last-event-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert!(
        gw.events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("Last-Event-ID not minted for this session"))
    );
    gw.stop().await;
}
