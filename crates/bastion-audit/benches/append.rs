//! Sustained append throughput: events per second through the writer until
//! they are durable, under the default fsync policy (group commit per batch),
//! with an fsync per record, and with no fsync, against serializing the same
//! events to memory (the baseline, same run).

#![allow(
    clippy::unwrap_used,
    missing_debug_implementations,
    reason = "benchmark code"
)]

use std::hint::black_box;
use std::time::Duration;

use bastion_audit::{Fsync, Signer, Writer, WriterConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

fn event(i: u64) -> serde_json::Value {
    json!({"ts_ms": 1_732_000_000_000u64.saturating_add(i), "kind": "request", "outcome": "ok",
           "request_id": format!("req-{i}"), "principal": "alice", "issuer": "https://idp.example",
           "client_id": "app", "session": "3f2a9c0d11e2b3a4", "lane": "legacy", "http_method": "POST",
           "method": "tools/call", "target": "files__read_file", "status": 200, "duration_us": 812})
}

fn bench(c: &mut Criterion) {
    const N: u64 = 10_000;
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("baseline: canonical JSON to memory", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            for i in 0..N {
                bastion_audit::canonical::write(&event(i), &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
    for (name, fsync) in [
        ("batch (default)", Fsync::Batch),
        ("dangerous_none", Fsync::DangerousNone),
        ("always", Fsync::Always),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::open(WriterConfig {
            path: dir.path().join("a.jsonl"),
            signer: Signer::generate().unwrap().0,
            checkpoint_every: 1000,
            checkpoint_idle: Duration::from_secs(5),
            fsync,
            rotate_bytes: 1 << 30,
            max_queue: 1 << 20,
        })
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let n = if fsync == Fsync::Always { N / 10 } else { N };
        if fsync == Fsync::Always {
            g.throughput(Throughput::Elements(n));
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut last = 0;
                for i in 0..n {
                    last = w.append(event(i));
                }
                rt.block_on(w.wait_durable(last));
            })
        });
        w.close();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
