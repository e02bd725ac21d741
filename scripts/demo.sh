#!/usr/bin/env bash
# Runs the gateway on loopback in front of its built-in demo upstream.
# Needs only the Rust toolchain pinned in rust-toolchain.toml (rustup installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p bastion
exec ./target/release/bastion demo "$@"
