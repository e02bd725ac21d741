//! Detection engine throughput: benign text (target ≥ 200 MB/s per core) and one 1 KB tool
//! result with every detector on (target ≤ 20 µs), each beside a same-run baseline.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::hint::black_box;

use bastion_detect::{Engine, RedactKinds};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Benign prose and data of the kinds tools return (documentation, records, code).
const BENIGN: &str = "The quarterly report summarizes revenue by region and product line. Sales in the northern \
region grew by 12 percent compared with the previous quarter, driven mostly by renewals of existing contracts. \
The team shipped version 2.4 of the client library, which adds retry support and fixes a memory leak in the \
connection pool. To configure the service, set the timeout in the settings file and restart the process; the \
default is thirty seconds. Meeting notes: the design review is moved to Thursday at 10:00, and the agenda \
covers the migration plan, the test matrix and the rollout schedule for the new storage backend.\n\
| Region | Q1 | Q2 | Q3 |\n| North | 1200 | 1310 | 1460 |\n| South | 980 | 1010 | 1090 |\n\
fn main() { let total: u64 = values.iter().sum(); println!(\"{total}\"); }\n";

fn one_kb_result() -> String {
    let mut s = String::new();
    while s.len() < 1024 {
        s.push_str(BENIGN);
    }
    s.truncate(1024);
    s
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new().unwrap();
    let mut big = String::new();
    while big.len() < 256 * 1024 {
        big.push_str(BENIGN);
    }
    let mut group = c.benchmark_group("benign_256k");
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("scan_text", |b| {
        b.iter(|| black_box(engine.scan_text(black_box(&big))))
    });
    // Baseline: one case-insensitive regex for one word over the same text, the least any
    // scanner does.
    let word = regex::Regex::new(r"(?i)\bignore\b").unwrap();
    group.bench_function("baseline_one_regex", |b| {
        b.iter(|| black_box(word.find_iter(black_box(&big)).count()))
    });
    group.finish();

    let result = one_kb_result();
    let wrapped =
        serde_json::json!({"content": [{"type": "text", "text": result}], "isError": false});
    let body = serde_json::to_string(&wrapped).unwrap();
    let mut group = c.benchmark_group("result_1k");
    group.throughput(Throughput::Bytes(result.len() as u64));
    // What the gateway does per result: every detector over every string, and redaction
    // only when the scan found something to redact.
    group.bench_function("all_detectors", |b| {
        b.iter(|| {
            let mut value = black_box(&wrapped).clone();
            let report = engine.scan_value(&value);
            if report.has_sensitive() {
                let kinds = RedactKinds {
                    secrets: true,
                    personal_data: true,
                };
                engine.redact_value(&mut value, kinds);
            }
            black_box((report, value))
        });
    });
    // Baseline: parsing the result's JSON body, which the gateway does anyway.
    group.bench_function("baseline_parse_json", |b| {
        b.iter(|| black_box(serde_json::from_str::<serde_json::Value>(black_box(&body)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
