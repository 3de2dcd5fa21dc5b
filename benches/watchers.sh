#!/usr/bin/env bash
# Many blocking queries on one agent (issue 23): WATCHERS consul-template-style watchers (KV
# keys, service health, the service list) from CLIENTS source addresses held against a -dev
# agent; its memory idle, holding them and after they close, its CPU while they wait, and how
# fast (and how precisely) a write wakes them. Goals: <= 4 KB per waiting watcher, wake p99
# <= 5 ms, idle CPU ~0, memory returned; Consul's Go runtime needs ~16 KB per waiting request.
#
#   bash benches/watchers.sh                    # 10,000 watchers from 100 addresses
#   WATCHERS=1000 bash benches/watchers.sh      # quick mode (CI)
#   KEEP=1 bash benches/watchers.sh             # keeps the agent's log in /tmp/watchers-agent.log
#
# It fails (exit 1) if a watcher answers before a write, or a write wakes a watcher it should
# not or misses one it should; the memory and latency goals are printed beside the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
WATCHERS=${WATCHERS:-10000}
CLIENTS=${CLIENTS:-100}

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install $tool"; exit 1; }
done
# Both ends hold one descriptor per watcher; the agent raises its own soft limit, the load
# generator gets this shell's.
ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -p muster --bin muster --quiet
cargo build --release --locked -p muster-benches --example watchers --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
work=$(mktemp -d)
cleanup() { kill -9 "${agent_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp "$work/agent.log" /tmp/watchers-agent.log; rm -rf "$work"; }
trap cleanup EXIT

"$target_dir/release/muster" agent -dev -node=watch -dns-port=-1 -http-port="$http" \
  -serf-lan-port="$(free_port)" -serf-wan-port="$(free_port)" -server-port="$(free_port)" \
  >"$work/agent.log" 2>&1 & agent_pid=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/v1/status/leader" | grep -q ':' && break; sleep 0.1; done

echo "$WATCHERS blocking queries on one -dev agent (release build, $(nproc) cores)"
echo
"$target_dir/release/examples/watchers" --addr "127.0.0.1:$http" --pid "$agent_pid" \
  --watchers "$WATCHERS" --clients "$CLIENTS"
