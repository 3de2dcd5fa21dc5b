#!/usr/bin/env bash
# muster beside etcd on this machine: KV writes and reads over HTTP/1.1, measured by wrk, printed
# as a table.
#
# Both run as one server that fsyncs every write to a log in a temporary data directory: `muster
# agent -server -bootstrap -data-dir` (Raft WAL with group commit) and a single-member etcd
# (Debian's etcd-server). Both are
# driven through HTTP/1.1 with JSON: muster's Consul API (`PUT`/`GET /v1/kv/<key>`) and etcd's
# gRPC gateway (`POST /v3/kv/put`, `/v3/kv/range`). etcd's native clients speak gRPC, which costs
# it less than the gateway's JSON; read the etcd rows as etcd-over-HTTP. Reads: muster's default
# mode (the leader answers from its state under its lease) and `?consistent` (a ReadIndex round
# first), against etcd's default linearizable range and its serializable one. A second table
# gives each process's resident memory idle (after start) and its peak over the whole run.
#
#   bash benches/kv_vs_etcd.sh                 # 10 s per cell, 1, 16 and 64 connections
#   DURATION=30s CONNS="1 64 256" bash benches/kv_vs_etcd.sh
#
# Needs wrk and etcd (apt-get install wrk etcd-server); says so and exits if either is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/wrk_common.sh

DURATION=${DURATION:-10s}
CONNS=${CONNS:-"1 16 64"}
VALUE_BYTES=${VALUE_BYTES:-128}
KEYS=${KEYS:-1000}

require_tools wrk etcd python3

cargo build --release -p muster --bin muster --quiet
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

target/release/muster agent -server -bootstrap -data-dir="$work/muster" -bind=127.0.0.1 -dns-port=-1 -node=bench \
  -http-port=18500 -server-port=18300 -serf-lan-port=18301 -serf-wan-port=18302 >"$work/muster.log" 2>&1 &
muster_pid=$!
pids+=($!)
etcd --name bench --data-dir "$work/etcd" \
  --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
  --initial-cluster bench=http://127.0.0.1:12380 >"$work/etcd.log" 2>&1 &
etcd_pid=$!
pids+=($!)

for _ in $(seq 100); do
  if curl -sf http://127.0.0.1:18500/v1/status/leader | grep -q 18300 &&
    curl -sf -X POST -d '{}' http://127.0.0.1:12379/v3/maintenance/status >/dev/null; then
    break
  fi
  sleep 0.1
done

# Resident memory in KiB: now (VmRSS) and the peak so far (VmHWM).
mem() { awk -v field="$2:" '$1 == field {print $2}' "/proc/$1/status"; }
sleep 1
muster_idle=$(mem "$muster_pid" VmRSS)
etcd_idle=$(mem "$etcd_pid" VmRSS)

write_wrk_scripts "$work" "$KEYS" "$VALUE_BYTES"

# Fill every key once so reads find them.
wrk -t1 -c16 -d2s -s "$work/muster_put.lua" http://127.0.0.1:18500 >/dev/null
wrk -t1 -c16 -d2s -s "$work/etcd_put.lua" http://127.0.0.1:12379 >/dev/null


echo
echo "KV over HTTP/1.1, ${VALUE_BYTES}-byte values, ${KEYS} keys, ${DURATION} per cell, $(nproc) cores"
echo
echo "| system | operation              | conns |      req/s |       p50 |       p99 | non-2xx |"
echo "|--------|------------------------|-------|------------|-----------|-----------|---------|"
for c in $CONNS; do
  run muster "write (PUT)" muster_put http://127.0.0.1:18500 "$c"
  run etcd "write (put)" etcd_put http://127.0.0.1:12379 "$c"
done
for c in $CONNS; do
  run muster "read (default)" muster_get http://127.0.0.1:18500 "$c"
  run muster "read (?consistent)" muster_get_consistent http://127.0.0.1:18500 "$c"
  run etcd "read (linearizable)" etcd_get http://127.0.0.1:12379 "$c"
  run etcd "read (serializable)" etcd_get_serializable http://127.0.0.1:12379 "$c"
done

mib() { awk -v kib="$1" 'BEGIN {printf "%.1f MiB", kib / 1024}'; }
echo
echo "| system | RSS idle  | RSS peak under load |"
echo "|--------|-----------|---------------------|"
printf '| %-6s | %9s | %19s |\n' muster "$(mib "$muster_idle")" "$(mib "$(mem "$muster_pid" VmHWM)")"
printf '| %-6s | %9s | %19s |\n' etcd "$(mib "$etcd_idle")" "$(mib "$(mem "$etcd_pid" VmHWM)")"
