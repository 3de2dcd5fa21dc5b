#!/usr/bin/env bash
# Many health checks on one agent: CHECKS checks (half HTTP, half TCP) at a 10 s interval
# against a local target, and what running them costs the agent: CPU (share of one core, over
# WINDOW seconds) and resident memory added. Target (issue 8): under 5 % of one core and under
# 50 MB for 10,000 checks.
#
#   bash benches/checks_load.sh                 # 10,000 checks, 60 s window
#   CHECKS=2000 WINDOW=30 bash benches/checks_load.sh
#   AGENT=client bash benches/checks_load.sh    # the checks on a client agent of a -dev server
#
# A -dev agent is a server: its memory also holds the replicated catalog (every check twice: the
# agent's own copy and the state machine's) and the Raft log since the last snapshot. A client
# agent, where checks usually run, holds only its own.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKS=${CHECKS:-10000}
WINDOW=${WINDOW:-60}
INTERVAL=${INTERVAL:-10s}
AGENT=${AGENT:-dev}

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install $tool"; exit 1; }
done
cargo build --release --locked -p muster --bin muster --quiet
cargo build --release --locked -p muster-benches --example check_target --example probe_floor --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); lan=$(free_port); wan=$(free_port); server=$(free_port); target=$(free_port)
work=$(mktemp -d)
cleanup() { kill -9 "${agent_pid:-}" "${server_pid:-}" "${target_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$target_dir/release/examples/check_target" "$target" & target_pid=$!
"$target_dir/release/muster" agent -dev -node=load -dns-port=-1 -http-port="$http" -serf-lan-port="$lan" \
  -serf-wan-port="$wan" -server-port="$server" >"$work/agent.log" 2>&1 & agent_pid=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/v1/status/leader" | grep -q ':' && break; sleep 0.1; done
if [ "$AGENT" = client ]; then
  server_pid=$agent_pid
  http=$(free_port); client_lan=$(free_port)
  "$target_dir/release/muster" agent -node=load-client -data-dir="$work/client" -bind=127.0.0.1 -dns-port=-1 \
    -http-port="$http" -serf-lan-port="$client_lan" -server-port="$(free_port)" \
    -retry-interval=1s -retry-join="127.0.0.1:$lan" >"$work/client.log" 2>&1 & agent_pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$http/v1/catalog/nodes" | grep -q load-client && break; sleep 0.1; done
fi
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$agent_pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$agent_pid/stat"; }
sleep 2
rss_before=$(rss_kib)

started=$(date +%s.%N)
python3 - "$http" "$target" "$CHECKS" "$INTERVAL" <<'PY'
import http.client, json, sys
port, target, n, interval = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    check = {"Name": f"c{i}", "Interval": interval}
    if i % 2 == 0:
        check["HTTP"] = f"http://127.0.0.1:{target}/health"
    else:
        check["TCP"] = f"127.0.0.1:{target}"
    conn.request("PUT", "/v1/agent/check/register", json.dumps(check))
    answer = conn.getresponse(); answer.read()
    if answer.status != 200:
        sys.exit(f"registration {i} refused: {answer.status}")
PY
registered=$(date +%s.%N)

# Every check runs once within the first interval (its stagger), then every interval.
sleep 15
passing=$(curl -s "127.0.0.1:$http/v1/agent/checks" | python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin).values() if c["Status"]=="passing"))')
ticks_before=$(cpu_ticks)
sleep "$WINDOW"
ticks_after=$(cpu_ticks)
rss_after=$(rss_kib)
hz=$(getconf CLK_TCK)

# The floor: the same connections at the same rate from a bare loop, the agent stopped.
kill -9 "$agent_pid" ${server_pid:+"$server_pid"}; agent_pid=; server_pid=
rate=$(( CHECKS / ${INTERVAL%s} ))
"$target_dir/release/examples/probe_floor" "$target" "$rate" & floor_pid=$!
sleep 3
floor_before=$(awk '{print $14 + $15}' "/proc/$floor_pid/stat")
sleep "$WINDOW"
floor_after=$(awk '{print $14 + $15}' "/proc/$floor_pid/stat")
kill -9 "$floor_pid"

python3 - "$CHECKS" "$WINDOW" "$INTERVAL" "$hz" "$AGENT" "$ticks_before" "$ticks_after" "$floor_before" "$floor_after" "$rate" "$rss_before" "$rss_after" "$started" "$registered" "$passing" <<'PY'
import sys
n, window, interval, hz, agent, t0, t1, f0, f1, rate, r0, r1, s0, s1, passing = sys.argv[1:]
n, window, hz = int(n), int(window), int(hz)
cpu = (int(t1) - int(t0)) / hz / window * 100
floor = (int(f1) - int(f0)) / hz / window * 100
print()
print(f"{n} checks ({n // 2} HTTP, {n - n // 2} TCP) every {interval} on one agent ({'a client of a -dev server' if agent == 'client' else '-dev'}), release build")
print()
print("| measure | value |")
print("|---|---|")
print(f"| registering them all (one PUT each, each synced to the catalog) | {float(s1) - float(s0):.1f} s |")
print(f"| passing after the first interval | {passing} of {n} |")
print(f"| agent CPU over {window} s | {cpu:.2f} % of one core |")
print(f"| the same {rate} connections a second from a bare loop (the floor) | {floor:.2f} % of one core |")
print(f"| agent CPU above the floor | {cpu - floor:.2f} % of one core |")
print(f"| agent RSS before / after | {int(r0) / 1024:.1f} MiB / {int(r1) / 1024:.1f} MiB (+{(int(r1) - int(r0)) / 1024:.1f} MiB) |")
PY
