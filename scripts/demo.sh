#!/usr/bin/env bash
# Runs the gateway on loopback in front of its built-in demo upstream.
# Needs only the Rust toolchain pinned in rust-toolchain.toml. A debug build is
# used so a fresh machine is serving within about a minute; `cargo build
# --release` is what a deployment (or a benchmark) wants.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p bastion
exec ./target/debug/bastion demo "$@"
