#!/usr/bin/env bash
# Audit trail throughput under gateway load: bastion (default fsync policy,
# every answer waits for its records to be durable) in front of bench-echo,
# driven by bench-load; then the trail is verified and its records counted.
#
#   bench/audit_load.sh                          # concurrency 64, 10 s + 2 s warm-up
#   BENCH_CONCURRENCY=16 BENCH_DURATION=5 bench/audit_load.sh
#
# Reports: calls answered in the measured window, audit records written per
# second over the whole run, and whether every answered call has its record.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
conc=${BENCH_CONCURRENCY:-64}
dur=${BENCH_DURATION:-10}
warm=${BENCH_WARMUP:-2}
fsync=${BENCH_FSYNC:-batch}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

cargo build --release --quiet -p bastion -p bench-echo -p bench-load
bin="$root/target/release"
p_echo=$(free_port); p_gw=$(free_port)
"$bin/bench-echo" --listen "127.0.0.1:$p_echo" & pids+=($!)
wait_port "$p_echo"
cat > "$work/bastion.toml" <<TOML
[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:$p_gw"
[auth]
mode = "dangerous_none"
[audit]
path = "$work/audit/trail.jsonl"
fsync = "$fsync"
[[upstream]]
name = "echo"
transport = "http"
url = "http://127.0.0.1:$p_echo/mcp"
prefix = ""
TOML
start=$(date +%s.%N)
BASTION_LOG=warn "$bin/bastion" serve --config "$work/bastion.toml" & gw=$!
wait_port "$p_gw"
"$bin/bench-load" --url "http://127.0.0.1:$p_gw/mcp" --concurrency "$conc" --duration-secs "$dur" \
    --warmup-secs "$warm" --tool echo --arguments '{"message":"hello from bench-load"}' --json > "$work/load.json"
kill -TERM "$gw"; wait "$gw" || true
end=$(date +%s.%N)
python3 - "$work" "$start" "$end" "$conc" "$fsync" <<'PY'
import json, sys, subprocess, glob
work, start, end, conc, fsync = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
load = json.load(open(f"{work}/load.json"))
files = sorted(f for f in glob.glob(f"{work}/audit/trail.jsonl*") if not f.endswith(".key"))
records = calls = 0
first = last = None
for f in files:
    for line in open(f):
        r = json.loads(line)
        ev = r.get("event")
        if ev is None:
            continue
        records += 1
        t = ev.get("ts_ms", 0)
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
        if ev.get("kind") == "request" and ev.get("method") == "tools/call" and ev.get("outcome") == "ok":
            calls += 1
ok = subprocess.run(["target/release/bastion", "audit", "verify", *files], capture_output=True).returncode == 0
span = max((last - first) / 1000.0, 1e-3)
answered = load.get("requests", 0)
print(json.dumps({
    "concurrency": int(conc), "fsync": fsync,
    "answered_in_window": answered, "answered_per_s": load.get("throughput_rps"),
    "audit_records": records, "audit_records_per_s": round(records / span),
    "audited_tool_calls": calls, "every_answer_audited": calls >= answered,
    "chain_verifies": ok,
}, indent=1))
PY
