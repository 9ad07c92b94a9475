#!/usr/bin/env bash
# Synthesize from outside on a large tenant: builds release, loads a generated corpus (Zipf
# vocabulary, `synth_bench --keep`) into a temp data dir, serves it with `engram serve`, and drives
# it with wrk (installed from Debian's packages if missing) at the given connections, beside the
# bare hyper baseline in the same run; then prints raw tantivy top-10 on the same corpus
# (in-process, `synth_bench`).
#
#   scripts/bench_synth.sh [documents, default 100000] [seconds, default 10] [connections, default 8]
#   BENCH_MAX_TOKENS=4000 scripts/bench_synth.sh
#
# Only 127.0.0.1 is contacted; every run is bounded by wrk's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
docs="${1:-100000}"
secs="${2:-10}"
conns="${3:-8}"
if ! command -v wrk >/dev/null; then
  echo "bench_synth.sh: installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
cargo build --release --locked --bin engram --example bare --example synth_bench >&2
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
target/release/examples/synth_bench --docs "$docs" --tenants 1 --keep "$work/data" >&2
export ENGRAM_KEY="$(cat "$work/data/bench-key.txt")"
export BENCH_QUERIES="$work/data/queries.txt"
addr_of() {
  local log="$1" addr
  for _ in $(seq 1 600); do
    addr="$(sed -n 's/.* listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n1)"
    if [ -n "$addr" ]; then echo "$addr"; return; fi
    sleep 0.1
  done
  echo "bench_synth.sh: no server started; its log:" >&2; cat "$log" >&2; exit 1
}
target/release/examples/bare 127.0.0.1:0 >/dev/null 2>"$work/bare.log" &
pids+=($!)
target/release/engram serve --listen 127.0.0.1:0 --data-dir "$work/data" --disable-limits \
  --auto-learn-every 0 >/dev/null 2>"$work/engram.log" &
pids+=($!)
bare_addr="$(addr_of "$work/bare.log")"
engram_addr="$(addr_of "$work/engram.log")"
run() {
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$2" "$1" | awk '
    /^    Latency/ { max = $4 }
    /^ +50%/ { p50 = $2 }
    /^ +99%/ { p99 = $2 }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx or 3xx responses/ { bad = $5 }
    END { printf "%s %s %s %s %s\n", rps, p50, p99, max, (bad == "" ? 0 : bad) }'
}
# One warm-up pass loads the segments' columns and vectors.
run "http://$engram_addr/" scripts/bench/synth_corpus.lua >/dev/null
printf '%-22s %10s %10s %10s %10s %8s\n' scenario "req/s" p50 p99 max non-2xx
read -r rps p50 p99 max bad < <(run "http://$bare_addr/" scripts/bench/capture.lua)
printf '%-22s %10s %10s %10s %10s %8s\n' "bare hyper" "$rps" "$p50" "$p99" "$max" "$bad"
read -r rps p50 p99 max bad < <(run "http://$engram_addr/" scripts/bench/synth_corpus.lua)
printf '%-22s %10s %10s %10s %10s %8s\n' "synthesize ($docs docs)" "$rps" "$p50" "$p99" "$max" "$bad"
echo "raw tantivy on the same corpus (in-process, synth_bench):"
env -u SYNTH_BENCH_ENGINE_ONLY target/release/examples/synth_bench --docs "$docs" --tenants 1 --requests 4000 2>&1 \
  | grep -E "raw tantivy top-10, 8 threads|raw tantivy top-10, 2 threads" || true
