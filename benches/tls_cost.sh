#!/usr/bin/env bash
# What TLS costs: the same three release servers run twice, plain, then with Consul's
# production TLS (mutual TLS on the server port with verify_incoming, verify_outgoing and
# verify_server_hostname; HTTPS on 8501-style ports), certificates made by `muster tls`. wrk
# measures KV writes on the leader (Raft to the followers over the server port), writes via a
# follower (forwarded over server RPC, then Raft) and reads over HTTP and HTTPS (keep-alive,
# so the handshake is paid once per connection). Prints one table.
#
#   bash benches/tls_cost.sh                   # 10 s per cell, 16 connections
#   DURATION=2s CONNS=16 bash benches/tls_cost.sh   # the quick mode CI runs
#
# Needs wrk (built with OpenSSL, as Debian's is), curl and python3; says so and exits if one
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/wrk_common.sh
OP_WIDTH=27

DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
KEYS=${KEYS:-1000}
VALUE_BYTES=${VALUE_BYTES:-128}

require_tools wrk curl python3

cargo build --release -p muster --bin muster --quiet
work=$(mktemp -d)
declare -A pid
stop_all() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pid=()
}
trap 'stop_all 2>/dev/null; rm -rf "$work"' EXIT

certs="$work/certs"
muster="$PWD/target/release/muster"
mkdir -p "$certs"
(
  cd "$certs"
  "$muster" tls ca create >/dev/null
  for _ in 1 2 3; do "$muster" tls cert create -server >/dev/null; done
)

# The tls block of server n (its certificate dc1-server-consul-<n-1>.pem); HTTPS does not ask
# wrk for a certificate.
tls_block() {
  local n=$1
  cat <<EOF
tls {
  defaults {
    ca_file = "$certs/consul-agent-ca.pem"
    cert_file = "$certs/dc1-server-consul-$((n - 1)).pem"
    key_file = "$certs/dc1-server-consul-$((n - 1))-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc { verify_server_hostname = true }
  https { verify_incoming = false }
}
ports { https = 185${n}1 }
EOF
}

# Server n: gossip 183n1/183n2, RPC and Raft 183n0, HTTP 185n0, HTTPS 185n1; $2 is "tls" or
# "plain"; each run gets fresh data directories.
start_server() {
  local n=$1 mode=$2 join=() m extra=()
  for m in 1 2 3; do [[ $m != "$n" ]] && join+=("-retry-join=127.0.0.1:183${m}1"); done
  if [[ $mode == tls ]]; then
    tls_block "$n" >"$work/tls-s$n.hcl"
    extra=("-config-file=$work/tls-s$n.hcl")
  fi
  target/release/muster agent -server -bootstrap-expect=3 -bind=127.0.0.1 -dns-port=-1 -node="s$n" \
    -data-dir="$work/$mode-s$n" -serf-lan-port="183${n}1" -serf-wan-port="183${n}2" \
    -server-port="183${n}0" -http-port="185${n}0" -retry-interval=1s "${extra[@]}" "${join[@]}" \
    >>"$work/$mode-s$n.log" 2>&1 &
  pid[s$n]=$!
}

# The HTTP port of the server that leads, once all three agree on one.
wait_leader() {
  local seen n
  for _ in $(seq 300); do
    seen=()
    for n in 1 2 3; do
      seen+=("$(curl -sf --max-time 1 "http://127.0.0.1:185${n}0/v1/status/leader" 2>/dev/null || echo none)")
    done
    if [[ ${seen[0]} == "${seen[1]}" && ${seen[1]} == "${seen[2]}" && ${seen[0]} =~ 127.0.0.1:183([123])0 ]]; then
      echo "${BASH_REMATCH[1]}"
      return
    fi
    sleep 0.1
  done
  echo "no leader within 30 s" >&2
  tail -n 5 "$work"/*.log >&2
  exit 1
}

write_wrk_scripts "$work" "$KEYS" "$VALUE_BYTES"

echo
echo "Three servers, KV over HTTP/1.1, ${VALUE_BYTES}-byte values, ${KEYS} keys, ${DURATION} per cell, $(nproc) cores"
echo
echo "| mode   | operation                   | conns |      req/s |       p50 |       p99 | non-2xx |"
echo "|--------|-----------------------------|-------|------------|-----------|-----------|---------|"
for mode in plain tls; do
  for n in 1 2 3; do start_server "$n" "$mode"; done
  leader=$(wait_leader)
  follower=$((leader == 1 ? 2 : 1))
  wrk -t1 -c16 -d2s -s "$work/muster_put.lua" "http://127.0.0.1:185${leader}0" >/dev/null
  for c in $CONNS; do
    run "$mode" "write (PUT) on the leader" muster_put "http://127.0.0.1:185${leader}0" "$c"
    run "$mode" "write (PUT) via follower" muster_put "http://127.0.0.1:185${follower}0" "$c"
    run "$mode" "read on the leader, HTTP" muster_get "http://127.0.0.1:185${leader}0" "$c"
    if [[ $mode == tls ]]; then
      run "$mode" "read on the leader, HTTPS" muster_get "https://127.0.0.1:185${leader}1" "$c"
    fi
  done
  stop_all 2>/dev/null
done
