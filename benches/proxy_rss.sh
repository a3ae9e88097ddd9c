#!/usr/bin/env bash
# proxy_rss.sh: how much memory does tollgate hold under steady proxied traffic, and does it grow?
#
# One nginx upstream (1 worker) serves a generated 2 KiB page (/index.html, 2048 bytes). One
# tollgate, default config (no config file; capture on) and an empty data dir, sits in front of
# it. wrk drives a paced RATE req/s for DURATION s through tollgate: wrk has no rate flag, so a
# Lua `delay()` hands out send slots on a fixed schedule (start + i / RATE), which CONNS
# keep-alive connections take in turn. Every request carries a desktop Chrome UA (so enrichment
# parses a real UA, once, then hits its cache) and Accept-Language.
#
# Printed: VmRSS of the tollgate process before load and every SAMPLE_SECS during it, the
# achieved rate, the final RSS with its anonymous/file split (/proc/PID/smaps_rollup), the
# growth over the last 30 s, the peak (VmHWM), and tollgate's own counters from the admin
# /metrics: events captured, written and dropped (tollgate_events_dropped_total, all reasons;
# it must stay 0), and the writer thread's CPU per event written (the pipeline's cost per proxy
# event: enrichment and storage). With BEACONS, also how many browser beacons went beside the
# load and how many were answered 2xx. Exit status 1 when events were dropped, a beacon was not
# answered 2xx or the achieved rate is under 90 % of RATE; the figures are printed either way.
#
# Usage:
#   cargo test --release --no-run && benches/proxy_rss.sh
#   DURATION=20 RATE=5000 OUT=rss.md benches/proxy_rss.sh
#
# Environment:
#   DURATION=60       seconds of paced load (integer, >= SAMPLE_SECS)
#   RATE=10000        target requests per second
#   CONNS=32          wrk connections (wrk -t1)
#   SAMPLE_SECS=5     seconds between RSS samples
#   BEACONS=0         browser events a second beside the load (0-20): one-event beacons POSTed to
#                     tollgate's /_tollgate/e, as a site's injected tracker sends them (each is
#                     an ingestion request the writer commits at once)
#   VISITORS=0        0: every request is a new visitor (no cookie: a first visit each, so every
#                     page view starts a session, the most the writer's fold inserts). N > 0: N
#                     returning visitors, whose cookies (from one first visit each, before the
#                     load) the requests carry in turn: their sessions go on, and the fold
#                     updates N session rows instead (1-100000)
#   TOLLGATE_BIN      default ${CARGO_TARGET_DIR:-$HOME/.cache/tollgate/target}/release/tollgate
#   OUT=FILE          also write the report to FILE
#   KEEP_TMP=1        keep the temp dir (configs, logs, wrk output, /metrics)
# Anything else tollgate reads from the environment (TOLLGATE_STORE_MEMORY_LIMIT, ...) passes
# through, to compare settings; the report lists the TOLLGATE_* variables that were set.
#
# Needs bash, coreutils, python3, curl, nginx, wrk; installs nginx and wrk with .ci/deps bench
# if they are missing. nginx and tollgate are stopped on exit by their pids only.

set -euo pipefail

DURATION=${DURATION:-60}
RATE=${RATE:-10000}
CONNS=${CONNS:-32}
SAMPLE_SECS=${SAMPLE_SECS:-5}
BEACONS=${BEACONS:-0}
VISITORS=${VISITORS:-0}
PAGE_BYTES=2048
UA='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'

BEACONS_ARG=()
[[ $BEACONS == 0 ]] || BEACONS_ARG=(BEACONS="$BEACONS")
CMDLINE="$(printf '%q ' env DURATION="$DURATION" RATE="$RATE" CONNS="$CONNS" \
  SAMPLE_SECS="$SAMPLE_SECS" "${BEACONS_ARG[@]}" ${TOLLGATE_BIN:+TOLLGATE_BIN="$TOLLGATE_BIN"} \
  ${OUT:+OUT="$OUT"} "$0" "$@")"
CMDLINE=${CMDLINE% }

log() { printf '[proxy_rss] %s\n' "$*" >&2; }
die() { printf '[proxy_rss] ERROR: %s\n' "$*" >&2; exit 2; }
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for v in DURATION RATE CONNS SAMPLE_SECS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
(( DURATION <= 3600 && CONNS <= 1000 )) || die "DURATION <= 3600 and CONNS <= 1000, please"
(( SAMPLE_SECS <= DURATION )) || die "SAMPLE_SECS must not exceed DURATION"
[[ $BEACONS =~ ^[0-9]+$ ]] && (( BEACONS <= 20 )) \
  || die "BEACONS must be 0 to 20 a second, the collect endpoint's default per-address rate (got '$BEACONS')"

for t in python3 curl; do
  command -v "$t" >/dev/null || die "$t is required"
done
need_nginx_wrk
need_tollgate

# ------------------------------------------------------------------------- temp + cleanup

make_tmp proxy_rss
UP_DIR=$TMP/nginx-upstream
KEEP_TMP_ON=2   # a failed measurement (1) still prints its figures
trap_cleanup

read -r UP_PORT TG_PORT ADMIN_PORT < <(free_ports 3)
[[ -n ${ADMIN_PORT:-} ]] || die "could not pick free ports"

# ---------------------------------------------------------------------------- upstream

mkdir -p "$UP_DIR/html" "$UP_DIR/tmp"
bench_page "$UP_DIR/html/index.html" "$PAGE_BYTES"
chmod -R a+rX "$TMP"

upstream_nginx_conf "$UP_DIR" "$UP_PORT" >"$UP_DIR/nginx.conf"
start_nginx upstream "$UP_DIR"

# ---------------------------------------------------------------------------- tollgate

log "starting tollgate on 127.0.0.1:$TG_PORT (admin $ADMIN_PORT), upstream nginx on 127.0.0.1:$UP_PORT"
mkdir -p "$TMP/data"
# Default config: no --config, and no TOLLGATE_CONFIG from the caller's shell. Sets TG_PID.
start_tollgate rss "$TMP/tollgate.log" -u TOLLGATE_CONFIG -- --upstream "http://127.0.0.1:$UP_PORT" \
  --listen "127.0.0.1:$TG_PORT" --admin "127.0.0.1:$ADMIN_PORT" --data "$TMP/data"

URL="http://127.0.0.1:$TG_PORT/index.html"
out=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "$URL") \
  || die "request to $URL failed"
[[ $out == "200 $PAGE_BYTES" ]] || die "expected '200 $PAGE_BYTES' from $URL, got '$out'"

[[ $VISITORS =~ ^[0-9]+$ ]] && (( VISITORS <= 100000 )) || die "VISITORS must be 0-100000, got '$VISITORS'"
# Returning visitors: one first visit each (keep-alive, before the load), their cookies as a
# Lua table that request() below goes through in turn.
VISITOR_LUA=
if (( VISITORS > 0 )); then
  log "first visits of $VISITORS returning visitors"
  python3 - "$TG_PORT" "$VISITORS" >"$TMP/visitors.lua" <<'PY' || die "could not collect the visitors' cookies"
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
print("local cookies = {")
for _ in range(n):
    c.request("GET", "/index.html")
    r = c.getresponse()
    r.read()
    jar = "; ".join(v.split(";", 1)[0] for k, v in r.getheaders() if k.lower() == "set-cookie")
    if r.status != 200 or "=" not in jar:
        sys.exit(f"first visit answered {r.status} with cookies {jar!r}")
    print(f'  "{jar}",')
print("}")
PY
  VISITOR_LUA=$(cat "$TMP/visitors.lua"; cat <<'LUA'
local k = 0
function request()
  k = k % #cookies + 1
  wrk.headers["Cookie"] = cookies[k]
  return wrk.format()
end
LUA
)
fi

status_kib() {   # field -> KiB from /proc/TG/status
  local key val _
  while read -r key val _; do
    [[ $key == "$1:" ]] && { echo "$val"; return 0; }
  done <"/proc/$TG_PID/status"
  echo 0
}

# ---------------------------------------------------------------------------------- wrk

# Send slots on one schedule for all connections: slot i is at t0 + i * 1000 / RATE ms, and
# delay() (called before each request) waits for the next free slot. wrk takes integer ms, so
# single requests go up to 1 ms early or late; the schedule keeps the average exact. If
# tollgate falls behind, the slots pile up in the past and requests go out back to back:
# the achieved rate then says so.
cat >"$TMP/paced.lua" <<EOF
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } tg_timespec;
int clock_gettime(int clk, tg_timespec *tp);
]]
local ts = ffi.new("tg_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)   -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local period = 1000 / $RATE
local next_slot = nil
wrk.headers["User-Agent"] = "$UA"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
wrk.headers["Accept-Language"] = "en-US,en;q=0.9"
function delay()
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + period
  if wait < 0.5 then return 0 end
  return math.floor(wait + 0.5)
end
$VISITOR_LUA
EOF

writer_ticks() {   # user + sys clock ticks of the tollgate-writer thread
  local t
  for t in /proc/"$TG_PID"/task/*; do
    [[ $(cat "$t/comm" 2>/dev/null) == tollgate-writer ]] && { awk '{print $14 + $15}' "$t/stat"; return 0; }
  done
  echo 0
}
metric() {   # sum of a counter over its labels, from the admin /metrics
  curl -sf --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" \
    | awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%d\n", s}'
}

log "paced load: $RATE req/s for ${DURATION}s over $CONNS connections; RSS every ${SAMPLE_SECS}s"
WRITTEN0=$(metric tollgate_events_written_total)
W0=$(writer_ticks)
SAMPLES=("0 $(status_kib VmRSS)")
wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/paced.lua" "$URL" >"$TMP/wrk.txt" 2>&1 &
WRK_PID=$!
BEACON_PID=
echo "0 0" >"$TMP/beacons.txt"
if (( BEACONS > 0 )); then
  # One beacon every 1/BEACONS s on a fixed schedule, for DURATION s; writes "sent 2xx".
  python3 - "http://127.0.0.1:$TG_PORT/_tollgate/e" "$BEACONS" "$DURATION" "$TMP/beacons.txt" <<'PY' &
import sys, time, urllib.request
url, rate, duration, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sent = ok = 0
start = time.monotonic()
while time.monotonic() - start < duration:
    req = urllib.request.Request(url, data=b'[{"name":"click","props":{"el":"buy"}}]',
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            ok += 200 <= r.status < 300
    except Exception:
        pass
    sent += 1
    time.sleep(max(0.0, start + sent / rate - time.monotonic()))
open(out, "w").write(f"{sent} {ok}\n")
PY
  BEACON_PID=$!
fi
T0=$(date +%s%N)
for (( t = SAMPLE_SECS; t <= DURATION; t += SAMPLE_SECS )); do
  # Sleep to the sample's time on the clock, not SAMPLE_SECS after the last sample.
  now=$(date +%s%N)
  sl=$(( T0 + t * 1000000000 - now ))
  (( sl > 0 )) && sleep "$(( sl / 1000000000 )).$(printf '%09d' $(( sl % 1000000000 )))"
  [[ -d /proc/$TG_PID ]] || { tail -n 40 "$TMP/tollgate.log" >&2; die "tollgate died under load; log above"; }
  SAMPLES+=("$t $(status_kib VmRSS)")
done
cp "/proc/$TG_PID/smaps_rollup" "$TMP/smaps_rollup.txt"
HWM=$(status_kib VmHWM)
THREADS=$(awk '/^Threads:/ {print $2}' "/proc/$TG_PID/status")
rc=0
wait "$WRK_PID" || rc=$?
WRK_PID=
(( rc == 0 )) || { cat "$TMP/wrk.txt" >&2; die "wrk failed (exit $rc)"; }
[[ -z $BEACON_PID ]] || wait "$BEACON_PID" || die "the beacon loop failed"
read -r BEACONS_SENT BEACONS_OK <"$TMP/beacons.txt"
[[ -d /proc/$TG_PID ]] || die "tollgate died under load"
# The writer may hold the last events back for pipeline.bulk_wait_ms (15 s by default) under
# steady traffic: wait until every captured event is written (or dropped), 30 s at most.
for (( i = 0; i < 300; i++ )); do
  captured=$(metric tollgate_events_captured_total)
  done_=$(( $(metric tollgate_events_written_total) + $(metric tollgate_events_dropped_total) ))
  (( done_ >= captured )) && break
  sleep 0.1
done
W1=$(writer_ticks)
WRITTEN=$(( $(metric tollgate_events_written_total) - WRITTEN0 ))
WRITER_US=$(awk -v t=$(( W1 - W0 )) -v hz="$(getconf CLK_TCK)" -v n="$WRITTEN" \
  'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }')
curl -sf --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$TMP/metrics.txt" \
  || die "could not read http://127.0.0.1:$ADMIN_PORT/metrics"

# ------------------------------------------------------------------------------ report

TG_VER=$("$BIN" --version 2>/dev/null | head -n1 || true)
TG_ENV=$(env | grep '^TOLLGATE_' | grep -v '^TOLLGATE_BIN=' | sort | tr '\n' ' ' || true)
REPORT=$TMP/report.md
set +e
BEACONS="$BEACONS" BEACONS_SENT="$BEACONS_SENT" BEACONS_OK="$BEACONS_OK" \
python3 - "$TMP/wrk.txt" "$TMP/metrics.txt" "$TMP/smaps_rollup.txt" "$RATE" "$DURATION" \
  "$HWM" "$THREADS" "$WRITER_US" "${SAMPLES[@]}" >"$TMP/body.md" <<'EOF'
import os, re, sys
wrk_path, metrics_path, smaps_path = sys.argv[1:4]
rate, duration, hwm, threads = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
writer_us = sys.argv[8]
samples = [tuple(int(x) for x in s.split()) for s in sys.argv[9:]]
text = open(wrk_path).read()
m = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", text)
if not m:
    sys.exit("[proxy_rss] ERROR: no request count in wrk output")
secs = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
achieved = int(m.group(1)) / secs
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
def lat(p):
    m = re.search(r"^\s*%s%%\s+([0-9.]+)(us|ms|s|m)\s*$" % p, text, re.M)
    return float(m.group(1)) * UNIT[m.group(2)] if m else float("nan")
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
non2xx = int(non2xx.group(1)) if non2xx else 0
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
sock = sum(int(x) for x in sock.groups()) if sock else 0
metrics = {}
for line in open(metrics_path):
    if line.startswith("#") or not line.strip():
        continue
    name, _, val = line.rpartition(" ")
    metrics[name] = float(val)
def total(prefix):
    return int(sum(v for k, v in metrics.items() if k == prefix or k.startswith(prefix + "{")))
dropped = {k: int(v) for k, v in metrics.items() if k.startswith("tollgate_events_dropped_total")}
smaps = {}
for line in open(smaps_path):
    parts = line.split()
    if len(parts) >= 3 and parts[2] == "kB":
        smaps[parts[0].rstrip(":")] = int(parts[1])
mib = lambda kib: kib / 1024
final = samples[-1][1]
# Growth over the last 30 s: the final sample against the one 30 s before it (or the first
# sample under load when the run is shorter).
t_end = samples[-1][0]
base = next((s for s in samples if s[0] >= t_end - 30 and s[0] > 0), samples[-1])
print(f"- achieved: {achieved:.0f} req/s of {rate} ({100 * achieved / rate:.1f} %), "
      f"p50 {lat(50):.2f} ms, p99 {lat(99):.2f} ms, non-2xx {non2xx}, socket errors {sock}")
print()
print("| t (s) | " + " | ".join(str(t) for t, _ in samples) + " |")
print("|---|" + "---:|" * len(samples))
print("| VmRSS MiB | " + " | ".join(f"{mib(r):.1f}" for _, r in samples) + " |")
print()
print(f"- **final RSS: {mib(final):.1f} MiB** (anonymous {mib(smaps.get('Anonymous', 0)):.1f}, "
      f"file-backed {mib(smaps.get('Rss', 0) - smaps.get('Anonymous', 0)):.1f}); peak (VmHWM) {mib(hwm):.1f} MiB; "
      f"{threads} threads")
print(f"- **growth over the last {t_end - base[0]} s: {mib(final - base[1]):+.1f} MiB** "
      f"({base[0]} s → {t_end} s)")
print(f"- events captured {total('tollgate_events_captured_total')}, "
      f"written {total('tollgate_events_written_total')}, "
      f"**dropped {sum(dropped.values())}**"
      + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()) if v) + ")" if any(dropped.values()) else ""))
print(f"- **the writer thread's CPU: {writer_us} µs per event written** (its user + sys ticks "
      f"from the start of the load until every event is written, enrichment and commits; "
      f"DuckDB runs on it at rest)")
beacons, sent, ok = (int(os.environ[k]) for k in ("BEACONS", "BEACONS_SENT", "BEACONS_OK"))
if beacons:
    print(f"- beacons beside the load: {sent} POSTed to /_tollgate/e ({beacons}/s), {ok} answered 2xx")
bad = []
if sent > ok:
    bad.append(f"{sent - ok} beacons not answered 2xx")
if sum(dropped.values()):
    bad.append("events were dropped")
if achieved < 0.9 * rate:
    bad.append(f"achieved rate {achieved:.0f} is under 90 % of {rate}")
if non2xx:
    bad.append(f"{non2xx} non-2xx responses")
if bad:
    print()
    print("**FAILED: " + "; ".join(bad) + "**")
    sys.exit(1)
EOF
prc=$?
set -e
{
  echo "## tollgate RSS under paced load"
  echo
  echo "- date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "- machine: $(nproc) CPUs, $(cpu_model), kernel $(uname -r)"
  echo "- command: \`$CMDLINE\`"
  echo "- load: wrk -t1 -c$CONNS, paced to $RATE req/s (Lua delay()), ${DURATION}s, 2048-byte page from nginx (1 worker)"
  if (( VISITORS > 0 )); then
    echo "- visitors: $VISITORS returning, their cookies in turn"
  else
    echo "- visitors: a new one every request (no cookie)"
  fi
  echo "- tollgate: ${TG_VER:-$BIN}, default config, empty data dir${TG_ENV:+; env: $TG_ENV}"
  echo
  cat "$TMP/body.md"
} >"$REPORT"
cat "$REPORT"
if [[ -n ${OUT:-} ]]; then
  cp "$REPORT" "$OUT" || die "cannot write report to $OUT"
  log "report written to $OUT"
fi
(( prc == 0 || prc == 1 )) || die "report failed (exit $prc)"
exit "$prc"
