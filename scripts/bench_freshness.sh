#!/usr/bin/env bash
# Freshness under sustained load: measures engram's maximum single-capture rate with wrk, then
# offers half of it for 60 s (wrk with a per-request delay: scripts/bench/capture.lua with
# ENGRAM_DELAY_MS) while /v1/health is sampled every 100 ms. Prints, per 5 s: the offered rate,
# the backlog (events captured but not yet processed) and the capture→searchable lag
# (p50/p99/max of the time from a sequence number being acknowledged to it being searchable).
#
#   scripts/bench_freshness.sh [seconds, default 60] [connections, default 64]
#   ENGRAM_BIN=/path/to/engram     # measure another build
#   BENCH_SERVE_ARGS="--auto-learn-every 0"   # extra `engram serve` flags
#
# Only 127.0.0.1 is contacted; every run is bounded by wrk's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
conns="${2:-64}"
source scripts/bench/lib.sh
ensure_wrk
cargo build --release --locked --bin engram >&2
engram="${ENGRAM_BIN:-target/release/engram}"
key="hx_live_$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)"
export ENGRAM_KEY="$key"
# shellcheck disable=SC2086
ENGRAM_BOOTSTRAP_KEY="$key" "$engram" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --disable-limits ${BENCH_SERVE_ARGS:-} >/dev/null 2>"$work/engram.log" &
pids+=($!)
addr="$(addr_of "$work/engram.log")"

max="$(wrk -t2 -c"$conns" -d10s -s scripts/bench/capture.lua "http://$addr/" \
  | awk '/Requests\/sec/ { printf "%d", $2 }')"
target=$((max / 2))
# Let the backlog of the measurement drain before the paced run.
for _ in $(seq 1 600); do
  h="$(curl -s "http://$addr/v1/health")"
  c="$(echo "$h" | sed -n 's/.*"capturedSeq":\([0-9]*\).*/\1/p')"
  s="$(echo "$h" | sed -n 's/.*"searchableSeq":\([0-9]*\).*/\1/p')"
  [ -n "$c" ] && [ "$c" = "$s" ] && break
  sleep 0.5
done
# Per-connection pause for the target rate (the request's own latency adds ~2 ms).
delay=$(awk -v c="$conns" -v r="$target" 'BEGIN { d = c * 1000 / r - 2; printf "%d", (d < 0 ? 0 : d) }')
echo "maximum ${max} req/s; offering about ${target} req/s (${conns} connections, ${delay} ms apart)" >&2

( end=$((SECONDS + secs + 5))
  while [ $SECONDS -lt $end ]; do
    printf '%s %s\n' "$(date +%s%3N)" "$(curl -s --max-time 1 "http://$addr/v1/health")"
    sleep 0.1
  done ) > "$work/samples" &
sampler=$!
ENGRAM_DELAY_MS="$delay" wrk -t2 -c"$conns" -d"${secs}s" --latency \
  -s scripts/bench/capture.lua "http://$addr/" > "$work/wrk.txt"
wait "$sampler" || true
grep -E "Requests/sec|99%" "$work/wrk.txt" >&2

python3 - "$work/samples" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    t, _, body = line.partition(" ")
    try:
        h = json.loads(body)["data"]["subsystems"]
    except (ValueError, KeyError):
        continue
    s = h["search"]
    rows.append((int(t), s["capturedSeq"], s["searchableSeq"],
                 h.get("workers", {}).get("capture", {}).get("pendingEvents", 0)))
if not rows:
    sys.exit("no health samples")
t0 = rows[0][0]
# When each sequence number was first seen acknowledged.
acked = []  # (seq, time), increasing
for t, c, _, _ in rows:
    if not acked or c > acked[-1][0]:
        acked.append((c, t))
def acked_at(seq):
    for s, t in acked:
        if s >= seq:
            return t
    return None
print(f"{'window':>8} {'captured/s':>11} {'backlog':>8} {'lag p50':>9} {'lag p99':>9} {'lag max':>9}")
window, prev_c = 5000, rows[0][1]
for w0 in range(t0, rows[-1][0], window):
    ws = [r for r in rows if w0 <= r[0] < w0 + window]
    if not ws:
        continue
    lags = []
    for t, c, s, _ in ws:
        if s >= c:
            # Everything acknowledged is searchable: no lag (after the load ends, the time since
            # the last acknowledgement is not a lag).
            lags.append(0)
            continue
        # The oldest acknowledged event not yet searchable (seq s + 1) has waited since then.
        a = acked_at(s + 1)
        lags.append(max(0, t - a) if a is not None else t - t0)
    lags.sort()
    pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
    rate = (ws[-1][1] - prev_c) / (window / 1000)
    prev_c = ws[-1][1]
    print(f"{(w0 - t0) // 1000:>6} s {rate:>11.0f} {ws[-1][3]:>8} {pick(0.5):>7} ms {pick(0.99):>6} ms {lags[-1]:>6} ms")
PY
