#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, and the
# end-to-end runs with real peers (conformance suite, Python SDK client).
# Installs what it needs idempotently: Debian packages via apt-get, npm and PyPI
# packages into the project-local .peers/ folder.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# prometheus: only for promtool, which checks the /metrics exposition;
# rsyslog(-gnutls): the collector the syslog export is tested against.
for pkg in python3-venv redis-server prometheus rsyslog rsyslog-gnutls; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [[ ${#need_apt[@]} -gt 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --locked -p bastion
# The integration tests start the identity provider (oidc-provider) from here.
bash tests/peers/install.sh
if command -v cargo-nextest >/dev/null; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
bash tests/peers/run_all.sh
