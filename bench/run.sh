#!/usr/bin/env bash
# tools/call latency and throughput of MCP gateways, measured in one run and reported
# as ratios against the upstream reached directly.
#
#   bench/run.sh                       # 3 rounds of 10 s + 2 s warm-up per point (~11 min)
#   BENCH_DURATION=5 BENCH_ROUNDS=1 bench/run.sh   # a quick look (~3 min)
#
# Targets (all on 127.0.0.1, each at concurrency 1, 16 and 64):
#   echo upstream (bench-echo, Rust):  direct | bastion | nginx | ContextForge
#   conformance fixture (Python SDK):  direct | bastion
#
# Environment:
#   BENCH_DURATION     measured seconds per point (default 10)
#   BENCH_WARMUP       warm-up seconds per point (default 2)
#   BENCH_CONCURRENCY  space-separated list (default "1 16 64")
#   BENCH_ROUNDS       rounds over all echo and fixture points (default 3); the table
#                      shows medians, which keeps a noisy neighbour from deciding it
#   BENCH_CF_DURATION  measured seconds for ContextForge (default: BENCH_DURATION)
#   BENCH_CF_WARMUP    warm-up seconds for ContextForge (default 5: at concurrency 64
#                      one round of calls takes seconds there)
#   BENCH_CF_MIN_REQUESTS  ContextForge windows extend until this many calls
#                      completed (default 100), so its percentiles have samples
#   BENCH_SKIP         space-separated targets to leave out: nginx contextforge fixture
#   BENCH_RESULTS      results directory (default bench/results/<UTC timestamp>)
#
# Everything started here is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
concurrencies=${BENCH_CONCURRENCY:-"1 16 64"}
rounds=${BENCH_ROUNDS:-3}
cf_duration=${BENCH_CF_DURATION:-$duration}
cf_warmup=${BENCH_CF_WARMUP:-5}
cf_min_requests=${BENCH_CF_MIN_REQUESTS:-100}
skip=" ${BENCH_SKIP:-} "
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=${BENCH_RESULTS:-$here/results/$stamp}
raw="$results/raw"
mkdir -p "$raw" "$results/logs"
: > "$results/manifest.tsv"
: > "$results/notes.txt"

# Configs, logs, sqlite and audit files live here; the audit log of a run can reach
# hundreds of MB, so this is deleted at exit and only the small logs are kept.
work=$(mktemp -d "${TMPDIR:-/tmp}/bastion-bench.XXXXXX")

cf_pin="mcp-contextforge-gateway==1.0.7.post20260921"
cf_venv="$root/.peers/bench-cf-venv"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
note() { printf '%s\n' "$*" >> "$results/notes.txt"; log "$*"; }
wanted() { [[ "$skip" != *" $1 "* ]]; }

# ---------------------------------------------------------------- process control

pids=()
names=()

# Starts a service in its own session (process group), so stopping it also stops
# any children it spawned, and nothing else.
start() {
    local name=$1
    shift
    setsid "$@" > "$work/$name.log" 2>&1 &
    pids+=("$!")
    names+=("$name")
    log "started $name (pid $!)"
}

stop_one() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

stop_named() {
    local i
    for i in "${!names[@]}"; do
        if [[ "${names[$i]}" == "$1" ]]; then
            stop_one "${pids[$i]}"
        fi
    done
}

cleanup() {
    local rc=$?
    set +e
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_one "${pids[$i]}"
    done
    wait 2>/dev/null
    for f in "$work"/*.log "$work"/nginx/error.log; do
        [[ -f "$f" ]] && tail -n 200 "$f" > "$results/logs/$(basename "$f")"
    done
    rm -rf "$work"
    if ((rc != 0)); then
        log "failed (exit $rc); logs in $results/logs"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints N distinct free loopback ports. The OS picks them; another process could
# still take one before we bind it, which start-up checks then report.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits until URL answers anything over HTTP (any status) while PID lives.
wait_http() {
    local url=$1 pid=$2 secs=$3 code
    for _ in $(seq $((secs * 10))); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [[ "$code" != "000" && -n "$code" ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

last_pid() { echo "${pids[${#pids[@]} - 1]}"; }

# ---------------------------------------------------------------- install

t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "results: $results"

if wanted nginx && ! command -v nginx >/dev/null; then
    log "installing nginx (apt-get)"
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx; } \
        > "$results/logs/apt.log" 2>&1; then
        note "nginx: not measured: apt-get install nginx failed (see logs/apt.log)"
        skip+=" nginx "
    fi
fi

if wanted contextforge; then
    if [[ ! -x "$cf_venv/bin/mcpgateway" || "$(cat "$cf_venv/bench.stamp" 2>/dev/null)" != "$cf_pin" ]]; then
        log "installing $cf_pin into $cf_venv (PyPI)"
        rm -f "$cf_venv/bench.stamp"
        if python3 -m venv "$cf_venv" > "$results/logs/cf-install.log" 2>&1 \
            && "$cf_venv/bin/pip" install --disable-pip-version-check -q "$cf_pin" \
                >> "$results/logs/cf-install.log" 2>&1; then
            echo "$cf_pin" > "$cf_venv/bench.stamp"
        else
            note "ContextForge: not measured: pip install $cf_pin failed (see logs/cf-install.log)"
            skip+=" contextforge "
        fi
    fi
fi

if wanted fixture; then
    log "installing the conformance fixture (tests/peers/install.sh)"
    if ! bash tests/peers/install.sh > "$results/logs/peers-install.log" 2>&1; then
        note "conformance fixture: not measured: tests/peers/install.sh failed (see logs/peers-install.log)"
        skip+=" fixture "
    fi
fi

# What was measured: the tree as it is when the binaries are built.
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
log "building release binaries"
cargo build --release --quiet -p bastion -p bench-echo -p bench-load
bin="$root/target/release"
load="$bin/bench-load"

# ---------------------------------------------------------------- services

read -r p_echo p_bastion p_nginx p_fixture p_bastion_fx p_cf <<< "$(free_ports 6)"

start echo "$bin/bench-echo" --listen "127.0.0.1:$p_echo"
wait_http "http://127.0.0.1:$p_echo/mcp" "$(last_pid)" 10 || { log "bench-echo did not start"; exit 1; }

# bastion in pass-through configuration: one HTTP upstream, no prefix, no auth
# (loopback testing mode), audit to a file as in any real deployment.
bastion_config() { # listen-port upstream-name upstream-url audit-file
    cat <<EOF
[policy]
dangerous_allow_all = true
[server]
listen = "127.0.0.1:$1"

[auth]
mode = "dangerous_none"

[audit]
path = "$4"

[[upstream]]
name = "$2"
transport = "http"
url = "$3"
prefix = ""
EOF
}

bastion_config "$p_bastion" echo "http://127.0.0.1:$p_echo/mcp" "$work/audit-echo.jsonl" > "$work/bastion-echo.toml"
start bastion-echo "$bin/bastion" serve --config "$work/bastion-echo.toml"
wait_http "http://127.0.0.1:$p_bastion/mcp" "$(last_pid)" 20 || { log "bastion did not start"; exit 1; }

if wanted nginx; then
    n="$work/nginx"
    mkdir -p "$n"
    # A plain reverse proxy, tuned the way one would for this traffic: HTTP/1.1 and
    # pooled keep-alive connections upstream, no buffering, no access log.
    cat > "$n/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $n/nginx.pid;
error_log $n/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $n/client_body;
    proxy_temp_path $n/proxy;
    fastcgi_temp_path $n/fastcgi;
    uwsgi_temp_path $n/uwsgi;
    scgi_temp_path $n/scgi;
    upstream echo {
        server 127.0.0.1:$p_echo;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$p_nginx;
        keepalive_requests 1000000;
        location /mcp {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
EOF
    start nginx nginx -e "$n/error.log" -p "$n" -c "$n/nginx.conf"
    if ! wait_http "http://127.0.0.1:$p_nginx/mcp" "$(last_pid)" 10; then
        note "nginx: not measured: it did not start (see logs/nginx.log, logs/error.log)"
        skip+=" nginx "
    fi
fi

if wanted fixture; then
    start fixture "$root/.peers/venv/bin/python" tests/peers/conformance_fixture.py --transport http --port "$p_fixture"
    if wait_http "http://127.0.0.1:$p_fixture/mcp" "$(last_pid)" 30; then
        bastion_config "$p_bastion_fx" fixture "http://127.0.0.1:$p_fixture/mcp" "$work/audit-fixture.jsonl" \
            > "$work/bastion-fixture.toml"
        start bastion-fixture "$bin/bastion" serve --config "$work/bastion-fixture.toml"
        wait_http "http://127.0.0.1:$p_bastion_fx/mcp" "$(last_pid)" 20 || { log "bastion (fixture) did not start"; exit 1; }
    else
        note "conformance fixture: not measured: it did not start (see logs/fixture.log)"
        skip+=" fixture "
    fi
fi

# ---------------------------------------------------------------- measuring

# One point: target name, baseline target name (or "-"), concurrency, round,
# duration, warm-up, then bench-load arguments. A failed point is recorded and the
# run goes on.
measure() {
    local target=$1 base=$2 conc=$3 round=$4 dur=$5 warm=$6
    shift 6
    local out="$raw/$target-c$conc-r$round.json"
    log "round $round: $target at concurrency $conc (${dur} s + ${warm} s warm-up)"
    if "$load" --concurrency "$conc" --duration-secs "$dur" --warmup-secs "$warm" --json "$@" \
        > "$out" 2> "$out.stderr"; then
        rm -f "$out.stderr"
    else
        python3 -c 'import json,sys; print(json.dumps({"failed": sys.argv[1]}))' \
            "$(tail -n 3 "$out.stderr" | tr '\n' ' ')" > "$out"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$base" "$conc" "$round" "$out" >> "$results/manifest.tsv"
}

echo_args=(--tool echo --arguments '{"message":"hello from bench-load"}')

# Echo upstream: the targets take turns at each concurrency, and the rounds repeat
# the whole sequence, so drift of the machine (other tenants, thermal) spreads over
# all of them; each gateway point is compared with the direct point seconds before.
for r in $(seq "$rounds"); do
    for c in $concurrencies; do
        measure direct - "$c" "$r" "$duration" "$warmup" --url "http://127.0.0.1:$p_echo/mcp" "${echo_args[@]}"
        measure bastion direct "$c" "$r" "$duration" "$warmup" --url "http://127.0.0.1:$p_bastion/mcp" "${echo_args[@]}"
        if wanted nginx; then
            measure nginx direct "$c" "$r" "$duration" "$warmup" --url "http://127.0.0.1:$p_nginx/mcp" "${echo_args[@]}"
        fi
    done
done

if wanted fixture; then
    fx_args=(--tool test_simple_text --arguments '{}')
    for r in $(seq "$rounds"); do
        for c in $concurrencies; do
            measure fixture-direct - "$c" "$r" "$duration" "$warmup" --url "http://127.0.0.1:$p_fixture/mcp" "${fx_args[@]}"
            measure fixture-bastion fixture-direct "$c" "$r" "$duration" "$warmup" --url "http://127.0.0.1:$p_bastion_fx/mcp" "${fx_args[@]}"
        done
    done
    # The Python fixture takes a core when busy; stop it before ContextForge runs.
    stop_named bastion-fixture
    stop_named fixture
fi

# ContextForge runs last and alone: it is started only now so its background work
# (health checks, metrics) cannot disturb the other targets.
contextforge() {
    local cf="$work/cf" py="$cf_venv/bin/python"
    mkdir -p "$cf"
    (cd "$cf" && "$py" -m mcpgateway.scripts.init_secrets --force --output .env.secrets) > "$work/cf-secrets.log" 2>&1 \
        || { note "ContextForge: not measured: init_secrets failed"; return 0; }
    # The settings peers.md found to work: sqlite, admin API on, UI off, JWT auth
    # on, loopback upstreams allowed, and rate limiting off (its default 100/min
    # with a lockout would end a benchmark within seconds).
    cat > "$cf/start.sh" <<EOF
set -a; . ./.env.secrets; set +a
export DATABASE_URL=sqlite:///./mcp.db HOST=127.0.0.1 PORT=$p_cf \
  MCPGATEWAY_UI_ENABLED=false MCPGATEWAY_ADMIN_API_ENABLED=true \
  PLATFORM_ADMIN_EMAIL=admin@example.com AUTH_REQUIRED=true \
  SSRF_ALLOW_LOCALHOST=true SSRF_ALLOW_PRIVATE_NETWORKS=true \
  RATE_LIMITING_ENABLED=false RATE_LIMIT_LOCKOUT_ENABLED=false
exec "$cf_venv/bin/mcpgateway" --host 127.0.0.1 --port $p_cf
EOF
    start contextforge bash -c "cd '$cf' && exec bash start.sh"
    local pid
    pid=$(last_pid)
    # First start creates and migrates the sqlite database: give it a minute.
    local ok=""
    for _ in $(seq 900); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$p_cf/health" || true)" == 200 ]]; then
            ok=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n "$ok" ]] || { note "ContextForge: not measured: /health never answered 200 (see logs/contextforge.log)"; return 0; }

    local token
    token=$(cd "$cf" && set -a && . ./.env.secrets && set +a \
        && "$py" -m mcpgateway.utils.create_jwt_token --username admin@example.com --exp 120 --secret "$JWT_SECRET_KEY" 2>/dev/null) \
        || { note "ContextForge: not measured: could not mint a token"; return 0; }
    local auth="Authorization: Bearer $token"
    local api="http://127.0.0.1:$p_cf"

    # Register the echo server as a gateway; ContextForge discovers its tools.
    curl -s -X POST -H "$auth" -H 'Content-Type: application/json' \
        -d "{\"name\":\"bench-echo\",\"url\":\"http://127.0.0.1:$p_echo/mcp\",\"transport\":\"STREAMABLEHTTP\"}" \
        "$api/gateways" > "$work/cf-gateway.json" || true
    local gw
    gw=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("id",""))' "$work/cf-gateway.json" 2>/dev/null || true)
    [[ -n "$gw" ]] || { note "ContextForge: not measured: gateway registration failed: $(head -c 300 "$work/cf-gateway.json")"; return 0; }

    local tool_id="" tool_name="" found
    # Tool discovery can lag the registration answer: look for up to ten seconds.
    for _ in $(seq 20); do
        curl -s -H "$auth" "$api/tools" > "$work/cf-tools.json" || true
        found=$(python3 - "$work/cf-tools.json" "$gw" <<'EOF' || true
import json, sys
tools = json.load(open(sys.argv[1]))
tools = tools.get("items", tools) if isinstance(tools, dict) else tools
for t in tools:
    if t.get("gatewayId") == sys.argv[2] and t.get("originalName") == "echo":
        print(t["id"], t["name"])
        break
EOF
        )
        read -r tool_id tool_name <<< "$found" || true
        [[ -n "$tool_id" ]] && break
        sleep 0.5
    done
    [[ -n "${tool_id:-}" ]] || { note "ContextForge: not measured: the echo tool did not appear in /tools"; return 0; }

    # A virtual server exposing that one tool is what MCP clients connect to.
    curl -s -X POST -H "$auth" -H 'Content-Type: application/json' \
        -d "{\"server\":{\"name\":\"bench-echo-vs\",\"associated_tools\":[\"$tool_id\"]}}" \
        "$api/servers" > "$work/cf-server.json" || true
    local sid
    sid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("id",""))' "$work/cf-server.json" 2>/dev/null || true)
    [[ -n "$sid" ]] || { note "ContextForge: not measured: virtual server creation failed: $(head -c 300 "$work/cf-server.json")"; return 0; }

    note "ContextForge $("$py" -c 'import importlib.metadata as m; print(m.version("mcp-contextforge-gateway"))'): one uvicorn worker, sqlite, JWT auth; tool exposed as \"$tool_name\" at /servers/$sid/mcp; ${cf_duration} s + ${cf_warmup} s warm-up per point, window extended until ${cf_min_requests} calls completed, one round (it takes ~50 ms per call or more, so it gets fewer samples: see the requests and window columns); its ratios are against the median direct point"
    for c in $concurrencies; do
        measure contextforge direct "$c" 1 "$cf_duration" "$cf_warmup" --url "$api/servers/$sid/mcp" \
            --tool "$tool_name" --arguments '{"message":"hello from bench-load"}' --header "$auth" \
            --timeout-secs 60 --min-requests "$cf_min_requests"
    done
    stop_named contextforge
}

if wanted contextforge; then
    contextforge
fi

# ---------------------------------------------------------------- report

t_end=$(date +%s)
{
    echo "date (UTC): $stamp"
    echo "host: $(uname -srm), $(nproc) cores"
    echo "tree: $revision"
    command -v nginx >/dev/null && echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///')"
    echo "per point: ${duration} s measured after ${warmup} s warm-up; concurrency: $concurrencies; rounds: $rounds (medians shown)"
    echo "load average at start / end: $load_start / $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wall time: $((t_end - t_start)) s"
} > "$results/meta.txt"

python3 "$here/report.py" "$results" | tee "$results/table.txt"
log "raw results and table in $results"
