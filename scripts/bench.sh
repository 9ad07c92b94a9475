#!/usr/bin/env bash
# HTTP benchmarks from outside: builds release, starts engram on a temp data dir and a bare hyper
# baseline (examples/bare.rs), drives both with wrk (installed from Debian's packages if missing)
# using the Lua scripts in scripts/bench/, and prints throughput, p50/p99/max and the ratio to the
# baseline for single capture, batch of 100 and synthesize.
#
#   scripts/bench.sh [seconds per run, default 10] [connections, default 64]
#   ENGRAM_BIN=/path/to/engram scripts/bench.sh     # measure another build of engram
#   BENCH_SERVE_ARGS="--auto-learn-every 0"         # extra `engram serve` flags
#   BENCH_SCENARIOS="capture"                       # a subset of: capture batch synthesize
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

# Prints the address from the "<name> listening on" line of log $1 once it appears.
addr_of() {
  local log="$1" addr
  for _ in $(seq 1 600); do
    addr="$(sed -n 's/.* listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n1)"
    if [ -n "$addr" ]; then echo "$addr"; return; fi
    sleep 0.1
  done
  echo "bench.sh: no server started; its log:" >&2; cat "$log" >&2; exit 1
}

key="hx_live_$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)"
export ENGRAM_KEY="$key"
"$bare" 127.0.0.1:0 >/dev/null 2>"$work/bare.log" &
pids+=($!)
# shellcheck disable=SC2086
ENGRAM_BOOTSTRAP_KEY="$key" "$engram" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --disable-limits ${BENCH_SERVE_ARGS:-} >/dev/null 2>"$work/engram.log" &
pids+=($!)
bare_addr="$(addr_of "$work/bare.log")"
engram_addr="$(addr_of "$work/engram.log")"

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
for s in ${BENCH_SCENARIOS:-capture batch synthesize}; do
  read -r rps p50 p99 max bad < <(run "http://$engram_addr/" "scripts/bench/$s.lua")
  ratio="$(awk -v a="$rps" -v b="$b_rps" 'BEGIN { printf "%.2fx", a / b }')"
  printf '%-12s %12s %10s %10s %10s %9s %8s\n' "$s" "$rps" "$p50" "$p99" "$max" "$ratio" "$bad"
  if [ "$s" = batch ]; then
    awk -v a="$rps" 'BEGIN { printf "%-12s %12.0f events/s\n", "", a * 100 }'
  fi
done
curl -s "http://$engram_addr/v1/health" | head -c 600; echo
