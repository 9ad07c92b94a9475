#!/usr/bin/env bash
# HTTP benchmarks from outside: builds release, starts a bare hyper baseline (examples/bare.rs)
# and, for each scenario, a fresh engram on its own temp data dir (so no scenario is measured
# against the backlog an earlier one left), drives them with wrk (installed from Debian's
# packages if missing) using the Lua scripts in scripts/bench/, and prints throughput,
# p50/p99/max and the ratio to the baseline for single capture, batch of 100 and synthesize.
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

source scripts/bench/lib.sh
ensure_wrk

cargo build --release --locked --bin engram --example bare >&2
engram="${ENGRAM_BIN:-target/release/engram}"
bare=target/release/examples/bare

key="hx_live_$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)"
export ENGRAM_KEY="$key"
"$bare" 127.0.0.1:0 >/dev/null 2>"$work/bare.log" &
pids+=($!)
bare_addr="$(addr_of "$work/bare.log")"

# Each scenario gets a fresh engram on its own data dir, so none is measured against the backlog
# an earlier one left behind. Sets $engram_addr and $engram_pid.
start_engram() {
  local dir="$work/$1"
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  ENGRAM_BOOTSTRAP_KEY="$key" "$engram" serve --listen 127.0.0.1:0 --data-dir "$dir/data" \
    --disable-limits ${BENCH_SERVE_ARGS:-} >/dev/null 2>"$dir/engram.log" &
  engram_pid=$!
  pids+=("$engram_pid")
  engram_addr="$(addr_of "$dir/engram.log")"
}

# Synthesize is measured on a tenant holding 2,000 searchable events (20 batches of 100, the
# batch scenario's shape); scripts/bench_synth.sh measures it at 100,000 documents.
seed() {
  local i j events
  for i in $(seq 1 20); do
    events=""
    for j in $(seq 1 100); do
      events+="${events:+,}{\"type\":\"message\",\"sessionId\":\"seed-$((j % 16))\",\"payload\":{\"role\":\"user\",\"content\":\"seed $i event $j: deploy the payment service, kubectl rollout status $((i * j % 97))\"}}"
    done
    curl -sf -o /dev/null -X POST "http://$engram_addr/v1/capture/batch?wait=searchable" \
      -H "authorization: Bearer $key" -H 'content-type: application/json' \
      -d "{\"events\":[$events]}"
  done
}

printf '%-12s %12s %10s %10s %10s %9s %8s\n' scenario "req/s" p50 p99 max ratio non-2xx
read -r b_rps b_p50 b_p99 b_max b_bad < <(run "http://$bare_addr/" scripts/bench/capture.lua)
printf '%-12s %12s %10s %10s %10s %9s %8s\n' bare "$b_rps" "$b_p50" "$b_p99" "$b_max" "1.00x" "$b_bad"
for s in ${BENCH_SCENARIOS:-capture batch synthesize}; do
  start_engram "$s"
  if [ "$s" = synthesize ]; then seed; fi
  read -r rps p50 p99 max bad < <(run "http://$engram_addr/" "scripts/bench/$s.lua")
  ratio="$(awk -v a="$rps" -v b="$b_rps" 'BEGIN { printf "%.2fx", a / b }')"
  printf '%-12s %12s %10s %10s %10s %9s %8s\n' "$s" "$rps" "$p50" "$p99" "$max" "$ratio" "$bad"
  if [ "$s" = batch ]; then
    # Accepted events only: a batch refused (503 past the backlog limit) stored nothing.
    awk -v a="$rps" -v bad="$bad" -v secs="$secs" \
      'BEGIN { printf "%-12s %12.0f events/s accepted\n", "", (a - bad / secs) * 100 }'
  fi
  curl -s "http://$engram_addr/v1/health" | head -c 400; echo
  kill "$engram_pid" 2>/dev/null || true
  wait "$engram_pid" 2>/dev/null || true
done
