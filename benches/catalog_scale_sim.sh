#!/usr/bin/env bash
# Consul's Global Scale Benchmark in the simulator (issue 23): 5 servers running the server the
# binary runs (Raft, log, store, RPC transport) over madsim's network, a catalog of NODES × 10
# service instances registered through the leader by 64 concurrent writers, then 100 blocking
# queries waiting on every server (`?stale`, each on its own server's state) and 20 changes, each
# timed from its write's start until every watcher of its service, on all five servers, has seen
# it. Consul's claim for its benchmark (10,000 nodes, 172,000 instances): changes seen everywhere
# in under a second.
#
#   bash benches/catalog_scale_sim.sh                   # 1,000, 10,000 and 17,200 nodes (about 4 minutes)
#   SIZES="1000" bash benches/catalog_scale_sim.sh      # quick mode (CI runs the 1,000-node test itself)
#
# Simulated time covers the network (1–5 ms a message) and fsync delays; computation takes none,
# so "loaded in" is the protocol's time for 64 writers, not this machine's throughput (see
# benches/catalog_scale.sh for a real server's). The wall time is what building and serving the
# state cost here, in the simulator's debug build (the core optimised).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-1000 10000 17200}
TEST=madsim_tier::madsim_catalog_changes_are_seen_on_every_server_within_a_second

cargo simtest --locked --no-run 2>/dev/null
rows=()
for n in $SIZES; do
  log=$(mktemp)
  started=$SECONDS
  MUSTER_SCALE_NODES="$n" cargo simtest --locked -- "$TEST" --exact --nocapture >"$log" 2>&1 || {
    cat "$log" >&2; echo "the scale scenario failed at $n nodes" >&2; exit 1; }
  row=$(grep '^catalog at scale' "$log")
  rows+=("$n|$row|$(( SECONDS - started ))")
  rm -f "$log"
done

echo "Catalog at scale in the simulator: 5 servers, 10 instances a node, 500 watchers, 20 changes, one seed"
echo
echo "| nodes | instances | loaded in (simulated) | change seen on all 5 servers by all 500 watchers: p50 / p99 / max | Consul's claim | wall time |"
echo "|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  python3 - "$row" <<'PY'
import re, sys
nodes, line, wall = sys.argv[1].split("|")
instances = re.search(r"(\d+) instances", line).group(1)
loaded = re.search(r"loaded in ([\d.]+) simulated s", line).group(1)
p50, p99, mx = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms", line).groups()
print(f"| {int(nodes):,} | {int(instances):,} | {loaded} s | {p50} / {p99} / {mx} ms | < 1 s | {wall} s |")
PY
done
