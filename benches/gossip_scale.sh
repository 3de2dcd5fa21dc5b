#!/usr/bin/env bash
# Gossip at scale in the simulator (issue 23): for each size in SIZES, the in-process harness
# (sim/src/harness.rs) runs the scale scenario of sim/tests/gossip_scenarios.rs in release, one
# seed, LAN settings: a join storm (every node joins through one seed at the same instant), steady
# state, one tag change spreading, then a tenth of the nodes crashing at once. The table shows the
# simulated time to converge after the storm, the time from the crash until the median crashed
# node is first declared dead and until every live node sees every crashed node dead, live nodes
# falsely declared dead, bytes sent per member per second in steady state and during the failure,
# and the 200 ms gossip rounds a tag change takes to reach 99.99 % beside Serf's model.
#
#   bash benches/gossip_scale.sh                  # 1,000 and 2,000 nodes (about 6 minutes)
#   SIZES="5000" bash benches/gossip_scale.sh     # about 50 minutes and 18 GB
#   SIZES="1000" bash benches/gossip_scale.sh     # quick mode (CI runs the scenario itself)
#
# Every simulated node keeps a full membership table, so memory and time grow as N²: on a
# 2-core machine 1,000 nodes take about 50 s and 0.7 GB, 2,000 about 5 min and 2.8 GB (about
# 700 bytes per observer-member pair at the join storm's peak, when every node also queues every
# member's alive message). 5,000 would need about 18 GB and most of an hour; 10,000 about 70 GB,
# more than this machine has: a size whose projection exceeds the memory available is skipped
# with a note rather than run into the OOM killer.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-1000 2000}
# Measured peak bytes per (observer, member) pair at the join storm, with a margin.
PAIR_BYTES=800

for tool in python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install $tool"; exit 1; }
done
# `cargo test --no-run` prints the test binary's path; run it directly so each size's wall time
# and peak memory are the scenario's own.
binary=$(cargo test --release --locked -p muster-sim --test gossip_scenarios --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gossip_scenarios" and m.get("executable"):
        print(m["executable"])')
[ -x "$binary" ] || { echo "could not build the gossip_scenarios test binary" >&2; exit 1; }
available_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)

rows=()
notes=()
for n in $SIZES; do
  need_kb=$(( n * n * PAIR_BYTES / 1024 ))
  if [ "$need_kb" -gt "$available_kb" ]; then
    notes+=("$n nodes skipped: about $(( need_kb / 1024 / 1024 )) GB needed, $(( available_kb / 1024 / 1024 )) GB available")
    continue
  fi
  log=$(mktemp)
  started=$SECONDS
  MUSTER_SCALE_NODES="$n" /usr/bin/time -f 'peak_kb=%M' "$binary" scale_1000_nodes --exact --nocapture >"$log" 2>&1 || {
    cat "$log" >&2; echo "the scale scenario failed at $n nodes" >&2; exit 1; }
  row=$(grep '^scale-row:' "$log" | sed 's/^scale-row: //')
  peak=$(grep -o 'peak_kb=[0-9]*' "$log")
  rows+=("$row $peak wall_s=$(( SECONDS - started ))")
  rm -f "$log"
done

echo "Gossip at scale in the simulator: LAN settings, one seed, release build, $(nproc) cores"
echo
echo "| members | join storm: converged | 10 % crash: median first declared dead / all seen dead everywhere | live nodes declared dead | bytes/s per member, steady | bytes/s per member, during the failure | tag change: rounds to 99.99 % (Serf's model) | run: wall time, peak memory |"
echo "|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  python3 - "$row" <<'PY'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split())
print(f"| {int(f['nodes']):,} | {f['join_s']} s | {f['detect_median_s']} s / {f['all_dead_s']} s | {f['false_positives']} "
      f"| {int(f['steady_bytes_per_member_s']):,} | {int(f['failure_bytes_per_member_s']):,} "
      f"| {f['rounds']} ({f['serf_model_rounds']}) | {int(f['wall_s']) // 60} min {int(f['wall_s']) % 60} s, {int(f['peak_kb']) / 1024 / 1024:.1f} GB |")
PY
done
for note in "${notes[@]+"${notes[@]}"}"; do
  echo
  echo "$note"
done
