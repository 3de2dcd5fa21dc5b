# What the wrk benchmarks share (sourced by kv_vs_etcd.sh and cluster_vs_etcd.sh): the wrk
# scripts, the same keys and values for muster and etcd, and one table row per wrk run.

# Exits (successfully, saying why) unless every tool named is installed.
require_tools() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "skipped: $tool is not installed (apt-get install wrk etcd-server curl python3)"
      exit 0
    fi
  done
}

# Writes the wrk scripts into $1 for $2 keys of $3-byte values: muster_put, muster_get,
# muster_get_consistent, etcd_put, etcd_get, etcd_get_serializable (etcd's keys and values
# base64-encoded in JSON bodies, as its gateway wants them).
write_wrk_scripts() {
  python3 - "$1" "$2" "$3" <<'EOF'
import base64, sys
work, keys, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
value = "v" * size
b64 = lambda s: base64.b64encode(s.encode()).decode()
names = [f"bench/key-{i:05d}" for i in range(keys)]
lua_list = lambda items: "{" + ",".join(f'"{x}"' for x in items) + "}"
scripts = {
    "muster_put": f'local keys = {lua_list(names)}\nwrk.method = "PUT"\nwrk.body = "{value}"\n'
                  'request = function() return wrk.format(nil, "/v1/kv/" .. keys[math.random(#keys)]) end\n',
    "muster_get": f'local keys = {lua_list(names)}\n'
                  'request = function() return wrk.format("GET", "/v1/kv/" .. keys[math.random(#keys)]) end\n',
    "muster_get_consistent": f'local keys = {lua_list(names)}\n'
                  'request = function() return wrk.format("GET", "/v1/kv/" .. keys[math.random(#keys)] .. "?consistent") end\n',
    "etcd_put": f'local keys = {lua_list(b64(n) for n in names)}\nwrk.method = "POST"\n'
                f'request = function() return wrk.format(nil, "/v3/kv/put", nil, \'{{"key":"\' .. keys[math.random(#keys)] .. \'","value":"{b64(value)}"}}\') end\n',
    "etcd_get": f'local keys = {lua_list(b64(n) for n in names)}\nwrk.method = "POST"\n'
                'request = function() return wrk.format(nil, "/v3/kv/range", nil, \'{"key":"\' .. keys[math.random(#keys)] .. \'"}\') end\n',
    "etcd_get_serializable": f'local keys = {lua_list(b64(n) for n in names)}\nwrk.method = "POST"\n'
                'request = function() return wrk.format(nil, "/v3/kv/range", nil, \'{"key":"\' .. keys[math.random(#keys)] .. \'","serializable":true}\') end\n',
}
for name, text in scripts.items():
    open(f"{work}/{name}.lua", "w").write(text)
EOF
}

# One wrk run, printed as a table row: system, operation, script, url, connections. The
# operation column is $OP_WIDTH characters wide.
run() {
  local out rps p50 p99 errors
  out=$(wrk -t"$(($5 < 2 ? 1 : 2))" -c"$5" -d"$DURATION" --latency -s "$work/$3.lua" "$4")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  printf "| %-6s | %-${OP_WIDTH:-22}s | %5s | %10s | %9s | %9s | %6s |\n" "$1" "$2" "$5" "$rps" "$p50" "$p99" "${errors:-0}"
}
