#!/usr/bin/env bash
# The nemesis against real processes: three release `muster` servers on loopback, clients
# writing and reading through all of them, a seeded schedule of leader kills, leader pauses
# and follower kills, and the history checked for linearizability.
#
#   bash benches/nemesis.sh [--seed N] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p muster --bin muster
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec cargo run --release --locked -p muster-benches --example nemesis -- --bin "$target_dir/release/muster" "$@"
