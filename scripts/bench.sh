#!/usr/bin/env bash
# HTTP benchmarks from outside: builds release, starts a bare hyper baseline (examples/bare.rs)
# and, for each scenario, a fresh engram on its own temp data dir (so no scenario is measured
# against the backlog an earlier one left), drives them with wrk (installed from Debian's
# packages if missing) using the Lua scripts in scripts/bench/, and prints throughput,
# p50/p99/max and the ratio to the baseline for single capture, batch of 100 and synthesize; then
# a drain: BENCH_DRAIN_EVENTS (default 1,000,000) events in batches of 100 over 8 connections,
# timed from the first request until every acknowledged event is searchable, with the server's
# peak RSS.
#
#   scripts/bench.sh [seconds per run, default 10] [connections, default 64]
#   ENGRAM_BIN=/path/to/engram scripts/bench.sh     # measure another build of engram
#   BENCH_SERVE_ARGS="--auto-learn-every 0"         # extra `engram serve` flags
#   BENCH_SCENARIOS="capture"                       # a subset of: capture batch synthesize drain
#
# Only 127.0.0.1 is contacted; every run is bounded by wrk's duration (the drain's by 300 s of
# load and 600 s of waiting).
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

# The drain: wrk (batches of 100) runs until capturedSeq reaches BENCH_DRAIN_EVENTS, then
# /v1/health is polled until searchableSeq reaches capturedSeq (every acknowledged event is
# searchable).
health_seq() { # prints "capturedSeq searchableSeq" (empty when the server does not answer)
  curl -s -m 5 "http://$engram_addr/v1/health" |
    sed -n 's/.*"capturedSeq":\([0-9]*\).*"searchableSeq":\([0-9]*\).*/\1 \2/p' || true
}
drain() {
  local events="${BENCH_DRAIN_EVENTS:-1000000}" t0 t1 t2 wrk_pid captured=0 searchable=0 rss
  t0="$(date +%s.%N)"
  wrk -t2 -c8 -d300s -s scripts/bench/batch.lua "http://$engram_addr/" >"$work/drain.wrk" &
  wrk_pid=$!
  for _ in $(seq 1 3000); do
    read -r captured searchable < <(health_seq; echo)
    if [ "${captured:-0}" -ge "$events" ] || ! kill -0 "$wrk_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" 2>/dev/null || true
  t1="$(date +%s.%N)"
  for _ in $(seq 1 6000); do
    read -r captured searchable < <(health_seq; echo)
    if [ -z "$captured" ]; then
      echo "drain: engram stopped answering; its log:" >&2; tail -n 20 "$work/drain/engram.log" >&2
      return 1
    fi
    if [ "$captured" = "$searchable" ]; then break; fi
    sleep 0.1
  done
  t2="$(date +%s.%N)"
  rss="$(awk '/VmHWM/ { printf "%.0f MB", $2 / 1024 }' "/proc/$engram_pid/status")"
  awk -v n="$captured" -v s="$searchable" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v rss="$rss" \
    'BEGIN {
      printf "%-12s %d events acknowledged in %.1f s (%.0f events/s)\n", "drain", n, t1 - t0, n / (t1 - t0)
      if (n != s) printf "%-12s NOT drained: searchableSeq %d of %d after 600 s\n", "", s, n
      else printf "%-12s all searchable %.1f s after the first request: %.0f events/s end to end; peak RSS %s\n", "", t2 - t0, n / (t2 - t0), rss
    }'
}

printf '%-12s %12s %10s %10s %10s %9s %8s\n' scenario "req/s" p50 p99 max ratio non-2xx
read -r b_rps b_p50 b_p99 b_max b_bad < <(run "http://$bare_addr/" scripts/bench/capture.lua)
printf '%-12s %12s %10s %10s %10s %9s %8s\n' bare "$b_rps" "$b_p50" "$b_p99" "$b_max" "1.00x" "$b_bad"
for s in ${BENCH_SCENARIOS:-capture batch synthesize drain}; do
  start_engram "$s"
  if [ "$s" = drain ]; then
    drain
    kill "$engram_pid" 2>/dev/null || true
    wait "$engram_pid" 2>/dev/null || true
    continue
  fi
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
