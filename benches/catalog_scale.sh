#!/usr/bin/env bash
# A large catalog on one server (issue 23), after Consul's Global Scale Benchmark (10,000 nodes,
# 172,000 service instances): for each size in NODES, a fresh `muster agent -server -bootstrap`
# with a data directory gets that many nodes with 10 service instances each through
# /v1/catalog/register (64 connections), and the table shows how each cost grows: registration
# rate, resident memory, snapshot size, save and restore times, the latency of
# /v1/health/service/<name>?passing and of a DNS SRV query, and the time from a restart to a
# leader answering with the whole catalog again.
#
#   bash benches/catalog_scale.sh                  # 1,000, 10,000 and 50,000 nodes
#   NODES="1000" bash benches/catalog_scale.sh     # quick mode (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-1000 10000 50000}

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install $tool"; exit 1; }
done
cargo build --release --locked -p muster --bin muster --quiet
cargo build --release --locked -p muster-benches --example catalog_scale --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
cleanup() { kill -9 "${agent_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_server() { # data dir, ports
  "$target_dir/release/muster" agent -server -bootstrap -data-dir="$1" -bind=127.0.0.1 -client=127.0.0.1 -node=scale \
    -http-port="$http" -dns-port="$dns" -serf-lan-port="$lan" -serf-wan-port="$wan" -server-port="$server" \
    >>"$1.log" 2>&1 & agent_pid=$!
}

# Seconds until the server answers a consistent read of one service with all its instances.
wait_for_catalog() { # expected instances of svc-7
  local started=$(date +%s.%N)
  for _ in $(seq 6000); do
    count=$(curl -sf "127.0.0.1:$http/v1/catalog/service/svc-7?consistent" 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
    [ "$count" = "$1" ] && { python3 -c "print(f'{$(date +%s.%N) - $started:.2f}')"; return; }
    sleep 0.05
  done
  echo "the catalog did not come back with $1 instances of svc-7" >&2; exit 1
}

echo "A catalog of N nodes x 10 service instances on one server (release build, $(nproc) cores)"
echo
echo "| nodes | instances | registrations/s | RSS idle -> loaded | snapshot | save | restore | health ?passing p50 / p99 | DNS SRV p50 / p99 | restart to full catalog |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for n in $NODES; do
  http=$(free_port); dns=$(free_port); lan=$(free_port); wan=$(free_port); server=$(free_port)
  dir="$work/n$n"
  start_server "$dir"
  for _ in $(seq 200); do curl -sf "127.0.0.1:$http/v1/status/leader" | grep -q ':' && break; sleep 0.05; done
  sleep 1
  line=$("$target_dir/release/examples/catalog_scale" --addr "127.0.0.1:$http" --dns "127.0.0.1:$dns" \
    --pid "$agent_pid" --nodes "$n")
  kill -TERM "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
  start_server "$dir"
  restart=$(wait_for_catalog $(( n * 10 / 1000 )))
  kill -9 "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=
  python3 - "$line" "$restart" <<'PY'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split())
print(f"| {int(f['nodes']):,} | {int(f['instances']):,} | {float(f['register_per_s']):,.0f} | {f['rss_idle_mb']} -> {f['rss_mb']} MB "
      f"| {f['snapshot_mb']} MB | {f['save_s']} s | {f['restore_s']} s | {f['health_p50_ms']} / {f['health_p99_ms']} ms "
      f"| {f['dns_p50_ms']} / {f['dns_p99_ms']} ms | {sys.argv[2]} s |")
PY
done
