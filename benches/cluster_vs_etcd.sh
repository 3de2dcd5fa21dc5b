#!/usr/bin/env bash
# Three muster servers beside a three-member etcd cluster on this machine: KV writes and reads
# over HTTP/1.1 measured by wrk, then the time a muster cluster takes to accept writes again
# after its leader is killed with SIGKILL, over ROUNDS kills. Prints two tables.
#
# muster: three `muster agent -server -bootstrap-expect=3` processes on loopback, each with a
# data dir (every write fsynced on a majority), formed through -retry-join. Clients talk to one
# server: the leader, or a follower that forwards to it (the "via follower" rows). etcd: three
# members (Debian's etcd-server), clients on member 1, through its JSON gateway (`/v3/kv/put`,
# `/v3/kv/range`), as in kv_vs_etcd.sh. All six processes and wrk share this machine's cores.
#
#   bash benches/cluster_vs_etcd.sh             # 10 s per cell, 16 and 64 connections, 20 kills
#   DURATION=30s CONNS="1 64" ROUNDS=50 bash benches/cluster_vs_etcd.sh
#
# Needs wrk, etcd, curl and python3; says so and exits if one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/wrk_common.sh
OP_WIDTH=27

DURATION=${DURATION:-10s}
CONNS=${CONNS:-"16 64"}
ROUNDS=${ROUNDS:-20}
KEYS=${KEYS:-1000}
VALUE_BYTES=${VALUE_BYTES:-128}

require_tools wrk etcd curl python3

cargo build --release -p muster --bin muster --quiet
work=$(mktemp -d)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Server n: gossip 183n1 (LAN) and 183n2 (WAN), RPC and Raft 183n0, HTTP 185n0.
# Each names the other two in -retry-join, as operators configure servers, so a restarted one
# finds the cluster whichever of them is up.
start_muster() {
  local n=$1 join=() m
  for m in 1 2 3; do [[ $m != "$n" ]] && join+=("-retry-join=127.0.0.1:183${m}1"); done
  target/release/muster agent -server -bootstrap-expect=3 -bind=127.0.0.1 -dns-port=-1 -node="s$n" \
    -data-dir="$work/s$n" -serf-lan-port="183${n}1" -serf-wan-port="183${n}2" \
    -server-port="183${n}0" -http-port="185${n}0" -retry-interval=1s "${join[@]}" >>"$work/s$n.log" 2>&1 &
  pid[s$n]=$!
}
for n in 1 2 3; do start_muster "$n"; done
cluster=""
for n in 1 2 3; do cluster+="e$n=http://127.0.0.1:124${n}0,"; done
for n in 1 2 3; do
  etcd --name "e$n" --data-dir "$work/e$n" \
    --listen-client-urls "http://127.0.0.1:124${n}9" --advertise-client-urls "http://127.0.0.1:124${n}9" \
    --listen-peer-urls "http://127.0.0.1:124${n}0" --initial-advertise-peer-urls "http://127.0.0.1:124${n}0" \
    --initial-cluster "${cluster%,}" --initial-cluster-state new >"$work/e$n.log" 2>&1 &
  pid[e$n]=$!
done

# The HTTP port of the server that leads, once all three agree on one.
leader_http() {
  local seen=() n
  for n in 1 2 3; do
    seen+=("$(curl -sf --max-time 1 "http://127.0.0.1:185${n}0/v1/status/leader" 2>/dev/null || echo none)")
  done
  if [[ ${seen[0]} == "${seen[1]}" && ${seen[1]} == "${seen[2]}" && ${seen[0]} =~ 127.0.0.1:183([123])0 ]]; then
    echo "185${BASH_REMATCH[1]}0"
  fi
}
wait_leader() {
  for _ in $(seq 300); do
    local port
    port=$(leader_http)
    if [[ -n $port ]]; then echo "$port"; return; fi
    sleep 0.1
  done
  echo "no muster leader within 30 s; each server says:" >&2
  for n in 1 2 3; do
    echo "  s$n: $(curl -s --max-time 1 "http://127.0.0.1:185${n}0/v1/status/leader" || echo unreachable)" >&2
    tail -n 5 "$work/s$n.log" >&2
  done
  exit 1
}
leader=$(wait_leader)
follower=$((leader == 18510 ? 18520 : 18510))
for _ in $(seq 100); do
  curl -sf -X POST -d '{}' http://127.0.0.1:12419/v3/maintenance/status >/dev/null && break
  sleep 0.1
done

write_wrk_scripts "$work" "$KEYS" "$VALUE_BYTES"

wrk -t1 -c16 -d2s -s "$work/muster_put.lua" "http://127.0.0.1:$leader" >/dev/null
wrk -t1 -c16 -d2s -s "$work/etcd_put.lua" http://127.0.0.1:12419 >/dev/null


echo
echo "Three servers each, KV over HTTP/1.1, ${VALUE_BYTES}-byte values, ${KEYS} keys, ${DURATION} per cell, $(nproc) cores"
echo
echo "| system | operation                   | conns |      req/s |       p50 |       p99 | non-2xx |"
echo "|--------|-----------------------------|-------|------------|-----------|-----------|---------|"
for c in $CONNS; do
  run muster "write (PUT) on the leader" muster_put "http://127.0.0.1:$leader" "$c"
  run muster "write (PUT) via follower" muster_put "http://127.0.0.1:$follower" "$c"
  run etcd "write (put)" etcd_put http://127.0.0.1:12419 "$c"
done
for c in $CONNS; do
  run muster "read (default) on leader" muster_get "http://127.0.0.1:$leader" "$c"
  run muster "read (default) via follower" muster_get "http://127.0.0.1:$follower" "$c"
  run etcd "read (linearizable)" etcd_get http://127.0.0.1:12419 "$c"
done

# Leader kills: SIGKILL the leader, then time until a write through a survivor is accepted
# (a new leader elected and the survivor forwarding to it); bring the old leader back from its
# data dir and wait for three agreeing servers before the next round.
times=()
for round in $(seq "$ROUNDS"); do
  leader=$(wait_leader)
  n=${leader:3:1}
  survivor=$((n == 1 ? 18520 : 18510))
  kill -9 "${pid[s$n]}"
  wait "${pid[s$n]}" 2>/dev/null || true
  start_ns=$(date +%s%N)
  until [[ $(curl -s --max-time 2 -o /dev/null -w '%{http_code}' -X PUT -d "r$round" \
    "http://127.0.0.1:$survivor/v1/kv/bench/kill") == 200 ]]; do
    sleep 0.005
  done
  times+=($((($(date +%s%N) - start_ns) / 1000000)))
  start_muster "$n"
  wait_leader >/dev/null
  until [[ $(curl -sf "http://127.0.0.1:185${n}0/v1/kv/bench/kill?stale&raw" 2>/dev/null) == "r$round" ]]; do
    sleep 0.05
  done
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
pick() { awk -v q="$1" '{a[NR]=$1} END {i=int(q*NR+0.999); if (i<1) i=1; print a[i]}' <<<"$sorted"; }
echo
echo "Leader killed (SIGKILL) $ROUNDS times: time to the first write accepted through a survivor"
echo
echo "| kills | min | median | p90 | max |"
echo "|-------|-----|--------|-----|-----|"
printf '| %5s | %s ms | %s ms | %s ms | %s ms |\n' "$ROUNDS" "$(pick 0)" "$(pick 0.5)" "$(pick 0.9)" "$(pick 1)"
