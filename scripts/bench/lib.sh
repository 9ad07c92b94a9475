# Shared by scripts/bench.sh and scripts/bench_synth.sh (sourced, not run).

# Installs wrk from Debian's packages when it is missing.
ensure_wrk() {
  if ! command -v wrk >/dev/null; then
    echo "$(basename "$0"): installing wrk (Debian package)" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
  fi
}

# A temp dir in $work and the started servers' pids in $pids, all gone on exit.
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Prints the address from the "<name> listening on" line of log $1 once it appears.
addr_of() {
  local log="$1" addr
  for _ in $(seq 1 600); do
    addr="$(sed -n 's/.* listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n1)"
    if [ -n "$addr" ]; then echo "$addr"; return; fi
    sleep 0.1
  done
  echo "$(basename "$0"): no server started; its log:" >&2; cat "$log" >&2; exit 1
}

# Runs wrk on URL $1 with Lua script $2 for $secs seconds over $conns connections and prints
# "req/s p50 p99 max non-2xx" (latencies as wrk prints them).
run() {
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$2" "$1" | awk '
    /^    Latency/ { max = $4 }
    /^ +50%/ { p50 = $2 }
    /^ +99%/ { p99 = $2 }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx or 3xx responses/ { bad = $5 }
    END { printf "%s %s %s %s %s\n", rps, p50, p99, max, (bad == "" ? 0 : bad) }'
}
