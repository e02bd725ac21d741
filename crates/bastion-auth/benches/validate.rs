//! Per-request cost of token validation with cached keys.
//!
//! For each algorithm: `baseline` is a bare `jsonwebtoken::decode` of the token
//! with the key in hand (the floor any validator pays for a signature check);
//! `first_sight` is the verifier on a token it has not seen (header checks, key
//! lookup, signature, claims, principal); `cached` is the verifier on a token it
//! has already validated (the common case: clients reuse a token for many
//! requests). Report `first_sight/baseline` and `cached/baseline`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_debug_implementations,
    reason = "benchmark code"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bastion_auth::Credentials;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, Validation};
use support::*;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, key) in [
        ("ES256", Key::es256("es")),
        ("EdDSA", Key::ed25519("ed")),
        ("RS256", Key::rs256("rs")),
    ] {
        let idp = rt.block_on(Idp::start(&[&key]));
        let v = verifier(config(&idp.issuer), Duration::from_secs(10));
        let warm = format!("Bearer {}", key.sign(&claims(&idp.issuer, "alice")));
        let run = |h: &str| {
            let a = [Some(h)];
            rt.block_on(v.authenticate(&Credentials {
                authorization: &a,
                dpop: &[],
                method: "POST",
            }))
            .unwrap()
        };
        run(&warm); // fetches the JWKS once

        let dk = DecodingKey::from_jwk(&serde_json::from_value(key.jwk.clone()).unwrap()).unwrap();
        let mut val = Validation::new(key.alg);
        val.validate_aud = false;
        let raw = warm.trim_start_matches("Bearer ").to_owned();
        let mut g = c.benchmark_group(format!("validate/{name}"));
        g.bench_function("baseline", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(&raw, &dk, &val).unwrap();
            })
        });
        g.bench_function("first_sight", |b| {
            b.iter_custom(|iters| {
                let toks: Vec<String> = (0..iters)
                    .map(|_| format!("Bearer {}", key.sign(&claims(&idp.issuer, "alice"))))
                    .collect();
                let t0 = Instant::now();
                for t in &toks {
                    run(t);
                }
                t0.elapsed()
            })
        });
        g.bench_function("cached", |b| b.iter(|| run(&warm)));
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
