#!/usr/bin/env bash
# Runs the gateway on loopback in front of its built-in demo upstream.
# Needs only the Rust toolchain pinned in rust-toolchain.toml. The first debug
# build takes about 3 minutes on a 2-core machine (seconds after that); a
# debug build is used because a release build takes several times longer.
# `cargo build --release` is what a deployment (or a benchmark) wants.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p bastion
echo "bastion is $PWD/target/debug/bastion; to call it by name in this shell:"
echo "  export PATH=\"$PWD/target/debug:\$PATH\""
exec ./target/debug/bastion demo "$@"
