#!/usr/bin/env bash
# Run the official Python SDK client end-to-end tests (tests/peers/test_sdk_client.py)
# against URL, on both protocol revisions (2025-11-25 and 2026-07-28).
#
#   tests/peers/run_sdk_tests.sh URL [PREFIX]
#
#   URL     Streamable HTTP endpoint serving the conformance fixture's tools, resources
#           and prompts, e.g. http://127.0.0.1:8931/mcp (the fixture itself, or the
#           gateway in front of it)
#   PREFIX  prefix the server puts in front of tool and prompt names (default: none);
#           resource URIs are never prefixed
#
# Installs the pinned peers first (tests/peers/install.sh). Exit status is pytest's:
# 0 when every test passed, non-zero otherwise.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || -z "$1" ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bash "$here/install.sh"

cd "$root"
export MCP_URL=$1
export MCP_TOOL_PREFIX=${2-}
echo "run_sdk_tests.sh: mcp SDK client tests against $MCP_URL (tool prefix '${MCP_TOOL_PREFIX}')"
# Nothing is written into the work tree: no .pytest_cache (-p no:cacheprovider), no
# __pycache__ from pytest's assertion rewriting. pytest prints its own "N passed"
# summary line; exec hands its exit status to the caller.
export PYTHONDONTWRITEBYTECODE=1
exec "$root/.peers/venv/bin/python" -m pytest tests/peers/test_sdk_client.py -q -p no:cacheprovider
