//! Cost of the per-request session lookup on each state backend.
//!
//! - `embedded/lookup`: the gateway's in-process session map, as every
//!   2025-11-25 request does it; baseline `embedded/hashmap`: a bare `HashMap`
//!   lookup of the same key.
//! - `redis/get_session`: `GETEX` of the HMAC'd record plus its integrity check
//!   and decoding (one round trip); baseline `redis/ping`: one `PING` round trip
//!   on the same connection manager, measured in the same run.
//!
//! Starts `redis-server` on a free loopback port (skipped, with a note, if the
//! binary is missing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_debug_implementations,
    reason = "benchmark code"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bastion::state::store::{RedisStore, SessionRecord};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/common/redis_server.rs"]
mod redis_server;

fn record() -> SessionRecord {
    SessionRecord {
        principal: "https://idp.example alice".into(),
        client_id: Some("app".into()),
        scopes: vec!["mcp:tools".into()],
        origin: None,
        user_agent: Some("bench".into()),
        client_ip: Some("127.0.0.1".into()),
        created: bastion_auth::now_secs(),
        version: "2025-11-25".into(),
        capabilities: serde_json::json!({"sampling": {}}),
        client_info: serde_json::json!({"name": "bench", "version": "0"}),
    }
}

fn bench(c: &mut Criterion) {
    // Embedded: the map the gateway keeps (id → Arc<session>), 10,000 sessions.
    let map: Arc<parking_lot::RwLock<HashMap<String, Arc<SessionRecord>>>> = Arc::default();
    let ids: Vec<String> = (0..10_000).map(|i| format!("{i:043}")).collect();
    for id in &ids {
        map.write().insert(id.clone(), Arc::new(record()));
    }
    let plain: HashMap<String, u32> = ids.iter().map(|i| (i.clone(), 1)).collect();
    let probe = ids[4242].clone();
    let mut g = c.benchmark_group("embedded");
    g.bench_function("hashmap", |b| {
        b.iter(|| black_box(plain.get(black_box(&probe))))
    });
    g.bench_function("lookup", |b| {
        b.iter(|| black_box(map.read().get(black_box(&probe)).cloned()))
    });
    g.finish();

    if redis_server::binary().is_none() {
        eprintln!("redis-server not found: Redis benchmarks skipped");
        return;
    }
    let server = redis_server::Redis::start(redis_server::free_port());
    let port = server.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = RedisStore::new(
        &format!("redis://127.0.0.1:{port}/0"),
        "bench:",
        &bastion::state::keyring::Keyring::random(),
    )
    .unwrap();
    let sid = "bench-session-id-000000000000000000000000000";
    rt.block_on(store.put_session(sid, &record(), Duration::from_secs(600), 32))
        .unwrap();
    let mut raw = rt
        .block_on(redis::aio::ConnectionManager::new(
            redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap(),
        ))
        .unwrap();
    let mut g = c.benchmark_group("redis");
    g.bench_function("ping", |b| {
        b.iter(|| {
            rt.block_on(async {
                let _: String = redis::cmd("PING").query_async(&mut raw).await.unwrap();
            })
        })
    });
    g.bench_function("get_session", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(store.get_session(sid, Duration::from_secs(600)))
                    .unwrap(),
            )
        })
    });
    g.finish();
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
