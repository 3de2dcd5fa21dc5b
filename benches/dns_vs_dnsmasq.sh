#!/usr/bin/env bash
# The DNS interface beside dnsmasq on this machine: the same names (web.service.consul with
# three healthy instances, and three node names) served by a -dev agent from its catalog and by
# dnsmasq from a hosts file, both on loopback, measured by dnsperf: the most queries per second
# (100 outstanding, 10 s), then the latency at a fixed 10,000 queries a second (p50, p99, max).
# Target (issue 9): at least 1x dnsmasq's QPS, p99 under 1 ms.
#
#   bash benches/dns_vs_dnsmasq.sh
#   SECONDS_PER_RUN=5 RATE=5000 bash benches/dns_vs_dnsmasq.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
RATE=${RATE:-10000}

for tool in dnsperf dnsmasq curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install dnsperf dnsmasq curl python3"; exit 1; }
done
cargo build --release --locked -p muster --bin muster --quiet
cargo build --release --locked -p muster-benches --example dns_allocs --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); dns=$(free_port); masq=$(free_port)
work=$(mktemp -d)
cleanup() { kill -9 "${agent_pid:-}" "${masq_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$target_dir/release/muster" agent -dev -node=bench -http-port="$http" -dns-port="$dns" \
  -serf-lan-port="$(free_port)" -serf-wan-port="$(free_port)" -server-port="$(free_port)" \
  >"$work/agent.log" 2>&1 & agent_pid=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/v1/status/leader" | grep -q ':' && break; sleep 0.1; done
: >"$work/hosts"
for n in 1 2 3; do
  curl -sf -X PUT -d "{\"Node\": \"n$n\", \"Address\": \"10.0.0.$n\", \"Service\": {\"Service\": \"web\", \"Port\": 80}}" \
    "127.0.0.1:$http/v1/catalog/register" >/dev/null
  printf '10.0.0.%s web.service.consul\n10.0.0.%s n%s.node.consul\n' "$n" "$n" "$n" >>"$work/hosts"
done
dnsmasq --keep-in-foreground --port="$masq" --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
  --no-hosts --addn-hosts="$work/hosts" --pid-file="$work/dnsmasq.pid" --log-facility=/dev/null \
  --user=root & masq_pid=$!
sleep 1

for _ in $(seq 1000); do echo "web.service.consul A"; echo "n1.node.consul A"; echo "n2.node.consul A"; done >"$work/queries"
# Both answer the same names.
for port in "$dns" "$masq"; do
  answers=$(dig @127.0.0.1 -p "$port" +short web.service.consul | sort | tr '\n' ' ')
  [ "$answers" = "10.0.0.1 10.0.0.2 10.0.0.3 " ] || { echo "port $port answers: $answers"; exit 1; }
done

max_qps() { dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$SECONDS_PER_RUN" -q 100 2>&1 | awk '/Queries per second/ {print $4}'; }
latency() {
  dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$SECONDS_PER_RUN" -Q "$RATE" -v 2>/dev/null \
    | awk '$1 == ">" {print $NF}' | sort -g | python3 -c '
import sys
xs = [float(x) * 1e6 for x in sys.stdin if x.strip()]
pick = lambda p: xs[min(len(xs) - 1, int(len(xs) * p))]
print(f"{pick(0.5):.0f} {pick(0.99):.0f} {xs[-1]:.0f} {len(xs)}")'
}
muster_qps=$(max_qps "$dns"); masq_qps=$(max_qps "$masq")
read -r m50 m99 mmax mn <<<"$(latency "$dns")"
read -r d50 d99 dmax dn <<<"$(latency "$masq")"
allocs=$("$target_dir/release/examples/dns_allocs")

echo
echo "DNS on loopback, this machine ($(nproc) cores): a -dev muster agent and dnsmasq $(dnsmasq --version | head -n1 | awk '{print $3}'), dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')"
echo "queries: web.service.consul A (3 instances), n1/n2.node.consul A; ${SECONDS_PER_RUN} s per run"
echo
echo "| measure | muster | dnsmasq | muster / dnsmasq |"
echo "|---|---|---|---|"
python3 - "$muster_qps" "$masq_qps" <<'PY'
import sys
m, d = float(sys.argv[1]), float(sys.argv[2])
print(f"| queries per second (100 outstanding) | {m:,.0f} | {d:,.0f} | {m / d:.2f}x |")
PY
echo "| latency at $RATE q/s: p50 / p99 / max (µs) | $m50 / $m99 / $mmax ($mn answers) | $d50 / $d99 / $dmax ($dn answers) | |"
echo
echo "$allocs"
