#!/usr/bin/env bash
# Synthesize from outside on a large tenant: builds release, loads a generated corpus (Zipf
# vocabulary, `synth_bench --keep`) into a temp data dir, serves it with `engram serve`, and drives
# it with wrk (installed from Debian's packages if missing) at the given connections, beside the
# bare hyper baseline in the same run; then prints raw tantivy top-10 on the same corpus
# (in-process, `synth_bench`).
#
#   scripts/bench_synth.sh [documents, default 100000] [seconds, default 10] [connections, default 8]
#   BENCH_MAX_TOKENS=4000 scripts/bench_synth.sh
#   ENGRAM_BIN=/path/to/engram scripts/bench_synth.sh   # serve with another build of engram
#
# Only 127.0.0.1 is contacted; every run is bounded by wrk's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
docs="${1:-100000}"
secs="${2:-10}"
conns="${3:-8}"
source scripts/bench/lib.sh
ensure_wrk
cargo build --release --locked --bin engram --example bare --example synth_bench >&2
target/release/examples/synth_bench --docs "$docs" --tenants 1 --keep "$work/data" >&2
export ENGRAM_KEY="$(cat "$work/data/bench-key.txt")"
export BENCH_QUERIES="$work/data/queries.txt"
target/release/examples/bare 127.0.0.1:0 >/dev/null 2>"$work/bare.log" &
pids+=($!)
"${ENGRAM_BIN:-target/release/engram}" serve --listen 127.0.0.1:0 --data-dir "$work/data" --disable-limits \
  --auto-learn-every 0 >/dev/null 2>"$work/engram.log" &
pids+=($!)
bare_addr="$(addr_of "$work/bare.log")"
engram_addr="$(addr_of "$work/engram.log")"
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
