#!/usr/bin/env bash
# HTTP benchmarks from outside: builds release, starts engram on a temp data dir and a bare hyper
# baseline (examples/bare.rs), drives both with wrk (installed from Debian's packages if missing)
# using the Lua scripts in scripts/bench/, and prints throughput, p50/p99/max and the ratio to the
# baseline for single capture, batch of 100 and synthesize.
#
#   scripts/bench.sh [seconds per run, default 10] [connections, default 64]
#   ENGRAM_BIN=/path/to/engram scripts/bench.sh     # measure another build of engram
#   BENCH_SERVE_ARGS="--auto-learn-every 0"         # extra `engram serve` flags
#
# Only 127.0.0.1 is contacted; every run is bounded by wrk's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
conns="${2:-64}"

if ! command -v wrk >/dev/null; then
  echo "bench.sh: installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi

cargo build --release --locked --bin engram --example bare >&2
engram="${ENGRAM_BIN:-target/release/engram}"
bare=target/release/examples/bare

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Starts "$@" with stderr to $log and prints the address from its "<name> listening on" line.
start() {
  local log="$1"; shift
  "$@" 2>"$log" &
  pids+=($!)
  for _ in $(seq 1 600); do
    local addr
    addr="$(sed -n 's/.* listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n1)"
    if [ -n "$addr" ]; then echo "$addr"; return; fi
    sleep 0.1
  done
  echo "bench.sh: $1 did not start:" >&2; cat "$log" >&2; exit 1
}

key="hx_live_$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)"
export ENGRAM_KEY="$key"
bare_addr="$(start "$work/bare.log" "$bare" 127.0.0.1:0)"
# shellcheck disable=SC2086
engram_addr="$(ENGRAM_BOOTSTRAP_KEY="$key" start "$work/engram.log" "$engram" serve \
  --listen 127.0.0.1:0 --data-dir "$work/data" --disable-limits ${BENCH_SERVE_ARGS:-})"

# Runs wrk and prints "req/s p50 p99 max" (latencies as wrk prints them).
run() {
  local url="$1" script="$2"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$script" "$url" | awk '
    /^    Latency/ { max = $4 }
    /^ +50%/ { p50 = $2 }
    /^ +99%/ { p99 = $2 }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx or 3xx responses/ { bad = $5 }
    END { printf "%s %s %s %s %s\n", rps, p50, p99, max, (bad == "" ? 0 : bad) }'
}

printf '%-12s %12s %10s %10s %10s %9s %8s\n' scenario "req/s" p50 p99 max ratio non-2xx
read -r b_rps b_p50 b_p99 b_max b_bad < <(run "http://$bare_addr/" scripts/bench/capture.lua)
printf '%-12s %12s %10s %10s %10s %9s %8s\n' bare "$b_rps" "$b_p50" "$b_p99" "$b_max" "1.00x" "$b_bad"
for s in capture batch synthesize; do
  read -r rps p50 p99 max bad < <(run "http://$engram_addr/" "scripts/bench/$s.lua")
  ratio="$(awk -v a="$rps" -v b="$b_rps" 'BEGIN { printf "%.2fx", a / b }')"
  printf '%-12s %12s %10s %10s %10s %9s %8s\n' "$s" "$rps" "$p50" "$p99" "$max" "$ratio" "$bad"
  if [ "$s" = batch ]; then
    awk -v a="$rps" 'BEGIN { printf "%-12s %12.0f events/s\n", "", a * 100 }'
  fi
done
curl -s "http://$engram_addr/v1/health" | head -c 600; echo
