//! Decision cost with 10, 100 and 1000 policies (each scoped to one tool and
//! group, as per-team policies are), against a one-policy baseline measured in
//! the same run (the fixed cost of building the request and its entities).

#![allow(
    clippy::unwrap_used,
    missing_debug_implementations,
    reason = "benchmark code"
)]

use std::hint::black_box;
use std::time::Duration;

use bastion_policy::*;
use criterion::{Criterion, criterion_group, criterion_main};

fn engine(n: usize) -> Engine {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "@id(\"p{i}\") permit(principal, action == Bastion::Action::\"tools/call\", resource == Bastion::Tool::\"up{}/tool{i}\") when {{ principal.groups.contains(\"g{}\") && context has arguments && context.arguments.hasTag(\"path\") }};\n",
            i % 10,
            i % 7
        ));
    }
    Engine::new(
        &[Source {
            name: "bench.cedar".into(),
            text,
        }],
        false,
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let groups = vec!["g3".to_string(), "staff".to_string()];
    let scopes = vec!["mcp:tools".to_string()];
    let none: Vec<String> = Vec::new();
    let args = serde_json::json!({"path": "/srv/reports/q3.csv", "limit": 10});
    let access = Access {
        who: Who {
            subject: "alice",
            issuer: "https://idp.example",
            client_id: Some("app"),
            scopes: &scopes,
            groups: &groups,
            roles: &none,
        },
        action: "tools/call",
        target: Target::Item {
            kind: ItemKind::Tool,
            upstream: "up3",
            name: "tool3",
            labels: &none,
            upstream_labels: &none,
            risk: 0,
            annotations: &none,
        },
        context: Circumstances {
            time: 1_732_000_000,
            client_ip: "10.0.0.1",
            session_risk: 0,
            arguments: Some(&args),
        },
    };
    let mut g = c.benchmark_group("decide");
    for n in [1usize, 10, 100, 1000] {
        let e = engine(n);
        assert!(e.decide(&access, ()).is_allow() || n < 4);
        g.bench_function(format!("{n}"), |b| {
            b.iter(|| black_box(e.decide(black_box(&access), ())))
        });
    }
    g.finish();
    // Filtering one upstream's 100-tool list page (one decision per tool,
    // no arguments), with 100 policies: what a tools/list costs the gateway.
    let e = engine(100);
    let names: Vec<String> = (0..100).map(|i| format!("tool{i}")).collect();
    let mut g = c.benchmark_group("filter");
    g.bench_function("100 tools, 100 policies", |b| {
        b.iter(|| {
            black_box(e.visible(
                |n: &String| Access {
                    target: Target::Item {
                        kind: ItemKind::Tool,
                        upstream: "up3",
                        name: n.as_str(),
                        labels: &none,
                        upstream_labels: &none,
                        risk: 0,
                        annotations: &none,
                    },
                    context: Circumstances {
                        arguments: None,
                        ..access.context
                    },
                    ..access
                },
                names.iter(),
            ))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
