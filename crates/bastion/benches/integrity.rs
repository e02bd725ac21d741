//! Cost of tool integrity in the request path.
//!
//! - `call/integrity`: what a `tools/call` adds: the pin lookup of the
//!   definition the context listed, the argument size and depth bounds, and
//!   validation against the pinned (cached, compiled) input schema of a
//!   typical tool; baseline `call/parse_request`: parsing the same call's
//!   JSON-RPC body, which every call already pays.
//! - `list200/judge`: judging a 200-tool `tools/list` page (canonical JSON,
//!   SHA-256 and pin lookup per tool, all approved); baseline
//!   `list200/parse_result`: parsing that page's JSON.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_debug_implementations,
    reason = "benchmark code"
)]

use std::hint::black_box;

use bastion::audit::MemorySink;
use bastion::integrity::pins::Pins;
use bastion::integrity::{self, DefKind};
use bastion::state::store::{Backend, Sqlite};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn tool(i: usize) -> Value {
    json!({
        "name": format!("search_{i}"),
        "title": "Search documents",
        "description": "Searches the document index for the query and returns the best matches with their scores.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 512},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "filters": {"type": "object", "properties": {
                    "author": {"type": "string"},
                    "after": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 10}
                }, "additionalProperties": false}
            },
            "required": ["query"],
            "additionalProperties": false
        },
        "annotations": {"readOnlyHint": true, "openWorldHint": false}
    })
}

fn bench(c: &mut Criterion) {
    let cfg = bastion::config::Config::parse(
        "[policy]\ndangerous_allow_all = true\n[auth]\nmode = \"dangerous_none\"\n[[upstream]]\nname = \"docs\"\ntransport = \"http\"\nurl = \"http://127.0.0.1:1/mcp\"\n",
        "bench.toml",
    )
    .unwrap();
    let pins = Pins::new(
        &cfg.upstreams,
        Default::default(),
        std::sync::Arc::new(bastion_detect::Engine::new().unwrap()),
        cfg.detection.tool_definitions,
    );
    let store = Backend::Embedded(Sqlite::new(None));
    let audit = MemorySink::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let tools: Vec<Value> = (0..200).map(tool).collect();
    rt.block_on(async {
        for t in &tools {
            let name = t["name"].as_str().unwrap();
            pins.observe(
                &store,
                &audit,
                "docs",
                DefKind::Tool,
                name,
                t,
                &integrity::hash(t),
                bastion::integrity::pins::Seen::Inventory,
            )
            .await;
        }
    });

    let hash0 = integrity::hash(&tools[0]);
    let body = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "docs__search_0",
        "arguments": {"query": "quarterly revenue", "limit": 10, "filters": {"author": "kim", "after": "2026-01-01", "tags": ["finance", "q3"]}}}}))
    .unwrap();
    let args: Value =
        serde_json::from_slice::<Value>(&body).unwrap()["params"]["arguments"].clone();
    let mut g = c.benchmark_group("call");
    g.bench_function("parse_request", |b| {
        b.iter(|| black_box(bastion_proto::Message::parse(black_box(&body), 4 << 20).unwrap()))
    });
    g.bench_function("integrity", |b| {
        b.iter(|| {
            let st = pins.standing("docs", DefKind::Tool, "search_0", black_box(&hash0));
            assert!(pins.exposed("docs", st));
            assert!(!integrity::size_exceeds(black_box(&args), 256 << 10));
            assert!(integrity::depth_exceeds(black_box(&args), 32).is_none());
            let (input, _) = pins.schemas("docs", "search_0", &hash0).unwrap();
            input.unwrap().check(black_box(&args)).unwrap();
        })
    });
    g.finish();

    let page = serde_json::to_vec(&json!({"tools": tools})).unwrap();
    let mut g = c.benchmark_group("list200");
    g.bench_function("parse_result", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(&page)).unwrap()))
    });
    g.bench_function("judge", |b| {
        b.iter(|| {
            for t in &tools {
                let h = integrity::hash(black_box(t));
                let name = t["name"].as_str().unwrap();
                let st = pins.standing("docs", DefKind::Tool, name, &h);
                assert!(pins.exposed("docs", st));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
